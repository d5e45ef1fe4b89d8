"""Synthetic histories from real sequential executions, for property tests and benchmarks.

Each client invokes an operation, the operation takes effect at one instant strictly between its
invocation and its completion (its linearization point), and the sequential model computes the
result at that instant. The history is therefore linearizable by construction; ``info``
operations either took effect at their point or never did, and a client whose operation ended
``info`` continues as a new process, as Jepsen's do. Write timestamps are the linearization
points in microseconds, so the last-write-wins and quorum checkers must find nothing either.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from harness.history import NEMESIS, Op


@dataclass(slots=True)
class _Planned:
    client: int
    process: int
    inv: int
    lp: int
    comp: int
    f: str
    key: Any
    value: Any
    outcome: str  # ok / fail / info
    applied: bool
    out: Any = None
    ts: int | None = None


def generate(
    model: str = "register",
    n_ops: int = 100,
    clients: int = 5,
    keys: int = 1,
    info_rate: float = 0.05,
    fail_rate: float = 0.02,
    seed: int = 0,
    nemesis_every: int = 0,
    cas: bool = True,
    deletes: float = 0.0,
) -> list[Op]:
    """A linearizable history of ``n_ops`` completed operations by ``clients`` concurrent clients.

    ``keys`` > 1 spreads operations over keys 0..keys-1 (``keys`` == 1 uses key None for the
    register, as Knossos' single-register histories do). ``nemesis_every`` > 0 inserts a
    start/stop-partition pair every that many operations. ``cas=False`` keeps the register
    to reads and writes. ``deletes`` > 0 turns that share of the register's writes into deletes
    (the register becomes nil; a read of nil carries no timestamp, as the store returns none).
    """
    rng = random.Random(seed)
    clock = [0] * clients
    procs = list(range(clients))
    next_proc = clients
    plans: list[_Planned] = []
    value_seq = 0
    for _ in range(n_ops):
        c = rng.randrange(clients)
        inv = clock[c] + rng.randrange(1, 2_000)
        # Mostly short operations with a tail of long ones, as a loaded cluster gives.
        dur = rng.randrange(50, 3_000) if rng.random() < 0.9 else rng.randrange(3_000, 40_000)
        comp = inv + dur
        lp = rng.randrange(inv + 1, comp)
        clock[c] = comp
        r = rng.random()
        key: Any = rng.randrange(keys) if keys > 1 else None
        value_seq += 1
        if model == "set":
            f, value = ("add", value_seq) if r < 0.75 else ("read", None)
        elif model == "kv":
            f, value = ("get", None) if r < 0.4 else ("put", value_seq) if r < 0.7 else ("append", value_seq)
        else:
            if r < 0.45:
                f, value = "read", None
            elif r < 0.85 or not cas:
                f, value = "write", value_seq
                if deletes and rng.random() < deletes:
                    f, value = "delete", None
            else:
                f, value = "cas", [rng.randrange(max(1, value_seq - 5), value_seq + 1), value_seq]
        x = rng.random()
        outcome = "info" if x < info_rate else "fail" if x < info_rate + fail_rate else "ok"
        applied = outcome == "ok" or (outcome == "info" and rng.random() < 0.5)
        plans.append(_Planned(c, procs[c], inv, lp, comp, f, key, value, outcome, applied))
        if outcome == "info":
            procs[c] = next_proc
            next_proc += 1
    # Execute the applied operations sequentially, in linearization-point order.
    state: dict[Any, Any] = {}
    stamp = 0
    for p in sorted(plans, key=lambda p: p.lp):
        if not p.applied:
            continue
        # Timestamps follow linearization order strictly: equal points would be a collision.
        stamp = max(stamp + 1, p.lp)
        cur = state.get(p.key)
        if p.f in ("read", "get"):
            p.out = sorted(cur or ()) if model == "set" else (list(cur) if isinstance(cur, tuple) else cur)
            ts = state.get(("ts", p.key))
            p.ts = ts
        elif p.f in ("write", "put"):
            state[p.key] = p.value
            state[("ts", p.key)] = p.ts = stamp
        elif p.f == "delete":
            state[p.key] = None
            p.ts = stamp
            state[("ts", p.key)] = None
        elif p.f == "append":
            state[p.key] = (cur if isinstance(cur, tuple) else () if cur is None else (cur,)) + (p.value,)
            state[("ts", p.key)] = p.ts = stamp
        elif p.f == "cas":
            if cur == p.value[0]:
                state[p.key] = p.value[1]
                state[("ts", p.key)] = p.ts = stamp
            elif p.outcome == "ok":
                p.outcome = "fail"  # the comparison failed: a real store answers fail
                p.applied = False
        elif p.f == "add":
            state[p.key] = (cur or frozenset()) | {p.value}
    events: list[tuple[int, int, Op]] = []
    for n, p in enumerate(plans):
        reads = p.f in ("read", "get")
        events.append((p.inv, 0, Op(0, p.inv, p.process, "invoke", p.f, p.key, None if reads else p.value)))
        out_value = p.out if (reads and p.outcome == "ok") else (None if reads else p.value)
        done = Op(0, p.comp, p.process, p.outcome, p.f, p.key, out_value)
        if p.outcome == "ok":
            done.timestamp = p.ts  # a write's own stamp, or the stamp of the value a read returned
        elif p.outcome == "info":
            done.error = "WriteTimeout" if not reads else "ReadTimeout"
        else:
            done.error = "Unavailable"
        events.append((p.comp, 1, done))
    if nemesis_every:
        end = max((p.comp for p in plans), default=0)
        step = max(1, end * nemesis_every // max(1, n_ops))
        t = step
        while t + step // 2 < end:
            events.append((t, 0, Op(0, t, NEMESIS, "info", "start-partition", None, "majority")))
            events.append((t + step // 2, 0, Op(0, t + step // 2, NEMESIS, "info", "stop-partition", None, None)))
            t += step
    events.sort(key=lambda e: (e[0], e[1]))
    ops = []
    for i, (_, _, op) in enumerate(events):
        op.index = i
        ops.append(op)
    return ops


class HistoryBuilder:
    """Hand-written histories in a few lines: ``b.invoke(0, "write", 1); b.ok(0)``.

    Times advance by one microsecond per event unless given, so the event order is the real-time
    order. A completion repeats its invocation's f and key; reads give their value at completion.
    """

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self._open: dict[Any, Op] = {}
        self._t = 0

    def _time(self, t: int | None) -> int:
        self._t = self._t + 1_000 if t is None else t
        return self._t

    def invoke(self, process: int, f: str, value: Any = None, key: Any = None, t: int | None = None,
               cl: str | None = None) -> HistoryBuilder:
        """An invocation by ``process``."""
        op = Op(len(self.ops), self._time(t), process, "invoke", f, key, value, cl=cl)
        self.ops.append(op)
        self._open[process] = op
        return self

    def complete(self, process: int, type: str, value: Any = ..., ts: int | None = None,
                 t: int | None = None, error: str | None = None) -> HistoryBuilder:
        """The completion of ``process``'s open invocation (value defaults to the invoked one)."""
        inv = self._open.pop(process)
        v = inv.value if value is ... else value
        self.ops.append(Op(len(self.ops), self._time(t), process, type, inv.f, inv.key, v, cl=inv.cl,
                           timestamp=ts, error=error))
        return self

    def ok(self, process: int, value: Any = ..., ts: int | None = None, t: int | None = None) -> HistoryBuilder:
        """An ``ok`` completion."""
        return self.complete(process, "ok", value, ts, t)

    def info(self, process: int, t: int | None = None) -> HistoryBuilder:
        """An ``info`` completion (indeterminate)."""
        return self.complete(process, "info", t=t, error="WriteTimeout")

    def fail(self, process: int, t: int | None = None) -> HistoryBuilder:
        """A ``fail`` completion (certainly did not happen)."""
        return self.complete(process, "fail", t=t, error="Unavailable")

    def nemesis(self, f: str, value: Any = None, t: int | None = None) -> HistoryBuilder:
        """A nemesis event (one ``info`` op, as a fault starts or stops)."""
        self.ops.append(Op(len(self.ops), self._time(t), NEMESIS, "info", f, None, value))
        return self
