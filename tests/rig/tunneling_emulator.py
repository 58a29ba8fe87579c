"""A local, wire-level emulator of the AWS IoT Secure Tunneling API (tests only).

moto does not implement ``iotsecuretunneling``, so this module serves the API's AWS JSON 1.1
protocol on a loopback HTTP server: ``POST /`` with ``X-Amz-Target: IoTSecuredTunneling.<Op>``
and a JSON body. boto3 clients pointed at :attr:`TunnelingEmulator.endpoint_url` (or at
``AWS_ENDPOINT_URL_IOTSECURETUNNELING``) serialize real requests and parse real responses;
SigV4 signatures are ignored.

It keeps the service's state rules (OPEN/CLOSED, lazy expiry, rotation replaces tokens, limits,
not-found) and lets tests inject faults, latency and throttling, and inspect what was called.

It also models what bites on a real account and a stand-in would hide:

- IAM, opt-in (:meth:`TunnelingEmulator.enforce`): each request is authorized against a policy
  before it is served, on the resources AWS authorizes (developer guide, "Controlling access to
  tunnels"), with only the condition keys the Service Authorization Reference lists for the action
  and resource (:mod:`tests.rig.iam_reference`); :meth:`~TunnelingEmulator.deny_first` answers as a
  role that has not propagated yet.
- Purge: a CLOSED tunnel disappears after a retention time (developer guide, "Secure tunnel
  lifecycle": "The tunnel can be visible in the AWS IoT console for at least three hours before it
  is deleted").
- The notify topic: what AWS IoT would publish to the device on ``$aws/things/<thing>/tunnels/notify``
  (developer guide, "Configuring a remote device and using IoT agent").
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import secrets
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast

from . import iam_reference
from .iam_policy import Decision, evaluate

JsonDict = dict[str, Any]
# The caller's access key id in a SigV4 Authorization header (signatures are not checked).
_ACCESS_KEY = re.compile(r"Credential=([^/,\s]+)/")
Operation = Callable[[JsonDict], JsonDict]

TARGET_PREFIX = "IoTSecuredTunneling"
CONTENT_TYPE = "application/x-amz-json-1.1"
OPERATIONS = (
    "OpenTunnel",
    "DescribeTunnel",
    "CloseTunnel",
    "RotateTunnelAccessToken",
    "ListTunnels",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
)
CLIENT_MODES = ("SOURCE", "DESTINATION", "ALL")
#: How long a CLOSED tunnel stays visible before it is deleted: "at least three hours".
RETENTION_SECONDS = 3 * 60 * 60
#: AWS answers a request IAM denies with the common error AccessDeniedException, HTTP 400 ("Common
#: Errors" of the API references); the iotsecuretunneling model lists no such shape, so botocore
#: raises a plain ClientError with that code.
ACCESS_DENIED = "AccessDeniedException"

# Service limits (botocore model; 3 services per tunnel: localproxy docs/MULTIPLEXING.md).
MAX_SERVICES = 3
MAX_TAGS = 200
MAX_LIFETIME_MINUTES = 720
MAX_DESCRIPTION = 2048
MAX_RESULTS = 100
_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
# Tag keys and values: \p{L}, \p{Z}, \p{N} or one of these (Python's re has no \p classes).
_TAG_PUNCTUATION = frozenset("_.:/=+-@")


class ApiError(Exception):
    """An error answer: botocore raises it as ``ClientError`` with ``Error.Code == code``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _invalid(message: str) -> ApiError:
    return ApiError("ValidationException", message)


@dataclass
class _Tunnel:
    tunnel_id: str
    arn: str
    seq: int  # creation order: ListTunnels is newest first, and clocks may tie
    description: str | None
    destination_config: JsonDict | None
    lifetime_minutes: int
    tags: dict[str, str]
    created_at: float
    updated_at: float
    source_token: str
    destination_token: str
    closed_at: float | None = None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    def close(self, when: float) -> None:
        """Mark the tunnel CLOSED at ``when`` (epoch seconds)."""
        self.closed_at = self.updated_at = when


@dataclass
class _Fault:
    operation: str
    code: str
    status: int
    message: str
    times: int
    after: int


@dataclass
class _Bucket:
    """Token bucket: ``burst`` calls at once, refilled at ``rate`` per second (real time)."""

    rate: float
    burst: int
    tokens: float
    stamp: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


# --- request validation -------------------------------------------------------------------


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise _invalid(f"{where} must match [a-zA-Z0-9:_-]{{1,128}}")
    return value


def _description(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_DESCRIPTION:
        raise _invalid(f"description must be 1-{MAX_DESCRIPTION} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        raise _invalid("description must not contain control or other category C characters")
    return value


def _destination_config(value: Any) -> JsonDict:
    if not isinstance(value, dict):
        raise _invalid("destinationConfig must be a structure")
    services = value.get("services")
    if not isinstance(services, list) or not 1 <= len(services) <= MAX_SERVICES:
        raise _invalid(f"destinationConfig.services must hold 1-{MAX_SERVICES} service names")
    names = [_name(s, "destinationConfig.services member") for s in services]
    if len(set(names)) != len(names):
        raise _invalid("destinationConfig.services must not repeat a service name")
    config: JsonDict = {}
    if "thingName" in value:
        config["thingName"] = _name(value["thingName"], "destinationConfig.thingName")
    config["services"] = names
    return config


def _tag_text(value: Any, low: int, high: int, where: str) -> str:
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise _invalid(f"{where} must be {low}-{high} characters")
    if any(ch not in _TAG_PUNCTUATION and unicodedata.category(ch)[0] not in "LZN" for ch in value):
        raise _invalid(f"{where} must match ^([\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]*)$")
    return value


def _tags(value: Any) -> dict[str, str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_TAGS:
        raise _invalid(f"tags must hold 1-{MAX_TAGS} tags")
    tags: dict[str, str] = {}
    for tag in value:
        if not isinstance(tag, dict):
            raise _invalid("each tag must be a structure with key and value")
        key = _tag_text(tag.get("key"), 1, 128, "tag key")
        tags[key] = _tag_text(tag.get("value"), 0, 256, "tag value")
    return tags


def _lifetime(value: Any) -> int:
    if not isinstance(value, dict):
        raise _invalid("timeoutConfig must be a structure")
    minutes = value.get("maxLifetimeTimeoutMinutes", MAX_LIFETIME_MINUTES)
    # bool is an int subclass; JSON true is not a number of minutes.
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_LIFETIME_MINUTES:
        raise _invalid(f"timeoutConfig.maxLifetimeTimeoutMinutes must be 1-{MAX_LIFETIME_MINUTES}")
    return minutes


def _required_str(body: JsonDict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise _invalid(f"{key} is required")
    return value


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _config_of(body: JsonDict) -> JsonDict:
    """A request's destinationConfig, unvalidated ({} if absent or not a structure)."""
    config = body.get("destinationConfig")
    return config if isinstance(config, dict) else {}


def _thing_of(body: JsonDict) -> str | None:
    """The thing a request's destinationConfig names, if any (unvalidated)."""
    thing = _config_of(body).get("thingName")
    return thing if isinstance(thing, str) and thing else None


def _request_tags(body: JsonDict) -> dict[str, str]:
    """A request's tags as key -> value (unvalidated; malformed entries are left out)."""
    tags = body.get("tags")
    if not isinstance(tags, list):
        return {}
    pairs = (t for t in tags if isinstance(t, dict))
    return {
        t["key"]: t["value"]
        for t in pairs
        if isinstance(t.get("key"), str) and isinstance(t.get("value"), str)
    }


def _tag_list(tags: dict[str, str]) -> list[JsonDict]:
    return [{"key": k, "value": v} for k, v in tags.items()]


def _encode_page(seq: int) -> str:
    return base64.urlsafe_b64encode(f"after:{seq}".encode()).decode()


def _decode_page(token: Any) -> int:
    try:
        text = base64.urlsafe_b64decode(str(token).encode()).decode()
        label, _, seq = text.partition(":")
        if label != "after":
            raise ValueError(text)
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _invalid("nextToken is not valid") from None


# --- HTTP front end --------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, emulator: TunnelingEmulator) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.emulator = emulator


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps botocore's pooled connections alive; every answer sets Content-Length.
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one segment: otherwise Nagle plus delayed ACK costs ~40 ms a call.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        emulator = cast(_Server, self.server).emulator
        access_key = _ACCESS_KEY.search(self.headers.get("Authorization", ""))
        status, payload = emulator.handle(
            self.headers.get("X-Amz-Target", ""), raw, access_key.group(1) if access_key else None
        )
        self._answer(status, payload)

    def do_GET(self) -> None:
        self._answer(404, {"__type": "UnknownOperationException", "message": "use POST /"})

    def _answer(self, status: int, payload: JsonDict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: test output is for assertions, not access logs."""


# --- the emulator ----------------------------------------------------------------------------


class TunnelingEmulator:
    """The IoT Secure Tunneling API on ``127.0.0.1``, with inspection and fault injection.

    Every public method is thread-safe (one lock); the HTTP server runs in a daemon thread.
    Request order inside the server: record in :attr:`calls`, run the :meth:`on_call` hook,
    sleep the :meth:`latency`, apply the :meth:`throttle` rate limit, apply :meth:`inject`
    faults, expire and purge tunnels, authorize (after :meth:`enforce`), then serve the operation.
    """

    def __init__(
        self,
        region: str = "us-east-1",
        account: str = "123456789012",
        max_open_tunnels: int = 900,
        clock: Callable[[], float] = time.time,
        retention_seconds: float = RETENTION_SECONDS,
    ) -> None:
        """Configure (not start) an emulator; ``clock`` gives epoch seconds for lifetimes, and a
        CLOSED tunnel is deleted ``retention_seconds`` after it closed."""
        self.region = region
        self.account = account
        self.max_open_tunnels = max_open_tunnels
        self.clock = clock
        self.retention_seconds = retention_seconds
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._operations: dict[str, Operation] = {
            "OpenTunnel": self._open_tunnel,
            "DescribeTunnel": self._describe_tunnel,
            "CloseTunnel": self._close_tunnel,
            "RotateTunnelAccessToken": self._rotate_tunnel_access_token,
            "ListTunnels": self._list_tunnels,
            "TagResource": self._tag_resource,
            "UntagResource": self._untag_resource,
            "ListTagsForResource": self._list_tags_for_resource,
        }
        self._init_state()

    def _init_state(self) -> None:
        self._tunnels: dict[str, _Tunnel] = {}
        self._seq = 0
        self._faults: list[_Fault] = []
        self._latency = 0.0
        self._bucket: _Bucket | None = None
        self._hook: Callable[[str], None] | None = None
        #: Every access token ever issued (since start or the last reset), for leak scans.
        self.issued_tokens: list[str] = []
        #: ``(operation, request body)`` of every request received, in order. Requests carry
        #: no tokens, so this is safe to print.
        self.calls: list[tuple[str, JsonDict]] = []
        #: Calls answered ``ThrottlingException``, by the rate limit or by an injected fault.
        self.throttled_count = 0
        #: Exceptions raised by the :meth:`on_call` hook (each answered 500 InternalFailure).
        self.hook_errors: list[BaseException] = []
        #: ``(operation, resource)`` of every request that :meth:`enforce` denied, in order.
        self.denied: list[tuple[str, str]] = []
        #: What AWS IoT would have published on the notify topic, oldest first: ``{"thingName",
        #: "topic", "payload"}``. Payloads hold destination tokens: never print them.
        self.notifications: list[JsonDict] = []
        self._policy: JsonDict | None = None
        self._policy_key: str | None = None
        self._principal = f"arn:aws:sts::{self.account}:assumed-role/tunnel-handler/session"
        # The id of the next tunnel: OpenTunnel is authorized on its ARN before it is opened.
        self._next_id = str(uuid.uuid4())

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving on a random loopback port; returns ``self``."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("emulator already started")
            self._server = _Server(self)
            # A short poll interval keeps stop() fast: shutdown() waits for the next poll.
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="tunneling-emulator", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent); state stays readable."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``, for ``endpoint_url=`` or ``AWS_ENDPOINT_URL_IOTSECURETUNNELING``."""
        server = self._server
        if server is None:
            raise RuntimeError("emulator not started")
        return f"http://127.0.0.1:{server.server_address[1]}"

    # --- inspection --------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget tunnels, calls, issued tokens, notifications, denials, faults, latency,
        throttle, hook and enforced policy; keep serving."""
        with self._lock:
            self._init_state()

    def is_token_valid(self, token: str) -> bool:
        """Whether ``token`` is a current access token of an OPEN tunnel."""
        with self._lock:
            self._sweep()
            return any(
                not t.closed and token in (t.source_token, t.destination_token)
                for t in self._tunnels.values()
            )

    def tunnel(self, tunnel_id: str) -> JsonDict | None:
        """A copy of a tunnel's state (API shapes, plus ``arn`` and both current tokens), or None."""
        with self._lock:
            self._sweep()
            t = self._tunnels.get(tunnel_id)
            if t is None:
                return None
            state = self._tunnel_shape(t)
            state.update(
                arn=t.arn,
                tags=_tag_list(t.tags),
                sourceAccessToken=t.source_token,
                destinationAccessToken=t.destination_token,
            )
            return copy.deepcopy(state)

    def open_tunnel_ids(self) -> list[str]:
        """Ids of the OPEN tunnels, oldest first."""
        with self._lock:
            self._sweep()
            return [t.tunnel_id for t in self._tunnels.values() if not t.closed]

    def expire(self, tunnel_id: str) -> None:
        """Close a tunnel as if its lifetime had run out (KeyError if unknown)."""
        with self._lock:
            self._sweep()
            t = self._tunnels[tunnel_id]
            if not t.closed:
                t.close(self.clock())

    def purge(self, tunnel_id: str) -> None:
        """Delete a CLOSED tunnel's data now, as AWS does once its retention time has passed
        (KeyError if unknown, ValueError if OPEN)."""
        with self._lock:
            self._sweep()
            if not self._tunnels[tunnel_id].closed:
                raise ValueError(f"tunnel {tunnel_id} is OPEN: close or expire it first")
            del self._tunnels[tunnel_id]

    def last_notified_token(self, thing_name: str) -> str | None:
        """The destination token last published on ``thing_name``'s notify topic, or None."""
        with self._lock:
            for notification in reversed(self.notifications):
                if notification["thingName"] == thing_name:
                    return str(notification["payload"]["clientAccessToken"])
        return None

    def call_count(self, operation: str | None = None) -> int:
        """How many requests were received, in all or for one operation."""
        with self._lock:
            return sum(1 for op, _ in self.calls if operation is None or op == operation)

    # --- fault and load injection --------------------------------------------------------

    def inject(
        self,
        operation: str,
        code: str,
        status: int = 400,
        *,
        message: str = "injected",
        times: int = 1,
        after: int = 0,
    ) -> None:
        """Answer the next ``times`` calls of ``operation`` (``"*"``: any) with error ``code``,
        after letting ``after`` matching calls through. Faults fire in the order injected.

        ``status`` is the HTTP status, e.g. 400 for ``ThrottlingException``, 403 for
        ``AccessDeniedException``, 500 for ``InternalFailureException``, 503 for
        ``ServiceUnavailableException``.
        """
        if operation != "*" and operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        if times < 1 or after < 0:
            raise ValueError("times must be >= 1 and after >= 0")
        with self._lock:
            self._faults.append(_Fault(operation, code, status, message, times, after))

    def clear_faults(self) -> None:
        """Drop every injected fault that has not fired yet."""
        with self._lock:
            self._faults = []

    def deny_first(self, operation: str, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``operation`` AccessDeniedException, as AWS answers a
        freshly created role or policy until IAM has propagated it (IAM user guide, troubleshooting:
        changes are not always immediately visible). Built on :meth:`inject`, so these denials are
        not recorded in :attr:`denied`."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        with self._lock:
            message = self._denial(operation, None, Decision.IMPLICIT_DENY)
        self.inject(operation, ACCESS_DENIED, message=message, times=times)

    def enforce(
        self, policy_document: JsonDict | None, *, principal: str | None = None, access_key: str | None = None
    ) -> None:
        """Authorize every request against ``policy_document`` before serving it (None: allow all).

        ``access_key``: the policy is the identity policy of the caller signing with that access
        key id only (the handler's role); others are the account's administrators, who may do
        anything (tests setting up state). None: every caller.

        As AWS does: action ``iot:<Operation>`` on each resource AWS authorizes for it, with a
        request context of only the condition keys that apply to the action on that resource
        (:mod:`tests.rig.iam_reference`). A request that is not allowed on every resource answers
        ``AccessDeniedException`` (HTTP 400) and is recorded in :attr:`denied`. ``principal``
        names the caller in the error message (default: an assumed-role session).
        """
        with self._lock:
            self._policy = copy.deepcopy(policy_document)
            self._policy_key = access_key
            if principal is not None:
                self._principal = principal

    def latency(self, seconds: float) -> None:
        """Delay every call by ``seconds`` (0 removes the delay)."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            self._latency = seconds

    def throttle(self, rate_per_second: float | None, burst: int = 1) -> None:
        """Rate-limit all calls with a token bucket; the excess answers ``ThrottlingException``.

        ``throttle(None)`` removes the limit. The bucket starts full and refills in real time.
        """
        with self._lock:
            if rate_per_second is None:
                self._bucket = None
                return
            if rate_per_second <= 0 or burst < 1:
                raise ValueError("rate_per_second must be > 0 and burst >= 1")
            self._bucket = _Bucket(rate_per_second, burst, float(burst))

    def on_call(self, callback: Callable[[str], None] | None) -> None:
        """Call ``callback(operation)`` in the server thread before each call is served.

        The hook runs outside the lock, so it may use this emulator (e.g. :meth:`expire`).
        """
        with self._lock:
            self._hook = callback

    # --- request handling ------------------------------------------------------------------

    def handle(self, target: str, raw: bytes, access_key: str | None = None) -> tuple[int, JsonDict]:
        """Serve one request: ``X-Amz-Target`` value, raw body and the signer's access key id in,
        status and JSON out."""
        prefix, _, operation = target.partition(".")
        try:
            parsed = json.loads(raw or b"{}")
        except ValueError:
            parsed = None
        body: JsonDict = parsed if isinstance(parsed, dict) else {}
        with self._lock:
            self.calls.append((operation, copy.deepcopy(body)))
            hook, delay = self._hook, self._latency
        try:
            if hook is not None:
                self._run_hook(hook, operation)
            if delay:
                time.sleep(delay)
            if prefix != TARGET_PREFIX or operation not in self._operations:
                raise ApiError("UnknownOperationException", f"unknown operation {target!r}")
            if not isinstance(parsed, dict):
                raise ApiError("SerializationException", "request body is not a JSON object")
            with self._lock:
                self._admit(operation)
                self._sweep()
                if self._policy_key is None or access_key == self._policy_key:
                    self._authorize(operation, body)
                return 200, self._operations[operation](body)
        except ApiError as error:
            return self._error(error)

    def _run_hook(self, hook: Callable[[str], None], operation: str) -> None:
        try:
            hook(operation)
        except Exception as exc:  # a broken hook must fail the call visibly, not kill the server
            with self._lock:
                self.hook_errors.append(exc)
            raise ApiError("InternalFailureException", f"on_call hook failed: {exc!r}", 500) from exc

    def _error(self, error: ApiError) -> tuple[int, JsonDict]:
        if error.code == "ThrottlingException":
            with self._lock:
                self.throttled_count += 1
        return error.status, {"__type": error.code, "message": error.message}

    def _admit(self, operation: str) -> None:
        """Apply the rate limit, then the injected faults (the caller holds the lock)."""
        if self._bucket is not None and not self._bucket.take():
            raise ApiError("ThrottlingException", "Rate exceeded")
        fired: _Fault | None = None
        for fault in self._faults:
            if fault.operation not in ("*", operation):
                continue
            if fault.after > 0:
                fault.after -= 1  # each fault counts the matching calls it lets through
            elif fired is None:
                fired = fault
                fault.times -= 1
        self._faults = [f for f in self._faults if f.times > 0]
        if fired is not None:
            raise ApiError(fired.code, fired.message, fired.status)

    # --- authorization (the caller holds the lock) ----------------------------------------

    def _authorize(self, operation: str, body: JsonDict) -> None:
        """Raise AccessDeniedException unless the policy allows ``operation`` on every resource."""
        if self._policy is None:
            return
        for resource in self._resources(operation, body):
            candidates = self._context_candidates(operation, body, resource)
            context = iam_reference.request_context("iot", operation, resource, candidates)
            decision = evaluate(self._policy, f"iot:{operation}", resource, context)
            if decision is not Decision.ALLOW:
                self.denied.append((operation, resource))
                raise ApiError(ACCESS_DENIED, self._denial(operation, resource, decision))

    def _denial(self, operation: str, resource: str | None, decision: Decision) -> str:
        on = f" on resource: {resource}" if resource else ""
        if decision is Decision.EXPLICIT_DENY:
            why = "with an explicit deny in an identity-based policy"
        else:
            why = f"because no identity-based policy allows the iot:{operation} action"
        return f"User: {self._principal} is not authorized to perform: iot:{operation}{on} {why}"

    def _resources(self, operation: str, body: JsonDict) -> list[str]:
        """The ARNs AWS authorizes a request on (developer guide, "Controlling access to
        tunnels"); none if the request lacks them, so that validation answers it."""
        if operation == "ListTunnels":
            return ["*"]
        if operation in ("TagResource", "UntagResource", "ListTagsForResource"):
            arn = body.get("resourceArn")
            return [arn] if isinstance(arn, str) and arn else []
        tunnel_id = self._next_id if operation == "OpenTunnel" else body.get("tunnelId")
        if not isinstance(tunnel_id, str) or not tunnel_id:
            return []
        resources = [self._tunnel_arn(tunnel_id)]
        thing = _thing_of(body)
        if thing is not None and operation in ("OpenTunnel", "RotateTunnelAccessToken"):
            resources.append(f"arn:aws:iot:{self.region}:{self.account}:thing/{thing}")
        return resources

    def _context_candidates(self, operation: str, body: JsonDict, resource: str) -> dict[str, list[str]]:
        """Every condition key the request could carry; :func:`iam_reference.request_context`
        keeps those that apply to the action on ``resource``."""
        now = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        context = {
            "aws:SecureTransport": ["true"],  # the SDKs call over HTTPS
            "aws:RequestedRegion": [self.region],
            "aws:PrincipalAccount": [self.account],
            "aws:CurrentTime": [now],
        }
        tunnel = next((t for t in self._tunnels.values() if t.arn == resource), None)
        if tunnel is not None:  # a deleted tunnel has no tags left to match
            context.update({f"aws:ResourceTag/{k}": [v] for k, v in tunnel.tags.items()})
        tags = _request_tags(body)
        context.update({f"aws:RequestTag/{k}": [v] for k, v in tags.items()})
        tag_keys = list(tags) or _strings(body.get("tagKeys"))
        if tag_keys:
            context["aws:TagKeys"] = tag_keys
        if isinstance(body.get("clientMode"), str):
            context["iot:ClientMode"] = [body["clientMode"]]
        if operation == "CloseTunnel":
            context["iot:Delete"] = [str(body.get("delete") is True).lower()]
        services = _strings(_config_of(body).get("services"))
        if services:
            context["iot:TunnelDestinationService"] = services
        return context

    # --- state helpers (the caller holds the lock; requests and inspection sweep first) ---

    def _refresh(self, t: _Tunnel) -> _Tunnel:
        """Close a tunnel whose lifetime has run out: expiry is evaluated lazily."""
        deadline = t.created_at + t.lifetime_minutes * 60
        if not t.closed and deadline <= self.clock():
            t.close(deadline)
        return t

    def _sweep(self) -> None:
        """Expire tunnels, then delete the CLOSED ones whose retention time has passed (lazily,
        like expiry)."""
        now = self.clock()
        for t in list(self._tunnels.values()):
            closed_at = self._refresh(t).closed_at
            if closed_at is not None and closed_at + self.retention_seconds <= now:
                del self._tunnels[t.tunnel_id]

    def _tunnel_arn(self, tunnel_id: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account}:tunnel/{tunnel_id}"

    def _notify(self, thing: str, token: str, services: list[str]) -> None:
        """Record what AWS IoT publishes on the thing's notify topic (payload: developer guide,
        "Configuring a remote device and using IoT agent")."""
        payload = {
            "clientAccessToken": token,
            "clientMode": "destination",
            "region": self.region,
            "services": list(services),
        }
        topic = f"$aws/things/{thing}/tunnels/notify"
        self.notifications.append({"thingName": thing, "topic": topic, "payload": payload})

    def _find(self, tunnel_id: str) -> _Tunnel:
        t = self._tunnels.get(tunnel_id)
        if t is None:
            raise ApiError("ResourceNotFoundException", f"tunnel {tunnel_id} not found")
        return t

    def _find_arn(self, arn: str) -> _Tunnel:
        for t in self._tunnels.values():
            if t.arn == arn:
                return t
        raise ApiError("ResourceNotFoundException", f"resource {arn} not found")

    def _issue(self) -> str:
        token = secrets.token_urlsafe(96)
        self.issued_tokens.append(token)
        return token

    def _summary(self, t: _Tunnel) -> JsonDict:
        summary: JsonDict = {
            "tunnelId": t.tunnel_id,
            "tunnelArn": t.arn,
            "status": "CLOSED" if t.closed else "OPEN",
            "createdAt": t.created_at,
            "lastUpdatedAt": t.updated_at,
        }
        if t.description is not None:
            summary["description"] = t.description
        return summary

    def _tunnel_shape(self, t: _Tunnel) -> JsonDict:
        shape = self._summary(t)
        disconnected = {"status": "DISCONNECTED", "lastUpdatedAt": t.created_at}
        shape["sourceConnectionState"] = dict(disconnected)
        shape["destinationConnectionState"] = dict(disconnected)
        if t.destination_config is not None:
            shape["destinationConfig"] = copy.deepcopy(t.destination_config)
        shape["timeoutConfig"] = {"maxLifetimeTimeoutMinutes": t.lifetime_minutes}
        if t.tags:
            shape["tags"] = _tag_list(t.tags)
        return shape

    # --- operations (the caller holds the lock) --------------------------------------------

    def _open_tunnel(self, body: JsonDict) -> JsonDict:
        description = _description(body["description"]) if "description" in body else None
        config = _destination_config(body["destinationConfig"]) if "destinationConfig" in body else None
        tags = _tags(body["tags"]) if "tags" in body else {}
        lifetime = _lifetime(body.get("timeoutConfig", {}))
        if len(self.open_tunnel_ids()) >= self.max_open_tunnels:
            raise ApiError("LimitExceededException", f"at most {self.max_open_tunnels} open tunnels")
        tunnel_id, self._next_id = self._next_id, str(uuid.uuid4())
        now = self.clock()
        self._seq += 1
        t = _Tunnel(
            tunnel_id=tunnel_id,
            arn=self._tunnel_arn(tunnel_id),
            seq=self._seq,
            description=description,
            destination_config=config,
            lifetime_minutes=lifetime,
            tags=tags,
            created_at=now,
            updated_at=now,
            source_token=self._issue(),
            destination_token=self._issue(),
        )
        self._tunnels[tunnel_id] = t
        if config is not None and "thingName" in config:
            self._notify(config["thingName"], t.destination_token, config["services"])
        return {
            "tunnelId": t.tunnel_id,
            "tunnelArn": t.arn,
            "sourceAccessToken": t.source_token,
            "destinationAccessToken": t.destination_token,
        }

    def _describe_tunnel(self, body: JsonDict) -> JsonDict:
        return {"tunnel": self._tunnel_shape(self._find(_required_str(body, "tunnelId")))}

    def _close_tunnel(self, body: JsonDict) -> JsonDict:
        t = self._find(_required_str(body, "tunnelId"))
        if body.get("delete") is True:
            del self._tunnels[t.tunnel_id]
        elif not t.closed:
            t.close(self.clock())
        return {}

    def _rotate_tunnel_access_token(self, body: JsonDict) -> JsonDict:
        t = self._find(_required_str(body, "tunnelId"))
        mode = body.get("clientMode")
        if mode not in CLIENT_MODES:
            raise _invalid(f"clientMode must be one of {', '.join(CLIENT_MODES)}")
        config = _destination_config(body["destinationConfig"]) if "destinationConfig" in body else None
        if mode == "SOURCE" and config is not None:
            # "You can not use DestinationConfig with source clientMode" (API reference), which
            # names no error: a ValidationException, the service's answer to a bad request.
            raise _invalid("destinationConfig cannot be used with clientMode SOURCE")
        if t.closed:
            # Deliberately not a not-found code: callers must not read "gone" into it.
            raise ApiError("InvalidRequestException", "tunnel is closed")
        answer: JsonDict = {"tunnelArn": t.arn}
        if mode in ("SOURCE", "ALL"):
            t.source_token = answer["sourceAccessToken"] = self._issue()
        if mode in ("DESTINATION", "ALL"):
            t.destination_token = answer["destinationAccessToken"] = self._issue()
        if config is not None:
            t.destination_config = config
            # AWS IoT publishes the new destination token only when the request names the thing.
            if "thingName" in config:
                self._notify(config["thingName"], t.destination_token, config["services"])
        t.updated_at = self.clock()  # lifetime still counts from created_at
        return answer

    def _list_tunnels(self, body: JsonDict) -> JsonDict:
        limit = body.get("maxResults", MAX_RESULTS)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_RESULTS:
            raise _invalid(f"maxResults must be 1-{MAX_RESULTS}")
        thing = _name(body["thingName"], "thingName") if "thingName" in body else None
        after = _decode_page(body["nextToken"]) if "nextToken" in body else None
        matches = [
            t
            for t in sorted(self._tunnels.values(), key=lambda t: t.seq, reverse=True)
            if (thing is None or (t.destination_config or {}).get("thingName") == thing)
            and (after is None or t.seq < after)
        ]
        page = matches[:limit]
        answer: JsonDict = {"tunnelSummaries": [self._summary(t) for t in page]}
        if len(matches) > limit:
            answer["nextToken"] = _encode_page(page[-1].seq)
        return answer

    def _tag_resource(self, body: JsonDict) -> JsonDict:
        t = self._find_arn(_required_str(body, "resourceArn"))
        merged = {**t.tags, **_tags(body.get("tags"))}
        if len(merged) > MAX_TAGS:
            raise _invalid(f"a tunnel has at most {MAX_TAGS} tags")
        t.tags = merged
        return {}

    def _untag_resource(self, body: JsonDict) -> JsonDict:
        t = self._find_arn(_required_str(body, "resourceArn"))
        keys = body.get("tagKeys")
        if not isinstance(keys, list) or len(keys) > MAX_TAGS:
            raise _invalid(f"tagKeys must hold 0-{MAX_TAGS} keys")
        removed = {_tag_text(k, 1, 128, "tag key") for k in keys}
        t.tags = {k: v for k, v in t.tags.items() if k not in removed}
        return {}

    def _list_tags_for_resource(self, body: JsonDict) -> JsonDict:
        t = self._find_arn(_required_str(body, "resourceArn"))
        return {"tags": _tag_list(t.tags)}
