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
