"""ringctl finds a local cluster's nodes and secret by name, and says what went wrong in one line
(no secret, an unknown node, a reader that went away) instead of a traceback (issue 18)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import SECRET, Cluster

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    """One node and a cluster directory describing it as `harness cluster up` would."""
    root = tmp_path_factory.mktemp("ringctl")
    c = Cluster(root, 1)
    try:
        c.start()
        cluster_dir = root / "cluster"
        cluster_dir.mkdir()
        (cluster_dir / "cluster.json").write_text(json.dumps({
            "nodes": {"n1": {"client": f"127.0.0.1:{c[0].client_port}", "pid": c[0].proc.pid}},
            "proxy": {"url": "http://127.0.0.1:1", "pid": None}, "secret": SECRET}))
        yield c, cluster_dir
    finally:
        c.stop()


def ringctl(*args: str, stdout: int = subprocess.PIPE, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RINGLAB_SECRET", "RINGCTL_PORT", "RINGCTL_HOST",
                                                            "RINGLAB_CLUSTER_DIR")}
    return subprocess.run([sys.executable, "-m", "node.ringctl", *args], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=60, cwd=cwd, env=env)


def test_node_by_name_reads_port_and_secret_from_the_cluster_dir(one_node: tuple[Cluster, Path]) -> None:
    _, cluster_dir = one_node
    r = ringctl("--cluster-dir", str(cluster_dir), "--node", "n1", "status")
    assert r.returncode == 0 and "Datacenter:" in r.stdout, r.stderr


def test_a_port_of_the_cluster_dir_gets_its_secret(one_node: tuple[Cluster, Path]) -> None:
    c, cluster_dir = one_node
    r = ringctl("--cluster-dir", str(cluster_dir), "--port", str(c[0].client_port), "ring")
    assert r.returncode == 0 and r.stdout.startswith("Partitioner:"), r.stderr


def test_no_secret_is_one_line_naming_the_ways_to_give_it(one_node: tuple[Cluster, Path], tmp_path: Path) -> None:
    c, _ = one_node
    r = ringctl("--port", str(c[0].client_port), "status", cwd=tmp_path)  # no store/cluster here
    assert r.returncode == 254
    assert r.stderr.strip().splitlines() == [
        "ringctl: Unauthorized: status needs the cluster secret (no secret given: use --secret or $RINGLAB_SECRET, "
        "or --node NAME for a cluster started with `harness cluster up`)"]


def test_unknown_node_or_missing_cluster_exit_254_in_one_line(one_node: tuple[Cluster, Path], tmp_path: Path) -> None:
    _, cluster_dir = one_node
    r = ringctl("--cluster-dir", str(cluster_dir), "--node", "n9", "status")
    assert r.returncode == 254
    assert r.stderr.strip().splitlines() == [f"ringctl: error: --node n9: not a node of the cluster in {cluster_dir} (nodes: n1)"]
    r = ringctl("--cluster-dir", str(tmp_path), "--node", "n1", "status")
    assert r.returncode == 254 and len(r.stderr.strip().splitlines()) == 1 and "harness cluster up" in r.stderr


def test_a_closed_pipe_ends_quietly(one_node: tuple[Cluster, Path]) -> None:
    # `ringctl ring | head -1`, made deterministic: the reader is gone before the first write.
    _, cluster_dir = one_node
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = ringctl("--cluster-dir", str(cluster_dir), "--node", "n1", "ring", stdout=write_end)
    finally:
        os.close(write_end)
    assert r.returncode == 0 and r.stderr == ""
