"""The report's duration is in the history's time: virtual seconds for a simulated run."""

from harness.report.render import _duration


class _Table:
    n = 10
    end_us = 26_000_000


def test_sim_run_duration_is_virtual() -> None:
    """A sim run of 30.77 virtual s that took 3.74 wall s reads 30.77 s."""
    test = {"start_time": 100.0, "end_time": 103.74, "sim": {"virtual_s": 30.77, "wall_s": 3.74}}
    assert _duration(test, _Table()) == 30.77  # type: ignore[arg-type]


def test_real_run_duration_is_wall() -> None:
    """A real run's duration is end_time - start_time."""
    assert _duration({"start_time": 100.0, "end_time": 121.5}, _Table()) == 21.5  # type: ignore[arg-type]
