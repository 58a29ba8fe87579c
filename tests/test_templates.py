"""The example templates in templates/: they lint clean, and their Custom::IoTSecureTunnel
properties, resolved as CloudFormation would, run through the real handler on the test rig."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file

from tests.conftest import tunnel_id_of
from tests.rig.harness import Handler, Rig
from tests.rig.templates import Resolver, load, parameter_defaults

TEMPLATES = sorted((Path(__file__).parent.parent / "templates").glob("*.yaml"))
SERVICE_TOKEN = "arn:aws:lambda:us-east-1:123456789012:function:IoTSecureTunnelProvider-Handler"


def test_there_are_a_minimal_and_a_full_example() -> None:
    assert {p.name for p in TEMPLATES} >= {"minimal.yaml", "full.yaml"}


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_example_template_passes_cfn_lint(path: Path) -> None:
    findings = [str(m) for m in lint_file(path)]
    assert findings == []


def _resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def _stand_ins(rig: Rig, template: dict[str, Any]) -> Resolver:
    """Refs of the template's things and secrets, the secrets created for real in moto."""
    refs: dict[str, Any] = parameter_defaults(template)
    naming = Resolver(refs, {}, {})
    for name, thing in _resources_of_type(template, "AWS::IoT::Thing").items():
        refs[name] = naming.resolve(thing["Properties"]["ThingName"])
    for name, secret in _resources_of_type(template, "AWS::SecretsManager::Secret").items():
        created = rig.secrets.create_secret(
            Name=naming.resolve(secret["Properties"]["Name"]),
            SecretString=secret["Properties"]["SecretString"],
        )
        refs[name] = created["ARN"]
    return Resolver(refs, {"IoTSecureTunnel-ServiceToken": SERVICE_TOKEN}, {})


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_example_template_runs_through_the_handler(rig: Rig, handler: Handler, path: Path) -> None:
    template = load(path)
    resolver = _stand_ins(rig, template)
    (logical_id, resource), *others = _resources_of_type(template, "Custom::IoTSecureTunnel").items()
    assert others == []
    props = resolver.resolve(resource["Properties"])
    assert props["ServiceToken"] == SERVICE_TOKEN

    created = rig.send(handler, "Create", props, logical_id=logical_id)
    tunnel_id = tunnel_id_of(created)
    tunnel = rig.tunnel(tunnel_id)
    assert tunnel["destinationConfig"]["services"] == props["DestinationConfig"]["Services"]
    for key in ("SourceAccessTokenSecretArn", "DestinationAccessTokenSecretArn"):
        if key in props:
            stored = rig.secret(props[key])
            assert stored["tunnelId"] == tunnel_id
            assert rig.tunnels.is_token_valid(stored["accessToken"])
            assert key.startswith(stored["clientMode"].capitalize())

    rotated = {**props, "RotationTrigger": "rotate-now"}
    updated = rig.send(handler, "Update", rotated, physical_id=tunnel_id, old_properties=props)
    assert tunnel_id_of(updated) == tunnel_id
    assert rig.tunnels.is_token_valid(rig.secret(props["SourceAccessTokenSecretArn"])["accessToken"])

    deleted = rig.send(handler, "Delete", rotated, physical_id=tunnel_id)
    assert deleted["Status"] == "SUCCESS"
    assert rig.tunnels.open_tunnel_ids() == []


def test_full_example_sets_every_property() -> None:
    template = load(next(p for p in TEMPLATES if p.name == "full.yaml"))
    (resource,) = _resources_of_type(template, "Custom::IoTSecureTunnel").values()
    documented = {
        "ServiceToken", "DestinationConfig", "Description", "Tags", "TimeoutConfig",
        "SourceAccessTokenSecretArn", "DestinationAccessTokenSecretArn", "RotationTrigger",
    }  # fmt: skip
    assert set(resource["Properties"]) == documented
    outputs = json.dumps(template["Outputs"])
    assert "accessToken" not in outputs


def test_reference_page_documents_exactly_the_properties_the_handler_accepts() -> None:
    from secure_tunnel_handler.properties import KNOWN_PROPERTIES

    page = (Path(__file__).parent.parent / "docs" / "resource-reference.md").read_text()
    section = page.split("## Properties", 1)[1].split("\n## ", 1)[0]
    documented = {line.strip("`").split(".")[0] for line in section.splitlines() if line.startswith("`")}
    # ServiceTimeout too: CloudFormation's own property of every custom resource, passed through.
    assert documented == KNOWN_PROPERTIES
