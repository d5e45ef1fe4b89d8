"""Fail each file operation of a small storage workload in turn (tests/unit/nth_fault.py).

For every N: the step that met the fault is refused with a named StorageError (never a bare
OSError), the engine keeps serving reads, the commit failure policy is applied (stop: no write
after a commit log failure is taken; ignore: later writes go on; die: the node ends), and after a
restart every acknowledged write reads back, no refused write resurfaces where it could not be,
no half-written SSTable is loaded, and the restarted engine writes again.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from node.cluster.messaging import PeerUnreachable
from node.hints import HintStore
from node.runtime import Runtime
from node.storage import Cell, Mutation, StorageConfig, StorageEngine
from node.storage.errors import DiskFull, StorageError, StorageFailure, WritesStopped
from nth_fault import NthFault, injected
from storage_model import ManualClock

KEYS = [b"k%d" % i for i in range(8)]


class _Died(BaseException):
    """commit_failure_policy = die: the node would exit here (os._exit); the sweep restarts it."""


@dataclass
class _Run:
    """What one faulted run saw: possible values per key, acknowledged tables, violations."""

    policy: str
    possible: dict[tuple[str, bytes], set[bytes | None]] = field(default_factory=dict)
    tables: set[str] = field(default_factory=set)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (step, error class)
    violations: list[str] = field(default_factory=list)
    commit_failed: str | None = None  # the step whose commit log failure the policy must act on
    died: bool = False
    ts: int = 0


def _config(policy: str) -> StorageConfig:
    # Batch mode: a write is acknowledged once fsynced. Segments of 1 KB so writes roll them.
    return StorageConfig(commitlog_sync="batch", commitlog_segment_size_kb=1, commit_failure_policy=policy)


def _workload(e: StorageEngine, run: _Run) -> None:
    """Writes, deletes, flushes, a compaction, a snapshot, a new table: each step judged."""

    def step(name: str, fn: Callable[[], Any]) -> StorageError | None:
        try:
            fn()
            return None
        except StorageError as exc:
            run.refused.append((name, type(exc).__name__))
            if run.commit_failed is None and e.write_failure() is not None:
                run.commit_failed = name
            _serving(e, run, name)
            return exc
        except OSError as exc:
            run.violations.append(f"{name}: bare {exc!r}")
            return None

    def write(table: str, key: bytes, value: bytes | None) -> None:
        run.ts += 1
        # 150-byte values: the 1 KB commit log segments roll every few writes.
        cell = Cell("c", None if value is None else value.ljust(150, b"."), run.ts)
        slot = run.possible.setdefault((table, key), {None})
        slot.add(cell.value)  # a refused write may still be read (it may be in the memtable)
        before = run.commit_failed
        error = step(f"write {table}/{key!r}", lambda: e.wait_durable(e.apply("ks", table, Mutation(key, [cell]))))
        if error is None:
            slot.clear()
            slot.add(cell.value)
        if before is not None and run.policy == "stop" and not isinstance(error, WritesStopped):
            run.violations.append(f"write after the commit log failure at {before!r} not refused: {error!r}")
        if before is None and run.policy == "ignore" and run.refused[:-1] and error is not None:
            run.violations.append(f"write after a refused step refused under ignore: {error!r}")
        if isinstance(error, StorageFailure) and not isinstance(error, DiskFull) and run.policy == "stop":
            if e.write_failure() is None:
                run.violations.append(f"commit log failure {error!r} left writes on under stop")

    def create(table: str) -> None:
        if step(f"create {table}", lambda: e.create_table("ks", table)) is None:
            run.tables.add(table)

    create("t")
    if "t" not in run.tables:
        return
    for i, k in enumerate(KEYS[:5]):
        write("t", k, b"a%d" % i)
    write("t", KEYS[1], None)
    step("flush 1", e.flush)
    for i, k in enumerate(KEYS[3:8]):
        write("t", k, b"b%d" % i)
    step("flush 2", e.flush)
    write("t", KEYS[0], b"c0")
    write("t", KEYS[6], None)
    step("flush 3", e.flush)
    step("compact", lambda: e.compact("ks", "t", major=True))
    step("snapshot", lambda: e.snapshot("s1"))
    create("u")
    for i, k in enumerate(KEYS[:3]):
        write("t", k, b"d%d" % i)
        if "u" in run.tables:
            write("u", k, b"u%d" % i)
    step("flush 4", e.flush)


def _serving(e: StorageEngine, run: _Run, after: str) -> None:
    """Reads go on after a refused step, and answer what could be there."""
    for (table, key), values in run.possible.items():
        if table not in run.tables:
            continue
        try:
            p = e.read("ks", table, key)
        except Exception as exc:  # noqa: BLE001 - any failure here is the finding
            run.violations.append(f"read of {table}/{key!r} after {after} failed: {exc!r}")
            continue
        got = None if p is None else p.cells["c"].value
        if got not in values:
            run.violations.append(f"read of {table}/{key!r} after {after}: {got!r} not in {values}")


def _one(tmp: Path, n: int | None, code: int, policy: str, fsyncgate: bool = False,
         reads: bool = False) -> tuple[NthFault, _Run]:
    """The workload with call ``n`` failing, then a restart and its checks."""
    run = _Run(policy)
    fault = NthFault(tmp, n, code, fsyncgate, reads=reads)

    def die(exc: StorageError) -> None:
        run.died = True
        raise _Died()

    with injected(fault):
        e = StorageEngine(tmp, _config(policy), ManualClock(), on_fatal=die)
        try:
            e.open()
        except StorageError as exc:
            run.refused.append(("open", type(exc).__name__))
            return fault, run
        try:
            _workload(e, run)
        except _Died:
            pass  # the process is gone: no close, the files stay as they were
        else:
            if policy != "ignore" and e._cl().failure() is not None and e.write_failure() is None:
                run.violations.append(f"commit log failure never met the policy: {e._cl().failure()!r}")
            try:
                e.close()
            except StorageError as exc:
                run.refused.append(("close", type(exc).__name__))
            except OSError as exc:
                run.violations.append(f"close: bare {exc!r}")
        fault.active = False
    if policy == "die" and run.commit_failed is not None and not run.died:
        run.violations.append(f"commit log failure at {run.commit_failed!r} and the node did not die")
    if policy != "die" and run.died:
        run.violations.append("the node died under commit_failure_policy = " + policy)
    fault.power_loss()  # fsyncgate: what the failed fsync covered is gone (a no-op otherwise)
    _after_restart(tmp, run, policy)
    return fault, run


def _after_restart(tmp: Path, run: _Run, policy: str) -> None:
    """A restart loads every acknowledged write and nothing half-written."""
    e = StorageEngine(tmp, _config(policy), ManualClock())
    with injected(NthFault(tmp)):  # numbers calls, fails none; spares the real fsyncs
        try:
            e.open()
        except StorageError as exc:
            run.violations.append(f"restart refused: {exc!r}")
            return
        try:
            _check_restarted(e, run)
        finally:
            e.close()


def _check_restarted(e: StorageEngine, run: _Run) -> None:
    tables = {t for _, t in e.tables()}
    if not run.tables <= tables:
        run.violations.append(f"acknowledged tables {run.tables - tables} gone after restart")
    for (table, key), values in run.possible.items():
        if table not in tables:
            continue
        p = e.read("ks", table, key)
        got = None if p is None else p.cells["c"].value
        if got not in values:
            run.violations.append(f"after restart {table}/{key!r} = {got!r}, not in {values}")
    bad = e.verify()
    if bad:
        run.violations.append(f"corrupt SSTables loaded at restart: {bad}")
    try:
        e.snapshot("after")  # the restarted engine writes again
        if tables:
            ks_table = sorted(tables)[0]
            e.wait_durable(e.apply("ks", ks_table, Mutation(b"new", [Cell("c", b"v", 1 << 40)])))
    except Exception as exc:  # noqa: BLE001 - the finding
        run.violations.append(f"writing after restart: {exc!r}")


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory in memory when the machine has one: a sweep creates thousands of small files."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and shm.stat().st_mode & 0o002):
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="ringlab-sweep-", dir=shm))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _sweep(root: Path, code: int, policy: str, fsyncgate: bool, pick: Callable[[str, str], bool],
           reads: bool = False) -> int:
    """Run the workload once per picked call number; returns how many; fails naming every finding."""
    counted, clean = _one(root / "count", None, code, policy, reads=reads)
    assert not clean.violations and not clean.refused, (clean.violations, clean.refused)
    points = [n for n, (kind, path) in enumerate(counted.ops, 1) if pick(kind, path)]
    problems = []
    for n in points:
        fault, run = _one(root / f"{n}", n, code, policy, fsyncgate, reads)
        assert fault.hit is not None and _rel(root / f"{n}", fault.hit) == _rel(root / "count", counted.ops[n - 1]), \
            "the workload is not deterministic"
        if run.violations:
            problems.append(f"call {n} ({fault.hit[0]} {Path(fault.hit[1]).name}): {run.violations[:3]}")
        shutil.rmtree(root / f"{n}", ignore_errors=True)
    assert not problems, "\n".join(problems)
    return len(points)


def _rel(root: Path, op: tuple[str, str]) -> tuple[str, str]:
    return op[0], op[1][len(str(root)):]


def _every(kind: str, path: str) -> bool:
    return True


def _commitlog(kind: str, path: str) -> bool:
    return "/commitlog/" in path or path.endswith("/commitlog")


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC], ids=["EIO", "ENOSPC"])
def test_every_file_operation_of_the_workload_may_fail(fast_dir: Path, code: int) -> None:
    assert _sweep(fast_dir, code, "stop", False, _every) > 200


@pytest.mark.parametrize("policy", ["ignore", "die"])
def test_every_commit_log_operation_may_fail_under_each_policy(fast_dir: Path, policy: str) -> None:
    assert _sweep(fast_dir, errno.EIO, policy, False, _commitlog) > 30


def test_every_file_read_of_the_workload_may_fail(fast_dir: Path) -> None:
    # A flush reads its new SSTable's components back to open it; a compaction reads its inputs.
    assert _sweep(fast_dir, errno.EIO, "stop", False, lambda kind, path: kind == "read", reads=True) > 30


def test_a_failed_fsync_may_lose_what_it_covered_and_no_acknowledged_write_goes_with_it(fast_dir: Path) -> None:
    # fsyncgate: the bytes a failed fsync covered are zeroed before the restart, as a crash after
    # the kernel dropped the dirty pages leaves them.
    assert _sweep(fast_dir, errno.EIO, "stop", True, lambda kind, path: kind == "fsync") > 40


class _Target:
    """A hinted replica: applies hints into a dict; unreachable for its first ``pause_after`` hints' round."""

    def __init__(self, pause_after: int | None = None) -> None:
        self.rows: dict[bytes, bytes] = {}
        self.pause_after = pause_after

    async def send(self, target: str, hint: dict[str, Any]) -> None:
        if self.pause_after is not None and len(self.rows) >= self.pause_after:
            self.pause_after = None
            raise PeerUnreachable(f"{target}: connection refused")
        m = Mutation.from_obj(hint["m"])
        self.rows[m.key] = m.cells[0].value  # type: ignore[assignment]


def _hints_run(tmp: Path, n: int | None, code: int) -> tuple[NthFault, list[str]]:
    """Store hints, deliver some (the target drops out midway), store more, deliver; then a new
    store on the same directory delivers: every hint stored is delivered, no step raised bare."""
    violations: list[str] = []
    stored: dict[bytes, bytes] = {}
    target = _Target(pause_after=2)
    fault = NthFault(tmp, n, code)

    def store(hs: HintStore, i: int) -> None:
        key, value = b"h%d" % i, b"v%d" % i
        try:
            hs.store("n2", "ks", "t", Mutation(key, [Cell("c", value, i + 1)]).to_obj(), i)
            stored[key] = value
        except OSError:
            pass  # the coordinator logs it and counts the hint as not stored

    with injected(fault):
        try:
            hs = HintStore(tmp / "hints", Runtime.real(1), 3600.0, throttle_kb_per_s=1 << 20)
        except OSError:
            return fault, violations  # the node does not start without its hints directory
        for i in range(4):
            store(hs, i)
        for _ in range(2):
            try:
                trio.run(hs.deliver, "n2", target.send)
            except OSError as exc:
                violations.append(f"delivery raised {exc!r} (it ends the node's delivery task)")
        for i in range(4, 7):
            store(hs, i)
        hs.close()
        fault.active = False
    hs = HintStore(tmp / "hints", Runtime.real(1), 3600.0, throttle_kb_per_s=1 << 20)
    while hs.pending():
        if not trio.run(hs.deliver, "n2", target.send):
            violations.append(f"delivery after the disk healed left {hs.pending()}")
            break
    lost = {k for k, v in stored.items() if target.rows.get(k) != v}
    if lost:
        violations.append(f"stored hints never delivered: {sorted(lost)}")
    return fault, violations


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC], ids=["EIO", "ENOSPC"])
def test_every_file_operation_of_hint_store_and_delivery_may_fail(fast_dir: Path, code: int) -> None:
    counted, clean = _hints_run(fast_dir / "count", None, code)
    assert not clean and counted.count > 15
    problems = []
    for n in range(1, counted.count + 1):
        fault, violations = _hints_run(fast_dir / f"{n}", n, code)
        if violations:
            problems.append(f"call {n} ({fault.hit}): {violations}")
    assert not problems, "\n".join(problems)


def _crashed(root: Path) -> _Run:
    """The workload without a fault and without a close (a crash), plus what a crash mid-flush and
    mid-append leaves: an SSTable generation without its TOC and a torn commit log record."""
    run = _Run("stop")
    with injected(NthFault(root)):
        e = StorageEngine(root, _config("stop"), ManualClock())
        e.open()
        _workload(e, run)
        e.wait_durable(e.apply("ks", "t", Mutation(KEYS[7], [Cell("c", b"last", run.ts + 1)])))
    run.possible[("t", KEYS[7])] = {b"last"}
    assert not run.violations and not run.refused
    (next((root / "data" / "ks").glob("t-*")) / "99-Data.db").write_bytes(b"unfinished")
    with open(sorted((root / "commitlog").glob("*.log"))[-1], "ab") as f:
        f.write(b"\x40\x00\x00\x00torn")
    return run


def test_every_file_operation_of_a_restart_after_a_crash_may_fail(fast_dir: Path) -> None:
    run = _crashed(fast_dir / "crashed")
    counted = NthFault(fast_dir / "count", reads=True)
    shutil.copytree(fast_dir / "crashed", fast_dir / "count")
    with injected(counted):
        e = StorageEngine(fast_dir / "count", _config("stop"), ManualClock())
        e.open()
        e.close()
    assert counted.count > 10
    problems = []
    for n in range(1, counted.count + 1):
        tmp = fast_dir / f"{n}"
        shutil.copytree(fast_dir / "crashed", tmp)
        attempt = _Run("stop", possible=run.possible, tables=run.tables)
        fault = NthFault(tmp, n, errno.EIO, reads=True)
        with injected(fault):
            e = StorageEngine(tmp, _config("stop"), ManualClock())
            try:
                e.open()
            except StorageError as exc:
                # Refused by name (the node exits 3 saying why); the next start must work. Not
                # for a leftover that cannot be removed: it is never loaded, so the node starts.
                if fault.hit is not None and fault.hit[0] == "unlink":
                    attempt.violations.append(f"open refused over an unfinished SSTable's unlink: {exc!r}")
            except OSError as exc:
                attempt.violations.append(f"open: bare {exc!r}")
            else:
                _serving(e, attempt, f"an open that met call {n}")
                try:
                    e.close()
                except StorageError:
                    pass
        _after_restart(tmp, attempt, "stop")
        if attempt.violations:
            problems.append(f"call {n} ({fault.hit}): {attempt.violations[:3]}")
        shutil.rmtree(tmp, ignore_errors=True)
    assert not problems, "\n".join(problems)
