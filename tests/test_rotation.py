"""Secrets Manager rotation of the token secrets: the four steps, staging labels, retries, failures.

RotateSecret goes over the wire to moto; what Secrets Manager then does (an empty AWSPENDING
version, one invocation of the function per step) is modelled by tests/rig/secrets_rotation.py,
and the handler's own clients talk to moto and the tunneling emulator as everywhere else.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from secure_tunnel_handler.rotation import RotationError
from tests.conftest import tunnel_id_of
from tests.rig.cloudformation import LambdaContext
from tests.rig.harness import SECRET_DOCUMENT_FIELDS, THING, Handler, Rig
from tests.rig.secrets_rotation import FUNCTION_ARN, PREVIOUS_ROTATION, STEPS, SecretsManagerRotation

CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"
DOCUMENT_KEYS = list(SECRET_DOCUMENT_FIELDS)


@pytest.fixture
def rotation(rig: Rig, handler: Handler, monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretsManagerRotation]:
    """RotateSecret invokes the handler; afterwards, no failure message may hold a token."""
    service = SecretsManagerRotation(handler)
    service.install(monkeypatch)
    yield service
    messages = [str(exc) for _, exc in service.failures]
    assert not [t for t in rig.tunnels.issued_tokens for m in messages if t in m], "a token in a failure"


def _deploy(rig: Rig, handler: Handler, **props: Any) -> tuple[str, dict[str, Any]]:
    """Create the resource, then attach the rotation function to both secrets without rotating
    (what a RotationSchedule with RotateImmediatelyOnUpdate=false does)."""
    properties = rig.properties(**props)
    tunnel_id = tunnel_id_of(rig.send(handler, "Create", properties))
    for arn in (rig.source_secret, rig.destination_secret):
        rig.secrets.rotate_secret(SecretId=arn, RotationLambdaARN=FUNCTION_ARN, RotateImmediately=False)
    return tunnel_id, properties


def _stages(rig: Rig, arn: str) -> dict[str, list[str]]:
    """VersionIdsToStages as AWS shows it: versions without a label are not listed."""
    versions = rig.secrets.describe_secret(SecretId=arn)["VersionIdsToStages"]
    return {v: sorted(stages) for v, stages in versions.items() if stages}


def _version(rig: Rig, arn: str, stage: str) -> str:
    return next(v for v, stages in _stages(rig, arn).items() if stage in stages)


def _snapshot(rig: Rig, arn: str) -> tuple[Any, ...]:
    """Everything a rotation step could change: labels, values, tokens, calls that rotate."""
    versions = rig.secret_versions(arn)
    labels = {v: stages for v, (stages, _) in versions.items()}
    values = {v: value for v, (_, value) in versions.items()}
    tunnels = {t: rig.tunnel(t) for t in rig.tunnels.open_tunnel_ids()}
    return labels, values, tunnels, rig.tunnels.call_count("RotateTunnelAccessToken")


def _step(rotation: SecretsManagerRotation, handler: Handler, arn: str, version: str, step: str) -> None:
    handler(rotation.step_event(arn, version, step), LambdaContext())


def _failure(rotation: SecretsManagerRotation) -> tuple[str, str]:
    assert rotation.failures, "the rotation did not fail"
    step, exc = rotation.failures[-1]
    assert isinstance(exc, RotationError), repr(exc)
    return step, str(exc)


def test_source_rotation_step_by_step_issues_a_new_source_token(
    rig: Rig, handler: Handler, rotation: SecretsManagerRotation
) -> None:
    tunnel_id, _ = _deploy(rig, handler)
    before = rig.secret(rig.source_secret)
    destination_token = rig.secret(rig.destination_secret)["accessToken"]
    old_version = _version(rig, rig.source_secret, CURRENT)
    rotation.run_steps = False
    version = rig.secrets.rotate_secret(SecretId=rig.source_secret)["VersionId"]
    labels = _stages(rig, rig.source_secret)
    assert (labels[old_version], labels[version]) == ([CURRENT], [PENDING])

    for step in STEPS:
        _step(rotation, handler, rig.source_secret, version, step)
        done = _snapshot(rig, rig.source_secret)
        # Secrets Manager retries a step whose answer it did not get: the retry changes nothing.
        _step(rotation, handler, rig.source_secret, version, step)
        assert _snapshot(rig, rig.source_secret) == done, f"a retried {step} changed something"
        if step == "createSecret":
            pending = rig.secret(rig.source_secret, PENDING)
            assert rig.tunnels.is_token_valid(pending["accessToken"])
            assert not rig.tunnels.is_token_valid(before["accessToken"]), "the old token is revoked"
            assert rig.secret(rig.source_secret) == before, "AWSCURRENT stays until finishSecret"

    assert _stages(rig, rig.source_secret) == {version: [CURRENT], old_version: [PREVIOUS]}
    after = rig.secret(rig.source_secret)
    assert list(after) == DOCUMENT_KEYS
    assert {**after, "accessToken": None} == {**before, "accessToken": None}
    assert rig.tunnels.is_token_valid(after["accessToken"])
    assert not rig.tunnels.is_token_valid(before["accessToken"])
    assert rig.tunnels.is_token_valid(destination_token), "source rotation leaves the destination token"
    assert rig.secret(rig.source_secret, PREVIOUS) == before
    rotations = [body for op, body in rig.tunnels.calls if op == "RotateTunnelAccessToken"]
    assert rotations == [{"tunnelId": tunnel_id, "clientMode": "SOURCE"}]
    # Any step of a finished rotation, retried late, changes nothing either.
    done = _snapshot(rig, rig.source_secret)
    for step in STEPS:
        _step(rotation, handler, rig.source_secret, version, step)
    assert _snapshot(rig, rig.source_secret) == done


def test_rotate_secret_of_the_destination_secret_rotates_only_the_destination_token(
    rig: Rig, handler: Handler, rotation: SecretsManagerRotation
) -> None:
    tunnel_id, _ = _deploy(rig, handler)
    source_token = rig.secret(rig.source_secret)["accessToken"]
    old = rig.secret(rig.destination_secret)
    rotation.invocations.clear()  # _deploy's configuration tests
    version = rig.secrets.rotate_secret(SecretId=rig.destination_secret)["VersionId"]

    assert rotation.failures == []
    assert [e["Step"] for e in rotation.invocations] == list(STEPS)
    new = rig.secret(rig.destination_secret)
    assert new["clientMode"] == "destination" and new["tunnelId"] == tunnel_id
    assert rig.tunnels.is_token_valid(new["accessToken"])
    assert not rig.tunnels.is_token_valid(old["accessToken"])
    assert rig.tunnels.is_token_valid(source_token), "destination rotation leaves the source token"
    # With the destination configuration: only then does AWS IoT notify the device.
    assert (
        "RotateTunnelAccessToken",
        {
            "tunnelId": tunnel_id,
            "clientMode": "DESTINATION",
            "destinationConfig": {"thingName": THING, "services": ["SSH"]},
        },
    ) in rig.tunnels.calls
    assert _stages(rig, rig.destination_secret)[version] == [CURRENT]
    # What `aws secretsmanager get-secret-value` shows (no stage given) is the new version.
    assert rig.secrets.get_secret_value(SecretId=rig.destination_secret)["VersionId"] == version
    # The finished rotation left no AWSPENDING behind: the next one starts at once.
    rig.secrets.rotate_secret(SecretId=rig.destination_secret)
    third = rig.secret(rig.destination_secret)["accessToken"]
    assert rotation.failures == [] and third != new["accessToken"]
    assert rig.tunnels.is_token_valid(third) and not rig.tunnels.is_token_valid(new["accessToken"])


@pytest.mark.parametrize("how", ["expired", "deleted"])
def test_rotation_of_a_closed_tunnel_fails_clearly_and_changes_nothing(
    rig: Rig, handler: Handler, rotation: SecretsManagerRotation, how: str
) -> None:
    tunnel_id, properties = _deploy(rig, handler)
    if how == "expired":
        rig.tunnels.expire(tunnel_id)
    else:
        rig.admin_tunnels().close_tunnel(tunnelId=tunnel_id, delete=True)
    before = _snapshot(rig, rig.source_secret)
    version = rig.secrets.rotate_secret(SecretId=rig.source_secret)["VersionId"]

    step, message = _failure(rotation)
    assert step == "createSecret"
    assert f"Tunnel {tunnel_id}" in message
    assert ("is closed" if how == "expired" else "no longer exists") in message
    assert "update the stack to open a new tunnel" in message and "RotationTrigger" in message
    assert rig.tunnels.call_count("RotateTunnelAccessToken") == 0
    labels, values, _, _ = _snapshot(rig, rig.source_secret)
    assert labels == before[0], "AWSCURRENT did not move"
    assert version not in labels, "AWSPENDING was removed, so the next rotation is not refused"
    assert (
        values[_version(rig, rig.source_secret, CURRENT)]
        == before[1][_version(rig, rig.source_secret, CURRENT)]
    )

    # What the message says works: the stack update opens a new tunnel, and the next
    # rotate-secret starts a new rotation (not "previous rotation isn't complete").
    new_id = tunnel_id_of(
        rig.send(
            handler,
            "Update",
            {**properties, "RotationTrigger": "2"},
            physical_id=tunnel_id,
            old_properties=properties,
        )
    )
    written = rig.secret(rig.source_secret)["accessToken"]
    again = rig.secrets.rotate_secret(SecretId=rig.source_secret)["VersionId"]
    assert len(rotation.failures) == 1, "no new failure"
    rotated = rig.secret(rig.source_secret)
    assert rotated["tunnelId"] == new_id and rotated["accessToken"] != written
    assert rig.tunnels.is_token_valid(rotated["accessToken"]) and not rig.tunnels.is_token_valid(written)
    assert _stages(rig, rig.source_secret)[again] == [CURRENT]


def test_a_stack_replacement_during_rotation_abandons_it_and_keeps_the_new_tunnels_token(
    rig: Rig, handler: Handler, rotation: SecretsManagerRotation
) -> None:
    old_id, properties = _deploy(rig, handler, Description="first")
    rotation.run_steps = False
    version = rig.secrets.rotate_secret(SecretId=rig.source_secret)["VersionId"]
    _step(rotation, handler, rig.source_secret, version, "createSecret")
    # Meanwhile the stack replaces the tunnel and writes the new tunnel's tokens.
    new = {**properties, "Description": "second"}
    new_id = tunnel_id_of(rig.send(handler, "Update", new, physical_id=old_id, old_properties=properties))
    rig.send(handler, "Delete", properties, physical_id=old_id)
    written = rig.secret(rig.source_secret)

    _step(rotation, handler, rig.source_secret, version, "setSecret")
    with pytest.raises(RotationError, match="abandoned") as caught:
        _step(rotation, handler, rig.source_secret, version, "testSecret")

    assert old_id in str(caught.value) and new_id in str(caught.value)
    assert rig.secret(rig.source_secret) == written, "the stack's value stays current"
    assert all(PENDING not in s for s in _stages(rig, rig.source_secret).values()), "AWSPENDING is dropped"
    assert rig.tunnels.is_token_valid(written["accessToken"])
    # ... so the next rotation starts afresh instead of retrying the dead one.
    rotation.run_steps = True
    rig.secrets.rotate_secret(SecretId=rig.source_secret)
    assert rotation.failures == []
    assert rig.secret(rig.source_secret)["tunnelId"] == new_id


def test_a_secret_without_a_token_yet_fails_with_what_to_do(
    rig: Rig, rotation: SecretsManagerRotation
) -> None:
    rig.secrets.rotate_secret(SecretId=rig.source_secret, RotationLambdaARN=FUNCTION_ARN)

    step, message = _failure(rotation)
    assert step == "createSecret"
    assert "holds no tunnel token yet" in message and "Deploy the stack" in message
    assert rig.tunnels.calls == []


@pytest.mark.parametrize("guard", ["IAM", "the handler's owner check"])
def test_a_tunnel_the_stack_does_not_own_is_not_rotated(
    rig: Rig, handler: Handler, rotation: SecretsManagerRotation, guard: str
) -> None:
    _deploy(rig, handler)
    if guard != "IAM":
        rig.tunnels.enforce(None)  # the second line of defence, should the policy be wider
    client = rig.admin_tunnels()
    foreign = client.open_tunnel(destinationConfig={"thingName": THING, "services": ["SSH"]})
    # Someone who may write the secret points it at another tunnel, hoping to get its token.
    document = {
        **rig.secret(rig.source_secret),
        "tunnelId": foreign["tunnelId"],
        "tunnelArn": foreign["tunnelArn"],
    }
    rig.secrets.put_secret_value(SecretId=rig.source_secret, SecretString=json.dumps(document))
    rig.secrets.rotate_secret(SecretId=rig.source_secret)

    step, message = _failure(rotation)
    assert step == "createSecret"
    if guard == "IAM":
        # The tag-scoped policy denies DescribeTunnel of another owner's tunnel.
        assert ("DescribeTunnel", foreign["tunnelArn"]) in rig.tunnels.denied
        assert "createSecret failed (AccessDeniedException)" in message
    else:
        assert "not opened by this function's stack" in message
    assert rig.tunnels.call_count("RotateTunnelAccessToken") == 0
    assert rig.tunnels.is_token_valid(foreign["sourceAccessToken"])


def test_an_aws_error_is_explained_and_the_rotation_retried_later(
    rig: Rig, handler: Handler, rotation: SecretsManagerRotation
) -> None:
    _deploy(rig, handler)
    old = rig.secret(rig.source_secret)
    # A lasting denial: past the handler's window for IAM propagation.
    rig.tunnels.inject("RotateTunnelAccessToken", "AccessDeniedException", 403, times=1000)
    rig.secrets.rotate_secret(SecretId=rig.source_secret)
    rig.tunnels.clear_faults()

    step, message = _failure(rotation)
    assert step == "createSecret"
    assert "createSecret failed (AccessDeniedException)" in message and rig.source_secret in message
    assert rig.secret(rig.source_secret) == old and rig.tunnels.is_token_valid(old["accessToken"])
    # Secrets Manager retries the unfinished rotation on the next rotate-secret.
    with pytest.raises(ClientError, match=PREVIOUS_ROTATION.split(".")[0]):
        rig.secrets.rotate_secret(SecretId=rig.source_secret)
    assert len(rotation.failures) == 1
    assert rig.tunnels.is_token_valid(rig.secret(rig.source_secret)["accessToken"])
    assert not rig.tunnels.is_token_valid(old["accessToken"])


def test_steps_for_versions_that_are_not_being_rotated_are_refused_or_ignored(
    rig: Rig, handler: Handler, rotation: SecretsManagerRotation
) -> None:
    _deploy(rig, handler)
    rig.secrets.rotate_secret(SecretId=rig.source_secret)
    current, previous = _version(rig, rig.source_secret, CURRENT), _version(rig, rig.source_secret, PREVIOUS)
    before = _snapshot(rig, rig.source_secret)

    with pytest.raises(RotationError, match="no version"):
        _step(rotation, handler, rig.source_secret, str(uuid.uuid4()), "createSecret")
    with pytest.raises(RotationError, match="not AWSPENDING"):
        _step(rotation, handler, rig.source_secret, previous, "createSecret")
    _step(rotation, handler, rig.source_secret, current, "createSecret")  # a finished rotation: no-op
    with pytest.raises(RotationError, match="Unknown rotation step"):
        _step(rotation, handler, rig.source_secret, current, "dropSecret")
    assert _snapshot(rig, rig.source_secret) == before


def test_a_secret_not_configured_for_rotation_is_refused(rig: Rig, handler: Handler) -> None:
    tunnel_id_of(rig.send(handler, "Create", rig.properties()))
    version = rig.secrets.describe_secret(SecretId=rig.source_secret)["VersionIdsToStages"]
    event = {"Step": "createSecret", "SecretId": rig.source_secret, "ClientRequestToken": next(iter(version))}

    with pytest.raises(RotationError, match="not configured for rotation"):
        handler(event, LambdaContext())
    assert rig.tunnels.call_count("RotateTunnelAccessToken") == 0


@pytest.mark.parametrize("tunnel_state", ["open", "expired", "deleted"])
@pytest.mark.parametrize("pending", ["empty", "copy"])
def test_secrets_managers_configuration_test_passes_and_changes_nothing(
    rig: Rig, handler: Handler, rotation: SecretsManagerRotation, pending: str, tunnel_state: str
) -> None:
    # RotateImmediately false (a RotationSchedule's RotateImmediatelyOnUpdate: false) runs only
    # testSecret, on an AWSPENDING version whose content is not documented: a stack update long
    # after the tunnel expired sets rotation up again and must not fail on it.
    tunnel_id, _ = _deploy(rig, handler)
    if tunnel_state == "expired":
        rig.tunnels.expire(tunnel_id)
    elif tunnel_state == "deleted":
        rig.tunnels.handle(
            "IoTSecuredTunneling.CloseTunnel", json.dumps({"tunnelId": tunnel_id, "delete": True}).encode()
        )
    rotation.configuration_test_pending = pending
    rotation.invocations.clear()
    before = _snapshot(rig, rig.source_secret)

    rig.secrets.rotate_secret(
        SecretId=rig.source_secret, RotationLambdaARN=FUNCTION_ARN, RotateImmediately=False
    )

    assert [e["Step"] for e in rotation.invocations] == ["testSecret"]
    assert rotation.failures == []
    assert _snapshot(rig, rig.source_secret) == before
    # And a real rotation afterwards is not refused as unfinished.
    if tunnel_state == "open":
        old_token = rig.secret(rig.source_secret)["accessToken"]
        rig.secrets.rotate_secret(SecretId=rig.source_secret)
        assert rotation.failures == []
        assert rig.secret(rig.source_secret)["accessToken"] != old_token
