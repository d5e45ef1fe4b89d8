"""Per-replica snapshots for the convergence check: what each replica of each key holds.

After healing and recovery the campaign runner asks every replica of every key for its own copy
(the node's ``localread`` admin op: no coordination, no read repair) and appends one line per
key and replica to ``replicas.jsonl`` in the run directory; it does so again after the
anti-entropy pass (the final reads at the read level and at ALL, whose blocking read repair
writes the merged row back to every replica, and hint delivery). ``checkers/convergence.py``
judges the snapshots against the history. The replicas of a key come from the ring as a live
node sees it (the ``ring`` admin op), placed with the test keyspace's SimpleStrategy, so the
same code serves local processes and SSH hosts: it only uses client-port admin operations.

``replicas.jsonl`` lines: a ``{"type": "pass", ...}`` header per pass (its name, when, the
ring's source, hints still pending), then ``{"type": "replica", "pass", "key", "node",
"replicas", "range", "cells": [[column, value, timestamp, tombstone, expires], ...],
"partition_tombstone"}`` or the same with ``"error"`` where the replica could not be read.

The ``after`` pass also reads every key on every node that is *not* one of its replicas (the
same localread, which reads the table only: hints live in their own files), for
checkers/misplaced.py: data there was put where no placement puts it (a repair, stream, hint or
read repair sent to the wrong node), which no read ever asks for. Only what such a node holds is
written, as ``{"type": "nonreplica", "pass", "key", "node", "replicas", "cells",
"partition_tombstone"}``; the header's ``nonreplica`` says which nodes were read, how many
reads, and the nodes that could not be read.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from harness import placement_probe
from node.client import open_client
from node.ring import Endpoint, SimpleStrategy, Strategy, TokenMetadata, make_partitioner
from node.protocol import key_bytes

log = logging.getLogger("harness.convergence")

SNAPSHOT_FILE = "replicas.jsonl"
# The workload models whose cells checkers/convergence.py knows how to judge (row and batch
# workloads write many columns per write: not judged yet, so no snapshot is taken).
JUDGED_MODELS = ("register", "set", "counter")
# Models whose replicas the passes read: rows too, judged only for agreement where read repair or
# a full repair had to make the replicas agree (checkers/convergence.py); not in JUDGED_MODELS,
# which also decides the movement probe and the before pass's membership excuses.
SNAPSHOT_MODELS = (*JUDGED_MODELS, "row")
# Keys per localread request: the node's own bound (node.server.LOCALREAD_MAX_KEYS) is 256;
# fewer keeps each answer small when rows are wide (the set workload's rows hold thousands).
KEYS_PER_REQUEST = 64
# Per request: a loaded node answers a local read of 64 keys in milliseconds; a node that does
# not answer in this long is recorded as unreadable rather than holding up the check.
REQUEST_TIMEOUT = 10.0
# How long the anti-entropy pass waits for every node's hints to be delivered. Hint delivery
# runs on UP events and every delivery_check_interval (10 s), throttled at 1 MiB/s per node:
# a campaign's hints (kilobytes) are gone within one interval once every node is up.
HINT_DRAIN_TIMEOUT = 25.0
# How often to poll the nodes' pending hints while waiting.
HINT_POLL_INTERVAL = 0.5


def spec_of(workload: Any) -> dict[str, Any]:
    """What the checker needs to map the history's operations to a replica's cells."""
    if workload.model == "set":
        from harness.workloads.sets import _column

        return {"model": "set", "element_prefix": _column(0)[0], "element_digits": len(_column(0)) - 1}
    if workload.model == "counter":
        from harness.workloads.lww_rmw import COLUMN as counter_column

        return {"model": "counter", "column": counter_column}
    if workload.model == "row":
        from harness.workloads.row import COLUMNS

        return {"model": "row", "columns": list(COLUMNS)}
    from harness.workloads.register import COLUMN

    return {"model": "register", "column": COLUMN}


async def _admin(cluster: Any, secret: str, node: str, op: str, timeout: float = REQUEST_TIMEOUT,
                 network: Any = None, **fields: Any) -> dict[str, Any]:
    host, port = cluster.client_address(node)
    with trio.fail_after(timeout):
        async with open_client(host, port, secret=secret, timeout=timeout, network=network) as c:
            return await c.admin(op, **fields)


async def ring_view(cluster: Any, secret: str, network: Any = None) -> tuple[TokenMetadata, str]:
    """The ring as the first node that answers sees it, and that node's id."""
    last: Exception | None = None
    for nid in cluster.node_ids():
        try:
            resp = await _admin(cluster, secret, nid, "ring", network=network)
        except Exception as exc:  # noqa: BLE001 - try the next node
            last = exc
            continue
        part = make_partitioner(resp["partitioner"])
        owned: dict[str, list[Any]] = {}
        for tok, owner, _state in resp["tokens"]:
            owned.setdefault(owner, []).append(part.from_string(tok))
        # Each node's datacenter and rack, for NetworkTopologyStrategy placement (harness/topology.py).
        try:
            status = await _admin(cluster, secret, nid, "status", network=network, load=False)
            where = {n["node_id"]: Endpoint(n["datacenter"], n["rack"]) for n in status["nodes"]}
        except Exception as exc:  # noqa: BLE001 - the next node may answer both
            last = exc
            continue
        return TokenMetadata(part, owned, where), nid
    raise RuntimeError(f"no node answered the ring admin op: {last}")


def placement(ring: TokenMetadata, keys: Sequence[Any], rf: int | Strategy) -> dict[Any, tuple[list[str], list[str]]]:
    """Per key: its replicas (primary first) and the ring range (left, right] holding its token
    (``rf``: SimpleStrategy's replication factor, or the keyspace's strategy)."""
    strategy = SimpleStrategy(rf) if isinstance(rf, int) else rf
    part = ring.partitioner
    toks = ring.sorted_tokens
    out: dict[Any, tuple[list[str], list[str]]] = {}
    for k in keys:
        token = part.token(key_bytes(k))
        i = ring._index_for(token)
        rng = [part.to_string(toks[i - 1]), part.to_string(toks[i])]
        out[k] = (list(ring.replicas_for_token(token, strategy)), rng)
    return out


async def _read_node(cluster: Any, secret: str, node: str, keyspace: str, table: str,
                     keys: list[Any], network: Any = None) -> dict[Any, dict[str, Any]]:
    """Every row ``node`` holds for ``keys``, paging through its localread bounds."""
    rows: dict[Any, dict[str, Any]] = {}
    host, port = cluster.client_address(node)
    with trio.fail_after(REQUEST_TIMEOUT * (1 + len(keys) // KEYS_PER_REQUEST)):
        async with open_client(host, port, secret=secret, timeout=REQUEST_TIMEOUT, network=network) as c:
            todo = list(keys)
            after: str | None = None
            while todo:
                batch = todo[:KEYS_PER_REQUEST]
                fields: dict[str, Any] = {"keyspace": keyspace, "table": table, "keys": batch}
                if after is not None:
                    fields["after"] = after
                resp = await c.admin("localread", **fields)
                got = resp["rows"]
                if not got:
                    raise RuntimeError(f"localread on {node} returned no row for {batch[0]!r}")
                for row in got:
                    k = row["key"]
                    mine = rows.setdefault(k, {"cells": [], "partition_tombstone": row["partition_tombstone"]})
                    mine["cells"].extend(row["cells"])
                last = got[-1]
                done = len(got) - (1 if last["more"] else 0)
                todo = todo[done:]
                after = last["cells"][-1][0] if last["more"] and last["cells"] else None
    return rows


async def pending_hints(cluster: Any, secret: str, network: Any = None) -> dict[str, Any]:
    """Per node, the bytes of hints it holds per member of the ring (or why it could not say);
    hints for a node that left the ring are never delivered and leave nothing to converge."""
    out: dict[str, Any] = {}
    members = set(cluster.node_ids())
    for nid in cluster.node_ids():
        try:
            status = await _admin(cluster, secret, nid, "status", network=network, load=False)
        except Exception as exc:  # noqa: BLE001 - a node that cannot answer still counts
            out[nid] = f"{type(exc).__name__}: {exc}"
            continue
        left = {t: b for t, b in (status.get("hints", {}).get("pending_bytes") or {}).items() if t in members}
        if left:
            out[nid] = left
    return out


async def snapshot(cluster: Any, secret: str, keyspace: str, table: str, keys: Sequence[Any], rf: int | Strategy,
                   label: str, path: Path, extra: dict[str, Any] | None = None, network: Any = None,
                   now_ns: Any = None, nonreplicas: bool = False) -> dict[str, Any]:
    """Read every replica of every key and append the pass to ``path``; returns its header.

    The hints every node holds are recorded just before and just after the reads: a replica
    that lacks a write while some node still holds hints for it is not yet converged. With
    ``nonreplicas`` every other node of the cluster is read for each key too (what it holds is
    misplaced unless an earlier ring made it a replica: checkers/misplaced.py judges)."""
    started = time.monotonic()
    hints_before = await pending_hints(cluster, secret, network)
    ring, source = await ring_view(cluster, secret, network)
    where = placement(ring, keys, rf)
    # The raw ring and the node's own getendpoints answers, for checkers/placement.py's oracle.
    placed = await placement_probe.probe(cluster, secret, source, keyspace, list(keys), rf, network)
    by_node: dict[str, list[Any]] = {}
    for k, (replicas, _) in where.items():
        for n in replicas:
            by_node.setdefault(n, []).append(k)
    # Per node, the keys it is not a replica of (read in the same request as its own keys).
    others: dict[str, list[Any]] = {}
    if nonreplicas:
        members = list(cluster.node_ids())
        for k, (replicas, _) in where.items():
            for n in members:
                if n not in replicas:
                    others.setdefault(n, []).append(k)
    results: dict[str, dict[Any, dict[str, Any]] | str] = {}

    async def read(node: str) -> None:
        try:
            results[node] = await _read_node(cluster, secret, node, keyspace, table,
                                             by_node.get(node, []) + others.get(node, []), network)
        except Exception as exc:  # noqa: BLE001 - an unreadable replica is recorded, not fatal
            results[node] = f"{type(exc).__name__}: {exc}"

    async with trio.open_nursery() as nursery:
        for node in {**by_node, **others}:
            nursery.start_soon(read, node)
    read_s = time.monotonic() - started
    hints_after = await pending_hints(cluster, secret, network)
    targets = sorted({t for h in (hints_before, hints_after) for v in h.values() if isinstance(v, dict) for t in v})
    header = {"type": "pass", "pass": label, "time": time.time(), "ring_from": source, "keys": len(keys),
              "replication_factor": rf if isinstance(rf, int) else sum(dict(getattr(rf, "dc_rf", ())).values()),
              **({} if isinstance(rf, int) else {"replication": rf.describe()}), "seconds": round(read_s, 3),
              "hints_held": {"before": hints_before, "after": hints_after, "targets": targets,
                             "unknown": sorted(n for h in (hints_before, hints_after) for n, v in h.items()
                                               if not isinstance(v, dict))},
              "placement": placed, **(extra or {})}
    if nonreplicas:
        header["nonreplica"] = {"nodes": sorted(others), "reads": sum(len(v) for v in others.values()),
                                "unreadable": {n: results[n] for n in sorted(others) if isinstance(results.get(n), str)}}
    if now_ns is not None:
        # Once the reads are done, on the history's own clock (virtual in sim): a tombstone purged
        # by then after gc_grace is judged against this time (checkers/gcgrace.py).
        header["history_ns"] = now_ns()
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(header, default=str) + "\n")
        for k, (replicas, rng) in where.items():
            for n in replicas:
                rec: dict[str, Any] = {"type": "replica", "pass": label, "key": k, "node": n,
                                       "replicas": replicas, "range": rng}
                got = results.get(n)
                if isinstance(got, str):
                    rec["error"] = got
                elif got is None or n not in results:
                    rec["error"] = "not read"
                else:
                    row = got.get(k, {"cells": [], "partition_tombstone": None})
                    rec["cells"] = row["cells"]
                    rec["partition_tombstone"] = row["partition_tombstone"]
                fh.write(json.dumps(rec, default=str) + "\n")
        for n, ks in others.items():
            got = results.get(n)
            if not isinstance(got, dict):
                continue
            for k in ks:
                row = got.get(k)
                if row is None or not (row["cells"] or row["partition_tombstone"] is not None):
                    continue
                fh.write(json.dumps({"type": "nonreplica", "pass": label, "key": k, "node": n,
                                     "replicas": where[k][0], "cells": row["cells"],
                                     "partition_tombstone": row["partition_tombstone"]}, default=str) + "\n")
    log.info("replica snapshot %s: %d keys, %d replicas read in %.2f s", label, len(keys),
             sum(len(v) for v in by_node.values()), header["seconds"])
    return header


async def drain_hints(cluster: Any, secret: str, timeout: float = HINT_DRAIN_TIMEOUT,
                      network: Any = None) -> dict[str, Any]:
    """Wait (bounded) until no node holds undelivered hints; returns what was still pending."""
    started = time.monotonic()
    pending: dict[str, Any] = {}
    with trio.move_on_after(timeout):
        while True:
            pending = await pending_hints(cluster, secret, network)
            if not pending:
                break
            await trio.sleep(HINT_POLL_INTERVAL)
    return {"hints_drained": not pending, "hints_pending": pending,
            "hint_wait_s": round(time.monotonic() - started, 3)}


# How long the harness waits for every running node to see every answering peer UP again before
# it records the views it has: a failure detector under load convicts and clears peers for a few
# seconds at a time, and only a view that stays DOWN this long is a node that never re-marks.
LIVENESS_SETTLE_S = 20.0
LIVENESS_POLL_S = 0.5


async def _liveness_views_once(cluster: Any, secret: str, network: Any = None) -> dict[str, dict[str, str]]:
    """Per node that answers: its failure detector's verdict ("U" or "D") on each NORMAL member."""
    out: dict[str, dict[str, str]] = {}
    for nid in cluster.node_ids():
        try:
            status = await _admin(cluster, secret, nid, "status", network=network, load=False)
        except Exception:  # noqa: BLE001 - a node that cannot answer has no view to judge
            continue
        out[nid] = {n["node_id"]: n["state"] for n in status.get("nodes", [])
                    if n.get("node_id") != nid and n.get("status") == "NORMAL"}
    return out


def stale_views(views: dict[str, dict[str, str]]) -> list[tuple[str, str]]:
    """(node, peer) pairs where a node that answered sees another node that answered as DOWN."""
    return [(node, peer) for node, view in sorted(views.items()) for peer, state in sorted(view.items())
            if state == "D" and peer in views]


async def liveness_views(cluster: Any, secret: str, network: Any = None,
                         settle_s: float = LIVENESS_SETTLE_S) -> dict[str, Any]:
    """Every answering node's view of its peers, polled until none sees an answering peer DOWN
    or ``settle_s`` passes; the views last read and how long the wait was."""
    deadline = trio.current_time() + settle_s
    started = trio.current_time()
    while True:
        views = await _liveness_views_once(cluster, secret, network)
        if not stale_views(views) or trio.current_time() >= deadline:
            return {"views": views, "views_wait_s": round(trio.current_time() - started, 3)}
        await trio.sleep(LIVENESS_POLL_S)


# One node's repair of every range it replicates, once the workload is over: in a simulated
# campaign it streams kilobytes; generous for a loaded host.
FULL_REPAIR_TIMEOUT = 120.0


async def full_repair(cluster: Any, secret: str, network: Any = None,
                      after_first: Callable[[str, dict[str, Any]], Awaitable[Any]] | None = None) -> dict[str, Any]:
    """Drain the hints, then an anti-entropy repair of the test keyspace on every node in turn;
    ``{"full_repair": {node: what its repair reported, or its error}}`` for the ``after`` pass's
    header (checkers/convergence.py then holds every replica of every key to the same cells).

    ``after_first(node, its result)`` runs once the first node's repair is done, before the next
    one starts: a repair syncs every pair of replicas of each range the node replicates, so right
    then those replicas already agree (the later repairs would hide a pair it skipped)."""
    from harness.workloads import KEYSPACE

    drained = await drain_hints(cluster, secret, network=network)
    out: dict[str, Any] = {}
    for nid in cluster.node_ids():
        try:
            stats = await _admin(cluster, secret, nid, "repair", timeout=FULL_REPAIR_TIMEOUT, network=network,
                                 keyspace=KEYSPACE)
        except Exception as exc:  # noqa: BLE001 - recorded: the checker then does not hold replicas to agree
            out[nid] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        out[nid] = {k: stats.get(k) for k in ("ranges", "differing_leaves", "streamed_partitions", "skipped_replicas")}
        if after_first is not None and len(out) == 1:
            await after_first(nid, {**out[nid], "hints_drained": drained["hints_drained"]})
    log.info("full repair after the final reads: %s", out)
    return {"full_repair": out, "full_repair_hints_drained": drained["hints_drained"]}


async def storage_health(cluster: Any, secret: str, network: Any = None) -> dict[str, Any]:
    """Each running node's own account of damage to its files, from its ``storage`` admin op with
    a full checksum scrub (``verify``): ``{"storage_health": {node: {"corrupt": [...],
    "verify_corrupt": [...], "quarantined": [...], "held": {...}, "sstables": {table: [{"sstable",
    "stats", "scan"}]}} or an error string}}``.
    checkers/convergence.py holds it against the run's faults: kills, power losses and partitions
    must never leave a damaged SSTable behind (only the corrupt and disk nemeses damage files)."""
    out: dict[str, Any] = {}

    async def ask(node: str) -> None:
        try:
            st = await _admin(cluster, secret, node, "storage", network=network, verify=True, sstables=True)
        except Exception as exc:  # noqa: BLE001 - recorded: a node that does not answer is not judged
            out[node] = f"{type(exc).__name__}: {exc}"
            return
        out[node] = {"corrupt": list(st.get("corrupt") or []), "verify_corrupt": list(st.get("verify_corrupt") or []),
                     "quarantined": list(st.get("quarantined") or []), "held": dict(st.get("held") or {}),
                     # Each SSTable's recorded statistics beside a count from its data (the checker
                     # holds one to the other: sstable-metadata-wrong).
                     **({"sstables": st["sstables"]} if isinstance(st.get("sstables"), dict) else {})}

    async with trio.open_nursery() as nursery:
        for node in cluster.node_ids():
            nursery.start_soon(ask, node)
    return {"storage_health": {n: out[n] for n in sorted(out)}}


def snapshot_keys(workload: Any) -> list[Any]:
    """Every key the workload's final reads cover, in the order every pass reads them."""
    return sorted({op.key for op in workload.final_ops()}, key=lambda k: (str(type(k)), k))


async def convergence_pass(cluster: Any, secret: str, workload: Any, rf: int | Strategy, read_repair: str,
                           run_dir: Path, label: str, drain: bool = False, network: Any = None,
                           now_ns: Any = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One snapshot of every key's replicas (after draining hints if ``drain``); never raises:
    a failure is logged and recorded in the pass header, so the campaign still gets its verdict."""
    from harness.workloads import KEYSPACE

    if workload.model not in SNAPSHOT_MODELS:
        return {}
    path = run_dir / SNAPSHOT_FILE
    keys = snapshot_keys(workload)
    extra = {"read_repair": read_repair, "workload": spec_of(workload), **(extra or {})}
    try:
        if drain:
            extra.update(await drain_hints(cluster, secret, network=network))
            # Once every hint is delivered the faults are long healed: each running node should
            # see every other as UP (checkers/convergence.py's stale-liveness-view).
            extra.update(await liveness_views(cluster, secret, network))
            extra.update(await storage_health(cluster, secret, network))
        # Only the last pass looks for misplaced data: whatever a repair, stream or hint put on a
        # wrong node during the run is still there (nothing but a cleanup removes it).
        return await snapshot(cluster, secret, KEYSPACE, workload.table, keys, rf, label, path, extra, network, now_ns,
                              nonreplicas=label == "after")
    except Exception as exc:  # noqa: BLE001 - the check becomes unknown, the campaign goes on
        log.exception("replica snapshot %s failed", label)
        header = {"type": "pass", "pass": label, "time": time.time(), "error": f"{type(exc).__name__}: {exc}", **extra}
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(header, default=str) + "\n")
        return header
