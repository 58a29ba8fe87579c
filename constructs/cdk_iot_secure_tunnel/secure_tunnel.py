"""``SecureTunnel``: an AWS IoT secure tunnel to a thing, its access tokens kept in Secrets Manager."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from aws_cdk import (
    CfnOutput,
    CustomResource,
    Duration,
    RemovalPolicy,
    SecretValue,
    Stack,
    Tokenization,
)
from aws_cdk import aws_iam as iam
from aws_cdk import aws_iot as iot
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from secure_tunnel_handler.contract import DOCUMENT_KEYS

from .device_policy import DeviceNotifyPolicy
from .handler_function import SECRETS_MANAGER_ENDPOINT, SecureTunnelHandler
from .token_rotation import attach_rotation
from .validation import (
    DESTINATION_SECRET_NAME_SUFFIX,
    SECRET_NAME_CHARACTERS,
    SOURCE_SECRET_NAME_SUFFIX,
    is_unresolved,
    lifetime_minutes,
    validate_description,
    validate_device_certificate_arn,
    validate_encryption_key,
    validate_rotation_trigger,
    validate_secret_name_prefix,
    validate_services,
    validate_tags,
    validate_thing_name,
)

#: CloudFormation resource type served by the handler.
RESOURCE_TYPE = "Custom::IoTSecureTunnel"
#: What a token secret holds until the handler writes the first tokens (never a token).
PENDING_SECRET_VALUE = json.dumps({"status": "pending"})
#: How much of the construct id a default secret name keeps (with the stack's UUID and the tunnel's
#: address, a name of at most 140 characters).
NAME_PART_LENGTH = 64
#: How long CloudFormation waits for the handler's answer before it fails the operation. The
#: handler answers within its 5 minute timeout; this leaves room for Lambda's own retries.
SERVICE_TIMEOUT = Duration.minutes(15)


class _TokenSide(NamedTuple):
    """One side of the tunnel, as its token secret is created and named."""

    construct_id: str
    mode: str
    use: str
    name_suffix: str


_SOURCE = _TokenSide(
    "SourceTokenSecret", "source", "operator side, for localproxy -s", SOURCE_SECRET_NAME_SUFFIX
)
_DESTINATION = _TokenSide(
    "DestinationTokenSecret", "destination", "device side, for localproxy -d", DESTINATION_SECRET_NAME_SUFFIX
)

*_FIRST_KEYS, _LAST_KEY = DOCUMENT_KEYS.values()
_VALUE_DESCRIPTION = (
    f"JSON with {', '.join(_FIRST_KEYS)} and {_LAST_KEY}, written by the Custom::IoTSecureTunnel handler "
    "when the tunnel opens or rotates"
)


class SecureTunnel(Construct):
    """An AWS IoT secure tunnel to an IoT thing, opened by CloudFormation.

    Creates a ``Custom::IoTSecureTunnel`` resource served by the stack's one handler function
    (shared by every ``SecureTunnel`` of the stack), a Secrets Manager secret for the source
    (operator side) access token and, unless ``create_destination_secret=False``, one for the
    destination (device side) token. The tokens never appear in the template, outputs or logs.

    Stack create opens the tunnel (after the thing exists); every stack update of the resource
    rotates the tokens (change ``rotation_trigger`` to rotate without other changes); a change of
    ``description`` or ``max_lifetime`` opens a new tunnel; stack delete closes it (before the
    thing goes).

    The secrets are named ``<prefix>source-token`` and ``<prefix>destination-token``, the prefix
    being ``secret_name_prefix`` (predictable names) or ``tunnel-tokens/<stack UUID>/<id>-<hash>/``;
    with ``outputs=True`` the stack outputs name the tunnel and its secrets (a library adds no
    outputs uninvited).

    :ivar tunnel_id: the tunnel id (``Ref`` of the custom resource).
    :ivar tunnel_arn: the tunnel ARN (``Fn::GetAtt TunnelArn``).
    :ivar thing_name: the name of the thing the tunnel reaches.
    :ivar source_token_secret: the secret that holds the source access token.
    :ivar destination_token_secret: the secret that holds the destination access token, or None.
    :ivar secret_name_prefix: the ``secret_name_prefix`` argument, or None.
    :ivar encryption_key: the secrets' customer managed KMS key, or None.
    :ivar resource: the ``Custom::IoTSecureTunnel`` custom resource.
    :ivar handler: the stack's handler function construct.
    :ivar device_policy: the device's tunnel notification policy, or None.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        thing: iot.CfnThing | str,
        services: Sequence[str],
        description: str | None = None,
        max_lifetime: Duration | None = None,
        tags: Mapping[str, str] | None = None,
        encryption_key: kms.IKey | None = None,
        rotation_trigger: str | None = None,
        create_destination_secret: bool = True,
        removal_policy: RemovalPolicy = RemovalPolicy.DESTROY,
        device_policy: bool = False,
        device_certificate_arn: str | None = None,
        secret_name_prefix: str | None = None,
        outputs: bool = False,
    ) -> None:
        """Open a secure tunnel to ``thing``.

        :param scope: the parent construct.
        :param construct_id: the construct id.
        :param thing: the IoT thing to reach: an ``aws_iot.CfnThing`` (the tunnel then depends on
            it) or the name of an existing thing (1-128 characters of ``[a-zA-Z0-9:_-]``).
        :param services: 1 to 3 unique service names the destination's local proxy maps to local
            ports, e.g. ``["SSH"]`` or ``["SSH", "HTTP"]`` (1-128 characters of ``[a-zA-Z0-9:_-]``).
        :param description: tunnel description, 1-2048 characters with no control characters.
            Changing it opens a new tunnel. Default: none.
        :param max_lifetime: how long the tunnel stays open, in whole minutes from 1 minute to
            12 hours; AWS closes it then. Changing it opens a new tunnel. Default: 12 hours.
        :param tags: tags of the tunnel: at most 196 (the handler adds 4 of its own), keys of
            1-128 and values of 0-256 letters, digits, spaces or ``_.:/=+-@``, no key starting with
            ``aws:`` or ``iot-secure-tunnel:``. Changed in place. Default: none.
        :param encryption_key: customer managed KMS key for both secrets: the key itself
            (``aws_kms.Key``, or ``aws_kms.Key.from_key_arn`` for an existing one), not an alias;
            the handler may use it through Secrets Manager only. Its key policy must let IAM
            policies of the account grant its use (the default of ``aws_kms.Key``). Default: the
            AWS managed key of Secrets Manager (``aws/secretsmanager``).
        :param rotation_trigger: any string; changing it rotates both tokens (tokens are
            single-use: rotate to reconnect). Default: none.
        :param create_destination_secret: whether to keep the destination token in a secret too
            (AWS also sends it to the thing over MQTT, on ``$aws/things/<thing>/tunnels/notify``).
            Default: True.
        :param removal_policy: what happens to the secrets when they leave the stack. Default:
            ``RemovalPolicy.DESTROY`` (the tunnel is closed then, its tokens are worthless).
        :param device_policy: create the IoT policy the device needs to receive its tunnel
            notification (connect as the thing, subscribe to and receive from
            ``$aws/things/<thing>/tunnels/notify``). Default: False.
        :param device_certificate_arn: ARN of the device's IoT certificate,
            ``arn:<partition>:iot:<region>:<account>:cert/<64 lowercase hex digits>``; the device
            policy is attached to it (implies ``device_policy``). Default: None.
        :param secret_name_prefix: name the secrets ``<prefix>source-token`` and
            ``<prefix>destination-token`` (1-495 characters of ``[A-Za-z0-9/_+=.@-]``, e.g.
            ``iot-secure-tunnel/my-device/``), unique per tunnel; Secrets Manager may then invoke
            the handler only for secrets named with the prefix. A deleted secret's name stays
            taken during its recovery window. Changing it replaces the secrets and opens a new
            tunnel bound to them. Default: None, ``tunnel-tokens/<stack UUID>/<id>-<hash>/``
            (one rotation permission serves every such secret of the stack; a recreated stack
            has a new UUID).
        :param outputs: add stack outputs with the tunnel's id and ARN, the thing's name and the
            secrets' ARNs (never a token). Default: False.
        :raises ValueError: an argument is outside the allowed values (the message names it).
        :raises TypeError: an argument has the wrong type.
        """
        _validate_thing(thing)
        service_names = validate_services(services)
        minutes = lifetime_minutes(max_lifetime)
        tag_items = validate_tags(tags)
        _validate_the_others(
            scope,
            description=description,
            encryption_key=encryption_key,
            rotation_trigger=rotation_trigger,
            device_certificate_arn=device_certificate_arn,
            secret_name_prefix=secret_name_prefix,
            outputs=outputs,
        )
        super().__init__(scope, construct_id)
        self.secret_name_prefix = secret_name_prefix
        self.encryption_key = encryption_key

        stack = Stack.of(self)
        if isinstance(thing, iot.CfnThing):
            self.thing_name: str = thing.ref
            thing_arn = thing.attr_arn
        else:
            self.thing_name = thing
            thing_arn = stack.format_arn(service="iot", resource="thing", resource_name=thing)

        self.handler = SecureTunnelHandler.of(self)
        name_prefix = (
            secret_name_prefix
            if secret_name_prefix is not None
            else f"{self.handler.default_secret_name_prefix}{self._name_part()}/"
        )
        source_secret = self._token_secret(_SOURCE, name_prefix, encryption_key, removal_policy)
        destination_secret = (
            self._token_secret(_DESTINATION, name_prefix, encryption_key, removal_policy)
            if create_destination_secret
            else None
        )
        self.source_token_secret: secretsmanager.ISecret = source_secret
        self.destination_token_secret: secretsmanager.ISecret | None = destination_secret
        secrets = [s for s in (source_secret, destination_secret) if s is not None]

        self.handler.authorize(thing_arn=thing_arn, secrets=secrets, encryption_key=encryption_key)

        properties: dict[str, object] = {
            "DestinationConfig": {"ThingName": self.thing_name, "Services": list(service_names)},
            "TimeoutConfig": {"MaxLifetimeTimeoutMinutes": _lifetime_property(minutes, max_lifetime)},
            "SourceAccessTokenSecretArn": self.source_token_secret.secret_arn,
        }
        if self.destination_token_secret is not None:
            properties["DestinationAccessTokenSecretArn"] = self.destination_token_secret.secret_arn
        if description is not None:
            properties["Description"] = description
        if tag_items:
            properties["Tags"] = [{"Key": k, "Value": v} for k, v in tag_items]
        if rotation_trigger is not None:
            properties["RotationTrigger"] = rotation_trigger

        self.resource = CustomResource(
            self,
            "Resource",
            resource_type=RESOURCE_TYPE,
            service_token=self.handler.service_token,
            service_timeout=SERVICE_TIMEOUT,
            properties=properties,
        )
        # The handler's permissions exist before the first event and stay until the last. (The
        # tunnel opens after a CfnThing and closes before it through the Ref in its properties.)
        self.resource.node.add_dependency(self.handler.role)

        self.tunnel_id: str = self.resource.ref
        self.tunnel_arn: str = self.resource.get_att_string("TunnelArn")

        for secret in secrets:
            attach_rotation(secret, self.handler, self.resource, secret_name_prefix)
        self.device_policy: DeviceNotifyPolicy | None = (
            DeviceNotifyPolicy(
                self, "DevicePolicy", thing_name=self.thing_name, certificate_arn=device_certificate_arn
            )
            if device_policy or device_certificate_arn is not None
            else None
        )
        if outputs:
            self._add_outputs()

    def _name_part(self) -> str:
        """This tunnel's part of a default secret name: its construct id (characters a secret
        name allows) and the start of its unique address."""
        readable = re.sub(f"[^{SECRET_NAME_CHARACTERS}]", "-", self.node.id)[:NAME_PART_LENGTH]
        return f"{readable}-{self.node.addr[:8]}"

    def _token_secret(
        self,
        side: _TokenSide,
        name_prefix: str,
        encryption_key: kms.IKey | None,
        removal_policy: RemovalPolicy,
    ) -> secretsmanager.Secret:
        return secretsmanager.Secret(
            self,
            side.construct_id,
            secret_name=f"{name_prefix}{side.name_suffix}",
            description=(
                f"Access token ({side.mode}; {side.use}) of the IoT secure tunnel {self.node.path}: "
                f"{_VALUE_DESCRIPTION}"
            ),
            encryption_key=encryption_key,
            secret_string_value=SecretValue.unsafe_plain_text(PENDING_SECRET_VALUE),
            removal_policy=removal_policy,
        )

    def _add_outputs(self) -> None:
        """Outputs that name the tunnel and its secrets, never a token."""
        CfnOutput(
            self, "TunnelId", value=self.tunnel_id, description=f"Id of the secure tunnel {self.node.path}"
        )
        CfnOutput(
            self, "TunnelArn", value=self.tunnel_arn, description=f"ARN of the secure tunnel {self.node.path}"
        )
        CfnOutput(self, "ThingName", value=self.thing_name, description="The IoT thing the tunnel reaches")
        CfnOutput(
            self,
            "SourceTokenSecretArn",
            value=self.source_token_secret.secret_arn,
            description="Secret with the source (operator) token: secure-tunnel connect --secret-id <this>",
        )
        if self.destination_token_secret is not None:
            CfnOutput(
                self,
                "DestinationTokenSecretArn",
                value=self.destination_token_secret.secret_arn,
                description="Secret with the destination (device) token",
            )

    def grant_read_source_token(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` read the source access token (GetSecretValue, DescribeSecret, and
        ``kms:Decrypt`` through Secrets Manager only when a customer managed key is used).

        Every statement goes into the grantee's own policy, never into the key's: a key of
        another stack then creates no dependency cycle (CDK's ``Secret.grant_read`` edits the key
        policy, aws/aws-cdk#14213), and the key policy must let the account's IAM policies grant
        its use (the default of ``aws_kms.Key``), as ``encryption_key`` requires anyway.

        :param grantee: the principal to grant, e.g. an operator role.
        """
        return self._grant_read(self.source_token_secret, grantee)

    def grant_rotate_source_token(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` get a fresh source token: read the secret and ask Secrets Manager to
        rotate it (``secretsmanager:RotateSecret``; the RotateSecret API also asks the caller
        for ``lambda:InvokeFunction`` on the rotation function).

        :param grantee: the principal to grant, e.g. an operator role.
        :returns: one grant that combines the three (read, rotate, invoke).
        """
        read = self.grant_read_source_token(grantee)
        rotate = iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["secretsmanager:RotateSecret"],
            resource_arns=[self.source_token_secret.secret_arn],
        )
        # The function itself, not grant_invoke's extra "<arn>:*" (every version and alias).
        invoke = iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["lambda:InvokeFunction"],
            resource_arns=[self.handler.function.function_arn],
        )
        return read.combine(rotate).combine(invoke)

    def grant_read_destination_token(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` read the destination access token (as :meth:`grant_read_source_token`).

        :param grantee: the principal to grant, e.g. a device provisioning role.
        :raises ValueError: the tunnel was created with ``create_destination_secret=False``.
        """
        if self.destination_token_secret is None:
            raise ValueError(
                "SecureTunnel has no destination token secret (create_destination_secret=False); "
                "the device receives its token over MQTT on $aws/things/<thing>/tunnels/notify"
            )
        return self._grant_read(self.destination_token_secret, grantee)

    def _grant_read(self, secret: secretsmanager.ISecret, grantee: iam.IGrantable) -> iam.Grant:
        read = iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            resource_arns=[secret.secret_arn],
        )
        if self.encryption_key is None:
            return read
        decrypt = iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["kms:Decrypt"],
            resource_arns=[self.encryption_key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": SECRETS_MANAGER_ENDPOINT}},
        )
        return read.combine(decrypt)


def _lifetime_property(minutes: int | None, max_lifetime: Duration | None) -> str:
    """``MaxLifetimeTimeoutMinutes`` as CloudFormation delivers it (a string); a token stays one."""
    if minutes is not None:
        return str(minutes)
    try:
        token = max_lifetime.to_minutes() if max_lifetime is not None else None
    except Exception as exc:  # jsii raises a plain error for a token of another unit
        raise ValueError(
            "SecureTunnel argument 'max_lifetime' must be given in minutes (Duration.minutes(...)) "
            "when its value is a token"
        ) from exc
    if token is None or not is_unresolved(token):
        raise ValueError(f"SecureTunnel argument 'max_lifetime' could not be resolved; got {max_lifetime!r}")
    return Tokenization.stringify_number(token)


def _validate_thing(thing: iot.CfnThing | str) -> None:
    """A thing name, or a ``CfnThing`` whose name, if it has one, is valid."""
    if not isinstance(thing, iot.CfnThing):
        validate_thing_name(thing)
    elif thing.thing_name is not None:
        validate_thing_name(thing.thing_name)


def _validate_the_others(
    scope: Construct,
    *,
    description: str | None,
    encryption_key: kms.IKey | None,
    rotation_trigger: str | None,
    device_certificate_arn: str | None,
    secret_name_prefix: str | None,
    outputs: bool,
) -> None:
    """Check the arguments that the constructor does not use as validated values."""
    validate_description(description)
    validate_encryption_key(encryption_key)
    validate_rotation_trigger(rotation_trigger)
    validate_device_certificate_arn(device_certificate_arn)
    validate_secret_name_prefix(secret_name_prefix)
    _check_prefix_is_free(scope, secret_name_prefix)
    if not isinstance(outputs, bool):
        raise TypeError(f"SecureTunnel argument 'outputs' must be True or False; got {outputs!r}")


def _check_prefix_is_free(scope: Construct, secret_name_prefix: str | None) -> None:
    """Two tunnels of one stack with one prefix would name two secrets alike: refuse at synth time."""
    if secret_name_prefix is None or is_unresolved(secret_name_prefix):
        return
    for other in Stack.of(scope).node.find_all():
        if isinstance(other, SecureTunnel) and other.secret_name_prefix == secret_name_prefix:
            raise ValueError(
                f"SecureTunnel argument 'secret_name_prefix' must be unique per tunnel; got "
                f"{secret_name_prefix!r}, already used by {other.node.path}"
            )
