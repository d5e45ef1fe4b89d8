"""Without blocking read repair the final reads wrote nothing back: their pass is judged as the before pass."""

from __future__ import annotations

from typing import Any

from checkers import convergence
from tests.unit.test_check_convergence import SET, H, header, replica, set_cells


def _check(read_repair: str, hinted: list[str]) -> Any:
    h = H()
    h.add(7, 1, 101)
    h.add(7, 2, 102)
    hints = {"hints_held": {"before": {}, "after": {}, "targets": hinted, "unknown": []}}
    recs = [header("before", SET, read_repair=read_repair, **hints),
            *(replica("before", 7, n, set_cells(1, 2)) for n in ("n1", "n2")), replica("before", 7, "n3", set_cells(1)),
            # The final reads at ALL came and went; n3 still lacks element 2 right after them.
            header("read-repair", SET, read_repair=read_repair, **hints),
            *(replica("read-repair", 7, n, set_cells(1, 2)) for n in ("n1", "n2")),
            replica("read-repair", 7, "n3", set_cells(1)),
            # Its hint arrived before the last pass.
            header("after", SET, read_repair=read_repair),
            *(replica("after", 7, n, set_cells(1, 2)) for n in ("n1", "n2", "n3"))]
    return convergence.check(h.ops, {"model": "set", "replica_snapshots": recs})


def test_a_hint_on_its_way_explains_a_replica_the_final_reads_did_not_repair() -> None:
    r = _check("NONE", hinted=["n3"])
    assert r.valid is True, r.anomalies
    assert r.counts["read-repair_missing"] == 1 and r.counts["read-repair_lost_on_replica"] == 0


def test_without_a_hint_it_is_a_lost_write_and_with_blocking_read_repair_a_divergence() -> None:
    r = _check("NONE", hinted=[])
    assert r.valid is False
    assert {a.kind for a in r.anomalies} == {"replica-lost-write"}
    r = _check("BLOCKING", hinted=["n3"])
    assert r.valid is False
    assert [(a.kind, a.details["node"]) for a in r.anomalies] == [("diverged-after-repair", "n3")]
