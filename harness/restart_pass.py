"""Every node killed and restarted at the end of a run, and read again: what the after pass read
must come back from the node's own files.

After the convergence check's last pass (harness/convergence.py: every key read on every node,
replicas and non-replicas) nothing writes any more: hints are delivered, read repair has run.
Then every node is killed at once (SIGKILL; in the simulator, a process crash: what the node
wrote to its files survives, as the kernel's page cache keeps it) and started again, so each
one rebuilds its state from its commit log and SSTables (replay, the SSTables' indexes, bloom
filters and summaries read back from disk), and every key is read on every node once more with
the same ``localread``. The records go to ``restarts.jsonl``: a ``{"type": "restart", "nodes",
"killed_ns", "started_ns", "read_ns"}`` header (``skipped`` with the reason instead, when the
run's kills may lose unsynced writes), then one ``{"type": "row", "node", "key", "cells",
"partition_tombstone"}`` line per node and key held there (``{"type": "unstarted", "node",
"error"}`` for a node that did not start again, ``{"type": "unreadable", "node", "error"}`` for
one that started and did not answer its reads). checkers/restart.py compares them with the after
pass: a cell or tombstone a node held before the restart and not after is ``lost-on-restart``, a
node that does not come back is ``restart-failed``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from harness.convergence import SNAPSHOT_MODELS, _read_node, snapshot_keys

log = logging.getLogger("harness.restart")

RESTARTS_FILE = "restarts.jsonl"
# How long a restarted node has to answer its localreads (each try bounded by the reads' own
# timeout, harness/convergence.py's REQUEST_TIMEOUT).
START_TIMEOUT_S = 90.0
# Between attempts to read a node that is still starting.
RETRY_S = 0.2


# Nemeses that damage a node's files: a restart may rightly set aside a file whose damage only its
# opening notices (a checksum read at load), and with it what the node served from memory before.
DAMAGING_NEMESES = ("corrupt",)


def skip_reason(node_storage: dict[str, Any], deployment: Any, nemeses: Sequence[str] = ()) -> str | None:
    """Why the pass must not run in this campaign, or None: a kill that drops what a node wrote
    but did not fsync (the crash nemesis's volatile files, the simulator's power-loss crashes)
    may rightly lose a periodic-mode write however long ago it was acknowledged, and files the
    corrupt nemesis damaged may rightly be set aside when a restart opens them."""
    damaging = sorted(set(nemeses) & set(DAMAGING_NEMESES))
    if damaging:
        return f"the {', '.join(damaging)} nemesis damaged files that a restart may rightly set aside"
    if node_storage.get("volatile_unsynced"):
        return "the nodes' kills lose unsynced writes in this campaign (volatile_unsynced)"
    if getattr(deployment, "kills_lose_unsynced", False):
        return "the nodes' kills lose unsynced writes in this campaign (power-loss crashes)"
    return None


async def _read_when_up(cluster: Any, secret: str, node: str, keyspace: str, table: str, keys: list[Any],
                        network: Any) -> dict[Any, dict[str, Any]]:
    """``node``'s rows for ``keys``, retried while it starts, a slow answer included (the last
    error once START_TIMEOUT_S has passed)."""
    last: Exception = TimeoutError(f"no answer within {START_TIMEOUT_S:g} s")
    with trio.move_on_after(START_TIMEOUT_S):
        while True:
            try:
                return await _read_node(cluster, secret, node, keyspace, table, keys, network)
            except Exception as exc:  # noqa: BLE001 - still starting: its port or its tables are not up yet
                last = exc
                await trio.sleep(RETRY_S)
    raise last


async def restart_pass(cluster: Any, db: Any, secret: str, workload: Any, run_dir: Path, now_ns: Callable[[], int],
                       network: Any = None, skip: str | None = None) -> dict[str, Any]:
    """Kill every node of ``cluster`` at once, restart them, read every key on each; never raises
    (a failure is recorded in the header and the check is then unknown). ``skip`` records why the
    pass did not run instead."""
    from harness.workloads import KEYSPACE

    if workload.model not in SNAPSHOT_MODELS:
        return {}
    path = run_dir / RESTARTS_FILE
    nodes: Sequence[str] = list(cluster.node_ids())
    header: dict[str, Any] = {"type": "restart", "nodes": list(nodes)}
    if skip is not None:
        header["skipped"] = skip
        _write(path, [header])
        return header
    keys = snapshot_keys(workload)
    lines: list[dict[str, Any]] = []
    try:
        header["killed_ns"] = now_ns()
        async with trio.open_nursery() as nursery:
            for nid in nodes:
                nursery.start_soon(db.kill, nid)
        unstarted: set[str] = set()

        async def start(nid: str) -> None:
            try:
                await db.restart(nid)
            except Exception as exc:  # noqa: BLE001 - a node that cannot start from its files is a finding
                log.warning("node %s did not start again: %s", nid, exc)
                unstarted.add(nid)
                lines.append({"type": "unstarted", "node": nid, "error": f"{type(exc).__name__}: {exc}"})

        async with trio.open_nursery() as nursery:
            for nid in nodes:
                nursery.start_soon(start, nid)
        header["started_ns"] = now_ns()

        async def read(nid: str) -> None:
            try:
                rows = await _read_when_up(cluster, secret, nid, KEYSPACE, workload.table, keys, network)
            except Exception as exc:  # noqa: BLE001 - recorded; the checker judges the others
                lines.append({"type": "unreadable", "node": nid, "error": f"{type(exc).__name__}: {exc}"})
                return
            for key in keys:
                row = rows.get(key)
                if row is not None and (row["cells"] or row["partition_tombstone"] is not None):
                    lines.append({"type": "row", "node": nid, "key": key, "cells": row["cells"],
                                  "partition_tombstone": row["partition_tombstone"]})

        async with trio.open_nursery() as nursery:
            for nid in nodes:
                if nid not in unstarted:
                    nursery.start_soon(read, nid)
        header["read_ns"] = now_ns()
    except Exception as exc:  # noqa: BLE001 - the check becomes unknown, the campaign goes on
        log.exception("restart pass failed")
        header["error"] = f"{type(exc).__name__}: {exc}"
    # Rows in a fixed order (node, then key as the pass read them), whatever order reads ended in.
    order = {k: i for i, k in enumerate(map(json.dumps, keys))}
    lines.sort(key=lambda r: (r["node"], order.get(json.dumps(r.get("key")), -1)))
    _write(path, [header, *lines])
    return header


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, default=str, separators=(",", ":")) + "\n")
