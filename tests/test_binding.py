"""A tunnel's tokens go only to the secrets it was opened for (issue "Security").

At Create the handler tags the tunnel with the canonical ARN of each of its secrets; the handler's
role may not change ``iot-secure-tunnel:`` tags. Whoever can invoke the handler (an Update naming
an existing tunnel and other secrets) or write a secret (a document naming someone else's tunnel,
with the handler as rotation function) must not receive that tunnel's tokens.
"""

from __future__ import annotations

import json

import pytest

from secure_tunnel_handler.contract import SECRET_TAG_KEYS
from secure_tunnel_handler.properties import binding_of
from tests.conftest import tunnel_id_of
from tests.rig.harness import Handler, Rig
from tests.rig.secrets_rotation import FUNCTION_ARN, SecretsManagerRotation


def _tags(rig: Rig, tunnel_id: str) -> dict[str, str]:
    return {t["key"]: t["value"] for t in rig.tunnel(tunnel_id)["tags"]}


def _tokens_of(rig: Rig, tunnel_id: str) -> tuple[str, str]:
    state = rig.tunnel(tunnel_id)
    return state["sourceAccessToken"], state["destinationAccessToken"]


def _attacker_secret(rig: Rig, name: str) -> str:
    return str(rig.secrets.create_secret(Name=name, SecretString="{}")["ARN"])


def test_create_binds_the_tunnel_to_its_secrets_by_canonical_arn(rig: Rig, handler: Handler) -> None:
    tunnel_id = tunnel_id_of(rig.send(handler, "Create", rig.properties()))

    tags = _tags(rig, tunnel_id)
    assert tags[SECRET_TAG_KEYS["source"]] == rig.source_secret[: -len("-AbCdEf")]
    assert tags[SECRET_TAG_KEYS["destination"]] == rig.destination_secret[: -len("-AbCdEf")]


def test_a_binding_too_long_for_a_tag_value_is_a_digest() -> None:
    name = "n" * 300
    arn = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf"

    bound = binding_of(arn)
    assert bound.startswith("sha256:") and len(bound) == len("sha256:") + 64
    assert bound == binding_of(arn.removesuffix("-AbCdEf")), "full and partial ARN bind alike"


def test_a_forged_update_naming_other_secrets_gets_none_of_the_tunnels_tokens(
    rig: Rig, handler: Handler
) -> None:
    properties = rig.properties()
    tunnel_id = tunnel_id_of(rig.send(handler, "Create", properties))
    before = _tokens_of(rig, tunnel_id)
    stolen = {
        **properties,
        "SourceAccessTokenSecretArn": _attacker_secret(rig, "attacker/source"),
        "DestinationAccessTokenSecretArn": _attacker_secret(rig, "attacker/destination"),
    }
    response = rig.send(handler, "Update", stolen, physical_id=tunnel_id, old_properties=properties)

    # Other secrets get a tunnel of their own (as a Create would): never this one's tokens.
    other = tunnel_id_of(response)
    assert other != tunnel_id
    assert not [
        b for op, b in rig.tunnels.calls if op == "RotateTunnelAccessToken" and b["tunnelId"] == tunnel_id
    ]
    assert _tokens_of(rig, tunnel_id) == before, "the tunnel's tokens were not rotated"
    for arn in (stolen["SourceAccessTokenSecretArn"], stolen["DestinationAccessTokenSecretArn"]):
        assert rig.secret(arn)["tunnelId"] == other
    # The tunnel's own secrets still hold its current, valid tokens.
    assert rig.secret(rig.source_secret)["tunnelId"] == tunnel_id
    assert rig.tunnels.is_token_valid(rig.secret(rig.source_secret)["accessToken"])
    assert rig.tunnels.is_token_valid(rig.secret(rig.destination_secret)["accessToken"])


@pytest.fixture
def rotation(rig: Rig, handler: Handler, monkeypatch: pytest.MonkeyPatch) -> SecretsManagerRotation:
    service = SecretsManagerRotation(handler)
    service.install(monkeypatch)
    return service


def test_a_forged_rotation_of_a_secret_naming_the_tunnel_is_refused(
    rig: Rig, handler: Handler, rotation: SecretsManagerRotation
) -> None:
    tunnel_id = tunnel_id_of(rig.send(handler, "Create", rig.properties()))
    before = _tokens_of(rig, tunnel_id)
    # A secret its writer controls, holding a document that names the tunnel (with any token),
    # and the handler as its rotation function.
    document = {**rig.secret(rig.source_secret), "accessToken": "not-a-token"}
    forged = str(rig.secrets.create_secret(Name="attacker/forged", SecretString=json.dumps(document))["ARN"])
    rig.secrets.rotate_secret(SecretId=forged, RotationLambdaARN=FUNCTION_ARN)

    assert rotation.failures, "the rotation must fail"
    step, error = rotation.failures[-1]
    assert step == "createSecret"
    assert f"Secret {forged} is not the source secret tunnel {tunnel_id} was opened for" in str(error)
    assert rig.tunnels.call_count("RotateTunnelAccessToken") == 0
    assert _tokens_of(rig, tunnel_id) == before
    assert rig.secret(forged)["accessToken"] == "not-a-token"
    labels = rig.secrets.describe_secret(SecretId=forged)["VersionIdsToStages"]
    assert not [v for v, stages in labels.items() if "AWSPENDING" in stages], "the next rotation can start"


def _unbind(rig: Rig, tunnel_id: str) -> None:
    """What a tunnel opened before tunnels were bound looks like (tags removed by an administrator)."""
    arn = rig.tunnel(tunnel_id)["arn"]
    rig.admin_tunnels().untag_resource(resourceArn=arn, tagKeys=list(SECRET_TAG_KEYS.values()))


def test_an_unbound_tunnel_is_replaced_by_a_bound_one_on_update(rig: Rig, handler: Handler) -> None:
    properties = rig.properties()
    tunnel_id = tunnel_id_of(rig.send(handler, "Create", properties))
    _unbind(rig, tunnel_id)
    again = {**properties, "RotationTrigger": "1"}
    new_id = tunnel_id_of(
        rig.send(handler, "Update", again, physical_id=tunnel_id, old_properties=properties)
    )

    assert new_id != tunnel_id
    assert _tags(rig, new_id)[SECRET_TAG_KEYS["source"]] == binding_of(rig.source_secret)


def test_rotating_into_an_unbound_tunnel_says_to_update_the_stack(
    rig: Rig, handler: Handler, rotation: SecretsManagerRotation
) -> None:
    tunnel_id = tunnel_id_of(rig.send(handler, "Create", rig.properties()))
    _unbind(rig, tunnel_id)
    rig.secrets.rotate_secret(SecretId=rig.source_secret, RotationLambdaARN=FUNCTION_ARN)

    step, error = rotation.failures[-1]
    assert step == "createSecret" and "opened before tunnels were bound" in str(error)
    assert rig.tunnels.call_count("RotateTunnelAccessToken") == 0
