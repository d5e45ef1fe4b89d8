"""The ZooKeeper leader's assignment log, checked: one leader per epoch, no token held twice.

Input: the records of ``<root>/assignments`` in sequence order (``ringctl leader --log``, or
``zk-assignments.json`` in a run directory), each ``{"seq", "kind": register | assign |
release, "node", "tokens", "epoch", "by"}``. Pure: the harness collects the log, this judges it.

* ``two-leaders-one-epoch``: assignments made in the same epoch by two different nodes.
  Epochs are election znode sequence numbers, one per leadership term, so this means two
  nodes acted as leader under one term.
* ``stale-leader``: an assignment whose epoch is older than one already acted on: a leader that
  lost its term still made an assignment stick (fencing failed).
* ``token-held-twice``: at some point of the log two nodes hold the same token.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkers.result import Anomaly, AnomalyLog, Result


def check_assignments(log: Iterable[dict[str, Any]]) -> Result:
    """Judge the assignment log (see the module docstring for the anomaly kinds)."""
    found = AnomalyLog()
    holders: dict[str, str] = {}  # token → node holding it
    held: dict[str, list[str]] = {}  # node → its tokens
    epoch_leader: dict[int, str] = {}
    newest: int | None = None
    counts = {"records": 0, "assignments": 0, "registrations": 0, "releases": 0}
    for rec in sorted(log, key=lambda r: r.get("seq", 0)):
        counts["records"] += 1
        kind, node, epoch, by = rec.get("kind"), rec.get("node"), rec.get("epoch"), rec.get("by")
        if kind == "release":
            counts["releases"] += 1
            for t in held.pop(node, []):
                holders.pop(t, None)
            continue
        counts["assignments" if kind == "assign" else "registrations"] += 1
        if kind == "assign" and isinstance(epoch, int):
            other = epoch_leader.setdefault(epoch, by)
            if other != by:
                found.add(Anomaly("two-leaders-one-epoch",
                                  f"epoch {epoch}: {other} and {by} both assigned tokens as leader",
                                  key=node, details={"epoch": epoch, "leaders": [other, by], "seq": rec.get("seq")}))
            if newest is not None and epoch < newest:
                found.add(Anomaly("stale-leader",
                                  f"{by} assigned {node}'s tokens in epoch {epoch} after epoch {newest} had acted",
                                  key=node, details={"epoch": epoch, "newest": newest, "seq": rec.get("seq")}))
            newest = epoch if newest is None else max(newest, epoch)
        for t in held.pop(node, []):
            holders.pop(t, None)
        mine = [str(t) for t in rec.get("tokens") or []]
        for t in mine:
            owner = holders.get(t)
            if owner is not None and owner != node:
                found.add(Anomaly("token-held-twice", f"token {t} assigned to {node} while {owner} holds it",
                                  key=t, details={"token": t, "nodes": [owner, node], "seq": rec.get("seq")}))
            holders[t] = node
        held[node] = mine
    counts["leaders"] = len(set(epoch_leader.values()))
    counts.update(found.counts)
    return Result("assignments", not found.counts, counts, found.examples,
                  {"epochs": sorted(epoch_leader), "nodes": sorted(held)})
