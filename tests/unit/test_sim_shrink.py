"""`harness sim --seed N --shrink`: a failing seed shrinks to a smaller configuration of the same
seed that fails the same way, and the command it prints replays that failure."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from harness.run import RunOptions
from harness.shrink import reductions
from harness.simcli import SimSettings, replay_command

# A campaign that catches ack_quorum_after_one on most seeds without any fault (a write
# acknowledged by one replica, a QUORUM read from the two others).
CAMPAIGN = ["--nemesis", "none", "--time-limit", "8", "--concurrency", "2", "--nodes", "3", "--key-count", "2",
            "--recovery-time", "2", "--fault", "ack_quorum_after_one"]


def _harness(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_a_failing_seed_shrinks_to_a_smaller_configuration_whose_replay_fails_the_same_way(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    store = str(tmp_path / "store")
    # Deterministic per seed; the first seed that fails (most do) is the one shrunk, so a change
    # that moves which seeds fail does not make this test meaningless.
    for seed in range(3, 9):
        p = _harness("sim", "--seed", str(seed), *CAMPAIGN, "--shrink", "--jobs", "2", "--store", store, cwd=root)
        if "nothing to shrink" not in p.stdout:
            break
    assert p.returncode == 1, p.stdout + p.stderr
    replay = re.search(r"^replay: harness (.*)$", p.stdout, re.M)
    assert replay, p.stdout
    [summary] = Path(store).glob("*/shrink-*/shrink.json")
    info = json.loads(summary.read_text())
    original, smallest = info["original"], info["smallest"]
    assert info["seed"] == seed and {"linearizable", "quorum"} & set(info["failed_checkers"])
    # Never larger than the original in any dimension, and smaller where a step says so.
    assert smallest["time_limit"] <= original["time_limit"] and smallest["key_count"] <= original["key_count"]
    assert int(smallest["concurrency"].rstrip("n")) <= 2
    assert len(info["steps"]) >= 1, p.stdout  # deterministic: these seeds still fail with one key
    # The printed command replays the smallest failure: same seed, invalid again.
    again = _harness(*replay.group(1).split(), "--store", store, cwd=root)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "Overall: INVALID" in again.stdout


def test_reductions_are_one_step_smaller_and_valid() -> None:
    opts = RunOptions(deploy="sim", nemesis="partition,kill", time_limit=20.0, key_count=5, nodes=5, memtable_flush_kb=0)
    changes = [c for c, _ in reductions(opts)]
    assert changes == ["--nemesis none", "--nemesis kill", "--nemesis partition", "--time-limit 10",
                       "--concurrency 5", "--key-count 2", "--nodes 3"]
    by = dict(reductions(opts))
    assert by["--nodes 3"].nodes == 3 and by["--nodes 3"].concurrency == "10"  # the old cluster's clients
    tiny = RunOptions(deploy="sim", nemesis="none", time_limit=6.0, key_count=1, nodes=3, concurrency="1")
    assert reductions(tiny) == []  # nothing left to give
    # The replay command of a reduction names what changed.
    cmd = replay_command(by["--time-limit 10"], SimSettings(), 7)
    assert "--seed 7" in cmd and "--time-limit 10" in cmd and "--nemesis partition,kill" in cmd


def test_shrink_takes_one_seed(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    p = _harness("sim", "--seeds", "1-3", "--shrink", "--store", str(tmp_path), cwd=root)
    assert p.returncode == 254 and "--shrink takes one --seed" in p.stderr
