"""A write acknowledged during a membership change, with nothing else going on, must reach the
replicas that gain its range (their pending writes): a replica lacking it is a lost write.

Before, the convergence checker excused every write made during a membership change, which is
why sim never caught ``skip_pending_ranges``: the replicas that gained ranges did lack the
writes acknowledged while the change was under way (6-9 keys a seed), but no client read could
see it (two of the three replicas still held each write) and the one checker that reads each
replica forgave it. The excuse ("a pending replica that was down gets no hint") now needs a
fault that can make a replica look down during the write (docs/sim.md, *Detection rates*).
"""

from __future__ import annotations

from tests.unit.test_check_convergence import H, _lost_on_n3, _nemesis


def test_a_membership_change_alone_excuses_no_missing_write() -> None:
    h = H()
    h.write(1, 1, 100)
    h.write(1, 2, 200, node="n2")
    _nemesis(h, "start-membership", {"node": "n6", "result": {}}, "join")
    r = _lost_on_n3(h, targets=[])
    assert r.valid is False
    [a] = r.anomalies
    assert a.kind == "replica-lost-write" and a.details["node"] == "n3", a


def test_a_fault_that_ended_before_the_write_excuses_nothing_either() -> None:
    h = H()
    _nemesis(h, "start-pause", {"nodes": ["n3"]}, "pause")
    _nemesis(h, "stop-pause", {"nodes": ["n3"]}, "resume")
    h.t += 10**10  # long after the pause healed
    h.write(1, 1, 100)
    h.write(1, 2, 200, node="n2")
    _nemesis(h, "start-membership", {"node": "n6", "result": {}}, "join")
    assert _lost_on_n3(h, targets=[]).valid is False


def test_a_fault_still_running_during_the_change_keeps_the_excuse() -> None:
    h = H()
    _nemesis(h, "start-pause", {"nodes": ["n3"]}, "pause")
    h.write(1, 1, 100)
    h.write(1, 2, 200, node="n2")
    _nemesis(h, "start-membership", {"node": "n6", "result": {}}, "join")
    assert _lost_on_n3(h, targets=[]).valid is True
