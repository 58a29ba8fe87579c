"""The standalone provider release (``make dist``, tools/dist.py): a template without CDK
bootstrap references that takes the handler zip's location as parameters, a deterministic zip of
exactly the synthesized Lambda asset, and a ``sha256sum -c`` checksum file."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.config import ConfigFileArgs

from cdk_iot_secure_tunnel.provider_stack import (
    CODE_BUCKET_PARAMETER,
    CODE_BUCKET_PER_REGION_CONDITION,
    CODE_BUCKET_REGION_SUFFIX_PARAMETER,
    CODE_KEY_PARAMETER,
    HANDLER_ARN_EXPORT,
    SECRET_NAME_PREFIX,
    SERVICE_TOKEN_EXPORT,
    THING_NAME_PREFIX_PARAMETER,
)
from tests.cdk_helpers import (
    CFN_LINT_CONFIG,
    PROVIDER_STACK,
    REPO_ROOT,
    Assembly,
    expected_rotation_permission,
    partition_arn,
    resources_of_type,
    token_findings,
)
from tests.rig.templates import load
from tools.dist import CHECKSUMS_NAME, TEMPLATE_NAME, ZIP_PREFIX, Release

#: What would tie a template to CDK's bootstrap stack or to CDK itself.
BOOTSTRAP_MARKERS = ("cdk-hnb659fds", "BootstrapVersion", "CDKMetadata", "AWS::CDK")
EXAMPLE_TEMPLATES = sorted((REPO_ROOT / "templates").glob("*.yaml"))


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    """One build of the release, as ``make dist`` makes it, into a temporary directory."""
    from tools.dist import build

    start = time.monotonic()
    built = build(tmp_path_factory.mktemp("dist"))
    print(f"dist build: {time.monotonic() - start:.1f} s")
    return built


def _template(release: Release) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(release.template.read_text())
    return data


def _exports(template: dict[str, Any]) -> dict[str, Any]:
    """Export name -> exported value."""
    return {o["Export"]["Name"]: o["Value"] for o in template.get("Outputs", {}).values() if "Export" in o}


def _imports(node: Any) -> list[Any]:
    """Every ``Fn::ImportValue`` argument in a (long-form) template."""
    if isinstance(node, dict):
        found = [node["Fn::ImportValue"]] if set(node) == {"Fn::ImportValue"} else []
        return found + [name for value in node.values() for name in _imports(value)]
    if isinstance(node, list):
        return [name for value in node for name in _imports(value)]
    return []


def _without_code(resources: dict[str, Any]) -> dict[str, Any]:
    """Resources less CDK's metadata (resource and attributes) and the function's code."""
    kept: dict[str, Any] = {}
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::CDK::Metadata":
            kept[logical_id] = {k: v for k, v in resource.items() if k != "Metadata"}
            kept[logical_id]["Properties"] = {
                k: v for k, v in resource.get("Properties", {}).items() if k != "Code"
            }
    return kept


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- the files


def test_release_is_a_template_a_zip_named_by_the_asset_hash_and_checksums(
    release: Release, cli_assembly: Assembly
) -> None:
    asset_hash, _ = cli_assembly.function_asset(PROVIDER_STACK)
    # The same handler as `cdk synth`: the zip is named by CDK's hash of its content.
    assert release.asset_hash == asset_hash
    assert sorted(p.name for p in release.template.parent.iterdir()) == sorted(
        [TEMPLATE_NAME, f"{ZIP_PREFIX}{asset_hash}.zip", CHECKSUMS_NAME]
    )


def test_zip_holds_exactly_the_files_of_the_synthesized_asset(
    release: Release, cli_assembly: Assembly
) -> None:
    _, asset_dir = cli_assembly.function_asset(PROVIDER_STACK)
    expected = _tree(asset_dir)
    assert "secure_tunnel_handler/entrypoint.py" in expected
    with zipfile.ZipFile(release.handler_zip) as archive:
        assert archive.testzip() is None
        infos = archive.infolist()
        assert [i.filename for i in infos] == sorted(expected)  # sorted, no directory entries
        assert {i.filename: archive.read(i) for i in infos} == expected
    assert {(i.date_time, i.external_attr >> 16, i.create_system) for i in infos} == {
        ((1980, 1, 1, 0, 0, 0), 0o100644, 3)
    }


def test_two_builds_give_identical_bytes_and_a_rebuild_replaces_the_old_zip(
    release: Release, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tools.dist import main

    stale = tmp_path / f"{ZIP_PREFIX}0000.zip"
    stale.write_bytes(b"an older release")
    assert main(["--output", str(tmp_path)]) == 0
    assert _tree(tmp_path) == _tree(release.template.parent)
    printed = capsys.readouterr().out
    assert f"CodeKey={release.handler_zip.name}" in printed
    assert "CAPABILITY_IAM" in printed


def test_checksum_file_verifies_with_sha256sum(release: Release, tmp_path: Path) -> None:
    lines = release.checksums.read_text().splitlines()
    listed = {name: digest for digest, name in (line.split("  ", 1) for line in lines)}
    assert listed == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (release.template, release.handler_zip)
    }
    sha256sum = shutil.which("sha256sum")
    if sha256sum is None:
        return  # the Python check above stands in for it
    run = [sha256sum, "--check", "--strict", CHECKSUMS_NAME]
    ok = subprocess.run(run, cwd=release.checksums.parent, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    tampered = shutil.copytree(release.checksums.parent, tmp_path / "tampered")
    zipped = tampered / release.handler_zip.name
    zipped.write_bytes(zipped.read_bytes() + b"\0")
    bad = subprocess.run(run, cwd=tampered, capture_output=True, text=True, check=False)
    assert bad.returncode != 0


def test_build_fails_on_an_unacknowledged_warning(tmp_path: Path) -> None:
    import aws_cdk as cdk

    from tools.dist import check_findings

    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Warned")
    cdk.Annotations.of(stack).add_warning_v2("test:warning", "a warning nobody acknowledged")
    assembly = app.synth()
    with pytest.raises(RuntimeError, match="a warning nobody acknowledged"):
        check_findings(tmp_path, [assembly.get_stack_artifact("Warned")])


# --------------------------------------------------------------------------- the template


def test_dist_template_passes_cfn_lint(release: Release) -> None:
    ignored = ConfigFileArgs(config_file=CFN_LINT_CONFIG).file_args["ignore_checks"]
    findings = [str(m) for m in lint_file(release.template, config=ManualArgs(ignore_checks=ignored))]
    assert findings == []


def test_dist_template_references_nothing_of_cdk_bootstrap(release: Release, cli_assembly: Assembly) -> None:
    text = release.template.read_text()
    assert [m for m in BOOTSTRAP_MARKERS if m in text] == []
    assert set(_template(release)) == {"Description", "Parameters", "Conditions", "Resources", "Outputs"}
    # The scan finds them where they are: the CDK provider stack's template.
    cdk_text = (cli_assembly.outdir / f"{PROVIDER_STACK}.template.json").read_text()
    assert [m for m in BOOTSTRAP_MARKERS if m in cdk_text] == list(BOOTSTRAP_MARKERS)


def test_dist_template_holds_no_token_shaped_value(release: Release) -> None:
    assert token_findings(_template(release)) == []


def test_dist_template_takes_the_code_location_as_parameters(release: Release) -> None:
    template = _template(release)
    parameters = template["Parameters"]
    assert list(parameters) == [
        THING_NAME_PREFIX_PARAMETER,
        CODE_BUCKET_PARAMETER,
        CODE_KEY_PARAMETER,
        CODE_BUCKET_REGION_SUFFIX_PARAMETER,
    ]
    assert "Default" not in parameters[CODE_BUCKET_PARAMETER]
    assert "Default" not in parameters[CODE_KEY_PARAMETER]
    suffix = parameters[CODE_BUCKET_REGION_SUFFIX_PARAMETER]
    assert (suffix["Default"], suffix["AllowedValues"]) == ("false", ["true", "false"])
    assert template["Conditions"] == {
        CODE_BUCKET_PER_REGION_CONDITION: {
            "Fn::Equals": [{"Ref": CODE_BUCKET_REGION_SUFFIX_PARAMETER}, "true"]
        }
    }
    (function,) = resources_of_type(template, "AWS::Lambda::Function").values()
    bucket = {"Ref": CODE_BUCKET_PARAMETER}
    per_region = {"Fn::Join": ["-", [bucket, {"Ref": "AWS::Region"}]]}
    assert function["Properties"]["Code"] == {
        "S3Bucket": {"Fn::If": [CODE_BUCKET_PER_REGION_CONDITION, per_region, bucket]},
        "S3Key": {"Ref": CODE_KEY_PARAMETER},
    }


def test_dist_template_is_the_cdk_provider_but_for_the_code(release: Release, cli_assembly: Assembly) -> None:
    dist = _template(release)
    cdk_template = cli_assembly.template(PROVIDER_STACK)
    assert _without_code(dist["Resources"]) == _without_code(cdk_template["Resources"])
    assert dist["Outputs"] == cdk_template["Outputs"]
    assert dist["Description"] == cdk_template["Description"]
    thing_prefix = THING_NAME_PREFIX_PARAMETER
    assert dist["Parameters"][thing_prefix] == cdk_template["Parameters"][thing_prefix]


def test_secrets_manager_may_invoke_the_dist_handler_for_the_secret_prefix(release: Release) -> None:
    template = _template(release)
    (function_id,) = resources_of_type(template, "AWS::Lambda::Function")
    (permission,) = resources_of_type(template, "AWS::Lambda::Permission").values()
    assert permission["Properties"] == expected_rotation_permission(
        function_id, partition_arn("secretsmanager", f"secret:{SECRET_NAME_PREFIX}*")
    )


def test_dist_template_exports_the_service_token_and_the_handler_arn(release: Release) -> None:
    template = _template(release)
    (function_id,) = resources_of_type(template, "AWS::Lambda::Function")
    arn = {"Fn::GetAtt": [function_id, "Arn"]}
    assert _exports(template) == {SERVICE_TOKEN_EXPORT: arn, HANDLER_ARN_EXPORT: arn}


def test_every_import_of_the_example_templates_is_exported_by_both_providers(
    release: Release, cli_assembly: Assembly
) -> None:
    imported = {path.name: _imports(load(path)) for path in EXAMPLE_TEMPLATES}
    assert {"minimal.yaml", "full.yaml", "rotation.yaml"} <= set(imported)
    names = {name for names in imported.values() for name in names}
    assert names == {SERVICE_TOKEN_EXPORT, HANDLER_ARN_EXPORT}  # literal names only, both used
    for provider in (_template(release), cli_assembly.template(PROVIDER_STACK)):
        assert names <= set(_exports(provider))


# --------------------------------------------------------------------------- templates/rotation.yaml


def test_rotation_example_rotates_both_secrets_on_demand_after_the_tunnel() -> None:
    template = load(REPO_ROOT / "templates" / "rotation.yaml")
    secrets = resources_of_type(template, "AWS::SecretsManager::Secret")
    (tunnel_id,) = resources_of_type(template, "Custom::IoTSecureTunnel")
    schedules = resources_of_type(template, "AWS::SecretsManager::RotationSchedule").values()
    assert sorted(s["Properties"]["SecretId"]["Ref"] for s in schedules) == sorted(secrets)
    for schedule in schedules:
        assert schedule["DependsOn"] == tunnel_id
        assert schedule["Properties"] == {
            "SecretId": schedule["Properties"]["SecretId"],
            "RotationLambdaARN": {"Fn::ImportValue": HANDLER_ARN_EXPORT},
            "RotateImmediatelyOnUpdate": False,
        }  # no RotationRules: on demand only
    for secret in secrets.values():
        assert secret["Properties"]["Name"]["Fn::Sub"].startswith(SECRET_NAME_PREFIX)
