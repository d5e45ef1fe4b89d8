"""Join time in both coordination modes and the ZooKeeper leader's failover time.

Starts 3 nodes (RF 3, a few thousand small rows), joins a 4th in gossip mode, then does the same
with coordination = "zookeeper" against a local ZooKeeper, and finally kills the ZooKeeper
leader and measures how long until a survivor sees a new one (session timeout + one poll).
Prints figures; never fails on a number.

    .venv/bin/python bench/coordination.py [--rows 2000] [--session-timeout 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.zookeeper import LocalZooKeeper, unavailable_reason  # noqa: E402
from node.client import open_client  # noqa: E402
from tests.cluster.conftest import SECRET, Cluster, NodeProc, call, wait_until  # noqa: E402


def _zk_section(zk: LocalZooKeeper, session_timeout: float) -> str:
    servers = ", ".join(f'"{a}"' for a in zk.connect_string().split(","))
    return f'[coordination]\nmode = "zookeeper"\nservers = [{servers}]\nsession_timeout = {session_timeout}\n'


def _load(node: NodeProc, rows: int) -> None:
    async def main() -> None:
        await call(node, "create_keyspace", name="ks", replication={"class": "SimpleStrategy", "replication_factor": 3})
        await call(node, "create_table", keyspace="ks", name="t", options={})
        async with open_client("127.0.0.1", node.client_port, secret=SECRET) as c:
            for i in range(rows):
                await c.put("ks", "t", f"k{i}", {"v": "x" * 100}, consistency="QUORUM")
    trio.run(main)


def join_seconds(root: Path, coordination: str, rows: int) -> tuple[float, float]:
    """(seconds from process start to NORMAL, the join's own seconds) for a 4th node."""
    c = Cluster(root, 3, coordination)
    try:
        c.start()
        wait_until(lambda: all(len(trio.run(lambda n=n: call(n, "status"))["nodes"]) == 3 for n in c.nodes), 30)
        _load(c[0], rows)
        joiner = NodeProc(root, "n4", [c[1].internode_addr], coordination + "\n[membership]\nauto_bootstrap = true\n")
        c.nodes.append(joiner)
        t0 = time.monotonic()
        joiner.start()
        joiner.wait_ready()
        wait_until(lambda: trio.run(lambda: call(joiner, "netstats"))["status"] == "NORMAL", 120, interval=0.05)
        wall = time.monotonic() - t0
        own = trio.run(lambda: call(joiner, "netstats"))["last"].get("seconds", float("nan"))
        return wall, own
    finally:
        c.stop()


def failover_seconds(root: Path, zk: LocalZooKeeper, session_timeout: float) -> float:
    """Seconds from SIGKILL of the leader until every survivor names a new leader."""
    c = Cluster(root, 3, _zk_section(zk, session_timeout).replace('servers', 'root = "/ringlab/failover"\nservers'))
    try:
        c.start()
        view = lambda n: trio.run(lambda: call(n, "leader"))  # noqa: E731
        wait_until(lambda: len({view(n)["leader"] for n in c.nodes} - {None}) == 1, 30)
        leader = view(c[0])["leader"]
        dead = next(n for n in c.nodes if n.node_id == leader)
        rest = [n for n in c.nodes if n is not dead]
        t0 = time.monotonic()
        dead.kill()
        wait_until(lambda: all(view(n)["leader"] not in (None, leader) for n in rest), 60, interval=0.05)
        return time.monotonic() - t0
    finally:
        c.stop()


def main() -> int:
    """Print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000, help="rows written before the join (default 2000)")
    ap.add_argument("--session-timeout", type=float, default=3.0, help="ZooKeeper session timeout, s (default 3)")
    args = ap.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"bench/coordination.py: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ringlab-coord-") as tmp:
        root = Path(tmp)
        g_wall, g_own = join_seconds(root / "gossip", "", args.rows)
        zk = LocalZooKeeper(root / "zk", 1)
        try:
            trio.run(zk.start)
            z_wall, z_own = join_seconds(root / "zookeeper", _zk_section(zk, args.session_timeout), args.rows)
            failover = failover_seconds(root / "failover", zk, args.session_timeout)
        finally:
            zk.stop()
    print(f"{'measure':<44} {'seconds':>8}")
    print(f"{'join, gossip: process start to NORMAL':<44} {g_wall:8.2f}   (join itself {g_own:.2f})")
    print(f"{'join, zookeeper: process start to NORMAL':<44} {z_wall:8.2f}   (join itself {z_own:.2f})")
    print(f"{'zookeeper / gossip':<44} {z_wall / g_wall:8.2f}x")
    print(f"{'leader failover (kill to all survivors agree)':<44} {failover:8.2f}   (session timeout {args.session_timeout:g} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
