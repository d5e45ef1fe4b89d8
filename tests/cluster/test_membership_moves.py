"""Range movements on real node processes: an operator ``move`` under QUORUM write load, a
``cleanup`` after a join, load balancing (a light node moves a token into the heaviest node's
range, once; two light nodes never take the same token) and a failed move that must withdraw its
announcement. Each is followed by per-replica checks (every replica of every acknowledged key
holds it) and reads at ALL.

The move and cleanup tests share one 3-node cluster with keyspace ks at SimpleStrategy RF=2, so
each change really moves ranges between nodes; the others get their own clusters (RF=1, one
token per node), since load balancing is enabled in the node's config.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from node.client import open_client
from node.protocol import InvalidRequest
from node.storage.cells import Partition
from node.storage.sstable import SSTableReader
from tests.cluster.conftest import SECRET, Cluster, NodeProc, call, wait_until
from tests.cluster.test_membership_ops import (
    EXTRA,
    _check_all,
    _check_replicas,
    _live,
    _status,
    _wait_all_up,
    _writer,
    loaded_ring,
)

# Murmur3 tokens: [-2**63, 2**63).
MIN_TOKEN = -(1 << 63)
SPAN = 1 << 64
# Streaming a few hundred small partitions takes well under a second; the rest is announcement
# (gossip rounds of 0.5 s) and ring_delay. Generous for 2 shared cores.
MOVE_TIMEOUT = 60.0


def _token_at(fraction: float) -> int:
    """The Murmur3 token ``fraction`` of the way round the ring from the minimum token."""
    return MIN_TOKEN + int(SPAN * fraction)


async def _endpoints(node: NodeProc, keys: list[str], keyspace: str = "ks") -> dict[str, list[str]]:
    """The natural replicas of each key as ``node`` places them."""
    async with open_client("127.0.0.1", node.client_port, secret=SECRET, timeout=10) as c:
        return {k: (await c.admin("getendpoints", keyspace=keyspace, key=k))["endpoints"] for k in keys}


async def _tokens_of(node: NodeProc) -> dict[str, set[str]]:
    """node_id → its tokens, as ``node``'s ring shows them."""
    out: dict[str, set[str]] = {}
    for token, owner, _ in (await call(node, "ring"))["tokens"]:
        out.setdefault(owner, set()).add(token)
    return out


def _local_keys(node: NodeProc, tag: str) -> set[str]:
    """Keys of ks.t with a live value in ``node``'s own SSTables (flushed and snapshotted first).

    A read at ONE through a node that is no longer a replica of a key goes to the replicas, so
    what a node still holds on disk is read from a snapshot (hard links of its SSTables).
    """
    path = Path(trio.run(lambda: call(node, "snapshot", tag=tag))["path"]) / "ks" / "t"
    gens = {int(m.group(1)) for p in path.iterdir() if (m := re.match(r"^(\d+)-", p.name))}
    merged: dict[bytes, Partition] = {}
    for gen in sorted(gens):
        reader = SSTableReader(path, gen, lambda k: k)
        try:
            for _, p in reader.iter_range():
                merged[p.key] = merged[p.key].merge(p) if p.key in merged else p
        finally:
            reader.close()
    out = set()
    for key, p in merged.items():
        cell = p.cells.get("v")
        if cell is not None and cell.value is not None and (p.partition_tombstone is None or cell.timestamp > p.partition_tombstone):
            out.add(key.decode())
    return out


def _load(node: NodeProc) -> int:
    """The node's own load (bytes of its SSTables) as it reports it."""
    st = trio.run(_status, node)
    return int(st[node.node_id]["load"])


async def _wait_quiet(nodes: list[NodeProc], timeout: float) -> None:
    """Until no node runs a membership operation and none sees a transition."""
    with trio.fail_after(timeout):
        while True:
            stats = [await call(n, "netstats") for n in nodes]
            if all(s["operation"] is None and not s["transition"] for s in stats):
                return
            await trio.sleep(0.2)


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    yield from loaded_ring(tmp_path_factory, "moves")


def test_move_under_quorum_write_load_streams_and_keeps_every_acked_write(ring: dict[str, Any]) -> None:
    c: Cluster = ring["cluster"]
    acked: dict[str, int] = ring["acked"]
    mover = c[2]
    before_tokens = trio.run(_tokens_of, c[0])
    taken = {int(t) for ts in before_tokens.values() for t in ts}
    rng = random.Random(2434)
    new_tokens: set[int] = set()
    while len(new_tokens) < 16:
        t = rng.randrange(MIN_TOKEN + 1, 1 << 63)
        if t not in taken:
            new_tokens.add(t)
    new_strs = {str(t) for t in new_tokens}
    init_keys = sorted(acked)
    before = trio.run(_endpoints, c[0], init_keys)

    async def main() -> dict[str, Any]:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            # Writes coordinated by a bystander and by the moving node itself.
            nursery.start_soon(_writer, c[0], "move-a", acked, stop)
            nursery.start_soon(_writer, mover, "move-b", acked, stop)
            await trio.sleep(0.5)
            result = await call(mover, "move", timeout=MOVE_TIMEOUT, tokens=sorted(new_strs))
            await trio.sleep(0.5)
            stop.set()
        return result

    result = trio.run(main)
    assert result["op"] == "move" and result["reason"] == "operator", result
    assert result["transfers"] > 0 and result["partitions"] > 0, result
    assert any(k.startswith("move-a") for k in acked) and any(k.startswith("move-b") for k in acked)

    # Every node's ring places the mover at exactly its new tokens, and no one is in transition.
    for n in c.nodes:
        wait_until(lambda n=n: trio.run(_tokens_of, n).get(mover.node_id) == new_strs, 10, what=f"{n.node_id} sees the move")
    assert {k: v for k, v in trio.run(_tokens_of, c[0]).items() if k != mover.node_id} == \
        {k: v for k, v in before_tokens.items() if k != mover.node_id}
    assert trio.run(_status, c[0])[mover.node_id]["status"] == "NORMAL"
    trio.run(_wait_quiet, c.nodes, 10)
    stats = trio.run(lambda: call(mover, "netstats"))
    # What it gained came by the partition stream or as whole SSTables (flushed data in a moved range).
    received = stats["streaming"]["partitions_received"] + stats["file_streaming"].get("files_imported", 0)
    assert stats["last"]["op"] == "move" and received > 0, stats

    # The move changed placement: the mover now replicates old keys it did not before.
    after = trio.run(_endpoints, c[0], init_keys)
    gained = [k for k in init_keys if mover.node_id in after[k] and mover.node_id not in before[k]]
    assert gained, "the move should give the mover ranges it did not replicate"
    assert trio.run(_check_replicas, c.nodes, acked) == []
    assert trio.run(_check_all, c[0], acked) == []


def test_cleanup_after_join_drops_only_ranges_the_node_lost(ring: dict[str, Any]) -> None:
    c: Cluster = ring["cluster"]
    acked: dict[str, int] = ring["acked"]
    keys = sorted(acked)
    before = trio.run(_endpoints, c[0], keys)
    n4 = NodeProc(ring["root"], "n4", [c[0].internode_addr], EXTRA.replace("[membership]\n", "[membership]\nauto_bootstrap = true\n"))
    ring["extra"].append(n4)
    n4.start()
    wait_until(lambda: all(trio.run(_status, n)["n4"]["status"] == "NORMAL" for n in c.nodes), 45, what="n4 NORMAL everywhere")
    trio.run(_wait_quiet, _live(ring), 10)
    # A few writes after the join: cleanup must keep what the node still replicates, flushed or not.
    trio.run(lambda: _put_keys(c[0], "after-join", 50, acked))
    keys = sorted(acked)
    after = trio.run(_endpoints, c[0], keys)

    # The old node that lost the most keys to n4.
    lost_by = {n.node_id: [k for k in before if n.node_id in before[k] and n.node_id not in after[k]] for n in c.nodes}
    victim = max(c.nodes, key=lambda n: len(lost_by[n.node_id]))
    lost = lost_by[victim.node_id]
    assert lost, f"the join should take ranges from an old node: {lost_by}"
    kept = {k for k in keys if victim.node_id in after[k]}

    held = _local_keys(victim, "before-cleanup")
    assert set(lost) <= held, "before cleanup the node still holds the ranges it lost"
    load_before = _load(victim)

    result = trio.run(lambda: call(victim, "cleanup", timeout=30))
    assert result["op"] == "cleanup" and result["dropped"]["ks.t"] >= len(lost), result

    remaining = _local_keys(victim, "after-cleanup")
    assert not remaining & set(lost), f"cleanup left lost keys on {victim.node_id}"
    # Keys of writes that failed (not acknowledged) may exist too; they must be the node's as well.
    others = remaining - kept
    strays = [k for k, eps in trio.run(_endpoints, c[0], sorted(others)).items() if victim.node_id not in eps]
    assert not strays, f"{victim.node_id} still holds keys it does not replicate: {strays[:5]}"
    assert kept <= remaining, f"cleanup dropped keys {victim.node_id} still replicates"
    assert _load(victim) < load_before
    assert trio.run(_check_replicas, _live(ring), acked) == []
    assert trio.run(_check_all, c[0], acked) == []


async def _put_keys(node: NodeProc, prefix: str, n: int, acked: dict[str, int], consistency: str = "QUORUM",
                    pad: str = "", workers: int = 4) -> None:
    """Write ``n`` keys through ``node`` with a few concurrent clients; record each acknowledged one."""

    async def worker(w: int) -> None:
        async with open_client("127.0.0.1", node.client_port, secret=SECRET, timeout=10) as cl:
            for i in range(w, n, workers):
                key = f"{prefix}-{i}"
                await cl.put("ks", "t", key, {"v": i, "pad": pad} if pad else {"v": i}, consistency=consistency)
                acked[key] = i

    async with trio.open_nursery() as nursery:
        for w in range(workers):
            nursery.start_soon(worker, w)


BALANCE_EXTRA = "[membership]\nring_delay = 0.5\nload_balance = true\nbalance_interval = 1.0\n[gossip]\ninterval = 0.5\n"
# Long enough for about four more balance rounds after the first move.
SETTLE = 4.0


def _balance_cluster(root: Path, tokens: dict[str, int], acked: dict[str, int]) -> Cluster:
    """Three nodes at one token each, keyspace ks at RF=1 loaded and flushed (so SSTable bytes
    follow the tokens), then restarted with load balancing on: the operator enables it with a
    restart, and each node publishes its true load at once, so none decides on a stale figure
    of its own. The caller stops the cluster."""
    c = Cluster(root, 3, EXTRA)
    for n in c.nodes:
        n.extra = f'initial_tokens = ["{tokens[n.node_id]}"]\n' + EXTRA
    c.start()
    trio.run(_wait_all_up, c.nodes, 20)

    async def load() -> None:
        await call(c[0], "create_keyspace", name="ks", replication={"class": "SimpleStrategy", "replication_factor": 1})
        await call(c[0], "create_table", keyspace="ks", name="t", options={})
        # Values of a few hundred bytes, so SSTable bytes follow the keys, not per-file overhead.
        await _put_keys(c[0], "init", 1500, acked, consistency="ONE", pad="x" * 200)
        for n in c.nodes:
            await call(n, "flush")

    trio.run(load)
    for n in c.nodes:
        assert n.terminate() == 0
        n.extra = f'initial_tokens = ["{tokens[n.node_id]}"]\n' + BALANCE_EXTRA
    c.start()
    trio.run(_wait_all_up, c.nodes, 20)
    return c


def _balance_moves(node: NodeProc) -> int:
    return (node.dir / "data" / "node.log").read_text().count("move (load balance) complete")


def _write_until(c: Cluster, acked: dict[str, int], done: Any, what: str) -> None:
    """QUORUM writes through n1 until ``done()``, then SETTLE more seconds of balance rounds."""

    async def main() -> None:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_writer, c[0], "balance", acked, stop)
            await trio.to_thread.run_sync(lambda: wait_until(done, 40, what=what))
            await trio.sleep(SETTLE)
            stop.set()

    trio.run(main)
    trio.run(_wait_quiet, c.nodes, 30)


# n1 owns half the ring, n2 40 %, n3 10 %: with RF=1 their loads follow, so only n3 is at most
# half as loaded as the heaviest node (balance_ratio 0.5).
BALANCE_TOKENS = {"n1": _token_at(0.5), "n2": _token_at(0.9), "n3": (1 << 63) - 1}


def test_load_balance_moves_a_light_node_into_the_heaviest_range(tmp_path: Path) -> None:
    acked: dict[str, int] = {}
    c = _balance_cluster(tmp_path, BALANCE_TOKENS, acked)
    try:
        loads = {n.node_id: _load(n) for n in c.nodes}
        assert loads["n3"] <= 0.5 * loads["n1"] and loads["n2"] > 0.5 * loads["n1"], loads
        # Until n3 moved; then several more balance rounds, in which (its streamed data counted)
        # n3 is no longer light.
        _write_until(c, acked, lambda: _balance_moves(c[2]) >= 1, "n3 moved by load balancing")

        note = trio.run(lambda: call(c[0], "gossipinfo"))["nodes"]["n3"]["state"]["app_states"]["BALANCE"]["value"]
        assert note.startswith("load balance: n3 load") and "x n1 load" in note, note
        stats = trio.run(lambda: call(c[2], "netstats"))
        assert stats["last"]["op"] == "move" and stats["last"]["reason"] == "load balance", stats
        assert stats["streaming"]["partitions_received"] > 0, stats
        # One decision and one move: a node whose load figure left out what it had just streamed
        # kept halving the heavy node's range every round.
        assert len(stats["balance"]) == 1, stats["balance"]
        assert _balance_moves(c[2]) == 1 and _balance_moves(c[0]) == _balance_moves(c[1]) == 0

        # n3 moved its token to the middle of n1's range; the other nodes kept their tokens.
        tokens = trio.run(_tokens_of, c[0])
        assert tokens["n1"] == {str(BALANCE_TOKENS["n1"])} and tokens["n2"] == {str(BALANCE_TOKENS["n2"])}, tokens
        left, right = BALANCE_TOKENS["n3"], BALANCE_TOKENS["n1"]
        middle = (left + (right - left) % SPAN // 2 - MIN_TOKEN) % SPAN + MIN_TOKEN
        assert tokens["n3"] == {str(middle)}, tokens
        owns = {n["node_id"]: n["owns"] for n in trio.run(lambda: call(c[0], "status", keyspace="ks"))["nodes"]}
        assert abs(owns["n1"] - 0.25) < 0.01 and abs(owns["n3"] - 0.35) < 0.01, owns

        assert any(k.startswith("balance") for k in acked)
        assert trio.run(_check_replicas, c.nodes, acked) == []
        assert trio.run(_check_all, c[0], acked) == []
    finally:
        c.stop()


def test_two_light_nodes_balancing_at_once_never_take_the_same_token(tmp_path: Path) -> None:
    """n1 owns 80 %, n2 and n3 10 % each: both are light, and both pick the middle of n1's range
    in their first round. Before moves checked other nodes' announced tokens, often both moved
    there, and one of them silently dropped out of the ring."""
    tokens = {"n1": _token_at(0.8), "n2": _token_at(0.9), "n3": (1 << 63) - 1}
    acked: dict[str, int] = {}
    c = _balance_cluster(tmp_path, tokens, acked)
    try:
        _write_until(c, acked, lambda: _balance_moves(c[1]) >= 1 and _balance_moves(c[2]) >= 1, "n2 and n3 moved")
        views = [trio.run(_tokens_of, n) for n in c.nodes]
        assert views[0] == views[1] == views[2], views
        assert set(views[0]) == {"n1", "n2", "n3"} and all(len(t) == 1 for t in views[0].values()), views[0]
        assert views[0]["n1"] == {str(tokens["n1"])}
        # Each node's ring has itself where it thinks it is.
        for n, view in zip(c.nodes, views):
            assert trio.run(_status, n)[n.node_id]["tokens"] == 1
            assert view[n.node_id], view
        # A QUORUM ack promises two replicas; the third gets a write made during the last move by
        # hint or stream a moment later. Every replica must hold every acked write within 30 s.
        missing: list[str] = []

        def converged() -> bool:
            missing[:] = trio.run(_check_replicas, c.nodes, acked)
            return not missing

        wait_until(converged, 30, interval=1, what="every replica holding every acked write")
        assert missing == []
        assert trio.run(_check_all, c[0], acked) == []
    finally:
        c.stop()


def test_a_failed_move_withdraws_its_announcement(tmp_path: Path) -> None:
    """A move whose gained range has no live source fails, and the node takes its new tokens
    back out of gossip: otherwise every node keeps a transition that never ends (pending writes
    forever, cleanup refused, the load balancer idle)."""
    c = Cluster(tmp_path, 2, EXTRA)
    tokens = {"n1": _token_at(0.5), "n2": (1 << 63) - 1}
    for n in c.nodes:
        # A low conviction threshold: n1 is the only observer, and n2 is really killed.
        n.extra = f'initial_tokens = ["{tokens[n.node_id]}"]\n' + EXTRA + "phi_convict_threshold = 3.0\n"
    try:
        c.start()
        trio.run(_wait_all_up, c.nodes, 20)
        trio.run(lambda: call(c[0], "create_keyspace", name="ks", replication={"class": "SimpleStrategy", "replication_factor": 1}))
        trio.run(lambda: call(c[0], "create_table", keyspace="ks", name="t", options={}))
        c[1].kill()
        wait_until(lambda: trio.run(_status, c[0])["n2"]["state"] == "D", 25, what="n2 DOWN at n1")

        # (n1's token, n2's token] is n2's alone, and n2 is dead: nothing can stream it to n1.
        errors: list[InvalidRequest] = []
        try:
            trio.run(lambda: call(c[0], "move", timeout=MOVE_TIMEOUT, tokens=[str(_token_at(0.75))]))
        except* InvalidRequest as group:  # the client's nursery wraps the typed error
            errors.extend(e for e in group.exceptions if isinstance(e, InvalidRequest))
        assert errors and "no live source" in str(errors[0]), errors
        stats = trio.run(lambda: call(c[0], "netstats"))
        assert stats["operation"] is None and not stats["transition"], stats
        app = trio.run(lambda: call(c[0], "gossipinfo"))["nodes"]["n1"]["state"]["app_states"]
        assert not app.get("MOVE_TO", {}).get("value"), app
        assert trio.run(_tokens_of, c[0])["n1"] == {str(tokens["n1"])}
        # With no transition left, cleanup runs.
        assert trio.run(lambda: call(c[0], "cleanup"))["op"] == "cleanup"
    finally:
        c.stop()
