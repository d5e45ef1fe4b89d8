"""The ttl workload end to end in the simulator (a deterministic seed): values expire during the
campaign and checkers/ttl.py finds the unmodified store right; the same history with one read
after an expiry made to return the expired value, or one read before it made to return nothing,
is flagged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from checkers import ttl
from harness import store
from harness.deploy.sim import run_one
from harness.history import HistoryFile, Op
from harness.run import RunOptions


def test_expiring_writes_in_a_flush_compact_kill_campaign(tmp_path: Path) -> None:
    opts = RunOptions(deploy="sim", workload="ttl", nemesis="flush-compact,partition,kill", key_count=10, rate=100,
                      memtable_flush_kb=4, gc_grace=60, time_limit=12, nemesis_interval=3, recovery_time=1,
                      seed=2, store=str(tmp_path), test_name="t")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_one(opts, run_dir, quiet=True)
    results = store.read_json(run_dir / store.RESULTS_FILE)["checkers"]
    assert "linearizable" not in results
    r = results["ttl"]
    assert r["valid"] is True, r["anomalies"]
    assert r["counts"]["judged_reads"] > 100 and r["counts"]["expiring_writes"] > 20
    ops = list(HistoryFile(run_dir / store.HISTORY_FILE))
    lo, hi = r["details"]["clock_offset_ns"]
    assert 0 <= hi - lo < 5_000_000

    # Each ok write's expiry instant on the history's clock, by value.
    invs: dict[object, Op] = {}
    expiring: dict[tuple[object, object], float] = {}
    for op in ops:
        if op.type == "invoke":
            invs[op.process] = op
        elif op.type == "ok" and op.f == "write" and op.extra.get("ttl") and op.timestamp is not None:
            expiring[(op.key, op.value)] = (op.timestamp // 1_000_000 + op.extra["ttl"]) * 1e9 - lo
    nils = [op for op in ops if op.type == "ok" and op.f == "read" and op.value is None]
    assert nils, "no read saw a value expire"

    def forged(target: Op, value: object) -> list[Op]:
        return [dataclasses.replace(op, value=value) if op is target else op for op in ops]

    # A read that returned nothing, well after some value of its key expired: make it return that value.
    late = next((op, v) for op in nils for (k, v), at in expiring.items()
                if k == op.key and at + 0.1e9 < invs_time(ops, op))
    r2 = ttl.check(forged(late[0], late[1]), {})
    assert r2.valid is False and r2.counts["read-after-expiry"] >= 1
    # A read that returned a value well before it expired: make it return nothing.
    live = [op for op in ops if op.type == "ok" and op.f == "read" and (op.key, op.value) in expiring
            and op.time + 0.1e9 < expiring[(op.key, op.value)]][:30]
    flagged = [ttl.check(forged(op, None), {}) for op in live]
    assert any(x.valid is False and x.counts["expired-early"] >= 1 for x in flagged)

def invs_time(ops: list[Op], comp: Op) -> int:
    """The invocation time of a completion (its process's last invoke before it)."""
    t = None
    for op in ops:
        if op is comp:
            break
        if op.type == "invoke" and op.process == comp.process:
            t = op.time
    assert t is not None
    return t
