"""node.toml → dataclasses: every setting of one node, validated, unknown keys refused by name."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.client_limits import ClientLimits
from node.coordination import CoordinationConfig
from node.faults import FaultSwitches
from node.ring import DEFAULT_NUM_TOKENS, PARTITIONERS
from node.storage.config import StorageConfig


class ConfigError(ValueError):
    """A node.toml that cannot be used; the message names the key."""


@dataclass
class Timeouts:
    """Coordinator timeouts in seconds (Cassandra's write_request_timeout / read_request_timeout)."""

    # Cassandra's defaults: 2 s for writes, 5 s for reads.
    write: float = 2.0
    read: float = 5.0
    # Schema pushes and admin fan-outs: long enough for a slow peer's fsync of schema.json.
    schema: float = 5.0


@dataclass
class HintsConfig:
    """Hinted handoff settings."""

    enabled: bool = True
    # Cassandra's max_hint_window: 3 hours. After a target has been down this long we stop
    # writing hints for it (a repair is the tool for longer outages).
    max_hint_window: float = 3 * 3600.0
    # Cassandra's hinted_handoff_throttle: 1024 KiB/s per delivering node.
    throttle_kb_per_s: int = 1024
    # How often to look for live targets with pending hints, besides UP events.
    delivery_check_interval: float = 10.0


@dataclass
class GossipConfig:
    """Gossip and failure detection settings (passed to the cluster package)."""

    # Cassandra gossips once a second.
    interval: float = 1.0
    # Cassandra's phi_convict_threshold default.
    phi_convict_threshold: float = 8.0


@dataclass
class MembershipConfig:
    """Bootstrap, range movements and load balancing (node/membership_ops.py)."""

    # A node started without tokens.json joins by streaming: it picks tokens splitting the most
    # loaded ranges, announces JOINING and becomes NORMAL when its ranges are streamed. Off, a
    # node without tokens takes random tokens at once (how a brand-new cluster starts).
    auto_bootstrap: bool = False
    # After every live peer sees an announced change, wait this long before streaming so writes
    # placed on the old ring finish (Cassandra's RING_DELAY is 30 s; peers confirm here, so the
    # wait only covers in-flight writes, which are bounded by the write timeout).
    ring_delay: float = 2.0
    # The paper's load balancing: a light node moves a token into a heavy node's range.
    load_balance: bool = False
    # How often (mean, jittered) a node compares loads; the paper leaves it to the operator.
    balance_interval: float = 60.0
    # A node moves only when its load is at most this fraction of the heaviest node's.
    balance_ratio: float = 0.5
    # A range transfer sends SSTables wholly inside the range as files (node/rangecopy.py) from
    # this data size up; smaller ones go by the partition stream, where a few kilobytes cost less
    # than a file's seven fsyncs and its import.
    file_stream_min_bytes: int = 1 << 20


@dataclass
class NodeConfig:
    """One node's configuration (node.toml)."""

    node_id: str
    data_dir: Path
    listen_host: str = "127.0.0.1"
    client_port: int = 9042
    internode_port: int = 7000
    seeds: list[str] = field(default_factory=list)
    datacenter: str = "dc1"
    rack: str = "rack1"
    num_tokens: int = DEFAULT_NUM_TOKENS
    initial_tokens: list[str] | None = None
    partitioner: str = "murmur3"
    cluster_secret: str = ""
    # Without a cluster_secret a node refuses every peer; this names the one way to run a
    # cluster unauthenticated anyway (a dev cluster on one machine). Never set it in production.
    internode_insecure: bool = False
    # When set, data operations (put/get/delete/batch) need it as their "auth" field; off by
    # default (admin and schema operations always need cluster_secret).
    client_secret: str = ""
    # Seed for this node's Rng (token choice, gossip peer choice); None = OS entropy.
    rng_seed: int | None = None
    # Client requests executing at once on this node before new ones get Overloaded
    # (Cassandra's native_transport_max_concurrent_requests plays this role).
    max_in_flight: int = 4096
    # Where to advertise the client port (gossip CLIENT_ADDR); defaults to listen_host.
    client_host: str | None = None
    routes: dict[str, str] = field(default_factory=dict)
    storage: StorageConfig = field(default_factory=StorageConfig)
    timeouts: Timeouts = field(default_factory=Timeouts)
    hints: HintsConfig = field(default_factory=HintsConfig)
    gossip: GossipConfig = field(default_factory=GossipConfig)
    faults: FaultSwitches = field(default_factory=FaultSwitches)
    membership: MembershipConfig = field(default_factory=MembershipConfig)
    coordination: CoordinationConfig = field(default_factory=CoordinationConfig)
    clients: ClientLimits = field(default_factory=ClientLimits)

    def seed_addresses(self) -> list[tuple[str, int]]:
        """The seeds as (host, port)."""
        return [parse_host_port(s, "seeds") for s in self.seeds]

    def route_addresses(self) -> dict[str, tuple[str, int]]:
        """The routes as node_id → (host, port)."""
        return {k: parse_host_port(v, f"routes.{k}") for k, v in self.routes.items()}


def parse_host_port(text: Any, where: str) -> tuple[str, int]:
    """Parse "host:port"."""
    if not isinstance(text, str) or ":" not in text:
        raise ConfigError(f"{where}: expected 'host:port', got {text!r}")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: expected 'host:port', got {text!r}")
    return host, int(port)


_SECTIONS = {"storage": StorageConfig, "timeouts": Timeouts, "hints": HintsConfig, "gossip": GossipConfig, "faults": FaultSwitches, "membership": MembershipConfig, "coordination": CoordinationConfig, "clients": ClientLimits}


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown key {where}{key!r}; known: {', '.join(sorted(fields))}")
        default = fields[key].default
        if default is not dataclasses.MISSING and default is not None:
            expected: tuple[type, ...] = (float, int) if isinstance(default, float) else (type(default),)
            if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected):
                raise ConfigError(f"{where}{key}: expected {type(default).__name__}, got {type(value).__name__}")
            if isinstance(default, float):
                value = float(value)
        kwargs[key] = value
    return cls(**kwargs)


def _required_str(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string")
    return value


def load_config(path: str | Path) -> NodeConfig:
    """Read and validate node.toml (relative data_dir is relative to the file)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return parse_config(raw, path.parent)


def parse_config(raw: dict[str, Any], base_dir: Path | None = None) -> NodeConfig:
    """Validate parsed TOML into a NodeConfig (the entry point tests and the harness use)."""
    raw = dict(raw)
    known = {f.name for f in dataclasses.fields(NodeConfig)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"unknown key {key!r} in node.toml")
    node_id = _required_str(raw.pop("node_id", None), "node_id")
    if "data_dir" not in raw:
        raise ConfigError("missing required key 'data_dir'")
    data_dir = Path(str(raw.pop("data_dir")))
    if base_dir is not None and not data_dir.is_absolute():
        data_dir = base_dir / data_dir
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        section = raw.pop(name, {}) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"[{name}] must be a table")
        sections[name] = _build(cls, section, f"[{name}] ")
    routes = raw.pop("routes", {}) or {}
    if not isinstance(routes, dict) or not all(isinstance(v, str) for v in routes.values()):
        raise ConfigError("[routes] must map node ids to 'host:port' strings")
    initial = raw.pop("initial_tokens", None)
    if initial is not None and (not isinstance(initial, list) or not initial):
        raise ConfigError("initial_tokens must be a non-empty list of tokens")
    rng_seed = raw.pop("rng_seed", None)
    client_host = raw.pop("client_host", None)
    cfg = _build(NodeConfig, {"node_id": node_id, "data_dir": data_dir, **raw}, "")
    cfg.data_dir = data_dir
    cfg.routes = dict(routes)
    cfg.initial_tokens = [str(t) for t in initial] if initial is not None else None
    cfg.rng_seed = rng_seed if isinstance(rng_seed, int) and not isinstance(rng_seed, bool) else None
    cfg.client_host = client_host if isinstance(client_host, str) else None
    for name, value in sections.items():
        setattr(cfg, name, value)
    _validate(cfg)
    return cfg


def _validate(cfg: NodeConfig) -> None:
    if cfg.partitioner not in PARTITIONERS:
        raise ConfigError(f"partitioner must be one of {', '.join(PARTITIONERS)}, got {cfg.partitioner!r}")
    if cfg.num_tokens < 1 or cfg.num_tokens > 1536:
        raise ConfigError(f"num_tokens must be in 1..1536, got {cfg.num_tokens}")
    for key in ("client_port", "internode_port"):
        port = getattr(cfg, key)
        if not 0 <= port < 65536:
            raise ConfigError(f"{key} must be a TCP port (0 picks a free one), got {port}")
    if not isinstance(cfg.seeds, list):
        raise ConfigError("seeds must be a list of 'host:port'")
    cfg.seed_addresses()
    cfg.route_addresses()
    if cfg.max_in_flight < 1:
        raise ConfigError("max_in_flight must be positive")
    if cfg.timeouts.write <= 0 or cfg.timeouts.read <= 0:
        raise ConfigError("[timeouts] write and read must be positive")
    m = cfg.membership.file_stream_min_bytes
    if not isinstance(m, int) or isinstance(m, bool) or m < 0:
        raise ConfigError(f"[membership] file_stream_min_bytes must be an integer >= 0, got {m!r}")
    if cfg.hints.max_hint_window < 0 or cfg.hints.throttle_kb_per_s <= 0:
        raise ConfigError("[hints] max_hint_window must be >= 0 and throttle_kb_per_s > 0")
    try:
        cfg.storage.validate()
    except ValueError as exc:
        raise ConfigError(f"[storage] {exc}") from exc
    try:
        cfg.clients.validate()
    except ValueError as exc:
        raise ConfigError(f"[clients] {exc}") from exc
    if not isinstance(cfg.coordination.servers, list):
        raise ConfigError("[coordination] servers must be a list of 'host:port'")
    try:
        cfg.coordination.validate()
    except ValueError as exc:
        raise ConfigError(f"[coordination] {exc}") from exc
