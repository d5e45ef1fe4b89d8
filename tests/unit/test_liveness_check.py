"""checkers/liveness.py on hand-made histories and failure-detector samples."""

from __future__ import annotations

from typing import Any

from checkers import liveness
from harness.history import NEMESIS, Op

S = 1_000_000_000
NODES = ["n1", "n2", "n3", "n4", "n5"]
HEADER = {"type": "header", "gossip_interval_s": 1.0, "phi_convict_threshold": 8.0, "max_interval_rounds": 1.0}


def nemesis(events: list[tuple[float, str, Any]]) -> list[Op]:
    """An invoke and an info completion 0.1 s later per (time s, f, value)."""
    ops: list[Op] = []
    for t, f, value in events:
        ops.append(Op(len(ops), int(t * S), NEMESIS, "invoke", f))
        ops.append(Op(len(ops), int(t * S) + S // 10, NEMESIS, "info", f, value=value))
    return ops


def views(states: dict[float, dict[str, dict[str, str]]]) -> list[dict[str, Any]]:
    """Samples: at time t, observer -> {peer: U/D} (every peer NORMAL), answered 10 ms later."""
    out: list[dict[str, Any]] = [HEADER]
    for t, by_obs in sorted(states.items()):
        for obs, view in by_obs.items():
            out.append({"type": "view", "node": obs, "sent_ns": int(t * S), "recv_ns": int(t * S) + S // 100,
                        "view": {p: [st, "NORMAL"] for p, st in view.items()}})
    return out


def every(t0: float, t1: float, step: float, view: Any) -> dict[float, dict[str, dict[str, str]]]:
    """The same per-observer views, sampled every ``step`` s in [t0, t1)."""
    out = {}
    t = t0
    while t < t1:
        out[round(t, 3)] = view(t)
        t += step
    return out


def fd_view(down: set[str], seen_down_after: float | None, up_after: float, t_kill: float, t_back: float):
    """Observers n1..n3 (n4, n5 killed at t_kill, back at t_back): DOWN once ``seen_down_after``
    s into the outage (never when None), UP again ``up_after`` s after the restart."""

    def view(t: float) -> dict[str, dict[str, str]]:
        out = {}
        for obs in ("n1", "n2", "n3"):
            v = {}
            for p in NODES:
                if p == obs:
                    continue
                is_down = (p in down and seen_down_after is not None and t_kill + seen_down_after <= t < t_back + up_after)
                v[p] = "D" if is_down else "U"
            out[obs] = v
        if not (t_kill <= t < t_back):
            for p in down:
                out[p] = {q: "U" for q in NODES if q != p}
        return out

    return view


def run(ops: list[Op], samples: list[dict[str, Any]]):
    return liveness.check(ops, {"liveness_samples": samples})


KILL = [(10, "start-kill", {"spec": "minority", "nodes": ["n4", "n5"]}), (50, "stop-kill", {"nodes": ["n4", "n5"]})]


def test_bounds_follow_the_detectors_arithmetic() -> None:
    convict, up, _ = liveness.bounds(HEADER)
    # 8 / log10(e) = 18.4 mean intervals of at most one 1 s round, plus six rounds of slack.
    assert 24 * S < convict < 25 * S
    assert up == 10 * S


def test_a_correct_view_passes() -> None:
    samples = views(every(0, 70, 1.0, fd_view({"n4", "n5"}, 10.0, 2.0, 10.1, 50.1)))
    r = run(nemesis(KILL), samples)
    assert r.valid is True, r.anomalies
    assert r.counts["judged_down"] > 0 and r.counts["judged_up"] > 0


def test_a_peer_never_convicted_is_flagged() -> None:
    samples = views(every(0, 70, 1.0, fd_view({"n4", "n5"}, None, 0.0, 10.1, 50.1)))
    r = run(nemesis(KILL), samples)
    assert r.valid is False
    kinds = {(a.kind, a.details["node"], a.details["peer"]) for a in r.anomalies}
    # One finding per observer and dead peer, not one per sample.
    assert kinds == {("never-convicted", o, p) for o in ("n1", "n2", "n3") for p in ("n4", "n5")}
    assert r.counts["never-convicted"] == 6


def test_a_conviction_within_the_bound_is_not_late() -> None:
    # Convicted 20 s into a 40 s outage: slower than usual, still within the bound.
    samples = views(every(0, 70, 1.0, fd_view({"n4", "n5"}, 20.0, 2.0, 10.1, 50.1)))
    assert run(nemesis(KILL), samples).valid is True


def test_an_outage_shorter_than_the_bound_asks_nothing() -> None:
    short = [(10, "start-kill", {"nodes": ["n4"]}), (30, "stop-kill", {"nodes": ["n4"]})]
    samples = views(every(0, 50, 1.0, fd_view({"n4"}, None, 0.0, 10.1, 30.1)))
    r = run(nemesis(short), samples)
    assert r.valid is True and r.counts["judged_down"] == 0


def test_a_stale_down_is_flagged() -> None:
    samples = views(every(0, 80, 1.0, fd_view({"n4", "n5"}, 10.0, 25.0, 10.1, 50.1)))
    r = run(nemesis(KILL), samples)
    assert r.valid is False
    assert {a.kind for a in r.anomalies} == {"stale-down"}
    assert r.counts["stale-down"] == 6


def test_a_partitioned_minority_must_be_convicted_but_a_bridged_one_need_not() -> None:
    # n4 and n5 cut off from n1-n3 both ways: nothing relays their heartbeats.
    halves = {"n1": ["n4", "n5"], "n2": ["n4", "n5"], "n3": ["n4", "n5"], "n4": ["n1", "n2", "n3"], "n5": ["n1", "n2", "n3"]}
    part = [(10, "start-partition", {"grudge": halves}), (50, "stop-partition", "network healed")]

    def view(t: float) -> dict[str, dict[str, str]]:
        return {o: {p: "U" for p in NODES if p != o} for o in NODES}

    r = run(nemesis(part), views(every(0, 70, 1.0, view)))
    assert r.valid is False
    assert {(a.details["node"], a.details["peer"]) for a in r.anomalies} >= {("n1", "n4"), ("n4", "n1")}
    # A bridge (n3 hears both sides) relays every heartbeat: UP everywhere is right.
    bridge = {"n1": ["n4", "n5"], "n2": ["n4", "n5"], "n3": [], "n4": ["n1", "n2"], "n5": ["n1", "n2"]}
    part = [(10, "start-partition", {"grudge": bridge}), (50, "stop-partition", "network healed")]
    r = run(nemesis(part), views(every(0, 70, 1.0, view)))
    assert r.valid is True and r.counts["judged_down"] == 0


def test_an_observer_that_was_itself_paused_is_not_judged() -> None:
    # n1 paused through the outage of n4 answers afterwards with n4 still UP: it held convictions.
    ops = nemesis([(10, "start-kill", {"nodes": ["n4"]}), (12, "start-pause", {"nodes": ["n1"]}),
                   (40, "stop-pause", {"nodes": ["n1"]}), (60, "stop-kill", {"nodes": ["n4"]})])

    def view(t: float) -> dict[str, dict[str, str]]:
        out = {o: {p: ("D" if (p == "n4" and 20 <= t < 62) or (p == "n1" and 22 <= t < 42) else "U")
                   for p in NODES if p != o} for o in ("n2", "n3", "n5")}
        if not 12 <= t < 40:
            out["n1"] = {p: "U" for p in NODES if p != "n1"}
        return out

    r = run(ops, views(every(0, 80, 1.0, view)))
    assert r.valid is True, r.anomalies


def test_faults_outside_the_model_suspend_judging() -> None:
    ops = nemesis([(5, "start-clock", {"nodes": ["n2"]}), *KILL, (60, "stop-clock", {"nodes": ["n2"]})])
    samples = views(every(0, 70, 1.0, fd_view({"n4", "n5"}, None, 0.0, 10.1, 50.1)))
    r = run(ops, samples)
    assert r.valid is True and r.counts["judged_down"] == 0 and r.counts["skipped_unmodelled"] > 0


def test_the_heal_ends_every_fault() -> None:
    ops = nemesis([KILL[0]])
    ops.append(Op(len(ops), 50 * S, NEMESIS, "info", "heal", value={"healed": ["kill"]}))
    samples = views(every(0, 80, 1.0, fd_view({"n4", "n5"}, 10.0, 25.0, 10.1, 50.0)))
    r = run(ops, samples)
    assert {a.kind for a in r.anomalies} == {"stale-down"}


def test_no_samples_is_unknown() -> None:
    assert liveness.check([], {}).valid == "unknown"


def test_a_view_answered_after_the_fault_ended_is_not_judged_on_it() -> None:
    # Asked at 49.9 s, during the outage, answered at 50.3 s: after the restart began, the node
    # may have taken its view then. Only the answers wholly inside the outage are judged.
    samples = views(every(0, 70, 1.0, fd_view({"n4", "n5"}, None, 0.0, 10.1, 50.1)))
    late = {"type": "view", "node": "n1", "sent_ns": int(49.9 * S), "recv_ns": int(50.3 * S),
            "view": {p: ["U", "NORMAL"] for p in NODES if p != "n1"}}
    only_late = [samples[0], late]
    r = run(nemesis(KILL), only_late)
    assert r.valid is True and r.counts["judged_down"] == 0
