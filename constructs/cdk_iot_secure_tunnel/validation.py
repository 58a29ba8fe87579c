"""Synth-time checks of :class:`~cdk_iot_secure_tunnel.SecureTunnel` (and provider stack) arguments.

The limits are the resource's contract (``secure_tunnel_handler.contract``, which the handler's
property parsing imports too); this module adds the CDK side: tokens pass unchecked, and each
message names the argument.

Every check raises :class:`TypeError` for a value of the wrong type and :class:`ValueError` for a
value outside the allowed ones, with a message that names the argument and the allowed values.
Values that are unresolved CDK tokens are only known at deploy time: they are not checked here
(the handler checks them then).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aws_cdk import Duration, Token

from secure_tunnel_handler import contract

if TYPE_CHECKING:
    from aws_cdk import aws_kms as kms

#: Names of the token secrets under ``secret_name_prefix``: ``<prefix>source-token`` and
#: ``<prefix>destination-token``. Neither ends in a hyphen and six characters, which Secrets
#: Manager would take for the random suffix of a partial ARN (CreateSecret, ``Name``).
SOURCE_SECRET_NAME_SUFFIX = "source-token"  # noqa: S105 - a name, not a secret
DESTINATION_SECRET_NAME_SUFFIX = "destination-token"  # noqa: S105 - a name, not a secret
#: Characters and length of a secret name (Secrets Manager API reference, CreateSecret ``Name``).
SECRET_NAME_CHARACTERS = "A-Za-z0-9/_+=.@-"  # noqa: S105 - a character class, not a secret
MAX_SECRET_NAME_LENGTH = 512
MAX_SECRET_NAME_PREFIX_LENGTH = MAX_SECRET_NAME_LENGTH - len(DESTINATION_SECRET_NAME_SUFFIX)
_SECRET_NAME_PREFIX_RE = re.compile(f"[{SECRET_NAME_CHARACTERS}]{{1,{MAX_SECRET_NAME_PREFIX_LENGTH}}}")

_NAME_RULE = f"1-{contract.MAX_NAME_LENGTH} characters of [{contract.NAME_CHARACTERS}]"
_IOT_ARN_PREFIX = r"arn:aws(-[a-z]+)*:iot:[a-z]{2}(-[a-z]+)+-[0-9]+:[0-9]{12}:"
# A certificate id is 64 hex digits (botocore model ``iot``: CertificateId), lowercase as AWS IoT
# writes it in the certificate's ARN.
_CERTIFICATE_ARN_RE = re.compile(f"{_IOT_ARN_PREFIX}cert/[0-9a-f]{{64}}")
# A thing group name, or an ArnLike pattern of names (``*``, ``?``).
_THING_GROUP_ARN_RE = re.compile(
    f"{_IOT_ARN_PREFIX}thinggroup/[*?{contract.NAME_CHARACTERS}]{{1,{contract.MAX_NAME_LENGTH}}}"
)


def is_unresolved(value: Any) -> bool:
    """Whether ``value`` is (or contains) a CDK token that only resolves at deploy time."""
    if isinstance(value, Duration):
        return bool(value.is_unresolved())
    return bool(Token.is_unresolved(value))


def _fail(argument: str, rule: str, value: Any, owner: str = "SecureTunnel") -> ValueError:
    """A value outside the allowed ones: names the argument, the rule and the value."""
    return ValueError(_message(argument, rule, repr(value), owner))


def _wrong_type(argument: str, rule: str, value: Any, owner: str = "SecureTunnel") -> TypeError:
    """A value of the wrong type: names the argument, the rule and the value's type."""
    return TypeError(_message(argument, rule, f"{value!r} ({type(value).__name__})", owner))


def _message(argument: str, rule: str, got: str, owner: str) -> str:
    return f"{owner} argument '{argument}' must be {rule}; got {got}"


def validate_thing_name(name: str) -> None:
    """The thing name, as IoT Secure Tunneling accepts it: 1-128 characters of ``[a-zA-Z0-9:_-]``."""
    if not isinstance(name, str):
        raise _wrong_type("thing", "an aws_iot.CfnThing or a thing name", name)
    if is_unresolved(name):
        return
    if not contract.NAME_RE.fullmatch(name):
        raise _fail("thing", f"a thing name of {_NAME_RULE}", name)


def validate_services(services: Sequence[str]) -> tuple[str, ...]:
    """1 to 3 unique service names (e.g. ``SSH``, ``RDP``, ``HTTP``) of 1-128 ``[a-zA-Z0-9:_-]``."""
    rule = f"a list of 1 to {contract.MAX_SERVICES} unique service names of {_NAME_RULE} (e.g. ['SSH'])"
    if isinstance(services, str | bytes) or not isinstance(services, Sequence):
        raise _wrong_type("services", rule, services)
    names = tuple(services)
    if is_unresolved(list(names)):  # a list token, e.g. a CommaDelimitedList parameter
        return names
    if not names:
        raise ValueError(_message("services", rule, "none", "SecureTunnel"))
    if len(names) > contract.MAX_SERVICES:
        raise ValueError(
            _message("services", rule, f"{len(names)} given, at most {contract.MAX_SERVICES}", "SecureTunnel")
        )
    for name in names:
        if not isinstance(name, str):
            raise _wrong_type("services", rule, name)
        if not is_unresolved(name) and not contract.NAME_RE.fullmatch(name):
            raise _fail("services", rule, name)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(_message("services", rule, f"duplicate {duplicates[0]!r}", "SecureTunnel"))
    return names


def validate_description(description: str | None) -> None:
    """1-2048 characters, no control (Unicode category C) characters."""
    if description is None or is_unresolved(description):
        return
    rule = f"1-{contract.MAX_DESCRIPTION_LENGTH} characters with no control characters"
    if not isinstance(description, str):
        raise _wrong_type("description", rule, description)
    fits = 1 <= len(description) <= contract.MAX_DESCRIPTION_LENGTH
    if not fits or contract.has_control_character(description):
        shown = description if len(description) <= 80 else f"{description[:40]}... ({len(description)} chars)"
        raise _fail("description", rule, shown)


def lifetime_minutes(max_lifetime: Duration | None) -> int | None:
    """The tunnel lifetime in whole minutes, 1 to 720 (12 hours); None when it is a token."""
    if max_lifetime is None:
        return contract.MAX_LIFETIME_MINUTES
    rule = (
        f"a Duration of whole minutes from {contract.MIN_LIFETIME_MINUTES} minute "
        f"to {contract.MAX_LIFETIME_MINUTES // 60} hours (e.g. Duration.hours(2))"
    )
    if not isinstance(max_lifetime, Duration):
        raise _wrong_type("max_lifetime", rule, max_lifetime)
    if is_unresolved(max_lifetime):
        return None
    seconds = float(max_lifetime.to_seconds(integral=False))
    minutes = seconds / 60
    if seconds % 60 != 0 or not contract.MIN_LIFETIME_MINUTES <= minutes <= contract.MAX_LIFETIME_MINUTES:
        raise _fail("max_lifetime", rule, max_lifetime.to_human_string())
    return int(seconds // 60)


def validate_tags(tags: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """At most 196 tags; keys 1-128 and values 0-256 characters of letters, digits, spaces or
    ``_.:/=+-@``; no key starting with ``aws:`` or ``iot-secure-tunnel:``. Sorted by key."""
    if tags is None:
        return ()
    if not isinstance(tags, Mapping):
        raise _wrong_type("tags", "a mapping of tag keys to values", tags)
    if len(tags) > contract.MAX_USER_TAGS:
        handler_tags = (
            f"the handler adds {contract.HANDLER_TAG_COUNT} of the API's {contract.MAX_TUNNEL_TAGS}"
        )
        rule = f"at most {contract.MAX_USER_TAGS} tags ({handler_tags})"
        raise _fail("tags", rule, f"{len(tags)} tags")
    key_rule = f"a mapping whose keys are 1-{contract.MAX_TAG_KEY_LENGTH} {contract.TAG_TEXT_RULE}"
    value_rule = f"a mapping whose values are 0-{contract.MAX_TAG_VALUE_LENGTH} {contract.TAG_TEXT_RULE}"
    for key, value in tags.items():
        if not isinstance(key, str):
            raise _wrong_type("tags", key_rule, key)
        key_fits = 1 <= len(key) <= contract.MAX_TAG_KEY_LENGTH and contract.is_tag_text(key)
        if not (is_unresolved(key) or key_fits):
            raise _fail("tags", key_rule, key)
        if not is_unresolved(key) and key.lower().startswith(contract.RESERVED_TAG_PREFIXES):
            reserved = " or ".join(repr(p) for p in contract.RESERVED_TAG_PREFIXES)
            raise _fail("tags", f"a mapping with no key starting with {reserved} (reserved)", key)
        if not isinstance(value, str):
            raise _wrong_type("tags", value_rule, {key: value})
        value_fits = len(value) <= contract.MAX_TAG_VALUE_LENGTH and contract.is_tag_text(value)
        if not (is_unresolved(value) or value_fits):
            raise _fail("tags", value_rule, {key: value})
    return tuple(sorted(tags.items()))


def validate_rotation_trigger(rotation_trigger: str | None) -> None:
    """Any string (changing it rotates the tokens); None for none."""
    if rotation_trigger is not None and not isinstance(rotation_trigger, str):
        raise _wrong_type("rotation_trigger", "a string (change it to rotate the tokens)", rotation_trigger)


def validate_encryption_key(encryption_key: kms.IKey | None) -> None:
    """The KMS key itself, not an alias: IAM policies on an alias ARN do not control access to the
    key (KMS developer guide, "Using aliases to control access to KMS keys"); None for none."""
    # jsii interfaces allow no isinstance check (an imported alias is a dynamic proxy): an alias
    # is the IKey that has an alias name.
    if encryption_key is not None and getattr(encryption_key, "alias_name", None) is not None:
        rule = (
            "the KMS key itself, not an alias (IAM policies on an alias ARN do not control access to "
            "the key): pass the aws_kms.Key, or aws_kms.Key.from_key_arn(...) for an existing key"
        )
        raise _fail("encryption_key", rule, f"the alias {encryption_key.node.path}")


def validate_device_certificate_arn(certificate_arn: str | None) -> None:
    """``arn:<partition>:iot:<region>:<account>:cert/<64 lowercase hex digits>``; None for none."""
    if certificate_arn is None or is_unresolved(certificate_arn):
        return
    rule = "an IoT certificate ARN, arn:<partition>:iot:<region>:<account>:cert/<64 lowercase hex digits>"
    if not isinstance(certificate_arn, str):
        raise _wrong_type("device_certificate_arn", rule, certificate_arn)
    if not _CERTIFICATE_ARN_RE.fullmatch(certificate_arn):
        raise _fail("device_certificate_arn", rule, certificate_arn)


def validate_secret_name_prefix(prefix: str | None) -> None:
    """1-495 characters of ``[A-Za-z0-9/_+=.@-]``, so that ``<prefix>destination-token`` is a secret
    name of at most 512 characters; None for generated names."""
    if prefix is None or is_unresolved(prefix):
        return
    rule = (
        f"a secret name prefix of 1-{MAX_SECRET_NAME_PREFIX_LENGTH} characters of [{SECRET_NAME_CHARACTERS}] "
        "(e.g. 'iot-secure-tunnel/my-device/')"
    )
    if not isinstance(prefix, str):
        raise _wrong_type("secret_name_prefix", rule, prefix)
    if not _SECRET_NAME_PREFIX_RE.fullmatch(prefix):
        raise _fail("secret_name_prefix", rule, prefix)


def validate_thing_group_arns(thing_group_arns: Sequence[str] | None) -> tuple[str, ...] | None:
    """At least one IoT thing group ARN, ``arn:<partition>:iot:<region>:<account>:thinggroup/<name>``,
    whose name (1-128 characters of ``[a-zA-Z0-9:_-]``) may hold ``*`` and ``?`` wildcards; None
    for none. A token (e.g. a ``CommaDelimitedList`` parameter) is passed through unchecked."""
    if thing_group_arns is None:
        return None
    rule = (
        "a non-empty list of IoT thing group ARNs, arn:<partition>:iot:<region>:<account>:thinggroup/<name> "
        f"(name: {_NAME_RULE}, * and ? as wildcards)"
    )
    if isinstance(thing_group_arns, str | bytes) or not isinstance(thing_group_arns, Sequence):
        raise _wrong_type("thing_group_arns", rule, thing_group_arns, owner="SecureTunnelProviderStack")
    arns = tuple(thing_group_arns)
    if is_unresolved(list(arns)):  # a list token
        return arns
    for arn in arns:
        if not isinstance(arn, str):
            raise _wrong_type("thing_group_arns", rule, arn, owner="SecureTunnelProviderStack")
    bad = [arn for arn in arns if not (is_unresolved(arn) or _THING_GROUP_ARN_RE.fullmatch(arn))]
    if not arns or bad:
        raise _fail("thing_group_arns", rule, bad or list(arns), owner="SecureTunnelProviderStack")
    return arns
