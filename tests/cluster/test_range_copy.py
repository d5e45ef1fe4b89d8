"""Whole-file range transfer on real node processes (node/rangecopy.py): a join under QUORUM
load moves SSTables as files and loses no acknowledged write, a copy damaged in transit is
refused and sent again, and a joiner cut right after its first imported file (the
``exit_after_file_import`` fault switch) resumes after that file instead of fetching it again;
a decommission and a removenode under QUORUM load move whole files too, and a repair pulls a
replica's missed writes as slice files. (The tests build on each other, in file order.)

Keyspace ks has SimpleStrategy RF=2 on 3 nodes; every node is flushed before a join, so the
ranges the joiner gains are mostly in SSTables cut at the ring's tokens.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from node.client import open_client
from tests.cluster.conftest import SECRET, Cluster, NodeProc, call
from tests.cluster.test_membership_ops import EXTRA, _check_all, _status, _wait_all_up, _writer

KEYS = 600
# Every SSTable counts as big enough to move whole (the default leaves files under 1 MiB to pages).
FILES = EXTRA.replace("[membership]\n", "[membership]\nfile_stream_min_bytes = 0\n")
JOIN = FILES.replace("[membership]\n", "[membership]\nauto_bootstrap = true\n")


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root: Path = tmp_path_factory.mktemp("rangecopy")
    c = Cluster(root, 3, FILES)
    extra: list[NodeProc] = []
    try:
        c.start()

        async def setup() -> dict[str, int]:
            await _wait_all_up(c.nodes, 30)
            await call(c[0], "create_keyspace", name="ks", replication={"class": "SimpleStrategy", "replication_factor": 2})
            # No background compaction: the file a cut transfer imported must still be on its source.
            await call(c[0], "create_table", keyspace="ks", name="t",
                       options={"compaction_min_threshold": 32, "compaction_max_threshold": 32})
            acked: dict[str, int] = {}
            async with open_client("127.0.0.1", c[0].client_port, secret=SECRET, timeout=10) as cl:
                for i in range(KEYS):
                    await cl.put("ks", "t", f"init-{i}", {"v": i}, consistency="ALL")
                    acked[f"init-{i}"] = i
            for n in c.nodes:
                await call(n, "flush")
            return acked

        yield {"cluster": c, "acked": trio.run(setup), "extra": extra, "root": root}
    finally:
        c.stop()
        for n in extra:
            n.kill()


async def _until_normal(node: NodeProc, nid: str, timeout: float) -> None:
    with trio.fail_after(timeout):
        while True:
            try:
                if (await _status(node)).get(nid, {}).get("status") == "NORMAL":
                    return
            except Exception:
                pass
            await trio.sleep(0.2)


def _live(ring: dict[str, Any]) -> list[NodeProc]:
    return [n for n in ring["cluster"].nodes + ring["extra"] if n.proc is not None and n.proc.poll() is None]


def test_join_moves_whole_files_refuses_damaged_copies_and_keeps_acked_writes(ring: dict[str, Any]) -> None:
    c: Cluster = ring["cluster"]
    acked: dict[str, int] = ring["acked"]
    n4 = NodeProc(ring["root"], "n4", [c[0].internode_addr], JOIN)
    ring["extra"].append(n4)

    async def main() -> dict[str, Any]:
        # Every source damages its first send of each SSTable: the joiner must refuse those.
        for n in c.nodes:
            await call(n, "faults", set={"damage_file_stream": True})
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_writer, c[0], "join", acked, stop)
            await trio.sleep(0.3)
            n4.start()
            await _until_normal(c[0], "n4", 45)
            await trio.sleep(0.5)
            stop.set()
        for n in c.nodes:
            await call(n, "faults", set={"damage_file_stream": False})
        return await call(n4, "netstats")

    stats = trio.run(main)
    files = stats["file_streaming"]
    assert files["files_imported"] > 0 and stats["last"]["file_bytes"] > 0, stats
    # Each imported file was a re-send: its first copy was damaged and refused, never imported.
    assert files["files_refused"] >= files["files_imported"], files
    nodes = _live(ring)
    assert trio.run(_check_replicas_fast, nodes, acked) == []
    assert trio.run(_check_all, c[0], acked) == []


def test_a_joiner_cut_after_its_first_file_resumes_after_it(ring: dict[str, Any]) -> None:
    c: Cluster = ring["cluster"]
    acked: dict[str, int] = ring["acked"]
    sources = _live(ring)
    # The joiner exits right after importing and journaling its first SSTable received whole.
    n5 = NodeProc(ring["root"], "n5", [c[0].internode_addr], JOIN + "[faults]\nexit_after_file_import = true\n")
    ring["extra"].append(n5)
    journal = n5.dir / "data" / "storage" / "streamed_files.json"

    async def main() -> dict[str, Any]:
        for n in sources:
            await call(n, "flush")
        n5.start()
        assert n5.proc is not None
        with trio.fail_after(60):
            while n5.proc.poll() is None:
                await trio.sleep(0.1)
        assert n5.proc.returncode == 70, n5.log_tail()
        first = json.loads(journal.read_text())
        assert len(first) == 1, first
        n5.extra = JOIN
        n5.start()
        await _until_normal(c[0], "n5", 60)
        return {"netstats": await call(n5, "netstats"), "first": first}

    out = trio.run(main)
    files = out["netstats"]["file_streaming"]
    # The restarted joiner did not fetch the file its first run imported, and fetched the rest.
    assert files["files_resumed"] >= 1 and files["files_imported"] >= 1, files
    assert out["first"][0].startswith("bootstrap:")
    # A completed bootstrap forgets its journal: a later transfer must not skip files on its say-so.
    assert not journal.exists()
    nodes = _live(ring)
    assert trio.run(_check_replicas_fast, nodes, acked) == []
    assert trio.run(_check_all, c[0], acked) == []


def test_decommission_under_quorum_load_moves_whole_files_and_keeps_acked_writes(ring: dict[str, Any]) -> None:
    c: Cluster = ring["cluster"]
    acked: dict[str, int] = ring["acked"]
    leaver = ring["extra"][-1]  # n5: what it holds is mostly SSTables it received whole

    async def main() -> dict[str, Any]:
        await call(leaver, "flush")
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_writer, c[0], "decom", acked, stop)
            result = await call(leaver, "decommission", timeout=60)
            await trio.sleep(0.5)
            stop.set()
        return result

    result = trio.run(main)
    assert result["op"] == "decommission" and result["files"] > 0 and result["file_bytes"] > 0, result
    assert leaver.proc is not None and leaver.proc.wait(20) == 0
    nodes = _live(ring)
    assert trio.run(_check_replicas_fast, nodes, acked) == []
    assert trio.run(_check_all, c[0], acked) == []


async def _check_replicas_fast(nodes: list[NodeProc], acked: dict[str, int], workers: int = 8) -> list[str]:
    """As ``_check_replicas`` (each replica read at ONE through itself), from several clients at once."""
    missing: list[str] = []
    keys = sorted(acked)

    async def worker(start: int) -> None:
        async with contextlib.AsyncExitStack() as stack:
            admin = await stack.enter_async_context(open_client("127.0.0.1", nodes[0].client_port, secret=SECRET, timeout=10))
            clients = {n.node_id: await stack.enter_async_context(open_client("127.0.0.1", n.client_port, secret=SECRET, timeout=10))
                       for n in nodes}
            for key in keys[start::workers]:
                for ep in (await admin.admin("getendpoints", keyspace="ks", key=key))["endpoints"]:
                    row = await clients[ep].get("ks", "t", key, consistency="ONE")
                    if not row or row["v"][0] != acked[key]:
                        missing.append(f"{key}@{ep}")

    async with trio.open_nursery() as nursery:
        for w in range(workers):
            nursery.start_soon(worker, w)
    return sorted(missing)


async def _until_state(node: NodeProc, nid: str, state: str, timeout: float) -> None:
    with trio.fail_after(timeout):
        while (await _status(node)).get(nid, {}).get("state") != state:
            await trio.sleep(0.2)


def test_removenode_under_quorum_load_moves_whole_files_and_keeps_acked_writes(ring: dict[str, Any]) -> None:
    c: Cluster = ring["cluster"]
    acked: dict[str, int] = ring["acked"]
    dead = next(n for n in ring["extra"] if n.node_id == "n4")  # joined by the first test

    async def main() -> dict[str, Any]:
        for n in _live(ring):
            await call(n, "flush")
        dead.kill()
        await _until_state(c[0], "n4", "D", 30)
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_writer, c[0], "remove", acked, stop)
            async with open_client("127.0.0.1", c[0].client_port, secret=SECRET, timeout=60) as cl:
                result = await cl.admin("removenode", node="n4")
            await trio.sleep(0.5)
            stop.set()
        return result

    result = trio.run(main)
    # The survivors pull n4's ranges from each other: SSTables (and slices of them) as files.
    assert result["op"] == "removenode" and result["files"] > 0 and result["file_bytes"] > 0, result
    # Each replica read through itself (RF=2: the two a read at ALL would see, each on its own).
    assert trio.run(_check_replicas_fast, _live(ring), acked) == []


def test_repair_streams_a_replicas_missed_writes_as_files(ring: dict[str, Any]) -> None:
    c: Cluster = ring["cluster"]
    acked: dict[str, int] = ring["acked"]
    lagger = c[1]

    async def main() -> dict[str, Any]:
        for n in c.nodes:
            await call(n, "faults", set={"drop_hints": True})  # the missed writes come back by repair only
        lagger.kill()
        await _until_state(c[0], lagger.node_id, "D", 30)
        async with open_client("127.0.0.1", c[0].client_port, secret=SECRET, timeout=10) as cl:
            for i in range(200):
                await cl.put("ks", "t", f"rep-{i}", {"v": i}, consistency="ONE")
                acked[f"rep-{i}"] = i
        for n in (c[0], c[2]):
            await call(n, "faults", set={"drop_hints": False})
            await call(n, "flush")
        lagger.start()
        await trio.to_thread.run_sync(lagger.wait_ready)
        await _until_state(c[0], lagger.node_id, "U", 30)
        await _until_state(lagger, c[0].node_id, "U", 30)
        await _until_state(lagger, c[2].node_id, "U", 30)
        first = await call(lagger, "repair", timeout=60, keyspace="ks")
        files = (await call(lagger, "netstats"))["file_streaming"]
        second = await call(lagger, "repair", timeout=60, keyspace="ks")
        return {"first": first, "second": second, "files": files}

    out = trio.run(main)
    # The lagger pulled the differing slices of its ranges; the other replicas' SSTables of them
    # came as slice files (file_stream_min_bytes = 0 here), and nothing differs afterwards.
    assert out["first"]["streamed_bytes"] > 0 and out["files"]["slices_imported"] > 0, out
    assert out["second"]["streamed_bytes"] == 0, out["second"]
    # Earlier tests checked the older keys; these are the ones only repair brought to the lagger.
    missed = {k: v for k, v in acked.items() if k.startswith("rep-")}
    assert trio.run(_check_replicas_fast, _live(ring), missed) == []
