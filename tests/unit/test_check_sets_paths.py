"""The set checker's short paths (elements first shown many at a time, elements stable in the
last read) give the findings, their order and the latencies of the element-at-a-time ones."""

from __future__ import annotations

from pathlib import Path

from checkers import sets
from checkers.synth import HistoryBuilder
from harness.history import HistoryFile, write_jsonl


def _both(b: HistoryBuilder, tmp_path: Path, params: dict | None = None) -> dict:
    """The result of a list of Ops, checked equal to that of the same history read from a file."""
    path = tmp_path / "h.jsonl"
    write_jsonl(b.ops, path)
    r = sets.check(b.ops, dict(params or {})).to_json()
    assert sets.check(HistoryFile(path), dict(params or {})).to_json() == r
    return r


def test_unexpected_elements_in_the_order_the_reads_show_them(tmp_path: Path) -> None:
    b = HistoryBuilder()
    b.invoke(0, "add", 1).ok(0)
    # Never added: 907, 3, 55 in this read (a set of them iterates 3, 55, 907), then 41 and 2.
    b.invoke(1, "read").ok(1, [907, 1, 3, 55])
    b.invoke(1, "read").ok(1, [41, 1, 907, 3, 55, 2])
    r = _both(b, tmp_path, {"max_examples": 10})
    found = [a["explanation"].split("returned ")[1].split(",")[0] for a in r["anomalies"] if a["kind"] == "unexpected"]
    assert found == ["907", "3", "55", "41", "2"]
    assert r["counts"]["unexpected"] == 5 and r["counts"]["stable"] == 1


def test_a_vanished_element_seen_again_takes_the_element_at_a_time_path(tmp_path: Path) -> None:
    b = HistoryBuilder()
    b.invoke(0, "add", 1).ok(0)
    b.invoke(0, "add", 2).ok(0)
    b.invoke(1, "read").ok(1, [1, 2])
    b.invoke(1, "read").ok(1, [2])  # 1 vanished
    b.invoke(0, "add", 3).ok(0)
    b.invoke(1, "read").ok(1, [3, 1, 2])  # 1 is back (reappeared) along with the new 3
    b.invoke(1, "read").ok(1, [1, 3])  # 2 lost: absent from every read after its last presence
    r = _both(b, tmp_path, {"set_linearizable": True, "max_examples": 10})
    c = r["counts"]
    assert (c["stable"], c["reappeared"], c["lost"], c["stale"], c["unexpected"]) == (2, 1, 1, 0, 0)
    assert [a["kind"] for a in r["anomalies"]] == ["reappeared", "lost"]
    assert r["valid"] is False


def test_stale_and_lost_unread_elements_and_a_duplicate_listing(tmp_path: Path) -> None:
    b = HistoryBuilder()
    b.invoke(0, "add", 1).ok(0)
    b.invoke(1, "read").ok(1, [])  # began after 1 was acknowledged: stale
    b.invoke(0, "add", 2).ok(0)  # acknowledged, never shown though reads followed: lost
    b.invoke(1, "read").ok(1, [1, 1])  # 1 listed twice
    b.invoke(0, "add", 4).info(0)  # indeterminate, never shown: fine
    b.invoke(1, "read").ok(1, [1])
    r = _both(b, tmp_path, {"max_examples": 10})
    c = r["counts"]
    assert (c["stable"], c["stale"], c["lost"], c["never-read"], c["indeterminate"]) == (1, 1, 1, 1, 1)
    assert [a["kind"] for a in r["anomalies"]] == ["stale", "lost"]


def test_latency_is_clipped_at_zero_and_a_last_read_done_before_it_began_loses(tmp_path: Path) -> None:
    b = HistoryBuilder()
    b.invoke(1, "read", t=1_000)
    b.invoke(0, "add", 1, t=2_000).ok(0, t=3_000)
    b.ok(1, [1], t=4_000)  # shows 1 before its add was invoked: latency below 0, reported as 0
    r = _both(b, tmp_path)
    assert r["counts"]["stable"] == 1
    assert set(r["details"]["stable_latency_ms"].values()) == {0.0}
    # A final read whose completion precedes its invocation: what it shows is not stable.
    b = HistoryBuilder()
    b.invoke(0, "add", 1, t=1_000).ok(0, t=2_000)
    b.invoke(1, "read", t=3_000).ok(1, [1], t=5_000)
    b.invoke(1, "read", t=9_000).ok(1, [1], t=8_000)
    r = _both(b, tmp_path)
    assert r["counts"]["lost"] == 1 and r["counts"]["stable"] == 0
