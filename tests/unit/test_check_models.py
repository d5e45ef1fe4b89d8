"""Model options (the peers' conventions), the mutex and multi-register models, and an
explanation that blames the operation that really cannot be linearized."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from checkers import linearizable
from checkers.models import make_model
from checkers.synth import HistoryBuilder, generate
from harness.history import HistoryError, Op


def check(ops: list[Op], model: str = "register", **params: Any) -> Any:
    return linearizable.check(ops, {"model": model, **params})


# --- register: --init, --nil-read, --failed-cas -----------------------------------------------


def test_register_init_value() -> None:
    b = HistoryBuilder()
    b.invoke(0, "read").ok(0, 0).invoke(0, "cas", [0, 1]).ok(0).invoke(1, "read").ok(1, 1)
    assert check(b.ops).valid is False  # from nil, a read of 0 was never written
    assert check(b.ops, init=0).valid is True  # Knossos' (cas-register 0)
    assert check(b.ops, init=5).valid is False


def test_nil_read_value_or_unknown() -> None:
    b = HistoryBuilder()
    b.invoke(0, "write", 3).ok(0).invoke(1, "read").ok(1, None)  # nil after 3 was written
    assert check(b.ops).valid is False  # ringlab: nil is the value read (the write was lost)
    assert check(b.ops, nil_read="value").valid is False
    r = check(b.ops, nil_read="unknown")  # Knossos: a nil read says nothing
    assert r.valid is True and r.counts["dropped"] == 1
    # A non-nil stale read is still caught with nil reads unknown.
    b.invoke(0, "write", 4).ok(0).invoke(1, "read").ok(1, 3)
    assert check(b.ops, nil_read="unknown").valid is False


def test_failed_cas_observe_or_ignore() -> None:
    # A cas that failed although the register held its expected value: Porcupine's etcd model
    # takes the failure as an observation (the value was not 1) and refutes it; Knossos drops it.
    b = HistoryBuilder()
    b.invoke(0, "write", 1).ok(0).invoke(1, "cas", [1, 2]).fail(1).invoke(0, "read").ok(0, 1)
    assert check(b.ops).valid is True
    assert check(b.ops, failed_cas="ignore").valid is True
    r = check(b.ops, failed_cas="observe")
    assert r.valid is False
    assert r.anomalies[0].details["op"]["invoke_index"] == 2
    assert "failed" in r.anomalies[0].details["describe"]
    # A cas that failed because the register held something else is fine either way.
    b = HistoryBuilder()
    b.invoke(0, "write", 3).ok(0).invoke(1, "cas", [1, 2]).fail(1).invoke(0, "read").ok(0, 3)
    assert check(b.ops, failed_cas="observe").valid is True
    # Concurrent with the write that made it fail: it may have seen either value.
    b = HistoryBuilder()
    b.invoke(0, "write", 1).ok(0).invoke(0, "write", 5).invoke(1, "cas", [1, 2]).fail(1).ok(0)
    assert check(b.ops, failed_cas="observe").valid is True


def test_bad_option_values_are_errors() -> None:
    with pytest.raises(ValueError, match="nil_read"):
        make_model("register", nil_read="maybe")
    with pytest.raises(ValueError, match="failed_cas"):
        make_model("register", failed_cas="sometimes")
    with pytest.raises(ValueError, match="kv_append"):
        make_model("kv", kv_append="set")
    with pytest.raises(ValueError, match="takes no init"):
        make_model("mutex", init=1)


# --- kv: --kv-append string|list, --init ---------------------------------------------------------


def _porcupine_kv() -> HistoryBuilder:
    b = HistoryBuilder()
    b.invoke(0, "get", key="k").ok(0, "")  # never written: Porcupine's kv starts at ""
    b.invoke(0, "append", "x 0 0 y", key="k").ok(0)
    b.invoke(1, "append", "x 1 0 y", key="k")
    b.invoke(0, "get", key="k").ok(0, "x 0 0 yx 1 0 y")  # the concurrent append already applied
    b.ok(1)
    b.invoke(0, "put", "z", key="k").ok(0).invoke(0, "append", "w", key="k").ok(0)
    b.invoke(0, "get", key="k").ok(0, "zw")
    return b


def test_kv_string_append_from_empty_string() -> None:
    b = _porcupine_kv()
    assert check(b.ops, "kv", kv_append="list", init="").valid is False  # appends build lists
    assert check(b.ops, "kv").valid is False  # ringlab: nil initially, appends build lists
    assert check(b.ops, "kv", kv_append="string").valid is False  # nil, not "", initially
    assert check(b.ops, "kv", kv_append="string", init="").valid is True
    # The appends in the other order, or a lost one, are not linearizable.
    bad = _porcupine_kv()
    bad.invoke(2, "get", key="k").ok(2, "zwx 1 0 y")
    r = check(bad.ops, "kv", kv_append="string", init="")
    assert r.valid is False and r.anomalies[0].details["op"]["invoke_index"] == len(bad.ops) - 2


def test_kv_string_append_can_rebuild_a_string_many_ways() -> None:
    # "ab" + "c" == "a" + "bc": the value a read needs may be produced again by other appends,
    # so the overwrite pruning must not refute this history.
    b = HistoryBuilder()
    b.invoke(0, "put", "ab", key=1).ok(0)
    b.invoke(1, "append", "c", key=1).info(1)  # maybe applied
    b.invoke(2, "put", "a", key=1).ok(2)
    b.invoke(2, "append", "bc", key=1).ok(2)
    b.invoke(3, "get", key=1).ok(3, "abc")
    assert check(b.ops, "kv", kv_append="string", init="").valid is True


def test_kv_list_append_is_the_default() -> None:
    b = HistoryBuilder()
    b.invoke(0, "append", 1, key="a").ok(0).invoke(0, "append", 2, key="a").ok(0)
    b.invoke(1, "get", key="a").ok(1, [1, 2])
    assert check(b.ops, "kv").valid is True
    assert check(b.ops, "kv", kv_append="list").valid is True
    with pytest.raises(HistoryError, match="must be a string"):
        check(b.ops, "kv", kv_append="string")


# --- mutex ----------------------------------------------------------------------------------


def test_mutex_valid_and_invalid() -> None:
    b = HistoryBuilder()
    b.invoke(0, "acquire").ok(0).invoke(1, "acquire")  # 1 waits
    b.invoke(0, "release").ok(0)
    b.ok(1).invoke(1, "release").ok(1)
    assert check(b.ops, "mutex").valid is True
    # Two holders at once: 1 acquired while 0 held the lock and before 0 released it.
    b = HistoryBuilder()
    b.invoke(0, "acquire").ok(0).invoke(1, "acquire").ok(1).invoke(0, "release").ok(0)
    r = check(b.ops, "mutex")
    assert r.valid is False
    assert r.anomalies[0].details["op"]["invoke_index"] == 2
    assert r.anomalies[0].details["state"] == "held"
    # A release of a lock nobody acquired.
    b = HistoryBuilder()
    b.invoke(0, "release").ok(0)
    assert check(b.ops, "mutex").valid is False


def test_mutex_info_and_fail_and_keys() -> None:
    b = HistoryBuilder()
    b.invoke(0, "acquire").info(0)  # may hold the lock now
    b.invoke(1, "acquire").fail(1)  # certainly did not
    b.invoke(2, "acquire").ok(2)  # so the info acquire did not happen (yet)
    assert check(b.ops, "mutex").valid is True
    b.invoke(3, "release").ok(3).invoke(3, "release").ok(3)  # two releases need two acquires
    assert check(b.ops, "mutex").valid is True  # the info acquire took effect in between
    b.invoke(3, "release").ok(3)
    assert check(b.ops, "mutex").valid is False
    # One lock per key.
    b = HistoryBuilder()
    b.invoke(0, "acquire", key="a").ok(0).invoke(1, "acquire", key="b").ok(1)
    r = check(b.ops, "mutex")
    assert r.valid is True and r.counts["keys"] == 2


def test_mutex_agrees_with_brute_force() -> None:
    rng = random.Random(7)
    for _ in range(150):
        ops = _random_mutex(rng)
        assert check(ops, "mutex").valid is _brute(ops, _mutex_step, False), ops


# --- multi-register -------------------------------------------------------------------------


def _txn(b: HistoryBuilder, p: int, mops: list[list[Any]], result: list[list[Any]] | None = None,
         outcome: str = "ok") -> None:
    b.invoke(p, "txn", mops)
    if outcome == "ok":
        b.ok(p, result if result is not None else mops)
    else:
        b.complete(p, outcome)


def test_multi_register_txns() -> None:
    b = HistoryBuilder()
    _txn(b, 0, [["w", "x", 1], ["w", "y", 2]])
    _txn(b, 1, [["r", "x", None], ["r", "y", None]], [["r", "x", 1], ["r", "y", 2]])
    assert check(b.ops, "multi-register").valid is True
    # A torn read: x from after the txn, y from before it.
    _txn(b, 1, [["w", "x", 3], ["w", "y", 4]])
    _txn(b, 2, [["r", "x", None], ["r", "y", None]], [["r", "x", 3], ["r", "y", 2]])
    r = check(b.ops, "multi-register")
    assert r.valid is False
    a = r.anomalies[0]
    assert a.key == ("x", "y") and a.details["op"]["invoke_index"] == 6
    assert "'x': 3, 'y': 4" in a.details["state"]


def test_multi_register_init_nil_reads_and_info() -> None:
    b = HistoryBuilder()
    _txn(b, 0, [["r", "x", None]], [["r", "x", 0]])
    assert check(b.ops, "multi-register").valid is False
    assert check(b.ops, "multi-register", init=0).valid is True
    assert check(b.ops, "multi-register", init={"x": 0}).valid is True
    b = HistoryBuilder()
    _txn(b, 0, [["w", "x", 5]], outcome="info")  # may have happened
    _txn(b, 1, [["r", "x", None]], [["r", "x", None]])  # a nil read is always legal (Knossos)
    _txn(b, 1, [["r", "x", None]], [["r", "x", 5]])
    _txn(b, 2, [["w", "x", 6]], outcome="fail")  # certainly did not happen
    _txn(b, 1, [["r", "x", None]], [["r", "x", 6]])
    r = check(b.ops, "multi-register")
    assert r.valid is False and r.anomalies[0].details["op"]["invoke_index"] == 8


def test_multi_register_partitions_by_linked_registers() -> None:
    b = HistoryBuilder()
    _txn(b, 0, [["w", 1, "a"]])
    _txn(b, 0, [["w", 2, "b"]])
    _txn(b, 1, [["r", 1, None]], [["r", 1, "a"]])
    assert check(b.ops, "multi-register").counts["keys"] == 2  # one register per txn: per key
    _txn(b, 1, [["r", 1, None], ["r", 2, None]], [["r", 1, "a"], ["r", 2, "b"]])
    _txn(b, 0, [["w", 3, "c"]])
    r = check(b.ops, "multi-register")
    assert r.valid is True and r.counts["keys"] == 2  # {1, 2} linked by a txn, and {3}


def test_multi_register_agrees_with_brute_force() -> None:
    rng = random.Random(11)
    for _ in range(150):
        ops = _random_txns(rng)
        assert check(ops, "multi-register").valid is _brute(ops, _txn_step, {}), ops


def test_unknown_operations_name_the_model() -> None:
    b = HistoryBuilder()
    b.invoke(0, "get").ok(0, 1)
    with pytest.raises(HistoryError, match="acquire/release"):
        check(b.ops, "mutex")
    with pytest.raises(HistoryError, match="expected txn"):
        check(b.ops, "multi-register")
    b = HistoryBuilder()
    b.invoke(0, "read").ok(0, 1)  # Jepsen's multi-register tests use :read/:write for txns too
    with pytest.raises(HistoryError, match="list of"):
        check(b.ops, "multi-register")
    b = HistoryBuilder()
    b.invoke(0, "txn", [["x", 1, 2]]).ok(0)
    with pytest.raises(HistoryError, match="micro-op"):
        check(b.ops, "multi-register")


# --- the explanation blames the operation that cannot be linearized ----------------------------


def _inject_stale_read(ops: list[Op]) -> int | None:
    """Make one read from the middle on return a value overwritten before it began; its index."""
    inv: dict[int, Op] = {}
    pending: dict[Any, Op] = {}
    for op in ops:
        if op.type == "invoke":
            pending[op.process] = op
        else:
            inv[op.index] = pending.pop(op.process)
    writes = [(inv[o.index], o) for o in ops if o.f == "write" and o.type == "ok"]
    reads = [(inv[o.index], o) for o in ops if o.f == "read" and o.type == "ok"]
    for ri, rc in reads[len(reads) // 2:]:
        done = [w for w in writes if w[1].time < ri.time]
        for old in done:
            if any(nw[0].time > old[1].time for nw in done) and old[0].value != rc.value:
                rc.value = old[0].value
                return ri.index
    return None


def test_explanation_points_at_the_injected_stale_read() -> None:
    hits = 0
    for seed in range(40):
        ops = generate("register", n_ops=100, clients=20, keys=1, info_rate=0.05, seed=seed)
        target = _inject_stale_read(ops)
        if target is None:
            continue
        r = check(ops)
        assert r.valid is False
        a = r.anomalies[0]
        assert a.details["blame"] == "first-failure"
        assert a.details["op"]["invoke_index"] == target, a.explanation
        assert f"(op {target}, " in a.explanation.split("cannot be linearized")[0]
        # The op that hid the read's value is named, and drawn: it is among the proof's ops.
        over = a.details["overwritten_by"]
        assert over["value"] != a.details["op"]["value"]
        assert over["invoke_index"] in {o.index for o in a.ops}
        hits += 1
    assert hits >= 30


def test_explanation_points_at_the_stale_read_with_many_keys() -> None:
    ops = generate("register", n_ops=400, clients=10, keys=4, info_rate=0.05, seed=3)
    target = None
    for op in ops[len(ops) // 2:]:
        if op.type == "ok" and op.f == "read" and op.value is not None:
            # Nothing wrote -1: a read of a value that was never written.
            op.value = -1
            target = op
            break
    assert target is not None
    r = check(ops)
    a = r.anomalies[0]
    assert a.key == target.key and a.details["op"]["complete_index"] == target.index


def test_explanation_falls_back_to_the_deepest_dead_end_without_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    ops = generate("register", n_ops=100, clients=20, keys=1, info_rate=0.05, seed=1)
    assert _inject_stale_read(ops) is not None
    monkeypatch.setattr(linearizable, "CULPRIT_MIN_STEPS", 0)
    monkeypatch.setattr(linearizable, "CULPRIT_STEP_FACTOR", 0)
    monkeypatch.setattr(linearizable, "CULPRIT_CALL_FACTOR", 0)
    r = check(ops)
    assert r.valid is False and r.anomalies[0].details["blame"] == "deepest"


# --- brute force ----------------------------------------------------------------------------


def _mutex_step(state: Any, inv: Op, comp: Op) -> tuple[bool, Any]:
    if inv.f == "acquire":
        return (not state, True)
    return (bool(state), False)


def _txn_step(state: Any, inv: Op, comp: Op) -> tuple[bool, Any]:
    st = dict(state)
    mops = comp.value if comp.type == "ok" else inv.value
    for f, k, v in mops:
        if f == "w":
            st[k] = v
        elif v is not None and comp.type == "ok" and st.get(k) != v:
            return (False, state)
    return (True, tuple(sorted(st.items())))


def _brute(ops: list[Op], step: Any, init: Any) -> bool:
    """Every order of the calls (info ones taking effect or not), for tiny histories."""
    import itertools

    pending: dict[Any, tuple[int, Op]] = {}
    calls = []
    for pos, op in enumerate(ops):
        if op.type == "invoke":
            pending[op.process] = (pos, op)
        else:
            ipos, inv = pending.pop(op.process)
            if op.type != "fail":
                calls.append((ipos, pos if op.type == "ok" else 10**9, inv, op))
    det = [c for c in calls if c[1] < 10**9]
    info = [c for c in calls if c[1] == 10**9]
    init_state = tuple(sorted(init.items())) if isinstance(init, dict) else init
    for r in range(len(info) + 1):
        for chosen in itertools.combinations(info, r):
            for order in itertools.permutations(det + list(chosen)):
                if any(later[1] < c[0] for i, c in enumerate(order) for later in order[i + 1:]):
                    continue
                state = init_state
                for _ip, _rp, inv, comp in order:
                    ok, state = step(state, inv, comp)
                    if not ok:
                        break
                else:
                    return True
    return False


def _random_mutex(rng: random.Random) -> list[Op]:
    b = HistoryBuilder()
    open_: list[int] = []
    for _ in range(rng.randint(2, 6)):
        if open_ and rng.random() < 0.5:
            p = open_.pop(rng.randrange(len(open_)))
            t = rng.random()
            b.ok(p) if t < 0.8 else b.info(p) if t < 0.9 else b.fail(p)
        else:
            p = max([*open_, -1]) + 1 + rng.randrange(3)
            if p in open_:
                continue
            b.invoke(p, rng.choice(["acquire", "release"]))
            open_.append(p)
    for p in open_:
        b.ok(p)
    return b.ops


def _random_txns(rng: random.Random) -> list[Op]:
    b = HistoryBuilder()
    open_: dict[int, list[list[Any]]] = {}
    for _ in range(rng.randint(2, 6)):
        if open_ and rng.random() < 0.5:
            p = rng.choice(list(open_))
            mops = open_.pop(p)
            t = rng.random()
            if t < 0.85:
                b.ok(p, [[f, k, rng.choice([None, 1, 2]) if f == "r" else v] for f, k, v in mops])
            else:
                b.complete(p, "info" if t < 0.95 else "fail")
        else:
            p = len(b.ops)
            keys = rng.sample(["x", "y"], rng.randint(1, 2))
            mops = [[rng.choice("rw"), k, None] for k in keys]
            mops = [[f, k, rng.choice([1, 2]) if f == "w" else None] for f, k, _ in mops]
            b.invoke(p, "txn", mops)
            open_[p] = mops
    for p, mops in open_.items():
        b.ok(p, mops)
    return b.ops


def test_report_linearization_view_gets_the_stale_read_and_what_hid_it(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.report import render, sample

    injected: list[Op] = []
    inject = sample._stale_read

    def spy(ops: list[Op]) -> None:
        before = [op.value for op in ops]
        inject(ops)
        injected.extend(op for op, v in zip(ops, before) if op.value != v)

    monkeypatch.setattr(sample, "_stale_read", spy)
    data = render.collect(sample.make_run(tmp_path, "linearizability"))
    (stale,) = injected
    (a,) = next(c for c in data["checkers"] if c["name"] == "linearizable")["anomalies"]
    d = a["details"]
    assert d["op"]["complete_index"] == stale.index  # the red bar is the injected read
    assert d["blame"] == "first-failure"
    hid = d["overwritten_by"]["invoke_index"]  # the purple outline: the write that hid its value
    assert d["overwritten_by"]["f"] == "write" and d["overwritten_by"]["value"] != stale.value
    assert any(data["ops"]["ii"][r] == hid for r in a["rows"])  # and it is among the linked rows
