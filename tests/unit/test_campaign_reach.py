"""Campaigns and checks still reach the planted bugs they were built for, on fixed sim seeds
(deterministic: a sweep's workers run with a fixed hash seed), each with the real patch from
bench/mutants/ and its campaign's own arguments, as `bench/mutants.py --only NAME` runs them.

storage-kill-set and its commit-log replay positions lost that reach silently once: sim's nodes
began flushing at 4 KB by default, the campaign named no memtable size, the next flush after each
compaction covered what the planted bug skips, and `compaction-replay-position` went from 6/6 to
0/6 in a full mutant run with no test failing. power and the store-damaged check: a data file
never fsynced is gone after a power loss, which only the node's own storage status shows. Two
seeds each (6 of 6 of seeds 1-6 are caught for both, so one of two is a loose bound that a
reshuffled schedule will not trip).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.bench_modules import bench_module


def _bench() -> Any:
    return bench_module("mutants")


def test_storage_kill_set_catches_a_compaction_that_claims_the_current_replay_position(tmp_path: Path) -> None:
    bench = _bench()
    [mutant] = [m for m in bench.load_mutants() if m.name == "compaction-replay-position"]
    assert mutant.campaign == "storage-kill-set"
    # Only the nemesis flushes (the store's own memtable size): the window the bug needs.
    args = bench.CAMPAIGNS["storage-kill-set"]
    assert args[args.index("--memtable-flush-kb") + 1] == "0"
    caught, unknown, run, _first, _wall = bench.run_one(None, "storage-kill-set", "1-2", 1, tmp_path)
    assert (caught, unknown, run) == (0, 0, 2)
    caught, _unknown, run, first, _wall = bench.run_one(mutant, "storage-kill-set", "1-2", 1, tmp_path)
    assert run == 2 and caught >= 1 and "convergence" in first


def test_power_catches_an_sstable_data_file_never_fsynced_as_store_damage(tmp_path: Path) -> None:
    # bench/mutants/56: after a power loss the node finds its SSTable's data file gone and refuses
    # reads; without the storage-health record that made every seed unknown (0 of 6 caught).
    bench = _bench()
    [mutant] = [m for m in bench.load_mutants() if m.name == "sstable-data-no-fsync"]
    caught, _unknown, run, first, _wall = bench.run_one(mutant, mutant.campaign, "1-2", 1, tmp_path)
    assert run == 2 and caught >= 1 and "convergence" in first
