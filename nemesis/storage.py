"""Data-path nemeses: flush and compaction, anti-entropy repair, crashes that lose unsynced
writes, and damaged files. Jepsen's Cassandra suites had flush-compact, bitflip and crash faults
for the same reason: a campaign that never flushes never tests SSTables, compaction or repair.

* ``flush-compact``: flush some nodes' memtables (start), then major-compact them (stop);
* ``repair``: anti-entropy repair of one random node's ranges while clients run;
* ``crash``: SIGKILL nodes whose commit log keeps unsynced bytes in process memory
  (``[storage] volatile_unsynced``, set by the harness for campaigns with this nemesis), so the
  kill loses every write not yet fsynced as a power loss would; restart them at stop;
* ``corrupt``: flush a node, kill it, flip bits in or truncate one of its SSTable components or
  commit log segments, restart it and ask what it made of the file (start). A node that refuses
  to start on a damaged commit log gets it moved aside, as an operator would, and starts. Then
  scrub it: quarantine what is corrupt, refuse the affected tables' reads while a repair brings
  the data back from the replicas, serve again (stop). Needs the nodes' files (local only).

Each start and stop returns what it did (nodes, files, offsets, bytes) for the history; a short
``summary`` names it in the report's timeline.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import trio

from nemesis.faults import DB, TARGET_SPECS, Event, targets

log = logging.getLogger("nemesis.storage")

STORAGE_NEMESES = ("flush-compact", "repair", "crash", "corrupt", "disk")
# What the disk nemesis's failing disk answers every commit log write and fsync with.
DISK_ERRORS = ("ENOSPC", "EIO")
# How flush-compact picks its nodes: never all at once, so it is one fault among others.
FLUSH_SPECS = ("one", "minority", "majority")
# SSTable components and commit log segments the corrupt nemesis may damage.
SSTABLE_SUFFIXES = ("-Data.db", "-Index.db", "-Summary.db", "-Filter.db", "-Statistics.db", "-Digest.crc32",
                    "-TOC.txt")
COMMITLOG_PREFIX = "CommitLog-"
# Bits flipped per bitflip: one is the classic single-event upset; a few cover burst errors.
MAX_FLIPPED_BITS = 4


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
    """A node's disk fails for a window: every commit log write and fsync returns ENOSPC or EIO
    (``[storage] disk_faults``, the engine's file door). At the window's end the disk is healed
    and the node restarted: after a failed fsync commit_failure_policy ``stop`` acknowledges no
    write again until a restart, as Cassandra's does."""

    name = "disk"

    def __init__(self, db: DB) -> None:
        self.db = db
        self.failing: dict[str, str] = {}

    async def start(self, rng: random.Random) -> Event:
        """Fail one random node's disk with ENOSPC or EIO."""
        nid = rng.choice(self.db.node_ids())
        error = rng.choice(DISK_ERRORS)
        said = await self.db.admin(nid, "disk", action="fail", error=error)
        self.failing[nid] = error
        return Event("disk-fail", {"node": nid, "disk_error": error, "said": said,
                                   "summary": f"disk of {nid} fails: every commit log write and fsync returns {error}"})

    async def stop(self) -> Event:
        """Heal the failed disks, record how many calls failed, and restart those nodes."""
        failing, self.failing = self.failing, {}
        done: dict[str, Any] = {}
        for nid in failing:
            try:
                done[nid] = await self.db.admin(nid, "disk", action="heal")
            except Exception as exc:  # noqa: BLE001 - recorded; the restart heals it anyway
                done[nid] = {"error": f"{type(exc).__name__}: {exc}"}
        for nid in failing:
            try:
                # Flush the memtables first (SSTables bypass the door), so the kill loses nothing
                # even when the run's files are volatile.
                await self.db.admin(nid, "drain")
            except Exception as exc:  # noqa: BLE001 - recorded; what was fsynced survives the kill
                done.setdefault(nid, {})["drain_error"] = f"{type(exc).__name__}: {exc}"
            await self.db.kill(nid)
        async with trio.open_nursery() as nursery:
            for nid in failing:
                nursery.start_soon(self.db.restart, nid)
        refused = sum((d or {}).get("failed_calls", 0) for d in done.values())
        return Event("disk-heal", {"nodes": sorted(failing), "disk_errors": failing, "result": done,
                                   "summary": f"disk of {' '.join(sorted(failing))} healed after {refused} refused "
                                              f"writes/fsyncs; restarted"})

    async def heal(self) -> None:
        """Heal and restart any node left with a failing disk."""
        if self.failing:
            await self.stop()


@dataclass
class Damage:
    """What the corrupt nemesis did to one file."""

    file: str  # relative to the node's storage directory
    kind: str  # "sstable" or "commitlog"
    size: int
    action: str  # "bitflip" or "truncate"
    offsets: list[int]  # the flipped bits (bit offsets in the file), or the new length

    def to_json(self) -> dict[str, Any]:
        """For the history (a bitflip also names the bytes it changed)."""
        out = {"file": self.file, "kind": self.kind, "size": self.size, "action": self.action, "offsets": self.offsets}
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
    """Damage one file of a stopped node, restart it, then scrub and repair it."""

    name = "corrupt"

    def __init__(self, db: FilesDB) -> None:
        self.db = db
        self.damaged: list[str] = []
        self.down: list[str] = []

    async def start(self, rng: random.Random) -> Event:
        """Flush a random node, kill it, damage one of its files, restart it, ask what it saw."""
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
        return Event("scrub", {"nodes": nodes, "result": result,
                               "summary": f"scrub {' '.join(nodes)}: {moved} SSTables quarantined, "
                                          f"repair streamed {streamed:,} B"})

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


def build_storage_nemesis(name: str, db: DB, target_specs: list[str] | tuple[str, ...]) -> Any:
    """The storage nemesis called ``name`` (ValueError when the deployment cannot run it)."""
    if name == "flush-compact":
        return FlushCompactNemesis(db)
    if name == "repair":
        return RepairNemesis(db)
    if name == "crash":
        return CrashNemesis(db, target_specs)
    if name == "disk":
        return DiskNemesis(db)
    if name == "corrupt":
        if not hasattr(db, "storage_dir"):
            raise ValueError("the corrupt nemesis needs the nodes' files: local deployments only")
        return CorruptNemesis(db)  # type: ignore[arg-type]
    raise ValueError(f"unknown storage nemesis {name!r}")
