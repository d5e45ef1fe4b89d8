"""Stateful property test: the engine against an in-memory model, through writes, deletes, TTLs,
flushes, compactions, restarts and the passing of time; every read must agree."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from node.storage import Cell, Mutation, RangeTombstone, StorageConfig, StorageEngine, TableOptions

from storage_model import ManualClock, TableModel

KEYS = [b"a", b"b", b"zz"]
NAMES = ["x", "y", "s:1", "s:2", "t:1"]
PREFIXES = ["s:", "t:"]
GRACE = 5
VALUES = st.binary(min_size=0, max_size=3)


def _token(key: bytes) -> int:
    """A sort key that does not follow byte order, like a partitioner token."""
    return (sum(key) * 7919) % 101


class EngineVsModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="storage-model-"))
        self.clock = ManualClock()
        self.engine = self._open()
        self.engine.create_table("ks", "t", TableOptions(
            gc_grace_seconds=GRACE, compaction_min_threshold=2, compaction_max_threshold=2))
        self.model = TableModel()
        self.min_ts = 1000
        self.max_ts = 1000

    def _open(self) -> StorageEngine:
        cfg = StorageConfig(memtable_flush_threshold_mb=1, commitlog_segment_size_mb=1)
        engine = StorageEngine(self.dir, cfg, self.clock, sort_key=_token)
        engine.open()
        return engine

    def now(self) -> int:
        return self.clock.wall_us() // 1_000_000

    def _ts(self, delta: int) -> int:
        ts = self.min_ts + delta
        self.max_ts = max(self.max_ts, ts)
        return ts

    @rule(key=st.sampled_from(KEYS), name=st.sampled_from(NAMES), value=VALUES, delta=st.integers(0, 4),
          ttl=st.one_of(st.none(), st.sampled_from([1, 5, 100])))
    def write(self, key: bytes, name: str, value: bytes, delta: int, ttl: int | None) -> None:
        ts = self._ts(delta)
        self.engine.apply("ks", "t", Mutation(key, [Cell(name, value, ts, ttl)]))
        self.model.write(key, name, value, ts, ttl, self.now())

    @rule(key=st.sampled_from(KEYS), names=st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True),
          value=VALUES, delta=st.integers(0, 4))
    def batch_write(self, key: bytes, names: list[str], value: bytes, delta: int) -> None:
        ts = self._ts(delta)
        self.engine.apply("ks", "t", Mutation(key, [Cell(n, value + n.encode(), ts) for n in names]))
        for n in names:
            self.model.write(key, n, value + n.encode(), ts, None, self.now())

    @rule(key=st.sampled_from(KEYS), name=st.sampled_from(NAMES), delta=st.integers(0, 4))
    def delete_column(self, key: bytes, name: str, delta: int) -> None:
        ts = self._ts(delta)
        self.engine.apply("ks", "t", Mutation(key, [Cell(name, None, ts)]))
        self.model.write(key, name, None, ts, None, self.now())

    @rule(key=st.sampled_from(KEYS), delta=st.integers(0, 4))
    def delete_row(self, key: bytes, delta: int) -> None:
        ts = self._ts(delta)
        self.engine.apply("ks", "t", Mutation(key, partition_tombstone=ts))
        self.model.delete_row(key, ts)

    @rule(key=st.sampled_from(KEYS), prefix=st.sampled_from(PREFIXES), delta=st.integers(0, 4))
    def delete_super_column(self, key: bytes, prefix: str, delta: int) -> None:
        ts = self._ts(delta)
        self.engine.apply("ks", "t", Mutation(key, range_tombstones=[RangeTombstone(prefix, ts)]))
        self.model.delete_prefix(key, prefix, ts)

    @rule(seconds=st.sampled_from([1, 3, 30, 70]))
    def advance_time(self, seconds: int) -> None:
        # Later writes get newer timestamps than anything a purgeable tombstone could shadow
        # (a write older than a purged tombstone legitimately resurrects: that is gc_grace's contract).
        self.clock.advance(seconds)
        self.min_ts = self.max_ts + 1

    @rule()
    def flush(self) -> None:
        self.engine.flush()

    @rule(major=st.booleans())
    def compact(self, major: bool) -> None:
        # No flush first, and at most two SSTables per minor compaction: data outside the
        # compaction (memtable, other SSTables) must keep shadowing tombstones from being purged.
        self.engine.compact("ks", "t", major=major)

    @rule()
    def restart(self) -> None:
        self.engine.close()
        self.engine = self._open()

    @precondition(lambda self: True)
    @invariant()
    def reads_agree(self) -> None:
        now = self.now()
        for key in KEYS:
            p = self.engine.read("ks", "t", key, now_s=now)
            got = {} if p is None else {n: c.value for n, c in p.live_cells(now).items()}
            assert got == self.model.live(key, now), key
            one = self.engine.read("ks", "t", key, columns=["x", "s:"], now_s=now)
            got_one = {} if one is None else {n: c.value for n, c in one.live_cells(now).items()}
            want_one = {n: v for n, v in self.model.live(key, now).items() if n == "x" or n.startswith("s:")}
            assert got_one == want_one, key
            named = self.engine.read("ks", "t", key, columns=["x", "y"], now_s=now)
            got_named = {} if named is None else {n: c.value for n, c in named.live_cells(now).items()}
            assert got_named == {n: v for n, v in self.model.live(key, now).items() if n in ("x", "y")}, key

    @invariant()
    def scan_agrees(self) -> None:
        now = self.now()
        parts = list(self.engine.scan("ks", "t"))
        order = [(_token(p.key), p.key) for p in parts]
        assert order == sorted(order)
        got = {p.key: {n: c.value for n, c in p.live_cells(now).items()} for p in parts}
        want = {k: self.model.live(k, now) for k in KEYS}
        assert {k: v for k, v in got.items() if v} == {k: v for k, v in want.items() if v}

    def teardown(self) -> None:
        self.engine.close()
        shutil.rmtree(self.dir, ignore_errors=True)


EngineVsModel.TestCase.settings = settings(
    max_examples=60, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineVsModel = EngineVsModel.TestCase
