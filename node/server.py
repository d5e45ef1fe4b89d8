"""The node process: client port, internode port, storage, gossip, coordinator, admin operations.

``ringnode --config node.toml`` (or ``python -m node --config node.toml``). Startup order: open
storage (replaying the commit log), load the schema, bind the internode port, start gossip and
the coordinator, bind the client port, then log ``ready`` and write ``data_dir/ready`` (JSON with
the bound ports and pid) so a harness can wait for it. SIGTERM/SIGINT drain: stop accepting
clients, flush every table, exit 0.
"""

from __future__ import annotations

import argparse
import errno
import gc
import hmac
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import trio

from node import protocol
from node.cluster.membership import SCHEMA, NodeInfo
from node.client_limits import ClientGate, ConnectionBounds, refuse_connection
from node.cluster.messaging import Messaging
from node.outbox import ClientOut
from node.config import ConfigError, NodeConfig, load_config, parse_host_port
from node.coordinator import Coordinator, live_row
from node.fast_writes import response_for_error, start_read, start_write
from node.durable import write_atomic
from node.hints import HintStore
from node.protocol import (
    FrameDecoder,
    InvalidRequest,
    Overloaded,
    ProtocolError,
    ServerError,
    Unauthorized,
    Unavailable,
    encode_frame,
    error_response,
    ok_response,
)
from node.ring import Endpoint, TokenMetadata, generate_tokens, make_partitioner
from node.runtime import Runtime, offload
from node.schema import Schema, load_schema, save_schema
from node.storage.cells import Cell, Mutation, Partition, RangeTombstone
from node.storage.engine import Prepared, StorageEngine
from node.storage.errors import CommitLogCorrupt, InvalidMutation, StorageError, StorageFailure
from node.membership_admin import admin_ops
from node.storage.files import disk_admin
from node.coordination import ZooKeeperCoordinator
from node.membership_ops import MembershipManager
from node.storage_admin import scrub_node, storage_ops
from node.repair import Repairer
from node.rangecopy import RangeCopy
from node.streaming import Streamer, choose_sort_key

log = logging.getLogger("node.server")

VERB_SCHEMA_PUSH = "SCHEMA_PUSH"
VERB_SCHEMA_PULL = "SCHEMA_PULL"

# Read size per receive on client connections: a burst of pipelined requests in one syscall.
_RECV_BYTES = 256 * 1024
# Unanswered requests one client connection may pipeline before we stop reading from it (TCP
# pushes back on the client); the node-wide max_in_flight still answers Overloaded beyond it.
_PER_CONNECTION_PIPELINE = 1024
# How many requests of one receive start before the reader yields once, so their answers are
# buffered and counted against [clients] max_buffered_bytes before more requests start.
_BUFFER_CHECK_EVERY = 8
# How often background storage housekeeping runs (periodic commit log sync is separate).
_HOUSEKEEPING_INTERVAL = 1.0
# A failed automatic repair of tables refusing reads (storage.auto_repair_after_s) is retried
# after this long.
AUTO_REPAIR_RETRY_S = 30.0
# How often to compare schema versions with live peers besides gossip CHANGE events.
_SCHEMA_CHECK_INTERVAL = 2.0
# The ring view is rebuilt on every gossip event and local status/token/move/removal change; on
# top of that it is fully re-derived at least this often, so a change that reached neither (a
# future membership field) is picked up within a second instead of never. Cheap: nothing is
# rebuilt when the full derivation finds the same members.
_RING_VIEW_REFRESH_S = 1.0
# The longest a `ring` request with `wait` is held for a change of the asker's version (the
# harness's movement probe waits instead of polling every few ms during a membership change).
MAX_RING_WAIT_S = 30.0
# Cyclic GC thresholds (CPython's default is 700, 10, 10). Every request allocates hundreds of
# short-lived objects (frames, dicts, trio tasks and events), so at the default a young
# collection ran every few requests and a full one, which walks every memtable cell, every few
# hundred: about 15% of a node's CPU under load in bench/cluster.py and its worst latencies.
# Collecting young objects every 10,000 allocations keeps cycles short-lived all the same.
_GC_THRESHOLDS = (10_000, 10, 10)
# localread bounds: keys per request and cells per answer, so one answer stays far below
# MAX_FRAME_BYTES (16 MiB) even with large values, and a node answers it in milliseconds.
LOCALREAD_MAX_KEYS = 256
LOCALREAD_MAX_CELLS = 4096


class _Formatter(logging.Formatter):
    """One line per event: time, level, node id, logger, message."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        ts = self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}"
        line = f"{ts} {record.levelname} node={self.node_id} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        return line


def setup_logging(node_id: str, data_dir: Path, level: int = logging.INFO) -> None:
    """Log to stderr and to data_dir/node.log."""
    root = logging.getLogger()
    root.handlers.clear()
    # A full disk makes node.log unwritable; logging must not then print a traceback per line.
    logging.raiseExceptions = False
    root.setLevel(level)
    fmt = _Formatter(node_id)
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(data_dir / "node.log")):
        handler.setFormatter(fmt)
        root.addHandler(handler)


class LocalStore:
    """The coordinator's view of this node's storage engine (Trio side)."""

    def __init__(self, engine: StorageEngine, sync_mode: str) -> None:
        self.engine = engine
        self.sync_mode = sync_mode
        # Periodic mode acknowledges once the record is handed to the OS inside engine.apply, so
        # an apply never waits and the coordinator may call apply_now instead of awaiting apply.
        self.waits_for_sync = sync_mode != "periodic"
        # Batch/group mode: one worker thread waits for the fsync on behalf of every writer of
        # the moment (a thread hop per write cost more than the shared fsync); the others wait
        # on its event. _durable is how far those waits have confirmed the log fsynced.
        self._written = -1
        self._durable = -1
        self._sync_done: trio.Event | None = None

    async def apply(self, keyspace: str, table: str, mutation: Mutation) -> None:
        """Append and apply; in batch/group mode wait (in a thread) until the record is fsynced."""
        pos = self.engine.apply(keyspace, table, mutation)
        if self.waits_for_sync:
            await self._wait_durable(pos)

    async def apply_encoded(self, keyspace: str, table: str, obj_bytes: bytes) -> None:
        """:meth:`apply` of a mutation sent as the msgpack bytes of its ``to_obj()``."""
        prepared = self.engine.prepare_encoded(keyspace, table, obj_bytes)
        pos = self.engine.apply(keyspace, table, prepared.mutation, prepared=prepared)
        if self.waits_for_sync:
            await self._wait_durable(pos)

    async def _wait_durable(self, pos: int) -> None:
        self._written = max(self._written, pos)
        while self._durable < pos:
            done = self._sync_done
            if done is not None:
                await done.wait()
                continue
            # Lead: wait for everything appended so far, so the writers queued behind this one
            # are covered by the same fsync.
            target = self._written
            done = self._sync_done = trio.Event()
            try:
                await offload(self.engine.wait_durable, target)
                self._durable = max(self._durable, target)
            finally:
                self._sync_done = None
                done.set()

    def check(self, keyspace: str, table: str, mutation: Mutation) -> Prepared:
        """InvalidRequest for a mutation this node's storage would refuse (before it is sent); else
        the validated, encoded mutation for :meth:`apply_now` (so the local apply does not redo it)."""
        try:
            return self.engine.prepare(keyspace, table, mutation)
        except InvalidMutation as exc:
            raise InvalidRequest(f"storage refuses the mutation: {exc}") from exc

    def apply_now(self, keyspace: str, table: str, mutation: Mutation, prepared: Prepared | None = None) -> None:
        """Append and apply without waiting: only when ``waits_for_sync`` is False (periodic mode)."""
        if self.waits_for_sync:
            raise RuntimeError(f"apply_now in {self.sync_mode} commit log mode would acknowledge before the fsync")
        self.engine.apply(keyspace, table, mutation, prepared=prepared)

    def prepare_encoded(self, keyspace: str, table: str, obj_bytes: bytes) -> Prepared:
        """The engine's :meth:`StorageEngine.prepare_encoded` (InvalidMutation as apply raises it)."""
        return self.engine.prepare_encoded(keyspace, table, obj_bytes)

    def prepare(self, keyspace: str, table: str, mutation: Mutation) -> Prepared:
        """The engine's :meth:`StorageEngine.prepare` (InvalidMutation as apply raises it)."""
        return self.engine.prepare(keyspace, table, mutation)

    def apply_prepared_now(self, batch: list[Prepared]) -> list[int | StorageError]:
        """Append and apply several prepared mutations with one commit log write, without waiting
        (periodic mode only, as :meth:`apply_now`); each one's log position or its error."""
        if self.waits_for_sync:
            raise RuntimeError(f"apply_now in {self.sync_mode} commit log mode would acknowledge before the fsync")
        return self.engine.apply_prepared(batch)

    def apply_encoded_now(self, keyspace: str, table: str, obj_bytes: bytes) -> None:
        """:meth:`apply_now` of a mutation sent as the msgpack bytes of its ``to_obj()``."""
        if self.waits_for_sync:
            raise RuntimeError(f"apply_now in {self.sync_mode} commit log mode would acknowledge before the fsync")
        prepared = self.engine.prepare_encoded(keyspace, table, obj_bytes)
        self.engine.apply(keyspace, table, prepared.mutation, prepared=prepared)

    async def read(self, keyspace: str, table: str, key: bytes, columns: Sequence[str] | None) -> Partition | None:
        """The stored partition (memtables and SSTables merged)."""
        return self.engine.read(keyspace, table, key, list(columns) if columns is not None else None)

    def read_now(self, keyspace: str, table: str, key: bytes, columns: Sequence[str] | None) -> Partition | None:
        """The same read, synchronously (it never waits: memtables and mmap'd SSTables)."""
        return self.engine.read(keyspace, table, key, list(columns) if columns is not None else None)


class Node:
    """One ringlab node."""

    def __init__(self, config: NodeConfig, runtime: Runtime | None = None) -> None:
        self.config = config
        self.runtime = runtime or Runtime.real(config.rng_seed)
        self.node_id = config.node_id
        self.partitioner = make_partitioner(config.partitioner)
        self.data_dir = config.data_dir
        _startup_file(self.data_dir, lambda: self.data_dir.mkdir(parents=True, exist_ok=True))
        self.schema_path = self.data_dir / "schema.json"
        self.schema = _startup_file(self.schema_path, lambda: load_schema(self.schema_path))
        self.tokens = _startup_file(self.data_dir / "tokens.json", self._load_tokens)
        # JOINING until bootstrap streamed this node's ranges (node/membership_ops.py).
        self.status = "JOINING" if not self.tokens or (self.data_dir / "bootstrap.json").exists() else "NORMAL"
        # The last write timestamp this node assigned (see _write_timestamp).
        self._last_write_ts = 0
        self.peers_path = self.data_dir / "peers.json"
        self._saved_peers = self._load_peers()
        # Partitions in token order, so streaming and repair scan a token range in one pass.
        sort_key, token_ordered = _startup_file(self.data_dir / "storage",
                                                lambda: choose_sort_key(self.data_dir / "storage", self.partitioner))
        self.engine = StorageEngine(self.data_dir / "storage", config.storage, self.runtime.clock, sort_key,
                                    on_fatal=_die, on_disk_failure=self._disk_failed)
        # disk_failure_policy stop: the cancel scopes of the internode transports (messaging,
        # gossip), cancelled when a data-disk failure stops this node's traffic (run_sync_soon:
        # the engine may meet it in a worker thread).
        self._traffic_scopes: list[trio.CancelScope] = []
        self._trio_token: Any = None
        self.local = LocalStore(self.engine, config.storage.commitlog_sync)
        self.messaging = Messaging(
            self.runtime,
            self.node_id,
            config.listen_host,
            config.internode_port,
            routes=config.route_addresses(),
            secret=config.cluster_secret,
            insecure=config.internode_insecure,
        )
        self.hints = HintStore(
            self.data_dir / "hints",
            self.runtime,
            config.hints.max_hint_window,
            config.hints.throttle_kb_per_s,
            config.hints.delivery_check_interval,
        )
        self.gossiper: Any = None
        self._ring: TokenMetadata | None = None
        self._ring_key: Any = None
        # The ring's version, as Cassandra's TokenMetadata keeps one: this incarnation's start
        # (so a restarted node's versions never repeat an earlier one's) and a count of rebuilds.
        self._ring_version = [self.runtime.clock.wall_us(), 0]
        # Per-request topology lookups are served from a view taken when anything that shapes the
        # ring changed (gossip events bump the epoch), not re-derived from gossip per request.
        self._topology_epoch = 0
        # Set (and dropped) when anything that shapes the ring may have changed: what `ring`
        # requests that wait for a new version wait on.
        self._ring_may_change: trio.Event | None = None
        self._view_key: Any = None
        self._view_expires = 0.0
        self._view_serial = 0
        self._dc_of: dict[str, str] = {}
        self._pending_view: tuple[int, bool] = (-1, False)
        self.coordinator = Coordinator(
            self.runtime,
            self.node_id,
            config.datacenter,
            self.messaging,
            self,
            self.ring,
            lambda: self.schema,
            self.local,
            self.hints if config.hints.enabled else None,
            config.faults,
            config.timeouts.write,
            config.timeouts.read,
        )
        self.streamer = Streamer(
            self.node_id, self.messaging, self.engine, self.partitioner, token_ordered,
            config.storage.commitlog_sync, lambda ks, t: (ks, t) in self.engine.tables(),
            RangeCopy(self.node_id, self.messaging, self.engine, self.runtime, config.faults,
                      config.membership.file_stream_min_bytes),
        )
        self._token_ordered = token_ordered
        # The paper's ZooKeeper leader assigns a joining node's tokens (node/coordination.py).
        self.zk: ZooKeeperCoordinator | None = None
        if config.coordination.mode == "zookeeper":
            self.zk = ZooKeeperCoordinator(self.node_id, config.coordination, self.data_dir / "ranges.json")
        self.membership = MembershipManager(self, self.streamer)
        self.repairer = Repairer(self, self.streamer)
        self.messaging.register(VERB_SCHEMA_PUSH, self._handle_schema_push)
        self.messaging.register(VERB_SCHEMA_PULL, self._handle_schema_pull)
        self.in_flight = 0
        # False in a simulated node, which is not a process: SIGTERM and SIGINT belong to the
        # worker that runs the world (an attribute, not a patched method: this class may be compiled).
        self.handles_signals = True
        self.client_gate = ClientGate(config.clients, self.node_id)
        self.started = False  # the ready file is written
        self.client_port: int | None = None
        self.internode_port: int | None = None
        self._client_scope: trio.CancelScope | None = None
        self._drain = trio.Event()
        self._auto_repairing = False  # a repair of tables refusing reads is running or waiting to retry
        self._schema_lock = trio.Lock()
        self.membership_ops = admin_ops(self)
        self.membership_ops.update(storage_ops(self))

    # ---- tokens and ring

    def _load_tokens(self) -> list[Any]:
        path = self.data_dir / "tokens.json"
        part = self.partitioner
        if path.exists():
            return [part.from_string(t) for t in json.loads(path.read_text())]
        if self.config.membership.auto_bootstrap:
            return []  # chosen at bootstrap from the ring's load (node/membership_ops.py)
        if self.config.initial_tokens:
            tokens = sorted(part.from_string(t) for t in self.config.initial_tokens)
        else:
            tokens = generate_tokens(part, self.config.num_tokens, self.runtime.rng)
        write_atomic(path, json.dumps([part.to_string(t) for t in tokens]))
        return tokens

    def _load_peers(self) -> dict[str, NodeInfo]:
        """The ring as this node last knew it (Cassandra's system.peers).

        A restarted node must place replicas on the same ring as everyone else from its first
        request: before gossip has told it about every peer, a ring of only the nodes heard from
        so far would send writes to the wrong replicas and read from the wrong ones. Known peers
        start out DOWN until gossip hears from them.
        """
        try:
            raw = json.loads(self.peers_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("node %s: ignoring unreadable %s: %s", self.node_id, self.peers_path, exc)
            return {}
        part = self.partitioner
        peers = {}
        for d in raw:
            try:
                d = dict(d)
                d["tokens"] = [part.from_string(t) for t in d["tokens"]]
                peers[d["node_id"]] = NodeInfo(**d)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("node %s: ignoring a bad entry in %s: %s", self.node_id, self.peers_path, exc)
        return peers

    def _save_peers(self, members: dict[str, NodeInfo]) -> None:
        import dataclasses

        part = self.partitioner
        rows = []
        for n, info in sorted(members.items()):
            if n == self.node_id or not info.tokens:
                continue
            d = dataclasses.asdict(info)
            d["tokens"] = [part.to_string(t) for t in info.tokens]
            rows.append(d)
        try:
            write_atomic(self.peers_path, json.dumps(rows))
        except OSError as exc:
            log.warning("node %s: cannot save %s: %s", self.node_id, self.peers_path, exc)

    def _members(self) -> dict[str, NodeInfo]:
        nodes = dict(self._saved_peers)
        if self.gossiper is not None:
            nodes.update(self.gossiper.nodes())
        nodes[self.node_id] = self._local_info()
        return nodes

    def _view_fast_key(self) -> Any:
        """Everything besides gossip events that shapes the ring view (cheap to compare)."""
        m = self.membership
        move_to = m.move_to
        return (
            self._topology_epoch,
            self.status,
            tuple(self.tokens),
            tuple(move_to) if move_to else None,
            tuple(sorted(m.local_removals.items())) if m.local_removals else (),
        )

    def ring(self) -> TokenMetadata:
        """The current token metadata (rebuilt when gossip changes tokens or placement)."""
        fast = self._view_fast_key()
        now = self.runtime.clock.monotonic()
        if self._ring is not None and fast == self._view_key and now < self._view_expires:
            return self._ring
        members = self._members()
        key = (tuple(sorted((n, tuple(i.tokens), i.datacenter, i.rack, i.status) for n, i in members.items())), self.membership.ring_key())
        if self._ring is None or key != self._ring_key:
            usable = self.membership.natural(members)
            self._ring = TokenMetadata(
                self.partitioner,
                {n: i.tokens for n, i in usable.items()},
                {n: Endpoint(i.datacenter, i.rack) for n, i in usable.items()},
            )
            self._ring_key = key
            self._ring_version = [self._ring_version[0], self._ring_version[1] + 1]
            if self._token_ordered:
                # Flushes and compactions cut SSTables at every ring token, a joining node's
                # included, so whole files fit the ranges a change moves (node/rangecopy.py).
                self.engine.set_split_points(t for i in members.values() for t in i.tokens)
            self._saved_peers = {n: i for n, i in members.items() if n != self.node_id}
            self._save_peers(members)
        self._dc_of = {n: i.datacenter for n, i in members.items()}
        self._view_key = fast
        self._view_expires = now + _RING_VIEW_REFRESH_S
        self._view_serial += 1
        return self._ring

    def is_alive(self, node_id: str) -> bool:
        """Per gossip's failure detector (this node is always alive to itself)."""
        if node_id == self.node_id:
            return True
        return self.gossiper is not None and self.gossiper.is_alive(node_id)

    def in_transition(self) -> bool:
        """Whether an announced membership change is under way (a future ring differs)."""
        self.ring()
        serial, in_transition = self._pending_view
        if serial != self._view_serial:
            # Re-derived only when the view changed: outside a membership change there is no
            # future ring and nothing is pending, which is every request's common case.
            in_transition = self.membership.future_ring() is not None
            self._pending_view = (self._view_serial, in_transition)
        return in_transition

    def pending_endpoints(self, strategy: Any, key: bytes) -> tuple[str, ...]:
        """Nodes gaining ``key``'s range in an announced membership change (writes go there too)."""
        if not self.in_transition():
            return ()
        return self.membership.pending_endpoints(strategy, key)

    def datacenter_of(self, node_id: str) -> str:
        """The node's datacenter per gossip."""
        if node_id == self.node_id:
            return self.config.datacenter
        self.ring()  # refreshes the view the datacenters come from
        return self._dc_of.get(node_id, "?")

    def _local_info(self) -> NodeInfo:
        return NodeInfo(
            node_id=self.node_id,
            internode_host=self.config.listen_host,
            internode_port=self.internode_port or self.config.internode_port,
            client_host=self.config.client_host or self.config.listen_host,
            client_port=self.client_port or self.config.client_port,
            datacenter=self.config.datacenter,
            rack=self.config.rack,
            tokens=list(self.tokens),
            status=self.status,
            load=0,
        )

    # ---- schema

    def _apply_schema_to_storage(self, schema: Schema | None = None, drop: bool = True) -> None:
        live = {(t.keyspace, t.name): t for t in (schema or self.schema).live_tables()}
        existing = self.engine.tables()
        for key, t in live.items():
            if key not in existing:
                self.engine.create_table(t.keyspace, t.name, t.storage_options())
        for key in existing if drop else ():
            if key not in live:
                self.engine.drop_table(*key)

    async def _merge_schema(self, other: Schema) -> bool:
        """Merge ``other`` into the schema (under _schema_lock), a new table made in storage before
        the schema shows it: requests served meanwhile (this awaits the disk) found it in the
        schema but not in storage ('storage refused the request: unknown table', or a read that
        timed out)."""
        merged = Schema.from_obj(self.schema.to_obj())
        if not merged.merge(other):
            return False
        await offload(save_schema, self.schema_path, merged)
        await offload(self._apply_schema_to_storage, merged, False)
        self.schema.merge(other)
        live = {(t.keyspace, t.name) for t in self.schema.live_tables()}
        if any(key not in live for key in self.engine.tables()):
            await offload(self._apply_schema_to_storage)  # the drops, once the schema no longer shows them
        return True

    async def _adopt_schema(self, other: Schema) -> bool:
        async with self._schema_lock:
            if not await self._merge_schema(other):
                return False
            self._publish_schema_version()
            log.info("schema now %s", self.schema.version())
            return True

    def _publish_schema_version(self) -> None:
        if self.gossiper is not None:
            self.gossiper.set_app_state(SCHEMA, self.schema.version())

    async def _handle_schema_push(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        await self._adopt_schema(Schema.from_obj(payload["schema"]))
        return {"version": self.schema.version()}

    async def _handle_schema_pull(self, sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {"schema": self.schema.to_obj()}

    async def _schema_change(self, change: Any) -> dict[str, Any]:
        """Apply a schema change here, persist it, push it to every live node and wait for them."""
        async with self._schema_lock:
            candidate = Schema.from_obj(self.schema.to_obj())
            changed = change(candidate)
            if changed:
                await self._merge_schema(candidate)
                self._publish_schema_version()
        agreed = [self.node_id]
        if changed:
            obj = self.schema.to_obj()
            peers = [n for n in self._members() if n != self.node_id and self.is_alive(n)]

            async def push(peer: str) -> None:
                try:
                    await self.messaging.request(peer, VERB_SCHEMA_PUSH, {"schema": obj}, self.config.timeouts.schema)
                    agreed.append(peer)
                except Exception as exc:
                    log.warning("schema push to %s failed: %s", peer, exc)

            async with trio.open_nursery() as n:
                for p in peers:
                    n.start_soon(push, p)
        return {"version": self.schema.version(), "applied": bool(changed), "agreed": sorted(agreed)}

    async def _schema_sync_loop(self) -> None:
        """Pull the schema from live peers announcing a different version (joiners catch up)."""
        while True:
            await self.runtime.clock.sleep(_SCHEMA_CHECK_INTERVAL)
            mine = self.schema.version()
            for peer in list(self._members()):
                if peer == self.node_id or not self.is_alive(peer):
                    continue
                theirs = self.gossiper.app_state(peer, SCHEMA) if self.gossiper is not None else None
                if theirs is None or theirs == mine:
                    continue
                await self.pull_schema(peer)
                mine = self.schema.version()

    async def pull_schema(self, peer: str) -> bool:
        """Ask ``peer`` for its schema and merge it; True if that changed ours. A failure is
        logged (the next round of the schema check tries again)."""
        try:
            reply = await self.messaging.request(peer, VERB_SCHEMA_PULL, {}, self.config.timeouts.schema)
            return await self._adopt_schema(Schema.from_obj(reply["schema"]))
        except Exception as exc:  # noqa: BLE001 - logged; the schema check's next round retries
            log.info("schema pull from %s failed: %s", peer, exc)
            return False

    # ---- running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the node until drained (SIGTERM or the drain admin op) or cancelled."""
        ready = self.data_dir / "ready"
        ready.unlink(missing_ok=True)
        await offload(self.engine.open)
        await offload(self._apply_schema_to_storage)
        try:
            async with trio.open_nursery() as nursery:
                self._trio_token = trio.lowlevel.current_trio_token()
                self.internode_port = await nursery.start(self._stoppable, self.messaging.run)
                self.gossiper = self._make_gossiper()
                if self.gossiper is not None:
                    self.gossiper.subscribe(self._on_membership_event)
                    self._publish_schema_version()
                    nursery.start_soon(self._stoppable, self.gossiper.run)
                await nursery.start(self.coordinator.run)
                if self.zk is not None:
                    nursery.start_soon(self.zk.run, lambda: [self.partitioner.to_string(t) for t in self.tokens])
                nursery.start_soon(self.membership.run)
                nursery.start_soon(self.hints.run, self.is_alive, self._send_hint)
                nursery.start_soon(self._housekeeping)
                nursery.start_soon(self._schema_sync_loop)
                nursery.start_soon(self._signals)
                listeners = await self.runtime.network.open_tcp_listeners(self.config.client_port, host=self.config.listen_host)
                self.client_port = listeners[0].socket.getsockname()[1]
                if self.gossiper is not None:
                    self.gossiper.set_app_state("CLIENT_ADDR", [self.config.client_host or self.config.listen_host, self.client_port])
                self._client_scope = trio.CancelScope()
                nursery.start_soon(self._serve_clients, listeners)
                try:
                    ready.write_text(json.dumps({"client_port": self.client_port, "internode_port": self.internode_port, "pid": os.getpid()}))
                except OSError as exc:
                    raise StorageFailure(str(ready), f"cannot write the ready file: {exc.strerror or exc}") from exc
                self.started = True
                log.info("ready client_port=%d internode_port=%d tokens=%d", self.client_port, self.internode_port, len(self.tokens))
                if self.engine.disk_failure() is not None:  # met at open (stop_paranoid)
                    self._stop_traffic()
                task_status.started()
                await self._drain.wait()
                log.info("draining: closing the client port, flushing")
                self._client_scope.cancel()
                await offload(self.engine.flush)
                nursery.cancel_scope.cancel()
        finally:
            ready.unlink(missing_ok=True)
            self.hints.close()
            with trio.CancelScope(shield=True):
                await offload(self.engine.close)
            log.info("stopped")

    async def _stoppable(self, run: Any, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """``run`` (messaging, gossip) until disk_failure_policy stops this node's traffic."""
        scope = trio.CancelScope()
        self._traffic_scopes.append(scope)
        with scope:
            await run(task_status=task_status)

    def _disk_failed(self, exc: StorageError) -> None:
        """The engine's disk_failure_policy stop/stop_paranoid hook (any thread)."""
        if self._trio_token is not None:
            self._trio_token.run_sync_soon(self._stop_traffic)

    def _stop_traffic(self) -> None:
        """Stop internode messaging and gossip (peers see this node down); the client port
        refuses all but INSPECTION_OPS from now on (authorize). The process stays up."""
        for scope in self._traffic_scopes:
            scope.cancel()
        log.critical("stopped client and internode traffic after a data disk failure: %s", self.engine.disk_failure())

    def _make_gossiper(self) -> Any:
        try:
            from node.cluster.gossip import Gossiper
        except ImportError:
            log.error("node.cluster.gossip is not available: running without membership")
            return None
        info = self._local_info()
        seeds = self.config.seed_addresses()
        return Gossiper(self.runtime, self.messaging, info, seeds, self.config.gossip.interval, **_gossip_kwargs(Gossiper, self.config))

    def _on_membership_event(self, event: str, node_id: str) -> None:
        # Local changes (status, tokens, a move, a removal) reach here too: membership ops
        # announce each in gossip, and the gossiper reports a CHANGE of the local node.
        self._topology_epoch += 1
        if self._ring_may_change is not None:
            self._ring_may_change.set()
            self._ring_may_change = None
        log.info("membership %s %s", event, node_id)
        if event == "DOWN":
            self.hints.note_down(node_id)
            self.messaging.interrupt(node_id)
        elif event in ("UP", "JOIN"):
            self.hints.note_up(node_id)

    async def _send_hint(self, target: str, hint: dict[str, Any]) -> None:
        await self.messaging.request(target, "MUTATION", {"ks": hint["ks"], "t": hint["t"], "m": hint["m"]}, self.config.timeouts.write)

    async def _housekeeping(self) -> None:
        period = self.config.storage.commitlog_sync_period_ms / 1000.0
        last_sync = self.runtime.clock.monotonic()
        held_since: float | None = None
        async with trio.open_nursery() as nursery:
            while True:
                await self.runtime.clock.sleep(min(_HOUSEKEEPING_INTERVAL, period))
                try:
                    if self.config.storage.commitlog_sync == "periodic" and self.runtime.clock.monotonic() - last_sync >= period:
                        last_sync = self.runtime.clock.monotonic()
                        await offload(self.engine.sync_commitlog)
                    await offload(self.engine.maybe_flush)
                    # Re-cutting SSTables at new split points waits while a ring change is in
                    # flight or this node serves a transfer (node/streaming.py RESPLIT_HOLD_S).
                    resplit = not self.in_transition() and self.streamer.resplit_allowed()
                    await offload(self.engine.compact_due, resplit)
                except (StorageError, OSError) as exc:
                    # A full disk or a failed sync must not end the node: reads keep being served.
                    log.error("storage housekeeping failed: %s", exc)
                # A table refusing reads after a quarantine heals itself: repaired from its
                # replicas, then served again (an operator's scrub does the same at once).
                if not self.engine.holds_reads():
                    held_since = None
                elif held_since is None:
                    held_since = self.runtime.clock.monotonic()
                elif (self.config.storage.auto_repair_after_s > 0 and not self._auto_repairing
                      and self.engine.disk_failure() is None
                      and not self.repairer.running
                      and self.runtime.clock.monotonic() - held_since >= self.config.storage.auto_repair_after_s):
                    self._auto_repairing = True
                    nursery.start_soon(self._repair_held_tables)

    async def _repair_held_tables(self) -> None:
        """What a scrub does (verify, quarantine, repair, serve again), but leaving the reads
        refused when the repair could not reach every replica (tried again later)."""
        held = self.engine.held_tables()
        try:
            out = await scrub_node(self, repair=True, every_replica=True)
        except Exception as exc:  # noqa: BLE001 - retried later; reads stay refused meanwhile
            log.warning("automatic repair of %s failed: %s; reads stay refused, retrying in %g s",
                        ", ".join(sorted(held)), exc, AUTO_REPAIR_RETRY_S)
            await self.runtime.clock.sleep(AUTO_REPAIR_RETRY_S)
            return
        finally:
            self._auto_repairing = False
        log.warning("automatic repair after quarantine: %s repaired from their replicas, serving reads again",
                    ", ".join(out.get("released") or []) or "nothing left held")

    async def _signals(self) -> None:
        if not self.handles_signals:
            await trio.sleep_forever()
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for sig in signals:
                log.info("received %s", signal.Signals(sig).name)
                self._drain.set()

    # ---- client port

    async def _serve_clients(self, listeners: list[trio.SocketListener]) -> None:
        assert self._client_scope is not None
        with self._client_scope:
            await self.runtime.network.serve_listeners(self._admit_connection, listeners)

    async def _admit_connection(self, stream: trio.SocketStream) -> None:
        """Serve a connection unless the node is at [clients] max_connections (then refuse it)."""
        refusal = self.client_gate.admit()
        if refusal is not None:
            log.info("refusing a client connection: %s", refusal)
            await refuse_connection(stream, refusal)
            return
        try:
            await self._handle_connection(stream)
        finally:
            self.client_gate.release()

    async def _handle_connection(self, stream: trio.SocketStream) -> None:
        slots = trio.Semaphore(_PER_CONNECTION_PIPELINE)
        bounds = ConnectionBounds(self.client_gate)
        limits = self.config.clients
        outbox = self.messaging.outbox
        out = ClientOut(outbox, bounds)

        def respond(msg: dict[str, Any]) -> None:
            try:
                frame = encode_frame(msg)
            except ProtocolError as exc:
                frame = encode_frame(error_response(msg.get("id"), ServerError(f"response not encodable: {exc}")))
            out.buffered += len(frame)
            out.push(frame)

        async def writer() -> None:
            await out.write_frames(stream)

        async def run_one(msg: dict[str, Any]) -> None:
            try:
                answer = await self.handle_request(msg)
                # A batch of one: the answer is written by this task if the writer is idle
                # (node/outbox.py), instead of waking the writer for it.
                outbox.begin()
                try:
                    respond(answer)
                finally:
                    outbox.end()
            finally:
                self.in_flight -= 1
                slots.release()

        def finish(msg: dict[str, Any]) -> None:
            # A write served by fast_writes.start_write completed (no run_one task for it).
            respond(msg)
            self.in_flight -= 1
            slots.release()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                decoder = FrameDecoder()
                try:
                    while True:
                        while out.buffered > limits.max_buffered_bytes:
                            # The client is not reading its answers: stop reading its requests.
                            await out.drained.wait()
                        busy = slots.value < _PER_CONNECTION_PIPELINE
                        data = None
                        with trio.move_on_at(bounds.receive_deadline(decoder.buffered, busy)):
                            data = await stream.receive_some(_RECV_BYTES)
                        if data is None:
                            if not decoder.buffered and slots.value < _PER_CONNECTION_PIPELINE:
                                continue  # requests in flight: the client waits for us
                            log.info("closing client connection: %s", bounds.timed_out_reason(decoder.buffered))
                            break
                        if not data:
                            break
                        decoder.feed(data)
                        started = 0
                        # The replica requests and answers these requests queue go out when
                        # they are all started, written by this task (node/outbox.py); no
                        # batch spans a wait.
                        outbox.begin()
                        try:
                            while (msg := decoder.next_message()) is not None:
                                # One receive can hold hundreds of pipelined requests: hold the
                                # rest back while the answers already waiting pass the bound,
                                # and let the ones started answer now and then so their bytes
                                # are counted.
                                if out.buffered > limits.max_buffered_bytes or (started and started % _BUFFER_CHECK_EVERY == 0):
                                    outbox.end()
                                    try:
                                        while out.buffered > limits.max_buffered_bytes:
                                            await out.drained.wait()
                                        await trio.lowlevel.checkpoint()
                                    finally:
                                        outbox.begin()
                                started += 1
                                if self.in_flight >= self.config.max_in_flight:
                                    respond(error_response(msg.get("id"), Overloaded(f"node {self.node_id} has {self.in_flight} requests in flight")))
                                    continue
                                try:
                                    # Non-blocking first: an awaited acquire is a checkpoint per
                                    # request, draining a pipelined burst one request per loop turn.
                                    slots.acquire_nowait()
                                except trio.WouldBlock:
                                    outbox.end()
                                    try:
                                        await slots.acquire()
                                    finally:
                                        outbox.begin()
                                self.in_flight += 1
                                if not (start_write(self, msg, finish) or start_read(self, msg, finish)):
                                    nursery.start_soon(run_one, msg)
                        finally:
                            outbox.end()
                        refusal = bounds.received(decoder.buffered)
                        if refusal is not None:
                            log.warning("closing a client connection: %s", refusal)
                            respond(error_response(None, Overloaded(refusal)))
                            break
                except ProtocolError as exc:
                    log.info("client protocol error, closing connection: %s", exc)
                    respond(error_response(None, exc))
                # Let in-flight requests answer, then flush and close.
                while slots.value < _PER_CONNECTION_PIPELINE:
                    await trio.sleep(0.005)
                out.close_when_drained()
        except BaseException as failure:
            # The client went away (reset, closed mid-request): this connection ends, the node
            # serves on. The nursery wraps such errors in a group, hence the split (except*,
            # which mypyc does not compile).
            lost, rest = _split_connection_lost(failure)
            if rest is failure:
                raise
            if lost is not None:
                log.debug("client connection closed: %s",
                          lost.exceptions[0] if isinstance(lost, BaseExceptionGroup) else lost)
            if rest is not None:
                raise rest
        finally:
            bounds.close()
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def handle_request(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Execute one client request and build its response (never raises)."""
        rid = msg.get("id")
        try:
            req = protocol.validate_request(msg)
            self.authorize(req)
            op = req["op"]
            handler = self.membership_ops.get(op) or getattr(self, f"_op_{op}")
            return ok_response(rid, **(await handler(req)))
        except Exception as exc:
            return response_for_error(rid, msg.get("op"), exc)

    def authorize(self, req: dict[str, Any]) -> None:
        """Unauthorized unless the request carries the secret its op needs."""
        op = req["op"]
        if op not in protocol.INSPECTION_OPS and (failure := self.engine.disk_failure()) is not None:
            raise Unavailable(f"node {self.node_id} serves no traffic since a data disk failure (disk_failure_policy "
                              f"= {self.config.storage.disk_failure_policy}): {failure}", stopped=True)
        if op in protocol.SECRET_OPS:
            if not _secret_matches(self.config.cluster_secret, req.get("secret")):
                raise Unauthorized(f"{op} needs the cluster secret")
        elif op in protocol.DATA_OPS and self.config.client_secret:
            # Optional client authentication (Cassandra's PasswordAuthenticator plays this role).
            if not _secret_matches(self.config.client_secret, req.get("auth")):
                raise Unauthorized(f"{op} needs the client secret (auth): this node has client_secret set")

    # ---- data ops

    def _now_s(self) -> int:
        return int(self.runtime.clock.wall())

    def _cells(self, columns: dict[str, Any], ts: int, ttl: int | None) -> list[Cell]:
        ldt = self._now_s() + ttl if ttl is not None else None
        return [Cell(name, protocol.encode_value(v), ts, ttl, ldt) for name, v in columns.items()]

    def _deletion(self, key: bytes, columns: list[str] | None, ts: int) -> Mutation:
        now = self._now_s()
        if columns is None:
            return Mutation(key, [], ts, now)
        return Mutation(key, [Cell(c, None, ts, None, now) for c in columns])

    def _write_timestamp(self, req: dict[str, Any]) -> int:
        """The client's timestamp, or one from this node's clock, strictly increasing per node.

        Two writes this node stamps in the same microsecond would otherwise tie, and
        last-write-wins would keep one silently (found by the LWW checker's timestamp-collision
        finding). Cassandra's coordinator does the same: max(now, last + 1).
        """
        if req["timestamp"] is not None:
            return int(req["timestamp"])
        ts = max(self.runtime.clock.wall_us(), self._last_write_ts + 1)
        self._last_write_ts = ts
        return ts

    async def _op_ping(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"node": self.node_id}

    def write_mutation(self, req: dict[str, Any]) -> tuple[Mutation, int]:
        """The mutation of a validated put, delete or batch request, and its write timestamp."""
        ts = self._write_timestamp(req)
        key = req["key_bytes"]
        op = req["op"]
        if op == "put":
            return Mutation(key, self._cells(req["columns"], ts, req["ttl"])), ts
        if op == "delete":
            return self._deletion(key, req["columns"], ts), ts
        m = Mutation(key)
        for sub in req["mutations"]:
            if sub["op"] == "put":
                m.cells.extend(self._cells(sub["columns"], ts, sub.get("ttl")))
            else:
                d = self._deletion(key, sub.get("columns"), ts)
                m.cells.extend(d.cells)
                if d.partition_tombstone is not None:
                    m.partition_tombstone, m.partition_deletion_time = d.partition_tombstone, d.partition_deletion_time
        return m, ts

    async def _op_put(self, req: dict[str, Any]) -> dict[str, Any]:
        return await self._op_write(req)

    async def _op_delete(self, req: dict[str, Any]) -> dict[str, Any]:
        return await self._op_write(req)

    async def _op_batch(self, req: dict[str, Any]) -> dict[str, Any]:
        return await self._op_write(req)

    async def _op_write(self, req: dict[str, Any]) -> dict[str, Any]:
        m, ts = self.write_mutation(req)
        acks = await self.coordinator.write(req["keyspace"], req["table"], m, req["consistency"])
        return {"timestamp": ts, **acks}

    async def _op_get(self, req: dict[str, Any]) -> dict[str, Any]:
        self.schema.table(req["keyspace"], req["table"])
        part = await self.coordinator.read(req["keyspace"], req["table"], req["key_bytes"], req["columns"], req["consistency"])
        return self.get_result(req, part)

    def get_result(self, req: dict[str, Any], part: Partition | None) -> dict[str, Any]:
        """A validated get's answer from the partition its read returned: the visible columns."""
        tdef = self.schema.table(req["keyspace"], req["table"])
        cells = live_row(part, self._now_s(), tdef.column_order, req.get("limit"))
        return {"columns": {c.name: [protocol.decode_value(cast(bytes, c.value)), c.timestamp] for c in cells}}

    # ---- schema ops

    async def _op_create_keyspace(self, req: dict[str, Any]) -> dict[str, Any]:
        ts = self.runtime.clock.wall_us()
        return await self._schema_change(lambda s: s.create_keyspace(req["name"], req["replication"], ts, bool(req.get("if_not_exists"))))

    async def _op_drop_keyspace(self, req: dict[str, Any]) -> dict[str, Any]:
        ts = self.runtime.clock.wall_us()
        return await self._schema_change(lambda s: s.drop_keyspace(req["name"], ts, bool(req.get("if_exists"))))

    async def _op_create_table(self, req: dict[str, Any]) -> dict[str, Any]:
        ts = self.runtime.clock.wall_us()
        return await self._schema_change(
            lambda s: s.create_table(req["keyspace"], req["name"], req.get("options") or {}, ts, bool(req.get("if_not_exists")))
        )

    async def _op_drop_table(self, req: dict[str, Any]) -> dict[str, Any]:
        ts = self.runtime.clock.wall_us()
        return await self._schema_change(lambda s: s.drop_table(req["keyspace"], req["name"], ts, bool(req.get("if_exists"))))

    async def _op_describe(self, req: dict[str, Any]) -> dict[str, Any]:
        return self.schema.describe()

    # ---- admin ops

    async def _op_status(self, req: dict[str, Any]) -> dict[str, Any]:
        ring = self.ring()
        ks = req.get("keyspace")
        strategy = self.schema.keyspace(ks).strategy() if isinstance(ks, str) else None
        owns = ring.ownership(strategy)
        # "load": false (the liveness probe's once-a-second view) leaves this node's own load
        # out (null) instead of walking its data directory for it.
        own_load = self._load_bytes() if req.get("load") is not False else None
        # "failure_detector": true adds the detector's per-peer phi and arrival window
        # (nodetool failuredetector); left out by default, so the usual answer stays as it was.
        with_fd = req.get("failure_detector", False)
        if not isinstance(with_fd, bool):
            raise InvalidRequest(f"field 'failure_detector' must be a bool, not {with_fd!r}")
        nodes = []
        for n, info in sorted(self._members().items()):
            nodes.append(
                {
                    "node_id": n,
                    "state": "U" if self.is_alive(n) else "D",
                    "status": info.status,
                    "address": f"{info.internode_host}:{info.internode_port}",
                    "client": f"{info.client_host}:{info.client_port}",
                    "datacenter": info.datacenter,
                    "rack": info.rack,
                    "load": info.load if n != self.node_id else own_load,
                    "tokens": len(info.tokens),
                    "owns": owns.get(n),
                }
            )
        return {
            "node": self.node_id,
            "nodes": nodes,
            "schema_version": self.schema.version(),
            "in_flight": self.in_flight,
            "coordinator": dict(self.coordinator.stats),
            "hints": {"pending_bytes": self.hints.pending(), "stored": self.hints.stored, "delivered": self.hints.delivered,
                      "undeliverable": self.hints.undeliverable},
            "clients": {"open": self.client_gate.open, "refused": self.client_gate.refused_connections,
                        "timed_out": self.client_gate.timed_out},
            "faults": self.config.faults.as_dict(),
            "clock": {"offset_us": self.runtime.clock.offset_us(), "rate": self.runtime.clock.rate},
            # Why disk_failure_policy stopped this node's traffic (None: serving).
            "disk_failure": self.engine.disk_failure(),
            **({"failure_detector": self.gossiper.detector_view() if self.gossiper is not None else None}
               if with_fd else {}),
        }

    def _load_bytes(self) -> int:
        return data_bytes(self.data_dir)

    async def _op_ring(self, req: dict[str, Any]) -> dict[str, Any]:
        pairs = self.ring().token_strings()
        version = self._ring_version
        held = req.get("unless_version")
        if held == version:
            wait = req.get("wait")
            if wait is not None:
                if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= MAX_RING_WAIT_S:
                    raise InvalidRequest(f"field 'wait' must be a number of seconds from 0 to {MAX_RING_WAIT_S:g}, not {wait!r}")
                # Held until the ring's version moves on or the wait ends (re-derived at least
                # every _RING_VIEW_REFRESH_S, as ring() itself does).
                clock = self.runtime.clock
                until = clock.monotonic() + wait
                while held == version and (left := until - clock.monotonic()) > 0:
                    if self._ring_may_change is None:
                        self._ring_may_change = trio.Event()
                    with trio.move_on_after(min(left, _RING_VIEW_REFRESH_S)):
                        await self._ring_may_change.wait()
                    pairs = self.ring().token_strings()
                    version = self._ring_version
        if held == version:
            # The asker holds this ring already (the harness's movement probe waits for a new
            # one while a membership change runs): the version alone, without the tokens.
            return {"version": version, "unchanged": True}
        state = {o: "U" if self.is_alive(o) else "D" for o in {o for _, o in pairs}}
        return {"partitioner": self.partitioner.name, "tokens": [[tok, o, state[o]] for tok, o in pairs],
                "version": version}

    async def _op_gossipinfo(self, req: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for n in self._members():
            state = self.gossiper.endpoint_state(n) if self.gossiper is not None else None
            out[n] = {"alive": self.is_alive(n), "state": _plain(state)}
        return {"nodes": out}

    async def _op_getendpoints(self, req: dict[str, Any]) -> dict[str, Any]:
        strategy = self.schema.keyspace(req["keyspace"]).strategy()
        key = req["key_bytes"]
        token = self.partitioner.token(key)
        return {"token": self.partitioner.to_string(token), "endpoints": list(self.ring().endpoints_for(key, strategy))}

    async def _op_flush(self, req: dict[str, Any]) -> dict[str, Any]:
        ks, table = protocol.optional_table(req, "flush")
        flushed = await offload(lambda: self.engine.flush(ks, table))
        return {"flushed": flushed}

    async def _op_disk(self, req: dict[str, Any]) -> dict[str, Any]:
        # The disk nemesis's switch on the engine's file door (node/storage/files.py).
        try:
            out = disk_admin(self.engine.files, req.get("action"), req.get("error"), req.get("disk"))
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        log.warning("disk fault switch: %s", out)
        return out

    async def _op_compact(self, req: dict[str, Any]) -> dict[str, Any]:
        results = []
        want_ks, want_t = protocol.optional_table(req, "compact")
        for (ks, t) in list(self.engine.tables()):
            if want_ks not in (None, ks) or want_t not in (None, t):
                continue
            results.append(await offload(lambda ks=ks, t=t: self.engine.compact(ks, t, major=True)))
        return {"compacted": [r for r in results if r]}

    async def _op_snapshot(self, req: dict[str, Any]) -> dict[str, Any]:
        tag = req.get("tag") or f"snap-{self.runtime.clock.wall_us()}"
        if not isinstance(tag, str):
            raise InvalidRequest("tag must be a string")
        path = await offload(self.engine.snapshot, tag)
        return {"tag": tag, "path": str(path)}

    async def _op_drain(self, req: dict[str, Any]) -> dict[str, Any]:
        self._drain.set()
        return {"draining": True}

    async def _op_clock(self, req: dict[str, Any]) -> dict[str, Any]:
        clock = self.runtime.clock
        action = req.get("action", "get")
        try:
            if action == "set":
                offset, rate = req.get("offset_us"), req.get("rate")
                if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int)):
                    raise InvalidRequest("offset_us must be an integer")
                if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))):
                    raise InvalidRequest("rate must be a number")
                clock.set_skew(offset_us=offset, rate=float(rate) if rate is not None else None)
            elif action == "bump":
                delta = req.get("delta_us")
                if isinstance(delta, bool) or not isinstance(delta, int):
                    raise InvalidRequest("delta_us must be an integer")
                clock.bump(delta)
            elif action == "reset":
                clock.reset()
            elif action != "get":
                raise InvalidRequest(f"clock action must be get, set, bump or reset, got {action!r}")
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        if action != "get":
            log.info("clock %s: offset_us=%d rate=%g", action, clock.offset_us(), clock.rate)
        return {"wall_us": clock.wall_us(), "offset_us": clock.offset_us(), "rate": clock.rate}

    async def _op_route(self, req: dict[str, Any]) -> dict[str, Any]:
        """Reach a peer through ``address`` ("host:port", e.g. a fault proxy) from now on; without
        ``address``, list the routes. Used when a node joins a cluster whose links are proxied."""
        node, address = req.get("node"), req.get("address")
        if address is not None:
            if not isinstance(node, str) or not node:
                raise InvalidRequest("route needs node (a node id) with address")
            try:
                host, port = parse_host_port(address, "address")
            except ConfigError as exc:
                raise InvalidRequest(str(exc)) from exc
            self.messaging.set_route(node, host, port)
            self.config.routes[node] = f"{host}:{port}"
            log.info("route to %s now %s:%d", node, host, port)
        return {"routes": dict(self.config.routes)}

    async def _op_localread(self, req: dict[str, Any]) -> dict[str, Any]:
        """This node's own copy of some partitions: no coordination, no read repair (the harness's
        per-replica convergence check). Bounded: at most LOCALREAD_MAX_KEYS keys per request and
        LOCALREAD_MAX_CELLS cells per answer; a row cut short says ``more`` and is resumed with
        ``after`` (the last cell name returned) on a request that starts at that key."""
        ks, table = req.get("keyspace"), req.get("table")
        if not isinstance(ks, str) or not isinstance(table, str):
            raise InvalidRequest("localread needs keyspace and table (strings)")
        keys = req.get("keys")
        if not isinstance(keys, list) or not keys or len(keys) > LOCALREAD_MAX_KEYS:
            raise InvalidRequest(f"localread needs keys: a list of 1 to {LOCALREAD_MAX_KEYS} keys")
        after = req.get("after")
        if after is not None and not isinstance(after, str):
            raise InvalidRequest("after must be a column name (string)")
        if (ks, table) not in self.engine.tables():
            raise InvalidRequest(f"no table {ks}.{table} on node {self.node_id}")
        budget = LOCALREAD_MAX_CELLS
        rows: list[dict[str, Any]] = []
        for i, key in enumerate(keys):
            part = self.local.read_now(ks, table, protocol.key_bytes(key), None)
            names = sorted(part.cells) if part is not None else []
            if i == 0 and after is not None:
                names = [n for n in names if n > after]
            take = names[:budget]
            cells = []
            for n in take:
                c = part.cells[n]  # type: ignore[union-attr]
                cells.append([n, None if c.value is None else protocol.decode_value(c.value), c.timestamp,
                              c.value is None, c.local_deletion_time if c.ttl is not None else None])
            budget -= len(take)
            rows.append({"key": key, "cells": cells, "more": len(take) < len(names),
                         "partition_tombstone": part.partition_tombstone if part is not None else None})
            if budget <= 0 and (len(take) < len(names) or i + 1 < len(keys)):
                break
        return {"node": self.node_id, "rows": rows}

    async def _op_faults(self, req: dict[str, Any]) -> dict[str, Any]:
        changes = req.get("set") or {}
        if not isinstance(changes, dict):
            raise InvalidRequest("set must be a map of switch name to bool")
        try:
            for name, value in changes.items():
                self.config.faults.set(name, value)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        if changes:
            log.info("fault switches now %s", self.config.faults.as_dict())
        return {"faults": self.config.faults.as_dict()}


def data_bytes(data_dir: Path) -> int:
    """Every file's size under a node's storage/data (a file symlink's target, as
    os.path.getsize says): the load a node reports."""
    # scandir, not os.walk and a path join per file: a table keeps up to some 300 component
    # files, and the status op (the liveness probe's, once a second per node) pays this walk.
    total = 0
    pending = [os.fspath(data_dir / "storage" / "data")]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir():
                        if not entry.is_symlink():  # os.walk's default: not followed, not counted
                            pending.append(entry.path)
                    else:
                        total += entry.stat().st_size
                except OSError:
                    pass
    return total


# What ends one client connection, not the node: the client reset or closed its stream.
_CONNECTION_LOST = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def _split_connection_lost(exc: BaseException) -> tuple[BaseException | None, BaseException | None]:
    """``exc``'s connection-lost part and the rest (either None), as ``except*`` splits them."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(_CONNECTION_LOST)
    if isinstance(exc, _CONNECTION_LOST):
        return exc, None
    return None, exc


def _secret_matches(expected: str, given: Any) -> bool:
    """Constant-time comparison; an empty expected secret matches nothing."""
    return bool(expected) and isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


# ringnode's exit status when storage cannot be opened (a full disk, a corrupt commit log) or a
# commit log failure under commit_failure_policy = die; 2 is a bad config.
EXIT_STORAGE = 3


class UnusableFile(StorageFailure):
    """A file or directory the node needs at start (schema, tokens, the storage directory) that it
    cannot read or that holds garbage: named, so ringnode exits 3 saying which file, not with a
    traceback."""


_T = TypeVar("_T")


def _startup_file(path: Path, load: Callable[[], _T]) -> _T:
    """``load()``, its disk errors and undecodable contents re-raised as :class:`UnusableFile`."""
    try:
        return load()
    except StorageError:
        raise
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        hint = ("restore it from a snapshot (storage/snapshots/<tag>/schema.json) or another node's copy" if path.name == "schema.json" else
                "fix or move it aside" if path.name == "tokens.json" else "check the data disk")
        raise UnusableFile(str(path), f"unusable {path.name}: {detail}; {hint}") from exc


def _die(exc: StorageError) -> None:
    """commit_failure_policy or disk_failure_policy = die: log why and end the process at once
    (Cassandra kills the JVM)."""
    log.critical("storage failure with a failure policy of die: %s; exiting", exc)
    logging.shutdown()
    os._exit(EXIT_STORAGE)


def _gossip_kwargs(gossiper_cls: Any, config: NodeConfig) -> dict[str, Any]:
    import inspect

    params = inspect.signature(gossiper_cls).parameters
    out: dict[str, Any] = {}
    for name in ("phi_convict_threshold", "phi_threshold", "convict_threshold"):
        if name in params:
            out[name] = config.gossip.phi_convict_threshold
            break
    return out


def _plain(obj: Any) -> Any:
    """A msgpack-friendly copy of gossip state objects."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, bytes, bool, float)) or obj is None:
        return obj
    if isinstance(obj, int):
        return obj if -(2**63) <= obj < 2**64 else str(obj)
    return repr(obj)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ringnode``."""
    parser = argparse.ArgumentParser(prog="ringnode", description="Run one ringlab node.")
    parser.add_argument("--config", required=True, help="path to node.toml")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ringnode: bad config: {exc}", file=sys.stderr)
        return 2
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        setup_logging(config.node_id, config.data_dir)
    except OSError as exc:
        print(f"ringnode: cannot start: data_dir {config.data_dir}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_STORAGE
    try:
        node = Node(config)
    except StorageError as exc:
        log.critical("cannot start: %s", exc)
        return EXIT_STORAGE
    # Everything allocated so far (modules, config, the node object graph) lives as long as the
    # process: keep it out of every future collection, then collect young objects less often.
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)
    try:
        trio.run(node.run)
    except KeyboardInterrupt:
        return 0
    except BaseException as exc:
        reason = _disk_failure(exc)
        if reason is None:
            raise
        # Said once, without a traceback: the operator has a disk or a commit log to look at.
        log.critical("cannot %s: %s", "go on" if node.started else "start", reason)
        return EXIT_STORAGE
    return 0


# OSError numbers that mean the disk, not the code, failed: the node says so and exits.
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)


def _disk_failure(exc: BaseException) -> str | None:
    """The text of a storage failure or disk OSError inside ``exc`` (groups searched), else None."""
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = _disk_failure(sub)
            if found is not None:
                return found
        return None
    if isinstance(exc, (StorageFailure, CommitLogCorrupt)):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else str(exc)
    return None


if __name__ == "__main__":
    sys.exit(main())
