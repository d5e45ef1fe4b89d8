"""Set-full outcomes, performance and availability per fault window, and the composed result."""

from __future__ import annotations

import json
from pathlib import Path

from checkers import perf, sets
from checkers.compose import check_all
from checkers.synth import HistoryBuilder, generate
from harness.history import write_jsonl


def test_set_full_outcomes() -> None:
    b = HistoryBuilder()
    b.invoke(0, "add", 1).ok(0)  # stable
    b.invoke(0, "add", 2).ok(0)  # seen, then lost
    b.invoke(0, "add", 3).info(0)  # indeterminate, never seen: fine
    b.invoke(1, "read").ok(1, [1, 2])
    b.invoke(0, "add", 4).ok(0)  # acknowledged, absent from the next read (stale), then stable
    b.invoke(1, "read").ok(1, [1, 99])  # 99 was never added
    b.invoke(1, "read").ok(1, [1, 4])
    b.invoke(1, "read").ok(1, [1, 4])
    b.invoke(0, "add", 5).ok(0)  # no read after it: never-read
    r = sets.check(b.ops)
    c = r.counts
    assert (c["stable"], c["lost"], c["never-read"], c["stale"], c["unexpected"]) == (2, 1, 2, 1, 1)
    assert c["acknowledged"] == 4 and c["indeterminate"] == 1
    assert r.valid is False
    lost = next(a for a in r.anomalies if a.kind == "lost")
    assert "element 2" in lost.explanation and lost.ops[0].index == 2
    assert r.details["stable_latency_ms"]["1.0"] > 0


def test_reappeared_element_and_strict_mode() -> None:
    b = HistoryBuilder()
    b.invoke(0, "add", 1).ok(0)
    b.invoke(1, "read").ok(1, [1])
    b.invoke(1, "read").ok(1, [])
    b.invoke(1, "read").ok(1, [1])
    r = sets.check(b.ops)
    assert r.counts["reappeared"] == 1 and r.counts["stable"] == 1 and r.valid is True
    assert sets.check(b.ops, {"set_linearizable": True}).valid is False


def test_generated_set_histories_lose_nothing() -> None:
    ops = generate("set", n_ops=3_000, clients=10, keys=3, seed=5, info_rate=0.1)
    r = sets.check(ops)
    assert r.valid is True and r.counts["lost"] == 0 and r.counts["stale"] == 0
    assert r.counts["stable"] > 1_000


def test_perf_latency_and_availability_inside_and_outside_fault_windows() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1, t=0).ok(0, t=2_000_000)  # 2 ms
    b.nemesis("start-partition", "majority", t=3_000_000)
    b.invoke(0, "write", 2, t=4_000_000).info(0, t=9_000_000)
    b.invoke(1, "read", t=4_500_000).fail(1, t=5_000_000)
    b.invoke(1, "read", t=5_500_000).ok(1, 1, t=6_000_000)
    b.nemesis("stop-partition", t=10_000_000)
    b.invoke(2, "read", t=11_000_000).ok(2, 1, t=12_000_000)
    b.nemesis("kill", "n1", t=13_000_000)  # never restarted: open until the end
    b.invoke(2, "read", t=14_000_000).fail(2, t=15_000_000)
    r = perf.check(b.ops)
    a = r.details["availability"]
    assert a["inside"]["partition"] == {"ok": 1, "total": 3, "availability": 0.3333}
    assert a["inside"]["kill"]["total"] == 1 and a["inside"]["kill"]["ok"] == 0
    assert a["outside"] == {"ok": 2, "total": 2, "availability": 1.0}
    assert r.details["latency_ms"]["write:ok"]["0.5"] == 2.0
    assert sum(s["ok"] for s in r.details["throughput"]["series"]) == 3
    assert r.valid is True


def test_check_all_composes_and_saves(tmp_path: Path) -> None:
    ops = generate("register", n_ops=500, clients=5, keys=2, seed=1, nemesis_every=100)
    path = tmp_path / "history.jsonl"
    write_jsonl(ops, path)
    res = check_all(path, {"model": "register", "replication_factor": 3, "read_cl": "QUORUM",
                           "write_cl": "QUORUM"}, save_to=tmp_path / "results.json")
    assert res.valid is True and res.exit_code() == 0
    assert set(res.results) == {"linearizable", "lww", "quorum", "perf"}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["valid"] is True and saved["summary"]["quorum"] is True
    # A stale read makes the overall verdict invalid; the linearizability and quorum checkers agree.
    b = HistoryBuilder()
    b.invoke(0, "write", 1).ok(0, ts=1).invoke(0, "write", 2).ok(0, ts=2).invoke(1, "read").ok(1, 1, ts=1)
    res = check_all(b.ops, {"model": "register", "replication_factor": 3, "read_cl": "ALL", "write_cl": "ONE"})
    assert res.valid is False and res.exit_code() == 1
    assert res.results["linearizable"].valid is False and res.results["quorum"].valid is False
    assert json.dumps(res.to_json())  # serialisable


def test_the_counter_checker_on_a_history_without_counter_operations_is_unknown() -> None:
    from checkers import counter
    from harness.history import Op

    ops = [Op(process=0, type="invoke", f="write", key=1, value=3, time=1, index=0),
           Op(process=0, type="ok", f="write", key=1, value=3, time=2, index=1)]
    result = counter.check(ops, {})
    assert result.valid == "unknown" and "no counter operations" in result.details["reason"]
