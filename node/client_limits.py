"""Bounds on client connections: how many, how idle, how slow, how much buffered, and what to do
when the process runs out of file descriptors.

The node's client port serves untrusted peers. Each bound below has a named error or a log line,
never a silent hang: a refused connection gets one ``Overloaded`` frame saying why, then is closed.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from node.protocol import Overloaded, encode_frame, error_response

log = logging.getLogger("node.clients")

# accept() errors that mean "out of resources", not "the listener is broken" (the list trio's
# serve_listeners uses too).
_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
# How long to wait after an accept failed for lack of resources before trying again: short, so a
# freed descriptor is used quickly, and the same as trio's serve_listeners.
_CAPACITY_RETRY_S = 0.1
# At most one log line per this many seconds about accept failures (trio logs one per 0.1 s, each
# with a traceback, which fills a disk during an fd exhaustion that lasts).
_CAPACITY_LOG_INTERVAL_S = 1.0


@dataclass
class ClientLimits:
    """[clients] in node.toml: bounds per node and per client connection."""

    # Open client connections per node; one more is answered Overloaded and closed. Cassandra's
    # native_transport_max_concurrent_connections (unlimited there by default); 1024 is far above
    # what the harness opens (one per worker per node) and bounds the memory of idle peers.
    max_connections: int = 1024
    # A connection with no request in flight and no bytes received for this long is closed. Long
    # enough for any campaign's quiet spells; Cassandra's native_transport_idle_timeout is off by
    # default, but an untrusted port without one keeps every abandoned socket forever.
    idle_timeout: float = 600.0
    # A request frame must arrive whole within this many seconds of its first byte (slowloris:
    # one byte per second keeps a connection "active" forever). nginx's client_header_timeout
    # and client_body_timeout are 60 s each; our frames are at most 16 MiB.
    frame_timeout: float = 30.0
    # Responses encoded but not yet taken by the client; beyond this the node stops reading that
    # connection's requests until the client reads (TCP then pushes back on the client).
    max_buffered_bytes: int = 64 * 1024 * 1024
    # Bytes of incomplete request frames held across all connections of the node; a connection
    # whose partial frame would pass it is answered Overloaded and closed. Bounds the memory many
    # connections each sending most of a 16 MiB frame can pin.
    max_partial_frame_bytes: int = 256 * 1024 * 1024

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        for name in ("max_connections", "idle_timeout", "frame_timeout", "max_buffered_bytes",
                     "max_partial_frame_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


class ClientGate:
    """Node-wide counters behind the limits: open connections and partial-frame bytes."""

    def __init__(self, limits: ClientLimits, node_id: str) -> None:
        self.limits = limits
        self.node_id = node_id
        self.open = 0
        self.partial_bytes = 0
        self.refused_connections = 0
        self.timed_out = 0
        self.refused_fd = 0

    def admit(self) -> str | None:
        """Count a new connection in; the refusal text if the node is at its cap."""
        if self.open >= self.limits.max_connections:
            self.refused_connections += 1
            return (f"node {self.node_id} has {self.open} client connections, the limit "
                    f"([clients] max_connections = {self.limits.max_connections}); connection refused")
        self.open += 1
        return None

    def release(self) -> None:
        """A connection admitted by :meth:`admit` closed."""
        self.open -= 1


class ConnectionBounds:
    """One connection's deadlines and buffered bytes (the server's read loop consults it)."""

    def __init__(self, gate: ClientGate) -> None:
        self.gate = gate
        self.limits = gate.limits
        self.last_activity = trio.current_time()
        self.frame_started: float | None = None
        self.partial = 0  # this connection's share of gate.partial_bytes

    def receive_deadline(self, buffered: int, busy: bool) -> float:
        """When the next receive gives up: frame timeout mid-frame, idle timeout when quiet."""
        if buffered:
            if self.frame_started is None:
                self.frame_started = trio.current_time()
            return self.frame_started + self.limits.frame_timeout
        self.frame_started = None
        if busy:
            return math.inf  # requests in flight: the client is waiting for us, not idle
        return self.last_activity + self.limits.idle_timeout

    def timed_out_reason(self, buffered: int) -> str:
        """Why a receive deadline passed, for the log."""
        self.gate.timed_out += 1
        if buffered:
            return f"incomplete request frame ({buffered} bytes) not finished within {self.limits.frame_timeout:g} s"
        return f"idle for {self.limits.idle_timeout:g} s"

    def received(self, buffered: int) -> str | None:
        """Account bytes now held in the decoder; the refusal text past the node-wide budget."""
        self.last_activity = trio.current_time()
        if buffered == 0:
            self.frame_started = None
        grow = buffered - self.partial
        self.partial = buffered
        self.gate.partial_bytes += grow
        if grow > 0 and self.gate.partial_bytes > self.limits.max_partial_frame_bytes:
            return (f"node {self.gate.node_id} holds {self.gate.partial_bytes} bytes of incomplete requests, over "
                    f"[clients] max_partial_frame_bytes = {self.limits.max_partial_frame_bytes}")
        return None

    def close(self) -> None:
        """Give this connection's partial-frame bytes back to the node-wide budget."""
        self.gate.partial_bytes -= self.partial
        self.partial = 0


def refusal_frame(reason: str) -> bytes:
    """The one frame a refused connection gets before it is closed."""
    return encode_frame(error_response(None, Overloaded(reason)))


async def refuse_connection(stream: trio.abc.Stream, reason: str) -> None:
    """Send the refusal frame (best effort, within a second) and close."""
    with trio.move_on_after(1.0):
        try:
            await stream.send_all(refusal_frame(reason))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
    with trio.CancelScope(shield=True):
        await stream.aclose()


class _Reserve:
    """One spare file descriptor, released to accept-and-refuse a connection when fds run out."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.take()

    def take(self) -> None:
        if self.fd is None:
            try:
                self.fd = os.open(os.devnull, os.O_RDONLY)
            except OSError:
                self.fd = None

    def release(self) -> bool:
        if self.fd is None:
            return False
        os.close(self.fd)
        self.fd = None
        return True

    def close(self) -> None:
        self.release()


async def serve_listeners_refusing(
    handler: Callable[[Any], Awaitable[Any]],
    listeners: list[Any],
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """trio.serve_listeners, except that out of file descriptors it refuses (and says so once a second).

    trio's version leaves new connections waiting in the backlog and logs a traceback every
    0.1 s. Here one spare descriptor is kept: when accept fails for lack of descriptors it is
    released, the waiting connection is accepted, answered with one ``Overloaded`` frame and
    closed, and the spare is taken again.
    """
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_loop, listener, handler, nursery)
        task_status.started(listeners)


async def _accept_loop(listener: Any, handler: Callable[[Any], Awaitable[Any]], nursery: trio.Nursery) -> None:
    reserve = _Reserve()
    last_log = -math.inf
    unlogged = 0
    try:
        while True:
            try:
                stream = await listener.accept()
            except trio.ClosedResourceError:
                return
            except OSError as exc:
                if exc.errno not in _CAPACITY_ERRNOS:
                    raise
                unlogged += 1
                now = trio.current_time()
                if now - last_log >= _CAPACITY_LOG_INTERVAL_S:
                    log.error("cannot accept connections on %s: %s; refusing them (%d refused since the last report)",
                              _where(listener), os.strerror(exc.errno), unlogged)
                    last_log, unlogged = now, 0
                if not _refuse_one(listener, reserve, f"out of file descriptors ({os.strerror(exc.errno)})"):
                    await trio.sleep(_CAPACITY_RETRY_S)
                    reserve.take()  # a descriptor may have been freed meanwhile
                continue
            nursery.start_soon(handler, stream)
    finally:
        reserve.close()


def _refuse_one(listener: Any, reserve: _Reserve, reason: str) -> bool:
    """Accept one waiting connection with the spare descriptor, answer ``reason`` and close it.

    Synchronous on purpose: between freeing the spare and accepting, no other task (the internode
    listener's own loop, a connect) may run and take the descriptor.
    """
    fileno = getattr(getattr(listener, "socket", None), "fileno", None)
    if fileno is None or not reserve.release():
        return False
    raw = socket.socket(fileno=fileno())  # the listener's own descriptor, detached below
    try:
        conn, _ = raw.accept()
    except OSError:
        conn = None
    finally:
        raw.detach()
    if conn is not None:
        try:
            conn.setblocking(False)
            conn.send(refusal_frame(reason))  # a few dozen bytes: fits the fresh socket's buffer
        except OSError:
            pass
        finally:
            conn.close()
    reserve.take()
    return conn is not None


def _where(listener: Any) -> str:
    try:
        host, port = listener.socket.getsockname()[:2]
        return f"{host}:{port}"
    except Exception:  # noqa: BLE001 - only for the log line
        return "a listener"
