"""The provider stack: one handler function per account and region, for plain CloudFormation.

Templates declare ``Custom::IoTSecureTunnel`` with
``ServiceToken: !ImportValue IoTSecureTunnel-ServiceToken`` (see ``templates/``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnOutput, CfnParameter, Stack
from constructs import Construct

from .handler_function import SecureTunnelHandler
from .validation import MAX_NAME_LENGTH, NAME_CHARACTERS, validate_thing_group_arns

#: Export name of the handler function's ARN.
SERVICE_TOKEN_EXPORT = "IoTSecureTunnel-ServiceToken"  # noqa: S105 - an export name, not a secret
#: Token secrets the provider may write must be named with this prefix.
SECRET_NAME_PREFIX = "iot-secure-tunnel/"  # noqa: S105 - a name prefix, not a secret
#: Logical id of the parameter that narrows the things tunnels may reach.
THING_NAME_PREFIX_PARAMETER = "ThingNamePrefix"
STACK_DESCRIPTION = (
    "cdk-iot-secure-tunnel provider: the Custom::IoTSecureTunnel handler for CloudFormation templates "
    f"(export {SERVICE_TOKEN_EXPORT}; token secrets must be named {SECRET_NAME_PREFIX}...)"
)


class SecureTunnelProviderStack(Stack):
    """Deploys the ``Custom::IoTSecureTunnel`` handler once and exports its ARN.

    The handler touches only tunnels it opened itself (tag ``iot-secure-tunnel:owner`` = this
    stack's id: its policy requires the tag to close, describe or rotate a tunnel, and the handler
    checks it through ``DescribeTunnel`` before it tags or untags one, which IAM cannot limit by
    tag) and only secrets named ``iot-secure-tunnel/...``.

    What the handler may reach is a stated power: any stack of the account and region that names
    it as its ``ServiceToken`` can have it open a tunnel to any thing its policy allows. By default
    that is every thing of the account and region; narrow it with the template parameter
    ``ThingNamePrefix`` (tunnels only to things whose name starts with it) and, at synth time,
    ``thing_group_arns`` (only to things in one of those groups). Both apply to opening a tunnel
    and to a rotation that names the thing (an Update can move a tunnel to another thing).

    Secrets Manager may invoke the handler to rotate only secrets of this account named
    ``iot-secure-tunnel/...``, so a template can make the handler the rotation function of its
    token secrets: ``RotationLambdaARN: !ImportValue IoTSecureTunnel-ServiceToken``. The service
    token is the function's ARN; there is no second export of the same value (an imported export
    can never change, so each one is a commitment).

    :ivar handler: the handler function construct.
    :ivar thing_name_prefix: the ``ThingNamePrefix`` parameter.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        thing_group_arns: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Create the provider stack.

        :param scope: the app.
        :param construct_id: the stack's construct id (and default stack name).
        :param thing_group_arns: IoT thing group ARNs,
            ``arn:<partition>:iot:<region>:<account>:thinggroup/<name>`` (the name may hold ``*``
            and ``?`` wildcards); when given, tunnels reach only things in at least one of them.
            Default: None (any thing the ``ThingNamePrefix`` parameter allows).
        :param kwargs: further ``aws_cdk.Stack`` arguments.
        :raises ValueError: ``thing_group_arns`` is empty or holds something other than such ARNs.
        """
        groups = validate_thing_group_arns(thing_group_arns)
        kwargs.setdefault("description", STACK_DESCRIPTION)
        super().__init__(scope, construct_id, **kwargs)
        self.thing_name_prefix = CfnParameter(
            self,
            THING_NAME_PREFIX_PARAMETER,
            type="String",
            default="",
            allowed_pattern=f"[{NAME_CHARACTERS}]*",
            max_length=MAX_NAME_LENGTH - 1,
            description=(
                "Tunnels may reach only IoT things whose name starts with this prefix "
                "(empty: every thing of the account and region)."
            ),
        )
        self.handler = SecureTunnelHandler.of(self)
        self.handler.authorize_by_convention(
            secret_name_prefix=SECRET_NAME_PREFIX,
            thing_name_prefix=self.thing_name_prefix.value_as_string,
            thing_group_arns=groups,
        )
        CfnOutput(
            self,
            "ServiceToken",
            value=self.handler.service_token,
            export_name=SERVICE_TOKEN_EXPORT,
            description=(
                "ServiceToken of Custom::IoTSecureTunnel resources; also the RotationLambdaARN of "
                f"token secrets named {SECRET_NAME_PREFIX}..."
            ),
        )
