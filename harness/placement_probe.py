"""What one node says about replica placement, recorded raw for checkers/placement.py's oracle.

The convergence snapshot asks the node whose ring it used for the raw ring (``ring``: every token
and its owner), each node's datacenter and rack (``status``) and, per key, the replicas it would
use (``getendpoints``); then the ring again, so a pass whose ring moved in between (a membership
change still settling) is marked and not judged. Only client-port admin operations: the same
code serves simulated nodes, local processes and SSH hosts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio

from node.client import open_client

# Keys whose getendpoints answer is recorded per pass: one admin round trip each, and a wrong
# placement rule shows on a good share of keys, so a few hundred are plenty.
MAX_KEYS = 256
# Per admin request, as harness/convergence.py's REQUEST_TIMEOUT.
REQUEST_TIMEOUT = 10.0
# Synthetic keys asked about besides the workload's: one whose token lies past the ring's last
# token (the wrapping range's tail, about 1/(2 x tokens) of the ring) and one at or before its
# first, found by hashing these names in order. The wrap is where ring walks go wrong (a clamp
# instead of a wrap, a search that falls off the end), and a campaign's few dozen keys land in
# the tail on some seeds only. Names are tried up to this many times (a 1/160 tail needs ~160).
BOUNDARY_KEY_PREFIX = "ringlab-placement-probe-"
BOUNDARY_KEY_TRIES = 20_000


def replication_map(rf: Any) -> dict[str, Any]:
    """The keyspace's replication map the test asked for (an int is SimpleStrategy's RF)."""
    if isinstance(rf, int):
        return {"class": "SimpleStrategy", "replication_factor": rf}
    return dict(rf.describe())


async def probe(cluster: Any, secret: str, node: str, keyspace: str, keys: Sequence[Any], rf: Any,
                network: Any = None) -> dict[str, Any]:
    """The raw ring, locations and getendpoints answers of ``node`` for ``keys``; never raises
    (a failure is recorded as ``error``, and the oracle then says nothing)."""
    host, port = cluster.client_address(node)
    out: dict[str, Any] = {"node": node, "replication": replication_map(rf)}
    try:
        with trio.fail_after(REQUEST_TIMEOUT * (3 + len(keys[:MAX_KEYS]) // 16)):
            async with open_client(host, port, secret=secret, timeout=REQUEST_TIMEOUT, network=network) as c:
                ring = await c.admin("ring")
                status = await c.admin("status", load=False)
                endpoints = []
                extra = boundary_keys(ring["partitioner"], [t for t, _owner, _state in ring["tokens"]])
                for k in [*keys[:MAX_KEYS], *extra]:
                    resp = await c.admin("getendpoints", keyspace=keyspace, key=k)
                    endpoints.append([k, list(resp["endpoints"])])
                again = await c.admin("ring")
    except Exception as exc:  # noqa: BLE001 - the oracle is skipped, the snapshot goes on
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    out.update(_ring_and_locations(ring, status), endpoints=endpoints, boundary_keys=extra)
    out["ring_changed"] = [[t, o] for t, o, _s in again["tokens"]] != out["tokens"]
    return out


async def ring_now(cluster: Any, secret: str, nodes: Sequence[str], network: Any = None) -> dict[str, Any]:
    """The ring (every token and its owner) and each node's location, as the first of ``nodes``
    that answers sees them: recorded in test.json as ``ring_at_start`` before the workload of a
    run whose nemeses may change the ring, so checkers/misplaced.py can replay the changes from
    it. Never raises: ``{"error": ...}`` when no node answers (the checker then judges nothing)."""
    errors = []
    for node in nodes:
        host, port = cluster.client_address(node)
        try:
            with trio.fail_after(REQUEST_TIMEOUT * 2):
                async with open_client(host, port, secret=secret, timeout=REQUEST_TIMEOUT, network=network) as c:
                    ring = await c.admin("ring")
                    status = await c.admin("status", load=False)
        except Exception as exc:  # noqa: BLE001 - try the next node
            errors.append(f"{node}: {type(exc).__name__}: {exc}")
            continue
        return {"node": node, **_ring_and_locations(ring, status)}
    return {"error": "; ".join(errors) or "no node to ask"}


def _ring_and_locations(ring: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """A ``ring`` and a ``status`` answer as recorded: the partitioner, [token, owner] pairs and
    each node's [datacenter, rack]."""
    return {"partitioner": ring["partitioner"], "tokens": [[t, owner] for t, owner, _state in ring["tokens"]],
            "locations": {n["node_id"]: [n["datacenter"], n["rack"]] for n in status["nodes"]}}


def boundary_keys(partitioner: str, token_strings: Sequence[str]) -> list[str]:
    """Synthetic keys at the ring's wrap (deterministic for a ring): the first name whose token
    lies past the last token, and the first at or before the first token; [] when the
    partitioner's tokens are not known here or no name was found."""
    from checkers.placement import key_token, parse_token

    try:
        tokens = sorted(parse_token(partitioner, t) for t in token_strings)
    except ValueError:
        return []
    if not tokens:
        return []
    found: dict[str, str] = {}
    for n in range(BOUNDARY_KEY_TRIES):
        name = f"{BOUNDARY_KEY_PREFIX}{n}"
        token = key_token(partitioner, name)
        if token is None:
            return []
        side = "tail" if token > tokens[-1] else "head" if token <= tokens[0] else None
        if side is not None and side not in found:
            found[side] = name
            if len(found) == 2:
                break
    return [found[s] for s in ("tail", "head") if s in found]
