"""Linearizability: hand-written verdicts, brute-force agreement, generated and mutated histories."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers import linearizable
from checkers.synth import HistoryBuilder, generate
from harness.history import HistoryError, Op


def check(ops: list[Op], model: str = "register", **params: Any) -> Any:
    return linearizable.check(ops, {"model": model, **params})


# --- hand-written histories ------------------------------------------------------------------


def test_sequential_register_is_linearizable() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1).ok(0).invoke(0, "read").ok(0, 1).invoke(1, "cas", [1, 2]).ok(1).invoke(1, "read").ok(1, 2)
    r = check(b.ops)
    assert r.valid is True
    assert r.counts["keys_linearizable"] == 1


def test_stale_read_after_completed_write_is_not_linearizable_and_explained() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1).ok(0)
    b.invoke(0, "write", 2).ok(0)
    b.invoke(1, "read").ok(1, 1)  # began after write 2 completed: must see 2
    r = check(b.ops)
    assert r.valid is False
    a = r.anomalies[0]
    assert a.kind == "not-linearizable"
    # The read is blamed, not the write that hid its value: everything that completed before the
    # read returned is linearizable (write 1, write 2), and in no linearization can it see 1.
    assert a.details["op"]["invoke_index"] == 4
    assert a.details["blame"] == "first-failure"
    assert a.details["state"] == "2"
    assert [s["describe"] for s in a.details["prefix"]] == ["write 1", "write 2"]
    assert [s["state_after"] for s in a.details["prefix"]] == ["1", "2"]
    assert a.details["overwritten_by"]["invoke_index"] == 2
    assert "read → 1 (op 4, process 1) cannot be linearized" in a.explanation
    assert "which write 2 (op 2, process 0) overwrote" in a.explanation
    assert [o.index for o in a.ops[:4]] == [4, 5, 2, 3]


def test_read_of_a_value_nobody_wrote_is_refuted_without_search() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1).ok(0).invoke(1, "read").ok(1, 7)
    r = check(b.ops)
    assert r.valid is False and r.counts["steps"] == 0
    assert "no operation on this key could have produced" in r.anomalies[0].explanation
    assert r.anomalies[0].details["op"]["invoke_index"] == 2


def test_concurrent_writes_allow_either_order() -> None:
    for seen in (1, 2):
        b = HistoryBuilder()
        b.invoke(0, "write", 1).invoke(1, "write", 2).ok(0).ok(1)
        b.invoke(2, "read").ok(2, seen)
        assert check(b.ops).valid is True
    # ...but two reads after both completed must agree.
    b = HistoryBuilder()
    b.invoke(0, "write", 1).invoke(1, "write", 2).ok(0).ok(1)
    b.invoke(2, "read").ok(2, 1).invoke(2, "read").ok(2, 2)
    assert check(b.ops).valid is False


def test_read_concurrent_with_write_may_see_old_or_new() -> None:
    for seen in (None, 5):
        b = HistoryBuilder()
        b.invoke(0, "write", 5).invoke(1, "read").ok(1, seen).ok(0)
        assert check(b.ops).valid is True


def test_info_write_may_take_effect_any_time_after_its_invocation() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 7).info(0)  # timed out: unknown
    b.invoke(1, "read").ok(1, None)  # not yet applied
    b.invoke(1, "read").ok(1, 7)  # applied later, long after the client gave up
    assert check(b.ops).valid is True
    # It can also never happen.
    b = HistoryBuilder()
    b.invoke(0, "write", 7).info(0).invoke(1, "read").ok(1, None)
    assert check(b.ops).valid is True


def test_info_write_cannot_take_effect_before_its_invocation() -> None:
    b = HistoryBuilder()
    b.invoke(1, "read").ok(1, 7)
    b.invoke(0, "write", 7).info(0)
    assert check(b.ops).valid is False


def test_info_write_takes_effect_once() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 7).info(0)
    b.invoke(1, "read").ok(1, 7)
    b.invoke(1, "write", 8).ok(1)
    b.invoke(1, "read").ok(1, 7)  # 7 again would need the info write to happen twice
    assert check(b.ops).valid is False


def test_info_cas_may_or_may_not_apply_and_failed_ops_are_ignored() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1).ok(0)
    b.invoke(1, "cas", [1, 2]).info(1)
    b.invoke(2, "write", 9).fail(2)  # certainly did not happen
    b.invoke(3, "read").ok(3, 1)
    b.invoke(3, "read").ok(3, 2)
    assert check(b.ops).valid is True
    b.invoke(3, "read").ok(3, 9)
    assert check(b.ops).valid is False


def test_ok_cas_with_wrong_expected_value_is_illegal() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 1).ok(0).invoke(0, "cas", [3, 4]).ok(0)
    assert check(b.ops).valid is False


def test_incomplete_invocation_is_treated_as_info() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 3)  # the run was interrupted
    b.invoke(1, "read").ok(1, 3)
    r = check(b.ops)
    assert r.valid is True and r.counts["info"] == 1


def test_kv_model_per_key_and_append() -> None:
    b = HistoryBuilder()
    b.invoke(0, "put", 1, key="a").ok(0)
    b.invoke(1, "append", 5, key="b").ok(1)
    b.invoke(1, "append", 6, key="b").ok(1)
    b.invoke(0, "get", key="a").ok(0, 1)
    b.invoke(0, "get", key="b").ok(0, [5, 6])
    r = check(b.ops, "kv")
    assert r.valid is True and r.counts["keys"] == 2
    b.invoke(2, "get", key="b").ok(2, [6, 5])
    r = check(b.ops, "kv")
    assert r.valid is False and r.anomalies[0].key == "b"


def test_set_model() -> None:
    b = HistoryBuilder()
    b.invoke(0, "add", 1).ok(0).invoke(1, "add", 2).invoke(2, "read").ok(2, [1]).ok(1)
    b.invoke(2, "read").ok(2, [1, 2])
    assert check(b.ops, "set").valid is True
    b.invoke(2, "read").ok(2, [2])  # 1 vanished
    r = check(b.ops, "set")
    assert r.valid is False and "element 1" in r.anomalies[0].explanation and "vanished" in r.anomalies[0].explanation
    r = linearizable.check(b.ops, {"model": "set", "atomic_reads": True})
    assert r.valid is False and "{1, 2}" in r.anomalies[0].details["state"]


def test_unknown_operation_is_a_clear_error() -> None:
    b = HistoryBuilder()
    b.invoke(0, "frobnicate", 1).ok(0)
    with pytest.raises(HistoryError, match="frobnicate"):
        check(b.ops)


def hard_history(writers: int = 20, key: Any = "hard") -> list[Op]:
    """Many overlapping appends to one list and a read no order of them explains: refuting it
    visits every ordered subset of the appends (the list state remembers the order)."""
    b = HistoryBuilder()
    for p in range(writers):
        b.invoke(p, "append", p, key=key)
    b.invoke(writers, "get", key=key).ok(writers, [1, 0, 999])
    for p in range(writers):
        b.ok(p)
    return b.ops


def test_illegal_key_found_even_when_another_key_is_hard() -> None:
    hard = hard_history()
    b = HistoryBuilder()
    b.invoke(100, "put", 1, key="easy", t=10**9).ok(100)
    b.invoke(100, "get", key="easy").ok(100, 2)
    ops = hard + [Op(len(hard) + i, o.time, o.process, o.type, o.f, o.key, o.value) for i, o in enumerate(b.ops)]
    r = linearizable.check(ops, {"model": "kv", "time_limit": 20})
    assert r.valid is False
    assert r.anomalies[0].key == "easy"


def test_time_and_memory_bounds_give_unknown() -> None:
    hard = hard_history()
    r = linearizable.check(hard, {"model": "kv", "max_states": 5_000})
    assert r.valid == "unknown" and "memory bound" in r.details["reason"]
    assert r.details["undecided_keys"] == ["hard"]
    r = linearizable.check(hard, {"model": "kv", "time_limit": 0.2})
    assert r.valid == "unknown" and "time limit" in r.details["reason"]
    # With room to finish, the same history is refuted.
    small = hard_history(writers=5)
    assert linearizable.check(small, {"model": "kv"}).valid is False


# --- brute force over all orders ---------------------------------------------------------------


def _norm(v: Any) -> Any:
    return tuple(_norm(x) for x in v) if isinstance(v, list) else v


def _apply(state: dict[Any, Any], model: str, f: str, key: Any, arg: Any, out: Any, det: bool) -> dict[Any, Any] | None:
    """An independent sequential interpreter of the three models."""
    cur = state.get(key)
    if f in ("read", "get"):
        if model == "set":
            return state if tuple(sorted(cur or ())) == tuple(sorted(out or ())) else None
        return state if _norm(cur) == _norm(out) else None
    new = dict(state)
    if f in ("write", "put"):
        new[key] = arg
    elif f == "cas":
        if cur == arg[0]:
            new[key] = arg[1]
        elif det:
            return None
        else:
            return state
    elif f == "append":
        new[key] = (list(cur) if isinstance(cur, list) else [] if cur is None else [cur]) + [arg]
    elif f == "add":
        new[key] = sorted(set(cur or ()) | {arg})
    return new


def brute_force(ops: list[Op], model: str) -> bool:
    """Try every order of the operations that respects real time; info ops may be left out."""
    pending: dict[Any, tuple[int, Op]] = {}
    calls = []  # (inv_pos, ret_pos, f, key, arg, out, det)
    for pos, op in enumerate(ops):
        if op.type == "invoke":
            pending[op.process] = (pos, op)
            continue
        ipos, inv = pending.pop(op.process)
        if op.type == "fail":
            continue
        det = op.type == "ok"
        if not det and inv.f in ("read", "get"):
            continue
        calls.append((ipos, pos if det else float("inf"), inv.f, inv.key, inv.value, op.value, det))
    for ipos, inv in pending.values():
        if inv.f not in ("read", "get"):
            calls.append((ipos, float("inf"), inv.f, inv.key, inv.value, None, False))
    n = len(calls)

    def go(done: frozenset[int], state: dict[Any, Any]) -> bool:
        if all(i in done or not calls[i][6] for i in range(n)):
            return True
        for i in range(n):
            if i in done:
                continue
            # i may go next only if no undone op returned before i was invoked.
            if any(j not in done and j != i and calls[j][1] < calls[i][0] for j in range(n)):
                continue
            _, _, f, key, arg, out, det = calls[i]
            nxt = _apply(state, model, f, key, arg, out, det)
            if nxt is not None and go(done | {i}, nxt):
                return True
        return False

    return go(frozenset(), {})


@st.composite
def small_histories(draw: st.DrawFn, model: str) -> list[Op]:
    b = HistoryBuilder()
    procs = draw(st.integers(1, 3))
    open_: dict[int, str] = {}
    next_val = iter(range(1, 100))
    for _ in range(draw(st.integers(2, 14))):
        p = draw(st.integers(0, procs - 1))
        key = draw(st.sampled_from([None, "x"])) if model != "set" else None
        if p not in open_:
            if model == "set":
                f = draw(st.sampled_from(["add", "read"]))
                v = next(next_val) if f == "add" else None
            elif model == "kv":
                f = draw(st.sampled_from(["get", "put", "append"]))
                v = None if f == "get" else draw(st.integers(0, 2))
            else:
                f = draw(st.sampled_from(["read", "write", "cas"]))
                v = None if f == "read" else draw(st.integers(0, 2)) if f == "write" else [
                    draw(st.sampled_from([None, 0, 1, 2])), draw(st.integers(0, 2))]
            b.invoke(p, f, v, key=key)
            open_[p] = f
        else:
            f = open_.pop(p)
            kind = draw(st.sampled_from(["ok", "ok", "ok", "info", "fail"]))
            if kind == "ok":
                if f in ("read", "get"):
                    if model == "set":
                        out: Any = draw(st.lists(st.integers(1, 6), max_size=3, unique=True))
                    elif model == "kv":
                        out = draw(st.one_of(st.none(), st.integers(0, 2), st.lists(st.integers(0, 2), max_size=2)))
                    else:
                        out = draw(st.sampled_from([None, 0, 1, 2]))
                    b.ok(p, out)
                else:
                    b.ok(p)
            elif kind == "info":
                b.info(p)
            else:
                b.fail(p)
    return b.ops


def per_element(ops: list[Op]) -> list[list[Op]]:
    """A set history as one history per element: adds of it, and reads showing it or not."""
    elements = {op.value for op in ops if op.f == "add"} | {
        e for op in ops if op.f == "read" and op.type == "ok" for e in (op.value or ())}
    out = []
    for e in sorted(elements):
        proj = []
        for op in ops:
            if op.f == "add" and op.value != e:
                # Another element's add: an unobserved no-op for this element, as a read of nothing.
                continue
            if op.f == "read" and op.type == "ok":
                op = Op(op.index, op.time, op.process, op.type, op.f, op.key, [e] if e in (op.value or ()) else [])
            proj.append(op)
        out.append(_paired(proj))
    return out


def _paired(ops: list[Op]) -> list[Op]:
    """Only the operations whose invocation and completion both survived the projection."""
    open_: dict[Any, Op] = {}
    kept_inv: set[int] = set()
    for op in ops:
        if op.type == "invoke":
            open_[op.process] = op
        elif op.process in open_:
            kept_inv.add(open_.pop(op.process).index)
    kept_inv |= {op.index for op in open_.values()}
    return [op for op in ops if op.type != "invoke" or op.index in kept_inv]


@pytest.mark.parametrize("model", ["register", "kv", "set", "set-atomic"])
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_agrees_with_brute_force_on_small_histories(model: str, data: st.DataObject) -> None:
    ops = data.draw(small_histories("set" if model.startswith("set") else model))
    if model == "set":
        # Each element is its own object: valid iff every element's projection is.
        expected = all(brute_force(p, "set") for p in per_element(ops))
        got = linearizable.check(ops, {"model": "set"}).valid
    elif model == "set-atomic":
        expected = brute_force(ops, "set")
        got = linearizable.check(ops, {"model": "set", "atomic_reads": True}).valid
        # Snapshot reads are the stronger promise: whatever they allow, per element allows.
        assert not got or linearizable.check(ops, {"model": "set"}).valid is True
    else:
        expected = brute_force(ops, model)
        got = linearizable.check(ops, {"model": model}).valid
    assert got is expected


# --- generated from real executions, then mutated ---------------------------------------------


@pytest.mark.parametrize("model", ["register", "kv", "set"])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), clients=st.integers(1, 8), keys=st.integers(1, 3),
       info=st.sampled_from([0.0, 0.05, 0.2]))
def test_generated_histories_are_linearizable(model: str, seed: int, clients: int, keys: int, info: float) -> None:
    ops = generate(model, n_ops=80, clients=clients, keys=keys, info_rate=info, seed=seed)
    r = linearizable.check(ops, {"model": model, "time_limit": 20})
    assert r.valid is True, r.anomalies[0].explanation if r.anomalies else r.details


def _ok_reads(ops: list[Op]) -> list[int]:
    return [i for i, op in enumerate(ops) if op.type == "ok" and op.f in ("read", "get")]


@pytest.mark.parametrize("model", ["register", "kv", "set"])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), clients=st.integers(1, 8), pick=st.integers(0, 10_000))
def test_read_of_a_never_written_value_is_caught(model: str, seed: int, clients: int, pick: int) -> None:
    ops = generate(model, n_ops=80, clients=clients, keys=2, info_rate=0.05, seed=seed)
    reads = _ok_reads(ops)
    if not reads:
        return
    i = reads[pick % len(reads)]
    ops[i].value = [10**9] if model == "set" else 10**9
    r = linearizable.check(ops, {"model": model, "time_limit": 20})
    assert r.valid is False
    assert r.anomalies[0].key == ops[i].key


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), clients=st.integers(1, 6), pick=st.integers(0, 10_000))
def test_stale_read_mutation_is_caught(seed: int, clients: int, pick: int) -> None:
    """Make a read return a value overwritten before it began: impossible in any order."""
    ops = generate("register", n_ops=80, clients=clients, keys=1, info_rate=0.05, seed=seed, cas=False)
    inv_of: dict[int, Op] = {}
    pending: dict[Any, Op] = {}
    for op in ops:
        if op.type == "invoke":
            pending[op.process] = op
        else:
            inv_of[op.index] = pending.pop(op.process)
    writes = [(inv_of[op.index], op) for op in ops if op.f == "write" and op.type == "ok"]
    candidates = []
    for inv_r, comp_r in ((inv_of[op.index], op) for op in ops if op.f == "read" and op.type == "ok"):
        done_before = [w for w in writes if w[1].time < inv_r.time]
        for old in done_before:
            # A newer write began after `old` completed and completed before the read began.
            if any(n[0].time > old[1].time for n in done_before) and old[0].value != comp_r.value:
                candidates.append((comp_r, old[0].value))
    if not candidates:
        return
    comp_r, stale = candidates[pick % len(candidates)]
    comp_r.value = stale
    assert linearizable.check(ops, {"model": "register", "time_limit": 20}).valid is False
