"""Property parsing (secure_tunnel_handler.properties): strings as CloudFormation sends
them, every problem named, secret identity."""

from __future__ import annotations

import pytest

from secure_tunnel_handler.properties import InvalidProperties, parse_properties, same_secret, secret_arns_of

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:tunnel/source-AbCdEf"


def test_strings_from_cloudformation_are_parsed() -> None:
    spec = parse_properties(
        {
            "DestinationConfig": {"ThingName": "t", "Services": ["SSH"]},
            "TimeoutConfig": {"MaxLifetimeTimeoutMinutes": "15"},
            "SourceAccessTokenSecretArn": SECRET,
            "Tags": [{"Key": "env name", "Value": ""}],
            "RotationTrigger": 3,
        }
    )
    assert spec.max_lifetime_minutes == 15
    assert spec.tags == (("env name", ""),)
    assert spec.rotation_trigger == "3"
    assert spec.destination_secret_arn is None
    assert spec.secret_arns == (SECRET,)


def test_all_problems_are_listed_and_the_reason_stays_short() -> None:
    with pytest.raises(InvalidProperties) as caught:
        parse_properties(
            {"A": 1, "B": 2, "Description": "", "TimeoutConfig": {"MaxLifetimeTimeoutMinutes": True}}
        )
    message = str(caught.value)
    assert "unknown properties A, B" in message
    assert "DestinationConfig is required" in message
    assert "(and 2 more)" in message
    assert len(message) <= 250


def test_secret_arns_of_invalid_properties_keeps_only_arns() -> None:
    assert secret_arns_of({"SourceAccessTokenSecretArn": SECRET, "DestinationAccessTokenSecretArn": 5}) == {
        "source": SECRET
    }
    assert secret_arns_of("nonsense") == {}  # type: ignore[arg-type]


def test_secret_identity_ignores_only_the_random_suffix() -> None:

    full = "arn:aws:secretsmanager:us-east-1:123456789012:secret:tunnel/source-AbCdEf"
    assert same_secret(full, full)
    assert same_secret(full, full.removesuffix("-AbCdEf")), "a partial ARN names the same secret"
    assert same_secret(full.removesuffix("-AbCdEf"), full)
    assert not same_secret(
        full, "arn:aws:secretsmanager:us-east-1:123456789012:secret:tunnel/destination-AbCdEf"
    )
    assert not same_secret(full, full.replace("us-east-1", "eu-west-1"))
