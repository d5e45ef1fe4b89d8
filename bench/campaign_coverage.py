"""Campaign coverage bench: the share of ``node/`` (and ``node/storage/``) statements campaigns reach.

    .venv/bin/python bench/campaign_coverage.py [--seed 1] [--store store/coverage-bench]
        [--only make-run|set] [--top 12] [--time-limit S]

Runs one campaign at a time, each with ``harness run --coverage``:

- ``make-run``: ``--nemesis partition --nodes 5 --time-limit 30``, what ``make run`` runs (one
  partition: the schedule sleeps 10 s, starts a fault, sleeps 10 s, stops it);
- the default campaign set, with ``--nemesis-interval 3`` and a time limit of one whole shuffled
  round of its nemeses (6 s per fault, plus 6 s, 18 s for ``all``; two rounds for the operator
  campaign, whose steps take seconds each, three for the membership and corrupt ones, four for the
  failing-disk one): ``--nemesis all`` with each workload of ``harness.workloads.WORKLOADS`` (so a
  workload, or a nemesis added to ``all``, joins the set by itself; ``register`` with
  ``--delete-fraction 0.2``, the others with their defaults), then
  ``--nemesis membership,move,partition,kill --file-stream-min-bytes 0 --load-balance 5`` on 5
  nodes (membership and move are not in ``all``; every SSTable inside a transferred range goes
  whole; the nodes' load balancing moves tokens on its own),
  ``--coordination zookeeper --nemesis membership,kill,zk`` on 4 nodes (the ZooKeeper leader),
  ``--nemesis corrupt,flush-compact,crash --commitlog-sync group`` (corrupt is not in ``all``; its
  three windows damage a stopped node's SSTable, a stopped node's commit log segment and a running
  node's SSTable record; the other campaigns run the default periodic commit log),
  ``--nemesis disk,flush-compact --commitlog-sync batch`` (disk is not in ``all``; its four windows
  fail a commit log disk and a data disk, each with ENOSPC and with EIO), ``--nemesis disk
  --disks commitlog`` with ``--commit-failure-policy die --commitlog-sync group`` and with
  ``--commit-failure-policy ignore --commitlog-sync periodic`` (two windows each: ENOSPC and EIO;
  the node exits, or carries on without a restart), and ``--nemesis
  admin,move,clients,partition,kill`` on 5 nodes in 2 datacenters of 2 racks (``--datacenters 2
  --racks 2 --replication-factor 2``: NetworkTopologyStrategy; admin and move run ringctl, whose
  processes are measured too).

Then prints each campaign's ops/s and node/ totals (as it goes, and again as a Markdown table), the union of the default set (with and without
the make-run campaign, via ``harness.campaign_coverage.union``, as ``harness coverage-union``
computes it), and the files with the most statements no campaign ran, with their line ranges.
Figures only: an invalid campaign still counts for coverage, and nothing here fails a test run.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.campaign_coverage import load_summary, union  # noqa: E402
from harness.workloads import WORKLOADS  # noqa: E402
from nemesis.faults import parse_nemeses  # noqa: E402

# What `make run` runs (Makefile).
MAKE_RUN = ["--nemesis", "partition", "--nodes", "5", "--time-limit", "30"]
# The set's fault cycle: a fault starts 3 s after the last one stopped and lasts 3 s.
SET_INTERVAL = 3.0
MEMBERSHIP = "membership,move,partition,kill"
ZOOKEEPER = "membership,kill,zk"
CORRUPT = "corrupt,flush-compact,crash"
DISK = "disk,flush-compact"
OPERATOR = "admin,move,clients,partition,kill"
# Campaigns whose steps take seconds each (a move streams, a corrupt step restarts a node, ringctl
# starts a process) get two rounds' time, so each nemesis gets windows; a membership change
# takes ~20 s (a removenode waits for the failure detector), so its campaign gets three.
SLOW_ROUNDS = 2
# The failing-disk campaign: four rounds, so the disk nemesis's four windows fail each disk (a
# commit log disk's ends in a restart) with each error (a broken data disk fails reads too).
DISK_ROUNDS = 4
# The corrupt campaign: three rounds, so the corrupt nemesis's windows damage a stopped node's
# SSTable, a stopped node's commit log segment and a running node's SSTable record (its plans).
CORRUPT_ROUNDS = 3
MEMBERSHIP_ROUNDS = 3
# commit_failure_policy campaigns: (policy, commit log sync mode), and rounds of the disk nemesis
# alone (two: its commit log plans, ENOSPC and EIO).
POLICY_CAMPAIGNS = (("die", "group"), ("ignore", "periodic"))
POLICY_ROUNDS = 2
# Workload options beyond the defaults: the register workload deletes only when asked to.
WORKLOAD_ARGS = {"register": ["--delete-fraction", "0.2"]}


# Spare interval pairs after the rounds: one, and three for `all`, whose eight steps (a restart,
# a compaction, a strobe) take seconds each; with one, the round's last nemesis never started and
# the campaign checker made the run unknown.
SPARE_PAIRS = {"all": 3}


def round_time(nemesis: str, rounds: int = 1) -> float:
    """Workload seconds for ``rounds`` shuffled rounds of ``nemesis`` at SET_INTERVAL, and the spare interval pairs."""
    return 2 * SET_INTERVAL * (rounds * len(parse_nemeses(nemesis)) + SPARE_PAIRS.get(nemesis, 1))


def campaign_set(time_limit: float | None = None) -> list[tuple[str, list[str]]]:
    """The documented default set: every workload under `--nemesis all`, and one membership campaign."""
    def args(nemesis: str, rounds: int = 1) -> list[str]:
        return ["--nemesis", nemesis, "--nemesis-interval", f"{SET_INTERVAL:g}",
                "--time-limit", f"{time_limit or round_time(nemesis, rounds):g}"]

    runs = [(f"{w} / all", ["--workload", w, *WORKLOAD_ARGS.get(w, []), *args("all")]) for w in WORKLOADS]
    # Every SSTable inside a range goes whole (file_stream_min_bytes 0): a campaign's files are
    # bytes to KBs, below the store's 1 MiB, and would all go by pages.
    # The paper's load balancing on (a comparison every 5 s), so moves happen on their own too.
    runs.append((f"register / {MEMBERSHIP} (whole files, load balance)",
                 ["--nodes", "5", "--file-stream-min-bytes", "0", "--load-balance", "5", *args(MEMBERSHIP, MEMBERSHIP_ROUNDS)]))
    runs.append((f"register / {ZOOKEEPER} (zookeeper)", ["--coordination", "zookeeper", "--nodes", "4", *args(ZOOKEEPER)]))
    runs.append((f"register / {CORRUPT} (group)", ["--commitlog-sync", "group", *args(CORRUPT, CORRUPT_ROUNDS)]))
    runs.append((f"register / {DISK} (batch)", ["--commitlog-sync", "batch", *args(DISK, DISK_ROUNDS)]))
    # The non-default commit_failure_policy values, each with the other sync modes: two windows
    # (ENOSPC and EIO) of a failing commit log disk under each.
    for policy, sync in POLICY_CAMPAIGNS:
        runs.append((f"register / disk (commit log, {policy}, {sync})",
                     ["--commitlog-sync", sync, "--disks", "commitlog", "--commit-failure-policy", policy,
                      *args("disk", POLICY_ROUNDS)]))
    runs.append((f"register / {OPERATOR} (2 DCs x 2 racks)",
                 ["--nodes", "5", "--datacenters", "2", "--racks", "2", "--replication-factor", "2",
                  *args(OPERATOR, SLOW_ROUNDS)]))
    return runs


def run(label: str, args: list[str], opts: argparse.Namespace) -> Path | None:
    """One campaign; returns its run directory (None if it left no coverage)."""
    cmd = [sys.executable, "-m", "harness", "run", "--coverage", "--seed", str(opts.seed),
           "--store", str(opts.store), *args]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode == 255:
        # The harness itself failed (not the store): say why, and give the campaign one more try.
        print(f"{label:<40} exit 255, tried again: {' | '.join(proc.stderr.strip().splitlines()[-3:])}")
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr
    m = re.search(r"^run directory: (.+)$", out, re.M)
    rate = re.search(r"([\d.]+) ops/s during the workload", out)
    run_dir = Path(m.group(1)) if m else None
    summary = load_summary(run_dir) if run_dir else None
    took = time.monotonic() - started
    if summary is None:
        print(f"{label:<40} exit {proc.returncode}, no coverage ({took:.0f} s): {out.strip().splitlines()[-1:]}")
        return None
    t = summary["totals"]
    opts.rows.append((label, proc.returncode, rate.group(1) if rate else "?", t["node/"]["percent"],
                      t["node/storage/"]["percent"]))
    print(f"{label:<40} exit {proc.returncode}  {rate.group(1) if rate else '?':>5} ops/s  "
          f"node/ {t['node/']['percent']:5.1f}%  node/storage/ {t['node/storage/']['percent']:5.1f}%  "
          f"({summary['data_files']} node processes, {took:.0f} s)  {run_dir}")
    return run_dir


def print_union(label: str, dirs: list[Path], html: Path | None = None, top: int = 0) -> None:
    """The union's totals, and (top > 0) the files with the most statements not run."""
    if not dirs:
        return
    s = union(dirs, html)
    t = s["totals"]
    print(f"{label}: node/ {t['node/']['percent']:.1f}% ({t['node/']['covered']}/{t['node/']['statements']}), "
          f"node/storage/ {t['node/storage/']['percent']:.1f}% "
          f"({t['node/storage/']['covered']}/{t['node/storage/']['statements']})")
    if top:
        print(f"the {top} files with the most statements not run (file: statements not run / statements, lines):")
        worst = sorted(s["files"], key=lambda f: f["covered"] - f["statements"])[:top]
        for f in worst:
            print(f"  {f['file']}: {f['statements'] - f['covered']}/{f['statements']}  {f['missing_lines']}")
    if html:
        print(f"html: {html / 'index.html'}")


def main() -> int:
    """Run the campaigns and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time-limit", type=float, help="seconds of workload per campaign of the set "
                        "(default: one round of its nemeses)")
    parser.add_argument("--seed", type=int, default=1, help="seed of every campaign (default 1)")
    parser.add_argument("--store", type=Path, default=REPO / "store" / "coverage-bench", help="where the runs go")
    parser.add_argument("--only", choices=["make-run", "set"], help="run only the make-run campaign or only the set")
    parser.add_argument("--top", type=int, default=12, help="how many least-covered files to list (default 12)")
    opts = parser.parse_args()
    opts.store = opts.store.resolve()
    opts.rows = []  # (label, exit, ops/s, node/ %, node/storage/ %) per campaign run
    make_run = None
    if opts.only != "set":
        make_run = run("make run (partition, 5 nodes)", MAKE_RUN, opts)
    dirs = []
    if opts.only != "make-run":
        for label, args in campaign_set(opts.time_limit):
            d = run(label, args, opts)
            if d is not None:
                dirs.append(d)
    # Each campaign's throughput and coverage again, as the rows of a Markdown table (README's).
    print("\n| campaign (`--seed 1`) | exit | ops/s | `node/` | `node/storage/` |\n| --- | --- | --- | --- | --- |")
    for label, code, rate, node_pct, storage_pct in opts.rows:
        print(f"| {label} | {code} | {rate} | {node_pct:.1f}% | {storage_pct:.1f}% |")
    print_union("union of the default set", dirs, opts.store / "union-html", opts.top)
    if make_run is not None and dirs:
        print_union("union of the default set and make run", [*dirs, make_run])
    return 0


if __name__ == "__main__":
    sys.exit(main())
