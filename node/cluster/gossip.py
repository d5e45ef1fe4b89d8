"""Gossip membership: versioned endpoint state spread by a SYN / ACK / ACK2 exchange, as in Cassandra.

Every node owns one :class:`EndpointState` per endpoint it knows: a heartbeat (generation = the
node's start time in seconds, and a version bumped twice a round) plus application states (STATUS,
TOKENS, LOAD, DC, RACK, INTERNODE_ADDR, CLIENT_ADDR, SCHEMA, or any other key), each stamped
with a version from the same per-node counter, so "everything newer than version v" is one
comparison. Once per interval a node starts an exchange with a random live peer, sometimes
also with an unreachable one and sometimes with a seed (Cassandra's rules):

* SYN  (initiator → peer, a request): digests ``[endpoint, generation, max_version]`` of
  everything the initiator knows;
* ACK  (the reply): digests of what the peer wants from the initiator, plus every state the peer
  has that is newer than the initiator's digest (and states of endpoints the SYN did not name);
* ACK2 (initiator → peer, one-way): the states the peer asked for.

Each exchange moves information both ways, so news reaches all N nodes in O(log N) rounds.

Liveness: the phi-accrual detector is fed whenever newer heartbeats of an endpoint arrive
(through any peer; a batch of k beats counts as k arrivals spread over the gap since the last
one) or a gossip message arrives from it directly; a check every interval convicts
endpoints whose phi exceeds the threshold (DOWN). An endpoint is marked UP only after it answers
an ECHO request, as Cassandra does, so stale second-hand state cannot resurrect a dead node.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from node.cluster import membership
from node.cluster.failure_detector import PhiAccrualFailureDetector
from node.cluster.membership import NodeInfo
from node.cluster.messaging import Messaging, MessagingError
from node.runtime import Runtime

log = logging.getLogger("node.cluster.gossip")

Subscriber = Callable[[str, str], None]

# Events delivered to subscribers as callback(event, node_id).
JOIN = "JOIN"  # an endpoint seen for the first time
UP = "UP"  # marked alive (also after a restart: hints may have piled up meanwhile)
DOWN = "DOWN"  # convicted by the failure detector
CHANGE = "CHANGE"  # an application state changed (tokens, status, addresses, ...)

# Cassandra's MAX_LOCAL_PAUSE is 5 s at a 1 s interval: if our own loop was stalled this long
# (GC, SIGSTOP, an overloaded host), the silence we measured is ours, so convictions wait.
LOCAL_PAUSE_ROUNDS = 5

# A SYN and the ACK2 that follows it milliseconds later are one piece of evidence; recording both
# as arrivals would add near-zero intervals, shrink the mean and make conviction trigger-happy.
MIN_ARRIVAL_GAP_ROUNDS = 0.1

# An exchange (and an ECHO) that takes longer than two rounds is abandoned: the peer is slow or
# paused, and the next round will try again rather than pile up requests behind it.
EXCHANGE_TIMEOUT_ROUNDS = 2.0

# Longest interval the detector records, in rounds (Cassandra's fd_max_interval, 2 s at its 1 s
# interval). Longer gaps are pauses or outages, not samples of the healthy arrival rate. Ours
# is one round because arrivals are spread per heartbeat (see Gossiper._report): a single
# heartbeat-to-heartbeat interval above a round is already an outlier, and letting the few
# slow ones of a node's first seconds into the mean would delay its conviction by seconds.
MAX_INTERVAL_ROUNDS = 1.0

# The interval every window starts with. Cassandra uses 2 s, twice its typical mean; our
# arrivals are spread per heartbeat (see Gossiper._report), so the healthy mean is about half a
# round and one round still errs high by 2x, as intended, without making a node that fails in
# its first seconds take much longer than 15 s to convict.
BOOTSTRAP_INTERVAL_ROUNDS = 1.0

# Heartbeats per round. Peers record the beats they learn as arrivals spread over the gap since
# the previous one (Gossiper._report), so their mean interval tends to interval / BEATS_PER_ROUND
# whatever the cluster size or gossip luck: 0.5 s here, and phi > 8 (18.4 mean intervals of
# silence) convicts a dead node in about 10 s. One beat per round, recorded per batch as
# Cassandra does, leaves the mean near a whole round and conviction near 19 s.
BEATS_PER_ROUND = 2

# Heartbeats one arrival may stand for (see Gossiper._report): a few rounds' worth, so a burst
# of application state changes (which draw versions from the same counter) cannot flood the
# window with tiny intervals.
MAX_BEATS_PER_ARRIVAL = 3 * BEATS_PER_ROUND

SYN = "GOSSIP_SYN"
ACK2 = "GOSSIP_ACK2"
ECHO = "GOSSIP_ECHO"


@dataclass
class HeartBeatState:
    """An endpoint's incarnation (generation) and its liveness counter (version)."""

    generation: int
    version: int


@dataclass
class VersionedValue:
    """One application state value and the version it was set at."""

    value: Any
    version: int
    # What node/cluster/membership.py decoded the value to (the TOKENS state, once): a value is
    # never changed in place, a new state is a new VersionedValue, and every ring or status view
    # rebuilds each member's NodeInfo (some 200 times per virtual second of a simulation).
    decoded: Any = field(default=None, compare=False, repr=False)


@dataclass
class EndpointState:
    """Everything gossiped about one endpoint, plus our local verdict on its liveness."""

    heartbeat: HeartBeatState
    app: dict[str, VersionedValue] = field(default_factory=dict)
    alive: bool = False

    def max_version(self) -> int:
        """The highest version of the heartbeat and every application state."""
        return max([self.heartbeat.version, *(v.version for v in self.app.values())])

    def to_wire(self, newer_than: int = 0) -> dict[str, Any]:
        """The state for an ACK or ACK2: the heartbeat and the app states above ``newer_than``."""
        return {
            "g": self.heartbeat.generation,
            "hv": self.heartbeat.version,
            "s": {k: [v.value, v.version] for k, v in self.app.items() if v.version > newer_than},
        }

    def values(self) -> dict[str, Any]:
        """Application state values without versions."""
        return {k: v.value for k, v in self.app.items()}

    def info(self, node_id: str) -> NodeInfo:
        """This endpoint as a NodeInfo; its tokens decoded once per TOKENS state."""
        tokens = self.app.get(membership.TOKENS)
        if tokens is not None and tokens.decoded is None:
            tokens.decoded = membership.decode_tokens(tokens.value)
        return membership.node_info_from_states(
            node_id, self.values(), tokens=list(tokens.decoded) if tokens is not None else [])


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def parse_wire_state(wire: Any) -> EndpointState | None:
    """An EndpointState from its wire form, or None if malformed."""
    if not isinstance(wire, dict):
        return None
    gen: Any = wire.get("g")
    hv: Any = wire.get("hv")
    states: Any = wire.get("s", {})
    if not (_is_int(gen) and _is_int(hv) and isinstance(states, dict)):
        return None
    app: dict[str, VersionedValue] = {}
    for key, item in states.items():
        if not (isinstance(key, str) and isinstance(item, list) and len(item) == 2 and _is_int(item[1])):
            return None
        app[key] = VersionedValue(item[0], item[1])
    return EndpointState(HeartBeatState(gen, hv), app)


def parse_digests(raw: Any) -> list[tuple[str, int, int]]:
    """``[endpoint, generation, max_version]`` triples, skipping malformed ones."""
    out: list[tuple[str, int, int]] = []
    if isinstance(raw, list):
        for d in raw:
            if isinstance(d, list) and len(d) == 3 and isinstance(d[0], str) and _is_int(d[1]) and _is_int(d[2]):
                out.append((d[0], d[1], d[2]))
    return out


class Gossiper:
    """Cluster membership by gossip, with phi-accrual failure detection and UP/DOWN events."""

    def __init__(
        self,
        runtime: Runtime,
        messaging: Messaging,
        local: NodeInfo,
        seeds: list[tuple[str, int]],
        interval: float = 1.0,
        phi_threshold: float = 8.0,
        fd_window: int = 1000,
        generation: int | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"gossip interval must be positive, got {interval}")
        self.runtime = runtime
        self.messaging = messaging
        self.local_id = local.node_id
        self.interval = interval
        self._local_addr = (local.internode_host, local.internode_port)
        self._seeds = [(str(h), int(p)) for h, p in seeds]
        self._seed_ids: dict[tuple[str, int], str] = {}
        # Intervals scale with the gossip interval, so faster test clusters behave the same.
        self.fd = PhiAccrualFailureDetector(
            window=fd_window,
            threshold=phi_threshold,
            bootstrap_interval=BOOTSTRAP_INTERVAL_ROUNDS * interval,
            max_interval=MAX_INTERVAL_ROUNDS * interval,
        )
        self._versions = itertools.count(1)
        # Seconds since the epoch: a restart gets a larger generation, so every peer replaces the
        # old incarnation's state instead of merging with it. The clock nemesis's skew is taken
        # out: a node skewed backwards must not restart "older" than its previous incarnation.
        clock = runtime.clock
        gen = generation if generation is not None else (clock.wall_us() - clock.offset_us()) // 1_000_000
        self._states: dict[str, EndpointState] = {
            self.local_id: EndpointState(HeartBeatState(gen, next(self._versions)), alive=True)
        }
        for key, value in membership.app_states_of(local).items():
            self._states[self.local_id].app[key] = VersionedValue(value, next(self._versions))
        self._subscribers: list[Subscriber] = []
        self._exchanging: set[str] = set()
        self._echoing: set[str] = set()
        self._last_arrival: dict[str, float] = {}
        self._reported_version: dict[str, int] = {}
        self._nursery: trio.Nursery | None = None
        self._last_check: float | None = None
        self._pause_detected_at: float | None = None
        self.rounds = 0
        messaging.register(SYN, self._on_syn)
        messaging.register(ACK2, self._on_ack2)
        messaging.register(ECHO, self._on_echo)

    # ------------------------------------------------------------------ view

    @property
    def generation(self) -> int:
        """This node's generation (its start time in seconds)."""
        return self._states[self.local_id].heartbeat.generation

    def nodes(self) -> dict[str, NodeInfo]:
        """Every known endpoint (this one included) as a NodeInfo."""
        return {ep: st.info(ep) for ep, st in self._states.items()}

    def node(self, node_id: str) -> NodeInfo | None:
        """One endpoint's NodeInfo, or None if unknown."""
        st = self._states.get(node_id)
        return None if st is None else st.info(node_id)

    def is_alive(self, node_id: str) -> bool:
        """Whether ``node_id`` is currently considered up (this node always is)."""
        if node_id == self.local_id:
            return True
        st = self._states.get(node_id)
        return st is not None and st.alive

    def live_nodes(self) -> set[str]:
        """Ids of endpoints considered up, this one included."""
        return {ep for ep, st in self._states.items() if st.alive or ep == self.local_id}

    def app_state(self, node_id: str, key: str) -> Any:
        """The value of one application state of an endpoint, or None."""
        st = self._states.get(node_id)
        vv = None if st is None else st.app.get(key)
        return None if vv is None else vv.value

    def phi(self, node_id: str) -> float:
        """The failure detector's current phi for ``node_id``."""
        return self.fd.phi(node_id, self.runtime.clock.monotonic())

    def detector_view(self) -> dict[str, Any]:
        """The failure detector's settings and, per endpoint it has heard from, its phi now and
        the arrival window it learnt (mean, longest and count of the recorded intervals), as
        ``nodetool failuredetector`` and the FailureDetector MBean's interval dump show them."""
        now = self.runtime.clock.monotonic()
        peers: dict[str, Any] = {}
        for ep in sorted(self._states):
            if ep == self.local_id:
                continue
            stats = self.fd.window_stats(ep)
            if stats is None:
                continue
            mean, longest, count = stats
            peers[ep] = {"phi": round(self.fd.phi(ep, now), 3), "mean_interval_s": round(mean, 6),
                         "max_interval_s": round(longest, 6), "intervals": count}
        return {"threshold": self.fd.threshold, "max_interval_s": self.fd.max_interval,
                "bootstrap_interval_s": self.fd.bootstrap_interval, "window": self.fd.window, "peers": peers}

    def endpoint_state(self, node_id: str) -> dict[str, Any] | None:
        """Plain-data view of one endpoint's gossip state (``ringctl gossipinfo``)."""
        st = self._states.get(node_id)
        if st is None:
            return None
        return {
            "node_id": node_id,
            "generation": st.heartbeat.generation,
            "heartbeat": st.heartbeat.version,
            "alive": self.is_alive(node_id),
            "phi": 0.0 if node_id == self.local_id else round(self.phi(node_id), 3),
            "app_states": {k: {"value": v.value, "version": v.version} for k, v in sorted(st.app.items())},
        }

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback(event, node_id)`` on JOIN, UP, DOWN and CHANGE."""
        self._subscribers.append(callback)

    # ------------------------------------------------------------------ local state

    def set_app_state(self, key: str, value: Any) -> None:
        """Set one of this node's application states (gossiped with a new version)."""
        if key == membership.TOKENS:
            value = membership.encode_tokens(list(value))
        self._states[self.local_id].app[key] = VersionedValue(value, next(self._versions))
        self._emit(CHANGE, self.local_id)

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Gossip every interval and check the failure detector, until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                # _last_check survives a stop and re-run (an in-process stand-in for SIGSTOP /
                # SIGCONT), so the first check after it sees the pause and holds convictions.
                self._nursery = nursery
                nursery.start_soon(self._beat_loop)
                nursery.start_soon(self._loop)
                task_status.started()
        finally:
            self._nursery = None
            self._exchanging.clear()
            self._echoing.clear()

    async def _loop(self) -> None:
        """Gossip rounds and failure checks, every interval."""
        clock = self.runtime.clock
        next_round = clock.monotonic()
        while True:
            self._round()
            self._check_failures()
            self.rounds += 1
            next_round += self.interval
            if self.rounds == 1:
                # The first round goes out at once (fast joins); after it each node settles on
                # a random phase, so nodes started together do not gossip in lockstep and
                # evidence of liveness arrives spread over the second, not in one burst.
                next_round += self.runtime.rng.uniform(0.0, self.interval)
            now = clock.monotonic()
            if next_round < now:
                next_round = now  # we fell behind (paused): do not fire a burst of rounds
            await clock.sleep(next_round - now)

    async def _beat_loop(self) -> None:
        """Advance the heartbeat BEATS_PER_ROUND times per interval, at a steady pace.

        Beats are kept apart from rounds so their pace stays even while rounds shift phase;
        peers learn of them with our next exchange, as a batch that _report spreads back out.
        """
        clock = self.runtime.clock
        tick = self.interval / BEATS_PER_ROUND
        next_beat = clock.monotonic()
        while True:
            self._beat()
            next_beat += tick
            now = clock.monotonic()
            if next_beat < now:
                next_beat = now  # paused: resume the pace rather than fire missed beats
            await clock.sleep(next_beat - now)

    def _beat(self) -> None:
        self._states[self.local_id].heartbeat.version = next(self._versions)

    def _round(self) -> None:
        """One gossip round's choice of peers (Cassandra's Gossiper.GossipTask)."""
        rng = self.runtime.rng
        live = sorted(ep for ep, st in self._states.items() if ep != self.local_id and st.alive)
        unreachable = sorted(
            ep
            for ep, st in self._states.items()
            if ep != self.local_id and not st.alive and self.app_state(ep, membership.STATUS) != "LEFT"
        )
        seeds = self._seed_peers()
        real_seed_ids = set(self._seed_ids.values())
        gossiped_to_seed = False
        if live:
            target = rng.choice(live)
            gossiped_to_seed = target in real_seed_ids
            self._start_exchange(target)
        if unreachable and rng.random() < len(unreachable) / (len(live) + 1):
            self._start_exchange(rng.choice(unreachable))
        if seeds and (not gossiped_to_seed or len(live) < len(seeds)):
            if not live or rng.random() <= len(seeds) / (len(live) + len(unreachable)):
                self._start_exchange(rng.choice(seeds))

    def _seed_peers(self) -> list[str]:
        """Messaging peer ids for the seeds: their node id once known, else an address alias."""
        out = []
        for addr in self._seeds:
            if addr == self._local_addr:
                continue
            node_id = self._seed_ids.get(addr)
            if node_id is None:
                node_id = f"seed@{addr[0]}:{addr[1]}"
                if self.messaging.address_of(node_id) is None:
                    self.messaging.set_address(node_id, addr[0], addr[1])
            if node_id != self.local_id:
                out.append(node_id)
        return sorted(set(out))

    def _start_exchange(self, peer: str) -> None:
        if self._nursery is None or peer in self._exchanging:
            return
        self._exchanging.add(peer)
        self._nursery.start_soon(self._exchange, peer)

    async def _exchange(self, peer: str) -> None:
        """Initiate one SYN / ACK / ACK2 exchange with ``peer``."""
        try:
            syn = {"from": self.local_id, "digests": self._digests()}
            try:
                ack = await self.messaging.request(peer, SYN, syn, timeout=EXCHANGE_TIMEOUT_ROUNDS * self.interval)
            except MessagingError as exc:
                log.debug("node %s: gossip to %s failed: %s", self.local_id, peer, exc)
                return
            sender = ack.get("from")
            if not isinstance(sender, str) or not sender:
                return
            if peer.startswith("seed@"):
                host, _, port = peer[len("seed@"):].rpartition(":")
                self._seed_ids[(host, int(port))] = sender
            if sender == self.local_id:
                return
            self._direct_evidence(sender)
            self._apply(ack.get("states"))
            wanted = parse_digests(ack.get("digests"))
            if wanted:
                self.messaging.send(peer, ACK2, {"from": self.local_id, "states": self._states_for(wanted)})
        finally:
            self._exchanging.discard(peer)

    def _digests(self) -> list[list[Any]]:
        return [[ep, st.heartbeat.generation, st.max_version()] for ep, st in self._states.items()]

    def _states_for(self, wanted: list[tuple[str, int, int]]) -> dict[str, Any]:
        """Our states newer than each requested digest."""
        out: dict[str, Any] = {}
        for ep, gen, version in wanted:
            st = self._states.get(ep)
            if st is None or st.heartbeat.generation < gen:
                continue
            out[ep] = st.to_wire(version if st.heartbeat.generation == gen else 0)
        return out

    # ------------------------------------------------------------------ handlers

    async def _on_syn(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Answer a SYN with an ACK: what we want, and what the initiator lacks."""
        self._direct_evidence(sender)
        wanted: list[list[Any]] = []
        send: dict[str, Any] = {}
        named = set()
        for ep, gen, max_version in parse_digests(payload.get("digests")):
            named.add(ep)
            st = self._states.get(ep)
            if st is None:
                if ep != self.local_id:
                    wanted.append([ep, gen, 0])
                continue
            local_gen = st.heartbeat.generation
            if gen > local_gen:
                if ep != self.local_id:
                    wanted.append([ep, gen, 0])
            elif gen < local_gen:
                send[ep] = st.to_wire(0)
            else:
                local_max = st.max_version()
                if max_version > local_max:
                    wanted.append([ep, gen, local_max])
                elif max_version < local_max:
                    send[ep] = st.to_wire(max_version)
        for ep, st in self._states.items():
            if ep not in named:
                send[ep] = st.to_wire(0)
        return {"from": self.local_id, "digests": wanted, "states": send}

    async def _on_ack2(self, sender: str, payload: dict[str, Any]) -> None:
        """Apply the states the initiator sent in its ACK2."""
        self._direct_evidence(sender)
        self._apply(payload.get("states"))

    async def _on_echo(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Answer a liveness probe."""
        return {"from": self.local_id, "generation": self.generation}

    # ------------------------------------------------------------------ applying state

    def _apply(self, states: Any) -> None:
        """Merge remote endpoint states into ours (Cassandra's applyStateLocally)."""
        if not isinstance(states, dict):
            return
        now = self.runtime.clock.monotonic()
        for ep, wire in states.items():
            if not isinstance(ep, str) or not ep or ep == self.local_id:
                continue
            remote = parse_wire_state(wire)
            if remote is None:
                log.warning("node %s: ignoring malformed gossip state for %r", self.local_id, ep)
                continue
            local = self._states.get(ep)
            if local is None:
                self._states[ep] = remote
                log.info("node %s: discovered %s (generation %d)", self.local_id, ep, remote.heartbeat.generation)
                self._report(ep, now)
                self._update_addresses(ep)
                self._emit(JOIN, ep)
                self._probe(ep)
            elif remote.heartbeat.generation > local.heartbeat.generation:
                # A new incarnation: its old state and arrival history no longer apply.
                log.info(
                    "node %s: %s restarted (generation %d -> %d)",
                    self.local_id, ep, local.heartbeat.generation, remote.heartbeat.generation,
                )
                remote.alive = local.alive
                self._states[ep] = remote
                self.fd.remove(ep)
                self._last_arrival.pop(ep, None)
                self._reported_version.pop(ep, None)
                self._report(ep, now)
                self._update_addresses(ep)
                self._emit(CHANGE, ep)
                self._probe(ep, force=True)
            elif remote.heartbeat.generation == local.heartbeat.generation:
                beats = remote.heartbeat.version - local.heartbeat.version
                beat = beats > 0
                if beat:
                    local.heartbeat.version = remote.heartbeat.version
                changed = False
                for key, vv in remote.app.items():
                    mine = local.app.get(key)
                    if mine is None or vv.version > mine.version:
                        local.app[key] = vv
                        changed = True
                if beat:
                    self._report(ep, now)
                    if not local.alive:
                        self._probe(ep)
                if changed:
                    self._update_addresses(ep)
                    self._emit(CHANGE, ep)

    def _update_addresses(self, ep: str) -> None:
        value = self.app_state(ep, membership.INTERNODE_ADDR)
        if (
            isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and _is_int(value[1]) and 0 < value[1] < 65536
        ):
            addr = (value[0], value[1])
            if self.messaging.address_of(ep) != addr:
                self.messaging.set_address(ep, addr[0], addr[1])
            if addr in self._seeds:
                self._seed_ids[addr] = ep

    def _direct_evidence(self, sender: str) -> None:
        """A gossip message arrived from ``sender`` itself: it is alive right now."""
        if sender == self.local_id or sender not in self._states:
            return
        self._report(sender, self.runtime.clock.monotonic())
        if not self._states[sender].alive:
            self._probe(sender)

    def _report(self, ep: str, now: float) -> None:
        """Feed the failure detector: evidence that ``ep`` is alive became known at ``now``.

        Gossip delivers heartbeats in batches: a peer relays whatever it learnt since our last
        exchange, so one arrival may carry several heartbeat versions. Recording the batch as one
        arrival would measure our exchange pattern rather than the endpoint's liveness, and
        leave the mean near a whole gossip interval (conviction after ~18 s at phi 8). Instead
        the heartbeats learnt since the previous arrival are spread evenly over the gap, as if
        they had arrived as they were emitted (up to MAX_BEATS_PER_ARRIVAL of them).
        """
        st = self._states.get(ep)
        if st is None:
            return
        last = self._last_arrival.get(ep)
        if last is not None and now - last < MIN_ARRIVAL_GAP_ROUNDS * self.interval:
            return  # counted with the next arrival: _reported_version is not advanced
        version = st.heartbeat.version
        beats = version - self._reported_version.get(ep, version - 1)
        self._last_arrival[ep] = now
        self._reported_version[ep] = version
        if last is None:
            self.fd.heartbeat(ep, now)
            return
        k = max(1, min(beats, MAX_BEATS_PER_ARRIVAL))
        gap = now - last
        for i in range(1, k + 1):
            self.fd.heartbeat(ep, last + gap * i / k)

    # ------------------------------------------------------------------ liveness

    def _probe(self, ep: str, force: bool = False) -> None:
        """Mark ``ep`` UP once it answers an ECHO (unless already alive and not forced)."""
        st = self._states.get(ep)
        if st is None or (st.alive and not force) or ep in self._echoing or self._nursery is None:
            return
        self._echoing.add(ep)
        self._nursery.start_soon(self._echo, ep, st.heartbeat.generation)

    async def _echo(self, ep: str, generation: int) -> None:
        try:
            try:
                await self.messaging.request(ep, ECHO, {}, timeout=EXCHANGE_TIMEOUT_ROUNDS * self.interval)
            except MessagingError as exc:
                log.debug("node %s: echo to %s failed: %s", self.local_id, ep, exc)
                return
            st = self._states.get(ep)
            if st is None or st.heartbeat.generation != generation:
                return
            # The answer itself is an arrival: start the conviction clock afresh.
            self._report(ep, self.runtime.clock.monotonic())
            st.alive = True
            log.info("node %s: %s is UP", self.local_id, ep)
            self._emit(UP, ep)
        finally:
            self._echoing.discard(ep)

    def _check_failures(self) -> None:
        """Convict endpoints whose phi exceeds the threshold (Cassandra's doStatusCheck)."""
        now = self.runtime.clock.monotonic()
        last, self._last_check = self._last_check, now
        pause_limit = LOCAL_PAUSE_ROUNDS * self.interval
        if last is not None and now - last > pause_limit:
            log.warning(
                "node %s: not marking nodes down due to local pause of %.1f s", self.local_id, now - last
            )
            self._pause_detected_at = now
            return
        if self._pause_detected_at is not None and now - self._pause_detected_at < pause_limit:
            return
        for ep, st in self._states.items():
            if ep == self.local_id or not st.alive:
                continue
            phi = self.fd.phi(ep, now)
            if phi > self.fd.threshold:
                st.alive = False
                log.info(
                    "node %s: %s is DOWN (phi %.2f > %.2f, mean interval %.3f s)",
                    self.local_id, ep, phi, self.fd.threshold, self.fd.mean_interval(ep) or 0.0,
                )
                self._emit(DOWN, ep)

    def _emit(self, event: str, node_id: str) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event, node_id)
            except Exception:
                # A subscriber's bug must not stop membership from working for everyone else.
                log.exception("node %s: gossip subscriber failed on %s %s", self.local_id, event, node_id)
