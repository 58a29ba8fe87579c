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

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NoReturn, get_args

from .contract import CURRENT, PENDING, SECRET_TAG_KEYS, format_time
from .errors import error_code, explain
from .properties import binding_of
from .redaction import REDACTOR
from .retries import Retrier
from .tunnels import TunnelService, TunnelState

if TYPE_CHECKING:
    from mypy_boto3_iotsecuretunneling import IoTSecureTunnelingClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

logger = logging.getLogger(__name__)

StepName = Literal["createSecret", "setSecret", "testSecret", "finishSecret"]
STEPS: tuple[StepName, ...] = get_args(StepName)
#: The document's clientMode -> RotateTunnelAccessToken's clientMode.
CLIENT_MODES = {"source": "SOURCE", "destination": "DESTINATION"}
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


@dataclass(frozen=True)
class TokenDocument:
    """The JSON a token secret holds (see ``token_secrets.secret_value``)."""

    tunnel_id: str
    tunnel_arn: str
    client_mode: str
    access_token: str = field(repr=False)
    region: str
    thing_name: str
    services: tuple[str, ...]
    expires_at: str

    @classmethod
    def parse(cls, text: str | None) -> TokenDocument | None:
        """The document in ``text``, or None if it is not a complete token document."""
        try:
            raw = json.loads(text or "")
        except ValueError:
            return None
        if not isinstance(raw, dict):
            return None
        strings = ("tunnelId", "tunnelArn", "clientMode", "accessToken", "region", "thingName", "expiresAt")
        services = raw.get("services")
        if not all(isinstance(raw.get(k), str) and raw[k] for k in strings) or not (
            isinstance(services, list) and services and all(isinstance(s, str) for s in services)
        ):
            return None
        if raw["clientMode"] not in CLIENT_MODES:
            return None
        REDACTOR.remember(raw["accessToken"])
        return cls(
            tunnel_id=raw["tunnelId"],
            tunnel_arn=raw["tunnelArn"],
            client_mode=raw["clientMode"],
            access_token=raw["accessToken"],
            region=raw["region"],
            thing_name=raw["thingName"],
            services=tuple(services),
            expires_at=raw["expiresAt"],
        )

    def to_json(self) -> str:
        """The document as stored, keys in the order the custom resource writes them."""
        return json.dumps(
            {
                "tunnelId": self.tunnel_id,
                "tunnelArn": self.tunnel_arn,
                "clientMode": self.client_mode,
                "accessToken": self.access_token,
                "region": self.region,
                "thingName": self.thing_name,
                "services": list(self.services),
                "expiresAt": self.expires_at,
            }
        )


@dataclass(frozen=True)
class StoredVersion:
    """A version of the secret: its id, its value and its token document (None if it holds none)."""

    version_id: str | None
    text: str | None = field(repr=False)
    document: TokenDocument | None


class TokenRotation:
    """The four rotation steps for the token secrets of tunnels this handler's stack owns."""

    def __init__(
        self,
        secrets_client: SecretsManagerClient,
        tunnels_client: IoTSecureTunnelingClient,
        tunnels: TunnelService,
        retrier: Retrier,
        *,
        owner: str,
        now: Callable[[], datetime],
    ) -> None:
        self._secrets = secrets_client
        self._tunnels = tunnels
        self._retrier = retrier
        self._owner = owner
        self._now = now
        # The region of the tunnels this function serves (a secret may name another).
        self._region = str(tunnels_client.meta.region_name)
        self._secret_arn = ""  # set by run(), from DescribeSecret

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
            stages = self._stages_of(event)
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
        current = self._current(event)
        pending = self._pending(event)
        if pending is not None:
            if pending.tunnel_id == current.tunnel_id:
                logger.info("createSecret: version %s already holds a new token", event.version_id)
                return
            # A version's value cannot be replaced: give this rotation up so the next starts afresh.
            self._abandon(event, f"its new token is for tunnel {pending.tunnel_id}, no longer the secret's")
        if current.region != self._region:
            raise RotationError(
                f"Tunnel {current.tunnel_id} is in {current.region}, this function in {self._region}: "
                "rotate the secret with the handler of the tunnel's own stack. Nothing was changed."
            )
        tunnel = self._open_owned_tunnel(event, current)
        # Revokes the old token of this client mode only; the other side's token stays valid.
        token = self._rotate_token(event, tunnel, CLIENT_MODES[current.client_mode])
        new = replace(
            current,
            access_token=token,
            tunnel_arn=tunnel.tunnel_arn,
            thing_name=tunnel.thing_name or current.thing_name,
            services=tunnel.services or current.services,
            expires_at=format_time(tunnel.expires_at),
        )
        request: dict[str, Any] = {
            "SecretId": event.secret_id,
            "ClientRequestToken": event.version_id,
            "SecretString": new.to_json(),
            "VersionStages": [PENDING],
        }
        if event.rotation_token:
            request["RotationToken"] = event.rotation_token
        # The same ClientRequestToken and value on every retry: Secrets Manager writes one version.
        try:
            self._retrier.call(lambda: self._secrets.put_secret_value(**request))
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
        pending_text = self._pending_text(event)
        current = self._read_current(event)
        if pending_text is None or pending_text == current.text:
            logger.info("testSecret: version %s is Secrets Manager's configuration test", event.version_id)
            return
        pending = self._document_of(event, pending_text)
        self._check_replaces(event, pending, self._current(event, current))
        state = self._tunnels.describe(pending.tunnel_id, (pending.thing_name,))
        if state is None or not state.is_open:
            self._abandon(event, self._closed(pending.tunnel_id, state))

    def finish_secret(self, event: RotationStep) -> None:
        """Make the pending version AWSCURRENT, then drop its AWSPENDING label."""
        pending = self._required_pending(event)
        current = self._read_current(event)
        if current.document is not None:
            # A stack update may have rewritten the secret since createSecret: never go back to an
            # older tunnel's token.
            self._check_replaces(event, pending, current.document)
        move: dict[str, Any] = {
            "SecretId": event.secret_id,
            "VersionStage": CURRENT,
            "MoveToVersionId": event.version_id,
        }
        if current.version_id:
            move["RemoveFromVersionId"] = current.version_id
        self._move_label(event, move, done=lambda stages: CURRENT in stages)
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

    def _stages_of(self, event: RotationStep) -> list[str]:
        """The version's staging labels, after the checks every step makes."""
        metadata = self._retrier.call(lambda: self._secrets.describe_secret(SecretId=event.secret_id))
        # The secret's full ARN, whatever the event named it by: what a tunnel is bound to.
        self._secret_arn = str(metadata.get("ARN") or event.secret_id)
        if not (metadata.get("RotationEnabled") or metadata.get("RotationLambdaARN")):
            raise RotationError(f"Secret {event.secret_id} is not configured for rotation")
        stages = metadata.get("VersionIdsToStages", {}).get(event.version_id)
        if stages is None:
            raise RotationError(
                f"Secret {event.secret_id} has no version {event.version_id} with a staging label: "
                "that rotation is over. Start a new one with rotate-secret."
            )
        return list(stages)

    def _read_current(self, event: RotationStep) -> StoredVersion:
        """The AWSCURRENT version: its id, and its document if it holds a token document."""
        response = self._retrier.call(
            lambda: self._secrets.get_secret_value(SecretId=event.secret_id, VersionStage=CURRENT)
        )
        text = response.get("SecretString")
        return StoredVersion(response.get("VersionId"), text, TokenDocument.parse(text))

    def _current(self, event: RotationStep, stored: StoredVersion | None = None) -> TokenDocument:
        document = (stored or self._read_current(event)).document
        if document is None:
            raise RotationError(
                f"Secret {event.secret_id} holds no tunnel token yet: its AWSCURRENT value is not the "
                "document the Custom::IoTSecureTunnel resource writes. Deploy the stack that owns the "
                "secret first, then rotate it. Nothing was changed."
            )
        return document

    def _pending(self, event: RotationStep) -> TokenDocument | None:
        """The new version's document; None while it has no value."""
        text = self._pending_text(event)
        return None if text is None else self._document_of(event, text)

    def _pending_text(self, event: RotationStep) -> str | None:
        """The new version's value; None while it has none (RotateSecret adds it empty)."""
        try:
            response = self._retrier.call(
                lambda: self._secrets.get_secret_value(
                    SecretId=event.secret_id, VersionId=event.version_id, VersionStage=PENDING
                )
            )
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        return str(response.get("SecretString") or "")

    def _document_of(self, event: RotationStep, text: str) -> TokenDocument:
        """The pending version's document. A value that is not a token document was not written
        by this function: fail rather than guess."""
        document = TokenDocument.parse(text)
        if document is None:
            raise RotationError(
                f"Version {event.version_id} of secret {event.secret_id} holds a value that is not a "
                "token document; remove its AWSPENDING label and rotate again"
            )
        return document

    def _required_pending(self, event: RotationStep) -> TokenDocument:
        pending = self._pending(event)
        if pending is None:
            raise RotationError(
                f"Version {event.version_id} of secret {event.secret_id} holds no token: createSecret "
                "has not completed. Rotate the secret again."
            )
        return pending

    def _open_owned_tunnel(self, event: RotationStep, current: TokenDocument) -> TunnelState:
        """The secret's tunnel if it is OPEN and this handler's stack opened it."""
        tunnel_id = current.tunnel_id
        state = self._tunnels.describe(tunnel_id, (current.thing_name,))
        if state is None or not state.is_open:
            self._refuse_closed(event, self._closed(tunnel_id, state))
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
        if bound != binding_of(self._secret_arn):
            self._refuse(
                event,
                f"Secret {event.secret_id} is not the {current.client_mode} secret tunnel {tunnel_id} "
                "was opened for, so the tunnel's tokens are not rotated into it",
                advice=UNBOUND_TUNNEL_ADVICE if bound is None else "",
            )
        return state

    def _refuse_closed(self, event: RotationStep, why: str) -> NoReturn:
        """createSecret of a closed tunnel: say how to get a new one (see :meth:`_refuse`)."""
        self._refuse(event, why, advice=NEW_TUNNEL_ADVICE)

    def _refuse(self, event: RotationStep, why: str, *, advice: str) -> NoReturn:
        """Refuse createSecret: drop the AWSPENDING label RotateSecret gave the empty version, so
        that the next rotation (after a stack update) is not refused as "previous rotation isn't
        complete", and say why."""
        try:
            self._drop_pending(event)
        except Exception:
            logger.exception("Could not remove AWSPENDING from version %s", event.version_id)
        raise RotationError(f"{why}; nothing was changed. {advice}".rstrip())

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
        """Give up a rotation whose pending version can never become current, and say why.

        Dropping AWSPENDING lets the next rotate-secret start a new rotation instead of retrying
        this one for ever; AWSCURRENT is not touched.
        """
        try:
            self._drop_pending(event)
        except Exception:
            logger.exception("Could not remove AWSPENDING from version %s", event.version_id)
        raise RotationError(
            f"Rotation of secret {event.secret_id} abandoned: {reason}. AWSCURRENT was left as it was. "
            f"If the tunnel is closed, update the stack to open a new one; then rotate the secret again."
        )

    def _drop_pending(self, event: RotationStep) -> None:
        move = {"SecretId": event.secret_id, "VersionStage": PENDING, "RemoveFromVersionId": event.version_id}
        self._move_label(event, move, done=lambda stages: PENDING not in stages)

    def _move_label(
        self, event: RotationStep, move: dict[str, Any], done: Callable[[list[str]], bool]
    ) -> None:
        """UpdateSecretVersionStage, idempotent: a retry of a move whose answer was lost fails
        (the label has already left RemoveFromVersionId), so after a failure the move counts as
        made if the version's labels already show it (``done``)."""
        try:
            self._retrier.call(lambda: self._secrets.update_secret_version_stage(**move))
        except Exception:
            if not done(self._labels_of(event)):
                raise

    def _labels_of(self, event: RotationStep) -> list[str]:
        metadata = self._retrier.call(lambda: self._secrets.describe_secret(SecretId=event.secret_id))
        return list(metadata.get("VersionIdsToStages", {}).get(event.version_id, []))

    def _rotate_token(self, event: RotationStep, tunnel: TunnelState, mode: str) -> str:
        """The new token of one client mode; a tunnel that vanished since it was read gets the
        same advice as one found closed."""
        try:
            return self._tunnels.rotate_side(tunnel, mode)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                self._refuse_closed(event, self._closed(tunnel.tunnel_id, None))
            raise
