"""The read and write paths: any node coordinates, per-request consistency levels, hints, read repair.

Write: find the key's replicas, refuse with Unavailable *before sending* when too few are alive
for the consistency level, send the mutation to every live replica (and store hints for the
dead ones), answer once enough replicas acknowledged, or WriteTimeout after ``write_timeout``
(the write may have been applied). Replica requests outlive the answer: they run in the
coordinator's own nursery and turn into hints if the replica never acknowledges.

Read: ask the closest replica for data and as many others as the level needs for digests. If a
digest disagrees, read full data from all of them, answer with the last-write-wins merge and,
for tables with ``read_repair = BLOCKING``, first write the merged partition back to the stale
replicas and wait for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgpack
import trio

from node.deadlines import Handle, TimingWheel
from node.faults import FaultSwitches
from node.hints import HintStore
from node.protocol import (
    InvalidRequest,
    ReadFailure,
    ReadTimeout,
    Unavailable,
    WriteFailure,
    WriteTimeout,
    pack,
    pack_map,
)
from node.ring import NetworkTopologyStrategy, Strategy, TokenMetadata
from node.runtime import Runtime
from node.schema import Schema
from node.storage.cells import Cell, Mutation, Partition, RangeTombstone, cell_sort_key, merge_all

log = logging.getLogger("node.coordinator")

VERB_MUTATION = "MUTATION"
VERB_READ = "READ"

QUORUM_LEVELS = ("QUORUM", "LOCAL_QUORUM", "EACH_QUORUM")
# Speculative retry: ask one more replica when the chosen ones have not answered by then.
# Cassandra's default is the table's 99th percentile read latency; reads on loopback take a few
# milliseconds (p99 tens under load), so 100 ms rarely speculates on a healthy cluster yet turns a
# replica that is down but not yet convicted (phi needs ~9 s of silence) from a 5 s ReadTimeout
# into a 100 ms delay.
SPECULATIVE_RETRY_S = 0.1

# Tracker templates kept per coordinator: replica sets are few (a ring of N nodes with 16 vnodes
# each has at most 16N of them per strategy) times the nine levels; dropped whole when full.
TRACKER_TEMPLATES = 4096


class LocalStore(Protocol):
    """The node's own replica: what the coordinator and the replica verbs call."""

    async def apply(self, keyspace: str, table: str, mutation: Mutation) -> None:
        """Apply a mutation durably per the commit log mode."""
        ...

    async def read(self, keyspace: str, table: str, key: bytes, columns: Sequence[str] | None) -> Partition | None:
        """The stored partition (tombstones included), restricted to ``columns``."""
        ...


class Membership(Protocol):
    """Who is alive and where nodes are."""

    def is_alive(self, node_id: str) -> bool:
        """Per the failure detector."""
        ...

    def datacenter_of(self, node_id: str) -> str:
        """The node's datacenter."""
        ...


# --------------------------------------------------------------------------- consistency


class _Group:
    __slots__ = ("nodes", "needed", "got")

    def __init__(self, nodes: frozenset[str], needed: int) -> None:
        self.nodes = nodes
        self.needed = needed
        self.got: set[str] = set()


class ConsistencyTracker:
    """Which acknowledgements satisfy a consistency level for one key's replicas (pure)."""

    def __init__(self, level: str, groups: list[_Group]) -> None:
        self.level = level
        self.groups = groups
        self.required = sum(g.needed for g in groups)
        # Every level but EACH_QUORUM has one group: the methods below run per acknowledgement,
        # and a generator over a one-element list showed in the write path's profile.
        self._one = groups[0] if len(groups) == 1 else None

    @staticmethod
    def for_replicas(
        level: str,
        replicas: Sequence[str],
        strategy: Strategy,
        datacenter_of: Callable[[str], str],
        local_dc: str,
        quorum_after_one: bool = False,
    ) -> ConsistencyTracker:
        """The tracker of ``level`` over one key's ``replicas``."""
        asked = level
        all_nodes = frozenset(replicas)
        if isinstance(strategy, NetworkTopologyStrategy):
            dc_rf = dict(strategy.dc_rf)
            by_dc = {dc: frozenset(r for r in replicas if datacenter_of(r) == dc) for dc in dc_rf}
            total_rf = sum(dc_rf.values())
        else:
            # SimpleStrategy ignores datacenters, so LOCAL_* and EACH_QUORUM count every replica.
            dc_rf = {local_dc: strategy.replication_factor}
            by_dc = {local_dc: all_nodes}
            total_rf = strategy.replication_factor
        local_nodes = by_dc.get(local_dc, frozenset())
        local_rf = dc_rf.get(local_dc, 0)
        if quorum_after_one and level in QUORUM_LEVELS:
            # Fault switch: a deliberate bug for the checkers to find.
            level = "ONE"
        if level in ("ONE", "ANY"):
            groups = [_Group(all_nodes, 1)]
        elif level == "TWO":
            groups = [_Group(all_nodes, 2)]
        elif level == "THREE":
            groups = [_Group(all_nodes, 3)]
        elif level == "QUORUM":
            groups = [_Group(all_nodes, total_rf // 2 + 1)]
        elif level == "ALL":
            groups = [_Group(all_nodes, len(all_nodes))]
        elif level == "LOCAL_ONE":
            groups = [_Group(local_nodes, 1)]
        elif level == "LOCAL_QUORUM":
            groups = [_Group(local_nodes, local_rf // 2 + 1)]
        elif level == "EACH_QUORUM":
            groups = [_Group(by_dc[dc], rf // 2 + 1) for dc, rf in dc_rf.items() if rf > 0]
        else:
            raise InvalidRequest(f"unknown consistency level {level!r}")
        return ConsistencyTracker(asked, groups)

    def fresh(self) -> ConsistencyTracker:
        """A tracker for the same level and replicas with nothing acknowledged yet."""
        return ConsistencyTracker(self.level, [_Group(g.nodes, g.needed) for g in self.groups])

    def available(self, alive: Sequence[str]) -> bool:
        """Could the live replicas satisfy the level?"""
        live = set(alive)
        return all(len(g.nodes & live) >= g.needed for g in self.groups)

    def add(self, node: str) -> None:
        """Count one acknowledgement."""
        g = self._one
        if g is not None:
            if node in g.nodes:
                g.got.add(node)
            return
        for g in self.groups:
            if node in g.nodes:
                g.got.add(node)

    def useful(self, node: str) -> bool:
        """Would an answer from ``node`` count towards a group that is still short?"""
        return any(node in g.nodes and node not in g.got and len(g.got) < g.needed for g in self.groups)

    @property
    def received(self) -> int:
        """Acknowledgements that counted, capped per group at what it needs."""
        return sum(min(len(g.got), g.needed) for g in self.groups)

    def satisfied(self) -> bool:
        """True once every group has what it needs."""
        g = self._one
        if g is not None:
            return len(g.got) >= g.needed
        return all(len(g.got) >= g.needed for g in self.groups)


# --------------------------------------------------------------------------- coordinator


# Coordinator.write_now's completion: (None, acknowledgements) or (the error, None).
WriteDone = Callable[[Exception | None, "dict[str, list[str]] | None"], None]


class _WriteState:
    """One write in flight at its coordinator (a slots class: a dataclass with seven default
    factories cost more to build than the rest of the write's bookkeeping)."""

    __slots__ = ("tracker", "level", "replicas", "finished", "event", "deadline", "answered", "notify",
                 "coordinator", "acks", "hinted", "alive", "acked", "hinted_for", "failures")

    def __init__(self, tracker: ConsistencyTracker, level: str, replicas: Sequence[str]) -> None:
        self.tracker = tracker
        self.level = level
        self.replicas = replicas
        # Set once the write has its answer or its timeout passed; ``event`` is made only for a
        # caller that awaits it (Coordinator.write), ``deadline`` is the timeout's wheel entry.
        self.finished = False
        self.event: trio.Event | None = None
        self.deadline: Handle | None = None
        # Whether ``done`` was set by an answer (level met, failed, ANY hinted) rather than by the
        # write timeout's deadline passing.
        self.answered = False
        # Coordinator.write_now's completion, called (once) when ``done`` is set.
        self.notify: WriteDone | None = None
        self.coordinator: Coordinator | None = None
        self.acks = 0
        self.hinted = 0
        self.alive: list[str] = []
        # Who acknowledged and who got a hint, in arrival order: the client's record of the write.
        self.acked: list[str] = []
        self.hinted_for: list[str] = []
        # replica -> why its disk refused the write (replica_failure): not a timeout, an answer
        self.failures: dict[str, str] = {}


def _answer(state: _WriteState) -> None:
    """The write has its answer (level met, failed, or ANY hinted): wake the coordinator."""
    state.answered = True
    _wake(state)


def _expire(state: _WriteState) -> None:
    """The write timeout passed: wake the coordinator, which answers WriteTimeout unless answered."""
    if not state.finished:
        state.deadline = None  # its entry fired
        _wake(state)


def _wake(state: _WriteState) -> None:
    state.finished = True
    if state.event is not None:
        state.event.set()
    if state.deadline is not None and state.coordinator is not None:
        state.coordinator._deadlines.cancel(state.deadline)
        state.deadline = None
    notify, state.notify = state.notify, None
    if notify is not None and state.coordinator is not None:
        try:
            state.coordinator._notify(state, notify)
        except Exception:
            # Called from a messaging reader or the deadline reaper: a caller's bug must not stop them.
            log.exception("write completion callback failed")


ReadDone = Callable[[Exception | None, "Partition | None"], None]


class _ReadState:
    """One read's first phase at its coordinator: who was asked, what answered, its deadline
    and speculative-retry entries on the coordinator's timing wheel."""

    __slots__ = ("coordinator", "keyspace", "table", "key", "columns", "level", "on_done", "tracker", "alive",
                 "spare", "responses", "data_from", "failures", "first_phase", "deadline", "timeout", "retry",
                 "payloads")

    def __init__(self, coordinator: Coordinator, keyspace: str, table: str, key: bytes,
                 columns: Sequence[str] | None, level: str, on_done: ReadDone) -> None:
        self.coordinator = coordinator
        self.keyspace = keyspace
        self.table = table
        self.key = key
        self.columns = columns
        self.level = level
        self.on_done: ReadDone | None = on_done
        self.tracker: ConsistencyTracker
        self.alive: list[str] = []
        self.spare: list[str] = []
        self.responses: dict[str, Any] = {}  # replica -> its digest (bytes) or its partition
        self.data_from: list[str] = []
        self.failures: dict[str, str] = {}  # replica -> its storage failure (a corrupt SSTable, say)
        # Answers arriving after the first phase (the level met, failed or timed out) are ignored.
        self.first_phase = True
        self.deadline = 0.0
        self.timeout: Handle | None = None
        self.retry: Handle | None = None
        self.payloads: dict[bool, dict[str, Any]] = {}  # digest? -> the READ request's payload

    def ask(self, r: str, digest: bool) -> None:
        """Ask one replica: in place for this node, through a reply callback for others."""
        c = self.coordinator
        read_now = getattr(c.local, "read_now", None)
        if r == c.node_id and read_now is not None:
            try:
                part = read_now(self.keyspace, self.table, self.key, self.columns)
            except Exception as exc:
                log.debug("node %s: read from %s failed: %s", c.node_id, r, exc)
                self.failed(r, exc)
                return
            self.record(r, digest, _digest(part, self.key) if digest else part)
            return
        payload = self.payloads.get(digest)
        if payload is None:
            columns = self.columns
            payload = self.payloads[digest] = {"ks": self.keyspace, "t": self.table, "k": self.key,
                                               "c": list(columns) if columns is not None else None, "d": digest}
        send = getattr(c.messaging, "request_callback", None)
        if r != c.node_id and send is not None:
            def on_reply(reply: Any, error: Exception | None) -> None:
                if not self.first_phase:
                    return
                if error is not None:
                    log.debug("node %s: read from %s failed: %s", c.node_id, r, error)
                    self.failed(r, error)
                    return
                try:
                    value = _read_reply(reply, digest)
                except Exception as exc:
                    log.debug("node %s: bad read reply from %s: %s", c.node_id, r, exc)
                    return
                self.record(r, digest, value)

            try:
                send(r, VERB_READ, payload, max(0.0, self.deadline - trio.current_time()), on_reply)
            except Exception as exc:
                log.debug("node %s: read from %s failed: %s", c.node_id, r, exc)
        else:
            # No in-place path (another store or messaging): a task in the coordinator's
            # nursery, bounded by the read deadline like the request it makes.
            assert c._nursery is not None, "coordinator is not running"
            c._nursery.start_soon(self._ask_task, r, digest, payload)

    async def _ask_task(self, r: str, digest: bool, payload: dict[str, Any]) -> None:
        c = self.coordinator
        try:
            if r == c.node_id:
                part = await c.local.read(self.keyspace, self.table, self.key, self.columns)
                value = _digest(part, self.key) if digest else part
            else:
                reply = await c.messaging.request(r, VERB_READ, payload, max(0.0, self.deadline - trio.current_time()))
                value = _read_reply(reply, digest)
        except Exception as exc:
            log.debug("node %s: read from %s failed: %s", c.node_id, r, exc)
            self.failed(r, exc)
            return
        self.record(r, digest, value)

    def record(self, r: str, digest: bool, value: Any) -> None:
        if not self.first_phase:
            return
        self.responses[r] = value
        if not digest:
            self.data_from.append(r)
        self.tracker.add(r)
        if self.data_from and self.tracker.satisfied():
            self.answer()

    def failed(self, r: str, exc: BaseException) -> None:
        """A replica answered with a storage failure: ask a spare, or give up at once."""
        why = replica_failure(exc)
        if why is None or not self.first_phase:
            return
        self.failures[r] = why
        if self.spare:
            self.ask(self.spare.pop(0), bool(self.data_from))
        elif not self.tracker.available([n for n in self.alive if n not in self.failures]):
            self.answer()

    def answer(self) -> None:
        """The first phase is over (level met, failed, or the deadline passed): compare digests,
        answer, or hand a mismatch to its task."""
        self.first_phase = False
        c = self.coordinator
        wheel = c._deadlines
        wheel.cancel(self.timeout)
        wheel.cancel(self.retry)
        self.timeout = self.retry = None
        tracker, level, data_from = self.tracker, self.level, self.data_from
        met = bool(data_from) and tracker.satisfied()
        if self.failures and not met:
            c.stats["read_failures"] += 1
            reasons = "; ".join(f"{r}: {why}" for r, why in sorted(self.failures.items()))
            self.finish(ReadFailure(
                f"{level} read: {len(self.failures)} replica(s) failed it ({reasons})",
                consistency=level,
                received=tracker.received,
                required=tracker.required,
                failures=dict(self.failures),
            ), None)
            return
        if not met:
            c.stats["read_timeouts"] += 1
            self.finish(ReadTimeout(
                f"{level} read: {tracker.received} of {tracker.required} required responses within {c.read_timeout:g} s",
                consistency=level,
                received=tracker.received,
                required=tracker.required,
                data_present=bool(data_from),
            ), None)
            return
        # Compare what answered: one full data response and the digests of the rest.
        responses, key = self.responses, self.key
        first = data_from[0]
        data = responses[first]
        data_digest = _digest(data, key)
        if all((v if isinstance(v, bytes) else _digest(v, key)) == data_digest
               for r, v in responses.items() if r != first):
            self.finish(None, data)
            return
        c.stats["digest_mismatches"] += 1
        if c._nursery is None:
            return  # shutting down: as a cancelled read task, no answer
        c._nursery.start_soon(c._read_mismatch, self)

    def finish(self, exc: Exception | None, part: Partition | None) -> None:
        on_done, self.on_done = self.on_done, None
        if on_done is None:
            return
        try:
            on_done(exc, part)
        except Exception:
            # Called from a messaging reader or the deadline reaper: a caller's bug must not stop them.
            log.exception("read completion callback failed")


def _read_expired(state: _ReadState) -> None:
    """The read timeout passed: answer ReadTimeout unless the level was met (a storage failure
    that left the level unreachable answers ReadFailure)."""
    if state.first_phase:
        state.timeout = None  # its entry fired
        state.answer()


def _read_retry(state: _ReadState) -> None:
    """Speculative retry: a replica that has not answered by now is probably down or cut off;
    ask one more instead of waiting for the timeout, for data if the data replica is missing."""
    state.retry = None  # its entry fired
    if not state.first_phase or not state.spare:
        return
    now = trio.current_time()
    if now >= state.deadline:
        return
    state.coordinator.stats["speculative_retries"] += 1
    state.ask(state.spare.pop(0), bool(state.data_from))
    if state.first_phase and state.spare:
        state.retry = state.coordinator._deadlines.add(now + SPECULATIVE_RETRY_S, _read_retry, state)


# Error type names a replica reports when its disk failed a request (node/storage/errors.py); a
# RemoteError carries them as "peer: Name: message". Such a replica answered: waiting longer for
# it cannot help, so the coordinator fails the request at once when the level becomes unreachable.
# AwaitingRepair: a table whose corrupt SSTable was quarantined refuses reads until repaired.
# ReplicaLeft: a decommissioned node refuses replica requests from peers that have not heard yet.
_REPLICA_FAILURES = ("StorageFailure", "DiskFull", "CommitLogSyncFailed", "WritesStopped", "CorruptSSTableError",
                     "AwaitingRepair", "ReplicaLeft")


class ReplicaLeft(Exception):
    """This node has left the ring (its decommission finished): a peer whose view is behind sent
    it a replica request. Answering a read from data no write reaches any more would let a stale
    value count towards the level, so it refuses, and the coordinator asks another replica."""


def replica_failure(exc: BaseException) -> str | None:
    """``"Name: detail"`` when ``exc`` is a replica's storage failure, else None (timeouts etc.)."""
    name = type(exc).__name__
    if name in _REPLICA_FAILURES:
        return f"{name}: {exc}"
    parts = str(exc).split(": ", 2)
    if len(parts) == 3 and parts[1] in _REPLICA_FAILURES:
        return f"{parts[1]}: {parts[2]}"
    return None


class Coordinator:
    """Coordinates reads and writes for any key; serves the replica side of them too."""

    def __init__(
        self,
        runtime: Runtime,
        node_id: str,
        datacenter: str,
        messaging: Any,
        membership: Membership,
        ring: Callable[[], TokenMetadata],
        schema: Callable[[], Schema],
        local: LocalStore,
        hints: HintStore | None,
        faults: FaultSwitches,
        write_timeout: float = 2.0,
        read_timeout: float = 5.0,
    ) -> None:
        self.runtime = runtime
        self.node_id = node_id
        self.datacenter = datacenter
        self.messaging = messaging
        self.membership = membership
        self.ring = ring
        self.schema = schema
        self.local = local
        self.hints = hints
        self.faults = faults
        self.write_timeout = write_timeout
        self.read_timeout = read_timeout
        self._nursery: trio.Nursery | None = None
        # Write deadlines: one reaper task instead of a cancel scope per write (node/deadlines.py).
        self._deadlines = TimingWheel()
        self.stats: dict[str, int] = {
            "writes": 0,
            "reads": 0,
            "write_timeouts": 0,
            "read_timeouts": 0,
            "unavailable": 0,
            "digest_mismatches": 0,
            "read_repairs": 0,
            "hints_stored": 0,
            "hints_dropped": 0,
            "speculative_retries": 0,
            "write_failures": 0,
            "read_failures": 0,
        }
        # Replica verbs that never wait run inline in the messaging reader (no task per request):
        # a read always (it is synchronous), a mutation when the commit log mode needs no fsync
        # wait before the acknowledgement (periodic). Batch/group mode keeps the awaiting handler.
        self._apply_inline = not getattr(local, "waits_for_sync", True) and hasattr(local, "apply_now")
        inline = getattr(messaging, "register_inline", None)
        batch = getattr(messaging, "register_batch", None)
        if batch is not None and self._apply_inline and hasattr(local, "apply_prepared_now"):
            # Every MUTATION of one internode read goes to the commit log in one write.
            batch(VERB_MUTATION, self._handle_mutations_now)
        elif inline is not None and self._apply_inline:
            inline(VERB_MUTATION, self._handle_mutation_now)
        else:
            messaging.register(VERB_MUTATION, self._handle_mutation)
        if inline is not None and hasattr(local, "read_now"):
            inline(VERB_READ, self._handle_read_now)
        else:
            messaging.register(VERB_READ, self._handle_read)
        # Parsed replication strategy per keyspace, reused while the keyspace definition is the
        # same object with the same replication map (parsing it per request showed in profiles).
        self._strategies: dict[str, tuple[Any, dict[str, Any], Strategy]] = {}
        # (level, replicas, strategy, ack_quorum_after_one) -> tracker template (see _tracker).
        self._trackers: dict[tuple[Any, ...], ConsistencyTracker] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the replica-request tasks that outlive a client's answer, until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._deadlines.run)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    # ---- replica side

    # A MUTATION's payload: {"ks", "t"} and either "m", the mutation's to_obj() (read repair,
    # hints), or "mb", its msgpack bytes (a coordinator's write: the replica's commit log record
    # reuses them, and neither side encodes the mutation again).

    async def _handle_mutation(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        if getattr(self.membership, "status", None) == "LEFT":
            raise ReplicaLeft(f"{self.node_id} has left the ring; its ranges are on their new replicas")
        ks, table = payload["ks"], payload["t"]
        self.schema().table(ks, table)
        encoded = payload.get("mb")
        if type(encoded) is bytes and hasattr(self.local, "apply_encoded"):
            await self.local.apply_encoded(ks, table, encoded)
        else:
            await self.local.apply(ks, table, _mutation_of(payload))
        return {}

    def _handle_mutation_now(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        if getattr(self.membership, "status", None) == "LEFT":
            raise ReplicaLeft(f"{self.node_id} has left the ring; its ranges are on their new replicas")
        ks, table = payload["ks"], payload["t"]
        self.schema().table(ks, table)
        encoded = payload.get("mb")
        if type(encoded) is bytes and hasattr(self.local, "apply_encoded_now"):
            self.local.apply_encoded_now(ks, table, encoded)
        else:
            self.local.apply_now(ks, table, _mutation_of(payload))  # type: ignore[attr-defined]
        return {}

    def _handle_mutations_now(self, batch: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any] | None | Exception]:
        """The MUTATIONs of one internode read: each checked and prepared, all appended to the
        commit log with one write and applied; an acknowledgement ({}) or the error, each."""
        local: Any = self.local
        if getattr(self.membership, "status", None) == "LEFT":
            left = ReplicaLeft(f"{self.node_id} has left the ring; its ranges are on their new replicas")
            return [left] * len(batch)
        results: list[dict[str, Any] | None | Exception] = []
        prepared = []
        for _, payload in batch:
            try:
                ks, table = payload["ks"], payload["t"]
                self.schema().table(ks, table)
                encoded = payload.get("mb")
                if type(encoded) is bytes:
                    prepared.append(local.prepare_encoded(ks, table, encoded))
                else:
                    prepared.append(local.prepare(ks, table, _mutation_of(payload)))
                results.append(None)  # its outcome comes from the apply below
            except Exception as exc:
                results.append(exc)
        if prepared:
            outcomes = iter(local.apply_prepared_now(prepared))
            for i, r in enumerate(results):
                if r is None:
                    outcome = next(outcomes)
                    results[i] = outcome if isinstance(outcome, Exception) else {}
        return results

    async def _handle_read(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        if getattr(self.membership, "status", None) == "LEFT":
            raise ReplicaLeft(f"{self.node_id} has left the ring; its ranges are on their new replicas")
        ks, table = payload["ks"], payload["t"]
        self.schema().table(ks, table)
        part = await self.local.read(ks, table, payload["k"], payload.get("c"))
        if payload.get("d"):
            return {"g": _digest(part, payload["k"])}
        return {"p": part.to_obj() if part is not None else None}

    def _handle_read_now(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        if getattr(self.membership, "status", None) == "LEFT":
            raise ReplicaLeft(f"{self.node_id} has left the ring; its ranges are on their new replicas")
        ks, table = payload["ks"], payload["t"]
        self.schema().table(ks, table)
        part = self.local.read_now(ks, table, payload["k"], payload.get("c"))  # type: ignore[attr-defined]
        if payload.get("d"):
            return {"g": _digest(part, payload["k"])}
        return {"p": part.to_obj() if part is not None else None}

    # ---- helpers

    def _replicas(self, keyspace: str, key: bytes) -> tuple[tuple[str, ...], Strategy]:
        ksdef = self.schema().keyspace(keyspace)
        hit = self._strategies.get(keyspace)
        if hit is not None and hit[0] is ksdef and hit[1] == ksdef.replication:
            strategy = hit[2]
        else:
            strategy = ksdef.strategy()
            self._strategies[keyspace] = (ksdef, dict(ksdef.replication), strategy)
        replicas = self.ring().endpoints_for(key, strategy)
        return replicas, strategy

    def _alive(self, node: str) -> bool:
        return node == self.node_id or self.membership.is_alive(node)

    def _tracker(self, level: str, replicas: Sequence[str], strategy: Strategy, writes: bool) -> ConsistencyTracker:
        after_one = writes and self.faults.ack_quorum_after_one
        if isinstance(strategy, NetworkTopologyStrategy) or type(replicas) is not tuple:
            # Its groups follow each replica's datacenter, which gossip may still change (and a
            # replica list that is not a tuple cannot key the templates).
            return ConsistencyTracker.for_replicas(level, replicas, strategy, self.membership.datacenter_of, self.datacenter,
                                      quorum_after_one=after_one)
        # Other strategies count replicas alone: a template per level and replica set, copied
        # per request (building one per write showed in the write path's profile).
        key = (level, replicas, strategy, after_one)
        template = self._trackers.get(key)
        if template is None:
            if len(self._trackers) >= TRACKER_TEMPLATES:
                self._trackers.clear()
            template = self._trackers[key] = ConsistencyTracker.for_replicas(
                level, replicas, strategy, self.membership.datacenter_of, self.datacenter, quorum_after_one=after_one)
        return template.fresh()

    def _store_hint(self, target: str, keyspace: str, table: str, mutation_obj: Any) -> bool:
        if self.hints is None or target == self.node_id:
            return False
        if self.faults.drop_hints:
            # The validation bug: claim the hint was stored (ANY is satisfied by it) but keep nothing.
            self.stats["hints_dropped"] += 1
            return True
        try:
            ok = self.hints.store(target, keyspace, table, mutation_obj, self.runtime.clock.wall_us())
        except OSError as exc:
            log.error("node %s: cannot store hint for %s: %s", self.node_id, target, exc)
            return False
        if ok:
            self.stats["hints_stored"] += 1
        return ok

    # ---- write path

    async def write(self, keyspace: str, table: str, mutation: Mutation, level: str) -> dict[str, list[str]]:
        """Apply ``mutation`` at ``level`` (Unavailable / WriteTimeout as the level demands);
        returns the key's replicas, those that acknowledged before the answer and those hinted."""
        state = self._begin_write(keyspace, table, mutation, level)
        if not state.finished:
            event = state.event = trio.Event()
            if self._deadlines.running:
                state.deadline = self._deadlines.add(trio.current_time() + self.write_timeout, _expire, state)
                await event.wait()
            else:  # the wheel's task has not started yet (run() just began)
                with trio.move_on_after(self.write_timeout):
                    await event.wait()
        return self._finish_write(state)

    @property
    def accepts_write_now(self) -> bool:
        """Whether :meth:`write_now` may be called (its deadline reaper is running)."""
        return self._deadlines.running

    def write_now(
        self, keyspace: str, table: str, mutation: Mutation, level: str, on_done: WriteDone
    ) -> None:
        """Start the same write without a task waiting for it: ``on_done(None, acks)`` once the
        level is met (``acks`` as :meth:`write` returns them), ``on_done(error, None)`` on
        WriteTimeout/WriteFailure. Errors known at once (InvalidRequest,
        Unavailable) raise here and ``on_done`` is never called. Only while ``accepts_write_now``.

        ``on_done`` runs inside the messaging reader or the deadline reaper, so it must not block.
        """
        if not self._deadlines.running:
            raise RuntimeError("coordinator is not running")
        state = self._begin_write(keyspace, table, mutation, level)
        if state.finished:
            self._notify(state, on_done)
        else:
            state.notify = on_done
            state.deadline = self._deadlines.add(trio.current_time() + self.write_timeout, _expire, state)

    def _notify(self, state: _WriteState, on_done: WriteDone) -> None:
        try:
            acks = self._finish_write(state)
        except Exception as exc:
            on_done(exc, None)
        else:
            on_done(None, acks)

    def _begin_write(self, keyspace: str, table: str, mutation: Mutation, level: str) -> _WriteState:
        """Check, send to every replica and apply locally; the state says when the level is met."""
        self.schema().table(keyspace, table)
        check = getattr(self.local, "check", None)
        # InvalidRequest before anything is sent anywhere; what it returns spares the local apply
        # validating and encoding the mutation again.
        prepared = check(keyspace, table, mutation) if check is not None else None
        replicas, strategy = self._replicas(keyspace, mutation.key)
        if not replicas:
            self.stats["unavailable"] += 1
            raise Unavailable("no replicas: the ring is empty", consistency=level, required=1, alive=0)
        tracker = self._tracker(level, replicas, strategy, writes=True)
        alive = [r for r in replicas if self._alive(r)]
        dead = [r for r in replicas if r not in alive]
        hints_possible = self.hints is not None
        if level == "ANY":
            if not alive and not (hints_possible and any(self.hints.within_window(r) for r in dead)):  # type: ignore[union-attr]
                self.stats["unavailable"] += 1
                raise Unavailable("no replica alive and no hint can be stored", consistency=level, required=1, alive=0)
        elif not tracker.available(alive):
            self.stats["unavailable"] += 1
            raise Unavailable(
                f"{level} needs {tracker.required} live replica(s) of {len(replicas)}, {len(alive)} alive",
                consistency=level,
                required=tracker.required,
                alive=len(alive),
            )
        if self._nursery is None:
            raise RuntimeError("coordinator is not running")
        self.stats["writes"] += 1
        state = _WriteState(tracker, level, replicas)
        state.coordinator = self
        # The check's encoding when validation left the mutation as it was (deletion times it
        # filled in are each replica's own to fill, as before).
        unchanged = prepared is not None and prepared.mutation is mutation
        mutation_obj = prepared.obj if unchanged else mutation.to_obj()  # type: ignore[union-attr]
        payload = {"ks": keyspace, "t": table, "m": mutation_obj}
        for r in dead:
            if self._store_hint(r, keyspace, table, mutation_obj):
                state.hinted += 1
                state.hinted_for.append(r)
        if level == "ANY" and state.hinted:
            _answer(state)
        targets = list(alive)
        state.alive = list(alive)
        # Pending replicas (ranges moving in a membership change) get the write too, uncounted:
        # the tracker ignores their acks, as Cassandra's pending endpoints (node/membership_ops.py).
        pending_of = getattr(self.membership, "pending_endpoints", None)
        if pending_of is not None and not self.faults.skip_pending_ranges:
            for r in pending_of(strategy, mutation.key):
                if r not in replicas and self._alive(r):
                    targets.append(r)
        send = getattr(self.messaging, "request_callback", None)
        packed: Any = None  # the payload packed once for every remote replica
        for r in targets:
            if r == self.node_id and self._apply_inline:
                # Periodic commit log: the local apply never waits, so no task for it.
                try:
                    if prepared is not None:
                        self.local.apply_now(keyspace, table, mutation, prepared)  # type: ignore[attr-defined]
                    else:
                        self.local.apply_now(keyspace, table, mutation)  # type: ignore[attr-defined]
                except Exception as exc:
                    self._replica_failed(r, keyspace, table, payload, state, exc)
                else:
                    self._replica_acked(r, state)
            elif r != self.node_id and send is not None:
                # Remote replicas answer through a callback: no task per replica either. The
                # request outlives this call, like the tasks it replaces (timeouts via messaging).
                try:
                    if packed is None:
                        encoded = prepared.obj_bytes if unchanged else pack(mutation_obj)  # type: ignore[union-attr]
                        packed = pack_map({"ks": keyspace, "t": table, "mb": encoded})
                    send(r, VERB_MUTATION, packed, self.write_timeout, self._mutation_reply(r, keyspace, table, payload, state))
                except Exception as exc:
                    self._replica_failed(r, keyspace, table, payload, state, exc)
            else:
                self._nursery.start_soon(self._write_replica, r, keyspace, table, mutation, payload, state)
        return state

    def _finish_write(self, state: _WriteState) -> dict[str, list[str]]:
        """The acknowledgements :meth:`write` returns, or WriteFailure / WriteTimeout (``done`` is set)."""
        tracker, level = state.tracker, state.level
        if state.failures and not tracker.satisfied():
            self.stats["write_failures"] += 1
            reasons = "; ".join(f"{r}: {why}" for r, why in sorted(state.failures.items()))
            raise WriteFailure(
                f"{level} write: {len(state.failures)} replica(s) failed it ({reasons}); the write may have "
                f"been applied on the others",
                consistency=level,
                received=tracker.received,
                required=tracker.required,
                failures=dict(state.failures),
                may_have_applied=True,
            )
        if not state.answered:
            self.stats["write_timeouts"] += 1
            raise WriteTimeout(
                f"{level} write: {tracker.received} of {tracker.required} required acknowledgements within "
                f"{self.write_timeout:g} s; the write may have been applied",
                consistency=level,
                received=tracker.received,
                required=tracker.required,
                may_have_applied=True,
            )
        # Copied now: acknowledgements arriving after the answer are not what the client was told.
        return {"replicas": list(state.replicas), "acked": list(state.acked), "hinted": list(state.hinted_for)}

    async def _write_replica(
        self, r: str, keyspace: str, table: str, mutation: Mutation, payload: dict[str, Any], state: _WriteState
    ) -> None:
        try:
            if r == self.node_id:
                with trio.fail_after(self.write_timeout):
                    await self.local.apply(keyspace, table, mutation)
            else:
                await self.messaging.request(r, VERB_MUTATION, payload, self.write_timeout)
        except Exception as exc:  # timeout, unreachable, remote error: hint it (Cassandra does)
            self._replica_failed(r, keyspace, table, payload, state, exc)
            return
        self._replica_acked(r, state)

    def _mutation_reply(
        self, r: str, keyspace: str, table: str, payload: dict[str, Any], state: _WriteState
    ) -> Callable[[Any, Exception | None], None]:
        def done(reply: Any, error: Exception | None) -> None:
            if self._nursery is None:
                return  # shutting down: as a cancelled replica task, neither an ack nor a hint
            if error is None:
                self._replica_acked(r, state)
            else:
                self._replica_failed(r, keyspace, table, payload, state, error)
        return done

    def _replica_acked(self, r: str, state: _WriteState) -> None:
        state.acks += 1
        state.acked.append(r)
        state.tracker.add(r)
        if state.tracker.satisfied():
            _answer(state)

    def _replica_failed(
        self, r: str, keyspace: str, table: str, payload: dict[str, Any], state: _WriteState, exc: Exception
    ) -> None:
        """Timeout, unreachable, remote error: hint it (Cassandra does)."""
        log.debug("node %s: write to %s failed: %s", self.node_id, r, exc)
        why = replica_failure(exc)
        if why is not None and r in state.alive:
            state.failures[r] = why
            if not state.tracker.available([n for n in state.alive if n not in state.failures]):
                _answer(state)  # the level cannot be met any more: answer WriteFailure now
        if self._store_hint(r, keyspace, table, payload["m"]):
            state.hinted += 1
            state.hinted_for.append(r)
            if state.tracker.level == "ANY":
                _answer(state)

    # ---- read path

    async def read(
        self, keyspace: str, table: str, key: bytes, columns: Sequence[str] | None, level: str
    ) -> Partition | None:
        """The merged partition for ``key`` at ``level`` (Unavailable / ReadTimeout as needed)."""
        while not self._deadlines.running:
            if self._nursery is None:
                raise RuntimeError("coordinator is not running")
            await trio.lowlevel.checkpoint()  # run() just began: its deadline reaper starts next
        outcome: list[Any] = []
        event = trio.Event()

        def done(exc: Exception | None, part: Partition | None) -> None:
            outcome.append((exc, part))
            event.set()

        self.read_now(keyspace, table, key, columns, level, done)
        await event.wait()
        exc, part = outcome[0]
        if exc is not None:
            raise exc
        return part

    def read_now(
        self, keyspace: str, table: str, key: bytes, columns: Sequence[str] | None, level: str, on_done: ReadDone
    ) -> None:
        """Start the same read without a task waiting for it: ``on_done(None, partition)`` with
        its answer, ``on_done(error, None)`` on ReadTimeout/ReadFailure. Errors known at once
        (InvalidRequest, Unavailable) raise here and ``on_done`` is never called. Only while
        ``accepts_write_now``; ``on_done`` runs in a messaging reader, the deadline reaper or the
        digest-mismatch task, so it must not block.

        The first phase (data from the closest replica, digests from as many more as the level
        needs, speculative retries, the deadline) runs in callbacks: no task and no cancel scope
        per read. A digest mismatch, rare, gets a task in the coordinator's nursery.
        """
        if not self._deadlines.running:
            raise RuntimeError("coordinator is not running")
        self.schema().table(keyspace, table)
        replicas, strategy = self._replicas(keyspace, key)
        tracker = self._tracker(level, replicas, strategy, writes=False)
        alive = [r for r in replicas if self._alive(r)]
        if not replicas or not tracker.available(alive):
            self.stats["unavailable"] += 1
            raise Unavailable(
                f"{level} read needs {tracker.required} live replica(s) of {len(replicas)}, {len(alive)} alive",
                consistency=level,
                required=tracker.required,
                alive=len(alive),
            )
        self.stats["reads"] += 1
        # Closest first: this node, then its datacenter, then the rest; replicas equally close in
        # random order (as Cassandra's dynamic snitch spreads them), so reads do not all land on
        # each range's primary replica and every replica's data gets read.
        if len(alive) > 1:
            self.runtime.rng.shuffle(alive)  # a fresh list, built above
        me, dc, dc_of = self.node_id, self.datacenter, self.membership.datacenter_of
        ordered = sorted(alive, key=lambda r: (r != me, dc_of(r) != dc))
        targets: list[str] = []
        for r in ordered:
            if tracker.useful(r):
                targets.append(r)
                tracker.add(r)
        state = _ReadState(self, keyspace, table, key, columns, level, on_done)
        state.tracker = self._tracker(level, replicas, strategy, writes=False)
        state.alive = alive
        state.spare = [r for r in ordered if r not in targets]
        now = trio.current_time()
        state.deadline = now + self.read_timeout
        wheel = self._deadlines
        state.timeout = wheel.add(state.deadline, _read_expired, state)
        if state.spare:
            state.retry = wheel.add(now + SPECULATIVE_RETRY_S, _read_retry, state)
        outbox = getattr(self.messaging, "outbox", None)
        # The requests go out in one batch, written by this task (node/outbox.py).
        if outbox is not None:
            outbox.begin()
        try:
            state.ask(targets[0], False)
            for r in targets[1:]:
                state.ask(r, True)
        finally:
            if outbox is not None:
                outbox.end()

    async def _read_mismatch(self, state: _ReadState) -> None:
        """A digest disagreed: full data from every replica that answered, merged, the stale
        ones repaired (BLOCKING tables); the answer or the error goes to the read's ``on_done``."""
        try:
            part = await self._resolve_mismatch(state)
        except Exception as exc:
            state.finish(exc, None)
        except BaseException:
            state.finish(ReadTimeout("read cancelled: the coordinator is shutting down", consistency=state.level,
                                     received=0, required=state.tracker.required, data_present=True), None)
            raise
        else:
            state.finish(None, part)

    async def _resolve_mismatch(self, state: _ReadState) -> Partition | None:
        keyspace, table, key, columns, deadline = state.keyspace, state.table, state.key, state.columns, state.deadline
        responses = state.responses
        first = state.data_from[0]
        targets = [first] + [r for r in responses if r != first]
        full: dict[str, Partition | None] = {first: responses[first]}
        payload = {"ks": keyspace, "t": table, "k": key, "c": list(columns) if columns is not None else None, "d": False}

        async def collect(r: str) -> None:
            try:
                if r == self.node_id:
                    full[r] = await self.local.read(keyspace, table, key, columns)
                else:
                    reply = await self.messaging.request(r, VERB_READ, payload, max(0.0, deadline - trio.current_time()))
                    full[r] = _read_reply(reply, False)
            except Exception as exc:
                log.debug("node %s: read from %s failed: %s", self.node_id, r, exc)

        with trio.move_on_after(max(0.0, deadline - trio.current_time())):
            async with trio.open_nursery() as n:
                for r in targets[1:]:
                    n.start_soon(collect, r)
        if len(full) < len(targets):
            self.stats["read_timeouts"] += 1
            raise ReadTimeout(
                f"{state.level} read: digest mismatch and only {len(full)} of {len(targets)} full data responses in time",
                consistency=state.level,
                received=len(full),
                required=len(targets),
                data_present=True,
            )
        merged = merge_all(p for p in full.values() if p is not None)
        if merged is None:
            return None
        if self.schema().table(keyspace, table).read_repair == "BLOCKING" and not self.faults.skip_read_repair:
            await self._repair(keyspace, table, merged, full, deadline)
        return merged

    async def _repair(
        self, keyspace: str, table: str, merged: Partition, full: dict[str, Partition | None], deadline: float
    ) -> None:
        want = merged.digest()
        stale = [r for r, p in full.items() if _digest(p, merged.key) != want]
        if not stale:
            return
        self.stats["read_repairs"] += len(stale)
        mutation = partition_to_mutation(merged)
        payload = {"ks": keyspace, "t": table, "m": mutation.to_obj()}
        repaired: set[str] = set()

        async def fix(r: str) -> None:
            try:
                if r == self.node_id:
                    await self.local.apply(keyspace, table, mutation)
                else:
                    await self.messaging.request(r, VERB_MUTATION, payload, max(0.0, deadline - trio.current_time()))
                repaired.add(r)
            except Exception as exc:
                log.debug("node %s: read repair of %s failed: %s", self.node_id, r, exc)

        with trio.move_on_after(max(0.0, deadline - trio.current_time())):
            async with trio.open_nursery() as n:
                for r in stale:
                    n.start_soon(fix, r)
        if len(repaired) < len(stale):
            self.stats["read_timeouts"] += 1
            raise ReadTimeout(
                f"blocking read repair: {len(repaired)} of {len(stale)} stale replicas repaired in time",
                received=len(repaired),
                required=len(stale),
                data_present=True,
            )


def _mutation_of(payload: dict[str, Any]) -> Mutation:
    """The mutation of a MUTATION payload, from "m" or (where the store cannot take bytes) "mb"."""
    if "m" in payload:
        return Mutation.from_obj(payload["m"])
    return Mutation.from_obj(msgpack.unpackb(payload["mb"], raw=False, strict_map_key=False))


def _read_reply(reply: dict[str, Any], digest: bool) -> Any:
    """A replica's READ answer: its digest bytes, or its partition (None when it has none)."""
    if digest:
        return reply["g"]
    obj = reply.get("p")
    return Partition.from_obj(obj) if obj is not None else None


def _digest(part: Partition | None, key: bytes) -> bytes:
    return (part if part is not None else Partition(key)).digest()


def partition_to_mutation(p: Partition) -> Mutation:
    """A mutation that makes a replica hold at least ``p`` (used for read repair)."""
    return Mutation(
        p.key,
        list(p.cells.values()),
        p.partition_tombstone,
        p.partition_deletion_time,
        [RangeTombstone(rt.prefix, rt.timestamp, rt.local_deletion_time) for rt in p.range_tombstones.values()],
    )


def live_row(p: Partition | None, now_s: int, column_order: str, limit: int | None) -> list[Cell]:
    """The visible cells of a read answer, in the table's column order, at most ``limit``."""
    if p is None:
        return []
    cells = sorted(p.live_cells(now_s).values(), key=cell_sort_key(column_order))
    return cells[:limit] if limit is not None else cells
