"""The in-memory network: listeners, connections and links between simulated nodes.

Each node gets a :class:`NodeNetwork` (node/runtime.py's Network interface) that knows who is
calling, so every connection knows its link ``(opener, listener's owner)``, as a real cluster's
link proxy ``a_to_b`` does. Bytes travel in order per connection (TCP) with a seeded per-link
latency, so messages on different connections reorder the way they would on a LAN.

Faults follow the fault proxy (docs/fault-proxy.md): a cut link discards what is sent on its
connections in both directions (Toxiproxy's ``timeout`` toxic with timeout 0) and healing closes
the connections it held; connecting to an address nobody listens on is refused; a paused node's
bytes, in and out, wait until it resumes (its kernel still accepts connections, as under SIGSTOP).
"""

from __future__ import annotations

import zlib
from collections import deque
from heapq import heappush
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import trio

from sim.trace import _BATCH as TRACE_BATCH
from sim.trace import Trace

# Base one-way latency of a link, drawn once per link: a LAN's 100-500 microseconds.
LINK_LATENCY_S = (0.0001, 0.0005)
# Jitter added to each chunk's latency (never reordering a connection's own bytes).
LINK_JITTER_S = 0.0002
# What a lost segment costs TCP: one retransmission timeout (Linux's minimum RTO is 200 ms).
RETRANSMIT_S = 0.2
# The pseudo node that owns the harness's client connections; never partitioned.
HARNESS = "harness"


class _Sockname:
    """What ``listener.socket.getsockname()`` returns for a simulated listener."""

    def __init__(self, host: str, port: int) -> None:
        self._addr = (host, port)

    def getsockname(self) -> tuple[str, int]:
        """The listener's (host, port)."""
        return self._addr


class _Chunk:
    """Bytes in flight on one pipe, and when they arrive."""

    __slots__ = ("data", "deliver_at", "sender_paused")

    def __init__(self, data: bytes, deliver_at: float, sender_paused: bool) -> None:
        self.data = data
        self.deliver_at = deliver_at
        # A chunk sent by a paused node leaves only once that node resumes.
        self.sender_paused = sender_paused


class _Pipe:
    """One direction of a connection: ordered chunks from ``src`` to ``dst``.

    The receiving task parks on the pipe itself (at most one reader, as for a socket) and is
    woken by a world-clock timer when a chunk arrives, or at once by EOF: no Event, no cancel
    scope per message.
    """

    def __init__(self, conn: Connection, src: str, dst: str) -> None:
        self.conn = conn
        self.src = src
        self.dst = dst
        self.chunks: deque[_Chunk] = deque()
        self.eof = False
        self.waiter: Any = None
        self.last_at = 0.0
        self.key = (src, dst)

    def wake(self) -> None:
        """Let the parked reader look again (a no-op when nobody waits)."""
        task = self.waiter
        if task is not None:
            self.waiter = None
            trio.lowlevel.reschedule(task)

    async def park(self) -> None:
        """Wait until :meth:`wake` (cancellable)."""
        if self.waiter is not None:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self.waiter = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self.waiter = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


class Connection:
    """A simulated TCP connection between two endpoints; the network decides what crosses it."""

    def __init__(self, net: SimNetwork, conn_id: int, opener: str, owner: str, link: tuple[str, str] | None) -> None:
        self.net = net
        self.id = conn_id
        self.opener = opener
        self.owner = owner
        self.link = link
        self.to_owner = _Pipe(self, opener, owner)
        self.to_opener = _Pipe(self, owner, opener)
        self.reset = False

    def close(self) -> None:
        """Both directions end (a kill's FIN/RST, or healing closing a held connection)."""
        for pipe in (self.to_owner, self.to_opener):
            pipe.eof = True
            pipe.wake()


class SimStream(trio.abc.HalfCloseableStream):
    """One end of a :class:`Connection` with trio's stream interface."""

    def __init__(self, conn: Connection, out: _Pipe, inp: _Pipe) -> None:
        self.conn = conn
        self._out = out
        self._in = inp
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` for the peer (or discard it, across a cut)."""
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        if self._out.eof:
            raise trio.BrokenResourceError("connection closed by peer")
        # A cancellation point like a socket's send, but no trip through the scheduler: sends
        # never block here, and a yield per frame was a tenth of the simulation's cost.
        await trio.lowlevel.checkpoint_if_cancelled()
        self.conn.net.carry(self._out, bytes(data))

    def send_nowait(self, data: bytes | bytearray | memoryview) -> int:
        """:meth:`send_all` without the cancellation point (node/outbox.py's direct writes):
        the simulated network takes everything at once."""
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        if self._out.eof:
            raise trio.BrokenResourceError("connection closed by peer")
        self.conn.net.carry(self._out, bytes(data))
        return len(data)

    async def wait_send_all_might_not_block(self) -> None:
        """Sends never block in the simulated network."""
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        """Half-close: the peer reads EOF after what was sent."""
        self._out.eof = True
        self._out.wake()
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The next bytes that have arrived (b"" at EOF)."""
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        return await self.conn.net.deliver(self._in, max_bytes or 65536)

    async def aclose(self) -> None:
        """Close this end; the peer reads EOF."""
        if not self._closed:
            self._closed = True
            self.conn.close()
            self.conn.net.forget(self.conn)
        await trio.lowlevel.checkpoint()


class SimListener(trio.abc.Listener[SimStream]):
    """Accepts the connections made to one (host, port)."""

    def __init__(self, net: SimNetwork, owner: str, host: str, port: int) -> None:
        self.net = net
        self.owner = owner
        self.host = host
        self.port = port
        self.socket = _Sockname(host, port)
        self._send, self._recv = trio.open_memory_channel[SimStream](1000)
        self.closed = False

    def offer(self, stream: SimStream) -> None:
        """A new connection arrived (the kernel's accept queue)."""
        self._send.send_nowait(stream)

    async def accept(self) -> SimStream:
        """The next connection."""
        try:
            return await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("listener closed") from None

    async def aclose(self) -> None:
        """Stop listening: later connects are refused."""
        if not self.closed:
            self.closed = True
            self.net.unlisten(self)
            self._send.close()
        await trio.lowlevel.checkpoint()


@dataclass
class LinkState:
    """Seeded properties of one directed link."""

    latency: float
    loss: float = 0.0
    extra_latency: float = 0.0
    jitter: float = 0.0


@dataclass
class NetStats:
    """What the network carried and dropped (the partition test reads these)."""

    delivered: dict[tuple[str, str], int] = field(default_factory=dict)
    dropped: dict[tuple[str, str], int] = field(default_factory=dict)
    refused: int = 0


class SimNetwork:
    """Every listener and connection of one simulated world."""

    def __init__(self, rng: Any, trace: Trace, loss: float = 0.0) -> None:
        self.rng = rng  # random.Random: the network's own stream of draws
        # Deliveries are timers on the world clock (made before the run; we live inside it).
        self.clock = trio.lowlevel.current_clock()
        if not hasattr(self.clock, "call_at"):
            raise TypeError("the simulated network runs under sim.clock.WorldClock")
        self.trace = trace
        self.loss = loss
        self.listeners: dict[tuple[str, int], SimListener] = {}
        self.conns: dict[int, Connection] = {}
        self.links: dict[tuple[str, str], LinkState] = {}
        self.cut: set[tuple[str, str]] = set()
        self.paused: dict[str, trio.Event] = {}
        self.stats = NetStats()
        self._next_conn = 0
        self._next_port = 40000

    # ---- per-node views

    def for_node(self, node_id: str) -> NodeNetwork:
        """The Network that ``node_id``'s runtime uses."""
        return NodeNetwork(self, node_id)

    def _link(self, src: str, dst: str) -> LinkState:
        key = (src, dst)
        if key not in self.links:
            self.links[key] = LinkState(self.rng.uniform(*LINK_LATENCY_S), self.loss)
        return self.links[key]

    # ---- connections

    def listen(self, owner: str, host: str, port: int) -> SimListener:
        """Bind (host, port) for ``owner`` (port 0 picks one)."""
        if port == 0:
            self._next_port += 1
            port = self._next_port
        if (host, port) in self.listeners:
            raise OSError(98, f"address already in use: {host}:{port}")
        listener = SimListener(self, owner, host, port)
        self.listeners[(host, port)] = listener
        return listener

    def unlisten(self, listener: SimListener) -> None:
        """Forget a closed listener."""
        if self.listeners.get((listener.host, listener.port)) is listener:
            del self.listeners[(listener.host, listener.port)]

    def connect(self, opener: str, host: str, port: int) -> SimStream:
        """Open a connection from ``opener`` to whoever listens on (host, port)."""
        listener = self.listeners.get((host, port))
        if listener is None or listener.closed:
            self.stats.refused += 1
            self.trace.add("refuse", opener, f"{host}:{port}")
            raise ConnectionRefusedError(111, f"connection refused: {host}:{port}")
        owner = listener.owner
        nodes = opener != HARNESS and owner != HARNESS and opener != owner
        self._next_conn += 1
        conn = Connection(self, self._next_conn, opener, owner, (opener, owner) if nodes else None)
        self.conns[conn.id] = conn
        self.trace.add("connect", conn.id, opener, owner)
        listener.offer(SimStream(conn, conn.to_opener, conn.to_owner))
        return SimStream(conn, conn.to_owner, conn.to_opener)

    def forget(self, conn: Connection) -> None:
        """A connection both of whose ends may be gone."""
        self.conns.pop(conn.id, None)

    def carry(self, pipe: _Pipe, data: bytes) -> None:
        """Put sent bytes on their way (or discard them across a cut link)."""
        conn = pipe.conn
        key = pipe.key
        if conn.link is not None and conn.link in self.cut:
            dropped = self.stats.dropped
            dropped[key] = dropped.get(key, 0) + 1
            self.trace.add("drop", conn.id, pipe.src, pipe.dst, len(data), zlib.crc32(data))
            return
        clock = self.clock
        now = clock._now
        at = now
        if conn.link is not None:
            link = self.links.get(key) or self._link(pipe.src, pipe.dst)
            rng = self.rng
            # rng.random() * J is what rng.uniform(0, J) computes, draw for draw.
            delay = link.latency + rng.random() * LINK_JITTER_S + link.extra_latency
            if link.jitter:
                delay += rng.random() * link.jitter
            if link.loss and rng.random() < link.loss:
                delay += RETRANSMIT_S
            at = now + delay
        # TCP never reorders one connection's bytes: a chunk leaves no earlier than the last one.
        if at < pipe.last_at:
            at = pipe.last_at
        pipe.last_at = at
        pipe.chunks.append(_Chunk(data, at, bool(self.paused) and pipe.src in self.paused))
        delivered = self.stats.delivered
        delivered[key] = delivered.get(key, 0) + 1
        # Trace.add and WorldClock.call_at inlined (the same event, the same timer): two calls
        # per segment, some 47,000 segments in a 60 s seed.
        trace = self.trace
        buf = trace._buf
        buf.append((now, "send", (conn.id, pipe.src, pipe.dst, len(data), zlib.crc32(data), at)))
        if len(buf) >= TRACE_BATCH:
            trace._flush()
        if at <= now:
            pipe.wake()
        else:
            heappush(clock._timers, [at, next(clock._seq), pipe.wake])

    async def deliver(self, pipe: _Pipe, max_bytes: int) -> bytes:
        """Wait for the next deliverable bytes of ``pipe`` (b"" once it has ended).

        Everything that has arrived is returned at once, up to ``max_bytes`` (a socket's read
        returns what the kernel holds, however many segments it came in).
        """
        chunks = pipe.chunks
        while True:
            if chunks:
                head = chunks[0]
                if self.paused:
                    resumed = self.paused.get(pipe.dst)
                    if resumed is None and head.sender_paused:
                        resumed = self.paused.get(pipe.src)
                    if resumed is not None:
                        await resumed.wait()
                        continue
                head.sender_paused = False
                now = self.clock._now
                if head.deliver_at <= now:
                    await trio.lowlevel.checkpoint_if_cancelled()
                    data = self._take(chunks, now, max_bytes)
                    trace = self.trace  # Trace.add inlined, as in carry
                    buf = trace._buf
                    buf.append((now, "recv", (pipe.conn.id, pipe.dst, len(data))))
                    if len(buf) >= TRACE_BATCH:
                        trace._flush()
                    return data
            elif pipe.eof:
                await trio.lowlevel.checkpoint()
                return b""
            await pipe.park()

    def _take(self, chunks: deque[_Chunk], now: float, max_bytes: int) -> bytes:
        """Pop the arrived chunks (the head has arrived), at most ``max_bytes`` of them."""
        head = chunks[0]
        if len(head.data) > max_bytes:
            data, head.data = head.data[:max_bytes], head.data[max_bytes:]
            return data
        chunks.popleft()
        if not chunks or chunks[0].deliver_at > now or chunks[0].sender_paused:
            return head.data
        parts = [head.data]
        size = len(head.data)
        while chunks and chunks[0].deliver_at <= now and not chunks[0].sender_paused \
                and size + len(chunks[0].data) <= max_bytes:
            c = chunks.popleft()
            parts.append(c.data)
            size += len(c.data)
        return b"".join(parts)

    # ---- faults

    def cut_links(self, links: Iterable[tuple[str, str]]) -> None:
        """Discard traffic on every connection of each directed link (both streams)."""
        for link in sorted(links):
            self.cut.add(link)
        self.trace.add("cut", ",".join(f"{a}>{b}" for a, b in sorted(self.cut)))

    def heal(self) -> None:
        """Remove every cut and close the connections the cuts held (as the proxy's cleanup does)."""
        held = [c for _, c in sorted(self.conns.items()) if c.link is not None and c.link in self.cut]
        self.cut.clear()
        self.trace.add("heal", len(held))
        for conn in held:
            conn.close()

    def slow(self, links: Iterable[tuple[str, str]], latency_ms: int, jitter_ms: int) -> None:
        """Add latency (and jitter) to each directed link."""
        for a, b in sorted(links):
            link = self._link(a, b)
            link.extra_latency = latency_ms / 1000
            link.jitter = jitter_ms / 1000
        self.trace.add("slow", latency_ms, jitter_ms)

    def unslow(self) -> None:
        """Remove every added latency."""
        for key in sorted(self.links):
            self.links[key].extra_latency = 0.0
            self.links[key].jitter = 0.0
        self.trace.add("unslow")

    def pause(self, node_id: str) -> None:
        """Hold every byte to and from ``node_id`` until :meth:`resume`."""
        if node_id not in self.paused:
            self.paused[node_id] = trio.Event()
            self.trace.add("pause", node_id)

    def resume(self, node_id: str) -> None:
        """Let a paused node's bytes flow again."""
        event = self.paused.pop(node_id, None)
        if event is not None:
            self.trace.add("resume", node_id)
            event.set()

    def drop_node(self, node_id: str) -> None:
        """A killed node: its listeners vanish and its connections end (the kernel's FIN/RST)."""
        for key in sorted(self.listeners):
            listener = self.listeners[key]
            if listener.owner == node_id:
                listener.closed = True
                listener._send.close()
                del self.listeners[key]
        for cid in sorted(self.conns):
            conn = self.conns[cid]
            if node_id in (conn.opener, conn.owner):
                conn.close()
                del self.conns[cid]
        self.resume(node_id)
        self.trace.add("down", node_id)


class NodeNetwork:
    """node/runtime.py's Network for one simulated node (or for the harness)."""

    def __init__(self, net: SimNetwork, node_id: str) -> None:
        self.net = net
        self.node_id = node_id

    async def open_tcp_stream(self, host: str, port: int) -> SimStream:
        """Connect to ``host:port`` over the simulated network."""
        await trio.lowlevel.checkpoint()
        return self.net.connect(self.node_id, host, port)

    def send_nowait(self, stream: SimStream, data: bytes) -> int:
        """node/runtime.py's ``Network.send_nowait`` on a simulated stream."""
        return stream.send_nowait(data)

    async def open_tcp_listeners(self, port: int, host: str | None = None) -> list[SimListener]:
        """Listen on ``host:port``."""
        await trio.lowlevel.checkpoint()
        return [self.net.listen(self.node_id, host or self.node_id, port)]

    async def serve_listeners(
        self,
        handler: Callable[[SimStream], Awaitable[Any]],
        listeners: list[SimListener],
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve each accepted connection with ``handler`` in its own task until cancelled."""
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, handler, nursery)
            task_status.started(listeners)

    async def _accept_loop(self, listener: SimListener, handler: Callable[[SimStream], Awaitable[Any]],
                           nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except trio.ClosedResourceError:
                return
            nursery.start_soon(handler, stream)
