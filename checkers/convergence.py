"""Per-replica convergence: does every replica of every key hold what it must once faults heal?

Client reads merge replicas, so a replica left wrong (a range streamed from the wrong source, a
repair skipped, a hint lost) is invisible to checkers that only see reads while any other
replica is right. This checker reads the harness's per-replica snapshots (``replicas.jsonl``,
written by ``harness/convergence.py``): each replica's own copy of each key, read without
coordination or read repair.

What a replica must hold:

* register / counter: the newest acknowledged write to the key (a cell with at least its
  timestamp), and no value that no write was ever invoked with;
* set: every acknowledged element, and no element that no add was invoked with;
* after the final read at ALL with blocking read repair: what that read returned (the
  coordinator wrote the merged row back to every replica before answering), so the replicas of
  such a key must agree.

Three passes. ``before`` (after healing and recovery) shows what is *not yet converged*, counted
and shown but not held against the store: hints may still be on their way and read repair has
not run. One finding there is an anomaly all the same, ``replica-lost-write``: a replica lacks
an acknowledged write although no node holds a hint for it (the harness records every node's
hints around the reads), the write's coordinator was neither killed in time to lose its hints
nor removed from the ring, and no membership change was under way while another fault ran (with
nothing else going on, a write acknowledged during a change reaches the replicas gaining its
range as a pending write); nothing but repair can bring
such a write back, so the replica lost it or was never sent it (a range taken over empty, say).
``read-repair`` (right after the final reads at ALL) and ``after`` (once every hint has been
delivered) are judged: a replica still missing, stale or extra there is a
``diverged-after-repair`` anomaly, and so are replicas that disagree after a read at ALL with
blocking read repair had to reconcile them. A table without blocking read repair (``NONE``) has
its ``read-repair`` pass judged as ``before`` is: those reads wrote nothing back, so a hint still
on its way there explains a replica that lacks its write.

With ``--final-repair`` the harness drains the hints and runs an anti-entropy repair on every
node before the ``after`` pass; when every repair succeeded and skipped no replica, every
replica of every key there must hold the same cells (``diverged-after-repair`` otherwise), in
both directions: what one replica holds, even an element no acknowledged add owes, the repair
must have given the others. A ``node-repair`` pass, taken right after the first node's repair,
holds the replicas of every key that node replicates to the same: a repair syncs every pair of
a range's replicas, and the later repairs of the other nodes would hide a pair it never
compared. With a finite ``max_hint_window`` the ``before`` pass excuses a
write missing on a replica that a kill, pause or partition longer than the window cut off
while the write ran: no hint is stored past it.

The ``after`` pass also records each running node's failure-detector view of the others (the
``status`` admin op). A node that answered the harness then, long after every fault healed and
every hint was delivered, but that another running node still calls DOWN is a
``stale-liveness-view`` anomaly: that node's gossip never marked it UP again, so its
coordinator hints and refuses writes for a live replica.

The ``after`` pass also reads every key on the nodes that are not its replicas: one holding a
cell of it that no ring of the run explains is ``misplaced-data`` (checkers/misplaced.py).

And each node's own account of its files (the ``storage`` admin op with a full checksum scrub):
a corrupt or quarantined SSTable, or a table refusing reads, after a run whose nemeses never
damage a file (kills, power losses, partitions, flushes: everything but ``corrupt`` and
``disk``) is ``store-damaged``: a correct store fsyncs an SSTable before it drops the commit log
that held its writes and truncates a torn commit-log tail, so only its own bug leaves a damaged
file behind (where the replicas it could not read would only make the verdict unknown). With it,
each SSTable's recorded statistics are held to a count from its data file
(``sstable-metadata-wrong``, checkers/sstable_stats.py).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from checkers import gcgrace, liveness, misplaced, placement, sstable_stats
from checkers.result import Anomaly, AnomalyLog, Result, Validity
from harness.history import NEMESIS, Op, nemesis_steps

SNAPSHOT_FILE = "replicas.jsonl"
# Keys whose replicas disagree that get a per-replica table in the result (and the report); the
# counts cover every key.
MAX_TABLE_KEYS = 40
# Elements listed per replica in a table row (a set can miss thousands).
MAX_LISTED = 12
WRITE_FS = frozenset({"write", "put", "cas", "incr", "delete"})
PASS_WORDS = {"read-repair": "right after the final reads at ALL, whose blocking read repair wrote the merged row back",
              "after": "after the anti-entropy pass (final reads with read repair, every hint delivered)"}
ADD_FS = frozenset({"add"})


def load_snapshots(source: str | os.PathLike[str] | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of a ``replicas.jsonl`` (a path), or the records themselves."""
    if isinstance(source, (str, os.PathLike)):
        with Path(source).open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    return list(source)


def params_for_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Checker params naming the run's snapshots, when it has any, with the table's gc_grace and
    the history's wall-clock zero from test.json (to judge purged tombstones)."""
    path = Path(run_dir) / SNAPSHOT_FILE
    if not path.exists():
        return {}
    out: dict[str, Any] = {"replica_snapshots": str(path)}
    try:
        test = json.loads((Path(run_dir) / "test.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return out
    nemesis = (test.get("options") or {}).get("nemesis") if isinstance(test.get("options"), dict) else None
    if isinstance(nemesis, str):
        out["nemesis"] = nemesis  # which faults may damage files (the store-damaged check)
    window = (test.get("options") or {}).get("max_hint_window") if isinstance(test.get("options"), dict) else None
    if isinstance(window, (int, float)):
        out["max_hint_window"] = window
    table = (test.get("storage") or {}).get("table") if isinstance(test.get("storage"), dict) else None
    if isinstance(table, dict) and isinstance(table.get("gc_grace_seconds"), (int, float)):
        out["gc_grace_seconds"] = table["gc_grace_seconds"]
    # A simulated run's history runs on virtual time while the snapshots' wall stamps are real
    # time: there only a pass's own history_ns (harness/convergence.py) dates it.
    if isinstance(test.get("history_start_time"), (int, float)) and test.get("deploy") != "sim":
        out["history_start_time"] = test["history_start_time"]
    return out


# Nemeses that damage a node's files on purpose (nemesis/storage.py): with one of them in the
# run, corrupt or quarantined SSTables are the fault's doing, not the store's.
FILE_DAMAGE_NEMESES = frozenset({"corrupt", "disk"})
# Every other nemesis name (nemesis/faults.py NEMESES and its aliases): a run naming only these
# has no fault that may damage a file. An unknown name leaves the storage health unjudged.
NO_FILE_DAMAGE_NEMESES = frozenset({"partition", "kill", "pause", "clock", "latency", "membership", "zk",
                                    "flush-compact", "repair", "crash", "admin", "move", "clients", "all", "none"})


def _file_damage_excused(nemesis: Any) -> bool | None:
    """Whether the run's nemeses may damage files (None: the nemeses are not known)."""
    if not isinstance(nemesis, str):
        return None
    names = {n.strip() for n in nemesis.split(",") if n.strip()}
    if names & FILE_DAMAGE_NEMESES:
        return True
    return None if names - NO_FILE_DAMAGE_NEMESES else False


class _Expected:
    """What the history says about one key."""

    __slots__ = ("newest", "invoked", "acked_elements", "final_all", "final_all_ts", "final_all_t", "acked",
                 "unsure_deletes")

    def __init__(self) -> None:
        self.newest: tuple[int, Any, Op] | None = None  # (timestamp, value, completion)
        self.invoked: set[Any] = set()
        self.acked_elements: dict[int, Op] = {}
        # Every acknowledged write: (timestamp or element, invocation time, completion).
        self.acked: list[tuple[Any, int, Op]] = []
        self.final_all: Any = None  # the value the last final read at ALL returned
        self.final_all_ts: int | None = None
        self.final_all_t: int | None = None  # when that read was invoked
        # Deletes that may have happened (info): (invocation time, completion).
        self.unsure_deletes: list[tuple[int, Op]] = []


def _hashable(v: Any) -> Any:
    if isinstance(v, dict):  # a row write's {column: value}
        return tuple(sorted((str(k), _hashable(x)) for k, x in v.items()))
    return tuple(v) if isinstance(v, list) else v


def expectations(history: Iterable[Op], model: str) -> dict[Any, _Expected]:
    """Per key: the newest acknowledged write (or acknowledged elements), invoked values, and the
    final read at ALL."""
    pending: dict[Any, Op] = {}
    out: dict[Any, _Expected] = {}
    for op in history:
        if op.process == NEMESIS:
            continue
        if op.type == "invoke":
            pending[op.process] = op
            if op.f in ADD_FS or op.f in WRITE_FS:
                e = out.setdefault(_hashable(op.key), _Expected())
                if op.value is not None and op.f != "incr":
                    e.invoked.add(_hashable(op.value[1] if op.f == "cas" and isinstance(op.value, list) else op.value))
            continue
        inv = pending.pop(op.process, None)
        if inv is not None and op.type == "info" and inv.f == "delete":
            out.setdefault(_hashable(inv.key), _Expected()).unsure_deletes.append((inv.time, op))
        if inv is None or op.type != "ok":
            continue
        key = _hashable(inv.key)
        e = out.setdefault(key, _Expected())
        if inv.f in ADD_FS:
            e.acked_elements[inv.value] = op
            e.acked.append((inv.value, inv.time, op))
        elif inv.f in WRITE_FS and op.timestamp is not None:
            e.acked.append((op.timestamp, inv.time, op))
            value = op.value
            if inv.f == "incr" and isinstance(value, list) and len(value) == 2:
                value = value[1]
                e.invoked.add(value)
            elif inv.f == "cas" and isinstance(inv.value, list):
                value = inv.value[1]
            if e.newest is None or op.timestamp > e.newest[0]:
                e.newest = (op.timestamp, _hashable(value), op)
        elif inv.f in ("read", "get") and op.extra.get("final") and op.cl == "ALL":
            e.final_all = op.value
            e.final_all_ts = op.timestamp
            e.final_all_t = inv.time
    return out


# A write's hint is stored when its replica task times out (the store's write timeout, 2 s) after
# the write completed at its level; a coordinator killed before that may leave no hint. Margin
# on top for a loaded machine.
HINT_STORED_WITHIN_NS = 4_000_000_000


# A replica back from an outage is marked UP again by its peers within the liveness checker's UP
# bound (10 gossip rounds); until then coordinators treat it as DOWN (and past the hint window).
REMARKED_UP_WITHIN_NS = int(liveness.UP_BOUND_ROUNDS * liveness.DEFAULT_INTERVAL_S * 1e9)


class _Faults:
    """When each node was killed, which nodes left the ring, and the membership windows."""

    def __init__(self, history: list[Op], kills_lose: bool = False, max_hint_window_s: float | None = None) -> None:
        # kills_lose: the nodes held unsynced commit log bytes in memory (volatile_unsynced), so
        # a kill lost them as a crash does.
        damaging = (("start-crash", "start-corrupt", "start-kill", "stop-disk") if kills_lose
                    else ("start-crash", "start-corrupt"))
        self.kills: dict[str, list[tuple[int, int]]] = {}
        # Nodes whose own storage lost data on purpose (a crash losing unsynced commit log
        # writes, a corrupted file): when, so a write they lack from before that is allowed.
        self.damaged: dict[str, list[int]] = {}
        self.left: dict[str, int] = {}
        self.membership: list[tuple[int, int]] = []
        # Every other fault's window (start invoked until stop completed, or the end): a pending
        # replica misses writes legitimately only when something made it look down.
        self.other_faults: list[tuple[int, float]] = []
        opened: dict[str, int] = {}
        # The disk nemesis's windows per node: a replica refusing a write on a failing disk
        # answers with an error, so the coordinator stores no hint for it.
        self.disk_failing: dict[str, list[tuple[int, int | None]]] = {}
        for op, t0, v in nemesis_steps(history):
            # A failing data disk (disk "data") refuses SSTable writes only: the commit log takes
            # every write, so no write is refused and nothing is excused.
            if op.f == "start-disk" and isinstance(v.get("node"), str) and v.get("disk", "commitlog") == "commitlog":
                self.disk_failing.setdefault(v["node"], []).append((op.time, None))
            if op.f == "stop-disk":
                for n in v.get("nodes") or []:
                    spans = self.disk_failing.get(n) or []
                    if spans and spans[-1][1] is None:
                        spans[-1] = (spans[-1][0], op.time)
            if op.f in ("start-kill", "start-crash"):
                for n in v.get("nodes") or []:
                    self.kills.setdefault(n, []).append((t0, op.time))
            if op.f in damaging:
                # stop-disk restarts (kills) only the nodes whose commit log disk failed.
                hit = v.get("restarted", v.get("nodes")) if op.f == "stop-disk" else v.get("nodes")
                for n in [*(hit or []), *([v["node"]] if isinstance(v.get("node"), str) else [])]:
                    self.damaged.setdefault(n, []).append(op.time)
            if "membership" not in op.f and op.f.startswith("start-"):
                opened.setdefault(op.f[len("start-"):], t0)
            elif "membership" not in op.f and op.f.startswith("stop-") and op.f[len("stop-"):] in opened:
                self.other_faults.append((opened.pop(op.f[len("stop-"):]), op.time))
            elif "membership" not in op.f and not op.f.startswith("stop-") and op.f != "heal":
                self.other_faults.append((t0, op.time))  # a one-shot fault (a flush, a repair, ...)
            if "membership" in op.f:
                self.membership.append((t0, op.time))
                if op.extra.get("action") in ("decommission", "removenode") and isinstance(v.get("node"), str):
                    self.left[v["node"]] = t0
        self.other_faults.extend((t, math.inf) for t in opened.values())  # never stopped
        # A finite hint window (max_hint_window): a target convicted DOWN for longer than it gets
        # no hints, rightly, so a write made while a fault that long cut a replica off may be
        # missing there until repair. The faults' spans (kills and pauses per node, partitions for
        # every node) longer than the window; None: the store's 3 hours, which no campaign reaches.
        self.window_outages: list[tuple[int, float, frozenset[str] | None]] = []
        if max_hint_window_s is not None:
            window_ns = max_hint_window_s * 1e9
            self.window_outages = [o for o in self._outages(history) if o[1] - o[0] > window_ns]

    @staticmethod
    def _outages(history: list[Op]) -> list[tuple[int, float, frozenset[str] | None]]:
        """Each kill, crash, pause and partition: (start invoked, stop completed or the end, the
        nodes it took away, or None for a partition, which may cut any node off its coordinator)."""
        out: list[tuple[int, float, frozenset[str] | None]] = []
        open_: dict[str, tuple[int, frozenset[str] | None]] = {}
        for op, t0, v in nemesis_steps(history):
            for kind in ("kill", "crash", "pause", "partition"):
                if op.f == f"start-{kind}":
                    nodes = v.get("nodes") if kind != "partition" else None
                    open_[kind] = (t0, frozenset(nodes) if isinstance(nodes, list) else None)
                elif op.f == f"stop-{kind}" and kind in open_:
                    a, nodes = open_.pop(kind)
                    out.append((a, op.time, nodes))
        out.extend((a, math.inf, nodes) for a, nodes in open_.values())
        return out

    def past_hint_window(self, inv_t: int, comp_t: int, replica: str) -> bool:
        """Whether the replica may have been cut off longer than the hint window while a write ran
        (its coordinator still holds it DOWN for a while after the fault ends: until its gossip
        marks it UP again, within checkers/liveness.py's UP bound)."""
        return any(a <= comp_t and b + REMARKED_UP_WITHIN_NS >= inv_t and (nodes is None or replica in nodes)
                   for a, b, nodes in self.window_outages)

    def other_fault_during(self, t0: int, t1: int) -> bool:
        """Whether any fault besides membership changes was active at some point in [t0, t1]."""
        return any(a <= t1 and b >= t0 for a, b in self.other_faults)

    def replica_damaged(self, replica: str, inv_t: int) -> bool:
        """Whether the replica's own storage lost data on purpose after a write was invoked."""
        return any(t >= inv_t for t in self.damaged.get(replica, ()))

    def excuses(self, inv_t: int, comp: Op, replica: str | None = None) -> str | None:
        """Why an acknowledged write may legitimately be missing on a replica before repair."""
        if replica is not None and self.replica_damaged(replica, inv_t):
            return f"replica {replica} was crashed or had a file corrupted since"
        end = comp.time + HINT_STORED_WITHIN_NS
        if replica is not None and self.past_hint_window(inv_t, comp.time, replica):
            return (f"replica {replica} was cut off longer than the hint window (max_hint_window) then: "
                    f"no hint is stored past it, and only repair brings such a write")
        if replica is not None and any(a <= comp.time and (b is None or b >= inv_t)
                                       for a, b in self.disk_failing.get(replica, ())):
            return f"replica {replica}'s disk was failing (the disk nemesis): it refused the write, so no hint was stored"
        node = comp.node
        if node is not None:
            if any(a <= end and b >= inv_t for a, b in self.kills.get(node, ())):
                return f"its coordinator {node} was killed before it could store hints"
            if node in self.left and self.left[node] >= inv_t:
                return f"its coordinator {node} left the ring (with any hints it held)"
        # A pending replica that was down gets the write neither sent nor hinted; with nothing else
        # going on it is up, so a write acknowledged while ranges stream must reach it (unless
        # skip_pending_ranges: the sim caught that only once this excuse stopped covering it).
        if any(a <= end and b >= inv_t for a, b in self.membership) and self.other_fault_during(inv_t, end):
            return "it was written during a membership change while other faults ran (a pending replica that was down gets no hint)"
        return None


def _set_elements(cells: list[list[Any]], prefix: str) -> set[int]:
    out = set()
    for name, _value, _ts, tombstone, _exp in cells:
        if not tombstone and name.startswith(prefix) and name[len(prefix):].isdigit():
            out.add(int(name[len(prefix):]))
    return out


def _register_cell(rec: dict[str, Any], column: str) -> tuple[Any, int, bool] | None:
    """(value, timestamp, deleted) of a register's column on a replica: its cell, or the row
    tombstone that covers it (a delete of the key), whichever is newer; None if it has neither."""
    cell = None
    for name, value, ts, tombstone, _exp in rec.get("cells") or []:
        if name == column:
            cell = (None if tombstone else _hashable(value), ts, bool(tombstone))
            break
    pt = rec.get("partition_tombstone")
    if pt is not None and (cell is None or pt >= cell[1]):
        return None, pt, True
    return cell


def replica_holds(rec: dict[str, Any], spec: dict[str, Any], elements: Iterable[int] = ()) -> dict[str, Any]:
    """What one replica record holds, for showing: ``{"error"}``; a set's ``{"elements", "held",
    "lacks"}`` (of ``elements``); else a register's or counter's ``{"value", "timestamp", "tombstone"}``."""
    if "error" in rec:
        return {"error": str(rec["error"])}
    if spec.get("model") == "set":
        have = _set_elements(rec.get("cells") or [], spec.get("element_prefix", "e"))
        wanted = list(elements)
        return {"elements": len(have), "held": [x for x in wanted if x in have], "lacks": [x for x in wanted if x not in have]}
    cell = _register_cell(rec, spec.get("column", "v"))
    return {"value": cell[0] if cell else None, "timestamp": cell[1] if cell else None, "tombstone": bool(cell and cell[2])}


def _judge_register(rec: dict[str, Any], e: _Expected, column: str, after: bool, blocking: bool,
                    check_extra: bool, faults: _Faults | None = None) -> tuple[dict[str, Any], list[str]]:
    """One replica of a register/counter key: what it holds and what is wrong with it."""
    cell = _register_cell(rec, column)
    holds = {"value": cell[0] if cell else None, "timestamp": cell[1] if cell else None,
             "tombstone": bool(cell and cell[2])}
    problems: list[str] = []
    want_ts = e.newest[0] if e.newest else None
    if faults is not None and faults.damaged.get(rec["node"]):
        # Writes this replica's own crash or corruption may have taken are not owed by it.
        owed = [ts for ts, inv_t, _ in e.acked if not faults.replica_damaged(rec["node"], inv_t)]
        want_ts = max(owed) if owed else None
    if after and blocking and e.final_all_ts is not None and (want_ts is None or e.final_all_ts > want_ts):
        want_ts = e.final_all_ts
    if want_ts is not None:
        if cell is None:
            problems.append("missing")
        elif cell[1] < want_ts:
            problems.append("stale")
    if check_extra and cell is not None and not cell[2] and cell[0] not in e.invoked:
        problems.append("extra")
    return holds, problems


def _judge_set(rec: dict[str, Any], e: _Expected, prefix: str, after: bool,
               blocking: bool, faults: _Faults | None = None) -> tuple[dict[str, Any], list[str], list[int], list[int]]:
    """One replica of a set key: what it holds, the problems, missing and extra elements."""
    have = _set_elements(rec["cells"], prefix)
    want = set(e.acked_elements)
    if faults is not None and faults.damaged.get(rec["node"]):
        want = {x for x, inv_t, _ in e.acked if not faults.replica_damaged(rec["node"], inv_t)}
    if after and blocking and isinstance(e.final_all, list):
        want |= set(e.final_all)
    missing = sorted(want - have)
    extra = sorted(x for x in have if x not in e.invoked)
    problems = (["missing"] if missing else []) + (["extra"] if extra else [])
    return {"elements": len(have)}, problems, missing, extra


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Judge the per-replica snapshots of a run against its history."""
    params = params or {}
    source = params.get("replica_snapshots")
    if source is None:
        return Result("convergence", "unknown", {}, [], {"reason": "no per-replica snapshots (replicas.jsonl) to check"})
    records = load_snapshots(source)
    headers = {r["pass"]: r for r in records if r.get("type") == "pass"}
    spec = next((h.get("workload") for h in headers.values() if h.get("workload")), None) or {
        "model": params.get("model") or "register", "column": "v"}
    model = spec.get("model", "register")
    ops = history if isinstance(history, list) else list(history)
    exp = expectations(ops, model)
    faults = _Faults(ops, kills_lose=bool(params.get("volatile_unsynced")),
                     max_hint_window_s=params.get("max_hint_window"))
    grace = gcgrace.Grace(params.get("gc_grace_seconds"), gcgrace.pass_times(headers, params.get("history_start_time")), ops)
    log = AnomalyLog()
    counts: dict[str, int] = {"keys": 0, "replicas_read": 0, "unreadable": 0, "expected-after-gc-grace": 0}
    expected_findings: list[dict[str, Any]] = []
    tables: list[dict[str, Any]] = []
    shown: dict[str, int] = {}
    ranges: dict[tuple[str, ...], dict[str, Any]] = {}
    by_pass: dict[str, dict[Any, list[dict[str, Any]]]] = {}
    for r in records:
        if r.get("type") == "replica":
            by_pass.setdefault(r["pass"], {}).setdefault(_hashable(r["key"]), []).append(r)
    reasons: list[str] = []
    for label, h in headers.items():
        if h.get("error"):
            reasons.append(f"the {label} snapshot failed: {h['error']}")
    if "after" not in headers:
        reasons.append("no snapshot after the anti-entropy pass")
    elif headers["after"].get("hints_drained") is False:
        reasons.append(f"hints were still pending after the anti-entropy pass: {headers['after'].get('hints_pending')}")
    for label in ("before", "read-repair", "after"):
        keys = by_pass.get(label, {})
        held = (headers.get(label) or {}).get("hints_held") or {}
        hinted = set(held.get("targets") or [])
        blocking = (headers.get(label) or {}).get("read_repair", "BLOCKING") == "BLOCKING"
        # Without blocking read repair the final reads repaired nothing: their pass is a before.
        after = label == "after" or (label == "read-repair" and blocking)
        hints_unknown = bool(held.get("unknown")) or (not after and not held)
        # After a full anti-entropy repair of every node (harness --final-repair) that skipped no
        # replica, with every hint delivered before it and no write since: every replica of every
        # key holds the same cells, whatever read repair did (a tombstone counts as nothing).
        full = (headers.get(label) or {}).get("full_repair") if label == "after" else None
        repaired_all = (isinstance(full, dict) and bool(full)
                        and all(isinstance(v, dict) and not v.get("error") and not v.get("skipped_replicas")
                                for v in full.values())
                        and (headers.get(label) or {}).get("full_repair_hints_drained") is not False)
        if label == "after" and full is not None:
            counts["after_full_repair_judged"] = int(repaired_all)
        words = PASS_WORDS.get(label, label) + (" and a full anti-entropy repair of every node" if repaired_all else "")
        prefix = f"{label}_"
        for name in ("keys", "replicas", "stale", "missing", "extra", "keys_disagreeing", "lost_on_replica", "purged"):
            counts.setdefault(prefix + name, 0)
        for key, recs in keys.items():
            e = exp.get(key) or _Expected()
            counts[prefix + "keys"] += 1
            # A resurrection gc_grace explains (checkers/gcgrace.py): what read repair wrote back is owed.
            resurrected = (_gc_resurrection(e, by_pass.get("before", {}).get(key), faults, grace, spec.get("column", "v"))
                           if after and blocking and model not in ("set", "row") else None)
            rows: list[dict[str, Any]] = []
            contents: set[Any] = set()
            live: set[Any] = set()  # what each replica holds, a deleted register as nothing
            bad_nodes: list[str] = []
            for rec in recs:
                counts[prefix + "replicas"] += 1
                row: dict[str, Any] = {"node": rec["node"]}
                if "error" in rec:
                    counts["unreadable"] += 1
                    row.update(problems=["unreadable"], error=rec["error"])
                    rows.append(row)
                    if after:
                        reasons.append(f"replica {rec['node']} of key {key!r} could not be read: {rec['error']}")
                    continue
                counts["replicas_read"] += 1
                if model == "row":
                    # Rows: no expectation per write here (checkers/cells.py judges each cell from
                    # the reads); what is judged is that replicas agree once read repair or a full
                    # repair had to make them (below), on the live cells a row delete leaves.
                    cells = _row_live_cells(rec)
                    row.update(cells=len(cells), row_tombstone=rec.get("partition_tombstone"))
                    contents.add(cells)
                    live.add(cells)
                    problems = []
                elif model == "set":
                    holds, problems, missing, extra = _judge_set(rec, e, spec.get("element_prefix", "e"), after, blocking, faults)
                    row.update(holds, missing=missing[:MAX_LISTED], missing_count=len(missing),
                               extra=extra[:MAX_LISTED], extra_count=len(extra))
                    contents.add(frozenset(_set_elements(rec["cells"], spec.get("element_prefix", "e"))))
                    live.add(frozenset(_set_elements(rec["cells"], spec.get("element_prefix", "e"))))
                else:
                    holds, problems = _judge_register(rec, e, spec.get("column", "v"), after, blocking,
                                                      check_extra=model != "counter", faults=faults)
                    row.update(holds)
                    contents.add((holds["value"], holds["timestamp"]))
                    live.add(None if holds["tombstone"] or holds["timestamp"] is None else (holds["value"], holds["timestamp"]))
                    if problems == ["missing"]:
                        why = _gc_purged(rec, e, faults, grace, label, after and blocking)
                        if why is not None:
                            problems = []
                            row["purged"] = why
                            counts[prefix + "purged"] += 1
                    elif resurrected is not None and "stale" in problems and holds["timestamp"] is not None \
                            and e.final_all_ts is not None and holds["timestamp"] >= e.final_all_ts:
                        problems = [p for p in problems if p != "stale"]
                        row["expected"] = resurrected
                        counts["expected-after-gc-grace"] += 1
                        if len(expected_findings) < MAX_TABLE_KEYS:
                            expected_findings.append({"pass": label, "key": key, "node": rec["node"], "reason": resurrected})
                row["problems"] = problems
                for p in problems:
                    counts[prefix + p] += 1
                if not after and problems and not hints_unknown and rec["node"] not in hinted:
                    lost = _unexplained_losses(rec, e, model, spec, faults)
                    if lost:
                        counts[prefix + "lost_on_replica"] += 1
                        row["lost"] = lost[:MAX_LISTED]
                        w = lost[0]
                        log.add(Anomaly(
                            "replica-lost-write",
                            f"key {key!r}: replica {rec['node']} lacks the acknowledged write of {w[0]!r} (op {w[1].index}, "
                            f"through {w[1].node}) although no node holds a hint for it, its coordinator was neither killed "
                            f"nor removed and no membership change was under way while other faults ran: nothing but read repair or repair can "
                            f"restore it (the replica lost it or never got it)",
                            [w[1]], key, {"node": rec["node"], "lost": len(lost)}))
                if problems:
                    bad_nodes.append(rec["node"])
                rows.append(row)
            disagree = len(contents) > 1
            if disagree:
                counts[prefix + "keys_disagreeing"] += 1
            # Replicas that still differ after a read at ALL repaired them: read repair did not.
            repaired = after and blocking and (isinstance(e.final_all, list) if model == "set"
                                               else e.final_all_t is not None if model == "row"
                                               else e.final_all_ts is not None)
            if disagree and repaired and not bad_nodes:
                bad_nodes = [r["node"] for r in rows]
            if repaired_all and len(live) > 1 and not bad_nodes:
                bad_nodes = [r["node"] for r in rows if r.get("problems") != ["unreadable"]]
            if not (disagree or bad_nodes):
                continue
            rng = tuple(recs[0].get("range") or ())
            agg = ranges.setdefault((label, *rng), {"pass": label, "range": list(rng), "replicas": recs[0].get("replicas"),
                                                    "keys": 0, "disagreeing": set()})
            agg["keys"] += 1
            agg["disagreeing"].update(bad_nodes if bad_nodes else [r["node"] for r in rows])
            expected = _expected_json(e, model, after and blocking)
            if shown.get(label, 0) < MAX_TABLE_KEYS:
                shown[label] = shown.get(label, 0) + 1
                tables.append({"pass": label, "key": key, "range": list(rng), "expected": expected, "replicas": rows})
            if not after:
                continue
            for row in rows:
                if row["node"] not in bad_nodes or row["problems"] == ["unreadable"]:
                    continue
                what = ", ".join(row["problems"]) or "differs from the other replicas"
                ops = [e.newest[2]] if e.newest else []
                log.add(Anomaly(
                    "diverged-after-repair",
                    f"key {key!r}: replica {row['node']} is {what} {words}: {_describe(row, expected, model)}",
                    ops, key, {"node": row["node"], "problems": row["problems"], "range": list(rng)}))
    _judge_node_repair(headers.get("node-repair"), by_pass.get("node-repair", {}), model, spec, log, counts)
    after_header = headers.get("after") or {}
    views = after_header.get("views") or {}
    waited = after_header.get("views_wait_s")
    for node, view in sorted(views.items()):
        for peer, state in sorted(view.items()):
            if state == "D" and peer in views:
                log.add(Anomaly(
                    "stale-liveness-view",
                    f"{node} still sees {peer} DOWN after the anti-entropy pass"
                    + (f" and {waited:g} s more" if isinstance(waited, (int, float)) else "")
                    + f", although {peer} answered the harness then: its failure detector never marked "
                    f"{peer} UP again after the faults healed",
                    [], None, {"node": node, "peer": peer}))
    counts["stale-liveness-view"] = log.count("stale-liveness-view")
    # What each node found wrong with its own files at the end (harness/convergence.py
    # storage_health): kills, power losses, partitions, pauses, flushes and the rest never damage a
    # file of a correct store (it fsyncs an SSTable before its commit log is dropped, and a torn
    # commit log tail is truncated, not a damage); only the corrupt and disk nemeses may.
    health = after_header.get("storage_health")
    judged = isinstance(health, dict) and _file_damage_excused(params.get("nemesis")) is False
    counts["storage_health_judged"] = int(judged)
    if judged:
        for node, st in sorted(health.items()):
            if not isinstance(st, dict):
                continue
            files = sorted({*(st.get("corrupt") or []), *(st.get("verify_corrupt") or []), *(st.get("quarantined") or [])})
            held = st.get("held") or {}
            if files or held:
                log.add(Anomaly(
                    "store-damaged",
                    f"{node} reports damaged storage after the run: {len(files)} corrupt or quarantined SSTable(s)"
                    + (f" ({', '.join(Path(f).name for f in files[:3])})" if files else "")
                    + (f", tables refusing reads: {', '.join(sorted(held))}" if held else "")
                    + f"; no fault of this run damages files (nemesis {params.get('nemesis')!r}): the store "
                    f"left them damaged itself (an unsynced or torn file it trusted after a crash, or a writer bug)",
                    [], None, {"node": node, "files": files[:MAX_LISTED], "held": held}))
    counts["store-damaged"] = log.count("store-damaged")
    # ... and each SSTable's recorded statistics against its own data (checkers/sstable_stats.py).
    counts.update(sstable_stats.judge(health, log))
    counts[sstable_stats.KIND] = log.count(sstable_stats.KIND)
    # Each key's replicas against an oracle computed apart from node/ring.py (checkers/placement.py).
    placed_keys: set[Any] = set()
    for label, h in headers.items():
        found, pcounts = placement.check_pass(h, (r for rs in by_pass.get(label, {}).values() for r in rs))
        for k, v in pcounts.items():
            counts[k] = max(counts.get(k, 0), v)
        for a in found:
            if _hashable(a.key) not in placed_keys:
                placed_keys.add(_hashable(a.key))
                log.add(a)
    counts[placement.KIND] = log.count(placement.KIND)
    # What nodes that are no replica of a key hold of it (checkers/misplaced.py).
    stray, mcounts = misplaced.check_pass(headers, records, ops, start=params.get("ring_at_start"))
    unjudged = mcounts.pop("misplaced_unjudged", None)
    counts.update(mcounts)
    for a in stray:
        log.add(a)
    counts[misplaced.KIND] = log.count(misplaced.KIND)
    counts["diverged-after-repair"] = log.count("diverged-after-repair")
    counts["replica-lost-write"] = log.count("replica-lost-write")
    counts["not-yet-converged"] = counts.get("before_stale", 0) + counts.get("before_missing", 0) + counts.get("before_extra", 0)
    counts["keys"] = len(set().union(*(set(v) for v in by_pass.values())) if by_pass else set())
    valid: Validity = True
    if log.counts:
        valid = False
    elif reasons:
        valid = "unknown"
    details: dict[str, Any] = {
        "disagreements": tables,
        "ranges": [{**v, "disagreeing": sorted(v["disagreeing"])} for v in ranges.values()],
        "passes": {k: {f: v for f, v in h.items() if f not in ("type", "workload")} for k, h in headers.items()},
    }
    if unjudged is not None:
        details["misplaced_unjudged"] = unjudged
    if expected_findings:
        details["expected_by_gc_grace"] = expected_findings
    if reasons:
        details["reason"] = "; ".join(dict.fromkeys(reasons))[:2000]
    return Result("convergence", valid, counts, log.examples, details)


def _judge_node_repair(header: dict[str, Any] | None, keys: dict[Any, list[dict[str, Any]]], model: str,
                       spec: dict[str, Any], log: AnomalyLog, counts: dict[str, int]) -> None:
    """The ``node-repair`` pass (harness --final-repair: right after the first node's repair, with
    every hint delivered and no client writing): a repair syncs every pair of replicas of each
    range the node replicates, so every key it is a replica of must be held alike by all of its
    replicas (a tombstone counting as nothing); the later repairs of the other nodes would
    otherwise hide a pair it never compared."""
    info = (header or {}).get("node_repair")
    judged = (isinstance(info, dict) and isinstance(info.get("node"), str) and not info.get("error")
              and not info.get("skipped_replicas") and info.get("hints_drained") is not False
              and not (header or {}).get("error") and model in ("set", "register"))
    counts["node_repair_judged"] = int(bool(judged))
    counts["node_repair_keys"] = 0
    if not judged:
        return
    node = info["node"]
    prefix = spec.get("element_prefix", "e")
    for key, recs in keys.items():
        if any("error" in r for r in recs) or node not in (recs[0].get("replicas") or []):
            continue
        counts["node_repair_keys"] += 1
        held: dict[str, Any] = {}
        for rec in recs:
            if model == "set":
                held[rec["node"]] = frozenset(_set_elements(rec["cells"], prefix))
            else:
                cell = _register_cell(rec, spec.get("column", "v"))
                held[rec["node"]] = None if cell is None or cell[2] else (cell[0], cell[1])
        if len(set(held.values())) <= 1:
            continue
        if model == "set":
            union = frozenset().union(*held.values())
            what = {n: sorted(union - v)[:MAX_LISTED] for n, v in held.items() if v != union}
            desc = "; ".join(f"{n} lacks {len(union - held[n])} element(s) others hold ({v})" for n, v in sorted(what.items()))
        else:
            desc = "; ".join(f"{n} holds {v!r}" for n, v in sorted(held.items(), key=lambda kv: kv[0]))
        log.add(Anomaly(
            "diverged-after-repair",
            f"key {key!r}: its replicas {sorted(held)} differ right after the anti-entropy repair of {node}, one of "
            f"them, which reported every replica synced, with every hint delivered and no client writing: {desc}",
            [], key, {"node": node, "pass": "node-repair", "range": list(recs[0].get("range") or [])}))


def _gc_purged(rec: dict[str, Any], e: _Expected, faults: _Faults, grace: gcgrace.Grace, label: str,
               repaired: bool) -> str | None:
    """Why a replica holding nothing for a key lost nothing: the newest write it owes is a delete
    and gc_grace had passed by the snapshot, so a compaction may have purged the tombstone."""
    at = grace.pass_times.get(label)
    if at is None or grace.grace_ns is None:
        return None
    owed = [a for a in e.acked if not faults.replica_damaged(rec["node"], a[1])]
    d = gcgrace.newest_owed_delete(owed, lambda _t: True)
    if d is None:
        if repaired and e.final_all_ts is not None:
            return None  # the final read at ALL returned a value, which read repair wrote back
        # A delete that may have happened (it timed out) invoked after the newest owed write
        # may have shadowed it and been purged in turn.
        newest_inv = max(owed, key=lambda a: a[0])[1] if owed else -1
        unsure = [(t, c) for t, c in e.unsure_deletes if t >= newest_inv and grace.passed(t, at)]
        if not unsure:
            return None
        t, c = unsure[0]
        return grace.purge_reason(rec["node"], c, t, at, unsure=True)
    if repaired and e.final_all_ts is not None and e.final_all_ts > d[0]:
        return None  # read repair promised something newer than the delete
    return grace.purge_reason(rec["node"], d[2], d[1], at) if grace.passed(d[1], at) else None


def _gc_resurrection(e: _Expected, before: list[dict[str, Any]] | None, faults: _Faults, grace: gcgrace.Grace,
                     column: str) -> str | None:
    """Why the final read at ALL may return a value older than an acknowledged delete: at least
    gc_grace after it, no replica still held the tombstone, one had purged it and every other
    lacked it for a recorded reason (Cassandra's resurrection when repair does not run within
    gc_grace). None if anything is unexplained."""
    if grace.grace_ns is None or e.final_all_ts is None or e.final_all is None or not before:
        return None
    dels = [a for a in e.acked if a[2].f == "delete" and a[0] > e.final_all_ts]
    if not dels:
        return None
    ts_d, inv_d, comp_d = max(dels, key=lambda a: a[0])
    if not grace.passed(inv_d, e.final_all_t):
        return None
    at = grace.pass_times.get("before")
    purged: list[str] = []
    others: list[str] = []
    for rec in before:
        if "error" in rec:
            return None
        node = rec["node"]
        cell = _register_cell(rec, column)
        if cell is not None and cell[1] >= ts_d:
            if not cell[2]:
                return None  # a newer value than the delete: the read should have returned it
            # It held the tombstone just before final reads that came after gc_grace: a
            # compaction in between may have purged it.
            purged.append(f"replica {node} still held the tombstone before the final reads, which came after gc_grace")
            continue
        if cell is None and at is not None and grace.passed(inv_d, at):
            purged.append(grace.purge_reason(node, comp_d, inv_d, at))
            continue
        why = faults.excuses(inv_d, comp_d, node)
        if why is None:
            return None
        others.append(f"replica {node} lacked it ({why})")
    if not purged:
        return None
    return ("; ".join([*purged, *others]) + f"; so the final read at ALL, {(e.final_all_t - inv_d) / 1e9:.1f} s after the "
            f"delete, brought back the older value: a tombstone purged after gc_grace_seconds on some replicas while "
            f"others never got it or lost it resurrects the data (why repair must run within gc_grace)")


def _unexplained_losses(rec: dict[str, Any], e: _Expected, model: str, spec: dict[str, Any],
                        faults: _Faults) -> list[tuple[Any, Op]]:
    """The acknowledged writes a replica lacks that neither a hint nor a fault explains."""
    out: list[tuple[Any, Op]] = []
    if model == "set":
        have = _set_elements(rec["cells"], spec.get("element_prefix", "e"))
        for element, inv_t, comp in e.acked:
            if element not in have and faults.excuses(inv_t, comp, rec["node"]) is None:
                out.append((element, comp))
        return out
    cell = _register_cell(rec, spec.get("column", "v"))
    held_ts = cell[1] if cell is not None else -1
    for ts, inv_t, comp in sorted(e.acked, key=lambda a: -a[0]):
        if ts <= held_ts:
            break
        if faults.excuses(inv_t, comp, rec["node"]) is None:
            what = comp.value[1] if comp.f == "incr" and isinstance(comp.value, list) else comp.value
            out.append(("a delete" if comp.f == "delete" else what, comp))
            break  # the newest unexcused write is the one that matters for a register
    return out


def _expected_json(e: _Expected, model: str, with_final: bool) -> dict[str, Any]:
    if model == "set":
        out: dict[str, Any] = {"acknowledged_elements": len(e.acked_elements)}
        if with_final and isinstance(e.final_all, list):
            out["final_all_elements"] = len(e.final_all)
        return out
    out = {"value": e.newest[1] if e.newest else None, "timestamp": e.newest[0] if e.newest else None}
    if with_final and e.final_all_ts is not None:
        out["final_all"] = {"value": _hashable(e.final_all), "timestamp": e.final_all_ts}
    return out


def _row_live_cells(rec: dict[str, Any]) -> frozenset[tuple[Any, Any, Any]]:
    """A row replica's visible cells as (column, value, timestamp): no cell tombstone, and none a
    row delete (the partition tombstone) at or after its timestamp shadows."""
    pt = rec.get("partition_tombstone")
    return frozenset((name, _hashable(value), ts) for name, value, ts, tombstone, _exp in rec.get("cells") or []
                     if not tombstone and (pt is None or ts > pt))


def _describe(row: dict[str, Any], expected: dict[str, Any], model: str) -> str:
    if model == "row":
        return (f"holds {row.get('cells')} live cell(s)"
                + (f" under a row delete at {row['row_tombstone']}" if row.get("row_tombstone") is not None else "")
                + ", unlike the other replicas")
    if model == "set":
        parts = []
        if row.get("missing_count"):
            parts.append(f"lacks {row['missing_count']} element(s) (e.g. {row['missing'][:5]})")
        if row.get("extra_count"):
            parts.append(f"holds {row['extra_count']} element(s) never added (e.g. {row['extra'][:5]})")
        return "; ".join(parts) or f"holds {row.get('elements')} elements, unlike the other replicas"
    return (f"holds {row.get('value')!r} at timestamp {row.get('timestamp')}, expected at least "
            f"{expected.get('value')!r} at timestamp {expected.get('timestamp')}"
            + (f" (the final ALL read returned {expected['final_all']['value']!r} at {expected['final_all']['timestamp']})"
               if expected.get("final_all") else ""))
