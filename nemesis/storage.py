"""Data-path nemeses: flush and compaction, anti-entropy repair, crashes that lose unsynced
writes, and damaged files. Jepsen's Cassandra suites had flush-compact, bitflip and crash faults
for the same reason: a campaign that never flushes never tests SSTables, compaction or repair.

* ``flush-compact``: flush some nodes' memtables (start), then major-compact them (stop);
* ``repair``: anti-entropy repair of one random node's ranges while clients run;
* ``crash``: SIGKILL nodes whose commit log keeps unsynced bytes in process memory
  (``[storage] volatile_unsynced``, set by the harness for campaigns with this nemesis), so the
  kill loses every write not yet fsynced as a power loss would; restart them at stop;
* ``corrupt``: flush a node, kill it, flip bits in or truncate one of its SSTable components or
  commit log segments, restart it and ask what it made of the file (start, mode ``stopped``). A
  node that refuses to start on a damaged commit log gets it moved aside, as an operator would,
  and starts. Or (mode ``live``) flush a running node, flip bits inside one record of one of its
  SSTable data files in place (its mapping of the file sees them) and read that record's key on
  the node: the record's checksum fails, the node quarantines the file and refuses the table's
  reads until repaired. Then scrub it: quarantine what is corrupt, refuse the affected tables'
  reads while a repair brings the data back from the replicas, serve again (stop). Needs the
  nodes' files (local only);
* ``disk``: for a window one node's commit log disk (mode ``commitlog``) or data disk (``data``:
  flushes and compactions, and with EIO SSTable reads) fails with ENOSPC or EIO; healed at stop.

Each start and stop returns what it did (nodes, files, offsets, bytes) for the history; a short
``summary`` names it in the report's timeline.
"""

from __future__ import annotations

import io
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgpack
import trio

from nemesis.faults import DB, TARGET_SPECS, Event, targets

log = logging.getLogger("nemesis.storage")

STORAGE_NEMESES = ("flush-compact", "repair", "crash", "corrupt", "disk")
# What the disk nemesis's failing disk answers every write and fsync with.
DISK_ERRORS = ("ENOSPC", "EIO")
# Which disk the disk nemesis fails (node/storage/files.py DISKS): the commit log's, or the data
# directory's, where SSTables are written by flushes and compactions and read.
DISKS = ("commitlog", "data")
# How the corrupt nemesis damages a node: stopped (any file, found at restart) or live (a record of
# an SSTable data file under the running node, found by the read of its key).
CORRUPT_MODES = ("stopped", "live")
# The corrupt nemesis's stopped windows damage these kinds of file in turn.
STOPPED_PLANS = ("stopped:sstable", "stopped:commitlog")
# How flush-compact picks its nodes: never all at once, so it is one fault among others.
FLUSH_SPECS = ("one", "minority", "majority")
# SSTable components and commit log segments the corrupt nemesis may damage.
SSTABLE_SUFFIXES = ("-Data.db", "-Index.db", "-Summary.db", "-Filter.db", "-Statistics.db", "-Digest.crc32",
                    "-TOC.txt")
COMMITLOG_PREFIX = "CommitLog-"
# Bits flipped per bitflip: one is the classic single-event upset; a few cover burst errors.
MAX_FLIPPED_BITS = 4
# A live damage lands in a file a compaction may replace before the read meets it (the damage then
# never reaches a reader): draw again, at most this many times.
LIVE_ATTEMPTS = 3
# A data disk's refused flush needs something to flush: with clients writing, a memtable that was
# just flushed fills again within milliseconds, so the start asks again this often, this many times.
FLUSH_RETRY_S = 0.1
FLUSH_ATTEMPTS = 20


class FilesDB(DB, Protocol):
    """A DB whose nodes' storage directories this process can reach (local deployments)."""

    def storage_dir(self, node_id: str) -> Path:
        """Where the node's storage engine keeps its files."""
        ...


async def _storage(db: DB, nid: str, **fields: Any) -> dict[str, Any] | None:
    """The node's storage status, or None when it does not answer."""
    try:
        return await db.admin(nid, "storage", **fields)
    except Exception as exc:  # noqa: BLE001 - a node that is down has no status to record
        log.info("storage status of %s unavailable: %s", nid, exc)
        return None


def _tables_only(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if not k.startswith("_")}


def _sstable_count(status: dict[str, Any] | None) -> int | None:
    if status is None:
        return None
    return sum(t.get("sstable_count", 0) for t in _tables_only(status["tables"]).values())


class FlushCompactNemesis:
    """Flush random nodes' memtables, then major-compact the same nodes."""

    name = "flush-compact"

    def __init__(self, db: DB) -> None:
        self.db = db
        self.nodes: list[str] = []

    async def start(self, rng: random.Random) -> Event:
        """Flush one, a minority or a majority of the nodes."""
        spec = rng.choice(FLUSH_SPECS)
        self.nodes = targets(spec, self.db.node_ids(), rng)
        done: dict[str, Any] = {}
        for nid in self.nodes:
            try:
                flushed = (await self.db.admin(nid, "flush")).get("flushed", [])
            except Exception as exc:  # noqa: BLE001 - recorded; the other nodes still flush
                done[nid] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            status = await _storage(self.db, nid)
            done[nid] = {"flushed": flushed, "sstables": _sstable_count(status),
                         "live_bytes": sum(t.get("live_bytes", 0) for t in _tables_only(status["tables"]).values())
                         if status else None}
        total = sum(len(d.get("flushed", [])) for d in done.values())
        return Event("flush", {"spec": spec, "nodes": self.nodes, "result": done,
                               "summary": f"flush {' '.join(self.nodes)}: {total} memtables"})

    async def stop(self) -> Event:
        """Run a major compaction of every table on the flushed nodes."""
        nodes, self.nodes = self.nodes, []
        done: dict[str, Any] = {}
        for nid in nodes:
            try:
                compacted = (await self.db.admin(nid, "compact")).get("compacted", [])
            except Exception as exc:  # noqa: BLE001 - recorded per node
                done[nid] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            done[nid] = {"compacted": [{k: c.get(k) for k in ("table", "inputs", "output", "bytes_in", "bytes_out")}
                                       for c in compacted],
                         "sstables": _sstable_count(await _storage(self.db, nid))}
        inputs = sum(len(c["inputs"] or []) for d in done.values() for c in d.get("compacted", []))
        bytes_in = sum(c["bytes_in"] or 0 for d in done.values() for c in d.get("compacted", []))
        bytes_out = sum(c["bytes_out"] or 0 for d in done.values() for c in d.get("compacted", []))
        return Event("compact", {"nodes": nodes, "result": done,
                                 "summary": f"compact {' '.join(nodes)}: {inputs} SSTables, {bytes_in:,} B → {bytes_out:,} B"})

    async def heal(self) -> None:
        """Nothing to undo (a flush or compaction changes no data)."""
        self.nodes = []


class RepairNemesis:
    """Anti-entropy repair of one random node's ranges while the clients run."""

    name = "repair"

    def __init__(self, db: DB) -> None:
        self.db = db

    async def start(self, rng: random.Random) -> Event:
        """Repair every range one random node replicates."""
        nid = rng.choice(self.db.node_ids())
        stats = await self.db.admin(nid, "repair")
        keep = ("ranges", "tables", "leaves", "differing_leaves", "streamed_partitions", "streamed_bytes",
                "partitions_validated", "skipped_replicas", "seconds")
        result = {k: stats.get(k) for k in keep}
        return Event("repair", {"node": nid, "result": result,
                                "summary": f"repair {nid}: {result['ranges']} ranges, {result['differing_leaves']} "
                                           f"differing leaves, {result['streamed_bytes'] or 0:,} B streamed"})

    async def stop(self) -> Event:
        """Nothing to undo: a repair only makes replicas agree."""
        return Event("repair-done", {"summary": "repair done"})

    async def heal(self) -> None:
        """Nothing to undo."""


class CrashNemesis:
    """SIGKILL nodes running with volatile unsynced commit log bytes: unsynced writes are lost."""

    name = "crash"

    def __init__(self, db: DB, specs: list[str] | tuple[str, ...] = TARGET_SPECS) -> None:
        self.db = db
        self.specs = list(specs)
        self.crashed: list[str] = []

    async def start(self, rng: random.Random) -> Event:
        """Crash one, a minority, a majority or all nodes; record what each held unsynced."""
        spec = rng.choice(self.specs)
        victims = targets(spec, self.db.node_ids(), rng)
        held: dict[str, Any] = {}
        modes: set[str] = set()
        volatile = True
        for nid in victims:
            status = await _storage(self.db, nid)
            cl = (status or {}).get("tables", {}).get("_commitlog", {})
            held[nid] = cl.get("unsynced_bytes")
            volatile &= cl.get("files") == "volatile"
            if status:
                modes.add(status.get("commitlog_sync", "?"))
        for nid in victims:
            await self.db.kill(nid)
        self.crashed = sorted(set(self.crashed) | set(victims))
        lost = sum(v or 0 for v in held.values())
        return Event("crash", {
            "spec": spec, "nodes": victims, "commitlog_sync": sorted(modes),
            # What each node held unsynced just before its kill (writes went on until the kill).
            "unsynced_bytes": held, "lost_unsynced": volatile,
            "summary": f"crash {' '.join(victims)}: ~{lost:,} unsynced B lost" if volatile
            else f"crash {' '.join(victims)} (files not volatile: a plain kill)",
        })

    async def stop(self) -> Event:
        """Restart the crashed nodes; record what their commit log replay found."""
        nodes = list(self.crashed)
        await self.heal()
        replay = {}
        for nid in nodes:
            status = await _storage(self.db, nid)
            replay[nid] = status.get("replay") if status else None
        records = sum((r or {}).get("applied", 0) for r in replay.values())
        return Event("restart", {"nodes": nodes, "replay": replay,
                                 "summary": f"restart {' '.join(nodes)}: {records} commit log records replayed"})

    async def heal(self) -> None:
        """Restart every crashed node."""
        crashed, self.crashed = self.crashed, []
        async with trio.open_nursery() as nursery:
            for nid in crashed:
                nursery.start_soon(self.db.restart, nid)


class DiskNemesis:
    """A node's disk fails for a window (``[storage] disk_faults``, the engine's file door).

    ``commitlog``: every commit log write and fsync returns ENOSPC or EIO. At the window's end the
    disk is healed and the node restarted: after a failed fsync commit_failure_policy ``stop``
    acknowledges no write again until a restart, as Cassandra's does.

    ``data``: every SSTable write (flush, compaction) returns the error, and with EIO every SSTable
    read too; the commit log keeps the writes, so nothing acknowledged is lost. The start asks for
    a flush to show it refused; at the window's end the disk is healed and the node flushes what it
    kept, without a restart.
    """

    name = "disk"

    def __init__(self, db: DB, disks: list[str] | tuple[str, ...] = DISKS) -> None:
        self.db = db
        self.disks = list(disks)
        self.failing: dict[str, str] = {}
        self.disk_of: dict[str, str] = {}
        # Each window fails one disk with one error, in shuffled rounds of every (disk, error):
        # a full disk and a broken one run different code (a broken data disk fails SSTable reads
        # too), so four windows of both disks see all four.
        self.plans = [f"{d}:{e}" for d in self.disks for e in DISK_ERRORS]
        self._plan_round: list[str] = []  # the plans still to come in this round
        self.policy_of: dict[str, str] = {}  # commit_failure_policy of each node whose commit log fails

    async def start(self, rng: random.Random) -> Event:
        """Fail one random node's commit log or data disk with ENOSPC or EIO."""
        nid = rng.choice(self.db.node_ids())
        disk, _, error = _next_choice(self.plans, self._plan_round, rng).partition(":")
        if disk == "data":
            nid = await _holding_data(self.db, nid, rng)
        if disk == "commitlog":
            # Its commit_failure_policy decides what the failure does to it (judged at stop).
            self.policy_of[nid] = ((await _storage(self.db, nid)) or {}).get("commit_failure_policy") or "stop"
        said = await self.db.admin(nid, "disk", action="fail", error=error, disk=disk)
        self.failing[nid] = error
        self.disk_of[nid] = disk
        if disk == "commitlog":
            return Event("disk-fail", {"node": nid, "disk": disk, "disk_error": error, "said": said,
                                       "summary": f"disk of {nid} fails: every commit log write and fsync returns {error}"})
        # A flush and a compaction now, so the window shows refused SSTable writes whatever the
        # memtable threshold and compaction buckets; with EIO a read of a key one of its SSTables
        # holds, refused too.
        flush = await _flush_result(self.db, nid)
        for _ in range(FLUSH_ATTEMPTS - 1):
            if "error" in flush:
                break
            await trio.sleep(FLUSH_RETRY_S)  # nothing was buffered: the clients' next writes will be
            flush = await _flush_result(self.db, nid)
        compact = await _admin_result(self.db, nid, "compact")
        read = await self._read_one(nid, rng) if error == "EIO" else None
        reads = " and read" if error == "EIO" else ""
        said_read = "" if read is None else f", read {'refused' if 'error' in read else 'served'}"
        return Event("disk-fail", {"node": nid, "disk": disk, "disk_error": error, "said": said, "flush": flush,
                                   "compact": compact, "read": read,
                                   "summary": f"data disk of {nid} fails: every SSTable write{reads} returns {error}; "
                                              f"flush {'refused' if 'error' in flush else 'had nothing to write'}, "
                                              f"compaction {'refused' if 'error' in compact else 'had nothing to do'}"
                                              f"{said_read}"})

    async def _read_one(self, nid: str, rng: random.Random) -> dict[str, Any] | None:
        """This node's own read of a key one of its SSTables holds (None when it has none)."""
        storage_dir = getattr(self.db, "storage_dir", None)
        if storage_dir is None:
            return None  # remote nodes: no files to pick a key from
        files = await trio.to_thread.run_sync(data_files, storage_dir(nid))
        if not files:
            return None
        rel = rng.choice(files)
        try:
            records = await trio.to_thread.run_sync(sstable_records, storage_dir(nid) / rel)
        except (OSError, ValueError, msgpack.UnpackException):
            return None  # replaced by a compaction meanwhile (none runs on a failing disk, but a stream may)
        if not records:
            return None
        key = rng.choice(records)[0]
        keyspace, table = table_of(rel)
        out = await _admin_result(self.db, nid, "localread", keyspace=keyspace, table=table, keys=[key])
        return {"key": key.decode("utf-8", "replace"), **({"error": out["error"]} if "error" in out else {"ok": True})}

    async def stop(self) -> Event:
        """Heal the failed disks and record what they refused; restart the commit log ones, flush the data ones."""
        failing, self.failing = self.failing, {}
        disk_of, self.disk_of = self.disk_of, {}
        done: dict[str, Any] = {}
        commitlog = [n for n in failing if disk_of.get(n, "commitlog") == "commitlog"]
        # Before the heal: what the node's commit_failure_policy made of the failure.
        before = {n: await _storage(self.db, n) for n in commitlog}
        for nid in failing:
            try:
                done[nid] = await self.db.admin(nid, "disk", action="heal")
            except Exception as exc:  # noqa: BLE001 - recorded; the restart heals it anyway
                done[nid] = {"error": f"{type(exc).__name__}: {exc}"}
        policies = {n: policy_verdict(self.policy_of.pop(n, "stop"), failing[n], before[n], done[n]) for n in commitlog}
        for nid, verdict_ in policies.items():
            done[nid]["policy"] = verdict_
        # A node under "ignore" carries on once its disk answers again: no restart. Under "stop" it
        # acknowledges no write until restarted; under "die" it exited.
        restart = [n for n in commitlog if policies[n]["policy"] != "ignore"]
        data = [n for n in failing if n not in commitlog]
        for nid in data:
            # What the refused flushes kept in memory (and in the commit log) goes to SSTables now.
            before = _tables_only((await _storage(self.db, nid) or {}).get("tables") or {})
            done.setdefault(nid, {})["kept_memtables"] = sum(t.get("flushing_memtables", 0) for t in before.values())
            # A flush writes every memtable a refused flush kept before it returns (node/storage/engine.py).
            done[nid]["flush"] = await _flush_result(self.db, nid)
            after = _tables_only((await _storage(self.db, nid) or {}).get("tables") or {})
            done[nid]["sstables"] = sum(t.get("sstable_count", 0) for t in after.values())
        for nid in restart:
            try:
                # Flush the memtables first (the commit log disk is healed), so the kill loses
                # nothing even when the run's files are volatile.
                await self.db.admin(nid, "drain")
            except Exception as exc:  # noqa: BLE001 - recorded; what was fsynced survives the kill
                done.setdefault(nid, {})["drain_error"] = f"{type(exc).__name__}: {exc}"
            await self.db.kill(nid)
        async with trio.open_nursery() as nursery:
            for nid in restart:
                nursery.start_soon(self.db.restart, nid)
        refused = sum((d or {}).get("failed_calls", 0) + (d or {}).get("failed_reads", 0) for d in done.values())
        parts = []
        if restart:
            parts.append(f"disk of {' '.join(sorted(restart))} healed; restarted")
        carried_on = [n for n in commitlog if n not in restart]
        if carried_on:
            parts.append(f"disk of {' '.join(sorted(carried_on))} healed; carries on (commit_failure_policy = ignore)")
        broken = [f"{n}: {v['seen']}, not what {v['policy']} does" for n, v in sorted(policies.items()) if not v["held"]]
        if broken:
            parts.append("policy not held by " + "; ".join(broken))
        if data:
            flushed = sum(len((done[n].get("flush") or {}).get("flushed") or []) for n in data)
            parts.append(f"data disk of {' '.join(sorted(data))} healed; flushed {flushed} tables")
        return Event("disk-heal", {"nodes": sorted(failing), "restarted": sorted(restart), "disk_errors": failing,
                                   "policies": policies,
                                   "disks": disk_of, "result": done,
                                   "summary": f"{'; '.join(parts)} after {refused} refused calls"})

    def expected_exits(self) -> set[str]:
        """Nodes that may have exited on purpose: a failing commit log disk under ``die``."""
        return {n for n in self.failing if self.disk_of.get(n) == "commitlog" and self.policy_of.get(n) == "die"}

    async def heal(self) -> None:
        """Heal (and restart or flush) any node left with a failing disk."""
        if self.failing:
            await self.stop()


def policy_verdict(policy: str, error: str, status: dict[str, Any] | None, healed: dict[str, Any]) -> dict[str, Any]:
    """What a node whose commit log disk failed with ``error`` did, against its
    commit_failure_policy ``policy`` (``status``: its storage status before the heal, None when it
    did not answer; ``healed``: the heal's answer, with the refused calls, or an error).

    A broken disk (EIO) that a write met makes ``stop`` refuse every later write while serving
    reads, ``die`` exit and ``ignore`` fail only the writes it covered and carry on. A full disk
    (ENOSPC) refuses an append without the policy (space may come back), but an fsync it fails is a
    commit log failure like any other: then ``stop`` may have stopped writes and ``die`` exited.
    """
    alive = status is not None
    stopped = alive and status.get("write_failure") is not None  # type: ignore[union-attr]
    refused = healed.get("failed_calls") if isinstance(healed, dict) else None
    met = error == "EIO" and refused != 0  # None: the node did not answer the heal, so unknown
    if not alive:
        seen = "the node exited" if policy == "die" else "the node did not answer"
    elif stopped:
        seen = "writes stopped: " + str(status.get("write_failure"))[:120]  # type: ignore[union-attr]
    else:
        seen = f"serving ({refused} calls refused)"
    if policy == "ignore":
        expected, held = "fail the writes it covered, carry on", alive and not stopped
    elif policy == "stop":
        expected, held = (("refuse every later write until restarted", alive and stopped) if met
                          else ("refuse writes, stop them if an fsync failed", alive))
    else:
        expected, held = ("exit", not alive) if met else ("exit if an fsync failed", not alive or not stopped)
    return {"policy": policy, "expected": expected, "seen": seen, "held": held}


def _next_choice(choices: list[str], round_: list[str], rng: random.Random) -> str:
    """The next of ``choices`` in shuffled rounds (``round_`` holds what is left of this one), as
    the schedule picks nemeses: two windows of a nemesis with two choices see both, where random
    draws leave one unused half the time. One choice: no draw, so a run's other draws stay as
    they were before there was a choice."""
    if len(choices) == 1:
        return choices[0]
    if not round_:
        round_.extend(choices)
        rng.shuffle(round_)
    return round_.pop()


async def _holding_data(db: DB, nid: str, rng: random.Random) -> str:
    """``nid`` if it holds data (a memtable or an SSTable), else the first node in a seeded order
    that does (a node no key of the run has as a replica writes no SSTable to refuse), else ``nid``."""
    others = [n for n in db.node_ids() if n != nid]
    rng.shuffle(others)
    for n in [nid, *others]:
        tables = _tables_only((await _storage(db, n) or {}).get("tables") or {})
        if any(t.get("memtable_partitions") or t.get("sstable_count") for t in tables.values()):
            return n
    return nid


def _error_text(exc: BaseException) -> str:
    """``Name: message`` of an error, from inside the nursery groups a deployment's call may wrap it in."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


async def _flush_result(db: DB, nid: str) -> dict[str, Any]:
    """A flush of every table on ``nid``: what it flushed, or the error it was refused with."""
    out = await _admin_result(db, nid, "flush")
    return out if "error" in out else {"flushed": out.get("flushed", [])}


async def _admin_result(db: DB, nid: str, op: str, **fields: Any) -> dict[str, Any]:
    """An admin op's answer, or ``{"error": ...}`` naming what it was refused with."""
    try:
        return await db.admin(nid, op, **fields)
    except Exception as exc:  # noqa: BLE001 - a refusal is what a failing data disk shows
        return {"error": _error_text(exc)}


@dataclass
class Damage:
    """What the corrupt nemesis did to one file."""

    file: str  # relative to the node's storage directory
    kind: str  # "sstable" or "commitlog"
    size: int
    action: str  # "bitflip" or "truncate"
    offsets: list[int]  # the flipped bits (bit offsets in the file), or the new length
    mode: str = "stopped"  # "stopped" (the node was down) or "live" (damaged under the running node)

    def to_json(self) -> dict[str, Any]:
        """For the history (a bitflip also names the bytes it changed)."""
        out = {"file": self.file, "kind": self.kind, "size": self.size, "action": self.action, "offsets": self.offsets,
               "mode": self.mode}
        if self.action == "bitflip":
            out["bytes"] = sorted({bit // 8 for bit in self.offsets})
        return out


def candidate_files(storage_dir: Path) -> list[tuple[str, str, int]]:
    """(relative path, kind, size) of every non-empty SSTable component and commit log segment."""
    out: list[tuple[str, str, int]] = []
    data = storage_dir / "data"
    if data.is_dir():
        for p in sorted(data.rglob("*")):
            if p.is_file() and p.name.endswith(SSTABLE_SUFFIXES) and p.stat().st_size:
                out.append((p.relative_to(storage_dir).as_posix(), "sstable", p.stat().st_size))
    cl = storage_dir / "commitlog"
    if cl.is_dir():
        for p in sorted(cl.iterdir()):
            if p.is_file() and p.name.startswith(COMMITLOG_PREFIX) and p.stat().st_size:
                out.append((p.relative_to(storage_dir).as_posix(), "commitlog", p.stat().st_size))
    return out


def choose_damage(files: list[tuple[str, str, int]], rng: random.Random) -> Damage:
    """Pick a file (SSTables and segments equally likely as kinds) and what to do to it."""
    kinds = sorted({k for _, k, _ in files})
    kind = rng.choice(kinds)
    path, _, size = rng.choice([f for f in files if f[1] == kind])
    if rng.random() < 0.5 and size > 1:
        return Damage(path, kind, size, "truncate", [rng.randrange(0, size)])
    flips = sorted({rng.randrange(0, size * 8) for _ in range(rng.randint(1, MAX_FLIPPED_BITS))})
    return Damage(path, kind, size, "bitflip", flips)


def apply_damage(storage_dir: Path, damage: Damage) -> None:
    """Do it to the file (bit offsets for a bitflip, the new length for a truncation)."""
    path = storage_dir / damage.file
    if damage.action == "truncate":
        with open(path, "r+b") as f:
            f.truncate(damage.offsets[0])
        return
    data = bytearray(path.read_bytes())
    for bit in damage.offsets:
        data[bit // 8] ^= 1 << (bit % 8)
    path.write_bytes(bytes(data))


def data_files(storage_dir: Path) -> list[str]:
    """Every non-empty SSTable data file under the storage directory (relative paths)."""
    return [path for path, kind, _ in candidate_files(storage_dir) if kind == "sstable" and path.endswith("-Data.db")]


def sstable_records(data_file: Path) -> list[tuple[bytes, int, int]]:
    """(key, offset, length) of every record of a data file, from its index (docs/storage.md:
    Index.db is blocks of msgpack maps ``{key: [offset, length]}``); OSError if it is gone."""
    index = data_file.with_name(data_file.name[: -len("Data.db")] + "Index.db")
    out: list[tuple[bytes, int, int]] = []
    for block in msgpack.Unpacker(io.BytesIO(index.read_bytes()), raw=False):
        out.extend((bytes(k), int(off), int(length)) for k, (off, length) in block.items())
    return out


def choose_live_damage(storage_dir: Path, rng: random.Random) -> tuple[Damage, bytes] | None:
    """A bitflip inside one record of one live SSTable data file, and that record's key (None
    when the node has no data file, or a compaction removed each one drawn)."""
    for _ in range(3):  # a compaction may replace a file between the listing and its index read
        files = data_files(storage_dir)
        if not files:
            return None
        rel = rng.choice(files)
        path = storage_dir / rel
        try:
            records = sstable_records(path)
            size = path.stat().st_size
        except (OSError, ValueError, msgpack.UnpackException) as exc:
            log.info("corrupt: %s vanished or is unreadable (%s); drawing another", rel, exc)
            continue
        records = [r for r in records if r[1] + r[2] <= size]
        if not records:
            continue
        key, off, length = rng.choice(records)
        flips = sorted({rng.randrange(off * 8, (off + length) * 8) for _ in range(rng.randint(1, MAX_FLIPPED_BITS))})
        return Damage(rel, "sstable", size, "bitflip", flips, mode="live"), key
    return None


def flip_in_place(storage_dir: Path, damage: Damage) -> None:
    """Flip the bits of a bitflip without rewriting the file: a running node's mapping of it sees
    the change (a rewrite by truncate-and-write could fault its reads past the cut)."""
    fd = os.open(storage_dir / damage.file, os.O_RDWR)
    try:
        for bit in damage.offsets:
            byte = os.pread(fd, 1, bit // 8)
            os.pwrite(fd, bytes([byte[0] ^ (1 << (bit % 8))]), bit // 8)
    finally:
        os.close(fd)


def table_of(rel: str) -> tuple[str, str]:
    """(keyspace, table) of an SSTable component path ``data/<keyspace>/<table>-<id>/<file>``."""
    parts = Path(rel).parts
    return parts[-3], parts[-2].rsplit("-", 1)[0]


def live_verdict(damage: Damage, read_error: str | None, status: dict[str, Any] | None, gone: bool) -> dict[str, Any]:
    """What the running node made of a record damaged under it: quarantined the file (and holds the
    table's reads), refused the read (a compaction met the damage first: the table refuses reads
    until scrubbed), or never read the damaged bytes (a compaction had already replaced the file)."""
    if status is None:
        return {"outcome": "no answer", "said": f"the node did not answer: {read_error}"}
    name = Path(damage.file).name
    quarantined = [q for q in status.get("quarantined") or [] if Path(q).name == name
                   and Path(q).parent.name == table_of(damage.file)[1]]
    if quarantined:
        held = status.get("held") or {}
        return {"outcome": "quarantined", "said": f"read failed ({read_error or 'answered by a client read first'}); "
                                                  f"{name} quarantined, reads held: {'; '.join(held.values()) or 'none'}"}
    if read_error is not None and "corrupt" in read_error.lower():
        return {"outcome": "refused", "said": f"read refused: {read_error}"}
    if gone:
        return {"outcome": "not detected", "said": "a compaction replaced the file before the damaged bytes were read"}
    return {"outcome": "not detected", "said": "the read of the damaged record did not fail"}


def quarantine_file(storage_dir: Path, rel: str) -> str:
    """Move a damaged file to ``corrupt/`` under the storage directory (an operator's step when
    the node refuses to start on it); returns where it went."""
    src = storage_dir / rel
    dest = storage_dir / "corrupt" / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dest)
    return dest.relative_to(storage_dir).as_posix()


def verdict(damage: Damage, status: dict[str, Any] | None, refused_start: str | None = None) -> dict[str, Any]:
    """What the restarted node made of the damaged file: refused (it would not start on it, a
    corrupt SSTable, a truncated replay) or not noticed (a cut at a record boundary looks like a
    clean end)."""
    if refused_start is not None:
        return {"outcome": "refused", "said": f"refused to start: {refused_start}"}
    if status is None:
        return {"outcome": "no answer"}
    name = Path(damage.file).name
    gen = name.split("-", 1)[0]
    corrupt = [*(status.get("corrupt") or []), *(status.get("verify_corrupt") or []), *(status.get("quarantined") or [])]
    hit = [c for c in corrupt if Path(c).name.split("-", 1)[0] == gen and Path(c).parent.name == Path(damage.file).parent.name]
    truncs = [t for t in status.get("replay", {}).get("truncations", []) if Path(t["file"]).name == name]
    if damage.kind == "sstable" and hit:
        return {"outcome": "refused", "said": f"corrupt SSTable {Path(hit[0]).name}: table refuses reads"}
    if damage.kind == "commitlog" and truncs:
        t = truncs[0]
        return {"outcome": "refused", "said": f"commit log {name}: {t['problem']} at byte {t['offset']}; "
                                             "replay truncated there"}
    return {"outcome": "not detected", "said": "no checksum failed (e.g. a truncation at a record boundary)"}


class CorruptNemesis:
    """Damage one file of a stopped node (or one record of a running node's SSTable), then scrub
    and repair it."""

    name = "corrupt"

    def __init__(self, db: FilesDB, modes: list[str] | tuple[str, ...] = CORRUPT_MODES) -> None:
        self.db = db
        self.modes = list(modes)
        # What a window damages, in shuffled rounds: a stopped node's SSTable component or its
        # commit log segment (the node finds either at restart, by different code: an SSTable
        # refused at open and quarantined by the scrub, a replay truncated or refused), or a
        # running node's SSTable record. Three windows of both modes see all three.
        self.plans = [p for m in self.modes for p in (STOPPED_PLANS if m == "stopped" else (m,))]
        self._plan_round: list[str] = []  # the plans still to come in this round
        self.damaged: list[str] = []
        self.down: list[str] = []

    async def start(self, rng: random.Random) -> Event:
        """Damage a stopped or a running node, as drawn from the plans."""
        mode, _, kind = _next_choice(self.plans, self._plan_round, rng).partition(":")
        if mode == "live":
            event = await self._start_live(rng)
            if event is not None:
                return event
            if "stopped" not in self.modes:
                return Event("corrupt", {"mode": "live", "outcome": "nothing damaged",
                                         "summary": "live bitflip: no node had an SSTable that stayed live"})
        return await self._start_stopped(rng, kind or None)

    async def _start_live(self, rng: random.Random) -> Event | None:
        """Flush a random running node, flip bits in one SSTable record, read its key on the node."""
        nodes = self.db.node_ids()
        first = rng.choice(nodes)
        # The drawn node, or (when it holds no data yet: no key of the run has it as a replica)
        # the next one with an SSTable, in a seeded order.
        others = [n for n in nodes if n != first]
        rng.shuffle(others)
        for nid in [first, *others]:
            try:
                await self.db.admin(nid, "flush")
            except Exception as exc:  # noqa: BLE001 - older SSTables are still there to damage
                log.info("flush before corrupting %s failed: %s", nid, exc)
            if await trio.to_thread.run_sync(data_files, self.db.storage_dir(nid)):
                break
        storage_dir = self.db.storage_dir(nid)
        replaced: list[str] = []  # files damaged that a compaction replaced before the read
        for _ in range(LIVE_ATTEMPTS):
            drawn = await trio.to_thread.run_sync(choose_live_damage, storage_dir, rng)
            if drawn is None:
                break
            damage, key = drawn
            try:
                await trio.to_thread.run_sync(flip_in_place, storage_dir, damage)
            except FileNotFoundError:
                replaced.append(damage.file)
                continue
            if nid not in self.damaged:
                self.damaged.append(nid)
            log.warning("corrupt: live bitflip of %s of %s (%d B) at bits %s, key %r", damage.file, nid, damage.size,
                        damage.offsets, key)
            keyspace, table = table_of(damage.file)
            read_error = None
            try:
                # This node's own copy of the damaged record's key: the read that meets the damage.
                await self.db.admin(nid, "localread", keyspace=keyspace, table=table, keys=[key])
            except Exception as exc:  # noqa: BLE001 - the refusal is what is recorded
                read_error = _error_text(exc)[-400:]
            status = await _storage(self.db, nid)
            gone = not (storage_dir / damage.file).exists()
            said = live_verdict(damage, read_error, status, gone)
            if said["outcome"] == "not detected" and gone:
                replaced.append(damage.file)
                continue
            return Event("corrupt", {
                "node": nid, **damage.to_json(), **said, "key": key.decode("utf-8", "replace"),
                "read_error": read_error, "replaced_first": replaced,
                "quarantined": (status or {}).get("quarantined"), "held": (status or {}).get("held"),
                "summary": f"live bitflip {nid}:{Path(damage.file).name} → {said['outcome']}",
            })
        log.info("corrupt: no SSTable of %s stayed live to damage (%s); damaging a stopped node instead", nid, replaced)
        return None

    async def _start_stopped(self, rng: random.Random, kind: str | None = None) -> Event:
        """Flush a random node, kill it, damage one of its files (of ``kind`` when it has one),
        restart it, ask what it saw."""
        nid = rng.choice(self.db.node_ids())
        try:
            await self.db.admin(nid, "flush")
        except Exception as exc:  # noqa: BLE001 - the commit log still has files to damage
            log.info("flush before corrupting %s failed: %s", nid, exc)
        before = await _storage(self.db, nid)
        cl = (before or {}).get("tables", {}).get("_commitlog", {})
        self.down.append(nid)
        await self.db.kill(nid)
        storage_dir = self.db.storage_dir(nid)
        files = await trio.to_thread.run_sync(candidate_files, storage_dir)
        files = [f for f in files if f[1] == kind] or files
        damage = choose_damage(files, rng)
        await trio.to_thread.run_sync(apply_damage, storage_dir, damage)
        self.damaged.append(nid)
        log.warning("corrupt: %s %s of %s (%d B) at %s", damage.action, damage.file, nid, damage.size, damage.offsets)
        refused_start, moved_to = None, None
        try:
            await self.db.restart(nid)
        except Exception as exc:  # noqa: BLE001 - did the node refuse to start on the damaged file?
            if "exited with code" not in str(exc):
                raise  # it did not exit: a slow start is not a refusal (heal restarts it)
            refused_start = str(exc)[-600:]
            # What an operator does: move the damaged segment aside and start; the scrub's repair
            # brings back what it held.
            moved_to = await trio.to_thread.run_sync(quarantine_file, storage_dir, damage.file)
            log.warning("corrupt: %s refused to start (%s); moved %s to %s", nid, refused_start, damage.file, moved_to)
            await self.db.restart(nid)
        self.down.remove(nid)
        status = await _storage(self.db, nid, verify=True)
        said = verdict(damage, status, refused_start)
        return Event("corrupt", {
            "node": nid, **damage.to_json(), **said, "moved_to": moved_to,
            "lost_unsynced": cl.get("files") == "volatile", "unsynced_bytes": {nid: cl.get("unsynced_bytes")},
            "corrupt_sstables": (status or {}).get("corrupt"), "verify_corrupt": (status or {}).get("verify_corrupt"),
            "replay": (status or {}).get("replay"),
            "summary": f"{damage.action} {nid}:{Path(damage.file).name} → {said['outcome']}",
        })

    async def stop(self) -> Event:
        """Scrub every damaged node: quarantine, refuse its reads while repair refills it, serve."""
        nodes = sorted(set(self.damaged))
        result = await self._scrub_all()
        moved = sum(len(v) for r in result.values() if isinstance(r, dict) for v in (r.get("quarantined") or {}).values())
        streamed = sum(((r.get("repair") or {}).get("streamed_bytes") or 0) for r in result.values() if isinstance(r, dict))
        released = sorted({t for r in result.values() if isinstance(r, dict) for t in r.get("released") or []})
        return Event("scrub", {"nodes": nodes, "result": result,
                               "summary": f"scrub {' '.join(nodes)}: {moved} SSTables quarantined, "
                                          f"repair streamed {streamed:,} B"
                                          + (f", reads of {', '.join(released)} served again" if released else "")})

    async def _scrub_all(self) -> dict[str, Any]:
        down, self.down = self.down, []
        for nid in down:
            await self.db.restart(nid)
        result: dict[str, Any] = {}
        for nid in sorted(set(self.damaged)):
            try:
                r = await self.db.admin(nid, "scrub")
            except Exception as exc:  # noqa: BLE001 - the node stays damaged; heal tries again
                result[nid] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            result[nid] = {"quarantined": r.get("quarantined"), "released": r.get("released"),
                           "repair": {k: (r.get("repair") or {}).get(k) for k in ("ranges", "differing_leaves",
                                                                                  "streamed_bytes", "skipped_replicas")}}
            self.damaged = [d for d in self.damaged if d != nid]
        return result

    async def heal(self) -> dict[str, Any] | None:
        """Restart a node left down and scrub every damaged one."""
        if not self.damaged and not self.down:
            return None
        return await self._scrub_all()


def build_storage_nemesis(name: str, db: DB, target_specs: list[str] | tuple[str, ...],
                          corrupt_modes: list[str] | tuple[str, ...] = CORRUPT_MODES,
                          disks: list[str] | tuple[str, ...] = DISKS) -> Any:
    """The storage nemesis called ``name`` (ValueError when the deployment cannot run it)."""
    if name == "flush-compact":
        return FlushCompactNemesis(db)
    if name == "repair":
        return RepairNemesis(db)
    if name == "crash":
        return CrashNemesis(db, target_specs)
    if name == "disk":
        return DiskNemesis(db, disks)
    if name == "corrupt":
        if not hasattr(db, "storage_dir"):
            raise ValueError("the corrupt nemesis needs the nodes' files: local deployments only")
        return CorruptNemesis(db, corrupt_modes)  # type: ignore[arg-type]
    raise ValueError(f"unknown storage nemesis {name!r}")
