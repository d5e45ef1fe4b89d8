"""Samples of every node's failure-detector view during a campaign, for checkers/liveness.py.

While the clients run, and again after the faults are healed, the harness asks each node for
its ``status`` (the client-port admin op, so it works the same on local processes, SSH hosts
and in the simulator) about once a second and appends what the node said about each member to
``liveness.jsonl`` in the run directory: one line per answer,
``{"node", "sent_ns", "recv_ns", "view": {peer: [state, status]}}`` where the times are on the
history's clock (virtual in sim) and state is the failure detector's ``U`` or ``D``. A node that
does not answer within the timeout leaves no line (a killed or paused node has no view).
The first line is a header naming the gossip settings the bounds are derived from. Each view
also carries the node's failure-detector account of each peer (``"fd"``, from ``status`` with
``failure_detector``: phi and the arrival window it learnt), which checkers/liveness.py holds to
the detector's own limit on a recorded interval.

With each view the node's gossip state of every endpoint is recorded too (``gossipinfo``):
``{"type": "gossip", "node", "sent_ns", "recv_ns", "states": {endpoint: [generation,
heartbeat, {app key: version}]}}``, for checkers/gossip.py (versions must never go backwards
in a node's view). After the heal, once the views are UP, the harness keeps sampling until
every answering node holds the same versions of every endpoint's membership states (or
``GOSSIP_SETTLE_MAX_S`` passes) and marks that last round ``"final": true``.
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
# After the liveness settle: how long the harness waits for every node's gossip state of every
# endpoint to agree (gossip spreads a change to every node within a few rounds of 1 s).
GOSSIP_SETTLE_MAX_S = 20.0
# Application states republished on a timer (LOAD every 5 s), so two views may rightly differ
# on them at any instant: left out of the agreement the settle waits for.
VOLATILE_APP_STATES = frozenset({"LOAD"})


def gossip_versions(info: dict[str, Any]) -> dict[str, list[Any]]:
    """A ``gossipinfo`` answer as {endpoint: [generation, heartbeat, {app key: version}]}."""
    out: dict[str, list[Any]] = {}
    for ep, entry in sorted((info.get("nodes") or {}).items()):
        st = (entry or {}).get("state") if isinstance(entry, dict) else None
        if not isinstance(st, dict):
            continue
        apps = {k: v.get("version") for k, v in sorted((st.get("app_states") or {}).items()) if isinstance(v, dict)}
        out[ep] = [st.get("generation"), st.get("heartbeat"), apps]
    return out


def gossip_disagreements(states: dict[str, dict[str, list[Any]]]) -> list[tuple[str, str, str]]:
    """(endpoint, app key, the views' versions) where answering nodes that know the endpoint hold
    different versions of one of its non-volatile application states (or generations)."""
    out: list[tuple[str, str, str]] = []
    endpoints = sorted({ep for view in states.values() for ep in view})
    for ep in endpoints:
        seen = {n: view[ep] for n, view in states.items() if ep in view}
        gens = {n: v[0] for n, v in seen.items()}
        if len(set(gens.values())) > 1:
            out.append((ep, "generation", str(dict(sorted(gens.items())))))
            continue
        keys = sorted({k for v in seen.values() for k in (v[2] or {})} - VOLATILE_APP_STATES)
        for k in keys:
            vers = {n: (v[2] or {}).get(k) for n, v in seen.items()}
            if len(set(vers.values())) > 1:
                out.append((ep, k, str(dict(sorted(vers.items())))))
    return out


def detector_record(fd: Any) -> dict[str, Any] | None:
    """A ``status`` answer's ``failure_detector`` as recorded in a view line:
    ``{"max_interval_s", "bootstrap_interval_s", "threshold", "peers": {peer: [phi, mean interval s, longest interval s,
    intervals recorded]}}``, or None when the node gave none."""
    if not isinstance(fd, dict) or not isinstance(fd.get("peers"), dict):
        return None
    peers = {p: [e.get("phi"), e.get("mean_interval_s"), e.get("max_interval_s"), e.get("intervals")]
             for p, e in sorted(fd["peers"].items()) if isinstance(e, dict)}
    return {"max_interval_s": fd.get("max_interval_s"), "bootstrap_interval_s": fd.get("bootstrap_interval_s"),
            "threshold": fd.get("threshold"), "peers": peers}


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
        self.latest_gossip: dict[str, dict[str, list[Any]]] = {}
        # Set for the last settle round: its gossip records are marked final.
        self._final = False
        gossip = GossipConfig()
        self._write({"type": "header", "gossip_interval_s": gossip.interval,
                     "phi_convict_threshold": gossip.phi_convict_threshold, "max_interval_rounds": MAX_INTERVAL_ROUNDS,
                     "sample_period_s": SAMPLE_PERIOD_S, "gossip": True})

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
                    status = await c.admin("status", load=False, failure_detector=True)
                    recv = self.now_ns()
                    info = await c.admin("gossipinfo")
        except Exception:  # noqa: BLE001 - a node that cannot answer has no view to record
            return
        view = {n["node_id"]: [n.get("state"), n.get("status")] for n in status.get("nodes", [])
                if n.get("node_id") != nid}
        self.latest[nid] = view
        rec: dict[str, Any] = {"type": "view", "node": nid, "sent_ns": sent, "recv_ns": recv, "view": view}
        fd = detector_record(status.get("failure_detector"))
        if fd is not None:
            rec["fd"] = fd
        self._write(rec)
        states = gossip_versions(info)
        self.latest_gossip[nid] = states
        self._write({"type": "gossip", "node": nid, "sent_ns": recv, "recv_ns": self.now_ns(), "states": states,
                     **({"final": True} if self._final else {})})

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
                    break
                await trio.sleep(max(0.0, SAMPLE_PERIOD_S - (trio.current_time() - started)))
        await self.settle_gossip()

    async def settle_gossip(self, max_s: float = GOSSIP_SETTLE_MAX_S) -> None:
        """Sample until every answering node holds the same versions of every endpoint's
        membership states, or ``max_s``; then one more round, marked final (checkers/gossip.py)."""
        with trio.move_on_after(max_s):
            while True:
                self.latest_gossip = {}
                started = trio.current_time()
                await self.sample_once()
                if self.latest_gossip and not gossip_disagreements(self.latest_gossip):
                    break
                await trio.sleep(max(0.0, SAMPLE_PERIOD_S - (trio.current_time() - started)))
        self._final = True
        try:
            await self.sample_once()
        finally:
            self._final = False
