"""``secure-tunnel list`` and ``connect --thing`` against the rig: tunnels opened by the real
handler (``Custom::IoTSecureTunnel`` Create events), found through ListTunnels + DescribeTunnel on
the IoT Secure Tunneling emulator, their source secret from the tunnel's binding tag."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from secure_tunnel_cli import errors, localproxy, token_document, tunnels
from secure_tunnel_handler.properties import canonical_secret_arn
from tests.cli_operator import (
    Operator,
    assert_connected_with_a_fresh_token,
    configure_source_rotation,
    deploy,
)
from tests.conftest import assert_no_token_leaked
from tests.rig.harness import ACCOUNT, REGION, SECRET_DOCUMENT_FIELDS, THING, Handler, Rig
from tests.rig.secrets_rotation import SecretsManagerRotation

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "operator-guide.md"
OTHER_THING = "other-device"


def _secrets(rig: Rig, name: str) -> tuple[str, str]:
    """A further pair of token secrets (the rig makes tunnel/source and tunnel/destination)."""
    pending = json.dumps({"status": "pending"})
    source, destination = (
        str(rig.secrets.create_secret(Name=f"{name}/{side}", SecretString=pending)["ARN"])
        for side in ("source", "destination")
    )
    return source, destination


def _deploy_more(
    rig: Rig, handler: Handler, name: str, thing: str = THING, services: list[str] | None = None, **props: Any
) -> tuple[str, str]:
    """Another Custom::IoTSecureTunnel resource with its own secrets; its tunnel id and source secret."""
    source, destination = _secrets(rig, name)
    properties = rig.properties(
        DestinationConfig={"ThingName": thing, "Services": services or ["SSH"]},
        SourceAccessTokenSecretArn=source,
        DestinationAccessTokenSecretArn=destination,
        **props,
    )
    response = rig.send(handler, "Create", properties, logical_id=f"Tunnel{uuid.uuid4().hex[:8]}")
    assert response["Status"] == "SUCCESS", response.get("Reason")
    return str(response["PhysicalResourceId"]), source


def _foreign(rig: Rig, thing: str = THING) -> str:
    """A tunnel to the thing that someone opened by hand: no owner tag, whatever else it has."""
    opened = rig.admin_tunnels().open_tunnel(
        destinationConfig={"thingName": thing, "services": ["SSH"]},
        tags=[{"key": "team", "value": "ops"}, {"key": tunnels.SOURCE_SECRET_TAG, "value": "arn:forged"}],
    )
    return str(opened["tunnelId"])


def test_the_handlers_document_has_the_fields_the_cli_reads(rig: Rig, handler: Handler) -> None:
    tunnel_id = deploy(rig, handler)
    document = rig.secret(rig.source_secret)
    state = rig.tunnel(tunnel_id)
    tags = {t["key"]: t["value"] for t in state["tags"]}

    assert set(token_document.FIELDS) <= set(document) and set(token_document.FIELDS) <= set(
        SECRET_DOCUMENT_FIELDS
    )
    assert document[token_document.CLIENT_MODE] == token_document.SOURCE_MODE
    assert document[token_document.TUNNEL_ID] == tunnel_id
    assert tags[tunnels.SOURCE_SECRET_TAG] == canonical_secret_arn(rig.source_secret) != rig.source_secret
    assert tunnels.OWNER_TAG in tags


# --- connect --thing -------------------------------------------------------------------------


def test_connect_by_thing_gives_localproxy_the_token_in_its_environment_only(
    rig: Rig, handler: Handler, operator: Operator
) -> None:
    deploy(rig, handler, DestinationConfig={"ThingName": THING, "Services": ["SSH", "HTTP"]})
    foreign = _foreign(rig)  # OPEN, to the same thing, not this project's: ignored
    _deploy_more(rig, handler, "elsewhere", thing=OTHER_THING)  # another thing's: not listed
    token = rig.secret(rig.source_secret)["accessToken"]
    before = len(rig.tunnels.calls)
    run = operator.connect("--thing", THING, "-s", "SSH=5555,HTTP=8080")

    assert run.code == 0, run.stderr
    assert run.localproxy is not None, "localproxy ran"
    assert run.localproxy["env"][localproxy.TOKEN_VARIABLE] == token
    argv = run.localproxy["argv"]
    assert argv == [str(operator.bin_dir / "localproxy"), "-r", REGION, "-s", "SSH=5555,HTTP=8080"]
    assert not any(token in arg for arg in argv), "the token is never on the command line"
    assert run.stdout == "" and run.stderr == ""
    # Found through ListTunnels of that thing, and the foreign tunnel was looked at and passed over.
    calls = rig.tunnels.calls[before:]
    assert [body for op, body in calls if op == "ListTunnels"] == [
        {"thingName": THING, "maxResults": tunnels.PAGE_SIZE}
    ]
    assert {"tunnelId": foreign} in [body for op, body in calls if op == "DescribeTunnel"]


def test_connect_by_thing_with_rotate_connects_with_a_fresh_token(
    rig: Rig, handler: Handler, operator: Operator, rotation: SecretsManagerRotation
) -> None:
    deploy(rig, handler)
    configure_source_rotation(rig)
    before = rig.secret(rig.source_secret)["accessToken"]
    # RotateSecret and GetSecretValue with the binding tag's partial ARN (no random suffix).
    run = operator.connect("--thing", THING, "--rotate")

    assert_connected_with_a_fresh_token(run, rig, rotation, before)


def test_connect_by_thing_with_several_tunnels_lists_them_to_choose_from(
    rig: Rig, handler: Handler, operator: Operator
) -> None:
    first = deploy(rig, handler)
    second, second_secret = _deploy_more(rig, handler, "second")
    run = operator.connect("--thing", THING)

    assert run.code == errors.EXIT_USAGE and run.localproxy is None
    assert f"thing {THING} has 2 OPEN tunnels opened by this project" in run.error
    assert f"{first} (source secret {canonical_secret_arn(rig.source_secret)})" in run.error
    assert f"{second} (source secret {canonical_secret_arn(second_secret)})" in run.error
    assert "choose one with --secret-id" in run.error
    # --secret-id picks one of them.
    chosen = operator.connect("--secret-id", second_secret)
    assert chosen.code == 0, chosen.stderr
    assert chosen.localproxy is not None
    assert chosen.localproxy["env"][localproxy.TOKEN_VARIABLE] == rig.secret(second_secret)["accessToken"]


@pytest.mark.parametrize("situation", ["none", "closed", "foreign", "other-thing"])
def test_connect_by_thing_without_an_open_tunnel_of_this_project(
    rig: Rig, handler: Handler, operator: Operator, situation: str
) -> None:
    if situation == "closed":
        rig.tunnels.expire(deploy(rig, handler))
    elif situation == "foreign":
        _foreign(rig)
    elif situation == "other-thing":
        _deploy_more(rig, handler, "elsewhere", thing=OTHER_THING)
    run = operator.connect("--thing", THING)

    assert run.code == errors.EXIT_TUNNEL_CLOSED and run.localproxy is None
    assert f"thing {THING} has no OPEN tunnel opened by this project in {REGION}: deploy" in run.error
    assert "denied" not in run.error


def test_connect_by_thing_with_a_hashed_binding_asks_for_the_secret(
    rig: Rig, handler: Handler, operator: Operator
) -> None:
    # A source secret whose canonical ARN is longer than a tag value: the tunnel holds its hash.
    name = "tunnel/" + "a" * 220
    tunnel_id, source = _deploy_more(rig, handler, name)
    tag = {t["key"]: t["value"] for t in rig.tunnel(tunnel_id)["tags"]}[tunnels.SOURCE_SECRET_TAG]
    assert tag.startswith(tunnels.HASHED_BINDING_PREFIX), tag
    run = operator.connect("--thing", THING)

    assert run.code == errors.EXIT_USAGE and run.localproxy is None
    assert f"the source secret of tunnel {tunnel_id} is unknown" in run.error
    assert "connect with --secret-id" in run.error
    listed = operator.run("list")
    assert listed.code == 0, listed.stderr
    (row,) = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert row[0] == tunnel_id and row[-1] == "unknown"
    assert operator.connect("--secret-id", source).code == 0


def test_connect_by_thing_refuses_a_secret_that_holds_another_tunnels_token(
    rig: Rig, handler: Handler, operator: Operator
) -> None:
    tunnel_id = deploy(rig, handler)
    document = {**rig.secret(rig.source_secret), "tunnelId": "another-tunnel"}
    rig.secrets.put_secret_value(SecretId=rig.source_secret, SecretString=json.dumps(document))
    run = operator.connect("--thing", THING)

    assert run.code == errors.EXIT_ERROR and run.localproxy is None
    assert f"holds the token of tunnel another-tunnel, not of tunnel {tunnel_id}" in run.error


# --- list ------------------------------------------------------------------------------------


def _expiry(rig: Rig, tunnel_id: str) -> str:
    state = rig.tunnel(tunnel_id)
    created = datetime.fromtimestamp(state["createdAt"], UTC)
    minutes = state["timeoutConfig"]["maxLifetimeTimeoutMinutes"]
    return f"{created + timedelta(minutes=minutes):%Y-%m-%dT%H:%M:%SZ}"


def test_list_shows_this_projects_open_and_closed_tunnels_and_no_token(
    rig: Rig, handler: Handler, operator: Operator
) -> None:
    first = deploy(rig, handler, DestinationConfig={"ThingName": THING, "Services": ["SSH", "HTTP"]})
    second, second_secret = _deploy_more(
        rig, handler, "short", thing=OTHER_THING, TimeoutConfig={"MaxLifetimeTimeoutMinutes": "90"}
    )
    closed, closed_secret = _deploy_more(rig, handler, "closed")
    rig.tunnels.expire(closed)
    foreign = _foreign(rig)
    run = operator.run("list")

    assert run.code == 0, run.stderr
    header, *rows = run.stdout.splitlines()
    assert header.split() == ["TUNNEL", "ID", "STATUS", "THING", "SERVICES", "EXPIRES", "SOURCE", "SECRET"]
    # Newest first (ListTunnels' order); the columns are aligned under the header.
    assert [row.split() for row in rows] == [
        [closed, "CLOSED", THING, "SSH", _expiry(rig, closed), canonical_secret_arn(closed_secret)],
        [second, "OPEN", OTHER_THING, "SSH", _expiry(rig, second), canonical_secret_arn(second_secret)],
        [first, "OPEN", THING, "SSH,HTTP", _expiry(rig, first), canonical_secret_arn(rig.source_secret)],
    ]
    assert all(row.index("OPEN" if "OPEN" in row else "CLOSED") == header.index("STATUS") for row in rows)
    assert foreign not in run.stdout and run.stderr == ""
    created = datetime.fromtimestamp(rig.tunnel(second)["createdAt"], UTC)
    assert _expiry(rig, second) == f"{created + timedelta(minutes=90):%Y-%m-%dT%H:%M:%SZ}"
    # The listing carries no token: the rig's leak scan looked at it (Operator.run), and it would
    # have seen one there.
    with pytest.raises(AssertionError, match="leaked"):
        assert_no_token_leaked(rig, run.stdout + rig.secret(rig.source_secret)["accessToken"])


def test_list_of_one_thing_and_as_json(rig: Rig, handler: Handler, operator: Operator) -> None:
    deploy(rig, handler)
    other, other_secret = _deploy_more(rig, handler, "elsewhere", thing=OTHER_THING, services=["RDP"])
    _foreign(rig, OTHER_THING)
    run = operator.run("list", "--thing", OTHER_THING, "--json")

    assert run.code == 0, run.stderr
    assert json.loads(run.stdout) == [
        {
            "tunnelId": other,
            "status": "OPEN",
            "thingName": OTHER_THING,
            "services": ["RDP"],
            "expiresAt": _expiry(rig, other),
            "sourceSecret": canonical_secret_arn(other_secret),
            "owner": {t["key"]: t["value"] for t in rig.tunnel(other)["tags"]}[tunnels.OWNER_TAG],
        }
    ]
    table = operator.run("list", "--thing", OTHER_THING)
    assert [line.split()[0] for line in table.stdout.splitlines()[1:]] == [other]


def test_list_without_tunnels(rig: Rig, operator: Operator) -> None:
    _foreign(rig)
    run = operator.run("list", "--thing", THING)

    assert run.code == 0 and run.stdout == f"no tunnels to thing {THING} opened by this project in {REGION}\n"
    assert operator.run("list", "--json").stdout.strip() == "[]"


def test_list_reads_every_page(rig: Rig, handler: Handler, operator: Operator) -> None:
    oldest = deploy(rig, handler)
    for _ in range(tunnels.PAGE_SIZE):
        _foreign(rig)  # newer: ListTunnels' first page holds only these
    before = len(rig.tunnels.calls)
    run = operator.run("list")

    assert run.code == 0, run.stderr
    assert [line.split()[0] for line in run.stdout.splitlines()[1:]] == [oldest]
    pages = [body for op, body in rig.tunnels.calls[before:] if op == "ListTunnels"]
    assert len(pages) == 2 and "nextToken" not in pages[0] and pages[1]["nextToken"]


# --- the operator's IAM policy, as the operator guide gives it -------------------------------


def _guide_policy() -> dict[str, Any]:
    """The tunneling statements of the operator guide's policy, for the rig's region and account."""
    blocks = re.findall(r"```json\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    (text,) = [b for b in blocks if "iot:ListTunnels" in b]
    policy = json.loads(text.replace("<region>", REGION).replace("<account>", ACCOUNT))
    statements = [s for s in policy["Statement"] if str(s["Action"]).startswith("iot:")]
    assert statements, "the guide's policy has iot: statements"
    return {"Version": policy["Version"], "Statement": statements}


def test_the_guides_operator_policy_is_enough_and_foreign_tunnels_stay_hidden(
    rig: Rig, handler: Handler, operator: Operator
) -> None:
    tunnel_id = deploy(rig, handler)
    foreign = _foreign(rig)
    # From now on the emulator authorizes the operator's calls against the guide's policy (the
    # handler's are not made any more; moto does not enforce the Secrets Manager statements).
    rig.tunnels.enforce(_guide_policy(), access_key="operator")
    env = {"AWS_ACCESS_KEY_ID": "operator"}
    listed = operator.run("list", env=env)
    run = operator.connect("--thing", THING, env=env)

    assert listed.code == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == [tunnel_id]
    assert "1 tunnel(s) not shown: iot:DescribeTunnel was denied" in listed.stderr
    assert run.code == 0, run.stderr
    assert run.localproxy is not None
    assert run.localproxy["env"][localproxy.TOKEN_VARIABLE] == rig.secret(rig.source_secret)["accessToken"]
    assert ("DescribeTunnel", f"arn:aws:iot:{REGION}:{ACCOUNT}:tunnel/{foreign}") in rig.tunnels.denied
    assert not [d for d in rig.tunnels.denied if tunnel_id in d[1] or d[0] == "ListTunnels"]


def test_without_describe_permission_connect_by_thing_says_what_is_missing(
    rig: Rig, handler: Handler, operator: Operator
) -> None:
    deploy(rig, handler)
    policy = _guide_policy()
    policy["Statement"] = [s for s in policy["Statement"] if s["Action"] == "iot:ListTunnels"]
    rig.tunnels.enforce(policy, access_key="operator")
    run = operator.connect("--thing", THING, env={"AWS_ACCESS_KEY_ID": "operator"})

    assert run.code == errors.EXIT_TUNNEL_CLOSED and run.localproxy is None
    assert f"iot:DescribeTunnel was denied on 1 OPEN tunnel(s) of thing {THING}" in run.error
    assert "your identity needs iot:DescribeTunnel" in run.error


def test_without_list_permission(rig: Rig, handler: Handler, operator: Operator) -> None:
    deploy(rig, handler)
    rig.tunnels.enforce({"Version": "2012-10-17", "Statement": []}, access_key="operator")
    run = operator.run("list", env={"AWS_ACCESS_KEY_ID": "operator"})

    assert run.code == errors.EXIT_ACCESS_DENIED
    assert 'access denied listing tunnels: your identity needs iot:ListTunnels (Resource "*")' in run.error
