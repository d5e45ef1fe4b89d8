"""Local clusters draw every port they promise at once, and later draws avoid the promised ones:
a port drawn apart was free until its owner bound it (the fault proxy's API once took a link
proxy's port, and a campaign failed at populate with 'address already in use')."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.deploy.local import PORT_RANGE_ENV, LocalCluster, LocalClusterSpec, free_ports


def test_free_ports_never_hands_out_a_taken_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PORT_RANGE_ENV, "40100-40109")
    taken = {40100, 40101, 40102, 40103, 40104, 40105}
    for _ in range(20):
        got = free_ports(4, taken=taken)
        assert sorted(got) == [40106, 40107, 40108, 40109]


def test_a_cluster_promises_distinct_ports_and_a_joiner_avoids_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A range just big enough: a joiner drawing without the promised ports would collide.
    n = 3
    first = 2 * n + n * (n - 1) + 1
    monkeypatch.setenv(PORT_RANGE_ENV, f"40200-{40200 + first + 2 + 2 * n - 1}")
    cluster = LocalCluster(LocalClusterSpec(n, tmp_path / "nodes", "secret", 1))
    promised = cluster.ports_in_use()
    assert len(promised) == first and cluster.proxy_port in promised
    nid, links = cluster.add_node()
    joiner = cluster.nodes[nid]
    new = {joiner.client_port, joiner.internode_port} | {cluster.link_ports[k] for k in cluster.link_ports if nid in k}
    assert len(new) == 2 + 2 * n and not new & promised
    assert len(links) == 2 * n
