"""``make bench``: measure, print the table, write docs/benchmarks.md.

Each figure is measured in this run beside its floor or peer, and given as a ratio, since absolute
times on a shared machine drift. Order: synthesis (it writes the Lambda asset the cold start then
loads), cold start, per event on the rig. The run ends with a scan of everything it printed or
wrote, the handler's logs and CloudFormation's responses, for every token the emulator issued.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from bench import cold_start, events, scale
from bench.iam import MANAGED_POLICIES_PER_ROLE, MANAGED_POLICY_LIMIT, MAX_RESOURCES, ROLE_INLINE_LIMIT
from bench.report import (
    REPO_ROOT,
    Figure,
    count_token_hits,
    kib,
    machine,
    markdown_tables,
    ms,
    text_table,
)
from tests.cdk_helpers import CDK_CLI

COUNTS = [1, 10, 50]
COLD_START_TARGET = 1.10
EVENT_TARGET = 1.20
SYNTH_TARGET = 2.0
ASSET_LIMIT_BYTES = 100_000
DELETE_LIMIT_SECONDS = 1.0
DOC = REPO_ROOT / "docs" / "benchmarks.md"

#: The page's analysis (why the handler makes each call beyond the floor, what would bring a
#: figure down) is written by hand between these markers; ``make bench`` keeps it as it is.
ANALYSIS_START = "<!-- analysis: written by hand; make bench keeps this section as it is -->"
ANALYSIS_END = "<!-- end of the hand-written analysis -->"


def kept_analysis(previous_page: str) -> str:
    """The hand-written analysis of the page being replaced, markers included."""
    start, end = previous_page.find(ANALYSIS_START), previous_page.find(ANALYSIS_END)
    if start == -1 or end < start:
        return f"{ANALYSIS_START}\n\n(Not written yet.)\n\n{ANALYSIS_END}"
    return previous_page[start : end + len(ANALYSIS_END)]


def _ratio(measured: float, peer: float) -> float:
    return measured / peer if peer else float("inf")


def cold_start_figures(cold: cold_start.ColdStart) -> list[Figure]:
    """Cold start rows."""
    group = f"Cold start (median of {cold.runs} fresh processes each)"
    floor = cold.timed("floor")
    peer = f"floor {ms(floor)} (import boto3 + 2 clients)"
    figures = []
    for name, label in (
        ("handler", "Handler: import entrypoint + _clients()"),
        ("handler_asset", "Handler from the synthesized asset, no .pyc (as in Lambda)"),
    ):
        if name in cold.results:
            value = cold.timed(name)
            ratio = _ratio(value, floor)
            figures.append(
                Figure(
                    group,
                    label,
                    ms(value),
                    peer,
                    ratio,
                    f"<= {COLD_START_TARGET:.2f}x",
                    ratio <= COLD_START_TARGET,
                )
            )
    polling_clients = cold.timed_apart("crhelper_default")
    figures.append(
        Figure(
            group,
            "crhelper default CfnResource() (lambda, events, logs clients)",
            f"+{ms(polling_clients)}",
            peer,
            _ratio(polling_clients, floor),
            "skipped by the handler",
            None,
        )
    )
    wall_floor, wall_handler = cold.wall("floor"), cold.wall("handler")
    figures.append(
        Figure(
            group,
            "Process wall time, handler (interpreter start included)",
            ms(wall_handler),
            f"floor process {ms(wall_floor)}",
            _ratio(wall_handler, wall_floor),
            "for the record",
            None,
        )
    )
    return figures


def event_figures(results: events.EventResults) -> list[Figure]:
    """Per-event rows and the Delete-vs-crhelper rows."""
    latency_ms = results.latency * 1000
    group = f"Per event ({latency_ms:.0f} ms per AWS call, median of {results.repetitions})"
    figures = []
    for label, stats in results.stats.items():
        if not stats.walls:
            continue
        value = results.wall(label)
        if not stats.floor_round_trips:
            figures.append(
                Figure(
                    group,
                    label,
                    ms(value),
                    "no AWS call: crhelper, HTTPS response",
                    None,
                    "for the record",
                    None,
                )
            )
            continue
        floor = stats.floor_round_trips * results.latency
        ratio = _ratio(value, floor)
        figures.append(
            Figure(
                group,
                label,
                ms(value),
                f"{stats.floor_round_trips} x {latency_ms:.0f} ms = {ms(floor)}",
                ratio,
                f"<= {EVENT_TARGET:.2f}x",
                ratio <= EVENT_TARGET,
            )
        )
    delete = results.wall(events.DELETE)
    default_sleep = sum(results.crhelper_default_sleeps)
    group = "Delete vs crhelper's default (sleep_on_delete=120, 300 s context)"
    figures.append(
        Figure(
            group,
            "Delete wall time (handler, emulator)",
            ms(delete),
            f"crhelper default: same + {default_sleep:.0f} s sleep requested (not slept)",
            _ratio(delete, delete + default_sleep),
            f"< {DELETE_LIMIT_SECONDS:.0f} s",
            delete < DELETE_LIMIT_SECONDS,
        )
    )
    handler_sleep = sum(results.handler_sleeps)
    figures.append(
        Figure(
            group,
            "Sleep the handler's crhelper requests on Delete",
            f"{handler_sleep:.0f} s ({len(results.handler_sleeps)} calls)",
            f"crhelper default: {default_sleep:.0f} s ({len(results.crhelper_default_sleeps)} call)",
            None,
            "0 s",
            handler_sleep == 0,
        )
    )
    return figures


def asset_figures(results: scale.ScaleResults) -> list[Figure]:
    """Lambda asset rows."""
    group = "Lambda asset (written by cdk synth)"
    zipped, unzipped, files = results.asset_zip
    synths = sum(results.asset_hashes.values())
    distinct = len(results.asset_hashes)
    first = results.asset_hashes.most_common(1)[0][0]
    return [
        Figure(
            group,
            "Zipped size (deflate -9)",
            f"{zipped:,} B ({kib(zipped)})",
            f"unzipped {unzipped:,} B, {files} files",
            None,
            f"< {ASSET_LIMIT_BYTES:,} B",
            zipped < ASSET_LIMIT_BYTES,
        ),
        Figure(
            group,
            f"Asset hash across {synths} cdk synths",
            f"{distinct} distinct ({first[:12]}...)",
            f"{synths} synths in separate processes",
            None,
            "1 (stable)",
            distinct == 1,
        ),
    ]


#: A measured value: seconds or bytes.
_Value = TypeVar("_Value", int, float)


def _against_one_tunnel(
    group: str,
    label: str,
    results: scale.ScaleResults,
    measure: Callable[[int], _Value],
    *,
    show: Callable[[_Value], str],
    target: str,
) -> list[Figure]:
    """One row per tunnel count above 1, each measured against the 1-tunnel stack."""
    base = measure(1)
    figures = []
    for count in results.counts[1:]:
        value = measure(count)
        figures.append(
            Figure(
                group,
                f"{label}, {count} tunnels",
                show(value),
                f"1 tunnel: {show(base)}",
                _ratio(value, base),
                target,
                None,
            )
        )
    return figures


def scale_figures(results: scale.ScaleResults) -> list[Figure]:
    """Scale rows."""
    group = "Scale: N SecureTunnels in one stack"
    base = results.seconds(1)
    figures = []
    for count in results.counts:
        value = results.seconds(count)
        is_target = count == max(results.counts)
        figures.append(
            Figure(
                group,
                f"cdk synth (CLI), {count} tunnel{'s' if count > 1 else ''}",
                f"{value:.2f} s",
                f"1 tunnel: {base:.2f} s",
                _ratio(value, base),
                f"<= {SYNTH_TARGET:.2f}x" if is_target else "",
                _ratio(value, base) <= SYNTH_TARGET if is_target else None,
            )
        )
    figures += _against_one_tunnel(
        group,
        "In-process synth (jsii started)",
        results,
        results.in_process,
        show=lambda seconds: f"{seconds:.2f} s",
        target="for the record",
    )
    figures += _against_one_tunnel(
        group, "Template size", results, results.template_bytes, show=kib, target=""
    )
    biggest = max(results.counts)
    functions = results.functions(biggest)
    figures.append(
        Figure(
            group,
            f"Lambda functions, {biggest} tunnels",
            str(functions),
            "",
            None,
            "exactly 1",
            functions == 1,
        )
    )
    limit = results.limit
    model = limit.model
    figures.append(
        Figure(
            group,
            f"Tunnels per stack, {MAX_RESOURCES}-resource limit",
            f"{limit.verified} (verified: {limit.resources_at_verified} resources)",
            f"computed {limit.computed} = ({MAX_RESOURCES} - {model.fixed} fixed"
            f" - {limit.overflow_used} overflow policies) // {model.per_tunnel} per tunnel",
            None,
            "",
            None,
        )
    )
    iam_max = int(results.worker["iam"]["max_fit"])
    figures.append(
        Figure(
            group,
            "Tunnels per stack, IAM policy quotas",
            str(iam_max),
            f"{MAX_RESOURCES}-resource limit: {limit.verified}",
            None,
            f">= {biggest} (the {biggest}-tunnel stack deploys)",
            iam_max >= biggest,
        )
    )
    return figures


def calls_table(results: events.EventResults, markdown: bool) -> str:
    """AWS calls per event, the round trips they cost and the direct floor."""
    headers = (
        "Event",
        "AWS calls per event (handler)",
        "Unavoidable",
        "Wall / latency",
        "Direct floor",
        "Handler / direct",
    )
    rows = []
    for label, stats in results.stats.items():
        if not stats.walls:
            continue
        calls = events.describe_calls(stats.typical_calls) + (" (varied)" if stats.calls_vary else "")
        wall, direct = results.wall(label), results.direct(label)
        rows.append(
            (
                label,
                calls,
                events.describe_calls(stats.floor_calls) if stats.floor_calls else "none",
                f"{wall / results.latency:.1f} round trips",
                ms(direct) if direct is not None else "-",
                f"{_ratio(wall, direct):.2f}x" if direct is not None else "-",
            )
        )
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def event_misses(results: events.EventResults) -> list[str]:
    """For every event over its target: its ratio and the calls beyond the floor (the analysis
    section says why the handler makes them)."""
    notes: list[str] = []
    for label, stats in results.stats.items():
        if not stats.walls or not stats.floor_round_trips:
            continue
        ratio = results.wall(label) / (stats.floor_round_trips * results.latency)
        if ratio <= EVENT_TARGET:
            continue
        beyond = stats.typical_calls - stats.floor_calls
        notes.append(
            f"- **{label}: {ratio:.2f}x** ({results.wall(label) / results.latency:.1f} latencies where"
            f" {stats.floor_round_trips} {'is' if stats.floor_round_trips == 1 else 'are'} unavoidable);"
            " calls beyond the floor: " + ", ".join(f"`{op}` x{n}" for op, n in sorted(beyond.items())) + "."
        )
    return notes


def other_misses(
    figures: Sequence[Figure], results: scale.ScaleResults, breakdown: list[tuple[str, int]]
) -> list[str]:
    """Notes for the misses outside the per-event group."""
    notes = []
    cold = [f for f in figures if f.met is False and f.group.startswith("Cold start")]
    if cold:
        own = sum(us for _, us in breakdown)
        top = ", ".join(f"`{m}` {us / 1000:.1f} ms" for m, us in breakdown[:5])
        missed = "; ".join(f"**{f.name}: {f.ratio_text}**" for f in cold)
        notes.append(
            f"- {missed}. The handler's own modules and crhelper take {own / 1000:.1f} ms of import time"
            f" ({top}); the rest is the floor's. The spread between runs on this machine is of the"
            " same order (see the details and the analysis), so a miss by a few percent is within"
            " noise."
        )
    for figure in figures:
        if figure.met is not False or figure.group.startswith(("Per event", "Cold start")):
            continue
        if figure.name.startswith("Tunnels per stack, IAM"):
            biggest = max(results.counts)
            fit = results.policy_fits[biggest]
            iam = results.worker["iam"]
            notes.append(
                f"- **{figure.name}: {figure.measured}**, fewer than the {biggest} of the scale figures."
                " The handler role's policy lists every tunnel's two secret ARNs (and its thing ARN"
                " twice). CDK moves statements that do not fit the role's inline policy into"
                " `OverflowPolicyN` managed policies, but it never splits a statement and it estimates"
                " the ARNs it cannot resolve, so the template synthesizes and IAM refuses it at deploy."
                f" At {biggest} tunnels: {fit.describe()}. IAM counts characters without white space:"
                f" {ROLE_INLINE_LIMIT:,} for a role's inline policies, {MANAGED_POLICY_LIMIT:,} per managed"
                f" policy, {MANAGED_POLICIES_PER_ROLE} managed policies per role by default. At"
                f" {figure.measured} tunnels: {iam.get('at_max', '')}; one more: {iam.get('one_more', '')}."
            )
        else:
            notes.append(f"- **{figure.name}: {figure.measured}** against {figure.target}.")
    return notes


def render_markdown(
    *,
    date: str,
    command: str,
    seconds: float,
    machine_lines: Sequence[str],
    figures: Sequence[Figure],
    event_results: events.EventResults,
    scale_results: scale.ScaleResults,
    cold: cold_start.ColdStart,
    breakdown: list[tuple[str, int]],
    event_notes: Sequence[str],
    other_notes: Sequence[str],
    tokens_line: str,
) -> str:
    """docs/benchmarks.md."""
    limit = scale_results.limit
    model = limit.model
    per = ", ".join(f"{k} x{v}" for k, v in sorted(model.per_tunnel_types.items()))
    fixed = ", ".join(f"{k} x{v}" for k, v in sorted(model.fixed_types.items()))
    fits = "\n".join(
        f"  - {count} tunnel{'s' if count > 1 else ''}: {fit.describe()}:"
        f" {'fits' if fit.fits else 'does NOT fit'}"
        for count, fit in sorted(scale_results.policy_fits.items())
    )
    worker = scale_results.worker
    fixed_cost = event_results.wall(events.NO_CALL)
    own = ", ".join(f"`{m}` {us / 1000:.1f} ms" for m, us in breakdown)
    latency_ms = event_results.latency * 1000
    sections = [
        "# Benchmarks",
        "",
        "Generated by `make bench`; do not edit by hand, except the analysis section (between its"
        " markers), which `make bench` keeps as it is.",
        "",
        f"- Reproduce: `{command}` (from the repository root; it sets up the virtual environment and the "
        "pinned CDK CLI first). Not part of `make test`. No network, no AWS, no Docker.",
        f"- Date: {date}. The run took {seconds:.0f} s.",
        f"- Machine: {machine_lines[0]}.",
        *(f"- {line}." for line in machine_lines[1:]),
        "- Every figure below is measured in this run beside its floor or peer, and given as a ratio:"
        " absolute times on a shared machine drift, ratios much less.",
        "",
        "## Results",
        "",
        markdown_tables(figures),
        "",
        f"## AWS calls per event ({latency_ms:.0f} ms injected per call)",
        "",
        "Counted at the stand-ins (the emulator's `calls`, the Secrets Manager proxy's record); the"
        " response PUT to CloudFormation is not an AWS API call and is not counted, but its time is in"
        ' the wall time. "Wall / latency" is the number of sequential round trips the event costs;'
        " the direct floor makes only the unavoidable calls with plain boto3 against the same"
        " stand-ins, in the same run, so it includes the stand-ins' and boto3's own time."
        f" The fraction beyond whole round trips is mostly the handler's fixed cost per event (crhelper,"
        f" the event's thread pool, the HTTPS response to CloudFormation): {ms(fixed_cost)} with no AWS"
        f" call at all, {fixed_cost / event_results.latency:.1f} latencies.",
        "",
        calls_table(event_results, markdown=True),
        "",
        "## Targets missed (why: see the analysis below)",
        "",
        *(event_notes or []),
        "",
        *(other_notes or []),
        *([] if event_notes or other_notes else ["None."]),
        "",
        "## Analysis",
        "",
        kept_analysis(DOC.read_text() if DOC.exists() else ""),
        "",
        "## Details",
        "",
        "### Cold start",
        "",
        "Fresh `python -c` processes, the variants alternating in a rotating order after one unmeasured"
        " run each; the time is taken inside the process from just before the first import to just"
        " after the clients exist (the interpreter's own start is the same for every variant and is in"
        " the wall-time row instead). Region and dummy credentials come from the environment"
        " (`AWS_REGION`, `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`...), shared config files are"
        " `/dev/null`.",
        "",
        "- Floor: `import boto3`, `boto3.session.Session()`, clients `iotsecuretunneling` and"
        " `secretsmanager`.",
        "- Handler: `from secure_tunnel_handler import entrypoint; entrypoint._clients()` (crhelper's"
        " `CfnResource` is built at import, without its polling clients).",
        "- From the asset: the same with the folder `cdk synth` wrote first on `PYTHONPATH` and"
        " `PYTHONDONTWRITEBYTECODE=1`: the handler and crhelper are compiled at every start, as in"
        " Lambda (the asset ships no byte code); boto3 is precompiled, as in the Lambda runtime.",
        "- crhelper default: `CfnResource()` with every default, timed on its own after the floor: the"
        " three clients (lambda, events, logs) it creates for its polling mode, which the handler does"
        " not use.",
        f"- The handler's own modules and crhelper (`python -X importtime`, self time): {own or 'n/a'}.",
        "- Spread of the timed part (median, min-max; CPU time median):",
        "",
        *(
            f"  - {name}: {ms(cold.timed(name))}, {ms(min(runs.timed))}-{ms(max(runs.timed))};"
            f" CPU {ms(cold.cpu(name))}"
            for name, runs in cold.results.items()
        ),
        "",
        "### Per event",
        "",
        f"The handler runs in process against `tests/rig`: the IoT Secure Tunneling emulator with"
        f" `latency({event_results.latency})`, and moto's Secrets Manager behind"
        f" `tests/reliability/fault_proxy.FaultProxy` with a {latency_ms:.0f} ms delay on every Secrets"
        " Manager operation. CloudFormation's side is the rig's HTTPS receiver. `LOG_LEVEL=INFO`, as"
        " the construct deploys it; a 300 s Lambda context. One unmeasured warm-up round (the first"
        f" event creates the clients), then {event_results.repetitions} round(s) of three sequences,"
        " each on a reset rig: Create, Update in place (RotationTrigger), Delete, Delete of a physical"
        " id that names no tunnel (what a failed Create leaves: no AWS call); Create, Update that"
        " replaces (Description), Delete of the old tunnel, Delete of the new one (stack deletion);"
        f" Create with {events.OTHER_OPEN_TUNNELS} other OPEN tunnels to the same thing (opened by"
        " someone else). Each event's direct floor runs right after it.",
        "",
        "Delete vs crhelper: crhelper's `CfnResource._wait_for_cwlogs(sleep=...)` is called with a"
        " recording sleep function on a default `CfnResource()` and on the handler's own, with a"
        " 300 s context: what they would sleep is recorded, nothing is slept.",
        "",
        "### Synthesis and scale",
        "",
        "`cdk synth` is the pinned CDK CLI on `bench/scale_app.py` (N `SecureTunnel`s to"
        " distinct things given by name, cdk.json's feature flags, local bundling, no cdk-nag), run"
        f" {len(next(iter(scale_results.synths.values())))} time(s) per N in alternating order; the median"
        " is shown. Its time includes the CLI, Python and jsii starting, which is what a user waits"
        " for. The in-process rows synthesize the same stack in one Python process after jsii has"
        f" started (import {worker['import_seconds']:.2f} s,"
        f" first synth {worker['first_synth_seconds']:.2f} s):"
        " they show the part that grows with N.",
        "",
        f"- Resources per tunnel: {model.per_tunnel} ({per}). Fixed: {model.fixed} ({fixed}), plus CDK's"
        " `OverflowPolicyN` managed policies, which appear in steps as the role's policy grows"
        f" ({limit.overflow_used} at {max(scale_results.counts)} tunnels, {limit.overflow_at_verified} at"
        f" {limit.verified}). `AWS::CDK::Metadata` is counted: it is in the template.",
        f"- Computed: ({MAX_RESOURCES} - {model.fixed} - {limit.overflow_used}) // {model.per_tunnel} ="
        f" {limit.computed} tunnels. Verified with `cdk synth`: {limit.verified} tunnels give"
        f" {limit.resources_at_verified} resources; {limit.one_more}.",
        "- IAM policy sizes, resolved as IAM receives them (ARNs with realistic generated names in"
        " us-east-1; white space not counted):",
        fits,
        f"- Largest tunnel count whose policies fit IAM's quotas (bisection on in-process synths):"
        f" {worker['iam']['max_fit']}.",
        "",
        "### Token scan",
        "",
        tokens_line,
        "",
    ]
    return "\n".join(sections)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every benchmark; print the table; write docs/benchmarks.md. 1 if a token leaked."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--cold-runs", type=int, default=30, help="fresh processes per cold start variant")
    parser.add_argument("--event-rounds", type=int, default=5, help="rounds of the per-event sequences")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="latency injected per AWS call")
    parser.add_argument("--synth-rounds", type=int, default=2, help="cdk synth runs per tunnel count")
    parser.add_argument("--output", type=Path, default=DOC, help="markdown file to write")
    args = parser.parse_args(argv)

    started = time.monotonic()
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    progress: list[str] = []

    def say(message: str) -> None:
        progress.append(message)
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        say(f"[1/3] cdk synth of 1, 10, 50 tunnels ({args.synth_rounds} rounds), limits, asset...")
        scale_results = scale.measure(Path(workdir), COUNTS, args.synth_rounds)
        say(f"[2/3] cold start: {args.cold_runs} fresh processes per variant...")
        cold = cold_start.measure(args.cold_runs, scale_results.asset_dir)
        breakdown = cold_start.import_breakdown(scale_results.asset_dir)
    say(f"[3/3] per event on the rig, {args.latency_ms:.0f} ms per AWS call, {args.event_rounds} rounds...")
    event_results = events.measure(args.latency_ms / 1000, args.event_rounds)
    seconds = time.monotonic() - started

    figures = [
        *cold_start_figures(cold),
        *event_figures(event_results),
        *asset_figures(scale_results),
        *scale_figures(scale_results),
    ]
    event_notes = event_misses(event_results)
    other_notes = other_misses(figures, scale_results, breakdown)
    machine_lines = machine(CDK_CLI)
    printed = "\n".join(
        [
            "",
            f"make bench - {date} - {machine_lines[0]}",
            "",
            text_table(figures),
            "",
            f"AWS calls per event ({args.latency_ms:.0f} ms per call):",
            calls_table(event_results, markdown=False),
            "",
            f"Targets missed: {sum(1 for f in figures if f.met is False)} (reasons in {_shown(args.output)})",
        ]
    )

    def document(tokens_line: str) -> str:
        return render_markdown(
            date=date,
            command="make bench",
            seconds=seconds,
            machine_lines=machine_lines,
            figures=figures,
            event_results=event_results,
            scale_results=scale_results,
            cold=cold,
            breakdown=breakdown,
            event_notes=event_notes,
            other_notes=other_notes,
            tokens_line=tokens_line,
        )

    texts = [printed, document(""), *progress, *event_results.texts]
    hits = count_token_hits(event_results.tokens, texts)
    tokens_line = (
        f"Tokens issued by the emulator during the run: {len(set(event_results.tokens))};"
        f" found in the printed output, this file, the handler's logs and CloudFormation's responses: {hits}."
    )
    print(printed)
    print(tokens_line)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(document(tokens_line))
    print(f"Wrote {_shown(args.output)}")
    return 1 if hits else 0


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
