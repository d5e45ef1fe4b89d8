"""The final reads' processes start above every client process recorded (harness/run.py).

A client worker's process moves up by the concurrency after each info; one with ten infos had
reached 10 * concurrency + i, the final reads' first process, while its last operation was still
open (cut at the time limit): the history then had one process invoke twice, and every checker
refused it (a simulated 26 s outage without convictions did this)."""

from __future__ import annotations

from pathlib import Path

from harness.generator import Recorder
from harness.history import HistoryWriter


def test_the_recorder_knows_the_highest_client_process(tmp_path: Path) -> None:
    with HistoryWriter(tmp_path / "h.jsonl") as w:
        r = Recorder(w, clock_ns=lambda: 0)
        assert r.max_process == -1
        r.record(3, "invoke", "read", 1)
        r.record(103, "invoke", "read", 1)
        r.nemesis("info", "start-kill", {"nodes": ["n1"]}, "kill")
        r.record(7, "ok", "read", 1, 5)
        assert r.max_process == 103
