"""Secrets Manager rotation of the token secrets, served by the stack's handler function.

Rotating the source secret gives the operator a fresh single-use token
(``aws secretsmanager rotate-secret --secret-id <source secret>`` or
``secure-tunnel connect --rotate``); rotating the destination secret makes AWS IoT publish a new
destination token to the device. The handler's rotation steps are in
``secure_tunnel_handler.rotation``.

Rotation is on demand only, never scheduled: a tunnel lives at most 12 hours, so a schedule
(whole days) would only ever meet a closed tunnel.
"""

from __future__ import annotations

from aws_cdk import CustomResource
from aws_cdk import aws_secretsmanager as secretsmanager

from .acknowledgments import TOKEN_SECRET_ROTATION, acknowledge
from .handler_function import SecureTunnelHandler


def attach_rotation(
    secret: secretsmanager.Secret,
    handler: SecureTunnelHandler,
    tunnel: CustomResource,
    secret_name_prefix: str | None = None,
) -> secretsmanager.CfnRotationSchedule:
    """Let the handler rotate ``secret`` on demand (Secrets Manager may invoke it for the secrets
    of ``secret_name_prefix`` or, without one, for this account's secrets; the handler rotates a
    tunnel only into a secret it is bound to).

    The L1 resource is used on purpose: the L2 ``add_rotation_schedule`` also grants the function
    ``secretsmanager:GetRandomPassword`` on ``*``, which this handler never needs.
    """
    permission = handler.allow_rotation_by_secrets_manager(secret_name_prefix)
    schedule = secretsmanager.CfnRotationSchedule(
        secret,
        "Rotation",
        secret_id=secret.secret_arn,
        rotation_lambda_arn=handler.function.function_arn,
        # Rotating at deploy time would revoke the token the tunnel resource has just written.
        rotate_immediately_on_update=False,
    )
    # Secrets Manager tests the function when the schedule is created: it must be allowed to
    # invoke it by then (CDK's L2 RotationSchedule has the same dependency for this race).
    schedule.node.add_dependency(permission)
    # The first rotation needs a token in the secret: after the tunnel resource wrote it.
    schedule.node.add_dependency(tunnel)
    acknowledge(secret, TOKEN_SECRET_ROTATION)
    return schedule
