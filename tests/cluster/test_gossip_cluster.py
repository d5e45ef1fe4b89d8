"""Gossip on real loopback sockets: 5 Gossipers in one trio run, production 1 s interval."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import trio

from node.cluster.gossip import Gossiper
from node.cluster.membership import NodeInfo
from node.cluster.messaging import Messaging
from node.runtime import Runtime

N = 5


class Node:
    """One Messaging + Gossiper pair that can be stopped and started again on the same port."""

    def __init__(self, index: int, port: int, seeds: list[tuple[str, int]], seed: int) -> None:
        self.index = index
        self.node_id = f"n{index}"
        self.port = port
        self.seeds = seeds
        self.runtime = Runtime.real(seed=seed)
        self.events: list[tuple[str, str, float]] = []
        self.scope: trio.CancelScope | None = None
        self.fresh()

    def fresh(self, generation: int | None = None) -> None:
        """New objects: a restarted process (new generation unless one is given)."""
        self.messaging = Messaging(self.runtime, self.node_id, "127.0.0.1", self.port, secret="gossip-test-secret")
        info = NodeInfo(
            node_id=self.node_id,
            internode_host="127.0.0.1",
            internode_port=self.port,
            client_port=9000 + self.index,
            tokens=[self.index * 1000 + k for k in range(4)],
            status="NORMAL",
        )
        self.gossiper = Gossiper(self.runtime, self.messaging, info, self.seeds, generation=generation)
        self.gossiper.subscribe(lambda event, node: self.events.append((event, node, trio.current_time())))

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            self.scope = scope
            async with trio.open_nursery() as nursery:
                await nursery.start(self.messaging.run)
                await nursery.start(self.gossiper.run)
                task_status.started()

    def stop(self) -> None:
        assert self.scope is not None
        self.scope.cancel()


def free_ports(n: int) -> list[int]:
    """Ports that were free a moment ago (held together so they are distinct)."""
    held = [socket.socket() for _ in range(n)]
    try:
        for s in held:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def make_cluster(n: int = N) -> list[Node]:
    ports = free_ports(n)
    seeds = [("127.0.0.1", ports[0])]  # one seed, given only as an address
    return [Node(i, ports[i], seeds, seed=i) for i in range(n)]


def converged(nodes: list[Node]) -> bool:
    ids = {n.node_id for n in nodes}
    for n in nodes:
        view = n.gossiper.nodes()
        if set(view) != ids or n.gossiper.live_nodes() != ids:
            return False
        for other in nodes:
            info = view[other.node_id]
            if info.status != "NORMAL" or info.tokens != [other.index * 1000 + k for k in range(4)]:
                return False
            if info.internode_port != other.port or info.client_port != 9000 + other.index:
                return False
    return True


async def wait_until(predicate: Callable[[], bool], timeout: float) -> float:
    start = trio.current_time()
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)
    return trio.current_time() - start


async def test_five_nodes_converge_within_five_seconds() -> None:
    nodes = make_cluster()
    async with trio.open_nursery() as nursery:
        for n in nodes:
            await nursery.start(n.serve)
        took = await wait_until(lambda: converged(nodes), timeout=5.0)
        print(f"converged in {took:.2f} s")
        # Every node saw every other JOIN and come UP exactly once.
        for n in nodes:
            others = {o.node_id for o in nodes if o is not n}
            assert {node for e, node, _ in n.events if e == "JOIN"} == others
            assert sorted(node for e, node, _ in n.events if e == "UP") == sorted(others)
        state = nodes[1].gossiper.endpoint_state("n3")
        assert state is not None and state["alive"] and state["app_states"]["STATUS"]["value"] == "NORMAL"
        nursery.cancel_scope.cancel()


async def test_stopped_node_is_marked_down_then_up_after_restart() -> None:
    nodes = make_cluster()
    victim = nodes[3]
    async with trio.open_nursery() as nursery:
        for n in nodes:
            await nursery.start(n.serve)
        await wait_until(lambda: converged(nodes), timeout=5.0)
        await trio.sleep(6.0)  # some steady-state arrival history
        old_generation = victim.gossiper.generation
        victim.stop()
        stopped_at = trio.current_time()
        others = [n for n in nodes if n is not victim]
        took = await wait_until(lambda: all(not n.gossiper.is_alive(victim.node_id) for n in others), 15.0)
        means = [round(n.gossiper.fd.mean_interval(victim.node_id) or 0, 3) for n in others]
        print(f"all marked {victim.node_id} DOWN after {took:.1f} s; mean intervals {means}")
        for n in others:
            downs = [t for e, node, t in n.events if e == "DOWN" and node == victim.node_id]
            assert len(downs) == 1 and downs[0] - stopped_at <= 15.0
            # Nobody else was convicted meanwhile.
            assert n.gossiper.live_nodes() == {o.node_id for o in others}

        await trio.sleep(max(0.0, old_generation + 1 - victim.runtime.clock.wall()))
        victim.fresh()
        await nursery.start(victim.serve)
        assert victim.gossiper.generation > old_generation
        took = await wait_until(lambda: converged(nodes), timeout=10.0)
        print(f"restarted node UP everywhere after {took:.1f} s")
        for n in others:
            assert n.gossiper.endpoint_state(victim.node_id)["generation"] == victim.gossiper.generation  # type: ignore[index]
            assert [e for e, node, _ in n.events if node == victim.node_id][-1] == "UP"
        nursery.cancel_scope.cancel()


async def test_paused_node_is_marked_down_then_up_when_it_resumes() -> None:
    # A stand-in for SIGSTOP / SIGCONT: the node's tasks stop (its sockets go silent) and later
    # the very same objects run again, with the same generation and all their state.
    nodes = make_cluster()
    victim = nodes[2]
    others = [n for n in nodes if n is not victim]
    async with trio.open_nursery() as nursery:
        for n in nodes:
            await nursery.start(n.serve)
        await wait_until(lambda: converged(nodes), timeout=5.0)
        await trio.sleep(6.0)
        generation = victim.gossiper.generation
        victim.stop()
        took = await wait_until(lambda: all(not n.gossiper.is_alive(victim.node_id) for n in others), 15.0)
        means = [round(n.gossiper.fd.mean_interval(victim.node_id) or 0, 3) for n in others]
        print(f"paused node DOWN everywhere after {took:.1f} s; mean intervals {means}")
        resumed_at = trio.current_time()
        await nursery.start(victim.serve)
        took = await wait_until(lambda: converged(nodes), timeout=10.0)
        print(f"resumed node UP everywhere after {took:.1f} s")
        assert victim.gossiper.generation == generation
        for n in others:
            assert [e for e, node, _ in n.events if node == victim.node_id][-2:] == ["DOWN", "UP"]
        # The resumed node saw silence from everyone, but it was its own pause: no convictions.
        await trio.sleep(3.0)
        assert [(e, node) for e, node, t in victim.events if e == "DOWN" and t >= resumed_at] == []
        assert victim.gossiper.live_nodes() == {n.node_id for n in nodes}
        nursery.cancel_scope.cancel()
