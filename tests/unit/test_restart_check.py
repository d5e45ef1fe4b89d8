"""checkers/restart.py on hand-made snapshots, and the restart pass end to end in the simulator:
every node killed and restarted after the after pass must hold what it held (a planted replay bug
is caught in a campaign with no kill of its own; the unmodified store is valid)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from checkers import restart
from checkers.compose import check_all
from harness import store
from harness.deploy.sim import run_one
from harness.run import RunOptions
from tests.bench_modules import bench_module


def _after(rows: dict[tuple[str, Any], Any], pt: dict[tuple[str, Any], Any] | None = None) -> list[dict[str, Any]]:
    recs: list[dict[str, Any]] = [{"type": "pass", "pass": "after", "nonreplica": {"unreadable": {}}}]
    for (node, key), cells in rows.items():
        recs.append({"type": "replica", "pass": "after", "key": key, "node": node, "replicas": [],
                     "cells": cells, "partition_tombstone": (pt or {}).get((node, key))})
    return recs


def _restarted(rows: dict[tuple[str, Any], Any], nodes: list[str], pt: dict[tuple[str, Any], Any] | None = None,
               **header: Any) -> list[dict[str, Any]]:
    recs: list[dict[str, Any]] = [{"type": "restart", "nodes": nodes, "killed_ns": 10**9, "started_ns": 2 * 10**9,
                                   "read_ns": 3 * 10**9, **header}]
    for (node, key), cells in rows.items():
        recs.append({"type": "row", "node": node, "key": key, "cells": cells,
                     "partition_tombstone": (pt or {}).get((node, key))})
    return recs


def _check(before: list[dict[str, Any]], after: list[dict[str, Any]], **params: Any) -> Any:
    return restart.check([], {"replica_snapshots": before, "restart_snapshots": after, **params})


def cell(name: str, value: Any, ts: int, tomb: bool = False, exp: Any = None) -> list[Any]:
    return [name, value, ts, tomb, exp]


def test_what_every_node_held_came_back_is_valid_and_judged() -> None:
    rows = {("n1", 1): [cell("v", 5, 100)], ("n2", 1): [cell("v", 5, 100)], ("n1", 2): [cell("v", None, 90, True)]}
    r = _check(_after(rows), _restarted(rows, ["n1", "n2"]))
    assert r.valid is True and r.counts["restart_judged"] == 1 and r.counts["nodes"] == 2
    assert r.counts["rows_before"] == 3 and r.counts["cells_before"] == 3 and r.counts["lost-on-restart"] == 0


def test_a_cell_or_tombstone_missing_or_older_after_the_restart_is_lost() -> None:
    before = {("n1", 1): [cell("v", 5, 100)], ("n2", 1): [cell("v", None, 120, True)], ("n1", 3): [cell("a", 1, 50)]}
    after = {("n2", 1): [cell("v", 4, 80)], ("n1", 3): [cell("a", 1, 50)]}
    r = _check(_after(before), _restarted(after, ["n1", "n2"]))
    assert r.valid is False and r.counts["lost-on-restart"] == 2
    found = {(a.key, a.details["node"]): a.explanation for a in r.anomalies}
    assert "v=5 at 100 (now absent)" in found[(1, "n1")]
    assert "v=(tombstone) at 120 (now 80)" in found[(1, "n2")]


def test_newer_cells_and_shadowing_partition_tombstones_are_not_losses() -> None:
    before = {("n1", 1): [cell("v", 5, 100)], ("n1", 2): [cell("v", 6, 100)]}
    after = {("n1", 1): [cell("v", 7, 130)], ("n1", 2): []}
    r = _check(_after(before), _restarted(after, ["n1"], pt={("n1", 2): 150}))
    assert r.valid is True
    # A partition tombstone the node held and no longer holds is lost, unless gc_grace may have passed.
    r = _check(_after({("n1", 4): []}, pt={("n1", 4): 90}), _restarted({}, ["n1"]))
    assert r.valid is False and "a partition tombstone at 90" in r.anomalies[0].explanation
    r = _check(_after({("n1", 4): []}, pt={("n1", 4): 90}), _restarted({}, ["n1"]), gc_grace_seconds=2)
    assert r.valid is True and r.counts["excused_gc_grace"] == 1


def test_expiring_cells_purgeable_tombstones_and_unread_nodes_are_not_judged() -> None:
    before = {("n1", 1): [cell("v", 5, 100, exp=1_700_000_000)], ("n1", 2): [cell("v", None, 90, True)],
              ("n3", 1): [cell("v", 5, 100)]}
    after: dict[tuple[str, Any], Any] = {}
    restarted = _restarted(after, ["n1", "n3"])
    r = _check(_after(before) + [{"type": "replica", "pass": "after", "node": "n3", "key": 1, "error": "down"}],
               restarted, gc_grace_seconds=3)
    assert r.valid is True and r.counts["excused_ttl"] == 1 and r.counts["excused_gc_grace"] == 1
    assert r.counts["nodes"] == 1 and r.details["unreadable"] == ["n3"]
    # A node that does not come back from its files is a finding, whatever it held.
    for kind in ("unstarted", "unreadable"):
        gone = restarted + [{"type": kind, "node": "n3", "error": "DeployError: exited with code 1"}]
        r = _check(_after(before), gone, gc_grace_seconds=3)
        assert r.valid is False and r.counts["restart-failed"] == 1 and "n3" in r.anomalies[0].explanation
    # With a gc_grace longer than the run, a tombstone that vanished is a loss.
    assert _check(_after(before), restarted, gc_grace_seconds=3600).counts["lost-on-restart"] == 2


def test_a_skipped_pass_judges_nothing_and_a_failed_one_is_unknown() -> None:
    rows = {("n1", 1): [cell("v", 5, 100)]}
    r = _check(_after(rows), [{"type": "restart", "nodes": ["n1"], "skipped": "power-loss crashes"}])
    assert r.valid is True and r.counts["restart_judged"] == 0 and "power-loss" in r.details["reason"]
    r = _check(_after(rows), [{"type": "restart", "nodes": ["n1"], "killed_ns": 1, "error": "TooSlowError: "}])
    assert r.valid == "unknown" and "failed" in r.details["reason"]
    assert _check([], _restarted(rows, ["n1"])).valid == "unknown"  # no after pass to compare with


def test_the_sim_restarts_every_node_and_judges_the_unmodified_store_valid(tmp_path: Path) -> None:
    opts = RunOptions(deploy="sim", seed=2, time_limit=6, nemesis="partition", concurrency="1n", rate=100,
                      recovery_time=1, store=str(tmp_path), test_name="t", key_count=20, delete_fraction=0.2)
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    run_one(opts, run_dir, quiet=True, report=False, keep_data=False)
    res = store.read_json(run_dir / "results.json")["checkers"]["restart"]
    assert res["valid"] is True and res["counts"]["restart_judged"] == 1 and res["counts"]["nodes"] == 5
    lines = (run_dir / "restarts.jsonl").read_text().splitlines()
    assert '"type":"restart"' in lines[0] and '"read_ns"' in lines[0]
    # Every row a node held came back (and nothing else appeared: no write ran in between).
    assert res["counts"]["rows_before"] == len(lines) - 1 >= 30
    # `harness check` on the run directory judges it the same way.
    assert check_all(run_dir / "history.jsonl", _params(run_dir)).results["restart"].valid is True
    # A power-loss crash mode skips the pass (its kills may rightly lose unsynced writes).
    run_dir = tmp_path / "power"
    run_dir.mkdir()
    run_one(opts, run_dir, crash="power", quiet=True, report=False, keep_data=False)
    res = store.read_json(run_dir / "results.json")["checkers"]["restart"]
    assert res["valid"] is True and res["counts"]["restart_judged"] == 0 and "power-loss" in res["details"]["reason"]


def test_rows_with_column_and_row_deletes_are_restart_checked_too(tmp_path: Path) -> None:
    # The row workload's partitions hold several columns, cell tombstones and row deletes: every
    # one of them a node held must come back from its own files, as a register's cell does.
    opts = RunOptions(deploy="sim", seed=3, time_limit=6, nemesis="flush-compact,partition", concurrency="1n",
                      rate=100, recovery_time=1, store=str(tmp_path), test_name="t", key_count=20,
                      workload="row", memtable_flush_kb=4)
    run_dir = tmp_path / "row"
    run_dir.mkdir()
    run_one(opts, run_dir, quiet=True, report=False, keep_data=False)
    res = store.read_json(run_dir / "results.json")["checkers"]["restart"]
    assert res["valid"] is True and res["counts"]["restart_judged"] == 1, res
    assert res["counts"]["cells_before"] > res["counts"]["rows_before"] >= 20
    rows = [json.loads(line) for line in (run_dir / "restarts.jsonl").read_text().splitlines()[1:]]
    assert any(r.get("partition_tombstone") is not None for r in rows), "no row delete came back to judge"
    assert any(c[3] for r in rows for c in r.get("cells") or []), "no cell tombstone came back to judge"


def _params(run_dir: Path) -> dict[str, Any]:
    from harness.cli import params_from_test
    from checkers.convergence import params_for_run

    params = params_from_test(store.read_json(run_dir / "test.json"))
    params.update(params_for_run(run_dir))
    params.update(restart.params_for_run(run_dir))
    return params


@pytest.mark.parametrize("name", ["replay-skips-newest-segment"])
def test_a_replay_bug_is_caught_by_the_restart_in_a_campaign_without_kills(tmp_path: Path, name: str) -> None:
    """bench/mutants/36 (commit-log replay leaves out the newest segment) with the `restart`
    campaign (partitions and pauses, no kill): only the final restart makes a node replay."""
    bench = bench_module("mutants")
    [mutant] = [m for m in bench.load_mutants() if m.name == name]
    caught, unknown, run, first, _wall = bench.run_one(mutant, "restart", "1-2", 1, tmp_path / "m")
    assert (run, unknown) == (2, 0) and caught == 2 and first == "restart"
    caught, unknown, run, _first, _wall = bench.run_one(None, "restart", "1-2", 1, tmp_path / "b")
    assert (caught, unknown, run) == (0, 0, 2)


def test_a_value_no_node_held_before_the_restart_appeared_from_the_nodes_own_files() -> None:
    before = {("n1", 1): [cell("v", 5, 100)], ("n2", 1): [cell("v", 5, 100)], ("n1", 2): []}
    drained = _after(before)
    drained[0]["hints_drained"] = True
    # n1 brings back an old value of key 2 (its tombstone purged), n2 one of key 1 no one had.
    after = {("n1", 1): [cell("v", 5, 100)], ("n1", 2): [cell("v", 3, 40)], ("n2", 1): [cell("v", 5, 100), cell("w", 1, 30)]}
    r = _check(drained, _restarted(after, ["n1", "n2"]))
    assert r.valid is False and r.counts["appeared-on-restart"] == 2 and r.counts["lost-on-restart"] == 0
    # A value another node held is a repair's or a hint's, not an appearance.
    held = _after({**before, ("n2", 2): [cell("v", 3, 40)]})
    held[0]["hints_drained"] = True
    after = {("n1", 1): [cell("v", 5, 100)], ("n1", 2): [cell("v", 3, 40)], ("n2", 1): [cell("v", 5, 100)],
             ("n2", 2): [cell("v", 3, 40)]}
    assert _check(held, _restarted(after, ["n1", "n2"])).valid is True
    # Not judged while hints were pending (a hint is not in any node's table).
    after = {("n1", 1): [cell("v", 5, 100)], ("n1", 2): [cell("v", 3, 40)], ("n2", 1): [cell("v", 5, 100)]}
    assert _check(_after(before), _restarted(after, ["n1", "n2"])).valid is True


def test_the_pass_is_skipped_where_kills_or_damage_may_rightly_lose_data() -> None:
    from harness.restart_pass import skip_reason

    class Power:
        kills_lose_unsynced = True

    assert skip_reason({}, object(), ["partition", "kill"]) is None
    assert "volatile" in (skip_reason({"volatile_unsynced": True}, object(), ["crash"]) or "")
    assert "power-loss" in (skip_reason({}, Power(), ["kill"]) or "")
    assert "corrupt nemesis" in (skip_reason({}, object(), ["corrupt", "kill"]) or "")
