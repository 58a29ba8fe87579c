"""Shared fixtures: the wire-level test rig for the handler (see tests/rig/), and the
synthesized CDK apps (tests/synth_fixtures.py), shared by every test of the session.

The rig enforces, on every tunnel call, the IAM policy that `cdk synth` gives the provider
stack's handler: a call the policy would not allow on a real account is denied here too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from secure_tunnel_handler import retries
from tests.cdk_helpers import Assembly
from tests.rig.harness import ACCOUNT, HANDLER_ACCESS_KEY, OWNER, REGION, Handler, Rig
from tests.rig.iam_policy import handler_policy
from tests.rig.moto_fidelity import (
    current_label_follows_update_secret_version_stage,
    versions_keep_their_value,
)
from tests.rig.secrets_rotation import SecretsManagerRotation
from tests.synth_fixtures import cli_assembly, construct_synth, in_process_assembly

if TYPE_CHECKING:
    from tests.cli_operator import Operator

__all__ = ["cli_assembly", "construct_synth", "in_process_assembly"]  # fixtures for every test module

#: Session fixtures that synthesize a CDK app; a test that uses one, even through another
#: fixture (the rig enforces the synthesized provider policy), is marked ``synth``.
SYNTH_FIXTURES = frozenset({"cli_assembly", "in_process_assembly", "construct_synth"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a synthesized app ``synth``: ``pytest -m "not synth"`` is the
    fast inner loop (no ``cdk synth``)."""
    for item in items:
        if SYNTH_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.synth)


#: The handler's window for IAM propagation in tests (30 s in Lambda).
IAM_PATIENCE_SECONDS = 0.5


@pytest.fixture(scope="session")
def rig_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """The stand-ins for AWS and CloudFormation, started once per test session."""
    rig = Rig(Path(tmp_path_factory.mktemp("rig")))
    env = rig.start()
    # The most verbose level the handler accepts: even then no token may be logged.
    env["LOG_LEVEL"] = "DEBUG"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    with (
        current_label_follows_update_secret_version_stage(),
        versions_keep_their_value(),
        pytest.MonkeyPatch.context() as patch,
    ):
        # The handler's patience with IAM propagation, scaled down from 30 s: a lasting denial
        # fails in half a second, a denial of the first calls still passes.
        patch.setattr(retries, "ACCESS_DENIED_PATIENCE_SECONDS", IAM_PATIENCE_SECONDS)
        yield rig
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    rig.stop()


@pytest.fixture(scope="session")
def handler_iam_policy(cli_assembly: Assembly) -> dict[str, Any]:
    """The provider stack's handler policy as IAM would hold it for the rig's owner and region
    (the provider may open tunnels to any thing, as the rig's tests do)."""
    template = cli_assembly.template("IoTSecureTunnelProvider")
    return handler_policy(template, owner=OWNER, region=REGION, account=ACCOUNT)


@pytest.fixture
def rig(
    rig_session: Rig, handler_iam_policy: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> Iterator[Rig]:
    """A clean rig for one test, enforcing the handler's IAM policy; afterwards, no token the
    emulator issued may appear in any log record or CloudFormation response of the test."""
    rig_session.reset()
    rig_session.tunnels.enforce(handler_iam_policy, access_key=HANDLER_ACCESS_KEY)
    caplog.set_level(logging.DEBUG)
    yield rig_session
    assert_no_token_leaked(rig_session, *logged_text(caplog))


def logged_text(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every record of the test's setup and call phases as text, tracebacks included
    (``caplog.text`` in a fixture's teardown would only show the teardown phase)."""
    formatter = logging.Formatter()
    records = [r for phase in ("setup", "call") for r in caplog.get_records(phase)]
    return [formatter.format(r) for r in records]


def assert_no_token_leaked(rig: Rig, *texts: str) -> None:
    """Fail if any issued token appears in the given texts or any CloudFormation response."""
    haystacks = [*texts, *rig.cloudformation.raw_bodies]
    leaked = sum(1 for token in rig.tunnels.issued_tokens for text in haystacks if token in text)
    assert leaked == 0, f"{leaked} token occurrence(s) leaked into logs or responses"


@pytest.fixture(scope="session")
def handler(rig_session: Rig) -> Handler:
    """The Lambda entry point, imported after the rig's environment is set (crhelper creates
    its clients at import time)."""
    from secure_tunnel_handler import entrypoint

    return entrypoint.handler


def tunnel_id_of(response: dict[str, Any]) -> str:
    """The tunnel id a successful response reported."""
    assert response["Status"] == "SUCCESS", response.get("Reason")
    return str(response["PhysicalResourceId"])


@pytest.fixture
def operator(rig: Rig, tmp_path: Path) -> Operator:
    """An operator's machine for the CLI: its own AWS configuration and a fake localproxy."""
    # Imported here: tests.cli_operator imports this module's helpers.
    from tests.cli_operator import make_operator

    return make_operator(rig, tmp_path)


@pytest.fixture
def rotation(handler: Handler, monkeypatch: pytest.MonkeyPatch) -> SecretsManagerRotation:
    """Secrets Manager's RotateSecret, served by the handler as Lambda would invoke it."""
    service = SecretsManagerRotation(handler)
    service.install(monkeypatch)
    return service
