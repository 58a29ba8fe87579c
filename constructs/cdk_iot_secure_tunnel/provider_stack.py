"""The provider stack: one handler function per account and region, for plain CloudFormation.

Templates declare ``Custom::IoTSecureTunnel`` with
``ServiceToken: !ImportValue IoTSecureTunnel-ServiceToken`` (see ``templates/``).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from .handler_function import SecureTunnelHandler

#: Export name of the handler function's ARN.
SERVICE_TOKEN_EXPORT = "IoTSecureTunnel-ServiceToken"  # noqa: S105 - an export name, not a secret
#: Token secrets the provider may write must be named with this prefix.
SECRET_NAME_PREFIX = "iot-secure-tunnel/"  # noqa: S105 - a name prefix, not a secret
STACK_DESCRIPTION = (
    "cdk-iot-secure-tunnel provider: the Custom::IoTSecureTunnel handler for CloudFormation templates "
    f"(export {SERVICE_TOKEN_EXPORT}; token secrets must be named {SECRET_NAME_PREFIX}...)"
)


class SecureTunnelProviderStack(Stack):
    """Deploys the ``Custom::IoTSecureTunnel`` handler once and exports its ARN.

    The handler may open tunnels to any thing of the account and region, but touches only tunnels
    it opened itself (tag ``iot-secure-tunnel:owner`` = this stack's id: its policy requires the
    tag to close, describe or rotate a tunnel, and the handler checks it through
    ``DescribeTunnel`` before it tags or untags one, which IAM cannot limit by tag) and only
    secrets named ``iot-secure-tunnel/...``.

    :ivar handler: the handler function construct.
    """

    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        """Create the provider stack.

        :param scope: the app.
        :param construct_id: the stack's construct id (and default stack name).
        :param kwargs: further ``aws_cdk.Stack`` arguments.
        """
        kwargs.setdefault("description", STACK_DESCRIPTION)
        super().__init__(scope, construct_id, **kwargs)
        self.handler = SecureTunnelHandler.of(self)
        self.handler.authorize_by_convention(secret_name_prefix=SECRET_NAME_PREFIX)
        CfnOutput(
            self,
            "ServiceToken",
            value=self.handler.service_token,
            export_name=SERVICE_TOKEN_EXPORT,
            description="ServiceToken of Custom::IoTSecureTunnel resources",
        )
