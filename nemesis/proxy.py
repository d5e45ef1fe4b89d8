"""A TCP fault proxy that speaks Toxiproxy's HTTP API (v2), written with Trio and h11.

No Toxiproxy server can be installed from the package registries, so ringlab ships this one and
starts it for local runs; the harness drives it with the ``toxiproxy-python`` client exactly as it
would drive Shopify's server (same paths, JSON bodies and status codes).

Structure (every task has an owner, nothing is fire-and-forget):

* :class:`ProxyServer` holds the proxies by name and a nursery in which each enabled proxy runs;
* :class:`Proxy` runs its listener and one nursery holding every connection it accepted;
  disabling or deleting it cancels that nursery, which closes the listener and every connection;
* :class:`_Connection` owns the two TCP streams and a nursery with one reader and one writer per
  direction (:class:`_Link`) plus the timers of its toxics;
* a :class:`Toxic` is a stage a chunk of bytes goes through on its way from reader to writer.

Partition semantics (the ``timeout`` toxic) follow Toxiproxy: while it is active on a direction,
bytes read from the sender are read and discarded (so the sender's writes never block and nothing
is delivered late on heal); with ``timeout`` > 0 the connection is closed once no byte has arrived
for that long; with ``timeout`` = 0 it is held open forever. Removing a ``timeout`` toxic closes the
connections it was holding, as Toxiproxy's cleanup does, so a healed link carries traffic again on
fresh connections. See docs/fault-proxy.md.
"""

from __future__ import annotations

import argparse
import functools
import hmac
import json
import logging
import math
import os
import random
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import h11
import trio

log = logging.getLogger("ringlab.proxy")

# The API version we speak; clients check the "2." prefix to know the v2 API is served.
VERSION = "2.12.0-ringlab"
# Toxiproxy's default API port, so clients that assume it need no configuration.
DEFAULT_API_PORT = 8474
# Bytes per read from a proxied socket: big enough for bulk transfers, small enough that the
# slicer and bandwidth toxics see realistic chunk sizes (Toxiproxy reads 32 KiB as well).
READ_SIZE = 32 * 1024
# Chunks buffered between a link's reader and writer. Latency must not stall the reader (each
# chunk is delayed from its own arrival time), so the buffer is deep; bounded so that a slow
# writer still pushes back on the sender through TCP.
LINK_BUFFER_CHUNKS = 256
# Toxiproxy's net.Dial has no timeout of its own; we bound it so a black-holed upstream cannot
# pin a connection task forever.
UPSTREAM_CONNECT_TIMEOUT_S = 10.0
# The bandwidth toxic releases at most 100 ms worth of bytes at once, as Toxiproxy does, so a
# large chunk is paced smoothly instead of in one burst after a long sleep.
BANDWIDTH_SLICE_S = 0.1
# API request limits: proxy lists for a whole cluster are a few KiB; a megabyte is far beyond
# any honest request and small enough that a garbage upload cannot hurt the harness.
MAX_REQUEST_BODY = 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
# Toxiproxy's API server uses a 15 s read timeout and a 60 s idle timeout for keep-alive.
HTTP_READ_TIMEOUT_S = 15.0
HTTP_IDLE_TIMEOUT_S = 60.0

DIRECTIONS = ("upstream", "downstream")
# The harness's token for the API (ringlab's addition to Toxiproxy's API): when the server has one,
# every request must carry it in this header (compared in constant time), else 401. Passed to the
# child through the environment, never the command line (which every local user can read).
TOKEN_HEADER = b"x-ringlab-token"
TOKEN_ENV = "RINGLAB_PROXY_TOKEN"
_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class ApiError(Exception):
    """An API failure with the HTTP status Toxiproxy would answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def body(self) -> dict[str, Any]:
        """The JSON error body, in Toxiproxy's shape."""
        return {"error": self.message, "status": self.status}


def _bad_body(detail: str) -> ApiError:
    return ApiError(f"bad request body: {detail}", 400)


def _missing(field_name: str) -> ApiError:
    return ApiError(f"missing required field: {field_name}", 400)


ERR_PROXY_NOT_FOUND = ("proxy not found", 404)
ERR_PROXY_EXISTS = ("proxy already exists", 409)
ERR_INVALID_STREAM = ("stream was invalid, can be either upstream or downstream", 400)
ERR_INVALID_TOXIC_TYPE = ("invalid toxic type", 400)
ERR_TOXIC_EXISTS = ("toxic already exists", 409)
ERR_TOXIC_NOT_FOUND = ("toxic not found", 404)


# --------------------------------------------------------------------------------------------
# Toxics


# Toxiproxy's toxic attributes are Go int64 fields (milliseconds, KB/s, bytes): its JSON decoder
# refuses anything outside int64 with 400. We refuse the same range (and negatives, which no
# toxic means), so no value can overflow a float deadline later (a 400-digit latency used to be
# accepted, then kill every connection through the proxy with OverflowError).
MAX_TOXIC_ATTRIBUTE = (1 << 63) - 1

# Attribute names and defaults per toxic type (Go's zero values, as Toxiproxy reports them).
TOXIC_ATTRIBUTES: dict[str, dict[str, int]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "limit_data": {"bytes": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    # Toxiproxy's do-nothing toxic (a placeholder some clients and tests add).
    "noop": {},
}


@dataclass
class _LinkState:
    """What one toxic keeps per link it applies to (Toxiproxy's per-stub state)."""

    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    transmitted: int = 0  # limit_data
    deadline: float = math.inf  # timeout > 0: when to close if nothing more arrives


Next = Callable[[float, bytes], Awaitable[None]]


class Toxic:
    """One toxic on one proxy: its API fields and the stage chunks go through."""

    def __init__(
        self, name: str, type_: str, stream: str, toxicity: float, attributes: dict[str, int]
    ) -> None:
        self.name = name
        self.type = type_
        self.stream = stream
        self.toxicity = toxicity
        self.attributes = attributes
        # Set when the toxic is removed or replaced, to cut short any sleep it is in.
        self.interrupted = trio.Event()

    def to_json(self) -> dict[str, Any]:
        """The toxic as the API shows it."""
        return {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
        }

    async def sleep_until(self, deadline: float) -> bool:
        """Sleep until ``deadline``; False if the toxic was removed first."""
        with trio.move_on_at(deadline):
            await self.interrupted.wait()
            return False
        return True

    async def stage(
        self, link: _Link, state: _LinkState, rng: random.Random, ts: float, data: bytes,
        nxt: Next,
    ) -> None:
        """Pass one chunk (read at monotonic time ``ts``) through this toxic into ``nxt``."""
        a = self.attributes
        if self.type == "latency":
            delay_ms = a["latency"]
            if a["jitter"] > 0:
                delay_ms += rng.randint(-a["jitter"], a["jitter"])
            await self.sleep_until(ts + max(delay_ms, 0) / 1000)
            await nxt(ts, data)
        elif self.type == "bandwidth":
            rate = a["rate"]  # KB/s, Toxiproxy's KB being 1000 bytes
            if rate <= 0:
                await nxt(ts, data)
                return
            step = max(1, int(rate * 1000 * BANDWIDTH_SLICE_S))
            for i in range(0, len(data), step):
                piece = data[i : i + step]
                await self.sleep_until(trio.current_time() + len(piece) / (rate * 1000))
                await nxt(ts, piece)
        elif self.type == "slicer":
            bounds = _slice_bounds(0, len(data), a["average_size"], a["size_variation"], rng)
            for start, end in bounds:
                await nxt(ts, data[start:end])
                if a["delay"] > 0 and end < len(data):
                    await self.sleep_until(trio.current_time() + a["delay"] / 1e6)
        elif self.type == "timeout":
            # Dropped on the floor, as Toxiproxy does; each dropped chunk restarts the close timer.
            if a["timeout"] > 0:
                state.deadline = trio.current_time() + a["timeout"] / 1000
        elif self.type == "limit_data":
            remaining = a["bytes"] - state.transmitted
            piece = data[: max(remaining, 0)]
            if piece:
                await nxt(ts, piece)
                state.transmitted += len(piece)
            if a["bytes"] - state.transmitted <= 0:
                link.conn.close(f"limit_data {self.name}: {a['bytes']} bytes sent")
        elif self.type == "reset_peer":
            if await self.sleep_until(trio.current_time() + a["timeout"] / 1000):
                link.conn.close(f"reset_peer {self.name}", reset=True)
        else:  # slow_close acts at end of stream only
            await nxt(ts, data)

    async def at_eof(self, link: _Link, state: _LinkState) -> str:
        """React to the sender closing: 'eof' to pass it on, 'close', or 'reset'."""
        a = self.attributes
        if self.type == "slow_close":
            await self.sleep_until(trio.current_time() + a["delay"] / 1000)
        elif self.type == "timeout":
            return "close"
        elif self.type == "reset_peer":
            if await self.sleep_until(trio.current_time() + a["timeout"] / 1000):
                return "reset"
        return "eof"


def _slice_bounds(
    start: int, end: int, average: int, variation: int, rng: random.Random
) -> list[tuple[int, int]]:
    """Cut [start, end) into pieces of about ``average`` ± ``variation`` bytes (the slicer)."""
    out: list[tuple[int, int]] = []
    stack = [(start, end)]
    while stack:
        s, e = stack.pop()
        if (e - s) - average <= variation:
            out.append((s, e))
            continue
        jitter = rng.randint(-variation, variation) if variation > 0 else 0
        mid = min(max(s + (e - s) // 2 + jitter, s + 1), e - 1)
        stack.append((mid, e))
        stack.append((s, mid))
    return out


def _parse_toxic(body: Any, existing: Toxic | None = None) -> Toxic:
    """Build a toxic from a create (or, with ``existing``, an update) request body."""
    if not isinstance(body, dict):
        raise _bad_body("expected a JSON object")
    if existing is None:
        stream = body.get("stream", "downstream")
        if not isinstance(stream, str):
            raise _bad_body("stream must be a string")
        if stream.lower() not in DIRECTIONS:
            raise ApiError(*ERR_INVALID_STREAM)
        stream = stream.lower()
        type_ = body.get("type", "")
        name = body.get("name", "") or f"{type_}_{stream}"
        if not isinstance(type_, str) or not isinstance(name, str):
            raise _bad_body("type and name must be strings")
        if type_ not in TOXIC_ATTRIBUTES:
            raise ApiError(*ERR_INVALID_TOXIC_TYPE)
        attributes = dict(TOXIC_ATTRIBUTES[type_])
        toxicity: Any = body.get("toxicity", 1.0)
    else:
        stream, type_, name = existing.stream, existing.type, existing.name
        attributes = dict(existing.attributes)
        toxicity = body.get("toxicity", existing.toxicity)
    if isinstance(toxicity, bool) or not isinstance(toxicity, (int, float)):
        raise _bad_body("toxicity must be a number")
    if not 0 <= toxicity <= 1:  # compared before float(): a huge int would overflow it
        raise _bad_body(f"toxicity must be between 0 and 1, got {str(toxicity)[:40]}")
    given = body.get("attributes") or {}
    if not isinstance(given, dict):
        raise _bad_body("attributes must be an object")
    for key in attributes:
        if key not in given:
            continue
        value = given[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad_body(f"attribute {key} of {type_} must be an integer, got {value!r}")
        if not 0 <= value <= MAX_TOXIC_ATTRIBUTE:
            raise _bad_body(f"attribute {key} of {type_} must be in 0..{MAX_TOXIC_ATTRIBUTE} (Go int64), "
                            f"got {str(value)[:40]}{'...' if len(str(value)) > 40 else ''}")
        attributes[key] = value
    if type_ == "slicer" and attributes["average_size"] < 1:
        raise _bad_body("slicer average_size must be at least 1")
    return Toxic(name, type_, stream, float(toxicity), attributes)


# --------------------------------------------------------------------------------------------
# Connections


class _Link:
    """One direction of one proxied connection: reader → toxics → writer."""

    def __init__(self, conn: _Connection, direction: str, src: trio.SocketStream,
                 dst: trio.SocketStream) -> None:
        self.conn = conn
        self.direction = direction
        self.src = src
        self.dst = dst
        # The toxics that apply to this link (drawn against toxicity when they were attached).
        self.active: dict[Toxic, _LinkState] = {}
        # limit_data bytes counted by a toxic a redraw switched off here, for when it comes back.
        self._sent: dict[Toxic, int] = {}

    def attach(self, toxic: Toxic) -> None:
        """Start applying ``toxic`` here, if its toxicity draw says so."""
        rng = self.conn.proxy.server.rng
        if toxic.toxicity < 1.0 and rng.random() >= toxic.toxicity:
            return
        self._start(toxic)

    def redraw(self, toxic: Toxic) -> None:
        """Draw ``toxic``'s toxicity again for this link, as Toxiproxy does for the toxic before
        the one added or removed (it restarts that stub to rewire its output). A toxic that stays
        on keeps its state; one that comes back on starts afresh, keeping limit_data's count."""
        if toxic.toxicity >= 1.0:
            return  # always on: nothing to draw
        on = self.conn.proxy.server.rng.random() < toxic.toxicity
        state = self.active.get(toxic)
        if on and state is None:
            self._start(toxic).transmitted = self._sent.pop(toxic, 0)
        elif not on and state is not None:
            self._sent[toxic] = state.transmitted
            self.detach(toxic, cleanup=False)

    def _start(self, toxic: Toxic) -> _LinkState:
        state = _LinkState()
        self.active[toxic] = state
        if toxic.type == "timeout" and toxic.attributes["timeout"] > 0:
            state.deadline = trio.current_time() + toxic.attributes["timeout"] / 1000
            try:
                self.conn.nursery.start_soon(self._close_when_idle, toxic, state)
            except RuntimeError:  # the connection is already winding down
                pass
        return state

    def detach(self, toxic: Toxic, *, cleanup: bool) -> None:
        """Stop applying ``toxic``; with ``cleanup``, a removed timeout closes the connection."""
        state = self.active.pop(toxic, None)
        if state is None:
            return
        state.scope.cancel()
        if cleanup and toxic.type == "timeout":
            self.conn.close(f"timeout toxic {toxic.name} removed")

    async def _close_when_idle(self, toxic: Toxic, state: _LinkState) -> None:
        with state.scope:
            while trio.current_time() < state.deadline:
                await trio.sleep_until(state.deadline)
            self.conn.close(f"timeout toxic {toxic.name}: {toxic.attributes['timeout']} ms")

    async def read(self, send: trio.MemorySendChannel[tuple[float, bytes]]) -> None:
        """Copy chunks from the sender into the link's buffer, stamped with arrival time."""
        async with send:
            while True:
                try:
                    data = await self.src.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self.conn.close(f"{self.direction} read failed: {exc}")
                    return
                if not data:
                    return
                await send.send((trio.current_time(), data))

    async def write(self, recv: trio.MemoryReceiveChannel[tuple[float, bytes]]) -> None:
        """Pass each chunk through the current toxics, then to the receiver; handle EOF."""
        async with recv:
            async for ts, data in recv:
                await self._through(self._chain(), 0, ts, data)
        outcome = "eof"
        for toxic in self._chain():
            state = self.active.get(toxic)
            if state is not None:
                outcome = await toxic.at_eof(self, state)
                if outcome != "eof":
                    break
        if outcome == "eof":
            try:
                await self.dst.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                self.conn.close(f"{self.direction} eof failed")
            self.conn.half_closed(self.direction)
        else:
            self.conn.close(f"{self.direction} ended by toxic", reset=outcome == "reset")

    def _chain(self) -> list[Toxic]:
        return self.conn.proxy.chain(self.direction)

    async def _through(self, chain: list[Toxic], index: int, ts: float, data: bytes) -> None:
        while index < len(chain) and chain[index] not in self.active:
            index += 1
        if index == len(chain):
            try:
                await self.dst.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.conn.close(f"{self.direction} write failed: {exc}")
            return
        toxic = chain[index]
        state = self.active[toxic]

        async def nxt(ts2: float, data2: bytes) -> None:
            await self._through(chain, index + 1, ts2, data2)

        await toxic.stage(self, state, self.conn.proxy.server.rng, ts, data, nxt)


class _Connection:
    """A client connection and its upstream connection, with one link per direction."""

    def __init__(self, proxy: Proxy, client: trio.SocketStream,
                 upstream: trio.SocketStream, nursery: trio.Nursery) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.nursery = nursery
        self.links = {
            "upstream": _Link(self, "upstream", client, upstream),
            "downstream": _Link(self, "downstream", upstream, client),
        }
        self._eof_sent: set[str] = set()
        self._reset = False

    def close(self, why: str, *, reset: bool = False) -> None:
        """End this connection (both sockets); ``reset`` sends RST instead of FIN."""
        if self.nursery.cancel_scope.cancel_called:
            return
        log.debug("proxy %s: closing connection: %s", self.proxy.name, why)
        self._reset = reset
        self.nursery.cancel_scope.cancel()

    def half_closed(self, direction: str) -> None:
        """Note an end of stream passed on; once both directions ended, close."""
        self._eof_sent.add(direction)
        if len(self._eof_sent) == 2:
            self.close("both directions ended")

    def close_sockets(self) -> None:
        """Close both sockets now (with SO_LINGER 0 first when resetting)."""
        for stream in (self.client, self.upstream):
            try:
                if self._reset:
                    stream.socket.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                stream.socket.close()
            except OSError:
                pass


# --------------------------------------------------------------------------------------------
# Proxies


def _split_hostport(address: str) -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6]:port``) the way Go's net.SplitHostPort does."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"address {address!r}: missing or bad port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _join_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Proxy:
    """One named proxy: a listener, its connections and its toxics."""

    def __init__(self, server: ProxyServer, name: str, listen: str, upstream: str) -> None:
        self.server = server
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.toxics: dict[str, Toxic] = {}
        self.connections: set[_Connection] = set()
        self._scope: trio.CancelScope | None = None
        self._stopped: trio.Event | None = None

    def to_json(self) -> dict[str, Any]:
        """The proxy and its toxics as the API shows them."""
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [t.to_json() for t in self._ordered_toxics()],
        }

    def _ordered_toxics(self) -> list[Toxic]:
        return self.chain("upstream") + self.chain("downstream")

    def chain(self, direction: str) -> list[Toxic]:
        """The toxics of one direction, in the order they were added."""
        return [t for t in self.toxics.values() if t.stream == direction]

    async def start(self) -> None:
        """Bind the listener and serve; raise ApiError(500) if binding fails."""
        if self.enabled:
            return
        try:
            await self.server.nursery.start(self._run)
        except OSError as exc:
            raise ApiError(f"listen tcp {self.listen}: {exc.strerror or exc}", 500) from exc
        self.enabled = True

    async def stop(self) -> None:
        """Close the listener and every connection; return once they are gone."""
        if not self.enabled:
            return
        self.enabled = False
        assert self._scope is not None and self._stopped is not None
        self._scope.cancel()
        await self._stopped.wait()

    async def _run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            host, port = _split_hostport(self.listen or "127.0.0.1:0")
        except ValueError as exc:
            raise OSError(str(exc)) from exc
        infos = await trio.socket.getaddrinfo(host or "127.0.0.1", port, type=socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"cannot resolve {host}")
        family, type_, proto, _, sockaddr = infos[0]
        sock = trio.socket.socket(family, type_, proto)
        try:
            # Re-enabling a proxy must get its port back even with connections in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            await sock.bind(sockaddr)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        bound = sock.getsockname()
        self.listen = _join_hostport(bound[0], bound[1])
        listener = trio.SocketListener(sock)
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()
        log.info("proxy %s: listening on %s, upstream %s", self.name, self.listen, self.upstream)
        try:
            with self._scope:
                task_status.started()
                async with trio.open_nursery() as nursery:
                    await trio.serve_listeners(
                        self._handle, [listener], handler_nursery=nursery
                    )
        finally:
            await trio.aclose_forcefully(listener)
            self._stopped.set()
            log.info("proxy %s: stopped", self.name)

    async def _handle(self, client: trio.SocketStream) -> None:
        try:
            host, port = _split_hostport(self.upstream)
            with trio.fail_after(UPSTREAM_CONNECT_TIMEOUT_S):
                upstream = await trio.open_tcp_stream(host, port)
        except (OSError, ValueError, trio.TooSlowError) as exc:
            log.warning("proxy %s: cannot reach upstream %s: %s", self.name, self.upstream, exc)
            await trio.aclose_forcefully(client)
            return
        try:
            for s in (client, upstream):
                # Small messages (RPC frames) must not wait for Nagle's algorithm.
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
            await self._pipe(client, upstream)
        except Exception:
            # One connection's surprise must not take down every proxy of a running campaign;
            # it is logged with its traceback and only that connection is closed.
            log.exception("proxy %s: connection failed", self.name)
        finally:
            client.socket.close()
            upstream.socket.close()

    async def _pipe(self, client: trio.SocketStream, upstream: trio.SocketStream) -> None:
        conn: _Connection | None = None
        try:
            async with trio.open_nursery() as nursery:
                conn = _Connection(self, client, upstream, nursery)
                self.connections.add(conn)
                for link in conn.links.values():
                    for toxic in self.chain(link.direction):
                        link.attach(toxic)
                    send, recv = trio.open_memory_channel[tuple[float, bytes]](
                        LINK_BUFFER_CHUNKS
                    )
                    nursery.start_soon(link.read, send)
                    nursery.start_soon(link.write, recv)
        finally:
            if conn is not None:
                self.connections.discard(conn)
                conn.close_sockets()

    def add_toxic(self, toxic: Toxic) -> None:
        """Add a toxic and attach it to every live connection; on failure nothing stays installed."""
        chain = self.chain(toxic.stream)
        before = chain[-1] if chain else None
        self.toxics[toxic.name] = toxic
        try:
            for conn in self.connections:
                conn.links[toxic.stream].attach(toxic)
                if before is not None:
                    conn.links[toxic.stream].redraw(before)
        except BaseException:
            self.toxics.pop(toxic.name, None)
            toxic.interrupted.set()
            for conn in list(self.connections):
                conn.links[toxic.stream].detach(toxic, cleanup=False)
            raise

    def remove_toxic(self, name: str, *, cleanup: bool = True) -> Toxic:
        """Remove a toxic from the proxy and every live connection."""
        chain = self.chain(self.toxics[name].stream)
        i = chain.index(self.toxics[name])
        before = chain[i - 1] if i else None
        toxic = self.toxics.pop(name)
        toxic.interrupted.set()
        for conn in list(self.connections):
            conn.links[toxic.stream].detach(toxic, cleanup=cleanup)
            if before is not None:
                conn.links[toxic.stream].redraw(before)
        return toxic

    def replace_toxic(self, new: Toxic) -> None:
        """Swap a toxic for an updated one in the same chain position (no cleanup)."""
        old = self.toxics[new.name]
        self.toxics[new.name] = new
        old.interrupted.set()
        try:
            for conn in self.connections:
                link = conn.links[new.stream]
                before = link.active.get(old)
                link.detach(old, cleanup=False)
                link.attach(new)
                if before is not None and new in link.active:
                    # As Toxiproxy: an updated limit_data keeps counting from the bytes already sent.
                    link.active[new].transmitted = before.transmitted
        except BaseException:
            # Nothing half-applied: the old toxic is back everywhere, the new one nowhere.
            self.toxics[new.name] = old
            for conn in list(self.connections):
                link = conn.links[new.stream]
                link.detach(new, cleanup=False)
                if old not in link.active:
                    link.attach(old)
            raise


# --------------------------------------------------------------------------------------------
# The API


def _proxy_fields(body: Any, where: str = "") -> tuple[str, str, str, bool | None]:
    if not isinstance(body, dict):
        raise _bad_body(f"expected a JSON object{where}")
    values = []
    for key in ("name", "listen", "upstream"):
        value = body.get(key, "")
        if not isinstance(value, str):
            raise _bad_body(f"{key}{where} must be a string")
        values.append(value)
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise _bad_body(f"enabled{where} must be true or false")
    return values[0], values[1], values[2], enabled


class ProxyServer:
    """The proxy collection and the API handlers, shared by every HTTP connection."""

    def __init__(self, nursery: trio.Nursery, rng: random.Random | None = None) -> None:
        self.nursery = nursery
        # Toxicity draws, jitter and slices; seedable so a run's faults can be replayed.
        self.rng = rng if rng is not None else random.Random()
        self.proxies: dict[str, Proxy] = {}
        self.token: bytes | None = None  # see TOKEN_HEADER
        # API changes are applied one at a time, as Toxiproxy's collection lock does.
        self._lock = trio.Lock()

    def _get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ApiError(*ERR_PROXY_NOT_FOUND)
        return proxy

    async def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """Answer one API request: (status, JSON body or None)."""
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        async with self._lock:
            match (method, parts):
                case ("POST", ["reset"]):
                    for proxy in self.proxies.values():
                        await proxy.start()
                        for name in list(proxy.toxics):
                            proxy.remove_toxic(name)
                    return 204, None
                case ("GET", ["version"]):
                    return 200, {"version": VERSION}
                case ("GET", ["proxies"]):
                    return 200, {n: p.to_json() for n, p in self.proxies.items()}
                case ("POST", ["proxies"]):
                    return 201, (await self._create(body)).to_json()
                case ("POST", ["populate"]):
                    return await self._populate(body)
                case ("GET", ["proxies", name]):
                    return 200, self._get(name).to_json()
                case ("POST" | "PATCH", ["proxies", name]):
                    return 200, (await self._update(self._get(name), body)).to_json()
                case ("DELETE", ["proxies", name]):
                    proxy = self._get(name)
                    await proxy.stop()
                    del self.proxies[name]
                    return 204, None
                case ("GET", ["proxies", name, "toxics"]):
                    return 200, [t.to_json() for t in self._get(name)._ordered_toxics()]
                case ("POST", ["proxies", name, "toxics"]):
                    proxy = self._get(name)
                    toxic = _parse_toxic(_require_body(body))
                    if toxic.name in proxy.toxics:
                        raise ApiError(*ERR_TOXIC_EXISTS)
                    proxy.add_toxic(toxic)
                    return 200, toxic.to_json()
                case ("GET", ["proxies", name, "toxics", toxic_name]):
                    toxic = self._get(name).toxics.get(toxic_name)
                    if toxic is None:
                        raise ApiError(*ERR_TOXIC_NOT_FOUND)
                    return 200, toxic.to_json()
                case ("POST" | "PATCH", ["proxies", name, "toxics", toxic_name]):
                    proxy = self._get(name)
                    old = proxy.toxics.get(toxic_name)
                    if old is None:
                        raise ApiError(*ERR_TOXIC_NOT_FOUND)
                    new = _parse_toxic(_require_body(body), existing=old)
                    proxy.replace_toxic(new)
                    return 200, new.to_json()
                case ("DELETE", ["proxies", name, "toxics", toxic_name]):
                    proxy = self._get(name)
                    if toxic_name not in proxy.toxics:
                        raise ApiError(*ERR_TOXIC_NOT_FOUND)
                    proxy.remove_toxic(toxic_name)
                    return 204, None
        known = {"reset", "version", "proxies", "populate"}
        if parts and parts[0] in known and len(parts) <= 4:
            raise ApiError(f"method {method} not allowed on {path}", 405)
        raise ApiError(f"no such endpoint: {path}", 404)

    async def _create(self, body: Any) -> Proxy:
        name, listen, upstream, enabled = _proxy_fields(_require_body(body))
        if not name:
            raise _missing("name")
        if not upstream:
            raise _missing("upstream")
        if name in self.proxies:
            raise ApiError(*ERR_PROXY_EXISTS)
        proxy = Proxy(self, name, listen, upstream)
        if enabled is None or enabled:
            await proxy.start()
        self.proxies[name] = proxy
        return proxy

    async def _update(self, proxy: Proxy, body: Any) -> Proxy:
        _, listen, upstream, enabled = _proxy_fields(_require_body(body))
        listen = listen or proxy.listen
        upstream = upstream or proxy.upstream
        want_enabled = proxy.enabled if enabled is None else enabled
        if listen != proxy.listen or upstream != proxy.upstream:
            await proxy.stop()
            proxy.listen, proxy.upstream = listen, upstream
        if want_enabled:
            await proxy.start()
        else:
            await proxy.stop()
        return proxy

    async def _populate(self, body: Any) -> tuple[int, Any]:
        body = _require_body(body)
        if not isinstance(body, list):
            raise _bad_body("expected a JSON array of proxies")
        # Phase 1: validate everything before touching any proxy, as Toxiproxy does.
        # Two entries with one name: the last wins, as in Toxiproxy 2.12 (in the first one's place).
        by_name: dict[str, tuple[str, str, str, bool]] = {}
        for i, item in enumerate(body, start=1):
            name, listen, upstream, enabled = _proxy_fields(item, f" at proxy {i}")
            if not name:
                raise _missing(f"name at proxy {i}")
            if not upstream:
                raise _missing(f"upstream at proxy {i}")
            by_name[name] = (name, listen, upstream, True if enabled is None else enabled)
        wanted = list(by_name.values())
        # Phase 2: add, keep (same listen and upstream) or replace each one.
        done: list[Proxy] = []
        for name, listen, upstream, enabled in wanted:
            existing = self.proxies.get(name)
            if existing is not None:
                if existing.upstream == upstream and await _same_listen(existing.listen, listen):
                    done.append(existing)
                    continue
                await existing.stop()
                del self.proxies[name]
            proxy = Proxy(self, name, listen, upstream)
            if enabled:
                try:
                    await proxy.start()
                except ApiError as exc:
                    err = exc.body()
                    err["proxies"] = [p.to_json() for p in done]
                    return exc.status, err
            self.proxies[name] = proxy
            done.append(proxy)
        return 201, {"proxies": [p.to_json() for p in done]}


async def _same_listen(bound: str, wanted: str) -> bool:
    """Whether a /populate entry's ``listen`` names the address a proxy has: equal, or a host
    that resolves to it on the same port (Toxiproxy 2.12 keeps ``localhost:N`` for 127.0.0.1:N)."""
    if bound == wanted:
        return True
    try:
        host, port = _split_hostport(bound)
        want_host, want_port = _split_hostport(wanted or "127.0.0.1:0")
    except ValueError:
        return False
    if port != want_port:
        return False
    try:
        found = await trio.socket.getaddrinfo(want_host or None, want_port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    return any(sockaddr[0] == host for *_, sockaddr in found)


class _BadBody:
    """A request body that is not JSON; an error only for endpoints that read a body."""

    def __init__(self, detail: str) -> None:
        self.detail = detail


def _require_body(body: Any) -> Any:
    if body is _NO_BODY:
        raise _bad_body("EOF")
    if isinstance(body, _BadBody):
        raise _bad_body(body.detail)
    return body


_NO_BODY = object()


# --------------------------------------------------------------------------------------------
# HTTP (h11 over trio)


class _HttpClosed(Exception):
    pass


async def _next_event(conn: h11.Connection, stream: trio.SocketStream) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _HttpClosed from exc
        conn.receive_data(data)


async def _send(conn: h11.Connection, stream: trio.SocketStream, *events: Any) -> None:
    for event in events:
        data = conn.send(event)
        if data:
            await stream.send_all(data)


async def _respond(conn: h11.Connection, stream: trio.SocketStream, status: int, payload: Any,
                   *, close: bool = False) -> None:
    headers = [("server", f"ringlab-proxy/{VERSION}")]
    if close:
        headers.append(("connection", "close"))
    if status == 204 or payload is None:
        await _send(conn, stream, h11.Response(status_code=status, headers=headers),
                    h11.EndOfMessage())
        return
    body = (json.dumps(payload) + "\n").encode()
    if status >= 400:
        # Toxiproxy answers errors through Go's http.Error: the JSON body typed as plain text.
        headers += [("content-type", "text/plain; charset=utf-8"), ("x-content-type-options", "nosniff")]
    else:
        headers.append(("content-type", "application/json"))
    headers.append(("content-length", str(len(body))))
    await _send(conn, stream, h11.Response(status_code=status, headers=headers),
                h11.Data(data=body), h11.EndOfMessage())


async def _read_request(conn: h11.Connection, stream: trio.SocketStream
                        ) -> tuple[h11.Request, bytes] | None:
    event = await _next_event(conn, stream)
    if isinstance(event, h11.ConnectionClosed):
        return None
    if not isinstance(event, h11.Request):
        raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}", 400)
    body = bytearray()
    with trio.fail_after(HTTP_READ_TIMEOUT_S):
        while True:
            part = await _next_event(conn, stream)
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > MAX_REQUEST_BODY:
                    raise ApiError(f"request body over {MAX_REQUEST_BODY} bytes", 413)
            elif isinstance(part, h11.EndOfMessage):
                return event, bytes(body)
            else:
                raise h11.RemoteProtocolError("connection closed mid-request", 400)


async def _serve_http(server: ProxyServer, stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
    try:
        while True:
            request = None
            try:
                with trio.move_on_after(HTTP_IDLE_TIMEOUT_S):
                    request = await _read_request(conn, stream)
                if request is None:
                    return
                status, payload = await _dispatch(server, *request)
            except h11.RemoteProtocolError as exc:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    err = ApiError(f"malformed HTTP request: {exc}", exc.error_status_hint)
                    await _respond(conn, stream, err.status, err.body(), close=True)
                return
            except ApiError as exc:  # body too large: answer, then drop the connection
                await _respond(conn, stream, exc.status, exc.body(), close=True)
                return
            except trio.TooSlowError:
                return
            await _respond(conn, stream, status, payload)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (_HttpClosed, trio.BrokenResourceError, trio.ClosedResourceError,
            h11.LocalProtocolError):
        return
    finally:
        await trio.aclose_forcefully(stream)


async def _dispatch(server: ProxyServer, request: h11.Request, raw: bytes) -> tuple[int, Any]:
    method = request.method.decode("ascii", "replace").upper()
    path = urlsplit(request.target.decode("ascii", "replace")).path
    headers = dict(request.headers)
    agent = headers.get(b"user-agent", b"")
    try:
        # Toxiproxy refuses browsers, so a web page cannot drive it through the user's browser.
        if agent.startswith(b"Mozilla/"):
            raise ApiError("User agent not allowed", 403)
        if server.token is not None and not hmac.compare_digest(headers.get(TOKEN_HEADER, b""), server.token):
            raise ApiError(f"missing or wrong {TOKEN_HEADER.decode()} header", 401)
        body: Any = _NO_BODY
        if raw.strip():
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                body = _BadBody(str(exc))  # POST /reset ignores its body, as Toxiproxy does
        return await server.handle(method, path, body)
    except ApiError as exc:
        if exc.status >= 500:
            log.warning("API %s %s: %s", method, path, exc.message)
        return exc.status, exc.body()
    except Exception as exc:  # a bug must not take the fault proxy down mid-run
        log.exception("API %s %s failed", method, path)
        return 500, {"error": f"internal error: {exc}", "status": 500}


async def serve_proxy_api(
    host: str = "127.0.0.1",
    port: int = DEFAULT_API_PORT,
    *,
    rng: random.Random | None = None,
    token: str | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the Toxiproxy API on host:port until cancelled; reports the bound port.

    With ``token``, only requests carrying it (header ``x-ringlab-token``) are served.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    async with trio.open_nursery() as nursery:
        server = ProxyServer(nursery, rng)
        server.token = token.encode() if token else None
        bound = listeners[0].socket.getsockname()[1]
        log.info("fault proxy API on %s:%d", host, bound)

        async def handler(stream: trio.SocketStream) -> None:
            await _serve_http(server, stream)

        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(bound)


async def _serve_and_announce(host: str, port: int, rng: random.Random, token: str | None) -> None:
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(functools.partial(serve_proxy_api, host, port, rng=rng, token=token))
        # One line on stdout, so a parent that asked for port 0 learns the port it got.
        print(f"fault proxy API listening on http://{_join_hostport(host, bound)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m nemesis.proxy --host 127.0.0.1 --port 8474``."""
    parser = argparse.ArgumentParser(
        prog="python -m nemesis.proxy",
        description="ringlab's fault proxy: a Toxiproxy-compatible TCP proxy (HTTP API v2).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_API_PORT,
                        help=f"API port (default {DEFAULT_API_PORT}, Toxiproxy's)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for toxicity draws, jitter and slicing")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    rng = random.Random(args.seed)
    token = os.environ.get(TOKEN_ENV) or None
    if args.host not in _LOOPBACK_HOSTS and token is None:
        print(f"fault proxy: refusing to serve the API on {args.host} without a token "
              f"(set {TOKEN_ENV}); anyone who can reach it could cut the cluster's links", file=sys.stderr)
        return 2
    try:
        trio.run(_serve_and_announce, args.host, args.port, rng, token)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"fault proxy: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
