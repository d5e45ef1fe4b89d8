"""The misbehaving-clients nemesis: what buggy or hostile clients send a node's client port.

A client port serves untrusted peers (docs/node.md, node/client_limits.py): a driver with a bug,
a client of another protocol, a fuzzer. While the workload runs, ``start`` picks a node and, on
connections of its own, sends it malformed requests (:data:`BAD_REQUESTS`: unknown ops, missing
or mistyped fields, keys and values past their bounds, bad consistency levels, TTLs and
timestamps, oversized batches, bad schema) and malformed frames (:data:`BAD_FRAMES`: bytes that
are no msgpack, a message that is not a map, a length past MAX_FRAME_BYTES, half a frame and a
hang-up). Each must be refused with a named error (``InvalidRequest``, ``ProtocolError``), or the
connection closed, and the node must keep serving: the step ends with a ``ping`` on a fresh
connection and records what each misbehaviour got. ``stop`` pings every node. An invalid request
the node accepted is recorded as ``accepted`` (a validation gap), never hidden.

Malformed requests use keys no workload uses (``clients-nemesis-*``), so even an accepted one
cannot touch a checked key.
"""

from __future__ import annotations

import logging
import random
import struct
from collections.abc import Callable
from typing import Any

import msgpack
import trio

from nemesis.faults import DB, Event
from node.client import open_client
from node.protocol import (MAX_BATCH_MUTATIONS, MAX_FRAME_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES, FrameDecoder,
                           ProtocolError, RinglabError, encode_frame)

log = logging.getLogger("nemesis.clients")

# A key no workload writes (workloads use integer keys).
KEY = "clients-nemesis-1"
# How long one misbehaviour may take to be answered (or its connection closed) before it counts
# as "no answer": the node answers a refusal at once, a busy one within its read timeout.
ANSWER_TIMEOUT = 10.0
_LENGTH = struct.Struct(">I")


def bad_requests(ks: str, table: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, op, fields) of requests every node must refuse."""
    row = {"keyspace": ks, "table": table}
    return [
        ("unknown op", "explode", {}),
        ("put without a key", "put", {**row, "columns": {"v": 1}}),
        ("a key that is a list", "put", {**row, "key": [1, 2], "columns": {"v": 1}}),
        ("an empty key", "get", {**row, "key": ""}),
        ("a key past MAX_KEY_BYTES", "get", {**row, "key": "k" * (MAX_KEY_BYTES + 1)}),
        ("consistency MOST", "get", {**row, "key": KEY, "consistency": "MOST"}),
        ("a negative ttl", "put", {**row, "key": KEY, "columns": {"v": 1}, "ttl": -5}),
        ("columns that are a list", "put", {**row, "key": KEY, "columns": [1]}),
        ("a value past MAX_VALUE_BYTES", "put", {**row, "key": KEY, "columns": {"v": "x" * (MAX_VALUE_BYTES + 1)}}),
        ("a keyspace name with a space", "get", {"keyspace": "no such", "table": table, "key": KEY}),
        ("an unknown table", "get", {"keyspace": ks, "table": "no_such_table", "key": KEY}),
        ("a timestamp that is text", "put", {**row, "key": KEY, "columns": {"v": 1}, "timestamp": "soon"}),
        ("a batch past MAX_BATCH_MUTATIONS", "batch",
         {**row, "mutations": [{"op": "put", "key": f"{KEY}-{i}", "columns": {"v": 1}}
                               for i in range(MAX_BATCH_MUTATIONS + 1)]}),
        ("a limit that is negative", "get", {**row, "key": KEY, "limit": -1}),
    ]


# (label, bytes sent on a fresh connection): each must end in a ProtocolError answer or a close.
BAD_FRAMES: tuple[tuple[str, bytes], ...] = (
    ("bytes that are no msgpack", _LENGTH.pack(4) + b"\xc1\xc1\xc1\xc1"),
    ("a message that is not a map", encode_frame([1, 2, 3])),
    ("a length past MAX_FRAME_BYTES", _LENGTH.pack(MAX_FRAME_BYTES + 1)),
)
HALF_FRAME = ("half a frame, then a hang-up", _LENGTH.pack(64) + msgpack.packb({"id": 1, "op": "ping"})[:5])


async def _send_raw(host: str, port: int, data: bytes, hang_up: bool = False) -> str:
    """Send ``data`` on a fresh connection; what came back (an error name, or 'closed')."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(data)
        if hang_up:
            return "hung up"
        decoder = FrameDecoder()
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return "closed"
            decoder.feed(chunk)
            msg = decoder.next_message()
            if msg is not None:
                if msg.get("ok", True):
                    return "accepted"
                err = msg.get("error")
                return str(err.get("name")) if isinstance(err, dict) else "error"


def _single(exc: BaseException) -> BaseException:
    """The one error inside nested exception groups of one member each."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class ClientsNemesis:
    """Malformed requests and frames to one node (start); a ping of every node (stop)."""

    name = "clients"

    def __init__(self, db: DB, address: Callable[[str], tuple[str, int]], secret: str, keyspace: str,
                 table: str) -> None:
        self.db, self.address, self.secret = db, address, secret
        self.keyspace, self.table = keyspace, table

    async def _request(self, host: str, port: int, op: str, fields: dict[str, Any]) -> str:
        try:
            async with open_client(host, port, secret=self.secret, timeout=ANSWER_TIMEOUT) as c:
                await c.request(op, **fields)
            return "accepted"
        except RinglabError as exc:
            return exc.name
        except BaseExceptionGroup as group:
            # The client's nursery wraps what the request raised.
            exc = _single(group)
            if isinstance(exc, RinglabError):
                return exc.name
            raise exc from None

    async def start(self, rng: random.Random) -> Event:
        """Every misbehaviour against one random node, then a ping on a fresh connection."""
        nid = rng.choice(self.db.node_ids())
        host, port = self.address(nid)
        got: dict[str, str] = {}
        for label, op, fields in bad_requests(self.keyspace, self.table):
            got[label] = await self._answer(self._request(host, port, op, fields))
        for label, data in BAD_FRAMES:
            got[label] = await self._answer(_send_raw(host, port, data))
        got[HALF_FRAME[0]] = await self._answer(_send_raw(host, port, HALF_FRAME[1], hang_up=True))
        after = await self._answer(self._request(host, port, "ping", {}))
        accepted = sorted(k for k, v in got.items() if v == "accepted")
        judged = {k: v for k, v in got.items() if k != HALF_FRAME[0]}  # a hang-up gets no answer
        refused = sum(1 for v in judged.values() if v not in ("accepted", "no answer", "unreachable"))
        summary = (f"clients {nid}: {refused}/{len(judged)} refused" + (f", ACCEPTED {', '.join(accepted)}" if accepted else "")
                   + f"; ping after: {'ok' if after == 'accepted' else after}")
        return Event("misbehave", {"node": nid, "answers": got, "accepted": accepted,
                                   "ping_after": "ok" if after == "accepted" else after, "summary": summary})

    async def _answer(self, coro: Any) -> str:
        try:
            with trio.fail_after(ANSWER_TIMEOUT):
                return str(await coro)
        except trio.TooSlowError:
            return "no answer"
        except (OSError, trio.BrokenResourceError, ProtocolError) as exc:
            # A node that is down (another nemesis killed it) cannot answer anything.
            log.info("clients nemesis: %s", exc)
            return "unreachable" if isinstance(exc, OSError) else "closed"

    async def stop(self) -> Event:
        """Ping every node on a fresh connection: a misbehaving client took none down."""
        answers = {}
        for nid in self.db.node_ids():
            host, port = self.address(nid)
            r = await self._answer(self._request(host, port, "ping", {}))
            answers[nid] = "ok" if r == "accepted" else r
        bad = [n for n, a in answers.items() if a != "ok"]
        return Event("ping", {"answers": answers,
                              "summary": "every node answers ping" if not bad else f"no ping answer from {' '.join(bad)}"})

    async def heal(self) -> None:
        """Nothing to undo: every connection was closed by its step."""
