"""Local clusters draw every port they promise at once, and later draws avoid the promised ones:
a port drawn apart was free until its owner bound it (the fault proxy's API once took a link
proxy's port, and a campaign failed at populate with 'address already in use')."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from harness.deploy import local
from harness.deploy.local import LocalCluster, LocalClusterSpec, free_ports, port_range


def test_free_ports_never_hands_out_a_taken_port() -> None:
    # All but 200 ports of this worker's range are "taken": a draw ignoring them would hit them.
    whole = list(port_range())
    untaken = set(random.Random(5).sample(whole, 200))
    taken = [p for p in whole if p not in untaken]
    for _ in range(10):
        got = free_ports(4, taken=taken)
        assert len(set(got)) == 4 and set(got) <= untaken


def test_a_cluster_promises_distinct_ports_and_a_joiner_draws_around_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 3
    cluster = LocalCluster(LocalClusterSpec(n, tmp_path / "nodes", "secret", 1))
    promised = cluster.ports_in_use()
    assert len(promised) == 2 * n + n * (n - 1) + 1 and cluster.proxy_port in promised
    seen: list[set[int]] = []

    def spy(count: int, host: str = "127.0.0.1", taken: Iterable[int] = ()) -> Any:
        seen.append(set(taken))
        return free_ports(count, host, taken)

    monkeypatch.setattr(local, "free_ports", spy)
    nid, links = cluster.add_node()
    assert seen and seen[0] >= promised  # a killed node's ports are promised too
    joiner = cluster.nodes[nid]
    new = {joiner.client_port, joiner.internode_port} | {cluster.link_ports[k] for k in cluster.link_ports if nid in k}
    assert len(new) == 2 + 2 * n and not new & promised and len(links) == 2 * n
