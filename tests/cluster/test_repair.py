"""Anti-entropy repair on real node processes: a node that missed writes past its hint window is
brought back in sync by Merkle-tree repair, and tombstones are resurrected when repair is skipped
past gc_grace_seconds but not when it runs in time.

Hints are refused once a target has been DOWN longer than ``max_hint_window`` (0.5 s here), so
writes made after the DOWN reach the dead replica only through repair (or read repair, which the
per-replica checks avoid by reading at ONE through each replica itself).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from node.client import open_client
from tests.cluster.conftest import SECRET, Cluster, NodeProc, call, wait_until

EXTRA = "[hints]\nmax_hint_window = 0.5\n[gossip]\ninterval = 0.5\n"
# Long enough to restart a node and repair before it passes, short enough for a test.
GC_GRACE = 12


def _state(node: NodeProc, of: str) -> str:
    resp = trio.run(lambda: call(node, "status"))
    return {n["node_id"]: n["state"] for n in resp["nodes"]}.get(of, "?")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("repair"), 3, EXTRA)
    try:
        c.start()
        wait_until(lambda: all(_state(c[0], n) == "U" for n in ("n1", "n2", "n3")), 30, what="3 nodes up")

        async def setup() -> None:
            for ks in ("ks", "ksa", "ksb"):
                await call(c[0], "create_keyspace", name=ks, replication={"class": "SimpleStrategy", "replication_factor": 3})
                await call(c[0], "create_table", keyspace=ks, name="t", options={"gc_grace_seconds": GC_GRACE})

        trio.run(setup)
        yield c
    finally:
        c.stop()


async def _put_many(node: NodeProc, ks: str, keys: range, level: str, prefix: str = "k") -> None:
    async with open_client("127.0.0.1", node.client_port, secret=SECRET, timeout=10) as c:
        for i in keys:
            await c.put(ks, "t", f"{prefix}{i}", {"v": i}, consistency=level)


async def _local_rows(node: NodeProc, ks: str, keys: range, prefix: str = "k") -> dict[int, Any]:
    """What ``node`` itself holds (RF=3 on 3 nodes: every node replicates every key; ONE reads self)."""
    out = {}
    async with open_client("127.0.0.1", node.client_port, secret=SECRET, timeout=10) as c:
        for i in keys:
            row = await c.get(ks, "t", f"{prefix}{i}", consistency="ONE")
            if row:
                out[i] = row["v"][0]
    return out


def _kill_and_wait_down(c: Cluster, victim: NodeProc) -> None:
    victim.kill()
    wait_until(lambda: _state(c[0], victim.node_id) == "D", 25, what=f"{victim.node_id} DOWN at n1")
    trio.run(trio.sleep, 1.0)  # past max_hint_window: no more hints for it


def _restart(c: Cluster, victim: NodeProc) -> None:
    victim.start()
    victim.wait_ready()
    wait_until(lambda: _state(c[0], victim.node_id) == "U" and _state(victim, "n1") == "U", 25, what="victim UP")


def test_repair_brings_back_a_node_that_missed_writes_past_its_hint_window(cluster: Cluster) -> None:
    n1, n3 = cluster[0], cluster[2]
    trio.run(_put_many, n1, "ks", range(0, 300), "ALL")
    _kill_and_wait_down(cluster, n3)
    trio.run(_put_many, n1, "ks", range(300, 600), "QUORUM")
    _restart(cluster, n3)
    before = trio.run(_local_rows, n3, "ks", range(600))
    assert set(before) == set(range(300)), "n3 should lack exactly the writes made while it was down"

    stats = trio.run(lambda: call(n3, "repair", timeout=60, keyspace="ks"))
    assert stats["differing_leaves"] > 0 and stats["streamed_partitions"] >= 300, stats
    assert stats["skipped_replicas"] == []
    after = trio.run(_local_rows, n3, "ks", range(600))
    assert after == {i: i for i in range(600)}

    async def all_reads() -> list[int]:
        missing = []
        async with open_client("127.0.0.1", n1.client_port, secret=SECRET, timeout=10) as c:
            for i in range(600):
                row = await c.get("ks", "t", f"k{i}", consistency="ALL")
                if not row or row["v"][0] != i:
                    missing.append(i)
        return missing

    assert trio.run(all_reads) == []
    # A second repair finds nothing left to stream.
    again = trio.run(lambda: call(n3, "repair", timeout=60, keyspace="ks"))
    assert again["differing_leaves"] == 0 and again["streamed_bytes"] == 0, again


def test_tombstones_resurrect_without_repair_past_gc_grace_but_not_with_repair_in_time(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.nodes
    keys = range(40)
    for ks in ("ksa", "ksb"):
        trio.run(_put_many, n1, ks, keys, "ALL", "d")
    _kill_and_wait_down(cluster, n3)

    async def delete_all() -> None:
        async with open_client("127.0.0.1", n1.client_port, secret=SECRET, timeout=10) as c:
            for ks in ("ksa", "ksb"):
                for i in keys:
                    await c.delete(ks, "t", f"d{i}", consistency="QUORUM")

    t_delete = time.monotonic()
    trio.run(delete_all)
    _restart(cluster, n3)
    # In time: repair ksb before gc_grace_seconds pass, so n3 receives the tombstones.
    stats = trio.run(lambda: call(n3, "repair", timeout=60, keyspace="ksb"))
    assert stats["streamed_partitions"] > 0, stats
    assert time.monotonic() - t_delete < GC_GRACE, "repair did not finish within gc_grace_seconds"
    # Past gc grace: every node purges droppable tombstones in a major compaction.
    trio.run(trio.sleep, max(0.0, GC_GRACE + 1.5 - (time.monotonic() - t_delete)))
    for node in cluster.nodes:
        trio.run(lambda node=node: call(node, "flush", timeout=30))
        trio.run(lambda node=node: call(node, "compact", timeout=30))

    async def visible(ks: str) -> int:
        n = 0
        async with open_client("127.0.0.1", n1.client_port, secret=SECRET, timeout=10) as c:
            for i in keys:
                if await c.get(ks, "t", f"d{i}", consistency="ALL"):
                    n += 1
        return n

    # Skipped repair: n1 and n2 purged their tombstones, n3 still holds the old values, and the
    # read at ALL merges them back: the deleted rows are resurrected.
    assert trio.run(visible, "ksa") == len(keys)
    # Repaired in time: the tombstones reached n3 before the purge; nothing comes back.
    assert trio.run(visible, "ksb") == 0
