"""The demo stack of the project's CDK app: an IoT thing and a secure tunnel to it.

It lives beside ``app.py``, not in the construct library: the library's wheel ships only what a
consumer's app uses. The integration test (``integ/``) deploys it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Aws, CfnOutput, Stack
from aws_cdk import aws_iot as iot
from constructs import Construct

from cdk_iot_secure_tunnel import SecureTunnel

DEFAULT_THING_NAME = "secure-tunnel-demo-device"
DEFAULT_SERVICES = ("SSH",)
STACK_DESCRIPTION = (
    "Demo of cdk-iot-secure-tunnel: an IoT thing and a secure tunnel to it (tokens in Secrets Manager)"
)


def fetch_secret_command(secret_arn: str) -> str:
    """The AWS CLI command that prints a token secret's JSON (the token stays out of the stack)."""
    return (
        f"aws secretsmanager get-secret-value --region {Aws.REGION} --secret-id {secret_arn} "
        "--query SecretString --output text"
    )


def services_from_context(value: Any) -> list[str]:
    """Service names from CDK context: a list (cdk.json) or a comma-separated string (``-c``)."""
    if value is None:
        return list(DEFAULT_SERVICES)
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    return [str(name) for name in value]


class SecureTunnelDemoStack(Stack):
    """An IoT thing and a :class:`SecureTunnel` to it, with outputs that name the tunnel and its
    secrets (never a token).

    :ivar thing: the IoT thing.
    :ivar tunnel: the secure tunnel.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        thing_name: str = DEFAULT_THING_NAME,
        services: Sequence[str] = DEFAULT_SERVICES,
        **kwargs: Any,
    ) -> None:
        """Create the demo stack.

        :param scope: the app.
        :param construct_id: the stack's construct id (and default stack name).
        :param thing_name: name of the IoT thing to create.
        :param services: 1 to 3 service names the device's local proxy serves, e.g. ``["SSH"]``.
        :param kwargs: further ``aws_cdk.Stack`` arguments.
        """
        kwargs.setdefault("description", STACK_DESCRIPTION)
        super().__init__(scope, construct_id, **kwargs)
        self.thing = iot.CfnThing(self, "Device", thing_name=thing_name)
        self.tunnel = SecureTunnel(
            self,
            "Tunnel",
            thing=self.thing,
            services=list(services),
            description=f"Demo secure tunnel to {thing_name}",
        )
        source = self.tunnel.source_token_secret.secret_arn
        CfnOutput(self, "TunnelId", value=self.tunnel.tunnel_id, description="Id of the secure tunnel")
        CfnOutput(self, "TunnelArn", value=self.tunnel.tunnel_arn, description="ARN of the secure tunnel")
        CfnOutput(
            self, "SourceTokenSecretArn", value=source, description="Secret with the source (operator) token"
        )
        if self.tunnel.destination_token_secret is not None:
            CfnOutput(
                self,
                "DestinationTokenSecretArn",
                value=self.tunnel.destination_token_secret.secret_arn,
                description="Secret with the destination (device) token",
            )
        CfnOutput(
            self,
            "FetchSourceTokenCommand",
            value=fetch_secret_command(source),
            description="Prints the source token secret (JSON; the token is its accessToken field)",
        )
