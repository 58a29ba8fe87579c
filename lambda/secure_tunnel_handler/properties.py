"""Parsing and validation of the ``Custom::IoTSecureTunnel`` resource properties.

CloudFormation delivers every scalar as a string (``"720"``), so numbers are parsed here. The
limits and tag keys are the resource's contract (:mod:`.contract`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .contract import (
    DEFAULT_LIFETIME_MINUTES,
    MAX_DESCRIPTION_LENGTH,
    MAX_LIFETIME_MINUTES,
    MAX_NAME_LENGTH,
    MAX_SERVICES,
    MAX_TAG_KEY_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    MAX_USER_TAGS,
    MIN_LIFETIME_MINUTES,
    NAME_CHARACTERS,
    NAME_RE,
    RESERVED_TAG_PREFIXES,
    SECRET_TAG_KEYS,
    TAG_TEXT_RULE,
    has_control_character,
    is_tag_text,
)

SECRET_ARN_RE = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+")
# The suffix Secrets Manager appends to a secret's name in its full ARN: "-" and 6 characters.
SECRET_ARN_SUFFIX_RE = re.compile(r"-[A-Za-z0-9]{6}$")
# ASCII digits only: re's \d and int() also take other scripts' digits ("\u0663" is 3), which
# CloudFormation and the tunneling API do not.
DIGITS_RE = re.compile(r"[0-9]{1,6}")

KNOWN_PROPERTIES = {
    "ServiceToken",
    "ServiceTimeout",
    "DestinationConfig",
    "Description",
    "Tags",
    "TimeoutConfig",
    "SourceAccessTokenSecretArn",
    "DestinationAccessTokenSecretArn",
    "RotationTrigger",
}


class InvalidProperties(ValueError):
    """The template's properties are invalid; the message lists each problem."""


@dataclass(frozen=True)
class TunnelSpec:
    """What a ``Custom::IoTSecureTunnel`` resource asks for, validated."""

    thing_name: str
    services: tuple[str, ...]
    description: str | None
    tags: tuple[tuple[str, str], ...]
    max_lifetime_minutes: int
    source_secret_arn: str
    destination_secret_arn: str | None
    rotation_trigger: str | None

    @property
    def secret_arns(self) -> tuple[str, ...]:
        """The secrets this resource writes, source first."""
        return tuple(a for a in (self.source_secret_arn, self.destination_secret_arn) if a)

    @property
    def binding(self) -> dict[str, str]:
        """The tags that bind a tunnel to this resource's secrets (see ``SECRET_TAG_KEYS``)."""
        arns = {"source": self.source_secret_arn, "destination": self.destination_secret_arn}
        return {SECRET_TAG_KEYS[mode]: binding_of(arn) for mode, arn in arns.items() if arn}


def parse_properties(raw: Mapping[str, Any]) -> TunnelSpec:
    """Validate raw resource properties; raise InvalidProperties naming every bad property."""
    problems: list[str] = []
    if not isinstance(raw, Mapping):
        raise InvalidProperties("Invalid properties: expected an object")
    unknown = sorted(set(raw) - KNOWN_PROPERTIES)
    if unknown:
        problems.append(f"unknown properties {', '.join(unknown)}")
    thing, services = _destination(raw.get("DestinationConfig"), problems)
    spec = TunnelSpec(
        thing_name=thing,
        services=services,
        description=_description(raw.get("Description"), problems),
        tags=_tags(raw.get("Tags"), problems),
        max_lifetime_minutes=_lifetime(raw.get("TimeoutConfig"), problems),
        source_secret_arn=_secret_arn(
            raw.get("SourceAccessTokenSecretArn"), "SourceAccessTokenSecretArn", problems
        )
        or "",
        destination_secret_arn=_optional_secret_arn(raw.get("DestinationAccessTokenSecretArn"), problems),
        rotation_trigger=_optional_scalar(raw.get("RotationTrigger"), "RotationTrigger", problems),
    )
    if spec.destination_secret_arn and same_secret(spec.destination_secret_arn, spec.source_secret_arn):
        problems.append(
            "DestinationAccessTokenSecretArn and SourceAccessTokenSecretArn must name two secrets "
            "(these name one, in full or partial ARN form)"
        )
    if problems:
        raise InvalidProperties(_summary(problems))
    return spec


def secret_arns_of(raw: Mapping[str, Any]) -> dict[str, str]:
    """The well-formed secret ARNs in possibly invalid properties, by client mode ("source",
    "destination"; used on Delete)."""
    if not isinstance(raw, Mapping):
        return {}
    keys = {"source": "SourceAccessTokenSecretArn", "destination": "DestinationAccessTokenSecretArn"}
    return {
        mode: value
        for mode, key in keys.items()
        if isinstance(value := raw.get(key), str) and SECRET_ARN_RE.fullmatch(value)
    }


def thing_names_of(raw: Any) -> tuple[str, ...]:
    """The well-formed thing name in possibly invalid properties (used to find purged tunnels)."""
    destination = raw.get("DestinationConfig") if isinstance(raw, Mapping) else None
    thing = destination.get("ThingName") if isinstance(destination, Mapping) else None
    return (thing,) if isinstance(thing, str) and NAME_RE.fullmatch(thing) else ()


def canonical_secret_arn(arn: str) -> str:
    """The secret's ARN without the 6 random characters Secrets Manager appends to its name
    (``-AbCdEf``), so that a full and a partial ARN of one secret compare equal."""
    return SECRET_ARN_SUFFIX_RE.sub("", arn)


def binding_of(secret_arn: str) -> str:
    """The tag value that binds a tunnel to a secret: the secret's canonical ARN, or
    ``sha256:<hex>`` of it when the ARN is longer than a tag value."""
    canonical = canonical_secret_arn(secret_arn)
    if len(canonical) <= MAX_TAG_VALUE_LENGTH:
        return canonical
    return f"sha256:{hashlib.sha256(canonical.encode()).hexdigest()}"


def same_secret(a: str, b: str) -> bool:
    """Whether two ARNs, full or partial, may name one secret. A partial ARN whose name ends
    like a suffix is ambiguous: it counts as the same, which refuses rather than mixes tokens."""
    return bool({a, canonical_secret_arn(a)} & {b, canonical_secret_arn(b)})


def _summary(problems: Sequence[str]) -> str:
    # As many problems as fit in a CloudFormation reason (the first one always does).
    shown = [problems[0]]
    for problem in problems[1:]:
        if len("; ".join([*shown, problem])) > 180:
            break
        shown.append(problem)
    more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
    return f"Invalid properties: {'; '.join(shown)}{more}. Nothing was changed."


def _destination(value: Any, problems: list[str]) -> tuple[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        problems.append("DestinationConfig is required: {ThingName, Services}")
        return "", ()
    unknown = sorted(set(value) - {"ThingName", "Services"})
    if unknown:
        problems.append(f"unknown properties DestinationConfig.{', DestinationConfig.'.join(unknown)}")
    thing = value.get("ThingName")
    if not isinstance(thing, str) or not NAME_RE.fullmatch(thing):
        problems.append("DestinationConfig.ThingName must be 1-128 characters of [a-zA-Z0-9:_-]")
        thing = ""
    return thing, _services(value.get("Services"), problems)


def _services(value: Any, problems: list[str]) -> tuple[str, ...]:
    allowed = f"1 to {MAX_SERVICES} unique names of 1-{MAX_NAME_LENGTH} characters [{NAME_CHARACTERS}]"
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_SERVICES:
        problems.append(f"DestinationConfig.Services must be a list of {allowed}")
        return ()
    if not all(isinstance(s, str) and NAME_RE.fullmatch(s) for s in value) or len(set(value)) != len(value):
        problems.append(f"DestinationConfig.Services must be {allowed}")
        return ()
    return tuple(value)


def _description(value: Any, problems: list[str]) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_DESCRIPTION_LENGTH
        or has_control_character(value)
    ):
        problems.append(
            f"Description must be 1-{MAX_DESCRIPTION_LENGTH} characters with no control characters"
        )
        return None
    return value


def _tags(value: Any, problems: list[str]) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_USER_TAGS:
        problems.append(f"Tags must be a list of at most {MAX_USER_TAGS} {{Key, Value}} objects")
        return ()
    tags: list[tuple[str, str]] = []
    for index, tag in enumerate(value):
        problem = _tag_problem(tag)
        if problem:
            problems.append(f"Tags[{index}] {problem}")
        else:
            tags.append((tag["Key"], tag["Value"]))
    if len({k for k, _ in tags}) != len(tags):
        problems.append("Tags must not repeat a Key")
    return tuple(tags)


def _tag_problem(tag: Any) -> str | None:
    if not isinstance(tag, Mapping) or set(tag) != {"Key", "Value"}:
        return "must be an object with exactly Key and Value"
    key, val = tag["Key"], tag["Value"]
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_TAG_KEY_LENGTH or not is_tag_text(key):
        return f"Key must be 1-{MAX_TAG_KEY_LENGTH} {TAG_TEXT_RULE}"
    if key.lower().startswith(RESERVED_TAG_PREFIXES):
        return f"Key must not start with {' or '.join(RESERVED_TAG_PREFIXES)} (reserved)"
    if not isinstance(val, str) or len(val) > MAX_TAG_VALUE_LENGTH or not is_tag_text(val):
        return f"Value must be 0-{MAX_TAG_VALUE_LENGTH} {TAG_TEXT_RULE}"
    return None


def _lifetime(value: Any, problems: list[str]) -> int:
    if value is None:
        return DEFAULT_LIFETIME_MINUTES
    if not isinstance(value, Mapping) or set(value) - {"MaxLifetimeTimeoutMinutes"}:
        problems.append("TimeoutConfig must be an object with only MaxLifetimeTimeoutMinutes")
        return DEFAULT_LIFETIME_MINUTES
    minutes = value.get("MaxLifetimeTimeoutMinutes", str(DEFAULT_LIFETIME_MINUTES))
    # CloudFormation sends "720"; a template author testing the handler directly may send 720.
    if isinstance(minutes, int) and not isinstance(minutes, bool):
        minutes = str(minutes)
    lifetimes = range(MIN_LIFETIME_MINUTES, MAX_LIFETIME_MINUTES + 1)
    if not isinstance(minutes, str) or not DIGITS_RE.fullmatch(minutes) or int(minutes) not in lifetimes:
        problems.append(
            "TimeoutConfig.MaxLifetimeTimeoutMinutes must be a whole number from "
            f"{MIN_LIFETIME_MINUTES} to {MAX_LIFETIME_MINUTES}"
        )
        return DEFAULT_LIFETIME_MINUTES
    return int(minutes)


def _secret_arn(value: Any, name: str, problems: list[str]) -> str | None:
    if not isinstance(value, str) or not SECRET_ARN_RE.fullmatch(value):
        problems.append(f"{name} must be the ARN of a Secrets Manager secret (arn:aws:secretsmanager:...)")
        return None
    return value


def _optional_secret_arn(value: Any, problems: list[str]) -> str | None:
    if value is None or value == "":
        return None
    return _secret_arn(value, "DestinationAccessTokenSecretArn", problems)


def _optional_scalar(value: Any, name: str, problems: list[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        problems.append(f"{name} must be a string")
        return None
    return str(value)
