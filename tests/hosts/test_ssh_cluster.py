"""The SSH deploy on 5 namespace hosts: cluster forms, QUORUM works, iptables really drops, kill/pause, teardown."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from harness.deploy import hosts as H
from harness.deploy.ssh import SSHCluster, SSHClusterSpec, SSHDB, SSHSettings, parse_nodes_file
from nemesis.grudge import partition
from nemesis.hostclock import HostClock, SharedClockError, clock_db
from nemesis.iptables import CHAIN, IptablesNet, LatencyUnavailable
from node.client import open_client
from node.protocol import RinglabError
from tests.hosts.conftest import only_sshd_left

pytestmark = pytest.mark.hosts

SECRET = "hosts-test-secret"
KS, TABLE = "hk", "reg"


@pytest.fixture(scope="module")
def cluster(namespace_hosts: H.HostsState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHCluster]:
    """The node deployed over SSH to every namespace host and started (torn down at the end)."""
    state = namespace_hosts
    run_dir = tmp_path_factory.mktemp("run")
    settings = SSHSettings(private_key=state.key_path, known_hosts=state.known_hosts_path,
                           strict_host_key_checking=True)
    spec = SSHClusterSpec(parse_nodes_file(state.nodes_file.read_text()), settings, run_dir / "nodes",
                          SECRET, seed=7, remote_root=str(tmp_path_factory.mktemp("remote") / "ringlab"))
    c = SSHCluster(spec)
    trio.run(c.start)
    try:
        yield c
    finally:
        trio.run(c.teardown)


async def _client_write(c: SSHCluster, nid: str, key: str, value: int, timeout: float = 8.0) -> None:
    host, port = c.client_address(nid)
    with trio.fail_after(timeout):
        async with open_client(host, port, secret=SECRET, timeout=timeout) as cl:
            await cl.put(KS, TABLE, key, {"v": value}, consistency="QUORUM")


def _is_refusal(exc: BaseException) -> bool:
    """Whether a failed request failed the way a partition or pause makes it fail."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_refusal(e) for e in exc.exceptions)
    return isinstance(exc, (RinglabError, trio.TooSlowError, OSError))


async def _client_read(c: SSHCluster, nid: str, key: str) -> int | None:
    host, port = c.client_address(nid)
    with trio.fail_after(8):
        async with open_client(host, port, secret=SECRET, timeout=8) as cl:
            row = await cl.get(KS, TABLE, key, consistency="QUORUM")
    return row["v"][0] if "v" in row else None


async def test_cluster_forms_and_serves_quorum(cluster: SSHCluster) -> None:
    await cluster.wait_converged()
    status = await cluster.admin("n1", "status")
    rows = {r["node_id"]: r for r in status["nodes"]}
    assert sorted(rows) == cluster.node_ids()
    assert all(r["state"] == "U" and r["status"] == "NORMAL" for r in rows.values())
    # Each node really listens on its own host's address.
    assert {r["address"] for r in rows.values()} == {f"{cluster.address(n)}:7000" for n in cluster.node_ids()}
    host, port = cluster.client_address("n1")
    async with open_client(host, port, secret=SECRET, timeout=10) as cl:
        await cl.create_keyspace(KS, {"class": "SimpleStrategy", "replication_factor": 3}, if_not_exists=True)
        await cl.create_table(KS, TABLE, if_not_exists=True)
    for i, nid in enumerate(cluster.node_ids()):
        await _client_write(cluster, nid, f"k{i}", i)
    for i in range(len(cluster.node_ids())):
        assert await _client_read(cluster, cluster.node_ids()[-1 - i], f"k{i}") == i


async def test_iptables_partition_drops_traffic_and_heals_only_its_rules(cluster: SSHCluster) -> None:
    net = IptablesNet(cluster)
    await net.install()
    # Someone else's rule (TEST-NET-1, never used here) must survive heal and uninstall.
    foreign = "iptables -w -I INPUT 2 -s 192.0.2.1 -j DROP"
    await cluster.run("n1", foreign)
    try:
        # One node isolated: with RF=3 it can never gather a QUORUM of 2 acknowledgements alone.
        p = partition("one", cluster.node_ids(), random.Random(3))
        minority = sorted(n for n in cluster.node_ids() if len(p.grudge[n]) == len(cluster.node_ids()) - 1)
        await net.cut(p.links())
        # Traffic during the partition: gossip, and QUORUM writes coordinated on the minority side,
        # which must not succeed (too few replicas reachable: Unavailable or a timeout).
        refused = 0
        for i in range(6):
            try:
                await _client_write(cluster, minority[0], f"p{i}", i, timeout=4)
            except Exception as exc:  # noqa: BLE001 - classified just below
                assert _is_refusal(exc), exc
                refused += 1
            await trio.sleep(0.3)
        counters = await net.counters()
        dropped = {(src, dst): n for dst, srcs in counters.items() for src, n in srcs.items()}
        assert set(dropped) == p.links()
        assert sum(dropped.values()) > 0, f"no packet dropped: {counters}"
        # Every side of the cut really lost traffic from the other (gossip runs every second).
        assert all(dropped[(a, b)] > 0 for a, b in p.links() if b in minority), counters
        assert refused == 6, f"only {refused}/6 QUORUM writes of the isolated node failed during the partition"
        await net.heal()
        assert sum(net.dropped.values()) >= sum(dropped.values())
        for nid in cluster.node_ids():
            rules = (await cluster.run(nid, f"iptables -w -S {CHAIN}")).stdout
            assert "-j DROP" not in rules, f"{nid} still has partition rules: {rules}"
        assert "192.0.2.1" in (await cluster.run("n1", "iptables -w -S INPUT")).stdout
        await cluster.wait_converged()
        await _client_write(cluster, minority[0], "after-heal", 1)
        with pytest.raises(LatencyUnavailable, match="Toxiproxy"):
            await net.slow(p.links(), 50, 10)
    finally:
        await net.uninstall()
        for nid in cluster.node_ids():
            rules = (await cluster.run(nid, "iptables -w -S")).stdout
            assert CHAIN not in rules, f"{nid}: chain left behind: {rules}"
        assert "192.0.2.1" in (await cluster.run("n1", "iptables -w -S INPUT")).stdout
        await cluster.run("n1", "iptables -w -D INPUT -s 192.0.2.1 -j DROP")


async def test_kill_restart_pause_resume(cluster: SSHCluster) -> None:
    db = SSHDB(cluster)
    await db.kill("n2")
    assert await cluster.process_state("n2") is None
    await _client_write(cluster, "n1", "while-n2-dead", 1)
    await db.restart("n2")
    assert await cluster.process_state("n2") in ("R", "S")
    await db.pause("n3")
    try:
        assert await cluster.process_state("n3") == "T"
        await _client_write(cluster, "n1", "while-n3-paused", 2)
        host, port = cluster.client_address("n3")
        with pytest.raises(Exception) as info:  # noqa: PT011 - classified just below
            with trio.fail_after(1.5):
                async with open_client(host, port, secret=SECRET, timeout=1) as cl:
                    await cl.request("ping")
        assert _is_refusal(info.value), info.value
    finally:
        await db.resume("n3")
    assert await cluster.process_state("n3") in ("R", "S")
    await cluster.wait_converged()
    assert await _client_read(cluster, "n3", "while-n3-paused") == 2


async def test_clock_faults_refused_on_shared_kernel(cluster: SSHCluster) -> None:
    clock = HostClock(cluster, {nid: n.dir for nid, n in cluster.nodes.items()})
    assert await clock.shared_clock_hosts() == cluster.node_ids()
    with pytest.raises(SharedClockError, match="share this machine's kernel clock"):
        await clock_db(SSHDB(cluster), clock, mode="host")
    # The explicit fallback: each node process's own clock, through its admin port.
    db = await clock_db(SSHDB(cluster), clock, mode="admin")
    await db.admin("n4", "clock", action="bump", delta_us=3_000_000)
    assert (await db.admin("n4", "clock", action="get"))["offset_us"] > 2_000_000
    await db.admin("n4", "clock", action="reset")
    assert abs((await db.admin("n4", "clock", action="get"))["offset_us"]) < 1_000_000


async def test_teardown_downloads_logs_and_leaves_nothing(cluster: SSHCluster, namespace_hosts: H.HostsState) -> None:
    await cluster.teardown()
    for nid in cluster.node_ids():
        log = cluster.spec.base_dir / nid / "node.log"
        assert log.exists() and "ready" in log.read_text()
        assert not Path(cluster.nodes[nid].dir).exists()
    assert not Path(cluster.spec.remote_root).exists()
    # Only the hosts' own sshd listeners are left in their namespaces (closed sessions exit within moments).
    assert only_sshd_left(namespace_hosts) == {}
