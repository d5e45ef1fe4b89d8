"""The data-path nemeses' choices and records (against a fake cluster over real engine files),
the durability pass that tells periodic-mode losses from anomalies, and the campaign storage
settings. The real cluster runs in tests/e2e/test_datapath_campaigns.py."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import trio

from checkers.compose import check_all
from checkers.durability import reclassify
from harness.datapaths import node_storage, table_options, toml_lines
from harness.history import NEMESIS, Op
from harness.run import RunOptions
from nemesis import faults
from nemesis.storage import (
    CorruptNemesis,
    CrashNemesis,
    Damage,
    FlushCompactNemesis,
    RepairNemesis,
    apply_damage,
    candidate_files,
    choose_damage,
    verdict,
)
from node.storage import Cell, Mutation, StorageConfig, StorageEngine
from node.storage.errors import CommitLogCorrupt
from node.storage_admin import replay_summary
from nemesis_runs import start_then_stop
from storage_model import ManualClock


def _fill(path: Path) -> StorageEngine:
    e = StorageEngine(path, StorageConfig(), ManualClock())
    e.open()
    e.create_table("ks", "t")
    for i in range(50):
        e.apply("ks", "t", Mutation(b"k%03d" % i, [Cell("c", b"v%d" % i, i + 1)]))
    e.flush()
    for i in range(50, 60):
        e.apply("ks", "t", Mutation(b"k%03d" % i, [Cell("c", b"v%d" % i, i + 1)]))
    return e


class FakeDB:
    """Admin ops answered by real engines, one per node, in this process."""

    def __init__(self, root: Path, n: int = 3) -> None:
        self.root = root
        self.engines = {f"n{i}": _fill(root / f"n{i}") for i in range(1, n + 1)}
        self.calls: list[tuple[str, str]] = []
        self.killed: set[str] = set()

    def node_ids(self) -> list[str]:
        return sorted(self.engines)

    def storage_dir(self, nid: str) -> Path:
        return self.root / nid

    async def admin(self, nid: str, op: str, **fields: Any) -> dict[str, Any]:
        self.calls.append((op, nid))
        if nid in self.killed:
            raise ConnectionRefusedError(nid)
        e = self.engines[nid]
        if op == "flush":
            return {"flushed": e.flush()}
        if op == "compact":
            return {"compacted": [r for r in [e.compact("ks", "t", major=True)] if r]}
        if op == "storage":
            return {"tables": e.stats(), "corrupt": e.corrupt_sstables(),
                    "verify_corrupt": e.verify() if fields.get("verify") else None,
                    "replay": replay_summary(e), "commitlog_sync": "periodic"}
        if op == "repair":
            return {"ranges": 4, "differing_leaves": 1, "streamed_bytes": 10}
        if op == "scrub":
            moved = e.discard_corrupt("ks", "t")
            return {"quarantined": {"ks.t": moved} if moved else {}, "released": [],
                    "repair": {"ranges": 4, "streamed_bytes": 99}}
        raise AssertionError(op)

    async def kill(self, nid: str) -> None:
        self.killed.add(nid)  # the engine is abandoned, as SIGKILL abandons it

    async def restart(self, nid: str) -> None:
        e = StorageEngine(self.root / nid, StorageConfig(), ManualClock())
        try:
            e.open()
        except CommitLogCorrupt as exc:  # what LocalCluster says when ringnode exits 3 at start
            raise RuntimeError(f"node {nid} exited with code 3 during start; see its log: {exc}") from exc
        self.killed.discard(nid)
        self.engines[nid] = e

    async def pause(self, nid: str) -> None: ...

    async def resume(self, nid: str) -> None: ...


def test_flush_compact_flushes_then_compacts_the_same_nodes(tmp_path: Path) -> None:
    db = FakeDB(tmp_path)

    start, stop = start_then_stop(lambda: FlushCompactNemesis(db), 3)
    nodes = start.value["nodes"]
    assert nodes and set(nodes) <= set(db.node_ids()) and len(nodes) < 3
    for nid in nodes:
        assert start.value["result"][nid]["flushed"] == ["ks.t"]
        assert start.value["result"][nid]["sstables"] == 2  # the filler's flush and this one
        [c] = stop.value["result"][nid]["compacted"]
        assert sorted(c["inputs"]) == [1, 2] and c["bytes_out"] > 0
        assert stop.value["result"][nid]["sstables"] == 1
    assert stop.value["nodes"] == nodes
    assert "compact" in stop.value["summary"] and "2 SSTables" in stop.value["summary"]


def test_repair_and_crash_record_what_they_did(tmp_path: Path) -> None:
    db = FakeDB(tmp_path)

    async def main() -> tuple[Any, ...]:
        r = RepairNemesis(db)
        c = CrashNemesis(db, ["majority"])
        rep = await r.start(random.Random(1))
        crash = await c.start(random.Random(1))
        assert db.killed == set(crash.value["nodes"])
        restart = await c.stop()
        return rep, crash, restart

    rep, crash, restart = trio.run(main)
    assert rep.value["node"] in db.node_ids() and rep.value["result"]["ranges"] == 4
    assert crash.value["spec"] == "majority" and len(crash.value["nodes"]) == 2
    # The fake's engines use OS files: a kill there loses nothing, and the record says so.
    assert crash.value["lost_unsynced"] is False
    assert set(crash.value["unsynced_bytes"]) == set(crash.value["nodes"])
    assert not db.killed and restart.value["nodes"] == crash.value["nodes"]
    assert all(r["applied"] == 10 for r in restart.value["replay"].values())


def test_candidate_files_and_damage_choices(tmp_path: Path) -> None:
    _fill(tmp_path)
    files = candidate_files(tmp_path)
    kinds = {k for _, k, _ in files}
    assert kinds == {"sstable", "commitlog"}
    assert {Path(p).name.split("-", 1)[1] for p, k, _ in files if k == "sstable"} == {
        "Data.db", "Index.db", "Summary.db", "Filter.db", "Statistics.db", "Digest.crc32", "TOC.txt"}
    seen = {(d.kind, d.action) for d in (choose_damage(files, random.Random(s)) for s in range(40))}
    assert seen == {("sstable", "bitflip"), ("sstable", "truncate"), ("commitlog", "bitflip"), ("commitlog", "truncate")}
    for s in range(40):
        d = choose_damage(files, random.Random(s))
        assert 0 <= min(d.offsets) and (max(d.offsets) < d.size if d.action == "truncate" else max(d.offsets) < 8 * d.size)
    assert choose_damage(files, random.Random(7)) == choose_damage(files, random.Random(7))


def test_apply_damage_flips_exactly_the_bits_or_truncates(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"\x00" * 8)
    apply_damage(tmp_path, Damage("x", "sstable", 8, "bitflip", [0, 9, 63]))
    assert f.read_bytes() == b"\x01\x02" + b"\x00" * 5 + b"\x80"
    apply_damage(tmp_path, Damage("x", "sstable", 8, "truncate", [3]))
    assert f.read_bytes() == b"\x01\x02\x00"


def test_verdict_names_the_refusal() -> None:
    d = Damage("data/ks/t-1/2-Index.db", "sstable", 100, "bitflip", [5])
    status = {"corrupt": ["/x/data/ks/t-1/2-Index.db"], "replay": {"truncations": []}}
    assert verdict(d, status)["outcome"] == "refused"
    assert verdict(d, {"corrupt": ["/x/data/ks/t-1/3-Index.db"], "replay": {}})["outcome"] == "not detected"
    seg = Damage("commitlog/CommitLog-0000000000000002.log", "commitlog", 100, "truncate", [40])
    status = {"corrupt": [], "replay": {"truncations": [{"file": "/y/commitlog/CommitLog-0000000000000002.log",
                                                         "offset": 33, "problem": "torn record header"}]}}
    said = verdict(seg, status)
    assert said["outcome"] == "refused" and "byte 33" in said["said"]
    assert verdict(seg, None)["outcome"] == "no answer"


@pytest.mark.parametrize("seed", range(6))
def test_corrupt_damages_a_stopped_node_and_the_node_refuses_it(tmp_path: Path, seed: int) -> None:
    db = FakeDB(tmp_path)

    start, stop = start_then_stop(lambda: CorruptNemesis(db, modes=("stopped",)), seed)
    v = start.value
    nid = v["node"]
    assert ("flush", nid) in db.calls and not db.killed
    assert v["size"] > 0 and v["action"] in ("bitflip", "truncate") and v["offsets"]
    if v["outcome"] == "not detected":
        # Only a cut at a record boundary of a segment (or of a text file's last newline) looks clean.
        assert v["action"] == "truncate"
    else:
        assert v["outcome"] == "refused"
    if v["kind"] == "sstable" and v["outcome"] == "refused":
        assert stop.value["result"][nid]["quarantined"] == {"ks.t": v["verify_corrupt"] or v["corrupt_sstables"]}
        assert (tmp_path / nid / "corrupt" / "ks" / "t" / Path(v["file"]).name).exists()
        # Quarantined: the node serves again from what is left (the repair refills the rest).
        assert db.engines[nid].read("ks", "t", b"k055") is not None
    assert stop.value["nodes"] == [nid] and "scrub" in stop.value["summary"]


def test_a_node_refusing_to_start_on_a_damaged_segment_gets_it_moved_aside(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = FakeDB(tmp_path)
    nid = "n2"
    # The first record's checksum, with valid records after it: not a torn tail.
    seg = "commitlog/CommitLog-0000000000000001.log"
    monkeypatch.setattr("nemesis.storage.choose_damage",
                        lambda files, rng: Damage(seg, "commitlog", (tmp_path / nid / seg).stat().st_size, "bitflip",
                                                  [8 * 24 + 3]))
    monkeypatch.setattr(random.Random, "choice", lambda self, seq: nid if nid in seq else seq[0])

    start, stop = start_then_stop(lambda: CorruptNemesis(db, modes=("stopped",)), 0)
    v = start.value
    assert v["outcome"] == "refused" and "refused to start" in v["said"] and "corrupt at byte offset" in v["said"]
    assert v["moved_to"] == "corrupt/" + seg and (tmp_path / nid / "corrupt" / seg).exists()
    assert db.engines[nid].read("ks", "t", b"k005") is not None  # from its SSTable; repair refills the rest
    assert stop.value["result"][nid]["repair"]["ranges"] == 4


def test_corrupt_is_refused_without_the_nodes_files() -> None:
    class NoFiles:
        def node_ids(self) -> list[str]:
            return ["n1"]

    with pytest.raises(ValueError, match="local deployments only"):
        faults.build(["corrupt"], NoFiles(), None, ["one"])  # type: ignore[arg-type]
    opts = RunOptions(deploy="ssh", nodes="h1,h2,h3", nemesis="corrupt")
    with pytest.raises(ValueError, match="--deploy local"):
        opts.validate()


def test_nemesis_names_and_all() -> None:
    assert faults.parse_nemeses("flush-compact,repair,crash,corrupt") == ["flush-compact", "repair", "crash", "corrupt"]
    every = faults.parse_nemeses("all")
    assert {"flush-compact", "repair", "crash"} <= set(every) and "corrupt" not in every


def test_campaign_storage_settings() -> None:
    opts = RunOptions(nemesis="partition")
    assert node_storage(opts) == {"memtable_flush_threshold_kb": 4, "commitlog_segment_size_kb": 4,
                                  "commitlog_total_space_kb": 4}
    assert table_options(opts) == {"gc_grace_seconds": 10}
    crash = RunOptions(nemesis="kill,crash", memtable_flush_kb=0, gc_grace=0)
    assert node_storage(crash) == {"volatile_unsynced": True}
    assert toml_lines({"volatile_unsynced": True, "memtable_flush_threshold_kb": 4}) == [
        "volatile_unsynced = true", "memtable_flush_threshold_kb = 4"]
    for bad, msg in (({"memtable_flush_kb": -1}, "--memtable-flush-kb"), ({"gc_grace": -5}, "--gc-grace")):
        with pytest.raises(ValueError, match=msg):
            RunOptions(**bad).validate()  # type: ignore[arg-type]
    params = RunOptions(commitlog_sync="group").checker_params()
    assert params["commitlog_sync"] == "group" and params["commitlog_sync_period_ms"] == 10_000


# ---- the durability pass on hand-made histories

MS = 1_000_000  # history times are nanoseconds


def _history(crash_at_ms: int | None, lost_unsynced: bool = True) -> list[Op]:
    """Key 1 written (ts 1) and read; then write 2 acknowledged at 500 ms; a crash at
    ``crash_at_ms`` loses it; a read at 20 s still returns 1."""
    ops = [
        Op(0, 0, 0, "invoke", "write", 1, 1),
        Op(1, 100 * MS, 0, "ok", "write", 1, 1, timestamp=1),
        Op(2, 400 * MS, 0, "invoke", "write", 1, 2),
        Op(3, 500 * MS, 0, "ok", "write", 1, 2, timestamp=2),
    ]
    if crash_at_ms is not None:
        ops += [Op(4, crash_at_ms * MS, NEMESIS, "invoke", "start-crash", None, None),
                Op(5, crash_at_ms * MS + 1, NEMESIS, "info", "start-crash", None,
                   {"nodes": ["n1", "n2", "n3"], "unsynced_bytes": {"n1": 40}, "lost_unsynced": lost_unsynced},
                   extra={"action": "crash"})]
    ops += [Op(6, 20_000 * MS, 1, "invoke", "read", 1, None), Op(7, 20_100 * MS, 1, "ok", "read", 1, 1, timestamp=1)]
    return ops


PARAMS = {"model": "register", "replication_factor": 3, "read_cl": "QUORUM", "write_cl": "QUORUM",
          "commitlog_sync_period_ms": 10_000}


def test_a_loss_within_the_sync_period_is_allowed_in_periodic_mode() -> None:
    res = check_all(_history(crash_at_ms=3_000), {**PARAMS, "commitlog_sync": "periodic"})
    assert res.valid is True
    assert res.results["lww"].counts["lost-write"] == 0 and res.results["lww"].counts["periodic-lost-write"] == 1
    assert res.results["quorum"].counts["periodic-stale-read"] == 1
    assert res.results["linearizable"].counts["periodic-not-linearizable"] == 1
    d = res.results["durability"]
    assert d.counts["crashes"] == 1 and d.counts["unsynced_bytes_at_kill"] == 40 and d.counts["allowed_by_periodic"] >= 3
    assert res.results["lww"].details["allowed_by_periodic"][0]["kind"] == "lost-write"


@pytest.mark.parametrize("mode", ["batch", "group"])
def test_the_same_loss_is_an_anomaly_in_batch_and_group_mode(mode: str) -> None:
    res = check_all(_history(crash_at_ms=3_000), {**PARAMS, "commitlog_sync": mode})
    assert res.valid is False
    assert res.results["lww"].counts["lost-write"] == 1 and res.results["quorum"].counts["stale-read"] == 1
    assert res.results["durability"].counts["allowed_by_periodic"] == 0
    assert mode in res.results["durability"].details["note"]


@pytest.mark.parametrize("crash_at_ms, lost", [(None, True), (15_000, True), (3_000, False)])
def test_periodic_mode_allows_no_loss_without_a_crash_that_could_cause_it(crash_at_ms: int | None, lost: bool) -> None:
    # No crash; a crash more than a period (+ slack) after the write; a kill that kept its bytes.
    res = check_all(_history(crash_at_ms=crash_at_ms, lost_unsynced=lost), {**PARAMS, "commitlog_sync": "periodic"})
    assert res.valid is False
    assert res.results["lww"].counts["lost-write"] == 1


def test_a_non_loss_finding_stays_an_anomaly_in_periodic_mode() -> None:
    ops = _history(crash_at_ms=3_000)
    # A read of a value nobody wrote: no crash explains a phantom.
    ops += [Op(8, 21_000 * MS, 1, "invoke", "read", 1, None), Op(9, 21_100 * MS, 1, "ok", "read", 1, 99)]
    res = check_all(ops, {**PARAMS, "commitlog_sync": "periodic"})
    assert res.valid is False
    assert res.results["lww"].counts["phantom-read"] == 1 and res.results["lww"].valid is False


def test_reclassify_leaves_results_alone_without_crashes() -> None:
    results: dict[str, Any] = {}
    assert reclassify(results, lambda: iter(_history(None)), {"commitlog_sync": "periodic"}) == {}


def _lost_delete(mode: str) -> Any:
    """Key 1 written, then deleted (acknowledged at 500 ms); a crash at 3 s loses the tombstone;
    a read at 20 s returns the deleted value."""
    ops = [
        Op(0, 0, 0, "invoke", "write", 1, 1), Op(1, 100 * MS, 0, "ok", "write", 1, 1, timestamp=1),
        Op(2, 400 * MS, 0, "invoke", "delete", 1, None), Op(3, 500 * MS, 0, "ok", "delete", 1, None, timestamp=2),
        Op(4, 600 * MS, 1, "invoke", "read", 1, None), Op(5, 700 * MS, 1, "ok", "read", 1, None),
        Op(6, 3_000 * MS, NEMESIS, "invoke", "start-crash", None, None),
        Op(7, 3_000 * MS + 1, NEMESIS, "info", "start-crash", None,
           {"nodes": ["n1", "n2", "n3"], "unsynced_bytes": {"n1": 40}, "lost_unsynced": True}, extra={"action": "crash"}),
        Op(8, 20_000 * MS, 1, "invoke", "read", 1, None), Op(9, 20_100 * MS, 1, "ok", "read", 1, 1, timestamp=1),
    ]
    return check_all(ops, {**PARAMS, "commitlog_sync": mode})


def test_a_delete_lost_in_a_periodic_crash_is_an_allowed_resurrection() -> None:
    batch = _lost_delete("batch")
    assert batch.valid is False and batch.results["quorum"].counts["resurrection"] >= 1
    periodic = _lost_delete("periodic")
    assert periodic.results["quorum"].counts["resurrection"] == 0
    assert periodic.results["quorum"].counts["periodic-resurrection"] >= 1
    assert periodic.valid is True, {n: r.valid for n, r in periodic.results.items()}
