"""Membership changes on real node processes: a join into a loaded cluster under write load, a
removenode of a killed node and a decommission, each followed by per-replica checks (every
replica of every acknowledged key holds it) and reads at ALL.

Keyspace ks has SimpleStrategy RF=2, so each change really moves ranges between nodes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from node.client import open_client
from tests.cluster.conftest import SECRET, Cluster, NodeProc, call, wait_until

# Fast announcements: peers confirm the new state, the delay only covers in-flight writes.
EXTRA = "[membership]\nring_delay = 0.5\n[gossip]\ninterval = 0.5\n"
INITIAL_KEYS = 400


async def _status(node: NodeProc) -> dict[str, dict[str, Any]]:
    resp = await call(node, "status")
    return {n["node_id"]: n for n in resp["nodes"]}


async def _writer(node: NodeProc, prefix: str, acked: dict[str, int], stop: trio.Event) -> None:
    """Write new keys at QUORUM until ``stop``; record the acknowledged ones."""
    i = 0
    async with open_client("127.0.0.1", node.client_port, secret=SECRET, timeout=10) as c:
        while not stop.is_set():
            key = f"{prefix}-{i}"
            try:
                await c.put("ks", "t", key, {"v": i}, consistency="QUORUM")
                acked[key] = i
            except Exception:
                pass
            i += 1
            await trio.sleep(0.005)


async def _check_replicas(nodes: list[NodeProc], acked: dict[str, int]) -> list[str]:
    """Keys some replica lacks: each replica is read at ONE through itself (its own data)."""
    missing: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        admin = await stack.enter_async_context(open_client("127.0.0.1", nodes[0].client_port, secret=SECRET, timeout=10))
        clients = {n.node_id: await stack.enter_async_context(open_client("127.0.0.1", n.client_port, secret=SECRET, timeout=10)) for n in nodes}
        for key, value in acked.items():
            for ep in (await admin.admin("getendpoints", keyspace="ks", key=key))["endpoints"]:
                row = await clients[ep].get("ks", "t", key, consistency="ONE")
                if not row or row["v"][0] != value:
                    missing.append(f"{key}@{ep}")
    return missing


async def _check_all(node: NodeProc, acked: dict[str, int]) -> list[str]:
    missing = []
    async with open_client("127.0.0.1", node.client_port, secret=SECRET, timeout=10) as c:
        for key, value in acked.items():
            row = await c.get("ks", "t", key, consistency="ALL")
            if not row or row["v"][0] != value:
                missing.append(key)
    return missing


async def _wait_all_up(nodes: list[NodeProc], timeout: float) -> None:
    """Until every node sees every node UP and NORMAL: a node that has not heard of a peer yet
    places replicas on a smaller ring, and writes it coordinates miss that peer."""
    with trio.fail_after(timeout):
        while True:
            views = [await _status(n) for n in nodes]
            if all(len(v) == len(nodes) and all(i["state"] == "U" and i["status"] == "NORMAL" for i in v.values()) for v in views):
                return
            await trio.sleep(0.2)


def loaded_ring(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[dict[str, Any]]:
    """A 3-node cluster with ks (SimpleStrategy RF=2) holding INITIAL_KEYS keys written at ALL;
    yields the cluster, the acknowledged keys, a list for nodes a test adds, and the root dir."""
    root: Path = tmp_path_factory.mktemp(name)
    c = Cluster(root, 3, EXTRA)
    extra_nodes: list[NodeProc] = []
    try:
        c.start()

        async def setup() -> dict[str, int]:
            await _wait_all_up(c.nodes, 30)
            await call(c[0], "create_keyspace", name="ks", replication={"class": "SimpleStrategy", "replication_factor": 2})
            await call(c[0], "create_table", keyspace="ks", name="t", options={})
            acked: dict[str, int] = {}
            async with open_client("127.0.0.1", c[0].client_port, secret=SECRET, timeout=10) as cl:
                for i in range(INITIAL_KEYS):
                    await cl.put("ks", "t", f"init-{i}", {"v": i}, consistency="ALL")
                    acked[f"init-{i}"] = i
            return acked

        acked = trio.run(setup)
        yield {"cluster": c, "acked": acked, "extra": extra_nodes, "root": root}
    finally:
        c.stop()
        for n in extra_nodes:
            n.kill()


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield from loaded_ring(tmp_path_factory, "membership")


def _live(ring: dict[str, Any]) -> list[NodeProc]:
    nodes = ring["cluster"].nodes + ring["extra"]
    return [n for n in nodes if n.proc is not None and n.proc.poll() is None]


def test_join_under_write_load_streams_and_keeps_every_acked_write(ring: dict[str, Any]) -> None:
    c: Cluster = ring["cluster"]
    acked: dict[str, int] = ring["acked"]
    n4 = NodeProc(ring["root"], "n4", [c[0].internode_addr], EXTRA.replace("[membership]\n", "[membership]\nauto_bootstrap = true\n"))
    ring["extra"].append(n4)

    async def main() -> dict[str, Any]:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_writer, c[0], "join", acked, stop)
            await trio.sleep(0.5)
            n4.start()
            with trio.fail_after(45):
                while True:
                    try:
                        st = await _status(c[0])
                        if st.get("n4", {}).get("status") == "NORMAL":
                            break
                    except Exception:
                        pass
                    await trio.sleep(0.2)
            await trio.sleep(0.5)
            stop.set()
        return await call(n4, "netstats")

    stats = trio.run(main)
    assert stats["streaming"]["partitions_received"] > 0, stats
    assert stats["last"]["op"] == "join" and stats["last"]["bytes"] > 0
    nodes = _live(ring)
    assert trio.run(_check_replicas, nodes, acked) == []
    assert trio.run(_check_all, c[0], acked) == []
    # The joiner took ranges: it now replicates a share of the keys.
    owned = trio.run(lambda: call(c[0], "status", keyspace="ks"))
    assert {n["node_id"]: n["owns"] for n in owned["nodes"]}["n4"] > 0.2


def test_removenode_rereplicates_a_killed_nodes_ranges(ring: dict[str, Any]) -> None:
    c: Cluster = ring["cluster"]
    acked: dict[str, int] = ring["acked"]
    victim = c[2]
    victim.kill()
    wait_until(lambda: trio.run(_status, c[0])["n3"]["state"] == "D", 25, what="n3 DOWN at n1")

    async def main() -> dict[str, Any]:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_writer, c[0], "remove", acked, stop)
            async with open_client("127.0.0.1", c[0].client_port, secret=SECRET, timeout=60) as cl:
                result = await cl.admin("removenode", node="n3")
            stop.set()
        return result

    result = trio.run(main)
    assert result["op"] == "removenode" and result["transfers"] > 0 and result["partitions"] > 0, result
    ring_nodes = {t[1] for t in trio.run(lambda: call(c[0], "ring"))["tokens"]}
    assert ring_nodes == {"n1", "n2", "n4"}
    nodes = _live(ring)
    assert trio.run(_check_replicas, nodes, acked) == []
    assert trio.run(_check_all, c[0], acked) == []


def test_decommission_streams_ranges_away_and_the_node_exits(ring: dict[str, Any]) -> None:
    c: Cluster = ring["cluster"]
    acked: dict[str, int] = ring["acked"]
    leaver = c[1]

    async def main() -> dict[str, Any]:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_writer, c[0], "decom", acked, stop)
            result = await call(leaver, "decommission", timeout=60)
            await trio.sleep(1.0)
            stop.set()
        return result

    result = trio.run(main)
    assert result["op"] == "decommission" and result["partitions"] > 0, result
    assert leaver.proc is not None and leaver.proc.wait(20) == 0
    wait_until(lambda: trio.run(_status, c[0])["n2"]["status"] == "LEFT", 10, what="n2 LEFT at n1")
    ring_nodes = {t[1] for t in trio.run(lambda: call(c[0], "ring"))["tokens"]}
    assert ring_nodes == {"n1", "n4"}
    nodes = _live(ring)
    assert trio.run(_check_replicas, nodes, acked) == []
    assert trio.run(_check_all, c[0], acked) == []


def test_skip_pending_ranges_fault_makes_a_join_lose_acknowledged_writes(ring: dict[str, Any]) -> None:
    """The validation switch: without pending ranges, writes acknowledged while n5 streams miss n5."""
    c: Cluster = ring["cluster"]
    coordinator = c[0]
    trio.run(lambda: call(coordinator, "faults", set={"skip_pending_ranges": True}))
    n5 = NodeProc(ring["root"], "n5", [coordinator.internode_addr], EXTRA.replace("[membership]\n", "[membership]\nauto_bootstrap = true\n"))
    ring["extra"].append(n5)
    during: dict[str, int] = {}

    async def main() -> None:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_writer, coordinator, "nopending", during, stop)
            n5.start()
            with trio.fail_after(45):
                while (await _status(coordinator)).get("n5", {}).get("status") != "NORMAL":
                    await trio.sleep(0.2)
            stop.set()

    try:
        trio.run(main)
    finally:
        trio.run(lambda: call(coordinator, "faults", set={"skip_pending_ranges": False}))
    missing = trio.run(_check_replicas, _live(ring), during)
    assert any(m.endswith("@n5") for m in missing), "n5 should lack writes made while it joined"
