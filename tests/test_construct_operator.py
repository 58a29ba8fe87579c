"""SecureTunnel's operator options: Secrets Manager rotation of the token secrets (on demand
only, and by Secrets Manager only for the secrets each permission names), the device's tunnel
notification policy, the rotate grant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cdk_iot_secure_tunnel.acknowledgments import TOKEN_SECRET_ROTATION
from tests.cdk_helpers import (
    STACK_UUID,
    Assembly,
    ConstructSynth,
    expected_rotation_permission,
    partition_arn,
    resolve,
    resources_of_type,
    rotation_permissions,
    secret_arn_named,
    secrets_manager_may_invoke,
)
from tests.synth_fixtures import DEVICE_CERTIFICATE_ARN


def _schedules(template: dict[str, Any]) -> dict[str, Any]:
    return {
        r["Properties"]["SecretId"]["Ref"]: r
        for r in resources_of_type(template, "AWS::SecretsManager::RotationSchedule").values()
    }


def _every_template(*assemblies: Assembly) -> Iterator[tuple[str, dict[str, Any]]]:
    """(stack, template) of every synthesized template."""
    for assembly in assemblies:
        for stack in (p.name.removesuffix(".template.json") for p in assembly.template_paths()):
            yield stack, assembly.template(stack)


def _every_schedule(*assemblies: Assembly) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(template, rotation schedule) of every synthesized template."""
    for _, template in _every_template(*assemblies):
        for schedule in resources_of_type(template, "AWS::SecretsManager::RotationSchedule").values():
            yield template, schedule


@pytest.mark.parametrize("stack", ["Minimal", "Operator"])
def test_both_token_secrets_rotate_through_the_handler_on_demand(
    construct_synth: ConstructSynth, stack: str
) -> None:
    template = construct_synth.template(stack)
    schedules = _schedules(template)
    secrets = {construct_synth.id(f"{stack}.{label}") for label in ("SourceSecret", "DestinationSecret")}
    assert set(schedules) == secrets
    (function_id,) = resources_of_type(template, "AWS::Lambda::Function")
    for schedule in schedules.values():
        # No RotationRules: on demand only.
        assert {k: v for k, v in schedule["Properties"].items() if k != "SecretId"} == {
            "RotationLambdaARN": {"Fn::GetAtt": [function_id, "Arn"]},
            "RotateImmediatelyOnUpdate": False,
        }
        # The first rotation needs the token the tunnel resource writes.
        assert construct_synth.id(f"{stack}.Tunnel") in schedule["DependsOn"]


def test_rotation_schedule_is_no_argument() -> None:
    import aws_cdk as cdk

    from cdk_iot_secure_tunnel import SecureTunnel

    stack = cdk.Stack(cdk.App(context={"aws:cdk:bundling-stacks": []}), "S")
    removed: dict[str, Any] = {"rotation_schedule": cdk.Duration.days(7)}
    with pytest.raises(TypeError, match="rotation_schedule"):
        SecureTunnel(stack, "T", thing="device-1", services=["SSH"], **removed)


def test_every_rotation_schedule_waits_for_the_invoke_permission(
    construct_synth: ConstructSynth, cli_assembly: Assembly
) -> None:
    """Secrets Manager tests the rotation function when the schedule is created: it must be
    allowed to invoke it by then."""
    found = list(_every_schedule(construct_synth.assembly, cli_assembly))
    # Minimal, Tokens, Operator and the demo: two token secrets each; Full: three; Named: six.
    assert len(found) == 17
    for template, schedule in found:
        # Exactly one permission of the function; which one serves the secret:
        # tests/test_construct_naming.py.
        waits_for = [
            logical_id
            for logical_id, p in rotation_permissions(template).items()
            if p["FunctionName"] == schedule["Properties"]["RotationLambdaARN"]
            and logical_id in schedule["DependsOn"]
        ]
        assert len(waits_for) == 1, schedule


def test_every_secrets_manager_permission_is_for_this_account_and_the_providers_for_its_prefix(
    construct_synth: ConstructSynth, cli_assembly: Assembly
) -> None:
    """SourceAccount and SourceArn everywhere: exactly one permission serves each token secret, and
    none serves another secret of the account. One per name prefix, not one per secret, which
    would outgrow Lambda's 20 KB function policy at about 19 tunnels."""
    checked = 0
    for stack, template in _every_template(construct_synth.assembly, cli_assembly):
        permissions = {name: resolve(p, template) for name, p in rotation_permissions(template).items()}
        assert all("SourceArn" in p for p in permissions.values()), stack
        for name in resources_of_type(template, "AWS::SecretsManager::Secret"):
            arn = resolve({"Ref": name}, template)
            assert sum(secrets_manager_may_invoke(p, arn) for p in permissions.values()) == 1, (stack, name)
        if not resources_of_type(template, "AWS::SecretsManager::Secret"):  # a provider
            assert all("secret:iot-secure-tunnel/*" in p["SourceArn"] for p in permissions.values()), stack
        stranger = secret_arn_named("someone-elses/secret")
        assert not any(secrets_manager_may_invoke(p, stranger) for p in permissions.values()), stack
        checked += len(permissions)
    # Minimal, Full, Tokens, Operator and the demo: one each; Named: three (two prefixes and the
    # default names); the app's provider and the narrowed one.
    assert checked == 10


def test_every_token_secret_acknowledges_on_demand_rotation(construct_synth: ConstructSynth) -> None:
    report = construct_synth.assembly.validation_report()
    acknowledged = {
        construct["constructPath"].removesuffix("/Resource")
        for plugin in report["pluginReports"]
        for finding in plugin.get("suppressedViolations", [])
        if finding["ruleName"] == "AwsSolutions-SMG4" and finding["reason"] == TOKEN_SECRET_ROTATION.reason
        for construct in finding["violatingConstructs"]
    }
    secrets = {
        f"{stack}/{path}"
        for stack, paths in {
            "Minimal": ("Tunnel/SourceTokenSecret", "Tunnel/DestinationTokenSecret"),
            "Full": (
                "Maintenance/SourceTokenSecret",
                "Maintenance/DestinationTokenSecret",
                "Existing/SourceTokenSecret",
            ),
            "Tokens": ("Tunnel/SourceTokenSecret", "Tunnel/DestinationTokenSecret"),
            "Operator": ("Tunnel/SourceTokenSecret", "Tunnel/DestinationTokenSecret"),
            "Named": tuple(
                f"{tunnel}/{side}TokenSecret"
                for tunnel in ("Lab", "Field", "Generated")
                for side in ("Source", "Destination")
            ),
        }.items()
        for path in paths
    }
    assert acknowledged == secrets


def test_secrets_manager_may_invoke_the_handler_for_secrets_of_this_account(
    construct_synth: ConstructSynth,
) -> None:
    template = construct_synth.template("Minimal")
    permissions = resources_of_type(template, "AWS::Lambda::Permission").values()
    # The stack's default secret names: tunnel-tokens/<stack UUID>/...
    default_names = {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":secretsmanager:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                ":secret:tunnel-tokens/",
                STACK_UUID,
                "/*",
            ],
        ]
    }
    function_id = construct_synth.id("Minimal.Function")
    assert [p["Properties"] for p in permissions] == [
        expected_rotation_permission(function_id, default_names)
    ]


def test_no_device_policy_unless_asked(construct_synth: ConstructSynth) -> None:
    assert resources_of_type(construct_synth.template("Minimal"), "AWS::IoT::Policy") == {}


def test_device_policy_allows_only_the_notify_topic_of_its_thing(construct_synth: ConstructSynth) -> None:
    template = construct_synth.template("Operator")
    ((policy_id, policy),) = resources_of_type(template, "AWS::IoT::Policy").items()
    thing = {"Ref": next(iter(resources_of_type(template, "AWS::IoT::Thing")))}

    def arn(prefix: str, suffix: str) -> dict[str, Any]:
        joined = partition_arn("iot", prefix)
        joined["Fn::Join"][1][-1] = f":{prefix}"
        joined["Fn::Join"][1].extend([thing, suffix] if suffix else [thing])
        return joined

    assert policy["Properties"]["PolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": arn("client/", "")},
        {
            "Effect": "Allow",
            "Action": "iot:Subscribe",
            "Resource": arn("topicfilter/$aws/things/", "/tunnels/notify"),
        },
        {
            "Effect": "Allow",
            "Action": "iot:Receive",
            "Resource": arn("topic/$aws/things/", "/tunnels/notify"),
        },
    ]
    (attachment,) = resources_of_type(template, "AWS::IoT::PolicyPrincipalAttachment").values()
    assert attachment["Properties"] == {
        "PolicyName": {"Ref": policy_id},
        "Principal": DEVICE_CERTIFICATE_ARN,
    }


def test_rotate_grant_is_rotate_and_read_of_the_source_secret_only(construct_synth: ConstructSynth) -> None:
    template = construct_synth.template("Operator")
    policy = template["Resources"][construct_synth.id("Operator.OnCallPolicy")]["Properties"][
        "PolicyDocument"
    ]
    source = {"Ref": construct_synth.id("Operator.SourceSecret")}
    function = {"Fn::GetAtt": [construct_synth.id("Operator.Function"), "Arn"]}
    actions = {
        (a, str(st["Resource"]))
        for st in policy["Statement"]
        for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    }
    assert ("secretsmanager:RotateSecret", str(source)) in actions
    assert ("secretsmanager:GetSecretValue", str(source)) in actions
    assert any(a == "lambda:InvokeFunction" and str(function) in r for a, r in actions)
    destination = str({"Ref": construct_synth.id("Operator.DestinationSecret")})
    assert not any(destination in r for _, r in actions)
