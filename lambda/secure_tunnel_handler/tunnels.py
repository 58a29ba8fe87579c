"""The IoT Secure Tunneling calls of the handler, with retries and token hygiene.

The permission model these calls live in (``constructs/.../handler_function.py``; sources in
``docs/aws-semantics.md``):

- Close, Describe and Rotate are allowed only on tunnels tagged ``iot-secure-tunnel:owner`` = the
  handler's owner: IAM itself keeps the handler to its own tunnels. A tunnel of another owner is
  *denied*, which a look-up reads as "not ours".
- Tag and Untag honour no resource-tag condition for tunnels, so the policy cannot scope them:
  the handler tags only a tunnel whose owner tag it has just read with DescribeTunnel (the
  response carries the tags). ListTagsForResource is never called (nor allowed) for the same
  reason.
- A tunnel AWS deleted (some hours after it closed) has no tags left to match: Describe and
  Close are then denied rather than not found, so a denial is checked against ListTunnels
  (allowed on ``*``) before it counts as gone.
- Every rotation that changes the destination token carries the destination configuration: only
  then does AWS IoT publish the new token to the device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from .contract import (
    DEFAULT_LIFETIME_MINUTES,
    HANDLER_TAG_PREFIX,
    OWNER_TAG_KEY,
    REQUEST_TAG_KEY,
    SECRET_TAG_KEYS,
)
from .errors import HandlerError, error_code
from .properties import TunnelSpec
from .redaction import REDACTOR
from .retries import Retrier, is_access_denied, is_throttling, is_transient

if TYPE_CHECKING:
    from mypy_boto3_iotsecuretunneling import IoTSecureTunnelingClient
    from mypy_boto3_iotsecuretunneling.literals import ClientModeType
    from mypy_boto3_iotsecuretunneling.type_defs import (
        DestinationConfigTypeDef,
        ListTunnelsRequestTypeDef,
        OpenTunnelRequestTypeDef,
        OpenTunnelResponseTypeDef,
        RotateTunnelAccessTokenRequestTypeDef,
        RotateTunnelAccessTokenResponseTypeDef,
        TagTypeDef,
        TunnelSummaryTypeDef,
        TunnelTypeDef,
    )

logger = logging.getLogger(__name__)

T = TypeVar("T")

OPEN = "OPEN"


@dataclass(frozen=True)
class AccessTokens:
    """The client access tokens a call issued (None: that side's was not issued). Never logged:
    the repr hides them."""

    source: str | None = field(default=None, repr=False)
    destination: str | None = field(default=None, repr=False)

    def of(self, mode: str) -> str:
        """The token of a document's client mode (``source`` or ``destination``)."""
        token = self.source if mode == "source" else self.destination
        if token is None:
            raise ValueError(f"no {mode} token was issued")
        return token


@dataclass(frozen=True)
class TunnelState:
    """What DescribeTunnel says of a tunnel (no tokens: the API never returns them again)."""

    tunnel_id: str
    tunnel_arn: str
    is_open: bool
    description: str | None
    thing_name: str
    services: tuple[str, ...]
    max_lifetime_minutes: int
    created_at: datetime
    tags: dict[str, str]

    @property
    def expires_at(self) -> datetime:
        """When the service closes the tunnel (rotation does not extend it)."""
        return self.created_at + timedelta(minutes=self.max_lifetime_minutes)

    @property
    def binding(self) -> dict[str, str]:
        """The tags that bind the tunnel to its secrets (none: opened before tunnels were bound)."""
        return {tag: self.tags[tag] for tag in SECRET_TAG_KEYS.values() if tag in self.tags}

    @property
    def user_tags(self) -> dict[str, str]:
        """Tags other than the handler's own."""
        return {k: v for k, v in self.tags.items() if not k.startswith(HANDLER_TAG_PREFIX)}


@dataclass(frozen=True)
class IssuedTunnel:
    """A tunnel with tokens just issued by OpenTunnel or RotateTunnelAccessToken."""

    tunnel_id: str
    tunnel_arn: str
    expires_at: datetime
    tokens: AccessTokens
    #: True when OpenTunnel opened it just now (not adopted from an earlier delivery, not rotated).
    opened: bool = False


class DuplicateDelivery(Exception):
    """Another delivery of the same request opened the resource's tunnel first; that delivery
    writes the secrets (two writers of rotated tokens could leave the secrets mixed)."""

    def __init__(self, tunnel_id: str, tunnel_arn: str) -> None:
        super().__init__(f"tunnel {tunnel_id} was opened by another delivery of this request")
        self.tunnel_id = tunnel_id
        self.tunnel_arn = tunnel_arn


class TunnelService:
    """Opens, inspects, rotates and closes tunnels owned by this handler."""

    def __init__(
        self, client: IoTSecureTunnelingClient, retrier: Retrier, owner: str, now: Callable[[], datetime]
    ) -> None:
        self._client = client
        self._retrier = retrier
        self._owner = owner
        self._now = now

    def open(self, spec: TunnelSpec, request_id: str) -> IssuedTunnel:
        """Open a tunnel for ``spec`` tagged with the request id, or adopt the one a previous
        delivery of the same request opened: a redelivered event never opens a second tunnel."""
        request = _open_request(spec, self._owner, request_id)
        for attempt in self._retrier.attempts():
            existing = self.find_opened_by(spec, request_id)
            if existing is not None:
                logger.info("Tunnel %s was opened by an earlier delivery of this request", existing.tunnel_id)
                return self.rotate(existing)
            if attempt == 0 and self._retrier.expired():
                # What follows OpenTunnel (writing the secrets, or closing the tunnel if that
                # fails) needs the safety margin: a tunnel opened later may outlive the response.
                raise HandlerError(
                    "Opening the tunnel was not started: the function's time is nearly over "
                    "(less than its safety margin left). Raise the function's timeout, then retry."
                )
            expires_at = self._now() + timedelta(minutes=spec.max_lifetime_minutes)
            try:
                # Throttled requests did nothing: retry them at once. A 5xx or a lost connection
                # may have opened a tunnel: look for it before trying again.
                response = self._retrier.call(lambda: self._client.open_tunnel(**request), is_throttling)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if self._retrier.may_retry(attempt):
                    continue
                self._close_lost_tunnel(spec, request_id)
                raise
            issued = self._issued(response["tunnelId"], response["tunnelArn"], expires_at, response)
            self._yield_to_an_earlier_delivery(spec, request_id, issued.tunnel_id)
            return replace(issued, opened=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def find_opened_by(self, spec: TunnelSpec, request_id: str) -> TunnelState | None:
        """The OPEN tunnel of this owner that the given request opened (the first, if more did)."""
        return _first(self._opened_by(spec, request_id))

    def owns(self, tunnel: TunnelState) -> bool:
        """Whether this handler's stack opened the tunnel (its owner tag, set at OpenTunnel)."""
        return tunnel.tags.get(OWNER_TAG_KEY) == self._owner

    def _opened_by(self, spec: TunnelSpec, request_id: str) -> list[TunnelState]:
        """The OPEN tunnels of this owner that the given request opened.

        Tags are read with DescribeTunnel: ListTagsForResource honours no resource-tag
        condition for tunnels, so the handler's tag-scoped policy cannot allow it
        (docs/aws-semantics.md). A tunnel of another owner is denied: not ours, skipped.
        """
        found = []
        for summary in self._summaries(spec.thing_name):
            if summary.get("status") != OPEN or summary.get("description") != spec.description:
                continue
            state = self._describe_if_visible(summary["tunnelId"])
            if state is not None and state.tags.get(REQUEST_TAG_KEY) == request_id and self.owns(state):
                found.append(state)
        return found

    def _close_lost_tunnel(self, spec: TunnelSpec, request_id: str) -> None:
        """The last OpenTunnel attempt got no answer, and it may have opened a tunnel that no one
        will ever reference: close it if it is there. Never raises: the caller reports the
        failure; if this look-up fails too, the failure names the tunnel it found, if any."""
        try:
            lost = self.find_opened_by(spec, request_id)
            if lost is not None:
                logger.warning("Closing tunnel %s: its OpenTunnel answer was lost", lost.tunnel_id)
                self.close(lost.tunnel_id, (spec.thing_name,))
        except Exception:
            logger.exception("Could not look for a tunnel whose OpenTunnel answer was lost")

    def _yield_to_an_earlier_delivery(self, spec: TunnelSpec, request_id: str, mine: str) -> None:
        """Two deliveries of one request at the same time can each open a tunnel (each looked
        before the other opened). The first opened is the resource's: a delivery that opened a
        later one closes it and raises DuplicateDelivery."""
        try:
            first = _first(self._opened_by(spec, request_id))
        except Exception:
            # Only a concurrent duplicate makes this look-up matter: it must not fail the event.
            logger.warning("Could not look for another delivery's tunnel; keeping %s", mine, exc_info=True)
            return
        if first is None or first.tunnel_id == mine:
            return
        logger.info("Tunnel %s was opened first by another delivery: closing %s", first.tunnel_id, mine)
        self.close(mine)
        raise DuplicateDelivery(first.tunnel_id, first.tunnel_arn)

    def describe(self, tunnel_id: str, things: Sequence[str] = ()) -> TunnelState | None:
        """The tunnel's state, or None if it does not exist (any more).

        ``things``: the thing names the tunnel may be listed under. AWS deletes a closed tunnel
        some hours after it closed; a tag-scoped policy then denies the call rather than answering
        not found (no tags left to match), and the tunnel's absence from ListTunnels tells.
        """
        try:
            tunnel = self._unless_purged(
                tunnel_id, things, lambda: self._client.describe_tunnel(tunnelId=tunnel_id)
            )
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        return None if tunnel is None else _state(tunnel["tunnel"])

    def rotate(
        self, tunnel: TunnelState, mode: ClientModeType = "ALL", destination: TunnelSpec | None = None
    ) -> IssuedTunnel:
        """Rotate the token of one client mode (``SOURCE`` or ``DESTINATION``: the other side's
        stays valid) or both (``ALL``), moving the tunnel to ``destination`` if given.

        ALL and DESTINATION rotations carry the destination configuration (the API refuses it with
        SOURCE): only a rotation that carries it makes AWS IoT publish the new destination token
        to the device (developer guide, secure tunneling troubleshooting); without it the device's
        token is revoked and never replaced.
        """
        request: RotateTunnelAccessTokenRequestTypeDef = {"tunnelId": tunnel.tunnel_id, "clientMode": mode}
        if mode != "SOURCE":
            request["destinationConfig"] = _destination(destination or tunnel)
        response = self._retrier.call(lambda: self._client.rotate_tunnel_access_token(**request))
        return self._issued(tunnel.tunnel_id, tunnel.tunnel_arn, tunnel.expires_at, response)

    def close(self, tunnel_id: str, things: Sequence[str] = ()) -> bool:
        """Close and delete the tunnel's data; False if it was already gone (see :meth:`describe`
        for ``things``)."""
        try:
            closed = self._unless_purged(
                tunnel_id, things, lambda: self._client.close_tunnel(tunnelId=tunnel_id, delete=True)
            )
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return False
            raise
        return closed is not None

    def _unless_purged(self, tunnel_id: str, things: Sequence[str], call: Callable[[], T]) -> T | None:
        """``call``'s answer, or None when it was denied and the tunnel is listed under none of
        ``things`` (AWS purged it). A denial of a listed tunnel is retried as IAM propagation."""
        try:
            return self._retrier.call(call, denial_may_pass=not things)
        except Exception as exc:
            if not (things and is_access_denied(exc)):
                raise
        if not self._is_listed(tunnel_id, things):
            logger.info("Tunnel %s is not listed for %s: AWS has deleted it", tunnel_id, ", ".join(things))
            return None
        return self._retrier.call(call)

    def _is_listed(self, tunnel_id: str, things: Sequence[str]) -> bool:
        listed = (s["tunnelId"] for thing in dict.fromkeys(things) for s in self._summaries(thing))
        return tunnel_id in listed

    def _describe_if_visible(self, tunnel_id: str) -> TunnelState | None:
        # A tunnel of another owner is outside the handler's IAM scope: denied, not ours.
        try:
            answer = self._retrier.call(
                lambda: self._client.describe_tunnel(tunnelId=tunnel_id), denial_may_pass=False
            )
        except Exception as exc:
            if is_access_denied(exc) or error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        return _state(answer["tunnel"])

    def sync_tags(self, tunnel: TunnelState, wanted: dict[str, str]) -> None:
        """Make the tunnel's user tags equal ``wanted``; the handler's own tags stay."""
        current = tunnel.user_tags
        changed: list[TagTypeDef] = [{"key": k, "value": v} for k, v in wanted.items() if current.get(k) != v]
        removed = [k for k in current if k not in wanted]
        if changed:
            self._retrier.call(lambda: self._client.tag_resource(resourceArn=tunnel.tunnel_arn, tags=changed))
        if removed:
            self._retrier.call(
                lambda: self._client.untag_resource(resourceArn=tunnel.tunnel_arn, tagKeys=removed)
            )

    def _summaries(self, thing_name: str) -> list[TunnelSummaryTypeDef]:
        summaries: list[TunnelSummaryTypeDef] = []
        request: ListTunnelsRequestTypeDef = {"thingName": thing_name, "maxResults": 100}
        while True:
            page = self._retrier.call(lambda: self._client.list_tunnels(**request))
            summaries.extend(page.get("tunnelSummaries", []))
            if not page.get("nextToken"):
                return summaries
            request["nextToken"] = page["nextToken"]

    def _issued(
        self,
        tunnel_id: str,
        arn: str,
        expires_at: datetime,
        response: OpenTunnelResponseTypeDef | RotateTunnelAccessTokenResponseTypeDef,
    ) -> IssuedTunnel:
        tokens = AccessTokens(response.get("sourceAccessToken"), response.get("destinationAccessToken"))
        REDACTOR.remember(tokens.source, tokens.destination)
        return IssuedTunnel(tunnel_id, response.get("tunnelArn", arn), expires_at, tokens)


def _first(tunnels: list[TunnelState]) -> TunnelState | None:
    """The earliest opened tunnel (ties, within the clock's resolution, go to the smaller id)."""
    return min(tunnels, key=lambda t: (t.created_at, t.tunnel_id), default=None)


def _open_request(spec: TunnelSpec, owner: str, request_id: str) -> OpenTunnelRequestTypeDef:
    own = {OWNER_TAG_KEY: owner, REQUEST_TAG_KEY: request_id, **spec.binding}
    tags: list[TagTypeDef] = [{"key": k, "value": v} for k, v in (*spec.tags, *own.items())]
    request: OpenTunnelRequestTypeDef = {
        "destinationConfig": _destination(spec),
        "timeoutConfig": {"maxLifetimeTimeoutMinutes": spec.max_lifetime_minutes},
        "tags": tags,
    }
    if spec.description is not None:
        request["description"] = spec.description
    return request


def _destination(target: TunnelSpec | TunnelState) -> DestinationConfigTypeDef:
    """The destination configuration of a resource's properties or of a tunnel as it is."""
    return {"thingName": target.thing_name, "services": list(target.services)}


def _state(tunnel: TunnelTypeDef) -> TunnelState:
    destination = tunnel.get("destinationConfig", {})
    created_at = tunnel.get("createdAt") or datetime.now(UTC)
    return TunnelState(
        tunnel_id=tunnel["tunnelId"],
        tunnel_arn=tunnel["tunnelArn"],
        is_open=tunnel.get("status") == OPEN,
        description=tunnel.get("description"),
        thing_name=destination.get("thingName", ""),
        services=tuple(destination.get("services", ())),
        max_lifetime_minutes=int(
            tunnel.get("timeoutConfig", {}).get("maxLifetimeTimeoutMinutes", DEFAULT_LIFETIME_MINUTES)
        ),
        created_at=created_at.astimezone(UTC),
        tags={t["key"]: t["value"] for t in tunnel.get("tags", [])},
    )
