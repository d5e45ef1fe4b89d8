"""What one node knows about another: the membership record the ring and coordinator read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["JOINING", "NORMAL", "LEAVING", "LEFT"]

# The lifecycle states a node announces in its STATUS application state (Cassandra's names).
STATUSES: tuple[str, ...] = ("JOINING", "NORMAL", "LEAVING", "LEFT")

# Application state keys with a meaning to the node; any other string key may be gossiped too.
STATUS = "STATUS"
TOKENS = "TOKENS"
LOAD = "LOAD"
DC = "DC"
RACK = "RACK"
INTERNODE_ADDR = "INTERNODE_ADDR"
CLIENT_ADDR = "CLIENT_ADDR"
SCHEMA = "SCHEMA"


@dataclass
class NodeInfo:
    """One node's identity, addresses, placement, tokens, lifecycle status and load."""

    node_id: str
    internode_host: str = "127.0.0.1"
    internode_port: int = 0
    client_host: str = "127.0.0.1"
    client_port: int = 0
    datacenter: str = "dc1"
    rack: str = "rack1"
    tokens: list[int] = field(default_factory=list)
    status: str = "NORMAL"
    load: int = 0


def encode_tokens(tokens: list[Any]) -> list[Any]:
    """Tokens as gossip values: ints as decimal strings, since RandomPartitioner's 127-bit tokens
    do not fit msgpack's 64-bit integers; other token types (bytes) travel as they are."""
    return [str(t) if isinstance(t, int) and not isinstance(t, bool) else t for t in tokens]


def decode_tokens(value: Any) -> list[Any]:
    """The inverse of :func:`encode_tokens`; malformed values give an empty list."""
    if not isinstance(value, list):
        return []
    out: list[Any] = []
    for t in value:
        if isinstance(t, str):
            try:
                out.append(int(t))
            except ValueError:
                continue
        else:
            out.append(t)
    return out


def app_states_of(info: NodeInfo) -> dict[str, Any]:
    """The application states that announce ``info`` through gossip."""
    return {
        STATUS: info.status,
        TOKENS: encode_tokens(info.tokens),
        LOAD: info.load,
        DC: info.datacenter,
        RACK: info.rack,
        INTERNODE_ADDR: [info.internode_host, info.internode_port],
        CLIENT_ADDR: [info.client_host, info.client_port],
    }


def _addr(value: Any) -> tuple[str, int] | None:
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    ):
        return value[0], value[1]
    return None


def node_info_from_states(node_id: str, states: dict[str, Any], tokens: list[Any] | None = None) -> NodeInfo:
    """Build a NodeInfo from gossiped application state values, defaulting what is missing or
    malformed; ``tokens``: the TOKENS value already decoded (node/cluster/gossip.py keeps it)."""
    info = NodeInfo(node_id=node_id, status="JOINING")
    status = states.get(STATUS)
    if isinstance(status, str) and status in STATUSES:
        info.status = status
    info.tokens = decode_tokens(states.get(TOKENS)) if tokens is None else tokens
    load = states.get(LOAD)
    if isinstance(load, int) and not isinstance(load, bool):
        info.load = load
    dc = states.get(DC)
    if isinstance(dc, str):
        info.datacenter = dc
    rack = states.get(RACK)
    if isinstance(rack, str):
        info.rack = rack
    internode = _addr(states.get(INTERNODE_ADDR))
    if internode is not None:
        info.internode_host, info.internode_port = internode
    client = _addr(states.get(CLIENT_ADDR))
    if client is not None:
        info.client_host, info.client_port = client
    return info
