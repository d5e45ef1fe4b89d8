"""The README's deliberately broken store example stays caught (issue 18).

The README shows `harness run --fault ack_quorum_after_one --nemesis latency` as a campaign that
finds the broken store. This runs that same line's arguments, read from the README, as a
simulated campaign (`harness sim` takes the same options; a seed's verdict is the same on every
run of the same code). Measured over seeds 1-20 of `harness sim --seeds 1-20 --fault
ack_quorum_after_one --nemesis latency` (the README's campaign, 60 virtual s): 20 of 20 invalid,
2 to 21 anomalies each; five real runs of the README line (seeds 1-5, load 17-29), 5 of 5 invalid
(6 to 11 stale reads each).
Seeds 1-4 are tried in turn, stopping at the first invalid one: at a per-seed rate of 0.86 (the
lower 95% bound of 20 of 20) all four miss with probability 0.0004, so a change that only moves
which seeds catch it does not turn this red; one that stops the campaign catching the switch does.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from harness.cli import build_parser
from harness.simcli import _job, _payload, _pool, build_options

README = Path(__file__).resolve().parents[2] / "README.md"
SEEDS = 4


def readme_example() -> list[str]:
    """The arguments of the README's `harness run --fault ack_quorum_after_one ...` line."""
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith(".venv/bin/harness run ") and "ack_quorum_after_one" in line:
            return shlex.split(line.split("#", 1)[0])[2:]
    raise AssertionError("README.md has no `harness run ... ack_quorum_after_one` example")


def test_the_readme_broken_store_campaign_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = readme_example()
    assert "--fault" in args and args[args.index("--fault") + 1] == "ack_quorum_after_one", args
    monkeypatch.setenv("PYTHONHASHSEED", "0")  # what _pool sets for its workers, restored afterwards
    verdicts = []
    # One worker process, as `harness sim` runs every seed (a fixed hash seed: replayable verdicts).
    with _pool(1) as pool:
        for seed in range(1, SEEDS + 1):
            opts, settings = build_options(build_parser().parse_args(["sim", *args, "--store", str(tmp_path)]))
            opts.seed = seed
            assert opts.validation_faults == ["ack_quorum_after_one"]
            [row] = pool.map(_job, [_payload(opts, settings, tmp_path / f"seed-{seed}", quiet=True, lazy_report=True)])
            verdicts.append((seed, row["valid"], row.get("error")))
            if row["valid"] is False:
                assert row["anomalies"] > 0 and "quorum" in row["failed_checkers"], row
                return
            assert row["valid"] is True, row  # unknown or a harness error is neither a catch nor a miss
    raise AssertionError(f"the README's broken-store campaign was not caught by seeds 1-{SEEDS}: {verdicts}")
