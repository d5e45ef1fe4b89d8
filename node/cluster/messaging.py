"""Internode messaging: verbs over length-prefixed msgpack frames on per-peer TCP connections.

Each node keeps one outgoing connection per peer. Requests and one-way messages go out on it and
replies come back on the same connection; the accepting side only answers. Every connection
starts with a hello frame in each direction carrying the sender's node id, its advertised
internode address and (when the cluster has a secret) an HMAC of the id under that secret.

Frames on the wire (short keys because every request pays for them):

* hello:    ``{"h": node_id, "a": [host, port], "n": nonce}`` and the challenge-response of
  node/cluster/auth.py; after it every frame carries a MAC (``internode_insecure``: plain frames)
* request:  ``{"i": request_id, "v": verb, "p": payload}`` (answered by a reply)
* one-way:  ``{"v": verb, "p": payload}``
* reply:    ``{"r": request_id, "p": payload}`` or ``{"r": request_id, "e": "error text"}``

Throughput comes from coalescing: senders only append encoded frames to the peer's queue, and one
writer task per connection drains everything queued into a single ``send_all``. Under load that
turns hundreds of small writes (and syscalls) into one, which is how Cassandra's and Scylla's
messaging layers reach high request rates too.

Failure semantics: a request whose connection breaks, or whose peer cannot be connected to, fails
with :class:`PeerUnreachable` (it may still have been delivered if it was already written); one
that gets no reply in time fails with :class:`RequestTimeout`. After a failed connection attempt
the peer is in backoff (exponential with jitter) and requests to it fail at once instead of
queueing, so callers such as the coordinator learn quickly.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from node import protocol
from node.cluster import auth
from node.deadlines import Handle, TimingWheel
from node.outbox import Outbox, StreamOut
from node.runtime import Runtime

log = logging.getLogger("node.cluster.messaging")

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any] | None]]
InlineHandler = Callable[[str, dict[str, Any]], dict[str, Any] | None]
# A batch handler gets the (sender, payload) of every message of its verb in one read and returns
# one result each, in order: the reply payload, or the exception that failed that message.
BatchHandler = Callable[[list[tuple[str, dict[str, Any]]]], list["dict[str, Any] | None | Exception"]]
ReplyCallback = Callable[[dict[str, Any] | None, "MessagingError | None"], None]

# Frames queued per peer before send() starts dropping: at the ~12k QUORUM writes/s the cluster
# bench targets, this is over half a second of traffic to one replica, enough to ride out a
# scheduling hiccup, while a peer that stopped reading (SIGSTOP) costs bounded memory.
DEFAULT_MAX_QUEUE = 8192

# A connect to a live loopback/LAN peer takes milliseconds; a peer that does not answer within
# this is treated as unreachable rather than stalling every request queued behind it.
CONNECT_TIMEOUT = 2.0

# First retry delay after a failed connect, doubled per consecutive failure up to BACKOFF_MAX.
# Short, because a restarted node should be reachable again within a gossip round or two.
BACKOFF_INITIAL = 0.05

# Cap on the retry delay: below the 1 s gossip interval, so a peer that comes back is retried
# no later than the next gossip round that wants it.
BACKOFF_MAX = 1.0

# Read size per receive: large enough that a burst of coalesced frames arrives in one syscall.
RECV_BYTES = 256 * 1024

# Handlers running at once per incoming connection. When reached, the reader stops reading and
# TCP flow control pushes back on the sender instead of us buffering unbounded work.
MAX_INFLIGHT_HANDLERS = 1024

# Request deadlines are kept in buckets of this width (a timing wheel) and the reaper fails a
# bucket's unanswered requests when the bucket ends: at thousands of requests/s a wake-up or a
# heap operation per deadline cost as much as the request. Timeouts are seconds, so firing up to
# 10 ms late (never early) changes nothing a caller can tell.
REAPER_RESOLUTION_S = 0.01

# How long an accepted connection may take to send its hello before we close it (slowloris).
HANDSHAKE_TIMEOUT = 5.0

# Listening on these says nothing about where the node can be reached, so they are not learnt.
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")

# A refusal quotes what a peer sent (its claimed node id, say): logged clipped (node/protocol.py).
clipped = protocol.clipped


class MessagingError(Exception):
    """Base class of messaging failures."""


class PeerUnreachable(MessagingError):
    """The peer could not be reached, or the connection broke before the reply arrived."""


class QueueFull(PeerUnreachable):
    """The peer's outgoing queue is full (it is not reading fast enough, or not at all)."""


class RequestTimeout(MessagingError):
    """No reply arrived within the request's timeout; the request may have been applied."""


class RemoteError(MessagingError):
    """The peer's handler failed (or the verb is unknown there); the text is the peer's."""


@dataclass
class MessagingStats:
    """Counters for ``ringctl status`` and benches."""

    requests_sent: int = 0
    oneways_sent: int = 0
    dropped_queue_full: int = 0
    dropped_unreachable: int = 0
    connects: int = 0
    connect_failures: int = 0
    interrupted: int = 0
    rejected_connections: int = 0
    writes: int = 0
    frames_written: int = 0


class _Pending:
    """One request awaiting its reply (a slots class: a dataclass with a default factory cost
    more to build than the rest of sending the request)."""

    __slots__ = ("event", "reply", "error", "callback", "owner", "rid", "peer", "done", "wheel", "deadline")

    def __init__(self, event: trio.Event | None = None, callback: ReplyCallback | None = None,
                 owner: dict[int, _Pending] | None = None, rid: int = 0, peer: str = "") -> None:
        self.event = event
        self.reply: dict[str, Any] | None = None
        self.error: MessagingError | None = None
        # Callback requests (request_callback) have no waiting task: whoever resolves them (reader,
        # reaper, connection teardown) removes them from the peer's table and calls this.
        self.callback = callback
        self.owner = owner
        self.rid = rid
        self.peer = peer
        self.done = False
        # The request timeout's entry in the reaper's wheel, cancelled once resolved (so neither
        # the request nor its callback's write state stays alive until the deadline).
        self.wheel: TimingWheel | None = None
        self.deadline: Handle | None = None

    def resolve(self, reply: dict[str, Any] | None, error: MessagingError | None = None) -> None:
        if self.done:
            return
        self.done = True
        if self.wheel is not None:
            self.wheel.cancel(self.deadline)
            self.wheel = None
        self.reply = reply
        self.error = error
        if self.event is not None:
            self.event.set()
            return
        if self.owner is not None:
            self.owner.pop(self.rid, None)
        if error is None:
            reply = reply or {}
            if "e" in reply:
                error = RemoteError(f"{self.peer}: {reply['e']}")
            else:
                body = reply.get("p")
                reply = body if isinstance(body, dict) else {}
        callback, self.callback, self.reply = self.callback, None, None
        assert callback is not None
        try:
            callback(None if error is not None else reply, error)
        except Exception:
            # A caller's bug must not take down the connection reader or the reaper.
            log.exception("reply callback for request %d to %s failed", self.rid, self.peer)


class _Peer(StreamOut):
    """Outgoing side of one peer: queue, connection state and requests awaiting replies."""

    def __init__(self, node_id: str, outbox: Outbox, stats: MessagingStats) -> None:
        super().__init__(outbox)
        self.node_id = node_id
        self.stats = stats
        self.state = "idle"  # idle | connecting | up | backoff
        self.failures = 0
        self.demand = trio.Event()
        self.pending: dict[int, _Pending] = {}
        self.conn_scope: trio.CancelScope | None = None
        self.got_hello = False
        self.remote_id: str | None = None
        self.connected_addr: tuple[str, int] | None = None
        # Per connection (node/cluster/auth.py): our nonce, the sealer for what we send (the
        # StreamOut's) and the proof we owe the acceptor once its hello checked out.
        self.nonce = b""
        self.proof: bytes | None = None
        self.in_key = b""
        self.handshake = trio.Event()

    def wake(self) -> None:
        self.demand.set()
        StreamOut.wake(self)

    def wrote(self, frames: int) -> None:
        self.stats.writes += 1
        self.stats.frames_written += frames


class _Incoming(StreamOut):
    """Accepted side of one connection: the replies waiting to be written."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__(outbox)
        self.slots = trio.Semaphore(MAX_INFLIGHT_HANDLERS)


class _BadPeer(Exception):
    """The other end broke the internode protocol; close that connection."""


class Messaging:
    """Verb-based request/response and one-way messaging between cluster nodes."""

    def __init__(
        self,
        runtime: Runtime,
        node_id: str,
        listen_host: str,
        listen_port: int,
        routes: dict[str, tuple[str, int]] | None = None,
        secret: str = "",
        max_queue: int = DEFAULT_MAX_QUEUE,
        insecure: bool = False,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self.runtime = runtime
        self.node_id = node_id
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.max_queue = max_queue
        self.stats = MessagingStats()
        # The readers' batches (node/outbox.py), shared with the node's client port.
        self.outbox = Outbox(runtime.network)
        self.port: int | None = None  # the bound port while run() is serving
        self._secret = secret
        # With a secret every connection is authenticated and every frame MACed; without one the
        # node talks to no peer unless the insecure dev mode was asked for by name.
        self._key = auth.cluster_key(secret) if secret else None
        self._refusal = None if secret or insecure else (
            "no cluster_secret: internode traffic refused (set internode_insecure = true for an "
            "unauthenticated dev cluster)")
        self._refusal_logged = False
        self._nonces = itertools.count()
        self._routes: dict[str, tuple[str, int]] = dict(routes or {})
        self._addresses: dict[str, tuple[str, int]] = {}
        self._learned: dict[str, tuple[str, int]] = {}
        self._handlers: dict[str, Handler] = {}
        self._inline_handlers: dict[str, InlineHandler] = {}
        self._batched: dict[str, BatchHandler] = {}
        # Raw connections by their first four bytes (node/rangecopy.py's file streams).
        self._streams: dict[bytes, Callable[[trio.SocketStream], Awaitable[None]]] = {}
        self._peers: dict[str, _Peer] = {}
        self._ids = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        # Request timeouts: a timing wheel, run as the reaper task (node/deadlines.py).
        self._wheel = TimingWheel(REAPER_RESOLUTION_S)

    # ------------------------------------------------------------------ configuration

    def register(self, verb: str, handler: Handler) -> None:
        """Serve ``verb`` with ``handler(sender_id, payload)``; its return value is the reply payload."""
        self._inline_handlers.pop(verb, None)
        self._batched.pop(verb, None)
        self._handlers[verb] = handler

    def register_inline(self, verb: str, handler: InlineHandler) -> None:
        """Serve ``verb`` with a synchronous ``handler(sender_id, payload)`` run in the reader itself.

        For handlers that never wait (a replica's in-memory apply or read): no task per request,
        and a coalesced batch of such requests is answered in one pass.
        """
        self._handlers.pop(verb, None)
        self._batched.pop(verb, None)
        self._inline_handlers[verb] = handler

    def register_batch(self, verb: str, handler: BatchHandler) -> None:
        """Serve ``verb`` with a synchronous ``handler([(sender_id, payload), ...])`` run in the
        reader once per read for all of that read's messages of the verb (in order; a message of
        another verb first runs those before it). For a replica's mutations: one commit log write
        for a whole coalesced batch instead of one each.
        """
        self._handlers.pop(verb, None)
        self._inline_handlers.pop(verb, None)
        self._batched[verb] = handler

    def register_stream(self, magic: bytes, handler: Callable[[trio.SocketStream], Awaitable[None]]) -> None:
        """Hand an incoming connection that opens with ``magic`` to ``handler(stream)``.

        ``magic`` is 4 bytes that no frame can start with (read as a frame length, past
        MAX_FRAME_BYTES), so such a connection shares the internode port and its routes (a
        fault proxy's link cuts it like any message).
        """
        if len(magic) != 4 or int.from_bytes(magic, "big") <= protocol.MAX_FRAME_BYTES:
            raise ValueError(f"stream magic {magic!r} could be the start of a frame")
        self._streams[magic] = handler

    def set_address(self, node_id: str, host: str, port: int) -> None:
        """Reach ``node_id`` at ``host:port`` (unless a route overrides it)."""
        self._set(self._addresses, node_id, (host, port))

    def set_route(self, node_id: str, host: str, port: int) -> None:
        """Reach ``node_id`` at ``host:port`` whatever its advertised address (a fault proxy)."""
        self._set(self._routes, node_id, (host, port))

    def address_of(self, node_id: str) -> tuple[str, int] | None:
        """Where a connection to ``node_id`` would go: route, then set address, then learned."""
        return self._routes.get(node_id) or self._addresses.get(node_id) or self._learned.get(node_id)

    def remote_id(self, peer: str) -> str | None:
        """The node id the peer announced in its hello on our current connection, if any."""
        p = self._peers.get(peer)
        return p.remote_id if p is not None else None

    def is_connected(self, peer: str) -> bool:
        """Whether an outgoing connection to ``peer`` is established."""
        p = self._peers.get(peer)
        return p is not None and p.state == "up"

    def interrupt(self, peer: str) -> None:
        """Close the outgoing connection to a peer the failure detector convicted (Cassandra's
        interruptOutbound on convict). Through a partition that dropped packets, the kernel backs
        the old connection's retransmissions off to many seconds, so after the heal a request
        on it would wait for the next retransmission; the next message connects afresh."""
        p = self._peers.get(peer)
        if p is None:
            return
        if p.conn_scope is not None:
            self.stats.interrupted += 1
            p.conn_scope.cancel()
        p.failures = 0

    def _set(self, table: dict[str, tuple[str, int]], node_id: str, addr: tuple[str, int]) -> None:
        before = self.address_of(node_id)
        table[node_id] = addr
        p = self._peers.get(node_id)
        if p is not None and before != self.address_of(node_id):
            # The peer moved (restarted elsewhere, or a proxy was put in front): drop the old
            # connection and let the next message connect to the new address.
            if p.conn_scope is not None:
                p.conn_scope.cancel()
            if p.state == "backoff":
                p.failures = 0

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on the internode port and run every connection task until cancelled."""
        listeners = await self.runtime.network.open_tcp_listeners(self.listen_port, host=self.listen_host)
        port = listeners[0].socket.getsockname()[1]
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.port = port
                nursery.start_soon(self._wheel.run)
                await nursery.start(self.runtime.network.serve_listeners, self._serve_incoming, listeners)
                log.info("node %s: internode messaging listening on %s:%d", self.node_id, self.listen_host, port)
                task_status.started(port)
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self.port = None
            for p in self._peers.values():
                self._fail_peer(p, "messaging stopped")
            self._peers = {}
            for listener in listeners:
                with trio.CancelScope(shield=True):
                    await listener.aclose()

    # ------------------------------------------------------------------ sending

    def send(self, peer: str, verb: str, payload: dict[str, Any]) -> bool:
        """Queue a one-way message; False (and a counted drop) if the queue is full or the peer down."""
        if peer == self.node_id:
            return self._deliver_locally(verb, payload)
        p = self._peer(peer)
        if p is None or p.state == "backoff":
            self.stats.dropped_unreachable += 1
            return False
        if len(p.frames) >= self.max_queue:
            self.stats.dropped_queue_full += 1
            return False
        p.frames.append(protocol.encode_frame({"v": verb, "p": payload}))
        self.stats.oneways_sent += 1
        p.wake()
        return True

    async def request(self, peer: str, verb: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a request and wait for its reply payload (RequestTimeout, PeerUnreachable, RemoteError)."""
        if peer == self.node_id:
            return await self._request_locally(verb, payload, timeout)
        p = self._sendable(peer)
        rid = next(self._ids)
        frame = protocol.encode_request(rid, verb, payload)
        pending = _Pending(trio.Event())
        p.pending[rid] = pending
        p.frames.append(frame)
        self.stats.requests_sent += 1
        p.wake()
        self._expire_at(trio.current_time() + timeout, pending, peer, verb, timeout)
        try:
            await pending.event.wait()  # type: ignore[union-attr]
        finally:
            p.pending.pop(rid, None)
        if pending.error is not None:
            raise pending.error
        reply = pending.reply or {}
        if "e" in reply:
            raise RemoteError(f"{peer}: {reply['e']}")
        body = reply.get("p")
        return body if isinstance(body, dict) else {}

    def request_callback(
        self, peer: str, verb: str, payload: dict[str, Any] | protocol.Packed, timeout: float, callback: ReplyCallback
    ) -> None:
        """Send a request whose outcome goes to ``callback(reply_payload, None)`` or ``callback(None, error)``.

        The same semantics as :meth:`request` without a task waiting for each reply: a
        coordinator fanning a write out to its replicas would otherwise pay for one task per
        replica. Failures known at once (peer in backoff, queue full, not running) raise here
        instead; the callback is then never called. Not for ``peer`` == this node. ``payload`` may
        be :func:`protocol.pack_map`'s packing of it, when the same goes to several peers.
        """
        p = self._sendable(peer)
        rid = next(self._ids)
        frame = protocol.encode_request(rid, verb, payload)
        pending = _Pending(event=None, callback=callback, owner=p.pending, rid=rid, peer=peer)
        p.pending[rid] = pending
        p.frames.append(frame)
        self.stats.requests_sent += 1
        p.wake()
        self._expire_at(trio.current_time() + timeout, pending, peer, verb, timeout)

    def _sendable(self, peer: str) -> _Peer:
        """The peer's queue, or the reason a request cannot be queued for it now."""
        p = self._peer(peer)
        if p is None:
            raise PeerUnreachable(f"{self.node_id}: messaging is not running")
        if p.state == "backoff":
            self.stats.dropped_unreachable += 1
            raise PeerUnreachable(
                f"{self.node_id}: peer {peer} is unreachable (reconnecting after {p.failures} failure(s))"
            )
        if len(p.frames) >= self.max_queue:
            self.stats.dropped_queue_full += 1
            raise QueueFull(f"{self.node_id}: outgoing queue to {peer} is full ({self.max_queue} frames)")
        return p

    def _expire_at(self, deadline: float, pending: _Pending, peer: str, verb: str, timeout: float) -> None:
        """Have the reaper fail ``pending`` with RequestTimeout at ``deadline`` unless answered.

        One reaper task and a timing wheel replace a cancel scope per request: entering and
        leaving a scope costs about as much as the rest of a request, and requests almost always
        finish long before their deadline.
        """
        if math.isinf(deadline):
            return  # no timeout: only an answer or the connection's end resolves it
        pending.wheel = self._wheel
        pending.deadline = self._wheel.add(deadline, self._timed_out, (pending, peer, verb, timeout))

    def _timed_out(self, entry: tuple[_Pending, str, str, float]) -> None:
        """The reaper: a request's deadline passed without a reply."""
        pending, peer, verb, timeout = entry
        if not pending.done:
            pending.wheel = None  # its entry fired
            pending.resolve(None, RequestTimeout(f"{self.node_id}: no reply from {peer} to {verb} within {timeout:g} s"))

    def _peer(self, node_id: str) -> _Peer | None:
        p = self._peers.get(node_id)
        if p is None:
            if self._nursery is None:
                return None
            p = self._peers[node_id] = _Peer(node_id, self.outbox, self.stats)
            self._nursery.start_soon(self._peer_loop, p)
        return p

    def _deliver_locally(self, verb: str, payload: dict[str, Any]) -> bool:
        batched = self._batched.get(verb)
        if batched is not None and self._nursery is not None:
            result = batched([(self.node_id, payload)])[0]
            if isinstance(result, Exception):
                log.error("node %s: local one-way %s failed", self.node_id, verb, exc_info=result)
            return True
        inline = self._inline_handlers.get(verb)
        if inline is not None and self._nursery is not None:
            try:
                inline(self.node_id, payload)
            except Exception:
                log.exception("node %s: local one-way %s failed", self.node_id, verb)
            return True
        if self._nursery is None or verb not in self._handlers:
            self.stats.dropped_unreachable += 1
            return False
        self._nursery.start_soon(self._run_local_oneway, verb, payload)
        return True

    async def _run_local_oneway(self, verb: str, payload: dict[str, Any]) -> None:
        try:
            await self._handlers[verb](self.node_id, payload)
        except Exception:
            log.exception("node %s: local one-way %s failed", self.node_id, verb)

    async def _request_locally(self, verb: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        batched = self._batched.get(verb)
        if batched is not None:
            first = batched([(self.node_id, payload)])[0]
            if isinstance(first, Exception):
                raise RemoteError(f"{self.node_id}: {type(first).__name__}: {first}") from first
            return first if isinstance(first, dict) else {}
        inline = self._inline_handlers.get(verb)
        if inline is not None:
            try:
                answer = inline(self.node_id, payload)
            except Exception as exc:
                raise RemoteError(f"{self.node_id}: {type(exc).__name__}: {exc}") from exc
            return answer if isinstance(answer, dict) else {}
        handler = self._handlers.get(verb)
        if handler is None:
            raise RemoteError(f"{self.node_id}: unknown verb {verb!r}")
        result: dict[str, Any] | None = None
        with trio.move_on_after(timeout) as scope:
            try:
                result = await handler(self.node_id, payload)
            except Exception as exc:
                raise RemoteError(f"{self.node_id}: {type(exc).__name__}: {exc}") from exc
        if scope.cancelled_caught:
            raise RequestTimeout(f"{self.node_id}: local {verb} took longer than {timeout:g} s")
        return result if isinstance(result, dict) else {}

    # ------------------------------------------------------------------ outgoing connections

    async def _peer_loop(self, p: _Peer) -> None:
        """Connect to the peer whenever something is queued for it; back off after failures."""
        while True:
            if not p.frames:
                p.demand = trio.Event()
                await p.demand.wait()
            addr = self.address_of(p.node_id)
            if addr is None:
                self._fail_peer(p, f"no known address for {p.node_id}")
                continue
            p.state = "connecting"
            if self._refusal is not None:
                self._log_refusal()
                await self._backoff(p, self._refusal)
                continue
            stream: trio.SocketStream | None = None
            error = "connect timed out"
            with trio.move_on_after(CONNECT_TIMEOUT):
                try:
                    stream = await self.runtime.network.open_tcp_stream(addr[0], addr[1])
                except OSError as exc:
                    error = str(exc) or type(exc).__name__
            if stream is None:
                self.stats.connect_failures += 1
                await self._backoff(p, f"cannot connect to {p.node_id} at {addr[0]}:{addr[1]}: {error}")
                continue
            self.stats.connects += 1
            p.connected_addr = addr
            await self._run_outgoing(p, stream)
            if p.got_hello:
                p.failures = 0
                p.state = "idle"
            else:
                # Accepted and closed without a hello: wrong secret, or not a ringlab node.
                await self._backoff(p, f"{p.node_id} at {addr[0]}:{addr[1]} closed the connection during the handshake")

    async def _backoff(self, p: _Peer, reason: str) -> None:
        p.failures += 1
        p.state = "backoff"
        self._fail_peer(p, reason)
        delay = min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (p.failures - 1))
        # Jitter spreads the retries of many nodes so a restarted peer is not hit all at once.
        delay *= self.runtime.rng.uniform(0.5, 1.0)
        log.debug("node %s: %s; retry in %.3f s", self.node_id, reason, delay)
        await self.runtime.clock.sleep(delay)
        if p.state == "backoff":
            p.state = "idle"

    def _fail_peer(self, p: _Peer, reason: str) -> None:
        """Fail every request waiting on this peer and drop what is queued for it."""
        if p.frames:
            self.stats.dropped_unreachable += len(p.frames)
            p.frames = []
        if p.pending:
            error = PeerUnreachable(f"{self.node_id}: {reason}")
            # A copy: resolving a callback request removes it from p.pending.
            for pending in list(p.pending.values()):
                pending.resolve(None, error)
            p.pending.clear()

    def _log_refusal(self) -> None:
        if not self._refusal_logged:
            self._refusal_logged = True
            log.error("node %s: %s", self.node_id, self._refusal)

    async def _run_outgoing(self, p: _Peer, stream: trio.SocketStream) -> None:
        p.state = "up"
        p.got_hello = False
        p.remote_id = None
        p.sealer, p.proof, p.handshake = None, None, trio.Event()
        hello_msg: dict[str, Any] = {"h": self.node_id, "a": [self.listen_host, self.port or 0]}
        if self._key is not None:
            p.nonce = hello_msg["n"] = auth.new_nonce(self.runtime, next(self._nonces))
        hello = protocol.encode_frame(hello_msg)
        try:
            async with trio.open_nursery() as nursery:
                p.conn_scope = nursery.cancel_scope
                nursery.start_soon(self._guard, self._outgoing_writer, p, stream, hello, nursery.cancel_scope)
                await self._guard(self._outgoing_reader, p, stream, None, nursery.cancel_scope)
        finally:
            p.conn_scope = None
            p.state = "idle"
            with trio.CancelScope(shield=True):
                await stream.aclose()
            self._fail_peer(p, f"connection to {p.node_id} closed")

    async def _guard(
        self, fn: Callable[..., Awaitable[None]], p: _Peer | _Incoming, stream: trio.SocketStream,
        extra: Any, scope: trio.CancelScope,
    ) -> None:
        """Run one side of a connection; any I/O or protocol failure closes just that connection."""
        try:
            await fn(p, stream, extra)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("node %s: connection closed: %s", self.node_id, exc)
        except (protocol.ProtocolError, _BadPeer) as exc:
            log.warning("node %s: closing internode connection: %s", self.node_id, clipped(str(exc)))
        finally:
            scope.cancel()

    async def _outgoing_writer(self, p: _Peer, stream: trio.SocketStream, hello: bytes) -> None:
        await stream.send_all(hello)
        if self._key is not None:
            # Nothing but the proof goes out before the acceptor proved itself.
            await p.handshake.wait()
            assert p.proof is not None
            await stream.send_all(protocol.encode_frame({"m": p.proof}))
        await p.write_frames(stream)

    async def _outgoing_reader(self, p: _Peer, stream: trio.SocketStream, _: Any) -> None:
        decoder = protocol.FrameDecoder()
        outbox = self.outbox
        while True:
            data = await stream.receive_some(RECV_BYTES)
            if not data:
                return
            decoder.feed(data)
            # What the replies' callbacks queue (a client's answer, the next request) goes out
            # when this read's replies are done (node/outbox.py).
            outbox.begin()
            try:
                while (msg := decoder.next_message()) is not None:
                    if not p.got_hello:
                        p.remote_id = self._check_hello(msg)
                        if self._key is not None:
                            self._accept_server_hello(p, msg)
                            # Everything after the hello is sealed: the rest of this read too.
                            decoder = auth.OpeningDecoder(p.in_key, decoder.take_buffered())
                        self._learn_address(p.remote_id, msg)
                        p.got_hello = True
                        continue
                    rid = msg.get("r")
                    pending = p.pending.pop(rid, None) if isinstance(rid, int) else None
                    if pending is not None:
                        pending.resolve(msg)
            finally:
                outbox.end()

    def _accept_server_hello(self, p: _Peer, msg: dict[str, Any]) -> None:
        """Connector side: check the acceptor's proof over our nonce; derive keys, owe our proof."""
        assert self._key is not None
        server = str(msg.get("h"))
        try:
            sn = auth.check_nonce(msg.get("n"), server)
            auth.check_proof(self._key, msg.get("m"), "server", p.nonce, sn, server, self.node_id)
        except auth.AuthError as exc:
            self.stats.rejected_connections += 1
            raise _BadPeer(str(exc)) from None
        out_key, in_key = auth.session_keys(self._key, p.nonce, sn)
        p.sealer = auth.Sealer(out_key)
        p.in_key = in_key
        p.proof = auth.proof(self._key, "client", p.nonce, sn, self.node_id, server)
        p.handshake.set()

    def _check_hello(self, msg: dict[str, Any]) -> str:
        """Validate a hello frame; returns the sender's node id or raises _BadPeer."""
        node_id = msg.get("h")
        if not isinstance(node_id, str) or not node_id:
            raise _BadPeer(f"expected a hello frame first, got keys {sorted(map(str, msg))[:5]}")
        return node_id

    def _learn_address(self, node_id: str, msg: dict[str, Any]) -> None:
        """Note the internode address an authenticated peer's hello advertises (a peer no route or
        gossip names yet is reached there). Only after the handshake: an unauthenticated hello
        could otherwise point this node's connections to a real peer id at any address."""
        addr = msg.get("a")
        if (
            isinstance(addr, list) and len(addr) == 2 and isinstance(addr[0], str)
            and isinstance(addr[1], int) and 0 < addr[1] < 65536
            and addr[0] not in _WILDCARD_HOSTS
        ):
            self._learned[node_id] = (addr[0], addr[1])

    # ------------------------------------------------------------------ incoming connections

    async def _serve_incoming(self, stream: trio.SocketStream) -> None:
        # Never let one connection's failure escape: serve_listeners would take the port down.
        try:
            async with stream:
                await self._serve_incoming_inner(stream)
        except Exception:
            log.exception("node %s: internode connection handler failed", self.node_id)

    async def _serve_incoming_inner(self, stream: trio.SocketStream) -> None:
        if self._refusal is not None:
            self._log_refusal()
            return
        decoder: protocol.FrameDecoder = protocol.FrameDecoder()
        sender: str | None = None
        hello: dict[str, Any] = {}
        conn = _Incoming(self.outbox)
        authenticated = self._key is None
        if self._streams:
            first = b""
            with trio.move_on_after(HANDSHAKE_TIMEOUT):
                try:
                    while len(first) < 4:
                        data = await stream.receive_some(4 - len(first))
                        if not data:
                            return
                        first += data
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    return
            handler = self._streams.get(first)
            if handler is not None:
                await handler(stream)
                return
            decoder.feed(first)
        try:
            with trio.move_on_after(HANDSHAKE_TIMEOUT):
                while sender is None or not authenticated:
                    msg = decoder.next_message()
                    if msg is None:
                        data = await stream.receive_some(RECV_BYTES)
                        if not data:
                            return
                        decoder.feed(data)
                        continue
                    if sender is None:
                        sender = self._check_hello(msg)
                        hello = msg
                        if self._key is not None:
                            cn, sn, proof_due = self._answer_hello(sender, msg)
                            await stream.send_all(self._hello_frame({"n": sn, "m": proof_due}))
                        continue
                    assert self._key is not None
                    auth.check_proof(self._key, msg.get("m"), "client", cn, sn, sender, self.node_id)
                    in_key, out_key = auth.session_keys(self._key, cn, sn)
                    conn.sealer = auth.Sealer(out_key)
                    decoder = auth.OpeningDecoder(in_key, decoder.take_buffered())
                    authenticated = True
        except (protocol.ProtocolError, _BadPeer, auth.AuthError) as exc:
            if isinstance(exc, auth.AuthError):
                self.stats.rejected_connections += 1
            log.warning("node %s: refusing internode connection: %s", self.node_id, clipped(str(exc)))
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
        if sender is None or not authenticated:
            log.warning("node %s: no complete handshake within %g s; closing", self.node_id, HANDSHAKE_TIMEOUT)
            return
        self._learn_address(sender, hello)
        if self._key is None:
            conn.push(self._hello_frame({}))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._guard, self._incoming_writer, conn, stream, None, nursery.cancel_scope)
            await self._guard(self._incoming_reader, conn, stream, (decoder, sender, nursery), nursery.cancel_scope)

    def _hello_frame(self, extra: dict[str, Any]) -> bytes:
        return protocol.encode_frame({"h": self.node_id, "a": [self.listen_host, self.port or 0], **extra})

    def _answer_hello(self, sender: str, msg: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
        """Acceptor side: (their nonce, ours, our proof); AuthError for a hello without a nonce."""
        assert self._key is not None
        cn = auth.check_nonce(msg.get("n"), sender)
        sn = auth.new_nonce(self.runtime, next(self._nonces))
        return cn, sn, auth.proof(self._key, "server", cn, sn, self.node_id, sender)

    async def _incoming_writer(self, conn: _Incoming, stream: trio.SocketStream, _: Any) -> None:
        await conn.write_frames(stream)

    async def _incoming_reader(
        self, conn: _Incoming, stream: trio.SocketStream, ctx: tuple[protocol.FrameDecoder, str, trio.Nursery]
    ) -> None:
        decoder, sender, nursery = ctx
        batched = self._batched
        outbox = self.outbox
        # Messages of batched verbs in this read, not yet handled: verb -> [(rid, payload)]
        held: dict[str, list[tuple[int | None, dict[str, Any]]]] = {}
        while True:
            # The replies (and whatever else the handlers queue) go out when this read's
            # messages are handled, written by this task (node/outbox.py).
            outbox.begin()
            try:
                while (msg := decoder.next_message()) is not None:
                    verb = msg.get("v")
                    rid = msg.get("i")
                    payload = msg.get("p")
                    if not isinstance(verb, str) or (rid is not None and not isinstance(rid, int)):
                        raise _BadPeer(f"malformed message from {sender}: keys {sorted(map(str, msg))[:5]}")
                    if not isinstance(payload, dict):
                        payload = {}
                    if verb in batched:
                        held.setdefault(verb, []).append((rid, payload))
                        continue
                    if held:
                        # Per-connection order as before: what came earlier is handled first.
                        self._run_batches(conn, sender, held)
                    inline = self._inline_handlers.get(verb)
                    if inline is not None:
                        self._handle_inline(conn, sender, verb, rid, payload, inline)
                        continue
                    try:
                        # Non-blocking first: an awaited acquire yields to the scheduler once per
                        # message, which would drain a coalesced batch one message per loop turn.
                        conn.slots.acquire_nowait()
                    except trio.WouldBlock:
                        outbox.end()  # no batch spans a wait
                        try:
                            await conn.slots.acquire()
                        finally:
                            outbox.begin()
                    nursery.start_soon(self._handle, conn, sender, verb, rid, payload)
                if held:
                    self._run_batches(conn, sender, held)
            finally:
                outbox.end()
            data = await stream.receive_some(RECV_BYTES)
            if not data:
                return
            decoder.feed(data)

    def _run_batches(self, conn: _Incoming, sender: str, held: dict[str, list[tuple[int | None, dict[str, Any]]]]) -> None:
        """Run the held messages' batch handlers and queue their replies; empties ``held``."""
        for verb, items in held.items():
            handler = self._batched.get(verb)
            try:
                if handler is None:
                    raise RuntimeError(f"verb {verb!r} is no longer served")
                results = handler([(sender, payload) for _, payload in items])
                if len(results) != len(items):
                    raise RuntimeError(f"batch handler for {verb} answered {len(results)} of {len(items)} messages")
            except Exception as exc:
                results = [exc] * len(items)
            for (rid, _), result in zip(items, results):
                if isinstance(result, Exception):
                    log.error("node %s: handler for %s from %s failed", self.node_id, verb, sender, exc_info=result)
                    self._push_reply(conn, verb, rid, {"r": rid, "e": f"{type(result).__name__}: {result}"})
                elif not result:
                    if rid is not None:
                        conn.frames.append(protocol.encode_empty_reply(rid))
                else:
                    self._push_reply(conn, verb, rid, {"r": rid, "p": result if isinstance(result, dict) else {}})
        held.clear()
        conn.wake()  # the acknowledgements appended above: one wake-up for all of them

    def _handle_inline(
        self, conn: _Incoming, sender: str, verb: str, rid: int | None, payload: dict[str, Any], handler: InlineHandler
    ) -> None:
        try:
            result = handler(sender, payload)
        except Exception as exc:
            log.exception("node %s: handler for %s from %s failed", self.node_id, verb, sender)
            reply: dict[str, Any] = {"r": rid, "e": f"{type(exc).__name__}: {exc}"}
        else:
            if not result and rid is not None:
                # An acknowledgement (every replica write): its frame without building a map.
                conn.push(protocol.encode_empty_reply(rid))
                return
            reply = {"r": rid, "p": result if isinstance(result, dict) else {}}
        self._push_reply(conn, verb, rid, reply)

    @staticmethod
    def _push_reply(conn: _Incoming, verb: str, rid: int | None, reply: dict[str, Any]) -> None:
        """Queue a handler's reply (nothing for one-way messages); an unencodable one becomes an error."""
        if rid is None:
            return
        try:
            frame = protocol.encode_frame(reply)
        except protocol.ProtocolError as exc:
            frame = protocol.encode_frame({"r": rid, "e": f"reply to {verb} cannot be encoded: {exc}"})
        conn.push(frame)

    async def _handle(self, conn: _Incoming, sender: str, verb: str, rid: int | None, payload: dict[str, Any]) -> None:
        reply: dict[str, Any]
        try:
            handler = self._handlers.get(verb)
            if handler is None:
                reply = {"r": rid, "e": f"unknown verb {verb!r}"}
            else:
                try:
                    result = await handler(sender, payload)
                except Exception as exc:
                    log.exception("node %s: handler for %s from %s failed", self.node_id, verb, sender)
                    reply = {"r": rid, "e": f"{type(exc).__name__}: {exc}"}
                else:
                    reply = {"r": rid, "p": result if isinstance(result, dict) else {}}
            # A batch of one: written by this task if the writer is idle (node/outbox.py).
            self.outbox.begin()
            try:
                self._push_reply(conn, verb, rid, reply)
            finally:
                self.outbox.end()
        finally:
            conn.slots.release()
