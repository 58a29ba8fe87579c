"""The SecureTunnel construct on synthesized templates: every resource, the exact IAM policy,
one handler per stack, token arguments, grants, and the local bundling of the handler asset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from cdk_iot_secure_tunnel import RESOURCE_TYPE
from cdk_iot_secure_tunnel.bundling import HANDLER, bundle_handler, package_dir
from cdk_iot_secure_tunnel.secure_tunnel import PENDING_SECRET_VALUE
from tests.cdk_helpers import (
    ConstructSynth,
    partition_arn,
    resolve,
    resource_types,
    resources_of_type,
)

TUNNELS = partition_arn("iot", "tunnel/*")
OWNER = {"Ref": "AWS::StackId"}
HANDLER_ROLE_DESCRIPTION = "Custom::IoTSecureTunnel handler: opens, rotates and closes this stack's tunnels"
VIA_SECRETS_MANAGER = {"Fn::Join": ["", ["secretsmanager.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}


def arn_of(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def ref(logical_id: str) -> dict[str, Any]:
    return {"Ref": logical_id}


def _sorted(items: list[Any]) -> list[Any]:
    return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))


def normalized(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A policy's statements, and their Action and Resource lists, are sets: compare them in a
    fixed order. Everything else (conditions, intrinsics) is compared exactly."""
    result = []
    for statement in statements:
        copy = dict(statement)
        for key in ("Action", "Resource"):
            if isinstance(copy.get(key), list):
                copy[key] = _sorted(copy[key])
        result.append(copy)
    return _sorted(result)


#: What the handler does with its token secrets.
SECRET_ACTIONS = (
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
)


def handler_statements(
    things: list[Any], log_group: str, keys: list[str] | None = None, owned_secrets: bool = True
) -> list[dict[str, Any]]:
    """The exact statements of the handler policy for the given things and keys; the token
    secrets are matched by their owner tag, whatever their number."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "OpenTunnelsTaggedWithThisStack",
            "Effect": "Allow",
            "Action": "iot:OpenTunnel",
            "Resource": [TUNNELS, *things],
            "Condition": {"StringEquals": {"aws:RequestTag/iot-secure-tunnel:owner": OWNER}},
        },
        {
            "Sid": "ManageTunnelsOfThisStack",
            "Effect": "Allow",
            "Action": ["iot:CloseTunnel", "iot:DescribeTunnel", "iot:RotateTunnelAccessToken"],
            "Resource": TUNNELS,
            "Condition": {"StringEquals": {"aws:ResourceTag/iot-secure-tunnel:owner": OWNER}},
        },
        {
            # No aws:ResourceTag condition: Tag/Untag honour none for tunnels, so it would never
            # match; the handler checks the owner tag through DescribeTunnel first.
            "Sid": "TagTunnelsOfThisStack",
            "Effect": "Allow",
            "Action": ["iot:TagResource", "iot:UntagResource"],
            "Resource": TUNNELS,
        },
        {"Sid": "FindTunnelsOfAThing", "Effect": "Allow", "Action": "iot:ListTunnels", "Resource": "*"},
        {
            "Sid": "KeepTheReservedTags",
            "Effect": "Deny",
            "Action": ["iot:TagResource", "iot:UntagResource"],
            "Resource": TUNNELS,
            "Condition": {"ForAnyValue:StringLike": {"aws:TagKeys": "iot-secure-tunnel:*"}},
        },
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": arn_of(log_group),
        },
        {
            "Sid": "RotateTunnelsOfTheWiredThings",
            "Effect": "Allow",
            "Action": "iot:RotateTunnelAccessToken",
            "Resource": things if len(things) > 1 else things[0],
        },
    ]
    if owned_secrets:
        statements.append(
            {
                "Sid": "WriteTheTokenSecretsOfThisStack",
                "Effect": "Allow",
                "Action": list(SECRET_ACTIONS),
                "Resource": partition_arn("secretsmanager", "secret:*"),
                "Condition": {"StringEquals": {"aws:ResourceTag/iot-secure-tunnel:owner": OWNER}},
            }
        )
    if keys:
        statements.append(
            {
                "Sid": "EncryptTheTokenSecrets",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": arn_of(keys[0]) if len(keys) == 1 else [arn_of(k) for k in keys],
                "Condition": {"StringEquals": {"kms:ViaService": VIA_SECRETS_MANAGER}},
            }
        )
    return statements


def policy_document(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    document: dict[str, Any] = template["Resources"][logical_id]["Properties"]["PolicyDocument"]
    return document


# --------------------------------------------------------------------------- every resource


def test_minimal_stack_has_exactly_the_expected_resources(construct_synth: ConstructSynth) -> None:
    types = resource_types(construct_synth.template("Minimal"))
    types.pop("AWS::CDK::Metadata", None)
    assert types == {
        "AWS::IoT::Thing": 1,
        "AWS::SecretsManager::Secret": 2,
        # On-demand rotation of each token secret by the handler (no schedule by default).
        "AWS::SecretsManager::RotationSchedule": 2,
        # Secrets Manager may invoke the handler (for secrets of this account).
        "AWS::Lambda::Permission": 1,
        RESOURCE_TYPE: 1,
        "AWS::Lambda::Function": 1,
        "AWS::IAM::Role": 1,
        "AWS::IAM::Policy": 1,
        "AWS::Logs::LogGroup": 1,
    }


def test_handler_function(construct_synth: ConstructSynth) -> None:
    s = construct_synth
    template = Template.from_json(s.template("Minimal"))
    template.has_resource(
        "AWS::Lambda::Function",
        {
            "Properties": Match.object_equals(
                {
                    "Description": "Handler of the Custom::IoTSecureTunnel resources of this stack",
                    "Runtime": "python3.14",
                    "Architectures": ["arm64"],
                    "Handler": HANDLER,
                    "Code": Match.object_like(
                        {"S3Bucket": Match.any_value(), "S3Key": Match.string_like_regexp(r"\.zip$")}
                    ),
                    "Timeout": 300,
                    "MemorySize": 256,
                    "Role": arn_of(s.id("Minimal.Role")),
                    "LoggingConfig": {"LogGroup": ref(s.id("Minimal.LogGroup"))},
                    "Environment": {"Variables": {"TUNNEL_OWNER": OWNER, "LOG_LEVEL": "INFO"}},
                }
            ),
            "DependsOn": Match.array_with([s.id("Minimal.Policy"), s.id("Minimal.Role")]),
        },
    )
    assert HANDLER == "secure_tunnel_handler.entrypoint.handler"


def test_handler_log_group_has_retention(construct_synth: ConstructSynth) -> None:
    template = Template.from_json(construct_synth.template("Minimal"))
    template.has_resource(
        "AWS::Logs::LogGroup",
        {"Properties": Match.object_equals({"RetentionInDays": 90}), "DeletionPolicy": "Delete"},
    )


def test_handler_role_trusts_lambda_only_and_has_no_managed_policies(construct_synth: ConstructSynth) -> None:
    template = Template.from_json(construct_synth.template("Minimal"))
    template.has_resource_properties(
        "AWS::IAM::Role",
        Match.object_equals(
            {
                "AssumeRolePolicyDocument": {
                    "Statement": [
                        {
                            "Action": "sts:AssumeRole",
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                        }
                    ],
                    "Version": "2012-10-17",
                },
                "Description": HANDLER_ROLE_DESCRIPTION,
            }
        ),
    )


def test_token_secrets_hold_a_placeholder_never_a_token(construct_synth: ConstructSynth) -> None:
    s = construct_synth
    secrets = resources_of_type(s.template("Minimal"), "AWS::SecretsManager::Secret")
    assert set(secrets) == {s.id("Minimal.SourceSecret"), s.id("Minimal.DestinationSecret")}
    for logical_id, mode in (
        (s.id("Minimal.SourceSecret"), "source"),
        (s.id("Minimal.DestinationSecret"), "destination"),
    ):
        secret = secrets[logical_id]
        assert set(secret["Properties"]) == {"Description", "Name", "SecretString", "Tags"}
        assert secret["Properties"]["SecretString"] == PENDING_SECRET_VALUE == '{"status": "pending"}'
        assert secret["Properties"]["Description"].startswith(f"Access token ({mode}; ")
        assert "Minimal/Tunnel" in secret["Properties"]["Description"]
        assert secret["DeletionPolicy"] == secret["UpdateReplacePolicy"] == "Delete"


def test_custom_resource_properties(construct_synth: ConstructSynth) -> None:
    s = construct_synth
    template = Template.from_json(s.template("Minimal"))
    template.has_resource(
        RESOURCE_TYPE,
        {
            "Properties": Match.object_equals(
                {
                    "ServiceToken": arn_of(s.id("Minimal.Function")),
                    "ServiceTimeout": "900",
                    "DestinationConfig": {"ThingName": ref(s.id("Minimal.Thing")), "Services": ["SSH"]},
                    "TimeoutConfig": {"MaxLifetimeTimeoutMinutes": "720"},
                    "SourceAccessTokenSecretArn": ref(s.id("Minimal.SourceSecret")),
                    "DestinationAccessTokenSecretArn": ref(s.id("Minimal.DestinationSecret")),
                }
            ),
            "DeletionPolicy": "Delete",
        },
    )


def test_tunnel_depends_on_the_thing_and_on_its_permissions(construct_synth: ConstructSynth) -> None:
    s = construct_synth
    tunnel = s.template("Minimal")["Resources"][s.id("Minimal.Tunnel")]
    # Opened after the thing exists, closed before it goes: through the Ref, with no redundant
    # DependsOn (cfn-lint W3005 on a consumer's template); the policy outlives every event.
    assert tunnel["Properties"]["DestinationConfig"]["ThingName"] == ref(s.id("Minimal.Thing"))
    assert set(tunnel["DependsOn"]) == {s.id("Minimal.Role"), s.id("Minimal.Policy")}


def test_minimal_handler_policy_is_exactly_least_privilege(construct_synth: ConstructSynth) -> None:
    s = construct_synth
    document = policy_document(s.template("Minimal"), s.id("Minimal.Policy"))
    assert document["Version"] == "2012-10-17"
    expected = handler_statements(
        things=[arn_of(s.id("Minimal.Thing"))],
        log_group=s.id("Minimal.LogGroup"),
    )
    assert normalized(document["Statement"]) == normalized(expected)


# --------------------------------------------------------------------------- every option, two tunnels


def test_two_tunnels_in_one_stack_share_one_function_and_role(construct_synth: ConstructSynth) -> None:
    template = construct_synth.template("Full")
    assert construct_synth.handler_is_shared
    assert len(resources_of_type(template, "AWS::Lambda::Function")) == 1
    assert len(resources_of_type(template, "AWS::Logs::LogGroup")) == 1
    assert len(resources_of_type(template, RESOURCE_TYPE)) == 2
    lambda_roles = [
        r
        for r in resources_of_type(template, "AWS::IAM::Role").values()
        if r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        == {"Service": "lambda.amazonaws.com"}
    ]
    assert len(lambda_roles) == 1
    tokens = {
        r["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
        for r in resources_of_type(template, RESOURCE_TYPE).values()
    }
    assert tokens == {construct_synth.id("Full.Function")}


def test_policy_grows_by_each_tunnel_things_secrets_and_key(construct_synth: ConstructSynth) -> None:
    s = construct_synth
    document = policy_document(s.template("Full"), s.id("Full.Policy"))
    expected = handler_statements(
        things=[arn_of(s.id("Full.Gateway")), partition_arn("iot", "thing/existing-device")],
        log_group=s.id("Full.LogGroup"),
        keys=[s.id("Full.Key")],
    )
    assert normalized(document["Statement"]) == normalized(expected)


def test_token_secrets_carry_the_owner_tag_the_policy_matches(construct_synth: ConstructSynth) -> None:
    s = construct_synth
    for stack, labels in {
        "Minimal": ("Minimal.SourceSecret", "Minimal.DestinationSecret"),
        "Full": ("Full.MaintenanceSource", "Full.MaintenanceDestination", "Full.ExistingSource"),
    }.items():
        resources = s.template(stack)["Resources"]
        for label in labels:
            tags = resources[s.id(label)]["Properties"]["Tags"]
            assert {"Key": "iot-secure-tunnel:owner", "Value": OWNER} in tags


def test_every_argument_reaches_the_custom_resource(construct_synth: ConstructSynth) -> None:
    s = construct_synth
    template = Template.from_json(s.template("Full"))
    template.has_resource_properties(
        RESOURCE_TYPE,
        Match.object_equals(
            {
                "ServiceToken": arn_of(s.id("Full.Function")),
                "ServiceTimeout": "900",
                "DestinationConfig": {
                    "ThingName": ref(s.id("Full.Gateway")),
                    "Services": ["SSH", "HTTP", "RDP"],
                },
                "Description": "Maintenance access to gateway-1",
                "TimeoutConfig": {"MaxLifetimeTimeoutMinutes": "120"},
                "Tags": [{"Key": "cost-center", "Value": "1234"}, {"Key": "team", "Value": "field-ops"}],
                "RotationTrigger": "2024-06-01",
                "SourceAccessTokenSecretArn": ref(s.id("Full.MaintenanceSource")),
                "DestinationAccessTokenSecretArn": ref(s.id("Full.MaintenanceDestination")),
            }
        ),
    )


def test_thing_by_name_and_no_destination_secret(construct_synth: ConstructSynth) -> None:
    s = construct_synth
    template = s.template("Full")
    existing = template["Resources"][s.id("Full.Existing")]
    assert existing["Properties"] == {
        "ServiceToken": arn_of(s.id("Full.Function")),
        "ServiceTimeout": "900",
        "DestinationConfig": {"ThingName": "existing-device", "Services": ["VNC"]},
        "TimeoutConfig": {"MaxLifetimeTimeoutMinutes": "30"},
        "SourceAccessTokenSecretArn": ref(s.id("Full.ExistingSource")),
    }
    # No thing in the stack to depend on: only the handler's permissions.
    assert set(existing["DependsOn"]) == {s.id("Full.Role"), s.id("Full.Policy")}
    secrets = resources_of_type(template, "AWS::SecretsManager::Secret")
    assert len(secrets) == 3
    assert secrets[s.id("Full.ExistingSource")]["DeletionPolicy"] == "Retain"


def test_customer_managed_key_encrypts_both_secrets(construct_synth: ConstructSynth) -> None:
    s = construct_synth
    secrets = resources_of_type(s.template("Full"), "AWS::SecretsManager::Secret")
    key = arn_of(s.id("Full.Key"))
    assert secrets[s.id("Full.MaintenanceSource")]["Properties"]["KmsKeyId"] == key
    assert secrets[s.id("Full.MaintenanceDestination")]["Properties"]["KmsKeyId"] == key
    assert "KmsKeyId" not in secrets[s.id("Full.ExistingSource")]["Properties"]


def test_grants_read_only_the_token_secrets(construct_synth: ConstructSynth) -> None:
    s = construct_synth
    template = s.template("Full")
    read = ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
    # The key's use, in the grantee's own policy (never in the key's: no cross-stack cycle), only
    # through Secrets Manager; only Maintenance's secrets are encrypted with it.
    decrypt = {
        "Effect": "Allow",
        "Action": "kms:Decrypt",
        "Resource": arn_of(s.id("Full.Key")),
        "Condition": {"StringEquals": {"kms:ViaService": VIA_SECRETS_MANAGER}},
    }
    operator = policy_document(template, s.id("Full.OperatorPolicy"))["Statement"]
    secrets = [ref(s.id("Full.ExistingSource")), ref(s.id("Full.MaintenanceSource"))]
    assert normalized(operator) == normalized(
        [{"Effect": "Allow", "Action": read, "Resource": secrets}, decrypt]
    )
    device = policy_document(template, s.id("Full.DevicePolicy"))["Statement"]
    destination = ref(s.id("Full.MaintenanceDestination"))
    assert normalized(device) == normalized(
        [{"Effect": "Allow", "Action": read, "Resource": destination}, decrypt]
    )
    key_policy = template["Resources"][s.id("Full.Key")]["Properties"]["KeyPolicy"]["Statement"]
    readers = {
        arn_of(s.id("Full.DeviceRole"))["Fn::GetAtt"][0],
        arn_of(s.id("Full.OperatorRole"))["Fn::GetAtt"][0],
    }
    assert not any(reader in str(key_policy) for reader in readers), "the key's policy names no grantee"


def test_token_arguments_are_passed_through_unvalidated(construct_synth: ConstructSynth) -> None:
    s = construct_synth
    tunnel = s.template("Tokens")["Resources"][s.id("Tokens.Tunnel")]["Properties"]
    assert tunnel["DestinationConfig"] == {"ThingName": ref("ThingName"), "Services": ref("Services")}
    assert tunnel["Description"] == ref("Description")
    assert tunnel["TimeoutConfig"] == {"MaxLifetimeTimeoutMinutes": ref("LifetimeMinutes")}
    assert tunnel["Tags"] == [{"Key": "team", "Value": ref("Team")}]
    assert tunnel["RotationTrigger"] == ref("RotationTrigger")
    statements = policy_document(
        s.template("Tokens"), next(iter(resources_of_type(s.template("Tokens"), "AWS::IAM::Policy")))
    )
    open_tunnel = next(
        st for st in statements["Statement"] if st.get("Sid") == "OpenTunnelsTaggedWithThisStack"
    )
    assert partition_arn("iot", "thing/") not in open_tunnel["Resource"]
    assert {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":iot:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                ":thing/",
                {"Ref": "ThingName"},
            ],
        ]
    } in open_tunnel["Resource"]


# --------------------------------------------------------------------------- IAM reference


# Where parliament's IAM data (the Service Authorization Reference) and the IoT developer guide
# ("Controlling access to tunnels") disagree, the policy follows the developer guide, which names
# the thing ARN as a resource of iot:OpenTunnel and iot:RotateTunnelAccessToken and tunnel/* for
# OpenTunnel; the reference lists no resource type for OpenTunnel and only tunnel for Rotate.
# These two findings, and only these, are expected.
DOCUMENTED_PARLIAMENT_FINDINGS = {
    ("RESOURCE_MISMATCH", "iot:OpenTunnel"),
    ("RESOURCE_MISMATCH", "iot:RotateTunnelAccessToken"),
}


@pytest.mark.parametrize("stack", ["Minimal", "Full"])
def test_handler_policy_actions_resources_and_conditions_exist_in_the_iam_reference(
    construct_synth: ConstructSynth, stack: str
) -> None:
    from parliament import analyze_policy_string

    template = construct_synth.template(stack)
    document = resolve(policy_document(template, construct_synth.id(f"{stack}.Policy")), template)
    policy = analyze_policy_string(json.dumps(document), include_community_auditors=True)
    findings = {(f.issue, d.get("action", "")) for f in policy.findings for d in (f.detail or [{}])}
    assert findings == DOCUMENTED_PARLIAMENT_FINDINGS, [str(f) for f in policy.findings]


def test_parliament_checks_condition_keys() -> None:
    """Positive control: parliament rejects a condition key the action does not have."""
    from parliament import analyze_policy_string

    bad = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "secretsmanager:PutSecretValue",
                "Resource": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s-AbCdEf",
                "Condition": {"StringEquals": {"iot:ClientMode": "ALL"}},
            }
        ],
    }
    issues = {f.issue for f in analyze_policy_string(json.dumps(bad)).findings}
    assert "UNKNOWN_CONDITION_FOR_ACTION" in issues


# --------------------------------------------------------------------------- construct behaviour


def test_grant_read_destination_token_needs_the_destination_secret() -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_iam as iam

    from cdk_iot_secure_tunnel import SecureTunnel

    stack = cdk.Stack(cdk.App(context={"aws:cdk:bundling-stacks": []}), "S")
    tunnel = SecureTunnel(stack, "T", thing="device-1", services=["SSH"], create_destination_secret=False)
    assert tunnel.destination_token_secret is None
    with pytest.raises(ValueError, match="create_destination_secret=False"):
        tunnel.grant_read_destination_token(iam.AccountRootPrincipal())


def test_handler_construct_id_taken_by_something_else() -> None:
    import aws_cdk as cdk
    from constructs import Construct

    from cdk_iot_secure_tunnel import SecureTunnel
    from cdk_iot_secure_tunnel.handler_function import HANDLER_CONSTRUCT_ID

    stack = cdk.Stack(cdk.App(context={"aws:cdk:bundling-stacks": []}), "S")
    Construct(stack, HANDLER_CONSTRUCT_ID)
    with pytest.raises(TypeError, match=HANDLER_CONSTRUCT_ID):
        SecureTunnel(stack, "T", thing="device-1", services=["SSH"])


def test_handler_is_found_per_stack() -> None:
    import aws_cdk as cdk

    from cdk_iot_secure_tunnel import SecureTunnel

    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    one, two = cdk.Stack(app, "One"), cdk.Stack(app, "Two")
    a = SecureTunnel(one, "A", thing="device-a", services=["SSH"])
    b = SecureTunnel(one, "B", thing="device-b", services=["SSH"])
    c = SecureTunnel(two, "C", thing="device-c", services=["SSH"])
    assert a.handler is b.handler
    assert c.handler is not a.handler


# --------------------------------------------------------------------------- local bundling


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_bundle_holds_the_handler_and_crhelper_and_nothing_else(tmp_path: Path) -> None:
    bundle_handler(tmp_path / "a")
    files = _tree(tmp_path / "a")
    top = {name.split("/")[0] for name in files}
    assert top == {"secure_tunnel_handler", "crhelper", "crhelper-2.0.12.dist-info"}
    assert "secure_tunnel_handler/entrypoint.py" in files
    assert "crhelper/__init__.py" in files and "crhelper/resource_helper.py" in files
    assert {"LICENSE", "NOTICE", "METADATA"} <= {n.split("/")[1] for n in files if n.startswith("crhelper-")}
    assert not [n for n in files if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    handler_sources = {
        p.relative_to(package_dir("secure_tunnel_handler")).as_posix()
        for p in package_dir("secure_tunnel_handler").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert {
        n.removeprefix("secure_tunnel_handler/") for n in files if n.startswith("secure_tunnel_handler/")
    } == (handler_sources)


def test_bundle_is_deterministic(tmp_path: Path) -> None:
    bundle_handler(tmp_path / "a")
    bundle_handler(tmp_path / "b")
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
