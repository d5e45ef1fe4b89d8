"""Cluster throughput and latency: 3-node RF=3 at ONE and QUORUM, writes and reads, 1-64 clients.

Also measures, in the same run, a trivial Trio + msgpack request/response echo on this machine
(8 connections) as the ceiling, and prints QUORUM writes/s x 3 / echo ceiling as the efficiency
ratio (a QUORUM write costs about three such round trips). Next to each rate it prints the CPU
time the three node processes (``node µs/op``, from /proc) and this client process spent per
operation (and each node's, ``per node µs/op``): on a shared 2-core machine the rates move with
whatever else runs, the CPU cost per operation much less, so compare that between versions.
Prints figures; asserts nothing.

    .venv/bin/python bench/cluster.py [--seconds 5] [--clients 1,8,64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.client import open_client  # noqa: E402
from node.protocol import FrameDecoder, encode_frame  # noqa: E402
from tests.cluster.conftest import SECRET, Cluster, alive_view, call, wait_until  # noqa: E402

# Requests each client keeps in flight: pipelining is how one connection fills the node.
PIPELINE = 8


def _pct(lat: list[float], p: float) -> float:
    if not lat:
        return float("nan")
    lat.sort()
    return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000


async def _echo_ceiling(seconds: float, conns: int = 8) -> tuple[float, float]:
    async def handler(stream: trio.SocketStream) -> None:
        dec = FrameDecoder()
        try:
            while data := await stream.receive_some(262144):
                dec.feed(data)
                out = [encode_frame({"id": m["id"], "ok": True}) for m in dec.messages()]
                await stream.send_all(b"".join(out))
        except trio.BrokenResourceError:
            pass

    count = 0
    cpu0 = _own_cpu()
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, handler, listeners)
        deadline = trio.current_time() + seconds

        async def client() -> None:
            nonlocal count
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            dec = FrameDecoder()
            i = 0
            while trio.current_time() < deadline:
                await stream.send_all(b"".join(encode_frame({"id": i + j, "op": "put", "k": "key", "v": 1}) for j in range(PIPELINE)))
                got = 0
                while got < PIPELINE:
                    dec.feed(await stream.receive_some(262144))
                    got += len(dec.messages())
                count += PIPELINE
                i += PIPELINE
            await stream.aclose()

        async with trio.open_nursery() as cn:
            for _ in range(conns):
                cn.start_soon(client)
        nursery.cancel_scope.cancel()
    return count / seconds, (_own_cpu() - cpu0) / max(1, count) * 1e6


async def _load(ports: list[int], op: str, cl: str, clients: int, seconds: float) -> tuple[float, list[float], int]:
    lat: list[float] = []
    errors = 0
    deadline = trio.current_time() + seconds

    async def client(idx: int) -> None:
        nonlocal errors
        async with open_client("127.0.0.1", ports[idx % len(ports)], secret=SECRET, timeout=10) as c:

            async def worker(w: int) -> None:
                nonlocal errors
                i = 0
                while trio.current_time() < deadline:
                    key = f"k{idx}-{w}-{i % 1000}"
                    t0 = time.perf_counter()
                    try:
                        if op == "write":
                            await c.put("bench", "t", key, {"v": i}, consistency=cl)
                        else:
                            await c.get("bench", "t", key, consistency=cl)
                        lat.append(time.perf_counter() - t0)
                    except Exception:
                        errors += 1
                    i += 1

            async with trio.open_nursery() as n:
                for w in range(max(1, PIPELINE // max(1, clients // 8))):
                    n.start_soon(worker, w)

    async with trio.open_nursery() as n:
        for i in range(clients):
            n.start_soon(client, i)
    return len(lat) / seconds, lat, errors


def _cpu_seconds(pids: list[int]) -> list[float] | None:
    """User + system CPU seconds each process used so far (None where /proc is unavailable)."""
    out = []
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            out.append((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))  # utime, stime
    except (OSError, ValueError, IndexError):
        return None
    return out


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--clients", default="1,8,64")
    args = ap.parse_args()
    clients = [int(x) for x in args.clients.split(",")]
    echo, echo_us = trio.run(_echo_ceiling, args.seconds)
    print(f"echo ceiling (trio+msgpack, 8 connections, pipeline {PIPELINE}): {echo:,.0f} req/s, {echo_us:.1f} CPU µs/req")
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), 3, extra='[storage]\ncommitlog_sync = "periodic"\n')
        try:
            cluster.start()
            wait_until(lambda: all(set(alive_view(n).values()) == {"U"} and len(alive_view(n)) == 3 for n in cluster.nodes), 30)
            trio.run(lambda: call(cluster[0], "create_keyspace", name="bench", replication={"class": "SimpleStrategy", "replication_factor": 3}))
            trio.run(lambda: call(cluster[0], "create_table", keyspace="bench", name="t", options={}))
            ports = [n.client_port for n in cluster.nodes]
            results = {}
            cpu: dict[tuple[str, str, int], float] = {}
            pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]
            print(f"{'op':<6} {'CL':<7} {'clients':>7} {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'p999 ms':>8} {'errors':>6}"
                  f" {'node µs/op':>10} {'client µs/op':>12} {'per node µs/op':>16}")
            for op in ("write", "read"):
                for cl in ("ONE", "QUORUM"):
                    for n in clients:
                        nodes0, own0 = _cpu_seconds(pids), _own_cpu()
                        rate, lat, errors = trio.run(_load, ports, op, cl, n, args.seconds)
                        nodes1, own1 = _cpu_seconds(pids), _own_cpu()
                        done = max(1, len(lat))
                        node_us, per_node = f"{'n/a':>10}", ""
                        if nodes0 is not None and nodes1 is not None:
                            used = [b - a for a, b in zip(nodes0, nodes1)]
                            cpu[(op, cl, n)] = (sum(used) + own1 - own0) / done * 1e6
                            node_us = f"{sum(used) / done * 1e6:>10,.0f}"
                            # Each node's CPU per operation of the whole cluster (n1/n2/n3): each
                            # coordinates a third of the requests and is a replica of every write.
                            per_node = "/".join(f"{u / done * 1e6:.0f}" for u in used)
                        results[(op, cl, n)] = rate
                        print(f"{op:<6} {cl:<7} {n:>7} {rate:>10,.0f} {_pct(lat, .5):>8.2f} {_pct(lat, .99):>8.2f} {_pct(lat, .999):>8.2f} {errors:>6}"
                              f" {node_us} {(own1 - own0) / done * 1e6:>12,.0f} {per_node:>16}", flush=True)
            best = max(v for (op, cl, _), v in results.items() if op == "write" and cl == "QUORUM")
            print(f"best QUORUM writes/s: {best:,.0f} (target 12,000)")
            print(f"efficiency = QUORUM writes/s x 3 / echo ceiling = {best * 3 / echo:.2f} (target ~0.8)")
            quorum_cpu = [v for (op, cl, _), v in cpu.items() if op == "write" and cl == "QUORUM"]
            if quorum_cpu:
                # The same ratio in CPU time, which other load on the machine barely moves.
                print(f"CPU efficiency = 3 x echo CPU µs/req / cheapest QUORUM write CPU µs/op (nodes + client) = "
                      f"{3 * echo_us / min(quorum_cpu):.2f}")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
