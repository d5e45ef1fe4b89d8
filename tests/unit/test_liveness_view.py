"""checkers/convergence.py's stale-liveness-view: a running node that a running peer calls DOWN at the end."""

from __future__ import annotations

from typing import Any

from checkers import convergence


def _passes(views: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    spec = {"model": "register", "column": "v"}
    return [{"type": "pass", "pass": p, "workload": spec, "hints_held": {"before": {}, "after": {}, "targets": []},
             **({"hints_drained": True, "views": views} if p == "after" else {})}
            for p in ("before", "read-repair", "after")]


def test_a_peer_seen_down_that_answered_is_an_anomaly() -> None:
    views = {"n1": {"n2": "U", "n3": "D"}, "n2": {"n1": "U", "n3": "U"}, "n3": {"n1": "U", "n2": "U"}}
    r = convergence.check([], {"replica_snapshots": _passes(views)})
    assert r.valid is False
    assert r.counts["stale-liveness-view"] == 1
    assert [a.details for a in r.anomalies] == [{"node": "n1", "peer": "n3"}]


def test_a_peer_down_that_did_not_answer_and_all_up_are_valid() -> None:
    # n3 is gone (its own status op failed): n1 calling it DOWN is right.
    views = {"n1": {"n2": "U", "n3": "D"}, "n2": {"n1": "U", "n3": "D"}}
    r = convergence.check([], {"replica_snapshots": _passes(views)})
    assert r.valid is True and r.counts["stale-liveness-view"] == 0
