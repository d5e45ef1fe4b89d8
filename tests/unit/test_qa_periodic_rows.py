"""A periodic-mode crash that loses a row write is allowed for linearizability too, as for a register."""

from __future__ import annotations

import pytest

from checkers.compose import check_all
from harness.history import NEMESIS, Op

MS = 1_000_000  # history times are nanoseconds
PARAMS = {"model": "row", "replication_factor": 3, "read_cl": "QUORUM", "write_cl": "QUORUM",
          "commitlog_sync_period_ms": 10_000}


def _row_history() -> list[Op]:
    """Row 1's c1 written 1 then 2 (acknowledged at 500 ms); a crash at 3 s loses the second;
    a read at 20 s returns c1 = 1."""
    return [
        Op(0, 0, 0, "invoke", "write", 1, {"c1": 1}),
        Op(1, 100 * MS, 0, "ok", "write", 1, {"c1": 1}, timestamp=1),
        Op(2, 400 * MS, 0, "invoke", "write", 1, {"c1": 2}),
        Op(3, 500 * MS, 0, "ok", "write", 1, {"c1": 2}, timestamp=2),
        Op(4, 3_000 * MS, NEMESIS, "invoke", "start-crash", None, None),
        Op(5, 3_000 * MS + 1, NEMESIS, "info", "start-crash", None,
           {"nodes": ["n1", "n2", "n3"], "unsynced_bytes": {"n1": 40}, "lost_unsynced": True}, extra={"action": "crash"}),
        Op(6, 20_000 * MS, 1, "invoke", "read", 1, None),
        Op(7, 20_100 * MS, 1, "ok", "read", 1, {"c1": 1}, extra={"timestamps": {"c1": 1}}),
    ]


def test_a_row_write_lost_in_a_periodic_crash_is_allowed() -> None:
    """The lost cell write is periodic-not-linearizable, not an anomaly; the run stays valid."""
    res = check_all(_row_history(), {**PARAMS, "commitlog_sync": "periodic"})
    lin = res.results["linearizable"]
    assert lin.valid is True and lin.counts["periodic-not-linearizable"] == 1, lin.to_json()
    assert res.valid is True, {n: r.valid for n, r in res.results.items()}


@pytest.mark.parametrize("mode", ["batch", "group"])
def test_the_same_row_loss_is_an_anomaly_in_batch_and_group_mode(mode: str) -> None:
    """Modes that acknowledge only fsynced writes allow no loss."""
    res = check_all(_row_history(), {**PARAMS, "commitlog_sync": mode})
    assert res.results["linearizable"].valid is False
    assert res.valid is False
