"""Log redaction (secure_tunnel_handler.redaction): a token seen is masked wherever a log
record carries it."""

from __future__ import annotations

import logging

import pytest

from secure_tunnel_handler.redaction import MASK, TokenRedactor


def test_redactor_masks_tokens_in_messages_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    redactor = TokenRedactor()
    redactor.remember("tok-1234567890")
    log = logging.getLogger("tests.redaction")
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(redactor)
    try:
        log.info("token tok-1234567890 in message")
        log.info("token %s in args", "tok-1234567890")
        try:
            raise ValueError("tok-1234567890")
        except ValueError:
            log.exception("failed")
    finally:
        caplog.handler.removeFilter(redactor)
    assert "tok-1234567890" not in caplog.text
    assert caplog.text.count(MASK) == 4  # message, argument, source line and exception text
