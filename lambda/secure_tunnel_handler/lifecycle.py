"""The CloudFormation lifecycle of a ``Custom::IoTSecureTunnel``: what Create, Update and Delete do.

The physical resource id is the tunnel id. Tokens only travel from the tunnel API to the secrets.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .errors import HandlerError, explain
from .properties import InvalidProperties, TunnelSpec, parse_properties, secret_arns_of
from .token_secrets import PartialWriteError, Restore, TokenSecrets
from .tunnels import DuplicateDelivery, IssuedTunnel, TunnelService, TunnelState

logger = logging.getLogger(__name__)

TUNNEL_ID_RE = re.compile(r"[a-zA-Z0-9_\-+=:]{1,128}")


@dataclass(frozen=True)
class Outcome:
    """What CloudFormation is told on success: the physical id and the attributes; and what
    this invocation changed, to take it back if CloudFormation never hears of it."""

    physical_id: str
    data: dict[str, str]
    #: The tunnel this invocation opened (None: it opened none, or adopted an earlier one's).
    opened: str | None = None
    #: Secret ARN -> version id of each version this invocation wrote.
    written: dict[str, str] = field(default_factory=dict)


class TunnelResource:
    """Create, Update and Delete of one ``Custom::IoTSecureTunnel`` event."""

    def __init__(
        self,
        tunnels: TunnelService,
        secrets: TokenSecrets,
        pool: ThreadPoolExecutor,
        announce: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._tunnels = tunnels
        self._secrets = secrets
        self._pool = pool
        # Told the new tunnel's id as soon as Create has opened it: a response sent before the
        # handler returns (crhelper's timeout) must name it, or CloudFormation never closes it.
        self._announce = announce

    def create(self, event: dict[str, Any]) -> Outcome:
        """Open a tunnel and write its tokens; nothing stays open if any step fails."""
        spec = _parse(event["ResourceProperties"])
        return self._open_and_publish(spec, event["RequestId"], report_id_on_failure=True)

    def withdraw(self, outcome: Outcome) -> None:
        """Take back what a Create or a replacement did that CloudFormation never heard of: close
        the tunnel it opened and give the secrets back their previous versions."""
        if outcome.opened:
            _best_effort(lambda: self._tunnels.close(str(outcome.opened)))
            _best_effort(lambda: self._secrets.undo(outcome.written))

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
        planning = [self._pool.submit(self._secrets.plan_restore, arn, tunnel_id) for arn in arns]
        if not self._step("Closing the tunnel", closing.result):
            logger.info("Tunnel %s was already gone", tunnel_id)
        plans = [p for p in (self._step("Restoring the token secrets", f.result) for f in planning) if p]
        if plans:
            self._step("Restoring the token secrets", self._restore, plans)

    def _restore(self, plans: list[Restore]) -> None:
        # Both secrets go back to one tunnel, and only to one that is still OPEN: checked once,
        # so that the two secrets cannot see different answers.
        targets = {plan.tunnel_id for plan in plans}
        if len(targets) != 1 or not self._is_open(targets.pop()):
            logger.info(
                "The secrets' previous versions do not hold one OPEN tunnel: secrets left as they are"
            )
            return
        self._secrets.restore(plans)

    def _open_and_publish(self, spec: TunnelSpec, request_id: str, report_id_on_failure: bool) -> Outcome:
        try:
            tunnel = self._step("Opening the tunnel", self._tunnels.open, spec, request_id)
        except DuplicateDelivery as duplicate:
            logger.info(
                "Tunnel %s is this request's; its own delivery writes the secrets", duplicate.tunnel_id
            )
            if report_id_on_failure:
                self._announce(duplicate.tunnel_id)
            return Outcome(
                duplicate.tunnel_id, {"TunnelId": duplicate.tunnel_id, "TunnelArn": duplicate.tunnel_arn}
            )
        logger.info("Tunnel %s is open", tunnel.tunnel_id)
        if report_id_on_failure:
            self._announce(tunnel.tunnel_id)
        try:
            written = self._secrets.write(spec, tunnel)
        except PartialWriteError as exc:
            self._abandon(tunnel, exc)
            failed = explain("Writing the token secrets", exc.cause)
            # On Create, report the tunnel id so that CloudFormation's Delete retries the close.
            raise HandlerError(
                f"{failed}. The new tunnel was closed.",
                physical_id=tunnel.tunnel_id if report_id_on_failure else None,
            ) from exc
        return _outcome(tunnel, opened=tunnel.tunnel_id if tunnel.opened else None, written=written)

    def _abandon(self, tunnel: IssuedTunnel, failure: PartialWriteError) -> None:
        """Close a tunnel CloudFormation will not know about and undo the writes that succeeded."""
        self.withdraw(Outcome(tunnel.tunnel_id, {}, tunnel.tunnel_id, failure.written))

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

    def _is_open(self, tunnel_id: str) -> bool:
        state = self._tunnels.describe(tunnel_id)
        return state is not None and state.is_open

    @staticmethod
    def _step(step: str, fn: Any, *args: Any) -> Any:
        """Run one step; an AWS failure becomes a reason that names the step."""
        try:
            return fn(*args)
        except DuplicateDelivery:
            raise
        except Exception as exc:
            raise explain(step, exc) from exc


def _best_effort(cleanup: Callable[[], object]) -> None:
    try:
        cleanup()
    except Exception:
        logger.exception("Clean-up of a tunnel CloudFormation will not reference did not complete")


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


def _outcome(
    tunnel: IssuedTunnel, opened: str | None = None, written: dict[str, str] | None = None
) -> Outcome:
    data = {"TunnelId": tunnel.tunnel_id, "TunnelArn": tunnel.tunnel_arn}
    return Outcome(tunnel.tunnel_id, data, opened, written or {})
