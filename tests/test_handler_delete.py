"""Delete: close with delete=True, promptly; gone tunnels and non-tunnel ids are success."""

from __future__ import annotations

import time

from secure_tunnel_handler.lifecycle import NOT_OPENED_PREFIX, TUNNEL_ID_RE
from tests.conftest import tunnel_id_of
from tests.rig.cloudformation import STACK_NAME
from tests.rig.harness import Handler, Rig


def test_delete_closes_the_tunnel_and_deletes_its_data(rig: Rig, handler: Handler) -> None:
    tunnel_id = tunnel_id_of(rig.send(handler, "Create", rig.properties()))
    started = time.monotonic()
    response = rig.send(handler, "Delete", rig.properties(), physical_id=tunnel_id)
    elapsed = time.monotonic() - started

    assert response["Status"] == "SUCCESS"
    assert response["PhysicalResourceId"] == tunnel_id
    assert rig.tunnels.tunnel(tunnel_id) is None, "delete=True removes the tunnel at once"
    assert ("CloseTunnel", {"tunnelId": tunnel_id, "delete": True}) in rig.tunnels.calls
    assert elapsed < 5, "no crhelper sleep_on_delete"


def test_delete_of_a_tunnel_that_is_already_gone_succeeds(rig: Rig, handler: Handler) -> None:
    tunnel_id = tunnel_id_of(rig.send(handler, "Create", rig.properties()))
    rig.send(handler, "Delete", rig.properties(), physical_id=tunnel_id)
    again = rig.send(handler, "Delete", rig.properties(), physical_id=tunnel_id)

    assert again["Status"] == "SUCCESS"


def test_delete_of_a_never_seen_tunnel_id_succeeds(rig: Rig, handler: Handler) -> None:
    response = rig.send(
        handler, "Delete", rig.properties(), physical_id="b2de92a3-b8ff-46c0-b0f2-afa28b00cecd"
    )

    assert response["Status"] == "SUCCESS"


def test_delete_of_a_crhelper_generated_id_makes_no_call(rig: Rig, handler: Handler) -> None:
    """The id earlier versions reported for a failed Create (crhelper's): stacks deployed then
    still send it."""
    bogus = f"{STACK_NAME}_Tunnel_AB12CD34"
    response = rig.send(handler, "Delete", rig.properties(), physical_id=bogus)

    assert response["Status"] == "SUCCESS"
    assert response["PhysicalResourceId"] == bogus
    assert rig.tunnels.call_count() == 0


def test_a_failed_create_reports_a_not_opened_id_whose_delete_makes_no_call(
    rig: Rig, handler: Handler
) -> None:
    failed = rig.send(handler, "Create", {**rig.properties(), "Description": ""})
    physical_id = failed["PhysicalResourceId"]
    assert failed["Status"] == "FAILED"
    assert physical_id.startswith(f"{NOT_OPENED_PREFIX}{failed['LogicalResourceId']}/")
    assert physical_id.endswith(f"/{failed['RequestId']}")
    assert not TUNNEL_ID_RE.fullmatch(physical_id), "no tunnel can have this id"
    tunnel_calls, versions = rig.tunnels.call_count(), rig.secret_versions(rig.source_secret)

    response = rig.send(handler, "Delete", rig.properties(), physical_id=physical_id)

    assert (response["Status"], response["PhysicalResourceId"]) == ("SUCCESS", physical_id)
    assert rig.tunnels.call_count() == tunnel_calls
    assert rig.secret_versions(rig.source_secret) == versions


def test_delete_of_an_id_outside_the_tunnel_id_pattern_makes_no_call(rig: Rig, handler: Handler) -> None:
    response = rig.send(handler, "Delete", {}, physical_id="not/a tunnel")

    assert response["Status"] == "SUCCESS"
    assert rig.tunnels.call_count() == 0


def test_delete_with_a_closed_tunnel_leaves_secrets_alone(rig: Rig, handler: Handler) -> None:
    tunnel_id = tunnel_id_of(rig.send(handler, "Create", rig.properties()))
    before = rig.secret(rig.source_secret)
    rig.send(handler, "Delete", rig.properties(), physical_id=tunnel_id)

    assert rig.secret(rig.source_secret) == before


def test_delete_failure_is_reported_with_the_step(rig: Rig, handler: Handler) -> None:
    tunnel_id = tunnel_id_of(rig.send(handler, "Create", rig.properties()))
    # A lasting denial of a tunnel that is still listed: not a purged one, so Delete fails.
    rig.tunnels.inject("CloseTunnel", "AccessDeniedException", status=403, times=1000)
    response = rig.send(handler, "Delete", rig.properties(), physical_id=tunnel_id)

    assert response["Status"] == "FAILED"
    assert response["Reason"].startswith("Closing the tunnel failed (AccessDeniedException)")
    assert rig.tunnels.open_tunnel_ids() == [tunnel_id]


def test_delete_long_after_aws_deleted_the_expired_tunnel_succeeds(rig: Rig, handler: Handler) -> None:
    # Under the tag-scoped policy CloseTunnel of a purged tunnel is denied, not "not found":
    # its absence from ListTunnels tells that it is gone.
    tunnel_id = tunnel_id_of(rig.send(handler, "Create", rig.properties()))
    rig.tunnels.expire(tunnel_id)
    rig.tunnels.purge(tunnel_id)
    response = rig.send(handler, "Delete", rig.properties(), physical_id=tunnel_id)

    assert response["Status"] == "SUCCESS", response["Reason"]
    assert ("CloseTunnel", f"arn:aws:iot:us-east-1:123456789012:tunnel/{tunnel_id}") in rig.tunnels.denied
