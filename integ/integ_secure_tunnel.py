#!/usr/bin/env python3
"""Integration test of ``SecureTunnel`` on a real account, run by CDK's integ-runner.

``make integ`` deploys, asserts and destroys it (AWS credentials needed); CI only synthesizes it and
compares the templates with the committed snapshot (``integ_secure_tunnel.py.snapshot/``, no
account). What it asserts is in docs/integration-test.md:

1. the tunnel is OPEN, to the test thing, for SSH (``DescribeTunnel``);
2. the source secret's AWSCURRENT document has every field (a checker function reads it and
   answers with booleans and the version id only: the assertion provider logs and returns every
   response, so no assertion calls GetSecretValue itself);
3. ``RotateSecret`` of the source secret makes the version RotateSecret started AWSCURRENT, and
   the new document has every field again (polled until rotation has finished);
4. after destroy, the tunnel is deleted (or CLOSED) and no tunnel to the thing is OPEN: the
   ``tunnel_hooks.py`` hooks, which integ-runner runs around destroy.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import cloud_assembly_schema as schema
from aws_cdk.integ_tests_alpha import ExpectedResult, IntegTest, Match
from constructs import Construct

HERE = Path(__file__).resolve().parent
# integ-runner runs this file in integ/: the demo stack is a module beside the repository's app.py,
# outside the construct library's wheel.
sys.path.insert(0, str(HERE.parent))
from demo_stack import SecureTunnelDemoStack  # noqa: E402 - needs the path above

#: The stack under test: the project's demo stack (a thing and a SecureTunnel to it).
STACK_NAME = "IoTSecureTunnelInteg"
#: The stack of the secret checker function (kept out of the stack under test).
CHECKER_STACK_NAME = "IoTSecureTunnelIntegChecker"
THING_NAME = "iot-secure-tunnel-integ-device"
SERVICES = ("SSH",)
#: The fields of a token secret's JSON document (docs/resource-reference.md, "The secret value").
SECRET_FIELDS = (
    "tunnelId",
    "tunnelArn",
    "clientMode",
    "accessToken",
    "region",
    "thingName",
    "services",
    "expiresAt",
)
CHECKER_SOURCE = HERE / "secret_checker.py"
ROTATION_TIMEOUT = cdk.Duration.minutes(5)
ROTATION_POLL_INTERVAL = cdk.Duration.seconds(10)


def repository_context() -> dict[str, Any]:
    """The feature flags of the repository's cdk.json: the test synthesizes what ``cdk synth`` does
    (integ-runner would otherwise apply the flags it was built with)."""
    context: dict[str, Any] = json.loads((HERE.parent / "cdk.json").read_text())["context"]
    return context


class SecretFieldChecker(Construct):
    """A function that reports which fields a token secret's AWSCURRENT document has.

    Its code is ``secret_checker.py``, inline. It may only read that one secret
    (``secretsmanager:GetSecretValue`` on its ARN) and returns booleans and the version id.
    """

    def __init__(self, scope: Construct, construct_id: str, *, secret: secretsmanager.ISecret) -> None:
        super().__init__(scope, construct_id)
        log_group = logs.LogGroup(
            self, "LogGroup", retention=logs.RetentionDays.ONE_DAY, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description="Integration test: which fields the source token secret has (booleans only)",
            runtime=lambda_.Runtime.PYTHON_3_14,
            architecture=lambda_.Architecture.ARM_64,
            handler="index.handler",
            code=lambda_.Code.from_inline(CHECKER_SOURCE.read_text()),
            timeout=cdk.Duration.seconds(30),
            memory_size=128,
            environment={"SECRET_ARN": secret.secret_arn, "DOCUMENT_FIELDS": ",".join(SECRET_FIELDS)},
            log_group=log_group,
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[secret.secret_arn])
        )


def checker_result(**extra: Any) -> ExpectedResult:
    """What the checker must answer: every field present, the test's tunnel, the source side."""
    return ExpectedResult.object_like(
        {
            "Payload": Match.serialized_json(
                Match.object_like(
                    {
                        "fields": dict.fromkeys(SECRET_FIELDS, True),
                        "allFieldsPresent": True,
                        "tunnelIdMatches": True,
                        "clientModeIsSource": True,
                        **extra,
                    }
                )
            )
        }
    )


def build(app: cdk.App) -> IntegTest:
    """The stacks under test and the assertions."""
    demo = SecureTunnelDemoStack(app, STACK_NAME, thing_name=THING_NAME, services=SERVICES)
    tunnel = demo.tunnel
    checker_stack = cdk.Stack(
        app, CHECKER_STACK_NAME, description="Integration test of cdk-iot-secure-tunnel: secret checker"
    )
    checker = SecretFieldChecker(checker_stack, "SourceSecretChecker", secret=tunnel.source_token_secret)

    integ = IntegTest(
        app,
        "SecureTunnelInteg",
        test_cases=[demo, checker_stack],
        # The handler's code is what is under test: a changed asset is a changed snapshot.
        diff_assets=True,
        # A new test: there is no earlier snapshot to deploy first (and no assets to commit).
        stack_update_workflow=False,
        hooks=schema.Hooks(
            pre_deploy=["python3 tunnel_hooks.py reset"],
            pre_destroy=[f"python3 tunnel_hooks.py capture --stack {STACK_NAME}"],
            post_destroy=[f"python3 tunnel_hooks.py check-gone --thing {THING_NAME}"],
        ),
    )
    assertions = integ.assertions

    # 1. The tunnel is open, to the thing, for the services (DescribeTunnel returns no token).
    described = assertions.aws_api_call(
        "IoTSecureTunneling", "describeTunnel", {"tunnelId": tunnel.tunnel_id}
    )
    # integ-tests derives the IAM action from the SDK's service name (IoTSecuredTunneling:...), but
    # the service's IAM prefix is iot: allow iot:DescribeTunnel on this tunnel only.
    described.provider.add_to_role_policy(
        {"Effect": "Allow", "Action": ["iot:DescribeTunnel"], "Resource": [tunnel.tunnel_arn]}
    )
    described.expect(
        ExpectedResult.object_like(
            {
                "tunnel": {
                    "tunnelId": tunnel.tunnel_id,
                    "status": "OPEN",
                    "destinationConfig": {"thingName": THING_NAME, "services": list(SERVICES)},
                }
            }
        )
    )

    # 2. The source secret's document has every field; remember its AWSCURRENT version.
    def check(**payload: str) -> Any:
        return assertions.invoke_function(
            function_name=checker.function.function_name,
            payload=json.dumps({"expectedTunnelId": tunnel.tunnel_id, **payload}),
        )

    before = check()
    before.expect(checker_result())
    before_version = check()  # a second call: get_att flattens the response, expect needs it whole
    previous_version_id = before_version.get_att_string("Payload.versionId")

    # 3. Rotate the source secret (the handler is its rotation function) and wait until the
    #    version RotateSecret started is AWSCURRENT, with every field again.
    rotate = assertions.aws_api_call(
        "SecretsManager", "rotateSecret", {"SecretId": tunnel.source_token_secret.secret_arn}
    )
    # RotateSecret also needs lambda:InvokeFunction on the rotation function.
    rotate.provider.add_to_role_policy(
        {
            "Effect": "Allow",
            "Action": ["lambda:InvokeFunction"],
            "Resource": [tunnel.handler.function.function_arn],
        }
    )
    after = check(previousVersionId=previous_version_id)
    after.expect(
        checker_result(rotated=True, versionId=rotate.get_att_string("VersionId"))
    ).wait_for_assertions(total_timeout=ROTATION_TIMEOUT, interval=ROTATION_POLL_INTERVAL)

    described.next(before).next(before_version).next(rotate).next(after)
    return integ


def main() -> None:
    """Synthesize the integration test app (integ-runner runs this file)."""
    app = cdk.App(post_cli_context=repository_context())
    build(app)
    app.synth()


if __name__ == "__main__":
    main()
