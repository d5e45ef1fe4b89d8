"""Membership bench: a join of a fourth node into a 3-node cluster holding data (bytes and
partitions streamed, time to NORMAL), and a Merkle repair when 1% of keys differ on one replica.

    .venv/bin/python bench/membership.py [--mb 64] [--value-bytes 1024] [--preload direct|client]
        [--skip-repair] [--skip-leave] [--verify-keys 200] [--seed 1] [--timeout 3600] [--dir PARENT] [--keep]

Real node processes on 127.0.0.1, keyspace ``ks`` RF=3 (SimpleStrategy), table ``ks.t``; key
``key<i>`` holds one column ``v`` of ``--value-bytes`` pseudo-random (incompressible) bytes, as
many keys as make ``--mb`` MiB of values. ``--mb 1024`` is the issue's 1 GB.

Preload (every replica holds every key: RF=3 on 3 nodes):

- ``direct`` (default): offline, before any node starts. The schema (keyspace and table) is
  written to each node's ``schema.json`` as the node persists it (node/schema.py), each node's
  tokens are chosen (seeded) and written to its ``tokens.json`` (the others' to its ``peers.json``), and the data is written into n1's
  storage directory as SSTables (``SSTableWriter``, in the token sort order the node picks, one
  file per range between the ring's tokens: the layout the nodes' own flushes and compactions
  leave), then that directory (without its commit log) is copied to n2 and n3. Each copy is opened with the engine and checked (partition count and a sample of values)
  before the nodes start.
- ``client``: the original path: create the keyspace and table through n1, write every key at ONE
  through n1's client port, flush every node. Slow (about 3x the data in replica writes).

Either way, once the cluster is up a sample of keys (``--verify-keys``, plus the first and last)
is read at ALL through n1 and compared with the written values, and the on-disk table size per
node is printed.

Repair (runs first; skipped with ``--skip-repair``): a repair with nothing to fix, then the 1% difference is
made by killing n3, overwriting 1% of the keys at QUORUM through n1 with the ``drop_hints`` fault
switch on (so the writes reach n3 only by repair), restarting n3 and repairing. Reference: the size
of the table on one replica (what a full copy would send) and the repair with nothing to fix.

Join (after the repair, if any): n4 starts with ``auto_bootstrap``; measured are seconds from process start to NORMAL (as n1
sees it), the bootstrap operation's seconds (announce waits + streaming), bytes and partitions
streamed, and MB/s over the bootstrap operation; n4's table size is taken after a flush that
follows the measurement. References measured in the same run: one replica's table size; n4's
effective ownership of ``ks`` (the fraction of the keys it should receive, about 3/4 with RF=3 over
4 nodes); a local copy (read, write, fsync) of one replica's SSTable files on the same disk, as
MB/s. The printed ratios are join/reference. The join is also split into its two paths (node/
rangecopy.py): the SSTables moved as whole files and the partition stream (memtables and SSTables
spanning a range boundary), each as bytes, seconds and MB/s / local copy MB/s.

Leave (skipped with ``--skip-leave``): n4 decommissions, then n5 joins, is killed and removed with
removenode from n1; the same two-path figures are printed for each.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.client import open_client  # noqa: E402
from node.protocol import encode_value  # noqa: E402
from node.ring import make_partitioner  # noqa: E402
from node.runtime import Clock  # noqa: E402
from node.schema import Schema, save_schema  # noqa: E402
from node.ring import generate_tokens  # noqa: E402
from node.storage import Cell, StorageConfig, StorageEngine  # noqa: E402
from node.storage.cells import Partition  # noqa: E402
from node.storage.sstable import SSTableWriter  # noqa: E402
from node.streaming import choose_sort_key  # noqa: E402

SECRET = "bench"
KS, TABLE = "ks", "t"
REPLICATION = {"class": "SimpleStrategy", "replication_factor": 3}
PARTITIONER = "murmur3"  # the node's default (node/config.py); the nodes here do not override it
# Tokens per node (the bench's node.toml says the same).
NUM_TOKENS = 16


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def value_of(seed: int, i: int, size: int) -> bytes:
    """The value written to ``key<i>``: ``size`` pseudo-random bytes, reproducible for checking."""
    return hashlib.shake_128(b"%d:%d" % (seed, i)).digest(size)


def key_of(i: int) -> str:
    """The partition key of key number ``i`` (UTF-8 on the wire, as the client sends a str)."""
    return f"key{i}"


class Proc:
    """One node process."""

    def __init__(self, root: Path, nid: str, seed: str | None, extra: str = "") -> None:
        self.nid, self.dir = nid, root / nid
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data = self.dir / "data"
        self.client, self.internode = _port(), _port()
        self.seed = seed or f"127.0.0.1:{self.internode}"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss_kb = 0

    def start(self) -> None:
        (self.dir / "node.toml").write_text(
            f'node_id = "{self.nid}"\ndata_dir = "{self.data}"\nclient_port = {self.client}\n'
            f'internode_port = {self.internode}\nseeds = ["{self.seed}"]\ncluster_secret = "{SECRET}"\n'
            f"num_tokens = {NUM_TOKENS}\n[gossip]\ninterval = 0.5\n[membership]\nring_delay = 0.5\n{self.extra}\n"
        )
        log = open(self.dir / "stderr.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "node", "--config", str(self.dir / "node.toml")], stdout=log, stderr=log)
        log.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.note_peak_rss()
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def note_peak_rss(self) -> None:
        """Remember the process's peak RSS (VmHWM) so far."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():  # type: ignore[union-attr]
                if line.startswith("VmHWM:"):
                    self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))
        except (OSError, AttributeError, ValueError):
            pass

    def table_bytes(self) -> int:
        """Bytes of every file under the node's table directories (what the node reports as load)."""
        return _tree_bytes(self.data / "storage" / "data")


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


async def admin(p: Proc, op: str, timeout: float = 600, **fields: Any) -> dict[str, Any]:
    """One admin request."""
    async with open_client("127.0.0.1", p.client, secret=SECRET, timeout=timeout) as c:
        return await c.admin(op, **fields)


async def wait_for(pred: Any, timeout: float, what: str) -> None:
    """Poll an async predicate."""
    with trio.fail_after(timeout):
        while True:
            try:
                if await pred():
                    return
            except Exception:  # noqa: BLE001 - node starting
                pass
            await trio.sleep(0.2)


async def status(p: Proc) -> dict[str, dict[str, Any]]:
    """node id → status row."""
    return {n["node_id"]: n for n in (await admin(p, "status"))["nodes"]}


async def load(p: Proc, keys: range, seed: int, value_bytes: int, level: str, writers: int = 16) -> None:
    """Write ``keys`` (values from ``seed``) from concurrent writers through ``p``'s client port."""
    todo = list(keys)

    async def worker(start: int) -> None:
        async with open_client("127.0.0.1", p.client, secret=SECRET, timeout=30) as c:
            for i in todo[start::writers]:
                await c.put(KS, TABLE, key_of(i), {"v": value_of(seed, i, value_bytes)}, consistency=level)

    async with trio.open_nursery() as n:
        for w in range(writers):
            n.start_soon(worker, w)


def sample_keys(nkeys: int, k: int, seed: int) -> list[int]:
    """``k`` random key numbers plus the first and the last."""
    return sorted({0, nkeys - 1, *random.Random(seed).sample(range(nkeys), min(k, nkeys))})


def preload_direct(nodes: list[Proc], nkeys: int, seed: int, value_bytes: int, check: list[int]) -> dict[str, Any]:
    """Write the schema and every key into the nodes' data directories before they start."""
    # The schema as the node persists it (node/server.py: data_dir/schema.json, loaded at start,
    # applied to the storage engine, its version gossiped): identical on every node.
    ts = time.time_ns() // 1000
    schema = Schema()
    schema.create_keyspace(KS, REPLICATION, ts)
    schema.create_table(KS, TABLE, {}, ts)
    for p in nodes:
        p.data.mkdir(parents=True, exist_ok=True)
        save_schema(p.data / "schema.json", schema)
    options = schema.table(KS, TABLE).storage_options()

    # n1's storage: data_dir/storage, ordered by the partitioner's token as the node would order it.
    src = nodes[0].data / "storage"
    sort_key, token_ordered = choose_sort_key(src, make_partitioner(PARTITIONER))
    if not token_ordered:
        raise RuntimeError(f"{src} is not token-ordered")
    # The nodes' tokens are chosen here (tokens.json, which a node reads at start instead of
    # choosing), so the data can be written as the nodes' own flushes and compactions would
    # leave it: one SSTable per split range of the ring, in token order, without the commit log
    # and memtable of apply() and without a major compaction on the running nodes.
    part = make_partitioner(PARTITIONER)
    rng = random.Random(seed)
    taken: list[Any] = []
    for p in nodes:
        toks = generate_tokens(part, NUM_TOKENS, rng, taken)
        taken += toks
        (p.data / "tokens.json").write_text(json.dumps([part.to_string(t) for t in toks]))
    points = sorted(taken)
    # Each node also knows the ring from the start (peers.json, as a cluster that ran before
    # saves it): a node that knew only its own tokens would compact files of other nodes' ranges
    # together before gossip told it about them, and re-cut them once it heard.
    owned = [taken[i * NUM_TOKENS:(i + 1) * NUM_TOKENS] for i in range(len(nodes))]
    for p in nodes:
        rows = [{"node_id": q.nid, "internode_port": q.internode, "client_port": q.client,
                 "tokens": [part.to_string(t) for t in qt]} for q, qt in zip(nodes, owned) if q is not p]
        (p.data / "peers.json").write_text(json.dumps(rows))
    engine = StorageEngine(src, StorageConfig(), Clock(), sort_key)
    engine.open()
    t0 = time.monotonic()
    try:
        engine.create_table(KS, TABLE, options)
        table_dir = engine._table(KS, TABLE).directory  # noqa: SLF001 - a bench writing a node's files
    finally:
        engine.close()
    order = sorted(range(nkeys), key=lambda i: (sort_key(key_of(i).encode()), key_of(i).encode()))
    fp = options.bloom_fp_chance
    gen = 0
    writer: SSTableWriter | None = None
    current = -1
    for i in order:
        k = key_of(i).encode()
        rng_i = bisect.bisect_left(points, sort_key(k))
        if writer is None or rng_i != current:
            if writer is not None:
                writer.finish({"replay_position": 0, "origin": "flush", "created_us": ts})
            gen += 1
            writer = SSTableWriter(table_dir, gen, max(64, nkeys // max(1, len(points))) * 2, fp)
            current = rng_i
        writer.add(Partition(k, {"v": Cell("v", encode_value(value_of(seed, i, value_bytes)), ts + i)}))
    if writer is not None:
        writer.finish({"replay_position": 0, "origin": "flush", "created_us": ts})
    write_s = time.monotonic() - t0

    # The other replicas: the same files (same keys, values and timestamps as RF=3 writes leave).
    t0 = time.monotonic()
    for p in nodes[1:]:
        shutil.copytree(src, p.data / "storage", ignore=shutil.ignore_patterns("commitlog"))
    copy_s = time.monotonic() - t0

    # Check every replica on its own (a read at ALL later would repair a replica that lacked a key).
    t0 = time.monotonic()
    for p in nodes:
        sk, _ = choose_sort_key(p.data / "storage", make_partitioner(PARTITIONER))
        with StorageEngine(p.data / "storage", StorageConfig(), Clock(), sk) as e:
            st = e.stats()[f"{KS}.{TABLE}"]
            if st["sstable_partitions"] != nkeys or st["corrupt_sstables"]:
                raise RuntimeError(f"{p.nid}: {st['sstable_partitions']} partitions, expected {nkeys}: {st}")
            for i in check:
                part = e.read(KS, TABLE, key_of(i).encode())
                if part is None or part.cells["v"].value != encode_value(value_of(seed, i, value_bytes)):
                    raise RuntimeError(f"{p.nid}: key{i} does not hold the written value")
    check_s = time.monotonic() - t0
    return {"write_s": write_s, "copy_s": copy_s, "check_s": check_s, "sstable_bytes": nodes[0].table_bytes()}


async def verify_all(p: Proc, keys: list[int], seed: int, value_bytes: int, readers: int = 8) -> float:
    """Read ``keys`` at ALL through ``p`` and compare with the written values; returns seconds."""
    bad: list[str] = []
    t0 = time.monotonic()

    async def worker(start: int) -> None:
        async with open_client("127.0.0.1", p.client, secret=SECRET, timeout=60) as c:
            for i in keys[start::readers]:
                row = await c.get(KS, TABLE, key_of(i), consistency="ALL")
                if row.get("v", (None,))[0] != value_of(seed, i, value_bytes):
                    bad.append(key_of(i))

    async with trio.open_nursery() as n:
        for w in range(readers):
            n.start_soon(worker, w)
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(keys)} keys read at ALL differ from what was written: {bad[:5]}")
    return time.monotonic() - t0


def copy_reference(p: Proc, dest: Path) -> tuple[int, float]:
    """Copy ``p``'s SSTable files to ``dest`` on the same disk (read, write, fsync); bytes and seconds."""
    files = [f for f in (p.data / "storage" / "data").rglob("*") if f.is_file()]
    dest.mkdir(parents=True, exist_ok=True)
    total = 0
    t0 = time.monotonic()
    for f in files:
        out = dest / f.name
        try:
            with open(f, "rb") as fin, open(out, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
                fout.flush()
                os.fsync(fout.fileno())
                total += fout.tell()
        except FileNotFoundError:
            # A compaction replaced it meanwhile (the join added split points): MB/s is what counts.
            continue
    secs = time.monotonic() - t0
    shutil.rmtree(dest, ignore_errors=True)
    return total, secs


def _row(name: str, v: Any) -> None:
    if isinstance(v, int):
        print(f"  {name:<56}{v:>16,}")
    elif isinstance(v, float):
        print(f"  {name:<56}{v:>16.2f}")
    else:
        print(f"  {name:<56}{v!s:>16}")


async def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="ringlab-bench-membership-", dir=args.dir))
    nodes: list[Proc] = []
    result: dict[str, Any] = {}
    try:
        n1 = Proc(root, "n1", None)
        nodes = [n1, Proc(root, "n2", n1.seed), Proc(root, "n3", n1.seed)]
        nkeys = args.mb * 1024 * 1024 // args.value_bytes
        check = sample_keys(nkeys, args.verify_keys, args.seed)
        t0 = time.monotonic()
        if args.preload == "direct":
            pre = preload_direct(nodes, nkeys, args.seed, args.value_bytes, check)
            how = (f"direct preload: SSTables written on n1 {pre['write_s']:.1f} s, copied to n2/n3 in "
                   f"{pre['copy_s']:.1f} s, each replica checked offline ({len(check)} keys) in {pre['check_s']:.1f} s")
        for p in nodes:
            p.start()
        await wait_for(lambda: _all_up(n1, 3), 120, "3 nodes up")
        if args.preload == "client":
            await admin(n1, "create_keyspace", name=KS, replication=REPLICATION)
            await admin(n1, "create_table", keyspace=KS, name=TABLE, options={})
            await load(n1, range(nkeys), args.seed, args.value_bytes, "ONE")
            for p in nodes:
                await admin(p, "flush")
            how = f"client preload (start, schema, writes at ONE through n1, flush): {time.monotonic() - t0:.1f} s"
        else:
            await wait_for(lambda: _sees_up(nodes[1], 3), 60, "n2 sees all")
            await wait_for(lambda: _sees_up(nodes[2], 3), 60, "n3 sees all")
        preload_s = time.monotonic() - t0
        verify_s = await verify_all(n1, check, args.seed, args.value_bytes)
        await trio.sleep(6)  # LOAD is re-published in gossip every 5 s
        st = await status(n1)
        per_node = {n: st[n]["load"] for n in st}
        on_disk = {p.nid: p.table_bytes() for p in nodes}
        print(f"membership bench: {nkeys:,} keys x {args.value_bytes} B random values (~{args.mb} MiB), RF=3 on 3 nodes; "
              f"{how}; ready and serving {preload_s:.1f} s after start of preload; data in {root}")
        print(f"  verified: {len(check)} keys read at ALL through n1 return the written values ({verify_s:.1f} s)")
        print(f"  on-disk table bytes per node: {on_disk}; gossiped LOAD {per_node}")
        table_bytes = on_disk["n3"]
        result["preload"] = {"mode": args.preload, "keys": nkeys, "seconds": round(preload_s, 1), "table_bytes": on_disk}

        print(f"  {'metric':<56}{'value':>16}")
        # ---- repair: nothing differs (validation only), then 1% differs on n3
        if not args.skip_repair:
            n3 = nodes[2]
            clean = await admin(n3, "repair", timeout=args.timeout, keyspace=KS)
            await admin(n1, "faults", set={"drop_hints": True})
            n3.stop()
            changed = len(range(0, nkeys, 100))
            await load(n1, range(0, nkeys, 100), args.seed + 1, args.value_bytes, "QUORUM")
            await admin(n1, "faults", set={"drop_hints": False})
            n3.start()
            await wait_for(lambda: _all_up(n1, 3), 120, "n3 back")
            await wait_for(lambda: _sees_up(n3, 3), 60, "n3 sees all")
            t0 = time.monotonic()
            rep = await admin(n3, "repair", timeout=args.timeout, keyspace=KS)
            rep_s = time.monotonic() - t0
            for name, v in [
                ("repair, no differences: seconds", clean["seconds"]),
                ("repair, no differences: tree bytes received", clean["tree_bytes"]),
                ("repair, no differences: bytes streamed", clean["streamed_bytes"]),
                (f"repair, {changed:,} keys (1%) differ: seconds", round(rep_s, 2)),
                ("repair, 1% differ: tree bytes received", rep["tree_bytes"]),
                ("repair, 1% differ: differing leaves", rep["differing_leaves"]),
                ("repair, 1% differ: partitions streamed (both ways)", rep["streamed_partitions"]),
                ("repair, 1% differ: bytes streamed (both ways)", rep["streamed_bytes"]),
                ("  one replica's table (a full copy) bytes", table_bytes),
                ("  streamed / full copy", f"{rep['streamed_bytes'] / max(1, table_bytes):.3f}x"),
            ]:
                _row(name, v)
            result["repair"] = {"clean": clean, "one_percent": rep}

        # ---- join a fourth node
        n4 = Proc(root, "n4", n1.seed, "auto_bootstrap = true")
        nodes.append(n4)
        t0 = time.monotonic()
        n4.start()
        await wait_for(lambda: _normal(n1, "n4"), args.timeout, "n4 NORMAL")
        join_s = time.monotonic() - t0
        last = (await admin(n4, "netstats"))["last"]
        owns = (await admin(n1, "status", keyspace=KS))["nodes"]
        n4_owns = next(r["owns"] for r in owns if r["node_id"] == "n4")
        for p in nodes:
            p.note_peak_rss()
        await admin(n4, "flush", timeout=args.timeout)  # what it received sits in its memtables
        join_mbs = last["bytes"] / 1e6 / max(0.001, last["seconds"])
        ref_bytes = nodes[0].table_bytes()  # n1: never restarted nor repaired into
        copied, copy_s = copy_reference(nodes[0], root / "copy-reference")
        copy_mbs = copied / 1e6 / max(0.001, copy_s)
        def mbs(nbytes: Any, secs: Any) -> float:
            return float(nbytes) / 1e6 / max(0.001, float(secs))

        file_mbs = mbs(last.get("file_bytes", 0), last.get("file_seconds", 0))
        stream_mbs = mbs(last.get("stream_bytes", 0), last.get("stream_seconds", 0))
        for name, v in [
            ("join n4: seconds from process start to NORMAL", join_s),
            ("join n4: bootstrap op seconds (announce + streaming)", last["seconds"]),
            ("join n4: bytes streamed", last["bytes"]),
            ("join n4: partitions streamed", last["partitions"]),
            ("join n4: MB/s (bytes streamed / bootstrap op seconds)", round(join_mbs, 1)),
            ("join n4: table bytes on n4 after join", n4.table_bytes()),
            ("  one replica's table bytes (n1)", ref_bytes),
            ("  streamed / one replica's table", f"{last['bytes'] / max(1, ref_bytes):.3f}x"),
            ("  partitions streamed / keys", f"{last['partitions'] / nkeys:.3f}"),
            ("  n4's effective ownership of ks after the join", f"{n4_owns:.3f}"),
            ("  local copy of n1's SSTables (read+write+fsync): s", copy_s),
            ("  local copy MB/s", round(copy_mbs, 1)),
            ("  join MB/s / local copy MB/s", f"{join_mbs / max(0.001, copy_mbs):.3f}x"),
            ("join n4 by whole files: SSTables", last.get("files", 0)),
            ("join n4 by whole files: bytes", last.get("file_bytes", 0)),
            ("join n4 by whole files: seconds", last.get("file_seconds", 0.0)),
            ("join n4 by whole files: MB/s / local copy MB/s", f"{file_mbs / max(0.001, copy_mbs):.3f}x"),
            ("join n4 by partition stream: bytes", last.get("stream_bytes", 0)),
            ("join n4 by partition stream: seconds", last.get("stream_seconds", 0.0)),
            ("join n4 by partition stream: MB/s / local copy MB/s", f"{stream_mbs / max(0.001, copy_mbs):.3f}x"),
            ("  cluster data before join (3 replicas, bytes)", sum(on_disk.values())),
        ]:
            _row(name, v)
        peaks = {p.nid: round(p.peak_rss_kb / 1024) for p in nodes}
        bench_peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(f"  peak RSS MiB: nodes {peaks}, bench process {bench_peak}; data directory {_tree_bytes(root):,} bytes at the end")
        result["join"] = {**last, "to_normal_s": round(join_s, 2), "copy_reference": {"bytes": copied, "seconds": round(copy_s, 3)}}

        # ---- decommission n4 (its ranges go back to n1-n3), then join n5 and removenode it
        if not args.skip_leave:
            await wait_for(lambda: _all_up(n1, 4), 120, "4 nodes up")
            dec = await admin(n4, "decommission", timeout=args.timeout)
            n4.proc.wait(60) if n4.proc is not None else None
            n5 = Proc(root, "n5", n1.seed, "auto_bootstrap = true")
            nodes.append(n5)
            n5.start()
            await wait_for(lambda: _normal(n1, "n5"), args.timeout, "n5 NORMAL")
            await admin(n5, "flush", timeout=args.timeout)
            n5.stop()
            await wait_for(lambda: _down(n1, "n5"), 120, "n5 DOWN at n1")
            rem = await admin(n1, "removenode", timeout=args.timeout, node="n5")
            for label, r in (("decommission n4", dec), ("removenode n5 (dead)", rem)):
                for name, v in [
                    (f"{label}: op seconds", r.get("seconds", 0.0)),
                    (f"{label}: bytes (files + partitions)", r.get("bytes", 0)),
                    (f"{label}: whole files / bytes", f"{r.get('files', 0)} / {r.get('file_bytes', 0):,}"),
                    (f"{label}: MB/s over the op / local copy MB/s",
                     f"{mbs(r.get('bytes', 0), r.get('seconds', 0)) / max(0.001, copy_mbs):.3f}x"),
                    (f"{label}: by whole files MB/s / local copy",
                     f"{mbs(r.get('file_bytes', 0), r.get('file_seconds', 0)) / max(0.001, copy_mbs):.3f}x"),
                    (f"{label}: by partition stream MB/s / local copy",
                     f"{mbs(r.get('stream_bytes', 0), r.get('stream_seconds', 0)) / max(0.001, copy_mbs):.3f}x"),
                ]:
                    _row(name, v)
            result["decommission"], result["removenode"] = dec, rem
        print(json.dumps(result, default=str))
    finally:
        for p in nodes:
            p.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


async def _all_up(p: Proc, n: int) -> bool:
    st = await status(p)
    return len([x for x in st.values() if x["state"] == "U"]) >= n


async def _sees_up(p: Proc, n: int) -> bool:
    return await _all_up(p, n)


async def _down(p: Proc, nid: str) -> bool:
    return (await status(p)).get(nid, {}).get("state") == "D"


async def _normal(p: Proc, nid: str) -> bool:
    return (await status(p)).get(nid, {}).get("status") == "NORMAL"


def main() -> None:
    """Parse arguments and run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=64, help="MiB of values to load (1024 = the issue's 1 GB)")
    ap.add_argument("--value-bytes", type=int, default=1024)
    ap.add_argument("--preload", choices=("direct", "client"), default="direct",
                    help="direct: write the data set into the data directories before the nodes start (default); "
                         "client: write it through n1's client port (slow; small --mb)")
    ap.add_argument("--skip-repair", action="store_true", help="measure the join only")
    ap.add_argument("--skip-leave", action="store_true", help="skip the decommission and removenode after the join")
    ap.add_argument("--verify-keys", type=int, default=200, help="random keys read back at ALL after the preload")
    ap.add_argument("--seed", type=int, default=1, help="seed of the values and of the verified sample")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed for each repair and for the join")
    ap.add_argument("--dir", default=None, help="parent of the bench's data directory (default: the system temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the data directory")
    trio.run(run, ap.parse_args())


if __name__ == "__main__":
    main()
