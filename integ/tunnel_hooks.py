"""Hooks of the integration test (run by integ-runner, see ``integ_secure_tunnel.py``).

integ-tests' assertions run while the stacks exist, so they cannot see what ``destroy`` did. These
hooks can: integ-runner runs the test's ``preDeploy``, ``preDestroy`` and ``postDestroy`` commands
around its deploy and destroy, and fails the test when one exits non-zero.

- ``reset`` (preDeploy): forget a previous run's captured tunnel.
- ``capture --stack NAME`` (preDestroy): write the stack's ``TunnelId`` output to the state file.
  Always exits 0: a failing preDestroy hook would keep integ-runner from destroying the stacks.
- ``check-gone --thing NAME`` (postDestroy): the captured tunnel must be deleted
  (``ResourceNotFoundException``) or at least CLOSED, and no tunnel to the test thing may be OPEN.
  The result is written to ``build/integ/post-destroy-check.json`` (integ-runner discards a hook's
  output unless it fails).

Region: boto3's (``AWS_REGION``); ``make integ`` sets it to the region integ-runner deploys to.
Nothing here reads a secret: the calls are DescribeStacks, DescribeTunnel and ListTunnels.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

STATE_DIR = Path(__file__).resolve().parent.parent / "build" / "integ"
CAPTURE_FILE = "captured-tunnel.json"
RESULT_FILE = "post-destroy-check.json"
#: How long check-gone waits for a closed tunnel to be deleted before it settles for CLOSED.
DELETE_PATIENCE_SECONDS = 30.0

Json = dict[str, Any]


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


def _write(state_dir: Path, name: str, document: Json) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / name).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def reset(state_dir: Path) -> int:
    """Remove the state of a previous run."""
    for name in (CAPTURE_FILE, RESULT_FILE):
        (state_dir / name).unlink(missing_ok=True)
    return 0


def capture(state_dir: Path, stack_name: str, cloudformation: Any = None) -> int:
    """Record the stack's tunnel id (its ``TunnelId`` output) before integ-runner destroys it."""
    record: Json = {"stack": stack_name, "stackFound": None, "tunnelId": None}
    try:
        client = cloudformation or boto3.client("cloudformation")
        record["region"] = client.meta.region_name
        (stack,) = client.describe_stacks(StackName=stack_name)["Stacks"]
        record["stackFound"] = True
        record["stackStatus"] = stack.get("StackStatus")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        record["tunnelId"] = outputs.get("TunnelId")
    except ClientError as exc:
        message = str(exc.response.get("Error", {}).get("Message", ""))
        if "does not exist" in message:
            record["stackFound"] = False
        else:
            record["error"] = _error_code(exc)
    except Exception as exc:  # never fail: a failing preDestroy hook keeps the stacks from being destroyed
        record["error"] = _error_code(exc)
    _write(state_dir, CAPTURE_FILE, record)
    return 0


def _tunnel_state(tunneling: Any, tunnel_id: str) -> str:
    """``DELETED`` (not found), or the tunnel's status (``OPEN`` / ``CLOSED``)."""
    try:
        return str(tunneling.describe_tunnel(tunnelId=tunnel_id)["tunnel"]["status"])
    except ClientError as exc:
        if _error_code(exc) == "ResourceNotFoundException":
            return "DELETED"
        raise


def _open_tunnels_to(tunneling: Any, thing_name: str) -> list[str]:
    found: list[str] = []
    request: Json = {"thingName": thing_name, "maxResults": 100}
    while True:
        page = tunneling.list_tunnels(**request)
        found += [t["tunnelId"] for t in page.get("tunnelSummaries", []) if t.get("status") == "OPEN"]
        if not page.get("nextToken"):
            return found
        request["nextToken"] = page["nextToken"]


def check_gone(
    state_dir: Path,
    thing_name: str,
    tunneling: Any = None,
    patience: float = DELETE_PATIENCE_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Fail (exit 1) unless the captured tunnel is gone and no tunnel to the thing is open."""
    capture_path = state_dir / CAPTURE_FILE
    captured: Json = json.loads(capture_path.read_text()) if capture_path.exists() else {}
    result: Json = {"thing": thing_name, "captured": captured, "failures": []}
    failures: list[str] = result["failures"]
    try:
        client = tunneling or boto3.client("iotsecuretunneling")
        region = client.meta.region_name
        result["region"] = region
        if captured.get("region") not in (None, region):
            failures.append(f"tunnel captured in {captured['region']} but checking {region}")
        tunnel_id = captured.get("tunnelId")
        if tunnel_id:
            state = _tunnel_state(client, tunnel_id)
            deadline = time.monotonic() + patience
            while state == "CLOSED" and time.monotonic() < deadline:
                sleep(5.0)
                state = _tunnel_state(client, tunnel_id)
            result["tunnelState"] = state
            if state not in ("DELETED", "CLOSED"):
                failures.append(f"tunnel {tunnel_id} is {state} after destroy")
        elif captured.get("stackFound") is False:
            result["tunnelState"] = "never created (the stack did not exist before destroy)"
        else:
            why = captured.get("error") or "no TunnelId output" if captured else "capture did not run"
            failures.append(f"no tunnel id was captured before destroy ({why})")
        still_open = _open_tunnels_to(client, thing_name)
        result["openTunnelsToThing"] = still_open
        if still_open:
            failures.append(f"open tunnels to {thing_name} after destroy: {', '.join(still_open)}")
    except (ClientError, BotoCoreError) as exc:
        failures.append(f"the check could not run: {_error_code(exc)}")
    result["passed"] = not failures
    _write(state_dir, RESULT_FILE, result)
    print(json.dumps(result, sort_keys=True), file=sys.stderr if failures else sys.stdout)
    return 0 if not failures else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``reset``, ``capture --stack NAME`` or ``check-gone --thing NAME``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("reset")
    capture_parser = commands.add_parser("capture")
    capture_parser.add_argument("--stack", required=True)
    check_parser = commands.add_parser("check-gone")
    check_parser.add_argument("--thing", required=True)
    args = parser.parse_args(argv)
    if args.command == "reset":
        return reset(args.state_dir)
    if args.command == "capture":
        return capture(args.state_dir, args.stack)
    return check_gone(args.state_dir, args.thing)


if __name__ == "__main__":
    sys.exit(main())
