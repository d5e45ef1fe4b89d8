"""sim/: the in-memory network's faults and the simulated disk's crashes, on hand-made worlds."""

from __future__ import annotations

import random
from pathlib import Path

import trio

from node.runtime import current_system, fsync, offload, use_system
from node.storage.commitlog import CommitLog
from sim.clock import EPOCH_US, SimClock, WorldClock
from sim.disk import SimSystem
from sim.net import SimNetwork
from sim.trace import Trace, first_difference


def _run(fn, *args):  # type: ignore[no-untyped-def]
    """Run ``fn`` under the world clock, as harness sim does."""
    return trio.run(fn, *args, clock=WorldClock(Trace()))


async def _pairs(net: SimNetwork, nodes: list[str]) -> dict[tuple[str, str], tuple]:  # type: ignore[type-arg]
    """A connection from every node to every other; returns (opener end, accepted end) per link."""
    listeners = {n: await net.for_node(n).open_tcp_listeners(7000, host=n) for n in nodes}
    out = {}
    for a in nodes:
        for b in nodes:
            if a != b:
                client = await net.for_node(a).open_tcp_stream(b, 7000)
                server = await listeners[b][0].accept()
                out[(a, b)] = (client, server)
    return out


def test_partition_drops_only_messages_across_the_cut() -> None:
    async def main() -> None:
        net = SimNetwork(random.Random(1), Trace())
        nodes = ["n1", "n2", "n3", "n4"]
        conns = await _pairs(net, nodes)
        # n1 isolated from the rest, as the `one` shape's grudge cuts it (both directions).
        cut = {(a, b) for a in nodes for b in nodes if a != b and "n1" in (a, b)}
        net.cut_links(cut)
        for (a, b), (client, server) in sorted(conns.items()):
            await client.send_all(f"{a}>{b}".encode())
            await server.send_all(f"{b}<{a}".encode())
        for (a, b), (client, server) in sorted(conns.items()):
            if (a, b) in cut:
                with trio.move_on_after(5):
                    await server.receive_some()
                    raise AssertionError(f"{a}>{b} crossed the cut")
            else:
                assert await server.receive_some() == f"{a}>{b}".encode()
                assert await client.receive_some() == f"{b}<{a}".encode()
        dropped = set(net.stats.dropped)
        assert dropped and all("n1" in pair for pair in dropped)
        assert all("n1" not in pair for pair in net.stats.delivered)
        # Healing closes the held connections (the proxy's cleanup); fresh ones carry traffic.
        net.heal()
        held_client, _ = conns[("n1", "n2")]
        assert await held_client.receive_some() == b""
        fresh = await net.for_node("n1").open_tcp_stream("n2", 7000)
        await fresh.send_all(b"again")
        assert net.stats.delivered[("n1", "n2")] == 1

    _run(main)


def test_connect_to_a_killed_node_is_refused_and_its_peers_read_eof() -> None:
    async def main() -> None:
        net = SimNetwork(random.Random(2), Trace())
        conns = await _pairs(net, ["n1", "n2"])
        net.drop_node("n2")
        client, _ = conns[("n1", "n2")]
        assert await client.receive_some() == b""
        try:
            await net.for_node("n1").open_tcp_stream("n2", 7000)
        except ConnectionRefusedError:
            pass
        else:
            raise AssertionError("connect to a killed node succeeded")
        assert net.stats.refused == 1

    _run(main)


def test_pause_holds_bytes_both_ways_until_resume() -> None:
    async def main() -> None:
        net = SimNetwork(random.Random(3), Trace())
        conns = await _pairs(net, ["n1", "n2"])
        client, server = conns[("n1", "n2")]
        net.pause("n2")
        await client.send_all(b"to paused")
        await server.send_all(b"from paused")
        got: list[bytes] = []
        with trio.move_on_after(30):
            got.append(await server.receive_some())
        with trio.move_on_after(30):
            got.append(await client.receive_some())
        assert got == []
        t = trio.current_time()
        net.resume("n2")
        assert await server.receive_some() == b"to paused"
        assert await client.receive_some() == b"from paused"
        assert trio.current_time() - t < 0.01

    _run(main)


def test_one_connection_keeps_its_order_while_latency_varies() -> None:
    async def main() -> None:
        net = SimNetwork(random.Random(4), Trace())
        conns = await _pairs(net, ["n1", "n2"])
        client, server = conns[("n1", "n2")]
        net.slow([("n1", "n2")], 50, 40)
        for i in range(50):
            await client.send_all(b"%d," % i)
        data = b""
        while data.count(b",") < 50:
            data += await server.receive_some()
        assert data == b"".join(b"%d," % i for i in range(50))

    _run(main)


def test_power_crash_keeps_exactly_the_fsynced_commit_log_records(tmp_path: Path) -> None:
    async def main() -> list[int]:
        system = SimSystem()
        with use_system(system):
            assert current_system() is system
            log = CommitLog(tmp_path / "cl", sync_mode="periodic", segment_bytes=1 << 20, group_window_s=0.0,
                            clock=SimClock())
            assert list(log.replay()) == []
            log.start()
            for i in range(5):
                log.append(1, {"i": i})
            await offload(log.sync)  # inline in sim: the fsync is recorded, not waited for
            for i in range(5, 9):
                log.append(1, {"i": i})  # acknowledged in periodic mode, never fsynced
            (tmp_path / "cl" / "never-synced.tmp").write_bytes(b"x" * 100)
            image = system.durable_image(tmp_path)
            stats = system.crash(tmp_path, image, "power")
        assert stats["removed"] == 1 and stats["truncated"] == 1 and stats["bytes_lost"] > 100
        reopened = CommitLog(tmp_path / "cl", sync_mode="periodic", segment_bytes=1 << 20, group_window_s=0.0,
                             clock=SimClock())
        records = [obj["i"] for _, _, obj in reopened.replay()]
        assert not reopened.report.truncations  # the cut is at a record boundary: nothing torn
        return records

    assert _run(main) == [0, 1, 2, 3, 4]


def test_process_crash_keeps_every_written_byte(tmp_path: Path) -> None:
    system = SimSystem()
    f = tmp_path / "data"
    with open(f, "wb") as fh:
        fh.write(b"synced")
        fh.flush()
        system.fsync(fh.fileno())
        fh.write(b" and not")
    image = system.durable_image(tmp_path)
    assert image[f] == 6
    assert system.crash(tmp_path, image, "process")["bytes_lost"] == 0
    assert f.read_bytes() == b"synced and not"
    assert system.crash(tmp_path, image, "power")["truncated"] == 1
    assert f.read_bytes() == b"synced"


def test_the_default_system_really_fsyncs(tmp_path: Path) -> None:
    # Outside a simulation the door is the real one: fsync on a real descriptor works.
    assert not isinstance(current_system(), SimSystem)
    with open(tmp_path / "x", "wb") as fh:
        fh.write(b"x")
        fsync(fh.fileno())


def test_sim_clock_is_virtual_and_skewable() -> None:
    async def main() -> None:
        clock = SimClock()
        assert clock.wall_us() == EPOCH_US
        await trio.sleep(3600)
        assert clock.wall_us() == EPOCH_US + 3600 * 1_000_000
        assert clock.monotonic() == 3600
        clock.bump(5_000_000)
        assert clock.offset_us() == 5_000_000

    _run(main)


def test_first_difference_names_the_first_differing_event() -> None:
    assert first_difference(["a", "b"], ["a", "b"]) is None
    assert first_difference(["a", "b", "c"], ["a", "x", "c"]) == (1, "b", "x")
    assert first_difference(["a"], ["a", "b"]) == (1, None, "b")
