"""AWS CDK construct library for AWS IoT Secure Tunneling.

:class:`SecureTunnel` opens a tunnel to an IoT thing through the ``Custom::IoTSecureTunnel``
CloudFormation resource and keeps its two client access tokens in Secrets Manager::

    from aws_cdk import Duration, aws_iot as iot
    from cdk_iot_secure_tunnel import SecureTunnel

    device = iot.CfnThing(self, "Device", thing_name="my-device")
    tunnel = SecureTunnel(self, "Tunnel", thing=device, services=["SSH"], max_lifetime=Duration.hours(2))
    tunnel.grant_read_source_token(operator_role)

:class:`SecureTunnelProviderStack` deploys the handler alone for plain CloudFormation templates;
:class:`DeviceNotifyPolicy` is the IoT policy a device needs to receive its destination token;
:class:`SecureTunnelHandler` is the one handler function of a stack.
"""

from importlib import metadata as _metadata

from secure_tunnel_handler.contract import OWNER_TAG_KEY

from .device_policy import DeviceNotifyPolicy
from .handler_function import SecureTunnelHandler
from .provider_stack import SecureTunnelProviderStack
from .secure_tunnel import RESOURCE_TYPE, SecureTunnel

#: The distribution this package ships in.
DISTRIBUTION = "cdk-iot-secure-tunnel"
try:
    __version__ = _metadata.version(DISTRIBUTION)
except _metadata.PackageNotFoundError:  # imported from a source tree that pip did not install
    __version__ = "0+unknown"

__all__ = [
    "OWNER_TAG_KEY",
    "RESOURCE_TYPE",
    "DeviceNotifyPolicy",
    "SecureTunnel",
    "SecureTunnelHandler",
    "SecureTunnelProviderStack",
    "__version__",
]
