"""The IoT Secure Tunneling calls of the handler, with retries and token hygiene."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import HandlerError, error_code
from .properties import OWNER_TAG, REQUEST_TAG, TunnelSpec
from .redaction import REDACTOR
from .retries import Retrier, is_throttling, is_transient

logger = logging.getLogger(__name__)

OPEN = "OPEN"


@dataclass(frozen=True)
class AccessTokens:
    """The two client access tokens of a tunnel. Never logged: the repr hides them."""

    source: str = field(repr=False)
    destination: str = field(repr=False)


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
    def user_tags(self) -> dict[str, str]:
        """Tags other than the handler's own."""
        return {k: v for k, v in self.tags.items() if not k.startswith("iot-secure-tunnel:")}


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

    def __init__(self, client: Any, retrier: Retrier, owner: str, now: Callable[[], datetime]) -> None:
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
                if is_transient(exc) and self._retrier.may_retry(attempt):
                    continue
                raise
            issued = self._issued(response["tunnelId"], response["tunnelArn"], expires_at, response)
            self._yield_to_an_earlier_delivery(spec, request_id, issued.tunnel_id)
            return replace(issued, opened=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def find_opened_by(self, spec: TunnelSpec, request_id: str) -> TunnelState | None:
        """The OPEN tunnel of this owner that the given request opened (the first, if more did)."""
        first = _first(self._opened_by(spec, request_id))
        return self.describe(first["tunnelId"]) if first else None

    def _opened_by(self, spec: TunnelSpec, request_id: str) -> list[dict[str, Any]]:
        """Summaries of the OPEN tunnels of this owner that the given request opened."""
        found = []
        for summary in self._summaries(spec.thing_name):
            if summary.get("status") != OPEN or summary.get("description") != spec.description:
                continue
            tags = self._tags_if_visible(summary["tunnelArn"])
            if tags.get(REQUEST_TAG) == request_id and tags.get(OWNER_TAG) == self._owner:
                found.append(summary)
        return found

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
        if first is None or first["tunnelId"] == mine:
            return
        logger.info("Tunnel %s was opened first by another delivery: closing %s", first["tunnelId"], mine)
        self.close(mine)
        raise DuplicateDelivery(first["tunnelId"], first["tunnelArn"])

    def describe(self, tunnel_id: str) -> TunnelState | None:
        """The tunnel's state, or None if it does not exist (any more)."""
        try:
            tunnel = self._retrier.call(lambda: self._client.describe_tunnel(tunnelId=tunnel_id))["tunnel"]
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        return _state(tunnel)

    def rotate(self, tunnel: TunnelState, new_destination: TunnelSpec | None = None) -> IssuedTunnel:
        """Rotate both tokens (``clientMode=ALL``); optionally move the tunnel to a new destination."""
        request: dict[str, Any] = {"tunnelId": tunnel.tunnel_id, "clientMode": "ALL"}
        if new_destination is not None:
            request["destinationConfig"] = _destination(new_destination)
        response = self._retrier.call(lambda: self._client.rotate_tunnel_access_token(**request))
        return self._issued(tunnel.tunnel_id, tunnel.tunnel_arn, tunnel.expires_at, response)

    def close(self, tunnel_id: str) -> bool:
        """Close and delete the tunnel's data; False if it was already gone."""
        try:
            self._retrier.call(lambda: self._client.close_tunnel(tunnelId=tunnel_id, delete=True))
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return False
            raise
        return True

    def sync_tags(self, tunnel: TunnelState, wanted: dict[str, str]) -> None:
        """Make the tunnel's user tags equal ``wanted``; the handler's own tags stay."""
        current = tunnel.user_tags
        changed = [{"key": k, "value": v} for k, v in wanted.items() if current.get(k) != v]
        removed = [k for k in current if k not in wanted]
        if changed:
            self._retrier.call(lambda: self._client.tag_resource(resourceArn=tunnel.tunnel_arn, tags=changed))
        if removed:
            self._retrier.call(
                lambda: self._client.untag_resource(resourceArn=tunnel.tunnel_arn, tagKeys=removed)
            )

    def _summaries(self, thing_name: str) -> list[dict[str, Any]]:
        summaries: list[dict[str, Any]] = []
        request: dict[str, Any] = {"thingName": thing_name, "maxResults": 100}
        while True:
            page = self._retrier.call(lambda: self._client.list_tunnels(**request))
            summaries.extend(page.get("tunnelSummaries", []))
            if not page.get("nextToken"):
                return summaries
            request["nextToken"] = page["nextToken"]

    def _tags_if_visible(self, tunnel_arn: str) -> dict[str, str]:
        # Tunnels of other owners are outside the handler's IAM scope: not ours, skip them.
        try:
            response = self._retrier.call(lambda: self._client.list_tags_for_resource(resourceArn=tunnel_arn))
        except Exception as exc:
            if error_code(exc) in {"AccessDeniedException", "ResourceNotFoundException"}:
                return {}
            raise
        return {t["key"]: t["value"] for t in response.get("tags", [])}

    def _issued(
        self, tunnel_id: str, arn: str, expires_at: datetime, response: dict[str, Any]
    ) -> IssuedTunnel:
        tokens = AccessTokens(response["sourceAccessToken"], response["destinationAccessToken"])
        REDACTOR.remember(tokens.source, tokens.destination)
        return IssuedTunnel(tunnel_id, response.get("tunnelArn", arn), expires_at, tokens)


def _first(summaries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The earliest opened tunnel (ties, within the clock's resolution, go to the smaller id)."""
    earliest = datetime.min.replace(tzinfo=UTC)
    return min(summaries, key=lambda s: (s.get("createdAt") or earliest, s["tunnelId"]), default=None)


def _open_request(spec: TunnelSpec, owner: str, request_id: str) -> dict[str, Any]:
    tags = [{"key": k, "value": v} for k, v in spec.tags]
    tags += [{"key": OWNER_TAG, "value": owner}, {"key": REQUEST_TAG, "value": request_id}]
    request: dict[str, Any] = {
        "destinationConfig": _destination(spec),
        "timeoutConfig": {"maxLifetimeTimeoutMinutes": spec.max_lifetime_minutes},
        "tags": tags,
    }
    if spec.description is not None:
        request["description"] = spec.description
    return request


def _destination(spec: TunnelSpec) -> dict[str, Any]:
    return {"thingName": spec.thing_name, "services": list(spec.services)}


def _state(tunnel: dict[str, Any]) -> TunnelState:
    destination = tunnel.get("destinationConfig", {})
    created_at = tunnel.get("createdAt") or datetime.now(UTC)
    return TunnelState(
        tunnel_id=tunnel["tunnelId"],
        tunnel_arn=tunnel["tunnelArn"],
        is_open=tunnel.get("status") == OPEN,
        description=tunnel.get("description"),
        thing_name=destination.get("thingName", ""),
        services=tuple(destination.get("services", ())),
        max_lifetime_minutes=int(tunnel.get("timeoutConfig", {}).get("maxLifetimeTimeoutMinutes", 720)),
        created_at=created_at.astimezone(UTC),
        tags={t["key"]: t["value"] for t in tunnel.get("tags", [])},
    )
