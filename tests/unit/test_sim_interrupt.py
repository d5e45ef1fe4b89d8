"""Ctrl-C on `harness sim` (issue 18: interrupted runs are unknown everywhere): the seeds running
end their campaigns and are checked, the command exits 2, and it never hangs. Before, the first
Ctrl-C terminated the worker pool under a worker sending its interrupted result (a hang when
only the parent got the signal; exit 255 and no results from a terminal)."""

from __future__ import annotations

import os
import signal

import pytest

from harness import simcli


def test_the_first_ctrl_c_is_noted_and_the_second_stops() -> None:
    before = signal.getsignal(signal.SIGINT)
    with simcli._Interrupts() as interrupts:
        os.kill(os.getpid(), signal.SIGINT)  # handled before the next bytecode: no exception
        assert interrupts.count == 1
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_workers_outlive_a_ctrl_c_outside_a_campaign(monkeypatch: pytest.MonkeyPatch) -> None:
    # A terminal's Ctrl-C reaches every worker; outside a campaign's workload it must not kill one
    # (its seed's result would never come back). Inside, the campaign's own receiver takes it.
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    with simcli._pool(1) as pool:
        pid = pool.apply(os.getpid)
        os.kill(pid, signal.SIGINT)
        assert pool.apply(os.getpid) == pid  # the same worker, still serving


def test_outside_the_main_thread_nothing_changes() -> None:
    import threading

    before = signal.getsignal(signal.SIGINT)
    errors: list[BaseException] = []

    def body() -> None:
        try:
            with simcli._Interrupts():
                pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert errors == [] and signal.getsignal(signal.SIGINT) is before
