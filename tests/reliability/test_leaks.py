"""Leaks: no token the emulator issued may appear in any text of the run.

Every test of this package scans its own log lines and responses (the ``world`` fixture); at the
end of the session every text of the whole run (captured logs and output of every test phase,
every response body, failure reports and the summary) is scanned for every token issued during
the session (conftest.py). These tests show that the scanner finds what it looks for, and that
a token logged by mistake during an invocation would be masked before it reaches any log.
"""

from __future__ import annotations

import json
import logging
import secrets

from tests.reliability.ledger import LEDGER, count_token_hits
from tests.reliability.world import World


def test_the_scanner_finds_tokens_wherever_they_are() -> None:
    with LEDGER.scenario("leaks"):
        token, other = secrets.token_urlsafe(96), secrets.token_urlsafe(96)
        texts = [
            f"prefix {token} suffix",
            json.dumps({"accessToken": token}),
            f"glued{token}glued",
            f"{token}{token}",
            "nothing here " + other[:100],
        ]
        assert count_token_hits([token], texts) == 5
        assert count_token_hits([token, other], texts) == 5
        assert count_token_hits([], texts) == 0


def test_a_token_logged_by_mistake_is_masked(world: World) -> None:
    with LEDGER.scenario("leaks"):
        created = world.deliver("Create", world.rig.properties())
        token = world.rig.secret(world.rig.source_secret)["accessToken"]
        # As if the handler logged a token: the redactor it installed masks every token it saw.
        logging.getLogger("secure_tunnel_handler.lifecycle").error(
            "token %s for %s", token, created.physical_id
        )
        try:
            raise RuntimeError(f"failure carrying {token}")
        except RuntimeError:
            logging.getLogger("secure_tunnel_handler.lifecycle").exception("failed")

        assert count_token_hits([token], [world.caplog.text]) == 0
        assert "***REDACTED***" in world.caplog.text
