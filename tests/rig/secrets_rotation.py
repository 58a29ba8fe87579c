"""Secrets Manager's side of rotation, on the rig's moto server: RotateSecret runs the handler.

moto's own RotateSecret cannot stand in here. It invokes rotation functions through moto's Lambda
backend (which runs them in Docker), it points the secret's default version at the new version
itself after invoking the function (so a broken finishSecret would go unnoticed), and it refuses
a new rotation when AWSPENDING and AWSCURRENT share a version (the state a finished rotation may
leave) while allowing one over an unfinished rotation.

So, for the duration of a test, :class:`SecretsManagerRotation` replaces RotateSecret on the
in-process moto backend with the service's documented behaviour (API reference, RotateSecret):
configure the rotation function and rules if given; if a previous rotation is unfinished
(AWSPENDING on a version that is not AWSCURRENT), retry that one and answer
InvalidRequestException; else add an empty version labelled AWSPENDING (id = ClientRequestToken)
and invoke the function with createSecret, setSecret, testSecret and finishSecret, stopping at the
first failure (recorded in :attr:`failures`, as Lambda would log it). With ``RotateImmediately``
false (CloudFormation's ``RotateImmediatelyOnUpdate: false``) it runs the configuration test
instead: testSecret only, on an AWSPENDING version it adds and then removes. What that version
holds is not documented, so :attr:`configuration_test_pending` chooses: nothing, or a copy of
AWSCURRENT. The caller's boto3 client
and the handler's own clients stay wire-level; only what AWS does between them is modelled. The
steps run before RotateSecret answers, where AWS runs them after: tests need not poll.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import pytest
from moto.secretsmanager.exceptions import InvalidRequestException, SecretNotFoundException
from moto.secretsmanager.models import SecretsManagerBackend

from .cloudformation import LambdaContext
from .harness import Handler

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:secure-tunnel-handler"
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
CURRENT, PENDING = "AWSCURRENT", "AWSPENDING"
PREVIOUS_ROTATION = "A previous rotation isn't complete. That rotation will be reattempted."


def is_unfinished(stages: Collection[str]) -> bool:
    """Whether a version's labels show a rotation under way: AWSPENDING without AWSCURRENT."""
    return PENDING in stages and CURRENT not in stages


@dataclass
class Run:
    """The steps one RotateSecret call invoked, and the failure that stopped them."""

    steps: list[str] = field(default_factory=list)
    failure: tuple[str, BaseException] | None = None


@dataclass
class SecretsManagerRotation:
    """Invokes ``handler`` for RotateSecret as Secrets Manager invokes a rotation function."""

    handler: Handler
    #: False: RotateSecret only adds the AWSPENDING version; the test then sends the steps itself.
    run_steps: bool = True
    #: Every step event sent to the function, in order.
    invocations: list[dict[str, Any]] = field(default_factory=list)
    #: ``(step, exception)`` of every step that failed.
    failures: list[tuple[str, BaseException]] = field(default_factory=list)
    #: The Lambda context of each invocation (e.g. a short one, to bound the handler's retries).
    context: Callable[[], LambdaContext] = LambdaContext
    #: What each RotateSecret call ran, by the call's ClientRequestToken (boto3 always sends one).
    runs: dict[str, Run] = field(default_factory=dict)
    #: Handlers (execution environments) that serve the next RotateSecret calls, one call each.
    environments: list[Handler] = field(default_factory=list)
    #: What the configuration test's AWSPENDING version holds: "empty" or "copy" of AWSCURRENT.
    configuration_test_pending: str = "empty"

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Serve RotateSecret from this object until the test ends."""
        rotation = self

        # moto's response layer calls the backend with keyword arguments only.
        def rotate_secret(backend: Any, **request: Any) -> str:
            return rotation.rotate(backend, **request)

        monkeypatch.setattr(SecretsManagerBackend, "rotate_secret", rotate_secret)

    def rotate(
        self,
        backend: Any,
        *,
        secret_id: str,
        client_request_token: str | None = None,
        rotation_lambda_arn: str | None = None,
        rotation_rules: dict[str, Any] | None = None,
        rotate_immediately: bool = True,
        **_: Any,
    ) -> str:
        """RotateSecret, as the service documents it."""
        if not backend._is_valid_identifier(secret_id):
            raise SecretNotFoundException()
        secret = backend.secrets[secret_id]
        if secret.is_deleted():
            raise InvalidRequestException("You can't rotate a secret that is marked for deletion.")
        if rotation_lambda_arn:
            secret.rotation_lambda_arn = rotation_lambda_arn
        if rotation_rules:
            secret.auto_rotate_after_days = int(rotation_rules.get("AutomaticallyAfterDays", 0))
        if not secret.rotation_lambda_arn:
            raise InvalidRequestException("No Lambda rotation function ARN is associated with this secret.")
        secret.rotation_requested = secret.rotation_enabled = True
        unfinished = next(
            (v for v, data in secret.versions.items() if is_unfinished(data["version_stages"])), None
        )
        version_id = client_request_token or str(uuid.uuid4())
        run = self.runs[version_id] = Run()
        handler = self.environments.pop(0) if self.environments else self.handler
        if unfinished is not None:
            self._invoke(secret, unfinished, run, handler)
            raise InvalidRequestException(PREVIOUS_ROTATION)
        secret.remove_version_stages_from_old_versions([PENDING])
        secret.versions[version_id] = self._pending_version(secret, version_id, rotate_immediately)
        if rotate_immediately:
            self._invoke(secret, version_id, run, handler)
        else:
            self._invoke(secret, version_id, run, handler, steps=("testSecret",))
            del secret.versions[version_id]
        return json.dumps({"ARN": secret.arn, "Name": secret.name, "VersionId": version_id})

    def _pending_version(self, secret: Any, version_id: str, rotate_immediately: bool) -> dict[str, Any]:
        version: dict[str, Any] = {
            "createdate": int(time.time()),
            "version_id": version_id,
            "version_stages": [PENDING],
        }
        if not rotate_immediately and self.configuration_test_pending == "copy":
            current = next(d for d in secret.versions.values() if CURRENT in d["version_stages"])
            version["secret_string"] = current.get("secret_string")
        return version

    def step_event(self, secret_arn: str, version_id: str, step: str) -> dict[str, Any]:
        """The event Secrets Manager sends the function for one step."""
        return {
            "Step": step,
            "SecretId": secret_arn,
            "ClientRequestToken": version_id,
            "RotationToken": str(uuid.uuid4()),
        }

    def _invoke(
        self, secret: Any, version_id: str, run: Run, handler: Handler, steps: tuple[str, ...] = STEPS
    ) -> None:
        if not self.run_steps:
            return
        for step in steps:
            event = self.step_event(secret.arn, version_id, step)
            self.invocations.append(event)
            run.steps.append(step)
            try:
                handler(event, self.context())
            except Exception as exc:
                self.failures.append((step, exc))
                run.failure = (step, exc)
                return
            finally:
                # moto's UpdateSecretVersionStage leaves the default version (what GetSecretValue
                # without VersionStage reads) where it was; AWS reads AWSCURRENT.
                current = [v for v, d in secret.versions.items() if CURRENT in d["version_stages"]]
                if current:
                    secret.default_version_id = current[0]
