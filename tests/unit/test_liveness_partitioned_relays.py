"""stale-down is judged only while no partition cuts a link: one that cuts every relay between two
directly linked nodes leaves their heartbeats to the rounds gossip picks that link."""

from __future__ import annotations

from tests.unit.test_liveness_check import NODES, every, nemesis, run, views

# The default sim campaign's seed 1: a majorities ring in which n3 and n4 are linked directly but
# share no working relay (n3 cannot reach n1 or n5, n4 cannot reach n1 or n2).
RING = {"n1": ["n3", "n4"], "n2": ["n4", "n5"], "n3": ["n1", "n5"], "n4": ["n1", "n2"], "n5": ["n2", "n3"]}


def _view(n4_down: set[float]):
    def view(t: float) -> dict[str, dict[str, str]]:
        return {o: {p: ("D" if (o, p) == ("n3", "n4") and t in n4_down else "U") for p in NODES if p != o}
                for o in NODES}
    return view


def test_a_conviction_under_a_partition_with_a_working_direct_link_is_no_stale_view() -> None:
    ops = nemesis([(10, "start-partition", {"grudge": RING}), (40, "stop-partition", "network healed")])
    r = run(ops, views(every(0, 60, 1.0, _view({34.0, 35.0}))))
    assert r.valid is True, r.anomalies


def test_a_peer_left_down_once_the_partition_healed_is_still_stale() -> None:
    ops = nemesis([(10, "start-partition", {"grudge": RING}), (20, "stop-partition", "network healed")])
    r = run(ops, views(every(0, 60, 1.0, _view({float(t) for t in range(25, 50)}))))
    assert {(a.kind, a.details["node"], a.details["peer"]) for a in r.anomalies} == {("stale-down", "n3", "n4")}
