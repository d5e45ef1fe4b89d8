"""SIGKILL a writing process at random points, restart the engine, and count what survived.

batch: every acknowledged write must be read back. periodic: acknowledged writes may be lost only
back to the last periodic fsync (the test measures and prints how many and how recent they were,
and also how many writes an OS crash at that instant could have cost)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from node import native
from node.runtime import Clock
from node.storage import StorageConfig, StorageEngine
from tests.cluster.crashwriter import cell_of, partition_of

PERIOD_MS = 200
KILLS_PER_MODE = 3


def _run_and_kill(data_dir: Path, mode: str, delay_s: float) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """Start the writer, SIGKILL it after ``delay_s``; returns (acks, syncs) with arrival times."""
    # In periodic mode the writer wraps StorageEngine.sync_commitlog to report what each fsync
    # covered, which the compiled build's class does not allow: that writer runs pure Python
    # (batch and group run in this process's mode).
    env = dict(os.environ, **({native.PURE_ENV: "1"} if mode == "periodic" else {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.cluster.crashwriter", str(data_dir), mode, "--period-ms", str(PERIOD_MS)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2], env=env,
    )
    acks: list[tuple[int, float]] = []
    syncs: list[tuple[int, float]] = []
    ready = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            kind, _, n = line.strip().partition(" ")
            if kind == "READY":
                ready.set()
            elif kind == "A":
                acks.append((int(n), time.monotonic()))
            elif kind == "S":
                syncs.append((int(n), time.monotonic()))

    t = threading.Thread(target=reader)
    t.start()
    try:
        assert ready.wait(30), "writer did not start"
        time.sleep(delay_s)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        t.join(10)
    return acks, syncs


def _recovered(data_dir: Path, acks: list[tuple[int, float]]) -> list[int]:
    """Reopen the engine and return the acknowledged writes that are missing."""
    engine = StorageEngine(data_dir, StorageConfig(), Clock())
    engine.open()
    try:
        missing = []
        for n, _ in acks:
            cell = cell_of(n)
            p = engine.read("ks", "t", partition_of(n), columns=[cell.name])
            if p is None or cell.name not in p.cells or p.cells[cell.name].value != cell.value:
                missing.append(n)
        return missing
    finally:
        engine.close()


@pytest.mark.parametrize("mode", ["batch", "periodic"])
def test_sigkill_loses_no_acknowledged_write_beyond_the_sync_mode_bound(tmp_path: Path, mode: str) -> None:
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    print(f"\n[{mode}] seed {seed}")
    for round_ in range(KILLS_PER_MODE):
        data_dir = tmp_path / f"round{round_}"
        delay = rng.uniform(0.3, 1.5)
        acks, syncs = _run_and_kill(data_dir, mode, delay)
        assert acks, "the writer acknowledged nothing before the kill"
        missing = _recovered(data_dir, acks)
        kill_time = acks[-1][1]
        if mode == "batch":
            print(f"[batch] killed after {delay:.2f}s: {len(acks)} acknowledged, {len(missing)} lost")
            assert missing == []
            continue
        # periodic: only writes acknowledged after the last completed fsync may be lost.
        covered = syncs[-1][0] if syncs else 0
        last_sync_time = syncs[-1][1] if syncs else acks[0][1]
        exposed = acks[covered:]
        window_ms = (kill_time - last_sync_time) * 1000
        lost_set = set(missing)
        print(f"[periodic] killed after {delay:.2f}s: {len(acks)} acknowledged, {len(missing)} lost after SIGKILL; "
              f"an OS crash at that instant could have lost the last {len(exposed)} writes "
              f"({window_ms:.0f} ms since the last fsync, period {PERIOD_MS} ms)")
        assert lost_set <= {n for n, _ in exposed}
        # The exposure is bounded by the period (plus scheduling slack on a busy 2-core machine).
        assert window_ms <= PERIOD_MS + 1000


def test_after_a_failed_fsync_nothing_is_acknowledged_and_every_ack_survives(tmp_path: Path) -> None:
    """A real writer process whose fdatasync starts failing (EIO) after 40 calls, in batch mode:
    once it fails no new write is acknowledged (commit_failure_policy = stop: every later write
    fails), and every write that was acknowledged is read back after a SIGKILL and restart."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.cluster.crashwriter", str(tmp_path), "batch", "--fail-fsync-after", "40"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    events: list[tuple[str, int]] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            kind, _, n = line.strip().partition(" ")
            if kind in ("A", "F"):
                events.append((kind, int(n)))
            if sum(k == "F" for k, _ in events) >= 20 or time.monotonic() > deadline:
                break
    finally:
        proc.kill()
        proc.wait(10)
    first_failure = next(i for i, (k, _) in enumerate(events) if k == "F")
    acks = [n for k, n in events if k == "A"]
    after = [n for k, n in events[first_failure:] if k == "A"]
    missing = _recovered(tmp_path, [(n, 0.0) for n in acks])
    print(f"\n[fsync EIO] {len(acks)} acknowledged before the failure, {len(after)} after it, "
          f"{sum(k == 'F' for k, _ in events)} failed; {len(missing)} acknowledged writes lost")
    # A write whose record an earlier, successful fsync covered may print its ack after another
    # task printed its failure: at most one per other writer task (4 tasks). Nothing beyond.
    assert acks and len(after) <= 3 and missing == []
