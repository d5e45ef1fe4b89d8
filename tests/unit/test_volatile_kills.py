"""A run with the crash nemesis keeps every node's unsynced commit log bytes in memory
(``volatile_unsynced``), so a kill nemesis step in it loses them as a crash does. `harness run
--nemesis all --time-limit 10` on a correct store killed all five nodes and came out INVALID on
the writes of the last sync period (lost write, stale reads, replicas diverged after repair);
those losses are what periodic mode allows, like a crash's. Hand-made histories."""

from __future__ import annotations

from typing import Any

from checkers.compose import check_all
from harness.history import NEMESIS, Op
from harness.run import RunOptions

MS = 1_000_000
PARAMS: dict[str, Any] = {"model": "register", "replication_factor": 3, "read_cl": "QUORUM", "write_cl": "QUORUM",
                          "commitlog_sync": "periodic", "commitlog_sync_period_ms": 10_000}


def killed_after_a_write() -> list[Op]:
    """Write 2 acknowledged at 500 ms, every node killed at 3 s, a read at 20 s returns 1."""
    return [
        Op(0, 0, 0, "invoke", "write", 1, 1), Op(1, 100 * MS, 0, "ok", "write", 1, 1, timestamp=1),
        Op(2, 400 * MS, 0, "invoke", "write", 1, 2), Op(3, 500 * MS, 0, "ok", "write", 1, 2, timestamp=2),
        Op(4, 3_000 * MS, NEMESIS, "invoke", "start-kill", None, None),
        Op(5, 3_001 * MS, NEMESIS, "info", "start-kill", None, {"spec": "all", "nodes": ["n1", "n2", "n3"]},
           extra={"action": "kill"}),
        Op(6, 20_000 * MS, 1, "invoke", "read", 1, None), Op(7, 20_100 * MS, 1, "ok", "read", 1, 1, timestamp=1),
    ]


def test_a_kill_in_a_run_with_volatile_unsynced_bytes_may_lose_like_a_crash() -> None:
    res = check_all(killed_after_a_write(), {**PARAMS, "volatile_unsynced": True})
    assert res.valid is True, {n: r.counts for n, r in res.results.items()}
    assert res.results["lww"].counts["periodic-lost-write"] == 1
    assert res.results["durability"].counts["crashes"] == 1


def test_without_volatile_bytes_a_kill_loses_nothing_acknowledged() -> None:
    # A SIGKILL leaves what the process wrote in the OS: losing an acknowledged write is a bug.
    res = check_all(killed_after_a_write(), PARAMS)
    assert res.valid is False and res.results["lww"].counts["lost-write"] == 1


def test_the_run_says_which_runs_hold_unsynced_bytes_in_memory() -> None:
    assert RunOptions(nemesis="all").checker_params()["volatile_unsynced"] is True
    assert RunOptions(nemesis="kill,crash").checker_params()["volatile_unsynced"] is True
    assert RunOptions(nemesis="kill,pause").checker_params()["volatile_unsynced"] is False


def test_a_recorded_run_says_it_through_its_storage_settings() -> None:
    from harness.cli import params_from_test

    old = {"params": {"model": "register"}, "storage": {"node": {"commitlog_sync": "periodic", "volatile_unsynced": True}}}
    assert params_from_test(old)["volatile_unsynced"] is True
    assert "volatile_unsynced" not in params_from_test({"params": {}, "storage": {"node": {}}})
