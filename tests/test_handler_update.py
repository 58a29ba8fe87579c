"""Update: rotate in place, or replace; rollbacks leave the secrets on the tunnel CloudFormation keeps."""

from __future__ import annotations

from typing import Any

from tests.conftest import tunnel_id_of
from tests.rig.harness import THING, Handler, Rig


def _create(rig: Rig, handler: Handler, **props: Any) -> tuple[str, dict[str, Any]]:
    properties = rig.properties(**props)
    return tunnel_id_of(rig.send(handler, "Create", properties)), properties


def _tokens(rig: Rig) -> tuple[str, str]:
    return rig.secret(rig.source_secret)["accessToken"], rig.secret(rig.destination_secret)["accessToken"]


def test_update_rotates_both_tokens_in_place(rig: Rig, handler: Handler) -> None:
    tunnel_id, old = _create(rig, handler)
    old_tokens = _tokens(rig)
    new = {**old, "RotationTrigger": "2026-11-22"}
    response = rig.send(handler, "Update", new, physical_id=tunnel_id, old_properties=old)

    assert tunnel_id_of(response) == tunnel_id
    assert response["Data"]["TunnelId"] == tunnel_id
    new_tokens = _tokens(rig)
    assert all(rig.tunnels.is_token_valid(t) for t in new_tokens)
    assert not any(rig.tunnels.is_token_valid(t) for t in old_tokens), "rotation revokes the old tokens"
    # Always with the destination configuration, so that AWS IoT notifies the device.
    destination = {"thingName": THING, "services": ["SSH"]}
    rotation = {"tunnelId": tunnel_id, "clientMode": "ALL", "destinationConfig": destination}
    assert ("RotateTunnelAccessToken", rotation) in rig.tunnels.calls
    assert rig.tunnels.call_count("OpenTunnel") == 1


def test_update_moves_the_destination_in_place(rig: Rig, handler: Handler) -> None:
    tunnel_id, old = _create(rig, handler)
    new = {**old, "DestinationConfig": {"ThingName": "other-device", "Services": ["SSH", "RDP"]}}
    response = rig.send(handler, "Update", new, physical_id=tunnel_id, old_properties=old)

    assert tunnel_id_of(response) == tunnel_id
    assert rig.tunnel(tunnel_id)["destinationConfig"] == {
        "thingName": "other-device",
        "services": ["SSH", "RDP"],
    }
    secret = rig.secret(rig.source_secret)
    assert (secret["thingName"], secret["services"]) == ("other-device", ["SSH", "RDP"])


def test_update_changes_tags_in_place_and_keeps_the_handlers_own(rig: Rig, handler: Handler) -> None:
    tunnel_id, old = _create(rig, handler, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    new = {**old, "Tags": [{"Key": "a", "Value": "changed"}, {"Key": "c", "Value": "3"}]}
    response = rig.send(handler, "Update", new, physical_id=tunnel_id, old_properties=old)

    assert tunnel_id_of(response) == tunnel_id
    tags = {t["key"]: t["value"] for t in rig.tunnel(tunnel_id)["tags"]}
    assert {k: v for k, v in tags.items() if not k.startswith("iot-secure-tunnel:")} == {
        "a": "changed",
        "c": "3",
    }
    assert {"iot-secure-tunnel:owner", "iot-secure-tunnel:request-id"} <= set(tags)


def test_description_change_replaces_the_tunnel_then_cleanup_deletes_the_old(
    rig: Rig, handler: Handler
) -> None:
    old_id, old = _create(rig, handler, Description="first")
    new = {**old, "Description": "second"}
    response = rig.send(handler, "Update", new, physical_id=old_id, old_properties=old)

    new_id = tunnel_id_of(response)
    assert new_id != old_id
    assert rig.tunnel(new_id)["description"] == "second"
    assert rig.secret(rig.source_secret)["tunnelId"] == new_id
    # CloudFormation's clean-up phase deletes the old physical id.
    cleanup = rig.send(handler, "Delete", old, physical_id=old_id)
    assert cleanup["Status"] == "SUCCESS"
    assert rig.tunnels.open_tunnel_ids() == [new_id]
    assert rig.secret(rig.source_secret)["tunnelId"] == new_id
    assert all(rig.tunnels.is_token_valid(t) for t in _tokens(rig))


def test_lifetime_change_replaces_the_tunnel(rig: Rig, handler: Handler) -> None:
    old_id, old = _create(rig, handler)
    new = {**old, "TimeoutConfig": {"MaxLifetimeTimeoutMinutes": "60"}}
    new_id = tunnel_id_of(rig.send(handler, "Update", new, physical_id=old_id, old_properties=old))

    assert new_id != old_id
    assert rig.tunnel(new_id)["timeoutConfig"] == {"maxLifetimeTimeoutMinutes": 60}


def test_update_of_an_expired_tunnel_opens_a_new_one(rig: Rig, handler: Handler) -> None:
    old_id, old = _create(rig, handler)
    rig.tunnels.expire(old_id)
    new_id = tunnel_id_of(rig.send(handler, "Update", old, physical_id=old_id, old_properties=old))

    assert new_id != old_id
    assert rig.tunnels.open_tunnel_ids() == [new_id]
    assert rig.secret(rig.destination_secret)["tunnelId"] == new_id
    assert all(rig.tunnels.is_token_valid(t) for t in _tokens(rig))


def test_update_of_a_deleted_tunnel_opens_a_new_one(rig: Rig, handler: Handler) -> None:
    old_id, old = _create(rig, handler)
    rig.send(handler, "Delete", old, physical_id=old_id)
    new_id = tunnel_id_of(rig.send(handler, "Update", old, physical_id=old_id, old_properties=old))

    assert new_id != old_id
    assert rig.tunnels.open_tunnel_ids() == [new_id]


def test_invalid_update_changes_nothing_and_the_rollback_update_works(rig: Rig, handler: Handler) -> None:
    tunnel_id, old = _create(rig, handler)
    tokens = _tokens(rig)
    bad = {**old, "DestinationConfig": {"ThingName": THING, "Services": ["A", "B", "C", "D"]}}
    failed = rig.send(handler, "Update", bad, physical_id=tunnel_id, old_properties=old)

    assert failed["Status"] == "FAILED"
    assert failed["PhysicalResourceId"] == tunnel_id
    assert "DestinationConfig.Services" in failed["Reason"]
    assert _tokens(rig) == tokens and all(rig.tunnels.is_token_valid(t) for t in tokens)
    # CloudFormation rolls back with the old and new properties swapped.
    rollback = rig.send(handler, "Update", old, physical_id=tunnel_id, old_properties=bad)
    assert tunnel_id_of(rollback) == tunnel_id
    assert all(rig.tunnels.is_token_valid(t) for t in _tokens(rig))


def test_rolled_back_replacement_gives_the_secrets_back_to_the_old_tunnel(rig: Rig, handler: Handler) -> None:
    old_id, old = _create(rig, handler, Description="first")
    old_tokens = _tokens(rig)
    new = {**old, "Description": "second"}
    new_id = tunnel_id_of(rig.send(handler, "Update", new, physical_id=old_id, old_properties=old))
    # The stack update fails elsewhere; CloudFormation keeps the old tunnel and deletes the new one.
    rollback_delete = rig.send(handler, "Delete", new, physical_id=new_id)

    assert rollback_delete["Status"] == "SUCCESS"
    assert rig.tunnels.open_tunnel_ids() == [old_id]
    assert rig.secret(rig.source_secret)["tunnelId"] == old_id
    assert rig.secret(rig.destination_secret)["tunnelId"] == old_id
    source, destination = _tokens(rig)
    assert source == old_tokens[0], "the source secret is moved back to the old tunnel's token"
    # The device was last sent the deleted tunnel's token: it is sent a new token of the old
    # tunnel (a DESTINATION rotation with the destination configuration), which the secret holds.
    assert destination != old_tokens[1], "the destination secret holds the newly sent token"
    assert rig.tunnels.is_token_valid(source) and rig.tunnels.is_token_valid(destination)
    rig.check_device_notified(old_id)


def test_rolled_back_replacement_without_a_destination_secret_still_renotifies_the_device(
    rig: Rig, handler: Handler
) -> None:
    old_id, old = _create(rig, handler, Description="first", DestinationAccessTokenSecretArn=None)
    new = {**old, "Description": "second"}
    new_id = tunnel_id_of(rig.send(handler, "Update", new, physical_id=old_id, old_properties=old))
    rig.send(handler, "Delete", new, physical_id=new_id)

    assert rig.secret(rig.source_secret)["tunnelId"] == old_id
    rig.check_device_notified(old_id)


def test_rolled_back_replacement_by_swapped_update_keeps_secrets_on_the_live_tunnel(
    rig: Rig, handler: Handler
) -> None:
    old_id, old = _create(rig, handler, Description="first")
    new = {**old, "Description": "second"}
    new_id = tunnel_id_of(rig.send(handler, "Update", new, physical_id=old_id, old_properties=old))
    # The other rollback path: a swapped Update sent to the new tunnel, then clean-up of the rest.
    back_id = tunnel_id_of(rig.send(handler, "Update", old, physical_id=new_id, old_properties=new))
    rig.send(handler, "Delete", new, physical_id=new_id)

    assert rig.tunnel(back_id)["description"] == "first"
    assert rig.secret(rig.source_secret)["tunnelId"] == back_id
    assert all(rig.tunnels.is_token_valid(t) for t in _tokens(rig))


def test_replacement_whose_secret_write_fails_closes_the_new_tunnel_and_keeps_the_old(
    rig: Rig, handler: Handler
) -> None:
    old_id, old = _create(rig, handler, Description="first")
    old_tokens = _tokens(rig)
    missing = rig.destination_secret.replace("tunnel/destination", "tunnel/missing")
    new = {**old, "Description": "second", "DestinationAccessTokenSecretArn": missing}
    response = rig.send(handler, "Update", new, physical_id=old_id, old_properties=old)

    assert response["Status"] == "FAILED"
    assert response["PhysicalResourceId"] == old_id
    assert rig.tunnels.open_tunnel_ids() == [old_id]
    assert _tokens(rig) == old_tokens, "the source secret was written, then undone"


def test_update_long_after_aws_deleted_the_expired_tunnel_opens_a_new_one(rig: Rig, handler: Handler) -> None:
    # AWS deletes a closed tunnel some hours after it closed; the tag-scoped policy then denies
    # DescribeTunnel (no tags left to match) instead of answering not found.
    old_id, old = _create(rig, handler)
    rig.tunnels.expire(old_id)
    rig.tunnels.purge(old_id)
    response = rig.send(handler, "Update", old, physical_id=old_id, old_properties=old)

    new_id = tunnel_id_of(response)
    assert new_id != old_id and rig.tunnels.open_tunnel_ids() == [new_id]
    assert ("DescribeTunnel", f"arn:aws:iot:us-east-1:123456789012:tunnel/{old_id}") in rig.tunnels.denied
    assert rig.secret(rig.source_secret)["tunnelId"] == new_id
    assert all(rig.tunnels.is_token_valid(t) for t in _tokens(rig))


def test_an_update_that_moved_the_thing_finds_the_purged_tunnel_under_the_old_thing(
    rig: Rig, handler: Handler
) -> None:
    old_id, old = _create(rig, handler)
    rig.tunnels.expire(old_id)
    rig.tunnels.purge(old_id)
    moved = {**old, "DestinationConfig": {"ThingName": "another-device", "Services": ["SSH"]}}
    response = rig.send(handler, "Update", moved, physical_id=old_id, old_properties=old)

    new_id = tunnel_id_of(response)
    assert rig.tunnel(new_id)["destinationConfig"]["thingName"] == "another-device"
    listed = {body.get("thingName") for op, body in rig.tunnels.calls if op == "ListTunnels"}
    assert {THING, "another-device"} <= listed
