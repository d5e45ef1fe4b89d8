"""Synthetic run directories for the report's tests and benchmark (no cluster needed).

Histories come from checkers.synth (linearizable by construction), then get what a real run has:
nodes and consistency levels, nemesis windows, clock offsets, node logs, and results.json from
the real linearizability checker. ``kind`` picks the scenario: ``valid``, ``linearizability``
(one stale read makes a key non-linearizable), ``clock`` (clock nemesis and last-write-wins
timestamp inversions) or ``big`` (100,000 operations).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from checkers import linearizable, synth
from checkers.result import Anomaly, Result, merge_validity
from harness import store
from harness.history import NEMESIS, Op, write_jsonl

# A value that must be shown as text, never parsed as markup, wherever the report shows values.
HOSTILE_VALUE = '</script><script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
NODES = ["n1", "n2", "n3", "n4", "n5"]
# synth's time unit is treated as microseconds: its operations then last 0.05-40 ms, as ours do.
_SYNTH_TO_NS = 1000


def make_run(root: Path, kind: str, n_ops: int | None = None, seed: int = 7) -> Path:
    """Create a run directory of the given kind under ``root``; returns its path."""
    if kind not in ("valid", "linearizability", "clock", "big"):
        raise ValueError(f"unknown sample kind {kind!r}")
    n = n_ops or (100_000 if kind == "big" else 600)
    rng = random.Random(seed)
    clients = 10
    ops = synth.generate("register", n_ops=n, clients=clients, keys=5 if kind != "big" else 50,
                         info_rate=0.03, fail_rate=0.02, seed=seed)
    _jepsen_processes(ops, clients)
    for op in ops:
        op.time *= _SYNTH_TO_NS
        if op.process != NEMESIS:
            op.node = NODES[op.process % len(NODES)]
            op.cl = "QUORUM"
    end_ns = max(op.time for op in ops)
    nemesis: list[Op] = []
    anomalies: list[Anomaly] = []
    if kind == "linearizability":
        _stale_read(ops)
    if kind in ("valid", "linearizability", "big"):
        nemesis += _partition_windows(end_ns, rng)
    if kind == "clock":
        nemesis += _clock_windows(end_ns)
        anomalies = _lww_inversions(ops)
    if kind == "valid":
        # A hostile value recorded by a client: the report must show it as text.
        first = next(op for op in ops if op.f == "write" and op.type == "invoke")
        for op in ops:
            if op.process == first.process and op.index >= first.index:
                op.value = HOSTILE_VALUE
                op.extra["note"] = "<b>not bold</b>"
                if op.type != "invoke":
                    break
    ops = sorted(ops + nemesis, key=lambda o: (o.time, o.process == NEMESIS))
    for i, op in enumerate(ops):
        op.index = i
    run = root / f"sample-{kind}" / time.strftime("%Y%m%dT%H%M%S")
    n_try = 1
    while run.exists():
        n_try += 1
        run = run.with_name(run.name.split("-")[0] + f"-{n_try}")
    run.mkdir(parents=True)
    start = time.time() - end_ns / 1e9 - 5
    write_jsonl(ops, run / store.HISTORY_FILE)
    test = {
        "name": f"sample-{kind}",
        "options": {"workload": "register", "nemesis": "clock" if kind == "clock" else "partition",
                    "nodes": None, "concurrency": f"{clients}", "read_cl": "QUORUM", "write_cl": "QUORUM",
                    "replication_factor": 3, "time_limit": round(end_ns / 1e9, 1)},
        "seed": seed,
        "concurrency": clients,
        "params": {"model": "register", "workload": "register", "nodes": len(NODES)},
        "versions": {"python": "3", "ringlab": "0.1.0"},
        "start_time": start,
        "history_start_time": start,
        "end_time": start + end_ns / 1e9 + 1,
        "nodes": {n: {} for n in NODES},
    }
    store.write_json(run / store.TEST_FILE, test)
    results = _results(ops, kind, anomalies)
    store.write_json(run / store.RESULTS_FILE, results)
    _node_logs(run, start, end_ns, rng, hostile=kind == "valid")
    return run


def _jepsen_processes(ops: list[Op], clients: int) -> None:
    """Renumber processes as Jepsen (and harness.generator) do: a worker's next process is old + concurrency."""
    mapping = {p: p for p in range(clients)}
    freed: list[int] = []   # workers whose process ended with info, oldest first
    worker_of = {p: p for p in range(clients)}
    for op in ops:
        if op.process == NEMESIS:
            continue
        if op.process not in mapping:
            w = freed.pop(0)
            mapping[op.process] = mapping_for = max(p for p, wk in worker_of.items() if wk == w) + clients
            worker_of[mapping_for] = w
        op.process = mapping[op.process]
        if op.type == "info":
            freed.append(worker_of[op.process])


def _results(ops: list[Op], kind: str, anomalies: list[Anomaly]) -> dict[str, Any]:
    res: list[Result] = []
    if kind == "big":
        counts = {"ops": sum(1 for o in ops if o.process != NEMESIS and o.type != "invoke")}
        res.append(Result("perf", True, counts, [], {"note": "synthetic history, not checked"}))
    else:
        res.append(linearizable.check(ops, {"model": "register", "time_limit": 20}))
    if kind == "clock":
        res.append(Result("lww", False, {"timestamp-inversions": len(anomalies)}, anomalies))
    res.append(Result("quorum", "unknown" if kind == "clock" else True, {"reads": 1}, [],
                      {"reason": "sample"} if kind == "clock" else {}))
    out = {r.name: r.to_json() for r in res}
    return {"valid": merge_validity([r.valid for r in res]), "results": out}


def _stale_read(ops: list[Op]) -> None:
    """Make one late ok read return a value that an earlier completed write already overwrote."""
    pending: dict[Any, Op] = {}
    writes: dict[Any, list[tuple[int, int, Any]]] = {}  # key → (invoke time, completion time, value)
    pairs: list[tuple[Op, Op]] = []
    for op in ops:
        if op.type == "invoke":
            pending[op.process] = op
        else:
            inv = pending.pop(op.process)
            pairs.append((inv, op))
            if op.f == "write" and op.type == "ok":
                writes.setdefault(op.key, []).append((inv.time, op.time, op.value))
    for inv, comp in reversed(pairs[len(pairs) // 2:]):
        if comp.f != "read" or comp.type != "ok":
            continue
        done = sorted(w for w in writes.get(comp.key, []) if w[1] < inv.time)
        for older, newer in zip(done, done[1:]):
            if newer[0] > older[1] and older[2] != comp.value:
                comp.value = older[2]
                return
    raise RuntimeError("no read to make stale")


def _partition_windows(end_ns: int, rng: random.Random) -> list[Op]:
    out = []
    t = end_ns // 6
    while t + end_ns // 8 < end_ns:
        a = rng.sample(NODES, 2)
        b = [n for n in NODES if n not in a]
        value = {"shape": "majority", "grudge": {n: (b if n in a else a) for n in NODES},
                 "description": f"cut {{{' '.join(a)}}} from {{{' '.join(b)}}}"}
        out += [Op(0, t, NEMESIS, "invoke", "start-partition"),
                Op(0, t + 40_000_000, NEMESIS, "info", "start-partition", value=value, extra={"action": "start-partition"}),
                Op(0, t + end_ns // 10, NEMESIS, "invoke", "stop-partition"),
                Op(0, t + end_ns // 10 + 30_000_000, NEMESIS, "info", "stop-partition", value="network healed",
                   extra={"action": "stop-partition"})]
        t += end_ns // 4
    return out


def _clock_windows(end_ns: int) -> list[Op]:
    out = []
    step = end_ns // 5
    for j, t in enumerate(range(step // 2, end_ns - step // 2, step)):
        deltas = {"n2": 250 * (j + 1), "n4": -120 * (j + 1)}
        offsets = {n: deltas.get(n, 0) * 1000 for n in NODES}
        out += [Op(0, t, NEMESIS, "invoke", "start-clock"),
                Op(0, t + 5_000_000, NEMESIS, "info", "start-clock", value={"delta_ms": deltas, "offsets": offsets},
                   extra={"action": "bump-clock"}),
                Op(0, t + step // 2, NEMESIS, "invoke", "stop-clock"),
                Op(0, t + step // 2 + 5_000_000, NEMESIS, "info", "stop-clock",
                   value={"nodes": sorted(deltas), "offsets": {n: 0 for n in NODES}}, extra={"action": "reset-clock"})]
    return out


def _lww_inversions(ops: list[Op]) -> list[Anomaly]:
    """Pairs of sequential writes to one key where the later write got the smaller timestamp."""
    pending: dict[Any, Op] = {}
    last: dict[Any, tuple[Op, Op]] = {}
    found: list[Anomaly] = []
    for op in ops:
        if op.type == "invoke":
            pending[op.process] = op
            continue
        inv = pending.pop(op.process)
        if op.f != "write" or op.type != "ok":
            continue
        prev = last.get(op.key)
        if prev is not None and prev[1].time < inv.time and len(found) < 6 and op.index % 7 == 0:
            # Skew this write's timestamp below its predecessor's, as a node with a slow clock would.
            op.timestamp = (prev[1].timestamp or 0) - 250_000
            found.append(Anomaly(
                "lww-timestamp-inversion",
                f"write of {op.value!r} to key {op.key!r} began after the write of {prev[1].value!r} completed, "
                f"but got an older timestamp ({op.timestamp} < {prev[1].timestamp} µs), so last-write-wins "
                f"keeps the earlier value: the later write is silently lost.",
                [prev[0], prev[1], inv, op], key=op.key,
                details={"delta_us": op.timestamp - (prev[1].timestamp or 0), "node": op.node}))
        last[op.key] = (inv, op)
    return found


def _node_logs(run: Path, start: float, end_ns: int, rng: random.Random, hostile: bool) -> None:
    for n in NODES:
        d = run / "nodes" / n / "data"
        d.mkdir(parents=True)
        lines = []
        t = start - 2
        while t < start + end_ns / 1e9 + 1:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"
            msg = rng.choice(["gossip: heartbeat from peers", "coordinator: read repair sent",
                              "storage: memtable flushed to SSTable", "messaging: connection reset by peer",
                              "failure detector: phi above threshold"])
            lines.append(f"{stamp} INFO node={n} node.server: {msg}")
            t += rng.uniform(0.05, 0.4)
        if hostile:
            lines.append(f"{lines[-1][:23]} WARNING node={n} node.server: odd key {HOSTILE_VALUE}")
        text = "\n".join(lines) + "\n"
        (d / "node.log").write_text(text)
        (run / "nodes" / n / "stdout.log").write_text(text + "Traceback (most recent call last): example\n")
        # A binary commit log segment that is also named *.log: the report must skip it.
        (d / "CommitLog-0000000000000001.log").write_bytes(b"\0\1\2binary" * 10)


def main() -> None:
    """python -m harness.report.sample ROOT KIND [N]: create one sample run and render it."""
    import sys

    from harness.report.render import write_report

    root, kind = Path(sys.argv[1]), sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else None
    run = make_run(root, kind, n)
    print(write_report(run))
    print(json.dumps({"run": str(run)}))


if __name__ == "__main__":
    main()
