"""The register workload's --value-order random, and harness sim honouring --memtable-flush-kb / --gc-grace."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from harness import datapaths
from harness.run import RunOptions
from harness.workloads import WorkloadSettings
from harness.workloads.register import RegisterWorkload
from sim.world import SimNode, SimWorld, WorldSpec


def _writes(order: str, n: int = 400) -> dict[int, list[int]]:
    w = RegisterWorkload(WorkloadSettings(3, "QUORUM", "QUORUM", 10_000, None, order))
    rng = random.Random(5)
    out: dict[int, list[int]] = {}
    for _ in range(n):
        op = w.next_op(rng)
        if op.f == "write":
            out.setdefault(op.key, []).append(op.value)
    return out


def test_increasing_values_stay_the_default() -> None:
    for values in _writes("increasing").values():
        assert values == list(range(1, len(values) + 1))


def test_random_values_are_unique_per_key_and_not_in_time_order() -> None:
    per_key = _writes("random")
    for values in per_key.values():
        assert len(set(values)) == len(values) and all(v > 0 for v in values)
    # Some later write of a key carries a smaller value than the one before it.
    assert any(b < a for values in per_key.values() for a, b in zip(values, values[1:]))


def test_a_bad_value_order_is_refused() -> None:
    with pytest.raises(ValueError, match="--value-order"):
        RunOptions(value_order="sorted").validate()


def test_sim_nodes_get_the_campaigns_memtable_size_only_when_asked(tmp_path: Path) -> None:
    small = datapaths.sim_storage(RunOptions(deploy="sim", memtable_flush_kb=4, nemesis="kill"))
    assert small["memtable_flush_threshold_kb"] == 4
    assert datapaths.sim_storage(RunOptions(deploy="sim", memtable_flush_kb=0)) == {}


    def flush_kb(storage: dict) -> int:
        # The world's node config alone (a whole SimWorld needs the virtual clock running).
        world = SimWorld.__new__(SimWorld)
        world.spec = WorldSpec(1, tmp_path, "s", 1, storage=storage)
        world.nodes = {"n1": SimNode("n1", 0, tmp_path / "n1", tmp_path / "n1")}
        world.forgotten = set()
        return world.config("n1").storage.memtable_flush_threshold_kb

    assert flush_kb(small) == 4
    assert flush_kb({}) == 0


def test_harness_sim_parses_the_storage_options() -> None:
    from harness.cli import build_parser
    from harness.simcli import build_options

    args = build_parser().parse_args(["sim", "--memtable-flush-kb", "8", "--gc-grace", "600", "--value-order", "random"])
    opts, _ = build_options(args)
    assert (opts.memtable_flush_kb, opts.gc_grace, opts.value_order) == (8, 600, "random")
    # Sim's nodes flush as `harness run`'s do: every default campaign reaches SSTables,
    # bloom filters, compaction and tombstone purges.
    opts, _ = build_options(build_parser().parse_args(["sim"]))
    assert (opts.memtable_flush_kb, opts.gc_grace) == (4, 10)
    assert datapaths.sim_storage(opts)["memtable_flush_threshold_kb"] == 4
