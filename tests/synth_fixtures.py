"""Synthesized CDK apps, shared by the construct and app tests and the rig.

Synthesis is slow (jsii starts Node, the first synth of a process loads aws-cdk-lib), so each
distinct app is synthesized once per session:

- ``cli_assembly``: ``cdk synth`` of the repository's app through the pinned CDK CLI (cdk.json,
  feature flags, cdk-nag, local bundling): what a user gets.
- ``in_process_assembly``: a second, independent synth of the same app (``app.build_app``) into
  another directory, in this process: the asset hash must be the same.
- ``construct_synth``: construct-level stacks (minimal, every option, token arguments, operator
  options, a provider narrowed to thing groups) in one app with cdk-nag, bundling skipped
  (``aws:cdk:bundling-stacks: []``).

tests/conftest.py makes them fixtures of every test module (the rig enforces the provider's
synthesized IAM policy); the helpers that read what the fixtures return are in
``tests.cdk_helpers``.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cdk_helpers import CDK_CLI, REPO_ROOT, Assembly, ConstructSynth, cdk_json_context, tool_environment

#: The certificate the ``Operator`` stack attaches the device policy to.
DEVICE_CERTIFICATE_ARN = f"arn:aws:iot:eu-west-1:123456789012:cert/{'0123456789abcdef' * 4}"
#: The secret name prefixes of the ``Named`` stack's two tunnels.
LAB_PREFIX = "iot-secure-tunnel/lab-1/"
FIELD_PREFIX = "iot-secure-tunnel/field-7/"
#: The thing groups the ``NarrowProvider`` stack limits its tunnels to (a name and a pattern).
THING_GROUP_ARNS = (
    "arn:aws:iot:eu-west-1:123456789012:thinggroup/field-gateways",
    "arn:aws:iot:eu-west-1:123456789012:thinggroup/lab-*",
)


def _timed_run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, str, float]:
    start = time.monotonic()
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - start


@pytest.fixture(scope="session")
def cli_assembly(tmp_path_factory: pytest.TempPathFactory) -> Assembly:
    """``cdk synth`` of the repository's app, as the README runs it (no AWS account, no Docker)."""
    outdir = tmp_path_factory.mktemp("cli") / "cdk.out"
    code, output, seconds = _timed_run(
        [str(CDK_CLI), "synth", "--quiet", "--no-notices", "--output", str(outdir)],
        cwd=REPO_ROOT,
        env=tool_environment(),
        timeout=300,
    )
    assert code == 0, f"cdk synth failed ({code}):\n{output[-4000:]}"
    return Assembly(outdir, seconds=seconds)


@pytest.fixture(scope="session")
def in_process_assembly(tmp_path_factory: pytest.TempPathFactory) -> Assembly:
    """A second, independent synth of the same app (with bundling), in this process."""
    import aws_cdk as cdk

    import app as app_module

    outdir = tmp_path_factory.mktemp("in-process") / "cdk.out"
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    start = time.monotonic()
    app = app_module.build_app(cdk.App(outdir=str(outdir), context=cdk_json_context()))
    app.synth()
    return Assembly(outdir, seconds=time.monotonic() - start)


@pytest.fixture(scope="session")
def construct_synth(tmp_path_factory: pytest.TempPathFactory) -> ConstructSynth:
    """Six stacks in one app with cdk-nag, bundling skipped, synthesized once.

    - ``Minimal``: a CfnThing and a SecureTunnel with only the required arguments.
    - ``Full``: every argument (customer managed key, tags, lifetime, description, rotation
      trigger) on one tunnel; a second tunnel to a thing given by name, without a destination
      secret; grants to an operator role and a device role.
    - ``Tokens``: every argument a CloudFormation parameter (not validated at synth).
    - ``Operator``: the device notify policy attached to a certificate and an on-call role
      allowed to rotate the source token.
    - ``Named``: two tunnels with secret name prefixes (one with outputs) and one without.
    - ``NarrowProvider``: the provider stack with ``thing_group_arns`` (the app's provider has
      none).
    """
    import aws_cdk as cdk
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_iot as iot
    from aws_cdk import aws_kms as kms
    from cdk_nag import AwsSolutionsChecks

    from cdk_iot_secure_tunnel import SecureTunnel, SecureTunnelHandler
    from cdk_iot_secure_tunnel.provider_stack import SecureTunnelProviderStack

    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    outdir = tmp_path_factory.mktemp("constructs") / "cdk.out"
    app = cdk.App(outdir=str(outdir), context={**cdk_json_context(), "aws:cdk:bundling-stacks": []})
    ids: dict[str, str] = {}

    def logical_id(label: str, construct: Any) -> None:
        element = construct if isinstance(construct, cdk.CfnElement) else construct.node.default_child
        ids[label] = str(cdk.Stack.of(element).resolve(element.logical_id))

    minimal = cdk.Stack(app, "Minimal")
    device = iot.CfnThing(minimal, "Device", thing_name="minimal-device")
    tunnel = SecureTunnel(minimal, "Tunnel", thing=device, services=["SSH"])
    for label, construct in {
        "Minimal.Thing": device,
        "Minimal.Tunnel": tunnel.resource.node.default_child,
        "Minimal.SourceSecret": tunnel.source_token_secret,
        "Minimal.DestinationSecret": tunnel.destination_token_secret,
        "Minimal.Function": tunnel.handler.function,
        "Minimal.Role": tunnel.handler.role,
        "Minimal.Policy": tunnel.handler.role.node.find_child("DefaultPolicy"),
        "Minimal.LogGroup": tunnel.handler.log_group,
    }.items():
        logical_id(label, construct)

    full = cdk.Stack(app, "Full")
    key = kms.Key(full, "TokenKey", enable_key_rotation=True, removal_policy=cdk.RemovalPolicy.DESTROY)
    gateway = iot.CfnThing(full, "Gateway", thing_name="gateway-1")
    maintenance = SecureTunnel(
        full,
        "Maintenance",
        thing=gateway,
        services=["SSH", "HTTP", "RDP"],
        description="Maintenance access to gateway-1",
        max_lifetime=cdk.Duration.hours(2),
        tags={"team": "field-ops", "cost-center": "1234"},
        encryption_key=key,
        rotation_trigger="2024-06-01",
    )
    existing = SecureTunnel(
        full,
        "Existing",
        thing="existing-device",
        services=["VNC"],
        max_lifetime=cdk.Duration.minutes(30),
        create_destination_secret=False,
        removal_policy=cdk.RemovalPolicy.RETAIN,
    )
    operator = iam.Role(full, "Operator", assumed_by=iam.AccountRootPrincipal())
    device_role = iam.Role(full, "DeviceProvisioner", assumed_by=iam.ServicePrincipal("iot.amazonaws.com"))
    maintenance.grant_read_source_token(operator)
    existing.grant_read_source_token(operator)
    maintenance.grant_read_destination_token(device_role)
    shared = SecureTunnelHandler.of(full)
    for label, construct in {
        "Full.Key": key,
        "Full.Gateway": gateway,
        "Full.Maintenance": maintenance.resource.node.default_child,
        "Full.MaintenanceSource": maintenance.source_token_secret,
        "Full.MaintenanceDestination": maintenance.destination_token_secret,
        "Full.Existing": existing.resource.node.default_child,
        "Full.ExistingSource": existing.source_token_secret,
        "Full.Function": shared.function,
        "Full.Role": shared.role,
        "Full.Policy": shared.role.node.find_child("DefaultPolicy"),
        "Full.LogGroup": shared.log_group,
        "Full.OperatorRole": operator,
        "Full.OperatorPolicy": operator.node.find_child("DefaultPolicy"),
        "Full.DeviceRole": device_role,
        "Full.DevicePolicy": device_role.node.find_child("DefaultPolicy"),
    }.items():
        logical_id(label, construct)

    tokens = cdk.Stack(app, "Tokens")
    thing_name = cdk.CfnParameter(tokens, "ThingName", type="String", default="tokens-device")
    services = cdk.CfnParameter(tokens, "Services", type="CommaDelimitedList", default="SSH,HTTP")
    description = cdk.CfnParameter(tokens, "Description", type="String", default="From a parameter")
    minutes = cdk.CfnParameter(
        tokens, "LifetimeMinutes", type="Number", default=90, min_value=1, max_value=720
    )
    team = cdk.CfnParameter(tokens, "Team", type="String", default="platform")
    trigger = cdk.CfnParameter(tokens, "RotationTrigger", type="String", default="initial")
    tokens_tunnel = SecureTunnel(
        tokens,
        "Tunnel",
        thing=thing_name.value_as_string,
        services=services.value_as_list,
        description=description.value_as_string,
        max_lifetime=cdk.Duration.minutes(minutes.value_as_number),
        tags={"team": team.value_as_string},
        rotation_trigger=trigger.value_as_string,
    )
    logical_id("Tokens.Tunnel", tokens_tunnel.resource.node.default_child)

    # Issue 5's options: the device's notify policy, the on-demand rotation grant.
    ops = cdk.Stack(app, "Operator")
    field_device = iot.CfnThing(ops, "FieldDevice", thing_name="field-device")
    rotated = SecureTunnel(
        ops,
        "Tunnel",
        thing=field_device,
        services=["SSH"],
        device_certificate_arn=DEVICE_CERTIFICATE_ARN,
    )
    on_call = iam.Role(ops, "OnCall", assumed_by=iam.AccountRootPrincipal())
    rotated.grant_rotate_source_token(on_call)
    for label, construct in {
        "Operator.Tunnel": rotated.resource.node.default_child,
        "Operator.SourceSecret": rotated.source_token_secret,
        "Operator.DestinationSecret": rotated.destination_token_secret,
        "Operator.Function": rotated.handler.function,
        "Operator.OnCallPolicy": on_call.node.find_child("DefaultPolicy"),
    }.items():
        logical_id(label, construct)

    # Issue 12's options: predictable secret names (one rotation permission per prefix) beside
    # generated ones, and outputs only where asked for.
    named = cdk.Stack(app, "Named")
    for label, prefix, outputs in (("Lab", LAB_PREFIX, True), ("Field", FIELD_PREFIX, False)):
        prefixed = SecureTunnel(
            named,
            label,
            thing=f"{label.lower()}-device",
            services=["SSH"],
            secret_name_prefix=prefix,
            outputs=outputs,
        )
        logical_id(f"Named.{label}", prefixed.resource.node.default_child)
        logical_id(f"Named.{label}Source", prefixed.source_token_secret)
        logical_id(f"Named.{label}Destination", prefixed.destination_token_secret)
    generated = SecureTunnel(named, "Generated", thing="generated-device", services=["SSH"])
    logical_id("Named.GeneratedSource", generated.source_token_secret)
    logical_id("Named.GeneratedDestination", generated.destination_token_secret)
    logical_id("Named.Function", generated.handler.function)

    narrow = SecureTunnelProviderStack(app, "NarrowProvider", thing_group_arns=THING_GROUP_ARNS)
    logical_id("NarrowProvider.Policy", narrow.handler.role.node.find_child("DefaultPolicy"))
    logical_id("NarrowProvider.LogGroup", narrow.handler.log_group)

    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    error = None
    try:
        app.synth()
    except Exception as exc:  # reported by the nag test; templates are written before validation
        error = str(exc)
    synth = ConstructSynth(Assembly(outdir, error=error), ids)
    synth.handler_is_shared = (
        SecureTunnelHandler.of(full) is shared and maintenance.handler is existing.handler
    )
    return synth
