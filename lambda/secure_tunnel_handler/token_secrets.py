"""The handler's one Secrets Manager layer: the token secrets' versions, their labels, and claims.

Each secret holds one token document (``contract.TokenDocument``). Secrets Manager keeps the
previous version (AWSPREVIOUS), which is how a write is undone and how a rolled-back replacement
gets its old tokens back. The lifecycle (``lifecycle.py``) and the rotation steps (``rotation.py``)
both read, write and move labels through :class:`TokenSecrets`; neither calls the client.

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .contract import CURRENT, PENDING, PREVIOUS, TokenDocument, format_time
from .errors import error_code
from .properties import TunnelSpec
from .redaction import REDACTOR
from .retries import Retrier
from .tunnels import IssuedTunnel, TunnelState

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_secretsmanager.type_defs import (
        GetSecretValueRequestTypeDef,
        PutSecretValueRequestTypeDef,
        UpdateSecretVersionStageRequestTypeDef,
    )

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
class StoredVersion:
    """One version of a secret as GetSecretValue returned it (``version_id`` None: there is none)."""

    version_id: str | None
    text: str | None = field(default=None, repr=False)
    #: Its token document (None: it holds none, or not a complete one).
    document: TokenDocument | None = None

    @property
    def tunnel_id(self) -> str | None:
        """The tunnel whose token it holds (read from any JSON object with a ``tunnelId``)."""
        return TokenDocument.tunnel_id_in(self.text)


@dataclass(frozen=True)
class SecretMetadata:
    """What DescribeSecret says of a secret."""

    #: The full ARN, whatever the secret was named by.
    arn: str
    #: Whether a rotation function is set up (RotationEnabled, or a RotationLambdaARN).
    rotation_configured: bool
    #: Version id -> its staging labels (versions without a label are not listed).
    stages: dict[str, list[str]]


def secret_value(spec: TunnelSpec, tunnel: IssuedTunnel, mode: str, region: str) -> str:
    """The token document stored in a token secret (``mode``: source or destination)."""
    return _document(tunnel, spec, mode=mode, token=tunnel.tokens.of(mode), region=region)


def _document(
    tunnel: IssuedTunnel | TunnelState,
    destination: TunnelSpec | TunnelState,
    *,
    mode: str,
    token: str,
    region: str,
) -> str:
    """The document of one token of ``tunnel``, to ``destination``'s thing and services."""
    return TokenDocument(
        tunnel_id=tunnel.tunnel_id,
        tunnel_arn=tunnel.tunnel_arn,
        client_mode=mode,
        access_token=token,
        region=region,
        thing_name=destination.thing_name,
        services=destination.services,
        expires_at=format_time(tunnel.expires_at),
    ).to_json()


class TokenSecrets:
    """Every Secrets Manager call of the handler, with retries: the token secrets' versions, their
    labels, and the claims of in-place Updates."""

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
                {
                    "SecretId": arn,
                    "SecretString": secret_value(spec, tunnel, mode, self._region),
                    "ClientRequestToken": claim.write_token(arn) if claim else str(uuid.uuid4()),
                },
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
            self._put(
                {
                    "SecretId": spec.source_secret_arn,
                    "ClientRequestToken": token,
                    "SecretString": value,
                    "VersionStages": [CLAIM_STAGE],
                }
            )
        except Exception as exc:
            if error_code(exc) != "ResourceExistsException":
                raise
            return None
        return mine

    def claim_of(self, spec: TunnelSpec, request_id: str) -> Claim:
        """The claim another delivery made of ``request_id``."""
        token = str(uuid.uuid5(_VERSION_IDS, request_id))
        document = json.loads(self.read(spec.source_secret_arn, version_id=token).text or "")
        return Claim(holder=str(document["holder"]), until=float(document["until"]))

    @property
    def region(self) -> str:
        """The region of the tunnels whose tokens this handler writes."""
        return self._region

    def await_writes(self, spec: TunnelSpec, claim: Claim) -> StoredVersion | None:
        """Wait for the claimant's writes of every secret; returns the tunnel they hold, or None
        if they are not all there when the claimant's invocation (or this one) is over."""
        while True:
            stored = [
                self.read(arn, version_id=claim.write_token(arn), absent={"ResourceNotFoundException"})
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

    def put(self, arn: str, tunnel: TunnelState, mode: str, token: str) -> str:
        """Write a new ``mode`` token of a tunnel the handler did not just open (in this region) as
        the secret's AWSCURRENT version; returns its version id."""
        value = _document(tunnel, tunnel, mode=mode, token=token, region=self._region)
        return self._put({"SecretId": arn, "SecretString": value, "ClientRequestToken": str(uuid.uuid4())})

    def put_pending(
        self, secret_id: str, version_id: str, document: TokenDocument, rotation_token: str | None
    ) -> None:
        """Store a rotation's new document as version ``version_id``, labelled AWSPENDING.

        The same version id and value on every retry: Secrets Manager writes one version. Other
        data under that id raises ResourceExistsException (a version's value never changes).
        """
        request: PutSecretValueRequestTypeDef = {
            "SecretId": secret_id,
            "ClientRequestToken": version_id,
            "SecretString": document.to_json(),
            "VersionStages": [PENDING],
        }
        if rotation_token:
            # Sent by Secrets Manager for rotations that use an assumed role; passed back on writes.
            request["RotationToken"] = rotation_token
        self._put(request)

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
                self.move_label(arn, CURRENT, to_version=previous.version_id, from_version=version_id)

    def stored(self, arn: str, stage: str) -> StoredVersion:
        """The secret's version at ``stage``; none if the secret is deleted or being deleted."""
        return self.read(arn, stage=stage, absent=GONE_CODES)

    def read(
        self,
        secret_id: str,
        *,
        stage: str | None = None,
        version_id: str | None = None,
        absent: Collection[str] = (),
    ) -> StoredVersion:
        """One version, by ``stage``, ``version_id`` or both; none when GetSecretValue fails with
        one of the ``absent`` codes. The token of a document read is masked in logs from now on."""
        request: GetSecretValueRequestTypeDef = {"SecretId": secret_id}
        if version_id:
            request["VersionId"] = version_id
        if stage:
            request["VersionStage"] = stage
        try:
            response = self._retrier.call(lambda: self._client.get_secret_value(**request))
        except Exception as exc:
            if error_code(exc) in absent:
                return StoredVersion(None)
            raise
        text = response.get("SecretString")
        document = TokenDocument.parse(text)
        REDACTOR.remember(document.access_token if document else None)
        return StoredVersion(response.get("VersionId"), text, document)

    def metadata(self, secret_id: str) -> SecretMetadata:
        """DescribeSecret: the secret's ARN, whether it is set up for rotation, its versions' labels."""
        answer = self._retrier.call(lambda: self._client.describe_secret(SecretId=secret_id))
        return SecretMetadata(
            arn=str(answer.get("ARN") or secret_id),
            rotation_configured=bool(answer.get("RotationEnabled") or answer.get("RotationLambdaARN")),
            stages={k: list(v) for k, v in answer.get("VersionIdsToStages", {}).items()},
        )

    def move_label(
        self, secret_id: str, stage: str, *, to_version: str | None = None, from_version: str | None = None
    ) -> None:
        """UpdateSecretVersionStage: move ``stage`` to ``to_version`` (if given) and off
        ``from_version`` (if given). A retry of a move whose answer was lost fails (the label has
        already left ``from_version``), so after a failure the move counts as made if the
        versions' labels already show it."""
        request: UpdateSecretVersionStageRequestTypeDef = {"SecretId": secret_id, "VersionStage": stage}
        if to_version:
            request["MoveToVersionId"] = to_version
        if from_version:
            request["RemoveFromVersionId"] = from_version
        try:
            self._retrier.call(lambda: self._client.update_secret_version_stage(**request))
        except Exception:
            labels = self.metadata(secret_id).stages
            moved = to_version is None or stage in labels.get(to_version, [])
            if not (moved and (from_version is None or stage not in labels.get(from_version, []))):
                raise

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
                self.move_label(
                    plan.arn, CURRENT, to_version=plan.previous_version, from_version=plan.current_version
                )
                done.append(plan)
                logger.info("Secret %s holds tokens of tunnel %s again", plan.arn, plan.tunnel_id)
        except Exception:
            self._unrestore(done)
            raise

    def _unrestore(self, done: Sequence[Restore]) -> None:
        for plan in reversed(done):
            try:
                self.move_label(
                    plan.arn, CURRENT, to_version=plan.current_version, from_version=plan.previous_version
                )
            except Exception:
                logger.exception("Could not undo the restore of secret %s", plan.arn)

    def _put(self, request: PutSecretValueRequestTypeDef) -> str:
        # One idempotency token for all retries: a retried write never adds a second version.
        response = self._retrier.call(lambda: self._client.put_secret_value(**request))
        return str(response["VersionId"])
