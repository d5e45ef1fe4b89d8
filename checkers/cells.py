"""Per-cell views of row and batch histories, so the register checkers can judge every cell.

A row history (``row`` workload) writes, deletes and reads whole rows of several columns; a
cell (row key, column) behaves as one last-write-wins register. :func:`project_rows` turns each
row operation into one register operation per cell it touches: a column write into a write of
that cell, a column delete into a delete of it, a row delete into a delete of every column the
key ever names, and a read of the row into a read of every such column (nil where the row has
none, with the cell's own timestamp where it has one). The projected ops keep the original op's
``index``, so an anomaly found on a cell names the operations of the real history, and
:func:`restore` puts those operations back into a result.

A batch history (``batch`` workload) is a register per row whose value is the whole row:
:func:`project_batches` keeps the batches as writes and the reads that show exactly one
batch's row (or nothing) as reads; a read mixing batches is the isolation checker's business.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from checkers.result import Result
from harness.history import NEMESIS, Op


def hashable_key(key: Any) -> Any:
    """A hashable form of a JSON key."""
    if isinstance(key, list):
        return tuple(hashable_key(x) for x in key)
    if isinstance(key, dict):
        return tuple(sorted((k, hashable_key(v)) for k, v in key.items()))
    return key


def row_columns(ops: list[Op]) -> dict[Any, list[str]]:
    """Every column each row key names anywhere in the history (writes, deletes, reads)."""
    cols: dict[Any, set[str]] = {}
    for op in ops:
        if op.process == NEMESIS:
            continue
        seen = cols.setdefault(hashable_key(op.key), set())
        v = op.value
        if isinstance(v, dict):
            seen.update(str(c) for c in v)
        elif op.f == "delete" and isinstance(v, list):
            seen.update(str(c) for c in v)
    return {k: sorted(v) for k, v in cols.items()}


def _cell_op(op: Op, f: str, key: Any, col: str, value: Any, timestamp: int | None) -> Op:
    # One process per (row process, column): a row process has one op open, so each has one too.
    return Op(op.index, op.time, f"{op.process}:{col}", op.type, f, (key, col), value, op.node, op.cl,
              timestamp, op.error, op.extra)


def project_rows(history: Iterable[Op]) -> tuple[list[Op], dict[int, Op]]:
    """Per-cell register ops of a row history, and the original ops by index."""
    ops = list(history)
    originals = {op.index: op for op in ops}
    columns = row_columns(ops)
    out: list[Op] = []
    pending: dict[Any, tuple[Op, str, list[str]]] = {}
    for op in ops:
        if op.process == NEMESIS:
            out.append(op)
            continue
        key = hashable_key(op.key)
        if op.type == "invoke":
            f, cells = _cells_of(op, columns.get(key, []))
            pending[op.process] = (op, f, cells)
            for col in cells:
                arg = op.value.get(col) if f == "write" else None
                out.append(_cell_op(op, f, key, col, arg, None))
            continue
        got = pending.pop(op.process, None)
        if got is None:
            continue
        inv, f, cells = got
        row = op.value if isinstance(op.value, dict) else {}
        stamps = op.extra.get("timestamps") if isinstance(op.extra.get("timestamps"), dict) else {}
        for col in cells:
            if f == "read":
                value = row.get(col) if op.type == "ok" else None
                ts = stamps.get(col) if op.type == "ok" else None
            else:
                value = inv.value.get(col) if f == "write" else None
                ts = op.timestamp
            out.append(_cell_op(op, f, key, col, value, ts))
    return out, originals


def _cells_of(op: Op, known: list[str]) -> tuple[str, list[str]]:
    """The register operation a row operation is per cell, and the cells it touches."""
    if op.f == "write" and isinstance(op.value, dict):
        return "write", sorted(str(c) for c in op.value)
    if op.f == "delete":
        return "delete", sorted(str(c) for c in op.value) if isinstance(op.value, list) else list(known)
    return "read", list(known)


def batch_of_read(row: Any, stamps: Any) -> tuple[Any, int | None] | None:
    """What a batch read shows as a register read: (the row, its timestamp), (None, None) for an
    empty row, or None when the row mixes batches or lacks columns (not one register value)."""
    if not isinstance(row, dict) or not row:
        return (None, None)
    if len({hashable_key(v) for v in row.values()}) != 1:
        return None
    ts = set(stamps.values()) if isinstance(stamps, dict) else set()
    return row, (ts.pop() if len(ts) == 1 else None)


def project_batches(history: Iterable[Op]) -> tuple[list[Op], dict[int, Op]]:
    """Register ops of a batch history (batches as writes of their row), and originals by index."""
    ops = list(history)
    originals = {op.index: op for op in ops}
    sizes: dict[Any, int] = {}
    for op in ops:
        if op.f == "batch" and isinstance(op.value, dict):
            sizes[hashable_key(op.key)] = max(sizes.get(hashable_key(op.key), 0), len(op.value))
    out: list[Op | None] = []
    pending: dict[Any, tuple[Op, int]] = {}
    for op in ops:
        if op.process == NEMESIS:
            out.append(op)
            continue
        f = "write" if op.f == "batch" else op.f
        if op.type == "invoke":
            pending[op.process] = (op, len(out))
            out.append(dataclasses.replace(op, f=f))
            continue
        got = pending.pop(op.process, None)
        if got is None:
            continue
        if f == "read" and op.type == "ok":
            seen = batch_of_read(op.value, op.extra.get("timestamps"))
            if seen is None or (seen[0] is not None and len(seen[0]) < sizes.get(hashable_key(op.key), 0)):
                # A mixed or partial row is no register value: drop the read and its invocation
                # (the isolation checker reports it).
                out[got[1]] = None
                continue
            out.append(dataclasses.replace(op, f=f, value=seen[0], timestamp=seen[1]))
        else:
            out.append(dataclasses.replace(op, f=f))
    return [o for o in out if o is not None], originals


def restore(result: Result, originals: dict[int, Op]) -> Result:
    """The result with each anomaly's ops replaced by the original ops they were projected from."""
    for a in result.anomalies:
        kept: list[Op] = []
        seen: set[int] = set()
        for o in a.ops:
            orig = originals.get(o.index, o)
            if orig.index not in seen:
                seen.add(orig.index)
                kept.append(orig)
        a.ops = kept
        if isinstance(a.key, tuple):
            a.key = list(a.key)
    return result


PROJECTIONS = {"row": project_rows, "batch": project_batches}
"""Models whose histories the register checkers judge through a projection."""
