"""The simulated world: N real ringlab nodes in one Trio run, over virtual time, the in-memory
network and the simulated disk, each with its own seeded runtime.

Faults act on the world as the real ones act on processes and links: ``kill`` cancels the node's
cancel scope (its tasks unwind, its connections end, its listeners vanish) and crashes its disk;
``restart`` runs a fresh Node from the same files; ``pause`` stops its tasks (timers included)
as SIGSTOP does, while its peers' messages queue, and holds every byte to and from it;
the clock nemesis uses the node's admin op ``clock`` exactly as on a real cluster.
"""

from __future__ import annotations

import logging
import random
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from node.config import NodeConfig, parse_config
from node.runtime import Rng, Runtime, use_system
from sim.clock import SimClock
from sim.disk import CRASH_MODES, SimSystem
from sim.net import HARNESS, NodeNetwork, SimNetwork
from sim.scheduler import TaskHolds
from sim.trace import Trace

log = logging.getLogger("sim.world")

# Ports every simulated node listens on (hosts are the node ids, so they never collide).
CLIENT_PORT = 9042
INTERNODE_PORT = 7000
# Seeds per cluster, as the local deployment chooses them.
MAX_SEEDS = 3

# Which simulated node the running task belongs to ("" for the harness): routes log records
# to that node's log and lets the trace name who did what.
CURRENT_NODE: ContextVar[str] = ContextVar("sim_current_node", default="")


@dataclass
class WorldSpec:
    """What to simulate."""

    node_count: int
    base_dir: Path
    secret: str
    seed: int
    num_tokens: int = 16
    commitlog_sync: str = "batch"
    faults: dict[str, bool] = field(default_factory=dict)
    crash: str = "process"
    tear: bool = False
    loss: float = 0.0
    keep_trace: bool = False
    # Where the nodes' data directories live during the run (sim/scratch.py); None: in base_dir.
    data_root: Path | None = None
    # More node.toml [storage] settings (harness/datapaths.py node_storage: small memtables).
    storage: dict[str, Any] = field(default_factory=dict)
    # node.toml [hints] settings (harness/datapaths.py node_hints: a short max_hint_window).
    hints: dict[str, Any] = field(default_factory=dict)
    # Each node's (datacenter, rack) by its creation index (harness/topology.py location); None:
    # every node in dc1/rack1.
    locations: tuple[tuple[str, str], ...] | None = None


@dataclass
class SimNode:
    """One simulated node: its files, its current incarnation and what the harness did to it."""

    node_id: str
    index: int
    dir: Path
    # The parent of its data directory: ``dir``, or the run's scratch directory for this node.
    data_home: Path
    scope: trio.CancelScope | None = None
    node: Any = None
    done: trio.Event | None = None
    runs: int = 0
    error: str | None = None
    stopping: bool = False
    # Joined by the membership nemesis: it bootstraps (streams its ranges) on first start.
    joiner: bool = False

    @property
    def data_dir(self) -> Path:
        """Where the node keeps its data (what a crash acts on)."""
        return self.data_home / "data"

    def alive(self) -> bool:
        """Whether an incarnation is running."""
        return self.done is not None and not self.done.is_set()


class SimWorld:
    """Owns the simulated network, disk and nodes of one run; lives in the nursery given to it."""

    def __init__(self, spec: WorldSpec, nursery: trio.Nursery, trace: Trace | None = None) -> None:
        if spec.crash not in CRASH_MODES:
            raise ValueError(f"crash mode must be one of {', '.join(CRASH_MODES)}, got {spec.crash!r}")
        self.spec = spec
        self.nursery = nursery
        # The run's trace, when the caller made it before the run (for the world clock to bind).
        self.trace = trace if trace is not None else Trace(keep=spec.keep_trace)
        master = random.Random(spec.seed)
        self.net = SimNetwork(random.Random(master.getrandbits(64)), self.trace, spec.loss)
        self.system = SimSystem(self.trace)
        self.holds = TaskHolds(CURRENT_NODE)
        self.tear_rng = random.Random(master.getrandbits(64)) if spec.tear else None
        self.nodes: dict[str, SimNode] = {}
        for i in range(1, spec.node_count + 1):
            self._describe(f"n{i}", i - 1)
        self.crash_stats: list[dict[str, Any]] = []
        # Nodes that left the ring (decommission, removenode): no longer targets or seeds.
        self.forgotten: set[str] = set()

    # ---- topology

    def node_ids(self) -> list[str]:
        """The members' ids in order (nodes that left the ring excluded)."""
        return [n for n in self.nodes if n not in self.forgotten]

    def add_node(self) -> str:
        """Describe a fresh node that will bootstrap into the ring (start it with start_node)."""
        nid = f"n{len(self.nodes) + 1}"
        self._describe(nid, len(self.nodes), joiner=True)
        self.trace.add("add", nid)
        return nid

    def _describe(self, nid: str, index: int, joiner: bool = False) -> None:
        root = self.spec.data_root if self.spec.data_root is not None else self.spec.base_dir
        self.nodes[nid] = SimNode(nid, index, self.spec.base_dir / nid, root / nid, joiner=joiner)

    def forget(self, nid: str) -> None:
        """A node that left the ring."""
        self.forgotten.add(nid)
        self.nodes[nid].stopping = True

    def client_network(self) -> NodeNetwork:
        """The network view the harness's clients use (never partitioned)."""
        return self.net.for_node(HARNESS)

    def config(self, nid: str) -> NodeConfig:
        """The node's configuration, as node.toml would give it."""
        n = self.nodes[nid]
        ids = self.node_ids()
        everyone = list(self.nodes)
        raw: dict[str, Any] = {
            "node_id": nid,
            "data_dir": str(n.data_dir),
            "listen_host": nid,
            "client_port": CLIENT_PORT,
            "internode_port": INTERNODE_PORT,
            "seeds": [f"{s}:{INTERNODE_PORT}" for s in ids[:MAX_SEEDS]],
            "num_tokens": self.spec.num_tokens,
            "cluster_secret": self.spec.secret,
            "rng_seed": self.spec.seed * 1000 + n.index,
            "routes": {b: f"{b}:{INTERNODE_PORT}" for b in everyone if b != nid},
            "storage": {**self.spec.storage, "commitlog_sync": self.spec.commitlog_sync},
            "membership": {"auto_bootstrap": n.joiner},
            "faults": dict(self.spec.faults),
            "hints": dict(self.spec.hints),
        }
        if self.spec.locations is not None:
            raw["datacenter"], raw["rack"] = self.spec.locations[n.index]
        return parse_config(raw)

    # ---- lifecycle

    async def start_node(self, nid: str) -> None:
        """Start an incarnation of ``nid`` and wait until it serves clients."""
        n = self.nodes[nid]
        if n.alive():
            return
        n.dir.mkdir(parents=True, exist_ok=True)
        n.data_home.mkdir(parents=True, exist_ok=True)
        n.stopping = False
        n.runs += 1
        self.trace.add("start", nid, n.runs)
        await self.nursery.start(self._run_node, nid)

    async def _run_node(self, nid: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from node.server import Node

        n = self.nodes[nid]
        n.done = done = trio.Event()
        CURRENT_NODE.set(nid)
        runtime = Runtime(clock=SimClock(), network=self.net.for_node(nid), rng=Rng(self.spec.seed * 1000 + n.index))
        try:
            with use_system(self.system), trio.CancelScope() as scope:
                n.scope = scope
                n.node = Node(self.config(nid), runtime)
                # A simulated node is not a process: SIGTERM and SIGINT belong to the worker that
                # runs the world (a sweep's pool terminates its workers with SIGTERM).
                n.node.handles_signals = False
                await n.node.run(task_status=task_status)
        except Exception as exc:  # noqa: BLE001 - a node that dies on its own is a finding
            n.error = f"{type(exc).__name__}: {exc}"
            log.exception("node %s crashed", nid)
            self.trace.add("died", nid, type(exc).__name__)
        finally:
            n.scope = None
            n.node = None
            done.set()

    async def kill(self, nid: str) -> None:
        """Crash ``nid``: cancel its tasks, end its connections, crash its disk as configured."""
        n = self.nodes[nid]
        if not n.alive() or n.scope is None or n.done is None:
            return
        n.stopping = True
        image = self.system.durable_image(n.data_dir)
        self.trace.add("kill", nid)
        self.holds.resume(nid)  # a SIGKILL ends a stopped process too: its tasks must unwind
        self.net.drop_node(nid)
        n.scope.cancel()
        await n.done.wait()
        tear = self.tear_rng if self.spec.tear else None
        stats = self.system.crash(n.data_dir, image, self.spec.crash, tear)
        self.crash_stats.append({"node": nid, "mode": self.spec.crash, **stats})
        log.info("killed %s (%s crash: %s)", nid, self.spec.crash, stats)

    async def stop_node(self, nid: str) -> None:
        """Stop ``nid`` cleanly (the end of a run): drain as SIGTERM would, else cancel."""
        n = self.nodes[nid]
        if not n.alive() or n.done is None:
            return
        n.stopping = True
        self.resume(nid)
        if n.node is not None:
            n.node._drain.set()
        with trio.move_on_after(10):
            await n.done.wait()
        if n.scope is not None:
            n.scope.cancel()
        await n.done.wait()
        self.net.drop_node(nid)

    async def halt(self) -> None:
        """End every node at once (the end of a run): each incarnation is cancelled as a kill
        would, but its disk keeps every write (nothing reads the nodes after the run, so the
        drain a real teardown does, a flush per node, would only cost time)."""
        running = [n for _, n in sorted(self.nodes.items()) if n.alive() and n.scope is not None]
        for n in running:
            n.stopping = True
            self.holds.resume(n.node_id)
            self.net.drop_node(n.node_id)
            assert n.scope is not None
            n.scope.cancel()
        for n in running:
            assert n.done is not None
            await n.done.wait()
        self.trace.add("halt", len(running))

    def pause(self, nid: str) -> None:
        """Stop ``nid``'s tasks and hold every byte to and from it (SIGSTOP)."""
        self.holds.pause(nid)
        self.net.pause(nid)

    def resume(self, nid: str) -> None:
        """Release a paused node (SIGCONT): its held tasks run, its bytes flow."""
        self.holds.resume(nid)
        self.net.resume(nid)

    def paused(self, nid: str) -> bool:
        """Whether ``nid`` is paused."""
        return self.holds.paused(nid) or nid in self.net.paused

    def crashed(self) -> dict[str, str]:
        """Nodes that died on their own: node → why."""
        return {nid: n.error for nid, n in self.nodes.items() if n.error is not None and nid not in self.forgotten}
