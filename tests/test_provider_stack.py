"""The provider stack: one handler per account and region, exported for plain CloudFormation,
scoped by convention to the tunnels it opened and the secrets named iot-secure-tunnel/..., and
narrowable to things by name prefix (a template parameter) and by thing group (at synth)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from cdk_iot_secure_tunnel.provider_stack import (
    HANDLER_ARN_EXPORT,
    SECRET_NAME_PREFIX,
    SERVICE_TOKEN_EXPORT,
    THING_NAME_PREFIX_PARAMETER,
)
from tests.cdk_helpers import (
    PROVIDER_STACK,
    Assembly,
    ConstructSynth,
    expected_rotation_permission,
    partition_arn,
    resolve,
    resource_types,
    resources_of_type,
)
from tests.synth_fixtures import THING_GROUP_ARNS
from tests.test_construct import (
    DOCUMENTED_PARLIAMENT_FINDINGS,
    SECRET_ACTIONS,
    VIA_SECRETS_MANAGER,
    handler_statements,
    normalized,
)

OWNER = {"Ref": "AWS::StackId"}
PREFIXED_SECRETS = partition_arn("secretsmanager", f"secret:{SECRET_NAME_PREFIX}*")


def _things() -> dict[str, Any]:
    """``arn:${Partition}:iot:${Region}:${Account}:thing/${ThingNamePrefix}*``."""
    joined = partition_arn("iot", "thing/")
    joined["Fn::Join"][1].extend([{"Ref": THING_NAME_PREFIX_PARAMETER}, "*"])
    return joined


THINGS = _things()


def _template(assembly: Assembly) -> dict[str, Any]:
    return assembly.template(PROVIDER_STACK)


def _policy(template: dict[str, Any]) -> dict[str, Any]:
    (policy,) = resources_of_type(template, "AWS::IAM::Policy").values()
    document: dict[str, Any] = policy["Properties"]["PolicyDocument"]
    return document


def _provider_statements(log_group: str) -> list[dict[str, Any]]:
    """The exact statements of the provider's handler policy, without thing group narrowing."""
    # The construct's statements with the things of the prefix; the secrets of the documented prefix.
    expected = handler_statements([THINGS], log_group, owned_secrets=False)
    expected.append(
        {
            "Sid": "WriteTheTokenSecrets",
            "Effect": "Allow",
            "Action": list(SECRET_ACTIONS),
            "Resource": PREFIXED_SECRETS,
        }
    )
    expected.append(
        {
            "Sid": "EncryptTheTokenSecretsOfThePrefix",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": partition_arn("kms", "key/*"),
            "Condition": {
                "StringEquals": {"kms:ViaService": VIA_SECRETS_MANAGER},
                "StringLike": {"kms:EncryptionContext:SecretARN": PREFIXED_SECRETS},
            },
        }
    )
    return expected


def test_provider_is_one_function_and_its_role_log_group_policy_and_rotation_permission(
    cli_assembly: Assembly,
) -> None:
    template = _template(cli_assembly)
    assert resource_types(template) == {
        "AWS::Lambda::Function": 1,
        "AWS::Lambda::Permission": 1,
        "AWS::IAM::Role": 1,
        "AWS::IAM::Policy": 1,
        "AWS::Logs::LogGroup": 1,
        "AWS::CDK::Metadata": 1,
    }
    (function,) = resources_of_type(template, "AWS::Lambda::Function").values()
    assert function["Properties"]["Handler"] == "secure_tunnel_handler.entrypoint.handler"
    assert function["Properties"]["Environment"]["Variables"]["TUNNEL_OWNER"] == OWNER


def test_provider_exports_the_service_token_and_the_handler_arn(cli_assembly: Assembly) -> None:
    template = _template(cli_assembly)
    (function_id,) = resources_of_type(template, "AWS::Lambda::Function")
    # Both are the function ARN: one for ServiceToken, one for RotationLambdaARN, and no others.
    exports = {name: output["Export"]["Name"] for name, output in template["Outputs"].items()}
    assert exports == {"ServiceToken": SERVICE_TOKEN_EXPORT, "HandlerArn": HANDLER_ARN_EXPORT}
    for output in template["Outputs"].values():
        assert output["Value"] == {"Fn::GetAtt": [function_id, "Arn"]}


def test_example_templates_import_the_exported_name() -> None:
    from tests.test_templates import TEMPLATES

    for path in TEMPLATES:
        assert f"!ImportValue {SERVICE_TOKEN_EXPORT}" in path.read_text()


def test_provider_policy_is_scoped_by_owner_tag_thing_prefix_and_secret_prefix(
    cli_assembly: Assembly,
) -> None:
    template = _template(cli_assembly)
    (log_group,) = resources_of_type(template, "AWS::Logs::LogGroup")
    # No thing group condition unless thing_group_arns is given.
    assert normalized(_policy(template)["Statement"]) == normalized(_provider_statements(log_group))


def test_thing_group_arns_narrow_open_and_rotation_to_those_groups(construct_synth: ConstructSynth) -> None:
    template = construct_synth.template("NarrowProvider")
    expected = _provider_statements(construct_synth.id("NarrowProvider.LogGroup"))
    # A thing can be in several groups: any one of them will do.
    groups = {"ForAnyValue:ArnLike": {"iot:ThingGroupArn": list(THING_GROUP_ARNS)}}
    for statement in expected:
        if statement.get("Sid") in ("OpenTunnelsTaggedWithThisStack", "RotateTunnelsOfTheWiredThings"):
            statement["Condition"] = {**statement.get("Condition", {}), **groups}
    document = template["Resources"][construct_synth.id("NarrowProvider.Policy")]["Properties"][
        "PolicyDocument"
    ]
    assert normalized(document["Statement"]) == normalized(expected)


def test_thing_name_prefix_parameter_narrows_the_things(cli_assembly: Assembly) -> None:
    parameter = _template(cli_assembly)["Parameters"][THING_NAME_PREFIX_PARAMETER]
    assert {k: v for k, v in parameter.items() if k != "Description"} == {
        "Type": "String",
        "Default": "",
        "AllowedPattern": "[a-zA-Z0-9:_-]*",
        "MaxLength": 127,
    }
    assert parameter["Description"]


@pytest.mark.parametrize(
    ("prefix", "allowed"),
    [
        ("", True),
        ("site-7:", True),
        ("a_B-0", True),
        ("p" * 127, True),
        ("p" * 128, False),
        ("a b", False),
        ("a/b", False),
        ("a*", False),
    ],
)
def test_thing_name_prefix_leaves_room_for_a_thing_name(
    cli_assembly: Assembly, prefix: str, allowed: bool
) -> None:
    """CloudFormation's AllowedPattern must match the whole value (Java regex, like re here); a
    prefix it accepts plus one character is a thing name (1-128 of [a-zA-Z0-9:_-])."""
    parameter = _template(cli_assembly)["Parameters"][THING_NAME_PREFIX_PARAMETER]
    accepted = (
        bool(re.fullmatch(parameter["AllowedPattern"], prefix)) and len(prefix) <= parameter["MaxLength"]
    )
    assert accepted is allowed
    if accepted:
        assert re.fullmatch(r"[a-zA-Z0-9:_-]{1,128}", f"{prefix}x")


def test_secrets_manager_may_invoke_the_provider_only_for_secrets_of_the_prefix(
    cli_assembly: Assembly,
) -> None:
    template = _template(cli_assembly)
    (function_id,) = resources_of_type(template, "AWS::Lambda::Function")
    (permission,) = resources_of_type(template, "AWS::Lambda::Permission").values()
    assert permission["Properties"] == expected_rotation_permission(function_id, PREFIXED_SECRETS)


def test_provider_policy_passes_parliament(cli_assembly: Assembly) -> None:
    # Only without thing groups: parliament 1.6 cannot type iot:ThingGroupArn ("Unknown data
    # format: ArrayOfARN"); tests/test_iam_applicability.py checks the narrowed policy's keys.
    from parliament import analyze_policy_string

    template = _template(cli_assembly)
    document = resolve(_policy(template), template)
    policy = analyze_policy_string(json.dumps(document), include_community_auditors=True)
    findings = {(f.issue, d.get("action", "")) for f in policy.findings for d in (f.detail or [{}])}
    assert findings == DOCUMENTED_PARLIAMENT_FINDINGS, [str(f) for f in policy.findings]


def test_provider_findings_are_acknowledged_with_reasons(cli_assembly: Assembly) -> None:
    report = cli_assembly.validation_report()
    suppressed = [
        (finding["ruleName"], finding["reason"])
        for plugin in report["pluginReports"]
        for finding in plugin.get("suppressedViolations", [])
        if any(c["constructPath"].startswith(f"{PROVIDER_STACK}/") for c in finding["violatingConstructs"])
    ]
    rules = sorted(rule for rule, _ in suppressed)
    assert rules == sorted(
        [
            "AwsSolutions-IAM5[Resource::*]",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:tunnel/*]",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>"
            f":thing/<{THING_NAME_PREFIX_PARAMETER}>*]",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>"
            f":secret:{SECRET_NAME_PREFIX}*]",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:kms:<AWS::Region>:<AWS::AccountId>:key/*]",
        ]
    )
    assert all(len(reason) > 60 for _, reason in suppressed)
