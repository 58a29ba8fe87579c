"""Writing a tunnel's tokens into the resource's Secrets Manager secrets, and undoing it.

Each secret holds one JSON object: tunnelId, tunnelArn, clientMode, accessToken, region,
thingName, services, expiresAt. Secrets Manager keeps the previous version (AWSPREVIOUS),
which is how a write is undone and how a rolled-back replacement gets its old tokens back.

An in-place Update first *claims* its request in the source secret: a version whose
ClientRequestToken is derived from the request id, holding which delivery claimed it. A version's
value can never change (PutSecretValue: the same data again is ignored, other data fails with
ResourceExistsException), so of two deliveries of one request only one can claim it; the other
rotates nothing and waits for the claimant's writes (:meth:`TokenSecrets.await_writes`).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .contract import CURRENT, PREVIOUS, format_time
from .errors import error_code
from .properties import TunnelSpec
from .retries import Retrier
from .tunnels import IssuedTunnel, TunnelState

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

logger = logging.getLogger(__name__)

# A deleted or scheduled-for-deletion secret has nothing left to restore.
GONE_CODES = frozenset({"ResourceNotFoundException", "InvalidRequestException"})
#: Staging label of the claim versions: a version with no label may be deleted by Secrets Manager.
CLAIM_STAGE = "IOTSECURETUNNEL_CLAIM"
#: Namespace of the version ids derived from request ids and claims.
_VERSION_IDS = uuid.UUID("6f1c2b53-8a0e-4c57-9d5e-2f4a7c9e1b30")
#: How often a duplicate delivery looks for the claimant's writes.
_POLL_SECONDS = 1.0


class PartialWriteError(Exception):
    """Some secrets could not be written; the ``written`` ones hold the new tokens."""

    def __init__(self, cause: BaseException, written: dict[str, str]) -> None:
        super().__init__(f"writing the token secrets failed ({type(cause).__name__})")
        self.cause = cause
        #: secret ARN -> version id of the versions that were written.
        self.written = written


@dataclass(frozen=True)
class Restore:
    """A secret that holds tokens of a tunnel being deleted, and what its previous version holds:
    moving AWSCURRENT back to that version gives it the previous tunnel's token again."""

    arn: str
    current_version: str
    #: The previous version's tunnel and version id (None: it holds no other tunnel's document).
    tunnel_id: str | None
    previous_version: str | None


@dataclass(frozen=True)
class Claim:
    """Which delivery of a request rotates and writes the tokens, and until when it may run."""

    holder: str
    #: Epoch seconds when the claimant's Lambda invocation ends at the latest.
    until: float

    def write_token(self, arn: str) -> str:
        """The ClientRequestToken of the claimant's write of ``arn``: a duplicate knows it."""
        return str(uuid.uuid5(_VERSION_IDS, f"{self.holder}|{arn}"))


@dataclass(frozen=True)
class StoredTunnel:
    """Which tunnel a secret version holds tokens for."""

    tunnel_id: str | None
    version_id: str | None


def secret_value(spec: TunnelSpec, tunnel: IssuedTunnel, mode: str, region: str) -> str:
    """The JSON document stored in a token secret (``mode``: source or destination)."""
    token = tunnel.tokens.source if mode == "source" else tunnel.tokens.destination
    return token_document(
        tunnel_id=tunnel.tunnel_id,
        tunnel_arn=tunnel.tunnel_arn,
        mode=mode,
        token=token,
        region=region,
        destination=spec,
        expires_at=tunnel.expires_at,
    )


def token_document(
    *,
    tunnel_id: str,
    tunnel_arn: str,
    mode: str,
    token: str,
    region: str,
    destination: TunnelSpec | TunnelState,
    expires_at: datetime,
) -> str:
    """The JSON document of one token of a tunnel to ``destination``'s thing and services."""
    return json.dumps(
        {
            "tunnelId": tunnel_id,
            "tunnelArn": tunnel_arn,
            "clientMode": mode,
            "accessToken": token,
            "region": region,
            "thingName": destination.thing_name,
            "services": list(destination.services),
            "expiresAt": format_time(expires_at),
        }
    )


class TokenSecrets:
    """The Secrets Manager side of the handler."""

    def __init__(
        self,
        client: SecretsManagerClient,
        retrier: Retrier,
        region: str,
        pool: ThreadPoolExecutor,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._retrier = retrier
        self._region = region
        self._pool = pool
        self._clock = clock
        self._sleep = sleep

    def write(self, spec: TunnelSpec, tunnel: IssuedTunnel, claim: Claim | None = None) -> dict[str, str]:
        """Write both secrets concurrently; returns the secret ARN -> version id written, or
        raises PartialWriteError naming what was written. Under a ``claim``, the version ids are
        the claim's, so that a duplicate delivery can find them."""
        targets = [(spec.source_secret_arn, "source")]
        if spec.destination_secret_arn:
            targets.append((spec.destination_secret_arn, "destination"))
        futures = {
            arn: self._pool.submit(
                self._put,
                arn,
                secret_value(spec, tunnel, mode, self._region),
                claim.write_token(arn) if claim else str(uuid.uuid4()),
            )
            for arn, mode in targets
        }
        written, failure = {}, None
        for arn, future in futures.items():
            try:
                written[arn] = future.result()
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise PartialWriteError(failure, written)
        return written

    def claim(self, spec: TunnelSpec, request_id: str, until: float) -> Claim | None:
        """Claim ``request_id`` for this delivery; returns None if another delivery holds it."""
        token = str(uuid.uuid5(_VERSION_IDS, request_id))
        mine = Claim(holder=str(uuid.uuid4()), until=until)
        value = json.dumps({"claimOf": request_id, "holder": mine.holder, "until": mine.until})
        try:
            # The same value on every retry: a retried claim whose answer was lost still holds.
            self._retrier.call(
                lambda: self._client.put_secret_value(
                    SecretId=spec.source_secret_arn,
                    ClientRequestToken=token,
                    SecretString=value,
                    VersionStages=[CLAIM_STAGE],
                )
            )
        except Exception as exc:
            if error_code(exc) != "ResourceExistsException":
                raise
            return None
        return mine

    def claim_of(self, spec: TunnelSpec, request_id: str) -> Claim:
        """The claim another delivery made of ``request_id``."""
        token = str(uuid.uuid5(_VERSION_IDS, request_id))
        response = self._retrier.call(
            lambda: self._client.get_secret_value(SecretId=spec.source_secret_arn, VersionId=token)
        )
        document = json.loads(response["SecretString"])
        return Claim(holder=str(document["holder"]), until=float(document["until"]))

    def await_writes(self, spec: TunnelSpec, claim: Claim) -> StoredTunnel | None:
        """Wait for the claimant's writes of every secret; returns the tunnel they hold, or None
        if they are not all there when the claimant's invocation (or this one) is over."""
        while True:
            stored = [
                self._read(arn, {"VersionId": claim.write_token(arn)}, absent={"ResourceNotFoundException"})
                for arn in spec.secret_arns
            ]
            if all(s.version_id for s in stored):
                return stored[0]
            if not self._may_wait(claim.until):
                return None

    def await_current(self, arn: str, tunnel_id: str) -> bool:
        """Wait until the secret's AWSCURRENT holds tokens of ``tunnel_id`` (another delivery
        writes them); False if it does not before this invocation's time is over."""
        while self.stored(arn, CURRENT).tunnel_id != tunnel_id:
            if not self._may_wait(float("inf")):
                return False
        return True

    def document(self, tunnel: TunnelState, mode: str, token: str) -> str:
        """The document of one token of a tunnel the handler did not just open (in this region)."""
        return token_document(
            tunnel_id=tunnel.tunnel_id,
            tunnel_arn=tunnel.tunnel_arn,
            mode=mode,
            token=token,
            region=self._region,
            destination=tunnel,
            expires_at=tunnel.expires_at,
        )

    def put(self, arn: str, value: str) -> str:
        """Write ``value`` as the secret's new AWSCURRENT version; returns its version id."""
        return self._put(arn, value, str(uuid.uuid4()))

    def _may_wait(self, until: float) -> bool:
        """Sleep one poll interval, unless ``until`` (epoch seconds) or this invocation's deadline
        has come."""
        if self._clock() >= until or self._retrier.expired():
            return False
        self._sleep(_POLL_SECONDS)
        return True

    def undo(self, written: dict[str, str]) -> None:
        """Make the version before each written one current again."""
        for arn, version_id in written.items():
            previous = self.stored(arn, PREVIOUS)
            if previous.version_id and previous.version_id != version_id:
                self._move_current(arn, previous.version_id, version_id)

    def stored(self, arn: str, stage: str) -> StoredTunnel:
        """The tunnel id held by the secret's version at ``stage`` (None if none or unreadable JSON)."""
        return self._read(arn, {"VersionStage": stage}, absent=GONE_CODES)

    def _read(self, arn: str, version: dict[str, str], *, absent: Collection[str]) -> StoredTunnel:
        """The tunnel id held by one version (``VersionStage`` or ``VersionId``); nothing when
        GetSecretValue fails with one of the ``absent`` codes."""
        try:
            response = self._retrier.call(lambda: self._client.get_secret_value(SecretId=arn, **version))
        except Exception as exc:
            if error_code(exc) in absent:
                return StoredTunnel(None, None)
            raise
        return StoredTunnel(_tunnel_id_in(response.get("SecretString")), response.get("VersionId"))

    def is_gone(self, arn: str) -> bool:
        """Whether the secret is deleted or scheduled for deletion."""
        return self.stored(arn, CURRENT).version_id is None

    def plan_restore(self, arn: str, closed_tunnel_id: str) -> Restore | None:
        """If the secret holds tokens of ``closed_tunnel_id``: what its previous version holds (after
        a replacement that CloudFormation rolled back, the previous tunnel's token). Reads only."""
        # Both reads at once: Delete then costs one round trip beside CloseTunnel, not two.
        previous_read = self._pool.submit(self.stored, arn, PREVIOUS)
        current = self.stored(arn, CURRENT)
        previous = previous_read.result()
        if current.tunnel_id != closed_tunnel_id or current.version_id is None:
            return None
        if previous.tunnel_id in (None, closed_tunnel_id) or previous.version_id is None:
            return Restore(arn, current.version_id, None, None)
        return Restore(arn, current.version_id, previous.tunnel_id, previous.version_id)

    def restore(self, plans: Sequence[Restore]) -> None:
        """Move each secret back to its previous version (plans that have one), all or none: if
        one move fails, the moves already made are undone, so that the secrets never hold tokens
        of two different tunnels."""
        done: list[Restore] = []
        try:
            for plan in plans:
                self._move_current(plan.arn, str(plan.previous_version), plan.current_version)
                done.append(plan)
                logger.info("Secret %s holds tokens of tunnel %s again", plan.arn, plan.tunnel_id)
        except Exception:
            self._unrestore(done)
            raise

    def _unrestore(self, done: Sequence[Restore]) -> None:
        for plan in reversed(done):
            try:
                self._move_current(plan.arn, plan.current_version, str(plan.previous_version))
            except Exception:
                logger.exception("Could not undo the restore of secret %s", plan.arn)

    def _put(self, arn: str, value: str, token: str) -> str:
        # One idempotency token for all retries: a retried write never adds a second version.
        response = self._retrier.call(
            lambda: self._client.put_secret_value(SecretId=arn, SecretString=value, ClientRequestToken=token)
        )
        return str(response["VersionId"])

    def _move_current(self, arn: str, to_version: str, from_version: str) -> None:
        try:
            self._retrier.call(
                lambda: self._client.update_secret_version_stage(
                    SecretId=arn,
                    VersionStage=CURRENT,
                    MoveToVersionId=to_version,
                    RemoveFromVersionId=from_version,
                )
            )
        except Exception:
            # A retry of a move whose answer was lost fails (the label has left from_version):
            # the move is done if the label is where it should be.
            if self.stored(arn, CURRENT).version_id != to_version:
                raise


def _tunnel_id_in(secret_string: str | None) -> str | None:
    try:
        document = json.loads(secret_string or "")
    except ValueError:
        return None
    tunnel_id = document.get("tunnelId") if isinstance(document, dict) else None
    return tunnel_id if isinstance(tunnel_id, str) else None
