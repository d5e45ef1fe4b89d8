"""The localread admin op: each replica's own copy, bounded and paged, behind the cluster secret."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from harness import convergence
from node.client import open_client
from node.protocol import InvalidRequest, Unauthorized
from node.server import LOCALREAD_MAX_CELLS, LOCALREAD_MAX_KEYS
from tests.cluster.conftest import SECRET, Cluster


class _Addresses:
    """The two things harness/convergence.py asks of a cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self.nodes = {n.node_id: n for n in cluster.nodes}

    def node_ids(self) -> list[str]:
        return list(self.nodes)

    def client_address(self, nid: str) -> tuple[str, int]:
        return "127.0.0.1", self.nodes[nid].client_port


WIDE = LOCALREAD_MAX_CELLS + 904  # wider than one answer: the harness must page through it


def test_every_replica_answers_its_own_copy_in_pages(cluster3: Cluster) -> None:
    async def main() -> dict[str, Any]:
        async with open_client("127.0.0.1", cluster3[0].client_port, secret=SECRET, timeout=30) as c:
            await c.put("ks", "t", "narrow", {"v": 7}, consistency="ALL")
            for start in range(0, WIDE, 2500):
                await c.put("ks", "t", "wide", {f"e{i:09d}": 1 for i in range(start, min(start + 2500, WIDE))},
                            consistency="ALL")
            await c.delete("ks", "t", "gone", consistency="ALL")
        addrs = _Addresses(cluster3)
        out = {}
        for nid in addrs.node_ids():
            out[nid] = await convergence._read_node(addrs, SECRET, nid, "ks", "t", ["narrow", "wide", "gone", "never"])
        return out

    rows = trio.run(main)
    for nid, got in rows.items():
        assert [c[:2] for c in got["narrow"]["cells"]] == [["v", 7]], nid
        names = [c[0] for c in got["wide"]["cells"]]
        assert names == [f"e{i:09d}" for i in range(WIDE)], (nid, len(names))
        assert got["gone"]["partition_tombstone"] is not None and got["gone"]["cells"] == []
        assert got["never"] == {"cells": [], "partition_tombstone": None}


def test_localread_needs_the_secret_and_names_bad_input(cluster3: Cluster) -> None:
    async def main() -> None:
        async with open_client("127.0.0.1", cluster3[0].client_port, timeout=10) as c:
            with pytest.raises(Unauthorized):
                await c.request("localread", keyspace="ks", table="t", keys=["narrow"])
        async with open_client("127.0.0.1", cluster3[0].client_port, secret=SECRET, timeout=10) as c:
            for fields, word in (({"keyspace": "ks", "table": "t", "keys": []}, "keys"),
                                 ({"keyspace": "ks", "table": "t", "keys": list(range(LOCALREAD_MAX_KEYS + 1))}, "keys"),
                                 ({"keyspace": "ks", "table": "nope", "keys": ["a"]}, "nope"),
                                 ({"keyspace": "ks", "table": "t", "keys": ["a"], "after": 3}, "after")):
                with pytest.raises(InvalidRequest, match=word):
                    await c.request("localread", **fields)

    trio.run(main)
