"""Faults: every AWS call of every lifecycle event failing in turn, with every kind of failure.

For each event the calls are first recorded from a fault-free run (both services, at the
wire); then each call in turn is failed with each fault kind, and CloudFormation's side is
played to the end: a failed Create is deleted, a failed Update rolled back, a failed Delete
retried, a replaced tunnel deleted in the clean-up phase. A rotation of a token secret (all
four steps of one rotate-secret) is an event too; a failed one is retried by Secrets Manager at
the next rotate-secret, after a stack update if its tunnel is gone. Checked for every scenario:

- the status CloudFormation receives is the expected one, with exactly one response (for a
  rotation: the step that failed raised a RotationError, which Secrets Manager records);
- a FAILED reason names the step and the error code, within 256 characters;
- right after the event and once the stack settled, no OPEN tunnel that CloudFormation does not
  reference;
- the two secrets always agree on one tunnel, the previous or the new one; once settled they
  hold valid tokens of the tunnel CloudFormation references. After a rotation the secret holds
  its previous token or a new, valid one, the other secret's token is never revoked, and once
  settled the secret holds a new token and no rotation is left unfinished.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from secure_tunnel_handler.entrypoint import SAFETY_MARGIN_SECONDS
from secure_tunnel_handler.retries import Retrier
from secure_tunnel_handler.rotation import RotationError
from tests.reliability.fault_proxy import ANY, FOREVER, Call, FaultProxy
from tests.reliability.ledger import LEDGER
from tests.reliability.stack import (
    EVENTS,
    ROTATIONS,
    Stage,
    check_rotation_settled,
    check_secrets_agree,
    check_settled,
    referenced_after,
    send,
    settle,
)
from tests.reliability.world import Delivery, Rotated, World
from tests.rig.cloudformation import LambdaContext

# --- the faults -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultKind:
    """One way a call can fail, as each service would answer it."""

    name: str
    tunnels_code: str
    secrets_code: str
    status: int
    times: int = FOREVER
    mode: str = "refuse"
    #: Retries must absorb it: the event succeeds.
    transient: bool = False
    #: Seconds of Lambda time beyond the handler's safety margin (None: a 300 s function).
    retry_window: float | None = None

    def code(self, service: str) -> str:
        """The error code ``service`` answers."""
        return self.tunnels_code if service == "tunnels" else self.secrets_code


KINDS = (
    FaultKind("throttled x3", "ThrottlingException", "ThrottlingException", 400, times=3, transient=True),
    FaultKind("500 once", "InternalFailureException", "InternalServiceError", 500, times=1, transient=True),
    # The request took effect but the answer never came back (a dropped connection).
    FaultKind("answer lost", "connection", "connection", 0, times=1, mode="lose", transient=True),
    # Retries go on until the handler's deadline: a short Lambda timeout keeps that quick.
    FaultKind("500 for ever", "InternalFailureException", "InternalServiceError", 500, retry_window=0.15),
    FaultKind("access denied", "AccessDeniedException", "AccessDeniedException", 403),
    FaultKind("not found", "ResourceNotFoundException", "ResourceNotFoundException", 400),
    FaultKind("open-tunnel limit", "LimitExceededException", "LimitExceededException", 400),
)
# Lambda stops a rotation step that runs out of time at any point: the call took effect, its
# answer is lost and the function makes no further progress (every later call fails until the
# short deadline). CloudFormation events have their own timeout matrix, with crhelper's timer
# (test_cloudformation_side.py); a rotation has no timer: Secrets Manager just sees the step fail.
KILLED = FaultKind("Lambda timed out after the call", "connection", "connection", 0, times=1, mode="kill",
                   retry_window=0.15)  # fmt: skip
BLACKOUT = {"tunnels": "InternalFailureException", "secrets": "InternalServiceError"}

# Tunnel calls that act on one tunnel: "not found" really deletes it before the call.
TUNNEL_TARGETED = frozenset(
    {
        "DescribeTunnel",
        "CloseTunnel",
        "RotateTunnelAccessToken",
        "TagResource",
        "UntagResource",
    }
)
PENDING_STAGE = (("VersionStage", "AWSPENDING"),)
# The step each call belongs to, as the FAILED reason must name it.
STEPS = {
    "ListTunnels": ("Opening the tunnel",),
    "OpenTunnel": ("Opening the tunnel",),
    # Restoring: after a rolled-back replacement, the destination secret gets a new token.
    "PutSecretValue": ("Writing the token secrets", "Claiming the update", "Restoring the token secrets"),
    # Opening: the look-up of the tunnel an earlier delivery of the request opened.
    "DescribeTunnel": ("Reading the tunnel", "Restoring the token secrets", "Opening the tunnel"),
    # Restoring: the device is sent a new destination token of the tunnel the secrets go back to.
    "RotateTunnelAccessToken": ("Rotating the access tokens", "Restoring the token secrets"),
    "TagResource": ("Updating the tunnel's tags",),
    "UntagResource": ("Updating the tunnel's tags",),
    "CloseTunnel": ("Closing the tunnel",),
    "GetSecretValue": ("Restoring the token secrets",),
    "UpdateSecretVersionStage": ("Restoring the token secrets",),
}


@dataclass(frozen=True)
class Slot:
    """One recorded call of an event: which service, which operation, which occurrence."""

    service: str
    call: Call
    #: Index among earlier calls that the same matcher accepts.
    occurrence: int
    role: str = ""
    #: Made after OpenTunnel returned (the look-up for a concurrent duplicate delivery).
    after_open: bool = False

    @property
    def label(self) -> str:
        """e.g. ``PutSecretValue(source)`` or ``DescribeTunnel#2``."""
        details = ", ".join(v for k, v in self.call.details if k == "VersionStage")
        inside = ", ".join(x for x in (self.role, details) if x)
        suffix = f"#{self.occurrence + 1}" if self.occurrence else ""
        return f"{self.call.operation}{f'({inside})' if inside else ''}{suffix}"

    def matches(self, call: Call, role: str) -> bool:
        """Same operation; for secrets also the same secret (by role: ARNs change per run) and
        details. Tunnel calls match on the operation alone (tunnel ids change per run)."""
        if call.operation != self.call.operation:
            return False
        return self.service == "tunnels" or (role, call.details) == (self.role, self.call.details)


ALL_EVENTS = {**EVENTS, **ROTATIONS}
_RECORDED: dict[str, list[Slot]] = {}


def recorded_slots(world: World, event: str) -> list[Slot]:
    """The calls of ``event``, recorded once per session (each fault kind fails them in turn)."""
    if event not in _RECORDED:
        _RECORDED[event] = record_slots(world, ALL_EVENTS[event])
    return _RECORDED[event]


def record_slots(world: World, prepare: Callable[[World], Stage]) -> list[Slot]:
    """The calls a fault-free run of the event makes, in order (tunnel calls, then secret calls)."""
    world.reset()
    stage = prepare(world)
    world.proxies.clear()
    delivery = _send(world, stage, None)
    assert delivery.status == "SUCCESS", delivery.reason
    slots: list[Slot] = []
    for service, proxy in (("tunnels", world.proxies.tunnels), ("secrets", world.proxies.secrets)):
        seen: list[Slot] = []
        for call in proxy.recorded():
            role = world.secret_role(call.target or "") if service == "secrets" else ""
            probe = Slot(service, call, 0, role)
            occurrence = sum(1 for s in seen if probe.matches(s.call, s.role))
            after_open = any(s.call.operation == "OpenTunnel" for s in seen)
            seen.append(Slot(service, call, occurrence, role, after_open))
        slots.extend(seen)
    return slots


# --- one scenario ---------------------------------------------------------------------------


@dataclass
class Armed:
    """A fault in place, and what the checks must know about it."""

    #: Secrets the handler was told are gone: checks skip them, as if they had been deleted.
    missing: frozenset[str] = frozenset()


def arm(world: World, slot: Slot, kind: FaultKind, stage: Stage) -> Armed:
    """Make the slot's call (and, for lasting faults, every later matching call) fail."""
    service_proxy: FaultProxy = world.proxies.tunnels if slot.service == "tunnels" else world.proxies.secrets
    mode, before = kind.mode, None
    if kind.name == "not found" and slot.call.operation in TUNNEL_TARGETED:
        # Realistic: the tunnel is deleted just before the call; the emulator answers by itself.
        mode, before = "forward", _deleting(world)
    if kind is KILLED:
        mode, before = "lose", _blacking_out(world)
    service_proxy.fail(
        slot.call.operation,
        kind.code(slot.service),
        kind.status,
        match=lambda call: slot.matches(call, world.secret_role(call.target or "")),
        times=kind.times,
        skip=slot.occurrence,
        mode=mode,
        before=before,
    )
    # On a CloudFormation event a secret that is not found is treated as deleted. A rotation step
    # cannot tell that apart from any other failed read: the secret is there for the checks.
    gone = kind.name == "not found" and slot.call.operation == "GetSecretValue" and not stage.rotates
    arn = world.secret_arn(slot.role)
    return Armed(missing=frozenset({arn}) if gone else frozenset())


def _blacking_out(world: World) -> Callable[[Call], None]:
    """From this call on, every call of either service fails (the function is no more)."""

    def black_out(_: Call) -> None:
        for service, proxy in (("tunnels", world.proxies.tunnels), ("secrets", world.proxies.secrets)):
            proxy.fail(ANY, BLACKOUT[service], 500)

    return black_out


def _deleting(world: World) -> Callable[[Call], None]:
    def delete(call: Call) -> None:
        tunnel_id = (call.target or "").rpartition("tunnel/")[2] or (call.target or "")
        body = json.dumps({"tunnelId": tunnel_id, "delete": True}).encode()
        world.rig.tunnels.handle("IoTSecuredTunneling.CloseTunnel", body)

    return delete


def expected_status(event: str, slot: Slot, kind: FaultKind) -> str:
    """What CloudFormation must receive when ``slot`` fails with ``kind`` during ``event``."""
    if kind.transient:
        return "SUCCESS"
    if event.startswith("Rotation"):
        # Any lasting fault stops the rotation (Secrets Manager retries it later), but the last
        # call: AWSPENDING left on the new AWSCURRENT version is a finished rotation.
        last = slot.call.operation == "UpdateSecretVersionStage" and slot.call.details == PENDING_STAGE
        return "SUCCESS" if last else "FAILED"
    op, updating, deleting = slot.call.operation, event.startswith("Update"), event.startswith("Delete")
    if slot.after_open and op in ("ListTunnels", "DescribeTunnel"):
        return "SUCCESS"  # the look-up for a concurrent duplicate is best effort
    tolerated = {
        # A tunnel that is gone is replaced on Update, already done on Delete; looking for an
        # earlier delivery's tunnel, one that is gone, or denied (another owner's), is not it.
        ("not found", "CloseTunnel"): deleting,
        ("not found", "DescribeTunnel"): updating
        or _is_lookup(event, slot)
        or event == "Delete after a rolled-back replacement",
        ("access denied", "DescribeTunnel"): _is_lookup(event, slot),
        # A secret that is gone has nothing to restore.
        ("not found", "GetSecretValue"): deleting,
    }
    return "SUCCESS" if tolerated.get((kind.name, op), False) else "FAILED"


def _is_lookup(event: str, slot: Slot) -> bool:
    """Whether a DescribeTunnel looks for the tunnel an earlier delivery of the request opened
    (in an Update, the first one reads the resource's own tunnel)."""
    return event == "Create" or (event == "Update with replacement" and slot.occurrence > 0)


def _send(world: World, stage: Stage, kind: FaultKind | None) -> Delivery | Rotated:
    window = kind.retry_window if kind else None
    return send(world, stage, LambdaContext(SAFETY_MARGIN_SECONDS + window) if window is not None else None)


def check_reason(delivery: Delivery, slot: Slot, kind: FaultKind) -> None:
    """A FAILED reason names the failing step and the error, and stays short."""
    reason = delivery.reason
    assert len(reason) <= 256, reason
    assert reason.startswith(tuple(f"{step} failed" for step in STEPS[slot.call.operation])), reason
    code = kind.code(slot.service)
    if code != "connection":
        assert f"({code})" in reason, reason
    if code == "LimitExceededException":
        assert ("limit of open tunnels" in reason) == (slot.call.operation == "OpenTunnel"), reason
    if kind.name == "access denied":
        assert "access denied" in reason, reason


def check_rotation_reason(rotated: Rotated, slot: Slot, kind: FaultKind) -> None:
    """A failed rotation step raised a RotationError that names the step (or the gone tunnel),
    the error code and the secret or tunnel."""
    assert rotated.failure is not None
    exc, reason = rotated.failure[1], rotated.reason
    assert isinstance(exc, RotationError), f"{type(exc).__name__}: {reason}"
    assert rotated.secret_arn in reason or rotated.tunnel_id in reason, reason
    if kind.name == "not found" and slot.call.operation in TUNNEL_TARGETED:
        assert f"Tunnel {rotated.tunnel_id} no longer exists" in reason, reason
        assert "update the stack" in reason, reason
        return
    if kind.name == "not found" and (slot.call.operation, slot.call.details) == (
        "GetSecretValue",
        PENDING_STAGE,
    ):
        # Secrets Manager's answer while createSecret has not stored the new token yet.
        assert "holds no token: createSecret has not completed" in reason, reason
        return
    code = kind.code(slot.service)
    expected = f"{rotated.failed_step} failed" + ("" if code == "connection" else f" ({code})")
    assert expected in reason, reason
    if kind.name == "access denied":
        assert "access denied" in reason, reason


def check_rotation_tokens(world: World, rotated: Rotated, old_token: str | None) -> None:
    """The rotated secret holds its previous token or a new, valid one; the other secret's token
    is never revoked (while the tunnel exists: a "not found" fault deletes it)."""
    if world.rig.tunnels.tunnel(rotated.tunnel_id) is None:
        return
    (other,) = {world.rig.source_secret, world.rig.destination_secret} - {rotated.secret_arn}
    assert world.rig.tunnels.is_token_valid(world.rig.secret(other)["accessToken"]), (
        "the other secret's token was revoked"
    )
    now = world.rig.secret(rotated.secret_arn)["accessToken"]
    assert now == old_token or world.rig.tunnels.is_token_valid(now), "AWSCURRENT moved to a revoked token"


def check_answer(event: str, delivery: Delivery, slot: Slot, kind: FaultKind) -> None:
    """CloudFormation got one response, with the expected status and a clear reason."""
    assert len(delivery.responses) == 1, f"{len(delivery.responses)} responses"
    expected = expected_status(event, slot, kind)
    assert delivery.status == expected, f"expected {expected}, got {delivery.status}: {delivery.reason}"
    if delivery.status == "FAILED":
        check_reason(delivery, slot, kind)


def check_rotation_answer(event: str, rotated: Rotated, slot: Slot, kind: FaultKind) -> Rotated:
    """The rotation ended as expected, with a clear error if it failed. Returns the rotation as
    Secrets Manager saw it (a killed step failed)."""
    if kind is KILLED:
        # Whatever the function would have answered, Lambda stopped it: the step failed.
        return rotated.timed_out()
    expected = expected_status(event, slot, kind)
    assert rotated.status == expected, f"expected {expected}, got {rotated.status}: {rotated.reason}"
    if rotated.status == "FAILED":
        check_rotation_reason(rotated, slot, kind)
    return rotated


def run_scenario(world: World, event: str, slot: Slot, kind: FaultKind) -> str:
    """Fail ``slot`` with ``kind`` during ``event``; check everything; returns the outcome."""
    stage = ALL_EVENTS[event](world)
    old_token = world.rig.secret(world.secret_arn(stage.rotates))["accessToken"] if stage.rotates else None
    world.proxies.clear()
    armed = arm(world, slot, kind, stage)
    delivery = _send(world, stage, kind)
    fired = len(world.proxies.tunnels.faulted) + len(world.proxies.secrets.faulted)

    assert fired, "the fault never fired: the call was not made"
    if isinstance(delivery, Rotated):
        check_rotation_tokens(world, delivery, old_token)
        delivery = check_rotation_answer(event, delivery, slot, kind)
    else:
        check_answer(event, delivery, slot, kind)
    assert not world.orphans(referenced_after(stage, delivery)), "an unreferenced tunnel is OPEN"
    allowed = {stage.before, delivery.physical_id, *stage.kept}
    check_secrets_agree(world, allowed, "after the event", armed.missing)
    check_settled(world, settle(world, stage, delivery), allowed, armed.missing)
    if isinstance(delivery, Rotated):
        check_rotation_settled(world, delivery.secret_arn, old_token)
        if delivery.failure:
            return f"FAILED at {delivery.failed_step}: {delivery.reason}"
    return f"{delivery.status}: {delivery.reason}" if delivery.reason else delivery.status


# --- the matrix -----------------------------------------------------------------------------


# Backoff waits are scaled down in this matrix (attempt counts and deadlines are not): its faults
# are counted, not timed, so waiting less changes no outcome, and the matrix runs in half the time.
BACKOFF_SCALE = 0.2


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scale the handler's retry waits by BACKOFF_SCALE for one test."""
    backoff = Retrier._backoff
    monkeypatch.setattr(Retrier, "_backoff", lambda self, attempt: BACKOFF_SCALE * backoff(self, attempt))


MATRIX = [(event, kind) for event in EVENTS for kind in KINDS]
MATRIX += [(event, kind) for event in ROTATIONS for kind in (*KINDS, KILLED)]


@pytest.mark.usefixtures("quick_backoff")
@pytest.mark.parametrize(("event", "kind"), MATRIX, ids=[f"{e}-{k.name}" for e, k in MATRIX])
def test_every_call_of_the_event_failing_in_turn(world: World, event: str, kind: FaultKind) -> None:
    slots = recorded_slots(world, event)
    assert slots, "the event made no call"
    failures = []
    matrix = "timeouts" if kind is KILLED else "faults"
    for slot in slots:
        world.reset()
        try:
            with LEDGER.scenario(matrix):
                outcome = run_scenario(world, event, slot, kind)
            LEDGER.rows.append((matrix, f"{event} / {slot.label} / {kind.name}", outcome))
        except AssertionError as exc:
            LEDGER.rows.append((matrix, f"{event} / {slot.label} / {kind.name}", f"FAILED CHECK: {exc}"))
            failures.append(f"{slot.label}: {exc}")
    assert not failures, "\n".join(failures)
