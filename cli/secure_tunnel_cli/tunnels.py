"""The tunnels this project opened: finding them, and whether one is still OPEN.

The handler tags every tunnel it opens with :data:`OWNER_TAG` (the stack's id) and binds it to its
source secret with :data:`SOURCE_SECRET_TAG`: the secret's ARN without Secrets Manager's random
suffix (a partial ARN, which Secrets Manager accepts as a ``SecretId``), or ``sha256:<hex>`` of it
when that is longer than a tag value (tests/test_cli_things.py ties these to the handler's).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from .errors import EXIT_TUNNEL_CLOSED, EXIT_USAGE, CliError, error_code, fail_on, is_denied
from .token_document import Token

if TYPE_CHECKING:
    from mypy_boto3_iotsecuretunneling import IoTSecureTunnelingClient
    from mypy_boto3_iotsecuretunneling.type_defs import (
        ListTunnelsRequestTypeDef,
        TunnelSummaryTypeDef,
        TunnelTypeDef,
    )

OWNER_TAG = "iot-secure-tunnel:owner"
SOURCE_SECRET_TAG = "iot-secure-tunnel:source-secret"  # noqa: S105 - a tag key, not a secret
HASHED_BINDING_PREFIX = "sha256:"
#: The API's default and longest lifetime (TimeoutConfig.maxLifetimeTimeoutMinutes).
DEFAULT_LIFETIME_MINUTES = 720
#: ListTunnels' largest page (MaxResults 1-100).
PAGE_SIZE = 100
#: DescribeTunnel calls in flight at once.
DESCRIBE_WORKERS = 4
CLOSED_ADVICE = "update the stack to open a new tunnel (e.g. change the resource's RotationTrigger)"
DESCRIBE_PERMISSION = "iot:DescribeTunnel on the tunnels (arn:<partition>:iot:<region>:<account>:tunnel/*)"


@dataclass(frozen=True)
class ProjectTunnel:
    """A tunnel that carries this project's owner tag, as DescribeTunnel shows it."""

    tunnel_id: str
    status: str
    thing_name: str | None
    services: tuple[str, ...]
    expires_at: datetime | None
    owner: str
    binding: str | None

    @property
    def source_secret(self) -> str | None:
        """The source secret's (partial) ARN; None when the binding is a hash or absent."""
        if not self.binding or self.binding.startswith(HASHED_BINDING_PREFIX):
            return None
        return self.binding


@dataclass(frozen=True)
class Listing:
    """What a search found: this project's tunnels (newest first), and how many tunnels
    DescribeTunnel was denied on (they may or may not be this project's)."""

    tunnels: list[ProjectTunnel]
    denied: int


def find_tunnels(client: IoTSecureTunnelingClient, *, thing: str | None, open_only: bool) -> Listing:
    """This project's tunnels: ListTunnels (every page, of ``thing`` only when given), then
    DescribeTunnel of each listed tunnel (only the OPEN ones with ``open_only``) for its tags."""
    ids = [s["tunnelId"] for s in _summaries(client, thing) if not open_only or s.get("status") == "OPEN"]
    with ThreadPoolExecutor(max_workers=DESCRIBE_WORKERS) as pool:
        described = list(pool.map(lambda tunnel_id: _describe(client, tunnel_id), ids))
    denied = sum(1 for d in described if d == "denied")
    tunnels = [_project_tunnel(d) for d in described if isinstance(d, dict)]
    mine = [t for t in tunnels if t is not None and (not open_only or t.status == "OPEN")]
    return Listing(mine, denied)


def tunnel_for_thing(listing: Listing, thing: str, region: str) -> ProjectTunnel:
    """The thing's one OPEN tunnel of this project, or the CliError that says why there is none."""
    candidates = [t for t in listing.tunnels if t.status == "OPEN"]
    if not candidates:
        # A least-privilege operator may describe only this project's tunnels: a denial on the
        # others is expected, so it is reported, not taken for a failure.
        denied = (
            f" (iot:DescribeTunnel was denied on {listing.denied} OPEN tunnel(s) of thing {thing}: if "
            f"they are this project's, your identity needs {DESCRIBE_PERMISSION})"
            if listing.denied
            else ""
        )
        raise CliError(
            f"thing {thing} has no OPEN tunnel opened by this project in {region}{denied}: deploy the "
            f"stack that opens one, or {CLOSED_ADVICE}",
            EXIT_TUNNEL_CLOSED,
        )
    if len(candidates) > 1:
        choices = "; ".join(
            f"{t.tunnel_id} (source secret {t.source_secret or 'unknown'})" for t in candidates
        )
        raise CliError(
            f"thing {thing} has {len(candidates)} OPEN tunnels opened by this project: {choices}; "
            "choose one with --secret-id",
            EXIT_USAGE,
        )
    tunnel = candidates[0]
    if tunnel.source_secret is None:
        raise CliError(
            f"the source secret of tunnel {tunnel.tunnel_id} is unknown (its {SOURCE_SECRET_TAG} tag "
            f"{'is a hash' if tunnel.binding else 'is missing'}): connect with --secret-id",
            EXIT_USAGE,
        )
    return tunnel


def check_open(client: IoTSecureTunnelingClient, token: Token) -> None:
    """Fail early on a tunnel that is closed: its token, rotated or not, can never connect."""
    if token.expires_at <= datetime.now(UTC):
        raise CliError(
            f"tunnel {token.tunnel_id} expired at {token.expires_at:%Y-%m-%dT%H:%M:%SZ}: {CLOSED_ADVICE}",
            EXIT_TUNNEL_CLOSED,
        )
    try:
        status = client.describe_tunnel(tunnelId=token.tunnel_id)["tunnel"].get("status")
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise CliError(
                f"tunnel {token.tunnel_id} no longer exists: {CLOSED_ADVICE}", EXIT_TUNNEL_CLOSED
            ) from None
        return  # e.g. no iot:DescribeTunnel permission: the expiry check above has to do
    except BotoCoreError:
        return
    if status != "OPEN":
        raise CliError(f"tunnel {token.tunnel_id} is {status}: {CLOSED_ADVICE}", EXIT_TUNNEL_CLOSED)


def _summaries(client: IoTSecureTunnelingClient, thing: str | None) -> Iterator[TunnelSummaryTypeDef]:
    """Every page of ListTunnels (botocore has no paginator for it)."""
    request: ListTunnelsRequestTypeDef = {"maxResults": PAGE_SIZE}
    if thing is not None:
        request["thingName"] = thing
    while True:
        try:
            page = client.list_tunnels(**request)
        except ClientError as exc:
            fail_on(exc, "listing tunnels", 'iot:ListTunnels (Resource "*")')
        yield from page.get("tunnelSummaries", [])
        if not page.get("nextToken"):
            return
        request["nextToken"] = page["nextToken"]


def _describe(client: IoTSecureTunnelingClient, tunnel_id: str) -> TunnelTypeDef | str | None:
    """The tunnel; "denied" if IAM refused; None if it is gone (deleted since it was listed)."""
    try:
        return client.describe_tunnel(tunnelId=tunnel_id)["tunnel"]
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        if is_denied(exc):
            # Least privilege allows DescribeTunnel on this project's tunnels only (owner tag).
            return "denied"
        fail_on(exc, f"describing tunnel {tunnel_id}", DESCRIBE_PERMISSION)


def _project_tunnel(tunnel: TunnelTypeDef) -> ProjectTunnel | None:
    tags = {t["key"]: t["value"] for t in tunnel.get("tags", [])}
    if OWNER_TAG not in tags:
        return None
    config = tunnel.get("destinationConfig")
    created = tunnel.get("createdAt")
    minutes = tunnel.get("timeoutConfig", {}).get("maxLifetimeTimeoutMinutes") or DEFAULT_LIFETIME_MINUTES
    return ProjectTunnel(
        tunnel_id=tunnel.get("tunnelId", ""),
        status=tunnel.get("status", "UNKNOWN"),
        thing_name=config.get("thingName") if config else None,
        services=tuple(config["services"]) if config else (),
        expires_at=created.astimezone(UTC) + timedelta(minutes=minutes) if created else None,
        owner=tags[OWNER_TAG],
        binding=tags.get(SOURCE_SECRET_TAG),
    )
