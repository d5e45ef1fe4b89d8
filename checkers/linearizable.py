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

import bisect
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from checkers.models import ILLEGAL, PURE_KINDS, Call, Model, SetModel, make_model, model_options
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

# The explanation re-checks prefixes of a failed key to find the operation that makes it fail
# (see _culprit); together those searches may take this many times the failed search's steps,
# or this many steps per call of the key (a linearizable prefix takes a few steps per call), with
# a floor so that small keys always get an exact answer. Past it, the explanation falls back to
# the failed search's deepest dead end.
CULPRIT_STEP_FACTOR = 8
CULPRIT_CALL_FACTOR = 20
CULPRIT_MIN_STEPS = 200_000

RUNNING, LINEARIZABLE, ILLEGAL_HISTORY, OUT_OF_MEMORY = 0, 1, 2, 3

_NO_TOKEN: Any = object()  # a call that needs or produces no state token

_HEAD, _TAIL = 0, 1  # sentinel entries; call i is entry 2+2i and its return entry 3+2i


class _KeySearch:
    """A resumable WGL search over one key's calls."""

    __slots__ = ("key", "calls", "fns", "args", "outs", "zbits", "nxt", "prv", "cache", "entry",
                 "state", "h", "stack", "depth", "best", "best_depth", "status", "steps", "init", "phs", "skip",
                 "first", "rem", "cnt", "cpos", "rpos", "rule", "ntok", "ptok", "unproducible",
                 "need", "prod", "twin", "done",
                 "phase", "todo")

    def __init__(self, key: Any, calls: list[Call], init: Any, model: Model | None = None,
                 refute_stale: bool = False) -> None:
        self.key = key
        self.calls = calls
        n = len(calls)
        # Overwrite pruning: how many unlinearized calls need each state, and how many could
        # still produce it (see Model.overwrite_rule).
        self.rule = model.overwrite_rule if model is not None and model.tokens_exact(calls) else 0
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
        self.phs = [2 if c.kind in PURE_KINDS else 1 if c.determinate else 0 for c in calls]
        self.todo = sum(1 for p in self.phs if p)  # info calls left over may all go at +infinity
        # Info calls with the same operation and arguments are interchangeable: both return at
        # +infinity, so the one invoked first can stand in for the later one in any
        # linearization. Trying them only in invocation order (`twin`: the previous such call,
        # which must be linearized first) keeps the search from exploring every choice among
        # them: a Jepsen register history's timed-out writes of 0-4 are a handful of values.
        self.twin = [-1] * n
        self.done = [False] * n
        last: dict[tuple[Any, str, str], int] = {}
        for i in sorted(range(n), key=lambda j: calls[j].call_pos):
            c = calls[i]
            if not self.phs[i]:
                sig = (c.stepper, repr(c.arg), repr(c.output))
                self.twin[i] = last.get(sig, -1)
                last[sig] = i
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
        if refute_stale and self.status == RUNNING:
            # The explanation's prefix searches only: a call that is stale on its face refutes
            # the cut at once (the checker's own search does without this pass, which would cost
            # every valid history a few percent).
            c = _stale_on_its_face(self)
            if c is not None:
                self.best = (None, init, 3 + 2 * next(i for i, x in enumerate(calls) if x is c))
                self.best_depth = 0
                self.status = ILLEGAL_HISTORY

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
        twin = self.twin
        done = self.done
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
                    done[i] = False
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
            if not phs[i] and twin[i] >= 0 and not done[twin[i]]:
                ns = ILLEGAL  # its earlier twin goes first (see __init__)
            else:
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
                        done[i] = True
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


def pairs(history: Iterable[Op], counts: dict[str, int]) -> Iterator[tuple[Op, int, Op | None, float]]:
    """Each client operation as (invocation, its position, completion or None, its position or
    inf) in completion order, never-completed ones last; counts ops, their types and nemesis
    entries; HistoryError for an invocation over an open one or a completion without one."""
    pending: dict[Any, tuple[Op, int]] = {}
    pos = 0
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
        counts[op.type] = counts.get(op.type, 0) + 1
        yield got[0], got[1], op, pos
    for inv, inv_pos in pending.values():
        # Never completed (an interrupted run): indeterminate, like info.
        counts["ops"] += 1
        counts["info"] += 1
        yield inv, inv_pos, None, float("inf")


def prepare(history: Iterable[Op], model: Model) -> _Prepared:
    """Pair invocations with completions, turn them into calls and split them per key."""
    calls: list[Call] = []
    counts = {"ops": 0, "ok": 0, "info": 0, "fail": 0, "dropped": 0, "info_unobserved": 0, "nemesis": 0}
    for inv, inv_pos, comp, comp_pos in pairs(history, counts):
        call = model.prepare(inv, comp)
        if call is None:
            counts["dropped"] += 1
            continue
        call.call_pos = inv_pos
        call.ret_pos = comp_pos if call.determinate else float("inf")
        calls.append(call)
    parts = model.partition(calls)
    for k, cs in parts.items():
        kept = _drop_unobserved(cs, model)
        counts["info_unobserved"] += len(cs) - len(kept)
        parts[k] = kept
    return _Prepared(model, parts, counts)


def _drop_unobserved(cs: list[Call], model: Model) -> list[Call]:
    """The calls without the info ones whose effect no other call observes (see Model.effect)."""
    if not model.tokens_exact(cs):
        return cs  # no token says which calls could show an info call's effect: keep them all
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
                continue
        kept.append(c)
    return kept


def check(history: Iterable[Op], params: dict[str, Any] | None = None) -> Result:
    """Check a history for linearizability against ``params['model']`` (register, kv or set).

    A set history is judged per element (checkers/set_elements.py) unless ``atomic_reads`` asks
    for whole-set snapshots. Params: ``model``, ``time_limit`` (seconds, None for no limit), ``max_states`` (cached
    configurations across keys). Returns valid True, False (with the failing key explained) or
    "unknown" (budget exhausted).
    """
    params = params or {}
    name = params.get("model") or "register"
    try:
        model = make_model(name, **model_options(params, name))
    except ValueError as e:
        raise HistoryError(str(e)) from None
    if isinstance(model, SetModel) and not model.atomic_reads:
        # A set is one object per element unless its reads are promised to be snapshots.
        from checkers import set_elements

        return set_elements.check(history, params)
    started = time.monotonic()
    skipped: set[Any] = set()
    if model.name in ("register", "kv"):
        history, skipped = _without_clock_inverted_keys(history)
    prep = prepare(history, model)
    result = search(prep, params, started)
    if skipped:
        # Under clock faults LWW orders writes by skewed timestamps, not real time: a key where a
        # later write got the smaller timestamp is not linearizable by design; the lww checker
        # judges it in timestamp order instead.
        result.counts["skipped_keys_clock_inversion"] = len(skipped)
        result.details["skipped"] = (f"{len(skipped)} keys with timestamp inversions from clock faults are "
                                     "judged by the lww checker in timestamp order, not here")
    return result


def _without_clock_inverted_keys(history: Iterable[Op]) -> tuple[Iterable[Op], set[Any]]:
    """The history without the keys clock faults inverted (none unless the run had clock faults)."""
    from checkers.lww import _hashable, clock_inverted_keys

    ops = history if isinstance(history, list) else list(history)
    if not any(o.process == NEMESIS and o.f in ("start-clock", "stop-clock") for o in ops):
        return ops, set()
    skipped = clock_inverted_keys(ops)
    if not skipped:
        return ops, skipped
    return [o for o in ops if o.process == NEMESIS or _hashable(o.key) not in skipped], skipped


def search(prep: _Prepared, params: dict[str, Any], started: float | None = None) -> Result:
    """Run the interleaved per-key searches over prepared calls."""
    started = time.monotonic() if started is None else started
    time_limit = params.get("time_limit")
    max_states = int(params.get("max_states") or DEFAULT_MAX_STATES)
    model = prep.model
    active = [_KeySearch(k, sorted(cs, key=lambda c: c.call_pos), model.init_part(k), model)
              for k, cs in prep.parts.items()]
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
        deadline = None if time_limit is None else started + time_limit
        # The verdict is in: the caches are dead weight, and the prefix searches need the room.
        failed.cache = set()
        for u in undecided:
            u.release()
        found = None if failed.unproducible is not _NO_TOKEN else _culprit(failed, model, deadline, max_states)
        anomaly = explain(failed, model, found)
        counts["keys_undecided"] = len(undecided)
        details["undecided_keys"] = [s.key for s in undecided[:50]]
        return Result("linearizable", False, counts, [anomaly], details)
    if undecided:
        counts["keys_undecided"] = len(undecided)
        details["reason"] = stop_reason or "search stopped"
        details["undecided_keys"] = [s.key for s in undecided[:50]]
        return Result("linearizable", "unknown", counts, [], details)
    return Result("linearizable", True, counts, [], details)


def _truncate(s: _KeySearch, model: Model, cut: float) -> tuple[list[Call], dict[int, Call]]:
    """The failed key's calls as they stood at history position ``cut``.

    Calls invoked later are left out; calls that completed later become indeterminate (their
    outcome was not known yet). Returns the calls and, for each rewritten one, its original.
    """
    out: list[Call] = []
    orig: dict[int, Call] = {}
    for c in s.calls:
        if c.call_pos > cut:
            continue
        if c.determinate and c.ret_pos > cut:
            ic = model.indeterminate(c)
            if ic is None:
                continue
            orig[id(ic)] = c
            out.append(ic)
        else:
            out.append(c)
    # Cutting drops the reads that completed later, so fewer calls observe what is left.
    return _drop_unobserved(out, model), orig


@dataclass(slots=True)
class _Culprit:
    call: Call  # the first operation whose completion makes the key non-linearizable
    before: _KeySearch | None  # the linearizable search of the cut just before it (None: empty)
    orig: dict[int, Call]  # the rewritten calls of `before`, mapped to the history's


def _culprit(s: _KeySearch, model: Model, deadline: float | None, max_states: int) -> _Culprit | None:
    """The operation that makes the failed key non-linearizable, proven by searches of its prefixes.

    Linearizability is prefix-closed: if the history cut at the completion of an operation is
    not linearizable, no longer cut is. So a binary search over the completions finds the first
    one whose cut fails; that operation cannot be linearized in any linearization of the
    operations that completed before it (the stale read, not a neighbour of it). Returns it
    with the linearizable search of the cut just before it, or None when the budget (a multiple
    of the failed search's steps, and the time limit) ran out first.
    """
    det = sorted((c for c in s.calls if c.determinate), key=lambda c: c.ret_pos)
    if not det:
        return None
    budget = max(CULPRIT_MIN_STEPS, CULPRIT_STEP_FACTOR * s.steps, CULPRIT_CALL_FACTOR * len(s.calls))
    passed: dict[int, tuple[_KeySearch, dict[int, Call]]] = {}

    def probe(j: int) -> int | None:
        nonlocal budget
        calls, orig = _truncate(s, model, det[j].ret_pos)
        ks = _KeySearch(s.key, calls, s.init, model, refute_stale=True)
        while ks.status == RUNNING:
            if budget <= 0 or (deadline is not None and time.monotonic() > deadline):
                return None
            steps_before = ks.steps
            st = ks.run(min(budget, MAX_SLICE_STEPS), max_states - len(ks.cache))
            budget -= ks.steps - steps_before
            if st == OUT_OF_MEMORY:
                return None
        if ks.status == LINEARIZABLE:
            passed[j] = (ks, orig)
        return ks.status

    lo, hi = 0, len(det) - 1  # the cut at det[hi] is known to fail (it is the whole key)
    # A first guess saves most of the probes: a call that the failed search's deepest dead end
    # stranded (a read whose value would be overwritten) is usually the stale one, else the
    # call that dead end could not place. Two probes confirm it: the cut before it passes and
    # the cut at it fails.
    hint = _hint(s)
    if hint is not None:
        j = next(i for i, c in enumerate(det) if c is hint)
        st = probe(j - 1) if j > 0 else LINEARIZABLE
        if st is None:
            return None
        if st == LINEARIZABLE:
            lo = j
            st = probe(j) if j < hi else ILLEGAL_HISTORY
            if st is None:
                return None
            if st == ILLEGAL_HISTORY:
                hi = j
            else:
                lo = j + 1
        else:
            hi = j - 1
    while lo < hi:
        mid = (lo + hi) // 2
        st = probe(mid)
        if st is None:
            return None
        if st == ILLEGAL_HISTORY:
            hi = mid
        else:
            lo = mid + 1
    if lo == 0:
        return _Culprit(det[0], None, {})
    if lo - 1 not in passed and probe(lo - 1) != LINEARIZABLE:
        return None  # out of budget (a failure here would contradict prefix-closure)
    ks, orig = passed[lo - 1]
    return _Culprit(det[lo], ks, orig)


def _hint(s: _KeySearch) -> Call | None:
    """A guess at the culprit (see _culprit): a call that is stale on its face, else the call the
    failed search's deepest dead end points at."""
    return _stale_on_its_face(s) or _dead_end_hint(s)


def _stale_on_its_face(s: _KeySearch) -> Call | None:
    """The first-returning call that needs a state every producer of which was overwritten first.

    If every call that can produce the state a read (or cas) needs returned before some write W
    began, and W returned before the read began, then W sits between all of them and the read
    in every linearization: the read cannot see the state. Only where tokens are exact.
    """
    if not s.rule:
        return None
    inf = float("inf")
    prod_max: dict[Any, float] = {}
    writes: list[tuple[float, float]] = []
    for i, c in enumerate(s.calls):
        t = s.ptok[i]
        if t is _NO_TOKEN:
            continue
        prod_max[t] = max(prod_max.get(t, -inf), c.ret_pos)
        if c.determinate and c.kind not in PURE_KINDS:
            writes.append((c.call_pos, c.ret_pos))
    if not writes:
        return None
    writes.sort()
    starts = [w[0] for w in writes]
    sufmin = [0.0] * len(writes)
    low = inf
    for j in range(len(writes) - 1, -1, -1):
        low = min(low, writes[j][1])
        sufmin[j] = low
    best: Call | None = None
    for i, c in enumerate(s.calls):
        t = s.ntok[i]
        if t is _NO_TOKEN or not c.determinate or (s.rule != 1 and type(t) is tuple):
            continue
        last = prod_max.get(t, -inf)
        if t == s.init:
            last = max(last, -1.0)  # the initial state is produced before everything
        if last == inf or last == -inf:
            continue  # an info producer may come any time; no producer is the unproducible case
        j = bisect.bisect_right(starts, last)
        if j < len(writes) and sufmin[j] < c.call_pos and (best is None or c.ret_pos < best.ret_pos):
            best = c
    return best


def _dead_end_hint(s: _KeySearch) -> Call | None:
    """The determinate call the failed search's deepest dead end points at."""
    if s.best is None:
        return None
    stack, final_state, ret_entry = s.best
    linearized = set()
    node = stack
    while node is not None:
        linearized.add((node[0] - 2) >> 1)
        node = node[7]
    if s.rule and (s.rule == 1 or type(final_state) is not tuple):
        if not any(s.ptok[i] == final_state for i in range(len(s.calls)) if i not in linearized):
            needers = [c for i, c in enumerate(s.calls)
                       if i not in linearized and s.ntok[i] == final_state and c.determinate]
            if needers:
                return min(needers, key=lambda c: c.ret_pos)
    c = s.calls[(ret_entry - 3) >> 1]
    return c if c.determinate else None


def explain(s: _KeySearch, model: Model, culprit: _Culprit | None = None) -> Anomaly:
    """Describe a failed key: the op that cannot be linearized and a linearization around it.

    With a ``culprit`` (see :func:`_culprit`) the op is the first whose completion makes the
    key non-linearizable and the linearization shown is one of everything that completed
    before it; without one, the op is where the failed search's deepest dead end stopped.
    """
    model.focus(s.key)
    orig: dict[int, Call] = {}
    if culprit is not None:
        blocked = culprit.call
        if culprit.before is not None:
            ls = culprit.before
            orig = culprit.orig
            stack, final_state = ls.stack, ls.state
        else:
            ls, stack, final_state = s, None, s.init
    else:
        assert s.best is not None
        ls = s
        stack, final_state, ret_entry = s.best
        blocked = s.calls[(ret_entry - 3) >> 1]
    order: list[tuple[int, Any]] = []
    node = stack
    while node is not None:
        c, before, _h, _phase, _skip, _first, _rem, node = node
        order.append(((c - 2) >> 1, before))
    order.reverse()

    def real(c: Call) -> Call:
        return orig.get(id(c), c)

    linearized = {i for i, _ in order}
    if culprit is not None and culprit.before is None:
        linearized = set(range(len(ls.calls)))  # nothing completed before it: show no pending ops
    kept: list[dict[str, Any]] = []
    first_kept = max(0, len(order) - PREFIX_KEEP)  # describing a 100,000-step prefix costs seconds
    for j in range(first_kept, len(order)):
        i, before = order[j]
        after = order[j + 1][1] if j + 1 < len(order) else final_state
        c = real(ls.calls[i])
        kept.append({"op": _op_ref(c), "describe": model.describe_op(c),
                     "state_before": model.describe_state(before), "state_after": model.describe_state(after)})
    # Unlinearized calls that can only run in the current state, which nothing left can produce
    # again: overwriting the state would strand them (the search's overwrite rule).
    needers: list[Call] = []
    if culprit is None and s.rule and (s.rule == 1 or type(final_state) is not tuple):
        producible = any(s.ptok[i] == final_state for i in range(len(s.calls)) if i not in linearized)
        if not producible:
            needers = [c for i, c in enumerate(s.calls) if i not in linearized and s.ntok[i] == final_state]
    # The operations that were pending when the blocked one had to return.
    candidates = []
    for i, c in enumerate(ls.calls):
        if i in linearized or c.call_pos > blocked.ret_pos or real(c) is blocked:
            continue
        ns = c.stepper(final_state, c.arg, c.output)
        if ns is ILLEGAL:
            why = "illegal in this state"
        elif ns != final_state and [n for n in needers if n is not c]:
            n = next(n for n in needers if n is not c)
            why = (f"would overwrite {model.describe_state(final_state)}, which {model.describe_op(n)} "
                   f"(op {n.invoke.index}) still needs and nothing left can write again")
        elif culprit is not None:
            why = f"pending (info: may take effect later{'' if ns == final_state else ', → ' + model.describe_state(ns)})"
        else:
            why = f"legal (→ {model.describe_state(ns)}) but every continuation from there fails"
        candidates.append({"op": _op_ref(real(c)), "describe": model.describe_op(real(c)), "why": why})
    state_s = model.describe_state(final_state)
    inv = blocked.invoke
    ret_index = blocked.completion.index if blocked.completion else inv.index
    what = f"key {s.key!r}: {model.describe_op(blocked)} (op {inv.index}, process {inv.process}) cannot be linearized"
    stranded = [n for n in needers if n is not blocked]
    overwriter: Call | None = None
    if s.unproducible is not _NO_TOKEN:
        explanation = (
            f"{what}: it needs the state {model.describe_state(s.unproducible)}, which is not the initial "
            f"state and which no operation on this key could have produced."
        )
    elif culprit is not None:
        if culprit.before is not None:
            explanation = (
                f"{what}: the operations that completed before it returned (op {ret_index}) can be linearized, "
                f"but in none of their linearizations can it take effect between its invocation and its return. "
                f"In one of them ({len(order)} operation{'' if len(order) == 1 else 's'}) the state when it returned "
                f"is {state_s}"
            )
        else:
            explanation = (
                f"{what}: it is the first operation to complete (op {ret_index}), and no order of the operations "
                f"concurrent with it lets it take effect from the initial state {state_s}"
            )
        if blocked.stepper(final_state, blocked.arg, blocked.output) is ILLEGAL:
            explanation += ", in which it is illegal"
        need = model.needs(blocked)
        if need is not None and need != final_state:
            for j in range(len(order) - 1, -1, -1):
                after = order[j + 1][1] if j + 1 < len(order) else final_state
                if order[j][1] == need and after != need:
                    overwriter = real(ls.calls[order[j][0]])
                    break
            if overwriter is not None:
                explanation += (f"; it needs {model.describe_state(need)}, which {model.describe_op(overwriter)} "
                                f"(op {overwriter.invoke.index}, process {overwriter.invoke.process}) overwrote")
        explanation += "."
    else:
        explanation = (
            f"{what}. The longest linearizable prefix has {len(order)} operations and leaves the "
            f"state {state_s}; from there no pending operation can be linearized before op {ret_index} returned"
        )
        if stranded and blocked.stepper(final_state, blocked.arg, blocked.output) is not ILLEGAL:
            n = stranded[0]
            explanation += (
                f": placing it would overwrite {state_s}, which {model.describe_op(n)} (op {n.invoke.index}, "
                f"process {n.invoke.process}) must still see and no remaining operation can write again."
            )
        else:
            explanation += "."
    # The proof: the blocked operation, what overwrote or would strand, then the last operations before it.
    ops: list[Op] = [inv] + ([blocked.completion] if blocked.completion is not None else [])
    for n in ([overwriter] if overwriter is not None else []) + stranded[:3]:
        ops.append(n.invoke)
        if n.completion is not None:
            ops.append(n.completion)
    for i, _ in order[-5:]:
        c = real(ls.calls[i])
        ops.append(c.invoke)
        if c.completion is not None:
            ops.append(c.completion)
    seen: set[int] = set()
    unique = []
    for o in ops:
        if id(o) not in seen:
            seen.add(id(o))
            unique.append(o)
    details: dict[str, Any] = {
        "op": _op_ref(blocked),
        "describe": model.describe_op(blocked),
        "state": state_s,
        "initial_state": model.describe_state(s.init),
        "prefix_length": len(order),
        "prefix": kept,
        "prefix_truncated": first_kept,
        "pending": candidates[:CANDIDATES_KEEP],
        "stranded": [_op_ref(n) for n in stranded[:CANDIDATES_KEEP]],
        "pending_total": len(candidates),
        # "first-failure": proven the first op whose completion makes the key non-linearizable
        # (the prefix is a linearization of what completed before it); "deepest": the failed
        # search's deepest dead end (the prefix search ran out of budget).
        "blame": "first-failure" if culprit is not None or s.unproducible is not _NO_TOKEN else "deepest",
    }
    if overwriter is not None:
        details["overwritten_by"] = _op_ref(overwriter)
    return Anomaly("not-linearizable", explanation, unique, key=s.key, details=details)


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
