"""How the entry point configures crhelper: safe logging, no delete sleep, no unused clients."""

from __future__ import annotations

import logging
import os
from typing import Any

from tests.rig.harness import Handler


def test_crhelper_is_configured_for_safety_and_speed(handler: Handler) -> None:
    from secure_tunnel_handler import entrypoint

    helper: Any = entrypoint.helper  # reads crhelper internals its stubs do not declare
    assert helper._sleep_on_delete == 0
    assert not hasattr(helper, "_lambda_client"), "crhelper's polling clients are not created"
    assert helper._sam_local is None, "crhelper behaves as in Lambda after construction"
    assert "AWS_SAM_LOCAL" not in os.environ
    # botocore's DEBUG output holds response bodies, tokens included: it must stay quiet.
    for name in ("botocore", "boto3", "urllib3"):
        assert logging.getLogger(name).level == logging.ERROR
