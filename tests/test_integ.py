"""The integration test (integ/) without an AWS account: what CI can check of it.

- The committed snapshot (``integ/integ_secure_tunnel.py.snapshot/``) is what the test app
  synthesizes now, asset hashes included (integ-runner's snapshot check, done by
  ``integ/snapshot.py``: no integ-runner release reads aws-cdk-lib 2.275's cloud assembly).
- The snapshot holds no token, no asset directory, and no assertion that reads a secret value.
- The secret checker (moto's Secrets Manager) answers booleans and a version id, never a value.
- The post-destroy hooks (the tunneling emulator, moto's CloudFormation) pass only when the
  tunnel is gone and no tunnel to the thing is open.
- ``make integ``'s reading of the assertion results.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from integ import run_integ, secret_checker, snapshot, tunnel_hooks
from tests.cdk_helpers import resources_of_type, token_findings, token_shaped
from tests.rig.harness import SECRET_DOCUMENT_FIELDS
from tests.rig.tunneling_emulator import TunnelingEmulator

REGION = "eu-west-1"
SNAPSHOT = snapshot.SNAPSHOT_DIR
CHECKER_STACK = "IoTSecureTunnelIntegChecker"
THING = "iot-secure-tunnel-integ-device"


def _assertion_stack() -> str:
    integ = json.loads((SNAPSHOT / "integ.json").read_text())
    (case,) = integ["testCases"].values()
    return str(case["assertionStackName"])


def _template(stack: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SNAPSHOT / f"{stack}.template.json").read_text())
    return document


@pytest.fixture(scope="module")
def integ_synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A fresh synth of the integration test app, as integ-runner runs it."""
    start = time.monotonic()
    assembly = snapshot.synthesize(tmp_path_factory.mktemp("integ") / "cdk.out")
    return assembly, time.monotonic() - start


# --------------------------------------------------------------------------- snapshot


@pytest.mark.synth
def test_snapshot_matches_a_fresh_synth(integ_synth: tuple[Path, float]) -> None:
    assembly, seconds = integ_synth
    found = snapshot.differences(SNAPSHOT, assembly)
    assert not found, (
        "\n\n".join(found) + "\n\nThe integration test's snapshot is stale: run `make integ-snapshot`, "
        "and `make integ` on an AWS account to show the change works."
    )
    assert seconds < 60, f"synthesizing the integration test took {seconds:.0f} s"


@pytest.mark.synth
def test_snapshot_covers_the_demo_stack_checker_and_assertions() -> None:
    integ = json.loads((SNAPSHOT / "integ.json").read_text())
    (case,) = integ["testCases"].values()
    assert case["stacks"] == ["IoTSecureTunnelInteg", CHECKER_STACK]
    assert case["diffAssets"] is True
    assert case["hooks"] == {
        "preDeploy": ["python3 tunnel_hooks.py reset"],
        "preDestroy": ["python3 tunnel_hooks.py capture --stack IoTSecureTunnelInteg"],
        "postDestroy": [f"python3 tunnel_hooks.py check-gone --thing {THING}"],
    }
    demo = _template("IoTSecureTunnelInteg")
    (thing,) = resources_of_type(demo, "AWS::IoT::Thing").values()
    assert thing["Properties"]["ThingName"] == THING
    assert len(resources_of_type(demo, "Custom::IoTSecureTunnel")) == 1


def _construct_paths() -> set[str]:
    """Every construct path of the test app (long, but no token: tree.json is made of them)."""
    paths: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        paths.add(node["path"])
        for child in node.get("children", {}).values():
            walk(child)

    walk(json.loads((SNAPSHOT / "tree.json").read_text())["tree"])
    return paths


def _without(document: Any, strings: set[str]) -> Any:
    if isinstance(document, dict):
        return {k: _without(v, strings) for k, v in document.items()}
    if isinstance(document, list):
        return [_without(v, strings) for v in document]
    return "" if document in strings else document


@pytest.mark.synth
def test_snapshot_has_no_token_and_no_assets() -> None:
    files = [p for p in SNAPSHOT.rglob("*") if p.is_file()]
    assert len(files) > 5
    assert not [p for p in SNAPSHOT.iterdir() if p.name.startswith("asset.")]
    paths = _construct_paths()
    for path in files:
        text = path.read_text()
        try:
            document = json.loads(text)
        except ValueError:
            assert not token_shaped(text), path
            continue
        assert not token_findings(_without(document, paths), path.name), path


@pytest.mark.synth
def test_no_assertion_reads_a_secret_value() -> None:
    """The assertion provider logs and returns every response: no GetSecretValue through it."""
    assertions = _template(_assertion_stack())
    text = json.dumps(assertions).lower()
    assert "getsecretvalue" not in text
    apis = {
        r["Properties"]["api"] for r in assertions["Resources"].values() if "api" in r.get("Properties", {})
    }
    assert apis == {"describeTunnel", "invoke", "rotateSecret"}
    assert len([n for n in assertions["Outputs"] if n.startswith("AssertionResults")]) == 3


@pytest.mark.synth
def test_checker_is_inline_and_reads_only_its_secret() -> None:
    template = _template(CHECKER_STACK)
    (function,) = resources_of_type(template, "AWS::Lambda::Function").values()
    code = function["Properties"]["Code"]["ZipFile"]
    assert code == (Path(snapshot.HERE) / "secret_checker.py").read_text()
    (policy,) = resources_of_type(template, "AWS::IAM::Policy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    source_secret = function["Properties"]["Environment"]["Variables"]["SECRET_ARN"]
    assert statement["Resource"] == source_secret
    assert source_secret["Fn::GetStackOutput"]["StackName"] == "IoTSecureTunnelInteg"
    assert function["Properties"]["Environment"]["Variables"]["DOCUMENT_FIELDS"] == ",".join(
        SECRET_DOCUMENT_FIELDS
    )


# --------------------------------------------------------------------------- secret checker


@pytest.fixture
def secretsmanager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        # What the test app gives the checker function.
        "DOCUMENT_FIELDS": ",".join(SECRET_DOCUMENT_FIELDS),
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.client("secretsmanager", region_name=REGION)


def _document(token: str) -> dict[str, Any]:
    tunnel_id = "b2de92a3-b8ff-46c0-b0f2-afa28b00cecd"
    return {
        "tunnelId": tunnel_id,
        "tunnelArn": f"arn:aws:iot:{REGION}:123456789012:tunnel/{tunnel_id}",
        "clientMode": "source",
        "accessToken": token,
        "region": REGION,
        "thingName": THING,
        "services": ["SSH"],
        "expiresAt": "2026-11-22T15:04:05Z",
    }


def test_checker_answers_booleans_and_the_version_only(
    secretsmanager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = secrets.token_urlsafe(300)
    document = _document(token)
    created = secretsmanager.create_secret(Name="source", SecretString=json.dumps(document))
    monkeypatch.setenv("SECRET_ARN", created["ARN"])

    answer = secret_checker.handler({"expectedTunnelId": document["tunnelId"]})

    assert answer == {
        "fields": dict.fromkeys(SECRET_DOCUMENT_FIELDS, True),
        "allFieldsPresent": True,
        "tunnelIdMatches": True,
        "clientModeIsSource": True,
        "versionId": created["VersionId"],
    }
    text = json.dumps(answer)
    assert token not in text
    assert not [v for v in document.values() if isinstance(v, str) and v in text]

    rotated = secretsmanager.put_secret_value(SecretId=created["ARN"], SecretString=json.dumps(document))
    assert secret_checker.handler({"previousVersionId": created["VersionId"]})["rotated"] is True
    assert secret_checker.handler({"previousVersionId": rotated["VersionId"]})["rotated"] is False


def test_checker_reports_missing_fields_and_errors_without_values(
    secretsmanager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = secretsmanager.create_secret(Name="pending", SecretString=json.dumps({"status": "pending"}))
    monkeypatch.setenv("SECRET_ARN", created["ARN"])
    answer = secret_checker.handler({})
    assert answer["allFieldsPresent"] is False
    assert not any(answer["fields"].values())

    token = secrets.token_urlsafe(300)
    broken = secretsmanager.create_secret(Name="broken", SecretString=f"not json {token}")
    monkeypatch.setenv("SECRET_ARN", broken["ARN"])
    assert secret_checker.handler({}) == {"error": "JSONDecodeError"}

    monkeypatch.setenv("SECRET_ARN", created["ARN"].replace("pending", "missing"))
    assert secret_checker.handler({}) == {"error": "ResourceNotFoundException"}


# --------------------------------------------------------------------------- post-destroy hooks


@pytest.fixture
def tunneling() -> Iterator[Any]:
    with TunnelingEmulator(region=REGION) as emulator:
        yield boto3.client(
            "iotsecuretunneling",
            endpoint_url=emulator.endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


def _open(tunneling: Any) -> str:
    opened = tunneling.open_tunnel(destinationConfig={"thingName": THING, "services": ["SSH"]})
    return str(opened["tunnelId"])


def _capture(state_dir: Path, tunnel_id: str | None) -> None:
    """The preDestroy hook against a stack (moto's CloudFormation) with that TunnelId output."""
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        if tunnel_id is not None:
            template = {
                "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {"TunnelId": {"Value": tunnel_id}},
            }
            cloudformation.create_stack(StackName="IoTSecureTunnelInteg", TemplateBody=json.dumps(template))
        assert tunnel_hooks.capture(state_dir, "IoTSecureTunnelInteg", cloudformation) == 0


def _result(state_dir: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((state_dir / tunnel_hooks.RESULT_FILE).read_text())
    return document


def test_post_destroy_check_passes_for_a_deleted_or_closed_tunnel(tmp_path: Path, tunneling: Any) -> None:
    for delete in (True, False):
        tunnel_id = _open(tunneling)
        tunnel_hooks.reset(tmp_path)
        _capture(tmp_path, tunnel_id)
        tunneling.close_tunnel(tunnelId=tunnel_id, delete=delete)
        assert tunnel_hooks.check_gone(tmp_path, THING, tunneling, patience=0) == 0
        result = _result(tmp_path)
        assert result["passed"] is True
        assert result["tunnelState"] == ("DELETED" if delete else "CLOSED")
        assert result["captured"]["tunnelId"] == tunnel_id


def test_post_destroy_check_fails_for_an_open_tunnel(tmp_path: Path, tunneling: Any) -> None:
    tunnel_id = _open(tunneling)
    _capture(tmp_path, tunnel_id)
    assert tunnel_hooks.check_gone(tmp_path, THING, tunneling, patience=0) == 1
    result = _result(tmp_path)
    assert result["passed"] is False
    assert result["openTunnelsToThing"] == [tunnel_id]
    assert f"tunnel {tunnel_id} is OPEN after destroy" in result["failures"]


def test_post_destroy_check_without_a_captured_tunnel(tmp_path: Path, tunneling: Any) -> None:
    tunnel_hooks.reset(tmp_path)
    assert tunnel_hooks.check_gone(tmp_path, THING, tunneling, patience=0) == 1  # nothing captured
    _capture(tmp_path, None)  # the stack did not exist before destroy
    assert json.loads((tmp_path / tunnel_hooks.CAPTURE_FILE).read_text())["stackFound"] is False
    assert tunnel_hooks.check_gone(tmp_path, THING, tunneling, patience=0) == 0
    leaked = _open(tunneling)  # a tunnel to the thing that something left open
    assert tunnel_hooks.check_gone(tmp_path, THING, tunneling, patience=0) == 1
    assert _result(tmp_path)["openTunnelsToThing"] == [leaked]


def test_capture_never_fails(tmp_path: Path) -> None:
    """A failing preDestroy hook would keep the stacks from being destroyed."""

    class Unreachable:
        class meta:  # boto3 clients name it so
            region_name = REGION

        def describe_stacks(self, **_: Any) -> Any:
            raise OSError("no route to host")

    assert tunnel_hooks.capture(tmp_path, "IoTSecureTunnelInteg", Unreachable()) == 0
    assert json.loads((tmp_path / tunnel_hooks.CAPTURE_FILE).read_text())["error"] == "OSError"


# --------------------------------------------------------------------------- make integ


def test_make_integ_reads_the_assertion_results() -> None:
    stack = _assertion_stack()
    assert run_integ.expected_assertions(SNAPSHOT, stack) == 3
    outputs = {
        stack: {
            "AssertionResultsA": json.dumps({"status": "success"}),
            "AssertionResultsB": json.dumps(
                {"status": "fail", "message": "Expected OPEN but received CLOSED"}
            ),
            "AssertionResultsC": "not json",
            "SomethingElse": "ignored",
        }
    }
    count, failed = run_integ.assertion_failures(outputs, stack)
    assert count == 3
    assert failed == [
        "AssertionResultsB: Expected OPEN but received CLOSED",
        "AssertionResultsC: unreadable result 'not json'",
    ]
    assert run_integ.assertion_failures({}, stack) == (0, [])


def test_the_integ_app_expects_the_document_the_handler_writes() -> None:
    """The app's list of the secret document's fields (which its checker gets in DOCUMENT_FIELDS)
    is the rig's list, which tests/test_handler_create.py holds to the handler."""
    from integ import integ_secure_tunnel

    assert integ_secure_tunnel.SECRET_FIELDS == SECRET_DOCUMENT_FIELDS
