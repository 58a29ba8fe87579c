"""A CDK app with N ``SecureTunnel``s in one stack, for the scale figures.

``cdk synth --app "python -m bench.scale_app" -c bench:tunnels=N`` (from the repository
root, so that cdk.json's feature flags apply). Each tunnel reaches its own thing, given by name
(an existing thing: no ``AWS::IoT::Thing`` resource is counted), with the default two secrets.
No cdk-nag: the figures are those of the construct library, not of the repository's demo app.
"""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from cdk_iot_secure_tunnel import SecureTunnel

STACK_NAME = "SecureTunnelScale"
TUNNELS_CONTEXT = "bench:tunnels"


def add_tunnels(scope: Construct, count: int) -> None:
    """``count`` tunnels, to things ``device-0000``, ``device-0001``..."""
    for index in range(count):
        SecureTunnel(scope, f"Tunnel{index}", thing=f"device-{index:04d}", services=["SSH"])


def build(app: cdk.App, count: int) -> cdk.Stack:
    """The scale stack with ``count`` tunnels, in ``app``."""
    stack = cdk.Stack(app, STACK_NAME)
    add_tunnels(stack, count)
    return stack


def main() -> None:
    """Synthesize the stack with the number of tunnels given in the context."""
    app = cdk.App()
    build(app, int(app.node.try_get_context(TUNNELS_CONTEXT) or 1))
    app.synth()


if __name__ == "__main__":
    main()
