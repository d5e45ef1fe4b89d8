"""Linearizability: the Wing-Gong-Lowe search with P-compositionality, as Porcupine does it.

The history is split per key (each key is an independent object), and each key's calls become
a doubly linked list of call and return entries in history order. The search repeatedly tries
to linearize the first pending call whose step is legal, lifting it (and its return) out of the
list; reaching a return entry means that operation could not be placed before it returned, so
the search backtracks. A cache of (linearized set, state) prunes configurations already seen.

Within a key, candidates are ordered (legal reads committed at once, then the call that returns
first, then the rest by return order, indeterminate calls last), and a register value that an
unlinearized read or compare-and-set still needs is never overwritten while nothing left can
write it again: that prunes the branches a stale read would otherwise make the search exhaust.

Searches of all keys are interleaved in slices of steps, so one hard key cannot hide an easy
key's Illegal verdict; a time budget and a bound on cached configurations give ``unknown``
instead of running forever or exhausting memory.

Linearized sets are ints: exact bitsets for keys with up to :data:`EXACT_BITSET_LIMIT` calls,
and beyond that a 128-bit Zobrist fingerprint (XOR of a random word per call) so that each
cache entry stays small and each step costs O(1) however long the key's history is. Two
different sets share a fingerprint with probability about ``cache_size**2 / 2**129``: below
1e-25 for the largest cache the memory bound allows.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from checkers.models import ILLEGAL, Call, Model, make_model
from checkers.result import Anomaly, Result
from harness.history import NEMESIS, HistoryError, Op

# Keys with at most this many calls use exact bitsets: 4096 bits is 512 bytes per cache entry,
# still cheap to hash; beyond it fingerprints keep entries at ~100 bytes (see module docstring).
EXACT_BITSET_LIMIT = 4096

# Default bound on cached configurations across all keys. Each entry costs ~150 bytes (a tuple,
# an int and a set slot) plus its state, so two million stay well under 1 GB.
DEFAULT_MAX_STATES = 2_000_000

# Steps given to every key in the first round: most keys of a Jepsen history are decided in a
# few hundred steps, so a small first slice decides them all before any hard key runs long.
FIRST_SLICE_STEPS = 2_000
# Slices double per round up to this, so the time check (once per slice) stays rare but the
# budget is still honoured within a fraction of a second.
MAX_SLICE_STEPS = 200_000

# How much of the longest linearizable prefix an invalid result keeps (the last operations
# before the failure are the ones that explain it).
PREFIX_KEEP = 100
# How many pending operations an invalid result explains individually.
CANDIDATES_KEEP = 12

RUNNING, LINEARIZABLE, ILLEGAL_HISTORY, OUT_OF_MEMORY = 0, 1, 2, 3

_NO_TOKEN: Any = object()  # a call that needs or produces no state token

_HEAD, _TAIL = 0, 1  # sentinel entries; call i is entry 2+2i and its return entry 3+2i


class _KeySearch:
    """A resumable WGL search over one key's calls."""

    __slots__ = ("key", "calls", "fns", "args", "outs", "zbits", "nxt", "prv", "cache", "entry",
                 "state", "h", "stack", "depth", "best", "best_depth", "status", "steps", "init", "phs", "skip",
                 "first", "rem", "cnt", "cpos", "rpos", "rule", "ntok", "ptok", "unproducible",
                 "need", "prod",
                 "phase", "todo")

    def __init__(self, key: Any, calls: list[Call], init: Any, model: Model | None = None) -> None:
        self.key = key
        self.calls = calls
        n = len(calls)
        # Overwrite pruning: how many unlinearized calls need each state, and how many could
        # still produce it (see Model.overwrite_rule).
        self.rule = model.overwrite_rule if model is not None else 0
        self.ntok = [_NO_TOKEN] * n
        self.ptok = [_NO_TOKEN] * n
        self.need: dict[Any, int] = {}
        self.prod: dict[Any, int] = {}
        if self.rule:
            assert model is not None
            for i, c in enumerate(calls):
                t = model.needs(c)
                if t is not None:
                    self.ntok[i] = t
                    self.need[t] = self.need.get(t, 0) + 1
                t = model.effect(c)
                if t is not None:
                    self.ptok[i] = t
                    self.prod[t] = self.prod.get(t, 0) + 1
        self.fns = [c.stepper for c in calls]
        self.args = [c.arg for c in calls]
        self.outs = [c.output for c in calls]
        # Search pass of each call: 2 reads (committed greedily), 1 determinate writes, 0 info.
        self.phs = [2 if c.kind == "read" else 1 if c.determinate else 0 for c in calls]
        self.todo = sum(1 for p in self.phs if p)  # info calls left over may all go at +infinity
        self.phase = 2
        self.skip = -1
        self.first = -1
        self.rem = 0
        self.cnt = 0
        self.cpos = [c.call_pos for c in calls]
        self.rpos = [c.ret_pos for c in calls]
        if n <= EXACT_BITSET_LIMIT:
            self.zbits = [1 << i for i in range(n)]
        else:
            rng = random.Random(n)  # deterministic: the same history always gives the same run
            self.zbits = [rng.getrandbits(128) | 1 for _ in range(n)]
        events: list[tuple[float, int]] = []
        for i, c in enumerate(calls):
            events.append((c.call_pos, 2 + 2 * i))
            events.append((c.ret_pos, 3 + 2 * i))
        events.sort()
        size = 2 + 2 * n
        self.nxt = [0] * size
        self.prv = [0] * size
        prev = _HEAD
        for _, e in events:
            self.nxt[prev] = e
            self.prv[e] = prev
            prev = e
        self.nxt[prev] = _TAIL
        self.prv[_TAIL] = prev
        self.cache: set[tuple[int, Any]] = set()
        self.entry = self.nxt[_HEAD]
        self.init = init
        self.state = init
        self.h = 0
        self.stack: tuple[Any, ...] | None = None  # cons list: (call entry, state before, h before, pass, skip, first, rem, rest)
        self.depth = 0
        self.best: tuple[Any, Any, int] | None = None
        self.best_depth = -1
        self.status = RUNNING if self.todo else LINEARIZABLE
        self.steps = 0
        # A call that needs a state no call produces (a read of a value nobody wrote) is refuted
        # before any search.
        self.unproducible: Any = _NO_TOKEN
        for i, t in enumerate(self.ntok):
            if t is not _NO_TOKEN and t != init and not self.prod.get(t) and (
                    self.rule == 1 or type(t) is not tuple):
                self.unproducible = t
                self.best = (None, init, 3 + 2 * i)
                self.best_depth = 0
                self.status = ILLEGAL_HISTORY
                break

    def run(self, budget: int, room: int) -> int:
        """Search for up to ``budget`` steps with at most ``room`` more cache entries; returns the status."""
        if self.status == ILLEGAL_HISTORY:
            return self.status
        nxt = self.nxt
        prv = self.prv
        fns = self.fns
        args = self.args
        outs = self.outs
        phs = self.phs
        cpos = self.cpos
        rpos = self.rpos
        zbits = self.zbits
        rule = self.rule
        ntok = self.ntok
        ptok = self.ptok
        need = self.need
        prod = self.prod
        cache = self.cache
        cache_add = cache.add
        entry = self.entry
        phase = self.phase
        skip = self.skip
        first = self.first
        rem = self.rem
        cnt = self.cnt
        state = self.state
        h = self.h
        stack = self.stack
        depth = self.depth
        todo = self.todo
        best_depth = self.best_depth
        size = len(cache)
        limit = size + room
        steps = 0
        status = RUNNING
        # Candidates at each configuration (the calls before the first return entry, `first`)
        # are tried in this order, each pass its own phase:
        # 2. reads that are legal now, committed without trying alternatives: a read changes no
        #    state and every call that had to precede it is already placed, so if it cannot go
        #    now the configuration fails whatever else is tried;
        # 3. the call whose return comes first (just-in-time linearization, as Lowe does): in a
        #    valid history it usually can go now, and that keeps every other write pending;
        # 4. when that call is a read that is illegal now: the calls after which it would be
        #    legal (the write of the value it returned, often an info one);
        # 1. the other determinate writes in the order of their returns, found by walking the
        #    return entries from `first` on: a long-running write is tried last, not first;
        # 0. indeterminate calls: one that never happened is best left at +infinity, so it is
        #    tried only when nothing else fits, and never where it would change nothing.
        while todo:
            if steps >= budget:
                break
            steps += 1
            if phase == 2:
                if not entry & 1:
                    p = phs[(entry - 2) >> 1]
                    if p != 2:
                        if p == 1:
                            cnt += 1
                        entry = nxt[entry]
                        continue
                    cand = entry
                else:
                    first = entry
                    skip = entry - 1
                    if phs[(skip - 2) >> 1] == 1:
                        phase = 3
                        rem = cnt - 1
                        cand = skip
                    else:
                        phase = 4
                        rem = cnt
                        entry = nxt[0]
                        continue
            elif phase == 1:
                if rem <= 0 or entry == 1:
                    phase = 0
                    entry = nxt[0]
                    continue
                if not entry & 1:
                    entry = nxt[entry]
                    continue
                cand = entry - 1
                i = (cand - 2) >> 1
                if phs[i] != 1 or cand == skip or cpos[i] > rpos[(first - 3) >> 1]:
                    entry = nxt[entry]
                    continue
                rem -= 1
            elif phase == 4:
                if entry & 1:
                    phase = 1
                    entry = first
                    continue
                if phs[(entry - 2) >> 1] == 2:
                    entry = nxt[entry]
                    continue
                cand = entry
            else:  # phase 0
                if not entry & 1:
                    if phs[(entry - 2) >> 1]:
                        entry = nxt[entry]
                        continue
                    cand = entry
                else:
                    # Nothing can be linearized before this return entry: backtrack.
                    if depth > best_depth or self.best is None:
                        self.best = (stack, state, entry)
                        best_depth = depth
                    if stack is None:
                        status = ILLEGAL_HISTORY
                        break
                    c, state, h, ph, skip, first, rem, stack = stack
                    depth -= 1
                    r = c + 1
                    nxt[prv[r]] = r
                    prv[nxt[r]] = r
                    nxt[prv[c]] = c
                    prv[nxt[c]] = c
                    if phs[(c - 2) >> 1]:
                        todo += 1
                    i = (c - 2) >> 1
                    t = ntok[i]
                    if t is not _NO_TOKEN:
                        need[t] += 1
                    t = ptok[i]
                    if t is not _NO_TOKEN:
                        prod[t] += 1
                    if ph == 2:
                        # A committed read failed: this whole configuration fails, backtrack again.
                        phase = 0
                        entry = r
                    elif ph == 3:
                        phase = 1
                        entry = first
                    elif ph == 1:
                        phase = 1
                        entry = nxt[r]
                    else:
                        phase = ph
                        entry = nxt[c]
                    continue
            # Try to linearize `cand` now.
            i = (cand - 2) >> 1
            ns = fns[i](state, args[i], outs[i])
            ok = ns is not ILLEGAL and (phs[i] or ns != state)
            if ok and rule and phs[i] != 2 and ns != state and (rule == 1 or type(state) is not tuple):
                # Overwriting `state` kills every unlinearized call that needs it if no
                # unlinearized call can produce it again: that branch cannot succeed.
                # (A cas that needs `state` itself is the one consuming it.)
                if need.get(state, 0) > (ntok[i] == state) and not prod.get(state):
                    ok = False
            if ok:
                x = (skip - 2) >> 1
                if phase != 4 or fns[x](ns, args[x], outs[x]) is not ILLEGAL:
                    nh = h ^ zbits[i]
                    k = (nh, ns)
                    if k not in cache:
                        if size >= limit:
                            status = OUT_OF_MEMORY
                            break
                        cache_add(k)
                        size += 1
                        stack = (cand, state, h, phase, skip, first, rem, stack)
                        depth += 1
                        if phs[i]:
                            todo -= 1
                        t = ntok[i]
                        if t is not _NO_TOKEN:
                            need[t] -= 1
                        t = ptok[i]
                        if t is not _NO_TOKEN:
                            prod[t] -= 1
                        state = ns
                        h = nh
                        # Lift the call and its return out of the list (dancing links).
                        p = prv[cand]
                        n = nxt[cand]
                        nxt[p] = n
                        prv[n] = p
                        r = cand + 1
                        p = prv[r]
                        n = nxt[r]
                        nxt[p] = n
                        prv[n] = p
                        entry = nxt[0]
                        phase = 2
                        cnt = 0
                        continue
            # `cand` cannot go here: next candidate of this pass.
            if phase == 3:
                phase = 1
                entry = first
            elif phase == 1:
                entry = nxt[cand + 1]
            else:
                entry = nxt[cand]
        else:
            status = LINEARIZABLE
        self.entry = entry
        self.phase = phase
        self.skip = skip
        self.first = first
        self.rem = rem
        self.cnt = cnt
        self.state = state
        self.h = h
        self.stack = stack
        self.depth = depth
        self.todo = todo
        self.best_depth = best_depth
        self.steps += steps
        self.status = status
        return status

    def release(self) -> None:
        """Drop the cache and the linked list once the key is decided."""
        self.cache = set()
        self.nxt = self.prv = []


@dataclass(slots=True)
class _Prepared:
    model: Model
    parts: dict[Any, list[Call]]
    counts: dict[str, int]


def prepare(history: Iterable[Op], model: Model) -> _Prepared:
    """Pair invocations with completions, turn them into calls and split them per key."""
    pending: dict[Any, tuple[Op, int]] = {}
    calls: list[Call] = []
    counts = {"ops": 0, "ok": 0, "info": 0, "fail": 0, "dropped": 0, "info_unobserved": 0, "nemesis": 0}
    pos = 0

    def add(inv: Op, inv_pos: int, comp: Op | None, comp_pos: float) -> None:
        call = model.prepare(inv, comp)
        if call is None:
            counts["dropped"] += 1
            return
        call.call_pos = inv_pos
        call.ret_pos = comp_pos if call.determinate else float("inf")
        calls.append(call)

    for op in history:
        pos += 1
        if op.process == NEMESIS:
            counts["nemesis"] += 1
            continue
        if op.type == "invoke":
            if op.process in pending:
                prev = pending[op.process][0]
                raise HistoryError(f"op {op.index}: process {op.process!r} invoked again before op {prev.index} completed")
            pending[op.process] = (op, pos)
            continue
        got = pending.pop(op.process, None)
        if got is None:
            raise HistoryError(f"op {op.index}: {op.type} from process {op.process!r} without an invocation")
        counts["ops"] += 1
        counts[op.type] += 1
        add(got[0], got[1], op, pos)
    for inv, inv_pos in pending.values():
        # Never completed (an interrupted run): indeterminate, like info.
        counts["ops"] += 1
        counts["info"] += 1
        add(inv, inv_pos, None, float("inf"))
    parts = model.partition(calls)
    for k, cs in parts.items():
        # How many calls observe each token. Info calls observe too (an info cas expecting v
        # needs a write of v before it), but a call's own observation does not count for it.
        seen: dict[Any, int] = {}
        for c in cs:
            for token in set(model.observed(c)):
                seen[token] = seen.get(token, 0) + 1
        kept = []
        for c in cs:
            if not c.determinate:
                token = model.effect(c)
                if token is not None and seen.get(token, 0) - (token in set(model.observed(c))) <= 0:
                    counts["info_unobserved"] += 1
                    continue
            kept.append(c)
        parts[k] = kept
    return _Prepared(model, parts, counts)


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Check a history for linearizability against ``params['model']`` (register, kv or set).

    Params: ``model``, ``time_limit`` (seconds, None for no limit), ``max_states`` (cached
    configurations across keys). Returns valid True, False (with the failing key explained) or
    "unknown" (budget exhausted).
    """
    params = params or {}
    model = make_model(params.get("model") or "register")
    started = time.monotonic()
    prep = prepare(history, model)
    return search(prep, params, started)


def search(prep: _Prepared, params: dict[str, Any], started: float | None = None) -> Result:
    """Run the interleaved per-key searches over prepared calls."""
    started = time.monotonic() if started is None else started
    time_limit = params.get("time_limit")
    max_states = int(params.get("max_states") or DEFAULT_MAX_STATES)
    model = prep.model
    init = model.init()
    active = [_KeySearch(k, sorted(cs, key=lambda c: c.call_pos), init, model) for k, cs in prep.parts.items()]
    keys_total = len(active)
    active.sort(key=lambda s: len(s.calls))  # smallest first: cheap verdicts come first
    decided = 0
    steps_total = 0
    failed: _KeySearch | None = None
    stop_reason = None
    budget = FIRST_SLICE_STEPS
    while active:
        still: list[_KeySearch] = []
        used = sum(len(s.cache) for s in active)
        for idx, s in enumerate(active):
            before = len(s.cache)
            st = s.run(budget, max_states - used)
            used += len(s.cache) - before
            if st == LINEARIZABLE:
                decided += 1
                steps_total += s.steps
                used -= len(s.cache)
                s.release()
            elif st == ILLEGAL_HISTORY:
                failed = s
                break
            elif st == OUT_OF_MEMORY:
                stop_reason = f"memory bound reached: {max_states} cached configurations (key {s.key!r})"
                still.append(s)
                break
            else:
                still.append(s)
            if time_limit is not None and time.monotonic() - started > time_limit:
                stop_reason = f"time limit of {time_limit} s reached"
                break
        else:
            active = still
            budget = min(budget * 2, MAX_SLICE_STEPS)
            continue
        # Stopped mid-round: the keys not run yet in this round stay undecided too.
        active = still + [s for s in active[idx + 1 :] if s.status != LINEARIZABLE]
        break
    elapsed = time.monotonic() - started
    undecided = [s for s in active if s.status != LINEARIZABLE]
    steps_total += sum(s.steps for s in undecided) + (failed.steps if failed else 0)
    counts = dict(prep.counts)
    counts.update(keys=keys_total, keys_linearizable=decided, steps=steps_total)
    details: dict[str, Any] = {"model": model.name, "elapsed_s": round(elapsed, 6)}
    if failed is not None:
        anomaly = explain(failed, model)
        counts["keys_undecided"] = len(undecided)
        details["undecided_keys"] = [s.key for s in undecided[:50]]
        return Result("linearizable", False, counts, [anomaly], details)
    if undecided:
        counts["keys_undecided"] = len(undecided)
        details["reason"] = stop_reason or "search stopped"
        details["undecided_keys"] = [s.key for s in undecided[:50]]
        return Result("linearizable", "unknown", counts, [], details)
    return Result("linearizable", True, counts, [], details)


def explain(s: _KeySearch, model: Model) -> Anomaly:
    """Describe a failed key: the op that cannot be linearized and the longest prefix before it."""
    assert s.best is not None
    stack, final_state, ret_entry = s.best
    blocked = s.calls[(ret_entry - 3) >> 1]
    order: list[tuple[int, Any]] = []
    node = stack
    while node is not None:
        c, before, _h, _phase, _skip, _first, _rem, node = node
        order.append(((c - 2) >> 1, before))
    order.reverse()
    linearized = {i for i, _ in order}
    steps: list[dict[str, Any]] = []
    for j, (i, before) in enumerate(order):
        after = order[j + 1][1] if j + 1 < len(order) else final_state
        steps.append({"op": _op_ref(s.calls[i]), "describe": model.describe_op(s.calls[i]),
                      "state_before": model.describe_state(before), "state_after": model.describe_state(after)})
    kept = steps[-PREFIX_KEEP:]
    # Unlinearized calls that can only run in the current state, which nothing left can produce
    # again: overwriting the state would strand them (the search's overwrite rule).
    needers: list[Call] = []
    if s.rule and (s.rule == 1 or type(final_state) is not tuple):
        producible = any(s.ptok[i] == final_state for i in range(len(s.calls)) if i not in linearized)
        if not producible:
            needers = [c for i, c in enumerate(s.calls) if i not in linearized and s.ntok[i] == final_state]
    # The operations that were pending when the blocked one had to return: none could go next.
    candidates = []
    for i, c in enumerate(s.calls):
        if i in linearized or c.call_pos > blocked.ret_pos:
            continue
        ns = c.stepper(final_state, c.arg, c.output)
        if ns is ILLEGAL:
            why = "illegal in this state"
        elif ns != final_state and [n for n in needers if n is not c]:
            n = next(n for n in needers if n is not c)
            why = (f"would overwrite {model.describe_state(final_state)}, which {model.describe_op(n)} "
                   f"(op {n.invoke.index}) still needs and nothing left can write again")
        else:
            why = f"legal (→ {model.describe_state(ns)}) but every continuation from there fails"
        candidates.append({"op": _op_ref(c), "describe": model.describe_op(c), "why": why})
    state_s = model.describe_state(final_state)
    inv = blocked.invoke
    ret_index = blocked.completion.index if blocked.completion else inv.index
    explanation = (
        f"key {s.key!r}: {model.describe_op(blocked)} (op {inv.index}, process {inv.process}) cannot be "
        f"linearized. The longest linearizable prefix has {len(order)} operations and leaves the "
        f"state {state_s}; from there no pending operation can be linearized before op {ret_index} returned"
    )
    stranded = [n for n in needers if n is not blocked]
    if s.unproducible is not _NO_TOKEN:
        explanation = (
            f"key {s.key!r}: {model.describe_op(blocked)} (op {inv.index}, process {inv.process}) cannot be "
            f"linearized: it needs the state {model.describe_state(s.unproducible)}, which is not the initial "
            f"state and which no operation on this key could have produced."
        )
    elif stranded and blocked.stepper(final_state, blocked.arg, blocked.output) is not ILLEGAL:
        n = stranded[0]
        explanation += (
            f": placing it would overwrite {state_s}, which {model.describe_op(n)} (op {n.invoke.index}, "
            f"process {n.invoke.process}) must still see and no remaining operation can write again."
        )
    else:
        explanation += "."
    # The proof: the blocked operation, what it would strand, then the last operations before it.
    ops: list[Op] = [inv] + ([blocked.completion] if blocked.completion is not None else [])
    for n in stranded[:3]:
        ops.append(n.invoke)
        if n.completion is not None:
            ops.append(n.completion)
    for i, _ in order[-5:]:
        c = s.calls[i]
        ops.append(c.invoke)
        if c.completion is not None:
            ops.append(c.completion)
    return Anomaly(
        "not-linearizable",
        explanation,
        ops,
        key=s.key,
        details={
            "op": _op_ref(blocked),
            "describe": model.describe_op(blocked),
            "state": state_s,
            "initial_state": model.describe_state(s.init),
            "prefix_length": len(order),
            "prefix": kept,
            "prefix_truncated": len(steps) - len(kept),
            "pending": candidates[:CANDIDATES_KEEP],
            "stranded": [_op_ref(n) for n in stranded[:CANDIDATES_KEEP]],
            "pending_total": len(candidates),
        },
    )


def _op_ref(c: Call) -> dict[str, Any]:
    inv, comp = c.invoke, c.completion
    return {
        "invoke_index": inv.index,
        "complete_index": comp.index if comp is not None else None,
        "process": inv.process,
        "f": inv.f,
        "key": inv.key,
        "value": inv.value if c.kind != "read" else (comp.value if comp is not None else None),
        "type": comp.type if comp is not None else "info",
        "invoke_time": inv.time,
        "complete_time": comp.time if comp is not None else None,
    }
