"""Campaign topology: datacenters and racks (``--datacenters D --racks R``).

By default every node sits in ``dc1``/``rack1`` and the test keyspace uses SimpleStrategy with
``--replication-factor`` replicas. With more than one datacenter or rack, the nodes are spread
round-robin over ``dc1..dcD`` (node i, counted from 0, in ``dc{i % D + 1}``) and within each
datacenter over ``rack1..rackR``, each node's ``datacenter`` and ``rack`` are set in its
node.toml, and the keyspace uses NetworkTopologyStrategy with ``--replication-factor`` replicas
*in each datacenter*, placed on distinct racks first (node/ring.py). A key then has D × RF
replicas, which is what the checkers count (QUORUM is a majority of all of them).

What is refused, and why: LOCAL_QUORUM with several datacenters unless the other side is EACH_QUORUM
or ALL (a read in one datacenter need not see a write acknowledged in another; the quorum checker does not know which datacenter a
coordinator sat in), a replication factor larger than a datacenter's node count, the membership
nemesis with several datacenters (a decommission can leave a datacenter with fewer nodes than
its replication factor, and the checkers' replica count would be wrong), and SSH deployments
(their node configs carry no location yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from node.ring import NetworkTopologyStrategy, SimpleStrategy, Strategy

# Levels that count only the coordinator's datacenter.
LOCAL_LEVELS = ("LOCAL_QUORUM",)
# Levels that reach a quorum of every datacenter: a local quorum in any one datacenter meets them
# (its quorum and theirs intersect there), so a LOCAL_QUORUM read or write paired with one of these
# on the other side keeps R + W > N, which is what the checkers count (LOCAL_QUORUM as a majority).
EVERY_DC_LEVELS = ("EACH_QUORUM", "ALL")


def enabled(opts: Any) -> bool:
    """Whether the campaign places nodes in more than one datacenter or rack."""
    return int(getattr(opts, "datacenters", 1)) > 1 or int(getattr(opts, "racks", 1)) > 1


def location(index: int, datacenters: int, racks: int) -> tuple[str, str]:
    """(datacenter, rack) of the node created ``index``-th (0-based): round-robin over datacenters,
    then over each datacenter's racks."""
    dc = index % datacenters
    rack = (index // datacenters) % racks
    return f"dc{dc + 1}", f"rack{rack + 1}"


def nodes_per_datacenter(count: int, datacenters: int) -> dict[str, int]:
    """How many of ``count`` nodes each datacenter gets."""
    out: dict[str, int] = {f"dc{d + 1}": 0 for d in range(datacenters)}
    for i in range(count):
        out[f"dc{i % datacenters + 1}"] += 1
    return out


def replication(opts: Any) -> dict[str, Any]:
    """The test keyspace's replication map."""
    if not enabled(opts):
        return {"class": "SimpleStrategy", "replication_factor": opts.replication_factor}
    return {"class": "NetworkTopologyStrategy",
            **{f"dc{d + 1}": opts.replication_factor for d in range(opts.datacenters)}}


def strategy(opts: Any) -> Strategy:
    """The keyspace's replication strategy (for placing replicas outside the nodes)."""
    if not enabled(opts):
        return SimpleStrategy(opts.replication_factor)
    return NetworkTopologyStrategy.of({f"dc{d + 1}": opts.replication_factor for d in range(opts.datacenters)})


def placement_rf(opts: Any) -> int | Strategy:
    """What harness/convergence.py places replicas with: the replication factor of SimpleStrategy,
    or the NetworkTopologyStrategy of a topology campaign."""
    return strategy(opts) if enabled(opts) else opts.replication_factor


def total_replicas(opts: Any) -> int:
    """Replicas per key: the checkers' replication factor."""
    return opts.replication_factor * (opts.datacenters if enabled(opts) else 1)


# Node indexes a simulated world may create (its first nodes plus the membership nemesis's
# joiners, which take the next index each).
SIM_MAX_NODES = 64


def sim_locations(opts: Any) -> tuple[tuple[str, str], ...] | None:
    """Each simulated node's (datacenter, rack) by creation index, or None without a topology."""
    if not enabled(opts):
        return None
    return tuple(location(i, opts.datacenters, opts.racks) for i in range(SIM_MAX_NODES))


def checker_params(opts: Any) -> dict[str, Any]:
    """What checkers/acks.py needs of a topology campaign: the keyspace's replication map and each
    node's datacenter (by the deployments' names n1, n2, ...; joiners included); none without one."""
    if not enabled(opts):
        return {}
    return {"replication": replication(opts),
            "node_datacenters": {f"n{i + 1}": location(i, opts.datacenters, opts.racks)[0] for i in range(SIM_MAX_NODES)}}


def node_lines(index: int, opts_or_spec: Any) -> list[str]:
    """The node.toml lines that place the ``index``-th node (none without a topology)."""
    dcs, racks = int(getattr(opts_or_spec, "datacenters", 1)), int(getattr(opts_or_spec, "racks", 1))
    if dcs <= 1 and racks <= 1:
        return []
    dc, rack = location(index, dcs, racks)
    return [f'datacenter = "{dc}"', f'rack = "{rack}"']


def recorded(opts: Any, node_ids: Sequence[str]) -> dict[str, Any]:
    """What test.json says: each node's location and the keyspace's replication."""
    return {"datacenters": opts.datacenters, "racks": opts.racks, "replication": replication(opts),
            "replicas_per_key": total_replicas(opts),
            "nodes": {nid: "/".join(location(i, opts.datacenters, opts.racks)) for i, nid in enumerate(node_ids)}}


def validate(opts: Any, count: int | None) -> None:
    """Raise ValueError naming what a topology campaign cannot do."""
    for flag, v in (("--datacenters", opts.datacenters), ("--racks", opts.racks)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 16:
            raise ValueError(f"{flag} must be an integer between 1 and 16, got {v!r}")
    if not enabled(opts):
        return
    if opts.deploy not in ("local", "sim"):
        raise ValueError("--datacenters/--racks place local and simulated nodes only (ssh node configs carry no location yet)")
    if count is not None:
        per_dc = nodes_per_datacenter(count, opts.datacenters)
        small = min(per_dc, key=lambda dc: (per_dc[dc], dc))
        if per_dc[small] < opts.replication_factor:
            raise ValueError(f"--replication-factor {opts.replication_factor} replicas in each datacenter needs at least "
                             f"{opts.replication_factor} nodes in every one; {small} gets {per_dc[small]} of --nodes {count} "
                             f"over --datacenters {opts.datacenters}")
    if opts.datacenters > 1:
        for flag, cl, other in (("--read-cl", opts.read_cl, opts.write_cl), ("--write-cl", opts.write_cl, opts.read_cl)):
            if cl in LOCAL_LEVELS and other not in EVERY_DC_LEVELS:
                raise ValueError(f"{flag} {cl} with --datacenters {opts.datacenters}: a read in one datacenter need not "
                                 "see a write acknowledged in another, and the checkers do not know the coordinators' "
                                 "datacenters; use QUORUM, EACH_QUORUM, ONE or ALL, or pair it with "
                                 f"{' or '.join(EVERY_DC_LEVELS)} on the other side")
        from nemesis import faults

        if "membership" in faults.parse_nemeses(opts.nemesis):
            raise ValueError("--nemesis membership with --datacenters > 1: a change can leave a datacenter with fewer "
                             "nodes than its replication factor, and the checkers would count replicas wrongly")
