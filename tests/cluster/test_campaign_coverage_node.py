"""A real node process under campaign coverage: its data survives SIGKILL (periodic saves), and a
graceful stop saves the drain path too."""

from __future__ import annotations

from pathlib import Path

import coverage
import trio

from harness import campaign_coverage as cc
from harness.deploy.local import LocalCluster, LocalClusterSpec

SERVER = cc.local_node_dir() / "server.py"


def drain_line() -> int:
    """The line Node.run reaches only once it drains (SIGTERM)."""
    for i, line in enumerate(SERVER.read_text().splitlines(), 1):
        if 'log.info("draining' in line:
            return i
    raise AssertionError("node/server.py has no draining log line")


def server_lines(path: Path) -> set[int]:
    """Lines of node/server.py recorded in one data file (empty while it is not readable yet)."""
    try:
        data = coverage.CoverageData(basename=str(path))
        data.read()
        return set(data.lines(str(SERVER)) or ())
    except Exception:  # noqa: BLE001 - the node may be writing its first save right now
        return set()


async def test_node_coverage_survives_sigkill_and_a_graceful_stop_saves_the_drain(tmp_path: Path) -> None:
    rc = cc.prepare_local(tmp_path)
    raw = tmp_path / cc.COVERAGE_DIR / cc.RAW_DIR
    cluster = LocalCluster(LocalClusterSpec(1, tmp_path / "nodes", "secret", 1, coverage_rc=rc))
    try:
        await cluster.start()
        # The process saves on its own every SAVE_INTERVAL; wait for one save (however slow the box).
        with trio.fail_after(120):
            while not any(server_lines(p) for p in cc.data_files(raw)):
                await trio.sleep(0.2)
        await cluster.kill("n1")
        [killed] = cc.data_files(raw)
        assert server_lines(killed) and drain_line() not in server_lines(killed)
        await cluster.start_node("n1")
        await cluster.wait_ready("n1")
        await cluster.stop_node("n1", grace=120)
        assert cluster.nodes["n1"].process is not None and cluster.nodes["n1"].process.returncode == 0
        files = cc.data_files(raw)
        assert len(files) == 2
        [stopped] = [p for p in files if p != killed]
        assert drain_line() in server_lines(stopped)
    finally:
        await cluster.stop()
