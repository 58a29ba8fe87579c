"""What the reliability run counted: scenarios, tunnels left open, leaked tokens, load figures.

Tests record into the one :data:`LEDGER`; ``tests/reliability/conftest.py`` prints it as the
summary table at the end of the session and fails the session if a figure is off.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# Access tokens are long runs of URL-safe base64; shorter runs cannot contain one.
_TOKEN_ALPHABET_RUN = re.compile(r"[A-Za-z0-9_\-]{64,}")


@dataclass
class Ledger:
    """Counters of the whole session (thread-safe: the load matrix records from many threads)."""

    tried: Counter[str] = field(default_factory=Counter)
    passed: Counter[str] = field(default_factory=Counter)
    #: OPEN tunnels that CloudFormation would not reference, summed over every check.
    orphans: int = 0
    #: How many times the orphan check ran.
    orphan_checks: int = 0
    #: Token occurrences found by the per-test scans, and how many tests were scanned.
    leaks: int = 0
    scans: int = 0
    #: Every token the emulator issued during the session.
    tokens: set[str] = field(default_factory=set)
    #: Every text of the session to scan at the end: log lines, responses, reasons, output.
    texts: list[str] = field(default_factory=list)
    #: Figures of the load matrix, printed as they are.
    figures: dict[str, str] = field(default_factory=dict)
    #: (matrix, scenario, outcome) of each scenario, for the optional detailed report.
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def scenario(self, matrix: str) -> Iterator[None]:
        """Count one scenario of ``matrix``: tried on entry, passed if the block raises nothing."""
        with self._lock:
            self.tried[matrix] += 1
        yield
        with self._lock:
            self.passed[matrix] += 1

    def count_orphans(self, orphans: Iterable[str]) -> None:
        """Record one orphan check and what it found."""
        with self._lock:
            self.orphan_checks += 1
            self.orphans += len(list(orphans))

    def keep(self, tokens: Iterable[str], texts: Iterable[str]) -> None:
        """Keep tokens and texts for the session-wide scan."""
        with self._lock:
            self.tokens.update(tokens)
            self.texts.extend(texts)

    def add_leaks(self, count: int) -> None:
        """Record one per-test scan and the token occurrences it found."""
        with self._lock:
            self.scans += 1
            self.leaks += count


def count_token_hits(tokens: Iterable[str], texts: Iterable[str]) -> int:
    """How many times any of ``tokens`` occurs in ``texts`` (fast for thousands of tokens:
    only runs of the token alphabet can hold a token)."""
    wanted = {t for t in tokens if t}
    if not wanted:
        return 0
    sizes = sorted({len(t) for t in wanted})
    hits = 0
    for text in texts:
        for run in _TOKEN_ALPHABET_RUN.findall(text):
            hits += sum(
                1 for size in sizes for i in range(len(run) - size + 1) if run[i : i + size] in wanted
            )
    return hits


#: The ledger of this test session.
LEDGER = Ledger()
