"""Samples of every node's failure-detector view during a campaign, for checkers/liveness.py.

While the clients run, and again after the faults are healed, the harness asks each node for
its ``status`` (the client-port admin op, so it works the same on local processes, SSH hosts
and in the simulator) about once a second and appends what the node said about each member to
``liveness.jsonl`` in the run directory: one line per answer,
``{"node", "sent_ns", "recv_ns", "view": {peer: [state, status]}}`` where the times are on the
history's clock (virtual in sim) and state is the failure detector's ``U`` or ``D``. A node that
does not answer within the timeout leaves no line (a killed or paused node has no view).
The first line is a header naming the gossip settings the bounds are derived from.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from node.client import open_client
from node.cluster.gossip import MAX_INTERVAL_ROUNDS
from node.config import GossipConfig

log = logging.getLogger("harness.liveness")

LIVENESS_FILE = "liveness.jsonl"
# One sample a node a second: the bounds judged are tens of seconds, so a second's resolution
# costs nothing in power, and five status calls a second are nothing to a node.
SAMPLE_PERIOD_S = 1.0
# A node that has not answered in this long is down or paused: its sample is dropped.
SAMPLE_TIMEOUT_S = 2.0
# After the heal: keep sampling until every answering node sees every answering member UP, at
# most this long (the checker's UP bound plus margin, so a node that stays DOWN is recorded).
SETTLE_MAX_S = 20.0


class Sampler:
    """Appends failure-detector views of the cluster's nodes to ``liveness.jsonl``."""

    def __init__(self, cluster: Any, secret: str, run_dir: Path, now_ns: Callable[[], int],
                 network: Any = None) -> None:
        self.cluster = cluster
        self.secret = secret
        self.path = run_dir / LIVENESS_FILE
        self.now_ns = now_ns
        self.network = network
        self.latest: dict[str, dict[str, list[str]]] = {}
        gossip = GossipConfig()
        self._write({"type": "header", "gossip_interval_s": gossip.interval,
                     "phi_convict_threshold": gossip.phi_convict_threshold, "max_interval_rounds": MAX_INTERVAL_ROUNDS,
                     "sample_period_s": SAMPLE_PERIOD_S})

    def _write(self, rec: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")

    async def sample_node(self, nid: str) -> None:
        """One status call to ``nid``; its view is recorded if it answers in time."""
        sent = self.now_ns()
        try:
            host, port = self.cluster.client_address(nid)
            with trio.fail_after(SAMPLE_TIMEOUT_S):
                async with open_client(host, port, secret=self.secret, timeout=SAMPLE_TIMEOUT_S,
                                       network=self.network) as c:
                    # Only the views are recorded: no need for the node to size its data.
                    status = await c.admin("status", load=False)
        except Exception:  # noqa: BLE001 - a node that cannot answer has no view to record
            return
        view = {n["node_id"]: [n.get("state"), n.get("status")] for n in status.get("nodes", [])
                if n.get("node_id") != nid}
        self.latest[nid] = view
        self._write({"type": "view", "node": nid, "sent_ns": sent, "recv_ns": self.now_ns(), "view": view})

    async def sample_once(self) -> None:
        """Every node at once, so a slow one does not delay the others' samples."""
        async with trio.open_nursery() as nursery:
            for nid in self.cluster.node_ids():
                nursery.start_soon(self.sample_node, nid)

    async def run(self) -> None:
        """Sample every period until cancelled."""
        while True:
            started = trio.current_time()
            with trio.move_on_after(SAMPLE_PERIOD_S):
                await self.sample_once()
            await trio.sleep(max(0.0, SAMPLE_PERIOD_S - (trio.current_time() - started)))

    async def settle(self, max_s: float = SETTLE_MAX_S) -> None:
        """After the heal: sample until no answering node sees an answering member DOWN, or ``max_s``."""
        with trio.move_on_after(max_s):
            while True:
                self.latest = {}
                started = trio.current_time()
                await self.sample_once()
                stale = [(n, p) for n, view in self.latest.items() for p, (state, status) in view.items()
                         if state == "D" and status == "NORMAL" and p in self.latest]
                if not stale and self.latest:
                    return
                await trio.sleep(max(0.0, SAMPLE_PERIOD_S - (trio.current_time() - started)))
