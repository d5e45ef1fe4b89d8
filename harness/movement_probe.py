"""Replica reads at the moment a ring view changes, for checkers/movement.py.

While a membership change runs (a ``start-membership`` or ``stop-membership`` step of the
schedule), the harness holds a ``ring`` admin request open on every node: given the version
it holds and ``wait``, the node answers as soon as its ring's version moves on (a gossip event
or a change of its own), or with ``unchanged`` when the wait ends. A node that does not wait
(it answers ``unchanged`` at once) is asked again every ``POLL_S``. The first time a node's
ring differs from what it answered before, the harness
at once reads every key on the natural replicas that ring names (``localread``, no
coordination) and appends the snapshot to ``movements.jsonl``: a ``{"type": "movement",
"viewer", "step", "sent_ns", "recv_ns", "keys"}`` header, then one ``{"type": "replica",
"movement", "key", "node", "replicas", "cells" | "error"}`` line per key and replica, as
``replicas.jsonl`` has them (harness/convergence.py). Times are on the history's clock.

A node announces a change (LEFT, NORMAL after a bootstrap, REMOVED) only once the ranges it
moves are on their new replicas, so the moment any ring says the new replicas own a range they
hold what the old ones did: that is what the checker judges.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from harness.convergence import REQUEST_TIMEOUT, _read_node, placement
from node.client import open_client
from node.ring import Strategy, TokenMetadata, make_partitioner

log = logging.getLogger("harness.movement")

MOVEMENTS_FILE = "movements.jsonl"
# How long one ring request waits on the node for a version other than the one held: the
# node answers at once when its ring changes, so this only bounds a request's life.
WAIT_S = 0.5
# How often a node that answers at once (one that does not wait) is asked: a range's stream
# in a simulated campaign lasts some 10-30 ms (10 ms polls caught the window on 1 of 6 seeds of
# the membership campaign where 3 ms caught it on more: see docs/mutants.md).
POLL_S = 0.003
# How long the watch goes on after a step: the other nodes learn a change the step's node made
# (REMOVED, NORMAL) by gossip within a few rounds of 1 s.
TAIL_S = 3.0
# How long to wait before asking again after a failed request.
RETRY_S = 0.05
# Snapshots per run at most: each reads every key on every replica.
MAX_SNAPSHOTS = 40
# What a ring answer must include to be compared: a poll that failed is skipped.
RING_TIMEOUT = 2.0


def _ring_of(resp: dict[str, Any]) -> TokenMetadata:
    """A ``ring`` answer as TokenMetadata."""
    part = make_partitioner(resp["partitioner"])
    owned: dict[str, list[Any]] = {}
    for tok, owner, _state in resp["tokens"]:
        owned.setdefault(owner, []).append(part.from_string(tok))
    return TokenMetadata(part, owned)


class MovementProbe:
    """Reads every replica whenever a node's ring changes during a membership step."""

    def __init__(self, cluster: Any, secret: str, run_dir: Path, now_ns: Callable[[], int],
                 running: Callable[[], str | None], keyspace: str, table: str, keys: Sequence[Any],
                 rf: int | Strategy, network: Any = None, spec: dict[str, Any] | None = None) -> None:
        self.cluster = cluster
        self.secret = secret
        self.path = run_dir / MOVEMENTS_FILE
        self.now_ns = now_ns
        self.running = running
        self.keyspace = keyspace
        self.table = table
        self.keys = list(keys)
        self.rf = rf
        self.network = network
        self.spec = spec or {}
        self.rings: dict[str, tuple[tuple[str, str], ...]] = {}
        # Each node's ring version (node/server.py) as of its last full answer.
        self.versions: dict[str, Any] = {}
        self.snapshots = 0

    def _window(self) -> tuple[bool, bool]:
        """(polling, during a step): a membership step runs, or ended less than TAIL_S ago."""
        now = self.running()
        if now is not None and "membership" in now:
            self._step, self._until = now, trio.current_time() + TAIL_S
            return True, True
        return trio.current_time() <= self._until, False

    async def run(self) -> None:
        """Poll while a membership step runs and for ``TAIL_S`` after it, until cancelled."""
        self._step: str = ""
        self._until = -1.0
        while True:
            if not self._window()[0]:
                await trio.sleep(0.1)
                continue
            self.rings = {}  # each window starts from the rings it finds
            self.versions = {}
            async with trio.open_nursery() as nursery:
                for nid in list(self.cluster.node_ids()):
                    nursery.start_soon(self._poller, nid)

    async def _poller(self, nid: str) -> None:
        """Watch ``nid``'s ring over one connection while the window lasts (reconnecting after a
        failure): a connection per request cost more than the requests."""
        while self._window()[0]:
            try:
                host, port = self.cluster.client_address(nid)
                async with open_client(host, port, secret=self.secret, timeout=RING_TIMEOUT + WAIT_S,
                                       network=self.network, direct=True) as c:
                    while self._window()[0]:
                        held = self.versions.get(nid)
                        started = trio.current_time()
                        sent = self.now_ns()
                        # Only the version comes back while it is the one we hold, after up to
                        # WAIT_S (a slow answer raises the client's ClientTimeout).
                        resp = await c.admin("ring", unless_version=held, wait=WAIT_S)
                        if not resp.get("unchanged"):
                            self.versions[nid] = resp.get("version")
                            await self._compare(nid, resp, sent)
                        elif trio.current_time() - started < WAIT_S / 2:
                            await trio.sleep(POLL_S)  # a node that answers at once: poll it
            except Exception:  # noqa: BLE001 - down, gone or slow: no ring to compare; try again
                self.rings.pop(nid, None)
                self.versions.pop(nid, None)
                await trio.sleep(RETRY_S)

    async def _compare(self, nid: str, resp: dict[str, Any], sent: int) -> None:
        # The answer's (token, owner) pairs as they came (a node lists them in ring order): only
        # one that differs from the last is parsed into a ring (most polls see no change).
        pairs = tuple((tok, owner) for tok, owner, _state in resp["tokens"])
        before = self.rings.get(nid)
        self.rings[nid] = pairs
        if before is None or before == pairs or self.snapshots >= MAX_SNAPSHOTS:
            return
        ring = _ring_of(resp)
        self.snapshots += 1
        await self._snapshot(self.snapshots, nid, self._step, ring, sent)

    async def _snapshot(self, label: int, viewer: str, step: str, ring: TokenMetadata, sent: int) -> None:
        where = placement(ring, self.keys, self.rf)
        by_node: dict[str, list[Any]] = {}
        for k, (replicas, _) in where.items():
            for n in replicas:
                by_node.setdefault(n, []).append(k)
        results: dict[str, Any] = {}

        async def read(node: str) -> None:
            try:
                results[node] = await _read_node(self.cluster, self.secret, node, self.keyspace, self.table,
                                                 by_node[node], self.network)
            except Exception as exc:  # noqa: BLE001 - an unreadable replica is recorded, not fatal
                results[node] = f"{type(exc).__name__}: {exc}"

        with trio.move_on_after(REQUEST_TIMEOUT * 2):
            async with trio.open_nursery() as nursery:
                for node in by_node:
                    nursery.start_soon(read, node)
        recv = self.now_ns()
        lines = [{"type": "movement", "movement": label, "viewer": viewer, "step": step, "sent_ns": sent,
                  "recv_ns": recv, "keys": len(self.keys), "workload": self.spec}]
        for k, (replicas, _) in where.items():
            for n in replicas:
                rec: dict[str, Any] = {"type": "replica", "movement": label, "key": k, "node": n, "replicas": replicas}
                got = results.get(n)
                if isinstance(got, dict):
                    row = got.get(k, {"cells": [], "partition_tombstone": None})
                    rec["cells"] = row["cells"]
                    rec["partition_tombstone"] = row["partition_tombstone"]
                else:
                    rec["error"] = got if isinstance(got, str) else "not read"
                lines.append(rec)
        with self.path.open("a", encoding="utf-8") as fh:
            for rec in lines:
                fh.write(json.dumps(rec, default=str, separators=(",", ":")) + "\n")
        log.info("movement snapshot %d: %s's ring changed during %s", label, viewer, step)
