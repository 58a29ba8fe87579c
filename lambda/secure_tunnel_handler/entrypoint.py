"""Lambda entry point: ``secure_tunnel_handler.entrypoint.handler``.

One function serves two callers: CloudFormation's custom resource events (``RequestType``),
answered through crhelper, and Secrets Manager's rotation steps (``Step``), whose failures are
raised for Secrets Manager to record and retry.

The entry point reads as the resource's lifecycle: :data:`LIFECYCLE` maps each request type to
what it does to the tunnel; :mod:`.crhelper_adapter` holds everything crhelper is used for or
worked around (quiet logging, no 120 s sleep on Delete, one checked response).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from .crhelper_adapter import ENVELOPE_FIELDS, Heard, cfn_resource
from .errors import HandlerError, explain
from .lifecycle import Outcome, TunnelResource, not_opened_id
from .redaction import REDACTOR
from .retries import Retrier
from .token_secrets import TokenSecrets
from .tunnels import TunnelService

if TYPE_CHECKING:
    from mypy_boto3_iotsecuretunneling import IoTSecureTunnelingClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from .lambda_context import LambdaContext

logger = logging.getLogger(__name__)

# Time kept back from the Lambda timeout for clean-up and the response to CloudFormation.
SAFETY_MARGIN_SECONDS = 20.0
# Delete runs CloseTunnel and, per secret, a planning task that reads two versions at once:
# at most 5 tasks, so no task ever waits for a worker held by a task waiting on it.
POOL_WORKERS = 8
# Each client makes one attempt per call; retries.Retrier decides what to retry.
CLIENT_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=20)


@cache
def _clients() -> tuple[IoTSecureTunnelingClient, SecretsManagerClient]:
    session = boto3.session.Session()
    return (
        session.client("iotsecuretunneling", config=CLIENT_CONFIG),
        session.client("secretsmanager", config=CLIENT_CONFIG),
    )


def _owner() -> str:
    owner = os.environ.get("TUNNEL_OWNER")
    if not owner:
        raise HandlerError("The handler is misconfigured: environment variable TUNNEL_OWNER is not set")
    return owner


def _retrier(context: LambdaContext) -> Retrier:
    remaining = context.get_remaining_time_in_millis() / 1000.0
    return Retrier(deadline=time.monotonic() + remaining - SAFETY_MARGIN_SECONDS)


def _now() -> datetime:
    return datetime.now(UTC)


def _services(context: LambdaContext, pool: ThreadPoolExecutor) -> tuple[TunnelService, TokenSecrets]:
    """The two AWS layers of one invocation, sharing its deadline."""
    owner, retrier = _owner(), _retrier(context)
    tunnels_client, secrets_client = _clients()
    # The region of the tunnels this function serves (a secret's document may name another).
    region = str(tunnels_client.meta.region_name)
    return TunnelService(tunnels_client, retrier, owner, now=_now), TokenSecrets(
        secrets_client, retrier, region, pool
    )


def _resource(context: LambdaContext, pool: ThreadPoolExecutor) -> TunnelResource:
    tunnels, secrets = _services(context, pool)
    ends_at = time.time() + context.get_remaining_time_in_millis() / 1000.0
    return TunnelResource(tunnels, secrets, pool, announce=_name_in_any_response, ends_at=ends_at)


def _name_in_any_response(physical_id: str) -> None:
    """Make every response from now on name ``physical_id``, crhelper's timeout response included
    (it sends whatever PhysicalResourceId holds, "" until the handler returns)."""
    helper.PhysicalResourceId = physical_id


def is_rotation_event(event: Any) -> bool:
    """Whether ``event`` is a Secrets Manager rotation step (not a CloudFormation event)."""
    return (
        isinstance(event, dict)
        and "RequestType" not in event
        and all(k in event for k in ("Step", "SecretId", "ClientRequestToken"))
    )


def _rotate(event: dict[str, Any], context: LambdaContext) -> None:
    """One Secrets Manager rotation step of a token secret."""
    # Imported here: a function that only serves CloudFormation events never loads it, which
    # keeps the cold start at the floor of boto3 and its two clients (docs/benchmarks.md).
    from .rotation import RotationStep, TokenRotation  # noqa: PLC0415 - see above

    with ThreadPoolExecutor(max_workers=POOL_WORKERS) as pool:
        tunnels, secrets = _services(context, pool)
        TokenRotation(tunnels, secrets, now=_now).run(RotationStep.from_event(event))


#: What each request type does to the tunnel (lifecycle.TunnelResource).
LIFECYCLE: dict[str, Callable[[TunnelResource, dict[str, Any]], Outcome | None]] = {
    "Create": TunnelResource.create,
    "Update": TunnelResource.update,
    "Delete": TunnelResource.delete,
}
#: The outcome this invocation answered with (at most one).
_answered: list[Outcome] = []


def _run(request_type: str, event: dict[str, Any], context: LambdaContext) -> str | None:
    """Answer one CloudFormation request: the physical id to report, or None to keep it."""
    _name_in_any_response(event.get("PhysicalResourceId") or not_opened_id(event))
    with ThreadPoolExecutor(max_workers=POOL_WORKERS) as pool:
        try:
            result = LIFECYCLE[request_type](_resource(context, pool), event)
        except HandlerError as exc:
            if exc.physical_id:
                helper.PhysicalResourceId = exc.physical_id
            raise
        except Exception as exc:
            logger.exception("%s failed", request_type)
            raise explain(request_type, exc) from exc
    if result is None:
        return None
    _answered.append(result)
    helper.Data.update(result.data)
    return result.physical_id


helper = cfn_resource({request_type: functools.partial(_run, request_type) for request_type in LIFECYCLE})


def _withdraw_if_unheard(context: LambdaContext) -> None:
    """Close the tunnel this invocation opened if CloudFormation will never reference it: the
    response naming it was refused or never arrived, or another response went first (crhelper's
    timer answered FAILED while the handler was still working)."""
    for outcome in _answered:
        if outcome.opened and not _may_have_heard(outcome):
            logger.warning("CloudFormation will not reference tunnel %s: closing it", outcome.opened)
            with ThreadPoolExecutor(max_workers=POOL_WORKERS) as pool:
                _resource(context, pool).withdraw(outcome)


def _may_have_heard(outcome: Outcome) -> bool:
    """Whether CloudFormation got, or may have got, a SUCCESS naming the outcome's tunnel."""
    sent = helper.sent
    if sent is None or (sent.status, sent.physical_id) != ("SUCCESS", outcome.physical_id):
        return False
    return sent.heard is not Heard.NO


def _can_be_answered(event: Any) -> bool:
    if not isinstance(event, dict) or "RequestType" not in event:
        return False
    return all(isinstance(event.get(k), str) for k in ENVELOPE_FIELDS)


def handler(event: dict[str, Any], context: LambdaContext) -> None:
    """Serve one CloudFormation custom resource event or one Secrets Manager rotation step."""
    REDACTOR.forget_all()
    REDACTOR.install(logging.getLogger())
    if is_rotation_event(event):
        _rotate(event, context)
    elif not _can_be_answered(event):
        # No response can reach CloudFormation without these (and crhelper would send its
        # failure to the URL of an earlier event of this execution environment).
        logger.error("Ignoring an event that is neither a CloudFormation request nor a rotation step")
    else:
        _answered.clear()
        helper(event, context)
        _withdraw_if_unheard(context)
