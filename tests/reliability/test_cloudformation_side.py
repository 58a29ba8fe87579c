"""CloudFormation's side failing: the response PUT refused or unreachable, the Lambda time running out.

- A refused response (the receiver answers 403, as S3 does for an expired pre-signed URL):
  CloudFormation never reads it, times the request out and goes on as for a failure.
- An unreachable receiver (connection refused): the handler must still return before the Lambda
  time is up, and CloudFormation goes on as for a refused response.
- The Lambda time running out mid-event: crhelper's timer sends FAILED "Execution timed out"
  half a second before the end while the handler is still working; a call is held long enough
  (at the wire) for that to happen at each step of each event. The handler's safety margin is
  scaled down from 20 s to 0.4 s so that each case takes under a second.

For each: CloudFormation gets exactly one response (what it acts on is the first), it names a
physical id CloudFormation can use, no OPEN tunnel is left that CloudFormation does not
reference, and once CloudFormation's side has run to the end, the secrets hold valid tokens of
the tunnel it references.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass

import pytest

from secure_tunnel_handler import entrypoint
from tests.reliability.ledger import LEDGER
from tests.reliability.stack import (
    EVENTS,
    Stage,
    check_secrets_agree,
    check_settled,
    referenced_after,
    settle,
)
from tests.reliability.world import Delivery, World, wait_until
from tests.rig.cloudformation import STACK_NAME, LambdaContext

# The handler stops retrying the PUT 2 s before the Lambda timeout: 0.6 s of retries here.
LAMBDA_FOR_RETRIES = 2.6
# CloudFormation never learned a physical id for a Create it timed out: its Delete carries
# one that is no tunnel id.
UNKNOWN_ID = f"{STACK_NAME}_Tunnel_NORESPONSE"


def _timed_out(stage: Stage, request_id: str) -> Delivery:
    """What CloudFormation concludes when no response arrives before ServiceTimeout."""
    physical_id = stage.physical_id or UNKNOWN_ID
    body = {"Status": "FAILED", "PhysicalResourceId": physical_id, "Reason": "no response in time"}
    return Delivery(request_id, [body])


def _unheard_outcome(world: World, stage: Stage, request_id: str) -> None:
    """CloudFormation did not hear the response: it fails the request and goes on from there."""
    timed_out = _timed_out(stage, request_id)
    assert not world.orphans(referenced_after(stage, timed_out)), "an unreferenced tunnel is OPEN"
    check_secrets_agree(world, {stage.before, *stage.kept}, "after the event")
    check_settled(world, settle(world, stage, timed_out), {stage.before, *stage.kept})


# --- the response refused ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 500], ids=["403 (expired URL)", "500"])
@pytest.mark.parametrize("event", list(EVENTS))
def test_a_refused_response_leaves_nothing_cloudformation_does_not_know(
    world: World, event: str, status: int
) -> None:
    with LEDGER.scenario("responses"):
        stage = EVENTS[event](world)
        world.rig.cloudformation.status = status
        started = time.monotonic()
        delivery = world.deliver(
            stage.request_type,
            stage.properties,
            physical_id=stage.physical_id,
            old_properties=stage.old_properties,
            context=LambdaContext(LAMBDA_FOR_RETRIES),
        )
        elapsed = time.monotonic() - started
        world.rig.cloudformation.status = 200

        bodies = {json.dumps(r, sort_keys=True) for r in delivery.responses}
        assert len(bodies) == 1, "one response, however often it was PUT"
        if status == 403:
            assert len(delivery.responses) == 1, "a 4xx is final: no retry"
        assert elapsed < LAMBDA_FOR_RETRIES, f"the handler took {elapsed:.1f} s"
        _unheard_outcome(world, stage, delivery.request_id)
        puts = len(delivery.responses)
        LEDGER.rows.append(("responses", f"{event} / PUT answered {status}", f"{puts} PUT(s), nothing left"))


# --- the receiver unreachable --------------------------------------------------------------------


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"https://localhost:{port}/cfn-response/unreachable?X-Amz-Signature=test"


@pytest.mark.parametrize("event", ["Create", "Update with replacement"])
def test_an_unreachable_receiver_does_not_hold_the_function_for_ever(world: World, event: str) -> None:
    with LEDGER.scenario("responses"):
        stage = EVENTS[event](world)
        lambda_seconds = LAMBDA_FOR_RETRIES
        started = time.monotonic()
        delivery = world.deliver(
            stage.request_type,
            stage.properties,
            physical_id=stage.physical_id,
            old_properties=stage.old_properties,
            response_url=_closed_port_url(),
            context=LambdaContext(lambda_seconds),
        )
        elapsed = time.monotonic() - started

        assert elapsed < lambda_seconds, f"the handler was still sending after {elapsed:.1f} s"
        assert not delivery.responses
        _unheard_outcome(world, stage, delivery.request_id)
        LEDGER.rows.append(("responses", f"{event} / receiver unreachable", f"returned in {elapsed:.1f} s"))


# --- the Lambda time running out -----------------------------------------------------------------

MARGIN = 0.4  # the handler's safety margin, scaled down from 20 s
LAMBDA_SECONDS = 0.9  # crhelper's timer fires at 0.4 s; the handler's deadline passes at 0.5 s
HOLD = 0.7  # how long the slow call is held


@dataclass(frozen=True)
class SlowCall:
    """The call held long enough for crhelper's timer to fire during or just after it."""

    event: str
    service: str
    operation: str
    when: str


SLOW_CALLS = (
    SlowCall("Create", "tunnels", "ListTunnels", "before OpenTunnel is sent"),
    SlowCall("Create", "tunnels", "OpenTunnel", "while OpenTunnel runs"),
    SlowCall("Create", "secrets", "PutSecretValue", "while the secrets are written"),
    SlowCall("Update in place", "tunnels", "RotateTunnelAccessToken", "while the tokens rotate"),
    SlowCall("Update in place", "secrets", "PutSecretValue", "while the secrets are written"),
    SlowCall("Update with replacement", "tunnels", "OpenTunnel", "while OpenTunnel runs"),
    SlowCall("Update with replacement", "secrets", "PutSecretValue", "while the secrets are written"),
    SlowCall("Delete", "tunnels", "CloseTunnel", "while CloseTunnel runs"),
    SlowCall(
        "Delete after a rolled-back replacement",
        "secrets",
        "UpdateSecretVersionStage",
        "while the secrets are restored",
    ),
)


@pytest.mark.parametrize("slow", SLOW_CALLS, ids=[f"{s.event}-{s.when}" for s in SLOW_CALLS])
def test_the_lambda_time_running_out(world: World, monkeypatch: pytest.MonkeyPatch, slow: SlowCall) -> None:
    with LEDGER.scenario("timeouts"):
        stage = EVENTS[slow.event](world)
        monkeypatch.setattr(entrypoint, "SAFETY_MARGIN_SECONDS", MARGIN)
        proxy = world.proxies.tunnels if slow.service == "tunnels" else world.proxies.secrets
        proxy.delay(slow.operation, HOLD)
        delivery = world.deliver(
            stage.request_type,
            stage.properties,
            physical_id=stage.physical_id,
            old_properties=stage.old_properties,
            context=LambdaContext(LAMBDA_SECONDS),
        )
        world.proxies.clear()
        monkeypatch.undo()
        # crhelper's timer PUTs from its own thread: let a late PUT land before counting.
        wait_until(lambda: bool(world.responses_for(delivery.request_id)), timeout=5)
        time.sleep(0.2)
        delivery = Delivery(delivery.request_id, world.responses_for(delivery.request_id))

        assert delivery.status == "FAILED", delivery.first
        assert delivery.reason == "Execution timed out", delivery.reason
        assert len(delivery.responses) == 1, [r["Status"] for r in delivery.responses]
        if stage.physical_id:
            assert delivery.physical_id == stage.physical_id, "the timeout response changed the id"
        assert delivery.physical_id, "the timeout response has no physical id"
        assert not world.orphans(referenced_after(stage, delivery)), "an unreferenced tunnel is OPEN"
        allowed = {stage.before, delivery.physical_id, *stage.kept}
        check_secrets_agree(world, allowed, "after the event")
        check_settled(world, settle(world, stage, delivery), allowed)
        LEDGER.rows.append(("timeouts", f"{slow.event} / {slow.when}", f"FAILED: {delivery.reason}"))


# --- the last OpenTunnel answer lost at the deadline ------------------------------------------


@pytest.mark.parametrize("request_type", ["Create", "Update with replacement"])
def test_a_lost_open_tunnel_answer_with_no_retry_left_leaves_no_tunnel_open(
    world: World, monkeypatch: pytest.MonkeyPatch, request_type: str
) -> None:
    # OpenTunnel takes effect but its answer is lost, and the deadline leaves no time for a
    # retry (which would find the tunnel): the handler must look for it and close it.
    with LEDGER.scenario("timeouts"):
        stage = EVENTS["Create" if request_type == "Create" else "Update with replacement"](world)
        # A margin above crhelper's 0.5 s timer, so that the handler's own answer goes first;
        # the deadline (0.4 s) passes while OpenTunnel is held (0.5 s).
        monkeypatch.setattr(entrypoint, "SAFETY_MARGIN_SECONDS", 1.0)
        world.proxies.clear()
        world.proxies.tunnels.delay("OpenTunnel", 0.5)
        world.proxies.tunnels.fail("OpenTunnel", "connection", 0, mode="lose")
        delivery = world.deliver(
            stage.request_type,
            stage.properties,
            physical_id=stage.physical_id,
            old_properties=stage.old_properties,
            context=LambdaContext(1.4),
        )
        monkeypatch.undo()
        opened = [c for c in world.proxies.tunnels.recorded() if c.operation == "OpenTunnel"]

        assert len(opened) == 1, "the deadline left no retry"
        assert delivery.status == "FAILED", delivery.reason
        assert delivery.reason.startswith("Opening the tunnel failed"), delivery.reason
        assert any(c.operation == "CloseTunnel" for c in world.proxies.tunnels.recorded())
        assert not world.orphans(referenced_after(stage, delivery)), "an unreferenced tunnel is OPEN"
        world.proxies.clear()
        check_settled(world, settle(world, stage, delivery), {stage.before, *stage.kept})
        LEDGER.rows.append(("timeouts", f"{request_type}: last OpenTunnel answer lost", delivery.status))
