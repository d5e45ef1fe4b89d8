"""Async Trio client for a node's client port: pipelined requests with ids, typed errors.

Usage::

    async with open_client("127.0.0.1", 9042, secret="s") as c:
        ts = await c.put("ks", "t", "key", {"col": 1}, consistency="QUORUM")
        row = await c.get("ks", "t", "key", consistency="QUORUM")   # {"col": (1, ts)}

Any number of tasks may share one client: each request gets an id, one writer task coalesces
queued frames into one ``send_all`` and one reader task routes responses back by id. Errors come
back as the exceptions of :mod:`node.protocol` (Unavailable, WriteTimeout, ...); a lost
connection raises :class:`ConnectionLost` in every waiting request (outcome unknown for writes).
"""

from __future__ import annotations

import itertools
import math
from types import TracebackType
from typing import Any

import trio

from node import protocol
from node.deadlines import TimingWheel
from node.outbox import Outbox, StreamOut
from node.protocol import FrameDecoder, ProtocolError, RinglabError, encode_frame, error_from_wire
from node.runtime import Network

# Large reads so a burst of pipelined responses is decoded from one syscall.
_RECV_BYTES = 256 * 1024
# Write acknowledgements kept for pop_acks (the harness pops each right after its write): a
# caller that never pops holds at most this many.
_KEPT_ACKS = 256


class ConnectionLost(RinglabError):
    """The connection closed before the response arrived (a write's outcome is unknown)."""

    name = "ConnectionLost"


class ClientTimeout(RinglabError):
    """No response within the client-side timeout (a write's outcome is unknown)."""

    name = "ClientTimeout"


# Ops the cluster secret is sent with (describe too, unlike the node's SECRET_OPS: it is harmless),
# and the data ops; sets, as each request looks its op up.
_SECRET_OPS = frozenset(protocol.ADMIN_OPS + protocol.SCHEMA_OPS)
_DATA_OPS = frozenset(protocol.DATA_OPS)

# What a request's slot holds once its timeout passed without a response.
_TIMED_OUT: Any = object()


class Client:
    """One connection to a node; use :func:`open_client`."""

    def __init__(self, stream: trio.abc.Stream, secret: str | None = None, timeout: float | None = None,
                 client_secret: str | None = None, direct: bool = False) -> None:
        self._stream = stream
        self.secret = secret
        self.client_secret = client_secret  # sent as "auth" with data ops (a node's client_secret)
        self.timeout = timeout
        self._ids = itertools.count(1)
        # id -> [the waiting task, its response, ...]: the task is rescheduled once the response (or
        # the request's end) is in the slot; a trio Event per request cost a tenth of the
        # client's side of a write.
        self._waiting: dict[int, list[Any]] = {}
        # Requests wait in a StreamOut for the writer task; a ``direct`` client (one request in
        # flight at a time, as a harness process) hands each to the kernel itself when the
        # writer is idle, a task step less per request (node/outbox.py). A pipelining caller
        # (bench/cluster.py) leaves it off: its writer sends a tick's requests in one write.
        self._outbox = Outbox(Network())
        self._out = StreamOut(self._outbox)
        self._direct = direct
        self._closed: RinglabError | None = None
        # write timestamp -> the response carrying the coordinator's "replicas", "acked", "hinted"
        self._acks: dict[int, dict[str, Any]] = {}
        # Request timeouts: one reaper task (open_client runs it) instead of a cancel scope per
        # request, which cost as much as the rest of the client's side of a request.
        self._deadlines = TimingWheel()

    def pop_acks(self, timestamp: int | None) -> dict[str, list[str]] | None:
        """The key's replicas, the ones that acknowledged before the coordinator answered and the
        ones it hinted, for this client's write stamped ``timestamp`` (once; None if unknown)."""
        resp = self._acks.pop(timestamp, None) if timestamp is not None else None
        return {k: list(resp.get(k) or []) for k in ("replicas", "acked", "hinted")} if resp is not None else None

    def _written(self, resp: dict[str, Any]) -> int:
        ts = int(resp["timestamp"])
        if "acked" in resp:  # nodes before this field answer with the timestamp alone
            if len(self._acks) >= _KEPT_ACKS:
                self._acks.pop(next(iter(self._acks)))
            # The response itself (nothing else holds it): pop_acks copies the fields out, so a
            # caller that never pops (a bench) pays no copy per write.
            self._acks[ts] = resp
        return ts

    # ---- plumbing

    async def _writer(self) -> None:
        await self._out.write_frames(self._stream)

    async def _reader(self) -> None:
        decoder = FrameDecoder()
        try:
            while True:
                data = await self._stream.receive_some(_RECV_BYTES)
                if not data:
                    raise ConnectionLost("server closed the connection")
                decoder.feed(data)
                while (msg := decoder.next_message()) is not None:
                    rid = msg.get("id")
                    slot = self._waiting.pop(rid, None) if isinstance(rid, int) else None
                    if slot is not None:
                        slot[1] = msg
                        self._deadlines.cancel(slot[2])
                        trio.lowlevel.reschedule(slot[0])
                    elif not msg.get("ok", True):
                        # An error not tied to a request (e.g. ProtocolError before closing).
                        self._closed = error_from_wire(msg.get("error"))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._fail(ConnectionLost(f"connection lost: {exc}"))
        except ProtocolError as exc:
            self._fail(exc)
        except ConnectionLost as exc:
            self._fail(self._closed or exc)

    def _fail(self, exc: RinglabError) -> None:
        self._closed = exc
        waiting, self._waiting = self._waiting, {}
        for slot in waiting.values():
            slot[1] = None
            trio.lowlevel.reschedule(slot[0])

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return its response map (raises the typed error on failure)."""
        msg = {"id": 0, "op": op}
        for k, v in fields.items():
            if v is not None:
                msg[k] = v
        return await self._request(msg)

    async def _request(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Send ``msg`` (its "id" is filled in here) and wait for its response."""
        # A local, not self._closed: a type checker would take the attribute to stay None after
        # this test, across the wait below, and the compiled build checks what it takes.
        closed = self._closed
        if closed is not None:
            raise type(closed)(closed.message, **closed.details)
        op = msg["op"]
        rid = msg["id"] = next(self._ids)
        if self.secret is not None and op in _SECRET_OPS and "secret" not in msg:
            msg["secret"] = self.secret
        if self.client_secret is not None and op in _DATA_OPS and "auth" not in msg:
            msg["auth"] = self.client_secret
        frame = encode_frame(msg)
        # [the waiting task, its response, its timeout's wheel entry]
        slot: list[Any] = [trio.lowlevel.current_task(), None, None]
        self._waiting[rid] = slot
        if self._direct:
            self._outbox.begin()
            self._out.push(frame)
            self._outbox.end()
        else:
            self._out.push(frame)
        timeout = self.timeout if self.timeout is not None else math.inf
        if math.isinf(timeout):
            await self._wait(rid)
        elif self._deadlines.running:
            slot[2] = self._deadlines.add(trio.current_time() + timeout, self._expire, rid)
            await self._wait(rid)
        else:
            with trio.move_on_after(timeout):
                await self._wait(rid)
            if rid in self._waiting:  # the timeout passed first
                self._waiting.pop(rid, None)
                slot[1] = _TIMED_OUT
        resp = slot[1]
        if resp is _TIMED_OUT:
            raise ClientTimeout(f"no response to {op} within {self.timeout:g} s")
        if resp is None:
            exc = self._closed or ConnectionLost("connection lost")
            raise type(exc)(exc.message, **exc.details)
        if not resp.get("ok"):
            raise error_from_wire(resp.get("error"))
        return resp

    async def _wait(self, rid: int) -> None:
        """Sleep until the reader, the reaper or the connection's end reschedules this task (its
        slot then holds the outcome); a cancelled wait gives the slot up."""

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._waiting.pop(rid, None)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def _expire(self, rid: int) -> None:
        """Request ``rid``'s timeout passed: fail it unless its response came first."""
        slot = self._waiting.pop(rid, None)
        if slot is not None:
            slot[1] = _TIMED_OUT
            trio.lowlevel.reschedule(slot[0])

    # ---- data operations

    async def put(
        self,
        keyspace: str,
        table: str,
        key: Any,
        columns: dict[str, Any],
        consistency: str | None = None,
        timestamp: int | None = None,
        ttl: int | None = None,
    ) -> int:
        """Write columns; returns the write timestamp (µs)."""
        msg: dict[str, Any] = {"id": 0, "op": "put", "keyspace": keyspace, "table": table, "key": key, "columns": columns}
        if consistency is not None:
            msg["consistency"] = consistency
        if timestamp is not None:
            msg["timestamp"] = timestamp
        if ttl is not None:
            msg["ttl"] = ttl
        return self._written(await self._request(msg))

    async def get(
        self,
        keyspace: str,
        table: str,
        key: Any,
        columns: list[str] | None = None,
        consistency: str | None = None,
        limit: int | None = None,
    ) -> dict[str, tuple[Any, int]]:
        """Read a row: ``{column: (value, write timestamp µs)}`` ({} if absent)."""
        resp = await self.request("get", keyspace=keyspace, table=table, key=key, columns=columns, consistency=consistency, limit=limit)
        return {name: (v[0], v[1]) for name, v in resp["columns"].items()}

    async def delete(
        self,
        keyspace: str,
        table: str,
        key: Any,
        columns: list[str] | None = None,
        consistency: str | None = None,
        timestamp: int | None = None,
    ) -> int:
        """Delete a row (or named columns); returns the deletion timestamp."""
        resp = await self.request("delete", keyspace=keyspace, table=table, key=key, columns=columns, consistency=consistency, timestamp=timestamp)
        return self._written(resp)

    async def batch(
        self,
        keyspace: str,
        table: str,
        key: Any,
        mutations: list[dict[str, Any]],
        consistency: str | None = None,
        timestamp: int | None = None,
    ) -> int:
        """Apply several puts/deletes to one partition as one mutation; returns the timestamp."""
        resp = await self.request("batch", keyspace=keyspace, table=table, key=key, mutations=mutations, consistency=consistency, timestamp=timestamp)
        return self._written(resp)

    # ---- schema

    async def create_keyspace(self, name: str, replication: dict[str, Any], if_not_exists: bool = False) -> dict[str, Any]:
        """Create a keyspace, e.g. ``{"class": "SimpleStrategy", "replication_factor": 3}``."""
        return await self.request("create_keyspace", name=name, replication=replication, if_not_exists=if_not_exists or None)

    async def drop_keyspace(self, name: str, if_exists: bool = False) -> dict[str, Any]:
        """Drop a keyspace and its tables."""
        return await self.request("drop_keyspace", name=name, if_exists=if_exists or None)

    async def create_table(self, keyspace: str, name: str, options: dict[str, Any] | None = None, if_not_exists: bool = False) -> dict[str, Any]:
        """Create a table (options: read_repair, gc_grace_seconds, column_order, ...)."""
        return await self.request("create_table", keyspace=keyspace, name=name, options=options or {}, if_not_exists=if_not_exists or None)

    async def drop_table(self, keyspace: str, name: str, if_exists: bool = False) -> dict[str, Any]:
        """Drop a table."""
        return await self.request("drop_table", keyspace=keyspace, name=name, if_exists=if_exists or None)

    async def admin(self, op: str, **fields: Any) -> dict[str, Any]:
        """Run an admin operation (status, ring, gossipinfo, flush, clock, faults, ...)."""
        return await self.request(op, **fields)


def open_client(
    host: str,
    port: int,
    secret: str | None = None,
    timeout: float | None = None,
    network: Network | None = None,
    client_secret: str | None = None,
    direct: bool = False,
) -> ClientConnection:
    """Connect to a node's client port (``async with``); the connection closes when the block
    exits. ``direct``: the caller has one request in flight at a time, so each is written by its
    own task (see :class:`Client`)."""
    return ClientConnection(host, port, secret, timeout, network, client_secret, direct)


class ClientConnection:
    """The async context manager :func:`open_client` returns: it connects, runs the client's
    reader, writer and reaper tasks in a nursery for the block's duration, then closes the stream.
    A class rather than an ``asynccontextmanager`` generator, which mypyc cannot compile."""

    def __init__(self, host: str, port: int, secret: str | None, timeout: float | None,
                 network: Network | None, client_secret: str | None, direct: bool) -> None:
        self._host = host
        self._port = port
        self._secret = secret
        self._timeout = timeout
        self._network = network
        self._client_secret = client_secret
        self._direct = direct
        self._stream: trio.abc.Stream | None = None
        self._nursery_cm: Any = None
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> Client:
        net = self._network or Network()
        stream = await net.open_tcp_stream(self._host, self._port)
        self._stream = stream
        client = Client(stream, secret=self._secret, timeout=self._timeout,
                        client_secret=self._client_secret, direct=self._direct)
        nursery_cm = trio.open_nursery()
        try:
            nursery = await nursery_cm.__aenter__()
        except BaseException:
            await self._close_stream()
            raise
        self._nursery_cm = nursery_cm
        self._nursery = nursery
        nursery.start_soon(client._reader)
        nursery.start_soon(_guarded_writer, client)
        if self._timeout is not None and not math.isinf(self._timeout):
            nursery.start_soon(client._deadlines.run)
        return client

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        nursery, nursery_cm = self._nursery, self._nursery_cm
        self._nursery = self._nursery_cm = None
        try:
            if nursery is None:
                return False
            nursery.cancel_scope.cancel()
            return bool(await nursery_cm.__aexit__(exc_type, exc, tb))
        finally:
            await self._close_stream()

    async def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with trio.CancelScope(shield=True):
                await stream.aclose()


async def _guarded_writer(client: Client) -> None:
    try:
        await client._writer()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        client._fail(ConnectionLost(f"connection lost: {exc}"))
