"""The corrupt and disk nemeses take what they damage in shuffled rounds of plans, so the few
windows of a campaign reach each kind of damage (and the code that handles it) whatever the seed."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

from nemesis.storage import CorruptNemesis, DiskNemesis
from tests.unit.test_datapath_nemeses import FakeDB


@pytest.mark.parametrize("seed", range(3))
def test_two_stopped_windows_damage_an_sstable_and_a_commit_log_segment(tmp_path: Path, seed: int) -> None:
    db = FakeDB(tmp_path)

    async def main() -> list[str]:
        n, rng, kinds = CorruptNemesis(db, modes=("stopped",)), random.Random(seed), []
        for _ in range(2):
            kinds.append((await n.start(rng)).value["kind"])
            await n.stop()
        return kinds

    assert sorted(trio.run(main)) == ["commitlog", "sstable"]


def test_plans_cover_every_mode_kind_disk_and_error() -> None:
    assert CorruptNemesis(None, modes=("stopped", "live")).plans == ["stopped:sstable", "stopped:commitlog", "live"]  # type: ignore[arg-type]
    assert CorruptNemesis(None, modes=("live",)).plans == ["live"]  # type: ignore[arg-type]
    assert DiskNemesis(None).plans == ["commitlog:ENOSPC", "commitlog:EIO", "data:ENOSPC", "data:EIO"]  # type: ignore[arg-type]


def test_policy_verdict_holds_each_policy_to_what_it_does() -> None:
    from nemesis.storage import policy_verdict

    stopped = {"commit_failure_policy": "stop", "write_failure": "commit log append failed: EIO"}
    serving = {"write_failure": None}
    # A broken disk a write met: stop stops writes, die exits, ignore carries on.
    assert policy_verdict("stop", "EIO", stopped, {"failed_calls": 3})["held"] is True
    assert policy_verdict("stop", "EIO", serving, {"failed_calls": 3})["held"] is False
    assert policy_verdict("die", "EIO", None, {"error": "ConnectionRefusedError"})["held"] is True
    assert policy_verdict("die", "EIO", serving, {"failed_calls": 3})["held"] is False
    assert policy_verdict("ignore", "EIO", serving, {"failed_calls": 3})["held"] is True
    assert policy_verdict("ignore", "EIO", stopped, {"failed_calls": 3})["held"] is False
    assert policy_verdict("ignore", "EIO", None, {"error": "x"})["held"] is False
    # A full disk refuses appends without the policy; an fsync it failed may invoke it.
    assert policy_verdict("stop", "ENOSPC", serving, {"failed_calls": 9})["held"] is True
    assert policy_verdict("stop", "ENOSPC", stopped, {"failed_calls": 9})["held"] is True
    assert policy_verdict("die", "ENOSPC", None, {"error": "x"})["held"] is True
    assert policy_verdict("die", "ENOSPC", serving, {"failed_calls": 9})["held"] is True


def test_the_policy_reaches_node_toml_and_not_the_simulator() -> None:
    from harness import datapaths
    from harness.run_options import RunOptions

    assert datapaths.node_storage(RunOptions(nemesis="disk", commit_failure_policy="die"))["commit_failure_policy"] == "die"
    assert "commit_failure_policy" not in datapaths.node_storage(RunOptions(nemesis="disk"))
    with pytest.raises(ValueError, match="--commit-failure-policy must be"):
        RunOptions(commit_failure_policy="panic").validate()
    with pytest.raises(ValueError, match="harness sim"):
        RunOptions(deploy="sim", commit_failure_policy="ignore").validate()


def test_a_node_a_die_policy_ended_is_an_expected_exit_only_while_its_commit_log_disk_fails() -> None:
    n = DiskNemesis(None)  # type: ignore[arg-type]
    n.failing, n.disk_of, n.policy_of = {"n1": "EIO", "n2": "EIO", "n3": "EIO"}, \
        {"n1": "commitlog", "n2": "commitlog", "n3": "data"}, {"n1": "die", "n2": "stop", "n3": "die"}
    assert n.expected_exits() == {"n1"}
    n.failing = {}
    assert n.expected_exits() == set()
