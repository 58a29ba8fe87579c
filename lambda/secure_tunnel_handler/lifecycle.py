"""The CloudFormation lifecycle of a ``Custom::IoTSecureTunnel``: what Create, Update and Delete do.

The physical resource id is the tunnel id. Tokens only travel from the tunnel API to the secrets.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from .errors import HandlerError, explain
from .properties import InvalidProperties, TunnelSpec, parse_properties, secret_arns_of, thing_names_of
from .token_secrets import Claim, PartialWriteError, Restore, TokenSecrets
from .tunnels import DuplicateDelivery, IssuedTunnel, TunnelService, TunnelState

_P = ParamSpec("_P")
_R = TypeVar("_R")

logger = logging.getLogger(__name__)

TUNNEL_ID_RE = re.compile(r"[a-zA-Z0-9_\-+=:]{1,128}")
#: Start of the physical id of a Create that opened no tunnel (see :func:`not_opened_id`).
NOT_OPENED_PREFIX = "not-opened/"


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
        *,
        ends_at: float = float("inf"),
    ) -> None:
        self._tunnels = tunnels
        self._secrets = secrets
        self._pool = pool
        # Epoch seconds when this invocation ends at the latest: how long a claim holds.
        self._ends_at = ends_at
        # Told the new tunnel's id as soon as Create has opened it: a response sent before the
        # handler returns (crhelper's timeout) must name it, or CloudFormation never closes it.
        self._announce = announce

    def create(self, event: dict[str, Any]) -> Outcome:
        """Open a tunnel and write its tokens; nothing stays open if any step fails."""
        spec = _parse(event)
        return self._open_and_publish(spec, event["RequestId"], report_id_on_failure=True)

    def withdraw(self, outcome: Outcome) -> None:
        """Take back what a Create or a replacement did that CloudFormation never heard of: close
        the tunnel it opened and give the secrets back their previous versions."""
        if outcome.opened:
            _best_effort(lambda: self._tunnels.close(str(outcome.opened)))
            _best_effort(lambda: self._secrets.undo(outcome.written))

    def update(self, event: dict[str, Any]) -> Outcome:
        """Rotate the tokens in place, or open a replacement when the tunnel cannot be kept."""
        spec = _parse(event)
        tunnel_id = event["PhysicalResourceId"]
        # The tunnel is listed under the thing it was opened to: the old properties' thing.
        things = (*thing_names_of(event.get("OldResourceProperties")), spec.thing_name)
        current = (
            self._step("Reading the tunnel", self._tunnels.describe, tunnel_id, things)
            if _looks_like_tunnel(tunnel_id, event)
            else None
        )
        reason = _replacement_reason(current, spec)
        if current is None or reason:
            logger.info("Opening a replacement for tunnel %s: %s", tunnel_id, reason)
            return self._open_and_publish(spec, event["RequestId"], report_id_on_failure=False)
        if not self._tunnels.owns(current):
            raise HandlerError(
                f"Tunnel {tunnel_id} was not opened by this handler's stack: its tokens are not "
                "rotated and its tags not changed here. Nothing was changed."
            )
        claim = self._step(
            "Claiming the update", self._secrets.claim, spec, event["RequestId"], self._ends_at
        )
        if claim is None:
            return self._outcome_of_claimant(current, spec, event["RequestId"])
        return self._rotate_in_place(current, spec, claim)

    def delete(self, event: dict[str, Any]) -> None:
        """Close the tunnel; give the secrets back their previous tunnel after a rolled-back replacement."""
        tunnel_id = event["PhysicalResourceId"]
        if not _looks_like_tunnel(tunnel_id, event):
            logger.info(
                "Physical id %s is not a tunnel (left by a failed Create): nothing to close", tunnel_id
            )
            return
        properties = event.get("ResourceProperties", {})
        arns, things = secret_arns_of(properties), thing_names_of(properties)
        closing = self._pool.submit(self._tunnels.close, tunnel_id, things)
        planning = {
            mode: self._pool.submit(self._secrets.plan_restore, arn, tunnel_id) for mode, arn in arns.items()
        }
        if not self._step("Closing the tunnel", closing.result):
            logger.info("Tunnel %s was already gone", tunnel_id)
        plans = {
            mode: plan
            for mode, future in planning.items()
            if (plan := self._step("Restoring the token secrets", future.result))
        }
        if plans:
            self._step("Restoring the token secrets", self._restore, plans, things, arns.get("destination"))

    def _restore(
        self, plans: dict[str, Restore], things: tuple[str, ...], destination_arn: str | None
    ) -> None:
        """Give the secrets back to the tunnel their previous versions hold: the source secret
        by moving AWSCURRENT back, the destination secret with a new destination token.

        The device was last sent the deleted tunnel's token: only a DESTINATION rotation with the
        destination configuration sends it the restored tunnel's, and that revokes the token the
        destination secret's previous version holds. Without a plan for a destination secret that
        still exists (it holds another tunnel), nothing is rotated: it would revoke its token.
        """
        # Both secrets go back to one tunnel, and only to one that is still OPEN: checked once,
        # so that the two secrets cannot see different answers. The source secret goes back by
        # its previous version, if it has one.
        source, destination = plans.get("source"), plans.get("destination")
        targets = {plan.tunnel_id for plan in plans.values() if plan.tunnel_id}
        target = self._tunnels.describe(targets.pop(), things) if len(targets) == 1 else None
        if target is None or not target.is_open:
            logger.info(
                "The secrets' previous versions do not hold one OPEN tunnel: secrets left as they are"
            )
            return
        written = {}
        if destination is not None or destination_arn is None or self._secrets.is_gone(destination_arn):
            written = self._send_new_destination_token(target, destination.arn if destination else None)
        try:
            self._secrets.restore([source] if source and source.previous_version else [])
        except Exception:
            # All or none: the secrets never hold tokens of two different tunnels.
            _best_effort(lambda: self._secrets.undo(written))
            raise

    def _send_new_destination_token(self, tunnel: TunnelState, secret_arn: str | None) -> dict[str, str]:
        """Send the device a new destination token of ``tunnel`` and write it into the
        destination secret, if any; returns the secret ARN -> version id written."""
        issued = self._tunnels.rotate(tunnel, "DESTINATION")
        logger.info("Tunnel %s: the device was sent a new destination token", tunnel.tunnel_id)
        if secret_arn is None:
            return {}
        return {
            secret_arn: self._secrets.put(secret_arn, tunnel, "destination", issued.tokens.of("destination"))
        }

    def _renotify_the_winner(self, spec: TunnelSpec, winner: DuplicateDelivery) -> None:
        """This delivery lost a race of two OpenTunnel calls of one request, and its own opening
        sent the device a token of the tunnel it then closed. Send the device a token of the
        winner's tunnel, after the winner's delivery wrote its destination secret (the new token
        goes there too). Best effort: the resource is the winner's, whose delivery answers too."""
        try:
            arn = spec.destination_secret_arn
            if arn and not self._secrets.await_current(arn, winner.tunnel_id):
                logger.warning(
                    "Tunnel %s's secrets were not written in time: device not re-notified", winner.tunnel_id
                )
                return
            tunnel = self._tunnels.describe(winner.tunnel_id, (spec.thing_name,))
            if tunnel is not None and tunnel.is_open:
                self._send_new_destination_token(tunnel, arn)
        except Exception:
            logger.exception("Could not send the device a token of tunnel %s", winner.tunnel_id)

    def _open_and_publish(self, spec: TunnelSpec, request_id: str, report_id_on_failure: bool) -> Outcome:
        try:
            tunnel = self._step("Opening the tunnel", self._tunnels.open, spec, request_id)
        except DuplicateDelivery as duplicate:
            logger.info(
                "Tunnel %s is this request's; its own delivery writes the secrets", duplicate.tunnel_id
            )
            if report_id_on_failure:
                self._announce(duplicate.tunnel_id)
            self._renotify_the_winner(spec, duplicate)
            return Outcome(duplicate.tunnel_id, _attributes(duplicate.tunnel_id, duplicate.tunnel_arn))
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

    def _rotate_in_place(self, current: TunnelState, spec: TunnelSpec, claim: Claim) -> Outcome:
        # spec's destination: the tunnel's own, or where DestinationConfig moved it.
        issued = self._step("Rotating the access tokens", self._tunnels.rotate, current, destination=spec)
        tagging = self._pool.submit(self._tunnels.sync_tags, current, dict(spec.tags))
        try:
            self._secrets.write(spec, issued, claim)
        except PartialWriteError as exc:
            # The old tokens are revoked by the rotation: keep whatever was written.
            raise explain("Writing the token secrets", exc.cause) from exc
        self._step("Updating the tunnel's tags", tagging.result)
        return _outcome(issued)

    def _outcome_of_claimant(self, current: TunnelState, spec: TunnelSpec, request_id: str) -> Outcome:
        """Another delivery of this Update holds its claim: report what that one wrote."""
        claim = self._step("Reading the claim of the update", self._secrets.claim_of, spec, request_id)
        logger.info("Another delivery of request %s rotates the tokens: waiting for its writes", request_id)
        stored = self._step("Waiting for the other delivery", self._secrets.await_writes, spec, claim)
        if stored is None or stored.tunnel_id != current.tunnel_id:
            raise HandlerError(
                f"Another delivery of this request claimed the rotation of tunnel {current.tunnel_id} "
                "and did not write its tokens in time; nothing was changed here. Retry the stack update."
            )
        return Outcome(current.tunnel_id, _attributes(current.tunnel_id, current.tunnel_arn))

    @staticmethod
    def _step(step: str, fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """Run one step; an AWS failure becomes a reason that names the step."""
        try:
            return fn(*args, **kwargs)
        except DuplicateDelivery:
            raise
        except Exception as exc:
            raise explain(step, exc) from exc


def _best_effort(cleanup: Callable[[], object]) -> None:
    try:
        cleanup()
    except Exception:
        logger.exception("Clean-up of a tunnel CloudFormation will not reference did not complete")


def _parse(event: dict[str, Any]) -> TunnelSpec:
    if "ResourceProperties" not in event:
        raise HandlerError("Invalid event: it has no ResourceProperties. Nothing was changed.")
    try:
        return parse_properties(event["ResourceProperties"])
    except InvalidProperties as exc:
        raise HandlerError(str(exc)) from exc


def not_opened_id(event: dict[str, Any]) -> str:
    """The physical id of a Create that opened no tunnel (CloudFormation then sends a Delete with
    it): ``not-opened/<logical id>/<request id>``, which no tunnel id can be (``/``)."""
    return f"{NOT_OPENED_PREFIX}{event.get('LogicalResourceId', '')}/{event.get('RequestId', '')}"


def _looks_like_tunnel(physical_id: str, event: dict[str, Any]) -> bool:
    """False for ids no tunnel can have: :func:`not_opened_id`'s, and crhelper's
    ``<stack>_<logicalId>_<rand>`` that earlier versions of the handler reported for a failed
    Create (stacks deployed then still send it)."""
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
    if current.binding != spec.binding:
        # A tunnel's tokens go only to the secrets it was opened for (and a tunnel opened before
        # tunnels were bound has none): other secrets get a tunnel of their own.
        return "its token secrets are not the ones it was opened for"
    return None


def _outcome(
    tunnel: IssuedTunnel, opened: str | None = None, written: dict[str, str] | None = None
) -> Outcome:
    return Outcome(tunnel.tunnel_id, _attributes(tunnel.tunnel_id, tunnel.tunnel_arn), opened, written or {})


def _attributes(tunnel_id: str, tunnel_arn: str) -> dict[str, str]:
    """The resource's Fn::GetAtt attributes (never a token)."""
    return {"TunnelId": tunnel_id, "TunnelArn": tunnel_arn}
