"""Mutation testing of the testbed: plant realistic bugs in node/ and count which campaigns catch them.

Each file in ``bench/mutants/`` is one mutant: a few header lines (``Mutant:``, ``Breaks:``,
``Campaign:``) and a unified diff against ``node/``. For each mutant this script copies the
checkout (tracked and untracked files, never .git, .venv or store/) to a temporary directory,
applies the patch there with ``git apply`` (the live tree is never touched), runs a
``harness sim`` sweep of the mutant's campaign from that copy (one ``harness run`` per seed for
the few campaigns only real node processes reach) and prints a table: mutant, what it
breaks, campaign, seeds caught / seeds run, the checker that failed on the first caught seed;
then the kill rate. The unmodified store runs every campaign used on the same seeds first
(``--no-baseline`` skips it): a campaign that is invalid without a mutant proves nothing.

A patch that no longer applies is reported and the exit status is 3, so the table never shrinks
silently (tests/unit/test_mutants.py checks the same without sweeps). Prints figures; the
verdicts of the sweeps do not change the exit status.

    .venv/bin/python bench/mutants.py [--seeds 1-6] [--jobs 2] [--only NAME[,NAME]] [--no-baseline]
    .venv/bin/python bench/mutants.py --check          # do all patches apply? (no sweeps)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS_DIR = ROOT / "bench" / "mutants"

# The sweeps each mutant's ``Campaign:`` header names (``harness sim`` arguments). Short virtual
# campaigns with faults every 3 s, as bench/sim.py's rate campaigns; a campaign is chosen for the
# code path the mutant sits on (hints need a majority down, commit log bugs need restarts, ...).
_FAST = ["--time-limit", "12", "--nemesis-interval", "3", "--recovery-time", "2"]
CAMPAIGNS: dict[str, list[str]] = {
    # the default fault mix against register reads and writes with some deletes
    "faults": ["--nemesis", "partition,kill", "--delete-fraction", "0.1", *_FAST],
    # writes at ANY while a majority is down, set workload read at ALL: only hints carry them
    "hints": ["--workload", "set", "--nemesis", "kill", "--targets", "majority", "--key-count", "50",
              "--write-cl", "ANY", "--read-cl", "ALL", *_FAST],
    # partitions alone for 24 s: a coordinator cut off from some replicas of a key, whose writes
    # there time out into hints while the other side reads the same keys at QUORUM
    "partition": ["--nemesis", "partition", "--time-limit", "24", "--nemesis-interval", "3", "--recovery-time", "2"],
    # the same against set adds read without read repair: a hint whose delivery met the partition
    # (a request that timed out) must be kept, since nothing else brings its element to the replica;
    # judged by set and convergence (QUORUM reads without read repair are not linearizable: a read
    # may see an add one replica holds, the next read two replicas that lack it yet)
    "partition-set": ["--workload", "set", "--nemesis", "partition", "--key-count", "50", "--read-repair", "NONE",
                      "--time-limit", "24", "--nemesis-interval", "6", "--recovery-time", "2"],
    # the same with pauses too: a paused target times out the hint delivery under way, so the
    # hints in flight must be kept for the next attempt
    "hints-pause": ["--workload", "set", "--nemesis", "kill,pause", "--targets", "majority", "--key-count", "50",
                    "--write-cl", "ANY", "--read-cl", "ALL", *_FAST],
    # kills and restarts of a majority: every restart replays its commit log
    "kill": ["--nemesis", "kill", "--targets", "majority", *_FAST],
    # the same against set adds: an element is written once and never overwritten, so a write a
    # replica lost in its restart stays lost there (the register workload writes over it)
    "kill-set": ["--workload", "set", "--nemesis", "kill", "--targets", "majority", "--key-count", "50", *_FAST],
    # writes at ONE read at ALL (R + W > N): the replicas differ most, and every read compares
    # all three (its digests) and must return the newest acknowledged write; 24 s for more windows
    "one-all": ["--nemesis", "partition,kill", "--delete-fraction", "0.1", "--write-cl", "ONE", "--read-cl", "ALL",
                "--time-limit", "24", "--nemesis-interval", "3", "--recovery-time", "2"],
    # power loss of a majority under batch sync: only fsynced records may survive
    "power": ["--nemesis", "kill", "--targets", "majority", "--crash", "power", "--commitlog-sync", "batch",
              *_FAST],
    # joins, decommissions and removenodes: streaming and pending ranges. Set elements are never
    # overwritten, so a write a range movement left off a replica stays missing; 400 keys put
    # some in every small range (the wrapping one's tail is about 1/160 of the ring); no read
    # repair, so only streaming and pending writes put data on a new replica
    # (the convergence check's before pass holds it against the store when no other fault ran).
    "membership": ["--workload", "set", "--nemesis", "membership", "--key-count", "400", "--read-repair", "NONE",
                   "--nemesis-interval", "3", "--time-limit", "30", "--recovery-time", "2"],
    # client-supplied write timestamps from a one-second clock with microseconds of jitter: equal
    # timestamps (the tie-break decides) and ones a microsecond apart; 50 keys and 4 KB memtables
    # put versions of one key in different SSTables, so reads and compactions reconcile them
    # (checkers/lww_order.py knows which version must win); gc_grace longer than the campaign: a
    # hinted write with an older client timestamp than a delete, delivered after the tombstone
    # was purged, comes back (gc_grace's documented cost, not a bug; 1 of 6 seeds with 10 s)
    "lww": ["--client-timestamps", "--nemesis", "partition,flush-compact", "--key-count", "50",
            "--memtable-flush-kb", "4", "--delete-fraction", "0.1", "--gc-grace", "60", *_FAST],
    # the lww campaign with each key's values written in a random order: on equal timestamps the
    # greater value wins, which is then as often the earlier write as the later one, so a read or
    # merge that settles a tie by arrival order (or skips a source holding the tie) shows
    "lww-random": ["--client-timestamps", "--value-order", "random", "--nemesis", "partition,flush-compact",
                   "--key-count", "50", "--memtable-flush-kb", "4", "--delete-fraction", "0.1", "--gc-grace", "60", *_FAST],
    # pauses and kills of one node or a minority held 26 s, longer than the failure detector's
    # conviction bound (about 24 s, checkers/liveness.py), at a low rate (what is judged is the
    # nodes' views of each other, sampled each second, not the clients' operations); nine nodes,
    # so that a returned node is not re-marked UP by its direct gossip alone within a few rounds
    "liveness": ["--nodes", "9", "--nemesis", "pause,kill", "--targets", "one,minority", "--nemesis-interval", "26",
                 "--time-limit", "104", "--recovery-time", "2", "--rate", "50"],
    # flushes, compactions and repairs between partitions and kills, with deletes: SSTables,
    # bloom filters, tombstone purging and Merkle-tree repair on the data path
    "storage": ["--nemesis", "flush-compact,repair,partition,kill", "--delete-fraction", "0.2",
                "--memtable-flush-kb", "4", "--gc-grace", "60", "--time-limit", "24", "--nemesis-interval", "3", "--recovery-time", "2"],
    # kills of one node held 14 s (long enough for the failure detector to convict it, 7-11 s) against
    # set adds read without read repair, with a 20 s hint window: an outage never passes the window
    # (at most about 7 s after the conviction), so every write a killed replica missed must reach
    # it as a hint, also on its second and third outage of the 84 s (a window that never closes,
    # or closes wrong, shows as a replica that lacks a write no hint holds)
    "hint-window": ["--workload", "set", "--nemesis", "kill", "--targets", "one", "--key-count", "50",
                    "--read-repair", "NONE", "--max-hint-window", "20", "--nemesis-interval", "14",
                    "--time-limit", "84", "--recovery-time", "2"],
    # kills of one node held 14 s against set adds read without read repair, with no hint window
    # (max_hint_window 0: no hint for a target once it is convicted), so a killed replica misses the
    # writes of the rest of its outage for good; after the final reads the harness drains the hints
    # and repairs every node (--final-repair), and every replica of every key must then hold the
    # same elements: only anti-entropy repair (Merkle trees, streaming both ways) brings them
    "repair-set": ["--workload", "set", "--nemesis", "kill", "--targets", "one", "--key-count", "50",
                   "--read-repair", "NONE", "--max-hint-window", "0", "--final-repair", "--nemesis-interval", "14",
                   "--time-limit", "42", "--recovery-time", "2"],
    # repair-set with writes at ONE (read at ALL) and kills of a minority: with two replicas of a
    # range down, an element is written to one replica only, so the replicas of a range differ
    # pairwise (with one node down at a time the node repairing a range holds or fetches every
    # difference itself, and a repair that compares it with each peer but not the peers with each
    # other loses nothing); judged right after the first node's repair by the node-repair pass
    "repair-one": ["--workload", "set", "--nemesis", "kill", "--targets", "minority", "--write-cl", "ONE",
                   "--read-cl", "ALL", "--key-count", "50", "--read-repair", "NONE", "--max-hint-window", "0",
                   "--final-repair", "--nemesis-interval", "14", "--time-limit", "42", "--recovery-time", "2"],
    # repair-set over 400 keys: about ten partitions per range, so each range's Merkle tree has
    # several leaves (with 50 keys most ranges hold one or two partitions, a tree of one leaf, and
    # the code that compares leaves and turns differing ones into slices is never exercised)
    "repair-wide": ["--workload", "set", "--nemesis", "kill", "--targets", "one", "--key-count", "400",
                    "--read-repair", "NONE", "--max-hint-window", "0", "--final-repair", "--nemesis-interval", "14",
                    "--time-limit", "42", "--recovery-time", "2"],
    # kills of a minority between the nemesis's flushes and compactions, against set adds: every
    # restart replays the commit log from the position the SSTables say they cover, so a position
    # that claims too much loses writes no SSTable holds (an element is never written again, and
    # without read repair nothing but a hint or repair puts it back on that replica). The store's
    # own memtable size (--memtable-flush-kb 0; sim's default is 4 KB since the sixth speed round,
    # and this campaign lost its reach silently when it changed), so only the nemesis flushes: what
    # a node took after its last flush stays in its memtable (and commit log) for seconds, through
    # compactions and kills (with 4 KB memtables the next flush comes within a second and covers
    # it: 0 of 6 seeds caught, in the fifth round and in the 2026-12-03 full run alike)
    "storage-kill-set": ["--workload", "set", "--nemesis", "flush-compact,kill", "--targets", "minority",
                         "--key-count", "50", "--read-repair", "NONE", "--gc-grace", "60", "--time-limit", "24",
                         "--memtable-flush-kb", "0", "--nemesis-interval", "3", "--recovery-time", "2"],
    # two datacenters of four nodes on two racks each, three replicas per datacenter
    # (NetworkTopologyStrategy: two racks for three replicas, so each datacenter's third replica
    # comes from the nodes set aside on a seen rack), writes at EACH_QUORUM (two in each
    # datacenter) read at QUORUM (four of six): the placement oracle and the quorum checkers see
    # replica choice and per-datacenter counting that a SimpleStrategy campaign never reaches
    "topology": ["--datacenters", "2", "--racks", "2", "--nodes", "8", "--replication-factor", "3",
                 "--write-cl", "EACH_QUORUM", "--read-cl", "QUORUM", "--nemesis", "partition,kill",
                 "--delete-fraction", "0.1", *_FAST],
    # the same cluster with writes at LOCAL_QUORUM (two of the coordinator's datacenter) read at
    # EACH_QUORUM (two in each): the local quorum and the reading one intersect in the writer's
    # datacenter, so a write counted from the wrong datacenter's replicas shows as a stale read
    "topology-local": ["--datacenters", "2", "--racks", "2", "--nodes", "8", "--replication-factor", "3",
                       "--write-cl", "LOCAL_QUORUM", "--read-cl", "EACH_QUORUM", "--nemesis", "partition,kill",
                       "--delete-fraction", "0.1", *_FAST],
    # fixed replica counts: THREE writes and THREE reads of five replicas (seven nodes; 3 + 3 > 5),
    # and TWO of three each way (2 + 2 > 3), under partitions and kills: every other campaign writes
    # and reads at QUORUM, ONE, ALL, ANY or a per-datacenter level, so the TWO and THREE branches of
    # the consistency tracker were on no sweep's path (the acks check holds each write to its count)
    "three-of-five": ["--nodes", "7", "--replication-factor", "5", "--write-cl", "THREE", "--read-cl", "THREE",
                      "--nemesis", "partition,kill", "--delete-fraction", "0.1", *_FAST],
    "two-two": ["--write-cl", "TWO", "--read-cl", "TWO", "--nemesis", "partition,kill", "--delete-fraction", "0.1",
                *_FAST],
    # rows of four columns under column writes, column deletes (cell tombstones) and row deletes,
    # on 4 KB memtables with flushes, compactions, partitions and kills: partitions of several
    # cells written at different times land in different SSTables, so compaction merges cells of
    # different names and tombstones of both kinds, and whole-row reads merge them again (the
    # register and set campaigns write one column, or only adds); judged cell by cell
    "row-storage": ["--workload", "row", "--nemesis", "flush-compact,partition,kill", "--key-count", "50",
                    "--memtable-flush-kb", "4", "--gc-grace", "60", "--time-limit", "24", "--nemesis-interval", "3",
                    "--recovery-time", "2"],
    # the same without deletes: every partition of plain cells, so compaction copies or concatenates
    # records as bytes (a tombstone in any input sends a partition to the full merge, and with the
    # row workload's default deletes nearly every partition has one), and whole-row reads decode
    # every cell of each record
    "row-plain": ["--workload", "row", "--nemesis", "flush-compact,partition,kill", "--key-count", "50",
                  "--delete-fraction", "0", "--memtable-flush-kb", "4", "--gc-grace", "60", "--time-limit", "24",
                  "--nemesis-interval", "3", "--recovery-time", "2"],
    # rows retired after 20 operations (a row's last mutation, often a row delete, is never
    # written over), one node killed for 14 s at a time with no hint window (max_hint_window 0: no
    # hint once it is convicted), so a replica misses row deletes and cells for good and only read
    # repair (blocking: every QUORUM read that meets a digest mismatch) brings them back; with
    # rows read while they are written (row-storage) a lost row delete is written over within a
    # second and nothing shows. gc_grace longer than the campaign: with the default 10 s, a row
    # delete a killed replica missed was purged on the others and the old cells came back on 2 of
    # 20 baseline seeds (gc_grace's documented cost, not a bug)
    "row-kill": ["--workload", "row", "--nemesis", "kill", "--targets", "one", "--key-count", "50",
                 "--ops-per-key", "20", "--max-hint-window", "0", "--gc-grace", "60", "--nemesis-interval", "14",
                 "--time-limit", "30", "--recovery-time", "2"],
    # register writes that expire (harness/workloads/ttl.py: TTLs of 1-3 s on three writes in four,
    # nine reads in ten) over 60 keys, a write every 3 s or so per key, so an expired cell often
    # stays the newest for seconds (20 keys: a newer write hid a dropped expired cell on 0 of 6
    # seeds, 60 keys: on 1 of 4), on 4 KB memtables with flushes, compactions, partitions and
    # kills: values expire during the campaign in memtables, SSTables and compactions (which turn
    # expired cells into tombstones), and checkers/ttl.py knows each value's expiry instant from its
    # write's timestamp; no other campaign wrote a TTL, so expiry was on no sweep's path
    "ttl": ["--workload", "ttl", "--nemesis", "flush-compact,partition,kill", "--key-count", "60",
            "--memtable-flush-kb", "4", "--gc-grace", "60", "--time-limit", "24", "--nemesis-interval", "3",
            "--recovery-time", "2"],
    # membership changes between kills of one node, with no hint window and no read repair, against
    # set adds: a replica killed during a write misses it for good, so the replicas of a range differ
    # when it moves, and a movement that streams from one replica only (not the one losing the range,
    # or one survivor of a removed node) leaves an acknowledged element on fewer replicas than
    # acknowledged it; judged by set and convergence (the membership campaign has no other fault, so
    # every replica holds every write when a range moves); the final repair makes the replicas agree
    # before the convergence check's last pass (without it, what a killed replica missed with no
    # hint window stays missing: 1 of seeds 1-6 flagged on the unmodified store)
    "membership-kill": ["--workload", "set", "--nemesis", "membership,kill", "--targets", "one", "--key-count", "400",
                        "--read-repair", "NONE", "--max-hint-window", "0", "--final-repair", "--nemesis-interval", "3",
                        "--time-limit", "30", "--recovery-time", "2"],
    # flushes and compactions between partitions against set adds: an element is written once, so
    # one a flush or compaction left out of an SSTable stays missing on that replica (the register
    # workload writes over it); 50 keys overflow 4 KB memtables often
    "storage-set": ["--workload", "set", "--nemesis", "flush-compact,partition", "--key-count", "50",
                    "--memtable-flush-kb", "4", "--gc-grace", "60", "--time-limit", "24", "--nemesis-interval", "3",
                    "--recovery-time", "2"],
    # no kill during the run: only the restart check (every node killed and restarted once the
    # after pass has read it, checkers/restart.py) makes a node rebuild its state from its files
    "restart": ["--nemesis", "partition,pause", "--key-count", "40", "--time-limit", "12"],
    # (tenth round) storage-set with repairs and no read repair: every repair scans each replica's
    # memtable (Merkle validation) and streams slices in, between 4 KB flushes, so the scan and
    # flush paths meet on new partitions; an element is written once and nothing but a hint or a
    # later repair puts a lost one back on its replica
    # (tenth round) the ttl workload under row-kill's faults: one node killed for 14 s at a time
    # (long enough to be convicted) with no hint window, so the killed replica misses expiring
    # writes for good (a hint would bring the original cell later, and it wins the tie over a
    # repaired copy), and read repair (blocking: QUORUM reads that meet a mismatch, then the final
    # reads at ALL) copies the cells, live and expired, onto it; checkers/provenance.py reads every
    # replica at the end (ttl_replicas.jsonl) and holds each cell to its write's timestamp and TTL
    # (with writes at ONE read at ALL and 3 s faults no replica missed a write for good: 1 of 6)
    "ttl-kill": ["--workload", "ttl", "--nemesis", "kill", "--targets", "one", "--max-hint-window", "0",
                 "--key-count", "60", "--memtable-flush-kb", "4", "--gc-grace", "60", "--time-limit", "30",
                 "--nemesis-interval", "14", "--recovery-time", "2"],
    # (tenth round) storage-set with repairs and no read repair: every repair scans each replica's
    # memtable (Merkle validation) and streams slices in, between 4 KB flushes, so the scan and
    # flush paths meet on new partitions; an element is written once and nothing but a hint or a
    # later repair puts a lost one back on its replica
    # (tenth round) the ttl campaign's expiring writes at ONE read at ALL, with partitions and kills:
    # replicas miss writes often (no hint window: no hint brings the write later, and a hinted copy
    # would win the tie over a repaired one) and every read compares all three, so read repair copies
    # expiring cells (live and expired) onto the replicas that lack them; checkers/provenance.py
    # reads every replica at the end (ttl_replicas.jsonl) and holds each cell to its write's TTL
    "ttl-repair": ["--workload", "ttl", "--nemesis", "partition,kill", "--write-cl", "ONE", "--read-cl", "ALL", "--max-hint-window", "0",
                   "--key-count", "60", "--memtable-flush-kb", "4", "--gc-grace", "60", "--time-limit", "24",
                   "--nemesis-interval", "3", "--recovery-time", "2"],
    "storage-repair-set": ["--workload", "set", "--nemesis", "flush-compact,repair,partition", "--key-count", "50",
                           "--read-repair", "NONE", "--memtable-flush-kb", "4", "--gc-grace", "60", "--time-limit", "24",
                           "--nemesis-interval", "3", "--recovery-time", "2"],
}
# Campaigns that need real node processes (`harness run`, local deploy; one run per seed, so a
# seed costs a minute or more): the admin nemesis's ringctl snapshot, cleanup and subrange
# repair run only there. 50 keys put some in every node's ranges, so a cleanup that drops data
# of a range the node still replicates drops keys the reads then miss.
RUN_CAMPAIGNS: dict[str, list[str]] = {
    "admin": ["--nemesis", "admin", "--key-count", "50", "--time-limit", "20"],
}
# The checkers whose failure counts as a catch, where not every checker's: an ANY write that
# only hints hold is not visible to reads until delivered, so linearizability is not promised
# there (the unmodified store fails it on some seeds); a lost element, a replica left behind or a
# node that lost what it held across the final restart (checkers/restart.py) is.
# Set campaigns without read repair likewise: a QUORUM read may see an add one replica holds and
# the next read two that lack it yet (storage-kill-set: 4 of seeds 7-16 linearizable-only).
JUDGES: dict[str, frozenset[str]] = {"hints": frozenset({"set", "convergence", "restart"}),
                                     "partition-set": frozenset({"set", "convergence", "restart"}),
                                     "storage-kill-set": frozenset({"set", "convergence", "restart"}),
                                     "hint-window": frozenset({"set", "convergence", "restart"}),
                                     "repair-set": frozenset({"set", "convergence", "restart"}),
                                     "hints-pause": frozenset({"set", "convergence", "restart"}),
                                     "repair-wide": frozenset({"set", "convergence", "restart"}),
                                     "repair-one": frozenset({"set", "convergence", "restart"}),
                                     "membership-kill": frozenset({"set", "convergence", "movement", "restart"}),
                                     "storage-repair-set": frozenset({"set", "convergence", "restart"})}
# What git apply needs no part of, and what a copy of the checkout must not carry along.
_SKIP = {".git", ".venv", "store", "coverage", "__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache"}


@dataclass
class Mutant:
    """One patch file: its name, what it breaks, the campaign that should catch it."""

    name: str
    breaks: str
    campaign: str
    path: Path


def load_mutants(directory: Path = MUTANTS_DIR) -> list[Mutant]:
    """Every ``*.patch`` in ``directory`` in file order; ValueError names a file with a bad header."""
    out = []
    for path in sorted(directory.glob("*.patch")):
        head: dict[str, str] = {}
        for line in path.read_text().splitlines():
            if line.startswith("--- "):
                break
            if ":" in line:
                k, v = line.split(":", 1)
                head[k.strip().lower()] = v.strip()
        if not {"mutant", "breaks", "campaign"} <= head.keys():
            raise ValueError(f"{path.name}: needs Mutant:, Breaks: and Campaign: header lines")
        if head["campaign"] not in CAMPAIGNS and head["campaign"] not in RUN_CAMPAIGNS:
            raise ValueError(f"{path.name}: unknown campaign {head['campaign']!r} "
                             f"(known: {', '.join([*CAMPAIGNS, *RUN_CAMPAIGNS])})")
        out.append(Mutant(head["mutant"], head["breaks"], head["campaign"], path))
    return out


def apply_problem(mutant: Mutant, tree: Path = ROOT, check_only: bool = True) -> str | None:
    """None if the patch applies to ``tree`` (with --check: nothing written), else git's complaint."""
    cmd = ["git", "apply", "--check" if check_only else "--whitespace=nowarn", str(mutant.path)]
    # --unsafe-paths is not needed: every path is relative; cwd decides what is patched.
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    if proc.returncode != 0:
        return (proc.stderr or proc.stdout).strip().splitlines()[0] if (proc.stderr or proc.stdout) else "git apply failed"
    return None


def copy_tree(dest: Path, src: Path = ROOT) -> Path:
    """A copy of the checkout's files (what git apply and the sim need) at ``dest``."""
    shutil.copytree(src, dest, ignore=lambda d, names: [n for n in names if n in _SKIP or n.endswith(".egg-info")])
    return dest


def _seed_list(seeds: str) -> list[int]:
    """``1-6`` or ``1,3,5`` as the seeds it names."""
    out: list[int] = []
    for part in seeds.split(","):
        lo, _, hi = part.strip().partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def real_runs(tree: Path, campaign: str, seeds: str, store: Path) -> list[dict]:
    """One ``harness run`` of ``campaign`` per seed from ``tree``; rows as a sweep's."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    rows = []
    for seed in _seed_list(seeds):
        out = store / f"seed-{seed}"
        cmd = [sys.executable, "-m", "harness", "run", "--seed", str(seed), "--store", str(out), "--test-name", "mutant",
               *RUN_CAMPAIGNS[campaign]]
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=900)
        found = sorted(out.glob("mutant/*/results.json"))
        if not found:
            raise RuntimeError(f"harness run exited {proc.returncode} without a results.json:\n{proc.stdout[-800:]}{proc.stderr[-800:]}")
        res = json.loads(found[-1].read_text())
        failed = [name for name, r in (res.get("checkers") or {}).items() if r.get("valid") is False]
        rows.append({"seed": seed, "valid": res.get("valid"), "failed_checkers": failed})
    return rows


def sweep(tree: Path, campaign: str, seeds: str, jobs: int, store: Path) -> list[dict]:
    """Run ``harness sim --seeds`` of ``campaign`` from ``tree`` (real runs for RUN_CAMPAIGNS); the rows."""
    if campaign in RUN_CAMPAIGNS:
        return real_runs(tree, campaign, seeds, store)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "harness", "sim", "--seeds", seeds, "--jobs", str(jobs), "--store", str(store),
           "--test-name", "mutant", *CAMPAIGNS[campaign]]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=3600)
    # The sweep's summary is store/<test>/sweep-<stamp>/sweep.json; its last line names it.
    named = [line.split(":", 1)[1].strip() for line in proc.stdout.splitlines() if line.startswith("summary: ")]
    summary = Path(named[-1]) if named else store / "missing"
    if not summary.exists():
        raise RuntimeError(f"harness sim exited {proc.returncode} without a sweep.json:\n{proc.stdout[-800:]}{proc.stderr[-800:]}")
    return json.loads(summary.read_text())["rows"]


def _summarize(rows: list[dict], campaign: str) -> tuple[int, int, int, str]:
    """(caught, unknown, run, the checkers that failed on the lowest caught seed)."""
    judges = JUDGES.get(campaign)

    def counted(r: dict) -> list[str]:
        failed = list(r.get("failed_checkers") or ["?"])
        return failed if judges is None else [c for c in failed if c in judges]

    caught = sorted((r for r in rows if r["valid"] is False and counted(r)), key=lambda r: r["seed"])
    unknown = sum(1 for r in rows if r["valid"] not in (True, False))
    first = ",".join(counted(caught[0])) if caught else "-"
    return len(caught), unknown, len(rows), first


def run_one(mutant: Mutant | None, campaign: str, seeds: str, jobs: int, work: Path) -> tuple[int, int, int, str, float]:
    """Copy, patch (unless baseline), sweep; (caught, unknown, run, first checker, wall s)."""
    started = time.monotonic()
    label = mutant.name if mutant is not None else f"baseline-{campaign}"
    tree = copy_tree(work / label / "tree")
    if mutant is not None:
        problem = apply_problem(mutant, tree, check_only=False)
        if problem is not None:
            raise RuntimeError(f"{mutant.path.name} does not apply: {problem}")
    try:
        rows = sweep(tree, campaign, seeds, jobs, work / label / "store")
    finally:
        shutil.rmtree(work / label, ignore_errors=True)
    return (*_summarize(rows, campaign), time.monotonic() - started)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="1-6", help="sim seeds per mutant, A-B (default 1-6)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="sim worker processes")
    p.add_argument("--only", help="comma list of mutant names to run")
    p.add_argument("--no-baseline", action="store_true", help="skip the unmodified store's sweeps")
    p.add_argument("--check", action="store_true", help="only check that every patch applies; no sweeps")
    a = p.parse_args()
    try:
        mutants = load_mutants()
    except ValueError as exc:
        print(f"bench/mutants.py: {exc}", file=sys.stderr)
        return 254
    broken = [(m, why) for m in mutants if (why := apply_problem(m)) is not None]
    for m, why in broken:
        print(f"PATCH DOES NOT APPLY: {m.path.name}: {why}")
    if a.check:
        print(f"{len(mutants) - len(broken)} of {len(mutants)} patches apply")
        return 3 if broken else 0
    if a.only:
        wanted = set(a.only.split(","))
        unknown = wanted - {m.name for m in mutants}
        if unknown:
            print(f"bench/mutants.py: --only names unknown mutants: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 254
        mutants = [m for m in mutants if m.name in wanted]
    runnable = [m for m in mutants if m not in [b for b, _ in broken]]
    print(f"{len(runnable)} mutants, seeds {a.seeds}, {a.jobs} jobs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="ringlab-mutants-") as tmp:
        work = Path(tmp)
        if not a.no_baseline:
            for campaign in sorted({m.campaign for m in runnable}):
                caught, unknown, run, first, wall = run_one(None, campaign, a.seeds, a.jobs, work)
                print(f"baseline {campaign:<11} invalid {caught}/{run}" + (f", unknown {unknown}" if unknown else "")
                      + (f" ({first})" if caught else "") + f"  [{wall:.0f} s]", flush=True)
        header = f"{'mutant':<27} {'campaign':<11} {'caught':>7} {'unk':>4}  {'first checker':<28} breaks"
        print(header)
        print("-" * len(header))
        killed = 0
        counts: Counter[str] = Counter()
        for m in runnable:
            try:
                caught, unknown, run, first, wall = run_one(m, m.campaign, a.seeds, a.jobs, work)
            except RuntimeError as exc:
                print(f"{m.name:<27} {m.campaign:<11} ERROR: {exc}", flush=True)
                counts["error"] += 1
                continue
            killed += caught > 0
            counts["killed" if caught else "survived"] += 1
            print(f"{m.name:<27} {m.campaign:<11} {caught:>3}/{run:<3} {unknown:>4}  {first:<28} {m.breaks}  [{wall:.0f} s]",
                  flush=True)
    total = len(runnable)
    print(f"kill rate: {killed}/{total}" + (f" = {killed / total:.0%}" if total else "")
          + (f"; {len(broken)} patch(es) do not apply" if broken else "")
          + (f"; {counts['error']} sweep(s) failed" if counts["error"] else ""))
    return 3 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
