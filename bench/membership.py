"""Membership bench: a Merkle repair when 1% of keys differ on one replica, and a join of a fourth
node into a 3-node cluster holding data (bytes streamed, time to NORMAL).

    .venv/bin/python bench/membership.py [--mb 64] [--value-bytes 1024]

Real node processes on 127.0.0.1, keyspace RF=3. The 1% difference is made by killing n3,
overwriting 1% of the keys at QUORUM through n1 with the ``drop_hints`` fault switch on (so the
writes reach n3 only by repair), and restarting n3. Reference figures from the same run: the size
of the table on one replica (what a full copy would send) and a repair with nothing to fix.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.client import open_client  # noqa: E402

SECRET = "bench"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """One node process."""

    def __init__(self, root: Path, nid: str, seed: str | None, extra: str = "") -> None:
        self.nid, self.dir = nid, root / nid
        self.dir.mkdir(parents=True, exist_ok=True)
        self.client, self.internode = _port(), _port()
        self.seed = seed or f"127.0.0.1:{self.internode}"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.dir / "node.toml").write_text(
            f'node_id = "{self.nid}"\ndata_dir = "{self.dir / "data"}"\nclient_port = {self.client}\n'
            f'internode_port = {self.internode}\nseeds = ["{self.seed}"]\ncluster_secret = "{SECRET}"\n'
            f"num_tokens = 16\n[gossip]\ninterval = 0.5\n[membership]\nring_delay = 0.5\n{self.extra}\n"
        )
        log = open(self.dir / "stderr.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "node", "--config", str(self.dir / "node.toml")], stdout=log, stderr=log)
        log.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


async def admin(p: Proc, op: str, timeout: float = 600, **fields: Any) -> dict[str, Any]:
    """One admin request."""
    async with open_client("127.0.0.1", p.client, secret=SECRET, timeout=timeout) as c:
        return await c.admin(op, **fields)


async def wait_for(pred: Any, timeout: float, what: str) -> None:
    """Poll an async predicate."""
    with trio.fail_after(timeout):
        while True:
            try:
                if await pred():
                    return
            except Exception:  # noqa: BLE001 - node starting
                pass
            await trio.sleep(0.2)


async def status(p: Proc) -> dict[str, dict[str, Any]]:
    """node id → status row."""
    return {n["node_id"]: n for n in (await admin(p, "status"))["nodes"]}


async def load(p: Proc, keys: range, value: bytes, level: str, writers: int = 16) -> None:
    """Write ``keys`` with ``value`` from concurrent writers."""
    todo = list(keys)

    async def worker(start: int) -> None:
        async with open_client("127.0.0.1", p.client, secret=SECRET, timeout=30) as c:
            for i in todo[start::writers]:
                await c.put("ks", "t", f"key{i}", {"v": value}, consistency=level)

    async with trio.open_nursery() as n:
        for w in range(writers):
            n.start_soon(worker, w)


async def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="ringlab-bench-membership-"))
    nodes: list[Proc] = []
    try:
        n1 = Proc(root, "n1", None)
        nodes = [n1, Proc(root, "n2", n1.seed), Proc(root, "n3", n1.seed)]
        for p in nodes:
            p.start()
        await wait_for(lambda: _all_up(n1, 3), 60, "3 nodes up")
        await admin(n1, "create_keyspace", name="ks", replication={"class": "SimpleStrategy", "replication_factor": 3})
        await admin(n1, "create_table", keyspace="ks", name="t", options={})
        nkeys = args.mb * 1024 * 1024 // args.value_bytes
        value = b"x" * args.value_bytes
        t0 = time.monotonic()
        await load(n1, range(nkeys), value, "ONE")
        for p in nodes:
            await admin(p, "flush")
        write_s = time.monotonic() - t0
        await trio.sleep(6)  # LOAD is re-published in gossip every 5 s
        st = await status(n1)
        per_node = {n: st[n]["load"] for n in st}
        print(f"membership bench: {nkeys:,} keys x {args.value_bytes} B (~{args.mb} MiB of values), RF=3 on 3 nodes; "
              f"loaded in {write_s:.1f} s; SSTable bytes per node {per_node}; data in {root}")

        # ---- repair: nothing differs (validation only), then 1% differs on n3
        n3 = nodes[2]
        clean = await admin(n3, "repair", keyspace="ks")
        await admin(n1, "faults", set={"drop_hints": True})
        n3.stop()
        changed = len(range(0, nkeys, 100))
        await load(n1, range(0, nkeys, 100), b"y" * args.value_bytes, "QUORUM")
        await admin(n1, "faults", set={"drop_hints": False})
        n3.start()
        await wait_for(lambda: _all_up(n1, 3), 60, "n3 back")
        await wait_for(lambda: _sees_up(n3, 3), 60, "n3 sees all")
        t0 = time.monotonic()
        rep = await admin(n3, "repair", keyspace="ks")
        rep_s = time.monotonic() - t0
        table_bytes = per_node["n3"]
        print(f"  {'metric':<52}{'value':>16}")
        rows = [
            ("repair, no differences: seconds", clean["seconds"]),
            ("repair, no differences: tree bytes received", clean["tree_bytes"]),
            ("repair, no differences: bytes streamed", clean["streamed_bytes"]),
            (f"repair, {changed:,} keys (1%) differ: seconds", round(rep_s, 2)),
            ("repair, 1% differ: tree bytes received", rep["tree_bytes"]),
            ("repair, 1% differ: differing leaves", rep["differing_leaves"]),
            ("repair, 1% differ: partitions streamed (both ways)", rep["streamed_partitions"]),
            ("repair, 1% differ: bytes streamed (both ways)", rep["streamed_bytes"]),
            ("  one replica's table (a full copy) bytes", table_bytes),
            ("  streamed / full copy", f"{rep['streamed_bytes'] / max(1, table_bytes):.3f}x"),
        ]
        for name, v in rows:
            print(f"  {name:<52}{v:>16,}" if isinstance(v, int) else f"  {name:<52}{v!s:>16}")

        # ---- join a fourth node
        n4 = Proc(root, "n4", n1.seed, "auto_bootstrap = true")
        nodes.append(n4)
        t0 = time.monotonic()
        n4.start()
        await wait_for(lambda: _normal(n1, "n4"), 600, "n4 NORMAL")
        join_s = time.monotonic() - t0
        ns = await admin(n4, "netstats")
        last = ns["last"]
        print(f"  {'join n4: seconds from process start to NORMAL':<52}{join_s:>16.2f}")
        print(f"  {'join n4: streaming seconds (bootstrap op)':<52}{last['seconds']:>16}")
        print(f"  {'join n4: bytes streamed':<52}{last['bytes']:>16,}")
        print(f"  {'join n4: partitions streamed':<52}{last['partitions']:>16,}")
        print(f"  {'join n4: MB/s while streaming':<52}{last['bytes'] / 1e6 / max(0.001, last['seconds']):>16.1f}")
        print(f"  {'  cluster data (3 replicas, SSTable bytes)':<52}{sum(per_node.values()):>16,}")
        print(json.dumps({"repair": rep, "join": last}, default=str))
    finally:
        for p in nodes:
            p.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


async def _all_up(p: Proc, n: int) -> bool:
    st = await status(p)
    return len([x for x in st.values() if x["state"] == "U"]) >= n


async def _sees_up(p: Proc, n: int) -> bool:
    return await _all_up(p, n)


async def _normal(p: Proc, nid: str) -> bool:
    return (await status(p)).get(nid, {}).get("status") == "NORMAL"


def main() -> None:
    """Parse arguments and run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=64, help="MiB of values to load (1024 = the issue's 1 GB)")
    ap.add_argument("--value-bytes", type=int, default=1024)
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    trio.run(run, ap.parse_args())


if __name__ == "__main__":
    main()
