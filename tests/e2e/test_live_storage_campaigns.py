"""Storage faults under running nodes: an SSTable record damaged under a live node (the corrupt
nemesis's live mode) is found by the read of its key, the file quarantined and the table's reads
held while QUORUM reads are served by the other replicas, and a repair brings the data back; a
failing data disk (the disk nemesis's data disk) refuses flushes while the commit log keeps every
write, and the node flushes once it is healed. In both the unmodified store at QUORUM stays valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.test_datapath_campaigns import campaign, nemesis_ops


def _reads_in(history: list[dict[str, Any]], start: float, stop: float) -> list[dict[str, Any]]:
    return [o for o in history if o["process"] != "nemesis" and o["f"] == "read" and start <= o["time"] <= stop]


def _window(history: list[dict[str, Any]], name: str, start: dict[str, Any]) -> float:
    """When the window that ``start`` opened was closed: its stop step's invocation, or the
    campaign's final heal when the time limit came inside the window."""
    return next(o["time"] for o in history if o["process"] == "nemesis" and o["time"] > start["time"]
                and ((o["f"] == f"stop-{name}" and o["type"] == "invoke") or o["f"] == "heal"))


def test_a_record_damaged_under_a_running_node_is_quarantined_and_quorum_stays_right(tmp_path: Path) -> None:
    code, results, test, history, out = campaign(
        tmp_path, "--nemesis", "corrupt", "--corrupt-modes", "live", "--time-limit", "10", "--nemesis-interval", "2")
    assert code == 0, out
    assert results["valid"] is True and test["options"]["corrupt_modes"] == "live"
    starts = nemesis_ops(history, "start-corrupt")
    assert starts
    for s in starts:
        v = s["value"]
        assert v["mode"] == "live" and v["kind"] == "sstable" and v["file"].endswith("-Data.db"), v
        # The node's own read of the damaged record failed its checksum: the file is moved aside
        # and the table's reads held (or a compaction met it first: refused until the scrub).
        assert v["outcome"] in ("quarantined", "refused"), v
        # A client's read may meet the damage first: the nemesis's own read then finds the table
        # already held after that failed checksum.
        assert v["read_error"] is None or "corrupt SSTable" in v["read_error"] \
            or "after a failed checksum" in v["read_error"], v
    quarantined = [s for s in starts if s["value"]["outcome"] == "quarantined"]
    assert quarantined, starts
    for s in quarantined:
        assert s["value"]["held"], s  # the damaged table refuses reads until repaired
        # QUORUM reads went on while the damaged node refused the table's reads.
        stop = _window(history, "corrupt", s)
        assert any(o["type"] == "ok" for o in _reads_in(history, s["time"], stop)), s
    # The scrub's repair refilled each damaged node and served its reads again.
    for s in nemesis_ops(history, "stop-corrupt"):
        for r in s["value"]["result"].values():
            assert "error" not in r and r["repair"]["ranges"] > 0 and r["released"], s
    assert results["checkers"]["lww"]["counts"]["phantom-read"] == 0
    assert results["checkers"]["lww"]["counts"]["lost-write"] == 0
    assert "live bitflip" in (tmp_path / "latest" / "report.html").read_text()  # the timeline names the step


def test_a_failing_data_disk_keeps_every_write_and_the_node_flushes_once_healed(tmp_path: Path) -> None:
    code, results, test, history, out = campaign(
        tmp_path, "--nemesis", "disk", "--disks", "data", "--time-limit", "10", "--nemesis-interval", "2")
    assert code == 0, out
    assert results["valid"] is True and test["storage"]["node"]["disk_faults"] is True
    fails = nemesis_ops(history, "start-disk")
    heals = nemesis_ops(history, "stop-disk")
    assert fails and heals
    for f in fails:
        v = f["value"]
        assert v["disk"] == "data" and v["said"] == {**v["said"], "failing": v["disk_error"], "disk": "data"}
        # The failing disk refused the flush (named), and the node kept serving.
        assert "flush failed" in v["flush"]["error"] and "disk nemesis" in v["flush"]["error"], v
    for h in heals:
        for nid, r in h["value"]["result"].items():
            # What the refused flushes kept (memory and commit log) went to SSTables once healed,
            # without a restart.
            assert r["failed_calls"] >= 1 and r["kept_memtables"] >= 1, r
            assert r["flush"]["flushed"] and "error" not in r["flush"] and r["sstables"] >= 1, r
    victim = fails[0]["value"]["node"]
    node_log = "".join(p.read_text() for p in (tmp_path / "latest" / "nodes" / victim).glob("*.log"))
    assert "flush of" in node_log and "stays in memory and in the commit log" in node_log
    assert "data disk of" in (tmp_path / "latest" / "report.html").read_text()
