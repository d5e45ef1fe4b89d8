"""The runtime clock: skew by offset and rate without jumps."""

import time

import pytest

from node.runtime import Clock, Rng


def test_offset_moves_wall_clock_by_exactly_the_offset() -> None:
    clock = Clock()
    before = time.time_ns() // 1000
    clock.set_skew(offset_us=5_000_000)
    reading = clock.wall_us()
    after = time.time_ns() // 1000
    assert before + 5_000_000 <= reading <= after + 5_000_000


def test_rate_change_does_not_jump_and_changes_speed() -> None:
    clock = Clock()
    clock.set_skew(offset_us=-2_000_000)
    a = clock.wall_us()
    clock.set_skew(rate=10.0)
    b = clock.wall_us()
    assert 0 <= b - a < 50_000  # re-anchored: no jump
    time.sleep(0.05)
    c = clock.wall_us()
    assert c - b >= 10 * 40_000  # ran ~10x faster than real time


def test_bump_is_relative_and_reset_returns_to_real_time() -> None:
    clock = Clock()
    clock.bump(1_000_000)
    clock.bump(1_000_000)
    assert 1_900_000 < clock.offset_us() < 2_100_000
    clock.reset()
    assert abs(clock.offset_us()) < 50_000
    assert clock.rate == 1.0


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        Clock().set_skew(rate=0)


def test_seeded_rng_is_reproducible() -> None:
    a, b = Rng(7), Rng(7)
    assert [a.randrange(1000) for _ in range(10)] == [b.randrange(1000) for _ in range(10)]
