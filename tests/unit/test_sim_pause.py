"""sim: a paused node stops as under SIGSTOP, its timers included, while its peers' messages queue."""

from __future__ import annotations

import random
from pathlib import Path

import trio

from sim.clock import WorldClock, patch_trio_sleeps
from sim.net import HARNESS, SimNetwork
from sim.scheduler import TaskHolds
from sim.trace import Trace
from sim.world import CURRENT_NODE, SimWorld, WorldSpec


def test_a_paused_nodes_timers_stop_and_its_messages_queue_until_resume() -> None:
    ticks = {"n1": 0, "n2": 0}
    got: list[tuple[float, bytes]] = []

    async def ticker(nid: str) -> None:
        CURRENT_NODE.set(nid)
        while True:
            await trio.sleep(1.0)
            ticks[nid] += 1

    async def reader(nid: str, stream: trio.abc.ReceiveStream) -> None:
        CURRENT_NODE.set(nid)
        while data := await stream.receive_some():
            got.append((trio.current_time(), data))

    async def main() -> None:
        holds = TaskHolds(CURRENT_NODE)
        net = SimNetwork(random.Random(5), Trace())
        [listener] = await net.for_node("n1").open_tcp_listeners(7000, host="n1")
        client = await net.for_node(HARNESS).open_tcp_stream("n1", 7000)
        server = await listener.accept()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker, "n1")
            nursery.start_soon(ticker, "n2")
            nursery.start_soon(reader, "n1", server)
            await trio.sleep(2.5)
            assert ticks == {"n1": 2, "n2": 2}
            holds.pause("n1")
            await client.send_all(b"while paused")
            await trio.sleep(10)
            # n1's one-second timer expired ten times over, and its reader had a message: none
            # of its tasks ran. n2 kept going.
            assert ticks == {"n1": 2, "n2": 12}
            assert got == []
            t = trio.current_time()
            holds.resume("n1")
            await trio.sleep(0.1)
            # On resume the overdue timer fires at once and the queued message is read.
            assert ticks["n1"] == 3
            assert got == [(t, b"while paused")]
            await trio.sleep(2)
            assert ticks == {"n1": 5, "n2": 14}
            nursery.cancel_scope.cancel()
        holds.close()

    undo = patch_trio_sleeps()
    try:
        trio.run(main, clock=WorldClock(Trace()))
    finally:
        undo()


def test_a_paused_real_node_stops_gossiping_and_its_peers_convict_it(tmp_path: Path) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            world = SimWorld(WorldSpec(3, tmp_path, "secret-of-the-pause-test", seed=3), nursery)
            for nid in world.node_ids():
                await world.start_node(nid)
            await trio.sleep(8)
            gossip = {nid: world.nodes[nid].node.gossiper for nid in world.node_ids()}
            assert all(gossip["n2"].is_alive(n) for n in ("n1", "n3"))
            before = {nid: g.rounds for nid, g in gossip.items()}
            world.pause("n1")
            await trio.sleep(20)
            during = {nid: g.rounds for nid, g in gossip.items()}
            # The paused node's gossip timer never fired; its peers' did and, hearing nothing
            # from it, their failure detectors convicted it.
            assert during["n1"] == before["n1"]
            assert during["n2"] - before["n2"] >= 15 and during["n3"] - before["n3"] >= 15
            assert not gossip["n2"].is_alive("n1") and not gossip["n3"].is_alive("n1")
            world.resume("n1")
            await trio.sleep(10)
            assert gossip["n1"].rounds > during["n1"]
            assert gossip["n2"].is_alive("n1")
            for nid in world.node_ids():
                await world.stop_node(nid)
            nursery.cancel_scope.cancel()

    undo = patch_trio_sleeps()
    try:
        trio.run(main, clock=WorldClock(Trace()))
    finally:
        undo()
