"""The ``secure-tunnel`` CLI (its own distribution, cli/) against the rig, with a stand-in
``localproxy`` that records its run: ``connect --secret-id``, the options and the usage errors
(``list`` and ``connect --thing``: tests/test_cli_things.py).

The CLI runs as its own process (it replaces itself with localproxy), with the rig's endpoints in
its environment; its ``--rotate`` goes over the wire to moto, whose RotateSecret runs the handler
(tests/rig/secrets_rotation.py).
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.loaders import create_loader

from secure_tunnel_cli import commands, errors, localproxy
from tests.cli_operator import (
    Operator,
    assert_connected_with_a_fresh_token,
    configure_source_rotation,
    deploy,
)
from tests.rig.harness import REGION, Handler, Rig
from tests.rig.secrets_rotation import FUNCTION_ARN, SecretsManagerRotation


def test_connect_gives_localproxy_the_token_in_its_environment_only(
    rig: Rig, handler: Handler, operator: Operator
) -> None:
    deploy(rig, handler, DestinationConfig={"ThingName": "demo-device", "Services": ["SSH", "HTTP"]})
    token = rig.secret(rig.source_secret)["accessToken"]
    run = operator.connect(
        "--secret-id", rig.source_secret, "-s", "SSH=5555", "-s", "HTTP=8080", "--", "-v", "5"
    )

    assert run.code == 0, run.stderr
    assert run.localproxy is not None, "localproxy ran"
    assert run.localproxy["env"][localproxy.TOKEN_VARIABLE] == token
    argv = run.localproxy["argv"]
    assert argv == [str(operator.bin_dir / "localproxy"), "-r", REGION, "-s", "SSH=5555,HTTP=8080", "-v", "5"]
    assert not any(token in arg for arg in argv), "the token is never on the command line"
    assert run.stdout == "" and run.stderr == ""


def test_connect_by_secret_name_with_the_default_port(rig: Rig, handler: Handler, operator: Operator) -> None:
    deploy(rig, handler)
    run = operator.connect("--secret-id", "tunnel/source")

    assert run.code == 0, run.stderr
    assert run.localproxy is not None
    assert run.localproxy["argv"][1:] == ["-r", REGION, "-s", localproxy.DEFAULT_PORT]
    assert run.localproxy["env"][localproxy.TOKEN_VARIABLE] == rig.secret(rig.source_secret)["accessToken"]


def test_rotate_connects_with_a_fresh_token(
    rig: Rig, handler: Handler, operator: Operator, rotation: SecretsManagerRotation
) -> None:
    deploy(rig, handler)
    configure_source_rotation(rig)
    before = rig.secret(rig.source_secret)["accessToken"]
    destination = rig.secret(rig.destination_secret)["accessToken"]
    run = operator.connect("--secret-id", rig.source_secret, "--rotate")

    fresh = assert_connected_with_a_fresh_token(run, rig, rotation, before)
    assert rig.tunnels.is_token_valid(destination), "the device keeps its token"
    # Reconnect: every --rotate gives the next token.
    again = operator.connect("--secret-id", rig.source_secret, "--rotate")
    assert again.localproxy is not None
    assert again.localproxy["env"][localproxy.TOKEN_VARIABLE] not in (fresh, before)


def test_rotate_after_a_failed_rotation_waits_for_the_retried_one(
    rig: Rig, handler: Handler, operator: Operator, rotation: SecretsManagerRotation
) -> None:
    deploy(rig, handler)
    # A lasting denial (past the handler's patience with IAM propagation), then none.
    rig.tunnels.inject("RotateTunnelAccessToken", "AccessDeniedException", 403, times=1000)
    rig.secrets.rotate_secret(SecretId=rig.source_secret, RotationLambdaARN=FUNCTION_ARN)
    rig.tunnels.clear_faults()
    assert rotation.failures, "the first rotation failed half-way"
    before = rig.secret(rig.source_secret)["accessToken"]
    # Secrets Manager answers "previous rotation isn't complete" and retries that rotation.
    run = operator.connect("--secret-id", rig.source_secret, "--rotate")

    assert run.code == 0, run.stderr
    assert run.localproxy is not None
    fresh = run.localproxy["env"][localproxy.TOKEN_VARIABLE]
    assert fresh != before and rig.tunnels.is_token_valid(fresh)


def test_print_env_prints_the_export_and_the_command_and_needs_no_localproxy(
    rig: Rig, handler: Handler, operator: Operator
) -> None:
    deploy(rig, handler)
    token = rig.secret(rig.source_secret)["accessToken"]
    run = operator.connect(
        "--secret-id", rig.source_secret, "-s", "5555", "--print-env", localproxy_on_path=False
    )

    assert run.code == 0, run.stderr
    assert run.localproxy is None, "nothing was run"
    export, command = run.stdout.splitlines()
    assert shlex.split(export) == ["export", f"{localproxy.TOKEN_VARIABLE}={token}"]
    assert shlex.split(command) == ["localproxy", "-r", REGION, "-s", "5555"]
    assert token not in command and run.stderr == ""


def test_missing_localproxy_fails_before_anything_is_rotated(
    rig: Rig, handler: Handler, operator: Operator, rotation: SecretsManagerRotation
) -> None:
    deploy(rig, handler)
    configure_source_rotation(rig)
    run = operator.connect("--secret-id", rig.source_secret, "--rotate", localproxy_on_path=False)

    assert run.code == errors.EXIT_NO_LOCALPROXY
    assert "'localproxy' is not on PATH" in run.error and "--localproxy PATH" in run.error
    # Only the configuration test of setting rotation up ran: nothing rotated.
    assert [e["Step"] for e in rotation.invocations] == ["testSecret"]
    assert rig.tunnels.call_count("RotateTunnelAccessToken") == 0
    missing = operator.connect("--secret-id", rig.source_secret, "--localproxy", "/nonexistent/localproxy")
    assert missing.code == errors.EXIT_NO_LOCALPROXY and "is not executable" in missing.error


def _close(rig: Rig, tunnel_id: str, how: str) -> None:
    if how == "expired":
        # The document says the tunnel's lifetime is over: no API call is needed to know.
        document = {**rig.secret(rig.source_secret), "expiresAt": "2020-01-01T00:00:00Z"}
        rig.secrets.put_secret_value(SecretId=rig.source_secret, SecretString=json.dumps(document))
    elif how == "closed":
        rig.tunnels.expire(tunnel_id)
    else:
        client = rig.admin_tunnels()
        client.close_tunnel(tunnelId=tunnel_id, delete=True)


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("expired", "expired at 2020-01-01T00:00:00Z"),
        ("closed", "is CLOSED"),
        ("deleted", "no longer exists"),
    ],
)
def test_a_closed_tunnel_fails_with_what_to_do(
    rig: Rig, handler: Handler, operator: Operator, how: str, says: str
) -> None:
    tunnel_id = deploy(rig, handler)
    _close(rig, tunnel_id, how)
    run = operator.connect("--secret-id", rig.source_secret, "--rotate")

    assert run.code == errors.EXIT_TUNNEL_CLOSED
    assert f"tunnel {tunnel_id} {says}" in run.error and "update the stack to open a new tunnel" in run.error
    assert run.localproxy is None and rig.tunnels.call_count("RotateTunnelAccessToken") == 0


def test_a_secret_without_a_token_yet(rig: Rig, operator: Operator) -> None:
    run = operator.connect("--secret-id", rig.source_secret)

    assert run.code == errors.EXIT_NO_TOKEN
    assert "holds no tunnel token yet" in run.error and "deploy the stack" in run.error


def test_the_destination_secret_is_refused(rig: Rig, handler: Handler, operator: Operator) -> None:
    deploy(rig, handler)
    run = operator.connect("--secret-id", rig.destination_secret)

    assert run.code == errors.EXIT_USAGE and "holds the destination token" in run.error


@pytest.mark.parametrize(
    ("mapping", "says"),
    [
        ("SSH=", "bad -s value 'SSH='"),
        ("RDP=3389", "names service 'RDP'; the tunnel has SSH"),
        ("a b", "bad -s"),
    ],
)
def test_a_bad_port_mapping_is_refused(
    rig: Rig, handler: Handler, operator: Operator, mapping: str, says: str
) -> None:
    deploy(rig, handler)
    run = operator.connect("--secret-id", rig.source_secret, "-s", mapping)

    assert run.code == errors.EXIT_USAGE and says in run.error and run.localproxy is None


def test_a_multi_service_tunnel_needs_a_mapping(rig: Rig, handler: Handler, operator: Operator) -> None:
    deploy(rig, handler, DestinationConfig={"ThingName": "demo-device", "Services": ["SSH", "HTTP"]})
    run = operator.connect("--secret-id", rig.source_secret)

    assert run.code == errors.EXIT_USAGE and "-s SSH=5555,HTTP=5556" in run.error


def test_an_unknown_secret(operator: Operator) -> None:
    run = operator.connect("--secret-id", "tunnel/nope")

    assert run.code == errors.EXIT_ERROR and "no such secret" in run.error


def test_a_rotation_that_does_not_finish_times_out_and_says_where_to_look(
    rig: Rig, handler: Handler, operator: Operator, rotation: SecretsManagerRotation
) -> None:
    deploy(rig, handler)
    configure_source_rotation(rig)
    rig.tunnels.inject("RotateTunnelAccessToken", "AccessDeniedException", 403, times=1000)
    run = operator.connect("--secret-id", rig.source_secret, "--rotate", "--rotate-timeout", "1")

    assert run.code == errors.EXIT_ROTATION_TIMEOUT
    assert "did not finish within 1 s" in run.error and "/aws/lambda/secure-tunnel-handler" in run.error
    assert run.localproxy is None
    assert rotation.failures and rotation.failures[0][0] == "createSecret"


@pytest.fixture
def denied_identity(rig: Rig) -> Iterator[dict[str, str]]:
    """Credentials of an IAM user with no permissions, with moto enforcing IAM meanwhile."""
    iam = boto3.client("iam", endpoint_url=rig.moto_url, region_name=REGION)
    iam.create_user(UserName="operator")
    key = iam.create_access_key(UserName="operator")["AccessKey"]
    _moto_auth(rig, "0")
    try:
        yield {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    finally:
        _moto_auth(rig, "inf")


def _moto_auth(rig: Rig, after_requests: str) -> None:
    """moto checks IAM on every request after ``after_requests`` requests ("inf": never)."""
    request = urllib.request.Request(  # noqa: S310 - the loopback moto server
        f"{rig.moto_url}/moto-api/reset-auth",
        data=after_requests.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},  # a form body would be parsed away
    )
    urllib.request.urlopen(request).close()  # noqa: S310 - the loopback moto server


def test_access_denied(
    rig: Rig, handler: Handler, operator: Operator, denied_identity: dict[str, str]
) -> None:
    run = operator.connect("--secret-id", rig.source_secret, env={**denied_identity, "AWS_SESSION_TOKEN": ""})

    assert run.code == errors.EXIT_ACCESS_DENIED
    assert "access denied reading secret" in run.error and "secretsmanager:GetSecretValue" in run.error


# --- options and usage errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "region",
    ["us-east-1", "eu-west-3", "ap-southeast-5", "il-central-1", "us-gov-west-1", "cn-north-1",
     "cn-northwest-1", "us-iso-east-1", "us-isob-east-1", "eu-isoe-west-1", "us-isof-south-1",
     "eusc-de-east-1"],
)  # fmt: skip
def test_region_names_of_every_partition_are_accepted(region: str) -> None:
    assert commands.region_name(region) == region


def test_every_region_botocore_knows_is_accepted() -> None:
    partitions = create_loader().load_data("partitions")["partitions"]
    regions = [r for p in partitions for r in p["regions"] if not r.endswith("-global")]
    assert len(regions) > 30
    assert [r for r in regions if not commands.REGION_RE.fullmatch(r)] == []


@pytest.mark.parametrize("region", ["us-east", "US-EAST-1", "useast1", "us-east-1a", "us_east_1", "-1", ""])
def test_a_bad_region_is_a_usage_error_naming_region(operator: Operator, region: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        commands.region_name(region)
    for args in (["connect", "--secret-id", "tunnel/source"], ["list"]):
        run = operator.run(*args, "--region", region)
        assert run.code == errors.EXIT_USAGE and "argument --region:" in run.error
        assert f"{region!r} is not an AWS region name" in run.error
    assert operator.rig.tunnels.call_count() == 0


@pytest.mark.parametrize("region", ["us-gov-west-1", "cn-north-1", "eu-isoe-west-1"])
def test_a_region_of_another_partition_is_used(operator: Operator, region: str) -> None:
    run = operator.run("list", "--region", region)

    assert run.code == 0, run.stderr
    assert run.stdout == f"no tunnels opened by this project in {region}\n"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["connect"], "one of the arguments --secret-id --thing is required"),
        (["connect", "--secret-id", "s", "--thing", "t"], "argument --thing: not allowed with argument"),
        (["connect", "--thing", "bad name"], "argument --thing: 'bad name' is not a thing name"),
        (["list", "--thing", "x" * 129], "is not a thing name"),
        (["nope"], "invalid choice: 'nope'"),
    ],
)
def test_usage_errors_are_one_line(operator: Operator, args: list[str], says: str) -> None:
    run = operator.run(*args)

    assert run.code == errors.EXIT_USAGE and says in run.error and "--help" in run.error


def _cli_version() -> str:
    with (Path(__file__).resolve().parents[1] / "cli" / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def test_version_is_the_distributions(operator: Operator) -> None:
    run = operator.run("--version")
    script = Path(sys.executable).parent / "secure-tunnel"  # the console script pip installed
    by_script = subprocess.run([script, "--version"], capture_output=True, text=True, check=False)

    assert run.code == 0 and run.stdout == f"secure-tunnel {_cli_version()}\n"
    assert by_script.returncode == 0 and by_script.stdout == run.stdout


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "endpoint_variable"),
    [
        (["connect", "--secret-id", "tunnel/source"], "AWS_ENDPOINT_URL_SECRETS_MANAGER"),
        (["connect", "--thing", "demo-device"], "AWS_ENDPOINT_URL_IOTSECURETUNNELING"),
        (["list"], "AWS_ENDPOINT_URL_IOTSECURETUNNELING"),
    ],
)
def test_an_unreachable_endpoint_suggests_checking_the_region(
    operator: Operator, closed_port: int, args: list[str], endpoint_variable: str
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    run = operator.run(*args, env={endpoint_variable: url, "AWS_MAX_ATTEMPTS": "1"})

    assert run.code == errors.EXIT_ERROR
    assert f"could not connect to {url}" in run.error and "check the region (--region)" in run.error
