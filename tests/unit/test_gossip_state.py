"""Gossip state merging, driven through the handlers directly (no sockets, a hand-moved clock)."""

from __future__ import annotations

from typing import Any

import pytest

from node.cluster import membership
from node.cluster.gossip import (
    EndpointState,
    Gossiper,
    HeartBeatState,
    VersionedValue,
    parse_digests,
    parse_wire_state,
)
from node.cluster.membership import NodeInfo
from node.cluster.messaging import Messaging
from node.runtime import Clock, Rng, Runtime


class ManualClock(Clock):
    """Monotonic time that only moves when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def make(node_id: str, generation: int = 100, tokens: list[int] | None = None) -> tuple[Gossiper, list[tuple[str, str]]]:
    runtime = Runtime(clock=ManualClock(), rng=Rng(1))
    messaging = Messaging(runtime, node_id, "127.0.0.1", 0)
    info = NodeInfo(node_id=node_id, internode_port=7000 + int(node_id[1:]), tokens=tokens or [1, 2])
    g = Gossiper(runtime, messaging, info, seeds=[], generation=generation)
    events: list[tuple[str, str]] = []
    g.subscribe(lambda event, node: events.append((event, node)))
    return g, events


async def exchange(a: Gossiper, b: Gossiper) -> None:
    """One SYN / ACK / ACK2 exchange initiated by ``a``, as _exchange does it over the network."""
    ack = await b._on_syn(a.local_id, {"from": a.local_id, "digests": a._digests()})
    a._apply(ack["states"])
    wanted = parse_digests(ack["digests"])
    if wanted:
        await b._on_ack2(a.local_id, {"from": a.local_id, "states": a._states_for(wanted)})


async def test_one_exchange_teaches_both_sides() -> None:
    a, a_events = make("n1", tokens=[10, 2**100])
    b, b_events = make("n2")
    await exchange(a, b)
    assert set(a.nodes()) == set(b.nodes()) == {"n1", "n2"}
    assert b.node("n1") == a.node("n1")
    assert b.node("n1").tokens == [10, 2**100]  # type: ignore[union-attr]  # beyond msgpack's int range
    assert ("JOIN", "n2") in a_events and ("JOIN", "n1") in b_events
    # Known but not UP until an ECHO succeeds (no nursery here, so no probe runs).
    assert not a.is_alive("n2") and a.is_alive("n1")


async def test_newer_versions_flow_and_older_ones_are_ignored() -> None:
    a, _ = make("n1")
    b, b_events = make("n2")
    await exchange(a, b)
    a.set_app_state(membership.LOAD, 12345)
    a.set_app_state("CUSTOM", {"x": 1})
    await exchange(b, a)  # b initiates; a's newer states come back in the ACK
    assert b.node("n1").load == 12345  # type: ignore[union-attr]
    assert b.app_state("n1", "CUSTOM") == {"x": 1}
    assert ("CHANGE", "n1") in b_events
    version = b.endpoint_state("n1")["app_states"]["LOAD"]["version"]  # type: ignore[index]
    # A stale copy of n1 (lower versions) relayed by someone else changes nothing.
    stale = a._states["n1"].to_wire(0)
    stale["s"]["LOAD"] = [1, 1]
    b._apply({"n1": stale})
    assert b.node("n1").load == 12345  # type: ignore[union-attr]
    assert b.endpoint_state("n1")["app_states"]["LOAD"]["version"] == version  # type: ignore[index]


async def test_restart_with_new_generation_replaces_state() -> None:
    a, _ = make("n1", generation=100, tokens=[1])
    b, b_events = make("n2")
    await exchange(a, b)
    a.set_app_state("OLD_ONLY", "x")
    await exchange(a, b)
    assert b.app_state("n1", "OLD_ONLY") == "x"
    restarted, _ = make("n1", generation=200, tokens=[7])
    b_events.clear()
    await exchange(restarted, b)
    assert b.endpoint_state("n1")["generation"] == 200  # type: ignore[index]
    assert b.node("n1").tokens == [7]  # type: ignore[union-attr]
    assert b.app_state("n1", "OLD_ONLY") is None
    assert ("CHANGE", "n1") in b_events
    # The old incarnation's state, relayed late, is ignored.
    b._apply({"n1": a._states["n1"].to_wire(0)})
    assert b.endpoint_state("n1")["generation"] == 200  # type: ignore[index]


async def test_nobody_overwrites_our_own_state() -> None:
    a, _ = make("n1", tokens=[1])
    fake = a._states["n1"].to_wire(0)
    fake["g"] += 10
    fake["s"]["TOKENS"] = [["999"], 10**9]
    a._apply({"n1": fake})
    assert a.node("n1").tokens == [1]  # type: ignore[union-attr]


async def test_malformed_states_and_digests_are_ignored() -> None:
    a, events = make("n1")
    before = a.nodes()
    a._apply({"x": "junk", "y": {"g": "1", "hv": 2, "s": {}}, 5: {}, "z": {"g": 1, "hv": 1, "s": {"K": [1]}}})
    a._apply(["not", "a", "map"])
    assert a.nodes() == before and events == []
    assert parse_digests([["n", 1, 2], ["bad"], ["n", "1", 2], "x", ["m", True, 1]]) == [("n", 1, 2)]
    assert parse_wire_state({"g": 1, "hv": 2, "s": {"K": ["v", 3]}}) == EndpointState(
        HeartBeatState(1, 2), {"K": VersionedValue("v", 3)}
    )
    ack = await a._on_syn("n9", {"digests": "garbage"})
    assert ack["from"] == "n1" and "n1" in ack["states"]


async def test_conviction_after_silence_and_local_pause_holds_it() -> None:
    a, events = make("n1")
    b, _ = make("n2")
    clock = a.runtime.clock
    assert isinstance(clock, ManualClock)
    await exchange(a, b)
    a._states["n2"].alive = True  # as a successful ECHO would
    # Heartbeats every 0.5 s for a while: b beats each time and a learns of it.
    for _ in range(40):
        clock.now += 0.5
        b._beat()
        await exchange(b, a)
        a._check_failures()
    assert a.is_alive("n2")
    mean = a.fd.mean_interval("n2")
    assert mean is not None and mean < 0.6
    # Silence, checked every second: DOWN once phi > 8, i.e. after about 18.4 mean intervals.
    silent = 0
    while a.is_alive("n2"):
        clock.now += 1.0
        silent += 1
        a._check_failures()
        assert silent < 30
    assert ("DOWN", "n2") in events
    assert 18.4 * mean <= silent <= 18.4 * mean + 1.5

    # A local pause (our own loop stalled longer than 5 rounds) does not convict anyone.
    c, c_events = make("n3")
    c_clock = c.runtime.clock
    assert isinstance(c_clock, ManualClock)
    await exchange(c, b)
    c._states["n2"].alive = True
    for _ in range(20):
        c_clock.now += 0.5
        b._beat()
        await exchange(b, c)
        c._check_failures()
    c_clock.now += 60.0
    c._check_failures()
    c_clock.now += 1.0
    c._check_failures()
    assert c.is_alive("n2") and ("DOWN", "n2") not in c_events


async def test_subscriber_failure_does_not_break_gossip() -> None:
    a, _ = make("n1")
    b, b_events = make("n2")

    def broken(event: str, node: str) -> None:
        raise RuntimeError("subscriber bug")

    b._subscribers.insert(0, broken)
    await exchange(a, b)
    assert ("JOIN", "n1") in b_events


def test_endpoint_state_view_is_plain_data() -> None:
    a, _ = make("n1", tokens=[5])
    view = a.endpoint_state("n1")
    assert view is not None
    assert view["alive"] is True and view["generation"] == 100
    assert view["app_states"]["TOKENS"]["value"] == ["5"]
    assert view["app_states"]["INTERNODE_ADDR"]["value"] == ["127.0.0.1", 7001]
    assert a.endpoint_state("nobody") is None


def test_node_info_defaults_for_missing_or_bad_states() -> None:
    info = membership.node_info_from_states("x", {"STATUS": "WEIRD", "LOAD": "big", "TOKENS": ["1", "oops", 2]})
    assert info.status == "JOINING" and info.load == 0 and info.tokens == [1, 2]
    full = NodeInfo("y", "10.0.0.1", 7000, "10.0.0.1", 9042, "dc2", "r9", [3, -4], "LEAVING", 77)
    assert membership.node_info_from_states("y", membership.app_states_of(full)) == full


@pytest.mark.parametrize("bad", [0, -1.0])
def test_gossiper_rejects_bad_interval(bad: Any) -> None:
    runtime = Runtime.real()
    with pytest.raises(ValueError):
        Gossiper(runtime, Messaging(runtime, "n1", "127.0.0.1", 0), NodeInfo("n1"), [], interval=bad)


def test_generation_ignores_the_clock_nemesis_skew() -> None:
    runtime = Runtime.real()
    runtime.clock.set_skew(offset_us=-3600 * 10**6)  # an hour behind
    g = Gossiper(runtime, Messaging(runtime, "n1", "127.0.0.1", 0), NodeInfo("n1"), [])
    import time

    assert abs(g.generation - int(time.time())) <= 1
