"""The integration test on a real AWS account (docs/integration-test.md)."""
