"""Raw internode messaging throughput: requests/s with N concurrent requesters over one connection pair.

Prints the figure next to a trivial Trio + msgpack echo measured in the same run (one connection
per requester, no coalescing), the reference the cluster bench also uses as its ceiling. The
answering side of both runs in a separate process, as it would in a cluster, so the two event
loops (and their batching) are independent.

    .venv/bin/python bench/messaging.py [--seconds 3] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import time
from typing import Any

import msgpack
import trio

from node import protocol
from node.cluster.messaging import Messaging
from node.runtime import Runtime


async def echo(sender: str, payload: dict[str, Any]) -> dict[str, Any]:
    return payload


async def serve_messaging() -> None:
    """The answering node: print the bound port, echo until killed."""
    b = Messaging(Runtime.real(), "b", "127.0.0.1", 0, secret="bench-secret")
    b.register("ECHO", echo)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(b.run)
        print(port, flush=True)


async def serve_echo() -> None:
    """The plain echo server: print the bound port, echo until killed."""

    async def serve(stream: trio.SocketStream) -> None:
        decoder = protocol.FrameDecoder()
        try:
            while data := await stream.receive_some(65536):
                decoder.feed(data)
                while (msg := decoder.next_message()) is not None:
                    await stream.send_all(protocol.encode_frame(msg))
        except trio.BrokenResourceError:
            pass

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, serve, 0)
        print(listeners[0].socket.getsockname()[1], flush=True)


def spawn(mode: str) -> tuple[subprocess.Popen[str], int]:
    """Start this script in server ``mode``; returns the process and its port."""
    proc = subprocess.Popen([sys.executable, __file__, mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


async def bench_messaging(seconds: float, concurrency: int, port: int) -> tuple[float, Messaging]:
    a = Messaging(Runtime.real(), "a", "127.0.0.1", 0, secret="bench-secret")
    done = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        a.set_address("b", "127.0.0.1", port)
        await a.request("b", "ECHO", {}, timeout=5)  # connect outside the timed window
        deadline = time.perf_counter() + seconds

        async def requester() -> None:
            nonlocal done
            payload = {"k": b"key-0001", "v": b"x" * 100}
            while time.perf_counter() < deadline:
                await a.request("b", "ECHO", payload, timeout=5)
                done += 1

        start = time.perf_counter()
        async with trio.open_nursery() as reqs:
            for _ in range(concurrency):
                reqs.start_soon(requester)
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return done / elapsed, a


async def bench_plain_echo(seconds: float, concurrency: int, port: int) -> float:
    """A trivial Trio + msgpack echo: one connection per requester, one frame per write."""
    header = struct.Struct(">I")
    done = 0
    async with trio.open_nursery() as nursery:
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal done
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            decoder = protocol.FrameDecoder()
            payload = {"id": 0, "k": b"key-0001", "v": b"x" * 100}
            while time.perf_counter() < deadline:
                body = msgpack.packb(payload)
                await stream.send_all(header.pack(len(body)) + body)
                while (msg := decoder.next_message()) is None:
                    decoder.feed(await stream.receive_some(65536))
                done += 1
            await stream.aclose()

        start = time.perf_counter()
        async with trio.open_nursery() as clients:
            for _ in range(concurrency):
                clients.start_soon(client)
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return done / elapsed


def main() -> None:
    """Print messaging and plain-echo throughput and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("mode", nargs="?", choices=["serve-messaging", "serve-echo"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "serve-messaging":
        trio.run(serve_messaging)
        return
    if args.mode == "serve-echo":
        trio.run(serve_echo)
        return
    proc, port = spawn("serve-echo")
    try:
        ceiling = trio.run(bench_plain_echo, args.seconds, args.concurrency, port)
    finally:
        proc.kill()
        proc.wait()
    proc, port = spawn("serve-messaging")
    try:
        rate, a = trio.run(bench_messaging, args.seconds, args.concurrency, port)
    finally:
        proc.kill()
        proc.wait()
    frames_per_write = a.stats.frames_written / max(1, a.stats.writes)
    print(f"plain trio+msgpack echo, {args.concurrency} connections: {ceiling:10.0f} requests/s")
    print(f"Messaging, {args.concurrency} requesters, 1 connection:   {rate:10.0f} requests/s")
    print(f"ratio messaging / echo: {rate / ceiling:.2f}; frames per socket write: {frames_per_write:.1f}")


if __name__ == "__main__":
    main()
