"""Real node processes on 127.0.0.1: start, stop, kill, pause, and talk to them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from node.client import open_client
from tests.bench_modules import bench_module  # noqa: F401 - the cluster tests import it from here

SECRET = "test-secret"
# Generous for 2 shared cores: a node opens storage, binds two ports and writes its ready file.
START_TIMEOUT = 20.0


# Test nodes take ports below the kernel's ephemeral range (32768-60999 by default) and below the
# harness's local range (the 20,000 ports under it, which e2e campaigns use), each pytest-xdist
# worker from a block of its own, handed out in turn: between this check and the node's bind,
# neither the other worker, its campaigns' nodes nor an outgoing connection's ephemeral port can
# take the same one (each could, and a node then died with "Address already in use").
PORT_BASE, PORT_BLOCK = 4_000, 2_000
_next_port: list[int] = []


def free_port() -> int:
    """A port free on 127.0.0.1 now, from this worker's block, never handed out twice in a row."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    base = PORT_BASE + (int(worker) % 4 if worker.isdigit() else 0) * PORT_BLOCK
    if not _next_port:
        _next_port.append(base + (os.getpid() % 10) * (PORT_BLOCK // 10))
    for _ in range(PORT_BLOCK):
        port = _next_port[0]
        _next_port[0] = base + (port + 1 - base) % PORT_BLOCK
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {base}-{base + PORT_BLOCK - 1}")


class NodeProc:
    """One node process and its files."""

    def __init__(self, root: Path, node_id: str, seeds: list[str], extra: str = "") -> None:
        self.node_id = node_id
        self.dir = root / node_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.client_port = free_port()
        self.internode_port = free_port()
        self.config = self.dir / "node.toml"
        self.seeds = seeds
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def internode_addr(self) -> str:
        return f"127.0.0.1:{self.internode_port}"

    def write_config(self) -> None:
        seeds = ", ".join(f'"{s}"' for s in self.seeds)
        self.config.write_text(
            f'node_id = "{self.node_id}"\n'
            f'data_dir = "{self.dir / "data"}"\n'
            f"client_port = {self.client_port}\n"
            f"internode_port = {self.internode_port}\n"
            f"seeds = [{seeds}]\n"
            f'cluster_secret = "{SECRET}"\n'
            f"num_tokens = 16\n"
            f"{self.extra}\n"
        )

    def start(self) -> None:
        self.write_config()
        ready = self.dir / "data" / "ready"
        if ready.exists():
            ready.unlink()
        log = open(self.dir / "stderr.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node", "--config", str(self.config)], stdout=log, stderr=log, cwd=self.dir
        )
        log.close()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        ready = self.dir / "data" / "ready"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready.exists() and ready.read_text():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.node_id} exited with {self.proc.returncode}: {self.log_tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.node_id} not ready after {timeout} s: {self.log_tail()}")

    def log_tail(self, n: int = 20) -> str:
        path = self.dir / "stderr.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


class Cluster:
    """A set of node processes sharing seeds."""

    def __init__(self, root: Path, n: int, extra: str = "") -> None:
        self.root = root
        self.nodes: list[NodeProc] = []
        seed_port = None
        for i in range(n):
            node = NodeProc(root, f"n{i + 1}", [], extra)
            if seed_port is None:
                seed_port = node.internode_addr
            node.seeds = [seed_port]
            self.nodes.append(node)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_ready()

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                try:
                    node.resume()
                except ProcessLookupError:
                    pass
            node.kill()

    def __getitem__(self, i: int) -> NodeProc:
        return self.nodes[i]


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def decode_frames(data: bytes) -> list[dict[str, Any]]:
    """The complete length-prefixed msgpack frames in ``data`` (a trailing partial one is dropped)."""
    out, off = [], 0
    while off + 4 <= len(data):
        (n,) = struct.unpack_from(">I", data, off)
        out.append(msgpack.unpackb(data[off + 4 : off + 4 + n], raw=False))
        off += 4 + n
    return out


async def call(node: NodeProc, op: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
    """One request to a node (admin ops carry the secret)."""
    async with open_client("127.0.0.1", node.client_port, secret=SECRET, timeout=timeout) as c:
        return await c.request(op, **fields)


def alive_view(node: NodeProc) -> dict[str, str]:
    """node_id → "U"/"D" as ``node`` sees the cluster."""
    resp = trio.run(lambda: call(node, "status"))
    return {n["node_id"]: n["state"] for n in resp["nodes"]}


def wait_until(predicate: Any, timeout: float, interval: float = 0.2, what: str = "condition") -> float:
    """Poll until ``predicate()`` is truthy; returns the seconds it took."""
    start = time.monotonic()
    last_exc: Exception | None = None
    while time.monotonic() - start < timeout:
        try:
            if predicate():
                return time.monotonic() - start
        except Exception as exc:  # a node may be restarting; keep polling
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout} s (last error: {last_exc!r})")


def ask(node: NodeProc, op: str, **fields: Any) -> Any:
    """The response, or the named error (RinglabError) it was answered with."""
    from node.protocol import RinglabError

    try:
        return trio.run(lambda: call(node, op, timeout=15, **fields))
    except RinglabError as exc:
        return exc
    except BaseExceptionGroup as group:  # the client's nursery wraps it
        [exc] = group.exceptions
        if isinstance(exc, RinglabError):
            return exc
        raise


def start_three_with_table(c: Cluster, timeout: float = 30) -> None:
    """Start a 3-node ``c``, wait until every node sees all three up, create ks (RF 3) and t."""
    c.start()
    wait_until(lambda: all(set(alive_view(n).values()) == {"U"} and len(alive_view(n)) == 3 for n in c.nodes),
               timeout, what="3 nodes up")
    trio.run(lambda: call(c[0], "create_keyspace", name="ks",
                          replication={"class": "SimpleStrategy", "replication_factor": 3}))
    trio.run(lambda: call(c[0], "create_table", keyspace="ks", name="t", options={}))


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 3-node cluster with keyspace ks (SimpleStrategy RF=3) and table t, shared per module."""
    c = Cluster(tmp_path_factory.mktemp("cluster3"), 3)
    try:
        start_three_with_table(c, 20)
        yield c
    finally:
        c.stop()


@contextlib.contextmanager
def one_node(root: Path, extra: str = "") -> Iterator[Cluster]:
    """A started one-node cluster with keyspace ks (RF=1) and table t; its process killed after."""
    c = Cluster(root, 1, extra)
    try:
        c.start()
        trio.run(lambda: call(c[0], "create_keyspace", name="ks", replication={"class": "SimpleStrategy", "replication_factor": 1}))
        trio.run(lambda: call(c[0], "create_table", keyspace="ks", name="t", options={}))
        yield c
    finally:
        c.stop()


