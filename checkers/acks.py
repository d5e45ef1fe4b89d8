"""Acknowledgements: every write the store called successful was acknowledged as its level demands.

The harness records, with each acknowledged write, the replicas the coordinator wrote to
(``replicas``: the key's natural replicas) and the ones whose acknowledgement it had counted when it
answered (``acked``; harness/client.py, node/coordinator.py ``_finish_write``). That list is the
coordinator's own account, so this check cannot see a coordinator that lies about it; what it does
see is a level counted wrong: a QUORUM answered after fewer than a majority of the replicas, an
EACH_QUORUM after a quorum of one datacenter, a LOCAL_QUORUM after replicas of other datacenters, an
acknowledgement from a node that is not a replica of the key (a pending replica's, during a range
movement, never counts). The other checkers see such a write only when a later read happens to
miss it.

What a level needs, with RF the keyspace's replication factor (per datacenter under
NetworkTopologyStrategy, ``params["replication"]``, with ``params["node_datacenters"]`` saying where
each node sits): ONE, TWO, THREE that many replicas; QUORUM a majority of every replica (the sum of
the datacenters' factors); ALL every replica listed; LOCAL_ONE and LOCAL_QUORUM one, or a majority
of the factor, in the coordinator's datacenter (``node``; any datacenter when the history does not
say); EACH_QUORUM a majority in every datacenter. SimpleStrategy ignores datacenters, so there the
LOCAL levels and EACH_QUORUM count every replica, as the store does. ANY needs none (a hint is
enough). A write without a recorded ``acked`` list is not judged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from checkers.result import Anomaly, AnomalyLog, Result, example_limit
from harness.history import Op, completions

KIND = "under-acknowledged"
_FIXED = {"ONE": 1, "TWO": 2, "THREE": 3}


def datacenter_factors(params: Mapping[str, Any]) -> dict[str, int] | None:
    """Per-datacenter replication factors of a NetworkTopologyStrategy keyspace, else None."""
    rep = params.get("replication")
    if not isinstance(rep, Mapping) or rep.get("class") != "NetworkTopologyStrategy":
        return None
    return {dc: int(rf) for dc, rf in rep.items() if dc != "class"}


def shortfall(level: str, replicas: list[str], acked: list[str], coordinator: str | None, rf: int,
              dc_rf: Mapping[str, int] | None, dc_of: Mapping[str, str]) -> str | None:
    """Why ``acked`` does not satisfy ``level`` for a write to ``replicas``, or None if it does."""
    got = set(acked) & set(replicas)
    name = level.upper()
    if name == "ANY":
        return None
    if name in _FIXED:
        need = min(_FIXED[name], len(replicas))
        return None if len(got) >= need else f"{len(got)} of the {need} acknowledgements {name} needs"
    if name == "ALL":
        return None if got == set(replicas) else f"{len(got)} of {len(replicas)} replicas acknowledged an ALL write"
    if name == "QUORUM" or dc_rf is None:
        if name in ("LOCAL_ONE",):
            need = 1
        else:
            need = (sum(dc_rf.values()) if dc_rf is not None else rf) // 2 + 1
        return None if len(got) >= need else f"{len(got)} of the {need} acknowledgements {name} needs"

    def in_dc(dc: str) -> int:
        return sum(1 for r in got if dc_of.get(r) == dc)

    if name == "EACH_QUORUM":
        short = [f"{dc}: {in_dc(dc)} of {f // 2 + 1}" for dc, f in sorted(dc_rf.items()) if f > 0 and in_dc(dc) < f // 2 + 1]
        return None if not short else "EACH_QUORUM short of a quorum in " + ", ".join(short)
    if name in ("LOCAL_QUORUM", "LOCAL_ONE"):
        dcs = [dc_of[coordinator]] if coordinator in dc_of else sorted(dc_rf)
        for dc in dcs:
            need = 1 if name == "LOCAL_ONE" else dc_rf.get(dc, 0) // 2 + 1
            if in_dc(dc) >= need:
                return None
        where = f"the coordinator's datacenter {dcs[0]}" if len(dcs) == 1 else "any datacenter"
        return f"{name} without enough acknowledgements in {where} (acked by {sorted(got)})"
    return None  # a level this check does not know: not judged


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Flag acknowledged writes whose recorded acknowledgements do not meet their consistency level."""
    params = params or {}
    rf = int(params.get("replication_factor") or 1)
    dc_rf = datacenter_factors(params)
    dc_of = dict(params.get("node_datacenters") or {})
    default_cl = params.get("write_cl") or "ONE"
    log = AnomalyLog(example_limit(params))
    counts = {"judged_writes": 0, KIND: 0}
    for inv, op in completions(history):
        if op.type != "ok":
            continue
        acked, replicas = op.extra.get("acked"), op.extra.get("replicas")
        if not isinstance(acked, list) or not isinstance(replicas, list) or not replicas:
            continue
        counts["judged_writes"] += 1
        level = str(op.cl or inv.cl or default_cl)
        # Pending replicas get the write too and may answer first; they are named, never counted.
        foreign = sorted(set(acked) - set(replicas))
        why = shortfall(level, replicas, acked, op.node or inv.node, rf, dc_rf, dc_of)
        if why is not None:
            log.add(Anomaly(KIND, f"key {inv.key!r}: {inv.f} (op {op.index}) acknowledged at {level} with {why}; "
                                  f"replicas {replicas}, acked {acked}"
                                  + (f" (not replicas of the key: {foreign})" if foreign else ""),
                            [op], inv.key, {"level": level, "replicas": replicas, "acked": acked}))
    counts[KIND] = log.count(KIND)
    return Result("acks", not log.counts, counts, log.examples)
