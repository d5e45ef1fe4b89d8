"""Membership changes: bootstrap, decommission, removenode, move, cleanup and load balancing.

Every change is a transition from the *natural* ring (nodes in NORMAL or LEAVING state, the ring
reads and writes are placed on) to a *future* ring (NORMAL and JOINING nodes, moving nodes at
their new tokens, without LEAVING or removed nodes). While a transition is announced in gossip:

* **Pending ranges.** For every key, the future replicas that are not natural replicas are
  *pending*: coordinators send writes to them too, without counting them toward the consistency
  level (Cassandra's pending endpoints), so nothing acknowledged during the change is missing
  from the new replicas afterwards.
* **Streaming.** Every range a node gains is pulled from an old replica, preferably the one that
  loses the range (it was in every quorum the range had, so the new replica set still intersects
  every acknowledged quorum write: CASSANDRA-2434's "consistent range movement").
* **Completion.** Only after every transfer finished does the node announce the end state
  (NORMAL, LEFT, REMOVED, its new tokens).

Announcements wait until every live peer reports (verb ``MEMBERSHIP_VIEW``) that it sees the new
state, then ``ring_delay`` more so writes placed on the old ring finish, before streaming starts.

Gossip application states added here: ``REMOVALS`` (a map node id → ``REMOVING``/``REMOVED``
published by the node running removenode), ``MOVE_TO`` (a moving node's new tokens) and
``BALANCE`` (the last load-balancing decision, for operators).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from node.cluster.membership import LOAD, STATUS, TOKENS, NodeInfo
from node.coordination import ASSIGN_TIMEOUT, VERB_ASSIGN, CoordinationError
from node.durable import write_atomic
from node.protocol import InvalidRequest
from node.ring import Endpoint, Partitioner, Strategy, Token, TokenMetadata, generate_tokens
from node.runtime import offload
from node.storage.cells import Mutation
from node.storage.errors import StorageError
from node.streaming import Range, Streamer, range_contains

log = logging.getLogger("node.membership")

REMOVALS = "REMOVALS"
MOVE_TO = "MOVE_TO"
BALANCE = "BALANCE"
VERB_VIEW = "MEMBERSHIP_VIEW"

# States whose tokens place replicas now (a LEAVING node keeps serving until it has streamed).
NATURAL_STATUSES = ("NORMAL", "LEAVING")
# How long one fetch request (a whole table's ranges from one source) may take before the
# orchestrator gives up on that source; generous, since pages are retried inside the fetch.
FETCH_TIMEOUT = 600.0
# Transfers of one membership change that run at once.
PARALLEL_TRANSFERS = 2
# How long to wait for every live peer to see an announced state before giving up on the change.
ANNOUNCE_TIMEOUT = 30.0
# How long a membership change waits for a ZooKeeper session before failing with the reason.
ZK_WAIT = 10.0
# How often LOAD (bytes of SSTables) is re-published in gossip: Cassandra refreshes it every 60 s;
# tests and load balancing on small clusters want fresher figures.
LOAD_PUBLISH_INTERVAL = 5.0


# --------------------------------------------------------------------------- pure planning


@dataclass(frozen=True)
class Transfer:
    """One token range a target must receive, and the old replicas that hold it (preferred first)."""

    left: Token
    right: Token
    target: str
    sources: tuple[str, ...]
    # How many of ``sources`` (the first ones) lose the range: one of them, alive, held every
    # quorum the range had; when none is alive every live source must be streamed and merged.
    losing: int = 0


def build_ring(partitioner: Partitioner, members: Mapping[str, NodeInfo], tokens: Mapping[str, Sequence[Token]] | None = None) -> TokenMetadata:
    """A TokenMetadata of ``members`` (tokens overridden per node by ``tokens``)."""
    toks = {n: list((tokens or {}).get(n, i.tokens)) for n, i in members.items()}
    return TokenMetadata(
        partitioner,
        {n: t for n, t in toks.items() if t},
        {n: Endpoint(i.datacenter, i.rack) for n, i in members.items() if toks[n]},
    )


def natural_members(members: Mapping[str, NodeInfo], removals: Mapping[str, str]) -> dict[str, NodeInfo]:
    """Members whose tokens place replicas now."""
    return {
        n: i for n, i in members.items()
        if i.tokens and i.status in NATURAL_STATUSES and removals.get(n) != "REMOVED"
    }


def future_members(members: Mapping[str, NodeInfo], removals: Mapping[str, str]) -> dict[str, NodeInfo]:
    """Members that will place replicas once every announced change completes."""
    return {
        n: i for n, i in members.items()
        if i.tokens and i.status in ("NORMAL", "JOINING") and n not in removals
    }


def same_ring(a: TokenMetadata, b: TokenMetadata) -> bool:
    """Do two rings place every token on the same nodes?"""
    return a.sorted_tokens == b.sorted_tokens and all(a.owner(t) == b.owner(t) for t in a.sorted_tokens) and a.locations == b.locations


def transfer_plan(old: TokenMetadata, new: TokenMetadata, strategy: Strategy) -> list[Transfer]:
    """Every (sub-range, gaining node) of moving from ``old`` to ``new`` under ``strategy``.

    The ring is cut at the tokens of both rings; within one piece both rings have constant
    replicas. Sources are the old replicas, the ones losing the piece first; adjacent pieces with
    the same target and sources are merged.
    """
    bounds = sorted(set(old.sorted_tokens) | set(new.sorted_tokens))
    if not bounds or not old.sorted_tokens:
        return []
    out: list[Transfer] = []
    for i, right in enumerate(bounds):
        left = bounds[i - 1]
        old_eps = old.replicas_for_token(right, strategy)
        new_eps = new.replicas_for_token(right, strategy)
        losing = [n for n in old_eps if n not in new_eps]
        keeping = [n for n in old_eps if n in new_eps]
        for target in new_eps:
            if target in old_eps:
                continue
            t = Transfer(left, right, target, tuple(losing + keeping), len(losing))
            prev = out[-1] if out else None
            if prev is not None and prev.target == target and prev.sources == t.sources and prev.losing == t.losing and prev.right == left:
                out[-1] = Transfer(prev.left, right, target, t.sources, t.losing)
            else:
                out.append(t)
    return out


def _midpoint(partitioner: Partitioner, left: Token, right: Token) -> Token | None:
    """The token halfway along ``(left, right]`` (wrapping), or None for non-integer tokens."""
    if not isinstance(left, int) or not isinstance(right, int):
        return None
    span = getattr(partitioner, "_span", None)
    lo = getattr(partitioner, "min_token", 0)
    if span is None:
        return None
    width = (right - left) % span or span
    mid = left + width // 2
    return (mid - lo) % span + lo


def choose_tokens(partitioner: Partitioner, ring: TokenMetadata, loads: Mapping[str, float], num_tokens: int, rng: Any,
                  taken: Iterable[Token] = ()) -> list[Token]:
    """Tokens for a joining node that split the ranges holding the most load.

    Each primary range carries its owner's load in proportion to its share of the owner's ring
    (with no load figures yet, every node counts as equally loaded, so the widest ranges go
    first). The heaviest range is halved at its midpoint ``num_tokens`` times, each half then
    counting half the load: the paper's "split the range of a heavily loaded node", spread over
    virtual nodes. ``taken`` are tokens already promised elsewhere (the ZooKeeper range map).
    """
    if not ring.sorted_tokens:
        return generate_tokens(partitioner, num_tokens, rng, set(taken))
    primary = ring.ownership()
    positive = [v for v in loads.values() if v > 0]
    default = (sum(positive) / len(positive)) if positive else 1.0
    heap: list[tuple[float, int, Token, Token]] = []
    for i, (left, right) in enumerate(ring.ranges()):
        owner = ring.owner(right)
        frac = partitioner.range_fraction(left, right) if len(ring.sorted_tokens) > 1 else 1.0
        load = loads.get(owner) or default
        share = frac / primary[owner] if primary.get(owner) else frac
        heapq.heappush(heap, (-load * share, i, left, right))
    taken = set(ring.sorted_tokens) | set(taken)
    out: list[Token] = []
    seq = len(heap)
    while len(out) < num_tokens and heap:
        weight, _, left, right = heapq.heappop(heap)
        mid = _midpoint(partitioner, left, right)
        if mid is None or mid in taken or mid == left or mid == right:
            continue
        taken.add(mid)
        out.append(mid)
        for a, b in ((left, mid), (mid, right)):
            seq += 1
            heapq.heappush(heap, (weight / 2, seq, a, b))
    if len(out) < num_tokens:
        out.extend(generate_tokens(partitioner, num_tokens - len(out), rng, taken))
    return sorted(out)


def _covered(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of ``[start, end]`` intervals."""
    out = 0.0
    reach = float("-inf")
    for lo, hi in sorted(intervals):
        if hi > reach:
            out += hi - max(lo, reach)
            reach = hi
    return out


def _digest(values: Iterable[Any]) -> str:
    return hashlib.blake2b(json.dumps([str(v) for v in values]).encode(), digest_size=8).hexdigest()


# --------------------------------------------------------------------------- the operations


class MembershipManager:
    """Runs this node's membership changes and answers the coordinator's pending-endpoint queries."""

    def __init__(self, node: Any, streamer: Streamer) -> None:
        self.node = node
        self.streamer = streamer
        self.partitioner: Partitioner = node.partitioner
        self.config = node.config.membership
        self.removals_path: Path = node.data_dir / "removals.json"
        self.bootstrap_path: Path = node.data_dir / "bootstrap.json"
        self.local_removals: dict[str, str] = self._load_json(self.removals_path, {})
        self.learned_removals: dict[str, str] = dict(self.local_removals)
        self.move_to: list[Token] | None = None
        self.operation: str | None = None
        self.last_result: dict[str, Any] = {}
        self.balance_log: list[str] = []
        self._lock = trio.Lock()
        self._view_key: Any = None
        self._future: TokenMetadata | None = None
        self._nursery: trio.Nursery | None = None
        node.messaging.register(VERB_VIEW, self._handle_view)
        node.messaging.register(VERB_ASSIGN, self._handle_assign)

    # ---- persistence

    @staticmethod
    def _load_json(path: Path, default: Any) -> Any:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return default
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)
            return default

    @staticmethod
    def _save_json(path: Path, value: Any) -> None:
        write_atomic(path, json.dumps(value))

    def bootstrap_state(self) -> dict[str, Any] | None:
        """The persisted progress of an unfinished bootstrap, if any."""
        state = self._load_json(self.bootstrap_path, None)
        return state if isinstance(state, dict) and state.get("tokens") else None

    # ---- gossip views

    def _gossip(self, node_id: str, key: str) -> Any:
        g = self.node.gossiper
        return None if g is None else g.app_state(node_id, key)

    def removals(self) -> dict[str, str]:
        """Every removal announced by any node (REMOVED wins over REMOVING)."""
        out = dict(self.learned_removals)
        g = self.node.gossiper
        if g is not None:
            for n in list(g.nodes()):
                value = g.app_state(n, REMOVALS)
                if isinstance(value, dict):
                    for target, state in value.items():
                        if state in ("REMOVING", "REMOVED") and out.get(target) != "REMOVED":
                            out[str(target)] = state
        out.update({k: v for k, v in self.local_removals.items() if v == "REMOVED"})
        if out != self.learned_removals:
            self.learned_removals = out
            try:
                self._save_json(self.removals_path, {k: v for k, v in out.items() if v == "REMOVED"})
            except OSError as exc:
                log.warning("cannot save %s: %s", self.removals_path, exc)
        return out

    def moves(self, members: Mapping[str, NodeInfo]) -> dict[str, list[Token]]:
        """Announced new tokens of moving nodes."""
        out: dict[str, list[Token]] = {}
        for n in members:
            raw = self.move_to if n == self.node.node_id else self._gossip(n, MOVE_TO)
            if isinstance(raw, list) and raw:
                try:
                    out[n] = [self.partitioner.from_string(t) if isinstance(t, str) else t for t in raw]
                except ValueError:
                    continue
        return out

    def ring_key(self) -> Any:
        """What besides STATUS/TOKENS changes the natural ring (the node's ring cache key)."""
        return tuple(sorted((k, v) for k, v in self.removals().items() if v == "REMOVED"))

    def natural(self, members: Mapping[str, NodeInfo]) -> dict[str, NodeInfo]:
        """Members that place replicas now (the node's ring)."""
        return natural_members(members, self.removals())

    def future_ring(self) -> TokenMetadata | None:
        """The ring once announced changes complete, or None when nothing is in transition."""
        natural = self.node.ring()
        members = self.node._members()
        removals = self.removals()
        moves = self.moves(members)
        key = (id(natural), tuple(sorted((n, i.status, tuple(i.tokens)) for n, i in members.items())),
               tuple(sorted(removals.items())), tuple(sorted((n, tuple(t)) for n, t in moves.items())))
        if key != self._view_key:
            future = build_ring(self.partitioner, future_members(members, removals), moves)
            self._future = None if same_ring(natural, future) else future
            self._view_key = key
        return self._future

    def pending_endpoints(self, strategy: Strategy, key: bytes) -> tuple[str, ...]:
        """Future replicas of ``key`` that are not replicas now (writes go to them too)."""
        future = self.future_ring()
        if future is None:
            return ()
        now = self.node.ring().endpoints_for(key, strategy)
        return tuple(n for n in future.endpoints_for(key, strategy) if n not in now)

    def _describe(self, node_id: str) -> list[Any]:
        members = self.node._members()
        info = members.get(node_id)
        moves = self.moves(members)
        if info is None:
            return ["?", "", "", self.removals().get(node_id, "")]
        return [info.status, _digest(info.tokens), _digest(moves.get(node_id, [])), self.removals().get(node_id, "")]

    async def _handle_view(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {"view": self._describe(str(payload["node"]))}

    async def _announced(self, node_id: str, timeout: float = ANNOUNCE_TIMEOUT) -> None:
        """Wait until every live peer describes ``node_id`` as this node does, then ring_delay."""
        want = self._describe(node_id)
        deadline = trio.current_time() + timeout
        while True:
            lagging = []
            for peer in sorted(self.node._members()):
                if peer in (self.node.node_id, node_id) or not self.node.is_alive(peer):
                    continue
                if self.removals().get(peer) == "REMOVED" or self.node._members()[peer].status == "LEFT":
                    continue
                try:
                    reply = await self.node.messaging.request(peer, VERB_VIEW, {"node": node_id}, 2.0)
                    if list(reply["view"]) != want:
                        lagging.append(peer)
                except Exception:
                    lagging.append(peer)
            if not lagging:
                break
            if trio.current_time() > deadline:
                raise InvalidRequest(f"peers {', '.join(lagging)} did not see the change of {node_id} within {timeout:g} s")
            await trio.sleep(0.2)
        await trio.sleep(self.config.ring_delay)

    # ---- helpers

    def _set_state(self, **states: Any) -> None:
        g = self.node.gossiper
        if g is not None:
            for k, v in states.items():
                g.set_app_state(k, v)

    def _tables(self, keyspace: str | None = None) -> list[tuple[str, str, Strategy]]:
        out = []
        schema = self.node.schema
        for t in schema.live_tables():
            if keyspace is not None and t.keyspace != keyspace:
                continue
            out.append((t.keyspace, t.name, schema.keyspace(t.keyspace).strategy()))
        return out

    async def _execute(self, old: TokenMetadata, new: TokenMetadata, *, only_target: str | None = None,
                       prefer_source: str | None = None, done: set[str] | None = None,
                       on_done: Any = None, resume: str | None = None) -> dict[str, Any]:
        """Run every transfer of old → new (optionally only those to one target)."""
        total: dict[str, Any] = {"bytes": 0, "partitions": 0, "transfers": 0, "files": 0, "file_bytes": 0,
                                 "file_seconds": 0.0, "stream_bytes": 0, "stream_seconds": 0.0}
        jobs: list[tuple[Any, ...]] = []
        for ks, table, strategy in self._tables():
            plan = transfer_plan(old, new, strategy)
            groups: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[Range]] = {}
            for tr in plan:
                if only_target is not None and tr.target != only_target:
                    continue
                if not self.node.is_alive(tr.target):
                    log.warning("skipping range (%s, %s] for %s: the target is down", tr.left, tr.right, tr.target)
                    continue
                sources = list(tr.sources)
                if prefer_source in sources:
                    sources.remove(prefer_source)
                    sources.insert(0, prefer_source)
                losing = tr.sources[:tr.losing]
                groups.setdefault((tr.target, tuple(sources), losing), []).append((tr.left, tr.right))
            for (target, sources, losing), ranges in groups.items():
                tag = f"{ks}.{table}:{target}:{_digest(ranges)}"
                if done is not None and tag in done:
                    continue
                if self.node.config.faults.skip_pending_streaming:
                    log.warning("fault switch skip_pending_streaming: %s takes %d range(s) of %s.%s without streaming",
                                target, len(ranges), ks, table)
                    continue
                jobs.append((ks, table, target, sources, losing, ranges, tag))
        # A few transfers at once: while one source's files cross the network another's are
        # written and fsynced, and no single source's scan or disk sets the pace.
        limiter = trio.CapacityLimiter(PARALLEL_TRANSFERS)
        failures: list[BaseException] = []
        spans: dict[str, list[tuple[float, float]]] = {"file_seconds": [], "stream_seconds": []}

        async def run(job: tuple[Any, ...], cancel: trio.CancelScope) -> None:
            ks, table, target, sources, losing, ranges, tag = job
            async with limiter:
                begun = trio.current_time()
                try:
                    if any(src == self.node.node_id or self.node.is_alive(src) for src in losing):
                        result = await self._fetch_any(target, sources, ks, table, ranges, resume)
                    else:
                        result = await self._fetch_all(target, sources, ks, table, ranges, resume)
                except Exception as exc:  # noqa: BLE001 - raised below, outside the nursery
                    failures.append(exc)
                    cancel.cancel()
                    return
                ended = trio.current_time()
            split = min(ended, begun + float(result.get("file_seconds", 0)))
            spans["file_seconds"].append((begun, split))
            spans["stream_seconds"].append((split, ended))
            for k in ("bytes", "partitions", "files", "file_bytes", "stream_bytes"):
                total[k] += int(result.get(k, 0))
            total["transfers"] += 1
            if on_done is not None:
                on_done(tag)

        async with trio.open_nursery() as nursery:
            for job in jobs:
                nursery.start_soon(run, job, nursery.cancel_scope)
        if failures:
            raise failures[0]
        # Seconds during which some transfer was in that phase (transfers overlap).
        for k, intervals in spans.items():
            total[k] = round(_covered(intervals), 3)
        return total

    async def _fetch_any(self, target: str, sources: Sequence[str], ks: str, table: str, ranges: list[Range],
                         resume: str | None = None) -> dict[str, Any]:
        last: Exception | None = None
        for src in sources:
            if src != self.node.node_id and not self.node.is_alive(src):
                continue
            try:
                return await self.streamer.fetch_into(target, src, ks, table, ranges, FETCH_TIMEOUT, resume)
            except Exception as exc:
                last = exc
                log.warning("streaming %s.%s to %s from %s failed: %s; trying the next source", ks, table, target, src, exc)
        raise InvalidRequest(f"no live source could stream {len(ranges)} range(s) of {ks}.{table} to {target}: {last}")

    async def _fetch_all(self, target: str, sources: Sequence[str], ks: str, table: str, ranges: list[Range],
                         resume: str | None = None) -> dict[str, Any]:
        """Stream from every live source and let last-write-wins merge them (the replica that
        lost the range is dead, as in removenode: a write acknowledged by it and one survivor is
        on that survivor only, so no single survivor is enough)."""
        total: dict[str, Any] = {"bytes": 0, "partitions": 0, "files": 0, "file_bytes": 0, "stream_bytes": 0,
                                 "file_seconds": 0.0, "stream_seconds": 0.0}
        live = [src for src in sources if src == self.node.node_id or self.node.is_alive(src)]
        if not live:
            raise InvalidRequest(f"no live source holds {len(ranges)} range(s) of {ks}.{table} for {target}")
        for src in live:
            try:
                result = await self.streamer.fetch_into(target, src, ks, table, ranges, FETCH_TIMEOUT, resume)
            except Exception as exc:
                # A partial union could miss a write only that source holds: fail the change.
                raise InvalidRequest(f"streaming {len(ranges)} range(s) of {ks}.{table} to {target} from {src} failed: {exc}") from exc
            for k in total:
                total[k] += type(total[k])(result.get(k, 0))
        return total

    async def _exclusive(self, name: str) -> None:
        if self.operation is not None:
            raise InvalidRequest(f"{self.operation} is already running on {self.node.node_id}")
        self.operation = name

    # ---- bootstrap

    def _loads(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for n, info in self.node._members().items():
            raw = self._gossip(n, LOAD)
            out[n] = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else float(info.load or 0)
        return out

    async def _wait_for_cluster(self, timeout: float = 60.0) -> None:
        """Until gossip knows a live NORMAL node and this node's schema matches a live peer's."""
        deadline = trio.current_time() + timeout
        while trio.current_time() < deadline:
            members = self.node._members()
            live_normal = [n for n, i in members.items() if n != self.node.node_id and i.status == "NORMAL" and i.tokens and self.node.is_alive(n)]
            if live_normal:
                theirs = self._gossip(live_normal[0], "SCHEMA")
                if theirs is not None and theirs == self.node.schema.version():
                    return
                # Pull it now rather than wait for the schema check's next round (2 s).
                if theirs is not None and await self.node.pull_schema(live_normal[0]):
                    continue
            await trio.sleep(0.25)
        raise InvalidRequest("cannot join: no live NORMAL node with the same schema was found")

    async def join(self) -> dict[str, Any]:
        """Bootstrap: pick tokens, announce JOINING, stream the new ranges, become NORMAL."""
        await self._exclusive("join")
        try:
            if self.node.status != "JOINING":
                raise InvalidRequest(f"{self.node.node_id} is {self.node.status}, not JOINING")
            start = trio.current_time()
            await self._wait_for_cluster()
            state = self.bootstrap_state()
            part = self.partitioner
            if state is None and self.node.zk is not None:
                assigned = await self._tokens_from_leader()
                state = {"tokens": assigned["tokens"], "done": [], "leader": assigned.get("leader"),
                         "epoch": assigned.get("epoch")}
                self._save_json(self.bootstrap_path, state)
                log.info("bootstrap: leader %s (epoch %s) assigned %d tokens", assigned.get("leader"),
                         assigned.get("epoch"), len(assigned["tokens"]))
            elif state is None:
                ring = self.node.ring()
                tokens = choose_tokens(part, ring, self._loads(), self.node.config.num_tokens, self.node.runtime.rng)
                state = {"tokens": [part.to_string(t) for t in tokens], "done": []}
                self._save_json(self.bootstrap_path, state)
                log.info("bootstrap: chose %d tokens splitting the most loaded ranges (loads %s)", len(tokens), self._loads())
            else:
                log.info("bootstrap: resuming with %d transfers already done", len(state["done"]))
            tokens = [part.from_string(t) for t in state["tokens"]]
            self.node.tokens = tokens
            write_atomic(self.node.data_dir / "tokens.json", json.dumps(state["tokens"]))
            self._set_state(**{TOKENS: tokens, STATUS: "JOINING"})
            await self._announced(self.node.node_id)
            old = self.node.ring()
            new = self.future_ring() or old
            done = set(state["done"])

            def mark(tag: str) -> None:
                done.add(tag)
                state["done"] = sorted(done)
                self._save_json(self.bootstrap_path, state)

            # Files imported whole are journaled under this bootstrap's tokens, so a restarted
            # bootstrap resumes after its last complete file (node/rangecopy.py).
            resume = "bootstrap:" + _digest(state["tokens"])
            total = await self._execute(old, new, only_target=self.node.node_id, done=done, on_done=mark, resume=resume)
            self.node.status = "NORMAL"
            self._set_state(**{STATUS: "NORMAL"})
            self.bootstrap_path.unlink(missing_ok=True)
            if self.streamer.rangecopy is not None:
                await offload(self.streamer.rangecopy.journal.clear)
            total["seconds"] = round(trio.current_time() - start, 3)
            log.info("bootstrap complete: %s", total)
            self.last_result = {"op": "join", **total}
            return self.last_result
        finally:
            self.operation = None

    # ---- the ZooKeeper leader (coordination = "zookeeper", node/coordination.py)

    async def _require_zk(self, what: str) -> None:
        if self.node.zk is not None:
            try:
                await self.node.zk.wait_connected(ZK_WAIT)
            except CoordinationError as exc:
                raise InvalidRequest(f"cannot {what}: {exc}") from exc

    async def _release(self, node_id: str) -> None:
        if self.node.zk is None:
            return
        try:
            await self.node.zk.release(node_id)
        except CoordinationError as exc:
            # The change itself is done; the leader drops a LEFT/REMOVED node's record later.
            log.warning("zookeeper: could not release %s's range record: %s", node_id, exc)

    async def _tokens_from_leader(self) -> dict[str, Any]:
        """Ask the elected leader for this joining node's tokens (the paper's bootstrap)."""
        zk = self.node.zk
        await self._require_zk("join")
        leader = zk.leadership.leader
        if leader is None:
            raise InvalidRequest("cannot join: no ZooKeeper leader is elected yet")
        request = {"num_tokens": self.node.config.num_tokens}
        try:
            if leader == self.node.node_id:
                return await self._assign(self.node.node_id, request)
            return await self.node.messaging.request(leader, VERB_ASSIGN, request, ASSIGN_TIMEOUT)
        except (CoordinationError, trio.TooSlowError, OSError) as exc:
            raise InvalidRequest(f"cannot join: leader {leader} did not assign tokens: {exc}") from exc

    async def _assign(self, joiner: str, payload: dict[str, Any]) -> dict[str, Any]:
        zk = self.node.zk
        if zk is None:
            raise InvalidRequest("this node does not run in coordination = \"zookeeper\" mode")
        num = payload.get("num_tokens")
        if not isinstance(num, int) or isinstance(num, bool) or not 1 <= num <= 1536:
            raise InvalidRequest(f"num_tokens must be in 1..1536, got {num!r}")
        part = self.partitioner

        def choose(taken: set[str]) -> list[str]:
            # The gossip ring plus every token the range map holds: two joiners assigned at
            # once never share a token, although neither is in gossip yet.
            extra = {part.from_string(t) for t in taken}
            tokens = choose_tokens(part, self.node.ring(), self._loads(), num, self.node.runtime.rng, extra)
            return [part.to_string(t) for t in tokens]

        return await zk.assign(joiner, choose)

    async def _handle_assign(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._assign(sender, payload)
        except CoordinationError as exc:
            raise InvalidRequest(str(exc)) from exc

    # ---- decommission

    async def decommission(self) -> dict[str, Any]:
        """Announce LEAVING, stream every range to its new replicas, announce LEFT, then stop."""
        await self._exclusive("decommission")
        try:
            if self.node.status != "NORMAL":
                raise InvalidRequest(f"{self.node.node_id} is {self.node.status}, not NORMAL")
            others = [n for n in self.node.ring().nodes if n != self.node.node_id]
            if not others:
                raise InvalidRequest("cannot decommission the last node of the ring")
            await self._require_zk("decommission")
            start = trio.current_time()
            self.node.status = "LEAVING"
            self._set_state(**{STATUS: "LEAVING"})
            await self._announced(self.node.node_id)
            old = self.node.ring()
            new = self.future_ring() or old
            total = await self._execute(old, new, prefer_source=self.node.node_id)
            self.node.status = "LEFT"
            self._set_state(**{STATUS: "LEFT"})
            try:
                await self._announced(self.node.node_id, timeout=10.0)
            except InvalidRequest as exc:
                log.warning("decommission: %s (they will learn it by gossip)", exc)
            await self._release(self.node.node_id)
            total["seconds"] = round(trio.current_time() - start, 3)
            log.info("decommission complete: %s; stopping", total)
            self.last_result = {"op": "decommission", **total}
            if self._nursery is not None:
                self._nursery.start_soon(self._drain_soon)
            return self.last_result
        finally:
            self.operation = None

    async def _drain_soon(self) -> None:
        # Long enough for the decommission reply to reach the operator before the port closes.
        await trio.sleep(0.5)
        self.node._drain.set()

    # ---- removenode

    async def removenode(self, target: str) -> dict[str, Any]:
        """Re-replicate a dead node's ranges from the survivors, then mark it REMOVED."""
        await self._exclusive("removenode")
        try:
            if target == self.node.node_id:
                raise InvalidRequest("use decommission to remove this node")
            if target not in self.node.ring().nodes:
                raise InvalidRequest(f"{target} is not a member of the ring")
            if self.node.is_alive(target):
                raise InvalidRequest(f"{target} is alive; decommission it instead (removenode is for dead nodes)")
            await self._require_zk("removenode")
            start = trio.current_time()
            self.local_removals[target] = "REMOVING"
            self._save_json(self.removals_path, self.local_removals)
            self._set_state(**{REMOVALS: dict(self.local_removals)})
            await self._announced(target)
            old = self.node.ring()
            new = self.future_ring() or old
            total = await self._execute(old, new)
            self.local_removals[target] = "REMOVED"
            self._save_json(self.removals_path, self.local_removals)
            self._set_state(**{REMOVALS: dict(self.local_removals)})
            await self._release(target)
            total["seconds"] = round(trio.current_time() - start, 3)
            log.info("removenode %s complete: %s", target, total)
            self.last_result = {"op": "removenode", "node": target, **total}
            return self.last_result
        finally:
            self.operation = None

    # ---- move

    async def move(self, tokens: Sequence[Token], reason: str = "operator") -> dict[str, Any]:
        """Move this node to ``tokens``: stream what the new placement gains, then switch tokens."""
        await self._exclusive("move")
        try:
            if self.node.status != "NORMAL":
                raise InvalidRequest(f"{self.node.node_id} is {self.node.status}, not NORMAL")
            new_tokens = sorted(set(tokens))
            if not new_tokens:
                raise InvalidRequest("move needs at least one token")
            me = self.node.node_id

            def check_clash() -> None:
                # Tokens held by other nodes, or announced by another moving node: two light nodes
                # balancing at once both pick the middle of the heavy node's widest range.
                ring = self.node.ring()
                taken = {t for t in ring.sorted_tokens if ring.owner(t) != me}
                for n, moving_to in self.moves(self.node._members()).items():
                    if n != me:
                        taken.update(moving_to)
                clash = [t for t in new_tokens if t in taken]
                if clash:
                    raise InvalidRequest(f"token {self.partitioner.to_string(clash[0])} is owned by, or being moved to by, another node")

            check_clash()
            start = trio.current_time()
            part = self.partitioner
            self.move_to = new_tokens
            self._set_state(**{MOVE_TO: [part.to_string(t) for t in new_tokens]})
            try:
                await self._announced(me)
                # Again once every peer has our announcement: of two nodes that announced the same
                # token at once, at least one sees the other's by now, and withdraws.
                check_clash()
                old = self.node.ring()
                new = self.future_ring() or old
                total = await self._execute(old, new, prefer_source=self.node.node_id)
                self.node.tokens = new_tokens
                write_atomic(self.node.data_dir / "tokens.json", json.dumps([part.to_string(t) for t in new_tokens]))
            except Exception as exc:
                # Withdraw the announcement: a MOVE_TO left in gossip is a transition that never
                # ends (writes to pending replicas forever, cleanup refused, the balancer idle).
                # The node keeps its old tokens; what was streamed is left for cleanup.
                self.move_to = None
                self._set_state(**{MOVE_TO: []})
                log.warning("move (%s) failed, keeping the old tokens: %s", reason, exc)
                raise
            self.move_to = None
            self._set_state(**{TOKENS: new_tokens, MOVE_TO: []})
            # What was streamed in sits in memtables, which LOAD (SSTable bytes) does not count:
            # flush and publish now, or the next load-balance decision sees this node as light as
            # before and moves it again and again into the heavy node's range.
            try:
                await offload(self.node.engine.flush)
                self._set_state(**{LOAD: await offload(self.node._load_bytes)})
            except (OSError, StorageError) as exc:
                log.warning("move: cannot flush and publish load: %s", exc)
            total["seconds"] = round(trio.current_time() - start, 3)
            log.info("move (%s) complete: %s", reason, total)
            self.last_result = {"op": "move", "reason": reason, **total}
            return self.last_result
        finally:
            self.operation = None

    # ---- cleanup

    def _cleanup_table(self, ks: str, table: str, ranges: list[Range]) -> int:
        """Delete (locally) every partition of the table outside ``ranges``; returns how many."""
        engine = self.node.engine
        token = self.partitioner.token
        dropped = 0
        for p in list(engine.scan(ks, table)):
            t = token(p.key)
            if any(range_contains(left, right, t) for left, right in ranges):
                continue
            newest = max([c.timestamp for c in p.cells.values()] + [p.partition_tombstone or 0] +
                         [rt.timestamp for rt in p.range_tombstones.values()])
            # A local partition tombstone covering exactly what is here, with a deletion time far
            # past any gc grace, so the major compaction below purges it together with the data.
            engine.apply(ks, table, Mutation(p.key, [], newest, 1))
            dropped += 1
        if dropped:
            engine.flush(ks, table)
            engine.compact(ks, table, major=True)
        return dropped

    async def cleanup(self, keyspace: str | None = None) -> dict[str, Any]:
        """Drop the data of ranges this node no longer replicates."""
        await self._exclusive("cleanup")
        try:
            if self.future_ring() is not None:
                raise InvalidRequest("a membership change is in progress; run cleanup after it completes")
            ring = self.node.ring()
            out: dict[str, int] = {}
            for ks, table, strategy in self._tables(keyspace):
                ranges = ring.ranges_for(self.node.node_id, strategy)
                out[f"{ks}.{table}"] = await offload(self._cleanup_table, ks, table, ranges)
            log.info("cleanup dropped %s partitions", out)
            self.last_result = {"op": "cleanup", "dropped": out}
            return self.last_result
        finally:
            self.operation = None

    # ---- load balancing

    def balance_decision(self) -> list[Token] | None:
        """New tokens for this node if it is light and another node heavy, else None."""
        ring = self.node.ring()
        me = self.node.node_id
        loads = {n: v for n, v in self._loads().items() if n in ring.nodes}
        if me not in loads or len(loads) < 2:
            return None
        heavy = max(loads, key=lambda n: loads[n])
        if heavy == me or loads[heavy] <= 0 or loads[me] > loads[heavy] * self.config.balance_ratio:
            return None
        mine = ring.tokens_of(me)
        if len(mine) < 1:
            return None
        primary = {r[1]: r for r in ring.ranges()}
        # Give up our narrowest range and split the heavy node's widest one.
        give = min(mine, key=lambda t: self.partitioner.range_fraction(*primary[t]))
        widest = max(ring.primary_ranges(heavy), key=lambda r: self.partitioner.range_fraction(*r))
        mid = _midpoint(self.partitioner, *widest)
        if mid is None or mid in ring.sorted_tokens:
            return None
        new = [t for t in mine if t != give] + [mid] if len(mine) > 1 else [mid]
        note = (f"load balance: {me} load {int(loads[me])} <= {self.config.balance_ratio:g} x {heavy} load {int(loads[heavy])}; "
                f"moving token {self.partitioner.to_string(give)} -> {self.partitioner.to_string(mid)}")
        self.balance_log.append(note)
        del self.balance_log[:-20]
        log.info("%s", note)
        self._set_state(**{BALANCE: note})
        return sorted(new)

    async def _balance_loop(self) -> None:
        while True:
            await self.node.runtime.clock.sleep(self.config.balance_interval * (0.5 + self.node.runtime.rng.random()))
            if self.operation is not None or self.node.status != "NORMAL" or self.future_ring() is not None:
                continue
            new = self.balance_decision()
            if new is None:
                continue
            try:
                await self.move(new, reason="load balance")
            except Exception as exc:
                log.warning("load balance move failed: %s", exc)

    # ---- running

    async def _publish_load(self) -> None:
        while True:
            try:
                load = await offload(self.node._load_bytes)
                self._set_state(**{LOAD: load})
            except OSError as exc:
                log.debug("cannot measure load: %s", exc)
            await self.node.runtime.clock.sleep(LOAD_PUBLISH_INTERVAL)

    async def run(self) -> None:
        """Publish load, resume or start a bootstrap, and balance load when enabled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.local_removals:
                self._set_state(**{REMOVALS: dict(self.local_removals)})
            nursery.start_soon(self._publish_load)
            if self.config.load_balance:
                nursery.start_soon(self._balance_loop)
            if self.node.status == "JOINING" and (self.config.auto_bootstrap or self.bootstrap_state() is not None):
                nursery.start_soon(self._auto_join)

    async def _auto_join(self) -> None:
        while self.node.status == "JOINING":
            try:
                await self.join()
            except Exception as exc:
                log.warning("bootstrap failed (%s); retrying in 2 s", exc)
                await trio.sleep(2.0)

    def status(self) -> dict[str, Any]:
        """What ``ringctl netstats``-like views show."""
        future = self.future_ring()
        return {
            "status": self.node.status,
            "operation": self.operation,
            "transition": future is not None,
            "removals": self.removals(),
            "streaming": self.streamer.stats.as_dict(),
            "file_streaming": dict(self.streamer.rangecopy.stats.__dict__) if self.streamer.rangecopy is not None else {},
            "last": self.last_result,
            "balance": list(self.balance_log),
        }
