"""Driving the real handler through the rig as CloudFormation would, and checking what it left.

:class:`World` wraps the shared ``Rig`` with the fault proxies: it delivers events (collecting
every response PUT for the request, not only the last), resets the rig between scenarios of one
test while keeping the tokens and texts for the leak scans, and checks the invariants that
every matrix relies on.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import logged_text
from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.ledger import LEDGER, count_token_hits
from tests.rig.cloudformation import LambdaContext, event
from tests.rig.harness import Handler, Rig
from tests.rig.secrets_rotation import (
    FUNCTION_ARN,
    PREVIOUS_ROTATION,
    SecretsManagerRotation,
    is_unfinished,
)

PLACEHOLDER = None  # the tunnel id of a secret still holding the rig's {"status": "pending"}


@dataclass
class Proxies:
    """The fault-injecting proxies in front of the tunneling emulator and moto."""

    tunnels: FaultProxy
    secrets: FaultProxy

    def clear(self) -> None:
        """Forget rules and recorded calls of both."""
        self.tunnels.clear()
        self.secrets.clear()


@dataclass(frozen=True)
class Delivery:
    """One delivery of an event and every response CloudFormation received for it."""

    request_id: str
    responses: list[dict[str, Any]]

    @property
    def first(self) -> dict[str, Any]:
        """The response CloudFormation acts on: the first one it received."""
        assert self.responses, f"no response was sent for request {self.request_id}"
        return self.responses[0]

    @property
    def status(self) -> str:
        """Status of the first response."""
        return str(self.first["Status"])

    @property
    def physical_id(self) -> str:
        """Physical id of the first response."""
        return str(self.first["PhysicalResourceId"])

    @property
    def reason(self) -> str:
        """Reason of the first response."""
        return str(self.first.get("Reason", ""))


@dataclass(frozen=True)
class Rotated:
    """One rotate-secret call and what the rotation function's steps did in it."""

    secret_arn: str
    #: The tunnel the secret named before the rotation (a rotation never changes it).
    tunnel_id: str
    #: Steps invoked, in order (Secrets Manager stops at the first that fails).
    steps: list[str]
    #: ``(step, exception)`` of the step that failed, as Secrets Manager records it.
    failure: tuple[str, BaseException] | None

    def timed_out(self) -> Rotated:
        """The rotation as Secrets Manager saw it when Lambda stopped its last step."""
        return replace(self, failure=(self.steps[-1], TimeoutError("Task timed out")))

    @property
    def status(self) -> str:
        """SUCCESS once all four steps ran without a failure, else FAILED."""
        return "FAILED" if self.failure or len(self.steps) < 4 else "SUCCESS"

    @property
    def physical_id(self) -> str:
        """The resource's physical id, which a rotation leaves alone."""
        return self.tunnel_id

    @property
    def failed_step(self) -> str:
        """The step that failed ("" if none did)."""
        return self.failure[0] if self.failure else ""

    @property
    def reason(self) -> str:
        """The failed step's error message, as the function's log shows it."""
        return str(self.failure[1]) if self.failure else ""


class World:
    """The rig, the proxies and the handler of one test, with scenario helpers."""

    def __init__(
        self,
        rig: Rig,
        handler: Handler,
        proxies: Proxies,
        caplog: pytest.LogCaptureFixture,
        rotation: SecretsManagerRotation,
    ) -> None:
        self.rig = rig
        self.handler = handler
        self.proxies = proxies
        self.caplog = caplog
        self.rotation = rotation
        self._tokens: list[str] = []
        self._bodies: list[str] = []

    # --- state --------------------------------------------------------------------------

    def reset(self) -> None:
        """Start a new scenario: harvest what the last one issued, then clean everything."""
        self.harvest()
        self.rig.reset()
        self.proxies.clear()

    def harvest(self) -> None:
        """Keep the tokens issued and responses received so far (the rig forgets them on reset)."""
        self._tokens.extend(self.rig.tunnels.issued_tokens)
        self._bodies.extend(self.rig.cloudformation.raw_bodies)

    def scan_for_leaks(self) -> int:
        """Token occurrences in this test's logs and responses; records them for the summary."""
        tokens = [*self._tokens, *self.rig.tunnels.issued_tokens]
        failures = [str(exc) for _, exc in self.rotation.failures]
        bodies = [*self._bodies, *self.rig.cloudformation.raw_bodies, *failures]
        hits = count_token_hits(tokens, [*logged_text(self.caplog), *bodies])
        LEDGER.keep(tokens, bodies)
        LEDGER.add_leaks(hits)
        return hits

    # --- delivering events --------------------------------------------------------------

    def deliver(
        self,
        request_type: str,
        properties: dict[str, Any],
        *,
        physical_id: str | None = None,
        old_properties: dict[str, Any] | None = None,
        request_id: str | None = None,
        response_url: str | None = None,
        context: LambdaContext | None = None,
        handler: Handler | None = None,
        settle_seconds: float = 0.0,
    ) -> Delivery:
        """Invoke the handler with one event; returns every response PUT for its request id.

        ``settle_seconds`` waits for late PUTs (crhelper's timeout timer runs in its own thread).
        """
        request_id = request_id or str(uuid.uuid4())
        body = event(
            request_type,
            response_url or self.rig.cloudformation.new_url(),
            properties,
            physical_id=physical_id,
            old_properties=old_properties,
            request_id=request_id,
        )
        (handler or self.handler)(body, context or LambdaContext())
        if settle_seconds:
            time.sleep(settle_seconds)
        return Delivery(request_id, self.responses_for(request_id))

    def responses_for(self, request_id: str) -> list[dict[str, Any]]:
        """Every response body received so far for ``request_id``, in arrival order."""
        bodies = [json.loads(b) for b in list(self.rig.cloudformation.raw_bodies)]
        return [b for b in bodies if b.get("RequestId") == request_id]

    def create(self, **overrides: Any) -> tuple[str, dict[str, Any]]:
        """Create a tunnel (no faults expected); returns its id and the properties used."""
        properties = self.rig.properties(**overrides)
        created = self.deliver("Create", properties)
        assert created.status == "SUCCESS", created.reason
        return created.physical_id, properties

    # --- rotating a token secret (Secrets Manager's side: tests/rig/secrets_rotation.py) ----

    def attach_rotation(self) -> None:
        """Attach the rotation function to both secrets without rotating (what the construct's
        RotationSchedule with RotateImmediatelyOnUpdate=false does)."""
        for arn in (self.rig.source_secret, self.rig.destination_secret):
            self.rig.secrets.rotate_secret(
                SecretId=arn, RotationLambdaARN=FUNCTION_ARN, RotateImmediately=False
            )

    def rotate(self, role: str, context: LambdaContext | None = None) -> Rotated:
        """``aws secretsmanager rotate-secret`` of the ``role`` secret: Secrets Manager runs the
        four steps, or retries the unfinished rotation of an earlier call (and answers that)."""
        arn = self.secret_arn(role)
        tunnel_id, call = str(self.secret_tunnel(arn)), str(uuid.uuid4())
        if context:
            self.rotation.context = lambda: context
        try:
            self.rig.secrets.rotate_secret(SecretId=arn, ClientRequestToken=call)
        except ClientError as exc:
            if PREVIOUS_ROTATION not in str(exc):
                raise
        finally:
            self.rotation.context = LambdaContext
        run = self.rotation.runs[call]
        return Rotated(arn, tunnel_id, list(run.steps), run.failure)

    def rotation_unfinished(self, arn: str) -> bool:
        """Whether AWSPENDING is on a version that is not AWSCURRENT (RotateSecret then retries
        that rotation instead of starting a new one)."""
        versions = self.rig.secrets.describe_secret(SecretId=arn)["VersionIdsToStages"]
        return any(is_unfinished(stages) for stages in versions.values())

    # --- what the rig holds -------------------------------------------------------------

    def secret_tunnel(self, arn: str) -> str | None:
        """The tunnel id a token secret's current version holds (None: the placeholder)."""
        value = self.rig.secret(arn)
        return None if value == {"status": "pending"} else str(value["tunnelId"])

    def secret_tunnels(self, skip: frozenset[str] = frozenset()) -> dict[str, str | None]:
        """Tunnel id held by each token secret not in ``skip``."""
        arns = (self.rig.source_secret, self.rig.destination_secret)
        return {arn: self.secret_tunnel(arn) for arn in arns if arn not in skip}

    def secrets_are_live(self, skip: frozenset[str] = frozenset()) -> bool:
        """Whether every token secret not in ``skip`` holds a currently valid token."""
        arns = (self.rig.source_secret, self.rig.destination_secret)
        return all(
            self.rig.tunnels.is_token_valid(self.rig.secret(a)["accessToken"]) for a in arns if a not in skip
        )

    def orphans(self, referenced: set[str]) -> set[str]:
        """OPEN tunnels that CloudFormation does not reference; counted in the summary."""
        found = set(self.rig.tunnels.open_tunnel_ids()) - referenced
        LEDGER.count_orphans(found)
        return found

    def secret_arn(self, role: str) -> str:
        """The ARN of the rig's ``source`` or ``destination`` secret."""
        return self.rig.source_secret if role == "source" else self.rig.destination_secret

    def secret_role(self, arn: str) -> str:
        """``source`` or ``destination`` for the rig's secrets, else the ARN."""
        return {self.rig.source_secret: "source", self.rig.destination_secret: "destination"}.get(arn, arn)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; returns the last result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
