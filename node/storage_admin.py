"""Admin ops for the storage engine's health: ``storage`` (Cassandra's tablestats and verify) and
``scrub`` (quarantine corrupt SSTables, refuse the tables' reads, repair, serve again).

What a node does with a damaged file, in one place:

* a corrupt SSTable component found at open (checksums of every small component, the data
  file's size) makes the table refuse every read on this node rather than answer from that file:
  the coordinator treats the refusal as a replica that did not answer, so QUORUM reads are served
  by the other replicas. One found on a read (per-record CRCs) fails that read and is moved to
  ``corrupt/``, and the table refuses reads until a scrub's repair (node/storage/engine.py);
* damage at a commit log's tail is truncated (named with its byte offset in the replay report);
  damage followed by valid records makes the node refuse to start (node/storage/commitlog.py);
* ``scrub`` moves the corrupt SSTables to ``corrupt/``, keeps refusing the affected tables' reads
  while a repair of this node's ranges streams the lost data back, then serves them again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import trio

from node.protocol import InvalidRequest
from node.storage.errors import InvalidName
from node.runtime import offload

log = logging.getLogger("node.storage_admin")

AdminOp = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
T = TypeVar("T")


class SharedRuns(Generic[T]):
    """An async job its concurrent callers share: a caller arriving while a run is under way
    waits for the next run (which starts after it asked, so it sees what the caller did before),
    and every caller waiting for that run gets its result or its error.

    A scrub verifies every SSTable and repairs the node's ranges, and only one repair runs at a
    time: a pipelined flood of 4000 scrubs ran them one after another (about 40 a second, polling
    for the repairer), and most were still unanswered 20 s later. Shared, the flood costs two runs.
    """

    def __init__(self, job: Callable[[], Awaitable[T]]) -> None:
        self._job = job
        self._lock = trio.Lock()  # fair: callers are served in arrival order
        self._started = 0
        self._finished = 0  # the number of the run whose outcome is below
        self._value: T | None = None
        self._error: Exception | None = None

    async def __call__(self) -> T:
        """The outcome of a run that started after this call."""
        wanted = self._started + 1
        async with self._lock:
            if self._finished < wanted:
                self._started += 1
                try:
                    self._value, self._error = await self._job(), None
                except Exception as exc:  # noqa: BLE001 - every caller of this run gets it
                    self._value, self._error = None, exc
                self._finished = self._started
            value, error = self._value, self._error
        if error is not None:
            # One exception raised by every caller: without the reset its traceback grew by each.
            raise error.with_traceback(None)
        return value  # type: ignore[return-value]


def replay_summary(engine: Any) -> dict[str, Any]:
    """What the last commit log replay found: records, and every truncation (file, offset, why)."""
    report = engine.replay_report
    return {"records": report.records, "applied": report.applied, "segments": report.segments,
            "truncations": [{"file": f, "offset": off, "problem": why} for f, off, why in report.truncations],
            # damage replayed around: a failed fsync's range (fenced), or skip_corrupt's
            "skipped": [{"file": f, "offset": off, "problem": why, "bytes": n} for f, off, why, n in report.skipped],
            "fenced": len(report.fenced)}


async def scrub_node(node: Any, repair: bool = True, every_replica: bool = False) -> dict[str, Any]:
    """Verify every SSTable, quarantine the corrupt ones (their tables refuse reads), then repair
    from the replicas and serve again. With ``every_replica`` a repair that could not reach a
    replica leaves the reads refused (the node's own automatic repair; an operator's scrub
    releases them anyway, as nodetool scrub would)."""
    engine = node.engine
    # A full verify first: a flipped data byte that no read has met yet is found here too.
    await offload(engine.verify)
    quarantined: dict[str, list[str]] = {}
    for ks, t in list(engine.tables()):
        moved = await offload(engine.discard_corrupt, ks, t)
        if moved:
            quarantined[f"{ks}.{t}"] = moved
            engine.hold_reads(ks, t, f"quarantined {', '.join(moved)}")
    out: dict[str, Any] = {"quarantined": quarantined, "held": engine.held_tables()}
    if repair:
        # Refused reads stay refused if the repair fails: the next scrub tries again. A repair
        # already running (the node's own after a quarantine, or an operator's) is waited for.
        while node.repairer.running:
            await node.runtime.clock.sleep(0.1)
        out["repair"] = await node.repairer.repair()
        skipped = out["repair"].get("skipped_replicas") or []
        if every_replica and skipped:
            raise RuntimeError(f"the repair did not reach {', '.join(sorted(set(map(str, skipped))))}")
        out["released"] = engine.release_reads()
    if quarantined:
        log.warning("scrub: quarantined %s; %s", quarantined,
                    "repaired, serving again" if repair else "reads refused until repaired")
    return out


def _plain_keys(tables: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """``sstable_metadata`` with its first and last keys as hex strings (a tool prints them)."""
    for rows in tables.values():
        for row in rows:
            for part in (row.get("stats"), row.get("scan")):
                if isinstance(part, dict):
                    for k in ("first_key", "last_key"):
                        if isinstance(part.get(k), (bytes, bytearray)):
                            part[k] = bytes(part[k]).hex()
    return tables


def storage_ops(node: Any) -> dict[str, AdminOp]:
    """The storage admin ops of ``node`` by op name."""
    engine = node.engine

    async def storage(req: dict[str, Any]) -> dict[str, Any]:
        verify = req.get("verify", False)
        if not isinstance(verify, bool):
            raise InvalidRequest("verify must be a bool")
        sstables = req.get("sstables", False)
        if not isinstance(sstables, bool):
            raise InvalidRequest("sstables must be a bool")
        verified = await offload(engine.verify) if verify else None
        # sstables: each live SSTable's recorded statistics and the same counted from its data
        # (sstablemetadata beside sstabledump); only when asked, as it reads every data file.
        extra = {"sstables": _plain_keys(await offload(engine.sstable_metadata, True))} if sstables else {}
        return {**extra, "tables": engine.stats(), "corrupt": engine.corrupt_sstables(), "verify_corrupt": verified,
                "quarantined": engine.quarantined(), "held": engine.held_tables(), "replay": replay_summary(engine),
                "commitlog_sync": engine.config.commitlog_sync,
                "commit_failure_policy": engine.config.commit_failure_policy,
                "disk_failure_policy": engine.config.disk_failure_policy,
                # Why disk_failure_policy stopped this node's traffic, or None.
                "disk_failure": engine.disk_failure(),
                # best_effort: per table, the SSTables taken out of service and why.
                "out_of_service": engine.out_of_service(),
                # Why this node refuses writes (commit_failure_policy = stop), or None.
                "write_failure": None if engine.write_failure() is None else str(engine.write_failure())}

    # Concurrent scrubs (of each kind) share one run (SharedRuns).
    scrubs = {repair: SharedRuns(lambda repair=repair: scrub_node(node, repair)) for repair in (True, False)}

    async def scrub(req: dict[str, Any]) -> dict[str, Any]:
        repair = req.get("repair", True)
        if not isinstance(repair, bool):
            raise InvalidRequest("repair must be a bool")
        return await scrubs[repair]()

    async def listsnapshots(req: dict[str, Any]) -> dict[str, Any]:
        # nodetool listsnapshots: the tags, and how much disk each holds on its own (hard links
        # of SSTables a compaction has since replaced are the snapshot's alone).
        return {"snapshots": await offload(snapshot_sizes, engine)}

    async def clearsnapshot(req: dict[str, Any]) -> dict[str, Any]:
        # nodetool clearsnapshot -t TAG, or --all: an operator frees the space old snapshots hold.
        tag, every = req.get("tag"), req.get("all", False)
        if not isinstance(every, bool) or (tag is None) == (not every):
            raise InvalidRequest("clearsnapshot needs a tag or all = true (not both)")
        tags = await offload(engine.list_snapshots) if every else [tag]
        for t in tags:
            try:
                await offload(engine.clear_snapshot, t)
            except InvalidName as exc:
                raise InvalidRequest(str(exc)) from None
        return {"cleared": tags}

    return {"storage": storage, "scrub": scrub, "listsnapshots": listsnapshots, "clearsnapshot": clearsnapshot}


def snapshot_sizes(engine: Any) -> list[dict[str, Any]]:
    """Each snapshot's tag, file count, bytes, and "true" bytes (nodetool's true size: files that
    are no live SSTable's, i.e. the disk clearing the snapshot would free if no other holds them)."""
    live = {f.stat().st_ino for f in (engine.data_dir / "data").rglob("*") if f.is_file()}
    out = []
    for tag in engine.list_snapshots():
        stats = [f.stat() for f in (engine.data_dir / "snapshots" / tag).rglob("*") if f.is_file()]
        out.append({"tag": tag, "files": len(stats), "bytes": sum(st.st_size for st in stats),
                    "true_bytes": sum(st.st_size for st in stats if st.st_ino not in live)})
    return out
