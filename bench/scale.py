"""Synthesis: ``cdk synth`` time and template size for 1, 10 and 50 tunnels in one stack, the Lambda
asset (zipped size, hash stable across synths), and how many tunnels fit in one stack.

``cdk synth`` is the pinned CDK CLI on ``bench/scale_app.py`` (cdk.json's feature flags,
local bundling, no Docker, no AWS credentials): what a user waits for, jsii's start included.
The same stack is also synthesized in process (``synth_worker``, jsii already started) to show
the part that grows with the number of tunnels. Counts run in rounds, in alternating order.

How many tunnels fit before CloudFormation's 500-resource limit is computed from the templates
(resources per tunnel, fixed resources, CDK's overflow policies) and then verified with
``cdk synth`` of that many and of one more. How many fit IAM's policy quotas is searched with
in-process synths (see ``bench/iam.py``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.iam import MAX_RESOURCES, PolicyFit, policy_fit, resource_count, resource_types
from bench.report import REPO_ROOT, median
from bench.scale_app import STACK_NAME, TUNNELS_CONTEXT
from tests.cdk_helpers import CDK_CLI, tool_environment
from tools.handler_zip import asset_files, write_zip

Json = dict[str, Any]
OVERFLOW_POLICY = "AWS::IAM::ManagedPolicy"
FUNCTION = "AWS::Lambda::Function"


@dataclass
class Synth:
    """One ``cdk synth`` of the scale stack."""

    count: int
    seconds: float
    outdir: Path
    error: str | None = None
    template: Json = field(default_factory=dict)
    #: Size of the template file as written.
    template_bytes: int = 0

    @property
    def ok(self) -> bool:
        """Whether it synthesized."""
        return self.error is None

    def asset(self) -> tuple[str, Path]:
        """(hash, folder) of the handler function's code asset."""
        (function,) = [r for r in self.template["Resources"].values() if r["Type"] == FUNCTION]
        asset_hash = str(function["Properties"]["Code"]["S3Key"]).removesuffix(".zip")
        manifest = json.loads((self.outdir / f"{STACK_NAME}.assets.json").read_text())
        return asset_hash, self.outdir / manifest["files"][asset_hash]["source"]["path"]


def cdk_synth(count: int, workdir: Path) -> Synth:
    """``cdk synth`` of the scale stack with ``count`` tunnels into a fresh folder of ``workdir``."""
    outdir = Path(tempfile.mkdtemp(prefix=f"synth-{count}-", dir=workdir))
    command = [
        str(CDK_CLI),
        "synth",
        "--app",
        f"{sys.executable} -m bench.scale_app",
        "--context",
        f"{TUNNELS_CONTEXT}={count}",
        "--quiet",
        "--no-notices",
        "--output",
        str(outdir),
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=tool_environment(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return Synth(count, seconds, outdir, error=_last_error(done.stdout + done.stderr))
    text = (outdir / f"{STACK_NAME}.template.json").read_text()
    return Synth(count, seconds, outdir, template=json.loads(text), template_bytes=len(text.encode()))


def _last_error(output: str) -> str:
    """The error that ended a failed synth, without CDK's per-type resource breakdown."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    raised = [line.removeprefix("RuntimeError: ") for line in lines if line.startswith("RuntimeError: ")]
    wanted = raised or [line for line in lines if "Error" in line] or lines or ["(no output)"]
    return wanted[-1].split(": AWS::")[0][:300]


def zipped_size(folder: Path) -> tuple[int, int, int]:
    """(zip bytes, unzipped bytes, files) of ``folder``, zipped as ``make dist`` releases it."""
    files = [folder / name for name in asset_files(folder)]
    with tempfile.TemporaryDirectory() as workdir:
        package = Path(workdir) / "handler.zip"
        write_zip(folder, package)
        return package.stat().st_size, sum(f.stat().st_size for f in files), len(files)


@dataclass(frozen=True)
class ResourceModel:
    """Resources of the stack as a function of the number of tunnels."""

    per_tunnel: int
    per_tunnel_types: dict[str, int]
    fixed: int
    fixed_types: dict[str, int]

    def predict_max(self, overflow_policies: int) -> int:
        """Tunnels that fit 500 resources with ``overflow_policies`` CDK overflow policies."""
        return (MAX_RESOURCES - self.fixed - overflow_policies) // self.per_tunnel


def resource_model(one: Json, ten: Json) -> ResourceModel:
    """Per-tunnel and fixed resources, from the templates of 1 and 10 tunnels (CDK's overflow
    policies left out: they come in steps, as the role's policy grows)."""
    small, large = resource_types(one), resource_types(ten)
    small.pop(OVERFLOW_POLICY, None)
    large.pop(OVERFLOW_POLICY, None)
    per_types: dict[str, int] = {}
    for kind in set(small) | set(large):
        delta = large[kind] - small[kind]
        if delta:
            if delta % 9:
                raise RuntimeError(f"{kind}: {small[kind]} at 1 tunnel, {large[kind]} at 10: not linear")
            per_types[kind] = delta // 9
    per = sum(per_types.values())
    fixed_types = {k: n - per_types.get(k, 0) for k, n in small.items() if n - per_types.get(k, 0)}
    return ResourceModel(per, per_types, sum(fixed_types.values()), fixed_types)


@dataclass
class Limit:
    """Tunnels per stack before the 500-resource limit: computed, then verified."""

    model: ResourceModel
    overflow_used: int
    computed: int
    verified: int
    resources_at_verified: int
    overflow_at_verified: int
    one_more: str
    synths: list[Synth]


def verify_limit(model: ResourceModel, overflow: int, workdir: Path) -> Limit:
    """Synthesize the computed count, move to the largest count that fits 500 resources, and
    check that one more does not (``cdk synth`` fails, or the template has too many)."""
    computed = model.predict_max(overflow)
    synths: dict[int, Synth] = {}

    def fits(count: int) -> bool:
        if count not in synths:
            synths[count] = cdk_synth(count, workdir)
        synth = synths[count]
        return synth.ok and resource_count(synth.template) <= MAX_RESOURCES

    count = computed
    for _ in range(6):
        if not fits(count):
            synth = synths[count]
            over = resource_count(synth.template) if synth.ok else MAX_RESOURCES + 1
            count -= max(1, math.ceil((over - MAX_RESOURCES) / model.per_tunnel))
        elif fits(count + 1):
            count += 1
        else:
            break
    else:
        raise RuntimeError(f"the largest tunnel count that fits {MAX_RESOURCES} resources was not found")
    beyond = synths[count + 1]
    if beyond.ok:
        one_more = f"{count + 1} tunnels: {resource_count(beyond.template)} resources"
    else:
        one_more = f"{count + 1} tunnels: cdk synth fails: {beyond.error}"
    fitting = synths[count]
    return Limit(
        model=model,
        overflow_used=overflow,
        computed=computed,
        verified=count,
        resources_at_verified=resource_count(fitting.template),
        overflow_at_verified=resource_types(fitting.template)[OVERFLOW_POLICY],
        one_more=one_more,
        synths=list(synths.values()),
    )


@dataclass
class ScaleResults:
    """Everything the synthesis benchmark measured."""

    counts: list[int]
    synths: dict[int, list[Synth]]
    limit: Limit
    worker: Json
    asset_hashes: Counter[str]
    asset_dir: Path
    asset_zip: tuple[int, int, int]
    policy_fits: dict[int, PolicyFit]

    def seconds(self, count: int) -> float:
        """Median ``cdk synth`` time for ``count`` tunnels."""
        return median([s.seconds for s in self.synths[count]])

    def in_process(self, count: int) -> float:
        """Median in-process synth time for ``count`` tunnels (jsii started)."""
        return median(self.worker["timings"][str(count)])

    def template(self, count: int) -> Json:
        """The template of ``count`` tunnels."""
        return self.synths[count][0].template

    def template_bytes(self, count: int) -> int:
        """Template file size for ``count`` tunnels."""
        return self.synths[count][0].template_bytes

    def functions(self, count: int) -> int:
        """Lambda functions in the stack of ``count`` tunnels."""
        return resource_types(self.template(count))[FUNCTION]


def _worker(counts: list[int], rounds: int, search_max: int, workdir: Path) -> Json:
    request, result = workdir / "worker-request.json", workdir / "worker-result.json"
    request.write_text(json.dumps({"counts": counts, "rounds": rounds, "iam_search_max": search_max}))
    done = subprocess.run(
        [sys.executable, "-m", "bench.synth_worker", str(request), str(result)],
        cwd=REPO_ROOT,
        env=tool_environment(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"in-process synth failed:\n{(done.stdout + done.stderr)[-3000:]}")
    data: Json = json.loads(result.read_text())
    return data


def measure(workdir: Path, counts: list[int], rounds: int) -> ScaleResults:
    """Time ``cdk synth`` for each count (``rounds`` each), then find and verify the limits."""
    synths: dict[int, list[Synth]] = {c: [] for c in counts}
    for round_index in range(rounds):
        for count in counts if round_index % 2 == 0 else list(reversed(counts)):
            synth = cdk_synth(count, workdir)
            if not synth.ok:
                raise RuntimeError(f"cdk synth of {count} tunnels failed: {synth.error}")
            synths[count].append(synth)
    model = resource_model(synths[counts[0]][0].template, synths[counts[1]][0].template)
    overflow = resource_types(synths[counts[-1]][0].template)[OVERFLOW_POLICY]
    limit = verify_limit(model, overflow, workdir)
    worker = _worker(counts, rounds, limit.verified, workdir)
    every = [s for runs in synths.values() for s in runs] + [s for s in limit.synths if s.ok]
    hashes = Counter(s.asset()[0] for s in every)
    _, asset_dir = synths[counts[0]][0].asset()
    fits = {c: policy_fit(synths[c][0].template) for c in counts}
    fits[limit.verified] = policy_fit(next(s for s in limit.synths if s.count == limit.verified).template)
    return ScaleResults(
        counts=counts,
        synths=synths,
        limit=limit,
        worker=worker,
        asset_hashes=hashes,
        asset_dir=asset_dir,
        asset_zip=zipped_size(asset_dir),
        policy_fits=fits,
    )
