"""`harness sim --seed N --shrink`: the smallest campaign of a failing seed that still fails.

A simulated seed is deterministic, so a smaller configuration of the same seed is a new,
reproducible experiment: fewer kinds of fault, a shorter run, fewer clients, fewer keys, fewer
nodes. Shrinking tries such reductions greedily, one at a time in a fixed order, and keeps the
first that still fails in the same way (at least one of the checkers that failed the original
fails again); it repeats until no reduction fails or the trial budget is spent. Candidates of
one round run in parallel, but the one kept is always the first in that order, so the result
does not depend on ``--jobs``. Changing any parameter changes the whole schedule, so a smaller
failing configuration is a different run that shows the same kind of bug, not a cut-down copy
of the original's history (as Jepsen has no shrinking at all, and property-based testers shrink
inputs, not schedules).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

# Trials a shrink runs at most (the original included): each is a whole simulated campaign.
MAX_TRIALS = 40
# Nothing is shrunk below these: a campaign shorter than a few fault windows shows little.
MIN_TIME_LIMIT_S = 4.0
MIN_KEYS = 1


def reductions(opts: Any) -> list[tuple[str, Any]]:
    """One-step smaller configurations of ``opts``, in the order they are tried: (change, opts)."""
    from harness.generator import parse_concurrency
    from nemesis import faults

    out: list[tuple[str, Any]] = []
    kinds = faults.parse_nemeses(opts.nemesis)
    if kinds:
        out.append(("--nemesis none", replace(opts, nemesis="none")))
    if len(kinds) > 1:
        for k in kinds:
            rest = ",".join(x for x in kinds if x != k)
            out.append((f"--nemesis {rest}", replace(opts, nemesis=rest)))
    if opts.time_limit / 2 >= MIN_TIME_LIMIT_S:
        t = round(opts.time_limit / 2, 1)
        out.append((f"--time-limit {t:g}", replace(opts, time_limit=t)))
    nodes = opts.node_count() or 1
    clients = parse_concurrency(opts.concurrency, nodes)
    if clients > 1:
        c = max(1, clients // 2)
        out.append((f"--concurrency {c}", replace(opts, concurrency=str(c))))
    if opts.key_count // 2 >= MIN_KEYS:
        k = opts.key_count // 2
        out.append((f"--key-count {k}", replace(opts, key_count=k)))
    if nodes > max(3, opts.replication_factor):
        n = max(3, opts.replication_factor)
        # The client count follows the old cluster's size, not the new one's (2n of 5 is 10).
        out.append((f"--nodes {n}", replace(opts, nodes=n, concurrency=str(clients))))
    valid = []
    for change, o in out:
        try:
            o.validate()
        except ValueError:
            continue  # e.g. a membership nemesis that needs more nodes than are left
        valid.append((change, o))
    return valid


def _same_failure(r: dict[str, Any], wanted: set[str]) -> bool:
    return r["valid"] is False and bool(wanted & set(r.get("failed_checkers") or []))


def shrink(opts: Any, settings: Any, jobs: int) -> int:
    """Shrink seed ``opts.seed``; prints each trial and the command that replays the smallest failure."""
    from harness import simcli

    base = simcli.new_batch_dir(opts, "shrink")
    with simcli._pool(jobs) as pool, simcli._Interrupts():
        return _shrink(opts, settings, jobs, base, pool)


def _shrink(opts: Any, settings: Any, jobs: int, base: Path, pool: Any) -> int:
    from harness import simcli, store

    trials = [0]

    def run(batch: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        payloads = []
        for _, o in batch:
            trials[0] += 1
            payloads.append(simcli._payload(o, settings, base / f"trial-{trials[0]}", quiet=True, lazy_report=True))
        return pool.map(simcli._job, payloads)

    print(f"shrinking seed {opts.seed} (at most {MAX_TRIALS} simulated campaigns): {base}")
    [first] = run([("original", opts)])
    _row(1, "original", first)
    if first["valid"] is not False:
        print(f"seed {opts.seed} is {simcli._verdict(first['valid'])}: nothing to shrink")
        return simcli._exit([first["valid"]])
    wanted = set(first.get("failed_checkers") or [])
    best, best_row, steps = opts, first, []
    while trials[0] < MAX_TRIALS:
        candidates = reductions(best)[: MAX_TRIALS - trials[0]]
        kept = None
        # In order, `jobs` at a time: the first candidate that fails the same way is kept.
        for i in range(0, len(candidates), jobs):
            chunk = candidates[i:i + jobs]
            first_trial = trials[0] + 1
            rows = run(chunk)
            for j, ((change, o), r) in enumerate(zip(chunk, rows)):
                _row(first_trial + j, change, r)
            for (change, o), r in zip(chunk, rows):
                if _same_failure(r, wanted):
                    kept = (change, o, r)
                    break
            for r in rows:
                if kept is None or r is not kept[2]:
                    shutil.rmtree(r["run_dir"], ignore_errors=True)
            if kept is not None:
                break
        if kept is None:
            break
        change, best, row = kept
        if best_row is not first:
            shutil.rmtree(best_row["run_dir"], ignore_errors=True)
        best_row = row
        steps.append(change)
    store.write_json(base / "shrink.json", {"seed": opts.seed, "original": asdict(opts), "smallest": asdict(best),
                                            "steps": steps, "trials": trials[0], "failed_checkers": sorted(wanted)})
    command = simcli.replay_command(best, settings, opts.seed)
    if not steps:
        print(f"no smaller configuration of seed {opts.seed} fails the same way ({trials[0]} trials)")
    else:
        print(f"smallest failing configuration after {trials[0]} trials ({', '.join(steps)}): "
              f"{best_row.get('ops', '?')} operations, {best_row['virtual_s']:.1f} virtual s; "
              f"failed: {', '.join(best_row.get('failed_checkers') or [])}")
    print(f"run directory: {best_row['run_dir']}")
    print(f"replay: {command}")
    return 1


def _row(trial: int, change: str, r: dict[str, Any]) -> None:
    from harness import simcli

    failed = ",".join(r.get("failed_checkers") or []) or "-"
    print(f"{trial:>5}  {change:<34} {simcli._verdict(r['valid']):<8} {failed:<28} "
          f"{r.get('ops', 0):>6} ops {r['virtual_s']:>6.1f} virtual s {r['wall_s']:>6.2f} wall s", flush=True)
