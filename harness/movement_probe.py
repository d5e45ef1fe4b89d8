"""Every node's view of the ring's membership, recorded with a replica snapshot.

checkers/movement.py judges a pass's replicas strictly only when the ring had finished moving:
every node that answered saw the same NORMAL members and no node JOINING or LEAVING (so no
range was pending anywhere). The ``status`` admin op gives each node's own gossip view; only
client-port admin operations, so the same code serves simulated nodes, local processes and SSH
hosts.
"""

from __future__ import annotations

from typing import Any

import trio

from node.client import open_client

# Per admin request, as harness/convergence.py's REQUEST_TIMEOUT.
REQUEST_TIMEOUT = 10.0


async def statuses(cluster: Any, secret: str, network: Any = None) -> dict[str, Any]:
    """Per node that answers, each member's gossip status as it sees it ({peer: status}); a node
    that does not answer is recorded as its error, so the checker can tell it was not heard."""
    out: dict[str, Any] = {}
    for nid in cluster.node_ids():
        host, port = cluster.client_address(nid)
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                async with open_client(host, port, secret=secret, timeout=REQUEST_TIMEOUT, network=network) as c:
                    resp = await c.admin("status")
        except Exception as exc:  # noqa: BLE001 - a silent node is recorded, not fatal
            out[nid] = f"{type(exc).__name__}: {exc}"
            continue
        out[nid] = {n["node_id"]: n["status"] for n in resp.get("nodes", [])}
    return out
