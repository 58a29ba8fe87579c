"""Load: 100 tunnels created at once against an API that throttles at a fixed low rate.

CloudFormation creates the resources of a stack in parallel: a stack with 100 tunnels sends 100
Create events at once, and Lambda runs them in up to 100 execution environments. Here each runs
in its own thread with its own copy of the handler (see environments.py), one device and two
secrets per tunnel, while the tunneling emulator admits at most RATE calls a second (token
bucket, BURST at once) and answers the rest ThrottlingException. All must succeed.
"""

from __future__ import annotations

import json
import statistics
import threading
import time

from tests.reliability.environments import new_environment
from tests.reliability.ledger import LEDGER
from tests.reliability.world import Delivery, World

RESOURCES = 100
RATE = 40.0  # IoT Secure Tunneling calls admitted per second, across all callers
BURST = 10


def test_100_tunnels_created_at_once_under_throttling(world: World) -> None:
    with LEDGER.scenario("load"):
        started = time.monotonic()
        # The environments' cold starts (imports, AWS clients) would all compete for this
        # process's one interpreter lock, which separate Lambda environments never do.
        handlers = [new_environment(warm=True) for _ in range(RESOURCES)]
        prepared = time.monotonic() - started
        resources = [_resource(world, i) for i in range(RESOURCES)]
        results: list[Delivery | None] = [None] * RESOURCES
        latencies: list[float] = [0.0] * RESOURCES
        gate = threading.Barrier(RESOURCES + 1)

        def create(i: int) -> None:
            gate.wait()
            begun = time.monotonic()
            results[i] = world.deliver("Create", resources[i], handler=handlers[i])
            latencies[i] = time.monotonic() - begun

        threads = [threading.Thread(target=create, args=(i,)) for i in range(RESOURCES)]
        for thread in threads:
            thread.start()
        world.rig.tunnels.throttle(RATE, BURST)
        gate.wait()
        begun = time.monotonic()
        for thread in threads:
            thread.join(timeout=120)
        wall = time.monotonic() - begun
        world.rig.tunnels.throttle(None)

        assert not any(t.is_alive() for t in threads), "a Create never returned"
        failed = [r.reason if r else "no response" for r in results if r is None or r.status != "SUCCESS"]
        assert not failed, f"{len(failed)} Create(s) failed: {failed[:3]}"
        tunnel_ids = [r.physical_id for r in results if r is not None]
        assert len(set(tunnel_ids)) == RESOURCES
        assert not world.orphans(set(tunnel_ids)), "an unreferenced tunnel is OPEN"
        for props, tunnel_id in zip(resources, tunnel_ids, strict=True):
            for arn in (props["SourceAccessTokenSecretArn"], props["DestinationAccessTokenSecretArn"]):
                secret = json.loads(world.rig.secrets.get_secret_value(SecretId=arn)["SecretString"])
                assert secret["tunnelId"] == tunnel_id
                assert world.rig.tunnels.is_token_valid(secret["accessToken"])

        calls = world.rig.tunnels.call_count()
        throttled = world.rig.tunnels.throttled_count
        LEDGER.figures.update(
            {
                "load: tunnels created at once": f"{RESOURCES}, all SUCCESS",
                "load: throttle": f"{RATE:g} calls/s, burst {BURST}",
                "load: wall time": f"{wall:.1f} s (handler copies prepared in {prepared:.1f} s before)",
                "load: per Create": f"median {statistics.median(latencies):.1f} s, max {max(latencies):.1f} s",  # noqa: E501
                "load: tunneling calls": f"{calls}, of which throttled {throttled}",
            }
        )
        LEDGER.rows.append(
            ("load", f"{RESOURCES} Creates at once, {RATE:g} calls/s", f"all SUCCESS in {wall:.1f} s")
        )


def _resource(world: World, index: int) -> dict[str, object]:
    """Properties of one resource: its own device and its own two secrets."""
    placeholder = json.dumps({"status": "pending"})
    arns = [
        world.rig.secrets.create_secret(Name=f"load/{index:03d}/{mode}", SecretString=placeholder)["ARN"]
        for mode in ("source", "destination")
    ]
    return world.rig.properties(
        DestinationConfig={"ThingName": f"device-{index:03d}", "Services": ["SSH"]},
        SourceAccessTokenSecretArn=arns[0],
        DestinationAccessTokenSecretArn=arns[1],
    )
