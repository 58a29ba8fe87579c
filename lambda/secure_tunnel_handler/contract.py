"""The rules of the ``Custom::IoTSecureTunnel`` resource, defined once (standard library only).

The handler's property parsing and the construct library's synth-time validation both import
them, so a template that synthesizes is one the handler accepts. The limits are those of the IoT
Secure Tunneling API (botocore model ``iotsecuretunneling``) and of the handler, which adds tags
of its own to every tunnel. The test rig's emulator keeps its own copy of the service's limits:
it is the independent judge.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

#: Prefix of the tag keys the handler sets on every tunnel it opens (users may not set them).
HANDLER_TAG_PREFIX = "iot-secure-tunnel:"
#: Value: the id of the stack whose handler opened the tunnel.
OWNER_TAG_KEY = f"{HANDLER_TAG_PREFIX}owner"
#: Value: the CloudFormation request that opened the tunnel (finds it again on a redelivery).
REQUEST_TAG_KEY = f"{HANDLER_TAG_PREFIX}request-id"
#: The secrets a tunnel is bound to, by client mode: its tokens go into no other.
SECRET_TAG_KEYS = {
    "source": f"{HANDLER_TAG_PREFIX}source-secret",
    "destination": f"{HANDLER_TAG_PREFIX}destination-secret",
}
#: Tag key prefixes that users may not set: AWS's own, and the handler's.
RESERVED_TAG_PREFIXES = ("aws:", HANDLER_TAG_PREFIX)
#: The API accepts 200 tags on a tunnel; the handler's own take 4 of them.
MAX_TUNNEL_TAGS = 200
HANDLER_TAG_COUNT = 2 + len(SECRET_TAG_KEYS)
MAX_USER_TAGS = MAX_TUNNEL_TAGS - HANDLER_TAG_COUNT
MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 256
#: The tag text rule in words (the API's pattern is ``[\p{L}\p{Z}\p{N}_.:/=+\-@]*``).
TAG_TEXT_RULE = "letters, digits, spaces or _.:/=+-@"
_TAG_PUNCTUATION = frozenset("_.:/=+-@")

#: A tunnel multiplexes at most three services (localproxy docs/MULTIPLEXING.md).
MAX_SERVICES = 3
MIN_LIFETIME_MINUTES = 1
MAX_LIFETIME_MINUTES = 720
DEFAULT_LIFETIME_MINUTES = MAX_LIFETIME_MINUTES
MAX_DESCRIPTION_LENGTH = 2048
#: Characters and length of thing, thing group and service names.
NAME_CHARACTERS = "a-zA-Z0-9:_-"
MAX_NAME_LENGTH = 128
NAME_RE = re.compile(f"[{NAME_CHARACTERS}]{{1,{MAX_NAME_LENGTH}}}")

#: Secrets Manager's staging labels.
CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
PREVIOUS = "AWSPREVIOUS"
#: How the secret document writes a time (``expiresAt``): ISO 8601, UTC, whole seconds.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: A token document's ``clientMode`` -> RotateTunnelAccessToken's ``clientMode``.
CLIENT_MODES: dict[str, Literal["SOURCE", "DESTINATION"]] = {"source": "SOURCE", "destination": "DESTINATION"}


def has_control_character(text: str) -> bool:
    """Whether ``text`` has a character of Unicode category C (what ``[^\\p{C}]`` rejects)."""
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def is_tag_text(text: str) -> bool:
    """Whether every character of ``text`` is a letter, digit, space or one of ``_.:/=+-@``."""
    # Python's re has no \p classes: Unicode categories L, Z and N stand for them.
    return all(ch in _TAG_PUNCTUATION or unicodedata.category(ch)[0] in "LZN" for ch in text)


def format_time(moment: datetime) -> str:
    """``moment`` in UTC, as the secret document writes it."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


#: The token document's JSON keys, by :class:`TokenDocument` field, in the order it is written.
DOCUMENT_KEYS = {
    "tunnel_id": "tunnelId",
    "tunnel_arn": "tunnelArn",
    "client_mode": "clientMode",
    "access_token": "accessToken",
    "region": "region",
    "thing_name": "thingName",
    "services": "services",
    "expires_at": "expiresAt",
}


@dataclass(frozen=True)
class TokenDocument:
    """The JSON object a token secret holds: one access token of a tunnel, and where it leads.

    The handler writes it (Create, Update, rotation); the operator CLI and the device's side read
    it. docs/resource-reference.md ("The secret value") describes it for users.
    """

    tunnel_id: str
    tunnel_arn: str
    #: ``source`` or ``destination`` (:data:`CLIENT_MODES`).
    client_mode: str
    access_token: str = field(repr=False)
    region: str
    thing_name: str
    services: tuple[str, ...]
    #: :func:`format_time` of when the service closes the tunnel.
    expires_at: str

    @classmethod
    def parse(cls, text: str | None) -> TokenDocument | None:
        """The document in ``text``, or None if it is not a complete token document."""
        raw = _json_object(text)
        if raw is None:
            return None
        values = {name: raw.get(key) for name, key in DOCUMENT_KEYS.items()}
        services = values.pop("services")
        strings = {k: v for k, v in values.items() if isinstance(v, str) and v}
        if len(strings) < len(values) or strings["client_mode"] not in CLIENT_MODES:
            return None
        if not (isinstance(services, list) and services and all(isinstance(s, str) for s in services)):
            return None
        return cls(**strings, services=tuple(services))

    def to_json(self) -> str:
        """The document as stored."""
        return json.dumps({key: getattr(self, name) for name, key in DOCUMENT_KEYS.items()})

    @staticmethod
    def tunnel_id_in(text: str | None) -> str | None:
        """The ``tunnelId`` of any JSON object in ``text``, complete document or not (None if none)."""
        tunnel_id = (_json_object(text) or {}).get(DOCUMENT_KEYS["tunnel_id"])
        return tunnel_id if isinstance(tunnel_id, str) else None


def _json_object(text: str | None) -> dict[str, Any] | None:
    try:
        raw = json.loads(text or "")
    except ValueError:
        return None
    return raw if isinstance(raw, dict) else None
