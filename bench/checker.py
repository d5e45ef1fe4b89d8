"""Checker speed and memory on generated histories; prints figures, never fails.

Each case runs in a freshly spawned process, so its peak memory (ru_maxrss) is its own; the
baseline row is an empty spawned process for comparison. References measured in the same run:
a brute-force search over all orders on tiny histories (what the WGL search replaces), and a
plain loop over the same operations (the floor for any checker in Python) or JSON parsing of
the file (the floor for `harness check` on a history.jsonl).

    .venv/bin/python bench/checker.py            # everything (~5 minutes on 2 cores)
    .venv/bin/python bench/checker.py --quick    # smaller sizes
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Porcupine's Jepsen-style benchmark shape: about 100 operations by 20 processes per history.
PORCUPINE_OPS, PORCUPINE_PROCS, PORCUPINE_HISTORIES = 100, 20, 200
# The linearizability budget per case: long enough for every case below, a bound if one regresses.
TIME_LIMIT_S = 60.0


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _case_baseline() -> dict[str, Any]:
    return {"peak_mb": _rss_mb()}


def _case_linearizable(model: str, n_ops: int, clients: int, keys: int, info: float, seed: int) -> dict[str, Any]:
    from checkers import linearizable
    from checkers.synth import generate

    ops = generate(model, n_ops=n_ops, clients=clients, keys=keys, info_rate=info, seed=seed)
    t0 = time.perf_counter()
    loop = sum(1 for op in ops if op.type == "ok" and op.value is not None)
    t_loop = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = linearizable.check(ops, {"model": model, "time_limit": TIME_LIMIT_S})
    t = time.perf_counter() - t0
    return {"valid": r.valid, "s": t, "loop_s": t_loop + 1e-9 * (loop & 0), "steps": r.counts["steps"],
            "events": len(ops), "peak_mb": _rss_mb(), "reason": r.details.get("reason")}


def _stale_mutation(ops: list[Any]) -> bool:
    """Make one read (from the middle on) return a value overwritten before it began."""
    inv: dict[int, Any] = {}
    pending: dict[Any, Any] = {}
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
                return True
    return False


def _case_porcupine(seed0: int, mutate: str) -> dict[str, Any]:
    from checkers import linearizable
    from checkers.synth import generate

    times = []
    verdicts = []
    for s in range(PORCUPINE_HISTORIES):
        ops = generate("register", n_ops=PORCUPINE_OPS, clients=PORCUPINE_PROCS, keys=1, info_rate=0.05, seed=seed0 + s)
        if mutate == "phantom":
            # One read (in the middle) returns a value nobody wrote: the history is not linearizable.
            reads = [op for op in ops if op.type == "ok" and op.f == "read"]
            reads[len(reads) // 2].value = -1
        elif mutate == "stale" and not _stale_mutation(ops):
            continue
        t0 = time.perf_counter()
        r = linearizable.check(ops, {"model": "register", "time_limit": TIME_LIMIT_S})
        times.append(time.perf_counter() - t0)
        verdicts.append(r.valid)
    times.sort()
    return {"median_ms": statistics.median(times) * 1e3, "p90_ms": times[int(len(times) * 0.9)] * 1e3,
            "max_ms": times[-1] * 1e3, "valid": sum(v is True for v in verdicts), "n": len(times),
            "under_1ms": sum(t < 1e-3 for t in times), "peak_mb": _rss_mb()}


def _case_brute(seed: int) -> dict[str, Any]:
    from checkers import linearizable
    from checkers.synth import generate

    ours = brute = 0.0
    agree = 0
    n = 30
    for s in range(n):
        ops = generate("register", n_ops=8, clients=4, keys=1, info_rate=0.0, fail_rate=0.0, seed=seed + s)
        t0 = time.perf_counter()
        v = linearizable.check(ops, {"model": "register"}).valid
        ours += time.perf_counter() - t0
        t0 = time.perf_counter()
        b = _brute_register(ops)
        brute += time.perf_counter() - t0
        agree += v is b
    return {"ours_ms": ours / n * 1e3, "brute_ms": brute / n * 1e3, "agree": agree, "n": n, "peak_mb": _rss_mb()}


def _brute_register(ops: list[Any]) -> bool:
    """Every permutation of the calls, checked for real-time order and register semantics."""
    pending: dict[Any, tuple[int, Any]] = {}
    calls = []
    for pos, op in enumerate(ops):
        if op.type == "invoke":
            pending[op.process] = (pos, op)
        elif op.type == "ok":
            ipos, inv = pending.pop(op.process)
            calls.append((ipos, pos, inv.f, inv.value, op.value))
        else:
            pending.pop(op.process)
    for order in itertools.permutations(calls):
        state = None
        good = True
        for i, (ip, rp, f, arg, out) in enumerate(order):
            if any(later[1] < ip for later in order[i + 1:]):
                good = False
                break
            if f == "read":
                if out != state:
                    good = False
                    break
            elif f == "write":
                state = arg
            elif f == "cas":
                if state != arg[0]:
                    good = False
                    break
                state = arg[1]
        if good:
            return True
    return False


def _case_linear(checker: str, path: str, n_events: int, params: dict[str, Any]) -> dict[str, Any]:
    from checkers import lww, perf, quorum, sets
    from harness.history import HistoryFile, read_history

    fn = {"lww": lww.check, "quorum": quorum.check, "set": sets.check, "perf": perf.check}[checker]
    # What `harness check` does: the checker reads the file (line records, not Ops).
    t0, c0 = time.perf_counter(), time.process_time()
    r = fn(HistoryFile(path), params)
    streamed, streamed_cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_streamed = _rss_mb()
    # The same over a stream of Ops (read_history), what any other caller passes.
    c0 = time.process_time()
    r3 = fn(read_history(path), params)
    ops_cpu = time.process_time() - c0
    t0 = time.perf_counter()
    ops = list(read_history(path))
    t_parse = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    r2 = fn(ops, params)
    t, t_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    sum(1 for op in ops if op.type == "ok" and op.value is not None)
    t_loop = time.perf_counter() - t0
    return {"valid": r.valid and r2.valid and r3.valid, "streamed_s": streamed, "peak_streamed_mb": peak_streamed,
            "streamed_cpu_s": streamed_cpu, "check_cpu_s": t_cpu, "ops_cpu_s": ops_cpu,
            "parse_s": t_parse, "check_s": t, "loop_s": t_loop, "events": n_events, "peak_mb": _rss_mb()}


def _write_history(model: str, n_ops: int, clients: int, keys: int, path: str, seed: int) -> int:
    from checkers.synth import generate
    from harness.history import write_jsonl

    ops = generate(model, n_ops=n_ops, clients=clients, keys=keys, info_rate=0.05, seed=seed, nemesis_every=20_000)
    return write_jsonl(ops, path)


def run(pool: ProcessPoolExecutor, fn: Any, *args: Any) -> dict[str, Any]:
    """Run one case in a fresh process and return its figures."""
    return pool.submit(fn, *args).result()


def main(argv: list[str] | None = None) -> int:
    """Print every figure."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--porcupine", action="store_true", help="only the Porcupine-style figures")
    ap.add_argument("--linear", action="store_true", help="only the linear-time checkers on history files")
    args = ap.parse_args(argv)
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1)
    base = run(pool, _case_baseline)
    print(f"baseline: an empty spawned Python process peaks at {base['peak_mb']:.0f} MB RSS\n")

    if args.linear:
        _linear_checkers(pool, args.quick)
        pool.shutdown()
        return 0
    print("== Linearizability, Porcupine-style: register histories of ~100 ops by 20 processes, 5% info ==")
    for mutate in ("", "stale", "phantom"):
        p = run(pool, _case_porcupine, 1, mutate)
        what = {"": "valid", "stale": "invalid (one stale read)",
                "phantom": "invalid (one read of a value never written)"}[mutate]
        print(f"{p['n']} {what} histories: median {p['median_ms']:.2f} ms, p90 {p['p90_ms']:.2f} ms, "
              f"max {p['max_ms']:.1f} ms; {p['under_1ms']}/{p['n']} under 1 ms; verdicts valid: {p['valid']}")
    print("   targets: well under 1 ms for most, < 150 ms for the hardest (Porcupine's figures)\n")
    if args.porcupine:
        pool.shutdown()
        return 0

    b = run(pool, _case_brute, 100)
    print(f"reference: brute force over all orders, 8-op register histories: {b['brute_ms']:.2f} ms each vs "
          f"WGL {b['ours_ms']:.3f} ms ({b['brute_ms'] / max(b['ours_ms'], 1e-9):.0f}x); verdicts agree "
          f"{b['agree']}/{b['n']}\n")

    print("== Linearizability on larger histories (5% info, 2% fail) ==")
    print(f"{'model':<9}{'ops':>8}{'clients':>8}{'keys':>6}  {'verdict':<8}{'check s':>9}{'ops/s':>10}"
          f"{'steps':>10}{'loop s':>8}{'peak MB':>9}")
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    for model, keys in (("register", 1), ("register", 100), ("kv", 100), ("kv", 1)):
        for n in sizes:
            for clients in (5, 50):
                if model == "kv" and keys == 1 and n > 1_000:
                    continue  # one list appended to by every client: see the notes
                r = run(pool, _case_linearizable, model, n, clients, keys, 0.05, 1)
                verdict = {True: "valid", False: "INVALID", "unknown": "unknown"}[r["valid"]]
                print(f"{model:<9}{n:>8}{clients:>8}{keys:>6}  {verdict:<8}{r['s']:>9.3f}{n / r['s']:>10.0f}"
                      f"{r['steps']:>10}{r['loop_s']:>8.3f}{r['peak_mb']:>9.0f}"
                      + (f"  ({r['reason']})" if r["reason"] else ""))
    print()
    _linear_checkers(pool, args.quick)
    print(NOTES)
    pool.shutdown()
    return 0


def _linear_checkers(pool: ProcessPoolExecutor, quick: bool) -> None:
    """The linear-time checkers on generated history files, in memory and streamed from disk."""
    n_lin = 200_000 if quick else 1_000_000
    print(f"== Linear-time checkers on {n_lin:,} history lines ==")
    with tempfile.TemporaryDirectory() as d:
        reg = os.path.join(d, "register.jsonl")
        st = os.path.join(d, "set.jsonl")
        n_reg = run(pool, _write_history, "register", n_lin // 2, 20, 1_000, reg, 2)
        n_set = run(pool, _write_history, "set", n_lin // 2, 20, n_lin // 50, st, 3)
        print(f"{'checker':<9}{'lines':>10}  {'in-memory s':>11}{'lines/s':>10}  {'streamed s':>10}{'lines/s':>10}"
              f"{'peak MB':>9}  {'parse s':>8}{'loop s':>8}  {'CPU lines/s: in-memory':>22}{'streamed':>10}{'Op stream':>10}")
        for name, path, n, params in (
            ("lww", reg, n_reg, {}),
            ("quorum", reg, n_reg, {"replication_factor": 3, "read_cl": "QUORUM", "write_cl": "QUORUM"}),
            ("set", st, n_set, {}),
            ("perf", reg, n_reg, {}),
        ):
            r = run(pool, _case_linear, name, path, n, params)
            print(f"{name:<9}{n:>10}  {r['check_s']:>11.3f}{n / r['check_s']:>10.0f}  {r['streamed_s']:>10.3f}"
                  f"{n / r['streamed_s']:>10.0f}{r['peak_streamed_mb']:>9.0f}  {r['parse_s']:>8.3f}{r['loop_s']:>8.3f}"
                  f"  {n / r['check_cpu_s']:>22.0f}{n / r['streamed_cpu_s']:>10.0f}{n / r['ops_cpu_s']:>10.0f}"
                  + ("" if r["valid"] else "  (found anomalies!)"))


NOTES = """
notes:
- ops/s for linearizability counts completed operations; "lines" for the linear checkers counts
  history lines (an operation is two lines: invoke and completion).
- "in-memory" times the checker alone on a list of Ops; "streamed" includes reading history.jsonl
  as `harness check` does (a HistoryFile: lww, quorum, set and perf read the parsed line records
  without building an Op per line); "Op stream" is the same checker over read_history's Ops
  (CPU); "parse s" is list(read_history(...)); "peak MB" is the streamed run's peak RSS of its
  own process (compare with the baseline above).
- "CPU lines/s" divides by the process's CPU time instead of wall time: on a loaded machine it
  is the steadier figure (the wall-time figures wait for other processes' turns).
- "loop s" is a plain Python loop over the same Ops: the floor for any Python checker.
- kv with one key is one list that every client appends to: the state is the whole list, so
  each order of concurrent appends is a different state and the overwrite pruning that makes
  registers fast does not apply; it is run at 1,000 operations only, to show where the search
  stops being practical (Elle's list-append analysis is the tool for that workload)."""


if __name__ == "__main__":
    sys.exit(main())
