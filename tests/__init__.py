"""Tests of the IoT Secure Tunnel custom resource and construct."""
