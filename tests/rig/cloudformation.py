"""CloudFormation's side of a custom resource: events in, the handler's response out.

crhelper PUTs its response to the pre-signed ``ResponseURL`` over HTTPS with the default SSL
context. The receiver here is a loopback HTTPS server whose certificate comes from a test CA
(trustme); the handler trusts it through ``SSL_CERT_FILE``, the normal OpenSSL mechanism.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trustme

STACK_NAME = "demo-stack"
STACK_ID = (
    f"arn:aws:cloudformation:us-east-1:123456789012:stack/{STACK_NAME}/0b6e1d30-0000-11ef-9f3e-0a1b2c3d4e5f"
)


class ResponseReceiver:
    """A loopback HTTPS endpoint that records each response body, by request path."""

    def __init__(self, ca_dir: Path) -> None:
        self._ca = trustme.CA()
        self.ca_file = ca_dir / "test-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))
        self.responses: dict[str, dict[str, Any]] = {}
        self.raw_bodies: list[str] = []
        #: HTTP status to answer with (403 = an expired pre-signed URL).
        self.status = 200
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def new_url(self) -> str:
        """A fresh response URL, as CloudFormation puts in each event."""
        return (
            f"https://localhost:{self._server.server_port}/cfn-response/{uuid.uuid4()}?X-Amz-Signature=test"
        )

    def response_for(self, url: str) -> dict[str, Any]:
        """The response body PUT to ``url`` (KeyError if the handler sent none)."""
        with self._lock:
            return self.responses[urlsplit(url).path.lstrip("/")]

    def clear(self) -> None:
        """Forget recorded responses."""
        with self._lock:
            self.responses.clear()
            self.raw_bodies.clear()
            self.status = 200

    def _record(self, path: str, body: str) -> int:
        with self._lock:
            self.raw_bodies.append(body)
            self.responses[urlsplit(path).path.lstrip("/")] = json.loads(body)
            return self.status

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                status = receiver._record(self.path, self.rfile.read(length).decode())
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def event(
    request_type: str,
    response_url: str,
    properties: dict[str, Any],
    *,
    physical_id: str | None = None,
    old_properties: dict[str, Any] | None = None,
    request_id: str | None = None,
    logical_id: str = "Tunnel",
) -> dict[str, Any]:
    """A CloudFormation custom resource event as Lambda receives it."""
    body: dict[str, Any] = {
        "RequestType": request_type,
        "ResponseURL": response_url,
        "StackId": STACK_ID,
        "RequestId": request_id or str(uuid.uuid4()),
        "ResourceType": "Custom::IoTSecureTunnel",
        "LogicalResourceId": logical_id,
        "ResourceProperties": properties,
    }
    if physical_id is not None:
        body["PhysicalResourceId"] = physical_id
    if old_properties is not None:
        body["OldResourceProperties"] = old_properties
    return body


class LambdaContext:
    """The parts of the Lambda context object that crhelper and the handler read."""

    function_name = "secure-tunnel-handler"
    aws_request_id = "00000000-0000-4000-8000-000000000000"

    def __init__(self, timeout_seconds: float = 300.0) -> None:
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
