#!/usr/bin/env python3
"""The project's CDK app. ``cdk synth`` needs no AWS account; ``cdk deploy`` deploys the demo.

Context (``cdk synth -c thing_name=my-device -c services=SSH,HTTP``):

- ``thing_name``: the demo IoT thing's name (default ``secure-tunnel-demo-device``);
- ``services``: 1 to 3 service names, comma-separated (default ``SSH``).

Every stack is checked with cdk-nag's AwsSolutions pack; accepted findings are acknowledged in
the constructs that cause them, each with its reason.
"""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from cdk_iot_secure_tunnel import SecureTunnelProviderStack
from demo_stack import DEFAULT_THING_NAME, SecureTunnelDemoStack, services_from_context

DEMO_STACK_NAME = "IoTSecureTunnelDemo"
PROVIDER_STACK_NAME = "IoTSecureTunnelProvider"


def build_app(app: cdk.App) -> cdk.App:
    """Add the app's stacks and checks to ``app``."""
    SecureTunnelDemoStack(
        app,
        DEMO_STACK_NAME,
        thing_name=app.node.try_get_context("thing_name") or DEFAULT_THING_NAME,
        services=services_from_context(app.node.try_get_context("services")),
    )
    SecureTunnelProviderStack(app, PROVIDER_STACK_NAME)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


if __name__ == "__main__":
    build_app(cdk.App()).synth()
