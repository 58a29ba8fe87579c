"""Lambda entry point: ``secure_tunnel_handler.entrypoint.handler``.

One function serves two callers: CloudFormation's custom resource events (``RequestType``),
answered through crhelper, and Secrets Manager's rotation steps (``Step``), whose failures are
raised for Secrets Manager to record and retry.

crhelper sends the response to CloudFormation. Its defaults are unsafe or slow here, so:
its log level is INFO (DEBUG logs whole events and responses), botocore logs only errors
(its DEBUG output contains response bodies, tokens included), and Delete does not sleep 120 s.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from .errors import HandlerError, explain
from .lifecycle import Outcome, TunnelResource
from .redaction import REDACTOR
from .responses import ENVELOPE_FIELDS, CheckedCfnResource, Heard
from .retries import Retrier
from .token_secrets import TokenSecrets
from .tunnels import TunnelService

if TYPE_CHECKING:
    from .lambda_context import LambdaContext

logger = logging.getLogger(__name__)

# Time kept back from the Lambda timeout for clean-up and the response to CloudFormation.
SAFETY_MARGIN_SECONDS = 20.0
# Delete runs CloseTunnel and, per secret, a planning task that reads two versions at once:
# at most 5 tasks, so no task ever waits for a worker held by a task waiting on it.
POOL_WORKERS = 8
# Each client makes one attempt per call; retries.Retrier decides what to retry.
CLIENT_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=20)


def _cfn_resource() -> CheckedCfnResource:
    """crhelper's CfnResource without the lambda, events and logs clients it creates at import.

    It needs them only for its polling mode, which this handler does not use, and they cost
    about 40% of the cold start. crhelper 2.0.x skips them when AWS_SAM_LOCAL is set while it
    is constructed; polling stays off either way, as no poll_* function is registered.
    """
    previous = os.environ.get("AWS_SAM_LOCAL")
    os.environ["AWS_SAM_LOCAL"] = "true"
    try:
        resource = CheckedCfnResource(
            json_logging=False,
            log_level=os.environ.get("LOG_LEVEL", "INFO").upper(),
            boto_level="ERROR",
            sleep_on_delete=0,
        )
    finally:
        if previous is None:
            del os.environ["AWS_SAM_LOCAL"]
        else:
            os.environ["AWS_SAM_LOCAL"] = previous
    resource._sam_local = None  # type: ignore[attr-defined]  # behave as in Lambda from here on
    return resource


helper = _cfn_resource()


@cache
def _clients() -> tuple[Any, Any]:
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


def _resource(context: LambdaContext, pool: ThreadPoolExecutor) -> TunnelResource:
    owner = _owner()
    retrier = _retrier(context)
    tunnels_client, secrets_client = _clients()
    region = tunnels_client.meta.region_name
    tunnels = TunnelService(tunnels_client, retrier, owner, now=lambda: datetime.now(UTC))
    secrets = TokenSecrets(secrets_client, retrier, region, pool)
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

    owner, retrier = _owner(), _retrier(context)
    tunnels_client, secrets_client = _clients()
    tunnels = TunnelService(tunnels_client, retrier, owner, now=lambda: datetime.now(UTC))
    rotation = TokenRotation(
        secrets_client, tunnels_client, tunnels, retrier, owner=owner, now=lambda: datetime.now(UTC)
    )
    rotation.run(RotationStep.from_event(event))


def _run(action: str, event: dict[str, Any], context: LambdaContext) -> str | None:
    _name_in_any_response(event.get("PhysicalResourceId") or helper.generate_physical_id(event))
    with ThreadPoolExecutor(max_workers=POOL_WORKERS) as pool:
        try:
            resource = _resource(context, pool)
            result: Outcome | None = getattr(resource, action)(event)
        except HandlerError as exc:
            if exc.physical_id:
                helper.PhysicalResourceId = exc.physical_id
            raise
        except Exception as exc:
            logger.exception("%s failed", action)
            raise explain(action.capitalize(), exc) from exc
    if result is None:
        return None
    _answered.append(result)
    helper.Data.update(result.data)
    return result.physical_id


#: The outcome this invocation answered with (at most one).
_answered: list[Outcome] = []


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


@helper.create
def _create(event: dict[str, Any], context: LambdaContext) -> str | None:
    return _run("create", event, context)


@helper.update
def _update(event: dict[str, Any], context: LambdaContext) -> str | None:
    return _run("update", event, context)


@helper.delete
def _delete(event: dict[str, Any], context: LambdaContext) -> str | None:
    return _run("delete", event, context)


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
