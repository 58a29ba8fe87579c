"""The IoT Secure Tunneling emulator keeps the service's rules, driven through a real boto3 client."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from mypy_boto3_iotsecuretunneling import IoTSecureTunnelingClient
from mypy_boto3_iotsecuretunneling.literals import ClientModeType
from mypy_boto3_iotsecuretunneling.type_defs import DestinationConfigTypeDef, TagTypeDef

from tests.cdk_helpers import partition_arn
from tests.rig.iam_policy import Decision, condition_holds, evaluate, handler_policy
from tests.rig.tunneling_emulator import RETENTION_SECONDS, TunnelingEmulator

REGION = "us-east-1"
ACCOUNT = "123456789012"
DEST: DestinationConfigTypeDef = {"thingName": "demo-device", "services": ["SSH"]}
T0 = 1_700_000_000.0
Client = IoTSecureTunnelingClient


class FakeClock:
    """A settable epoch clock for lifetime tests."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_client(endpoint_url: str | None, *, validate: bool = True) -> IoTSecureTunnelingClient:
    """A real client; one attempt so injected errors surface, optionally no client-side checks."""
    config = Config(retries={"total_max_attempts": 1}, parameter_validation=validate)
    return boto3.client(
        "iotsecuretunneling",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


@pytest.fixture(scope="module")
def shared() -> Iterator[TunnelingEmulator]:
    with TunnelingEmulator(region=REGION, account=ACCOUNT) as emu:
        yield emu


@pytest.fixture
def emulator(shared: TunnelingEmulator) -> TunnelingEmulator:
    """The module's emulator, reset: starting one per test would cost a shutdown poll each."""
    shared.reset()
    return shared


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed(clock: FakeClock) -> Iterator[TunnelingEmulator]:
    """An emulator on the fake clock."""
    with TunnelingEmulator(clock=clock) as emu:
        yield emu


@pytest.fixture
def client(emulator: TunnelingEmulator) -> IoTSecureTunnelingClient:
    return make_client(emulator.endpoint_url)


@pytest.fixture
def raw_client(emulator: TunnelingEmulator) -> IoTSecureTunnelingClient:
    """Skips botocore's parameter validation, so the emulator's own checks are reached."""
    return make_client(emulator.endpoint_url, validate=False)


def error_of(call: Callable[[], object]) -> tuple[str, int]:
    """The error code and HTTP status of a call that must fail."""
    with pytest.raises(ClientError) as info:
        call()
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def open_tunnel(client, **kwargs: Any) -> tuple[str, str, str]:
    """Open a tunnel to ``DEST``; returns its id, source token and destination token."""
    kwargs.setdefault("destinationConfig", DEST)
    opened = client.open_tunnel(**kwargs)
    return opened["tunnelId"], opened["sourceAccessToken"], opened["destinationAccessToken"]


# --- open / describe -------------------------------------------------------------------------


def test_open_returns_uuid_arn_and_two_valid_tokens(emulator: TunnelingEmulator, client: Client) -> None:
    opened = client.open_tunnel(destinationConfig=DEST)

    tunnel_id = opened["tunnelId"]
    assert str(uuid.UUID(tunnel_id, version=4)) == tunnel_id
    assert opened["tunnelArn"] == f"arn:aws:iot:{REGION}:{ACCOUNT}:tunnel/{tunnel_id}"
    source, destination = opened["sourceAccessToken"], opened["destinationAccessToken"]
    assert source != destination
    assert emulator.is_token_valid(source) and emulator.is_token_valid(destination)
    assert emulator.issued_tokens == [source, destination]
    assert not emulator.is_token_valid("not-a-token")
    assert emulator.open_tunnel_ids() == [tunnel_id]


def test_describe_returns_the_tunnel_structure_and_never_a_token(timed: TunnelingEmulator) -> None:
    client = make_client(timed.endpoint_url)
    tunnel_id, _, _ = open_tunnel(
        client,
        description="maintenance access",
        destinationConfig={"thingName": "dev-1", "services": ["SSH", "HTTP"]},
        tags=[{"key": "team", "value": "field-ops"}],
        timeoutConfig={"maxLifetimeTimeoutMinutes": 30},
    )

    tunnel = client.describe_tunnel(tunnelId=tunnel_id)["tunnel"]
    created = datetime.fromtimestamp(T0, tz=UTC)
    assert tunnel == {
        "tunnelId": tunnel_id,
        "tunnelArn": f"arn:aws:iot:us-east-1:123456789012:tunnel/{tunnel_id}",
        "status": "OPEN",
        "description": "maintenance access",
        "destinationConfig": {"thingName": "dev-1", "services": ["SSH", "HTTP"]},
        "timeoutConfig": {"maxLifetimeTimeoutMinutes": 30},
        "tags": [{"key": "team", "value": "field-ops"}],
        "createdAt": created,
        "lastUpdatedAt": created,
        "sourceConnectionState": {"status": "DISCONNECTED", "lastUpdatedAt": created},
        "destinationConnectionState": {"status": "DISCONNECTED", "lastUpdatedAt": created},
    }
    assert not any(key.endswith("AccessToken") for key in tunnel)


def test_open_defaults_to_720_minutes_and_no_description(emulator: TunnelingEmulator, client: Client) -> None:
    tunnel_id, _, _ = open_tunnel(client)

    tunnel = client.describe_tunnel(tunnelId=tunnel_id)["tunnel"]
    assert tunnel["timeoutConfig"] == {"maxLifetimeTimeoutMinutes": 720}
    assert "description" not in tunnel and "tags" not in tunnel
    state = emulator.tunnel(tunnel_id)
    assert state is not None
    assert state["arn"] == state["tunnelArn"] and state["tags"] == []
    assert emulator.is_token_valid(state["sourceAccessToken"])


def test_open_accepts_values_at_the_limits(emulator: TunnelingEmulator, client: Client) -> None:
    name = "a:b_c-" + "x" * 122
    tunnel_id, _, _ = open_tunnel(
        client,
        description="é" * 2048,
        destinationConfig={"thingName": name, "services": [name, "HTTP", "RDP"]},
        tags=[{"key": f"k{i}", "value": "v" * 256} for i in range(200)],
        timeoutConfig={"maxLifetimeTimeoutMinutes": 1},
    )
    state = emulator.tunnel(tunnel_id)
    assert state is not None and len(state["tags"]) == 200
    open_tunnel(client, timeoutConfig={"maxLifetimeTimeoutMinutes": 720}, tags=[{"key": "k", "value": ""}])


@pytest.mark.parametrize(
    "request_body",
    [
        pytest.param({"destinationConfig": {"services": []}}, id="no-service"),
        pytest.param({"destinationConfig": {"services": ["A", "B", "C", "D"]}}, id="four-services"),
        pytest.param({"destinationConfig": {"services": ["SSH", "SSH"]}}, id="duplicate-service"),
        pytest.param({"destinationConfig": {"services": ["S S H"]}}, id="service-pattern"),
        pytest.param({"destinationConfig": {"services": ["x" * 129]}}, id="service-too-long"),
        pytest.param({"destinationConfig": {"thingName": "a/b", "services": ["SSH"]}}, id="thing-pattern"),
        pytest.param({"destinationConfig": {"thingName": "", "services": ["SSH"]}}, id="thing-empty"),
        pytest.param({"description": ""}, id="description-empty"),
        pytest.param({"description": "x" * 2049}, id="description-too-long"),
        pytest.param({"description": "bell\x07"}, id="description-control-char"),
        pytest.param({"description": "zero\u200bwidth"}, id="description-format-char"),
        pytest.param({"timeoutConfig": {"maxLifetimeTimeoutMinutes": 0}}, id="lifetime-zero"),
        pytest.param({"timeoutConfig": {"maxLifetimeTimeoutMinutes": 721}}, id="lifetime-too-long"),
        pytest.param({"tags": [{"key": f"k{i}", "value": ""} for i in range(201)]}, id="201-tags"),
        pytest.param({"tags": [{"key": "k" * 129, "value": ""}]}, id="tag-key-too-long"),
        pytest.param({"tags": [{"key": "", "value": ""}]}, id="tag-key-empty"),
        pytest.param({"tags": [{"key": "k", "value": "v" * 257}]}, id="tag-value-too-long"),
        pytest.param({"tags": [{"key": "k!", "value": ""}]}, id="tag-key-pattern"),
    ],
)
def test_open_rejects_invalid_input(
    emulator: TunnelingEmulator, raw_client: Client, request_body: dict[str, Any]
) -> None:
    body = {"destinationConfig": DEST, **request_body}

    assert error_of(lambda: raw_client.open_tunnel(**body)) == ("ValidationException", 400)
    assert emulator.open_tunnel_ids() == [] and emulator.issued_tokens == []


def test_open_beyond_the_open_tunnel_limit_is_refused() -> None:
    with TunnelingEmulator(max_open_tunnels=2) as emulator:
        client = make_client(emulator.endpoint_url)
        first, _, _ = open_tunnel(client)
        open_tunnel(client)

        assert error_of(lambda: open_tunnel(client)) == ("LimitExceededException", 400)
        client.close_tunnel(tunnelId=first)  # a CLOSED tunnel no longer counts
        open_tunnel(client)
        assert len(emulator.open_tunnel_ids()) == 2


# --- close / delete / not found --------------------------------------------------------------


def test_close_keeps_the_tunnel_visible_as_closed(emulator: TunnelingEmulator, client: Client) -> None:
    tunnel_id, source, destination = open_tunnel(client)

    client.close_tunnel(tunnelId=tunnel_id)

    assert client.describe_tunnel(tunnelId=tunnel_id)["tunnel"]["status"] == "CLOSED"
    assert not emulator.is_token_valid(source) and not emulator.is_token_valid(destination)
    assert emulator.open_tunnel_ids() == []
    client.close_tunnel(tunnelId=tunnel_id)  # closing a CLOSED tunnel succeeds
    summaries = client.list_tunnels()["tunnelSummaries"]
    assert [(s["tunnelId"], s["status"]) for s in summaries] == [(tunnel_id, "CLOSED")]


def test_close_with_delete_removes_the_tunnel(emulator: TunnelingEmulator, client: Client) -> None:
    tunnel_id, source, _ = open_tunnel(client)
    arn = client.describe_tunnel(tunnelId=tunnel_id)["tunnel"]["tunnelArn"]

    client.close_tunnel(tunnelId=tunnel_id, delete=True)

    assert emulator.tunnel(tunnel_id) is None and not emulator.is_token_valid(source)
    assert client.list_tunnels()["tunnelSummaries"] == []
    not_found = ("ResourceNotFoundException", 400)
    assert error_of(lambda: client.describe_tunnel(tunnelId=tunnel_id)) == not_found
    assert error_of(lambda: client.close_tunnel(tunnelId=tunnel_id, delete=True)) == not_found
    assert error_of(lambda: client.list_tags_for_resource(resourceArn=arn)) == not_found


def test_unknown_tunnels_and_arns_are_not_found(client: Client) -> None:
    unknown = str(uuid.uuid4())
    arn = f"arn:aws:iot:{REGION}:{ACCOUNT}:tunnel/{unknown}"
    calls: list[Callable[[], object]] = [
        lambda: client.describe_tunnel(tunnelId=unknown),
        lambda: client.close_tunnel(tunnelId=unknown),
        lambda: client.rotate_tunnel_access_token(tunnelId=unknown, clientMode="ALL"),
        lambda: client.tag_resource(resourceArn=arn, tags=[{"key": "k", "value": "v"}]),
        lambda: client.untag_resource(resourceArn=arn, tagKeys=["k"]),
        lambda: client.list_tags_for_resource(resourceArn=arn),
    ]
    for call in calls:
        assert error_of(call) == ("ResourceNotFoundException", 400)


# --- rotation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "rotated"),
    [("SOURCE", {"source"}), ("DESTINATION", {"destination"}), ("ALL", {"source", "destination"})],
)
def test_rotation_replaces_only_the_tokens_of_its_mode(
    emulator: TunnelingEmulator, client: Client, mode: ClientModeType, rotated: set[str]
) -> None:
    tunnel_id, source, destination = open_tunnel(client)

    answer = client.rotate_tunnel_access_token(tunnelId=tunnel_id, clientMode=mode)

    assert answer["tunnelArn"] == f"arn:aws:iot:{REGION}:{ACCOUNT}:tunnel/{tunnel_id}"
    new = {"source": answer.get("sourceAccessToken"), "destination": answer.get("destinationAccessToken")}
    assert {side for side, token in new.items() if token} == rotated
    for side, old in (("source", source), ("destination", destination)):
        token = new[side]
        assert emulator.is_token_valid(old) is (side not in rotated)
        assert token is None or (emulator.is_token_valid(token) and token in emulator.issued_tokens)


def test_rotation_can_replace_the_destination_config(emulator: TunnelingEmulator, raw_client: Client) -> None:
    tunnel_id, source, _ = open_tunnel(raw_client)
    moved: DestinationConfigTypeDef = {"thingName": "other-device", "services": ["SSH", "RDP"]}

    raw_client.rotate_tunnel_access_token(tunnelId=tunnel_id, clientMode="ALL", destinationConfig=moved)

    assert raw_client.describe_tunnel(tunnelId=tunnel_id)["tunnel"]["destinationConfig"] == moved
    too_many: DestinationConfigTypeDef = {"thingName": "other-device", "services": ["A", "B", "C", "D"]}
    rotate = raw_client.rotate_tunnel_access_token
    assert error_of(lambda: rotate(tunnelId=tunnel_id, clientMode="ALL", destinationConfig=too_many)) == (
        "ValidationException",
        400,
    )
    assert error_of(lambda: rotate(tunnelId=tunnel_id, clientMode="BOTH")) == ("ValidationException", 400)  # type: ignore[arg-type]
    assert not emulator.is_token_valid(source)


def test_rotation_of_a_closed_tunnel_is_refused_with_a_non_not_found_code(
    emulator: TunnelingEmulator, client: Client
) -> None:
    closed, _, _ = open_tunnel(client)
    client.close_tunnel(tunnelId=closed)
    expired, _, _ = open_tunnel(client)
    emulator.expire(expired)

    for tunnel_id in (closed, expired):
        rotate = partial(client.rotate_tunnel_access_token, tunnelId=tunnel_id, clientMode="ALL")
        assert error_of(rotate) == ("InvalidRequestException", 400)
    assert len(emulator.issued_tokens) == 4, "a refused rotation issues no token"


# --- lifetime ----------------------------------------------------------------------------------


def test_tunnel_closes_when_its_lifetime_runs_out(timed: TunnelingEmulator, clock: FakeClock) -> None:
    client = make_client(timed.endpoint_url)
    tunnel_id, source, _ = open_tunnel(client, timeoutConfig={"maxLifetimeTimeoutMinutes": 1})

    clock.now = T0 + 59.9
    assert timed.is_token_valid(source) and timed.open_tunnel_ids() == [tunnel_id]
    clock.now = T0 + 60
    tunnel = client.describe_tunnel(tunnelId=tunnel_id)["tunnel"]
    assert tunnel["status"] == "CLOSED"
    assert tunnel["lastUpdatedAt"] == datetime.fromtimestamp(T0 + 60, tz=UTC)
    assert not timed.is_token_valid(source) and timed.open_tunnel_ids() == []
    rotate = client.rotate_tunnel_access_token
    assert error_of(lambda: rotate(tunnelId=tunnel_id, clientMode="ALL")) == ("InvalidRequestException", 400)


def test_rotation_does_not_extend_the_lifetime(timed: TunnelingEmulator, clock: FakeClock) -> None:
    client = make_client(timed.endpoint_url)
    tunnel_id, _, _ = open_tunnel(client, timeoutConfig={"maxLifetimeTimeoutMinutes": 10})

    clock.now = T0 + 9 * 60
    token = client.rotate_tunnel_access_token(tunnelId=tunnel_id, clientMode="SOURCE")["sourceAccessToken"]
    assert timed.is_token_valid(token)
    clock.now = T0 + 10 * 60

    assert not timed.is_token_valid(token)
    assert client.describe_tunnel(tunnelId=tunnel_id)["tunnel"]["status"] == "CLOSED"


def test_expire_forces_a_tunnel_closed(emulator: TunnelingEmulator, client: Client) -> None:
    tunnel_id, source, destination = open_tunnel(client)

    emulator.expire(tunnel_id)

    assert client.describe_tunnel(tunnelId=tunnel_id)["tunnel"]["status"] == "CLOSED"
    assert not emulator.is_token_valid(source) and not emulator.is_token_valid(destination)
    with pytest.raises(KeyError):
        emulator.expire("unknown")


# --- listing -----------------------------------------------------------------------------------


def test_list_tunnels_pages_newest_first(emulator: TunnelingEmulator, client: Client) -> None:
    opened = [open_tunnel(client, description=f"t{i}")[0] for i in range(5)]

    seen: list[str] = []
    pages: list[int] = []
    kwargs: dict[str, Any] = {"maxResults": 2}
    while True:
        answer = client.list_tunnels(**kwargs)
        pages.append(len(answer["tunnelSummaries"]))
        seen += [s["tunnelId"] for s in answer["tunnelSummaries"]]
        if "nextToken" not in answer:
            break
        kwargs["nextToken"] = answer["nextToken"]

    assert pages == [2, 2, 1] and seen == opened[::-1]
    summary = client.list_tunnels(maxResults=1)["tunnelSummaries"][0]
    assert set(summary) == {"tunnelId", "tunnelArn", "status", "description", "createdAt", "lastUpdatedAt"}
    assert len(client.list_tunnels()["tunnelSummaries"]) == 5


def test_list_tunnels_rejects_bad_paging(raw_client: Client) -> None:
    invalid = ("ValidationException", 400)
    assert error_of(lambda: raw_client.list_tunnels(maxResults=101)) == invalid
    assert error_of(lambda: raw_client.list_tunnels(maxResults=0)) == invalid
    assert error_of(lambda: raw_client.list_tunnels(nextToken="bogus")) == invalid


def test_list_tunnels_filters_by_thing_and_keeps_closed_ones(
    emulator: TunnelingEmulator, client: Client
) -> None:
    mine, _, _ = open_tunnel(client, destinationConfig={"thingName": "mine", "services": ["SSH"]})
    closed, _, _ = open_tunnel(client, destinationConfig={"thingName": "mine", "services": ["SSH"]})
    deleted, _, _ = open_tunnel(client, destinationConfig={"thingName": "mine", "services": ["SSH"]})
    open_tunnel(client, destinationConfig={"thingName": "other", "services": ["SSH"]})
    open_tunnel(client, destinationConfig={"services": ["SSH"]})
    client.close_tunnel(tunnelId=closed)
    client.close_tunnel(tunnelId=deleted, delete=True)

    summaries = client.list_tunnels(thingName="mine")["tunnelSummaries"]

    assert [(s["tunnelId"], s["status"]) for s in summaries] == [(closed, "CLOSED"), (mine, "OPEN")]


# --- tags --------------------------------------------------------------------------------------


def test_tags_are_added_replaced_and_removed(
    emulator: TunnelingEmulator, client: Client, raw_client: Client
) -> None:
    opened = client.open_tunnel(destinationConfig=DEST, tags=[{"key": "a", "value": "1"}])
    arn = opened["tunnelArn"]

    client.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "changed"}, {"key": "b", "value": "2"}])
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == [
        {"key": "a", "value": "changed"},
        {"key": "b", "value": "2"},
    ]
    client.untag_resource(resourceArn=arn, tagKeys=["a", "missing"])
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "b", "value": "2"}]

    many: list[TagTypeDef] = [{"key": f"k{i}", "value": ""} for i in range(200)]
    tag = raw_client.tag_resource
    assert error_of(lambda: tag(resourceArn=arn, tags=many)) == ("ValidationException", 400)  # 201 in all
    tag(resourceArn=arn, tags=many[:199])
    state = emulator.tunnel(opened["tunnelId"])
    assert state is not None and len(state["tags"]) == 200


# --- fault and load injection ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ThrottlingException", 400),
        ("InternalFailureException", 500),
        ("ServiceUnavailableException", 503),
        ("AccessDeniedException", 403),
        ("ResourceNotFoundException", 400),
        ("LimitExceededException", 400),
    ],
)
def test_injected_fault_surfaces_as_client_error(
    emulator: TunnelingEmulator, client: Client, code: str, status: int
) -> None:
    emulator.inject("OpenTunnel", code, status=status)

    assert error_of(lambda: open_tunnel(client)) == (code, status)
    open_tunnel(client)  # times=1: the next call is served
    assert emulator.throttled_count == int(code == "ThrottlingException")
    assert emulator.call_count("OpenTunnel") == 2 and len(emulator.open_tunnel_ids()) == 1


def test_inject_honours_after_times_and_wildcard(emulator: TunnelingEmulator, client: Client) -> None:
    emulator.inject("DescribeTunnel", "InternalFailureException", status=500, times=2, after=1)
    tunnel_id, _, _ = open_tunnel(client)
    describe = client.describe_tunnel

    describe(tunnelId=tunnel_id)
    assert error_of(lambda: describe(tunnelId=tunnel_id)) == ("InternalFailureException", 500)
    assert error_of(lambda: describe(tunnelId=tunnel_id)) == ("InternalFailureException", 500)
    describe(tunnelId=tunnel_id)

    emulator.inject("*", "ServiceUnavailableException", status=503, message="maintenance", times=2)
    with pytest.raises(ClientError) as info:
        client.list_tunnels()
    assert info.value.response["Error"]["Message"] == "maintenance"
    assert error_of(lambda: client.close_tunnel(tunnelId=tunnel_id)) == ("ServiceUnavailableException", 503)
    client.close_tunnel(tunnelId=tunnel_id)
    with pytest.raises(ValueError, match="unknown operation"):
        emulator.inject("OpenTunel", "ThrottlingException")


def test_throttle_limits_the_rate_across_all_calls(emulator: TunnelingEmulator, client: Client) -> None:
    emulator.throttle(0.01, burst=3)

    client.list_tunnels()
    tunnel_id, _, _ = open_tunnel(client)
    client.describe_tunnel(tunnelId=tunnel_id)
    assert error_of(client.list_tunnels) == ("ThrottlingException", 400)
    assert error_of(lambda: open_tunnel(client)) == ("ThrottlingException", 400)
    assert emulator.throttled_count == 2 and emulator.open_tunnel_ids() == [tunnel_id]

    emulator.throttle(None)
    client.list_tunnels()


def test_throttle_refills_over_time(emulator: TunnelingEmulator, client: Client) -> None:
    emulator.throttle(5, burst=1)  # one call per 200 ms

    client.list_tunnels()
    assert error_of(client.list_tunnels) == ("ThrottlingException", 400)
    time.sleep(0.25)
    client.list_tunnels()
    assert emulator.throttled_count == 1


def test_latency_delays_every_call(emulator: TunnelingEmulator, client: Client) -> None:
    client.list_tunnels()  # warm the connection pool
    emulator.latency(0.2)

    started = time.monotonic()
    client.list_tunnels()
    assert time.monotonic() - started >= 0.2
    emulator.latency(0)
    started = time.monotonic()
    client.list_tunnels()
    assert time.monotonic() - started < 0.2


def test_on_call_hook_can_act_mid_event(emulator: TunnelingEmulator, client: Client) -> None:
    tunnel_id, _, _ = open_tunnel(client)
    seen: list[str] = []

    def hook(operation: str) -> None:
        seen.append(operation)
        if operation == "RotateTunnelAccessToken":
            emulator.expire(tunnel_id)  # the tunnel expires between describe and rotate

    emulator.on_call(hook)
    assert client.describe_tunnel(tunnelId=tunnel_id)["tunnel"]["status"] == "OPEN"
    rotate = client.rotate_tunnel_access_token
    assert error_of(lambda: rotate(tunnelId=tunnel_id, clientMode="ALL")) == ("InvalidRequestException", 400)
    assert seen == ["DescribeTunnel", "RotateTunnelAccessToken"]

    def broken(operation: str) -> None:
        raise RuntimeError(operation)

    emulator.on_call(broken)
    assert error_of(client.list_tunnels) == ("InternalFailureException", 500)
    assert [type(e) for e in emulator.hook_errors] == [RuntimeError]
    emulator.on_call(None)
    client.list_tunnels()


# --- inspection and lifecycle ------------------------------------------------------------------


def test_calls_record_every_request_in_order(emulator: TunnelingEmulator, client: Client) -> None:
    emulator.inject("CloseTunnel", "AccessDeniedException", status=403)
    tunnel_id, _, _ = open_tunnel(client)
    error_of(lambda: client.close_tunnel(tunnelId=tunnel_id, delete=True))
    client.close_tunnel(tunnelId=tunnel_id, delete=True)

    assert emulator.calls == [
        ("OpenTunnel", {"destinationConfig": DEST}),
        ("CloseTunnel", {"tunnelId": tunnel_id, "delete": True}),
        ("CloseTunnel", {"tunnelId": tunnel_id, "delete": True}),
    ]
    assert emulator.call_count() == 3 and emulator.call_count("CloseTunnel") == 2
    assert emulator.call_count("ListTunnels") == 0


def test_reset_forgets_everything_but_keeps_serving(emulator: TunnelingEmulator, client: Client) -> None:
    tunnel_id, source, _ = open_tunnel(client)
    emulator.inject("*", "ThrottlingException", times=5)
    emulator.throttle(0.01, burst=1)
    emulator.latency(1)

    emulator.reset()

    assert emulator.tunnel(tunnel_id) is None and not emulator.is_token_valid(source)
    assert emulator.calls == [] and emulator.issued_tokens == [] and emulator.throttled_count == 0
    started = time.monotonic()
    assert client.list_tunnels()["tunnelSummaries"] == []
    client.list_tunnels()
    assert time.monotonic() - started < 0.5


def test_endpoint_comes_from_the_service_specific_environment_variable(
    emulator: TunnelingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_IOTSECURETUNNELING", emulator.endpoint_url)

    open_tunnel(make_client(None))

    assert emulator.call_count("OpenTunnel") == 1


def _post(url: str, target: str, body: bytes) -> tuple[int, str, dict[str, Any]]:
    headers = {"X-Amz-Target": target}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request) as response:  # noqa: S310 - loopback emulator
            return response.status, response.headers["Content-Type"], json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.load(error)


def test_wire_format(emulator: TunnelingEmulator) -> None:
    url = emulator.endpoint_url + "/"

    status, content_type, body = _post(url, "IoTSecuredTunneling.ListTunnels", b"{}")
    assert (status, content_type, body) == (200, "application/x-amz-json-1.1", {"tunnelSummaries": []})
    status, _, body = _post(url, "IoTSecuredTunneling.Nope", b"{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, _, body = _post(url, "IoTSecuredTunneling.ListTunnels", b"{not json")
    assert (status, body["__type"]) == (400, "SerializationException")


def test_concurrent_opens_get_distinct_tunnels(emulator: TunnelingEmulator) -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        client = make_client(emulator.endpoint_url)
        for _ in range(5):
            tunnel_id, _, _ = open_tunnel(client)
            with lock:
                ids.append(tunnel_id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(ids)) == 20 and sorted(emulator.open_tunnel_ids()) == sorted(ids)
    assert len(set(emulator.issued_tokens)) == 40


def test_lifecycle_start_stop() -> None:
    emulator = TunnelingEmulator()
    with pytest.raises(RuntimeError, match="not started"):
        _ = emulator.endpoint_url
    emulator.start()
    with pytest.raises(RuntimeError, match="already started"):
        emulator.start()
    url = emulator.endpoint_url
    emulator.stop()
    emulator.stop()  # idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=1)  # noqa: S310 - loopback emulator


# --- IAM enforcement ---------------------------------------------------------------------------

OWNER = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/Demo/0f1e2d3c"
OWNER_TAG = "iot-secure-tunnel:owner"
OWNER_TAGS: list[TagTypeDef] = [{"key": OWNER_TAG, "value": OWNER}]
TUNNELS = f"arn:aws:iot:{REGION}:{ACCOUNT}:tunnel/*"
DEVICE_ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/demo-device"
PRINCIPAL = f"arn:aws:sts::{ACCOUNT}:assumed-role/handler-role/handler"


def handler_like_policy() -> dict[str, Any]:
    """Shaped like the handler's policy, with its old defect: the owner-tag condition also on
    ListTagsForResource, TagResource and UntagResource, whose tunnel requests carry no
    aws:ResourceTag key."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OpenTunnelsTaggedWithThisStack",
                "Effect": "Allow",
                "Action": "iot:OpenTunnel",
                "Resource": [DEVICE_ARN, TUNNELS],
                "Condition": {"StringEquals": {f"aws:RequestTag/{OWNER_TAG}": OWNER}},
            },
            {
                "Sid": "ManageTunnelsOfThisStack",
                "Effect": "Allow",
                "Action": [
                    "iot:CloseTunnel",
                    "iot:DescribeTunnel",
                    "iot:ListTagsForResource",
                    "iot:RotateTunnelAccessToken",
                    "iot:TagResource",
                    "iot:UntagResource",
                ],
                "Resource": TUNNELS,
                "Condition": {"StringEquals": {f"aws:ResourceTag/{OWNER_TAG}": OWNER}},
            },
            {
                "Sid": "RotateTheThing",
                "Effect": "Allow",
                "Action": "iot:RotateTunnelAccessToken",
                "Resource": DEVICE_ARN,
            },
            {"Sid": "FindTunnelsOfAThing", "Effect": "Allow", "Action": "iot:ListTunnels", "Resource": "*"},
        ],
    }


def denial(call: Callable[[], object]) -> tuple[str, int, str]:
    """Code, HTTP status and message of a call that must fail."""
    with pytest.raises(ClientError) as info:
        call()
    response = info.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def not_allowed(operation: str, resource: str) -> tuple[str, int, str]:
    message = (
        f"User: {PRINCIPAL} is not authorized to perform: iot:{operation} on resource: {resource} "
        f"because no identity-based policy allows the iot:{operation} action"
    )
    return "AccessDeniedException", 400, message


def test_a_tag_condition_denies_list_tags_but_not_describe(
    emulator: TunnelingEmulator, client: Client
) -> None:
    emulator.enforce(handler_like_policy(), principal=PRINCIPAL)
    opened = client.open_tunnel(destinationConfig=DEST, tags=OWNER_TAGS)
    arn = opened["tunnelArn"]

    assert client.describe_tunnel(tunnelId=opened["tunnelId"])["tunnel"]["tags"] == OWNER_TAGS
    assert denial(lambda: client.list_tags_for_resource(resourceArn=arn)) == not_allowed(
        "ListTagsForResource", arn
    )
    assert error_of(lambda: client.tag_resource(resourceArn=arn, tags=[{"key": "k", "value": "v"}])) == (
        "AccessDeniedException",
        400,
    )
    assert error_of(lambda: client.untag_resource(resourceArn=arn, tagKeys=["k"])) == (
        "AccessDeniedException",
        400,
    )
    client.rotate_tunnel_access_token(tunnelId=opened["tunnelId"], clientMode="ALL", destinationConfig=DEST)
    assert [s["tunnelId"] for s in client.list_tunnels()["tunnelSummaries"]] == [opened["tunnelId"]]
    client.close_tunnel(tunnelId=opened["tunnelId"], delete=True)
    assert emulator.denied == [("ListTagsForResource", arn), ("TagResource", arn), ("UntagResource", arn)]


def test_open_is_authorized_on_the_new_tunnel_and_on_the_thing(
    emulator: TunnelingEmulator, client: Client
) -> None:
    emulator.enforce(handler_like_policy(), principal=PRINCIPAL)
    other: DestinationConfigTypeDef = {"thingName": "other-device", "services": ["SSH"]}

    code, status, message = denial(lambda: client.open_tunnel(destinationConfig=DEST))
    assert (code, status) == ("AccessDeniedException", 400)
    assert message.startswith(f"User: {PRINCIPAL} is not authorized to perform: iot:OpenTunnel on resource: ")
    other_thing = f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/other-device"
    assert denial(lambda: client.open_tunnel(destinationConfig=other, tags=OWNER_TAGS)) == not_allowed(
        "OpenTunnel", other_thing
    )
    opened = client.open_tunnel(destinationConfig=DEST, tags=OWNER_TAGS)

    (untagged_op, untagged_arn), denied_thing = emulator.denied
    assert untagged_op == "OpenTunnel" and uuid.UUID(untagged_arn.removeprefix(TUNNELS[:-1]))  # a new id
    assert denied_thing == ("OpenTunnel", other_thing)
    assert emulator.open_tunnel_ids() == [opened["tunnelId"]] and len(emulator.issued_tokens) == 2


def test_rotation_with_a_destination_config_is_authorized_on_the_thing(
    emulator: TunnelingEmulator, client: Client
) -> None:
    policy = handler_like_policy()
    emulator.enforce(policy, principal=PRINCIPAL)
    tunnel_id = client.open_tunnel(destinationConfig=DEST, tags=OWNER_TAGS)["tunnelId"]
    client.rotate_tunnel_access_token(tunnelId=tunnel_id, clientMode="ALL", destinationConfig=DEST)

    emulator.enforce({**policy, "Statement": policy["Statement"][:2]}, principal=PRINCIPAL)  # no thing
    client.rotate_tunnel_access_token(tunnelId=tunnel_id, clientMode="ALL")
    assert denial(
        lambda: client.rotate_tunnel_access_token(
            tunnelId=tunnel_id, clientMode="ALL", destinationConfig=DEST
        )
    ) == not_allowed("RotateTunnelAccessToken", DEVICE_ARN)


def test_request_keys_of_the_operation_are_in_the_context(
    emulator: TunnelingEmulator, client: Client
) -> None:
    emulator.enforce(
        {
            "Statement": [
                {"Effect": "Allow", "Action": "iot:OpenTunnel", "Resource": "*"},
                {
                    "Effect": "Allow",
                    "Action": "iot:CloseTunnel",
                    "Resource": TUNNELS,
                    "Condition": {"Bool": {"iot:Delete": "true"}},
                },
                {
                    "Effect": "Allow",
                    "Action": "iot:RotateTunnelAccessToken",
                    "Resource": TUNNELS,
                    "Condition": {"StringEquals": {"iot:ClientMode": "SOURCE"}},
                },
            ]
        }
    )
    tunnel_id, _, _ = open_tunnel(client)

    client.rotate_tunnel_access_token(tunnelId=tunnel_id, clientMode="SOURCE")
    assert error_of(lambda: client.rotate_tunnel_access_token(tunnelId=tunnel_id, clientMode="ALL"))[0] == (
        "AccessDeniedException"
    )
    assert error_of(lambda: client.close_tunnel(tunnelId=tunnel_id))[0] == "AccessDeniedException"
    client.close_tunnel(tunnelId=tunnel_id, delete=True)


def test_an_explicit_deny_wins_over_an_allow(emulator: TunnelingEmulator, client: Client) -> None:
    emulator.enforce(
        {
            "Statement": [
                {"Effect": "Allow", "Action": ["iot:OpenTunnel", "iot:*Resource"], "Resource": "*"},
                {
                    "Sid": "KeepTheReservedTags",
                    "Effect": "Deny",
                    "Action": ["iot:TagResource", "iot:UntagResource"],
                    "Resource": TUNNELS,
                    "Condition": {"ForAnyValue:StringLike": {"aws:TagKeys": "iot-secure-tunnel:*"}},
                },
            ]
        },
        principal=PRINCIPAL,
    )
    arn = client.open_tunnel(destinationConfig=DEST, tags=OWNER_TAGS)["tunnelArn"]

    client.tag_resource(resourceArn=arn, tags=[{"key": "team", "value": "ops"}])
    client.untag_resource(resourceArn=arn, tagKeys=["team"])
    code, status, message = denial(
        lambda: client.untag_resource(resourceArn=arn, tagKeys=["team", OWNER_TAG])
    )
    assert (code, status) == ("AccessDeniedException", 400)
    assert message.endswith(
        f"iot:UntagResource on resource: {arn} with an explicit deny in an identity-based policy"
    )
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == OWNER_TAGS


def test_without_a_policy_or_after_reset_nothing_is_denied(
    emulator: TunnelingEmulator, client: Client
) -> None:
    emulator.enforce({"Statement": []})
    assert error_of(client.list_tunnels) == ("AccessDeniedException", 400)
    emulator.enforce(None)
    client.list_tunnels()
    emulator.enforce({"Statement": []})

    emulator.reset()

    client.list_tunnels()
    assert emulator.denied == []


def test_list_tunnels_is_authorized_on_any_resource(emulator: TunnelingEmulator, client: Client) -> None:
    emulator.enforce({"Statement": [{"Effect": "Allow", "Action": "iot:ListTunnels", "Resource": TUNNELS}]})
    assert error_of(client.list_tunnels) == ("AccessDeniedException", 400)

    emulator.enforce({"Statement": [{"Effect": "Allow", "Action": "iot:ListTunnels", "Resource": "*"}]})

    assert client.list_tunnels()["tunnelSummaries"] == []
    assert emulator.denied == [("ListTunnels", "*")]


CONTEXT = {
    "aws:resourcetag/owner": ["me"],
    "aws:tagkeys": ["a", "b"],
    "aws:sourcearn": [f"arn:aws:iot:{REGION}:{ACCOUNT}:tunnel/abc"],
    "aws:securetransport": ["true"],
}


@pytest.mark.parametrize(
    ("operator", "key", "expected", "holds"),
    [
        ("StringEquals", "aws:ResourceTag/owner", "me", True),
        ("StringEquals", "AWS:RESOURCETAG/OWNER", ["you", "me"], True),  # names: any case; values: or
        ("StringEquals", "aws:ResourceTag/owner", "Me", False),
        ("StringEqualsIgnoreCase", "aws:ResourceTag/owner", "Me", True),
        ("StringLike", "aws:ResourceTag/owner", "m?", True),
        ("StringNotEquals", "aws:ResourceTag/owner", ["you", "me"], False),
        ("StringNotLike", "aws:ResourceTag/owner", "y*", True),
        ("StringEquals", "aws:ResourceTag/absent", "me", False),  # an absent key: false
        ("StringNotEquals", "aws:ResourceTag/absent", "me", True),  # ... unless negated
        ("StringEqualsIfExists", "aws:ResourceTag/absent", "me", True),
        ("StringEqualsIfExists", "aws:ResourceTag/owner", "you", False),
        ("ForAllValues:StringEquals", "aws:TagKeys", ["a", "b", "c"], True),
        ("ForAllValues:StringEquals", "aws:TagKeys", ["a"], False),
        ("ForAllValues:StringEquals", "aws:absent", ["a"], True),  # absent: true
        ("ForAllValues:StringNotLike", "aws:TagKeys", "a", False),
        ("ForAnyValue:StringEquals", "aws:TagKeys", "b", True),
        ("ForAnyValue:StringEquals", "aws:absent", "a", False),  # absent: false
        ("ForAnyValue:StringNotLike", "aws:absent", "a", False),
        ("ForAnyValue:StringNotLike", "aws:TagKeys", "a", True),
        ("ArnLike", "aws:SourceArn", f"arn:aws:iot:*:{ACCOUNT}:tunnel/*", True),
        ("ArnEquals", "aws:SourceArn", "arn:aws:iot:*:*:thing/*", False),
        ("ArnLike", "aws:SourceArn", "arn:aws:iot:*", False),  # each of the six parts on its own
        ("ArnNotLike", "aws:absent", "arn:*", True),
        ("Bool", "aws:SecureTransport", True, True),
        ("Bool", "aws:SecureTransport", "false", False),
    ],
)
def test_condition_operators(operator: str, key: str, expected: Any, holds: bool) -> None:
    assert condition_holds(operator, key, expected, CONTEXT) is holds


def test_evaluation_order_and_elements() -> None:
    allow = {"Effect": "Allow", "Action": "iot:Describe*", "Resource": TUNNELS}
    deny = {"Effect": "Deny", "NotAction": "iot:List*", "NotResource": DEVICE_ARN}
    arn = TUNNELS.replace("*", "abc")

    assert evaluate({"Statement": allow}, "IOT:DescribeTunnel", arn, {}) is Decision.ALLOW
    assert evaluate({"Statement": [allow, deny]}, "iot:DescribeTunnel", arn, {}) is Decision.EXPLICIT_DENY
    assert (
        evaluate({"Statement": [allow, deny]}, "iot:DescribeTunnel", DEVICE_ARN, {}) is Decision.IMPLICIT_DENY
    )
    assert evaluate({"Statement": [allow]}, "iot:DescribeTunnel", arn.upper(), {}) is Decision.IMPLICIT_DENY
    with pytest.raises(ValueError, match="unsupported condition operator"):
        condition_holds("NumericLessThan", "aws:EpochTime", "1", CONTEXT)


def test_handler_policy_comes_from_a_template_with_intrinsics_resolved(
    emulator: TunnelingEmulator, client: Client
) -> None:
    tunnels = partition_arn("iot", "tunnel/*")
    opening = {
        "Sid": "Open",
        "Effect": "Allow",
        "Action": "iot:OpenTunnel",
        "Resource": [{"Fn::GetAtt": ["Device", "Arn"]}, tunnels],
        "Condition": {"StringEquals": {f"aws:RequestTag/{OWNER_TAG}": {"Ref": "AWS::StackId"}}},
    }
    reading = {
        "Sid": "Read",
        "Effect": "Allow",
        "Action": "secretsmanager:GetSecretValue",
        "Resource": {"Ref": "Secret"},
    }
    template = {
        "Resources": {
            "Device": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "demo-device"}},
            "Secret": {"Type": "AWS::SecretsManager::Secret"},
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Policies": [{"PolicyName": "inline", "PolicyDocument": {"Statement": [reading]}}]
                },
            },
            "Policy": {
                "Type": "AWS::IAM::Policy",
                "Properties": {"Roles": [{"Ref": "Role"}], "PolicyDocument": {"Statement": [opening]}},
            },
            "OtherPolicy": {
                "Type": "AWS::IAM::Policy",
                "Properties": {"Roles": [{"Ref": "OtherRole"}], "PolicyDocument": {"Statement": [reading]}},
            },
            "Function": {
                "Type": "AWS::Lambda::Function",
                "Properties": {"Role": {"Fn::GetAtt": ["Role", "Arn"]}},
            },
        }
    }

    policy = handler_policy(template, owner=OWNER, region=REGION, account=ACCOUNT)

    assert policy == {
        "Version": "2012-10-17",
        "Statement": [
            {**reading, "Resource": "*"},
            {
                **opening,
                "Resource": [DEVICE_ARN, TUNNELS],
                "Condition": {"StringEquals": {f"aws:RequestTag/{OWNER_TAG}": OWNER}},
            },
        ],
    }
    emulator.enforce(policy)
    client.open_tunnel(destinationConfig=DEST, tags=OWNER_TAGS)
    with pytest.raises(ValueError, match="name the handler function"):
        handler_policy({"Resources": {}}, owner=OWNER, region=REGION, account=ACCOUNT)


def test_deny_first_answers_as_a_role_that_has_not_propagated(
    emulator: TunnelingEmulator, client: Client
) -> None:
    emulator.deny_first("OpenTunnel", times=2)

    for _ in range(2):
        code, status, message = denial(lambda: open_tunnel(client))
        assert (code, status) == ("AccessDeniedException", 400)
        assert message.startswith("User: arn:aws:sts::123456789012:assumed-role/")
        assert message.endswith(
            "is not authorized to perform: iot:OpenTunnel because no identity-based policy allows the "
            "iot:OpenTunnel action"
        )
    open_tunnel(client)
    assert emulator.call_count("OpenTunnel") == 3 and emulator.denied == []
    with pytest.raises(ValueError, match="unknown operation"):
        emulator.deny_first("*")


# --- purge of closed tunnels -------------------------------------------------------------------


def test_a_closed_tunnel_is_deleted_after_the_retention_time(
    timed: TunnelingEmulator, clock: FakeClock
) -> None:
    client = make_client(timed.endpoint_url)
    closed, _, _ = open_tunnel(client)
    expired, _, _ = open_tunnel(client, timeoutConfig={"maxLifetimeTimeoutMinutes": 1})
    clock.now = T0 + 10
    client.close_tunnel(tunnelId=closed)

    clock.now = T0 + 10 + RETENTION_SECONDS - 0.1
    assert client.describe_tunnel(tunnelId=closed)["tunnel"]["status"] == "CLOSED"
    assert [s["tunnelId"] for s in client.list_tunnels()["tunnelSummaries"]] == [expired, closed]
    clock.now = T0 + 10 + RETENTION_SECONDS
    assert error_of(lambda: client.describe_tunnel(tunnelId=closed)) == ("ResourceNotFoundException", 400)
    assert [s["tunnelId"] for s in client.list_tunnels()["tunnelSummaries"]] == [expired]
    clock.now = T0 + 60 + RETENTION_SECONDS  # an expired tunnel counts from its deadline
    assert client.list_tunnels()["tunnelSummaries"] == []
    assert timed.tunnel(closed) is None and timed.tunnel(expired) is None
    assert RETENTION_SECONDS == 3 * 60 * 60


def test_retention_time_is_configurable_and_open_tunnels_stay(clock: FakeClock) -> None:
    with TunnelingEmulator(clock=clock, retention_seconds=60) as emulator:
        client = make_client(emulator.endpoint_url)
        kept, _, _ = open_tunnel(client)
        closed, _, _ = open_tunnel(client)
        client.close_tunnel(tunnelId=closed)

        clock.now = T0 + 60

        assert emulator.tunnel(closed) is None and emulator.open_tunnel_ids() == [kept]


def test_purge_deletes_a_closed_tunnel_at_once(emulator: TunnelingEmulator, client: Client) -> None:
    tunnel_id, _, _ = open_tunnel(client)
    with pytest.raises(ValueError, match="is OPEN"):
        emulator.purge(tunnel_id)
    client.close_tunnel(tunnelId=tunnel_id)

    emulator.purge(tunnel_id)

    assert error_of(lambda: client.describe_tunnel(tunnelId=tunnel_id)) == ("ResourceNotFoundException", 400)
    with pytest.raises(KeyError):
        emulator.purge(tunnel_id)


def test_a_purged_tunnel_under_a_tag_condition_is_access_denied(
    timed: TunnelingEmulator, clock: FakeClock
) -> None:
    client = make_client(timed.endpoint_url)
    timed.enforce(handler_like_policy(), principal=PRINCIPAL)
    opened = client.open_tunnel(destinationConfig=DEST, tags=OWNER_TAGS)
    tunnel_id, arn = opened["tunnelId"], opened["tunnelArn"]
    client.close_tunnel(tunnelId=tunnel_id)
    assert client.describe_tunnel(tunnelId=tunnel_id)["tunnel"]["status"] == "CLOSED"

    clock.now = T0 + RETENTION_SECONDS

    assert denial(lambda: client.describe_tunnel(tunnelId=tunnel_id)) == not_allowed("DescribeTunnel", arn)
    assert denial(lambda: client.close_tunnel(tunnelId=tunnel_id, delete=True)) == not_allowed(
        "CloseTunnel", arn
    )
    timed.enforce(None)
    assert error_of(lambda: client.describe_tunnel(tunnelId=tunnel_id)) == ("ResourceNotFoundException", 400)


# --- the notify topic --------------------------------------------------------------------------


def notified_token_is(emulator: TunnelingEmulator, thing: str, token: str | None) -> bool:
    """Whether ``thing`` was last sent ``token`` (a bool, so that a failure prints no token)."""
    return emulator.last_notified_token(thing) == token


def test_open_publishes_the_destination_token_to_the_thing(
    emulator: TunnelingEmulator, client: Client
) -> None:
    _, _, destination = open_tunnel(
        client, destinationConfig={"thingName": "dev-1", "services": ["SSH", "HTTP"]}
    )
    open_tunnel(client, destinationConfig={"services": ["SSH"]})  # no thing: nothing to publish

    (notification,) = emulator.notifications
    assert (
        notification["thingName"] == "dev-1" and notification["topic"] == "$aws/things/dev-1/tunnels/notify"
    )
    payload = dict(notification["payload"])
    sent = payload.pop("clientAccessToken") == destination
    assert sent, "the payload must carry the tunnel's destination token"
    assert payload == {"clientMode": "destination", "region": REGION, "services": ["SSH", "HTTP"]}
    assert notified_token_is(emulator, "dev-1", destination) and notified_token_is(emulator, "dev-2", None)


@pytest.mark.parametrize(
    ("mode", "with_config", "published"),
    [
        ("DESTINATION", True, True),
        ("ALL", True, True),
        ("DESTINATION", False, False),
        ("ALL", False, False),
        ("SOURCE", False, False),
    ],
)
def test_rotation_publishes_only_in_destination_modes_with_the_destination_config(
    emulator: TunnelingEmulator, client: Client, mode: ClientModeType, with_config: bool, published: bool
) -> None:
    tunnel_id, _, first = open_tunnel(client)
    config = {"destinationConfig": DEST} if with_config else {}

    answer = client.rotate_tunnel_access_token(tunnelId=tunnel_id, clientMode=mode, **config)

    assert len(emulator.notifications) == 1 + published
    expected = answer["destinationAccessToken"] if published else first
    assert notified_token_is(emulator, "demo-device", expected)


def test_rotation_in_source_mode_refuses_a_destination_config(
    emulator: TunnelingEmulator, client: Client
) -> None:
    tunnel_id, source, _ = open_tunnel(client)
    rotate = partial(client.rotate_tunnel_access_token, tunnelId=tunnel_id, clientMode="SOURCE")

    assert error_of(lambda: rotate(destinationConfig=DEST)) == ("ValidationException", 400)
    assert emulator.is_token_valid(source) and len(emulator.issued_tokens) == 2
    assert len(emulator.notifications) == 1


def test_reset_forgets_notifications(emulator: TunnelingEmulator, client: Client) -> None:
    open_tunnel(client)

    emulator.reset()

    assert emulator.notifications == [] and emulator.last_notified_token("demo-device") is None
