"""coordination = "zookeeper": a real ZooKeeper server (Debian's package), real node processes.

A joining node gets its tokens from the elected leader; killing the leader elects another and
joins keep working; a leader whose session expired cannot make an assignment stick (fencing).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from checkers.assignments import check_assignments
from harness.zookeeper import LocalZooKeeper, unavailable_reason
from node.client import open_client
from node.coordination import CoordinationConfig, Fenced, ZooKeeperCoordinator
from tests.cluster.conftest import SECRET, Cluster, NodeProc, alive_view, call, wait_until

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=f"ZooKeeper: {unavailable_reason()}")


@pytest.fixture(scope="module")
def zk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalZooKeeper]:
    """One ZooKeeper server on loopback for the module."""
    server = LocalZooKeeper(tmp_path_factory.mktemp("zk"), 1)
    try:
        trio.run(server.start)
        yield server
    finally:
        server.stop()


def _extra(zk: LocalZooKeeper, root: str, bootstrap: bool = False) -> str:
    servers = ", ".join(f'"{a}"' for a in zk.connect_string().split(","))
    lines = ["[coordination]", 'mode = "zookeeper"', f"servers = [{servers}]", f'root = "{root}"',
             "session_timeout = 3.0", "", "[membership]", f"auto_bootstrap = {'true' if bootstrap else 'false'}"]
    return "\n".join(lines)


def leader_view(node: NodeProc, log: bool = False) -> dict[str, Any]:
    """The admin op ``leader`` of one node."""
    return trio.run(lambda: call(node, "leader", log=log))


def test_joins_get_their_tokens_from_the_leader_and_survive_its_death(zk: LocalZooKeeper, tmp_path: Path) -> None:
    root = "/ringlab/joins"
    c = Cluster(tmp_path, 3, _extra(zk, root))
    try:
        c.start()
        wait_until(lambda: len({leader_view(n)["leader"] for n in c.nodes} - {None}) == 1
                   and all(len(leader_view(n)["ranges"]) == 3 for n in c.nodes), 30, what="one leader, 3 registered")
        wait_until(lambda: all(alive_view(n) == {"n1": "U", "n2": "U", "n3": "U"} for n in c.nodes), 30,
                   what="gossip: every node sees 3 up")
        first = leader_view(c[0])
        leader_id, epoch = first["leader"], first["epoch"]
        dead = next(n for n in c.nodes if n.node_id == leader_id)
        survivor = next(n for n in c.nodes if n is not dead)

        async def load() -> None:
            await call(survivor, "create_keyspace", name="ks", replication={"class": "SimpleStrategy", "replication_factor": 3})
            await call(survivor, "create_table", keyspace="ks", name="t", options={})
            async with open_client("127.0.0.1", survivor.client_port, secret=SECRET) as cl:
                for i in range(300):
                    await cl.put("ks", "t", f"k{i}", {"v": f"v{i}"}, consistency="QUORUM")

        trio.run(load)

        def start_join(name: str) -> NodeProc:
            node = NodeProc(tmp_path, name, [survivor.internode_addr], _extra(zk, root, True))
            c.nodes.append(node)
            node.start()
            node.wait_ready()
            return node

        def normal(node: NodeProc) -> None:
            wait_until(lambda: trio.run(lambda: call(node, "netstats"))["status"] == "NORMAL", 90, what=f"{node.node_id} NORMAL")

        # The leader dies while n4 streams the ranges it was just assigned: the join still completes.
        n4 = start_join("n4")
        wait_until(lambda: (n4.dir / "data" / "bootstrap.json").exists() or (n4.dir / "data" / "tokens.json").exists(),
                   30, interval=0.05, what="n4 assigned")
        dead.kill()
        normal(n4)
        boot = (n4.dir / "stderr.log").read_text()
        assert f"leader {leader_id} (epoch {epoch}) assigned 16 tokens" in boot, boot[-2000:]
        # Its session expires; the next contender leads with a higher epoch and serves the next join.
        wait_until(lambda: leader_view(survivor)["leader"] not in (None, leader_id), 30, what="a new leader")
        second = leader_view(survivor)
        assert second["epoch"] > epoch
        n5 = start_join("n5")
        normal(n5)
        assert f"leader {second['leader']} (epoch {second['epoch']}) assigned" in (n5.dir / "stderr.log").read_text()
        log = leader_view(survivor, log=True)["assignments"]
        assigned = [(a["node"], a["by"], a["epoch"]) for a in log if a["kind"] == "assign"]
        assert assigned == [("n4", leader_id, epoch), ("n5", second["leader"], second["epoch"])], assigned
        tokens = json.loads((n4.dir / "data" / "tokens.json").read_text())
        assert sorted(tokens) == sorted(next(a["tokens"] for a in log if a["node"] == "n4"))
        result = check_assignments(log)
        assert result.valid is True, result.to_json()
        assert result.counts["leaders"] == 2

        # Nothing acknowledged was lost: every row reads back at QUORUM through a new node.
        async def read_all() -> list[int]:
            missing = []
            async with open_client("127.0.0.1", n5.client_port, secret=SECRET) as cl:
                for i in range(300):
                    got = await cl.get("ks", "t", f"k{i}", consistency="QUORUM")
                    if got.get("v", (None,))[0] != f"v{i}":
                        missing.append(i)
            return missing

        assert trio.run(read_all) == []
    finally:
        c.stop()


def test_a_leader_whose_session_expired_cannot_make_an_assignment_stick(zk: LocalZooKeeper, tmp_path: Path) -> None:
    from kazoo.client import KazooClient

    config = CoordinationConfig(mode="zookeeper", servers=zk.connect_string().split(","), session_timeout=3.0,
                                root="/ringlab/fencing")
    a = ZooKeeperCoordinator("a", config, tmp_path / "a.json")
    b = ZooKeeperCoordinator("b", config, tmp_path / "b.json")
    outcome: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.run, lambda: ["1"])
            with trio.fail_after(20):
                while not a.is_leader():
                    await trio.sleep(0.1)
            nursery.start_soon(b.run, lambda: ["2"])
            with trio.fail_after(20):
                while b.leadership.leader != "a":
                    await trio.sleep(0.1)
            # `a` stops looking (a leader that has not yet noticed anything: paused, or cut off
            # from the ensemble), and its session is expired under it, as ZooKeeper does to a
            # client it has not heard from within the session timeout.
            async def blind() -> None:
                return None
            a._poll = blind  # type: ignore[method-assign]
            session_id, password = a._zk.client_id
            other = KazooClient(hosts=zk.connect_string(), client_id=(session_id, password))
            await trio.to_thread.run_sync(other.start)
            await trio.to_thread.run_sync(other.stop)
            await trio.to_thread.run_sync(other.close)
            with trio.fail_after(20):
                while b.leadership.leader != "b":
                    await trio.sleep(0.1)
            with trio.fail_after(20):  # kazoo reconnects `a` on a new session at once
                while a.state != "CONNECTED":
                    await trio.sleep(0.05)
            assert a.is_leader()  # it still believes it leads
            try:
                await a.assign("n9", lambda taken: ["42"])
            except Fenced as exc:
                outcome["refused"] = str(exc)
            outcome["new"] = await b.assign("n8", lambda taken: ["43"])
            outcome["log"] = await b.assignment_log()
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert "election znode is gone" in outcome["refused"]
    assert [(r["node"], r["by"]) for r in outcome["log"] if r["kind"] == "assign"] == [("n8", "b")]
    assert outcome["new"]["epoch"] > 0
