"""Duplicates and order: the same event delivered twice, and a Delete racing a Create.

Lambda invokes the handler asynchronously and may deliver an event more than once, one after the
other or at the same time (in two execution environments). A redelivered event carries the same
RequestId and ResponseURL. Checked for each: CloudFormation's first response names a tunnel that
is OPEN, no other tunnel is left OPEN, and the secrets hold valid tokens of that tunnel.

Rotations: every step of a rotation delivered twice, and two rotate-secret calls at the same time
(Secrets Manager reattempts the unfinished rotation of the first while its steps still run). A
rotation that both calls report as done must leave a valid token; one that fails must say so,
and the next rotate-secret must then leave a valid token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from secure_tunnel_handler.rotation import RotationError
from tests.reliability.environments import new_environment
from tests.reliability.ledger import LEDGER
from tests.reliability.stack import EVENTS, ROTATIONS, Stage, check_rotation_settled, check_settled
from tests.reliability.world import Delivery, Rotated, World, wait_until
from tests.rig.cloudformation import LambdaContext
from tests.rig.harness import Handler
from tests.rig.secrets_rotation import STEPS

HOLD = 0.3  # seconds a call is held so that two deliveries overlap


def _twice(world: World, stage: Stage, *, at_once: bool) -> Delivery:
    """Deliver ``stage``'s event twice with one RequestId and ResponseURL; returns every response."""
    request_id, url = f"dup-{time.monotonic_ns()}", world.rig.cloudformation.new_url()

    def deliver(handler: Handler) -> None:
        world.deliver(
            stage.request_type,
            stage.properties,
            physical_id=stage.physical_id,
            old_properties=stage.old_properties,
            request_id=request_id,
            response_url=url,
            handler=handler,
        )

    if at_once:
        _in_parallel([partial(deliver, new_environment()) for _ in range(2)])
    else:
        deliver(world.handler)
        deliver(world.handler)
    return Delivery(request_id, world.responses_for(request_id))


def _in_parallel(calls: list[Callable[[], object]]) -> None:
    """Run the calls in threads started together; re-raise the first error."""
    start = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        start.wait()
        try:
            call()
        except BaseException as exc:  # the test thread reports it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a delivery never returned"
    if errors:
        raise errors[0]


def _held_for_overlap(world: World) -> None:
    """Hold the calls that open, rotate or close, so that two deliveries overlap."""
    for operation in ("OpenTunnel", "RotateTunnelAccessToken", "CloseTunnel"):
        world.proxies.tunnels.delay(operation, HOLD)


def _expected_references(world: World, stage: Stage, delivery: Delivery) -> set[str]:
    """Play CloudFormation's side after the first response; returns what it references."""
    world.proxies.clear()
    pid = delivery.physical_id
    if stage.request_type == "Delete":
        return set(stage.kept)
    if stage.request_type == "Update" and pid != stage.physical_id:
        cleanup = world.deliver("Delete", stage.old_properties or {}, physical_id=stage.physical_id)
        assert cleanup.status == "SUCCESS", cleanup.reason
    return {pid}


@pytest.mark.parametrize("at_once", [False, True], ids=["one after the other", "at the same time"])
@pytest.mark.parametrize("event", list(EVENTS))
def test_an_event_delivered_twice(world: World, event: str, at_once: bool) -> None:
    with LEDGER.scenario("duplicates"):
        stage = EVENTS[event](world)
        world.proxies.clear()
        if at_once:
            _held_for_overlap(world)
        delivery = _twice(world, stage, at_once=at_once)
        opened = sum(1 for c in world.proxies.tunnels.recorded() if c.operation == "OpenTunnel")

        assert len(delivery.responses) == 2, "each delivery answers"
        assert {r["Status"] for r in delivery.responses} == {"SUCCESS"}, [
            r["Reason"] for r in delivery.responses
        ]
        assert len({r["PhysicalResourceId"] for r in delivery.responses}) == 1, "both name one tunnel"
        rotated = sum(1 for c in world.proxies.tunnels.recorded() if c.operation == "RotateTunnelAccessToken")
        if event == "Update in place":
            # The request is claimed in the source secret: the duplicate rotates nothing and
            # reports what the claimant wrote, so no secret is left with a revoked token.
            assert rotated == 1, f"{rotated} rotations for one request"
        referenced = _expected_references(world, stage, delivery)
        check_settled(world, referenced, {stage.before, delivery.physical_id, *stage.kept})
        LEDGER.rows.append(
            (
                "duplicates",
                f"{event} delivered twice, {'at the same time' if at_once else 'one after the other'}",
                f"{delivery.status}, OpenTunnel calls: {opened}, rotations: {rotated}",
            )
        )


# --- a Delete racing a Create --------------------------------------------------------------------


MARGIN = 0.5  # the handler's safety margin, scaled down from 20 s
LAMBDA_SECONDS = 1.2  # crhelper's timer fires at 0.7 s, when the handler's deadline passes


def _create_in_flight(world: World, props: dict[str, Any], request_id: str) -> threading.Thread:
    """Start a Create in its own execution environment, with a short Lambda time."""
    handler = new_environment(safety_margin=MARGIN)

    def create() -> None:
        world.deliver(
            "Create", props, request_id=request_id, handler=handler, context=LambdaContext(LAMBDA_SECONDS)
        )

    thread = threading.Thread(target=create)
    thread.start()
    return thread


def _delete_during_create(world: World, request_id: str) -> tuple[Delivery, Delivery]:
    """Start a slow Create; once crhelper's timer has answered, deliver CloudFormation's Delete of
    the id it was given; return both once the Create has finished."""
    props = world.rig.properties()
    creating = _create_in_flight(world, props, request_id)
    assert wait_until(lambda: bool(world.responses_for(request_id)), timeout=5), "no timeout response"
    first = Delivery(request_id, world.responses_for(request_id))
    deleted = world.deliver("Delete", props, physical_id=first.physical_id)
    creating.join(timeout=30)
    assert not creating.is_alive()
    return first, deleted


def test_a_delete_of_the_id_from_a_timed_out_create_while_it_still_runs(
    world: World,
) -> None:
    """The Create is slow; crhelper's timer answers FAILED before OpenTunnel returns, and
    CloudFormation at once deletes the id it was given, while the Create still runs."""
    with LEDGER.scenario("duplicates"):
        world.proxies.tunnels.delay("OpenTunnel", 1.0)
        first, deleted = _delete_during_create(world, "create-in-flight")

        assert first.status == "FAILED" and deleted.status == "SUCCESS", (first.reason, deleted.reason)
        assert len(world.responses_for(first.request_id)) == 1, "CloudFormation got a second response"
        check_settled(world, set(), {None, first.physical_id})
        LEDGER.rows.append(("duplicates", "Delete while the Create's OpenTunnel runs", "nothing left open"))


def test_a_delete_while_the_create_writes_the_secrets(world: World) -> None:
    """crhelper's timer answers FAILED after OpenTunnel returned (the response names the tunnel);
    CloudFormation's Delete of that tunnel races the Create writing its secrets."""
    with LEDGER.scenario("duplicates"):
        world.proxies.secrets.delay("PutSecretValue", 1.0)
        first, deleted = _delete_during_create(world, "create-writing")

        assert first.status == "FAILED" and deleted.status == "SUCCESS", (first.reason, deleted.reason)
        assert world.rig.tunnels.tunnel(first.physical_id) is None, "the timeout response named the tunnel"
        check_settled(world, set(), {None, first.physical_id})
        LEDGER.rows.append(("duplicates", "Delete while the Create writes the secrets", "nothing left open"))


def test_a_redelivered_create_racing_the_delete(world: World) -> None:
    """The Create succeeded and the stack is being deleted when a duplicate of the Create arrives."""
    with LEDGER.scenario("duplicates"):
        props = world.rig.properties()
        request_id, url = "create-then-dup", world.rig.cloudformation.new_url()
        created = world.deliver("Create", props, request_id=request_id, response_url=url)
        world.proxies.tunnels.delay("CloseTunnel", HOLD)
        delete_handler, dup_handler = new_environment(), new_environment()
        _in_parallel(
            [
                lambda: world.deliver(
                    "Delete", props, physical_id=created.physical_id, handler=delete_handler
                ),
                lambda: world.deliver(
                    "Create", props, request_id=request_id, response_url=url, handler=dup_handler
                ),
            ]
        )
        world.proxies.clear()

        assert created.status == "SUCCESS"
        check_settled(world, set(), {None, created.physical_id})
        LEDGER.rows.append(("duplicates", "a duplicate Create racing the Delete", "nothing left open"))


# --- rotations -----------------------------------------------------------------------------------


def _rotations_of(world: World, stage: Stage) -> int:
    """RotateTunnelAccessToken calls made for the rotated secret's client mode."""
    mode = stage.rotates.upper()
    return sum(
        1
        for c in world.proxies.tunnels.recorded()
        if c.operation == "RotateTunnelAccessToken" and ("clientMode", mode) in c.details
    )


def _check_rotated(world: World, stage: Stage, old_token: str) -> None:
    """Settled: a new, valid token in the rotated secret, both secrets on the stack's tunnel,
    nothing unfinished."""
    check_settled(world, {str(stage.physical_id)}, {stage.before})
    check_rotation_settled(world, world.secret_arn(stage.rotates), old_token)


@pytest.mark.parametrize("event", list(ROTATIONS))
def test_every_step_of_a_rotation_delivered_twice(world: World, event: str) -> None:
    """Secrets Manager (or Lambda) delivers each step again after it ran: the repeat changes nothing."""
    with LEDGER.scenario("duplicates"):
        stage = ROTATIONS[event](world)
        arn = world.secret_arn(stage.rotates)
        old_token = world.rig.secret(arn)["accessToken"]
        world.proxies.clear()
        world.rotation.run_steps = False
        version = world.rig.secrets.rotate_secret(SecretId=arn)["VersionId"]
        for step in STEPS:
            for _ in range(2):
                world.handler(world.rotation.step_event(arn, version, step), LambdaContext())

        assert _rotations_of(world, stage) == 1, "a repeated createSecret rotated the token again"
        _check_rotated(world, stage, old_token)
        LEDGER.rows.append(("duplicates", f"{event}: every step delivered twice", "SUCCESS, 1 rotation"))


@pytest.mark.parametrize("event", list(ROTATIONS))
def test_two_rotations_of_one_secret_at_the_same_time(world: World, event: str) -> None:
    """A second rotate-secret while the first one's createSecret runs: Secrets Manager reattempts
    the unfinished rotation, so two createSecret invocations of one version overlap."""
    with LEDGER.scenario("duplicates"):
        stage = ROTATIONS[event](world)
        arn = world.secret_arn(stage.rotates)
        old_token = world.rig.secret(arn)["accessToken"]
        world.proxies.clear()
        world.proxies.tunnels.delay("RotateTunnelAccessToken", HOLD)
        world.rotation.environments = [new_environment(), new_environment()]
        results: list[Rotated] = []
        first = threading.Thread(target=lambda: results.append(world.rotate(stage.rotates)))
        first.start()
        assert wait_until(lambda: _rotations_of(world, stage) > 0, timeout=10), "no rotation started"
        second = world.rotate(stage.rotates)
        first.join(timeout=30)
        assert not first.is_alive() and results, "the first rotate-secret never returned"
        world.proxies.clear()

        outcomes = [results[0], second]
        for rotated in outcomes:
            assert rotated.failure is None or isinstance(rotated.failure[1], RotationError), rotated.reason
        valid = world.rig.tunnels.is_token_valid(world.rig.secret(arn)["accessToken"])
        if all(r.status == "SUCCESS" for r in outcomes):
            assert valid, "both rotations reported success, but the secret holds a revoked token"
        else:
            # The failure told the operator to rotate again: that must heal the secret.
            healed = world.rotate(stage.rotates)
            assert healed.status == "SUCCESS", healed.reason
        _check_rotated(world, stage, old_token)
        summary = "; ".join(
            f"{r.status}" + (f" at {r.failed_step}: {r.reason}" if r.failure else "") for r in outcomes
        )
        LEDGER.rows.append(
            (
                "duplicates",
                f"{event}: two rotate-secret calls at the same time",
                f"{summary}; token valid before any retry: {valid}",
            )
        )
