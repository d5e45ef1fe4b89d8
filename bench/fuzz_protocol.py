"""Seeded hostile input for a live node's ports: bursts of bad frames, then a check it still serves.

Each burst is a list of byte strings, one connection each, drawn from a fixed seed: truncated
frames, huge length prefixes, random bytes, msgpack of the wrong shape (wrong field types,
missing and extra fields, depth bombs, huge array/map counts), oversized keys and values, unknown
ops, plus connections that stall half-open and many at once. Against the client port (data,
schema and admin ops: the admin ones are served there, behind the secret), the internode port
(hellos and the range-copy stream's magic) — whatever a burst sends, the node must answer only
named errors (never a traceback), stay alive and still take a write and a read at ONE.

    .venv/bin/python bench/fuzz_protocol.py --client-port 9042 --internode-port 7000 --seed 1 --bursts 20

tests/cluster/test_hostile_input_fuzz.py runs it against a node it starts.
"""

from __future__ import annotations

import argparse
import random
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.protocol import (  # noqa: E402
    ALL_OPS, MAX_FRAME_BYTES, MAX_KEY_BYTES, MAX_NAME_BYTES, MAX_VALUE_BYTES,
)

# The wire error names of docs/architecture.md (node/protocol.py's classes).
ERROR_NAMES = frozenset({"Unavailable", "WriteTimeout", "ReadTimeout", "Overloaded", "InvalidRequest", "Unauthorized",
                         "ProtocolError", "ServerError", "WriteFailure", "ReadFailure"})
# Values of every msgpack type, for fields that want another.
_ODD = [None, True, -1, 2**63, 1.5, float("nan"), "", "x" * 300, b"\x00\xff", [], [1, [2]], {}, {"a": {"b": 1}}]


def frame(obj: Any) -> bytes:
    """A length-prefixed msgpack frame of ``obj`` (any msgpack value, not just a map)."""
    body = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def _deep(depth: int) -> bytes:
    """A msgpack value nested ``depth`` arrays deep, written directly (msgpack's packer refuses)."""
    return b"\x91" * depth + b"\x01"


def _huge_count(kind: str) -> bytes:
    """An array32/map32 header claiming 2^32-1 entries, with none following."""
    return (b"\xdd" if kind == "array" else b"\xdf") + b"\xff\xff\xff\xff"


def _raw_map(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """A msgpack map from already-encoded keys and values."""
    return bytes([0x80 | len(pairs)]) + b"".join(k + v for k, v in pairs)


def _body_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


# Admin and schema ops a fuzzer may send WITH the secret: the ones that stop, move, fault or drop
# what the round trip needs (drain, decommission, faults, drop_keyspace, ...) are left out.
SAFE_SECRET_OPS = ("status", "ring", "gossipinfo", "getendpoints", "flush", "compact", "snapshot", "netstats",
                   "leader", "storage", "localread", "listsnapshots", "clearsnapshot", "cleanup", "repair", "scrub",
                   "create_keyspace", "create_table", "describe", "ping", "put", "get", "delete", "batch")


def client_payloads(rng: random.Random, secret: str | None = None) -> list[bytes]:
    """One burst for the client port: each entry is what one connection sends; with ``secret``
    also admin and schema ops that carry it (SAFE_SECRET_OPS), so their own checks are reached."""
    pk = lambda o: msgpack.packb(o, use_bin_type=True)  # noqa: E731
    good = {"id": 1, "op": "put", "keyspace": "ks", "table": "t", "key": "k", "columns": {"a": 1}, "consistency": "ONE"}
    out: list[bytes] = []
    # Framing.
    out.append(struct.pack(">I", 2**32 - 1) + rng.randbytes(64))  # a 4 GiB prefix
    out.append(struct.pack(">I", MAX_FRAME_BYTES + 1))
    out.append(struct.pack(">I", rng.randrange(10, 1000)) + rng.randbytes(rng.randrange(0, 9)))  # truncated
    out.append(struct.pack(">I", 0))  # an empty body
    out.append(rng.randbytes(rng.randrange(1, 3)))  # a partial prefix
    out.append(rng.randbytes(rng.randrange(16, 4096)))  # random bytes
    out.append(_body_frame(rng.randbytes(rng.randrange(1, 200))))  # a frame of random bytes
    # Valid msgpack, wrong shapes.
    for obj in ("str", 5, None, [1, 2], [good], b"bin"):
        out.append(frame(obj))
    out.append(_body_frame(_deep(rng.randrange(200, 100_000))))
    out.append(_body_frame(_raw_map([(pk("id"), pk(1)), (pk("op"), pk("put")), (pk("key"), _deep(5000))])))
    out.append(_body_frame(_huge_count("array")))
    out.append(_body_frame(_huge_count("map")))
    out.append(_body_frame(_raw_map([(pk("id"), pk(2)), (pk("op"), pk("batch")), (pk("mutations"), _huge_count("array"))])))
    out.append(_body_frame(_raw_map([(_deep(300), pk(1))])))  # an unhashable (list) map key
    out.append(frame({"id": 3, "op": rng.choice(["nope", "", "PUT", "x" * 70_000, "put\x00"])}))
    out.append(frame({"op": "ping"}))  # no id
    out.append(frame({"id": 4}))  # no op
    # Every op with each field replaced by a value of another type, or dropped, or one extra.
    ops = list(ALL_OPS)
    for i in range(60 if secret else 24):
        with_secret = secret is not None and i % 2 == 0
        op = rng.choice(SAFE_SECRET_OPS if with_secret else ops)
        rid = rng.choice([5, "5", None, [5], 2**64 - 1, -(2**63)]) if rng.random() < 0.2 else 100 + i
        msg: dict[Any, Any] = dict(good, id=rid, op=op)
        for name in ("keyspace", "table", "key", "columns", "consistency", "name", "replication", "options",
                     "mutations", "timestamp", "ttl", "secret", "node", "tokens", "target", "action", "fault"):
            r = rng.random()
            if r < 0.35:
                msg[name] = rng.choice(_ODD)
            elif r < 0.5:
                msg.pop(name, None)
        if rng.random() < 0.3:
            msg[rng.choice(["extra", 7, b"bin"])] = rng.choice(_ODD)
        if with_secret:
            msg["secret"] = secret
        try:
            out.append(frame(msg))
        except (TypeError, ValueError, OverflowError):
            continue
    # Oversized keys, values, names; a batch past its bound.
    out.append(frame(dict(good, id=6, key="k" * (MAX_KEY_BYTES + 1))))
    out.append(frame(dict(good, id=7, columns={"a": b"v" * (MAX_VALUE_BYTES + 1)})))
    out.append(frame(dict(good, id=8, columns={"c" * (MAX_NAME_BYTES + 1): 1})))
    out.append(frame(dict(good, id=9, keyspace="s" * (MAX_NAME_BYTES + 1))))
    out.append(frame({"id": 10, "op": "batch", "consistency": "ONE",
                      "mutations": [{"keyspace": "ks", "table": "t", "key": str(i), "columns": {"a": i}} for i in range(1100)]}))
    out.append(frame({"id": 11, "op": "batch", "mutations": [rng.choice(_ODD) for _ in range(8)]}))
    # Good frames followed by garbage on the same connection.
    out.append(frame(dict(good, id=12)) + rng.randbytes(32))
    rng.shuffle(out)
    return out


def internode_payloads(rng: random.Random) -> list[bytes]:
    """One burst for the internode port: unauthenticated hellos of every shape, the stream magic."""
    out: list[bytes] = [
        struct.pack(">I", 2**32 - 1),
        struct.pack(">I", 50) + b"\x81",
        rng.randbytes(rng.randrange(8, 2048)),
        _body_frame(_deep(rng.randrange(200, 50_000))),
        _body_frame(_huge_count("map")),
        b"RLFS" + rng.randbytes(rng.randrange(0, 512)),  # the range-copy stream's magic, then garbage
        b"RLFS" + struct.pack(">I", 2**32 - 1) + rng.randbytes(16),
        b"RLFS" + frame({"x": 1}) + frame(rng.choice(_ODD)),
    ]
    for _ in range(12):
        hello: dict[Any, Any] = {"h": "n9", "a": ["127.0.0.1", 7999], "n": rng.randbytes(16)}
        for name in ("h", "a", "n", "m"):
            r = rng.random()
            if r < 0.4:
                hello[name] = rng.choice(_ODD)
            elif r < 0.55:
                hello.pop(name, None)
        out.append(frame(hello) + (frame({"m": rng.choice(_ODD)}) if rng.random() < 0.5 else b""))
    out.append(frame({"i": 1, "v": "mutation", "p": {}}))  # a request before any hello
    rng.shuffle(out)
    return out


def send_each(port: int, payloads: list[bytes], read_s: float = 2.0) -> list[bytes]:
    """Open one connection per payload (all at once), send it, half-close and read what comes back."""
    socks: list[socket.socket] = []
    answers: list[bytes] = []
    try:
        for data in payloads:
            s = socket.create_connection(("127.0.0.1", port), timeout=read_s)
            socks.append(s)
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError:  # the node closed on a bad prefix before taking the rest: fine
                pass
        for s in socks:
            buf = b""
            deadline = time.monotonic() + read_s
            try:
                while time.monotonic() < deadline:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
            except OSError:  # a reset after a refused frame, or the node still thinking: judged by the round trip
                pass
            answers.append(buf)
    finally:
        for s in socks:
            s.close()
    return answers


def stall(port: int, count: int, partial: bytes = struct.pack(">I", 100) + b"ab") -> list[socket.socket]:
    """``count`` connections that sent a partial frame and then go quiet (closed by the caller)."""
    out = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(partial)
        out.append(s)
    return out


def decode_answers(data: bytes) -> list[Any]:
    """The complete frames in what a connection received (a trailing partial one is dropped)."""
    out, off = [], 0
    while off + 4 <= len(data):
        (n,) = struct.unpack_from(">I", data, off)
        if off + 4 + n > len(data):
            break
        out.append(msgpack.unpackb(data[off + 4:off + 4 + n], raw=False, strict_map_key=False))
        off += 4 + n
    return out


def unnamed_errors(answers: list[bytes]) -> list[str]:
    """Every answer that is not a well-formed response with a named error (or ok), described."""
    bad = []
    for data in answers:
        try:
            frames = decode_answers(data)
        except Exception as exc:  # noqa: BLE001 - an undecodable answer is itself the finding
            bad.append(f"undecodable answer {data[:60]!r}: {exc}")
            continue
        for f in frames:
            if not isinstance(f, dict):
                bad.append(f"answer is not a map: {f!r:.100}")
                continue
            err = f.get("error")
            if err is None:
                continue
            if not isinstance(err, dict) or err.get("name") not in ERROR_NAMES:
                bad.append(f"unnamed error: {err!r:.200}")
            elif "Traceback" in str(err.get("message")) or "File \"" in str(err.get("message")):
                bad.append(f"traceback in the answer: {err!r:.300}")
            elif not str(err.get("message", "")).strip() or str(err.get("message")).rstrip().endswith(":"):
                bad.append(f"error without a detail: {err!r:.200}")  # (msgpack's StackError said nothing)
    return bad


def burst(rng: random.Random, client_port: int, internode_port: int, alive: Callable[[], None],
          secret: str | None = None) -> list[str]:
    """One seeded burst on both ports, with stalled connections held open across it; the findings."""
    stalled = stall(client_port, 20) + stall(internode_port, 10)
    try:
        found = unnamed_errors(send_each(client_port, client_payloads(rng, secret)))
        send_each(internode_port, internode_payloads(rng))
        alive()
    finally:
        for s in stalled:
            s.close()
    return found


def main(argv: list[str] | None = None) -> int:
    """Fuzz a running node and print what was found."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--client-port", type=int, required=True)
    ap.add_argument("--internode-port", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bursts", type=int, default=10)
    ap.add_argument("--secret", help="the cluster secret, to reach the admin ops' own checks too")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    found: list[str] = []
    for i in range(args.bursts):
        found += burst(rng, args.client_port, args.internode_port, lambda: None, args.secret)
        print(f"burst {i + 1}: {len(found)} findings so far")
    for f in found:
        print(f)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
