"""What a consumer of the construct library meets (issue 12): predictable secret names with one
rotation permission per name prefix, outputs only when asked for, one combined grant, no
redundant dependency for cfn-lint, a package root that exports what users use, and a wheel that
ships its license."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from cfnlint.config import ConfigFileArgs

import cdk_iot_secure_tunnel
from cdk_iot_secure_tunnel import SecureTunnel
from cdk_iot_secure_tunnel.validation import DESTINATION_SECRET_NAME_SUFFIX, SOURCE_SECRET_NAME_SUFFIX
from tests.cdk_helpers import (
    CFN_LINT_CONFIG,
    FAKE_ACCOUNT,
    FAKE_REGION,
    FAKE_STACK_ID,
    REPO_ROOT,
    ConstructSynth,
    resolve,
    resources_of_type,
    rotation_permissions,
    secret_arn_named,
    secrets_manager_may_invoke,
)
from tests.synth_fixtures import FIELD_PREFIX, LAB_PREFIX
from tests.wheels import build_wheel

#: What a user imports from the package root, and nothing else.
PUBLIC_NAMES = {
    "DeviceNotifyPolicy",
    "OWNER_TAG_KEY",
    "RESOURCE_TYPE",
    "SecureTunnel",
    "SecureTunnelHandler",
    "SecureTunnelProviderStack",
}


def _secret_name(template: dict[str, Any], logical_id: str) -> str | None:
    name: str | None = template["Resources"][logical_id]["Properties"].get("Name")
    return name


def _rotation_permissions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The rotation permissions, their intrinsics resolved to literals."""
    return {name: resolve(p, template) for name, p in rotation_permissions(template).items()}


# --------------------------------------------------------------------------- secret names


def test_secret_name_prefix_names_both_secrets_and_the_default_is_the_stacks(
    construct_synth: ConstructSynth,
) -> None:
    s = construct_synth
    template = s.template("Named")
    assert _secret_name(template, s.id("Named.LabSource")) == f"{LAB_PREFIX}{SOURCE_SECRET_NAME_SUFFIX}"
    assert (
        _secret_name(template, s.id("Named.LabDestination"))
        == f"{LAB_PREFIX}{DESTINATION_SECRET_NAME_SUFFIX}"
    )
    assert _secret_name(template, s.id("Named.FieldSource")) == f"{FIELD_PREFIX}source-token"
    # Without a prefix: under the stack's UUID (a recreated stack gets new names), then the
    # construct id and the start of its address (unique in the stack).
    uuid = FAKE_STACK_ID.rsplit("/", 1)[1]
    default = re.compile(f"tunnel-tokens/{uuid}/Generated-[0-9a-f]{{8}}/(source|destination)-token")
    for secret in ("Named.GeneratedSource", "Named.GeneratedDestination"):
        name = resolve(template["Resources"][s.id(secret)]["Properties"]["Name"], template)
        assert default.fullmatch(name), name


def test_each_prefix_has_its_own_rotation_permission_naming_its_secrets(
    construct_synth: ConstructSynth,
) -> None:
    s = construct_synth
    template = s.template("Named")
    permissions = _rotation_permissions(template)
    # One per explicit prefix and one for the stack's default names; all for this function only.
    assert len(permissions) == 3
    assert {p["FunctionName"] for p in permissions.values()} == {
        f"arn:aws:lambda:{FAKE_REGION}:{FAKE_ACCOUNT}:function:{s.id('Named.Function')}"
    }
    secrets = [
        resolve({"Ref": s.id(f"Named.{tunnel}{side}")}, template)
        for tunnel in ("Lab", "Field", "Generated")
        for side in ("Source", "Destination")
    ]
    for arn in secrets:
        assert sum(secrets_manager_may_invoke(p, arn) for p in permissions.values()) == 1, arn
    # Every permission names its secrets: no other secret of the account may use the handler.
    for stranger in ("someone-elses/secret", "tunnel-tokens/another-stack/Tunnel-0123abcd/source-token"):
        assert not any(
            secrets_manager_may_invoke(p, secret_arn_named(stranger)) for p in permissions.values()
        )


def test_each_rotation_schedule_waits_for_the_permission_that_serves_its_secret(
    construct_synth: ConstructSynth,
) -> None:
    s = construct_synth
    template = s.template("Named")
    permissions = _rotation_permissions(template)
    schedules = resources_of_type(template, "AWS::SecretsManager::RotationSchedule")
    assert len(schedules) == 6
    for schedule in schedules.values():
        secret_id = schedule["Properties"]["SecretId"]["Ref"]
        arn = resolve({"Ref": secret_id}, template)
        (waits_for,) = [p for p in schedule["DependsOn"] if p in permissions]
        assert secrets_manager_may_invoke(permissions[waits_for], arn), (
            f"{secret_id}: {waits_for} does not serve it"
        )


def _tunnel(stack: cdk.Stack, construct_id: str, **arguments: Any) -> SecureTunnel:
    return SecureTunnel(stack, construct_id, thing="device", services=["SSH"], **arguments)


def _bare_stack() -> cdk.Stack:
    return cdk.Stack(cdk.App(context={"aws:cdk:bundling-stacks": []}), "Stack")


@pytest.mark.parametrize(
    ("prefix", "error", "says"),
    [
        ("", ValueError, "a secret name prefix of 1-495 characters"),
        ("has space/", ValueError, "[A-Za-z0-9/_+=.@-]"),
        ("tunnel#1/", ValueError, "[A-Za-z0-9/_+=.@-]"),
        ("p" * 496, ValueError, "1-495 characters"),
        (42, TypeError, "(int)"),
    ],
)
def test_a_bad_secret_name_prefix_fails_and_adds_nothing(
    prefix: Any, error: type[Exception], says: str
) -> None:
    stack = _bare_stack()
    with pytest.raises(error, match="SecureTunnel argument 'secret_name_prefix' must be") as failure:
        _tunnel(stack, "Tunnel", secret_name_prefix=prefix)
    assert says in str(failure.value)
    assert len(stack.node.children) == 0


def test_the_longest_prefix_gives_a_512_character_name() -> None:
    stack = _bare_stack()
    tunnel = _tunnel(stack, "Tunnel", secret_name_prefix="p" * 495)
    name = stack.resolve(tunnel.destination_token_secret.node.default_child.name)  # type: ignore[union-attr]
    assert len(name) == 512


def test_one_prefix_for_two_tunnels_of_a_stack_is_refused_naming_the_first() -> None:
    stack = _bare_stack()
    _tunnel(stack, "First", secret_name_prefix="iot-secure-tunnel/a/")
    _tunnel(stack, "Nested", secret_name_prefix="iot-secure-tunnel/a/b/")  # another name: fine
    with pytest.raises(
        ValueError, match="must be unique per tunnel; got 'iot-secure-tunnel/a/', already used by Stack/First"
    ):
        _tunnel(stack, "Second", secret_name_prefix="iot-secure-tunnel/a/")
    assert stack.node.try_find_child("Second") is None


# --------------------------------------------------------------------------- outputs


def test_outputs_only_when_asked_for_and_never_a_token(construct_synth: ConstructSynth) -> None:
    s = construct_synth
    assert "Outputs" not in s.template("Minimal"), "a library adds no outputs uninvited"
    outputs = s.template("Named")["Outputs"]
    # Only the Lab tunnel asked (outputs=True); each output's id starts with the construct's.
    assert all(name.startswith("Lab") for name in outputs)
    values = {name.removeprefix("Lab")[: -len("ABCD1234")]: o["Value"] for name, o in outputs.items()}
    assert values == {
        "TunnelId": {"Ref": s.id("Named.Lab")},
        "TunnelArn": {"Fn::GetAtt": [s.id("Named.Lab"), "TunnelArn"]},
        "ThingName": "lab-device",
        "SourceTokenSecretArn": {"Ref": s.id("Named.LabSource")},
        "DestinationTokenSecretArn": {"Ref": s.id("Named.LabDestination")},
    }
    assert not any("Export" in o for o in outputs.values()), "an export would pin the stack"


def test_outputs_must_be_a_bool() -> None:
    stack = _bare_stack()
    with pytest.raises(TypeError, match="SecureTunnel argument 'outputs' must be True or False; got 'yes'"):
        _tunnel(stack, "Tunnel", outputs="yes")
    assert len(stack.node.children) == 0


# --------------------------------------------------------------------------- grants


def test_grant_rotate_source_token_returns_the_combination_of_its_three_grants() -> None:
    from aws_cdk import aws_iam as iam

    stack = _bare_stack()
    tunnel = _tunnel(stack, "Tunnel")
    role = iam.Role(stack, "OnCall", assumed_by=iam.AccountRootPrincipal())
    grant = tunnel.grant_rotate_source_token(role)
    assert grant.success
    actions = {a for statement in grant.principal_statements for a in statement.actions}
    assert actions == {
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:RotateSecret",
        "lambda:InvokeFunction",
    }


# --------------------------------------------------------------------------- cfn-lint W3005


def test_no_redundant_dependency_of_the_construct_for_cfn_lint(
    construct_synth: ConstructSynth, tmp_path: Path
) -> None:
    """W3005 (a DependsOn that a Ref already implies) is ignored in .cfnlintrc.yaml only for
    aws-cdk-lib's own Lambda function; nothing this library declares raises it."""
    # cfn-lint also reads a .cfnlintrc.yaml in its working directory: run it elsewhere.
    config = tmp_path / "cfnlintrc.yaml"
    ignored = [
        r for r in ConfigFileArgs(config_file=CFN_LINT_CONFIG).file_args["ignore_checks"] if r != "W3005"
    ]
    config.write_text(json.dumps({"ignore_checks": ignored}))
    stacks = ("Minimal", "Full", "Named")
    paths = [str(construct_synth.assembly.outdir / f"{stack}.template.json") for stack in stacks]
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--config-file",
            str(config),
            "--format",
            "json",
            "--",
            *paths,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    findings = json.loads(done.stdout)
    assert {f["Rule"]["Id"] for f in findings} == {"W3005"}
    flagged = {
        (Path(f["Filename"]).name.removesuffix(".template.json"), f["Location"]["Path"][1]) for f in findings
    }
    types = {construct_synth.template(stack)["Resources"][resource]["Type"] for stack, resource in flagged}
    assert types == {"AWS::Lambda::Function"}
    assert {stack for stack, _ in flagged} == set(stacks)


# --------------------------------------------------------------------------- the package


def test_the_package_root_exports_what_users_use_and_its_version() -> None:
    assert set(cdk_iot_secure_tunnel.__all__) == PUBLIC_NAMES | {"__version__"}
    public = {name for name in dir(cdk_iot_secure_tunnel) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(cdk_iot_secure_tunnel, name)).__name__ == "module"}
    assert public - modules == PUBLIC_NAMES | {"DISTRIBUTION"}
    assert cdk_iot_secure_tunnel.__version__ == metadata.version("cdk-iot-secure-tunnel")


@pytest.fixture(scope="module")
def library_wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """``pip wheel .``, as a consumer's pip builds the construct library."""
    out = tmp_path_factory.mktemp("library-wheel")
    # From a copy of what the wheel is built from: setuptools leaves build/ in the source tree.
    source = tmp_path_factory.mktemp("library-source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO_ROOT / name, source / name)
    for folder in ("constructs", "lambda"):
        shutil.copytree(REPO_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return build_wheel(source, out, "cdk_iot_secure_tunnel-*.whl")


def test_the_library_wheel_ships_the_license_the_handler_and_no_cli_or_demo(
    library_wheel: zipfile.ZipFile,
) -> None:
    names = library_wheel.namelist()
    (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert library_wheel.read(license_file) == (REPO_ROOT / "LICENSE").read_bytes()
    assert "secure_tunnel_handler/entrypoint.py" in names
    assert "cdk_iot_secure_tunnel/secure_tunnel.py" in names
    assert not [n for n in names if n.startswith("secure_tunnel_cli/") or n.endswith("/cli.py")]
    # The demo stack is the project's app, not the library (it lives beside app.py).
    assert not [n for n in names if "demo" in n]


def test_the_readme_layout_names_the_license() -> None:
    assert (REPO_ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert "LICENSE" in Path(REPO_ROOT / "README.md").read_text()


def test_the_readme_layout_table_matches_the_tree() -> None:
    """Every tracked top-level file and folder (dotfiles aside) is in the README's layout table,
    and every path the table names exists."""
    table = (REPO_ROOT / "README.md").read_text().split("## Repository layout", 1)[1].split("\n## ", 1)[0]
    first_cells = [row.split(" | ")[0] for row in table.splitlines() if row.startswith("| `")]
    named = {path.rstrip("/") for cell in first_cells for path in re.findall(r"`([^`]+)`", cell)}
    listing = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    top_level = {path.split("/")[0] for path in listing.stdout.split()}
    unlisted = {
        entry
        for entry in top_level
        if not (entry.startswith(".") and entry != ".ci")
        and not any(fnmatch.fnmatch(entry, name.split("/")[0]) for name in named)
    }
    assert not unlisted, f"top-level entries missing from the README's layout table: {sorted(unlisted)}"
    missing = {name for name in named if not list(REPO_ROOT.glob(name))}
    assert not missing, f"the layout table names paths that do not exist: {sorted(missing)}"
