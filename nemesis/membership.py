"""The membership nemesis: joins a fresh node, decommissions one, removes a killed one, while the
workload runs. ``start`` and ``stop`` each make one change. Each change is recorded in the history (its step's ``action``) with the node,
the admin op's result (bytes and partitions streamed, seconds) or the error.

It acts through :class:`MembershipDB`, the process-control interface of ``nemesis/faults.py``
plus two deployment hooks: ``add_node`` (start a fresh node configured with
``[membership] auto_bootstrap = true`` that joins through the seeds) and ``forget_node`` (a node
that left the ring is no longer a target of other nemeses or of restarts).
"""

from __future__ import annotations

import logging
import random
from typing import Any, Protocol

import trio

from nemesis.faults import DB, Event

log = logging.getLogger("nemesis.membership")

# Never shrink below a replication factor of 3 nor grow a local campaign past 5 processes on 2 cores.
MIN_NODES = 3
MAX_NODES = 5
# A join streams a node's share of the data and then announces NORMAL.
JOIN_TIMEOUT = 120.0
# Until the survivors' failure detectors convict a killed node (about 10-13 s with 1 s gossip).
DOWN_TIMEOUT = 40.0
# A decommission or removenode streams a node's share; the admin call waits for all of it.
CHANGE_TIMEOUT = 180.0
# Every other admin op answers at once.
ADMIN_TIMEOUT = 5.0
# Repair and scrub stream too; a flush or major compaction writes SSTables (nemesis/storage.py).
STREAMING_OPS = ("decommission", "removenode", "repair", "scrub", "flush", "compact")


def admin_timeout(op: str) -> float:
    """How long a deployment's DB waits for an admin op: decommission and removenode answer only
    once their ranges are streamed."""
    return CHANGE_TIMEOUT if op in STREAMING_OPS else ADMIN_TIMEOUT
ACTIONS = ("join", "decommission", "removenode")


class MembershipDB(DB, Protocol):
    """What the membership nemesis needs beyond the process nemeses' DB."""

    async def add_node(self) -> str:
        """Start a fresh node that bootstraps into the ring; returns its id once it answers."""
        ...

    async def forget_node(self, node_id: str) -> None:
        """Stop managing a node that left the ring (no restarts, not a fault target)."""
        ...

    def capacity(self) -> int | None:
        """How many nodes the ring can have at once from now on (an SSH deployment: members plus
        spare hosts), or None when the deployment sets no limit of its own (local processes)."""
        ...


class MembershipNemesis:
    """One membership change per step: ``start`` and ``stop`` each join a node, or decommission
    or remove one, drawn at random from what the cluster size allows (a random walk between
    ``min_nodes`` and ``max_nodes``, or the deployment's capacity when that is smaller). Changes
    in one direction compound: two removals, or two joins next to each other on the ring, give
    some ranges two new replicas at once, which is where a missing stream shows at QUORUM. Heal
    restarts a killed node whose removal did not complete."""

    name = "membership"
    changes_ring = True

    def __init__(self, db: MembershipDB, min_nodes: int = MIN_NODES, max_nodes: int = MAX_NODES) -> None:
        self.db = db
        self.min_nodes = min_nodes
        self.max_nodes = max_nodes
        self.killed: list[str] = []
        self.rng = random.Random(0)  # the schedule's, once start has run

    async def _status(self, via: str) -> dict[str, dict[str, Any]]:
        resp = await self.db.admin(via, "status", load=False)
        return {n["node_id"]: n for n in resp["nodes"]}

    async def _members(self) -> list[str]:
        """NORMAL nodes of the ring as a live node sees them."""
        for via in self.db.node_ids():
            if via in self.killed:
                continue
            try:
                st = await self._status(via)
            except Exception:  # noqa: BLE001 - that node may be down; ask another
                continue
            return [n for n, s in st.items() if s["status"] == "NORMAL" and n in self.db.node_ids()]
        return []

    def size_bound(self) -> int:
        """The most nodes a join may lead to: ``max_nodes``, or fewer when the deployment cannot
        hold more (no spare host left)."""
        # A DB without the hook (a test double) sets no limit of its own.
        capacity = getattr(self.db, "capacity", lambda: None)()
        return self.max_nodes if capacity is None else min(self.max_nodes, capacity)

    def _choose(self, members: list[str], rng: random.Random) -> str | None:
        possible = []
        if len(self.db.node_ids()) < self.size_bound():
            possible.append("join")
        if len(members) > self.min_nodes:
            possible += ["decommission", "removenode"]
        return rng.choice(possible) if possible else None

    async def start(self, rng: random.Random) -> Event:
        """One change, as the cluster size allows."""
        self.rng = rng
        return await self._change(rng)

    async def stop(self) -> Event:
        """Another change (a membership window is two changes; nothing is left to undo)."""
        return await self._change(self.rng)

    async def _change(self, rng: random.Random) -> Event:
        members = await self._members()
        action = self._choose(members, rng)
        if action is None:
            return Event("membership", {"action": "none", "members": members})
        try:
            if action == "join":
                return await self._join()
            victim = rng.choice(members)
            if action == "decommission":
                return await self._decommission(victim)
            via = rng.choice([m for m in members if m != victim])
            return await self._removenode(victim, via)
        except Exception as exc:  # noqa: BLE001 - the history records a failed change
            log.warning("membership %s failed: %s", action, exc)
            return Event(action, {"error": f"{type(exc).__name__}: {exc}"}, ring_change=True)

    async def _join(self) -> Event:
        node = await self.db.add_node()
        with trio.fail_after(JOIN_TIMEOUT):
            while True:
                try:
                    st = await self._status(node)
                    if st.get(node, {}).get("status") == "NORMAL":
                        break
                except Exception:  # noqa: BLE001 - still starting
                    pass
                await trio.sleep(0.5)
        stats = await self.db.admin(node, "netstats")
        # Its tokens and location, from which checkers/misplaced.py rebuilds the ring of the run
        # (None when the node did not say: the join happened, and the checker judges nothing).
        tokens: list[str] | None = None
        location: list[Any] | None = None
        try:
            ring = await self.db.admin(node, "ring")
            own = (await self._status(node)).get(node, {})
            tokens = [t for t, owner, _state in ring["tokens"] if owner == node]
            location = [own.get("datacenter"), own.get("rack")]
        except Exception as exc:  # noqa: BLE001 - the change is done either way
            log.warning("joined node %s did not say its tokens: %s", node, exc)
        return Event("join", {"node": node, "result": stats.get("last"), "tokens": tokens, "location": location},
                     ring_change=True)

    async def _decommission(self, node: str) -> Event:
        with trio.fail_after(CHANGE_TIMEOUT):
            result = await self.db.admin(node, "decommission")
        await self.db.forget_node(node)
        return Event("decommission", {"node": node, "result": result}, ring_change=True)

    async def _removenode(self, victim: str, via: str) -> Event:
        await self.db.kill(victim)
        self.killed.append(victim)
        with trio.fail_after(DOWN_TIMEOUT):
            while (await self._status(via)).get(victim, {}).get("state") != "D":
                await trio.sleep(0.5)
        with trio.fail_after(CHANGE_TIMEOUT):
            result = await self.db.admin(via, "removenode", node=victim)
        self.killed.remove(victim)
        await self.db.forget_node(victim)
        return Event("removenode", {"node": victim, "via": via, "result": result}, ring_change=True)

    async def heal(self) -> None:
        """Restart nodes killed for a removenode that did not complete (they are still in the ring)."""
        killed, self.killed = self.killed, []
        for nid in killed:
            await self.db.restart(nid)
