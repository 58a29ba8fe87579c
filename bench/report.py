"""Figures, the printed table and the markdown of docs/benchmarks.md."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Figure:
    """One measured figure beside its floor or peer.

    ``ratio`` is measured / peer when both are numbers; ``met`` is None where no target applies.
    """

    group: str
    name: str
    measured: str
    peer: str
    ratio: float | None
    target: str
    met: bool | None
    note: str = ""

    @property
    def ratio_text(self) -> str:
        """The ratio as printed (``1.07x``), or a dash."""
        if self.ratio is None:
            return "-"
        return f"{self.ratio:.2f}x" if self.ratio >= 0.01 else f"{self.ratio:.4f}x"

    @property
    def verdict(self) -> str:
        """``met``, ``MISSED`` or blank."""
        if self.met is None:
            return ""
        return "met" if self.met else "MISSED"


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return float(statistics.median(values))


def ms(seconds: float) -> str:
    """Seconds as milliseconds, e.g. ``123.4 ms``."""
    return f"{seconds * 1000:.1f} ms"


def kib(size: int) -> str:
    """Bytes as KiB, e.g. ``41.2 KB``."""
    return f"{size / 1024:.1f} KB"


HEADERS = ("Figure", "Measured", "Floor / peer", "Ratio", "Target", "")


def _rows(figures: Iterable[Figure]) -> list[tuple[str, ...]]:
    return [(f.name, f.measured, f.peer, f.ratio_text, f.target, f.verdict) for f in figures]


def text_table(figures: Sequence[Figure]) -> str:
    """The table as printed by ``make bench``: one block per group."""
    rows = _rows(figures)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(HEADERS), line(["-" * w for w in widths])]
    group = None
    for figure, row in zip(figures, rows, strict=True):
        if figure.group != group:
            group = figure.group
            out.append(f"[{group}]")
        out.append(line(row))
    return "\n".join(out)


def markdown_tables(figures: Sequence[Figure]) -> str:
    """The same figures in markdown: one table per group, under its own heading."""
    out: list[str] = []
    group = None
    for figure, row in zip(figures, _rows(figures), strict=True):
        if figure.group != group:
            group = figure.group
            out += ["", f"### {group}", "", "| " + " | ".join(h or "Verdict" for h in HEADERS) + " |"]
            out.append("|" + "---|" * len(HEADERS))
        out.append("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
    return "\n".join(out).strip("\n")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _tool_version(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return "not found"
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else "unknown"


def machine(cdk_cli: Path) -> list[str]:
    """What the figures were measured on."""
    return [
        f"{os.cpu_count()} cores ({_cpu_model()}), {platform.system()} {platform.release()}",
        f"Python {platform.python_version()}; boto3 {_version('boto3')}, botocore {_version('botocore')}, "
        f"crhelper {_version('crhelper')}, moto {_version('moto')}",
        f"aws-cdk-lib {_version('aws-cdk-lib')}; CDK CLI {_tool_version([str(cdk_cli), '--version'])}; "
        f"Node {_tool_version(['node', '--version'])}",
    ]


def count_token_hits(tokens: Iterable[str], texts: Iterable[str]) -> int:
    """How many (token, text) pairs have the token in the text."""
    haystacks = list(texts)
    return sum(1 for token in set(tokens) if token for text in haystacks if token in text)
