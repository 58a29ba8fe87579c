"""Per event: wall time of each CloudFormation event on the rig with a fixed latency per AWS call.

The handler runs in this process against the test rig (``tests/rig``): the IoT Secure Tunneling
emulator with its ``latency``, and moto's Secrets Manager behind a ``FaultProxy`` that holds
every Secrets Manager call for the same latency. Each event is timed from delivery to the
response CloudFormation receives (crhelper's HTTPS PUT included) and its AWS calls are counted
at the stand-ins. Beside it, two floors:

- the computed floor: the unavoidable sequential round trips times the latency (Create: open,
  then the two secret writes in parallel = 2; in-place Update: rotate, then the writes = 2;
  replacement: open, then the writes = 2; Delete: close = 1);
- the direct floor: those same calls made directly with boto3 against the same stand-ins, in the
  same run (it includes the stand-ins' own service time and boto3's, which the computed floor
  leaves out).

Sequences, repeated and interleaved with their direct floors (each starts from a reset rig):

- plain: Create, Update in place (RotationTrigger), Delete, and a Delete of a physical id that
  names no tunnel (left by a failed Create): no AWS call, the handler's fixed cost per event;
- replacement: Create, Update that replaces (Description), Delete of the old tunnel (the
  clean-up), Delete of the new one (stack deletion);
- crowded: Create while five other tunnels to the same thing are OPEN.

It also records what crhelper's default ``CfnResource`` would sleep on Delete (``_wait_for_cwlogs``
with a recording sleep function and a 300 s context): requested, never slept.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from bench.report import median
from tests.reliability.fault_proxy import FaultProxy
from tests.rig.cloudformation import STACK_NAME, LambdaContext
from tests.rig.harness import REGION, THING, Handler, Rig

#: A thing no handler event touches: the direct floor's tunnels stay out of the handler's look-ups.
FLOOR_THING = "bench-floor-device"
OTHER_OPEN_TUNNELS = 5
LAMBDA_TIMEOUT_SECONDS = 300.0

CREATE = "Create"
CREATE_CROWDED = f"Create, {OTHER_OPEN_TUNNELS} other OPEN tunnels to the thing"
UPDATE_IN_PLACE = "Update (in place)"
UPDATE_REPLACEMENT = "Update (replacement)"
DELETE = "Delete"
DELETE_OLD = "Delete (old tunnel, after a replacement)"
DELETE_AFTER_REPLACEMENT = "Delete (stack deletion, after a replacement)"
NO_CALL = "Delete of a non-tunnel id (no AWS call)"

#: The calls every event cannot do without, and how many of them are sequential.
FLOOR_CALLS: dict[str, tuple[Counter[str], int]] = {
    CREATE: (Counter({"OpenTunnel": 1, "PutSecretValue": 2}), 2),
    CREATE_CROWDED: (Counter({"OpenTunnel": 1, "PutSecretValue": 2}), 2),
    UPDATE_IN_PLACE: (Counter({"RotateTunnelAccessToken": 1, "PutSecretValue": 2}), 2),
    UPDATE_REPLACEMENT: (Counter({"OpenTunnel": 1, "PutSecretValue": 2}), 2),
    DELETE: (Counter({"CloseTunnel": 1}), 1),
    DELETE_OLD: (Counter({"CloseTunnel": 1}), 1),
    DELETE_AFTER_REPLACEMENT: (Counter({"CloseTunnel": 1}), 1),
    # The handler's fixed cost of an event: crhelper, the thread pool, the HTTPS response PUT.
    NO_CALL: (Counter(), 0),
}
EVENTS = tuple(FLOOR_CALLS)


@dataclass
class EventStats:
    """Every measured delivery of one kind of event."""

    label: str
    walls: list[float] = field(default_factory=list)
    direct_walls: list[float] = field(default_factory=list)
    calls: list[Counter[str]] = field(default_factory=list)

    @property
    def floor_round_trips(self) -> int:
        """Sequential round trips no implementation can avoid."""
        return FLOOR_CALLS[self.label][1]

    @property
    def floor_calls(self) -> Counter[str]:
        """The calls no implementation can avoid."""
        return FLOOR_CALLS[self.label][0]

    @property
    def typical_calls(self) -> Counter[str]:
        """The calls most deliveries made (they are the same every time unless noted)."""
        keyed = Counter(json.dumps(sorted(c.items())) for c in self.calls)
        return Counter(dict(json.loads(keyed.most_common(1)[0][0])))

    @property
    def calls_vary(self) -> bool:
        """Whether deliveries made different calls."""
        return len({json.dumps(sorted(c.items())) for c in self.calls}) > 1


@dataclass
class EventResults:
    """Everything the per-event benchmark measured."""

    latency: float
    repetitions: int
    stats: dict[str, EventStats]
    crhelper_default_sleeps: list[float]
    handler_sleeps: list[float]
    #: Every token the emulator issued in this benchmark, for the leak scan.
    tokens: list[str]
    #: Log output and CloudFormation response bodies, for the leak scan.
    texts: list[str]

    def wall(self, label: str) -> float:
        """Median wall time of an event."""
        return median(self.stats[label].walls)

    def direct(self, label: str) -> float | None:
        """Median wall time of the event's direct floor (None: the event has no AWS call)."""
        walls = self.stats[label].direct_walls
        return median(walls) if walls else None


def describe_calls(calls: Counter[str]) -> str:
    """``ListTunnels x2, OpenTunnel, PutSecretValue x2`` in a fixed order, with the total."""
    parts = [f"{op} x{n}" if n > 1 else op for op, n in sorted(calls.items())]
    total = sum(calls.values())
    return f"{', '.join(parts) or 'none'} ({total} call{'s' if total != 1 else ''})"


class LatencyProxy:
    """A ``FaultProxy`` in front of moto that holds every Secrets Manager call for ``latency``."""

    def __init__(self, upstream_url: str, latency: float) -> None:
        self.proxy = FaultProxy("secretsmanager", upstream_url).start()
        model = boto3.session.Session().client("secretsmanager", region_name=REGION).meta.service_model
        for operation in model.operation_names:
            self.proxy.delay(operation, latency)

    @property
    def url(self) -> str:
        """The proxy's endpoint."""
        return self.proxy.url

    def operations(self) -> list[str]:
        """Operation of every call received so far."""
        return [call.operation for call in self.proxy.recorded()]

    def stop(self) -> None:
        """Stop serving."""
        self.proxy.stop()


class _Direct:
    """The direct floor: the unavoidable calls, made with plain boto3 clients."""

    def __init__(self, tunnels_url: str, secrets_url: str) -> None:
        session = boto3.session.Session(region_name=REGION)
        self.tunnels = session.client("iotsecuretunneling", endpoint_url=tunnels_url)
        self.secrets = session.client("secretsmanager", endpoint_url=secrets_url)
        self.secret_arns: list[str] = []
        self.pool = ThreadPoolExecutor(max_workers=2)

    def new_secrets(self, rig: Rig) -> None:
        placeholder = json.dumps({"status": "pending"})
        self.secret_arns = [
            str(rig.secrets.create_secret(Name=f"bench/floor/{mode}", SecretString=placeholder)["ARN"])
            for mode in ("source", "destination")
        ]

    def _write(self, answer: Mapping[str, Any]) -> None:
        tokens = (answer["sourceAccessToken"], answer["destinationAccessToken"])
        writes = [
            self.pool.submit(
                self.secrets.put_secret_value, SecretId=arn, SecretString=json.dumps({"t": token})
            )
            for arn, token in zip(self.secret_arns, tokens, strict=True)
        ]
        for write in writes:
            write.result()

    def open(self) -> tuple[str, float]:
        started = time.perf_counter()
        answer = self.tunnels.open_tunnel(destinationConfig={"thingName": FLOOR_THING, "services": ["SSH"]})
        self._write(answer)
        return str(answer["tunnelId"]), time.perf_counter() - started

    def rotate(self, tunnel_id: str) -> float:
        started = time.perf_counter()
        self._write(self.tunnels.rotate_tunnel_access_token(tunnelId=tunnel_id, clientMode="ALL"))
        return time.perf_counter() - started

    def close(self, tunnel_id: str) -> float:
        started = time.perf_counter()
        self.tunnels.close_tunnel(tunnelId=tunnel_id, delete=True)
        return time.perf_counter() - started


class EventBench:
    """Drives the handler through the sequences and collects the figures."""

    def __init__(self, rig: Rig, handler: Handler, proxy: LatencyProxy, latency: float) -> None:
        self.rig = rig
        self.handler = handler
        self.proxy = proxy
        self.latency = latency
        self.direct = _Direct(rig.tunnels.endpoint_url, proxy.url)
        self.stats = {label: EventStats(label) for label in EVENTS}
        self.tokens: list[str] = []
        self.bodies: list[str] = []
        self.measuring = False
        self._trigger = 0

    # --- one event ---------------------------------------------------------------------------

    def _deliver(self, label: str, request_type: str, properties: dict[str, Any], **fields: Any) -> str:
        tunnel_calls = len(self.rig.tunnels.calls)
        secret_calls = len(self.proxy.operations())
        context = LambdaContext(LAMBDA_TIMEOUT_SECONDS)
        started = time.perf_counter()
        response = self.rig.send(self.handler, request_type, properties, context=context, **fields)
        wall = time.perf_counter() - started
        if response["Status"] != "SUCCESS":
            raise RuntimeError(f"{label} failed: {response.get('Reason')}")
        calls = Counter(op for op, _ in self.rig.tunnels.calls[tunnel_calls:])
        calls.update(self.proxy.operations()[secret_calls:])
        if self.measuring:
            self.stats[label].walls.append(wall)
            self.stats[label].calls.append(calls)
        return str(response["PhysicalResourceId"])

    def _floor(self, label: str, seconds: float) -> None:
        if self.measuring:
            self.stats[label].direct_walls.append(seconds)

    def _reset(self) -> None:
        self._keep_evidence()
        self.rig.reset()
        self.direct.new_secrets(self.rig)
        self.rig.tunnels.latency(self.latency)

    def _keep_evidence(self) -> None:
        self.tokens.extend(self.rig.tunnels.issued_tokens)
        self.bodies.extend(self.rig.cloudformation.raw_bodies)

    # --- sequences ---------------------------------------------------------------------------

    def plain(self) -> None:
        """Create, Update in place, Delete; each followed by its direct floor."""
        self._reset()
        properties = self.rig.properties()
        tunnel = self._deliver(CREATE, "Create", properties)
        floor_tunnel, seconds = self.direct.open()
        self._floor(CREATE, seconds)
        self._trigger += 1
        rotated = {**properties, "RotationTrigger": f"bench-{self._trigger}"}
        self._deliver(UPDATE_IN_PLACE, "Update", rotated, physical_id=tunnel, old_properties=properties)
        self._floor(UPDATE_IN_PLACE, self.direct.rotate(floor_tunnel))
        self._deliver(DELETE, "Delete", rotated, physical_id=tunnel)
        self._floor(DELETE, self.direct.close(floor_tunnel))
        # What a failed Create leaves: crhelper's generated id, which names no tunnel.
        self._deliver(NO_CALL, "Delete", rotated, physical_id=f"{STACK_NAME}_Tunnel_BENCH000")

    def replacement(self) -> None:
        """Create, a replacing Update, Delete of the old tunnel, Delete of the new one."""
        self._reset()
        first = self.rig.properties(Description="first")
        old = self._deliver(CREATE, "Create", first)
        second = {**first, "Description": "second"}
        new = self._deliver(UPDATE_REPLACEMENT, "Update", second, physical_id=old, old_properties=first)
        if new == old:
            raise RuntimeError("the Description change did not replace the tunnel")
        floor_tunnel, seconds = self.direct.open()
        self._floor(UPDATE_REPLACEMENT, seconds)
        other_floor_tunnel, _ = self.direct.open()
        self._deliver(DELETE_OLD, "Delete", first, physical_id=old)
        self._floor(DELETE_OLD, self.direct.close(floor_tunnel))
        self._deliver(DELETE_AFTER_REPLACEMENT, "Delete", second, physical_id=new)
        self._floor(DELETE_AFTER_REPLACEMENT, self.direct.close(other_floor_tunnel))

    def crowded(self) -> None:
        """Create while other tunnels to the same thing are OPEN (opened by someone else)."""
        self._reset()
        self.rig.tunnels.latency(0)
        for _ in range(OTHER_OPEN_TUNNELS):
            self.direct.tunnels.open_tunnel(destinationConfig={"thingName": THING, "services": ["SSH"]})
        self.rig.tunnels.latency(self.latency)
        self._deliver(CREATE_CROWDED, "Create", self.rig.properties())
        _, seconds = self.direct.open()
        self._floor(CREATE_CROWDED, seconds)

    def run(self, repetitions: int) -> None:
        """One unmeasured warm-up round (the first event creates the clients), then the rounds."""
        self.plain()
        self.replacement()
        self.measuring = True
        for _ in range(repetitions):
            self.plain()
            self.replacement()
            self.crowded()
        self.measuring = False
        self._keep_evidence()


def crhelper_sleep_on_delete(make_resource: Callable[[], Any]) -> list[float]:
    """What ``_wait_for_cwlogs`` of a crhelper resource asks to sleep on Delete with a 300 s
    context, recorded by the sleep function passed to it: requested, never slept."""
    requested: list[float] = []
    resource = make_resource()
    resource._context = LambdaContext(LAMBDA_TIMEOUT_SECONDS)
    resource._wait_for_cwlogs(sleep=requested.append)
    return requested


def _crhelper_default() -> Any:
    """crhelper's ``CfnResource()`` with every default (it sets the root log level: restored)."""
    from crhelper import CfnResource

    levels = {name: logging.getLogger(name).level for name in ("", "boto", "botocore")}
    try:
        return CfnResource()
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@contextmanager
def _captured_logs() -> Iterator[io.StringIO]:
    """Every log record of the handler into a buffer (scanned for tokens, never printed)."""
    buffer = io.StringIO()
    capture = logging.StreamHandler(buffer)
    capture.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(capture)
    try:
        yield buffer
    finally:
        root.removeHandler(capture)


def measure(latency: float, repetitions: int) -> EventResults:
    """Run the sequences ``repetitions`` times on a fresh rig with ``latency`` per AWS call."""
    with tempfile.TemporaryDirectory(prefix="bench-rig-") as workdir:
        rig = Rig(Path(workdir))
        env = rig.start()
        proxy = LatencyProxy(rig.moto_url, latency)
        env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = proxy.url
        env["LOG_LEVEL"] = "INFO"  # as the construct deploys it
        try:
            with rig.environment(env), _captured_logs() as logs:
                from secure_tunnel_handler import entrypoint

                entrypoint._clients.cache_clear()  # read this rig's endpoints
                bench = EventBench(rig, entrypoint.handler, proxy, latency)
                bench.run(repetitions)
                default_sleeps = crhelper_sleep_on_delete(_crhelper_default)
                handler_sleeps = crhelper_sleep_on_delete(lambda: entrypoint.helper)
                entrypoint._clients.cache_clear()
        finally:
            proxy.stop()
            rig.stop()
    return EventResults(
        latency=latency,
        repetitions=repetitions,
        stats=bench.stats,
        crhelper_default_sleeps=default_sleeps,
        handler_sleeps=handler_sleeps,
        tokens=bench.tokens,
        texts=[logs.getvalue(), *bench.bodies],
    )
