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


def test_cloudformation_events_do_not_load_the_rotation_module() -> None:
    """Cold start: a function serving only CloudFormation events never imports rotation.py."""
    import subprocess
    import sys

    code = (
        "import sys, secure_tunnel_handler.entrypoint; print('secure_tunnel_handler.rotation' in sys.modules)"
    )
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "False"
