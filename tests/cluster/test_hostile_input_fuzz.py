"""Seeded hostile input on a live node's client and internode ports (bench/fuzz_protocol.py):
only named errors come back, the node stays up and serves a write and a read at ONE after every
burst, and its log holds no traceback."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from node.protocol import InvalidRequest

from tests.cluster.conftest import SECRET, Cluster, call

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import fuzz_protocol as fz  # noqa: E402

SEEDS = (1, 2, 3)


@pytest.fixture(scope="module")
def node1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("fuzz"), 1)
    try:
        c.start()
        trio.run(lambda: call(c[0], "create_keyspace", name="ks", replication={"class": "SimpleStrategy", "replication_factor": 1}))
        trio.run(lambda: call(c[0], "create_table", keyspace="ks", name="t", options={}))
        yield c
    finally:
        c.stop()


def _round_trip(c: Cluster, n: int) -> None:
    """The node is alive and takes a write and reads it back at ONE."""
    node = c[0]
    assert node.proc is not None and node.proc.poll() is None, node.log_tail()

    async def go() -> None:
        await call(node, "put", keyspace="ks", table="t", key=f"probe{n}", columns={"a": n}, consistency="ONE")
        got = await call(node, "get", keyspace="ks", table="t", key=f"probe{n}", consistency="ONE")
        assert got["columns"]["a"][0] == n, got

    trio.run(go)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_burst_of_hostile_input_gets_named_errors_and_the_node_serves(node1: Cluster, seed: int) -> None:
    rng = random.Random(seed)
    found = fz.burst(rng, node1[0].client_port, node1[0].internode_port, lambda: _round_trip(node1, seed), SECRET)
    assert found == []


def test_the_log_holds_no_traceback_after_the_bursts(node1: Cluster) -> None:
    _round_trip(node1, 99)
    log = (node1[0].dir / "stderr.log").read_text(errors="replace")
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


def test_flush_and_compact_name_a_keyspace_that_is_no_name(node1: Cluster) -> None:
    # They took any type: flush passed it to storage ("unknown table -1.t"), compact matched nothing.
    for op in ("flush", "compact"):
        refused = ""
        try:
            trio.run(lambda: call(node1[0], op, keyspace=-1))
        except* InvalidRequest as group:
            refused = str(group.exceptions[0])
        assert refused == f"{op}: keyspace must be a string, got int"
        assert trio.run(lambda: call(node1[0], op, keyspace="ks", table="t"))["ok"] is True
