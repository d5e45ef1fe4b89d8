"""The history model: operations, a streaming JSONL writer/reader, and Jepsen's EDN format.

A history is the ordered list of every client and nemesis operation of a test, as Jepsen
records it: each client operation is an ``invoke`` followed by exactly one completion (``ok``,
``fail`` or ``info``) from the same process. ``docs/history-format.md`` documents the fields.

Readers stream: they yield one :class:`Op` at a time and never hold the file in memory, so a
history of ten million operations costs the memory of one line plus what the caller keeps.
"""

from __future__ import annotations

import bisect
import functools
import gc
import io
import itertools
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, TextIO, TypeVar

import msgspec
import orjson

_F = TypeVar("_F", bound=Callable[..., Any])

OP_TYPES = frozenset({"invoke", "ok", "fail", "info"})
COMPLETION_TYPES = frozenset({"ok", "fail", "info"})
NEMESIS = "nemesis"

# The fields an Op has besides ``extra``, in the order they are written.
_FIELDS = ("index", "time", "process", "type", "f", "key", "value", "node", "cl", "timestamp", "error")
_OPTIONAL = ("node", "cl", "timestamp", "error")
_FIELDS_SET = frozenset(_FIELDS)

# How much of an EDN file is read at a time: large enough that the regex tokenizer runs on long
# stretches, small enough that memory stays flat whatever the file's size.
_EDN_CHUNK_CHARS = 1 << 16
# Refill the buffer when fewer than this many characters are left: longer than any token in a
# Jepsen history, and small enough that the copy of the leftover is rare and cheap.
_EDN_REFILL_CHARS = 1 << 12


# The longest line (JSONL, Jepsen log) or EDN token read: a set workload's final read of every
# element is the longest legitimate line (about 100 KB for 10,000 elements); 64 MiB is far above
# it and keeps a hostile file from making `harness check` read a 1 GiB line whole.
MAX_LINE_BYTES = 64 * 1024 * 1024
# Deepest nesting of lists and maps in one operation. Jepsen values are scalars, pairs, or lists
# of scalars (depth 3 at most); past this a file is not a history, and deeper structures would
# exhaust the recursion of the JSON parser and of the checkers walking the values.
MAX_NESTING = 100
# How much of a JSONL history is read at a time: big enough that splitting it into lines is cheap
# per line, small beside MAX_LINE_BYTES (a longer line is assembled from several blocks).
_READ_BLOCK_BYTES = 1 << 16


class HistoryError(ValueError):
    """A history file or operation is malformed; the message names the line and the field."""


def _lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str, bool]]:
    """``(lineno, text, ended_by_newline)`` per line, decoded as UTF-8, at most MAX_LINE_BYTES each.

    Invalid UTF-8 and over-long lines raise HistoryError naming ``path:line``.
    """
    with open(path, "rb") as f:
        lineno = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > MAX_LINE_BYTES:
                raise HistoryError(f"{path}:{lineno}: line longer than {MAX_LINE_BYTES} bytes (MAX_LINE_BYTES)")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise HistoryError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start} of the line)") from None
            yield lineno, text, text.endswith("\n")


def _too_deep(value: Any) -> bool:
    """True if lists/maps nest deeper than MAX_NESTING (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            if depth > MAX_NESTING:
                return True
            stack.extend((x, depth + 1) for x in v if isinstance(x, (list, dict)))
    return False


@dataclass(slots=True)
class Op:
    """One history event: an invocation or a completion by a client process or the nemesis."""

    index: int
    time: int
    process: int | str
    type: str
    f: str
    key: Any = None
    value: Any = None
    node: str | None = None
    cl: str | None = None
    timestamp: int | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every core field, optional ones only when set, then ``extra``."""
        d: dict[str, Any] = {
            "index": self.index,
            "time": self.time,
            "process": self.process,
            "type": self.type,
            "f": self.f,
            "key": self.key,
            "value": self.value,
        }
        for name in _OPTIONAL:
            v = getattr(self, name)
            if v is not None:
                d[name] = v
        if self.extra:
            d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "operation") -> Op:
        """Build an Op from its JSON form, raising HistoryError naming the bad field."""
        if not isinstance(d, dict):
            raise HistoryError(f"{where}: expected an object, got {type(d).__name__}")
        try:
            index = d["index"]
            time = d["time"]
            process = d["process"]
            typ = d["type"]
            f = d["f"]
        except KeyError as e:
            raise HistoryError(f"{where}: missing field {e.args[0]!r}") from None
        if type(index) is not int:
            raise HistoryError(f"{where}: field 'index' must be an integer, got {index!r}")
        if type(time) is not int:
            raise HistoryError(f"{where}: field 'time' must be an integer (ns), got {time!r}")
        if type(process) is not int and process != NEMESIS:
            raise HistoryError(f"{where}: field 'process' must be an integer or 'nemesis', got {process!r}")
        if type(typ) is not str or typ not in OP_TYPES:
            raise HistoryError(f"{where}: field 'type' must be one of invoke/ok/fail/info, got {typ!r}")
        if type(f) is not str:
            raise HistoryError(f"{where}: field 'f' must be a string, got {f!r}")
        ts = d.get("timestamp")
        if ts is not None and type(ts) is not int:
            raise HistoryError(f"{where}: field 'timestamp' must be an integer (µs), got {ts!r}")
        extra = {k: v for k, v in d.items() if k not in _FIELDS} if len(d) > 7 else {}
        return cls(index, time, process, typ, f, d.get("key"), d.get("value"), d.get("node"),
                   d.get("cl"), ts, d.get("error"), extra)

    def is_client(self) -> bool:
        """True for client operations, False for the nemesis."""
        return self.process != NEMESIS


def _dumps(d: dict[str, Any]) -> bytes:
    """One history line's JSON (compact, UTF-8) without its newline."""
    try:
        return orjson.dumps(d)
    except TypeError:
        # What orjson does not write (non-string keys, integers past 64 bits) json writes as before.
        return json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class HistoryWriter:
    """Appends operations to a JSONL history, one line per op, flushed as each is written.

    Flushing per operation is what lets an interrupted run keep every line it recorded; pass
    ``fsync=True`` to survive a machine crash too (much slower), or ``flush=False`` where a lost
    tail costs nothing (a simulated run replays from its seed) and a system call per operation
    would.
    """

    def __init__(self, path: str | os.PathLike[str], fsync: bool = False, flush: bool = True) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self._flush = flush or fsync
        self._file: BinaryIO = open(self.path, "ab")
        self.count = 0

    def write(self, op: Op | dict[str, Any]) -> None:
        """Append one operation and flush it to the operating system (unless ``flush=False``)."""
        d = op.to_dict() if isinstance(op, Op) else op
        self._file.write(_dumps(d) + b"\n")
        if self._flush:
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
        self.count += 1

    append = write

    def close(self) -> None:
        """Close the file (every line is already flushed)."""
        self._file.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_jsonl(ops: Iterable[Op], path: str | os.PathLike[str]) -> int:
    """Write a whole history as JSONL (buffered; for tools, not for live runs); returns the count."""
    n = 0
    with open(path, "wb") as out:
        for op in ops:
            out.write(_dumps(op.to_dict()) + b"\n")
            n += 1
    return n


def _parse_slowly(path: str | os.PathLike[str], lineno: int, raw: bytes) -> Any:
    """The stdlib parse of a line orjson refused: blank lines (None), the UTF-8 error, JSON that
    only the stdlib takes (NaN, integers past 64 bits), and json's own error messages."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HistoryError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start} of the line)") from None
    if not line.strip():
        return None
    try:
        return json.loads(line)
    except RecursionError:
        raise HistoryError(f"{path}:{lineno}: nested deeper than {MAX_NESTING} levels (MAX_NESTING)") from None


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[Op]:
    """Stream the operations of a JSONL history; a truncated last line is ignored."""
    op_of = _op_of_checked
    for d in read_jsonl_records(path):
        # read_jsonl_records checked every field, so the Op is built without checking again.
        yield op_of(d)


def read_jsonl_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Stream a JSONL history as the parsed line objects, each checked as :meth:`Op.from_dict`
    checks it (the same HistoryError for a bad line); a truncated last line is ignored."""
    for lineno, lines, ended, _chunk in _line_blocks(path):
        yield from _checked_dicts(path, lineno, lines, ended)


def _checked_dicts(path: str | os.PathLike[str], lineno: int, lines: list[bytes], ended: bool
                   ) -> Iterator[dict[str, Any]]:
    """The checked objects of one block of lines (the first is line ``lineno + 1``)."""
    # orjson parses a line several times faster than json (parsing was most of a 1M-line
    # check); whatever it refuses is parsed again by json, so both accept the same files.
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    op_types = OP_TYPES
    for raw in lines:
        lineno += 1
        try:
            d = loads(raw)
        except decode_error:
            try:
                d = _parse_slowly(path, lineno, raw)
            except ValueError as e:
                if isinstance(e, HistoryError):
                    raise
                if not ended:
                    # An interrupted run can leave half a line at the very end (it comes alone,
                    # not ended by a newline): keep the rest.
                    return
                raise HistoryError(f"{path}:{lineno}: not valid JSON: {e}") from None
            if d is None and not raw.strip():
                continue
        # Only a line of more than 2 * MAX_NESTING bytes can hold a value nested deeper (each
        # level is an opening and a closing bracket), and only one with that many openings.
        if len(raw) > 2 * MAX_NESTING and raw.count(b"[") + raw.count(b"{") > MAX_NESTING and _too_deep(d):
            raise HistoryError(f"{path}:{lineno}: nested deeper than {MAX_NESTING} levels (MAX_NESTING)")
        # Op.from_dict's checks, inlined for the common case: this runs once per history line.
        # (A missing field or a line that is no object raises; from_dict then names what.)
        try:
            process = d["process"]
            ts = d.get("timestamp")
            typ = d["type"]
            if (type(d["index"]) is int and type(d["time"]) is int
                    and (type(process) is int or process == NEMESIS) and type(typ) is str and typ in op_types
                    and type(d["f"]) is str and (ts is None or type(ts) is int) and type(d) is dict):
                yield d
                continue
        except (KeyError, TypeError, AttributeError):
            pass
        Op.from_dict(d, f"{path}:{lineno}")  # raises the HistoryError naming the field
        yield d  # (not reached: a dict that passes from_dict passed the checks above)


class _Core(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """A history line with an Op's fields only (most lines), as msgspec decodes and checks it:
    :class:`_Line` without the extras, so msgspec fills in and frees 7 fields fewer per line (a
    tenth of reading a line). A line with any other field is refused, and its block decoded as
    :class:`_Line`s."""

    index: int
    time: int
    process: int | Literal["nemesis"]
    type: Literal["invoke", "ok", "fail", "info"]
    f: str
    key: Any = None
    value: Any = None
    node: Any = None
    cl: Any = None
    timestamp: int | None = None
    error: Any = None


class _Line(_Core, gc=False, forbid_unknown_fields=True):
    """A history line with none but the documented fields (docs/history-format.md): read like an
    :class:`Op` (same attribute names) by the checkers that stream a :class:`HistoryFile`'s
    records; :func:`as_op` makes it one."""

    # The documented fields beyond the Op's, which go to Op.extra when present.
    timestamps: Any = msgspec.UNSET
    replicas: Any = msgspec.UNSET
    acked: Any = msgspec.UNSET
    hinted: Any = msgspec.UNSET
    final: Any = msgspec.UNSET
    action: Any = msgspec.UNSET
    # The harness client's text for a fail or info op: without it every block holding one
    # (every block of a faulted campaign) went line by line, a quarter of a sim seed's CPU.
    message: Any = msgspec.UNSET


_LINE_EXTRAS = ("timestamps", "replicas", "acked", "hinted", "final", "action", "message")
_LINES = msgspec.json.Decoder(_Line)

_CORES = msgspec.json.Decoder(_Core)
# After a block that needed _Line's extras (a faulted campaign's fail and info ops carry a
# message), this many blocks are decoded as _Lines straight away before _Core is tried again:
# a refused block costs a partial decode, so the waste stays under 1/16 of one.
_CORE_RETRY_BLOCKS = 16


def read_jsonl_lines(path: str | os.PathLike[str]) -> Iterator[_Line | Op]:
    """Stream a JSONL history as lightweight records that read like Ops: the same operations,
    fields and errors as :func:`read_jsonl`, at a fraction of its cost.

    A block of lines that msgspec decodes whole into :class:`_Core` records, or else into
    :class:`_Line` records (every field of the right type, none undocumented, nothing nested
    deeper than MAX_NESTING) is yielded as such;
    any other block goes line by line through read_jsonl's checks (Ops, and its errors).
    """
    hint = [0]
    for lineno, lines, ended, chunk in _line_blocks(path):
        if not lines:
            continue
        recs = _fast_block(lines, ended, chunk, hint)
        if recs is not None:
            yield from recs
            continue
        for d in _checked_dicts(path, lineno, lines, ended):
            yield _op_of_checked(d)


def _fast_block(lines: list[bytes], ended: bool, chunk: bytes, hint: list[int] | None = None
                ) -> list[_Line] | list[_Core] | None:
    """The records of a block of lines that msgspec takes whole, else None (the slow path's).

    ``hint`` (one counter a reader keeps across its blocks) is how many more blocks go straight
    to _Line after one that _Core refused."""
    if not ended:
        return None
    recs: list[_Line] | list[_Core] | None = None
    if hint is None or hint[0] == 0:
        try:
            recs = _CORES.decode_lines(chunk)
        except Exception:  # noqa: BLE001 - an extra field (or a bad line): _Line decides
            if hint is not None:
                hint[0] = _CORE_RETRY_BLOCKS
    else:
        hint[0] -= 1
    if recs is None:
        try:
            recs = _LINES.decode_lines(chunk)
        except Exception:  # noqa: BLE001 - whatever msgspec refuses, the line-by-line path judges
            return None
    # A blank line is skipped by decode_lines; the count then differs and the slow path
    # numbers the lines for its errors.
    limit = 2 * MAX_NESTING
    if (len(recs) == len(lines)
            and (max(map(len, lines)) <= limit
                 or all(len(raw) <= limit or raw.count(b"[") + raw.count(b"{") <= MAX_NESTING for raw in lines))):
        return recs
    return None


# Blocks whose lines a NumberedRecords keeps for fetching records again: findings cluster in
# time, so a few blocks serve most fetches; each is one _READ_BLOCK_BYTES read.
_FETCH_CACHE_BLOCKS = 8


class NumberedRecords:
    """One streamed pass over a JSONL history's records (as :func:`read_jsonl_lines` yields
    them), numbered from 0, after which :meth:`op` fetches the Op of any number again.

    A checker keeps record numbers instead of records, so a 1M-line check holds a few small
    tuples per operation, not a decoded line (allocating and freeing those was a third of its
    time), and fetches the operations named by the findings it keeps as examples. The pass notes
    where each block of lines starts in the file (a few numbers per 64 KiB), not the lines.
    """

    __slots__ = ("path", "_firsts", "_offsets", "_sizes", "_linenos", "_fast", "_ended", "_cache")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self._firsts: list[int] = []  # the number of each block's first record
        self._offsets: list[int] = []
        self._sizes: list[int] = []
        self._linenos: list[int] = []
        self._fast: list[bool] = []
        self._ended = True
        # Block → its lines (a fast block: each decodes alone) or its records (a slow block).
        self._cache: dict[int, tuple[list[bytes], list[_Line | Op] | None]] = {}

    def __iter__(self) -> Iterator[_Line | Op]:
        # The records of each block are a list: chaining them costs no generator step per record.
        return itertools.chain.from_iterable(self._blocks())

    def _blocks(self) -> Iterator[list[_Line | Op]]:
        """Each block's records, noting where the block is and what its first record's number is."""
        for table in (self._firsts, self._offsets, self._sizes, self._linenos, self._fast):
            table.clear()
        self._cache.clear()
        n = offset = 0
        path = self.path
        hint = [0]
        for lineno, lines, ended, chunk in _line_blocks(path):
            start = offset
            offset += len(chunk)
            if not lines:
                continue
            self._firsts.append(n)
            self._offsets.append(start)
            self._sizes.append(len(chunk))
            self._linenos.append(lineno)
            self._ended = ended
            recs: list[_Line | Op] | None = _fast_block(lines, ended, chunk, hint)  # type: ignore[assignment]
            self._fast.append(recs is not None)
            if recs is None:
                recs = [_op_of_checked(d) for d in _checked_dicts(path, lineno, lines, ended)]
            n += len(recs)
            yield recs

    def op(self, number: int) -> Op:
        """The Op of record ``number`` of the last pass (read again from the file)."""
        b = bisect.bisect_right(self._firsts, number) - 1
        if b < 0 or number < 0:
            raise IndexError(f"no record {number} in {self.path}")
        lines, recs = self._block(b)
        i = number - self._firsts[b]
        if recs is not None:
            return as_op(recs[i])
        return as_op(_LINES.decode(lines[i]))

    def _block(self, b: int) -> tuple[list[bytes], list[_Line | Op] | None]:
        """Block ``b``'s lines, and its records when it took the line-by-line path."""
        hit = self._cache.get(b)
        if hit is not None:
            return hit
        with open(self.path, "rb") as f:
            f.seek(self._offsets[b])
            chunk = f.read(self._sizes[b])
        if len(chunk) != self._sizes[b]:
            raise HistoryError(f"{self.path}: the file shrank while it was being checked")
        ended = self._ended or b < len(self._firsts) - 1
        lines = chunk.split(b"\n")
        if ended:
            lines.pop()
        recs: list[_Line | Op] | None = None
        if not self._fast[b]:
            recs = [_op_of_checked(d) for d in _checked_dicts(self.path, self._linenos[b], lines, ended)]
        if len(self._cache) >= _FETCH_CACHE_BLOCKS:
            del self._cache[next(iter(self._cache))]
        self._cache[b] = (lines, recs)
        return lines, recs


def _op_of_checked(d: dict[str, Any]) -> Op:
    """The Op of a checked line object (no field is checked again)."""
    get = d.get
    fields = _FIELDS_SET
    extra = {k: v for k, v in d.items() if k not in fields} if len(d) > 7 and not fields.issuperset(d) else {}
    return Op(d["index"], d["time"], d["process"], d["type"], d["f"], get("key"), get("value"), get("node"),
              get("cl"), get("timestamp"), get("error"), extra)


def _line_blocks(path: str | os.PathLike[str]) -> Iterator[tuple[int, list[bytes], bool, bytes]]:
    """``(line number before the block's first, its lines, ended_by_newline, the block's bytes)``
    per block read: lines without their newlines, at most MAX_LINE_BYTES each with it (longer
    raise HistoryError naming ``path:line``); a last line without a newline comes alone, with
    ``False``."""
    # Read in blocks and split them: a readline call per line cost as much as parsing it, and a
    # generator step per line as much as checking its fields.
    # A line that spans blocks is kept in pieces and joined once its newline comes: joining the
    # pieces at every block made a long line cost its length squared over the block size (a
    # hostile 60 MB line took minutes).
    with open(path, "rb") as f:
        lineno = 0
        parts: list[bytes] = []  # the unfinished line so far
        held = 0
        while block := f.read(_READ_BLOCK_BYTES):
            if b"\n" not in block:
                parts.append(block)
                held += len(block)
                if held > MAX_LINE_BYTES:
                    raise HistoryError(f"{path}:{lineno + 1}: line longer than {MAX_LINE_BYTES} bytes (MAX_LINE_BYTES)")
                continue
            if parts:
                parts.append(block)
                buf = b"".join(parts)
            else:
                buf = block
            lines = buf.split(b"\n")
            rest = lines.pop()
            if len(buf) >= MAX_LINE_BYTES:  # else no line of these can be that long
                for i, raw in enumerate(lines):
                    if len(raw) >= MAX_LINE_BYTES:
                        raise HistoryError(f"{path}:{lineno + i + 1}: line longer than {MAX_LINE_BYTES} bytes (MAX_LINE_BYTES)")
            yield lineno, lines, True, buf[:len(buf) - len(rest)] if rest else buf
            lineno += len(lines)
            parts, held = ([rest], len(rest)) if rest else ([], 0)
        if parts:
            rest = b"".join(parts)
            yield lineno, [rest], False, rest


def pending_error(path: str | os.PathLike[str], lineno: int, msg: str) -> HistoryError:
    """The error for a malformed line that turned out not to be the last one."""
    return HistoryError(f"{path}:{lineno}: not valid JSON: {msg}")


def read_history(path: str | os.PathLike[str], independent: bool = False) -> Iterator[Op]:
    """Stream a history file: ``.edn`` as Jepsen's EDN, ``.jsonl``/``.json`` as JSONL, and any
    other name by its content (:func:`history_format`): JSONL, EDN op maps (Porcupine's kv test
    logs are EDN in ``.txt`` files) or Jepsen log lines (Porcupine's etcd test data).

    ``independent`` splits EDN values written as jepsen.independent ``[key value]`` tuples.
    """
    p = _readable(path)
    fmt = history_format(p)
    if fmt == "edn":
        return read_edn(p, independent=independent)
    if fmt == "jepsen-log":
        return read_jepsen_log(p)
    return read_jsonl(p)


def _readable(path: str | os.PathLike[str]) -> str:
    """The path of a history file as a string; HistoryError when it is missing or no file."""
    p = str(path)
    if not os.path.exists(p):
        raise HistoryError(f"{p}: no such history file")
    if not os.path.isfile(p):
        raise HistoryError(f"{p}: not a file (a directory or a device)")
    return p


class HistoryFile:
    """A history file, re-read on each pass: iterating it streams :class:`Op` objects
    (:func:`read_history`); checkers that need a few fields per line read :meth:`records`."""

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path

    def __iter__(self) -> Iterator[Op]:
        return read_history(self.path)

    def records(self) -> NumberedRecords | None:
        """The operations of a JSONL history as records that read like Ops, numbered so that
        any can be fetched again as an Op (:class:`NumberedRecords`); None for the other
        formats, which are read as Ops."""
        p = _readable(self.path)
        return NumberedRecords(p) if history_format(p) == "jsonl" else None


def nemesis_steps(history: Iterable[Op]) -> Iterator[tuple[Op, int, dict[str, Any]]]:
    """Each nemesis completion with its invocation's time (its own when none was recorded) and
    its value as a map (empty when it is not one)."""
    started: dict[str, int] = {}
    for op in history:
        if op.process != NEMESIS:
            continue
        if op.type == "invoke":
            started[op.f] = op.time
            continue
        yield op, started.pop(op.f, op.time), (op.value if isinstance(op.value, dict) else {})


def completions(history: Iterable[Op]) -> Iterator[tuple[Op, Op]]:
    """Each client operation's (invocation, completion) in completion order, leniently: nemesis
    entries, completions without an invocation and never-completed invocations are skipped (the
    strict pairing, which names malformed histories, is checkers.linearizable.pairs)."""
    pending: dict[Any, Op] = {}
    for op in history:
        if op.process == NEMESIS:
            continue
        if op.type == "invoke":
            pending[op.process] = op
            continue
        inv = pending.pop(op.process, None)
        if inv is not None:
            yield inv, op


def numbered(history: Iterable[Op]) -> tuple[Iterable[tuple[Any, _Line | Op]], Callable[[Any], Op]]:
    """``(handle, operation)`` for each operation of ``history`` in order, and the Op of a handle.

    A checker keeps handles, not operations: for a JSONL :class:`HistoryFile` (streamed by
    :class:`NumberedRecords`, which reads the few Ops asked for again) and for a list the handle
    is the operation's 0-based position; for any other iterable it is the Op itself (kept as
    before, rather than keeping every operation in a list)."""
    if isinstance(history, HistoryFile):
        records = history.records()
        if records is not None:
            return enumerate(records), records.op
    if isinstance(history, list):
        return enumerate(history), history.__getitem__
    return ((op, op) for op in history), _same


def _same(op: Op) -> Op:
    return op


def as_op(h: Op | _Line | _Core) -> Op:
    """The Op of a checker's handle on an operation: an Op, or a record of read_jsonl_lines."""
    if isinstance(h, Op):
        return h
    extra = {}
    if type(h) is _Line:
        for name in _LINE_EXTRAS:
            v = getattr(h, name)
            if v is not msgspec.UNSET:
                extra[name] = v
    return Op(h.index, h.time, h.process, h.type, h.f, h.key, h.value, h.node, h.cl, h.timestamp, h.error, extra)


def gc_paused(fn: _F) -> _F:
    """Run ``fn`` with the cyclic garbage collector paused (a checker reading a history in bulk).

    A check keeps most of the operations it reads (no cycles among them), and each full collection
    walks a heap that grows by a million objects: about a third of a 1M-line check. Reference
    counting still frees everything. Collection resumes (when it was on) once ``fn`` has returned
    and its locals are gone, so what it kept is not walked even once.
    """

    @functools.wraps(fn)
    def paused(*args: Any, **kwargs: Any) -> Any:
        was = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was:
                gc.enable()

    return paused  # type: ignore[return-value]


def has_client_ops(source: str | os.PathLike[str] | Iterable[Op]) -> bool:
    """True if the history (a path or operations) holds at least one client operation."""
    ops = read_history(source) if isinstance(source, (str, os.PathLike)) else source
    return any(op.is_client() for op in ops)


def pair_ops(ops: Iterable[Op]) -> Iterator[tuple[Op, Op | None]]:
    """Match each invocation with its completion from the same process.

    Yields ``(invoke, completion)`` as completions arrive, then ``(invoke, None)`` for every
    invocation the history never completed (an interrupted run: treat it as ``info``).
    Nemesis operations are paired the same way; a lone nemesis completion is yielded as
    ``(completion, completion)``.
    """
    pending: dict[int | str, Op] = {}
    for op in ops:
        if op.type == "invoke":
            prev = pending.get(op.process)
            if prev is not None:
                raise HistoryError(
                    f"op {op.index}: process {op.process!r} invoked again before op {prev.index} completed"
                )
            pending[op.process] = op
        else:
            inv = pending.pop(op.process, None)
            if inv is None:
                if op.process == NEMESIS:
                    yield op, op
                    continue
                raise HistoryError(f"op {op.index}: {op.type} from process {op.process!r} without an invocation")
            yield inv, op
    for inv in sorted(pending.values(), key=lambda o: o.index):
        yield inv, None


# --------------------------------------------------------------------------------------------
# EDN: the subset Jepsen histories use (maps, vectors, lists, sets, keywords, strings, numbers,
# nil/true/false, tagged elements such as #jepsen.history.Op{...} or #inst "...").


class Keyword(str):
    """An EDN keyword read from a file, kept distinct from strings so it can be written back."""

    __slots__ = ()


class _Tagged:
    __slots__ = ("tag",)

    def __init__(self, tag: str) -> None:
        self.tag = tag


_EDN_TOKEN = re.compile(
    r"""
    (?P<ws>[\s,]+|;[^\n]*)
  | (?P<str>"[^"\\]*+(?:\\.[^"\\]*+)*+")
  | (?P<open>\#\{|[\[({])
  | (?P<close>[\])}])
  | (?P<discard>\#_)
  | (?P<tag>\#[A-Za-z][^\s,\[\]{}()"]*)
  | (?P<char>\\(?:newline|space|tab|return|u[0-9a-fA-F]{4}|.))
  | (?P<atom>[^\s,\[\]{}()"\\;]+)
    """,
    re.VERBOSE | re.DOTALL,
)
_INT = re.compile(r"[+-]?\d+N?")
_FLOAT = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?M?")
_STR_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f"}
_CHAR_NAMES = {"newline": "\n", "space": " ", "tab": "\t", "return": "\r"}


def _edn_string(tok: str) -> str:
    body = tok[1:-1]
    if "\\" not in body:
        return body
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            n = body[i + 1]
            if n == "u":
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_STR_ESCAPES.get(n, n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _edn_atom(tok: str) -> Any:
    if tok == "nil":
        return None
    if tok == "true":
        return True
    if tok == "false":
        return False
    if tok[0] == ":":
        return Keyword(tok[1:])
    if _INT.fullmatch(tok):
        return int(tok.rstrip("N"))
    if _FLOAT.fullmatch(tok):
        return float(tok.rstrip("M"))
    return tok  # a symbol: keep its name


class _Where:
    """Where the EDN reader is: the file and the line of the last token (for error messages)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.line = 1

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def _edn_tokens(f: TextIO, where: Any) -> Iterator[tuple[str, str]]:
    buf = ""
    eof = False
    pos = 0
    while True:
        if not eof and len(buf) - pos < _EDN_REFILL_CHARS:
            chunk = f.read(_EDN_CHUNK_CHARS)
            buf = buf[pos:] + chunk
            pos = 0
            eof = not chunk
        if pos >= len(buf):
            return
        m = _EDN_TOKEN.match(buf, pos)
        if m is None or (m.end() == len(buf) and not eof):
            if eof:
                raise HistoryError(f"{where}: cannot read EDN near {buf[pos:pos + 40]!r}")
            if len(buf) - pos > MAX_LINE_BYTES:
                raise HistoryError(f"{where}: EDN token longer than {MAX_LINE_BYTES} characters (MAX_LINE_BYTES)")
            # The token may continue in the next chunk: read more before deciding, as much again
            # as is held (a fixed chunk made a long token cost its length squared: every read
            # re-matched it from its start).
            chunk = f.read(max(_EDN_CHUNK_CHARS, len(buf) - pos))
            buf = buf[pos:] + chunk
            pos = 0
            eof = not chunk
            continue
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        tok = m.group()
        if isinstance(where, _Where) and "\n" in tok:
            where.line += tok.count("\n")
        if kind != "ws":
            yield kind, tok


def _edn_forms(tokens: Iterator[tuple[str, str]], where: str) -> Iterator[tuple[int, Any]]:
    """Yield (depth, form) for each complete form at depth 0 and for elements at depth 1."""
    stack: list[tuple[str, list[Any]]] = []
    # Depths at which a #_ is waiting to swallow the next complete form.
    discard_depths: list[int] = []
    for kind, tok in tokens:
        if kind == "open":
            stack.append((tok, []))
            if len(stack) > MAX_NESTING:
                raise HistoryError(f"{where}: EDN nested deeper than {MAX_NESTING} levels (MAX_NESTING)")
            continue
        if kind == "discard":
            discard_depths.append(len(stack))
            continue
        if kind == "tag":
            continue  # #inst "..." → the string; #jepsen.history.Op{...} → the map
        if kind == "close":
            if not stack:
                raise HistoryError(f"{where}: unbalanced {tok!r} in EDN")
            opener, items = stack.pop()
            expected = {"[": "]", "(": ")", "{": "}", "#{": "}"}[opener]
            if tok != expected:
                raise HistoryError(f"{where}: EDN {opener!r} closed by {tok!r}")
            if opener == "{":
                if len(items) % 2:
                    raise HistoryError(f"{where}: EDN map with an odd number of forms")
                value: Any = {_edn_key(items[i]): items[i + 1] for i in range(0, len(items), 2)}
            elif opener == "#{":
                value = _sorted_set(items)
            else:
                value = items
        elif kind == "str":
            value = _edn_string(tok)
        elif kind == "char":
            body = tok[1:]
            value = _CHAR_NAMES.get(body) or (chr(int(body[1:], 16)) if len(body) == 5 and body[0] == "u" else body)
        else:
            try:
                value = _edn_atom(tok)
            except ValueError as e:  # an integer longer than Python converts (sys.int_max_str_digits)
                raise HistoryError(f"{where}: EDN number {tok[:20]}... has {len(tok)} digits, more than Python reads"
                                   f" ({sys.get_int_max_str_digits()}, sys.int_max_str_digits)") from None
        depth = len(stack)
        if discard_depths and discard_depths[-1] == depth:
            discard_depths.pop()
            continue
        if depth == 0:
            yield 0, value
        elif depth == 1 and stack[0][0] in ("[", "("):
            yield 1, value
        else:
            stack[-1][1].append(value)
    if stack:
        raise HistoryError(f"{where}: EDN ends inside an unclosed {stack[-1][0]!r}")


def _edn_key(k: Any) -> Any:
    if isinstance(k, list):
        return tuple(k)
    return k


def _sorted_set(items: list[Any]) -> list[Any]:
    try:
        return sorted(items)
    except TypeError:
        return items


def _plain(v: Any) -> Any:
    """EDN value → JSON-friendly value: keywords become strings, maps get string keys."""
    if isinstance(v, Keyword):
        return str(v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k) if not isinstance(k, tuple) else json.dumps(_plain(list(k))): _plain(x) for k, x in v.items()}
    return v


def _op_from_edn(m: Any, n: int, where: str, independent: bool) -> Op:
    if not isinstance(m, dict):
        raise HistoryError(f"{where}: operation {n}: expected an EDN map, got {type(m).__name__}")
    d = {str(k): v for k, v in m.items()}
    for name in ("type", "f", "process"):
        if name not in d:
            raise HistoryError(f"{where}: operation {n}: missing :{name}")
    process = d["process"]
    if isinstance(process, str):
        process = NEMESIS
    elif type(process) is not int:
        raise HistoryError(f"{where}: operation {n}: :process must be an integer or :nemesis, got {_edn_dump(process)[:60]}")
    err = d.get("error")
    if isinstance(err, list) and err:
        err = err[0]
    error = None if err is None else str(_plain(err))
    key = _plain(d.get("key"))
    value = _plain(d.get("value"))
    if independent and "key" not in d and isinstance(value, list) and len(value) == 2:
        key, value = value
    extra = {k: _plain(v) for k, v in d.items() if k not in _FIELDS}
    ts = d.get("timestamp")
    time = d.get("time", 0)
    op = Op(
        index=d.get("index", n) if type(d.get("index", n)) is int else n,
        time=int(time) if isinstance(time, (int, float)) else 0,
        process=process,
        type=str(d["type"]),
        f=str(_plain(d["f"])),
        key=key,
        value=value,
        node=None if d.get("node") is None else str(_plain(d["node"])),
        cl=None if d.get("cl") is None else str(_plain(d["cl"])),
        timestamp=ts if type(ts) is int else None,
        error=error,
        extra=extra,
    )
    if op.type not in OP_TYPES:
        raise HistoryError(f"{where}: operation {n}: :type must be :invoke/:ok/:fail/:info, got {op.type!r}")
    return op


def read_edn(path: str | os.PathLike[str], independent: bool = False) -> Iterator[Op]:
    """Stream a Jepsen EDN history: one map per operation, bare or inside one vector/list."""
    where = _Where(str(path))
    with open(path, encoding="utf-8-sig") as f:
        n = 0
        try:
            for depth, form in _edn_forms(_edn_tokens(f, where), where):
                if depth == 0 and isinstance(form, list):
                    continue  # the closing of a top-level vector whose elements were yielded
                yield _op_from_edn(form, n, str(where), independent)
                n += 1
        except UnicodeDecodeError as e:
            raise HistoryError(f"{path}:{_line_of_byte(path, e)}: not valid UTF-8 ({e.reason})") from None


def _line_of_byte(path: str | os.PathLike[str], e: UnicodeDecodeError) -> int:
    """The line of the first invalid UTF-8 byte in ``path`` (the text reader only knows its chunk)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return lineno
    return 0


def parse_edn(text: str) -> list[Any]:
    """Parse every top-level EDN form in ``text`` (for tests and tools)."""
    out: list[Any] = []
    stack_top: list[Any] = []
    for depth, form in _edn_forms(_edn_tokens(io.StringIO(text), "<string>"), "<string>"):
        if depth == 1:
            stack_top.append(form)
        elif isinstance(form, list):
            out.append(stack_top + form)
            stack_top = []
        else:
            out.append(form)
    return out


def _edn_dump(v: Any) -> str:
    if v is None:
        return "nil"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, Keyword):
        return ":" + v
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON string escapes are valid EDN
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_edn_dump(x) for x in v) + "]"
    if isinstance(v, (set, frozenset)):
        return "#{" + " ".join(_edn_dump(x) for x in _sorted_set(list(v))) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_edn_dump(_kw_key(k))} {_edn_dump(x)}" for k, x in v.items()) + "}"
    raise HistoryError(f"cannot write {type(v).__name__} value {v!r} as EDN")


def _kw_key(k: Any) -> Any:
    if isinstance(k, str) and re.fullmatch(r"[A-Za-z*+!_?<>=-][\w*+!?<>=./-]*", k):
        return Keyword(k)
    return k


def op_to_edn(op: Op, independent: bool = False) -> str:
    """One operation as a Jepsen EDN map (``:type``/``:f`` keywords, ``:process :nemesis``)."""
    parts = [
        f":index {op.index}",
        f":time {op.time}",
        f":type :{op.type}",
        f":process {':nemesis' if op.process == NEMESIS else op.process}",
        f":f {_edn_dump(_kw_key(op.f))}",
    ]
    if independent and op.key is not None:
        parts.append(f":value {_edn_dump([op.key, op.value])}")
    else:
        if op.key is not None:
            parts.append(f":key {_edn_dump(op.key)}")
        parts.append(f":value {_edn_dump(op.value)}")
    for name in _OPTIONAL:
        v = getattr(op, name)
        if v is not None:
            parts.append(f":{name} {_edn_dump(v)}")
    for k, v in op.extra.items():
        parts.append(f"{_edn_dump(_kw_key(k))} {_edn_dump(v)}")
    return "{" + ", ".join(parts) + "}"


def write_edn(ops: Iterable[Op], path: str | os.PathLike[str], independent: bool = False) -> int:
    """Write a history as Jepsen EDN, one map per line; returns the number of operations.

    With ``independent`` keyed values are written as jepsen.independent ``[key value]`` tuples,
    which is what Knossos' independent checker expects; otherwise the key goes in ``:key``.
    """
    n = 0
    with open(path, "w", encoding="utf-8") as out:
        for op in ops:
            out.write(op_to_edn(op, independent))
            out.write("\n")
            n += 1
    return n


# --------------------------------------------------------------------------------------------
# Telling formats apart, and Jepsen's log lines (the form Porcupine's etcd test data takes).

# How much of a file's head is read to tell its format: far more than one operation.
_SNIFF_CHARS = 1 << 14
# The fields are tab-separated in the Jepsen etcd logs Porcupine's etcd tests read
# ("3\t:invoke\t:cas\t[1 2]"); Porcupine's longer etcd logs separate :type from :f by a space
# and follow the value with more fields ("3 \t:ok :read \t66 \t:hint 2913"): the value is
# the first EDN form after :f.
_JEPSEN_LOG_LINE = re.compile(r"jepsen\.util - (\S+)[ \t]+(:[\w-]+)[ \t]+(:?[^\s]+)[ \t]*(.*)$", re.MULTILINE)


def history_format(path: str | os.PathLike[str]) -> str:
    """``"edn"``, ``"jsonl"`` or ``"jepsen-log"``: by extension, else by the file's first lines."""
    p = str(path)
    if p.endswith(".edn"):
        return "edn"
    if p.endswith((".jsonl", ".json")):
        return "jsonl"
    try:
        with open(p, encoding="utf-8", errors="replace") as f:
            head = f.read(_SNIFF_CHARS)
    except OSError:
        return "jsonl"  # the reader reports the error
    text = head.lstrip("\ufeff \t\r\n")
    if not text:
        return "jsonl"
    if text[0] in "[(#;" or re.match(r"\{\s*:", text):
        return "edn"
    if text[0] != "{" and _JEPSEN_LOG_LINE.search(text):
        return "jepsen-log"
    return "jsonl"


def read_jepsen_log(path: str | os.PathLike[str]) -> Iterator[Op]:
    """Stream the operations of Jepsen log lines: ``INFO  jepsen.util - 3\t:invoke\t:cas\t[1 2]``.

    Lines that are not operations are skipped. The value is EDN; a keyword in place of the
    value of a ``fail``/``info`` completion (``:timed-out``) is its error. The log has no times:
    ``time`` is 0 and the order of the lines is the order of the events. As in JSONL, a last
    line cut off mid-write (no newline, and its value missing or not complete EDN) is dropped.
    """
    for _, op in _jepsen_log_ops(path):
        yield op


def _jepsen_log_ops(path: str | os.PathLike[str]) -> Iterator[tuple[int, Op]]:
    """``(lineno, op)`` for each operation line of a Jepsen log."""
    where = str(path)
    n = 0
    for lineno, line, ended in _lines(path):
        m = _JEPSEN_LOG_LINE.search(line.rstrip("\r\n"))
        if m is None:
            continue
        proc, typ, fname, raw = m.group(1), m.group(2)[1:], m.group(3), m.group(4).strip()
        if typ not in OP_TYPES:
            continue
        if proc.lstrip("-").isdigit():
            process: int | str = int(proc)
        elif proc == ":nemesis":
            process = NEMESIS
        else:
            continue
        try:
            forms = parse_edn(raw) if raw else [None]
        except HistoryError as e:
            if not ended:
                return  # the run was interrupted while this line was being written
            raise HistoryError(f"{where}:{lineno}: the value {raw[:40]!r}: {str(e).removeprefix('<string>: ')}"
                               ) from None
        if not ended and not raw:
            return  # cut off before its value: the tab after :f is all that was written
        value = _plain(forms[0]) if forms else None
        error = None
        if typ in ("fail", "info") and isinstance(forms[0] if forms else None, Keyword):
            error, value = str(forms[0]), None
        yield lineno, Op(n, 0, process, typ, fname.lstrip(":"), None, value, error=error)
        n += 1


def _edn_ops(path: str | os.PathLike[str]) -> Iterator[tuple[int, Op]]:
    """``(lineno, op)`` for each operation of an EDN history (the line its map ends on)."""
    where = _Where(str(path))
    with open(path, encoding="utf-8-sig") as f:
        n = 0
        for depth, form in _edn_forms(_edn_tokens(f, where), where):
            if depth == 0 and isinstance(form, list):
                continue
            yield where.line, _op_from_edn(form, n, str(where), False)
            n += 1


def op_line(path: str | os.PathLike[str], index: int) -> int | None:
    """The line of ``path`` that holds the operation numbered ``index`` (None if none does).

    For error messages only: it reads the file again, up to that operation.
    """
    p = str(path)
    try:
        fmt = history_format(p)
        if fmt == "edn":
            return next((line for line, op in _edn_ops(p) if op.index == index), None)
        if fmt == "jepsen-log":
            return next((line for line, op in _jepsen_log_ops(p) if op.index == index), None)
        for lineno, text, _ in _lines(p):
            try:
                d = json.loads(text)
            except ValueError:
                continue
            if isinstance(d, dict) and d.get("index") == index:
                return lineno
    except (HistoryError, OSError, ValueError, RecursionError):
        return None
    return None
