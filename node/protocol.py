"""Sans-IO frame codec and client message validation, shared by nodes, clients and tools.

A frame is a 4-byte big-endian unsigned length followed by that many bytes of msgpack encoding
one map. Nothing here does I/O: :func:`encode_frame` turns a message into bytes and
:class:`FrameDecoder` turns bytes (fed in any chunking) back into messages, so the codec can be
fuzzed and reused by the node, its internode messaging, the harness client and ``ringctl``.

The error classes below carry the wire error names of ``docs/architecture.md``; the node raises
them, :func:`error_response` puts them on the wire and :func:`error_from_wire` rebuilds them in
the client, so both ends agree on one table of names.
"""

from __future__ import annotations

import functools
import math
import re
import struct
import threading
from typing import Any, ClassVar

import msgpack

from node.interpreted import Packed

# 16 MiB: far above any legitimate request (values are capped at MAX_VALUE_BYTES and batches at
# MAX_BATCH_MUTATIONS) yet small enough that a hostile 4 GiB prefix cannot make a node buffer
# gigabytes; Cassandra's native protocol caps frames at 256 MB, we need far less.
MAX_FRAME_BYTES = 16 * 1024 * 1024

# 1 MiB per value: Cassandra's own guidance is to keep cells well under 1 MB; larger values are
# refused with InvalidRequest rather than silently slowing every replica.
MAX_VALUE_BYTES = 1024 * 1024

# Keys are hashed and stored in every index entry; Cassandra limits partition keys to 64 KiB.
MAX_KEY_BYTES = 64 * 1024

# Column names appear in every cell on disk; 64 KiB matches Cassandra's column name limit.
MAX_NAME_BYTES = 64 * 1024

# One batch is applied as one mutation on each replica; bound it so a single request cannot
# monopolise a replica's apply path.
MAX_BATCH_MUTATIONS = 1024

# Bound the number of columns one put or delete may name, for the same reason.
MAX_COLUMNS_PER_REQUEST = 4096

_LENGTH = struct.Struct(">I")
HEADER_BYTES = _LENGTH.size

# msgpack's int range: values outside it cannot be packed at all.
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

CONSISTENCY_LEVELS = (
    "ANY",
    "ONE",
    "TWO",
    "THREE",
    "QUORUM",
    "ALL",
    "LOCAL_QUORUM",
    "EACH_QUORUM",
    "LOCAL_ONE",
)

# Cassandra's drivers default to ONE (LOCAL_ONE in newer ones); we follow the simpler default.
DEFAULT_CONSISTENCY = "ONE"

DATA_OPS = ("put", "get", "delete", "batch")
SCHEMA_OPS = ("create_keyspace", "drop_keyspace", "create_table", "drop_table", "describe")
ADMIN_OPS = (
    "status",
    "ring",
    "gossipinfo",
    "getendpoints",
    "flush",
    "compact",
    "snapshot",
    "drain",
    "clock",
    "faults",
    "disk",
    "route",
    "join",
    "decommission",
    "removenode",
    "cleanup",
    "move",
    "repair",
    "netstats",
    "leader",
    "storage",
    "scrub",
    "localread",
    "listsnapshots",
    "clearsnapshot",
)
OTHER_OPS = ("ping",)
ALL_OPS = DATA_OPS + SCHEMA_OPS + ADMIN_OPS + OTHER_OPS
# Set forms for the per-request membership tests (a tuple scan of 38 names showed in profiles).
_ALL_OPS = frozenset(ALL_OPS)
_DATA_OPS = frozenset(DATA_OPS)
# Ops that need the cluster secret: admin ops and schema changes (describe only reads).
SECRET_OPS = frozenset(ADMIN_OPS + SCHEMA_OPS) - {"describe"}
# What a node stopped by disk_failure_policy still answers (Cassandra keeps JMX for nodetool): it
# stays up to be looked at (status says why it stopped), and can be drained; nothing else.
INSPECTION_OPS = frozenset(("ping", "status", "ring", "gossipinfo", "getendpoints", "describe", "storage",
                            "netstats", "listsnapshots", "disk", "drain"))


# --------------------------------------------------------------------------- errors


# What a log line quotes at most of something a peer or a client sent (a hello's claimed node
# id, a refusal's reason): one hostile message must not write 64 KB into the log.
LOGGED_REASON_CHARS = 300
# What an error answer's message (and each text detail) holds at most: it may echo the client's
# input (names of keyspaces, tables and columns up to 64 KB, an op of any size), and an answer
# must not hand that back in full; the node's own messages stay under this (a ReadFailure quoting
# five replicas' reasons with their file paths is some 1500).
ERROR_MESSAGE_CHARS = 2000


def clipped(text: str, limit: int = LOGGED_REASON_CHARS) -> str:
    """``text`` cut to about ``limit`` characters, its start and end kept (the start says what was
    sent, the end usually what was wrong with it), saying how many characters were cut."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}... ({len(text) - limit} more characters) ...{text[len(text) - tail:]}"


class RinglabError(Exception):
    """An error with a wire name from the table in docs/architecture.md."""

    # A class attribute (each subclass names itself), also when mypyc compiles this module.
    name: ClassVar[str] = "ServerError"

    def __init__(self, message: str, **details: Any) -> None:
        message = clipped(message, ERROR_MESSAGE_CHARS)
        super().__init__(message)
        self.message = message
        self.details = {k: _clipped_detail(v) for k, v in details.items()}

    def to_wire(self) -> dict[str, Any]:
        """The ``error`` map of a response."""
        out: dict[str, Any] = {"name": self.name, "message": self.message}
        out.update(self.details)
        return out


class Unavailable(RinglabError):
    """Too few replicas alive for the consistency level; nothing was sent."""

    name = "Unavailable"


class WriteTimeout(RinglabError):
    """Not enough write acknowledgements in time; the write may have been applied."""

    name = "WriteTimeout"


class ReadTimeout(RinglabError):
    """Not enough read responses in time."""

    name = "ReadTimeout"


class Overloaded(RinglabError):
    """Refused before execution because the node is at its in-flight limit."""

    name = "Overloaded"


class InvalidRequest(RinglabError):
    """Bad keyspace, table, value or arguments."""

    name = "InvalidRequest"


class Unauthorized(RinglabError):
    """Admin operation without the cluster secret."""

    name = "Unauthorized"


class ProtocolError(RinglabError):
    """Malformed frame; the connection is closed after it."""

    name = "ProtocolError"


class ServerError(RinglabError):
    """An unexpected failure inside the node (a bug); the outcome is unknown."""

    name = "ServerError"


class WriteFailure(RinglabError):
    """Replicas failed the write (a full disk, a failed commit log fsync, writes stopped), so the
    level cannot be met; answered at once with each replica's reason. The write may have been
    applied on the replicas that did not fail, as Cassandra's WriteFailure."""

    name = "WriteFailure"


class ReadFailure(RinglabError):
    """Replicas failed the read (a corrupt SSTable: ``failures`` names the file), so the level
    cannot be met; answered at once instead of a ReadTimeout."""

    name = "ReadFailure"


ERROR_CLASSES: dict[str, type[RinglabError]] = {
    cls.name: cls
    for cls in (
        Unavailable,
        WriteTimeout,
        ReadTimeout,
        Overloaded,
        InvalidRequest,
        Unauthorized,
        ProtocolError,
        ServerError,
        WriteFailure,
        ReadFailure,
    )
}


def _clipped_detail(value: Any) -> Any:
    """A text detail (or each text of a map of them, a ReadFailure's ``failures``) clipped."""
    if isinstance(value, str):
        return clipped(value, ERROR_MESSAGE_CHARS)
    if isinstance(value, dict):
        return {k: clipped(v, ERROR_MESSAGE_CHARS) if isinstance(v, str) else v for k, v in value.items()}
    return value


def error_from_wire(error: Any) -> RinglabError:
    """Rebuild the typed exception from a response's ``error`` map (unknown names → ServerError)."""
    if not isinstance(error, dict):
        return ServerError(f"malformed error in response: {error!r}")
    name = error.get("name")
    message = error.get("message")
    details = {k: v for k, v in error.items() if k not in ("name", "message")}
    cls = ERROR_CLASSES.get(name, ServerError) if isinstance(name, str) else ServerError
    text = message if isinstance(message, str) else repr(message)
    if cls is ServerError and name != "ServerError":
        text = f"{name}: {text}"
    return cls(text, **details)


def error_response(request_id: Any, error: RinglabError) -> dict[str, Any]:
    """The response map for a failed request."""
    return {"id": request_id, "ok": False, "error": error.to_wire()}


def ok_response(request_id: Any, **fields: Any) -> dict[str, Any]:
    """The response map for a successful request."""
    out: dict[str, Any] = {"id": request_id, "ok": True}
    out.update(fields)
    return out


# --------------------------------------------------------------------------- framing


class _Packers(threading.local):
    """One msgpack Packer per thread: ``msgpack.packb`` builds a Packer per call, which cost a
    third of packing a request; Packers are not thread-safe, and the harness packs from threads."""

    def __init__(self) -> None:
        self.packer = msgpack.Packer(use_bin_type=True)


_PACKERS = _Packers()

# A Packer keeps the largest buffer it ever grew to; after packing more than this, a thread gets a
# fresh one rather than hold a frame-sized buffer (up to MAX_FRAME_BYTES) for good.
_PACKER_KEEP_BYTES = 1024 * 1024


def pack(obj: Any) -> bytes:
    """msgpack bytes of ``obj`` (bin type for bytes, str for str)."""
    out = _PACKERS.packer.pack(obj)
    if len(out) > _PACKER_KEEP_BYTES:
        _PACKERS.packer = msgpack.Packer(use_bin_type=True)
    return out


def _pack_checked(obj: Any) -> bytes:
    try:
        return pack(obj)
    except (TypeError, ValueError, OverflowError) as exc:  # the Packer resets its buffer itself
        raise ProtocolError(f"message cannot be encoded as msgpack: {exc}") from exc


def encode_frame(obj: Any) -> bytes:
    """One length-prefixed frame carrying ``obj`` (raises ProtocolError if it would be too big)."""
    body = _pack_checked(obj)
    if len(body) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds MAX_FRAME_BYTES={MAX_FRAME_BYTES}")
    return _LENGTH.pack(len(body)) + body


def pack_map(obj: dict[str, Any]) -> Packed:
    """``obj`` packed once for :func:`encode_request` (ProtocolError if it cannot be encoded)."""
    return Packed(_pack_checked(obj))


def encode_request(rid: int, verb: str, payload: dict[str, Any] | Packed) -> bytes:
    """The frame of ``{"i": rid, "v": verb, "p": payload}``; a :class:`Packed` payload is spliced in
    unencoded, giving the bytes :func:`encode_frame` gives for the map itself."""
    if type(payload) is not Packed:
        return encode_frame({"i": rid, "v": verb, "p": payload})
    pk = _PACKERS.packer.pack
    body = b"".join((b"\x83\xa1i", pk(rid), b"\xa1v", pk(verb), b"\xa1p", payload))
    if len(body) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds MAX_FRAME_BYTES={MAX_FRAME_BYTES}")
    return _LENGTH.pack(len(body)) + body


def encode_empty_reply(rid: int) -> bytes:
    """The frame of ``{"r": rid, "p": {}}`` (a replica's acknowledgement), built without a map."""
    body = b"\x82\xa1r" + _PACKERS.packer.pack(rid) + b"\xa1p\x80"
    return _LENGTH.pack(len(body)) + body


def decode_body(body: bytes | bytearray) -> dict[str, Any]:
    """The message map inside one frame body (raises ProtocolError naming the problem)."""
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"undecodable msgpack: invalid UTF-8 in a string: {exc}") from exc
    except msgpack.StackError as exc:  # its message is empty: say what it means
        raise ProtocolError("undecodable msgpack: StackError: nested deeper than the decoder's limit") from exc
    except Exception as exc:  # msgpack raises ExtraData, FormatError, ValueError, ...
        raise ProtocolError(f"undecodable msgpack: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"message must be a msgpack map, got {type(obj).__name__}")
    return obj


class FrameDecoder:
    """Incremental frame parser: ``feed`` bytes in any chunks, take messages with ``next_message``.

    After it raises :class:`ProtocolError` the stream is out of sync and the decoder stays
    failed; the caller should answer (if it can) and close the connection.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        # Where the next frame starts in _buffer: frames are taken by moving this, and the taken
        # bytes are cut off once per feed, not once per frame (each cut moves the rest of a read
        # of hundreds of coalesced frames).
        self._pos = 0
        self._max = max_frame_bytes
        # The failure's text only: a stored exception would hold its traceback, whose frames
        # hold the frame body (up to 16 MiB) in a reference cycle with this decoder, alive until
        # a full GC, which the node's raised GC thresholds make rare.
        self._failed: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as messages."""
        return len(self._buffer) - self._pos

    def take_buffered(self) -> bytes:
        """Remove and return the bytes not yet returned as messages (e.g. to re-queue them)."""
        out = bytes(self._buffer[self._pos:])
        self._buffer.clear()
        self._pos = 0
        return out

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        if self._failed is None:
            if self._pos:
                del self._buffer[:self._pos]
                self._pos = 0
            self._buffer += data

    def _next_body(self) -> bytearray | None:
        """The next complete frame's body, taken from the buffer; None until it has arrived."""
        buf = self._buffer
        pos = self._pos
        if len(buf) - pos < HEADER_BYTES:
            return None
        (length,) = _LENGTH.unpack_from(buf, pos)
        if length > self._max:
            # Checked on the prefix alone so a hostile length never makes us buffer the body.
            self._fail(ProtocolError(f"frame length {length} exceeds MAX_FRAME_BYTES={self._max}"))
        end = pos + HEADER_BYTES + length
        if len(buf) < end:
            return None
        body = buf[pos + HEADER_BYTES:end]
        if end == len(buf):
            buf.clear()
            self._pos = 0
        else:
            self._pos = end
        return body

    def next_message(self) -> dict[str, Any] | None:
        """The next complete message, or None until more bytes arrive."""
        if self._failed is not None:
            raise ProtocolError(self._failed)
        # _next_body and decode_body's good path inlined: every message of a node (client
        # requests, replica requests and their acknowledgements) passes here, and the calls
        # around the msgpack decode cost more than the decode itself.
        buf = self._buffer
        pos = self._pos
        size = len(buf)
        if size - pos < HEADER_BYTES:
            return None
        (length,) = _LENGTH.unpack_from(buf, pos)
        if length > self._max:
            self._fail(ProtocolError(f"frame length {length} exceeds MAX_FRAME_BYTES={self._max}"))
        end = pos + HEADER_BYTES + length
        if size < end:
            return None
        body = buf[pos + HEADER_BYTES:end]
        if end == size:
            buf.clear()
            self._pos = 0
        else:
            self._pos = end
        try:
            obj = msgpack.unpackb(body, raw=False, strict_map_key=False)
        except Exception:
            obj = None  # decode_body below names the problem
        if isinstance(obj, dict):
            return obj
        try:
            return decode_body(body)
        except ProtocolError as exc:
            problem = exc.message
        del body  # nothing of the failed frame outlives this call (exc is gone with its block)
        self._fail(ProtocolError(problem))
        raise AssertionError("unreachable")  # pragma: no cover

    def messages(self) -> list[dict[str, Any]]:
        """Every complete message buffered so far."""
        out = []
        while (msg := self.next_message()) is not None:
            out.append(msg)
        return out

    def _fail(self, exc: ProtocolError) -> None:
        self._failed = exc.message
        self._buffer = bytearray()  # clear() keeps the capacity of a 16 MiB buffer
        self._pos = 0
        raise exc


# --------------------------------------------------------------------------- values and keys


def check_value(value: Any, where: str) -> None:
    """Refuse a client value that is not a non-nil msgpack scalar within MAX_VALUE_BYTES."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise InvalidRequest(f"{where}: integer {value} is outside msgpack's range")
        return
    if isinstance(value, float):
        if math.isnan(value):
            # NaN != NaN would make the equal-timestamp tie-break and digests ill-defined.
            raise InvalidRequest(f"{where}: NaN is not a storable value")
        return
    if isinstance(value, (str, bytes)):
        size = len(value.encode("utf-8")) if isinstance(value, str) else len(value)
        if size > MAX_VALUE_BYTES:
            raise InvalidRequest(f"{where}: value of {size} bytes exceeds MAX_VALUE_BYTES={MAX_VALUE_BYTES}")
        return
    if value is None:
        raise InvalidRequest(f"{where}: nil is not a value (use delete)")
    raise InvalidRequest(f"{where}: value must be int, float, bool, str or bytes, got {type(value).__name__}")


def encode_value(value: Any) -> bytes:
    """The stored bytes of a client value (its msgpack packing)."""
    return pack(value)


def decode_value(data: bytes) -> Any:
    """The client value stored as ``data``."""
    return msgpack.unpackb(data, raw=False)


def key_bytes(key: Any) -> bytes:
    """The partition key bytes of a client key: bytes as is, str as UTF-8, int as its decimal text."""
    if isinstance(key, bytes):
        out = key
    elif isinstance(key, str):
        out = key.encode("utf-8")
    elif isinstance(key, int) and not isinstance(key, bool):
        out = str(key).encode("ascii")
    else:
        raise InvalidRequest(f"key must be str, bytes or int, got {type(key).__name__}")
    if len(out) > MAX_KEY_BYTES:
        raise InvalidRequest(f"key of {len(out)} bytes exceeds MAX_KEY_BYTES={MAX_KEY_BYTES}")
    if not out:
        raise InvalidRequest("key must not be empty")
    return out


# --------------------------------------------------------------------------- request validation


def _field(msg: dict[str, Any], name: str, types: type | tuple[type, ...], required: bool = True) -> Any:
    value = msg.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"missing field {name!r}")
        return None
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise InvalidRequest(f"field {name!r} must be {_type_names(types)}, got bool")
    if not isinstance(value, types):
        raise InvalidRequest(f"field {name!r} must be {_type_names(types)}, got {type(value).__name__}")
    return value


def _type_names(types: type | tuple[type, ...]) -> str:
    seq = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in seq)


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidRequest(f"{what} must not be empty")
    if len(value) > MAX_NAME_BYTES // 4 and len(value.encode("utf-8")) > MAX_NAME_BYTES:
        raise InvalidRequest(f"{what} longer than {MAX_NAME_BYTES} bytes")
    if "\x00" in value:
        # Storage joins column names with NUL on disk (node/storage/sstable.py).
        raise InvalidRequest(f"{what} must not contain NUL")
    return value


# Keyspace and table names: 1-48 ASCII letters, digits or underscores (Cassandra's rule).
_IDENTIFIER = re.compile(r"[A-Za-z0-9_]{1,48}")


def optional_table(msg: dict[str, Any], op: str) -> tuple[str | None, str | None]:
    """The (keyspace, table) an admin op may narrow itself to (flush, compact): each absent or a
    name; another type is InvalidRequest naming it (it matched nothing, or reached storage)."""
    out = []
    for field in ("keyspace", "table"):
        v = msg.get(field)
        out.append(None if v is None else _name(v, f"{op}: {field}"))
    return out[0], out[1]


def _identifier(value: Any, what: str) -> str:
    name = _name(value, what)
    # Keyspace and table names become directory names on every node.
    if _IDENTIFIER.fullmatch(name) is None:
        raise InvalidRequest(f"{what} {name!r} must be 1-48 ASCII letters, digits or underscores")
    return name


def _consistency(msg: dict[str, Any]) -> str:
    cl = _field(msg, "consistency", str, required=False)
    if cl is None:
        return DEFAULT_CONSISTENCY
    cl = cl.upper()
    if cl not in CONSISTENCY_LEVELS:
        raise InvalidRequest(f"unknown consistency level {msg['consistency']!r}; one of {', '.join(CONSISTENCY_LEVELS)}")
    return cl


def _timestamp(msg: dict[str, Any]) -> int | None:
    ts = _field(msg, "timestamp", int, required=False)
    if ts is not None and not 0 <= ts < 2**63:
        raise InvalidRequest(f"timestamp {ts} must be a non-negative int64 of microseconds")
    return ts


def _ttl(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 20 * 365 * 86400:
        raise InvalidRequest(f"{where}: ttl must be a positive number of seconds up to 20 years, got {value!r}")
    return value


def _columns_map(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where}: 'columns' must be a map of column name to value")
    if not value:
        raise InvalidRequest(f"{where}: 'columns' must not be empty")
    if len(value) > MAX_COLUMNS_PER_REQUEST:
        raise InvalidRequest(f"{where}: more than {MAX_COLUMNS_PER_REQUEST} columns")
    for name, v in value.items():
        _name(name, f"{where}: column name")
        check_value(v, f"{where}: column {name!r}")
    return value


def _column_list(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidRequest(f"{where}: 'columns' must be a list of column names")
    if len(value) > MAX_COLUMNS_PER_REQUEST:
        raise InvalidRequest(f"{where}: more than {MAX_COLUMNS_PER_REQUEST} columns")
    for name in value:
        _name(name, f"{where}: column name")
    return value


@functools.lru_cache(maxsize=1024)
def _is_identifier(name: str) -> bool:
    """Whether ``_identifier`` accepts ``name`` (cached: a cluster has few keyspaces and tables)."""
    return _IDENTIFIER.fullmatch(name) is not None


_LEVELS = frozenset(CONSISTENCY_LEVELS)
# Below these lengths no UTF-8 encoding can pass the byte limits (4 bytes per code point at most).
_FAST_KEY_CHARS = MAX_KEY_BYTES // 4
_FAST_NAME_CHARS = MAX_NAME_BYTES // 4
_FAST_VALUE_CHARS = MAX_VALUE_BYTES // 4
_MAX_TTL_S = 20 * 365 * 86400


def _fast_put(msg: dict[str, Any]) -> dict[str, Any] | None:
    """:func:`validate_request`'s result for a put that plainly passes every check, else None.

    A client write's validation was a tenth of its coordinator's work in the write path's profile:
    the common put (str names and key, int/str/bytes/float values, exact types) is checked here in
    one pass; anything else (None) takes the general path, which names what is wrong, so both
    accept the same requests and give the same result (tests/unit/test_fast_put.py).
    """
    rid = msg.get("id")
    ks = msg.get("keyspace")
    table = msg.get("table")
    key = msg.get("key")
    columns = msg.get("columns")
    if (type(rid) is not int or type(ks) is not str or type(table) is not str or type(key) is not str
            or type(columns) is not dict or not 0 < len(key) <= _FAST_KEY_CHARS
            or not 0 < len(columns) <= MAX_COLUMNS_PER_REQUEST
            or not _is_identifier(ks) or not _is_identifier(table)):
        return None
    cl = msg.get("consistency")
    if cl is None:
        cl = DEFAULT_CONSISTENCY
    elif type(cl) is not str or (cl := cl.upper()) not in _LEVELS:
        return None
    ttl = msg.get("ttl")
    if ttl is not None and (type(ttl) is not int or not 0 < ttl <= _MAX_TTL_S):
        return None
    ts = msg.get("timestamp")
    if ts is not None and (type(ts) is not int or not 0 <= ts < 2**63):
        return None
    for name, v in columns.items():
        if type(name) is not str or not 0 < len(name) <= _FAST_NAME_CHARS or "\x00" in name:
            return None
        tv = type(v)
        if tv is int:
            if not _INT_MIN <= v <= _INT_MAX:
                return None
        elif tv is str:
            if len(v) > _FAST_VALUE_CHARS:
                return None
        elif tv is bytes:
            if len(v) > MAX_VALUE_BYTES:
                return None
        elif tv is not float or v != v:  # NaN: the general path names it
            return None
    out = dict(msg)
    out["key_bytes"] = key.encode("utf-8")
    out["consistency"] = cl
    out["ttl"] = ttl
    out["timestamp"] = ts
    return out


def validate_request(msg: dict[str, Any]) -> dict[str, Any]:
    """Check a client request's fields and types; returns it normalised or raises InvalidRequest.

    Normalisation: ``consistency`` upper-cased with its default filled in, ``key`` turned into
    ``key_bytes`` (bytes), ``columns`` of a get/delete as a list or None.
    """
    if msg.get("op") == "put":
        fast = _fast_put(msg)
        if fast is not None:
            return fast
    return _validate_general(msg)


def _validate_general(msg: dict[str, Any]) -> dict[str, Any]:
    """:func:`validate_request` for every request, field by field (the errors name the field)."""
    request_id = msg.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int):
        raise InvalidRequest("missing or non-integer field 'id'")
    op = msg.get("op")
    if not isinstance(op, str):
        raise InvalidRequest("missing or non-string field 'op'")
    if op not in _ALL_OPS:
        raise InvalidRequest(f"unknown op {op!r}")
    out = dict(msg)
    if op in _DATA_OPS:
        out["keyspace"] = _identifier(msg.get("keyspace"), "keyspace")
        out["table"] = _identifier(msg.get("table"), "table")
        if "key" not in msg:
            raise InvalidRequest("missing field 'key'")
        out["key_bytes"] = key_bytes(msg["key"])
        out["consistency"] = _consistency(msg)
        if op == "put":
            _columns_map(msg.get("columns"), "put")
            out["ttl"] = _ttl(msg.get("ttl"), "put")
            out["timestamp"] = _timestamp(msg)
        elif op == "get":
            out["columns"] = _column_list(msg.get("columns"), "get")
            limit = _field(msg, "limit", int, required=False)
            if limit is not None and limit <= 0:
                raise InvalidRequest(f"limit must be positive, got {limit}")
            if out["consistency"] == "ANY":
                raise InvalidRequest("ANY is a write-only consistency level")
        elif op == "delete":
            out["columns"] = _column_list(msg.get("columns"), "delete")
            out["timestamp"] = _timestamp(msg)
        elif op == "batch":
            out["timestamp"] = _timestamp(msg)
            muts = _field(msg, "mutations", list)
            if not muts:
                raise InvalidRequest("batch: 'mutations' must not be empty")
            if len(muts) > MAX_BATCH_MUTATIONS:
                raise InvalidRequest(f"batch: more than {MAX_BATCH_MUTATIONS} mutations")
            for i, m in enumerate(muts):
                where = f"batch mutation {i}"
                if not isinstance(m, dict):
                    raise InvalidRequest(f"{where}: must be a map")
                kind = m.get("op")
                if kind == "put":
                    _columns_map(m.get("columns"), where)
                    _ttl(m.get("ttl"), where)
                elif kind == "delete":
                    _column_list(m.get("columns"), where)
                else:
                    raise InvalidRequest(f"{where}: 'op' must be 'put' or 'delete', got {kind!r}")
    elif op in ("create_keyspace", "drop_keyspace"):
        out["name"] = _identifier(msg.get("name"), "keyspace name")
        if op == "create_keyspace":
            _field(msg, "replication", dict)
    elif op in ("create_table", "drop_table"):
        out["keyspace"] = _identifier(msg.get("keyspace"), "keyspace")
        out["name"] = _identifier(msg.get("name"), "table name")
        if op == "create_table":
            _field(msg, "options", dict, required=False)
    elif op == "getendpoints":
        out["keyspace"] = _identifier(msg.get("keyspace"), "keyspace")
        if "key" not in msg:
            raise InvalidRequest("missing field 'key'")
        out["key_bytes"] = key_bytes(msg["key"])
    return out
