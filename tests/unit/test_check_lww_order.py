"""checkers/lww_order.py on hand-made client-stamped histories: which version must win, ties included."""

from __future__ import annotations

from typing import Any

from checkers import lww_order
from checkers.compose import default_checkers
from harness.history import Op
from harness.workloads.register import CLIENT_TS_BUCKET_US, client_timestamp

PARAMS = {"replication_factor": 3, "read_cl": "QUORUM", "write_cl": "QUORUM"}


class H:
    """Sequential client operations, each completed before the next is invoked."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.t = 0

    def _op(self, type_: str, f: str, key: Any, value: Any, **kw: Any) -> None:
        self.t += 10
        self.ops.append(Op(len(self.ops), self.t, 0, type_, f, key, value, node="n1", cl=kw.pop("cl", "QUORUM"), **kw))

    def write(self, key: Any, value: Any, ts: int, cl: str = "QUORUM") -> None:
        self._op("invoke", "write", key, value, cl=cl)
        self._op("ok", "write", key, value, timestamp=ts, cl=cl)

    def delete(self, key: Any, ts: int | None, result: str = "ok") -> None:
        self._op("invoke", "delete", key, None)
        self._op(result, "delete", key, None, timestamp=ts)

    def read(self, key: Any, value: Any, ts: int | None, cl: str = "QUORUM") -> None:
        self._op("invoke", "read", key, None, cl=cl)
        self._op("ok", "read", key, value, timestamp=ts, cl=cl)


def check(h: H) -> Any:
    return lww_order.check(h.ops, PARAMS)


def test_the_greater_value_wins_a_tie_and_the_greater_timestamp_wins_within_a_millisecond() -> None:
    h = H()
    h.write(1, 9, 5000)
    h.write(1, 5, 5000)   # ties, loses to 9 (the greater value)
    h.read(1, 9, 5000)
    h.write(1, 3, 5001)   # a microsecond later: wins although smaller
    h.write(1, 7, 5000)   # an earlier timestamp written later: lost, as LWW says
    h.read(1, 3, 5001)
    r = check(h)
    assert r.valid is True, r.anomalies
    assert r.counts["ties"] == 2  # 9/5 and 9/7 share 5000


def test_a_reversed_tie_break_is_a_stale_version() -> None:
    h = H()
    h.write(1, 5, 5000)
    h.write(1, 9, 5000)
    h.read(1, 5, 5000)  # the smaller value won the tie
    r = check(h)
    assert r.valid is False and r.counts["stale-version"] == 1
    assert "tie-break" in r.anomalies[0].explanation


def test_the_value_deciding_within_a_millisecond_is_a_stale_version() -> None:
    h = H()
    h.write(1, 5, 5002)
    h.write(1, 9, 5001)
    h.read(1, 9, 5001)  # a millisecond-precision reconcile let the greater value win
    r = check(h)
    assert r.valid is False
    assert "smaller timestamp" in r.anomalies[0].explanation


def test_a_tombstone_beats_a_live_cell_of_equal_timestamp() -> None:
    h = H()
    h.write(1, 5, 5000)
    h.delete(1, 5000)
    h.read(1, None, None)
    assert check(h).valid is True
    bad = H()
    bad.write(1, 5, 5000)
    bad.delete(1, 5000)
    bad.read(1, 5, 5000)  # the live cell won
    assert check(bad).valid is False
    # A nil read that no delete could explain misses a write.
    lost = H()
    lost.write(1, 5, 5000)
    lost.read(1, None, None)
    assert check(lost).counts["stale-version"] == 1
    # An indeterminate delete may be the tombstone a nil read saw.
    unsure = H()
    unsure.write(1, 5, 5000)
    unsure.delete(1, None, result="info")
    unsure.read(1, None, None)
    assert check(unsure).valid is True


def test_levels_that_do_not_overlap_count_stale_versions_as_expected() -> None:
    h = H()
    h.write(1, 5, 5000, cl="ONE")
    h.write(1, 9, 5001, cl="ONE")
    h.read(1, 5, 5000, cl="ONE")
    r = check(h)
    assert r.valid is True and r.counts["expected-stale-version"] == 1


def test_a_read_with_another_timestamp_than_its_write_is_flagged() -> None:
    h = H()
    h.write(1, 5, 5000)
    h.read(1, 5, 5003)
    r = check(h)
    assert r.valid is False and r.counts["wrong-timestamp"] == 1


def test_client_timestamps_replace_the_real_time_checkers() -> None:
    names = default_checkers({"model": "register", "replication_factor": 3, "client_timestamps": True})
    assert "lww-order" in names and not {"linearizable", "lww", "quorum"} & set(names)
    assert "lww-order" not in default_checkers({"model": "register", "replication_factor": 3})


def test_the_coarse_client_clock() -> None:
    assert client_timestamp(3.9999, 2) == 3 * CLIENT_TS_BUCKET_US + 2
    assert client_timestamp(4.0, 0) == 4 * CLIENT_TS_BUCKET_US
