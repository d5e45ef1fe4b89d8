"""The nemeses a campaign can run: partition, kill, pause, clock, latency.

Each nemesis has ``start`` (inject a fault, returning what it did for the history), ``stop``
(undo it) and ``heal`` (undo everything it may have done; idempotent, called on every exit path).
They act through two small interfaces so the same nemesis drives local processes and remote
hosts: a :class:`DB` (process control and a node's admin port) and a :class:`Net` (cutting and
slowing links). :class:`Schedule` runs Jepsen's standard cycle — sleep, start a fault, sleep, stop
it — picking one of the enabled nemeses each time from the seeded RNG.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from nemesis.grudge import SHAPES, partition

log = logging.getLogger("nemesis")

NEMESES = ("partition", "kill", "pause", "clock", "latency", "membership", "zk",
           "flush-compact", "repair", "crash", "corrupt", "disk",  # these five: nemesis/storage.py
           "admin", "move",  # operator actions through ringctl: nemesis/operator.py
           "clients")  # malformed requests and frames: nemesis/clients.py
# `all` is every fault nemesis (membership changes are opt-in: they take tens of seconds each;
# zk needs --coordination zookeeper; disk fails a node's disk, opt-in like corrupt; corrupt needs the nodes' files, which only local
# deployments reach; admin and move are operator actions and clients sends malformed requests,
# opt-in like membership); `none` runs the workload without faults.
NEMESIS_ALIASES = {"all": ("partition", "kill", "pause", "clock", "latency", "flush-compact", "repair", "crash"),
                   "none": ()}
# Which nodes a process fault hits, as Jepsen's node specs.
TARGET_SPECS = ("one", "minority", "majority", "all")
# Clock bumps: Jepsen bumps by up to 2^18 ms; we stay within a few seconds by default so LWW
# inversions are frequent but nodes still gossip sensibly.
MAX_BUMP_MS = 4_000
# Strobe: flip a node's clock back and forth every period for a duration (Jepsen's strobe-time).
STROBE_DELTA_MS = 1_000
STROBE_PERIOD_MS = 50
STROBE_DURATION_S = 2.0
# Fault windows: with no --nemesis-interval the schedule fits at least this many windows of each
# nemesis into the time limit (Jepsen's combined nemesis gives every fault package its turns);
# a single window per campaign says little about recovery.
WINDOWS_PER_NEMESIS = 3
# The longest pause between fault changes when the schedule fits windows to the time limit (the
# old fixed default), and the shortest: a fault shorter than a second or two is gone before the
# failure detector convicts anyone.
MAX_AUTO_INTERVAL_S = 10.0
MIN_AUTO_INTERVAL_S = 1.0
# Latency on links: Jepsen's netem default is 50 ms; with jitter it reaches timeouts only rarely.
LATENCY_MS = 100
JITTER_MS = 50


class DB(Protocol):
    """What process and clock nemeses need from a deployment."""

    def node_ids(self) -> list[str]:
        """The nodes, in order."""
        ...

    async def kill(self, node_id: str) -> None:
        """SIGKILL a node."""
        ...

    async def restart(self, node_id: str) -> None:
        """Start a killed node and wait until it answers."""
        ...

    async def pause(self, node_id: str) -> None:
        """SIGSTOP a node."""
        ...

    async def resume(self, node_id: str) -> None:
        """SIGCONT a node."""
        ...

    async def admin(self, node_id: str, op: str, **fields: Any) -> dict[str, Any]:
        """Run an admin operation on a node."""
        ...


class Net(Protocol):
    """What network nemeses need: directed links that can be cut and slowed."""

    async def cut(self, links: Iterable[tuple[str, str]]) -> None:
        """Drop traffic on the links silently."""
        ...

    async def heal(self) -> None:
        """Restore every link."""
        ...

    async def slow(self, links: Iterable[tuple[str, str]], latency_ms: int, jitter_ms: int) -> None:
        """Add latency to the links."""
        ...

    async def unslow(self) -> None:
        """Remove added latency."""
        ...


def targets(spec: str, nodes: Sequence[str], rng: random.Random) -> list[str]:
    """The nodes a process fault hits for Jepsen's node spec ``spec``."""
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    n = len(nodes)
    count = {"one": 1, "minority": max(1, (n - 1) // 2), "majority": n // 2 + 1, "all": n}[spec]
    return sorted(shuffled[:count])


@dataclass
class Event:
    """What a nemesis step did, for the history: its f and value, and whether it may have changed
    the ring's tokens or members (a join, decommission, removenode or move, even one that failed
    part way: its streams and pending writes may have put data on nodes)."""

    f: str
    value: Any
    ring_change: bool = False


class PartitionNemesis:
    """Cut the links of a Jepsen partition shape."""

    name = "partition"

    def __init__(self, db: DB, net: Net, shapes: Sequence[str]) -> None:
        for s in shapes:
            if s not in SHAPES:
                raise ValueError(f"unknown partition shape {s!r}; one of {', '.join(SHAPES)}")
        self.db, self.net, self.shapes = db, net, list(shapes)

    async def start(self, rng: random.Random) -> Event:
        """Cut a partition drawn from the enabled shapes."""
        p = partition(rng.choice(self.shapes), self.db.node_ids(), rng)
        await self.net.cut(p.links())
        return Event("start-partition", p.to_json())

    async def stop(self) -> Event:
        """Heal the network, recording what the cut dropped where the network can count it."""
        dropped = await self.heal()
        return Event("stop-partition", {"healed": True, "dropped_packets": dropped} if dropped is not None else "network healed")

    async def heal(self) -> dict[str, dict[str, int]] | None:
        """Heal the network; returns packets dropped per destination and source where countable."""
        counters = getattr(self.net, "counters", None)
        dropped = None
        if counters is not None:
            try:
                dropped = await counters()
            except Exception as exc:  # noqa: BLE001 - healing matters more than the statistics
                log.warning("could not read drop counters: %s", exc)
        await self.net.heal()
        return dropped


class KillNemesis:
    """SIGKILL nodes, then restart them."""

    name = "kill"

    def __init__(self, db: DB, specs: Sequence[str] = TARGET_SPECS) -> None:
        self.db = db
        self.specs = list(specs)
        self.killed: list[str] = []

    async def start(self, rng: random.Random) -> Event:
        """Kill one, a minority, a majority or all nodes."""
        spec = rng.choice(self.specs)
        victims = targets(spec, self.db.node_ids(), rng)
        for nid in victims:
            await self.db.kill(nid)
        self.killed = sorted(set(self.killed) | set(victims))
        return Event("kill", {"spec": spec, "nodes": victims})

    async def stop(self) -> Event:
        """Restart every killed node."""
        restarted = list(self.killed)
        await self.heal()
        return Event("start", {"nodes": restarted})

    async def heal(self) -> None:
        """Restart every killed node."""
        killed, self.killed = self.killed, []
        async with trio.open_nursery() as nursery:
            for nid in killed:
                nursery.start_soon(self.db.restart, nid)


class PauseNemesis:
    """SIGSTOP nodes, then SIGCONT them."""

    name = "pause"

    def __init__(self, db: DB, specs: Sequence[str] = TARGET_SPECS) -> None:
        self.db = db
        self.specs = list(specs)
        self.paused: list[str] = []

    async def start(self, rng: random.Random) -> Event:
        """Pause one, a minority, a majority or all nodes."""
        spec = rng.choice(self.specs)
        victims = targets(spec, self.db.node_ids(), rng)
        for nid in victims:
            await self.db.pause(nid)
        self.paused = sorted(set(self.paused) | set(victims))
        return Event("pause", {"spec": spec, "nodes": victims})

    async def stop(self) -> Event:
        """Resume every paused node."""
        resumed = list(self.paused)
        await self.heal()
        return Event("resume", {"nodes": resumed})

    async def heal(self) -> None:
        """Resume every paused node."""
        paused, self.paused = self.paused, []
        for nid in paused:
            await self.db.resume(nid)


class ClockNemesis:
    """Bump or strobe nodes' wall clocks through their admin clock control, then reset them."""

    name = "clock"

    def __init__(self, db: DB, max_bump_ms: int = MAX_BUMP_MS) -> None:
        self.db = db
        self.max_bump_ms = max_bump_ms
        self.touched: set[str] = set()

    async def offsets(self) -> dict[str, int | None]:
        """Every node's clock offset in µs (None where the node did not answer)."""
        out: dict[str, int | None] = {}
        for nid in self.db.node_ids():
            try:
                out[nid] = int((await self.db.admin(nid, "clock", action="get"))["offset_us"])
            except Exception as exc:  # noqa: BLE001 - a dead node has no offset to record
                log.debug("clock offset of %s unavailable: %s", nid, exc)
                out[nid] = None
        return out

    async def start(self, rng: random.Random) -> Event:
        """Bump a random subset of nodes by up to ±max_bump_ms, or strobe one node's clock."""
        nodes = self.db.node_ids()
        if rng.random() < 0.75:
            victims = targets(rng.choice(("one", "minority", "majority")), nodes, rng)
            deltas = {nid: rng.choice((-1, 1)) * rng.randrange(1, self.max_bump_ms + 1) for nid in victims}
            for nid, ms in deltas.items():
                await self.db.admin(nid, "clock", action="bump", delta_us=ms * 1000)
            self.touched |= set(victims)
            return Event("bump-clock", {"delta_ms": deltas, "offsets": await self.offsets()})
        nid = rng.choice(nodes)
        self.touched.add(nid)
        deadline = trio.current_time() + STROBE_DURATION_S
        flips = 0
        while trio.current_time() < deadline:
            await self.db.admin(nid, "clock", action="bump", delta_us=(STROBE_DELTA_MS if flips % 2 == 0 else -STROBE_DELTA_MS) * 1000)
            flips += 1
            await trio.sleep(STROBE_PERIOD_MS / 1000)
        return Event("strobe-clock", {"node": nid, "delta_ms": STROBE_DELTA_MS, "period_ms": STROBE_PERIOD_MS,
                                      "flips": flips, "offsets": await self.offsets()})

    async def stop(self) -> Event:
        """Reset every touched clock to real time."""
        reset = sorted(self.touched)
        await self.heal()
        return Event("reset-clock", {"nodes": reset, "offsets": await self.offsets()})

    async def heal(self) -> None:
        """Reset every touched clock (a node that is down is reset when it restarts with a fresh clock)."""
        touched, self.touched = self.touched, set()
        for nid in sorted(touched):
            try:
                await self.db.admin(nid, "clock", action="reset")
            except Exception as exc:  # noqa: BLE001 - a killed node restarts with a real clock anyway
                log.warning("could not reset the clock of %s: %s", nid, exc)


class LatencyNemesis:
    """Add latency and jitter to the links of a random subset of nodes."""

    name = "latency"

    def __init__(self, db: DB, net: Net, latency_ms: int = LATENCY_MS, jitter_ms: int = JITTER_MS) -> None:
        self.db, self.net = db, net
        self.latency_ms, self.jitter_ms = latency_ms, jitter_ms

    async def start(self, rng: random.Random) -> Event:
        """Slow every link into and out of a minority, a majority or all nodes."""
        nodes = self.db.node_ids()
        slow = targets(rng.choice(("one", "majority", "all")), nodes, rng)
        links = {(a, b) for a in nodes for b in nodes if a != b and (a in slow or b in slow)}
        await self.net.slow(links, self.latency_ms, self.jitter_ms)
        return Event("start-latency", {"nodes": slow, "latency_ms": self.latency_ms, "jitter_ms": self.jitter_ms})

    async def stop(self) -> Event:
        """Remove the latency."""
        await self.net.unslow()
        return Event("stop-latency", "latency removed")

    async def heal(self) -> None:
        """Remove the latency."""
        await self.net.unslow()


class Nemesis(Protocol):
    """What every nemesis implements (and, optionally, ``changes_ring = True`` on a nemesis whose
    steps move tokens or members: a step of it that raised is then recorded as a ring change)."""

    name: str

    async def start(self, rng: random.Random) -> Event:
        """Inject the fault; returns what was done."""
        ...

    async def stop(self) -> Event:
        """Undo it."""
        ...

    async def heal(self) -> Any:
        """Undo everything it may have done (idempotent); may return what it measured."""
        ...


def parse_nemeses(text: str) -> list[str]:
    """``partition,kill`` / ``all`` / ``none`` → nemesis names (ValueError naming a bad one)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        # An empty list would run the workload without faults and pass: say `none` to mean that.
        raise ValueError(f"--nemesis {text!r} names no nemesis; give a comma list of "
                         f"{', '.join(NEMESES + tuple(NEMESIS_ALIASES))} ('none' for no faults)")
    names: list[str] = []
    for part in parts:
        if part in NEMESIS_ALIASES:
            names.extend(NEMESIS_ALIASES[part])
        elif part in NEMESES:
            names.append(part)
        else:
            raise ValueError(f"unknown nemesis {part!r}; one of {', '.join(NEMESES + tuple(NEMESIS_ALIASES))}")
    return list(dict.fromkeys(names))


def build(names: Sequence[str], db: DB, net: Net, partition_shapes: Sequence[str],
          clock_db: DB | None = None, target_specs: Sequence[str] = TARGET_SPECS,
          zookeeper: Any = None, operator: tuple[Any, Any] | None = None,
          storage: dict[str, list[str]] | None = None) -> list[Nemesis]:
    """The nemesis objects for ``names`` (``clock_db`` acts on clocks where it differs from ``db``;
    kill and pause draw their victims' count from ``target_specs``; ``operator`` is the
    (ringctl runner, target) of the admin and move nemeses; ``storage`` the corrupt nemesis's
    ``corrupt_modes`` and the disk nemesis's ``disks`` to draw from, where not all of them)."""
    makers: dict[str, Callable[[], Nemesis]] = {
        "partition": lambda: PartitionNemesis(db, net, partition_shapes),
        "kill": lambda: KillNemesis(db, target_specs),
        "pause": lambda: PauseNemesis(db, target_specs),
        "clock": lambda: ClockNemesis(clock_db or db),
        "latency": lambda: LatencyNemesis(db, net),
        "membership": lambda: _membership(db),
        "zk": lambda: _zookeeper(zookeeper, db, net),
        **{n: (lambda n=n: _storage(n, db, target_specs, storage or {})) for n in ("flush-compact", "repair", "crash", "corrupt", "disk")},
        **{n: (lambda n=n: _operator(n, db, operator)) for n in ("admin", "move", "clients")},
    }
    return [makers[n]() for n in names]


def _membership(db: DB) -> Nemesis:
    from nemesis.membership import MembershipNemesis

    if not hasattr(db, "add_node"):
        raise ValueError("the membership nemesis needs a deployment that can add nodes (local or ssh)")
    return MembershipNemesis(db)  # type: ignore[arg-type]


def _zookeeper(ensemble: Any, db: DB, net: Net) -> Nemesis:
    from nemesis.zookeeper import ZooKeeperNemesis

    if ensemble is None:
        raise ValueError("the zk nemesis needs --coordination zookeeper")
    return ZooKeeperNemesis(ensemble, db, net)
def _storage(name: str, db: DB, target_specs: Sequence[str], choices: dict[str, list[str]]) -> Nemesis:
    from nemesis.storage import build_storage_nemesis

    return build_storage_nemesis(name, db, list(target_specs), **choices)  # type: ignore[no-any-return]


def _operator(name: str, db: DB, operator: tuple[Any, Any] | None) -> Nemesis:
    from nemesis.operator import build_operator_nemesis

    ringctl, target = operator or (None, None)
    return build_operator_nemesis(name, db, ringctl, target)  # type: ignore[no-any-return]


# record(type, f, value, action, ring_change): appends a nemesis operation to the history.
Record = Callable[[str, str, Any, str | None, bool], None]


class Schedule:
    """Jepsen's standard nemesis cycle: sleep, start one fault, sleep, stop it; repeat.

    Which fault comes next is drawn from the seeded rng as a shuffled round: every nemesis named
    runs once in each round of ``len(nemeses)`` cycles (a random choice could leave one of three
    nemeses unused for a whole short campaign), in an order that differs from round to round.

    With a fixed ``interval`` every sleep lasts that long. With ``time_limit`` instead (and
    ``interval`` None) the schedule plans WINDOWS_PER_NEMESIS windows of each nemesis and sizes
    each sleep as the time left over the sleeps left (at most MAX_AUTO_INTERVAL_S, at least
    MIN_AUTO_INTERVAL_S), so steps that take time (a restart, a stream) shorten the sleeps after
    them instead of pushing windows past the time limit; after the plan it keeps cycling.
    """

    def __init__(self, nemeses: Sequence[Nemesis], interval: float | None, rng: random.Random,
                 record: Record, time_limit: float | None = None) -> None:
        if interval is None and time_limit is None:
            raise ValueError("a schedule needs an interval or a time limit to fit its windows into")
        self.nemeses = list(nemeses)
        self.interval = interval
        self.time_limit = time_limit
        self.planned = WINDOWS_PER_NEMESIS * len(self.nemeses) if interval is None else None
        self.rng = rng
        self.record = record
        self.active: list[str] = []
        self.running: str | None = None  # the step in progress (start-X / stop-X)
        self.windows: dict[str, int] = {}  # fault windows opened per nemesis
        self._pauses = 0
        self._steps = 0
        self._step_s = 0.0  # time spent in steps (a restart, a stream, a strobe)
        self._deadline: float | None = None
        self._finishing = trio.Event()
        self._finished = trio.Event()

    def describe(self) -> dict[str, Any]:
        """How the schedule is set (for test.json)."""
        if self.interval is not None:
            return {"mode": "fixed", "interval_s": self.interval}
        return {"mode": "fit", "windows_per_nemesis": WINDOWS_PER_NEMESIS, "planned_windows": self.planned,
                "time_limit_s": self.time_limit, "max_interval_s": MAX_AUTO_INTERVAL_S,
                "min_interval_s": MIN_AUTO_INTERVAL_S}

    def next_sleep(self, now: float) -> float:
        """Seconds to sleep before the next step."""
        if self.interval is not None:
            return self.interval
        assert self._deadline is not None and self.planned is not None
        left = 2 * self.planned - self._pauses
        if left <= 0:  # the plan is done: keep cycling at its average pace
            return min(MAX_AUTO_INTERVAL_S, max(MIN_AUTO_INTERVAL_S, (self.time_limit or 0) / (2 * self.planned + 1)))
        # Each sleep left is followed by a step; steps so far say how long one takes. One more
        # share than sleeps left, so the last window closes before the time limit.
        per_step = self._step_s / self._steps if self._steps else 0.0
        share = (self._deadline - now - per_step * left) / (left + 1)
        return min(MAX_AUTO_INTERVAL_S, max(MIN_AUTO_INTERVAL_S, share))

    async def run(self) -> None:
        """Cycle until :meth:`finish` (or cancellation); the caller heals on every exit path."""
        if self.time_limit is not None:
            self._deadline = trio.current_time() + self.time_limit
        try:
            round_: list[Nemesis] = []
            while self.nemeses:
                if await self._pause():
                    return
                if not round_:
                    round_ = list(self.nemeses)
                    self.rng.shuffle(round_)
                nemesis = round_.pop()
                self.windows[nemesis.name] = self.windows.get(nemesis.name, 0) + 1
                await self._step(nemesis, start=True)
                if await self._pause():
                    return
                await self._step(nemesis, start=False)
            await self._finishing.wait()
        finally:
            self._finished.set()

    async def _pause(self) -> bool:
        """Sleep one interval; True if the schedule is finishing."""
        sleep = self.next_sleep(trio.current_time())
        self._pauses += 1
        with trio.move_on_after(sleep):
            await self._finishing.wait()
        return self._finishing.is_set()

    async def finish(self, timeout: float) -> bool:
        """Start no new step and wait (at most ``timeout``) for the one running to complete: a
        membership change is left done or failed, never abandoned half way. Whatever fault is
        active stays for :meth:`heal_all`. Returns whether the schedule stopped in time."""
        self._finishing.set()
        with trio.move_on_after(timeout):
            await self._finished.wait()
        return self._finished.is_set()

    async def _step(self, nemesis: Nemesis, *, start: bool) -> None:
        f = f"start-{nemesis.name}" if start else f"stop-{nemesis.name}"
        self.record("invoke", f, None, None, False)
        if start:
            self.active.append(nemesis.name)
        self.running = f
        began = trio.current_time()
        try:
            event = await (nemesis.start(self.rng) if start else nemesis.stop())
        except Exception as exc:
            log.exception("nemesis %s failed", f)
            if start and nemesis.name in self.active:
                self.active.remove(nemesis.name)
            # A start that raised injected nothing (Jepsen's fail: it did not happen; heal_all
            # undoes any part of it anyway). A stop that raised may have left the fault in
            # place: that is indeterminate, info.
            self.record("fail" if start else "info", f, {"error": f"{type(exc).__name__}: {exc}"}, None,
                        bool(getattr(nemesis, "changes_ring", False)))
            return
        finally:
            self.running = None
            self._steps += 1
            self._step_s += trio.current_time() - began
            if not start and nemesis.name in self.active:
                self.active.remove(nemesis.name)
        # Invocation and completion share f (start-<name> / stop-<name>) so fault windows are
        # found generically; what exactly happened (kill, bump-clock, strobe-clock...) is `action`.
        self.record("info", f, event.value, event.f, event.ring_change)

    async def heal_all(self) -> dict[str, Any]:
        """Heal every nemesis (shielded from cancellation); returns what each heal reported."""
        healed: dict[str, Any] = {}
        with trio.CancelScope(shield=True):
            for nemesis in self.nemeses:
                try:
                    with trio.move_on_after(60):
                        healed[nemesis.name] = await nemesis.heal()
                except Exception as exc:
                    log.exception("healing %s failed", nemesis.name)
                    healed[nemesis.name] = {"error": f"{type(exc).__name__}: {exc}"}
        self.active.clear()
        return healed
