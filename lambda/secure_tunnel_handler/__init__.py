"""Lambda handler of the ``Custom::IoTSecureTunnel`` CloudFormation custom resource.

Create opens an AWS IoT Secure Tunneling tunnel, Update rotates its access tokens (or opens a
replacement), Delete closes it. Tokens go straight into Secrets Manager and nowhere else.
The Lambda entry point is ``secure_tunnel_handler.entrypoint.handler``.
"""
