"""Spare hosts of an SSH deploy and the membership nemesis's size bound: pure, no hosts needed."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

from harness.deploy.ssh import (LEFT, SPARE, HostSpec, SSHCluster, SSHClusterSpec, SSHError, SSHSettings,
                                initial_roles)
from harness.run import DEFAULT_NODES, RunOptions
from nemesis.membership import MembershipNemesis
from tests.unit.test_nemesis_membership import FakeRing


def _cluster(tmp_path: Path, node_count: int | None) -> SSHCluster:
    hosts = [HostSpec(f"10.9.0.1{i}", name=f"n{i}") for i in range(1, 6)]
    spec = SSHClusterSpec(hosts, SSHSettings(known_hosts=tmp_path / "kh"), tmp_path / "run", "s", 1,
                          remote_root="/opt/ringlab-test", node_count=node_count)
    return SSHCluster(spec)


def test_hosts_beyond_the_node_count_are_spares() -> None:
    names = ["n1", "n2", "n3", "n4", "n5"]
    assert set(initial_roles(names, None).values()) == {"member"}
    roles = initial_roles(names, 3)
    assert [n for n in names if roles[n] == SPARE] == ["n4", "n5"]
    for bad in (0, 6):
        with pytest.raises(SSHError, match=f"--nodes {bad}: the host list has 5 host"):
            initial_roles(names, bad)


def test_cluster_members_spares_capacity_and_a_joiners_config(tmp_path: Path) -> None:
    c = _cluster(tmp_path, 3)
    assert c.node_ids() == ["n1", "n2", "n3"]
    assert c.spare_ids() == ["n4", "n5"]
    assert c.host_ids() == ["n1", "n2", "n3", "n4", "n5"]
    assert c.capacity() == 5
    assert {nid: d["role"] for nid, d in c.describe().items()} == {
        "n1": "member", "n2": "member", "n3": "member", "n4": "spare", "n5": "spare"}
    # A member's config does not bootstrap; a joiner's does, with the current members as seeds.
    assert "auto_bootstrap = false" in c.config_text("n1")
    c.nodes["n1"].role = LEFT  # n1 decommissioned: neither a seed nor counted any more
    joiner = c.config_text("n4", auto_bootstrap=True)
    assert "auto_bootstrap = true" in joiner
    assert 'seeds = ["10.9.0.12:7000", "10.9.0.13:7000"]' in joiner
    assert 'node_id = "n4"' in joiner and 'listen_host = "10.9.0.14"' in joiner
    # The host n1 ran on is not offered again: two spares, two members.
    assert c.node_ids() == ["n2", "n3"] and c.capacity() == 4
    # By default every host starts a node: no spare, no room to grow.
    assert _cluster(tmp_path, None).capacity() == len(_cluster(tmp_path, None).node_ids()) == 5


class SpareRing(FakeRing):
    """A membership DB with a fixed pool of spare hosts that are never reused (as SSHDB)."""

    def __init__(self, members: int, spares: int) -> None:
        super().__init__(members)
        self.spares = [f"n{i}" for i in range(members + 1, members + spares + 1)]

    def capacity(self) -> int:
        return len(self.members) + len(self.spares)

    async def add_node(self) -> str:
        if not self.spares:
            raise AssertionError("a join was tried with no spare host left")
        nid = self.spares.pop(0)
        self.members.append(nid)
        return nid


def test_the_size_bound_follows_the_spare_hosts_left() -> None:
    ring = SpareRing(members=4, spares=1)
    nem = MembershipNemesis(ring)  # type: ignore[arg-type]
    assert nem.size_bound() == 5
    assert MembershipNemesis(SpareRing(members=4, spares=3)).size_bound() == 5  # type: ignore[arg-type]
    assert MembershipNemesis(SpareRing(members=3, spares=0)).size_bound() == 3  # type: ignore[arg-type]

    async def walk() -> list[tuple[str, int]]:
        rng = random.Random(2)
        out = []
        for _ in range(8):
            for step in (nem.start(rng), nem.stop()):
                event = await step
                assert "error" not in event.value, event
                out.append((event.f, len(ring.members)))
        return out

    steps = trio.run(walk)
    # One spare, never reused: at most one join, and the walk ends at the minimum with nothing to do.
    assert [f for f, _ in steps].count("join") <= 1, steps
    assert max(n for _, n in steps) <= 5 and steps[-1] == ("membership", 3), steps
    assert nem.size_bound() == 3


def test_nodes_counts_the_hosts_that_start(tmp_path: Path) -> None:
    nodes_file = tmp_path / "hosts.txt"
    nodes_file.write_text("".join(f"root@10.9.0.1{i}\n" for i in range(1, 6)))
    assert RunOptions().node_count() == DEFAULT_NODES
    RunOptions(deploy="ssh", nodes_file=str(nodes_file)).validate()
    assert RunOptions(deploy="ssh", nodes_file=str(nodes_file)).node_count() is None  # every host
    RunOptions(deploy="ssh", nodes_file=str(nodes_file), nodes=4).validate()
    with pytest.raises(ValueError, match="--nodes 6 is more than the 5 hosts"):
        RunOptions(deploy="ssh", nodes_file=str(nodes_file), nodes=6).validate()
    with pytest.raises(ValueError, match="not both"):
        RunOptions(deploy="ssh", nodes_file=str(nodes_file), nodes="a,b,c").validate()
    with pytest.raises(ValueError, match="replication-factor"):
        RunOptions(deploy="ssh", nodes_file=str(nodes_file), nodes=2).validate()
    with pytest.raises(ValueError, match="needs --nodes-file"):
        RunOptions(deploy="ssh").validate()
