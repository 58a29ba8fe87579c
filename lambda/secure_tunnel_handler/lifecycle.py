"""The CloudFormation lifecycle of a ``Custom::IoTSecureTunnel``: what Create, Update and Delete do.

The physical resource id is the tunnel id. Tokens only travel from the tunnel API to the secrets.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .errors import HandlerError, explain
from .properties import InvalidProperties, TunnelSpec, parse_properties, secret_arns_of
from .token_secrets import PartialWriteError, TokenSecrets
from .tunnels import IssuedTunnel, TunnelService, TunnelState

logger = logging.getLogger(__name__)

TUNNEL_ID_RE = re.compile(r"[a-zA-Z0-9_\-+=:]{1,128}")


@dataclass(frozen=True)
class Outcome:
    """What CloudFormation is told on success: the physical id and the attributes."""

    physical_id: str
    data: dict[str, str]


class TunnelResource:
    """Create, Update and Delete of one ``Custom::IoTSecureTunnel`` event."""

    def __init__(self, tunnels: TunnelService, secrets: TokenSecrets, pool: ThreadPoolExecutor) -> None:
        self._tunnels = tunnels
        self._secrets = secrets
        self._pool = pool

    def create(self, event: dict[str, Any]) -> Outcome:
        """Open a tunnel and write its tokens; nothing stays open if any step fails."""
        spec = _parse(event["ResourceProperties"])
        return self._open_and_publish(spec, event["RequestId"], report_id_on_failure=True)

    def update(self, event: dict[str, Any]) -> Outcome:
        """Rotate the tokens in place, or open a replacement when the tunnel cannot be kept."""
        spec = _parse(event["ResourceProperties"])
        tunnel_id = event["PhysicalResourceId"]
        current = (
            self._step("Reading the tunnel", self._tunnels.describe, tunnel_id)
            if _looks_like_tunnel(tunnel_id, event)
            else None
        )
        reason = _replacement_reason(current, spec)
        if current is None or reason:
            logger.info("Opening a replacement for tunnel %s: %s", tunnel_id, reason)
            return self._open_and_publish(spec, event["RequestId"], report_id_on_failure=False)
        return self._rotate_in_place(current, spec)

    def delete(self, event: dict[str, Any]) -> None:
        """Close the tunnel; give the secrets back their previous tunnel after a rolled-back replacement."""
        tunnel_id = event["PhysicalResourceId"]
        if not _looks_like_tunnel(tunnel_id, event):
            logger.info(
                "Physical id %s is not a tunnel (left by a failed Create): nothing to close", tunnel_id
            )
            return
        arns = secret_arns_of(event.get("ResourceProperties", {}))
        closing = self._pool.submit(self._tunnels.close, tunnel_id)
        restores = [self._pool.submit(self._restore_secret, arn, tunnel_id) for arn in arns]
        if not self._step("Closing the tunnel", closing.result):
            logger.info("Tunnel %s was already gone", tunnel_id)
        for restore in restores:
            self._step("Restoring the token secrets", restore.result)

    def _open_and_publish(self, spec: TunnelSpec, request_id: str, report_id_on_failure: bool) -> Outcome:
        tunnel = self._step("Opening the tunnel", self._tunnels.open, spec, request_id)
        logger.info("Tunnel %s is open", tunnel.tunnel_id)
        try:
            self._secrets.write(spec, tunnel)
        except PartialWriteError as exc:
            self._abandon(tunnel, exc)
            failed = explain("Writing the token secrets", exc.cause)
            # On Create, report the tunnel id so that CloudFormation's Delete retries the close.
            raise HandlerError(
                f"{failed}. The new tunnel was closed.",
                physical_id=tunnel.tunnel_id if report_id_on_failure else None,
            ) from exc
        return _outcome(tunnel)

    def _abandon(self, tunnel: IssuedTunnel, failure: PartialWriteError) -> None:
        """Close a tunnel CloudFormation will not know about and undo the writes that succeeded."""
        _best_effort(lambda: self._tunnels.close(tunnel.tunnel_id))
        _best_effort(lambda: self._secrets.undo(failure.written))

    def _rotate_in_place(self, current: TunnelState, spec: TunnelSpec) -> Outcome:
        moved = (current.thing_name, current.services) != (spec.thing_name, spec.services)
        issued = self._step(
            "Rotating the access tokens", self._tunnels.rotate, current, spec if moved else None
        )
        tagging = self._pool.submit(self._tunnels.sync_tags, current, dict(spec.tags))
        try:
            self._secrets.write(spec, issued)
        except PartialWriteError as exc:
            # The old tokens are revoked by the rotation: keep whatever was written.
            raise explain("Writing the token secrets", exc.cause) from exc
        self._step("Updating the tunnel's tags", tagging.result)
        return _outcome(issued)

    def _restore_secret(self, arn: str, closed_tunnel_id: str) -> bool:
        return self._secrets.restore_previous(arn, closed_tunnel_id, self._is_open)

    def _is_open(self, tunnel_id: str) -> bool:
        state = self._tunnels.describe(tunnel_id)
        return state is not None and state.is_open

    @staticmethod
    def _step(step: str, fn: Any, *args: Any) -> Any:
        """Run one step; an AWS failure becomes a reason that names the step."""
        try:
            return fn(*args)
        except Exception as exc:
            raise explain(step, exc) from exc


def _best_effort(cleanup: Callable[[], object]) -> None:
    try:
        cleanup()
    except Exception:
        logger.exception("Clean-up after a failed secret write did not complete")


def _parse(raw: Any) -> TunnelSpec:
    try:
        return parse_properties(raw)
    except InvalidProperties as exc:
        raise HandlerError(str(exc)) from exc


def _looks_like_tunnel(physical_id: str, event: dict[str, Any]) -> bool:
    """False for ids no tunnel can have: crhelper's ``<stack>_<logicalId>_<rand>`` of a failed Create."""
    if not TUNNEL_ID_RE.fullmatch(physical_id or ""):
        return False
    stack_name = event.get("StackId", "").split("/")[1:2]
    generated = f"{stack_name[0]}_{event.get('LogicalResourceId', '')}_" if stack_name else None
    return not (generated and physical_id.startswith(generated))


def _replacement_reason(current: TunnelState | None, spec: TunnelSpec) -> str | None:
    if current is None:
        return "it no longer exists"
    if not current.is_open:
        return "it is closed (expired or closed by hand)"
    if current.description != spec.description:
        return "Description changed"
    if current.max_lifetime_minutes != spec.max_lifetime_minutes:
        return "TimeoutConfig changed"
    return None


def _outcome(tunnel: IssuedTunnel) -> Outcome:
    return Outcome(tunnel.tunnel_id, {"TunnelId": tunnel.tunnel_id, "TunnelArn": tunnel.tunnel_arn})
