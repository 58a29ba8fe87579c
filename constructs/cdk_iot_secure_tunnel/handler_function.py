"""The one ``Custom::IoTSecureTunnel`` handler function of a stack, and its least-privilege role.

Every :class:`~cdk_iot_secure_tunnel.SecureTunnel` of a stack shares it: the first one creates
it (under the stack, with the fixed construct id :data:`HANDLER_CONSTRUCT_ID`), the others find
it. Each tunnel then widens the role's policy by exactly what it needs: its thing, its two
secrets and, if any, its customer managed KMS key.

IAM, checked against the IAM reference (Service Authorization Reference, "AWS IoT") and the IoT
developer guide ("Controlling access to tunnels"):

- ``iot:OpenTunnel`` on ``tunnel/*`` and the wired things' ARNs (the provider stack: the things
  of a name prefix, optionally only in given thing groups), only with the request tag
  ``iot-secure-tunnel:owner`` = this stack's id (which the handler always sets). Tagging on
  create needs no ``iot:TagResource`` (OpenTunnel lists no dependent action).
- Rotate, describe and close only on tunnels whose resource tag ``iot-secure-tunnel:owner`` is
  this stack's id: tunnels this stack opened. Rotating is also allowed on the wired things' ARNs,
  which the developer guide lists as a resource of ``iot:RotateTunnelAccessToken`` (a thing
  carries no owner tag, hence a separate statement).
- Tag and untag on ``tunnel/*`` with no resource-tag condition: for tunnels, ``iot:TagResource``
  and ``iot:UntagResource`` honour no ``aws:ResourceTag`` key (developer guide; the IAM reference
  gives them no tunnel resource type), and a key absent from the request makes its condition
  false, so a tag-conditioned Allow would never match. Ownership is checked by the handler
  instead: it tags or untags a tunnel only after ``DescribeTunnel`` (which the owner condition
  does limit) has shown it this stack's owner tag. Both are denied for the reserved
  ``iot-secure-tunnel:`` keys (``aws:TagKeys``, which they do honour), so the owner tag can never
  be moved or removed.
- No ``iot:ListTagsForResource``: it honours no tag condition for tunnels either, and the handler
  reads a tunnel's tags from ``DescribeTunnel``.
- ``iot:ListTunnels`` on ``*``: the IAM reference lists no resource type for it.
- Secrets Manager only on secrets tagged ``iot-secure-tunnel:owner`` = this stack's id (the
  construct tags its token secrets so); KMS only through Secrets Manager.
- CloudWatch Logs on the function's own log group only; no managed policies.

What invokes the function: the custom resources (through the service token), and Secrets
Manager (``AWS::Lambda::Permission``), always with ``SourceAccount`` and ``SourceArn`` =
``secret:<name prefix>*``: one permission per name prefix, not one per secret, which would outgrow
Lambda's 20 KB function policy at about 19 tunnels (docs/aws-semantics.md). The prefixes are the
provider stack's documented ``iot-secure-tunnel/``, each tunnel's explicit ``secret_name_prefix``,
and the stack's default ``tunnel-tokens/<stack UUID>/``, under which every other token secret of
the stack is named. Beyond that, what keeps another secret from drawing a tunnel's tokens is the
handler's binding check: createSecret rotates a tunnel only into a secret the tunnel was opened
for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from aws_cdk import ArnFormat, Aws, Duration, Fn, RemovalPolicy, Stack, Tags
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from secure_tunnel_handler.contract import HANDLER_TAG_PREFIX, OWNER_TAG_KEY

from .acknowledgments import (
    LIST_TUNNELS_WILDCARD,
    OWNED_SECRETS_WILDCARD,
    TUNNEL_WILDCARD,
    acknowledge,
    provider_wildcards,
)
from .bundling import HANDLER, handler_code

#: Construct id of the handler under its stack (the find-or-create key).
HANDLER_CONSTRUCT_ID = "IoTSecureTunnelHandler"
#: Environment variable that tells the handler which tunnels are its own.
OWNER_ENV = "TUNNEL_OWNER"
#: Work per event: a few API calls with retries on throttling, well under a minute; the rest is
#: headroom for backoff. The handler keeps a safety margin to report before the timeout.
HANDLER_TIMEOUT = Duration.minutes(5)
HANDLER_MEMORY_MB = 256
LOG_RETENTION = logs.RetentionDays.THREE_MONTHS
#: Construct id (under the function) of the rotation permission for the stack's default secret
#: names; a permission for an explicit name prefix adds a digest of the prefix.
ROTATION_PERMISSION_ID = "RotationPermission"
#: Root of the default token secret names: ``tunnel-tokens/<stack UUID>/...``. Not the provider's
#: ``iot-secure-tunnel/``, whose handler may write any secret named so; the stack's UUID (from
#: ``AWS::StackId``) keeps a recreated stack clear of the names its deleted secrets hold during
#: their recovery window.
DEFAULT_SECRET_NAME_ROOT = "tunnel-tokens/"  # noqa: S105 - a name, not a secret
#: The service principal that invokes a rotation function.
SECRETS_MANAGER = "secretsmanager.amazonaws.com"

#: Tunnel actions that honour ``aws:ResourceTag``: limited to the tunnels this stack opened.
TUNNEL_ACTIONS = ("iot:CloseTunnel", "iot:DescribeTunnel", "iot:RotateTunnelAccessToken")
#: Tunnel actions that honour no ``aws:ResourceTag`` (but do honour ``aws:TagKeys``).
TAG_ACTIONS = ("iot:TagResource", "iot:UntagResource")
SECRET_ACTIONS = (
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
)
#: Secrets Manager encrypts a new secret version with a data key from GenerateDataKey and reads
#: one with Decrypt (Secrets Manager user guide, "Secret encryption and decryption").
KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")
#: The service a KMS key may be used through, and only through (``kms:ViaService``).
SECRETS_MANAGER_ENDPOINT = f"secretsmanager.{Aws.REGION}.amazonaws.com"


class SecureTunnelHandler(Construct):
    """The Lambda function that serves every ``Custom::IoTSecureTunnel`` resource of a stack.

    Use :meth:`of` rather than the constructor: there is one per stack.

    :ivar function: the handler function (Python 3.14, arm64).
    :ivar role: its execution role (no managed policies).
    :ivar log_group: its log group (explicit, with retention).
    """

    @classmethod
    def of(cls, scope: Construct) -> SecureTunnelHandler:
        """The handler of ``scope``'s stack, created on first use.

        :param scope: any construct in the stack.
        """
        stack = Stack.of(scope)
        existing = stack.node.try_find_child(HANDLER_CONSTRUCT_ID)
        if existing is None:
            return cls(stack, HANDLER_CONSTRUCT_ID)
        if not isinstance(existing, cls):
            raise TypeError(
                f"Construct id {HANDLER_CONSTRUCT_ID!r} of stack {stack.node.path} is taken by a "
                f"{type(existing).__name__}; SecureTunnel needs it for its handler function"
            )
        return existing

    def __init__(self, scope: Construct, construct_id: str, *, code: lambda_.Code | None = None) -> None:
        """Create the function, its role and log group. Prefer :meth:`of`.

        :param scope: the stack.
        :param construct_id: :data:`HANDLER_CONSTRUCT_ID`.
        :param code: the function's code. Default: :func:`~.bundling.handler_code`, the locally
            bundled asset (a stack without assets, such as the standalone provider, passes code
            in an S3 bucket of its parameters instead).
        """
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self._seen: set[str] = set()
        #: Name prefix of the stack's token secrets that have no explicit one.
        self.default_secret_name_prefix: str = Fn.join(
            "", [DEFAULT_SECRET_NAME_ROOT, Fn.select(2, Fn.split("/", stack.stack_id)), "/"]
        )
        self.log_group = logs.LogGroup(
            self, "LogGroup", retention=LOG_RETENTION, removal_policy=RemovalPolicy.DESTROY
        )
        self.role = iam.Role(
            self,
            "ServiceRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Custom::IoTSecureTunnel handler: opens, rotates and closes this stack's tunnels",
        )
        tunnels = stack.format_arn(service="iot", resource="tunnel", resource_name="*")
        self._open = iam.PolicyStatement(
            sid="OpenTunnelsTaggedWithThisStack",
            actions=["iot:OpenTunnel"],
            resources=[tunnels],
            conditions={"StringEquals": {f"aws:RequestTag/{OWNER_TAG_KEY}": Aws.STACK_ID}},
        )
        self._rotate_to_things = iam.PolicyStatement(
            sid="RotateTunnelsOfTheWiredThings", actions=["iot:RotateTunnelAccessToken"]
        )
        self._secrets = iam.PolicyStatement(sid="WriteTheTokenSecrets", actions=list(SECRET_ACTIONS))
        # By tag rather than by ARN: one ARN per secret would make the policy outgrow IAM's size
        # quotas at about 26 tunnels per stack (docs/benchmarks.md).
        self._owned_secrets = iam.PolicyStatement(
            sid="WriteTheTokenSecretsOfThisStack",
            actions=list(SECRET_ACTIONS),
            conditions={"StringEquals": {f"aws:ResourceTag/{OWNER_TAG_KEY}": Aws.STACK_ID}},
        )
        self._keys = iam.PolicyStatement(
            sid="EncryptTheTokenSecrets",
            actions=list(KEY_ACTIONS),
            conditions={"StringEquals": {"kms:ViaService": SECRETS_MANAGER_ENDPOINT}},
        )
        for statement in (
            self._open,
            iam.PolicyStatement(
                sid="ManageTunnelsOfThisStack",
                actions=list(TUNNEL_ACTIONS),
                resources=[tunnels],
                conditions={"StringEquals": {f"aws:ResourceTag/{OWNER_TAG_KEY}": Aws.STACK_ID}},
            ),
            # Not limited by tag (see the module docstring): the handler checks the owner tag
            # through DescribeTunnel first.
            iam.PolicyStatement(sid="TagTunnelsOfThisStack", actions=list(TAG_ACTIONS), resources=[tunnels]),
            iam.PolicyStatement(sid="FindTunnelsOfAThing", actions=["iot:ListTunnels"], resources=["*"]),
            iam.PolicyStatement(
                sid="KeepTheReservedTags",
                effect=iam.Effect.DENY,
                actions=list(TAG_ACTIONS),
                resources=[tunnels],
                conditions={"ForAnyValue:StringLike": {"aws:TagKeys": f"{HANDLER_TAG_PREFIX}*"}},
            ),
        ):
            self.role.add_to_principal_policy(statement)
        self.log_group.grant_write(self.role)

        self.function = lambda_.Function(
            self,
            "Function",
            description="Handler of the Custom::IoTSecureTunnel resources of this stack",
            runtime=lambda_.Runtime.PYTHON_3_14,
            architecture=lambda_.Architecture.ARM_64,
            handler=HANDLER,
            code=code if code is not None else handler_code(),
            timeout=HANDLER_TIMEOUT,
            memory_size=HANDLER_MEMORY_MB,
            role=self.role,
            log_group=self.log_group,
            environment={OWNER_ENV: stack.stack_id, "LOG_LEVEL": "INFO"},
        )
        self._acknowledge_findings()

    @property
    def service_token(self) -> str:
        """The function ARN: the ``ServiceToken`` of the custom resources."""
        return self.function.function_arn

    def authorize(
        self,
        *,
        thing_arn: str,
        secrets: Sequence[secretsmanager.ISecret],
        encryption_key: kms.IKey | None,
    ) -> None:
        """Widen the role's policy by what one tunnel needs.

        :param thing_arn: ARN of the IoT thing the tunnel reaches.
        :param secrets: the secrets the handler writes the tunnel's tokens into.
        :param encryption_key: the secrets' customer managed KMS key, if any.
        """
        self._add(self._open, thing_arn)
        self._add(self._rotate_to_things, thing_arn)
        for secret in secrets:
            Tags.of(secret).add(OWNER_TAG_KEY, Aws.STACK_ID)
        if secrets and not self._owned_secrets.resources:
            any_secret = Stack.of(self).format_arn(
                service="secretsmanager",
                resource="secret",
                resource_name="*",
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            self._add(self._owned_secrets, any_secret)
            acknowledge(self.role.node.find_child("DefaultPolicy"), OWNED_SECRETS_WILDCARD)
        if encryption_key is not None:
            self._add(self._keys, encryption_key.key_arn)

    def allow_rotation_by_secrets_manager(
        self, secret_name_prefix: str | None = None
    ) -> lambda_.CfnPermission:
        """Let Secrets Manager invoke the function to rotate secrets of this account only
        (``SourceAccount``) whose name starts with ``secret_name_prefix`` (``SourceArn``).

        :param secret_name_prefix: the name prefix of the secrets to rotate. Default: None, the
            stack's :attr:`default_secret_name_prefix`.
        :returns: the function's one permission for Secrets Manager per prefix (created on first
            use, as the function's child :data:`ROTATION_PERMISSION_ID`, followed by a digest of
            an explicit prefix), which a rotation schedule must depend on.
        """
        construct_id = ROTATION_PERMISSION_ID
        if secret_name_prefix is None:
            secret_name_prefix = self.default_secret_name_prefix
        else:
            # Of the resolved value: a token's string changes with unrelated code, its JSON does not.
            resolved = json.dumps(Stack.of(self).resolve(secret_name_prefix), sort_keys=True)
            construct_id += hashlib.sha256(resolved.encode()).hexdigest()[:8].upper()
        existing = self.function.node.try_find_child(construct_id)
        if isinstance(existing, lambda_.CfnPermission):
            return existing
        return lambda_.CfnPermission(
            self.function,
            construct_id,
            action="lambda:InvokeFunction",
            function_name=self.function.function_arn,
            principal=SECRETS_MANAGER,
            source_account=Aws.ACCOUNT_ID,
            source_arn=self._secrets_named(secret_name_prefix),
        )

    def _secrets_named(self, secret_name_prefix: str) -> str:
        """The ARN pattern of this account's and region's secrets whose name starts with the prefix."""
        return Stack.of(self).format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{secret_name_prefix}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def authorize_by_convention(
        self,
        *,
        secret_name_prefix: str,
        thing_name_prefix: str = "",
        thing_group_arns: Sequence[str] | None = None,
    ) -> None:
        """Let the handler serve tunnels declared in other stacks (the provider stack).

        Tunnels: still only those this handler opened (owner tag), to the things of the account
        and region whose name starts with ``thing_name_prefix`` and, with ``thing_group_arns``,
        that belong to one of those groups. Secrets: only those whose name starts with
        ``secret_name_prefix``, and only those may Secrets Manager invoke the function to rotate;
        customer managed keys only through Secrets Manager and only for such secrets (encryption
        context).

        :param secret_name_prefix: the documented name prefix of the token secrets, e.g.
            ``iot-secure-tunnel/``.
        :param thing_name_prefix: the name prefix of the things tunnels may reach, e.g. a
            CloudFormation parameter. Default: ``""`` (every thing).
        :param thing_group_arns: thing group ARNs or ``ArnLike`` patterns; when given, a tunnel may
            reach (on open, and on a rotation that names the thing) only a thing in one of them.
            Default: None (no group condition).
        """
        stack = Stack.of(self)
        things = stack.format_arn(service="iot", resource="thing", resource_name=f"{thing_name_prefix}*")
        secrets = self._secrets_named(secret_name_prefix)
        self._add(self._open, things)
        self._add(self._rotate_to_things, things)
        if thing_group_arns is not None:
            # A thing can be in several groups (iot:ThingGroupArn is multivalued). Rotation names
            # the thing too: an Update may move a tunnel to another thing through it.
            groups = {"iot:ThingGroupArn": list(thing_group_arns)}
            self._open.add_condition("ForAnyValue:ArnLike", groups)
            self._rotate_to_things.add_condition("ForAnyValue:ArnLike", groups)
        self._add(self._secrets, secrets)
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="EncryptTheTokenSecretsOfThePrefix",
                actions=list(KEY_ACTIONS),
                resources=[stack.format_arn(service="kms", resource="key", resource_name="*")],
                conditions={
                    "StringEquals": {"kms:ViaService": SECRETS_MANAGER_ENDPOINT},
                    "StringLike": {"kms:EncryptionContext:SecretARN": secrets},
                },
            )
        )
        self.allow_rotation_by_secrets_manager(secret_name_prefix)
        acknowledge(
            self.role.node.find_child("DefaultPolicy"),
            *provider_wildcards(secret_name_prefix, stack.resolve(thing_name_prefix)),
        )

    def _add(self, statement: iam.PolicyStatement, arn: str) -> None:
        # Statements are rendered at synth time: adding a resource here widens the statement in
        # place. A statement enters the policy with its first resource (never empty).
        key = f"{statement.sid}|{arn}"
        if key in self._seen:
            return
        self._seen.add(key)
        if not statement.resources:
            statement.add_resources(arn)
            self.role.add_to_principal_policy(statement)
        else:
            statement.add_resources(arn)

    def _acknowledge_findings(self) -> None:
        policy = self.role.node.find_child("DefaultPolicy")
        acknowledge(policy, TUNNEL_WILDCARD, LIST_TUNNELS_WILDCARD)
