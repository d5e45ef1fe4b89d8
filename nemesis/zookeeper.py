"""The zk nemesis: the coordination service as a fault target (``--coordination zookeeper``).

Each window does one of: kill ZooKeeper servers (SIGKILL; restarted at stop from their data
directories), pause them (SIGSTOP/SIGCONT), or cut a random set of nodes off the ensemble
(their ``nX_to_zkY`` link proxies). With one server, kill and pause take the whole service
away; with three, a minority or a majority of the servers. While ZooKeeper is out of reach,
reads and writes must go on from the cached range map; joins wait or fail with the reason.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

import trio

from nemesis.faults import DB, Event, Net

ACTIONS = ("kill", "pause", "partition")


class Ensemble(Protocol):
    """What the nemesis needs of the ZooKeeper servers (harness/zookeeper.py's LocalZooKeeper)."""

    servers: list[Any]

    async def kill(self, server: Any) -> None:
        """SIGKILL one server."""
        ...

    async def pause(self, server: Any) -> None:
        """SIGSTOP one server."""
        ...

    async def resume(self, server: Any) -> None:
        """SIGCONT one server."""
        ...

    async def start_server(self, server: Any) -> None:
        """Start a killed server again."""
        ...

    async def wait_ready(self, timeout: float = 60.0, servers: list[Any] | None = None) -> None:
        """Until the given servers serve."""
        ...


def _servers_to_hit(ensemble: Ensemble, rng: random.Random) -> list[Any]:
    servers = list(ensemble.servers)
    if len(servers) == 1:
        return servers
    # A minority keeps the ensemble serving (its leader may move); a majority takes it down.
    count = rng.choice((1, len(servers) // 2 + 1))
    return sorted(rng.sample(servers, count), key=lambda s: s.sid)


class ZooKeeperNemesis:
    """Kill, pause or partition the ZooKeeper ensemble the nodes coordinate through."""

    name = "zk"

    def __init__(self, ensemble: Ensemble, db: DB, net: Net) -> None:
        self.ensemble, self.db, self.net = ensemble, db, net
        self.killed: list[Any] = []
        self.paused: list[Any] = []
        self.cut = False

    async def start(self, rng: random.Random) -> Event:
        """Inject one ZooKeeper fault, drawn from kill, pause and partition."""
        # Where a host's rules cannot cut ZooKeeper apart from the node beside it, no partition.
        action = rng.choice(ACTIONS if getattr(self.ensemble, "can_partition", True) else ("kill", "pause"))
        if action == "partition":
            nodes = self.db.node_ids()
            spec = rng.choice(("one", "majority", "all"))
            count = {"one": 1, "majority": len(nodes) // 2 + 1, "all": len(nodes)}[spec]
            cut_off = sorted(rng.sample(nodes, count))
            links = {(n, s.name) for n in cut_off for s in self.ensemble.servers}
            await self.net.cut(links)
            self.cut = True
            return Event("partition-zk", {"nodes": cut_off,
                                      "servers": [s.name for s in self.ensemble.servers]})
        hit = _servers_to_hit(self.ensemble, rng)
        for s in hit:
            if action == "kill":
                await self.ensemble.kill(s)
                self.killed.append(s)
            else:
                await self.ensemble.pause(s)
                self.paused.append(s)
        return Event(f"{action}-zk", {"servers": [s.name for s in hit],
                                  "of": len(self.ensemble.servers)})

    async def stop(self) -> Event:
        """Undo the fault: restart killed servers, resume paused ones, heal the cut links."""
        undone = await self._undo()
        return Event("heal-zk", undone or "nothing to undo")

    async def _undo(self) -> dict[str, Any]:
        undone: dict[str, Any] = {}
        if self.paused:
            for s in self.paused:
                await self.ensemble.resume(s)
            undone["resumed"] = [s.name for s in self.paused]
            self.paused = []
        if self.killed:
            for s in self.killed:
                await self.ensemble.start_server(s)
            restarted, self.killed = self.killed, []
            await self.ensemble.wait_ready(servers=restarted)
            undone["restarted"] = [s.name for s in restarted]
        if self.cut:
            await self.net.heal()
            self.cut = False
            undone["healed"] = True
        return undone

    async def heal(self) -> dict[str, Any]:
        """Undo whatever is still in force (every exit path)."""
        with trio.CancelScope(shield=True):
            return await self._undo()
