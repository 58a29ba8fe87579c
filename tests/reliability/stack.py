"""The stack around one custom resource: the lifecycle events under test, and CloudFormation's
side of what follows them (delete a failed Create, roll back a failed Update, retry a failed
Delete, delete a replaced tunnel), with the checks every matrix shares.

Besides CloudFormation's events, the events under test include a Secrets Manager rotation of
either token secret (``rotate-secret``): what follows a failed one is Secrets Manager retrying
it at the next rotate-secret, after the stack update its message asks for if the tunnel is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.reliability.world import Delivery, Rotated, World
from tests.rig.cloudformation import LambdaContext


@dataclass(frozen=True)
class Stage:
    """The event under test as CloudFormation sends it, and the stack's state before it."""

    request_type: str
    properties: dict[str, Any]
    physical_id: str | None = None
    old_properties: dict[str, Any] | None = None
    #: The tunnel the secrets hold before the event (None: the placeholder).
    before: str | None = None
    #: Tunnels CloudFormation keeps referencing whatever the event's outcome.
    kept: frozenset[str] = frozenset()
    #: For a rotation (request type "Rotate"): the secret rotated, "source" or "destination".
    rotates: str = ""


def _create(world: World) -> Stage:
    return Stage("Create", world.rig.properties(Tags=[{"Key": "team", "Value": "ops"}]))


def _update_in_place(world: World) -> Stage:
    # Tags and destination change: the in-place path makes every call it can.
    old_id, old = world.create(Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    new = {
        **old,
        "Tags": [{"Key": "a", "Value": "changed"}, {"Key": "c", "Value": "3"}],
        "DestinationConfig": {"ThingName": "other-device", "Services": ["SSH", "RDP"]},
        "RotationTrigger": "2",
    }
    return Stage("Update", new, old_id, old, before=old_id)


def _update_with_replacement(world: World) -> Stage:
    # A lifetime change (same description): the look-up of an earlier delivery reads tags too.
    old_id, old = world.create()
    new = {**old, "TimeoutConfig": {"MaxLifetimeTimeoutMinutes": "60"}}
    return Stage("Update", new, old_id, old, before=old_id)


def _delete(world: World) -> Stage:
    tunnel_id, props = world.create()
    return Stage("Delete", props, tunnel_id, before=tunnel_id)


def _delete_after_rolled_back_replacement(world: World) -> Stage:
    # The stack update failed after a replacement: CloudFormation keeps the old tunnel and
    # deletes the new one, whose Delete gives the secrets back to the old tunnel.
    old_id, old = world.create(Description="first")
    new = {**old, "Description": "second"}
    replaced = world.deliver("Update", new, physical_id=old_id, old_properties=old)
    assert replaced.status == "SUCCESS" and replaced.physical_id != old_id, replaced.reason
    return Stage("Delete", new, replaced.physical_id, before=replaced.physical_id, kept=frozenset({old_id}))


def _rotation_of(role: str) -> Callable[[World], Stage]:
    def prepare(world: World) -> Stage:
        tunnel_id, props = world.create()
        world.attach_rotation()
        return Stage("Rotate", props, tunnel_id, before=tunnel_id, rotates=role)

    return prepare


#: CloudFormation's lifecycle events under test.
EVENTS: dict[str, Callable[[World], Stage]] = {
    "Create": _create,
    "Update in place": _update_in_place,
    "Update with replacement": _update_with_replacement,
    "Delete": _delete,
    "Delete after a rolled-back replacement": _delete_after_rolled_back_replacement,
}
#: Secrets Manager rotations under test (one rotate-secret: the four steps).
ROTATIONS: dict[str, Callable[[World], Stage]] = {
    "Rotation of the source secret": _rotation_of("source"),
    "Rotation of the destination secret": _rotation_of("destination"),
}


def send(world: World, stage: Stage, context: LambdaContext | None = None) -> Delivery | Rotated:
    """Send the event under test: a CloudFormation event, or a rotate-secret."""
    if stage.rotates:
        return world.rotate(stage.rotates, context)
    return world.deliver(
        stage.request_type,
        stage.properties,
        physical_id=stage.physical_id,
        old_properties=stage.old_properties,
        context=context,
    )


def referenced_after(stage: Stage, delivery: Delivery | Rotated) -> set[str]:
    """The tunnels CloudFormation references right after the event."""
    pid = delivery.physical_id
    if stage.rotates:
        return {pid}
    if stage.request_type == "Create":
        return {pid}  # on FAILED, until CloudFormation's Delete of that id
    if stage.request_type == "Update":
        old = str(stage.physical_id)
        return {old, pid} if delivery.status == "SUCCESS" else {old}
    return set(stage.kept) | ({pid} if delivery.status == "FAILED" else set())


def settle(world: World, stage: Stage, delivery: Delivery | Rotated) -> set[str]:
    """Play CloudFormation's side to the end; returns the tunnels it then references."""
    world.proxies.clear()
    if isinstance(delivery, Rotated):
        return _settle_rotation(world, stage, delivery)
    pid, ok = delivery.physical_id, delivery.status == "SUCCESS"
    if stage.request_type == "Create":
        if ok:
            return {pid}
        _must_succeed(
            world.deliver("Delete", stage.properties, physical_id=pid), "Delete after failed Create"
        )
        return set()
    if stage.request_type == "Update":
        old, old_props = str(stage.physical_id), stage.old_properties or {}
        current = pid
        if not ok:
            rollback = world.deliver("Update", old_props, physical_id=old, old_properties=stage.properties)
            _must_succeed(rollback, "rollback Update")
            current = rollback.physical_id
        if current != old:
            cleanup = world.deliver("Delete", old_props, physical_id=old)
            _must_succeed(cleanup, "clean-up Delete of the replaced tunnel")
        return {current}
    if not ok:
        _must_succeed(world.deliver("Delete", stage.properties, physical_id=pid), "retried Delete")
    return set(stage.kept)


def _settle_rotation(world: World, stage: Stage, rotated: Rotated) -> set[str]:
    """After a failed rotation, do what its message asks (a tunnel that is no longer OPEN needs a
    stack update, which opens a new one), then rotate-secret again: Secrets Manager retries the
    unfinished rotation, which must now finish."""
    current = rotated.tunnel_id
    if rotated.status == "SUCCESS":
        return {current}
    if current not in world.rig.tunnels.open_tunnel_ids():
        new = {**stage.properties, "RotationTrigger": "after-the-failed-rotation"}
        update = world.deliver("Update", new, physical_id=current, old_properties=stage.properties)
        _must_succeed(update, "stack update after a closed tunnel failed the rotation")
        if update.physical_id != current:
            cleanup = world.deliver("Delete", stage.properties, physical_id=current)
            _must_succeed(cleanup, "clean-up Delete of the closed tunnel")
        current = update.physical_id
    retried = world.rotate(stage.rotates)
    assert retried.status == "SUCCESS", (
        f"the retried rotation failed at {retried.failed_step}: {retried.reason}"
    )
    return {current}


def _must_succeed(delivery: Delivery, what: str) -> None:
    assert len(delivery.responses) == 1, f"{what}: {len(delivery.responses)} responses"
    assert delivery.status == "SUCCESS", f"{what} failed: {delivery.reason}"


def check_secrets_agree(
    world: World, allowed: set[str | None], when: str, missing: frozenset[str] = frozenset()
) -> None:
    """Both secrets (but ``missing`` ones) hold tokens of one tunnel, one of ``allowed``."""
    held = set(world.secret_tunnels(missing).values())
    assert len(held) <= 1, f"{when}: the secrets hold tokens of different tunnels {held}"
    assert held <= allowed, f"{when}: the secrets hold {held}, expected one of {allowed}"


def check_rotation_settled(world: World, arn: str, old_token: str | None) -> None:
    """Once settled after a rotation: the secret holds a new token, no rotation is left unfinished."""
    assert world.rig.secret(arn)["accessToken"] != old_token, (
        "once settled, the secret still holds the old token"
    )
    assert not world.rotation_unfinished(arn), "once settled, a rotation is left unfinished"


def check_settled(
    world: World, referenced: set[str], allowed: set[str | None], missing: frozenset[str] = frozenset()
) -> None:
    """Once the stack settled: no unreferenced OPEN tunnel, and the secrets hold valid tokens
    of the tunnel CloudFormation references if it is still there."""
    assert not world.orphans(referenced), "an unreferenced tunnel is OPEN once the stack settled"
    live = {t for t in referenced if world.rig.tunnels.tunnel(t)}
    check_secrets_agree(world, set(live) or allowed | set(referenced), "once settled", missing)
    if live:
        assert world.secrets_are_live(missing), "once settled, a secret holds a revoked token"
    for tunnel_id in live:
        world.rig.check_device_notified(tunnel_id)
