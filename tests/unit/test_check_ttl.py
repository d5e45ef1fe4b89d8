"""checkers/ttl.py on hand-made histories of expiring writes, and the ttl workload's ops.

The cluster's clock is the history's plus whole seconds (OFF_NS), and each write is stamped 100 µs
after its invocation, so a write invoked at 0.5 s with a TTL of 2 s expires at exactly 2.0 s.
"""

from __future__ import annotations

import random
from typing import Any

from checkers import ttl
from checkers.compose import default_checkers
from harness.history import NEMESIS, Op
from harness.workloads import WorkloadSettings, make_workload
from harness.workloads.ttl import READ_FRACTION, TTLS_S, TtlWorkload

S = 1_000_000_000
OFF_NS = 1_700_000_000 * S


class _H:
    """A history under construction: each call adds an invocation and its completion."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.proc = 0

    def _add(self, f: str, key: Any, inv_s: float, comp_s: float | None, t: str, value: Any,
             extra: dict[str, Any] | None = None, ts: int | None = None, inv_value: Any = None) -> None:
        self.proc += 1
        inv = int(inv_s * S)
        self.ops.append(Op(len(self.ops), inv, self.proc, "invoke", f, key, inv_value))
        if comp_s is not None:
            self.ops.append(Op(len(self.ops), int(comp_s * S), self.proc, t, f, key, value, None, None, ts, None,
                               extra or {}))

    def write(self, key: Any, value: int | None, inv_s: float, ttl_s: int | None = None, t: str = "ok",
              dur_s: float = 0.002) -> None:
        ts = (int(inv_s * S) + OFF_NS + 100_000) // 1000 if t == "ok" else None
        f = "write" if value is not None else "delete"
        self._add(f, key, inv_s, inv_s + dur_s if t != "pending" else None, t, value,
                  {"ttl": ttl_s} if ttl_s is not None and t == "ok" else {}, ts, value)

    def read(self, key: Any, got: Any, inv_s: float, dur_s: float = 0.002) -> None:
        self._add("read", key, inv_s, inv_s + dur_s, "ok", got)


def _kinds(h: _H, **params: Any) -> dict[str, int]:
    r = ttl.check(h.ops, params)
    assert r.valid in (True, False), r.details
    return {k: v for k, v in r.counts.items() if k in ttl.KINDS and v}


def test_values_visible_while_they_live_and_gone_after() -> None:
    h = _H()
    h.write("k", 1, 0.5, ttl_s=2)        # expires at 2.0 s
    h.read("k", 1, 1.0)
    h.read("k", 1, 1.99)                 # inside the slack: either answer
    h.read("k", None, 1.999)
    h.read("k", None, 2.5)
    h.write("j", 7, 0.1)                 # no TTL: lives for ever
    h.read("j", 7, 9.0)
    h.write("d", 3, 0.1, ttl_s=5)
    h.write("d", None, 0.2)              # a delete
    h.read("d", None, 1.0)
    r = ttl.check(h.ops, {})
    assert r.valid is True and r.counts["judged_reads"] == 6 and r.counts["expiring_writes"] == 2
    lo, hi = r.details["clock_offset_ns"]
    assert lo <= OFF_NS + 100_000 <= hi and hi - lo < 3_000_000


def test_a_value_read_after_its_expiry() -> None:
    h = _H()
    h.write("k", 1, 0.5, ttl_s=2)
    h.read("k", 1, 2.01)                 # a second-late expiry (now <= ldt) shows here
    assert _kinds(h) == {"read-after-expiry": 1}


def test_a_value_gone_before_its_expiry() -> None:
    h = _H()
    h.write("k", 1, 0.5, ttl_s=2)
    h.read("k", None, 1.5)
    assert _kinds(h) == {"expired-early": 1}


def test_an_expired_cell_must_still_shadow_what_it_overwrote() -> None:
    h = _H()
    h.write("k", 1, 0.1)                 # no TTL
    h.write("k", 2, 0.5, ttl_s=1)        # expires at 1.0 s
    h.read("k", None, 1.5)
    h.read("k", 1, 1.6)                  # the older value back: the expired cell was dropped, not tombstoned
    assert _kinds(h) == {"stale-read": 1}


def test_stale_and_resurrected_values_while_the_last_write_lives() -> None:
    h = _H()
    h.write("k", 1, 0.1, ttl_s=3)
    h.write("k", 2, 0.5, ttl_s=3)
    h.read("k", 1, 1.0)                  # older value
    h.write("d", 5, 0.1)
    h.write("d", None, 0.5)
    h.read("d", 5, 1.0)                  # a deleted value
    assert _kinds(h) == {"stale-read": 2}


def test_a_write_that_may_still_happen_leaves_the_read_unjudged() -> None:
    for t in ("info", "pending"):
        h = _H()
        h.write("k", 1, 0.1, ttl_s=3)
        h.write("k", 2, 0.6, ttl_s=1, t=t)  # may apply at any time, with an expiry nobody knows
        h.read("k", None, 1.5)
        h.read("k", 2, 1.6)
        r = ttl.check(h.ops, {})
        assert r.valid is True and r.counts["judged_reads"] == 0, t
    # A failed write did not happen: the read is judged against the write before it.
    h = _H()
    h.write("k", 1, 0.1, ttl_s=3)
    h.write("k", 2, 0.6, t="fail")
    h.read("k", None, 1.5)
    assert _kinds(h) == {"expired-early": 1}
    # Writes overlapping the read, or each other, leave it open too.
    h = _H()
    h.write("k", 1, 0.1, ttl_s=3)
    h.write("k", 2, 1.499, ttl_s=3)
    h.read("k", 1, 1.5)
    assert ttl.check(h.ops, {}).counts["judged_reads"] == 0


def test_clocks_that_do_not_map_make_the_verdict_unknown() -> None:
    h = _H()
    h.write("k", 1, 0.5, ttl_s=2)
    h.read("k", 1, 2.5)
    assert ttl.check(h.ops, {"client_timestamps": True}).valid == "unknown"
    assert ttl.check(h.ops, {"nemeses": ["clock"]}).valid == "unknown"
    skewed = [*h.ops, Op(len(h.ops), 3 * S, NEMESIS, "info", "start-clock", None, None)]
    assert ttl.check(skewed, {}).valid == "unknown"
    h.write("j", 1, 1.0)
    h.ops[-1].timestamp = (h.ops[-1].timestamp or 0) + 50_000  # 50 ms ahead of the other node
    r = ttl.check(h.ops, {})
    assert r.valid == "unknown" and "skewed" in r.details["reason"]


def test_the_ttl_model_gets_the_ttl_checker_not_linearizability() -> None:
    names = default_checkers({"model": "ttl", "replication_factor": 3})
    assert "ttl" in names and "linearizable" not in names and "lww" not in names


def test_the_workload_writes_ttls_and_mostly_reads() -> None:
    w = make_workload("ttl", WorkloadSettings(key_count=20, read_cl="QUORUM", write_cl="QUORUM"))
    assert isinstance(w, TtlWorkload) and w.model == "ttl"
    rng = random.Random(3)
    ops = [w.next_op(rng) for _ in range(2000)]
    reads = sum(op.f == "read" for op in ops)
    assert abs(reads / len(ops) - READ_FRACTION) < 0.03
    values = [op.value for op in ops if op.f == "write"]
    assert {w.ttl_of(v) for v in values} == set(TTLS_S)
    assert len(set(values)) == len(values) or all(  # unique per key
        sum(1 for o in ops if o.f == "write" and o.key == k and o.value == v) == 1
        for k, v in {(o.key, o.value) for o in ops if o.f == "write"})
