"""The local, wire-level stand-ins for AWS and CloudFormation that the tests run against."""
