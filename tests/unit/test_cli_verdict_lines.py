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
