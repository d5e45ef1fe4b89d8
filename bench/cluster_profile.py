"""Profile bench/cluster.py's 8-client QUORUM write (or, with ``--op read``, read) load: py-spy on
n1, n2 and this client process.

Prints each process's CPU µs per write of the cluster (from /proc/PID/schedstat) and, from the
py-spy samples, the share of each part of the write path plus the top own-time functions.
Samples blocked in a syscall (send, recv, epoll_wait) are left out: on a loaded machine a sender
is often descheduled inside ``send`` when its receiver wakes, so those samples measure the
scheduler rather than CPU. A sample counts in every group whose code is on its stack.
py-spy is not a dependency of ringlab: ``.venv/bin/pip install py-spy`` first (it needs ptrace).
``--tree`` profiles another checkout (its node processes too, through PYTHONPATH).

    .venv/bin/python bench/cluster_profile.py [--seconds 15] [--rate 200] [--out /tmp/ringlab-profile] [--tree DIR]
    .venv/bin/python bench/cluster_profile.py --cpu-only --seconds 8 --tree DIR   # CPU figures only
    .venv/bin/python bench/cluster_profile.py --op read   # QUORUM reads of the keys a warm-up wrote
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Leaf frames of samples that wait in the kernel rather than run Python.
BLOCKED = ("_nonblocking_helper", "get_events", "WorkerThread._work", "Condition.wait", "Lock.acquire")

# (group, predicate over the sample's whole stack)
GROUPS = [
    ("coordinator: a client write from request to response", lambda s: "run_one" in s or "start_write" in s),
    ("  of which the consistency tracker", lambda s: ("run_one" in s or "start_write" in s) and "ConsistencyTracker" in s),
    ("replica: internode reader (MAC check, decode, MUTATION apply, ack)", lambda s: "Messaging._incoming_reader" in s),
    ("storage apply, both roles (commit log append + memtable)", lambda s: "StorageEngine.apply" in s),
    ("MAC seal + open (blake2s), every connection", lambda s: "Sealer" in s or "OpeningDecoder" in s),
    ("coordinator: replica acks (reader and callbacks)", lambda s: "_outgoing_reader" in s),
    ("writer tasks (coalesced send_all, without the syscall)", lambda s: "_writer" in s),
    ("timeout reapers", lambda s: "_reaper" in s or "TimingWheel" in s),
    ("coordinator: a client read's request and its first phase (start_read, read_now, replies)",
     lambda s: "start_read" in s or "_ReadState" in s or "on_reply" in s),
    ("  of which digests (blake2b of the canonical partition)", lambda s: "Partition.digest" in s),
    ("replica: READ answered in the reader (storage read, digest or partition)", lambda s: "_handle_read_now" in s),
    ("storage read, both roles", lambda s: "StorageEngine.read" in s),
]


def _run_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def _user_sys_ticks(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]), int(fields[12])


def summarize(path: Path, groups: bool) -> None:
    """Print the shares of one py-spy raw (collapsed stacks) file."""
    busy = blocked = 0
    by_group: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        if any(b in frames[-1] for b in BLOCKED) or "_thread_cache" in stack:
            blocked += n
            continue
        busy += n
        for name, hit in GROUPS:
            if hit(stack):
                by_group[name] += n
        own[frames[-1].split(" (")[0]] += n
    print(f"{path.stem}: {busy} busy samples ({blocked} blocked in syscalls left out)")
    if not busy:
        return
    if groups:
        for name, _ in GROUPS:
            print(f"  {100 * by_group[name] / busy:5.1f}%  {name}")
    print("  top own: " + ", ".join(f"{k} {100 * v / busy:.1f}%" for k, v in own.most_common(10)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--cpu-only", action="store_true",
                    help="no py-spy: only each process's CPU µs per write (an A/B of two trees run at once)")
    ap.add_argument("--op", choices=("write", "read"), default="write", help="the load profiled (QUORUM, 8 clients)")
    ap.add_argument("--out", default="/tmp/ringlab-profile")
    ap.add_argument("--tree", default=str(Path(__file__).resolve().parents[1]))
    args = ap.parse_args()
    tree = Path(args.tree).resolve()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not args.cpu_only and not Path(spy).exists():
        sys.exit("py-spy not found: .venv/bin/pip install py-spy")
    os.environ["PYTHONPATH"] = str(tree)  # the node processes import the same tree
    sys.path.insert(0, str(tree))
    sys.path.insert(0, str(tree / "bench"))
    import trio

    import cluster as bench  # bench/cluster.py's load
    from tests.cluster.conftest import Cluster, alive_view, call, wait_until

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        c = Cluster(Path(tmp), 3, extra='[storage]\ncommitlog_sync = "periodic"\n')
        try:
            c.start()
            wait_until(lambda: all(set(alive_view(n).values()) == {"U"} and len(alive_view(n)) == 3 for n in c.nodes), 30)
            trio.run(lambda: call(c[0], "create_keyspace", name="bench",
                                  replication={"class": "SimpleStrategy", "replication_factor": 3}))
            trio.run(lambda: call(c[0], "create_table", keyspace="bench", name="t", options={}))
            ports = [n.client_port for n in c.nodes]
            trio.run(bench._load, ports, "write", "QUORUM", 8, 1.0)  # connections and caches warm, keys written
            pids = {"n1": c[0].proc.pid, "n2": c[1].proc.pid, "n3": c[2].proc.pid, "client": os.getpid()}  # type: ignore[union-attr]
            before = {k: _run_ns(p) for k, p in pids.items()}
            ticks_before = {k: _user_sys_ticks(p) for k, p in pids.items()}
            spies = [
                subprocess.Popen([spy, "record", "-r", str(args.rate), "-d", str(max(1, int(args.seconds - 1))), "-f", "raw",
                                  "-o", str(out / f"{k}.txt"), "-p", str(pid), "--nonblocking"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for k, pid in pids.items() if k != "n3" and not args.cpu_only
            ]
            rate, lat, errors = trio.run(bench._load, ports, args.op, "QUORUM", 8, args.seconds)
            used = {k: _run_ns(p) - before[k] for k, p in pids.items()}
            ticks = {k: tuple(a - b for a, b in zip(_user_sys_ticks(p), ticks_before[k])) for k, p in pids.items()}
            for s in spies:
                s.wait()
        finally:
            c.stop()
    writes = max(1, len(lat))
    nodes = sum(u for k, u in used.items() if k != "client") / 1000 / writes
    print(f"{rate:,.0f} QUORUM {args.op}s/s, {errors} errors, load {os.getloadavg()[0]:.1f}; CPU µs per {args.op} of the "
          f"cluster: " + ", ".join(f"{k} {u / 1000 / writes:.1f}" for k, u in used.items())
          + f"; nodes {nodes:.1f}, total {nodes + used['client'] / 1000 / writes:.1f}")
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    print("  user + system µs per write (/proc ticks): " + ", ".join(
        f"{k} {t[0] * tick_us / writes:.1f} + {t[1] * tick_us / writes:.1f}" for k, t in ticks.items()))
    if args.cpu_only:
        return
    for k in ("n1", "n2", "client"):
        path = out / f"{k}.txt"
        if path.exists():
            summarize(path, groups=k != "client")


if __name__ == "__main__":
    main()
