"""The paper's leader: ZooKeeper-elected range assignment (``coordination = "zookeeper"``).

The Cassandra paper: "Cassandra uses Zookeeper for leader election ... Whenever a new node joins
the cluster, it contacts the leader who tells them what ranges the node is responsible for. The
metadata about ranges of a node is cached locally as well as on the Zookeeper instance."

Layout under ``<root>`` (``/ringlab/<cluster>`` by default):

* ``election/c_<seq>``: one ephemeral sequential znode per live node (data: its node id). The
  lowest sequence number leads, and that number is the leader's **epoch**: a node that loses
  its session and comes back gets a new, higher one, so epochs only grow.
* ``ranges/<node>``: the tokens assigned to (or registered by) each node, with the epoch of the
  leader that wrote them. Every node caches the whole map in ``ranges.json``.
* ``assignments/a_<seq>``: an append-only log of every assignment and release, for the
  harness's assignment checker (two leaders in one epoch, a token held by two nodes).

**Fencing.** A leader writes an assignment in one ZooKeeper transaction that also checks its own
election znode still exists. A leader whose session expired (a long pause, a partition from the
ensemble) has lost that znode, so its transaction fails as a whole: a stale leader can never make
an assignment stick, however late its request arrives.

kazoo is thread-based; every call into it runs in a worker thread through :meth:`_call`, so Trio
code never blocks on ZooKeeper. Liveness and load still travel by gossip.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio

from node.durable import write_atomic

log = logging.getLogger("node.coordination")

T = TypeVar("T")

MODES = ("gossip", "zookeeper")
VERB_ASSIGN = "ZK_ASSIGN"
# How often a node re-reads the election and the range map. Polling (rather than kazoo watches,
# which fire on kazoo's own threads) keeps every state change on the Trio side; half a second
# is well under the session timeout, so a new leader is seen within a second of its election.
POLL_INTERVAL = 0.5
# A joining node's request to the leader: computing tokens and one ZooKeeper transaction.
ASSIGN_TIMEOUT = 10.0


class CoordinationError(Exception):
    """ZooKeeper could not be reached, or refused the operation (the message says which)."""


class Fenced(CoordinationError):
    """This node's leadership ended (its election znode is gone): the write was refused."""


@dataclass
class CoordinationConfig:
    """The ``[coordination]`` section of node.toml."""

    # "gossip": tokens chosen by the joining node from gossip (later Cassandra). "zookeeper":
    # the paper's leader assigns them.
    mode: str = "gossip"
    # ZooKeeper connect string entries, "host:port".
    servers: list[str] = field(default_factory=list)
    # ZooKeeper's default minimum session timeout is 2 x tickTime; 6 s keeps a GC-length pause
    # from costing leadership while a dead leader is replaced within a few seconds.
    session_timeout: float = 6.0
    # Under this path live the election, the range map and the assignment log.
    root: str = "/ringlab/cluster"

    def validate(self) -> None:
        """Refuse a mode or server list that cannot work, naming the key."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "zookeeper" and not self.servers:
            raise ValueError("mode = \"zookeeper\" needs servers = [\"host:port\", ...]")
        for s in self.servers:
            host, _, port = str(s).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"servers: expected 'host:port', got {s!r}")
        if not self.root.startswith("/") or self.root.endswith("/"):
            raise ValueError(f"root must be an absolute znode path without a trailing '/', got {self.root!r}")
        if not 1.0 <= self.session_timeout <= 120.0:
            raise ValueError(f"session_timeout must be within 1..120 s, got {self.session_timeout}")


@dataclass
class Leadership:
    """Who leads, as this node last saw it."""

    leader: str | None = None
    epoch: int | None = None
    mine: str | None = None  # this node's election znode name
    contenders: list[str] = field(default_factory=list)


def epoch_of(znode: str) -> int:
    """The sequence number ZooKeeper appended to an election znode's name."""
    return int(znode.rsplit("_", 1)[1])


def leader_of(children: dict[str, str]) -> tuple[str, int] | None:
    """(node id, epoch) of the lowest election znode, given znode name → node id."""
    if not children:
        return None
    first = min(children, key=epoch_of)
    return children[first], epoch_of(first)


class ZooKeeperCoordinator:
    """One node's ZooKeeper session: election, the range map cache, fenced assignments."""

    def __init__(self, node_id: str, config: CoordinationConfig, cache_path: Path,
                 client_factory: Callable[..., Any] | None = None) -> None:
        self.node_id = node_id
        self.config = config
        self.cache_path = cache_path
        self._factory = client_factory
        self._zk: Any = None
        self.state = "DISCONNECTED"
        self.leadership = Leadership()
        self.ranges: dict[str, dict[str, Any]] = self._load_cache()
        self.elections = 0  # leaders seen change, for status and tests
        self.last_error: str | None = None
        self._connected = trio.Event()

    # ---- paths

    def _path(self, *parts: str) -> str:
        return "/".join((self.config.root, *parts))

    # ---- kazoo through worker threads

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs), abandon_on_cancel=True)

    def _client(self) -> Any:
        if self._factory is not None:
            return self._factory(hosts=",".join(self.config.servers), timeout=self.config.session_timeout)
        from kazoo.client import KazooClient

        return KazooClient(hosts=",".join(self.config.servers), timeout=self.config.session_timeout)

    # ---- cache

    def _load_cache(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.cache_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_cache(self) -> None:
        write_atomic(self.cache_path, json.dumps(self.ranges, sort_keys=True))

    # ---- the session

    def _listener(self, state: Any) -> None:
        # Called on kazoo's thread: only record; the Trio side acts on it when it next polls.
        self.state = str(state)

    async def run(self, tokens: Callable[[], list[str]]) -> None:
        """Keep a session, an election znode and the range cache; register this node's tokens."""
        while True:
            try:
                await self._session(tokens)
            except trio.Cancelled:
                raise
            except Exception as exc:  # ZooKeeper unreachable or the session lost: retry
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.leadership = Leadership()
                log.warning("zookeeper: %s; retrying in 1 s (serving from the cached range map)", self.last_error)
            await trio.sleep(1.0)

    async def _session(self, tokens: Callable[[], list[str]]) -> None:
        from kazoo.protocol.states import KazooState

        zk = self._client()
        zk.add_listener(self._listener)
        try:
            await self._call(zk.start, timeout=self.config.session_timeout)
        except Exception as exc:
            await self._call(zk.close)
            raise CoordinationError(f"cannot connect to ZooKeeper at {','.join(self.config.servers)}: {exc}") from exc
        self._zk = zk
        self.state = KazooState.CONNECTED
        self._connected.set()
        try:
            for sub in ("election", "ranges", "assignments"):
                await self._call(zk.ensure_path, self._path(sub))
            mine = await self._call(zk.create, self._path("election", "c_"), self.node_id.encode(),
                                    ephemeral=True, sequence=True)
            self.leadership.mine = mine.rsplit("/", 1)[1]
            log.info("zookeeper: joined the election as %s", self.leadership.mine)
            own = tokens()
            if own and self.node_id not in await self._call(zk.get_children, self._path("ranges")):
                await self._register(own)
            from kazoo.exceptions import ConnectionLoss

            while True:
                try:
                    await self._poll()
                except ConnectionLoss as exc:
                    # The session may well survive this (kazoo reconnects within the session
                    # timeout); only a lost session or a vanished znode starts a new one.
                    self.last_error = f"ConnectionLoss: {exc}"
                await trio.sleep(POLL_INTERVAL)
        finally:
            self._zk = None
            self._connected = trio.Event()
            with trio.CancelScope(shield=True):
                try:
                    await self._call(zk.stop)
                    await self._call(zk.close)
                except Exception:  # a dead session has nothing left to close
                    pass

    async def _poll(self) -> None:
        zk = self._zk
        names = await self._call(zk.get_children, self._path("election"))
        children: dict[str, str] = {}
        for name in names:
            try:
                data, _ = await self._call(zk.get, self._path("election", name))
            except Exception:  # gone between the listing and the read
                continue
            children[name] = data.decode()
        who = leader_of(children)
        before = self.leadership.leader, self.leadership.epoch
        self.leadership.contenders = sorted(children, key=epoch_of)
        self.leadership.leader, self.leadership.epoch = who if who else (None, None)
        if (self.leadership.leader, self.leadership.epoch) != before and who is not None:
            self.elections += 1
            log.info("zookeeper: leader is %s (epoch %d)%s", who[0], who[1],
                     " - this node" if who[0] == self.node_id else "")
        ranges: dict[str, dict[str, Any]] = {}
        for nid in await self._call(zk.get_children, self._path("ranges")):
            try:
                data, _ = await self._call(zk.get, self._path("ranges", nid))
            except Exception:
                continue
            ranges[nid] = json.loads(data)
        if ranges != self.ranges:
            self.ranges = ranges
            self._save_cache()
        from kazoo.protocol.states import KazooState

        if self.state == KazooState.LOST or self.leadership.mine not in self.leadership.contenders:
            raise CoordinationError("session lost: this node's election znode is gone")

    # ---- what a node asks of it

    def is_leader(self) -> bool:
        """Whether this node holds the lowest election znode (as of the last poll)."""
        return self.leadership.leader == self.node_id and self._zk is not None and self.state == "CONNECTED"

    def status(self) -> dict[str, Any]:
        """The view ``ringctl leader`` prints."""
        return {
            "mode": "zookeeper",
            "servers": list(self.config.servers),
            "session": str(self.state),
            "leader": self.leadership.leader,
            "epoch": self.leadership.epoch,
            "election_znode": self.leadership.mine,
            "contenders": len(self.leadership.contenders),
            "elections_seen": self.elections,
            "ranges": {n: len(r.get("tokens", [])) for n, r in sorted(self.ranges.items())},
            "last_error": self.last_error,
        }

    def taken_tokens(self) -> set[str]:
        """Every token the range map holds (assigned to a joiner not yet in gossip included)."""
        return {t for r in self.ranges.values() for t in r.get("tokens", [])}

    async def _register(self, tokens: list[str]) -> None:
        # A node started with tokens of its own (initial_tokens or generated) records them, as
        # an operator's initial_token is recorded; only the leader's assignments are fenced.
        zk = self._zk
        record = {"tokens": tokens, "epoch": None, "by": self.node_id, "kind": "register"}
        tx = zk.transaction()
        tx.create(self._path("ranges", self.node_id), json.dumps(record).encode())
        tx.create(self._path("assignments", "a_"), json.dumps({**record, "node": self.node_id}).encode(), sequence=True)
        await self._commit(tx, "register")

    async def _commit(self, tx: Any, what: str) -> list[Any]:
        results = await self._call(tx.commit)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            from kazoo.exceptions import NoNodeError, RolledBackError

            first = next((r for r in failed if not isinstance(r, RolledBackError)), failed[0])
            if isinstance(first, NoNodeError) and what != "register":
                raise Fenced(f"{what} refused: {self.node_id}'s election znode is gone (its leadership ended)")
            raise CoordinationError(f"{what} refused by ZooKeeper: {type(first).__name__}")
        return results

    async def assign(self, joiner: str, choose: Callable[[set[str]], list[str]]) -> dict[str, Any]:
        """As leader: choose ``joiner``'s tokens and write them, fenced by this node's epoch."""
        zk = self._zk
        if zk is None:
            raise CoordinationError("not connected to ZooKeeper")
        if not self.is_leader():
            raise CoordinationError(f"{self.node_id} is not the leader (leader: {self.leadership.leader})")
        existing = self.ranges.get(joiner)
        if existing and existing.get("tokens"):
            # A retried request (the joiner's earlier answer was lost) gets the same tokens.
            return {**existing, "leader": self.node_id, "epoch": existing.get("epoch")}
        tokens = choose(self.taken_tokens())
        epoch = self.leadership.epoch
        record = {"tokens": tokens, "epoch": epoch, "by": self.node_id, "kind": "assign"}
        tx = zk.transaction()
        tx.check(self._path("election", self.leadership.mine or "missing"), 0)
        tx.create(self._path("ranges", joiner), json.dumps(record).encode())
        tx.create(self._path("assignments", "a_"), json.dumps({**record, "node": joiner}).encode(), sequence=True)
        await self._commit(tx, f"assignment of {joiner}'s tokens")
        self.ranges[joiner] = record
        self._save_cache()
        log.info("zookeeper: assigned %d tokens to %s (epoch %s)", len(tokens), joiner, epoch)
        return {**record, "leader": self.node_id}

    async def release(self, node: str) -> None:
        """Remove a departed node's range record (decommission, removenode), logged."""
        zk = self._zk
        if zk is None:
            raise CoordinationError("not connected to ZooKeeper: the range map cannot be updated")
        if node not in self.ranges:
            return
        record = {"tokens": [], "epoch": self.leadership.epoch, "by": self.node_id, "kind": "release", "node": node}
        tx = zk.transaction()
        tx.delete(self._path("ranges", node))
        tx.create(self._path("assignments", "a_"), json.dumps(record).encode(), sequence=True)
        await self._commit(tx, f"release of {node}'s tokens")
        self.ranges.pop(node, None)
        self._save_cache()

    async def wait_connected(self, timeout: float) -> None:
        """Until a session is up, or CoordinationError naming the servers."""
        with trio.move_on_after(timeout):
            await self._connected.wait()
            return
        raise CoordinationError(
            f"ZooKeeper at {','.join(self.config.servers)} unreachable for {timeout:g} s"
            + (f" ({self.last_error})" if self.last_error else ""))

    async def assignment_log(self) -> list[dict[str, Any]]:
        """Every record of ``assignments/`` in sequence order (what the checker reads)."""
        zk = self._zk
        if zk is None:
            raise CoordinationError("not connected to ZooKeeper")
        out = []
        for name in sorted(await self._call(zk.get_children, self._path("assignments")), key=epoch_of):
            data, _ = await self._call(zk.get, self._path("assignments", name))
            out.append({"seq": epoch_of(name), **json.loads(data)})
        return out
