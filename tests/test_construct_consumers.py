"""What a consumer's app meets with a customer managed key in another stack: CDK's own
``Secret.grant_read`` edits the key's policy, which makes the stacks depend on each other in a
cycle (aws/aws-cdk#14213); the construct's grants go into the grantee's policy only, so any
placement of key, tunnel and grantee synthesizes."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager

from cdk_iot_secure_tunnel import SecureTunnel
from tests.cdk_helpers import resources_of_type

pytestmark = pytest.mark.synth

PLACEMENTS = {
    "role beside the tunnel, key apart": False,
    "key, tunnel and role apart": True,
}


def _stacks(app: cdk.App, role_apart: bool) -> tuple[cdk.Stack, cdk.Stack, cdk.Stack]:
    keys, tunnels = cdk.Stack(app, "Keys"), cdk.Stack(app, "Tunnels")
    return keys, tunnels, cdk.Stack(app, "Operators") if role_apart else tunnels


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for policy in resources_of_type(template, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


@pytest.mark.parametrize("role_apart", PLACEMENTS.values(), ids=PLACEMENTS.keys())
def test_cdks_own_secret_grant_read_with_a_key_of_another_stack_is_cyclic(role_apart: bool) -> None:
    """Why the construct does not use ``Secret.grant_read``."""
    app = cdk.App()
    keys, tunnels, operators = _stacks(app, role_apart)
    secret = secretsmanager.Secret(tunnels, "Secret", encryption_key=kms.Key(keys, "Key"))
    secret.grant_read(iam.Role(operators, "Operator", assumed_by=iam.AccountRootPrincipal()))
    with pytest.raises(Exception, match="cyclic reference"):
        app.synth()


@pytest.mark.parametrize("role_apart", PLACEMENTS.values(), ids=PLACEMENTS.keys())
def test_the_constructs_grants_with_a_key_of_another_stack_synthesize(role_apart: bool) -> None:
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    keys, tunnels, operators = _stacks(app, role_apart)
    key = kms.Key(keys, "TokenKey")
    tunnel = SecureTunnel(tunnels, "Tunnel", thing="device-1", services=["SSH"], encryption_key=key)
    role = iam.Role(operators, "Operator", assumed_by=iam.AccountRootPrincipal())
    grant = tunnel.grant_read_source_token(role)
    assembly = app.synth()

    assert grant.success
    decrypt = [
        s
        for s in _statements(assembly.get_stack_by_name("Operators" if role_apart else "Tunnels").template)
        if s["Action"] == "kms:Decrypt"
    ]
    # In the role's own policy, on the key, and only through Secrets Manager.
    assert len(decrypt) == 1
    assert decrypt[0]["Resource"] == {"Fn::ImportValue": decrypt[0]["Resource"]["Fn::ImportValue"]}
    assert list(decrypt[0]["Condition"]["StringEquals"]) == ["kms:ViaService"]
    (key_resource,) = resources_of_type(assembly.get_stack_by_name("Keys").template, "AWS::KMS::Key").values()
    assert "Operator" not in str(key_resource["Properties"]["KeyPolicy"]), "the key's policy names no role"
