"""Phi-accrual failure detector: pure timelines, no sockets."""

import math
import random

import pytest

from node.cluster.failure_detector import PHI_FACTOR, PhiAccrualFailureDetector


def feed(fd: PhiAccrualFailureDetector, node: str, times: list[float]) -> None:
    for t in times:
        fd.heartbeat(node, t)


def test_unknown_node_has_zero_phi_and_is_available() -> None:
    fd = PhiAccrualFailureDetector()
    assert fd.phi("x", 100.0) == 0.0
    assert fd.is_available("x", 100.0)


def test_phi_grows_with_silence() -> None:
    fd = PhiAccrualFailureDetector()
    feed(fd, "a", [float(t) for t in range(200)])
    last = 199.0
    phis = [fd.phi("a", last + s) for s in (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)]
    assert phis[0] == 0.0
    assert all(later > earlier for earlier, later in zip(phis, phis[1:]))


def test_phi_is_exponential_silence_over_mean_times_log10_e() -> None:
    fd = PhiAccrualFailureDetector(bootstrap_interval=1.0)
    feed(fd, "a", [0.0, 1.0, 2.0, 3.0])
    assert fd.mean_interval("a") == pytest.approx(1.0)
    assert fd.phi("a", 3.0 + 4.0) == pytest.approx(4.0 * math.log10(math.e))
    assert PHI_FACTOR == pytest.approx(math.log10(math.e))


def test_conviction_at_one_second_heartbeats_after_about_eighteen_seconds() -> None:
    fd = PhiAccrualFailureDetector(threshold=8.0)
    feed(fd, "a", [float(t) for t in range(1, 1002)])  # the bootstrap sample is evicted
    assert fd.mean_interval("a") == pytest.approx(1.0)
    last = 1001.0
    # phi > 8 needs a silence of 8 / log10(e) = 18.42 mean intervals.
    assert fd.is_available("a", last + 18.3)
    assert not fd.is_available("a", last + 18.5)


def test_faster_heartbeats_convict_sooner() -> None:
    fd = PhiAccrualFailureDetector()
    feed(fd, "fast", [i * 0.5 for i in range(2000)])
    last = 1999 * 0.5
    assert fd.is_available("fast", last + 9.0)
    assert not fd.is_available("fast", last + 9.5)


def test_no_false_conviction_under_jitter() -> None:
    rng = random.Random(8)
    fd = PhiAccrualFailureDetector()
    t = 0.0
    worst = 0.0
    for _ in range(5000):
        gap = rng.uniform(0.2, 1.9)  # heavy jitter around a 1 s gossip interval
        # Check at every 0.1 s inside the gap, as the periodic checker might.
        step = 0.1
        while step < gap:
            worst = max(worst, fd.phi("a", t + step))
            step += 0.1
        t += gap
        fd.heartbeat("a", t)
    assert worst < 8.0


def test_long_pause_is_ignored_in_the_mean() -> None:
    fd = PhiAccrualFailureDetector(max_interval=2.0)
    feed(fd, "a", [float(t) for t in range(1, 101)])
    before = fd.mean_interval("a")
    fd.heartbeat("a", 100.0 + 60.0)  # one minute of silence, e.g. a GC pause or SIGSTOP
    assert fd.mean_interval("a") == pytest.approx(before)
    # Detection after the pause is as fast as before it.
    assert not fd.is_available("a", 160.0 + 19.0)


def test_bootstrap_interval_makes_a_new_node_hard_to_convict() -> None:
    fd = PhiAccrualFailureDetector(bootstrap_interval=2.0)
    fd.heartbeat("a", 0.0)
    assert fd.mean_interval("a") == pytest.approx(2.0)
    assert fd.is_available("a", 30.0)  # 30 s < 18.42 * 2 s
    assert not fd.is_available("a", 37.5)


def test_remove_forgets_history() -> None:
    fd = PhiAccrualFailureDetector()
    feed(fd, "a", [0.0, 1.0])
    fd.remove("a")
    assert fd.phi("a", 1000.0) == 0.0
    assert fd.last_arrival("a") is None


def test_window_bounds_history() -> None:
    fd = PhiAccrualFailureDetector(window=10)
    feed(fd, "a", [i * 0.1 for i in range(100)])  # 0.1 s intervals
    feed(fd, "a", [9.9 + i * 1.0 for i in range(1, 11)])  # then 1 s intervals fill the window
    assert fd.mean_interval("a") == pytest.approx(1.0)


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        PhiAccrualFailureDetector(window=0)
    with pytest.raises(ValueError):
        PhiAccrualFailureDetector(threshold=0)
