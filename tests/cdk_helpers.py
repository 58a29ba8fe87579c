"""Helpers shared by the construct and app tests: cloud assembly access, template lookups,
intrinsic resolution for checkers that need literal JSON, and the access-token scan."""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.rig.iam_policy import condition_holds

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_STACK = "IoTSecureTunnelDemo"
PROVIDER_STACK = "IoTSecureTunnelProvider"
CDK_CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"
CFN_LINT_CONFIG = REPO_ROOT / ".cfnlintrc.yaml"
FAKE_ACCOUNT = "123456789012"
FAKE_REGION = "eu-west-1"
FAKE_STACK_ID = f"arn:aws:cloudformation:{FAKE_REGION}:{FAKE_ACCOUNT}:stack/Stack/0f1e2d3c"

Json = dict[str, Any]


def tool_environment() -> dict[str, str]:
    """The environment of the Makefile (.venv/bin and the pinned CDK CLI first on PATH, no jsii
    end-of-life banner, no CLI telemetry), without AWS credentials or anything that would
    redirect a synth."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDK_", "PYTHONPATH", "AWS_"))}
    # No AWS account: no credentials, no profile, no instance metadata.
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    paths = [str(Path(sys.executable).parent), str(REPO_ROOT / "node_modules" / ".bin"), env.get("PATH", "")]
    env["PATH"] = os.pathsep.join(paths)
    env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    env["CDK_DISABLE_CLI_TELEMETRY"] = "true"
    return env


def cdk_json_context() -> Json:
    """The context of cdk.json (the recommended feature flags)."""
    context: Json = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return context


# --------------------------------------------------------------------------- cloud assemblies


@dataclass
class Assembly:
    """A cloud assembly directory and what the tests read from it."""

    outdir: Path
    error: str | None = None
    seconds: float = 0.0

    def template(self, stack: str) -> Json:
        """The stack's CloudFormation template."""
        data: Json = json.loads((self.outdir / f"{stack}.template.json").read_text())
        return data

    def template_paths(self) -> list[Path]:
        """Every template in the assembly."""
        return sorted(self.outdir.glob("*.template.json"))

    def validation_report(self) -> Json:
        """The policy validation report (cdk-nag findings, suppressed ones with their reason)."""
        path = self.outdir / "validation-report.json"
        report: Json = json.loads(path.read_text()) if path.exists() else {"pluginReports": []}
        return report

    def file_assets(self, stack: str) -> dict[str, Path]:
        """Asset hash -> staged directory, from the stack's asset manifest."""
        manifest = json.loads((self.outdir / f"{stack}.assets.json").read_text())
        return {h: self.outdir / a["source"]["path"] for h, a in manifest.get("files", {}).items()}

    def function_asset(self, stack: str) -> tuple[str, Path]:
        """(hash, directory) of the handler function's code asset."""
        template = self.template(stack)
        (function,) = resources_of_type(template, "AWS::Lambda::Function").values()
        key = function["Properties"]["Code"]["S3Key"]
        asset_hash = key.removesuffix(".zip")
        return asset_hash, self.file_assets(stack)[asset_hash]


# --------------------------------------------------------------------------- construct stacks


@dataclass
class ConstructSynth:
    """The construct test app: its templates, and the logical ids of the constructs under test."""

    assembly: Assembly
    logical_ids: dict[str, str] = field(default_factory=dict)
    handler_is_shared: bool = False

    def template(self, stack: str) -> Json:
        """The stack's CloudFormation template."""
        return self.assembly.template(stack)

    def id(self, label: str) -> str:
        """Logical id of a labelled construct (see :func:`construct_synth`)."""
        return self.logical_ids[label]


# --------------------------------------------------------------------------- template helpers


def resources_of_type(template: Json, kind: str) -> dict[str, Json]:
    """Resources of one CloudFormation type, by logical id."""
    return {name: r for name, r in template.get("Resources", {}).items() if r["Type"] == kind}


def rotation_permissions(template: Json) -> dict[str, Json]:
    """The template's invoke permissions for Secrets Manager (rotation), properties by logical id."""
    return {
        logical_id: permission["Properties"]
        for logical_id, permission in resources_of_type(template, "AWS::Lambda::Permission").items()
        if permission["Properties"]["Principal"] == "secretsmanager.amazonaws.com"
    }


def expected_rotation_permission(function_id: str, source_arn: Json) -> Json:
    """The properties of the function's invoke permission for Secrets Manager, as synthesized."""
    return {
        "Action": "lambda:InvokeFunction",
        "FunctionName": {"Fn::GetAtt": [function_id, "Arn"]},
        "Principal": "secretsmanager.amazonaws.com",
        "SourceAccount": {"Ref": "AWS::AccountId"},
        "SourceArn": source_arn,
    }


def resource_types(template: Json) -> Counter[str]:
    """How many resources of each type the template has."""
    return Counter(r["Type"] for r in template.get("Resources", {}).values())


def partition_arn(service: str, resource: str) -> Json:
    """``arn:${Partition}:<service>:${Region}:${Account}:<resource>`` as CDK renders it."""
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                f":{service}:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                f":{resource}",
            ],
        ]
    }


def resolve(value: Any, template: Json) -> Any:
    """Replace intrinsics with plausible literals (for checkers, like parliament, that need plain
    JSON): pseudo parameters, Ref and GetAtt Arn of the template's resources, Fn::Join."""
    resources = template.get("Resources", {})
    region, account = FAKE_REGION, FAKE_ACCOUNT
    arns = {
        "AWS::IoT::Thing": f"arn:aws:iot:{region}:{account}:thing/{{}}",
        "AWS::Logs::LogGroup": f"arn:aws:logs:{region}:{account}:log-group:{{}}:*",
        "AWS::SecretsManager::Secret": f"arn:aws:secretsmanager:{region}:{account}:secret:{{}}-AbCdEf",
        "AWS::KMS::Key": f"arn:aws:kms:{region}:{account}:key/{{}}",
        "AWS::IAM::Role": f"arn:aws:iam::{account}:role/{{}}",
        "AWS::Lambda::Function": f"arn:aws:lambda:{region}:{account}:function:{{}}",
    }
    refs: dict[str, str] = {
        "AWS::Partition": "aws",
        "AWS::Region": region,
        "AWS::AccountId": account,
        "AWS::StackId": FAKE_STACK_ID,
        "AWS::StackName": "Stack",
        "AWS::URLSuffix": "amazonaws.com",
    }

    intrinsics: dict[str, Callable[[Any], Any]] = {
        "Ref": lambda name: refs.get(name, f"param-{name}"),
        "Fn::GetAtt": lambda args: arns[resources[args[0]]["Type"]].format(args[0]),
        "Fn::Join": lambda args: args[0].join(str(walk(p)) for p in args[1]),
        "Fn::Split": lambda args: str(walk(args[1])).split(args[0]),
        "Fn::Select": lambda args: walk(args[1])[int(args[0])],
    }

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(x) for x in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1 and next(iter(node)) in intrinsics:
            ((function, arguments),) = node.items()
            return intrinsics[function](arguments)
        return {k: walk(v) for k, v in node.items()}

    for name, resource in resources.items():
        # Ref of a thing is its name; of a secret, its ARN (with its name, if it has one).
        kind = resource["Type"]
        secret_name = (
            resource.get("Properties", {}).get("Name") if kind == "AWS::SecretsManager::Secret" else None
        )
        refs[name] = (
            name if kind == "AWS::IoT::Thing" else arns.get(kind, "{}").format(walk(secret_name or name))
        )
    return walk(value)


#: The stack's UUID as the construct renders it (the default token secret names start with it).
STACK_UUID = {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}


def secret_arn_named(name: str) -> str:
    """The ARN Secrets Manager gives a secret of that name (with a random 6-character suffix)."""
    return f"arn:aws:secretsmanager:{FAKE_REGION}:{FAKE_ACCOUNT}:secret:{name}-AbCdEf"


def secrets_manager_may_invoke(permission: Json, secret_arn: str) -> bool:
    """Whether Secrets Manager, rotating ``secret_arn`` of this account, matches the conditions of
    a resolved rotation permission (``SourceArn`` is compared with ``ArnLike``)."""
    context = {"aws:sourcearn": [secret_arn], "aws:sourceaccount": [FAKE_ACCOUNT]}
    source_arn = permission.get("SourceArn")
    arn_ok = source_arn is None or condition_holds("ArnLike", "aws:SourceArn", source_arn, context)
    return arn_ok and permission["SourceAccount"] == FAKE_ACCOUNT


# --------------------------------------------------------------------------- token scan

#: Keys under which an access token would travel (API and secret-value field names).
TOKEN_KEYS = frozenset(
    {"accessToken", "sourceAccessToken", "destinationAccessToken", "clientAccessToken", "AccessToken"}
)
_TOKEN_RUN = re.compile(r"[A-Za-z0-9+/=_-]{100,}")


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def token_shaped(text: str) -> list[str]:
    """Runs of 100+ base64/base64url characters with the entropy of random data (tunnel access
    tokens are several hundred such characters; paths, ids and hashes are not)."""
    return [run for run in _TOKEN_RUN.findall(text) if _entropy(run) > 4.5]


def token_findings(document: Any, where: str = "") -> list[str]:
    """Token-shaped strings and token-named keys anywhere in a JSON document."""
    found: list[str] = []
    if isinstance(document, dict):
        for key, value in document.items():
            if key in TOKEN_KEYS:
                found.append(f"{where}/{key}: key named like an access token")
            found += token_findings(value, f"{where}/{key}")
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += token_findings(value, f"{where}[{index}]")
    elif isinstance(document, str):
        text = unpack_cdk_analytics(document)
        found += [f"{where}: {run[:12]}... ({len(run)} chars)" for run in token_shaped(text)]
    return found


def unpack_cdk_analytics(value: str) -> str:
    """The text inside CDK's ``AWS::CDK::Metadata`` Analytics value (``v2:deflate64:`` + base64 of
    gzip), so that the scan looks at what it carries rather than at its compressed form."""
    prefix = "v2:deflate64:"
    if not value.startswith(prefix):
        return value
    return gzip.decompress(base64.b64decode(value.removeprefix(prefix))).decode()


def all_templates(*assemblies: Assembly) -> Iterator[Path]:
    """Every template file of the given assemblies."""
    for assembly in assemblies:
        yield from assembly.template_paths()
