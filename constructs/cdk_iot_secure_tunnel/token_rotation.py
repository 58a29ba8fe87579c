"""Secrets Manager rotation of the token secrets, served by the stack's handler function.

Rotating the source secret gives the operator a fresh single-use token
(``aws secretsmanager rotate-secret --secret-id <source secret>`` or
``secure-tunnel connect --rotate``); rotating the destination secret makes AWS IoT publish a new
destination token to the device. The handler's rotation steps are in
``secure_tunnel_handler.rotation``.

The rotation function is always attached, so that on-demand rotation works; a schedule is
opt-in, because every rotation revokes the token of that side, which may be in use.
"""

from __future__ import annotations

from aws_cdk import CustomResource, Duration
from aws_cdk import aws_secretsmanager as secretsmanager

from .acknowledgments import TOKEN_SECRET_ROTATION, acknowledge
from .handler_function import SecureTunnelHandler

MIN_SCHEDULE_DAYS = 1
MAX_SCHEDULE_DAYS = 1000


def schedule_days(schedule: Duration | None) -> int | None:
    """The rotation schedule in whole days, 1 to 1000 (Secrets Manager's limits), or None."""
    if schedule is None:
        return None
    rule = (
        f"a Duration of whole days from {MIN_SCHEDULE_DAYS} to {MAX_SCHEDULE_DAYS} "
        "(e.g. Duration.days(7)), or None for on-demand rotation only"
    )
    if not isinstance(schedule, Duration):
        raise ValueError(f"SecureTunnel argument 'rotation_schedule' must be {rule}; got {schedule!r}")
    hours = float(schedule.to_hours(integral=False))
    if hours % 24 != 0 or not MIN_SCHEDULE_DAYS <= hours / 24 <= MAX_SCHEDULE_DAYS:
        raise ValueError(
            f"SecureTunnel argument 'rotation_schedule' must be {rule}; got {schedule.to_human_string()}"
        )
    return int(hours // 24)


def attach_rotation(
    secret: secretsmanager.Secret,
    handler: SecureTunnelHandler,
    tunnel: CustomResource,
    days: int | None,
) -> secretsmanager.CfnRotationSchedule:
    """Let the handler rotate ``secret``, on demand and every ``days`` days if given.

    The L1 resource is used on purpose: the L2 ``add_rotation_schedule`` also grants the function
    ``secretsmanager:GetRandomPassword`` on ``*``, which this handler never needs.
    """
    handler.allow_rotation_by_secrets_manager()
    schedule = secretsmanager.CfnRotationSchedule(
        secret,
        "Rotation",
        secret_id=secret.secret_arn,
        rotation_lambda_arn=handler.function.function_arn,
        # Rotating at deploy time would revoke the token the tunnel resource has just written.
        rotate_immediately_on_update=False,
        rotation_rules=(
            secretsmanager.CfnRotationSchedule.RotationRulesProperty(automatically_after_days=days)
            if days is not None
            else None
        ),
    )
    # The first rotation needs a token in the secret: after the tunnel resource wrote it.
    schedule.node.add_dependency(tunnel)
    if days is None:
        acknowledge(secret, TOKEN_SECRET_ROTATION)
    return schedule
