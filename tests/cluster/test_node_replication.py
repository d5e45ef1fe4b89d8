"""QUORUM availability with a replica down, hinted handoff, read repair — on real processes."""

from __future__ import annotations

import trio

from node.client import open_client
from tests.cluster.conftest import SECRET, Cluster, alive_view, call, wait_until


def _get(node, key, cl="ONE"):
    async def go():
        async with open_client("127.0.0.1", node.client_port, secret=SECRET, timeout=10) as c:
            return await c.get("ks", "t", key, consistency=cl)

    return trio.run(go)


def _put(node, key, cols, cl="QUORUM"):
    async def go():
        async with open_client("127.0.0.1", node.client_port, secret=SECRET, timeout=10) as c:
            return await c.put("ks", "t", key, cols, consistency=cl)

    return trio.run(go)


def test_schema_reached_every_node(cluster3: Cluster) -> None:
    versions = {trio.run(lambda n=n: call(n, "status"))["schema_version"] for n in cluster3.nodes}
    assert len(versions) == 1


def test_quorum_survives_one_replica_killed_and_hints_deliver_after_restart(cluster3: Cluster) -> None:
    keys = [f"q{i}" for i in range(50)]
    stamps = {k: _put(cluster3[0], k, {"v": i}) for i, k in enumerate(keys)}
    victim = cluster3[2]
    victim.kill()
    wait_until(lambda: alive_view(cluster3[0]).get("n3") == "D", 20, what="n3 DOWN at n1")
    # QUORUM reads of the acknowledged writes still answer, and new QUORUM writes succeed.
    for i, k in enumerate(keys):
        assert _get(cluster3[1], k, "QUORUM") == {"v": (i, stamps[k])}
    during = {f"h{i}": _put(cluster3[0], f"h{i}", {"v": i}) for i in range(30)}
    for i, (k, ts) in enumerate(during.items()):
        assert _get(cluster3[1], k, "QUORUM") == {"v": (i, ts)}
    assert trio.run(lambda: call(cluster3[0], "status"))["hints"]["pending_bytes"].get("n3", 0) > 0
    victim.start()
    victim.wait_ready()
    wait_until(lambda: not trio.run(lambda: call(cluster3[0], "status"))["hints"]["pending_bytes"], 30, what="hints delivered")
    # n3 reads itself first at ONE: the hinted writes are in its own storage now.
    for i, (k, ts) in enumerate(during.items()):
        assert _get(victim, k, "ONE") == {"v": (i, ts)}


def test_read_repair_fixes_a_stale_replica(cluster3: Cluster) -> None:
    wait_until(lambda: set(alive_view(cluster3[0]).values()) == {"U"}, 20, what="all UP")
    for n in cluster3.nodes:
        trio.run(lambda n=n: call(n, "faults", set={"drop_hints": True}))
    try:
        _put(cluster3[0], "rr", {"v": "old"}, "ALL")
        stale = cluster3[2]
        stale.kill()
        wait_until(lambda: alive_view(cluster3[0]).get("n3") == "D", 20, what="n3 DOWN")
        ts_new = _put(cluster3[0], "rr", {"v": "new"}, "QUORUM")
        stale.start()
        stale.wait_ready()
        trio.run(lambda: call(stale, "faults", set={"drop_hints": True}))
        wait_until(lambda: alive_view(cluster3[0]).get("n3") == "U" and alive_view(stale).get("n1") == "U" and alive_view(stale).get("n2") == "U", 20, what="n3 UP")
        assert _get(stale, "rr", "ONE")["v"][0] == "old"  # no hint: n3 really is stale
        # n3 coordinates an ALL read: data from itself (stale), digests from the others mismatch.
        assert _get(stale, "rr", "ALL") == {"v": ("new", ts_new)}
        assert trio.run(lambda: call(stale, "status"))["coordinator"]["read_repairs"] >= 1
        assert _get(stale, "rr", "ONE") == {"v": ("new", ts_new)}
    finally:
        for n in cluster3.nodes:
            trio.run(lambda n=n: call(n, "faults", set={"drop_hints": False}))
