"""The CDK app (app.py + cdk.json) as users run it, and what every synthesized template must
satisfy: cdk-nag AwsSolutions with nothing unacknowledged, cfn-lint clean, no token anywhere,
a small deterministic handler asset, and a package that works when installed from a wheel."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from cdk_iot_secure_tunnel import RESOURCE_TYPE, acknowledgments
from cdk_iot_secure_tunnel.bundling import bundle_handler
from cdk_iot_secure_tunnel.provider_stack import SECRET_NAME_PREFIX, THING_NAME_PREFIX_PARAMETER
from tests.cdk_helpers import (
    CFN_LINT_CONFIG,
    DEMO_STACK,
    PROVIDER_STACK,
    REPO_ROOT,
    Assembly,
    ConstructSynth,
    all_templates,
    cdk_json_context,
    resources_of_type,
    token_findings,
    tool_environment,
)

#: The zipped handler asset stays small: the handler and crhelper only (boto3 alone is ~15 MB).
MAX_ASSET_ZIP_BYTES = 200_000


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _zipped_size(root: Path, into: Path) -> int:
    with zipfile.ZipFile(into, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in _tree(root).items():
            archive.writestr(name, data)
    return into.stat().st_size


# --------------------------------------------------------------------------- app and cdk.json


def test_cdk_json_runs_the_app_with_the_recommended_feature_flags() -> None:
    cdk_json = json.loads((REPO_ROOT / "cdk.json").read_text())
    assert cdk_json["app"] == "python3 app.py"
    # `cdk init` writes these: the flags recommended for this CLI and aws-cdk-lib version.
    recommended = (
        REPO_ROOT / "node_modules" / "aws-cdk" / "lib" / "init-templates" / ".recommended-feature-flags.json"
    )
    assert cdk_json["context"] == json.loads(recommended.read_text())
    assert cdk_json["context"]["@aws-cdk/aws-iam:minimizePolicies"] is True


def test_cdk_synth_needs_no_account_and_writes_the_demo_stack(cli_assembly: Assembly) -> None:
    manifest = json.loads((cli_assembly.outdir / "manifest.json").read_text())
    demo = manifest["artifacts"][DEMO_STACK]
    assert demo["environment"] == "aws://unknown-account/unknown-region"
    assert [p.name for p in cli_assembly.template_paths()] == [
        f"{DEMO_STACK}.template.json",
        f"{PROVIDER_STACK}.template.json",
    ]


def test_demo_stack_is_a_thing_and_a_tunnel_to_it(cli_assembly: Assembly) -> None:
    template = cli_assembly.template(DEMO_STACK)
    (thing_id,) = resources_of_type(template, "AWS::IoT::Thing")
    assert template["Resources"][thing_id]["Properties"] == {"ThingName": "secure-tunnel-demo-device"}
    Template.from_json(template).has_resource_properties(
        RESOURCE_TYPE,
        Match.object_like(
            {
                "DestinationConfig": {"ThingName": {"Ref": thing_id}, "Services": ["SSH"]},
                "Description": "Demo secure tunnel to secure-tunnel-demo-device",
                "TimeoutConfig": {"MaxLifetimeTimeoutMinutes": "720"},
            }
        ),
    )


def test_outputs_name_the_tunnel_and_its_secrets_and_how_to_fetch_the_token(cli_assembly: Assembly) -> None:
    template = cli_assembly.template(DEMO_STACK)
    (tunnel_id,) = resources_of_type(template, RESOURCE_TYPE)
    source = template["Resources"][tunnel_id]["Properties"]["SourceAccessTokenSecretArn"]
    destination = template["Resources"][tunnel_id]["Properties"]["DestinationAccessTokenSecretArn"]
    values = {name: output["Value"] for name, output in template["Outputs"].items()}
    assert values == {
        "TunnelId": {"Ref": tunnel_id},
        "TunnelArn": {"Fn::GetAtt": [tunnel_id, "TunnelArn"]},
        "SourceTokenSecretArn": source,
        "DestinationTokenSecretArn": destination,
        "FetchSourceTokenCommand": {
            "Fn::Join": [
                "",
                [
                    "aws secretsmanager get-secret-value --region ",
                    {"Ref": "AWS::Region"},
                    " --secret-id ",
                    source,
                    " --query SecretString --output text",
                ],
            ]
        },
    }
    assert all(output.get("Description") for output in template["Outputs"].values())


def test_context_sets_the_thing_name_and_services(tmp_path: Path) -> None:
    import aws_cdk as cdk

    import app as app_module

    context = {
        **cdk_json_context(),
        "aws:cdk:bundling-stacks": [],
        "thing_name": "my-device",
        "services": "SSH, HTTP",
    }
    assembly = app_module.build_app(cdk.App(outdir=str(tmp_path), context=context)).synth()
    template = assembly.get_stack_by_name(app_module.DEMO_STACK_NAME).template
    (thing_id,) = resources_of_type(template, "AWS::IoT::Thing")
    assert template["Resources"][thing_id]["Properties"] == {"ThingName": "my-device"}
    (tunnel,) = resources_of_type(template, RESOURCE_TYPE).values()
    assert tunnel["Properties"]["DestinationConfig"]["Services"] == ["SSH", "HTTP"]


# --------------------------------------------------------------------------- cdk-nag


def _nag_results(assembly: Assembly) -> tuple[list[Any], list[Any]]:
    violations, suppressed = [], []
    for plugin in assembly.validation_report()["pluginReports"]:
        violations += plugin.get("violations", [])
        suppressed += plugin.get("suppressedViolations", [])
    return violations, suppressed


def test_cdk_nag_reports_no_unacknowledged_finding(
    cli_assembly: Assembly, in_process_assembly: Assembly, construct_synth: ConstructSynth
) -> None:
    assert construct_synth.assembly.error is None, construct_synth.assembly.error
    for assembly in (cli_assembly, in_process_assembly, construct_synth.assembly):
        report = assembly.validation_report()
        assert [p["pluginName"] for p in report["pluginReports"]] == ["AwsSolutions"]
        violations, _ = _nag_results(assembly)
        assert violations == []
        assert {p["conclusion"] for p in report["pluginReports"]} == {"success"}


def test_every_acknowledged_finding_has_its_reason(
    cli_assembly: Assembly, construct_synth: ConstructSynth
) -> None:
    provider = acknowledgments.provider_wildcards(SECRET_NAME_PREFIX, {"Ref": THING_NAME_PREFIX_PARAMETER})
    known = (*acknowledgments.ALL, *provider)
    reasons = {a.id: a.reason for a in known}
    assert all(len(reason) > 60 for reason in reasons.values())
    seen = set()
    for assembly in (cli_assembly, construct_synth.assembly):
        _, suppressed = _nag_results(assembly)
        for finding in suppressed:
            assert finding["reason"] == reasons[finding["acknowledgedId"]], finding
            seen.add(finding["acknowledgedId"])
    # Each acknowledgment the library makes is in use (none is stale).
    assert seen == set(reasons)


def test_acknowledged_findings_of_the_demo_stack(cli_assembly: Assembly) -> None:
    _, suppressed = _nag_results(cli_assembly)
    found = sorted(
        (f["ruleName"], c["constructPath"].removeprefix(f"{DEMO_STACK}/"))
        for f in suppressed
        for c in f["violatingConstructs"]
        if c["constructPath"].startswith(f"{DEMO_STACK}/")
    )
    assert found == [
        ("AwsSolutions-IAM5[Resource::*]", "IoTSecureTunnelHandler/ServiceRole/DefaultPolicy/Resource"),
        (
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:tunnel/*]",
            "IoTSecureTunnelHandler/ServiceRole/DefaultPolicy/Resource",
        ),
        (
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>"
            ":secret:*]",
            "IoTSecureTunnelHandler/ServiceRole/DefaultPolicy/Resource",
        ),
        ("AwsSolutions-SMG4", "Tunnel/DestinationTokenSecret/Resource"),
        ("AwsSolutions-SMG4", "Tunnel/SourceTokenSecret/Resource"),
    ]


# --------------------------------------------------------------------------- cfn-lint


def test_cfn_lint_config_justifies_every_ignored_rule() -> None:
    from cfnlint.config import ConfigFileArgs

    text = CFN_LINT_CONFIG.read_text()
    config = ConfigFileArgs(config_file=CFN_LINT_CONFIG).file_args
    assert set(config) == {"ignore_checks"}
    for rule in config["ignore_checks"]:
        comment = [line for line in text.splitlines() if line.lstrip().startswith("#") and rule in line]
        assert comment, f"{rule} is ignored without a reason in {CFN_LINT_CONFIG.name}"


def test_cfn_lint_passes_every_synthesized_template(
    cli_assembly: Assembly, in_process_assembly: Assembly, construct_synth: ConstructSynth
) -> None:
    templates = [str(p) for p in all_templates(cli_assembly, in_process_assembly, construct_synth.assembly)]
    assert len(templates) == 10
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--config-file",
            str(CFN_LINT_CONFIG),
            "--",
            *templates,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    assert (done.returncode, done.stdout.strip(), done.stderr.strip()) == (0, "", "")


# --------------------------------------------------------------------------- no tokens


def test_no_token_shaped_value_in_any_template(
    cli_assembly: Assembly, in_process_assembly: Assembly, construct_synth: ConstructSynth
) -> None:
    for path in all_templates(cli_assembly, in_process_assembly, construct_synth.assembly):
        assert token_findings(json.loads(path.read_text()), path.name) == []


def test_the_token_scan_finds_tokens() -> None:
    """Positive control: an emulator-style token (as the rig issues), a real-looking one, and a
    token-named key are found; logical ids, paths and asset hashes are not."""
    emulator_token = secrets.token_urlsafe(96)
    realistic = "AQGAAXi" + secrets.token_urlsafe(300).replace("-", "+").replace("_", "/")
    assert token_findings({"Outputs": {"T": {"Value": emulator_token}}})
    assert token_findings({"Value": f"prefix {realistic} suffix"})
    assert token_findings({"Data": {"accessToken": "x"}})
    innocent = {
        "Id": "IoTSecureTunnelHandlerServiceRoleDefaultPolicy4782B37E" * 2,
        "Path": "IoTSecureTunnelDemo/IoTSecureTunnelHandler/ServiceRole/DefaultPolicy/Resource" * 2,
        "Hash": "90a1b3f7a9e1b604740ef8e2b7e58bd4e0d140768a19d1ad03ef8b2cf1adac92" * 2,
    }
    assert token_findings(innocent) == []


# --------------------------------------------------------------------------- handler asset


def test_asset_holds_the_handler_and_crhelper_and_is_small(cli_assembly: Assembly, tmp_path: Path) -> None:
    _, asset = cli_assembly.function_asset(DEMO_STACK)
    files = _tree(asset)
    assert "secure_tunnel_handler/entrypoint.py" in files
    assert "secure_tunnel_handler/__init__.py" in files
    assert "crhelper/__init__.py" in files and "crhelper/resource_helper.py" in files
    top = {name.split("/")[0] for name in files}
    assert top == {"secure_tunnel_handler", "crhelper", "crhelper-2.0.12.dist-info"}
    assert not top & {"boto3", "botocore", "s3transfer", "urllib3", "dateutil", "jmespath"}
    assert not [n for n in files if "__pycache__" in n or n.endswith(".pyc")]
    assert _zipped_size(asset, tmp_path / "asset.zip") < MAX_ASSET_ZIP_BYTES


def test_asset_hash_is_the_same_on_two_independent_synths(
    cli_assembly: Assembly, in_process_assembly: Assembly
) -> None:
    cli_hash, cli_asset = cli_assembly.function_asset(DEMO_STACK)
    other_hash, other_asset = in_process_assembly.function_asset(DEMO_STACK)
    assert cli_assembly.outdir != in_process_assembly.outdir
    assert cli_hash == other_hash
    assert _tree(cli_asset) == _tree(other_asset)


# --------------------------------------------------------------------------- installed package

CONSUMER_APP = """
import importlib.util, json, sys
import aws_cdk as cdk
from aws_cdk import aws_iot as iot
from cdk_iot_secure_tunnel import SecureTunnel

app = cdk.App()
stack = cdk.Stack(app, "Consumer")
thing = iot.CfnThing(stack, "Thing", thing_name="consumer-device")
tunnel = SecureTunnel(stack, "Tunnel", thing=thing, services=["SSH"])
app.synth()
print(json.dumps({name: importlib.util.find_spec(name).origin for name in
                  ("cdk_iot_secure_tunnel", "secure_tunnel_handler", "crhelper")}))
"""


def _run(command: list[str], **kwargs: Any) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600, **kwargs)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{(done.stdout + done.stderr)[-4000:]}"
    return str(done.stdout)


@pytest.mark.synth
def test_installed_wheel_synthesizes_in_a_fresh_venv(tmp_path: Path) -> None:
    """pip install of the repository (a built wheel, not editable, with its dependencies) into a
    fresh virtual environment gives a user everything: the construct, the handler, crhelper."""
    env = tool_environment()
    # Build from a copy of what the package is made of, so the build leaves nothing in the repo.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    no_byte_code = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("constructs", "lambda"):
        shutil.copytree(REPO_ROOT / name, source / name, ignore=no_byte_code)
    wheel_command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist")]
    _run([*wheel_command, str(source)], env=env)
    (wheel,) = (tmp_path / "dist").glob("cdk_iot_secure_tunnel-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], env=env)
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)], env=env)

    project = tmp_path / "consumer"
    project.mkdir()
    (project / "app.py").write_text(CONSUMER_APP)
    outdir = tmp_path / "cdk.out"
    origins = json.loads(_run([python, "app.py"], cwd=project, env={**env, "CDK_OUTDIR": str(outdir)}))
    site_packages = str(venv / "lib")
    assert all(origin.startswith(site_packages) for origin in origins.values()), origins

    consumer = Assembly(outdir)
    template = consumer.template("Consumer")
    assert len(resources_of_type(template, RESOURCE_TYPE)) == 1
    _, asset = consumer.function_asset("Consumer")
    bundled = _tree(asset)
    # The asset holds exactly the wheel's handler package and the crhelper that the dependency
    # resolution installed, bundled as from the repository (same files, same bytes).
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n: archive.read(n) for n in archive.namelist() if n.startswith("secure_tunnel_handler/")}
    assert {n: b for n, b in bundled.items() if n.startswith("secure_tunnel_handler/")} == shipped
    assert "secure_tunnel_handler/entrypoint.py" in shipped
    local = tmp_path / "local-bundle"
    bundle_handler(local)
    assert {n: b for n, b in bundled.items() if n.startswith("crhelper")} == {
        n: b for n, b in _tree(local).items() if n.startswith("crhelper")
    }
