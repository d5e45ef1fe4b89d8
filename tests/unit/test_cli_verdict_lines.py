"""The console verdict lines `harness run` and `harness check` print."""

from __future__ import annotations


def test_console_counts_are_cut_between_counts_never_inside_a_number() -> None:
    from harness.cli import _clip_counts

    text = ", ".join(f"count_{i} {i * 1000}" for i in range(30))
    clipped = _clip_counts(text, 160)
    assert len(clipped) <= 160 and clipped.endswith(", …")
    kept = clipped[: -len(", …")].split(", ")
    assert kept == text.split(", ")[: len(kept)]
    assert _clip_counts("ops 3, ok 3", 160) == "ops 3, ok 3"


def test_a_valid_check_that_looked_at_nothing_says_not_judged_and_why(capsys) -> None:
    from types import SimpleNamespace
    from pathlib import Path

    from checkers.result import Result
    from harness.cli import print_verdict

    skipped = Result("restart", True, {"restart_judged": 0, "cells_before": 0},
                     [], {"reason": "the restart pass did not run: power-loss crashes"})
    judged = Result("lww", True, {"writes": 3}, [], {"reason": "ignored: it counted something"})
    print_verdict(SimpleNamespace(results={"restart": skipped, "lww": judged}, valid=True), Path("h.jsonl"), None)
    out = capsys.readouterr().out.splitlines()
    restart = next(line for line in out if line.strip().startswith("restart"))
    lww = next(line for line in out if line.strip().startswith("lww"))
    assert "not judged: the restart pass did not run: power-loss crashes" in restart
    assert "not judged" not in lww and "writes 3" in lww
