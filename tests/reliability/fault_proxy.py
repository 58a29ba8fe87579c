"""A wire-level, fault-injecting HTTP proxy in front of an AWS JSON 1.1 service (tests only).

The handler's boto3 clients talk to the proxy exactly as they would to AWS; the proxy forwards
each request to the real stand-in (the tunneling emulator or the moto server) unless a fault
rule matches. A rule can answer an error instead of forwarding (nothing happened), or forward and
then lose the answer (it happened, but the caller cannot know). Both services the handler uses
speak AWS JSON 1.1 (``X-Amz-Target: <Prefix>.<Operation>``), so one proxy fits both.

Only the operation and the id the request targets are recorded: PutSecretValue bodies carry
tokens, so request bodies are never kept.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

# Request fields that name what a call acts on (tunnel calls, then Secrets Manager calls).
TARGET_FIELDS = ("tunnelId", "resourceArn", "thingName", "SecretId")
# Fields kept verbatim in the record because they tell calls of one operation apart.
DETAIL_FIELDS = ("VersionStage", "clientMode", "delete")
FOREVER = 1_000_000
#: The operation of a rule that applies to every operation.
ANY = "*"
# Headers that describe one hop, not the request: never forwarded.
HOP_HEADERS = frozenset({"host", "connection", "keep-alive", "content-length", "transfer-encoding"})


@dataclass(frozen=True)
class Call:
    """One request the proxy received: operation, the id it targets, distinguishing details."""

    operation: str
    target: str | None
    details: tuple[tuple[str, str], ...] = ()


@dataclass
class Rule:
    """Answer matching calls with an error: ``times`` of them, after letting ``skip`` through."""

    operation: str
    code: str
    status: int
    match: Callable[[Call], bool]
    times: int
    skip: int
    #: "refuse": answer the error without forwarding; "lose": forward, then answer the error
    #: (code "connection": close the socket without answering, as a lost response would);
    #: "forward": forward as usual (after ``before``, which makes the stand-in fail by itself).
    mode: str
    #: Run with the call before it is forwarded (e.g. delete the tunnel so the stand-in itself
    #: answers ResourceNotFoundException).
    before: Callable[[Call], None] | None


class FaultProxy:
    """A loopback proxy in front of ``upstream_url`` that can fail chosen calls."""

    def __init__(self, name: str, upstream_url: str) -> None:
        self.name = name
        self._upstream = urlsplit(upstream_url)
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._delays: dict[str, float] = {}
        self._local = threading.local()
        #: Every call received since the last :meth:`clear`, in arrival order.
        self.calls: list[Call] = []
        #: Calls answered with an injected fault since the last :meth:`clear`.
        self.faulted: list[Call] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def clear(self) -> None:
        """Forget rules, delays and recorded calls."""
        with self._lock:
            self._rules.clear()
            self._delays.clear()
            self.calls.clear()
            self.faulted.clear()

    def fail(
        self,
        operation: str,
        code: str,
        status: int = 400,
        *,
        match: Callable[[Call], bool] = lambda _: True,
        times: int = FOREVER,
        skip: int = 0,
        mode: str = "refuse",
        before: Callable[[Call], None] | None = None,
    ) -> None:
        """Fail calls of ``operation`` (:data:`ANY`: of every operation) that ``match``: the first
        ``skip`` pass, the next ``times`` fail."""
        with self._lock:
            self._rules.append(Rule(operation, code, status, match, times, skip, mode, before))

    def delay(self, operation: str, seconds: float) -> None:
        """Hold every call of ``operation`` for ``seconds`` before forwarding it."""
        with self._lock:
            self._delays[operation] = seconds

    def recorded(self) -> list[Call]:
        """A copy of the calls received so far."""
        with self._lock:
            return list(self.calls)

    # --- serving ------------------------------------------------------------------------------

    def _admit(self, call: Call) -> Rule | None:
        with self._lock:
            self.calls.append(call)
            for rule in self._rules:
                if rule.times <= 0 or rule.operation not in (ANY, call.operation) or not rule.match(call):
                    continue
                if rule.skip > 0:
                    rule.skip -= 1
                    continue
                rule.times -= 1
                self.faulted.append(call)
                return rule
        return None

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, bytes]:
        # One keep-alive connection per server thread (one thread per client connection).
        connection = getattr(self._local, "connection", None)
        if connection is None:
            host, port = self._upstream.hostname or "127.0.0.1", self._upstream.port or 80
            connection = self._local.connection = http.client.HTTPConnection(host, port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException):
            connection.close()  # a stale pooled connection: reconnect once
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
        return response.status, response.getheaders(), response.read()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                call = _describe(self.headers.get("X-Amz-Target", ""), body)
                rule = proxy._admit(call)
                with proxy._lock:
                    delay = proxy._delays.get(call.operation, 0.0)
                if delay:
                    time.sleep(delay)
                if rule is not None and rule.before is not None:
                    rule.before(call)
                if rule is not None and rule.mode == "refuse":
                    self._error(rule)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                status, answer_headers, answer = proxy._forward("POST", self.path, headers, body)
                if rule is not None and rule.mode == "lose":
                    if rule.code == "connection":
                        self.close_connection = True  # the effect happened; the answer is lost
                    else:
                        self._error(rule)
                    return
                self.send_response(status)
                for key, value in answer_headers:
                    if key.lower() not in HOP_HEADERS:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def _error(self, rule: Rule) -> None:
                payload = json.dumps({"__type": rule.code, "message": f"injected by {proxy.name} proxy"})
                data = payload.encode()
                self.send_response(rule.status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Stay quiet."""

        return Handler


def _describe(target: str, body: bytes) -> Call:
    operation = target.partition(".")[2]
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        parsed = {}
    request = cast(dict[str, Any], parsed) if isinstance(parsed, dict) else {}
    aimed = next((str(request[f]) for f in TARGET_FIELDS if f in request), None)
    details = tuple((f, str(request[f])) for f in DETAIL_FIELDS if f in request)
    return Call(operation, aimed, details)
