"""The benchmark page (docs/benchmarks.md): `make bench` rewrites its figures and keeps the
analysis written by hand between its markers."""

from __future__ import annotations

from bench.run import ANALYSIS_END, ANALYSIS_START, DOC, kept_analysis


def test_the_hand_written_analysis_is_kept_with_its_markers() -> None:
    page = (
        f"# Benchmarks\n\nold figures\n\n{ANALYSIS_START}\n\nWhy: by hand.\n\n{ANALYSIS_END}\n\n## Details\n"
    )
    kept = kept_analysis(page)
    assert kept == f"{ANALYSIS_START}\n\nWhy: by hand.\n\n{ANALYSIS_END}"


def test_a_page_without_an_analysis_gets_an_empty_one_to_write() -> None:
    for page in ("", f"{ANALYSIS_END} before {ANALYSIS_START}"):
        kept = kept_analysis(page)
        assert kept.startswith(ANALYSIS_START)
        assert kept.endswith(ANALYSIS_END)
        assert "Not written yet" in kept


def test_the_committed_page_has_one_analysis_with_its_markers() -> None:
    page = DOC.read_text()
    assert page.count(ANALYSIS_START) == page.count(ANALYSIS_END) == 1
    assert "### Why the handler makes the calls beyond the floor" in kept_analysis(page)
