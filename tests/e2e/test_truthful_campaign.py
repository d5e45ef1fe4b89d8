"""A campaign whose every fault injection fails, interrupted with Ctrl-C, while a second campaign
tries the same store: it says unknown everywhere and the second is refused (issue 18).

One short local campaign on 3 nodes: the latency nemesis is made to fail in the harness process
(as it did over SSH without a fault proxy), SIGINT is sent once the history holds a failed
injection, and nothing depends on timing: each step waits for the previous one's evidence.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The harness with LatencyNemesis.start failing as an unreachable fault proxy makes it fail.
FAILING_LATENCY = """
import sys
from nemesis import faults
async def start(self, rng):
    raise ConnectionRefusedError("fault proxy at 10.0.0.1:8474 refused the connection")
faults.LatencyNemesis.start = start
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""
# Generous bounds for each wait on a loaded 2-core machine; none of them is asserted on.
WAIT_S = 120


def harness(store: Path, *args: str, script: str | None = None) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "harness", *args]
    return subprocess.Popen(cmd + ["--store", str(store)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for(what: str, cond: object, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():  # type: ignore[operator]
        assert proc.poll() is None, f"harness exited {proc.returncode} before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} after {WAIT_S} s"
        time.sleep(0.2)


def test_failed_injections_and_ctrl_c_make_an_unknown_run_and_a_busy_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    junit = tmp_path / "junit.xml"
    proc = harness(store, "run", "--nodes", "3", "--nemesis", "latency", "--nemesis-interval", "1",
                   "--time-limit", "120", "--recovery-time", "0", "--seed", "1", "--junit-xml", str(junit),
                   script=FAILING_LATENCY)
    try:
        history = store / "latest" / "history.jsonl"

        def failed_injection() -> bool:
            if not history.exists():
                return False
            # Whole lines only: the harness may be writing the last one right now.
            lines = history.read_text().split("\n")[:-1]
            return any(json.loads(line).get("type") == "fail" for line in lines if '"start-latency"' in line)

        wait_for("failed injection in the history", failed_injection, proc)
        second = harness(store, "run", "--nodes", "3", "--nemesis", "none")
        out2, err2 = second.communicate(timeout=WAIT_S)
        assert second.returncode == 254, (out2, err2)
        assert err2.strip().splitlines() == [
            f"harness run: error: store {store.resolve()} is in use by a running campaign (pid {proc.pid}; "
            f"lock {store.resolve() / 'campaign.lock'}): wait for it, stop it, or give another --store"]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, (out, err)
    assert "Overall: unknown" in out and "the run was interrupted" in out and "no injection of latency took effect" in out
    run = (store / "latest").resolve()
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] == "unknown" and results["checkers"]["campaign"]["valid"] == "unknown"
    assert results["checkers"]["campaign"]["counts"]["injections"] == 0
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.find("testcase[@name='campaign']/error") is not None
    assert '"failed":true' in (run / "report.html").read_text()
    assert not (store / "campaign.lock").exists()
