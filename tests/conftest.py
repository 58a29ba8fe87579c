"""Shared fixtures: the wire-level test rig for the handler (see tests/rig/)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rig.harness import Handler, Rig


@pytest.fixture(scope="session")
def rig_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """The stand-ins for AWS and CloudFormation, started once per test session."""
    rig = Rig(Path(tmp_path_factory.mktemp("rig")))
    env = rig.start()
    # The most verbose level the handler accepts: even then no token may be logged.
    env["LOG_LEVEL"] = "DEBUG"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield rig
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    rig.stop()


@pytest.fixture
def rig(rig_session: Rig, caplog: pytest.LogCaptureFixture) -> Iterator[Rig]:
    """A clean rig for one test; afterwards, no token the emulator issued may appear in any
    log record or CloudFormation response of the test."""
    rig_session.reset()
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
