"""`harness run --coverage`: one short local campaign measured end to end (HTML, results.json,
report, console line), then `harness report` and `harness coverage-union` on the stored run; and
`harness sim --coverage`, which measures the simulation process without changing what it does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def harness(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The harness CLI as a user runs it."""
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_kill_campaign_with_coverage(tmp_path: Path) -> None:
    # A kill at 2 s, the restart at 4 s, maybe another kill at 6 s (healing restarts it).
    proc = harness("run", "--coverage", "--nemesis", "kill", "--nodes", "3", "--time-limit", "6",
                   "--nemesis-interval", "2", "--recovery-time", "1", "--seed", "7", "--store", str(tmp_path))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    run_dir = (tmp_path / "latest").resolve()
    assert (run_dir / "coverage" / "index.html").exists()
    cov = json.loads((run_dir / "results.json").read_text())["coverage"]
    # Three nodes at the start and a restart after each kill, one data file per process: the last
    # process of each node always saves (a graceful stop); a killed one has if it lived to its first save.
    starts = (run_dir / "harness.log").read_text().count(" started n")
    assert starts > 3 and 3 <= cov["data_files"] <= starts, out
    files = {f["file"]: f for f in cov["files"]}
    for name in ("node/server.py", "node/coordinator.py", "node/storage/engine.py", "node/storage/commitlog.py"):
        assert 0 < files[name]["percent"] <= 100, files[name]
        assert files[name]["covered"] <= files[name]["statements"]
    for prefix in ("node/", "node/storage/"):
        total = cov["totals"][prefix]
        assert 0 < total["percent"] < 100 and total["covered"] > 0, total
    assert f"coverage: node/ {cov['totals']['node/']['percent']:.1f}%" in proc.stdout
    html = (run_dir / "report.html").read_text()
    assert '<table id="coverage-files">' in html and "<td><code>node/storage/engine.py</code></td>" in html
    # The stored run reports again, and its data combines with itself into the same figure.
    assert harness("report", str(run_dir)).returncode == 0
    assert '<table id="coverage-files">' in (run_dir / "report.html").read_text()
    union = harness("coverage-union", str(run_dir), str(run_dir))
    assert union.returncode == 0, union.stderr
    assert f"node/ {cov['totals']['node/']['percent']:.1f}%" in union.stdout.splitlines()[-1]


def test_sim_campaign_with_coverage_is_the_same_simulation(tmp_path: Path) -> None:
    args = ["sim", "--nemesis", "none", "--nodes", "3", "--time-limit", "2", "--recovery-time", "1", "--seed", "3"]
    plain = harness(*args, "--store", str(tmp_path / "plain"))
    measured = harness(*args, "--coverage", "--store", str(tmp_path / "cov"))
    assert plain.returncode == 0 and measured.returncode == 0, plain.stdout + plain.stderr + measured.stderr
    # Every node ran in the one simulation process, and measuring it changed nothing it did.
    run_dir = next((tmp_path / "cov").glob("sim-*/2*"))
    cov = json.loads((run_dir / "results.json").read_text())["coverage"]
    assert cov["data_files"] == 1 and cov["totals"]["node/storage/"]["percent"] > 0
    assert (run_dir / "coverage" / "index.html").exists()
    hashes = [json.loads(next((tmp_path / d).glob("sim-*/2*/test.json")).read_text())["sim"]["history_hash"]
              for d in ("plain", "cov")]
    assert hashes[0] == hashes[1]
    assert "coverage: node/ " in measured.stdout
