"""`harness run --deploy ssh --coverage`: node processes on namespace hosts measured, their data
files downloaded at teardown and remapped onto this checkout's node/."""

from __future__ import annotations

import json
from pathlib import Path

from harness.deploy import hosts as H
from tests.hosts.conftest import ssh_campaign


def test_ssh_campaign_with_coverage(namespace_hosts: H.HostsState, tmp_path: Path) -> None:
    # Two of the five hosts, none spare: installing on the hosts is most of this test's time (the
    # kill nemesis under coverage is tests/e2e/test_coverage.py's and tests/cluster's).
    lines = [ln for ln in namespace_hosts.nodes_file.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    two = tmp_path / "two-hosts.txt"
    two.write_text("\n".join(lines[:2]) + "\n")
    proc = ssh_campaign(namespace_hosts, tmp_path, "--remote-root", "/opt/ringlab-coverage", "--coverage",
                        "--nodes-file", str(two), "--replication-factor", "2", "--nemesis", "none",
                        "--time-limit", "4", "--seed", "5", "--recovery-time", "1")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    run_dir = (tmp_path / "latest").resolve()
    cov = json.loads((run_dir / "results.json").read_text())["coverage"]
    # Every node's data came back (one folder per host), paths mapped onto node/ here.
    assert {p.name for p in (run_dir / "coverage" / "raw").iterdir()} == {"n1", "n2"}
    # Two incarnations per host: the campaign's, and the one the final restart check starts.
    assert cov["data_files"] == 4
    files = {f["file"]: f for f in cov["files"]}
    assert files["node/server.py"]["covered"] > 0 and files["node/storage/engine.py"]["covered"] > 0
    assert cov["totals"]["node/storage/"]["percent"] > 0
    assert (run_dir / "coverage" / "index.html").exists()
    assert not Path("/opt/ringlab-coverage").exists()
