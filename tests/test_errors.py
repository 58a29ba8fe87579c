"""Failure reasons (secure_tunnel_handler.errors): each names its step and error code, and
fits CloudFormation."""

from __future__ import annotations

from secure_tunnel_handler.errors import HandlerError, explain, shorten
from tests.botocore_errors import client_error


def test_reasons_are_explained_and_shortened() -> None:
    reason = str(explain("Opening the tunnel", client_error("LimitExceededException")))
    assert reason.startswith("Opening the tunnel failed (LimitExceededException): the account's limit")
    assert (
        str(explain("Step", KeyError("x")))
        == "Step failed: internal error (KeyError); see the function's log"
    )
    assert len(shorten("x" * 1000)) == 250
    assert isinstance(explain("Step", HandlerError("kept")), HandlerError)
