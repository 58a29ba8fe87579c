"""The Lambda asset that ``cdk synth`` wrote, run through Create, Update and Delete on the test rig,
loaded the way Lambda loads it: a fresh interpreter whose import path is the asset folder plus the
runtime's boto3 (nothing from this repository), the handler string and environment taken from the
synthesized template."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from tests.cdk_helpers import DEMO_STACK, Assembly, resources_of_type
from tests.conftest import tunnel_id_of
from tests.rig.cloudformation import STACK_ID, LambdaContext
from tests.rig.harness import ACCOUNT, HANDLER_ACCESS_KEY, REGION, Rig
from tests.rig.iam_policy import handler_policy

#: What Lambda's Python bootstrap does, in short: import the handler module named by the handler
#: string from the task root, then call the handler with the event and a context object.
BOOTSTRAP = r"""
import importlib, json, logging, sys, time
asset, handler_string, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
# Lambda's runtime puts a handler on the root logger (its output goes to CloudWatch Logs).
logging.getLogger().addHandler(logging.StreamHandler(sys.stdout))
module_name, _, function_name = handler_string.rpartition(".")
handler = getattr(importlib.import_module(module_name), function_name)
for name in ("secure_tunnel_handler", "crhelper"):
    origin = sys.modules[name].__file__
    if not origin.startswith(asset + "/"):
        raise SystemExit(f"{name} was imported from {origin}, not from the asset {asset}")

class Context:
    function_name = "IoTSecureTunnelHandler"
    aws_request_id = "11111111-2222-4333-8444-555555555555"
    def __init__(self):
        self._deadline = time.monotonic() + timeout
    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))

handler(json.load(sys.stdin), Context())
"""


class AssetHandler:
    """Invokes the bundled handler in a fresh interpreter, as Lambda would."""

    def __init__(self, asset: Path, handler: str, environment: dict[str, str], timeout: int) -> None:
        self.asset = asset
        self.handler = handler
        self.environment = environment
        self.timeout = timeout
        self.output: list[str] = []

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> None:
        # -S: no site-packages, so no .pth file (the editable install of this repository) runs;
        # the runtime's boto3 comes last on the path, after the asset.
        runtime_libraries = sysconfig.get_paths()["purelib"]
        done = subprocess.run(
            [sys.executable, "-S", "-c", BOOTSTRAP, str(self.asset), self.handler, str(self.timeout)],
            input=json.dumps(event),
            capture_output=True,
            text=True,
            cwd=self.asset,
            env={**self.environment, "PYTHONPATH": f"{self.asset}:{runtime_libraries}"},
            timeout=120,
            check=False,
        )
        self.output.append(done.stdout + done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def asset_handler(cli_assembly: Assembly, rig: Rig) -> AssetHandler:
    import os

    template = cli_assembly.template(DEMO_STACK)
    (function,) = resources_of_type(template, "AWS::Lambda::Function").values()
    properties = function["Properties"]
    variables = properties["Environment"]["Variables"]
    assert variables["TUNNEL_OWNER"] == {"Ref": "AWS::StackId"}
    _, asset = cli_assembly.function_asset(DEMO_STACK)
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment.update({**variables, "TUNNEL_OWNER": STACK_ID})
    # The asset runs under the demo stack's own synthesized policy, for its own stack id.
    policy = handler_policy(template, owner=STACK_ID, region=REGION, account=ACCOUNT)
    rig.tunnels.enforce(policy, access_key=HANDLER_ACCESS_KEY)
    return AssetHandler(asset, properties["Handler"], environment, properties["Timeout"])


def _demo_properties(cli_assembly: Assembly, rig: Rig) -> dict[str, Any]:
    """The demo tunnel's properties as CloudFormation resolves them, the secrets from the rig."""
    template = cli_assembly.template(DEMO_STACK)
    ((_, tunnel),) = resources_of_type(template, "Custom::IoTSecureTunnel").items()
    properties = dict(tunnel["Properties"])
    (thing,) = resources_of_type(template, "AWS::IoT::Thing").values()
    properties["ServiceToken"] = "arn:aws:lambda:us-east-1:123456789012:function:IoTSecureTunnelHandler"
    properties["DestinationConfig"] = {
        **properties["DestinationConfig"],
        "ThingName": thing["Properties"]["ThingName"],
    }
    properties["SourceAccessTokenSecretArn"] = rig.source_secret
    properties["DestinationAccessTokenSecretArn"] = rig.destination_secret
    return properties


def test_synthesized_asset_runs_create_update_delete(
    cli_assembly: Assembly, rig: Rig, asset_handler: AssetHandler, caplog: pytest.LogCaptureFixture
) -> None:
    # This test reads the secrets itself: keep its own botocore quiet, as the handler keeps its.
    for name in ("botocore", "boto3", "urllib3"):
        caplog.set_level(logging.ERROR, logger=name)
    properties = _demo_properties(cli_assembly, rig)

    created = rig.send(asset_handler, "Create", properties, logical_id="Tunnel208A5559")
    tunnel_id = tunnel_id_of(created)
    assert rig.tunnel(tunnel_id)["status"] == "OPEN"
    source, destination = rig.secret(rig.source_secret), rig.secret(rig.destination_secret)
    assert (source["tunnelId"], source["clientMode"]) == (tunnel_id, "source")
    assert (destination["tunnelId"], destination["clientMode"]) == (tunnel_id, "destination")
    assert rig.tunnels.is_token_valid(source["accessToken"])
    tags = {t["key"]: t["value"] for t in rig.tunnel(tunnel_id)["tags"]}
    assert tags["iot-secure-tunnel:owner"] == STACK_ID

    rotated = {**properties, "RotationTrigger": "rotate-1"}
    updated = rig.send(asset_handler, "Update", rotated, physical_id=tunnel_id, old_properties=properties)
    assert tunnel_id_of(updated) == tunnel_id
    assert not rig.tunnels.is_token_valid(source["accessToken"]), "the update rotated the tokens"
    assert rig.tunnels.is_token_valid(rig.secret(rig.source_secret)["accessToken"])

    deleted = rig.send(asset_handler, "Delete", rotated, physical_id=tunnel_id)
    assert deleted["Status"] == "SUCCESS", deleted.get("Reason")
    state = rig.tunnels.tunnel(tunnel_id)
    assert state is None or state["status"] == "CLOSED"

    # What the function logged (Lambda would send it to CloudWatch Logs) holds no token.
    leaked = [t for t in rig.tunnels.issued_tokens for out in asset_handler.output if t in out]
    assert leaked == []
    assert all(out.strip() for out in asset_handler.output), "the handler logs at INFO, as configured"
