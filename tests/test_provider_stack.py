"""The provider stack: one handler per account and region, exported for plain CloudFormation,
scoped by convention to the tunnels it opened and the secrets named iot-secure-tunnel/..."""

from __future__ import annotations

import json
from typing import Any

from cdk_iot_secure_tunnel.provider_stack import SECRET_NAME_PREFIX, SERVICE_TOKEN_EXPORT
from tests.cdk_helpers import (
    PROVIDER_STACK,
    Assembly,
    partition_arn,
    resolve,
    resource_types,
    resources_of_type,
)
from tests.test_construct import (
    DOCUMENTED_PARLIAMENT_FINDINGS,
    VIA_SECRETS_MANAGER,
    handler_statements,
    normalized,
)

OWNER = {"Ref": "AWS::StackId"}
THINGS = partition_arn("iot", "thing/*")
PREFIXED_SECRETS = partition_arn("secretsmanager", f"secret:{SECRET_NAME_PREFIX}*")


def _template(assembly: Assembly) -> dict[str, Any]:
    return assembly.template(PROVIDER_STACK)


def _policy(template: dict[str, Any]) -> dict[str, Any]:
    (policy,) = resources_of_type(template, "AWS::IAM::Policy").values()
    document: dict[str, Any] = policy["Properties"]["PolicyDocument"]
    return document


def test_provider_is_one_function_and_its_role_log_group_and_policy(cli_assembly: Assembly) -> None:
    template = _template(cli_assembly)
    assert resource_types(template) == {
        "AWS::Lambda::Function": 1,
        "AWS::IAM::Role": 1,
        "AWS::IAM::Policy": 1,
        "AWS::Logs::LogGroup": 1,
        "AWS::CDK::Metadata": 1,
    }
    (function,) = resources_of_type(template, "AWS::Lambda::Function").values()
    assert function["Properties"]["Handler"] == "secure_tunnel_handler.entrypoint.handler"
    assert function["Properties"]["Environment"]["Variables"]["TUNNEL_OWNER"] == OWNER


def test_provider_exports_the_service_token(cli_assembly: Assembly) -> None:
    template = _template(cli_assembly)
    (function_id,) = resources_of_type(template, "AWS::Lambda::Function")
    output = template["Outputs"]["ServiceToken"]
    assert output["Export"] == {"Name": SERVICE_TOKEN_EXPORT}
    assert output["Value"] == {"Fn::GetAtt": [function_id, "Arn"]}


def test_example_templates_import_the_exported_name() -> None:
    from tests.test_templates import TEMPLATES

    for path in TEMPLATES:
        assert f"!ImportValue {SERVICE_TOKEN_EXPORT}" in path.read_text()


def test_provider_policy_is_scoped_by_owner_tag_and_secret_prefix(cli_assembly: Assembly) -> None:
    template = _template(cli_assembly)
    (log_group,) = resources_of_type(template, "AWS::Logs::LogGroup")
    # The construct's statements with every thing; the secrets of the documented prefix.
    expected = handler_statements([THINGS], log_group, owned_secrets=False)
    expected.append(
        {
            "Sid": "WriteTheTokenSecrets",
            "Effect": "Allow",
            "Action": [
                "secretsmanager:DescribeSecret",
                "secretsmanager:GetSecretValue",
                "secretsmanager:PutSecretValue",
                "secretsmanager:UpdateSecretVersionStage",
            ],
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
    assert normalized(_policy(template)["Statement"]) == normalized(expected)


def test_provider_policy_passes_parliament(cli_assembly: Assembly) -> None:
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
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iot:<AWS::Region>:<AWS::AccountId>:thing/*]",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>"
            f":secret:{SECRET_NAME_PREFIX}*]",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:kms:<AWS::Region>:<AWS::AccountId>:key/*]",
        ]
    )
    assert all(len(reason) > 60 for _, reason in suppressed)
