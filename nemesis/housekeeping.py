"""An operator's housekeeping, for the ``admin`` nemesis (nemesis/operator.py).

* **Snapshot housekeeping**: the snapshot an admin step takes before its maintenance (as an
  operator snapshots before ``nodetool cleanup``) is listed with ``ringctl listsnapshots`` and,
  once cleanup and repair are done, cleared with ``ringctl clearsnapshot -t TAG`` (nodetool
  listsnapshots / clearsnapshot): snapshots hold disk until someone clears them.
* **A scratch table** (what an operator or an application's migration does beside the live data,
  through the client protocol as cqlsh would): create ``<keyspace>.scratch_N`` (column order by
  time, ``gc_grace_seconds`` 0, every SSTable in one compaction bucket), write rows of several
  columns (one a super column of two sub-columns) at QUORUM, some columns with a TTL, flush it on
  every node; overwrite a column, delete a column and a row, flush again (two SSTables per
  replica); read single columns, column pairs, the super column and ``limit``-ed rows back at
  QUORUM and compare them with what was written; once the TTL has run
  out, read the TTL'd column (it must be gone); major-compact the table on every node (tombstones
  past their zero grace and expired cells are purged) and read again; then drop the table.

Every answer that differs from what the step wrote is recorded as ``wrong`` (the store returned
something a correct store never does at QUORUM with every replica up); a request that failed (a
node still restarting after another nemesis) is recorded as an error, not hidden. Scratch keys
live in their own table, so no workload key or checker is touched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from nemesis.faults import DB
from node.client import open_client
from node.protocol import RinglabError

log = logging.getLogger("nemesis.housekeeping")

# Rows and columns the scratch table gets: a few, so the step takes well under a second of
# requests, and a row of several columns so named-column reads have something to choose from.
SCRATCH_KEYS = 4
# The last two are the sub-columns of one super column ("super:sub", the paper's data model),
# read whole by its prefix "s:".
SCRATCH_COLUMNS = ("c0", "c1", "c2", "s:a", "s:b")
# The TTL'd column: one second, so the step can wait it out and see it expire.
TTL_S = 1
TTL_COLUMN = "t"
# The scratch table's options: newest-first column order (the paper's inbox search), no tombstone
# grace (so the step's compaction purges its deletes), every SSTable of it in one bucket of two.
SCRATCH_OPTIONS = {"column_order": "time", "gc_grace_seconds": 0, "compaction_min_threshold": 2,
                   "read_repair": "BLOCKING"}
# The scratch table's first write may reach a replica before the new schema does: try again.
SCHEMA_ATTEMPTS = 10
SCHEMA_RETRY_S = 0.2
# Each request's timeout; the step's whole budget.
REQUEST_TIMEOUT_S = 10.0
STEP_TIMEOUT_S = 60.0


def snapshot_tags(listing: str) -> list[str]:
    """The tags ``ringctl listsnapshots`` printed (first word of each line)."""
    lines = [ln.split()[0] for ln in listing.splitlines() if ln.strip()]
    return [] if lines == ["There"] else lines


class ScratchTable:
    """One scratch table's life on a live cluster (see the module docstring)."""

    def __init__(self, db: DB, address: Callable[[str], tuple[str, int]], secret: str, keyspace: str,
                 name: str) -> None:
        self.db, self.address, self.secret = db, address, secret
        self.keyspace, self.name = keyspace, name
        self.wrong: list[str] = []
        self.errors: list[str] = []
        self.done: list[str] = []

    async def run(self, via: str) -> dict[str, Any]:
        """Create, write, flush, read, compact and drop the table through ``via``; what it saw."""
        host, port = self.address(via)
        with trio.move_on_after(STEP_TIMEOUT_S) as scope:
            try:
                async with open_client(host, port, secret=self.secret, timeout=REQUEST_TIMEOUT_S) as c:
                    try:
                        await self._life(c)
                    finally:
                        with trio.CancelScope(shield=True), trio.move_on_after(REQUEST_TIMEOUT_S):
                            await self._call(c.drop_table(self.keyspace, self.name, if_exists=True), "drop")
            except (OSError, RinglabError) as exc:
                self.errors.append(f"{via}: {type(exc).__name__}: {exc}")
        if scope.cancelled_caught:
            self.errors.append(f"step timed out after {STEP_TIMEOUT_S:g} s")
        table = f"{self.keyspace}.{self.name}"
        summary = (f"scratch table {table}: {', '.join(self.done) or 'nothing done'}"
                   + (f"; {len(self.wrong)} wrong answers" if self.wrong else "")
                   + (f"; {len(self.errors)} errors" if self.errors else ""))
        return {"table": table, "via": via, "done": self.done, "wrong": self.wrong, "errors": self.errors,
                "summary": summary}

    async def _call(self, aw: Any, what: str) -> Any:
        try:
            out = await aw
        except RinglabError as exc:
            self.errors.append(f"{what}: {type(exc).__name__}: {exc}")
            return None
        return out

    async def _everywhere(self, op: str) -> int:
        """``op`` (flush or compact) of the scratch table on every node; how many did it."""
        count = 0
        for nid in self.db.node_ids():
            try:
                await self.db.admin(nid, op, keyspace=self.keyspace, table=self.name)
                count += 1
            except Exception as exc:  # noqa: BLE001 - a node down now; the others still do it
                self.errors.append(f"{op} on {nid}: {type(exc).__name__}: {exc}")
        return count

    async def _life(self, c: Any) -> None:
        ks, t = self.keyspace, self.name
        if await self._call(c.create_table(ks, t, SCRATCH_OPTIONS, if_not_exists=True), "create") is None:
            return
        self.done.append("created")
        keys = [f"scratch-{i}" for i in range(SCRATCH_KEYS)]
        expected: dict[str, dict[str, Any]] = {}
        for i, key in enumerate(keys):
            row = {col: f"{key}/{col}/1" for col in SCRATCH_COLUMNS}
            for attempt in range(SCHEMA_ATTEMPTS):
                try:
                    await c.put(ks, t, key, row, consistency="QUORUM")
                    break
                except RinglabError as exc:
                    if attempt == SCHEMA_ATTEMPTS - 1:
                        self.errors.append(f"write {key}: {type(exc).__name__}: {exc}")
                        return
                    await trio.sleep(SCHEMA_RETRY_S)
            expected[key] = dict(row)
        ttl_written = trio.current_time()
        for key in keys[:2]:
            await self._call(c.put(ks, t, key, {TTL_COLUMN: "expires"}, consistency="QUORUM", ttl=TTL_S), "ttl write")
        self.done.append(f"{SCRATCH_KEYS} rows written")
        self.done.append(f"flushed on {await self._everywhere('flush')}")
        for key in keys:
            await self._call(c.put(ks, t, key, {"c0": f"{key}/c0/2"}, consistency="QUORUM"), "overwrite")
            expected[key]["c0"] = f"{key}/c0/2"
            await self._call(c.delete(ks, t, key, columns=["c1"], consistency="QUORUM"), "column delete")
            expected[key].pop("c1")
        await self._call(c.delete(ks, t, keys[-1], consistency="QUORUM"), "row delete")
        expected[keys[-1]] = {}
        self.done.append(f"flushed again on {await self._everywhere('flush')}")
        # A write that failed may or may not have been applied: nothing left to compare against.
        checked = not any(e.startswith(("ttl write", "overwrite", "column delete", "row delete")) for e in self.errors)
        if checked:
            await self._check(c, keys, expected, "after the deletes")
            self.done.append("read back")
        await trio.sleep_until(ttl_written + TTL_S + 0.5)
        for key in keys[:2]:
            got = await self._call(c.get(ks, t, key, columns=[TTL_COLUMN], consistency="QUORUM"), "ttl read")
            if got and checked:
                self.wrong.append(f"{key}.{TTL_COLUMN}: {got[TTL_COLUMN][0]!r} read after its {TTL_S} s TTL ran out")
        self.done.append("TTL expired")
        self.done.append(f"compacted on {await self._everywhere('compact')}")
        if checked:
            await self._check(c, keys, expected, "after the compaction")
            self.done.append("read back")
        if await self._call(c.drop_table(ks, t), "drop") is not None:
            self.done.append("dropped")

    async def _check(self, c: Any, keys: list[str], expected: dict[str, dict[str, Any]], when: str) -> None:
        """Single-column, two-column, whole-row and limit-ed reads against what was written."""
        ks, t = self.keyspace, self.name
        for key in keys:
            want = expected[key]
            reads = [(["c0"], None), (["c1", "c2"], None), (["s:"], None), (None, None), (None, 2)]
            for cols, limit in reads:
                got = await self._call(c.get(ks, t, key, columns=cols, consistency="QUORUM", limit=limit),
                                       f"read {key}")
                if got is None:
                    continue
                seen = {name: v for name, (v, _ts) in got.items() if name != TTL_COLUMN}
                if cols is not None:
                    wanted = {n: v for n, v in want.items() if any(n == c or (c.endswith(":") and n.startswith(c))
                                                                   for c in cols)}
                elif limit is None:
                    wanted = want
                else:
                    wanted = None  # newest-first order: which two cells come first depends on timestamps
                if wanted is not None and seen != wanted:
                    self.wrong.append(f"{key} {cols or 'row'} {when}: read {seen}, wrote {wanted}")
                elif wanted is None and (len(got) > limit or any(want.get(n) != v for n, v in seen.items())):
                    self.wrong.append(f"{key} limit {limit} {when}: read {seen}, wrote {want}")
