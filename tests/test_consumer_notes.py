"""What the consumer notes (README "Requirements for your project", docs/consumer-notes.md,
docs/operator-guide.md, docs/resource-reference.md) tell a user, held to what CDK does: which
placements of a customer managed key, a ``SecureTunnel`` and a grantee role across stacks
synthesize and which make a dependency cycle (aws/aws-cdk#14213), the workarounds, the cdk-nag
2.x snippets against what the construct acknowledges, the CDK CLI and toolchain versions, and
the demo's outputs."""

from __future__ import annotations

import json
import re
import sys
import textwrap
import tomllib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk.cloud_assembly_schema import Manifest
from aws_cdk.cx_api import CloudAssembly
from constructs import IConstruct

from cdk_iot_secure_tunnel import SecureTunnel, SecureTunnelProviderStack
from cdk_iot_secure_tunnel.secure_tunnel import SERVICE_TIMEOUT
from demo_stack import SecureTunnelDemoStack
from tests.cdk_helpers import REPO_ROOT, resources_of_type

README = (REPO_ROOT / "README.md").read_text()
NOTES = (REPO_ROOT / "docs" / "consumer-notes.md").read_text()
GUIDE = (REPO_ROOT / "docs" / "operator-guide.md").read_text()
REFERENCE = (REPO_ROOT / "docs" / "resource-reference.md").read_text()
CYCLE = r"DependencyCycle: .* would create a cyclic reference"
#: A key given by a literal ARN: no reference to the stack that holds the key.
LITERAL_KEY_ARN = "arn:aws:kms:eu-west-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _section(text: str, heading: str) -> str:
    """The text under a Markdown heading, up to the next heading of any level."""
    body = text.split(f"{heading}\n", 1)[1]
    return re.split(r"\n#{1,6} ", body, maxsplit=1)[0]


@dataclass
class Placement:
    """One app: a key, a tunnel encrypted with it and an operator role, each in a named stack."""

    key_in: str
    tunnel_in: str
    role_in: str
    app: cdk.App = field(init=False)
    stacks: dict[str, cdk.Stack] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.app = cdk.App(context={"aws:cdk:bundling-stacks": []})

    def stack(self, name: str) -> cdk.Stack:
        if name not in self.stacks:
            self.stacks[name] = cdk.Stack(self.app, name)
        return self.stacks[name]

    def build(self, key: kms.IKey | None = None) -> tuple[SecureTunnel, iam.Role]:
        """The tunnel (with ``key``, default a new key in ``key_in``) and the role, ungranted."""
        if key is None:
            key = kms.Key(self.stack(self.key_in), "Key")
        tunnel = SecureTunnel(
            self.stack(self.tunnel_in), "Tunnel", thing="device-1", services=["SSH"], encryption_key=key
        )
        return tunnel, iam.Role(self.stack(self.role_in), "Operator", assumed_by=iam.AccountRootPrincipal())

    def role_statements(self, assembly: CloudAssembly) -> list[dict[str, Any]]:
        template = assembly.get_stack_by_name(self.role_in).template
        return [
            statement
            for logical_id, policy in resources_of_type(template, "AWS::IAM::Policy").items()
            if logical_id.startswith("OperatorDefaultPolicy")
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        ]


#: (key, tunnel, role) stacks, and whether the construct's grants make a cycle there.
CONSTRUCT_PLACEMENTS = {
    "all in one stack": (("A", "A", "A"), False),
    "key apart": (("Keys", "Tunnels", "Tunnels"), False),
    "key, tunnel and role apart": (("Keys", "Tunnels", "Operators"), False),
    "key beside the tunnel, role apart": (("Tunnels", "Tunnels", "Operators"), False),
    "role beside the key, tunnel apart": (("Keys", "Tunnels", "Keys"), True),
}


@pytest.mark.synth
@pytest.mark.parametrize(("stacks", "cycles"), CONSTRUCT_PLACEMENTS.values(), ids=CONSTRUCT_PLACEMENTS.keys())
def test_the_constructs_grants_cycle_only_with_the_role_beside_the_key_and_the_tunnel_apart(
    stacks: tuple[str, str, str], cycles: bool
) -> None:
    placement = Placement(*stacks)
    tunnel, role = placement.build()
    tunnel.grant_rotate_source_token(role)  # read (with kms:Decrypt), rotate, invoke
    if cycles:
        # Inherent: the tunnel's stack needs the key's ARN, the role's stack the secret's ARN.
        with pytest.raises(RuntimeError, match=CYCLE):
            placement.app.synth()
        return
    assembly = placement.app.synth()
    (decrypt,) = [s for s in placement.role_statements(assembly) if s["Action"] == "kms:Decrypt"]
    assert list(decrypt["Condition"]["StringEquals"]) == ["kms:ViaService"]
    # No role was added to the key's policy, so a key's own stack refers to no other stack.
    key_template = assembly.get_stack_by_name(placement.key_in).template
    (key,) = resources_of_type(key_template, "AWS::KMS::Key").values()
    assert "Operator" not in json.dumps(key["Properties"]["KeyPolicy"])
    if placement.key_in not in (placement.tunnel_in, placement.role_in):
        assert "Fn::ImportValue" not in json.dumps(key_template)


@pytest.mark.synth
def test_a_key_given_by_its_literal_arn_breaks_the_cycle_of_a_role_beside_the_key() -> None:
    placement = Placement("Keys", "Tunnels", "Keys")
    imported = kms.Key.from_key_arn(placement.stack("Tunnels"), "TokenKey", LITERAL_KEY_ARN)
    tunnel, role = placement.build(key=imported)
    assert tunnel.grant_read_source_token(role).success
    assembly = placement.app.synth()
    (decrypt,) = [s for s in placement.role_statements(assembly) if s["Action"] == "kms:Decrypt"]
    assert decrypt["Resource"] == LITERAL_KEY_ARN


#: (key, tunnel, role) stacks where CDK's own Secret.grant_read on the tunnel's secret cycles.
CDK_GRANT_READ_CYCLES = {
    "key apart": ("Keys", "Tunnels", "Tunnels"),
    "key, tunnel and role apart": ("Keys", "Tunnels", "Operators"),
    "key beside the tunnel, role apart": ("Tunnels", "Tunnels", "Operators"),
    "role beside the key, tunnel apart": ("Keys", "Tunnels", "Keys"),
}


@pytest.mark.synth
@pytest.mark.parametrize("stacks", CDK_GRANT_READ_CYCLES.values(), ids=CDK_GRANT_READ_CYCLES.keys())
def test_cdks_own_secret_grant_read_on_a_token_secret_cycles_across_stacks(
    stacks: tuple[str, str, str],
) -> None:
    """CDK adds the role to the key's policy (aws/aws-cdk#14213): the key's stack then refers to
    the role's, which refers to the secret's."""
    placement = Placement(*stacks)
    tunnel, role = placement.build()
    tunnel.source_token_secret.grant_read(role)
    with pytest.raises(RuntimeError, match=CYCLE):
        placement.app.synth()


@pytest.mark.synth
def test_cdks_own_secret_grant_read_in_one_stack_synthesizes() -> None:
    placement = Placement("A", "A", "A")
    tunnel, role = placement.build()
    assert tunnel.source_token_secret.grant_read(role).success
    placement.app.synth()


@pytest.mark.synth
def test_cdks_own_secret_grant_read_with_an_imported_key_grants_no_decrypt() -> None:
    """Importing the key by ARN avoids the cycle but leaves the role unable to decrypt."""
    placement = Placement("Keys", "Tunnels", "Tunnels")
    key = kms.Key(placement.stack("Keys"), "Key")
    imported = kms.Key.from_key_arn(placement.stack("Tunnels"), "Imported", key.key_arn)
    tunnel, role = placement.build(key=imported)
    assert tunnel.source_token_secret.grant_read(role).success
    assembly = placement.app.synth()
    actions = json.dumps([s["Action"] for s in placement.role_statements(assembly)])
    assert "secretsmanager:GetSecretValue" in actions
    assert "kms:" not in actions


class _Recorder:
    """Stands in for cdk-nag 2.x's ``cdk_nag`` module: records what a snippet suppresses where.
    Signatures as in cdk-nag 2.38.2: ``NagPackSuppression(*, id, reason, applies_to=None)``,
    ``NagSuppressions.add_resource_suppressions(construct, suppressions, apply_to_children=None)``."""

    def __init__(self) -> None:
        self.suppressed: set[tuple[str, str]] = set()  # (finding, construct path)
        recorder = self

        class NagPackSuppression:
            def __init__(self, *, id: str, reason: str, applies_to: list[str] | None = None) -> None:
                assert len(reason) >= 10  # cdk-nag's own minimum
                self.findings = [f"{id}[{a}]" for a in applies_to] if applies_to else [id]

        class NagSuppressions:
            @staticmethod
            def add_resource_suppressions(
                construct: IConstruct,
                suppressions: list[NagPackSuppression],
                apply_to_children: bool | None = None,
            ) -> None:
                assert apply_to_children is True
                for suppression in suppressions:
                    for finding in suppression.findings:
                        recorder.suppressed.add((finding, construct.node.path))

        self.module = types.ModuleType("cdk_nag")
        self.module.__dict__.update(NagPackSuppression=NagPackSuppression, NagSuppressions=NagSuppressions)


def _acknowledged(assembly_dir: Path) -> set[tuple[str, str]]:
    """(finding, construct path) of each finding cdk-nag 3.x lists as acknowledged."""
    report = json.loads((assembly_dir / "validation-report.json").read_text())
    assert [p["conclusion"] for p in report["pluginReports"]] == ["success"]
    return {
        (finding["ruleName"], construct["constructPath"])
        for plugin in report["pluginReports"]
        for finding in plugin.get("suppressedViolations", [])
        for construct in finding["violatingConstructs"]
    }


def _covers(suppressed: set[tuple[str, str]], acknowledged: set[tuple[str, str]]) -> bool:
    """Every acknowledged finding is suppressed on its construct or an ancestor, and every
    suppressed finding is one that was acknowledged."""
    covered = {
        (finding, path)
        for finding, path in acknowledged
        if any(f == finding and (path == p or path.startswith(f"{p}/")) for f, p in suppressed)
    }
    used = {
        (finding, path)
        for finding, path in suppressed
        if any(f == finding and (p == path or p.startswith(f"{path}/")) for f, p in acknowledged)
    }
    return covered == acknowledged and used == suppressed


@pytest.mark.synth
def test_the_readme_cdk_nag_2_snippet_suppresses_exactly_what_the_construct_acknowledges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdk_nag import AwsSolutionsChecks

    (snippet,) = re.findall(
        r"```python\n(.*?)```", _section(README, "### Requirements for your project"), re.S
    )
    app = cdk.App(outdir=str(tmp_path), context={"aws:cdk:bundling-stacks": []})
    stack = cdk.Stack(app, "Consumer")
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    tunnels = [
        SecureTunnel(stack, "Tunnel", thing="device-1", services=["SSH"], encryption_key=key),
        SecureTunnel(stack, "Other", thing="device-2", services=["SSH"], create_destination_secret=False),
    ]
    tunnels[0].grant_rotate_source_token(iam.Role(stack, "Operator", assumed_by=iam.AccountRootPrincipal()))
    recorder = _Recorder()
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "cdk_nag", recorder.module)
        for tunnel in tunnels:  # the README: once per SecureTunnel
            exec(textwrap.dedent(snippet), {"tunnel": tunnel, "stack": stack})  # noqa: S102
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()

    acknowledged = _acknowledged(tmp_path)
    assert {finding for finding, _ in acknowledged} == {
        "AwsSolutions-SMG4",
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:tunnel/*]",
        "AwsSolutions-IAM5[Resource::*]",
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:*]",
    }
    assert _covers(recorder.suppressed, acknowledged), (sorted(recorder.suppressed), sorted(acknowledged))


@pytest.mark.synth
def test_the_provider_cdk_nag_2_snippet_suppresses_exactly_what_the_provider_acknowledges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdk_nag import AwsSolutionsChecks

    (snippet,) = re.findall(r"```python\n(.*?)```", _section(NOTES, "## cdk-nag"), re.S)
    app = cdk.App(outdir=str(tmp_path), context={"aws:cdk:bundling-stacks": []})
    recorder = _Recorder()
    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "cdk_nag", recorder.module)
        exec(textwrap.dedent(snippet), {"app": app})  # noqa: S102
    assert [type(s) for s in app.node.children] == [SecureTunnelProviderStack]
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()

    acknowledged = _acknowledged(tmp_path)
    assert len({finding for finding, _ in acknowledged}) == 5
    assert _covers(recorder.suppressed, acknowledged), (sorted(recorder.suppressed), sorted(acknowledged))


def test_the_readme_names_the_cdk_nag_version_the_tests_use() -> None:
    (pin,) = re.findall(r"^cdk-nag==(\S+)$", (REPO_ROOT / "requirements-dev.txt").read_text(), re.M)
    assert f"cdk-nag {pin}" in _section(README, "### Requirements for your project")
    assert f"cdk-nag {pin}" in NOTES


@pytest.mark.synth
def test_the_documented_minimum_cdk_cli_is_what_aws_cdk_lib_asks_for() -> None:
    minimum = Manifest.cli_version()
    assert minimum is not None
    requirements = _section(README, "### Requirements for your project")
    assert f"**CDK CLI {minimum} or newer.**" in requirements
    assert f"schema {Manifest.version().split('.')[0]}" in requirements
    assert f"CLI **{minimum} or newer**" in NOTES
    pinned = json.loads((REPO_ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]

    def numbers(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("."))

    assert numbers(minimum) <= numbers(pinned) < (3,)
    assert f"CLI {pinned}" in requirements


def test_the_quick_start_names_what_the_two_commands_need() -> None:
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.splitlines()] == [["make", "synth"], ["make", "test"]]
    after = README.split("```", 2)[2].split("\n\n", 2)[1]
    python = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python == ">=3.11" and "Python 3.11+" in after
    node = json.loads((REPO_ROOT / "node_modules" / "aws-cdk" / "package.json").read_text())["engines"][
        "node"
    ]
    assert node == ">= 18.0.0" and "Node.js 18+" in after
    for needed in ("`make`", "PyPI", "npm", "1 GB", "requirements-dev.txt"):
        assert needed in after


def test_both_deploy_sections_say_to_bootstrap_first() -> None:
    bootstrap = "cdk bootstrap aws://<account>/<region>"
    assert bootstrap in _section(README, "## Deploy the demo (needs an AWS account)")
    assert bootstrap in _section(GUIDE, "## 1. Deploy")
    assert bootstrap in _section(NOTES, "## Bootstrap before the first deploy")


@pytest.mark.synth
def test_the_operator_guide_lists_every_output_of_the_demo_stack() -> None:
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    SecureTunnelDemoStack(app, "Demo", thing_name="my-device", services=["SSH"])
    outputs = set(app.synth().get_stack_by_name("Demo").template["Outputs"])
    deploy = _section(GUIDE, "## 1. Deploy")
    assert outputs == {
        "TunnelId",
        "TunnelArn",
        "SourceTokenSecretArn",
        "DestinationTokenSecretArn",
        "FetchSourceTokenCommand",
    }
    assert all(f"`{name}`" in deploy for name in outputs)
    assert f"stack's {['', 'one', 'two', 'three', 'four', 'five'][len(outputs)]} outputs" in deploy


@pytest.mark.synth
def test_the_reference_states_the_service_timeout_the_construct_sets() -> None:
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    stack = cdk.Stack(app, "Stack")
    SecureTunnel(stack, "Tunnel", thing="device-1", services=["SSH"])
    template = app.synth().get_stack_by_name("Stack").template
    (resource,) = resources_of_type(template, "Custom::IoTSecureTunnel").values()
    seconds = int(SERVICE_TIMEOUT.to_seconds())
    assert resource["Properties"]["ServiceTimeout"] == str(seconds)
    entry = REFERENCE.split("`ServiceTimeout`\n", 1)[1].split("\n\n", 1)[0]
    assert f"sets {seconds}" in entry and "1\N{EN DASH}3600" in entry and "default 3600" in entry
