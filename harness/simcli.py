"""`harness sim`: campaigns against a simulated cluster; one seed, a determinism check, or a sweep.

Every simulation runs in a worker process started with ``PYTHONHASHSEED=0`` (string hashing,
and so set iteration, is the same in every run), one worker per core for sweeps. A seed's run
directory is a normal run directory (``test.json`` says ``"deploy": "sim"``); a sweep keeps the
run directories of failing seeds only and a ``sweep.json`` summary for all.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Options of `harness run` that mean the same thing in sim (the rest are about real machines).
SIM_RUN_OPTIONS = ("workload", "nemesis", "nemesis_interval", "partition", "targets", "time_limit", "concurrency",
                   "rate", "nodes", "datacenters", "racks", "replication_factor", "read_cl", "write_cl", "key_count", "ops_per_key", "delete_fraction",
                   "value_order", "client_timestamps", "memtable_flush_kb", "gc_grace", "max_hint_window", "recovery_time", "commitlog_sync", "read_repair", "final_repair", "no_restart_check", "validation_faults", "test_name", "store",
                   "coverage")
# Nemeses the simulated world can apply (the data-path ones need real processes and files).
SIM_NEMESES = ("partition", "kill", "pause", "clock", "latency", "membership", "flush-compact", "repair")
# What a sweep's seeds may look like: at most this many in one command.
MAX_SEEDS = 100_000
# The cyclic garbage collector's first threshold in a simulation's worker (CPython's is 700):
# a campaign makes millions of short-lived objects, nearly all freed by reference counting, and
# collecting every 700 net allocations cost about a tenth of a seed's CPU. A 60 s campaign
# leaves some 20 MB of cyclic garbage in all, so collecting rarely costs little memory.
GC_THRESHOLD = 200_000


@dataclass
class SimSettings:
    """What sim adds to the campaign's options."""

    crash: str = "process"
    tear: bool = False
    loss: float = 0.0


def register(sub: Any) -> None:
    """Register `harness sim` on the harness parser."""
    from harness.cli import add_command, add_register_options, add_topology_options
    from harness.run import VALIDATION_FAULTS, RunOptions
    from harness.run_options import DEFAULT_OPS_PER_KEY
    from harness.workloads import WORKLOADS

    d = RunOptions()
    p = add_command(sub, "sim", _cmd_sim,
                    "run campaigns against a simulated cluster: the real node code in one process under "
                    "virtual time, deterministic per seed (exit 0 valid, 1 invalid, 2 unknown, 254 bad arguments)")
    p.add_argument("--workload", choices=list(WORKLOADS), help=f"what the clients do (default {d.workload})")
    p.add_argument("--nemesis", help=f"faults: comma list of {','.join(SIM_NEMESES)}, or all / none (default {d.nemesis})")
    p.add_argument("--nemesis-interval", type=float, metavar="S", help="virtual seconds between fault changes (default: fit at least 3 windows of each nemesis into the time limit, at most 10 s apart)")
    p.add_argument("--partition", help=f"partition shapes (as harness run; default {d.partition})")
    p.add_argument("--targets", help=f"how many nodes kill and pause hit (as harness run; default {d.targets})")
    p.add_argument("--time-limit", type=float, metavar="S", help=f"virtual seconds of workload (default {d.time_limit:g})")
    p.add_argument("--concurrency", help=f"client processes: a number, or Nn for N per node (default {d.concurrency})")
    p.add_argument("--rate", type=float, help=f"target operations per virtual second, 0 = unthrottled (default {d.rate:g})")
    p.add_argument("--nodes", type=int, help="cluster size (default 5)")
    add_topology_options(p, d.replication_factor)
    p.add_argument("--read-cl", type=str.upper, help=f"read consistency level (default {d.read_cl})")
    p.add_argument("--write-cl", type=str.upper, help=f"write consistency level (default {d.write_cl})")
    p.add_argument("--key-count", type=int, help=f"keys in use at once (default {d.key_count})")
    p.add_argument("--ops-per-key", type=int, help=f"register, row and batch workloads: operations before a key is retired (default {DEFAULT_OPS_PER_KEY})")
    p.add_argument("--delete-fraction", type=float, metavar="F",
                   help="register, row and batch workloads: the share of writes that are deletes (as harness run)")
    add_register_options(p)
    p.add_argument("--memtable-flush-kb", type=int, metavar="KB",
                   help=f"flush each memtable past KB (and commit log segments as small), as harness run (default "
                        f"{d.memtable_flush_kb}; 0: the store's own 64 MB, so only the flush-compact nemesis flushes)")
    p.add_argument("--gc-grace", type=int, metavar="S", help=f"the table's gc_grace_seconds (default {d.gc_grace})")
    p.add_argument("--max-hint-window", type=float, metavar="S",
                   help="the nodes' max_hint_window: no hints for a target convicted DOWN longer than S "
                        "(default: the store's 3 hours)")
    p.add_argument("--recovery-time", type=float, metavar="S", help=f"virtual seconds after healing before final reads (default {d.recovery_time:g})")
    p.add_argument("--commitlog-sync", choices=["periodic", "batch"], help=f"the nodes' commit log sync mode (default {d.commitlog_sync})")
    p.add_argument("--read-repair", choices=["BLOCKING", "NONE"], help=f"the table's read repair (default {d.read_repair})")
    p.add_argument("--final-repair", action="store_true", default=None,
                   help="after the final reads, drain the hints and repair every node (anti-entropy), then read "
                        "every replica: they must all hold the same data")
    p.add_argument("--no-restart-check", action="store_true", default=None,
                   help="skip the last step: killing and restarting every node and reading every key again "
                        "(what each node held must come back from its files)")
    p.add_argument("--fault", dest="validation_faults", action="append", metavar="SWITCH",
                   help="turn on a node validation fault switch (repeatable): " + ", ".join(VALIDATION_FAULTS))
    p.add_argument("--test-name", help="name of the test in the store (default sim-WORKLOAD-NEMESIS)")
    p.add_argument("--store", metavar="DIR", help=f"where runs are stored (default {d.store})")
    p.add_argument("--seed", type=int, help="the seed of one simulation (default 1)")
    p.add_argument("--seeds", metavar="A-B", help="sweep seeds A..B (or a comma list), one worker process per core")
    p.add_argument("--jobs", type=int, help="worker processes for a sweep (default: the number of cores)")
    p.add_argument("--shrink", action="store_true",
                   help="with a failing --seed: look for the smallest configuration of that seed that still "
                        "fails the same way (fewer fault kinds, shorter, fewer clients, keys, nodes) and print "
                        "the command that replays it")
    p.add_argument("--check-determinism", action="store_true",
                   help="run the seed twice and compare the trace (every message and timer) and the history")
    p.add_argument("--crash", choices=["process", "power"],
                   help="what a kill does to the disk: process (SIGKILL: page cache survives, default) or "
                        "power (only fsynced bytes survive)")
    p.add_argument("--tear", action="store_true", help="with --crash power: part of the first unsynced write may survive")
    p.add_argument("--loss", type=float, metavar="P", help="probability that a segment is lost and retransmitted (default 0)")
    p.add_argument("--coverage", action="store_true", default=None,
                   help="measure node/ with coverage.py (one --seed): coverage/ (HTML) in the run directory, "
                        "the node/ table in results.json and the report")
    p.add_argument("--junit-xml", metavar="FILE",
                   help="also write a JUnit XML file: one test case per seed, rewritten as seeds finish "
                        "(a failing seed's case says how to replay it)")


def parse_seeds(text: str) -> list[int]:
    """``1-200`` → 1..200, ``3,5,9`` → those; ValueError naming the bad text."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1) if not part.startswith("-") else part.rsplit("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(f"--seeds must be A-B or a comma list of integers, got {text!r}") from None
    if not out:
        raise ValueError(f"--seeds names no seed: {text!r}")
    if len(out) > MAX_SEEDS:
        raise ValueError(f"--seeds names {len(out)} seeds; at most {MAX_SEEDS} per sweep")
    return out


def build_options(args: argparse.Namespace) -> tuple[Any, SimSettings]:
    """RunOptions (deploy sim) and SimSettings from the parsed flags; ValueError names a bad one."""
    from harness.run import RunOptions

    from nemesis import faults

    values: dict[str, Any] = {"deploy": "sim"}
    for key in SIM_RUN_OPTIONS:
        v = getattr(args, key, None)
        if v is not None:
            values[key] = v
    opts = RunOptions(**values)
    # `all` here means every simulated nemesis (the data-path ones need real processes and files).
    parts = [p.strip() for p in opts.nemesis.split(",") if p.strip()]
    if "all" in parts:
        opts.nemesis = ",".join(n for p in parts for n in
                                ([x for x in faults.NEMESIS_ALIASES["all"] if x in SIM_NEMESES] if p == "all" else [p]))
    for name in faults.parse_nemeses(opts.nemesis):
        if name not in SIM_NEMESES:
            raise ValueError(f"--nemesis {name} is not simulated (sim supports {', '.join(SIM_NEMESES)})")
    if opts.commitlog_sync == "group":
        raise ValueError("--commitlog-sync group is not simulated (its window waits on a real condition variable)")
    if opts.test_name is None:
        opts.test_name = "sim-" + opts.name()
    opts.validate()
    settings = SimSettings(crash=args.crash or "process", tear=bool(args.tear), loss=args.loss or 0.0)
    if not 0 <= settings.loss < 1:
        raise ValueError(f"--loss must be in [0, 1), got {settings.loss}")
    if settings.tear and settings.crash != "power":
        raise ValueError("--tear needs --crash power")
    return opts, settings


def _cmd_sim(args: argparse.Namespace) -> int:
    from harness.cli import UsageError
    from harness.preflight import SetupMistake, check_paths

    try:
        opts, settings = build_options(args)
        seeds = parse_seeds(args.seeds) if args.seeds else None
        if seeds is not None and args.seed is not None:
            raise ValueError("give --seed or --seeds, not both")
        if args.jobs is not None and args.jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
        if seeds is not None and args.check_determinism:
            raise ValueError("--check-determinism takes one --seed")
        if args.shrink and (seeds is not None or args.check_determinism or args.junit_xml or opts.coverage):
            raise ValueError("--shrink takes one --seed (not --seeds, --check-determinism, --junit-xml or --coverage)")
        if opts.coverage and (seeds is not None or args.check_determinism):
            raise ValueError("--coverage measures one --seed (not --seeds or --check-determinism)")
        check_paths(opts.store, args.junit_xml)
    except (ValueError, SetupMistake) as exc:
        raise UsageError(str(exc)) from None
    from sim.scheduler import UnsupportedTrio, check_trio

    try:
        check_trio()
    except UnsupportedTrio as exc:
        print(f"harness sim: {exc}", file=sys.stderr)
        return 255
    if seeds is not None:
        return sweep(opts, settings, seeds, args.jobs or os.cpu_count() or 1,
                     Path(args.junit_xml) if args.junit_xml else None)
    opts.seed = args.seed if args.seed is not None else 1
    if args.junit_xml:
        # One seed is a sweep of one: the same table, the same JUnit file.
        return sweep(opts, settings, [opts.seed], 1, Path(args.junit_xml))
    if args.check_determinism:
        return check_determinism(opts, settings)
    if args.shrink:
        from harness.shrink import shrink

        return shrink(opts, settings, args.jobs or os.cpu_count() or 1)
    return single(opts, settings)


# ---- worker side


def _job(payload: dict[str, Any]) -> dict[str, Any]:
    """One simulation in a worker process; returns its summary (never raises)."""
    import logging
    import traceback

    run_dir = Path(payload["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    cov = None
    if payload["opts"].get("coverage"):
        from harness.campaign_coverage import start_in_process

        # Before the imports below: they import node, whose module-level lines count too.
        cov = start_in_process(run_dir)

    from harness import store
    from harness.deploy.sim import run_one
    from harness.run import RunOptions

    opts = RunOptions(**payload["opts"])
    settings = SimSettings(**payload["settings"])
    _quiet_gc()
    started = time.monotonic()
    cpu = time.process_time()
    try:
        if payload.get("quiet"):
            logging.getLogger().setLevel(logging.WARNING)
        result = run_one(opts, run_dir, crash=settings.crash, tear=settings.tear, loss=settings.loss,
                         keep_trace=payload.get("keep_trace", False), quiet=payload.get("quiet", False),
                         report=not payload.get("lazy_report", False),
                         keep_data=not payload.get("lazy_report", False))
        if payload.get("lazy_report") and result.outcome.valid is not True:
            from harness.run import write_report

            write_report(run_dir)  # a kept seed's run directory has all but the nodes' data files
    except BaseException as exc:  # noqa: BLE001 - a harness failure is this seed's result
        if cov is not None:
            cov.stop()
        return {"seed": opts.seed, "valid": "error", "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc(), "run_dir": str(run_dir), "wall_s": time.monotonic() - started,
                "virtual_s": 0.0, "anomalies": 0}
    if cov is not None:
        cov.stop()  # its data was saved and combined at the end of the campaign
    if payload.get("show"):
        from harness.cli import print_verdict

        print_verdict(result.outcome.results, run_dir / store.HISTORY_FILE, run_dir / store.RESULTS_FILE)
        if result.outcome.coverage:
            from harness.campaign_coverage import console_line

            print(console_line(result.outcome.coverage, run_dir))
        sys.stdout.flush()
    results = store.read_json(run_dir / store.RESULTS_FILE) if (run_dir / store.RESULTS_FILE).exists() else {}
    anomalies = sum(len(c.get("anomalies", []) or []) for c in results.get("checkers", {}).values())
    failed = sorted(name for name, ok in results.get("summary", {}).items() if ok is False)
    return {"seed": opts.seed, "valid": result.outcome.valid, "anomalies": anomalies, "failed_checkers": failed,
            "virtual_s": round(result.virtual_s, 3), "wall_s": round(result.wall_s, 3),
            "cpu_s": round(time.process_time() - cpu, 3),
            "ops": result.outcome.completed, "trace_hash": result.trace_hash, "history_hash": result.history_hash,
            "trace_events": result.trace_events, "run_dir": str(run_dir),
            "trace_file": str(run_dir / "trace.log") if payload.get("keep_trace") else None}


def _quiet_gc() -> None:
    """Collect what earlier seeds left, then leave every object alive now (the imported
    harness, node code and checkers) out of later collections, and collect rarely.

    Each seed then starts from the same collector state, whatever the worker ran before it.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 10, 10)


def _pool(jobs: int) -> Any:
    # Workers start fresh interpreters with a fixed hash seed (the parent's may be random).
    os.environ["PYTHONHASHSEED"] = "0"
    return multiprocessing.get_context("spawn").Pool(processes=jobs, maxtasksperchild=100, initializer=_ignore_sigint)


def _ignore_sigint() -> None:
    """A worker takes a terminal's Ctrl-C only inside a campaign's workload, where the campaign
    runner's own signal receiver ends it as `harness run` does (heal, stop, check, report:
    unknown); anywhere else it would kill the worker with its result unsent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Interrupts:
    """Ctrl-C while seeds run: the first one is noted and the seeds being run still report (their
    workers saw it too, so they come back interrupted: unknown); a second one stops at once. It
    used to terminate the pool under a worker that was sending its interrupted result, and hang."""

    def __init__(self) -> None:
        self.count = 0
        self._old: Any = None
        self._installed = False

    def __enter__(self) -> _Interrupts:
        import threading

        # Only the main thread may set handlers (and only it gets SIGINT); elsewhere: no change.
        self._installed = threading.current_thread() is threading.main_thread()
        if self._installed:
            self._old = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._old)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt
        print("harness sim: interrupted: the seeds running now end their campaigns and are checked "
              "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)


def _payload(opts: Any, settings: SimSettings, run_dir: Path, **extra: Any) -> dict[str, Any]:
    return {"opts": asdict(opts), "settings": asdict(settings), "run_dir": str(run_dir), **extra}


def _run_in_worker(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with _pool(min(len(payloads), os.cpu_count() or 1)) as pool, _Interrupts():
        return pool.map(_job, payloads)


def _verdict(valid: Any) -> str:
    return {True: "valid", False: "INVALID"}.get(valid, "unknown" if valid == "unknown" else str(valid))


def _exit(valids: list[Any]) -> int:
    if any(v is False for v in valids):
        return 1
    if any(v == "error" for v in valids):
        return 255
    if any(v is not True for v in valids):
        return 2
    return 0


def replay_command(opts: Any, settings: SimSettings, seed: int) -> str:
    """The one command that replays ``seed`` of this configuration."""
    from harness.run import RunOptions

    d = RunOptions()
    parts = ["harness", "sim", "--seed", str(seed)]
    for key in SIM_RUN_OPTIONS:
        v = getattr(opts, key)
        if key in ("store", "test_name"):
            continue
        if key == "validation_faults":
            for f in v:
                parts += ["--fault", f]
            continue
        if v != getattr(d, key) and v is not None:
            if isinstance(v, bool):  # a flag (--client-timestamps, --final-repair) takes no value
                parts += ["--" + key.replace("_", "-")] if v else []
                continue
            parts += ["--" + key.replace("_", "-"), f"{v:g}" if isinstance(v, float) else str(v)]
    if settings.crash != "process":
        parts += ["--crash", settings.crash]
    if settings.tear:
        parts.append("--tear")
    if settings.loss:
        parts += ["--loss", f"{settings.loss:g}"]
    return " ".join(parts)


# ---- commands


def single(opts: Any, settings: SimSettings) -> int:
    """One seed: a run directory in the store, the verdict printed as `harness run` prints it."""
    from harness import store

    run_dir = store.new_run_dir(Path(opts.store).resolve(), opts.name())
    [r] = _run_in_worker([_payload(opts, settings, run_dir, show=True)])
    if r["valid"] == "error":
        print(r.get("trace", ""), file=sys.stderr)
        print(f"harness sim: the simulation failed: {r['error']}\nrun directory: {run_dir}", file=sys.stderr)
        return 255
    print(f"seed {r['seed']}: {r['ops']} operations, {r['virtual_s']:.1f} virtual s in {r['wall_s']:.2f} wall s "
          f"({r['virtual_s'] / max(r['wall_s'], 1e-9):.0f}x real time); history sha256 {r['history_hash'][:16]}, "
          f"trace {r['trace_hash'][:16]} ({r['trace_events']} events)")
    print(f"run directory: {run_dir}")
    if r["valid"] is False:
        print(f"replay: {replay_command(opts, settings, r['seed'])}")
    return _exit([r["valid"]])


def check_determinism(opts: Any, settings: SimSettings) -> int:
    """Run the seed twice in two processes; compare trace and history hashes, name the first difference."""
    from harness import store
    from sim.trace import first_difference

    base = store.new_run_dir(Path(opts.store).resolve(), opts.name())
    payloads = [_payload(opts, settings, base / f"run-{i}", keep_trace=True, quiet=True) for i in (1, 2)]
    a, b = _run_in_worker(payloads)
    for r in (a, b):
        if r["valid"] == "error":
            print(r.get("trace", ""), file=sys.stderr)
            print(f"harness sim: the simulation failed: {r['error']}", file=sys.stderr)
            return 255
    same = a["trace_hash"] == b["trace_hash"] and a["history_hash"] == b["history_hash"]
    print(f"seed {opts.seed}: run 1 trace {a['trace_hash']} history {a['history_hash'][:32]} ({a['wall_s']:.2f} wall s)")
    print(f"seed {opts.seed}: run 2 trace {b['trace_hash']} history {b['history_hash'][:32]} ({b['wall_s']:.2f} wall s)")
    if same:
        print(f"deterministic: {a['trace_events']} trace events and {a['ops']} operations identical")
        shutil.rmtree(base / "run-2", ignore_errors=True)
        return 0
    ta = Path(a["trace_file"]).read_text().splitlines()
    tb = Path(b["trace_file"]).read_text().splitlines()
    diff = first_difference(ta, tb)
    if diff is not None:
        i, x, y = diff
        print(f"NOT deterministic: traces first differ at event {i}:\n  run 1: {x}\n  run 2: {y}")
    else:
        print("NOT deterministic: traces are identical but the histories differ")
    print(f"run directories: {base / 'run-1'} {base / 'run-2'}")
    return 1


def new_batch_dir(opts: Any, kind: str) -> Path:
    """A new ``store/<test>/<kind>-<time>`` directory (``~2``, ``~3``... within one second)."""
    base = Path(opts.store).resolve() / opts.name() / (f"{kind}-" + time.strftime("%Y%m%dT%H%M%S"))
    n = 1
    while base.exists():
        n += 1
        base = base.with_name(base.name.split("~")[0] + f"~{n}")
    base.mkdir(parents=True)
    return base


def sweep(opts: Any, settings: SimSettings, seeds: list[int], jobs: int, junit: Path | None = None) -> int:
    """Many seeds in worker processes: a table, failing seeds' run directories kept, exit 1 if any invalid."""
    from harness import store

    name = opts.name()
    base = new_batch_dir(opts, "sweep")
    payloads = []
    for seed in seeds:
        o = type(opts)(**{**asdict(opts), "seed": seed})
        payloads.append(_payload(o, settings, base / f"seed-{seed}", quiet=True, lazy_report=True))
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    wall_started = time.time()
    written = [0.0]

    def junit_now(final: bool = False) -> None:
        # Rewritten as seeds finish (at most once a second): a killed job leaves what finished.
        if junit is None or not final and time.monotonic() - written[0] < 1.0:
            return
        from harness.junit import write_sweep_junit

        write_sweep_junit(junit, f"{name}/{base.name}", rows, lambda s: replay_command(opts, settings, s),
                          wall_started, expected=len(seeds))
        written[0] = time.monotonic()

    junit_now(final=True)
    print(f"sweep of {len(seeds)} seeds on {jobs} worker(s): {base}")
    print(f"{'seed':>7}  {'verdict':<8} {'anomalies':>9} {'virtual s':>9} {'wall s':>7}")
    with _pool(jobs) as pool, _Interrupts() as interrupts:
        after_interrupt = 0
        for r in pool.imap(_job, payloads):
            rows.append(r)
            print(f"{r['seed']:>7}  {_verdict(r['valid']):<8} {r.get('anomalies', 0):>9} {r['virtual_s']:>9.1f} "
                  f"{r['wall_s']:>7.2f}   [{len(rows)}/{len(seeds)}]", flush=True)
            if r["valid"] is True:
                shutil.rmtree(r["run_dir"], ignore_errors=True)
            junit_now(final=r["valid"] is not True)
            if interrupts.count:
                # Each worker holds one seed at a time, in order: the next `jobs` results are the
                # seeds that were running when Ctrl-C came; the rest never start.
                after_interrupt += 1
                if after_interrupt >= jobs:
                    break
    junit_now(final=True)
    stopped = len(rows) < len(seeds)
    wall = time.monotonic() - started
    bad = [r for r in rows if r["valid"] is not True]
    invalid = [r for r in rows if r["valid"] is False]
    virtual = sum(r["virtual_s"] for r in rows)
    summary = {"options": asdict(opts), "settings": asdict(settings), "seeds": len(rows),
               "invalid": [r["seed"] for r in invalid], "wall_s": round(wall, 2), "virtual_s": round(virtual, 2),
               "rows": [{k: v for k, v in r.items() if k != "trace"} for r in rows]}
    store.write_json(base / "sweep.json", summary)
    print(f"{len(rows)} seeds in {wall:.1f} wall s ({virtual:.0f} virtual s): {len(invalid)} invalid, "
          f"{len(bad) - len(invalid)} unknown or failed; detection rate {len(invalid) / len(rows):.3f}")
    for r in bad:
        print(f"seed {r['seed']} {_verdict(r['valid'])}: {r['run_dir']}" + (f" ({r['error']})" if r.get("error") else ""))
        print(f"  replay: {replay_command(opts, settings, r['seed'])}")
    if invalid:
        print("  (add --shrink to a replay command for the smallest configuration of that seed that still fails)")
    print(f"summary: {base / 'sweep.json'}")
    if stopped:
        print(f"interrupted: {len(seeds) - len(rows)} of {len(seeds)} seeds not run")
    return _exit([r["valid"] for r in rows] + (["unknown"] if stopped else []))


def sweep_rows(opts: Any, settings: SimSettings, seeds: list[int], jobs: int, base: Path) -> list[dict[str, Any]]:
    """The rows of a sweep without printing (bench/sim.py and tests); valid seeds' run dirs removed."""
    payloads = [_payload(type(opts)(**{**asdict(opts), "seed": s}), settings, base / f"seed-{s}", quiet=True,
                         lazy_report=True) for s in seeds]
    rows = []
    with _pool(jobs) as pool:
        for r in pool.imap(_job, payloads):
            rows.append(r)
            if r["valid"] is True:
                shutil.rmtree(r["run_dir"], ignore_errors=True)
    return rows


