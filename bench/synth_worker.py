"""In-process synthesis of the scale stack, run in a fresh process by ``bench.scale``.

``python -m bench.synth_worker <request.json> <result.json>``. The request names the tunnel
counts to time (in rounds, alternating order) and the largest count to search for the IAM policy
quotas. The first synthesis of a process loads aws-cdk-lib into jsii's Node process; it is timed
apart, and every timed synthesis comes after it. Bundling runs as in ``cdk synth``, except in the
quota search, which only reads the templates.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

Json = dict[str, Any]


def _synth(count: int, *, bundle: bool = True) -> tuple[float, Json]:
    import aws_cdk as cdk

    from bench.scale_app import STACK_NAME, build
    from tests.cdk_helpers import cdk_json_context

    outdir = tempfile.mkdtemp(prefix="bench-synth-")
    try:
        context = cdk_json_context()
        if not bundle:
            context["aws:cdk:bundling-stacks"] = []
        started = time.perf_counter()
        app = cdk.App(outdir=outdir, context=context)
        build(app, count)
        app.synth()
        seconds = time.perf_counter() - started
        template: Json = json.loads((Path(outdir) / f"{STACK_NAME}.template.json").read_text())
        return seconds, template
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def _fits(count: int) -> tuple[bool, str]:
    from bench.iam import policy_fit

    fit = policy_fit(_synth(count, bundle=False)[1])
    return fit.fits, fit.describe()


def largest_fitting(high: int) -> Json:
    """The largest tunnel count in [1, high] whose handler role fits IAM's quotas, with the
    policy sizes there and one tunnel more (bisection: the policies grow with every tunnel)."""
    fits_one, _ = _fits(1)
    if not fits_one:
        return {"max_fit": 0}
    low, top = 1, high
    if _fits(high)[0]:
        low = high
    while low < top:
        middle = (low + top + 1) // 2
        if _fits(middle)[0]:
            low = middle
        else:
            top = middle - 1
    result: Json = {"max_fit": low, "at_max": _fits(low)[1]}
    if low < high:
        result["one_more"] = _fits(low + 1)[1]
    return result


def main(argv: list[str]) -> int:
    """Run the request in ``argv[1]``; write the result to ``argv[2]``."""
    request: Json = json.loads(Path(argv[1]).read_text())
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    started = time.perf_counter()
    import aws_cdk  # noqa: F401 - timed: starts jsii's Node process

    import_seconds = time.perf_counter() - started
    first_seconds, _ = _synth(1)
    counts: list[int] = request["counts"]
    timings: dict[str, list[float]] = {str(c): [] for c in counts}
    for round_index in range(int(request["rounds"])):
        order = counts if round_index % 2 == 0 else list(reversed(counts))
        for count in order:
            timings[str(count)].append(_synth(count)[0])
    result: Json = {
        "import_seconds": import_seconds,
        "first_synth_seconds": first_seconds,
        "timings": timings,
        "iam": largest_fitting(int(request["iam_search_max"])),
    }
    Path(argv[2]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
