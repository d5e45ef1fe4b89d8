"""Run the checkers a test calls for and compose their verdicts into ``results.json``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checkers import (acks, campaign, cells, convergence, counter, durability, gossip, isolation, linearizable, liveness, lww,
                      lww_order, movement, nemesis_checks, perf, provenance, quorum, restart, sets, ttl)
from checkers.result import Result, Validity, merge_validity
from harness.history import HistoryFile, Op

CHECKERS: dict[str, Callable[[Iterable[Op], dict[str, Any]], Result]] = {
    "linearizable": linearizable.check,
    "lww": lww.check,
    "quorum": quorum.check,
    "set": sets.check,
    "counter": counter.check,
    "perf": perf.check,
    "campaign": campaign.check,
    "isolation": isolation.check,
    "convergence": convergence.check,
    "liveness": liveness.check,
    "gossip": gossip.check,
    "movement": movement.check,
    "lww-order": lww_order.check,
    "nemesis-checks": nemesis_checks.check,
    "acks": acks.check,
    "ttl": ttl.check,
    "restart": restart.check,
    "cell-provenance": provenance.check,
}
"""Every checker by name; each is a pure function of (history, params)."""

CELL_CHECKERS = frozenset({"linearizable", "lww", "quorum"})
"""Register checkers that judge row and batch histories through their per-cell projection."""

EXIT_CODES = {True: 0, False: 1, "unknown": 2}
"""Jepsen's exit codes for a verdict."""

# A history file up to this size is read once and its operations shared by every checker (a sim
# seed's check read its 17k lines six times over, about a twentieth of the seed); a larger one is
# re-read (streamed) by each checker so that memory stays bounded.
SHARED_READ_BYTES = 16 << 20


@dataclass(slots=True)
class ComposedResult:
    """The verdict of every checker and the overall one (Jepsen's merge)."""

    valid: Validity
    results: dict[str, Result] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    elapsed_s: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict: overall validity, then each checker's result."""
        return {
            "valid": self.valid,
            "checkers": {name: r.to_json() for name, r in self.results.items()},
            "summary": {name: r.valid for name, r in self.results.items()},
            "params": self.params,
            "elapsed_s": self.elapsed_s,
        }

    def exit_code(self) -> int:
        """0 valid, 1 invalid, 2 unknown."""
        return EXIT_CODES[self.valid]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``results.json`` atomically (a reader never sees half a file)."""
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, p)


def default_checkers(params: dict[str, Any]) -> list[str]:
    """The checkers that fit the model: register/kv get LWW (and quorum with a replication
    factor), set gets set-full; every model gets linearizability and perf; a campaign's history
    (its test names the nemeses, or it was interrupted) also gets the campaign checker. Row and
    batch histories get the register checkers per cell (per row for batches); batches also
    isolation. The admin and disk nemeses' own checks get nemesis-checks."""
    names = _model_checkers(params)
    if params.get("nemeses") is not None or params.get("interrupted"):
        names.append("campaign")
    if {"admin", "disk"} & set(params.get("nemeses") or []):
        names.append("nemesis-checks")  # what those nemeses verified themselves
    return names


def _model_checkers(params: dict[str, Any]) -> list[str]:
    model = params.get("model") or "register"
    # A run directory with per-replica snapshots (harness/convergence.py) gets the convergence check.
    inside = ["convergence"] if params.get("replica_snapshots") else []
    # A run directory with failure-detector samples (harness/liveness_probe.py) gets the liveness check.
    inside += ["liveness"] if params.get("liveness_samples") else []
    # ... and, when it recorded every node's gossip states too, the gossip check.
    inside += ["gossip"] if params.get("gossip_samples") else []
    # Replica reads the moment a ring changed during a membership step (harness/movement_probe.py).
    inside += ["movement"] if params.get("movement_snapshots") else []
    # Every node's rows read again after every node was killed and restarted (harness/restart_pass.py).
    inside += ["restart"] if params.get("restart_snapshots") else []
    # A harness run records which replicas acknowledged each write (harness/client.py).
    inside += ["acks"] if params.get("write_acks") else []
    # Each replica cell of a unique-value write keeps that write's timestamp and TTL (checkers/provenance.py).
    if (params.get("model") or "register") == "ttl" and params.get("ttl_snapshots") \
            or (params.get("model") or "register") == "register" and params.get("replica_snapshots"):
        inside += ["cell-provenance"]
    if model == "counter":
        # Read-modify-write increments: no single-op model to linearize; count lost updates.
        return ["counter", *inside, "perf"]
    if model == "ttl":
        # Writes that expire: values vanish without a write, so no register model holds; each
        # value's expiry instant is known (checkers/ttl.py).
        return ["ttl", *inside, "perf"]
    if model == "register" and params.get("client_timestamps"):
        # The client chose each write's timestamp: real time is not the LWW order, so
        # linearizability and the timestamp-order checks are not promised; the known order is.
        return ["lww-order", *inside, "perf"]
    names = ["isolation", "linearizable"] if model == "batch" else ["linearizable"]
    if model == "set":
        names.append("set")
    else:
        names.append("lww")
        if params.get("replication_factor"):
            names.append("quorum")
    names.extend(inside)
    names.append("perf")
    return names


def check_all(history: str | os.PathLike[str] | Iterable[Op], params: dict[str, Any] | None = None,
              save_to: str | os.PathLike[str] | None = None) -> ComposedResult:
    """Run every applicable checker (``params['checkers']`` overrides) and merge the verdicts.

    A path to a file of more than SHARED_READ_BYTES is re-read (streaming) by each checker so
    memory stays bounded; a smaller one, and an iterable that is not a list, is materialised once.
    """
    params = dict(params or {})
    names = params.get("checkers") or default_checkers(params)
    for n in names:
        if n not in CHECKERS:
            raise ValueError(f"unknown checker {n!r}; expected one of {', '.join(CHECKERS)}")
    if isinstance(history, (str, os.PathLike)) and _shared_read(history):
        history = list(HistoryFile(history))
    if isinstance(history, (str, os.PathLike)):
        path = history

        def source() -> Iterable[Op]:
            # Re-read per checker; lww, quorum, set and perf read its line records, not Ops.
            return HistoryFile(path)
    else:
        ops = history if isinstance(history, list) else list(history)

        def source() -> Iterable[Op]:
            return ops

    results: dict[str, Result] = {}
    elapsed: dict[str, float] = {}
    project = cells.PROJECTIONS.get(params.get("model") or "register")
    projected: tuple[list[Op], dict[int, Op]] | None = None

    def run(n: str, params: dict[str, Any]) -> Result:
        nonlocal projected
        if project is not None and n in CELL_CHECKERS:
            # Rows and batches: every cell (or row) is a register; judge the projection, and
            # name the original operations in what is found.
            if projected is None:
                projected = project(source())
            return cells.restore(CHECKERS[n](projected[0], {**params, "model": "register"}), projected[1])
        return CHECKERS[n](source(), params)

    for n in names:
        t0 = time.monotonic()
        results[n] = run(n, params)
        elapsed[n] = round(time.monotonic() - t0, 6)
    # What periodic commit log mode allows a crash to cost is not an anomaly (checkers/durability.py).
    # Linearizability is re-checked on the history without the exposed keys: rows and batches
    # through the same projection as above (without it a periodic crash made every row campaign
    # invalid on linearizability while quorum and lww allowed the same loss).
    recheck: Callable[[Iterable[Op], dict[str, Any]], Result] | None = None
    if "linearizable" in names:
        recheck = CHECKERS["linearizable"] if project is None else _projected_recheck(project)
    results = durability.reclassify(results, source, params, recheck, run)
    composed = ComposedResult(merge_validity([r.valid for r in results.values()]), results,
                              {k: v for k, v in params.items() if _jsonable(v)}, elapsed)
    if save_to is not None:
        composed.save(save_to)
    return composed


def _shared_read(path: str | os.PathLike[str]) -> bool:
    """Whether the history at ``path`` is small enough to read once for every checker."""
    try:
        return os.path.getsize(path) <= SHARED_READ_BYTES
    except OSError:
        return False  # missing or unreadable: each checker's read names what is wrong


def _projected_recheck(project: Callable[[Iterable[Op]], tuple[list[Op], dict[int, Op]]]
                       ) -> Callable[[Iterable[Op], dict[str, Any]], Result]:
    """Linearizability of a row or batch history, judged per cell as the first pass does."""

    def recheck(history: Iterable[Op], params: dict[str, Any]) -> Result:
        ops, originals = project(history)
        return cells.restore(CHECKERS["linearizable"](ops, {**params, "model": "register"}), originals)

    return recheck


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True
