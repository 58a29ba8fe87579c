"""Create: the tunnel opens, both secrets get its tokens, and nothing is left open on failure."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import IAM_PATIENCE_SECONDS, tunnel_id_of
from tests.rig.cloudformation import LambdaContext, event
from tests.rig.harness import OWNER, SECRET_DOCUMENT_FIELDS, THING, Handler, Rig


def test_create_opens_a_tunnel_and_writes_both_secrets(rig: Rig, handler: Handler) -> None:
    props = rig.properties(
        Description="maintenance access",
        Tags=[{"Key": "team", "Value": "field-ops"}],
        TimeoutConfig={"MaxLifetimeTimeoutMinutes": "30"},
        DestinationConfig={"ThingName": THING, "Services": ["SSH", "HTTP"]},
    )
    before = datetime.now(UTC)
    response = rig.send(handler, "Create", props)

    tunnel_id = tunnel_id_of(response)
    tunnel = rig.tunnels.tunnel(tunnel_id)
    assert tunnel is not None and tunnel["status"] == "OPEN"
    assert tunnel["description"] == "maintenance access"
    assert tunnel["destinationConfig"] == {"thingName": THING, "services": ["SSH", "HTTP"]}
    assert tunnel["timeoutConfig"] == {"maxLifetimeTimeoutMinutes": 30}
    tags = {t["key"]: t["value"] for t in tunnel["tags"]}
    assert tags["team"] == "field-ops"
    assert tags["iot-secure-tunnel:owner"] == OWNER
    assert tags["iot-secure-tunnel:request-id"]
    assert response["Data"] == {"TunnelId": tunnel_id, "TunnelArn": tunnel["arn"]}
    assert response["NoEcho"] is False

    for arn, mode in ((rig.source_secret, "source"), (rig.destination_secret, "destination")):
        secret = rig.secret(arn)
        assert set(secret) == set(SECRET_DOCUMENT_FIELDS)
        assert (secret["tunnelId"], secret["tunnelArn"], secret["clientMode"]) == (
            tunnel_id,
            tunnel["arn"],
            mode,
        )
        assert (secret["region"], secret["thingName"], secret["services"]) == (
            "us-east-1",
            THING,
            ["SSH", "HTTP"],
        )
        assert rig.tunnels.is_token_valid(secret["accessToken"])
        expires = datetime.strptime(secret["expiresAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert (
            before + timedelta(minutes=30) - timedelta(seconds=2) <= expires <= before + timedelta(minutes=31)
        )
    assert rig.secret(rig.source_secret)["accessToken"] != rig.secret(rig.destination_secret)["accessToken"]


def test_create_without_destination_secret_writes_only_the_source(rig: Rig, handler: Handler) -> None:
    response = rig.send(handler, "Create", rig.properties(DestinationAccessTokenSecretArn=None))

    assert rig.secret(rig.source_secret)["tunnelId"] == tunnel_id_of(response)
    assert rig.secret(rig.destination_secret) == {"status": "pending"}
    assert rig.tunnel(tunnel_id_of(response))["timeoutConfig"] == {"maxLifetimeTimeoutMinutes": 720}


def test_a_second_delivery_of_the_same_create_opens_no_second_tunnel(rig: Rig, handler: Handler) -> None:
    first = rig.send(handler, "Create", rig.properties(), request_id="req-1")
    second = rig.send(handler, "Create", rig.properties(), request_id="req-1")

    assert tunnel_id_of(first) == tunnel_id_of(second)
    assert rig.tunnels.call_count("OpenTunnel") == 1
    assert rig.tunnels.open_tunnel_ids() == [tunnel_id_of(first)]
    assert rig.tunnels.is_token_valid(rig.secret(rig.source_secret)["accessToken"])
    assert rig.tunnels.is_token_valid(rig.secret(rig.destination_secret)["accessToken"])


def test_a_different_create_request_opens_its_own_tunnel(rig: Rig, handler: Handler) -> None:
    first = rig.send(handler, "Create", rig.properties(), request_id="req-1")
    second = rig.send(handler, "Create", rig.properties(), request_id="req-2")

    assert tunnel_id_of(first) != tunnel_id_of(second)


def test_secret_write_failing_after_open_closes_the_tunnel(rig: Rig, handler: Handler) -> None:
    missing = rig.destination_secret.replace("tunnel/destination", "tunnel/missing")
    response = rig.send(handler, "Create", rig.properties(DestinationAccessTokenSecretArn=missing))

    assert response["Status"] == "FAILED"
    assert "Writing the token secrets failed (ResourceNotFoundException)" in response["Reason"]
    assert "closed" in response["Reason"]
    assert rig.tunnels.call_count("OpenTunnel") == 1
    assert rig.tunnels.open_tunnel_ids() == []
    # The source secret, written before the failure was known, holds its placeholder again.
    assert rig.secret(rig.source_secret) == {"status": "pending"}
    # The failure reports the tunnel id: CloudFormation's Delete then succeeds without a tunnel.
    deleted = rig.send(handler, "Delete", rig.properties(), physical_id=response["PhysicalResourceId"])
    assert deleted["Status"] == "SUCCESS"


def test_open_tunnel_limit_fails_with_an_actionable_reason(rig: Rig, handler: Handler) -> None:
    rig.tunnels.inject("OpenTunnel", "LimitExceededException", times=20)
    response = rig.send(handler, "Create", rig.properties())

    assert response["Status"] == "FAILED"
    assert "Opening the tunnel failed (LimitExceededException)" in response["Reason"]
    assert "limit of open tunnels" in response["Reason"]
    assert rig.tunnels.call_count("OpenTunnel") == 1, "a quota error is not retried"
    assert rig.tunnels.open_tunnel_ids() == []


def test_throttling_is_retried_not_surfaced(rig: Rig, handler: Handler) -> None:
    rig.tunnels.inject("OpenTunnel", "ThrottlingException", times=3)
    rig.tunnels.inject("ListTunnels", "ThrottlingException", times=2)
    response = rig.send(handler, "Create", rig.properties())

    assert response["Status"] == "SUCCESS"
    assert rig.tunnels.open_tunnel_ids() == [tunnel_id_of(response)]


def test_a_server_error_on_open_is_retried_after_looking_for_the_tunnel(rig: Rig, handler: Handler) -> None:
    rig.tunnels.inject("OpenTunnel", "InternalFailureException", status=500, times=2)
    response = rig.send(handler, "Create", rig.properties())

    assert response["Status"] == "SUCCESS"
    # A look-up before each of the three OpenTunnel calls, and one after the last (for a
    # concurrent delivery of the same request).
    assert rig.tunnels.call_count("ListTunnels") == 4
    assert rig.tunnels.open_tunnel_ids() == [tunnel_id_of(response)]


def test_access_denied_on_open_names_the_step(rig: Rig, handler: Handler) -> None:
    # A lasting denial: retried only within the IAM propagation window, then reported.
    rig.tunnels.inject("OpenTunnel", "AccessDeniedException", status=403, times=1000)
    started = time.monotonic()
    response = rig.send(handler, "Create", rig.properties())

    assert response["Status"] == "FAILED"
    assert response["Reason"].startswith("Opening the tunnel failed (AccessDeniedException): access denied")
    assert rig.tunnels.open_tunnel_ids() == []
    assert IAM_PATIENCE_SECONDS <= time.monotonic() - started < IAM_PATIENCE_SECONDS + 5


@pytest.mark.parametrize("operation", ["ListTunnels", "OpenTunnel"])
def test_a_new_role_denied_at_first_still_creates(rig: Rig, handler: Handler, operation: str) -> None:
    # IAM propagation: a freshly created role's first calls may be denied (docs/aws-semantics.md).
    rig.tunnels.inject(operation, "AccessDeniedException", status=403, times=2)
    response = rig.send(handler, "Create", rig.properties())

    tunnel_id = tunnel_id_of(response)
    assert rig.tunnels.open_tunnel_ids() == [tunnel_id]
    assert rig.secret(rig.source_secret)["accessToken"] == rig.tunnel(tunnel_id)["sourceAccessToken"]


def test_missing_owner_configuration_fails_clearly(rig: Rig, handler: Handler) -> None:
    with rig.environment({"TUNNEL_OWNER": ""}):
        response = rig.send(handler, "Create", rig.properties())

    assert response["Status"] == "FAILED"
    assert "TUNNEL_OWNER" in response["Reason"]
    assert rig.tunnels.call_count() == 0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"DestinationConfig": None}, "DestinationConfig is required"),
        (
            {"DestinationConfig": {"ThingName": "bad name!", "Services": ["SSH"]}},
            "DestinationConfig.ThingName",
        ),
        ({"DestinationConfig": {"ThingName": THING, "Services": []}}, "DestinationConfig.Services"),
        ({"DestinationConfig": {"ThingName": THING, "Services": ["A", "B", "C", "D"]}}, "1 to 3"),
        ({"DestinationConfig": {"ThingName": THING, "Services": ["SSH", "SSH"]}}, "unique"),
        ({"DestinationConfig": {"ThingName": THING, "Services": "SSH"}}, "DestinationConfig.Services"),
        (
            {"DestinationConfig": {"ThingName": THING, "Services": ["SSH"], "Port": "22"}},
            "DestinationConfig.Port",
        ),
        ({"Description": ""}, "Description must be 1-2048"),
        ({"Description": "bell\x07"}, "no control characters"),
        ({"Description": "x" * 2049}, "Description must be 1-2048"),
        ({"TimeoutConfig": {"MaxLifetimeTimeoutMinutes": "0"}}, "1 to 720"),
        ({"TimeoutConfig": {"MaxLifetimeTimeoutMinutes": "721"}}, "1 to 720"),
        ({"TimeoutConfig": {"MaxLifetimeTimeoutMinutes": "7.5"}}, "whole number"),
        ({"TimeoutConfig": {"MaxLifetimeTimeoutMinutes": "abc"}}, "whole number"),
        ({"TimeoutConfig": {"Minutes": "5"}}, "only MaxLifetimeTimeoutMinutes"),
        ({"Tags": [{"Key": "aws:owner", "Value": "x"}]}, "reserved"),
        ({"Tags": [{"Key": "iot-secure-tunnel:owner", "Value": "x"}]}, "reserved"),
        ({"Tags": [{"Key": "k", "Value": "v"}] * 2}, "must not repeat"),
        ({"Tags": [{"Key": f"k{i}", "Value": "v"} for i in range(197)]}, "at most 196"),
        ({"Tags": [{"Key": "k", "Value": "v" * 257}]}, "Value must be 0-256"),
        ({"Tags": [{"Key": "k"}]}, "exactly Key and Value"),
        ({"SourceAccessTokenSecretArn": None}, "SourceAccessTokenSecretArn must be the ARN"),
        ({"SourceAccessTokenSecretArn": "my-secret"}, "SourceAccessTokenSecretArn must be the ARN"),
        (
            {"DestinationAccessTokenSecretArn": "arn:aws:s3:::bucket"},
            "DestinationAccessTokenSecretArn must be",
        ),
        ({"RotationTrigger": {"not": "a string"}}, "RotationTrigger must be a string"),
        ({"Colour": "blue"}, "unknown properties Colour"),
    ],
)
def test_bad_properties_fail_clearly_and_open_nothing(
    rig: Rig, handler: Handler, change: dict[str, object], named: str
) -> None:
    response = rig.send(handler, "Create", rig.properties(**change))

    assert response["Status"] == "FAILED"
    assert response["Reason"].startswith("Invalid properties: ")
    assert named in response["Reason"]
    assert response["Reason"].endswith("Nothing was changed.")
    assert len(response["Reason"]) <= 256
    assert rig.tunnels.call_count() == 0
    assert rig.secret(rig.source_secret) == {"status": "pending"}
    # CloudFormation then deletes the failed resource: that touches nothing either.
    deleted = rig.send(
        handler, "Delete", rig.properties(**change), physical_id=response["PhysicalResourceId"]
    )
    assert deleted["Status"] == "SUCCESS"
    assert rig.tunnels.call_count() == 0


@pytest.mark.parametrize("spelling", ["full ARN", "partial ARN (no random suffix)"])
def test_same_secret_for_both_tokens_is_refused(rig: Rig, handler: Handler, spelling: str) -> None:
    # Secrets Manager accepts a secret's ARN with or without its 6-character suffix: both name it.
    other = rig.source_secret if spelling == "full ARN" else rig.source_secret[: -len("-AbCdEf")]
    response = rig.send(handler, "Create", rig.properties(DestinationAccessTokenSecretArn=other))

    assert response["Status"] == "FAILED"
    assert "must name two secrets" in response["Reason"]
    assert rig.tunnels.call_count() == 0, "nothing opened"
    assert rig.secret(rig.source_secret) == {"status": "pending"}


@pytest.mark.parametrize("request_type", ["Bogus", "create", ""])
@pytest.mark.parametrize("physical_id", [None, "some-tunnel-id"])
def test_an_unknown_request_type_fails_with_a_reason_and_a_physical_id(
    rig: Rig, handler: Handler, request_type: str, physical_id: str | None
) -> None:
    response = rig.send(handler, request_type, rig.properties(), physical_id=physical_id)

    assert response["Status"] == "FAILED"
    assert response["Reason"] == (
        f"Invalid event: unknown RequestType {request_type!r} (expected Create, Update or Delete). "
        "Nothing was changed."
    )
    # CloudFormation rejects a response with an empty physical id ("Invalid PhysicalResourceId").
    assert response["PhysicalResourceId"] == physical_id if physical_id else response["PhysicalResourceId"]
    assert rig.tunnels.call_count() == 0


@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_an_event_without_resource_properties_fails_with_a_reason(
    rig: Rig, handler: Handler, request_type: str
) -> None:
    url = rig.cloudformation.new_url()
    broken = event(request_type, url, {}, physical_id="some-tunnel-id" if request_type == "Update" else None)
    del broken["ResourceProperties"]
    handler(broken, LambdaContext())
    response = rig.cloudformation.response_for(url)

    assert response["Status"] == "FAILED"
    assert response["Reason"] == "Invalid event: it has no ResourceProperties. Nothing was changed."
    assert response["PhysicalResourceId"]
    assert rig.tunnels.call_count() == 0


def test_an_event_no_response_can_answer_is_ignored(rig: Rig, handler: Handler) -> None:
    # Without a ResponseURL (or the ids a response must echo) nothing can reach CloudFormation;
    # crhelper would send its failure to the URL of an earlier event of the environment.
    earlier = rig.send(handler, "Create", rig.properties())
    handler({"RequestType": "Create", "ResourceProperties": rig.properties()}, LambdaContext())

    assert len(rig.cloudformation.raw_bodies) == 1, "no second response to the earlier event's URL"
    assert rig.tunnels.open_tunnel_ids() == [tunnel_id_of(earlier)]
