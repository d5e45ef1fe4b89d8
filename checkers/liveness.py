"""Failure-detector views against the faults: is a node that cannot be heard from convicted, and
one that is back seen UP again, in bounded time?

The harness samples every node's view of its peers about once a second (``liveness.jsonl``,
written by ``harness/liveness_probe.py``). The faults come from the history's nemesis operations:
kills, crashes and pauses take a node away; a partition's grudge cuts links. Two properties any
phi-accrual failure detector fed by gossip must keep:

* ``never-convicted``: a peer that no heartbeat could reach an observer from (it was killed or
  paused, or no chain of working links joined the two) for longer than the detector's
  conviction bound must be DOWN in that observer's view. The bound follows from the detector's
  arithmetic: phi = silence / mean * log10(e) passes the threshold once the silence exceeds
  threshold / log10(e) mean intervals, and the mean is at most the longest interval the
  detector records (one gossip round); plus a round for the check, a few for the last
  heartbeats still relayed after the cut, and the sampling's own second.
* ``stale-down``: a peer that has been running, with no partition cutting any link, for longer
  than UP_BOUND_ROUNDS gossip rounds must be UP in its view (its new heartbeats reach the
  observer through any peer within a few rounds and one ECHO marks it UP). Under a partition
  a peer with a working direct link may still be convicted rightly: when the partition cuts
  every relay between the two, its heartbeats come only on the rounds gossip picks that link
  (seen on the default sim campaign's seed 1: a majorities ring left n3 hearing n4 only
  directly, and n3 convicted n4 for a second).

A third reads the detector's own account (each view's ``fd``, from ``status`` with
``failure_detector``): ``fd-outage-recorded``, a peer's arrival window holding an interval longer
than the detector may record (its max interval, or the one bootstrap interval every window starts
with, whichever is longer). Longer gaps are outages or pauses, not samples of the healthy
arrival rate (Cassandra's fd_max_interval); one recorded inflates the mean, so every later
conviction of that peer comes late, by how much depending on the window, which the bounds above
cannot see.

Both are judged conservatively: a fault counts as in force (for ``never-convicted``) only from
its injection's completion to its removal's invocation, and as possibly in force (for
``stale-down`` and for the observer's own health) from its invocation to its completion; an
observer that was itself killed or paused shortly before is not judged (it holds convictions
after a local pause), and nothing overlapping a fault this model does not know (membership,
clock, latency, disks, ...) is judged at all.
"""

from __future__ import annotations

import json
import math
import os
from bisect import bisect_right
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from checkers.result import Anomaly, AnomalyLog, Result
from harness.history import NEMESIS, Op

LIVENESS_FILE = "liveness.jsonl"
# Faults that take the whole process away (its heartbeats stop).
PROCESS_FAULTS = frozenset({"kill", "crash", "pause"})
# Faults that neither stop a process nor cut a link: judging across them is sound.
HARMLESS_FAULTS = frozenset({"flush-compact", "repair", "heal"})
# Defaults of node/config.py's GossipConfig and node/cluster/gossip.py, for samples without a header.
DEFAULT_INTERVAL_S = 1.0
DEFAULT_THRESHOLD = 8.0
DEFAULT_MAX_INTERVAL_ROUNDS = 1.0
# Rounds on top of the detector's arithmetic: one for the check that convicts (every round),
# four for heartbeats relayed after the cut (gossip spreads one to five nodes in about log2(5)
# rounds), one for a loaded host's late rounds.
CONVICTION_SLACK_ROUNDS = 6.0
# A returned peer's new heartbeats reach every node within a few rounds through any gossip
# partner, and the first one starts an ECHO that marks it UP; a restart adds its own start-up.
UP_BOUND_ROUNDS = 10.0
# After an observer's own kill or pause: Gossiper holds convictions for LOCAL_PAUSE_ROUNDS (5)
# after a local pause, and a restarted node learns its peers anew.
OBSERVER_HOLD_ROUNDS = 6.0
MAX_EXAMPLES = 20
# Slack on the detector's longest recordable interval: the status answer rounds to microseconds,
# and the interval a heartbeat closes is a difference of float clock readings.
FD_INTERVAL_TOLERANCE_S = 1e-3


def params_for_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Checker params naming the run's failure-detector samples, when it has any (and its gossip
    states, for checkers/gossip.py, when the header says they were recorded)."""
    path = Path(run_dir) / LIVENESS_FILE
    if not path.exists():
        return {}
    out = {"liveness_samples": str(path)}
    with path.open(encoding="utf-8") as fh:
        first = fh.readline()
    try:
        header = json.loads(first) if first.strip() else {}
    except ValueError:
        header = {}
    if isinstance(header, dict) and header.get("gossip"):
        out["gossip_samples"] = str(path)
    return out


def load_samples(source: str | os.PathLike[str] | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of a ``liveness.jsonl`` (a path), or the records themselves."""
    if isinstance(source, (str, os.PathLike)):
        with Path(source).open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    return list(source)


class Timeline:
    """Which nodes and links each fault took away, and when, from the history's nemesis operations.

    Every fault has two spans: ``sure`` (from its injection's completion to its removal's
    invocation: certainly in force) and ``maybe`` (from its injection's invocation to its
    removal's completion: possibly in force)."""

    def __init__(self, history: Iterable[Op]) -> None:
        self.absent: dict[str, list[tuple[int, int, int, int]]] = {}  # node: (maybe0, sure0, sure1, maybe1)
        self.cuts: list[tuple[int, int, int, int, dict[str, set[str]]]] = []  # grudge: node -> cannot hear
        self.unmodelled: list[tuple[int, int, str]] = []
        self.end = 0
        invoked: dict[str, int] = {}
        open_abs: dict[tuple[str, str], tuple[int, int]] = {}  # (kind, node) -> (maybe0, sure0)
        open_cut: tuple[int, int, dict[str, set[str]]] | None = None
        open_other: dict[str, int] = {}
        for op in history:
            self.end = max(self.end, op.time)
            if op.process != NEMESIS:
                continue
            if op.type == "invoke":
                invoked[op.f] = op.time
                continue
            t_inv = invoked.pop(op.f, op.time)
            kind = op.f.split("-", 1)[1] if op.f.startswith(("start-", "stop-")) else op.f
            v = op.value if isinstance(op.value, dict) else {}
            if op.f == "heal":
                for (k, n), (m0, s0) in open_abs.items():
                    self.absent.setdefault(n, []).append((m0, s0, op.time, op.time))
                open_abs.clear()
                if open_cut is not None:
                    self.cuts.append((open_cut[0], open_cut[1], op.time, op.time, open_cut[2]))
                    open_cut = None
                for k, t0 in open_other.items():
                    self.unmodelled.append((t0, op.time, k))
                open_other.clear()
                continue
            if kind in HARMLESS_FAULTS:
                continue
            if kind in PROCESS_FAULTS:
                nodes = [n for n in v.get("nodes") or [] if isinstance(n, str)]
                if op.f.startswith("start-"):
                    for n in nodes:
                        open_abs.setdefault((kind, n), (t_inv, op.time))
                elif op.f.startswith("stop-"):
                    ended = nodes or [n for k, n in open_abs if k == kind]
                    for n in ended:
                        if (kind, n) in open_abs:
                            m0, s0 = open_abs.pop((kind, n))
                            self.absent.setdefault(n, []).append((m0, s0, t_inv, op.time))
                continue
            if kind == "partition":
                if op.f == "start-partition" and isinstance(v.get("grudge"), dict):
                    grudge = {str(n): {str(p) for p in ps} for n, ps in v["grudge"].items()}
                    if open_cut is not None:  # a new grudge replaces the old one
                        self.cuts.append((open_cut[0], open_cut[1], t_inv, op.time, open_cut[2]))
                    open_cut = (t_inv, op.time, grudge)
                elif op.f == "stop-partition" and open_cut is not None:
                    self.cuts.append((open_cut[0], open_cut[1], t_inv, op.time, open_cut[2]))
                    open_cut = None
                continue
            # Anything else may stop processes or cut links in ways not modelled here.
            if op.f.startswith("start-"):
                open_other.setdefault(kind, t_inv)
            elif op.f.startswith("stop-"):
                self.unmodelled.append((open_other.pop(kind, t_inv), op.time, kind))
            else:
                self.unmodelled.append((t_inv, op.time, kind))
        end = self.end + 1
        for (k, n), (m0, s0) in open_abs.items():
            self.absent.setdefault(n, []).append((m0, s0, end, end))
        if open_cut is not None:
            self.cuts.append((open_cut[0], open_cut[1], end, end, open_cut[2]))
        for k, t0 in open_other.items():
            self.unmodelled.append((t0, end, k))
        points = {0}
        for spans in self.absent.values():
            for s in spans:
                points.update(s)
        for c in self.cuts:
            points.update(c[:4])
        self.points = sorted(points)

    def _segment(self, t: int) -> int:
        return max(0, bisect_right(self.points, t) - 1)

    def _absent(self, node: str, t: int, sure: bool) -> bool:
        for m0, s0, s1, m1 in self.absent.get(node, ()):
            if (s0 <= t < s1) if sure else (m0 <= t < m1):
                return True
        return False

    def _grudges(self, t: int, sure: bool) -> list[dict[str, set[str]]]:
        return [g for m0, s0, s1, m1, g in self.cuts if ((s0 <= t < s1) if sure else (m0 <= t < m1))]

    def unreachable(self, observer: str, peer: str, t: int, nodes: set[str]) -> bool:
        """Whether no heartbeat of ``peer`` can reach ``observer`` at ``t``, certainly: the peer is
        away, or no chain of links that carry anything in either direction joins them."""
        if self._absent(peer, t, sure=True):
            return True
        grudges = self._grudges(t, sure=True)
        present = {n for n in nodes if not self._absent(n, t, sure=True)}

        def linked(a: str, b: str) -> bool:
            # A link carries evidence if either direction works: a SYN that arrives is one.
            return not all(b in g.get(a, ()) and a in g.get(b, ()) for g in grudges) if grudges else True

        seen, todo = {peer}, [peer]
        while todo:
            a = todo.pop()
            for b in present - seen:
                if linked(a, b):
                    if b == observer:
                        return False
                    seen.add(b)
                    todo.append(b)
        return True

    def linked_everywhere(self, observer: str, peer: str, t: int) -> bool:
        """Whether both nodes certainly run and no partition possibly cuts any link at ``t``."""
        if self._absent(peer, t, sure=False) or self._absent(observer, t, sure=False):
            return False
        return not any(any(cut for cut in g.values()) for g in self._grudges(t, sure=False))

    def held_since(self, t: int, holds: Any) -> int | None:
        """The start of the run of segments up to ``t`` over which ``holds(segment_time)`` is true
        (None if it is false at ``t``). A segment's state is constant, so its start stands for it."""
        i = self._segment(t)
        if not holds(t):
            return None
        since = self.points[i]
        while i > 0 and holds(self.points[i - 1]):
            i -= 1
            since = self.points[i]
        return since

    def observer_away(self, node: str, t0: int, t1: int) -> bool:
        """Whether ``node`` was possibly killed or paused at any time in [t0, t1]."""
        return any(m0 <= t1 and m1 >= t0 for m0, _s0, _s1, m1 in self.absent.get(node, ()))

    def unmodelled_in(self, t0: int, t1: int) -> str | None:
        """A fault this model does not know that was in force during [t0, t1]."""
        return next((k for a, b, k in self.unmodelled if a <= t1 and b >= t0), None)


def bounds(header: dict[str, Any]) -> tuple[int, int, int]:
    """(conviction bound, UP bound, observer hold), in ns, from the gossip settings recorded."""
    interval = float(header.get("gossip_interval_s") or DEFAULT_INTERVAL_S)
    threshold = float(header.get("phi_convict_threshold") or DEFAULT_THRESHOLD)
    max_rounds = float(header.get("max_interval_rounds") or DEFAULT_MAX_INTERVAL_ROUNDS)
    convict_s = interval * (threshold * math.log(10.0) * max_rounds + CONVICTION_SLACK_ROUNDS)
    return int(convict_s * 1e9), int(interval * UP_BOUND_ROUNDS * 1e9), int(interval * OBSERVER_HOLD_ROUNDS * 1e9)


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Judge the sampled failure-detector views against the faults the history records."""
    params = params or {}
    source = params.get("liveness_samples")
    if source is None:
        return Result("liveness", "unknown", {}, [], {"reason": "no failure-detector samples (liveness.jsonl) to check"})
    records = load_samples(source)
    header = next((r for r in records if r.get("type") == "header"), {})
    convict_ns, up_ns, hold_ns = bounds(header)
    timeline = Timeline(history)
    views = [r for r in records if r.get("type") == "view"]
    nodes = {r["node"] for r in views} | {p for r in views for p in r.get("view", {})} | set(timeline.absent)
    log = AnomalyLog(MAX_EXAMPLES)
    counts = {"samples": len(views), "judged_down": 0, "judged_up": 0, "skipped_unmodelled": 0}
    flagged: set[tuple[str, str, str, int]] = set()  # one finding per pair and outage
    for r in views:
        obs, sent, recv = r["node"], int(r["sent_ns"]), int(r["recv_ns"])
        for peer, entry in sorted((r.get("view") or {}).items()):
            state, status = (entry + [None, None])[:2] if isinstance(entry, list) else (entry, "NORMAL")
            if status != "NORMAL" or peer == obs:
                continue
            # The view was taken somewhere between the request and the answer: a condition is
            # judged only if it held from its start through the answer, and long enough by the request.
            cut = timeline.held_since(recv, lambda t, p=peer: timeline.unreachable(obs, p, t, nodes))
            if cut is not None and sent - cut > convict_ns:
                if timeline.observer_away(obs, cut - hold_ns, recv):
                    continue
                if timeline.unmodelled_in(cut, recv):
                    counts["skipped_unmodelled"] += 1
                    continue
                counts["judged_down"] += 1
                if state != "D" and ("never-convicted", obs, peer, cut) not in flagged:
                    flagged.add(("never-convicted", obs, peer, cut))
                    log.add(Anomaly(
                        "never-convicted",
                        f"{obs} still saw {peer} UP at {sent / 1e9:.1f} s although no heartbeat of {peer} could reach "
                        f"it since {cut / 1e9:.1f} s ({(sent - cut) / 1e9:.1f} s, over the failure detector's "
                        f"conviction bound of {convict_ns / 1e9:.1f} s): its coordinator keeps sending to a dead "
                        f"replica and stores no hints for it",
                        [], None, {"node": obs, "peer": peer, "since_s": cut / 1e9, "at_s": sent / 1e9}))
                continue
            back = timeline.held_since(recv, lambda t, p=peer: timeline.linked_everywhere(obs, p, t))
            if back is None or sent - back <= up_ns:
                continue
            if timeline.unmodelled_in(back, recv):
                counts["skipped_unmodelled"] += 1
                continue
            counts["judged_up"] += 1
            if state == "D" and ("stale-down", obs, peer, back) not in flagged:
                flagged.add(("stale-down", obs, peer, back))
                log.add(Anomaly(
                    "stale-down",
                    f"{obs} still saw {peer} DOWN at {sent / 1e9:.1f} s although both ran with every link working since "
                    f"{back / 1e9:.1f} s ({(sent - back) / 1e9:.1f} s, over the {up_ns / 1e9:.0f} s a returned "
                    f"node's heartbeats take to mark it UP): its coordinator refuses or hints writes for a live replica",
                    [], None, {"node": obs, "peer": peer, "since_s": back / 1e9, "at_s": sent / 1e9}))
    counts["fd_judged"] = _judge_detector(views, log)
    counts["never-convicted"] = log.count("never-convicted")
    counts["stale-down"] = log.count("stale-down")
    counts["fd-outage-recorded"] = log.count("fd-outage-recorded")
    details = {"conviction_bound_s": convict_ns / 1e9, "up_bound_s": up_ns / 1e9}
    return Result("liveness", False if log.counts else True, counts, log.examples, details)


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _judge_detector(views: list[dict[str, Any]], log: AnomalyLog) -> int:
    """``fd-outage-recorded`` over the views' failure-detector accounts; returns how many
    (observer, peer) windows were judged. One finding per pair: a recorded outage stays in the
    window for as long as the window is."""
    judged = 0
    flagged: set[tuple[str, str]] = set()
    for r in views:
        fd = r.get("fd")
        if not isinstance(fd, dict) or not isinstance(fd.get("peers"), dict):
            continue
        limits = [v for v in (_number(fd.get("max_interval_s")), _number(fd.get("bootstrap_interval_s"))) if v is not None]
        if not limits:
            continue  # the node did not say what it may record
        limit = max(limits)
        obs = str(r.get("node"))
        for peer, entry in sorted(fd["peers"].items()):
            if not isinstance(entry, list) or len(entry) < 4:
                continue
            mean, longest, count = _number(entry[1]), _number(entry[2]), entry[3]
            if longest is None or mean is None:
                continue
            judged += 1
            worst = max(longest, mean)
            if worst <= limit + FD_INTERVAL_TOLERANCE_S or (obs, peer) in flagged:
                continue
            flagged.add((obs, peer))
            at = int(r.get("recv_ns") or 0) / 1e9
            log.add(Anomaly(
                "fd-outage-recorded",
                f"{obs}'s failure detector held an interval of {longest:.2f} s between {peer}'s heartbeats in its "
                f"arrival window at {at:.1f} s (mean {mean:.3f} s over {count} intervals), longer than the "
                f"{limit:g} s it may record: an outage counted as a sample inflates the mean, so the next "
                f"conviction of {peer} comes late",
                [], None, {"node": obs, "peer": peer, "at_s": at, "max_interval_s": longest,
                           "mean_interval_s": mean, "intervals": count, "limit_s": limit}))
    return judged
