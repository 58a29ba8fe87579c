"""Cold start: importing and initialising the handler in a fresh process, against the floor.

Every run is a new Python process (as a Lambda cold start is); the time is taken inside it, from
just before the first import to just after the clients exist, so the interpreter's own start
(the same for every variant) does not dilute the ratio. The process's wall time is kept too.
Variants run alternately, in a rotating order, and each figure is the median of its runs.

- ``floor``: ``import boto3`` and the two clients the handler really needs.
- ``handler``: ``import secure_tunnel_handler.entrypoint`` and ``entrypoint._clients()``, from the
  installed package (byte code cached, like the floor's boto3).
- ``handler_asset``: the same from the Lambda asset ``cdk synth`` wrote, as Lambda loads it: the
  asset folder first on the path and no byte code for the handler or crhelper (the asset ships
  none; Lambda's /var/task is read-only, so nothing is cached between cold starts). boto3 is
  the environment's, precompiled, as in the Lambda runtime.
- ``crhelper_default``: after the floor, crhelper's default ``CfnResource()`` (its lambda, events
  and logs clients): what the handler would add if it did not skip them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import median

FLOOR = """
import boto3
session = boto3.session.Session()
session.client("iotsecuretunneling")
session.client("secretsmanager")
"""
HANDLER = """
from secure_tunnel_handler import entrypoint
entrypoint._clients()
"""
CRHELPER_IMPORT = "from crhelper import CfnResource"
SCRIPT = """import time
_c0, _t0 = time.process_time(), time.perf_counter()
{setup}
_c1, _t1 = time.process_time(), time.perf_counter()
{extra}
_t2 = time.perf_counter()
print(_t1 - _t0, _t2 - _t1, _c1 - _c0)
{after}
"""
WHERE_LOADED = "import sys; print(sys.modules['secure_tunnel_handler.entrypoint'].__file__)"


@dataclass(frozen=True)
class Variant:
    """One way of starting: what is timed, what is timed apart, extra environment."""

    name: str
    setup: str
    extra: str = ""
    env: dict[str, str] = field(default_factory=dict)
    after: str = ""

    def script(self) -> str:
        """The Python program a fresh process runs."""
        return SCRIPT.format(setup=self.setup.strip(), extra=self.extra or "pass", after=self.after)


@dataclass
class Runs:
    """Timings of a variant's runs, in seconds."""

    timed: list[float] = field(default_factory=list)
    apart: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    loaded_from: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class ColdStart:
    """Medians of every variant."""

    runs: int
    results: dict[str, Runs]

    def timed(self, name: str) -> float:
        """Median import-and-initialise time of a variant."""
        return median(self.results[name].timed)

    def timed_apart(self, name: str) -> float:
        """Median of the part timed apart (crhelper's default ``CfnResource()``)."""
        return median(self.results[name].apart)

    def cpu(self, name: str) -> float:
        """Median CPU time (user + system) of the timed part of a variant."""
        return median(self.results[name].cpu)

    def wall(self, name: str) -> float:
        """Median wall time of the whole process."""
        return median(self.results[name].wall)


def environment() -> dict[str, str]:
    """A region and dummy credentials, nothing else from AWS's configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHONPATH", "PYTHONDONTWRITE"))}
    env.update(
        {
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    return env


def variants(asset_dir: Path | None) -> list[Variant]:
    """The variants to run (``handler_asset`` only if the asset folder is known)."""
    chosen = [
        Variant("floor", FLOOR),
        Variant("handler", HANDLER, after=WHERE_LOADED),
        Variant("crhelper_default", f"{FLOOR}\n{CRHELPER_IMPORT}", extra="CfnResource()"),
    ]
    if asset_dir is not None:
        asset_env = {"PYTHONPATH": str(asset_dir), "PYTHONDONTWRITEBYTECODE": "1"}
        chosen.append(Variant("handler_asset", HANDLER, env=asset_env, after=WHERE_LOADED))
    return chosen


def _run_once(variant: Variant, base_env: dict[str, str], runs: Runs, cwd: Path) -> None:
    env = {**base_env, **variant.env}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", variant.script()],
        cwd=cwd,  # an empty folder: nothing importable from the working directory
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"cold start variant {variant.name} failed:\n{done.stderr[-2000:]}")
    lines = done.stdout.split("\n")
    timed, apart, cpu = (float(x) for x in lines[0].split())
    runs.timed.append(timed)
    runs.apart.append(apart)
    runs.cpu.append(cpu)
    runs.wall.append(wall)
    if len(lines) > 1 and lines[1].strip():
        runs.loaded_from.add(str(Path(lines[1].strip()).parent.parent))


def measure(runs: int, asset_dir: Path | None) -> ColdStart:
    """``runs`` fresh processes per variant, alternating, in a rotating order."""
    chosen = variants(asset_dir)
    results = {v.name: Runs() for v in chosen}
    base_env = environment()
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as empty:
        cwd = Path(empty)
        for variant in chosen:  # one unmeasured run each: compiles byte code, warms the page cache
            _run_once(variant, base_env, Runs(), cwd)
        for index in range(runs):
            shift = index % len(chosen)
            for variant in chosen[shift:] + chosen[:shift]:
                _run_once(variant, base_env, results[variant.name], cwd)
    if asset_dir is not None:
        loaded = results["handler_asset"].loaded_from
        if loaded != {str(asset_dir)}:
            raise RuntimeError(f"the asset variant loaded the handler from {loaded}, not {asset_dir}")
    return ColdStart(runs, results)


def import_breakdown(asset_dir: Path | None) -> list[tuple[str, int]]:
    """Self import time (µs) of the handler's own modules and crhelper, from one
    ``python -X importtime`` run of the handler variant (from the asset when it is known)."""
    variant = variants(asset_dir)[-1 if asset_dir is not None else 1]
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as empty:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", variant.script()],
            cwd=empty,
            env={**environment(), **variant.env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    found: list[tuple[str, int]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line.removeprefix("import time:").split("|")
        module = name.strip()
        if module.split(".")[0] in {"secure_tunnel_handler", "crhelper"}:
            found.append((module, int(self_us)))
    return sorted(found, key=lambda item: -item[1])
