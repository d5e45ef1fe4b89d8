"""The misbehaving-clients nemesis against real nodes: every malformed request and frame is
refused with a named error, and the node goes on serving QUORUM reads and writes."""

from __future__ import annotations

import random

import trio

from nemesis.clients import BAD_FRAMES, ClientsNemesis, bad_requests
from node.client import open_client
from tests.cluster.conftest import SECRET, Cluster


class _DB:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def node_ids(self) -> list[str]:
        return [n.node_id for n in self.cluster.nodes]


def test_malformed_requests_and_frames_are_refused_and_quorum_still_serves(cluster3: Cluster) -> None:
    ports = {n.node_id: n.client_port for n in cluster3.nodes}
    nemesis = ClientsNemesis(_DB(cluster3), lambda nid: ("127.0.0.1", ports[nid]), SECRET, "ks", "t")

    async def main() -> tuple[dict, dict, dict]:
        async with open_client("127.0.0.1", ports["n1"], secret=SECRET, timeout=10) as c:
            ts = await c.put("ks", "t", 7, {"v": 41}, consistency="QUORUM")
        start = (await nemesis.start(random.Random(3))).value
        stop = (await nemesis.stop()).value
        async with open_client("127.0.0.1", ports[start["node"]], secret=SECRET, timeout=10) as c:
            row = await c.get("ks", "t", 7, consistency="QUORUM")
        return start, stop, {"row": row, "ts": ts}

    start, stop, after = trio.run(main)
    answers = start["answers"]
    assert len(answers) == len(bad_requests("ks", "t")) + len(BAD_FRAMES) + 1
    for label, _, _ in bad_requests("ks", "t"):
        assert answers[label] == "InvalidRequest", (label, answers[label])
    for label, _ in BAD_FRAMES:
        assert answers[label] == "ProtocolError", (label, answers[label])
    assert start["accepted"] == [] and start["ping_after"] == "ok"
    assert stop["answers"] == {"n1": "ok", "n2": "ok", "n3": "ok"}
    assert after["row"] == {"v": (41, after["ts"])}
