"""`harness sim`: a campaign against a simulated cluster (sim/), under the same Deployment, DB
and Net interfaces as local processes, so the same workloads, generator, nemeses, history,
checkers and report run unchanged.

One run is one ``trio.run`` under sim's virtual clock with deterministic scheduling: the same
seed and code give the same history, byte for byte. See docs/sim.md.
"""

from __future__ import annotations

import hashlib
import io
import logging
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from harness import datapaths, store, topology
from harness.progress import Progress
from node.client import open_client
from sim.logs import HarnessOnly, NodeLogs
from sim.scheduler import make_deterministic
from sim.scratch import make_scratch, move_into
from sim.scratch import remove as remove_scratch
from sim.world import SimWorld, WorldSpec

log = logging.getLogger("harness.deploy.sim")

# How long (virtual seconds) gossip may take to see every node UP, as for local clusters.
CONVERGE_TIMEOUT = 30.0


class SimCluster:
    """The campaign's view of the simulated cluster (what LocalCluster offers it)."""

    def __init__(self, world: SimWorld) -> None:
        self.world = world
        self.client_network = world.client_network()

    def node_ids(self) -> list[str]:
        """Node ids in order."""
        return self.world.node_ids()

    def client_address(self, node_id: str) -> tuple[str, int]:
        """Where clients reach ``node_id`` on the simulated network."""
        from sim.world import CLIENT_PORT

        return node_id, CLIENT_PORT

    def describe(self) -> dict[str, Any]:
        """The topology, for test.json."""
        return {nid: {"client": f"{nid}:9042", "internode": f"{nid}:7000", "dir": str(n.dir)}
                for nid, n in self.world.nodes.items()}

    async def start(self) -> None:
        """Start every node."""
        for nid in self.world.node_ids():
            await self.world.start_node(nid)

    async def wait_converged(self, timeout: float = CONVERGE_TIMEOUT, nodes: list[str] | None = None) -> None:
        """Wait until every running node sees every running node UP and NORMAL."""
        from harness.deploy.local import DeployError

        w = self.world
        want = set(nodes or [nid for nid in w.node_ids() if w.nodes[nid].alive() and not w.paused(nid)])
        with trio.move_on_after(timeout):
            while True:
                if all([await self._sees(nid, want) for nid in sorted(want)]):
                    return
                await trio.sleep(0.25)
        raise DeployError(f"gossip did not converge on {sorted(want)} within {timeout:g} virtual s")

    async def _sees(self, node_id: str, want: set[str]) -> bool:
        # Read the node's own view instead of asking for it over the network (the status admin
        # op): what `status` would say (U/D from its failure detector, each member's status), at
        # no cost in messages, tasks or the op's ring ownership and data-directory walk, which
        # together cost about half of the start-up wait's CPU.
        await trio.lowlevel.checkpoint()
        n = self.world.nodes.get(node_id)
        node = n.node if n is not None and n.alive() and not self.world.paused(node_id) else None
        if node is None or not node.started:
            return False
        up = {m for m, info in node._members().items() if node.is_alive(m) and info.status == "NORMAL"}
        return want <= up

    def crashed(self) -> dict[str, str]:
        """Nodes that died on their own."""
        return self.world.crashed()

    async def stop(self) -> None:
        """Stop every node (nodes that left the ring too) at once."""
        with trio.CancelScope(shield=True):
            await self.world.halt()


# Virtual seconds a process signal (kill, start, SIGSTOP, SIGCONT) takes the harness to send, as
# the local deployment's os.kill calls follow one another: without it every node a nemesis
# resumed ran its held requests at one virtual instant, and coordinators on different nodes
# stamped concurrent writes with one microsecond (a timestamp tie no real cluster makes).
SIGNAL_DELAY_S = (20e-6, 200e-6)


class SimDB:
    """The nemesis's view of the simulated nodes (LocalDB's interface)."""

    def __init__(self, cluster: SimCluster) -> None:
        import random

        self.cluster = cluster
        self.world = cluster.world
        # Its own stream (not the world's): the network's and disks' draws stay as they were.
        self._signal_rng = random.Random(f"signals-{self.world.spec.seed}")

    async def _signal_takes_time(self) -> None:
        await trio.sleep(self._signal_rng.uniform(*SIGNAL_DELAY_S))

    def node_ids(self) -> list[str]:
        """Node ids."""
        return self.world.node_ids()

    async def kill(self, node_id: str) -> None:
        """Crash the node (its disk as the world's crash mode says)."""
        await self._signal_takes_time()
        await self.world.kill(node_id)

    async def restart(self, node_id: str) -> None:
        """Start a fresh incarnation from its files."""
        await self._signal_takes_time()
        await self.world.start_node(node_id)

    async def pause(self, node_id: str) -> None:
        """Stop its tasks and hold its traffic (SIGSTOP)."""
        await self._signal_takes_time()
        self.world.pause(node_id)

    async def resume(self, node_id: str) -> None:
        """Let its tasks run and its traffic flow (SIGCONT)."""
        await self._signal_takes_time()
        self.world.resume(node_id)

    async def admin(self, node_id: str, op: str, **fields: Any) -> dict[str, Any]:
        """An admin operation over the simulated network."""
        from nemesis.membership import admin_timeout

        with trio.fail_after(admin_timeout(op)):
            async with open_client(*self.cluster.client_address(node_id), secret=self.world.spec.secret,
                                   network=self.cluster.client_network) as c:
                return await c.admin(op, **fields)

    async def add_node(self) -> str:
        """Start a fresh node that bootstraps into the ring (membership nemesis), telling the
        running members its address first, as the local deployment does."""
        import contextlib

        from sim.world import INTERNODE_PORT

        nid = self.world.add_node()
        for b in self.world.node_ids():
            if b != nid and self.world.nodes[b].alive():
                with contextlib.suppress(Exception):  # a node that is down reads it from its config
                    await self.admin(b, "route", node=nid, address=f"{nid}:{INTERNODE_PORT}")
        await self.world.start_node(nid)
        return nid

    async def forget_node(self, node_id: str) -> None:
        """A node that left the ring is no longer a target."""
        self.world.forget(node_id)

    def capacity(self) -> int | None:
        """No limit of its own: every added node is a new simulated host."""
        return None


class SimNet:
    """The nemesis's view of the simulated network (ProxyNet's interface)."""

    def __init__(self, world: SimWorld) -> None:
        self.world = world

    async def cut(self, links: Iterable[tuple[str, str]]) -> None:
        """Discard traffic on each directed link."""
        self.world.net.cut_links(links)
        await trio.lowlevel.checkpoint()

    async def heal(self) -> None:
        """Remove every cut, closing the connections they held."""
        self.world.net.heal()
        await trio.lowlevel.checkpoint()

    async def slow(self, links: Iterable[tuple[str, str]], latency_ms: int, jitter_ms: int) -> None:
        """Add latency to each link."""
        self.world.net.slow(links, latency_ms, jitter_ms)
        await trio.lowlevel.checkpoint()

    async def unslow(self) -> None:
        """Remove every added latency."""
        self.world.net.unslow()
        await trio.lowlevel.checkpoint()


class SimDeployment:
    """A Deployment whose cluster is a SimWorld living in the caller's nursery."""

    # history.jsonl is written buffered, not flushed per operation: a run killed midway is
    # replayed from its seed, and a write system call per operation was a percent of a seed.
    flush_history = False

    def __init__(self, world: SimWorld) -> None:
        self.world = world
        # A power-loss crash keeps only what was fsynced (harness/restart_pass.py then does not run).
        self.kills_lose_unsynced = world.spec.crash != "process"
        self.cluster = SimCluster(world)
        self.db = SimDB(self.cluster)
        self.net = SimNet(world)

    @staticmethod
    def clock_ns() -> int:
        """Virtual nanoseconds: the history's clock."""
        return int(round(trio.current_time() * 1e9))

    async def setup(self) -> None:
        """Start the nodes."""
        await self.cluster.start()

    async def clock_db(self) -> Any:
        """Each node's runtime clock, through its admin op (as for local processes)."""
        return self.db

    async def teardown(self, leave_running: bool, run_dir: Path) -> None:
        """Stop every node and record the trace hash."""
        await self.cluster.stop()


class SimProgress(Progress):
    """Progress in virtual time."""

    def line(self) -> str:
        """The status line with virtual seconds left."""
        if self.recorder is None:
            return f"{self.phase_name}..."
        c = self.recorder.counts
        now = trio.current_time()
        left = max(0.0, self.time_limit - (now - self.started))
        faults = ",".join(self.schedule.active) if self.schedule and self.schedule.active else "none"
        return (f"{self.phase_name}: ok {c['ok']}  fail {c['fail']}  info {c['info']}"
                f"  faults: {faults}  left {left:4.0f} virtual s")

    def attach(self, recorder: Any, schedule: Any, time_limit: float) -> None:
        """Start counting (virtual time)."""
        super().attach(recorder, schedule, time_limit)
        self.started = trio.current_time()


@dataclass
class SimOutcome:
    """What one simulated campaign produced, beyond the campaign's own Outcome."""

    outcome: Any
    seed: int
    virtual_s: float
    wall_s: float
    trace_hash: str
    history_hash: str
    trace_lines: list[str]
    trace_events: int


def sim_secret(seed: int) -> str:
    """The cluster secret of a seed's world (part of what crosses the wire, so fixed per seed)."""
    return hashlib.sha256(f"ringlab-sim-{seed}".encode()).hexdigest()[:32]


def run_one(opts: Any, run_dir: Path, *, crash: str = "process", tear: bool = False, loss: float = 0.0,
            keep_trace: bool = False, quiet: bool = False, report: bool = True,
            keep_data: bool = True) -> SimOutcome:
    """Run one simulated campaign in ``run_dir`` (a normal run directory) and check it.

    The nodes' data files live in a memory-backed scratch directory during the run
    (sim/scratch.py) and move to ``nodes/<node>/data`` at its end unless ``keep_data`` is false
    (a sweep: a valid seed's run directory is deleted, and a failing seed's replay command
    makes them again).
    """
    from harness.run import campaign, setup_logging, write_report

    assert opts.seed is not None
    seed = int(opts.seed)
    secret = sim_secret(seed)
    handler = setup_logging(run_dir)
    handler.addFilter(HarnessOnly())
    node_logs = NodeLogs(run_dir / "nodes")
    root = logging.getLogger()
    root.addHandler(node_logs)
    state: dict[str, Any] = {}
    out: Any = io.StringIO() if quiet else sys.stdout
    progress = SimProgress(out)
    progress.tty = False

    async def main() -> Any:
        async with trio.open_nursery() as nursery:
            world = SimWorld(WorldSpec(opts.node_count() or 5, run_dir / "nodes", secret, seed,
                                       commitlog_sync=opts.commitlog_sync,
                                       faults={f: True for f in opts.validation_faults},
                                       crash=crash, tear=tear, loss=loss, keep_trace=keep_trace,
                                       data_root=scratch, storage=datapaths.sim_storage(opts), hints=datapaths.node_hints(opts),
                                       locations=topology.sim_locations(opts)),
                                       nursery, trace)
            state["world"] = world
            # The report reads nodes/: it is written once the data is back in the run directory.
            result = await campaign(opts, run_dir, progress, deployment=SimDeployment(world), secret=secret,
                                    report=report and scratch is None)
            state["virtual"] = trio.current_time()
            state["valid"] = result.valid
            nursery.cancel_scope.cancel()
            return result

    started = time.monotonic()
    undo_scheduling = make_deterministic(seed)
    from sim.clock import WorldClock, patch_trio_sleeps

    from sim.trace import Trace

    # One trace for the world and its clock (which stamps every event with virtual time).
    trace = Trace(keep=keep_trace)
    clock = WorldClock(trace)
    undo_sleeps = patch_trio_sleeps(clock)
    # Every simulated node opens a signal receiver; they close in no particular order, which can
    # leave a Trio handler installed after the run. Put the process's own handlers back.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    scratch = make_scratch()
    try:
        try:
            outcome = trio.run(main, clock=clock)
        finally:
            if "world" in state:
                state["world"].holds.close()
            undo_scheduling()
            undo_sleeps()
            for sig, handler_ in saved.items():
                signal.signal(sig, handler_)
            if scratch is not None and keep_data:
                move_into(scratch, run_dir / "nodes")
        if report and scratch is not None:
            progress.phase("writing the report")
            write_report(run_dir)
    finally:
        if scratch is not None:
            remove_scratch(scratch)
        root.removeHandler(handler)
        handler.close()
        root.removeHandler(node_logs)
        node_logs.close()
    wall = time.monotonic() - started
    world: SimWorld = state["world"]
    history = (run_dir / store.HISTORY_FILE).read_bytes() if (run_dir / store.HISTORY_FILE).exists() else b""
    sim_info = {"trace_hash": trace.digest(), "trace_events": trace.count,
                "history_hash": hashlib.sha256(history).hexdigest(), "virtual_s": round(state.get("virtual", 0.0), 3),
                "wall_s": round(wall, 3), "crash": crash, "tear": tear, "loss": loss,
                "crashes": world.crash_stats, "fsyncs": world.system.fsyncs}
    test = store.read_json(run_dir / store.TEST_FILE)
    test["sim"] = sim_info
    store.write_json(run_dir / store.TEST_FILE, test)
    if keep_trace:
        trace.write(run_dir / "trace.log")
    return SimOutcome(outcome, seed, state.get("virtual", 0.0), wall, trace.digest(),
                      sim_info["history_hash"], trace.lines, trace.count)
