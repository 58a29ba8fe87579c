"""SecureTunnel's operator options: Secrets Manager rotation of the token secrets (on demand by
default, scheduled on request), the device's tunnel notification policy, the rotate grant."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cdk_helpers import ConstructSynth, partition_arn, resources_of_type

pytest_plugins = ["tests.synth_fixtures"]


def _schedules(template: dict[str, Any]) -> dict[str, Any]:
    return {
        r["Properties"]["SecretId"]["Ref"]: r
        for r in resources_of_type(template, "AWS::SecretsManager::RotationSchedule").values()
    }


@pytest.mark.parametrize(("stack", "rules"), [("Minimal", None), ("Operator", {"AutomaticallyAfterDays": 7})])
def test_both_token_secrets_rotate_through_the_handler(
    construct_synth: ConstructSynth, stack: str, rules: dict[str, int] | None
) -> None:
    template = construct_synth.template(stack)
    schedules = _schedules(template)
    secrets = {construct_synth.id(f"{stack}.{label}") for label in ("SourceSecret", "DestinationSecret")}
    assert set(schedules) == secrets
    (function_id,) = resources_of_type(template, "AWS::Lambda::Function")
    for schedule in schedules.values():
        assert schedule["Properties"]["RotationLambdaARN"] == {"Fn::GetAtt": [function_id, "Arn"]}
        assert schedule["Properties"]["RotateImmediatelyOnUpdate"] is False
        assert schedule["Properties"].get("RotationRules") == rules
        # The first rotation needs the token the tunnel resource writes.
        assert construct_synth.id(f"{stack}.Tunnel") in schedule["DependsOn"]


def test_secrets_manager_may_invoke_the_handler_of_this_account_only(construct_synth: ConstructSynth) -> None:
    template = construct_synth.template("Minimal")
    (permission,) = resources_of_type(template, "AWS::Lambda::Permission").values()
    assert permission["Properties"] == {
        "Action": "lambda:InvokeFunction",
        "FunctionName": {"Fn::GetAtt": [construct_synth.id("Minimal.Function"), "Arn"]},
        "Principal": "secretsmanager.amazonaws.com",
        "SourceAccount": {"Ref": "AWS::AccountId"},
    }


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
        "Principal": "arn:aws:iot:eu-west-1:123456789012:cert/0123456789abcdef",
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


@pytest.mark.parametrize("bad", ["weekly", 7])
def test_rotation_schedule_must_be_a_duration(bad: Any) -> None:
    from cdk_iot_secure_tunnel.token_rotation import schedule_days

    with pytest.raises(
        ValueError, match="'rotation_schedule' must be a Duration of whole days from 1 to 1000"
    ):
        schedule_days(bad)


def test_rotation_schedule_limits() -> None:
    from aws_cdk import Duration

    from cdk_iot_secure_tunnel.token_rotation import schedule_days

    assert schedule_days(None) is None
    assert schedule_days(Duration.days(1)) == 1
    assert schedule_days(Duration.days(1000)) == 1000
    for bad in (Duration.hours(36), Duration.days(1001), Duration.hours(12)):
        with pytest.raises(ValueError, match="whole days from 1 to 1000"):
            schedule_days(bad)
