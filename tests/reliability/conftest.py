"""Fixtures of the reliability matrices, and the summary table printed at the end of the session.

The handler reaches both AWS stand-ins through fault-injecting proxies (``fault_proxy.py``) for
the whole package. Each test's tokens, log lines and responses are kept in the ledger; at the end
of the session every text of the run (log lines, captured output, responses, failure reports and
the summary itself) is scanned for every token the emulator issued. Any leak, any OPEN tunnel
that CloudFormation would not reference, or any failed scenario fails the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.ledger import LEDGER, count_token_hits
from tests.reliability.world import Proxies, World
from tests.rig.harness import Handler, Rig
from tests.rig.secrets_rotation import SecretsManagerRotation

MATRICES = (
    "faults",
    "responses",
    "timeouts",
    "duplicates",
    "bad input",
    "valid input",
    "load",
    "leaks",
    "iam",
)


@pytest.fixture(scope="package")
def proxies(rig_session: Rig, handler: Handler) -> Iterator[Proxies]:
    """Route the handler's AWS calls through the fault proxies for the tests of this package."""
    from secure_tunnel_handler import entrypoint

    pair = Proxies(
        tunnels=FaultProxy("iotsecuretunneling", rig_session.tunnels.endpoint_url).start(),
        secrets=FaultProxy("secretsmanager", rig_session.moto_url).start(),
    )
    routes = {
        "AWS_ENDPOINT_URL_IOTSECURETUNNELING": pair.tunnels.url,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": pair.secrets.url,
    }
    saved = {k: os.environ[k] for k in routes}
    os.environ.update(routes)
    # The handler caches its clients per process, as a warm Lambda environment does: a new
    # environment (here, a cleared cache) reads the new endpoints.
    entrypoint._clients.cache_clear()
    yield pair
    os.environ.update(saved)
    entrypoint._clients.cache_clear()
    pair.tunnels.stop()
    pair.secrets.stop()


@pytest.fixture
def world(
    rig: Rig,
    handler: Handler,
    proxies: Proxies,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    """A clean rig behind clean proxies, RotateSecret served as Secrets Manager does; afterwards,
    no token of any scenario of the test may appear in its logs, responses or rotation failures
    (the rig fixture checks only the last scenario's logs and responses)."""
    proxies.clear()
    rotation = SecretsManagerRotation(handler)
    rotation.install(monkeypatch)
    world = World(rig, handler, proxies, caplog, rotation)
    yield world
    proxies.clear()
    leaked = world.scan_for_leaks()
    assert leaked == 0, f"{leaked} token occurrence(s) leaked into logs or responses"


# --- the session summary -------------------------------------------------------------------------


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep every captured text of the package's tests for the session-wide token scan."""
    texts = [content for _, content in report.sections]
    if report.longrepr is not None:
        texts.append(report.longreprtext)
    LEDGER.keep((), texts)


def _summary_lines(whole_run_leaks: int | None) -> list[str]:
    rows = [(m, LEDGER.tried[m], LEDGER.passed[m]) for m in MATRICES if LEDGER.tried[m]]
    width = max([len("total"), *(len(m) for m, _, _ in rows)])
    lines = [f"{'matrix':<{width}}  {'scenarios':>9}  {'passed':>6}"]
    lines += [f"{m:<{width}}  {t:>9}  {p:>6}" for m, t, p in rows]
    lines.append(f"{'total':<{width}}  {sum(LEDGER.tried.values()):>9}  {sum(LEDGER.passed.values()):>6}")
    lines += [
        "",
        f"tunnels left open that CloudFormation does not reference: {LEDGER.orphans}"
        f" (over {LEDGER.orphan_checks} checks)",
        f"tokens issued by the emulator in these scenarios: {len(LEDGER.tokens)}",
        f"tokens leaked, per-test scans of logs and responses: {LEDGER.leaks} (over {LEDGER.scans} tests)",
    ]
    if whole_run_leaks is not None:
        lines.append(
            f"tokens leaked, whole run (logs, output, responses, reports, this summary): {whole_run_leaks}"
            f" (over {len(LEDGER.texts)} texts)"
        )
    lines += [f"{name}: {value}" for name, value in LEDGER.figures.items()]
    return lines


_SUMMARY = pytest.StashKey[list[str]]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Scan the whole run for tokens, build the summary, and fail the session if a figure is off."""
    if not LEDGER.tried:
        return
    leaks = count_token_hits(LEDGER.tokens, [*LEDGER.texts, *_summary_lines(None)])
    summary = _summary_lines(leaks)
    failed = sum(LEDGER.tried.values()) - sum(LEDGER.passed.values())
    if leaks or LEDGER.leaks or LEDGER.orphans or failed:
        summary.append(
            f"RELIABILITY CHECK FAILED: {failed} scenario(s) failed, {LEDGER.orphans} unreferenced open"
            f" tunnel(s), {max(leaks, LEDGER.leaks)} token leak(s)"
        )
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    session.config.stash[_SUMMARY] = summary
    _write_report(os.environ.get("RELIABILITY_REPORT"), summary)


def _write_report(path: str | None, summary: list[str]) -> None:
    """With RELIABILITY_REPORT=<file>, also write the summary and every scenario's outcome."""
    if not path:
        return
    lines = ["```", *summary, "```", "", "| matrix | scenario | outcome |", "|---|---|---|"]
    lines += [f"| {m} | {name} | {outcome.replace('|', '/')} |" for m, name, outcome in LEDGER.rows]
    with open(path, "w", encoding="utf-8") as report:
        report.write("\n".join(lines) + "\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Print the reliability summary table."""
    summary = config.stash.get(_SUMMARY, None)
    if summary is None:
        return
    terminalreporter.write_sep("=", "reliability summary")
    for line in summary:
        terminalreporter.write_line(line)
