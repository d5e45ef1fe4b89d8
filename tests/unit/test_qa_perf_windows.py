"""perf's fault windows come from the schedule's start-<nemesis>/stop-<nemesis> records."""

from checkers import perf
from harness.history import NEMESIS, Op


def _nem(i: int, t: int, type_: str, f: str) -> Op:
    return Op(i, t, NEMESIS, type_, f, None, None, None, None, None, None, {})


def _client(i: int, t: int, type_: str) -> Op:
    return Op(i, t, 0, type_, "read", 1, None, "n1", "QUORUM", None, None, {})


def test_pause_kill_and_data_path_windows_are_counted() -> None:
    """start-pause/stop-pause, start-kill/stop-kill, start-crash (never stopped) are windows."""
    ops = [
        _nem(0, 10, "invoke", "start-pause"), _nem(1, 11, "info", "start-pause"),
        _client(2, 12, "invoke"), _client(3, 13, "ok"),
        _nem(4, 20, "invoke", "stop-pause"), _nem(5, 21, "info", "stop-pause"),
        _nem(6, 30, "invoke", "start-kill"), _nem(7, 31, "info", "start-kill"),
        _nem(8, 40, "invoke", "stop-kill"), _nem(9, 41, "info", "stop-kill"),
        _nem(10, 50, "invoke", "start-crash"), _nem(11, 51, "info", "start-crash"),
        _client(12, 60, "invoke"), _client(13, 61, "ok"),
    ]
    assert perf.fault_windows([o for o in ops if o.process == NEMESIS], 61) == [
        (10, 21, "pause"), (30, 41, "kill"), (50, 61, "crash")]
    assert perf.check(ops).counts["windows"] == 3


def test_the_older_names_still_open_and_close() -> None:
    """kill … start and bump-clock … reset-clock (hand-written and Jepsen-style histories)."""
    ops = [_nem(0, 1, "info", "kill"), _nem(1, 5, "info", "start"),
           _nem(2, 6, "info", "bump-clock"), _nem(3, 9, "info", "reset-clock")]
    assert perf.fault_windows(ops, 10) == [(1, 5, "kill"), (6, 9, "clock")]
