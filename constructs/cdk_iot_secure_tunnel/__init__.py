"""AWS CDK construct library for AWS IoT Secure Tunneling.

:class:`SecureTunnel` opens a tunnel to an IoT thing through the ``Custom::IoTSecureTunnel``
CloudFormation resource and keeps its two client access tokens in Secrets Manager::

    from aws_cdk import Duration, aws_iot as iot
    from cdk_iot_secure_tunnel import SecureTunnel

    device = iot.CfnThing(self, "Device", thing_name="my-device")
    tunnel = SecureTunnel(self, "Tunnel", thing=device, services=["SSH"], max_lifetime=Duration.hours(2))
    tunnel.grant_read_source_token(operator_role)
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bundling import HANDLER, HANDLER_PACKAGE, LocalHandlerBundling, bundle_handler, handler_code
    from .handler_function import HANDLER_CONSTRUCT_ID, SecureTunnelHandler
    from .secure_tunnel import PENDING_SECRET_VALUE, RESOURCE_TYPE, SecureTunnel
    from .validation import OWNER_TAG_KEY

# Imported on first use: the `secure-tunnel` CLI lives in this package and must not start
# aws_cdk (and with it Node.js) on an operator's machine.
_HOMES = {
    "HANDLER": "bundling",
    "HANDLER_PACKAGE": "bundling",
    "LocalHandlerBundling": "bundling",
    "bundle_handler": "bundling",
    "handler_code": "bundling",
    "HANDLER_CONSTRUCT_ID": "handler_function",
    "SecureTunnelHandler": "handler_function",
    "PENDING_SECRET_VALUE": "secure_tunnel",
    "RESOURCE_TYPE": "secure_tunnel",
    "SecureTunnel": "secure_tunnel",
    "OWNER_TAG_KEY": "validation",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_HOMES[name]}", __name__), name)


__all__ = [
    "HANDLER",
    "HANDLER_CONSTRUCT_ID",
    "HANDLER_PACKAGE",
    "OWNER_TAG_KEY",
    "PENDING_SECRET_VALUE",
    "RESOURCE_TYPE",
    "LocalHandlerBundling",
    "SecureTunnel",
    "SecureTunnelHandler",
    "bundle_handler",
    "handler_code",
]
