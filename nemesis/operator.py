"""Operator nemeses: what an operator does to a live cluster, through the real ``ringctl``.

* ``admin``: nodetool-style commands on a random node while clients run and other faults hit
  the cluster. Start: ``ringctl snapshot`` (hard links of every SSTable while flushes and
  compactions go on) and a few inspection commands drawn from :data:`INSPECT` (``status``,
  ``ring``, ``gossipinfo``, ``netstats``, ``getendpoints``, ...); the history records what each
  said (the operator's view of the fault: ``status`` seen from a partitioned node names the
  nodes it thinks down); meanwhile a scratch table beside the test table is created, written
  (TTLs, column and row deletes), flushed, read back by columns and with a limit, compacted and
  dropped (nemesis/housekeeping.py). Stop: ``ringctl cleanup`` of the test keyspace, a subrange
  ``ringctl repair --range`` of one of the node's ranges, then ``ringctl listsnapshots`` and
  ``ringctl clearsnapshot -t`` of the snapshot the start took.
* ``move``: ``ringctl move`` one node's token to the middle of the widest range another node
  owns (what the paper's load balancing does, by hand), streaming the data the new placement
  gains (start); then ``ringctl cleanup`` on every node, dropping data of ranges it no longer
  replicates (stop), as an operator runs after a move or a join.

Each ``ringctl`` runs as its own process (``python -m node.ringctl``) against the node's client
port, so the campaign exercises the tool users run. Under ``harness run --coverage`` it runs under
coverage.py with the node processes' config, and its data joins theirs (``coverage/raw/``).
A command that fails (exit 1: the node answered an error such as Unavailable; 3: it could not be
reached, a killed node) is recorded with its exit code and message: a fault it met, not a
failed injection.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from nemesis.faults import DB, Event
from nemesis.housekeeping import ScratchTable, snapshot_tags

log = logging.getLogger("nemesis.operator")

OPERATOR_NEMESES = ("admin", "move")
# ringctl's own timeout for one request (its --timeout), below the process's: a move or a
# cleanup streams or rewrites a node's share of a campaign's data (KBs), seconds at most.
RINGCTL_REQUEST_TIMEOUT = 60.0
# The whole process, start-up (a second or two under coverage on a loaded box) included.
RINGCTL_PROCESS_TIMEOUT = 90.0
# Inspection commands an admin step draws from (ringctl subcommands; KS and KEY are filled in).
INSPECT: tuple[tuple[str, ...], ...] = (
    ("status",), ("status", "--keyspace", "KS"), ("ring",), ("gossipinfo",), ("netstats",), ("describe",),
    ("getendpoints", "KS", "KEY"), ("clock", "get"), ("faults",), ("route",),
    # An operator's spot check of a key (not a history operation: no checker judges it).
    ("get", "KS", "TABLE", "KEY", "-c", "QUORUM"),
)
# How many inspection commands each admin step runs: a few, so a step takes seconds, and every
# command comes round within a campaign of several admin windows.
INSPECT_PER_STEP = 3
# The longest output line kept in the history per command.
OUTPUT_CHARS = 200


@dataclass
class RingctlResult:
    """One ringctl process: its subcommand, exit code, output and time."""

    node: str
    args: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> Any:
        """The JSON ringctl printed (move, cleanup, repair print it), or None."""
        try:
            return json.loads(self.stdout)
        except ValueError:
            return None

    def to_json(self) -> dict[str, Any]:
        """For the history: the command, its exit code, what it said (shortened)."""
        out: dict[str, Any] = {"node": self.node, "command": "ringctl " + " ".join(self.args), "exit": self.code,
                               "seconds": round(self.seconds, 2)}
        if self.code == 0:
            out["said"] = summarize_output(self.args, self.stdout)
        else:
            out["error"] = (self.stderr.strip().splitlines() or ["(no message)"])[-1][:OUTPUT_CHARS]
        return out


def summarize_output(args: Sequence[str], stdout: str) -> str:
    """One line saying what a successful ringctl command printed."""
    cmd = args[0] if args else ""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if cmd == "status":
        # nodetool status rows start with the state letters: UN, DN, UL, UJ...
        states: dict[str, int] = {}
        for ln in lines:
            tag = ln.split(" ", 1)[0]
            if len(tag) == 2 and tag[0] in "UD" and tag[1] in "NLJ?":
                states[tag] = states.get(tag, 0) + 1
        return " ".join(f"{k} {v}" for k, v in sorted(states.items())) or "(no nodes)"
    if cmd == "ring":
        return f"{max(0, len(lines) - 1)} tokens"
    if cmd == "listsnapshots":
        return f"{len(snapshot_tags(stdout))} snapshots"
    if cmd == "snapshot":
        # "snapshot TAG at PATH": the path is in the step's value; the tag says enough here.
        return lines[0].split(" at ", 1)[0] if lines else ""
    if cmd == "faults":
        try:
            return f"{sum(1 for v in json.loads(stdout).values() if v)} fault switches on"
        except (ValueError, AttributeError):
            pass
    if cmd == "cleanup":
        try:
            return f"{sum(json.loads(stdout)['dropped'].values())} partitions dropped"
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    if cmd in ("move", "repair"):
        try:
            got = json.loads(stdout)
            return f"{got.get('streamed_bytes', got.get('bytes', 0)) or 0:,} B streamed in {got.get('seconds', '?')} s"
        except (ValueError, AttributeError):
            pass
    if cmd == "gossipinfo":
        try:
            return f"{len(json.loads(stdout))} endpoints"
        except ValueError:
            pass
    return (lines[0] if lines else "")[:OUTPUT_CHARS]


class Ringctl:
    """Runs ``ringctl`` processes against the campaign's nodes."""

    def __init__(self, address: Callable[[str], tuple[str, int]], secret: str, coverage_rc: Path | None = None) -> None:
        self.address = address
        self.secret = secret
        self.coverage_rc = coverage_rc

    def argv(self, node_id: str, args: Sequence[str]) -> list[str]:
        """The command line (the secret goes in the environment, never in argv)."""
        host, port = self.address(node_id)
        target = ["--host", host, "--port", str(port), "--timeout", f"{RINGCTL_REQUEST_TIMEOUT:g}", *args]
        if self.coverage_rc is not None:
            return [sys.executable, "-m", "coverage", "run", "--rcfile", str(self.coverage_rc), "-m", "node.ringctl", *target]
        return [sys.executable, "-m", "node.ringctl", *target]

    async def run(self, node_id: str, *args: str) -> RingctlResult:
        """Run one ringctl command against ``node_id`` and wait for it."""
        started = time.monotonic()
        env = {**os.environ, "RINGLAB_SECRET": self.secret}
        with trio.fail_after(RINGCTL_PROCESS_TIMEOUT):
            proc = await trio.run_process(self.argv(node_id, args), capture_stdout=True, capture_stderr=True,
                                          check=False, env=env)
        result = RingctlResult(node_id, list(args), proc.returncode, proc.stdout.decode(errors="replace"),
                               proc.stderr.decode(errors="replace"), time.monotonic() - started)
        log.info("ringctl %s on %s: exit %d", " ".join(args), node_id, result.code)
        return result


@dataclass
class Target:
    """What the operator nemeses act on: the test keyspace and table, and how many keys it has."""

    keyspace: str
    table: str
    key_count: int


def _fill(cmd: Sequence[str], target: Target, rng: random.Random) -> list[str]:
    key = str(rng.randrange(max(1, target.key_count)))
    fill = {"KS": target.keyspace, "TABLE": target.table, "KEY": key}
    return [fill.get(a, a) for a in cmd]


def _brief(results: list[RingctlResult]) -> str:
    return ", ".join(f"{r.args[0]} " + (summarize_output(r.args, r.stdout) if r.code == 0 else f"exit {r.code}")
                     for r in results)


class AdminNemesis:
    """Snapshots and nodetool-style inspection (start), cleanup and a subrange repair (stop)."""

    name = "admin"

    def __init__(self, db: DB, ringctl: Ringctl, target: Target) -> None:
        self.db, self.ringctl, self.target = db, ringctl, target
        self.node: str | None = None
        self.rng = random.Random(0)
        self.snapshots = 0
        self.tag: str | None = None  # the snapshot this step's start took, cleared at its stop

    async def start(self, rng: random.Random) -> Event:
        """On a random node: a snapshot, then INSPECT_PER_STEP inspection commands."""
        self.rng = rng
        nid = self.node = rng.choice(self.db.node_ids())
        self.snapshots += 1
        tag = f"campaign-{self.snapshots}-{int(time.time())}"
        results = [await self.ringctl.run(nid, "snapshot", "--tag", tag)]
        cmds = [_fill(cmd, self.target, rng) for cmd in rng.sample(INSPECT, INSPECT_PER_STEP)]
        inspected: list[RingctlResult | None] = [None] * len(cmds)

        async def one(i: int) -> None:
            inspected[i] = await self.ringctl.run(nid, *cmds[i])

        scratch: dict[str, Any] = {}

        async def migrate() -> None:
            table = ScratchTable(self.db, self.ringctl.address, self.ringctl.secret, self.target.keyspace,
                                 f"scratch_{self.snapshots}")
            scratch.update(await table.run(nid))

        # At once, as a monitoring script polls a node: the step takes one ringctl start-up, not
        # three; meanwhile a scratch table lives and dies beside the live data (nemesis/housekeeping.py).
        async with trio.open_nursery() as nursery:
            for i in range(len(cmds)):
                nursery.start_soon(one, i)
            nursery.start_soon(migrate)
        results += [r for r in inspected if r is not None]
        snap = results[0]
        files = _snapshot_files(snap) if snap.code == 0 else None
        # Some command ran: the operator's work took place (a killed node refusing one is a fault
        # it met). None did: nothing happened, a failed injection.
        failed = {} if any(r.code == 0 for r in results) else {"error": "every ringctl command failed: "
                                                                        + results[-1].to_json()["error"]}
        self.tag = tag if snap.code == 0 else None
        return Event("admin", {"node": nid, "snapshot": {"tag": tag, "exit": snap.code, "files": files}, **failed,
                               "commands": [r.to_json() for r in results], "scratch": scratch,
                               "summary": f"ringctl {nid}: " + _brief(results)
                                          + (f" ({files} files)" if files is not None else "")
                                          + f"; {scratch.get('summary', 'no scratch table')}"})

    async def stop(self) -> Event:
        """On the same node: cleanup of the test keyspace, then repair of one of its ranges."""
        nid, self.node = self.node or self.rng.choice(self.db.node_ids()), None
        results = [await self.ringctl.run(nid, "cleanup", self.target.keyspace)]
        rng_arg = await self._one_range(nid)
        # --range=L:R in one argument: a token is often negative, and argparse reads "-123:456"
        # after --range as an option of its own (ringctl exits 2).
        repair = ["repair", self.target.keyspace] + ([f"--range={rng_arg}"] if rng_arg else [])
        results.append(await self.ringctl.run(nid, *repair))
        # The maintenance is done: the snapshot taken before it is listed, then cleared (it holds
        # the disk of every SSTable a compaction has replaced since).
        tag, self.tag = self.tag, None
        listed = await self.ringctl.run(nid, "listsnapshots")
        results.append(listed)
        snapshots: dict[str, Any] = {"listed": snapshot_tags(listed.stdout) if listed.code == 0 else None}
        if tag is not None:
            cleared = await self.ringctl.run(nid, "clearsnapshot", "-t", tag)
            results.append(cleared)
            snapshots.update(tag=tag, cleared=cleared.code == 0)
        cleaned = results[0].json() if results[0].code == 0 else None
        repaired = results[1].json() if results[1].code == 0 else None
        dropped = sum((cleaned or {}).get("dropped", {}).values()) if isinstance(cleaned, dict) else None
        streamed = (repaired or {}).get("streamed_bytes") if isinstance(repaired, dict) else None
        summary = (f"ringctl {nid}: cleanup " + (f"{dropped} partitions dropped" if dropped is not None else f"exit {results[0].code}")
                   + ", repair " + (f"{rng_arg or 'all ranges'}: {streamed or 0:,} B streamed"
                                    if repaired is not None else f"exit {results[1].code}")
                   + (f", {len(snapshots['listed'])} snapshots listed" if snapshots["listed"] is not None
                      else f", listsnapshots exit {listed.code}")
                   + (f", snapshot {tag} {'cleared' if snapshots['cleared'] else 'not cleared'}" if tag else ""))
        return Event("admin-maintenance", {"node": nid, "commands": [r.to_json() for r in results],
                                           "range": rng_arg, "snapshots": snapshots, "summary": summary})

    async def _one_range(self, nid: str) -> str | None:
        """``left:right`` of one ring range ``nid`` owns (its primary range), None if unknown."""
        try:
            ring = await self.db.admin(nid, "ring")
        except Exception as exc:  # noqa: BLE001 - a full repair then
            log.info("ring of %s unavailable: %s", nid, exc)
            return None
        toks = ring["tokens"]
        mine = [i for i, (_, owner, _s) in enumerate(toks) if owner == nid]
        if not mine:
            return None
        i = self.rng.choice(mine)
        return f"{toks[i - 1][0]}:{toks[i][0]}"

    async def heal(self) -> None:
        """Nothing to undo: snapshots stay on disk, as nodetool's do."""
        self.node = None


def _snapshot_files(result: RingctlResult) -> int | None:
    """How many files the snapshot holds, when the path it printed is on this machine."""
    # ringctl prints "snapshot TAG at PATH".
    _, sep, path = result.stdout.strip().partition(" at ")
    if not sep:
        return None
    p = Path(path)
    if not p.is_dir():
        return None  # a remote host's path
    return sum(1 for f in p.rglob("*") if f.is_file())


def move_plan(ring: dict[str, Any], members: Sequence[str], rng: random.Random) -> tuple[str, str, str, list[str]] | None:
    """(mover, token given up, new token, the mover's new token list) from a ``ring`` admin answer:
    a member gives up a random token of its own for the midpoint of the widest range another member
    owns; None when no such move exists (one member, tokens that are not integers, ranges too
    narrow to split)."""
    from node.membership_ops import _midpoint
    from node.ring import make_partitioner

    part = make_partitioner(ring["partitioner"])
    toks = [(part.from_string(t), owner) for t, owner, _state in ring["tokens"]]
    candidates = sorted({o for _, o in toks if o in members})
    if len(candidates) < 2:
        return None
    mover = rng.choice(candidates)
    ranges = [(toks[i - 1][0], toks[i][0], toks[i][1]) for i in range(len(toks))]
    others = [r for r in ranges if r[2] != mover and r[2] in members]
    left, right, _ = max(others, key=lambda r: (part.range_fraction(r[0], r[1]), str(r[1])))
    mid = _midpoint(part, left, right)
    if mid is None or mid in (left, right):
        return None
    mine = [t for t, o in toks if o == mover]
    give = rng.choice(mine)
    new = sorted([t for t in mine if t != give] + [mid])
    return mover, part.to_string(give), part.to_string(mid), [part.to_string(t) for t in new]


class MoveNemesis:
    """Move one node's token into another node's widest range (start); cleanup everywhere (stop)."""

    name = "move"
    changes_ring = True

    def __init__(self, db: DB, ringctl: Ringctl, target: Target) -> None:
        self.db, self.ringctl, self.target = db, ringctl, target

    async def _members(self) -> tuple[list[str], dict[str, Any] | None]:
        """NORMAL members as a live node sees them, and that node's ring."""
        for via in self.db.node_ids():
            try:
                status = await self.db.admin(via, "status")
                ring = await self.db.admin(via, "ring")
            except Exception:  # noqa: BLE001 - that node may be down; ask another
                continue
            members = [n["node_id"] for n in status["nodes"]
                       if n["status"] == "NORMAL" and n["state"] == "U" and n["node_id"] in self.db.node_ids()]
            return members, ring
        return [], None

    async def start(self, rng: random.Random) -> Event:
        """``ringctl move`` on a random member; records what it streamed."""
        members, ring = await self._members()
        plan = move_plan(ring, members, rng) if ring else None
        if plan is None:
            return Event("move", {"action": "none", "members": members,
                                  "summary": "no move possible (fewer than two live members)"})
        mover, give, mid, new = plan
        r = await self.ringctl.run(mover, "move", *new)
        result = r.json() if r.code == 0 else None
        if isinstance(result, dict):
            summary = (f"move {mover}: token {give} → {mid} ({result.get('bytes', 0) or 0:,} B streamed, "
                       f"{result.get('seconds', '?')} s)")
        else:
            summary = f"move {mover}: exit {r.code}"
        # A move refused or cut off left the node on its old tokens: nothing took effect.
        failed = {} if r.code == 0 else {"error": f"ringctl move exit {r.code}: {r.to_json()['error']}"}
        # Even a move cut off part way may have streamed, and its pending range taken writes.
        return Event("move", {"node": mover, "gave": give, "took": mid, "tokens": new, "command": r.to_json(),
                              "result": result, **failed, "summary": summary}, ring_change=True)

    async def stop(self) -> Event:
        """``ringctl cleanup`` of the test keyspace on every node."""
        results: list[RingctlResult] = []

        async def one(nid: str) -> None:
            results.append(await self.ringctl.run(nid, "cleanup", self.target.keyspace))

        # On every node at once, as an operator's parallel ssh does: each drops only its own data.
        async with trio.open_nursery() as nursery:
            for nid in self.db.node_ids():
                nursery.start_soon(one, nid)
        results.sort(key=lambda r: r.node)
        dropped = {r.node: sum((r.json() or {}).get("dropped", {}).values()) for r in results
                   if r.code == 0 and isinstance(r.json(), dict)}
        failed = [r.node for r in results if r.code != 0]
        summary = f"cleanup {' '.join(sorted(dropped))}: {sum(dropped.values())} partitions dropped" + (
            f"; failed on {' '.join(failed)}" if failed else "")
        return Event("cleanup", {"dropped": dropped, "commands": [r.to_json() for r in results], "summary": summary})

    async def heal(self) -> None:
        """Nothing to undo: a move either completes or withdraws its announcement."""


def build_operator_nemesis(name: str, db: DB, ringctl: Ringctl | None, target: Target | None) -> Any:
    """The operator nemesis called ``name`` (ValueError when the campaign cannot run ringctl)."""
    if ringctl is None or target is None:
        raise ValueError(f"the {name} nemesis reaches the nodes' client ports over TCP: not in harness sim")
    if name == "clients":
        from nemesis.clients import ClientsNemesis

        return ClientsNemesis(db, ringctl.address, ringctl.secret, target.keyspace, target.table)
    if name == "admin":
        return AdminNemesis(db, ringctl, target)
    if name == "move":
        return MoveNemesis(db, ringctl, target)
    raise ValueError(f"unknown operator nemesis {name!r}")
