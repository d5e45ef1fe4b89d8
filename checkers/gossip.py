"""Gossip state inside the cluster: does every node's view of every endpoint only move forward,
and do the views agree once the cluster is quiet?

The harness records each node's gossip state of every endpoint with its failure-detector view,
about once a second (``"gossip"`` records in ``liveness.jsonl``, written by
``harness/liveness_probe.py``): per endpoint its generation, heartbeat version and the version
of each application state (STATUS, TOKENS, LOAD, ...). Versions come from one counter per
incarnation of the endpoint, and a node applies a remote state only when it is newer, so:

* ``gossip-version-regressed``: within one incarnation of the observer (its own generation
  unchanged) and while it keeps the endpoint in its view, the pair (generation, version) of the
  endpoint's heartbeat or of any of its application states never decreases from one sample to
  the next. A decrease is a node that applied an older state over a newer one: its ring (or
  schema, addresses) went back in time, and since peers only send states newer than the
  receiver's highest version, it may never be corrected.
* ``gossip-views-diverged``: after the heal, once every view is UP, the harness samples until
  every answering node holds the same version of every endpoint's application states except
  the ones republished on a timer (LOAD), for up to 20 s, then takes a last round (``"final"``).
  Two answering nodes that still hold different generations or versions of one endpoint's
  state then disagree about it for good (gossip spreads a change to every node within a few
  rounds): a STATUS or TOKENS that differs is two different rings.

Pure: it reads the recorded samples only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkers.liveness import load_samples
from checkers.result import Anomaly, AnomalyLog, Result
from harness.history import Op

# Application states republished on a timer: two views may rightly differ on them at any instant
# (harness/liveness_probe.py waits for agreement on every other one).
VOLATILE_APP_STATES = frozenset({"LOAD"})
MAX_EXAMPLES = 20


def _pairs(entry: list[Any]) -> dict[str, tuple[int, int]]:
    """An endpoint's recorded state as {"heartbeat" or app key: (generation, version)}."""
    gen, beat, apps = (list(entry) + [None, None, None])[:3]
    if not isinstance(gen, int):
        return {}
    out = {"heartbeat": (gen, beat)} if isinstance(beat, int) else {}
    for k, v in (apps or {}).items():
        if isinstance(v, int):
            out[k] = (gen, v)
    return out


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Judge the recorded gossip states: no version goes backwards, the final views agree."""
    params = params or {}
    source = params.get("gossip_samples")
    if source is None:
        return Result("gossip", "unknown", {}, [], {"reason": "no gossip samples (liveness.jsonl) to check"})
    records = [r for r in load_samples(source) if r.get("type") == "gossip"]
    log = AnomalyLog(MAX_EXAMPLES)
    counts = {"samples": len(records), "compared": 0, "final_views": 0}
    # Per observer: its own generation when last sampled, and each endpoint's state then.
    last: dict[str, tuple[Any, dict[str, dict[str, tuple[int, int]]], int]] = {}
    flagged: set[tuple[str, str, str]] = set()
    for r in sorted(records, key=lambda r: (int(r.get("recv_ns") or 0))):
        obs = r.get("node")
        states = r.get("states") or {}
        own = (states.get(obs) or [None])[0]
        now = {ep: _pairs(entry) for ep, entry in states.items() if ep != obs and isinstance(entry, list)}
        prev = last.get(obs)
        last[obs] = (own, now, int(r.get("recv_ns") or 0))
        if prev is None or prev[0] != own:
            continue  # the observer's first sample, or a new incarnation of it: it learns anew
        for ep, pairs in now.items():
            before = prev[1].get(ep)
            if before is None:
                continue  # not in the last view (new, or evicted and learnt again)
            for key, was in before.items():
                is_ = pairs.get(key)
                if is_ is None:
                    continue
                counts["compared"] += 1
                if is_ < was and (obs, ep, key) not in flagged:
                    flagged.add((obs, ep, key))
                    log.add(Anomaly(
                        "gossip-version-regressed",
                        f"{obs}'s gossip state of {ep} went back: its {key} was at generation {was[0]} version "
                        f"{was[1]} at {prev[2] / 1e9:.1f} s and at generation {is_[0]} version {is_[1]} at "
                        f"{int(r.get('recv_ns') or 0) / 1e9:.1f} s: it applied an older state over a newer one "
                        f"(peers only send what is newer than a node's highest version, so it may never recover)",
                        [], None, {"node": obs, "endpoint": ep, "key": key, "was": list(was), "now": list(is_)}))
    final = [r for r in records if r.get("final")]
    counts["final_views"] = len(final)
    views = {r["node"]: r.get("states") or {} for r in final}
    endpoints = sorted({ep for v in views.values() for ep in v})
    for ep in endpoints:
        seen = {n: _pairs(v[ep]) for n, v in sorted(views.items()) if isinstance(v.get(ep), list)}
        if len(seen) < 2:
            continue
        keys = sorted({k for p in seen.values() for k in p} - VOLATILE_APP_STATES - {"heartbeat"})
        gens = {n: next(iter(p.values()))[0] for n, p in seen.items() if p}
        for k in (["generation"] if len(set(gens.values())) > 1 else keys):
            held = gens if k == "generation" else {n: p[k][1] for n, p in seen.items() if k in p}
            if len(set(held.values())) > 1 or (k != "generation" and len(held) < len(seen)):
                log.add(Anomaly(
                    "gossip-views-diverged",
                    f"the nodes still disagree about {ep}'s {k} after the heal and the settle: "
                    + ", ".join(f"{n} holds {'version ' if k != 'generation' else ''}{held.get(n, 'nothing')}"
                                for n in seen)
                    + ": gossip spreads a change to every node within a few rounds, so these views of the "
                    "cluster (its ring, if STATUS or TOKENS) differ for good",
                    [], None, {"endpoint": ep, "key": k, "held": {n: held.get(n) for n in seen}}))
    counts["gossip-version-regressed"] = log.count("gossip-version-regressed")
    counts["gossip-views-diverged"] = log.count("gossip-views-diverged")
    return Result("gossip", False if log.counts else True, counts, log.examples,
                  {} if final else {"note": "no final gossip round recorded (interrupted run?)"})
