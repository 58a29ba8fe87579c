"""Secrets Manager rotation of a token secret: a fresh single-use access token on demand.

``aws secretsmanager rotate-secret --secret-id <token secret>`` makes Secrets Manager add an
empty version labelled AWSPENDING (its id is the ``ClientRequestToken``) and call this function
once per step, in order; a failed step is retried later with the same ``ClientRequestToken``:

- ``createSecret``: ``RotateTunnelAccessToken`` for the secret's client mode (SOURCE or
  DESTINATION, so the other side's token stays valid) and the new document as AWSPENDING;
- ``setSecret``: nothing (see :meth:`TokenRotation.set_secret`);
- ``testSecret``: the pending document is well formed and its tunnel is still OPEN; or, when
  Secrets Manager tests the rotation configuration (``RotateImmediately`` false: it runs only
  testSecret, on an AWSPENDING version it creates and removes, whose content is not documented),
  nothing: a pending version that is empty or a copy of AWSCURRENT passes and nothing changes;
- ``finishSecret``: AWSCURRENT moves to the new version (Secrets Manager moves AWSPREVIOUS to
  the old one) and AWSPENDING is removed.

A retried step changes nothing. No token is logged or put in an exception message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, NoReturn, get_args

from .contract import CLIENT_MODES, CURRENT, PENDING, SECRET_TAG_KEYS, TokenDocument, format_time
from .errors import error_code, explain
from .properties import binding_of
from .token_secrets import StoredVersion, TokenSecrets
from .tunnels import TunnelService, TunnelState

logger = logging.getLogger(__name__)

StepName = Literal["createSecret", "setSecret", "testSecret", "finishSecret"]
STEPS: tuple[StepName, ...] = get_args(StepName)
#: How a closed tunnel is fixed: the resource's Update opens a new one when the old one is not OPEN.
NEW_TUNNEL_ADVICE = (
    "A closed tunnel can never be reopened or rotated: update the stack to open a new tunnel "
    "(e.g. change the resource's RotationTrigger); the secret then holds the new tunnel's token."
)

#: How a tunnel opened before tunnels were bound to their secrets gets a binding.
UNBOUND_TUNNEL_ADVICE = (
    "The tunnel was opened before tunnels were bound to their secrets: update the stack (e.g. change "
    "the resource's RotationTrigger) to open one that is bound; then rotate the secret again."
)


class RotationError(Exception):
    """A rotation step cannot complete. The message says why and what to do; never a token."""


@dataclass(frozen=True)
class RotationStep:
    """One invocation by Secrets Manager."""

    step: StepName
    secret_id: str
    version_id: str
    #: Sent by Secrets Manager for rotations that use an assumed role; passed back on writes.
    rotation_token: str | None = field(default=None, repr=False)
    #: The secret's full ARN (DescribeSecret), whatever SecretId named it by: what a tunnel is
    #: bound to. Set by :meth:`TokenRotation.run`.
    secret_arn: str = ""

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> RotationStep:
        """Validate the event's fields; a step name other than the four is an error."""
        step, secret_id, version_id = event["Step"], event["SecretId"], event["ClientRequestToken"]
        if step not in STEPS:
            raise RotationError(f"Unknown rotation step {step!r}: expected one of {', '.join(STEPS)}")
        if not (isinstance(secret_id, str) and secret_id and isinstance(version_id, str) and version_id):
            raise RotationError("A rotation event needs SecretId and ClientRequestToken strings")
        rotation_token = event.get("RotationToken")
        return cls(step, secret_id, version_id, rotation_token if isinstance(rotation_token, str) else None)


class TokenRotation:
    """The four rotation steps for the token secrets of tunnels this handler's stack owns."""

    def __init__(self, tunnels: TunnelService, secrets: TokenSecrets, *, now: Callable[[], datetime]) -> None:
        self._tunnels = tunnels
        self._secrets = secrets
        self._now = now

    def run(self, event: RotationStep) -> None:
        """Check that the version is being rotated, then run its step; AWS errors become RotationError."""
        logger.info("%s of secret %s, version %s", event.step, event.secret_id, event.version_id)
        steps: dict[StepName, Callable[[RotationStep], None]] = {
            "createSecret": self.create_secret,
            "setSecret": self.set_secret,
            "testSecret": self.test_secret,
            "finishSecret": self.finish_secret,
        }
        try:
            event, stages = self._stages_of(event)
            if CURRENT in stages:
                # This rotation is over: a retried step is a no-op, except that a finishSecret
                # interrupted between its two label moves drops the leftover AWSPENDING.
                if event.step == "finishSecret" and PENDING in stages:
                    self._drop_pending(event)
                logger.info("%s: version %s is already AWSCURRENT", event.step, event.version_id)
                return
            if PENDING not in stages:
                raise RotationError(
                    f"Version {event.version_id} of secret {event.secret_id} is not AWSPENDING: it is "
                    "not being rotated. Start a rotation with rotate-secret."
                )
            steps[event.step](event)
        except RotationError:
            raise
        except Exception as exc:
            logger.exception("%s of secret %s failed", event.step, event.secret_id)
            raise RotationError(f"{explain(event.step, exc)} (secret {event.secret_id})") from exc

    def create_secret(self, event: RotationStep) -> None:
        """Rotate this secret's token at the service and store the new document as AWSPENDING."""
        current = self._current_document(event, self._current(event))
        stored = self._pending(event)
        if stored.version_id is not None:
            pending = self._pending_document(event, stored)
            if pending.tunnel_id == current.tunnel_id:
                logger.info("createSecret: version %s already holds a new token", event.version_id)
                return
            # A version's value cannot be replaced: give this rotation up so the next starts afresh.
            self._abandon(event, f"its new token is for tunnel {pending.tunnel_id}, no longer the secret's")
        region = self._secrets.region
        if current.region != region:
            raise RotationError(
                f"Tunnel {current.tunnel_id} is in {current.region}, this function in {region}: "
                "rotate the secret with the handler of the tunnel's own stack. Nothing was changed."
            )
        tunnel = self._open_owned_tunnel(event, current)
        # Revokes the old token of this client mode only; the other side's token stays valid.
        token = self._rotate_token(event, tunnel, current.client_mode)
        new = replace(
            current,
            access_token=token,
            tunnel_arn=tunnel.tunnel_arn,
            thing_name=tunnel.thing_name or current.thing_name,
            services=tunnel.services or current.services,
            expires_at=format_time(tunnel.expires_at),
        )
        try:
            self._secrets.put_pending(event.secret_id, event.version_id, new, event.rotation_token)
        except Exception as exc:
            if error_code(exc) != "ResourceExistsException":
                raise
            # The version already holds another value: a duplicate of this step ran at the same time
            # and stored its token first, which this step's rotation may have revoked. A version's
            # value cannot be replaced, so no finishSecret may make that token current.
            self._abandon(
                event,
                "another createSecret of this version ran at the same time, and this one's rotation may "
                "have revoked the token it stored (if that token became current, it is refused)",
            )
        logger.info(
            "createSecret: new %s token of tunnel %s stored as version %s (AWSPENDING)",
            current.client_mode,
            tunnel.tunnel_id,
            event.version_id,
        )

    def set_secret(self, event: RotationStep) -> None:
        """Nothing to do. Unlike a database password, a tunnel token is generated by the service:
        RotateTunnelAccessToken (in createSecret) issued the new token and made it the only valid
        one of its client mode in the same call, so there is nothing left to "set"."""
        logger.info("setSecret: nothing to set for version %s", event.version_id)

    def test_secret(self, event: RotationStep) -> None:
        """The pending document is well formed, for the secret's own tunnel, and that tunnel is OPEN.

        The token itself is not tried: connecting would spend it (tokens are single-use). A
        pending version that is empty or equal to AWSCURRENT is Secrets Manager's configuration
        test, which must pass whatever the tunnel's state (a stack update long after the tunnel
        expired sets up rotation again): a rotation's createSecret always stores a new token.
        """
        stored = self._pending(event)
        current = self._current(event)
        if stored.version_id is None or (stored.text or "") == current.text:
            logger.info("testSecret: version %s is Secrets Manager's configuration test", event.version_id)
            return
        pending = self._pending_document(event, stored)
        self._check_replaces(event, pending, self._current_document(event, current))
        state = self._tunnels.describe(pending.tunnel_id, (pending.thing_name,))
        if state is None or not state.is_open:
            self._abandon(event, self._closed(pending.tunnel_id, state))

    def finish_secret(self, event: RotationStep) -> None:
        """Make the pending version AWSCURRENT, then drop its AWSPENDING label."""
        pending = self._pending_document(event, self._pending(event))
        current = self._current(event)
        if current.document is not None:
            # A stack update may have rewritten the secret since createSecret: never go back to an
            # older tunnel's token.
            self._check_replaces(event, pending, current.document)
        self._secrets.move_label(
            event.secret_id, CURRENT, to_version=event.version_id, from_version=current.version_id
        )
        logger.info("finishSecret: version %s of secret %s is AWSCURRENT", event.version_id, event.secret_id)
        # The rotation is done: AWSPENDING left on the AWSCURRENT version is a finished rotation
        # to Secrets Manager (RotateSecret API reference), so failing to drop it fails nothing.
        try:
            self._drop_pending(event)
        except Exception:
            logger.warning(
                "finishSecret: AWSPENDING stays on version %s (harmless)", event.version_id, exc_info=True
            )

    # --- helpers -------------------------------------------------------------------------------

    def _stages_of(self, event: RotationStep) -> tuple[RotationStep, list[str]]:
        """The event with its secret's ARN, and the version's staging labels, after the checks
        every step makes."""
        metadata = self._secrets.metadata(event.secret_id)
        if not metadata.rotation_configured:
            raise RotationError(f"Secret {event.secret_id} is not configured for rotation")
        stages = metadata.stages.get(event.version_id)
        if stages is None:
            raise RotationError(
                f"Secret {event.secret_id} has no version {event.version_id} with a staging label: "
                "that rotation is over. Start a new one with rotate-secret."
            )
        return replace(event, secret_arn=metadata.arn), stages

    def _current(self, event: RotationStep) -> StoredVersion:
        return self._secrets.read(event.secret_id, stage=CURRENT)

    def _pending(self, event: RotationStep) -> StoredVersion:
        """The new version (none while it has no value: RotateSecret adds it empty)."""
        return self._secrets.read(
            event.secret_id, version_id=event.version_id, stage=PENDING, absent={"ResourceNotFoundException"}
        )

    def _current_document(self, event: RotationStep, current: StoredVersion) -> TokenDocument:
        if current.document is None:
            raise RotationError(
                f"Secret {event.secret_id} holds no tunnel token yet: its AWSCURRENT value is not the "
                "document the Custom::IoTSecureTunnel resource writes. Deploy the stack that owns the "
                "secret first, then rotate it. Nothing was changed."
            )
        return current.document

    def _pending_document(self, event: RotationStep, pending: StoredVersion) -> TokenDocument:
        """The new version's document. A value that is not a token document was not written by
        this function: fail rather than guess."""
        version = f"Version {event.version_id} of secret {event.secret_id}"
        if pending.version_id is None:
            raise RotationError(
                f"{version} holds no token: createSecret has not completed. Rotate the secret again."
            )
        if pending.document is None:
            raise RotationError(
                f"{version} holds a value that is not a token document; remove its AWSPENDING label "
                "and rotate again"
            )
        return pending.document

    def _open_owned_tunnel(self, event: RotationStep, current: TokenDocument) -> TunnelState:
        """The secret's tunnel if it is OPEN and this handler's stack opened it."""
        tunnel_id = current.tunnel_id
        state = self._tunnels.describe(tunnel_id, (current.thing_name,))
        if state is None or not state.is_open:
            self._refuse(event, self._closed(tunnel_id, state))
        # The secret names the tunnel: without this check, whoever may write the secret could have
        # this function rotate (and hand out) the tokens of a tunnel its stack does not own.
        if not self._tunnels.owns(state):
            raise RotationError(
                f"Tunnel {tunnel_id} was not opened by this function's stack, so its tokens are not "
                "rotated here; nothing was changed"
            )
        # Nor may a secret that merely names the tunnel receive its tokens: only a secret the
        # tunnel was opened for (bound at OpenTunnel, in tags the handler's role cannot change).
        bound = state.tags.get(SECRET_TAG_KEYS[current.client_mode])
        if bound != binding_of(event.secret_arn):
            self._refuse(
                event,
                f"Secret {event.secret_id} is not the {current.client_mode} secret tunnel {tunnel_id} "
                "was opened for, so the tunnel's tokens are not rotated into it",
                advice=UNBOUND_TUNNEL_ADVICE if bound is None else "",
            )
        return state

    def _refuse(self, event: RotationStep, why: str, *, advice: str = NEW_TUNNEL_ADVICE) -> NoReturn:
        """Refuse createSecret (by default: its tunnel is closed, so say how to get a new one)."""
        self._give_up(event, f"{why}; nothing was changed. {advice}".rstrip())

    def _closed(self, tunnel_id: str, state: TunnelState | None) -> str:
        """Why a tunnel cannot be rotated, in words an operator can act on."""
        if state is None:
            return f"Tunnel {tunnel_id} no longer exists"
        if state.expires_at <= self._now():
            return f"Tunnel {tunnel_id} expired at {format_time(state.expires_at)}"
        return f"Tunnel {tunnel_id} is closed (it was closed before its lifetime ended)"

    def _check_replaces(self, event: RotationStep, pending: TokenDocument, current: TokenDocument) -> None:
        if (pending.tunnel_id, pending.client_mode) != (current.tunnel_id, current.client_mode):
            self._abandon(
                event,
                f"its new token is the {pending.client_mode} token of tunnel {pending.tunnel_id}, but the "
                f"secret now holds the {current.client_mode} token of tunnel {current.tunnel_id}",
            )

    def _abandon(self, event: RotationStep, reason: str) -> NoReturn:
        """Give up a rotation whose pending version can never become current."""
        self._give_up(
            event,
            f"Rotation of secret {event.secret_id} abandoned: {reason}. AWSCURRENT was left as it was. "
            f"If the tunnel is closed, update the stack to open a new one; then rotate the secret again.",
        )

    def _give_up(self, event: RotationStep, message: str) -> NoReturn:
        """Drop AWSPENDING, so that the next rotate-secret starts a new rotation rather than being
        refused as "previous rotation isn't complete" or retrying this one for ever (AWSCURRENT is
        not touched); then fail with ``message``."""
        try:
            self._drop_pending(event)
        except Exception:
            logger.exception("Could not remove AWSPENDING from version %s", event.version_id)
        raise RotationError(message)

    def _drop_pending(self, event: RotationStep) -> None:
        self._secrets.move_label(event.secret_id, PENDING, from_version=event.version_id)

    def _rotate_token(self, event: RotationStep, tunnel: TunnelState, mode: str) -> str:
        """The new token of one client mode (the other side's stays valid); a tunnel that vanished
        since it was read gets the same advice as one found closed."""
        try:
            return self._tunnels.rotate(tunnel, CLIENT_MODES[mode]).tokens.of(mode)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                self._refuse(event, self._closed(tunnel.tunnel_id, None))
            raise
