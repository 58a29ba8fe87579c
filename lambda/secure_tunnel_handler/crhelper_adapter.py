"""crhelper, behind one adapter: everything the handler takes from it or works around.

The handler uses crhelper (2.0.12, pinned) to read CloudFormation's events and answer them.
:func:`cfn_resource` builds its ``CfnResource`` quietly (INFO logs: its DEBUG default logs whole
events and responses; botocore at ERROR; no 120 s sleep on Delete; none of the lambda, events
and logs clients it creates for a polling mode this handler does not use) and registers the
handler's lifecycle, one function per request type.

The one response CloudFormation reads, and whether it arrived: crhelper 2.0.x sends its response
with no socket timeout, retries connection errors for ever (until Lambda kills the function),
does not look at the HTTP status, and can answer twice: its
timer sends FAILED "Execution timed out" half a second before the Lambda timeout while the
handler may still be working, and the handler's own result follows. CloudFormation acts on the
first. :class:`CheckedCfnResource` keeps crhelper's event handling but sends at most one response
per invocation, gives up before the Lambda time is over, and records whether CloudFormation got
it, so that the handler can take back a tunnel CloudFormation will never reference.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.client import HTTPException, HTTPSConnection
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from crhelper import CfnResource

from .errors import HandlerError
from .lifecycle import not_opened_id

if TYPE_CHECKING:
    from .lambda_context import LambdaContext

logger = logging.getLogger(__name__)

#: A function that answers one request type: the event's physical id, or None to keep it.
RequestFunction = Callable[[dict[str, Any], "LambdaContext"], "str | None"]

#: The request types CloudFormation sends to a custom resource.
REQUEST_TYPES = ("Create", "Update", "Delete")
#: What an event must carry (as strings) for a response to reach CloudFormation at all.
ENVELOPE_FIELDS = ("ResponseURL", "StackId", "RequestId", "LogicalResourceId")
# Stop retrying the PUT this long before the Lambda timeout: if the response cannot be
# delivered, the handler still needs time to close a tunnel CloudFormation will never know.
PUT_RESERVE_SECONDS = 2.0
# One attempt never waits longer than this for the response URL.
PUT_TIMEOUT_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 4.0


class Heard(enum.Enum):
    """Whether CloudFormation got the response."""

    YES = "delivered"
    NO = "not delivered"  # refused (4xx, e.g. an expired URL), or never reached the URL
    MAYBE = "unknown"  # the body was sent but no answer came back


@dataclass(frozen=True)
class SentResponse:
    """The response this invocation sent: CloudFormation acts on it and on no later one."""

    status: str
    physical_id: str
    heard: Heard


class CheckedCfnResource(CfnResource):
    """crhelper's ``CfnResource`` with one checked, time-bounded response per invocation.

    It overrides two private methods of crhelper 2.0.12 (pinned), which its stubs omit.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._send_lock = threading.Lock()
        #: What this invocation sent, once sent.
        self.sent: SentResponse | None = None

    def _crhelper_init(self, event: dict[str, Any], context: Any) -> bool:
        self.sent = None
        return bool(super()._crhelper_init(event, context))  # type: ignore[misc]

    def _get_func(self) -> Any:
        # crhelper finds the function by the RequestType's name: an unknown one would fail with
        # an AttributeError of crhelper's and an empty physical id, which CloudFormation rejects.
        if self._event.get("RequestType") not in REQUEST_TYPES:  # type: ignore[attr-defined]
            return self._reject_request_type
        return super()._get_func()  # type: ignore[misc]

    def _poll_enabled(self) -> bool:
        # No poll_* function is registered; crhelper's own check fails on unknown request types.
        return False

    def _reject_request_type(self, event: dict[str, Any], _context: Any) -> str:
        self.PhysicalResourceId = event.get("PhysicalResourceId") or not_opened_id(event)
        raise HandlerError(
            f"Invalid event: unknown RequestType {event.get('RequestType')!r} (expected Create, "
            "Update or Delete). Nothing was changed."
        )

    def _send(self, status: str | None = None, reason: str = "", send_response: Any = None) -> None:
        # crhelper's timer thread and the handler's own result may both get here: the lock makes
        # the second wait for the first, then drop its response.
        with self._send_lock:
            if self.sent is not None:
                logger.warning(
                    "Not sending %s: CloudFormation already got %s and ignores any later response",
                    status or self.Status,
                    self.sent.status,
                )
                return
            super()._send(status, reason, send_response=self._put)  # type: ignore[misc]

    def _put(self, url: str, body: dict[str, Any], ssl_verify: Any = None) -> None:
        remaining = self._context.get_remaining_time_in_millis() / 1000  # type: ignore[attr-defined]
        deadline = time.monotonic() + remaining - PUT_RESERVE_SECONDS
        heard = put_response(url, json.dumps(body), deadline)
        self.sent = SentResponse(str(body.get("Status")), str(body.get("PhysicalResourceId")), heard)
        log = logger.info if heard is Heard.YES else logger.error
        log("Response %s for %s: %s", self.sent.status, self.sent.physical_id, heard.value)


def cfn_resource(lifecycle: Mapping[str, RequestFunction]) -> CheckedCfnResource:
    """crhelper's CfnResource, configured for this handler, answering each request type of
    ``lifecycle`` (``Create``, ``Update``, ``Delete``) with its function."""
    if set(lifecycle) != set(REQUEST_TYPES):
        raise ValueError(f"the lifecycle must answer exactly {', '.join(REQUEST_TYPES)}")
    resource = _quiet_cfn_resource()
    resource.create(lifecycle["Create"])
    resource.update(lifecycle["Update"])
    resource.delete(lifecycle["Delete"])
    return resource


def _quiet_cfn_resource() -> CheckedCfnResource:
    """crhelper's CfnResource without the lambda, events and logs clients it creates at import.

    It needs them only for its polling mode, which this handler does not use, and they cost
    about 40% of the cold start. crhelper 2.0.x skips them when AWS_SAM_LOCAL is set while it
    is constructed; polling stays off either way (:meth:`CheckedCfnResource._poll_enabled`).
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


def put_response(url: str, data: str, deadline: float, sleep: Callable[[float], None] = time.sleep) -> Heard:
    """PUT ``data`` to the pre-signed ``url``; retry network errors and 5xx until ``deadline``."""
    parts = urlsplit(url)
    path = urlunsplit(("", "", parts.path, parts.query, ""))
    context = ssl.create_default_context()
    reached = False
    attempt = 0
    while True:
        timeout = min(PUT_TIMEOUT_SECONDS, max(0.5, deadline - time.monotonic()))
        connection = HTTPSConnection(parts.netloc, context=context, timeout=timeout)
        try:
            status, sent = _attempt(connection, path, data)
        finally:
            connection.close()
        reached = reached or sent
        if status is not None and 200 <= status < 300:
            return Heard.YES
        if status is not None and status < 500:
            logger.error("The response URL refused the response (HTTP %s): it may have expired", status)
            return Heard.NO  # S3 stored nothing, and an expired URL stays expired: no retry
        wait = min(MAX_BACKOFF_SECONDS, 0.5 * 2**attempt)
        if time.monotonic() + wait >= deadline:
            return Heard.MAYBE if reached else Heard.NO
        sleep(wait)
        attempt += 1


def _attempt(connection: HTTPSConnection, path: str, data: str) -> tuple[int | None, bool]:
    """One PUT: (HTTP status or None, whether the body may have reached the server)."""
    try:
        connection.connect()
    except OSError as exc:
        logger.warning("Cannot reach the response URL: %s", type(exc).__name__)
        return None, False
    try:
        connection.request(
            "PUT", path, body=data, headers={"Content-Type": "", "Content-Length": str(len(data))}
        )
        status = connection.getresponse().status
    except (OSError, HTTPException) as exc:
        logger.warning("No answer from the response URL: %s", type(exc).__name__)
        return None, True
    # A 5xx means S3 stored nothing: the body did not reach CloudFormation.
    return status, status < 500
