"""Hinted handoff with a hint its target refuses forever: the rest of the queue is delivered, the
bad hint is moved aside after MAX_DELIVERY_ATTEMPTS and logged, and the replicas converge."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import trio

from node.cluster.messaging import PeerUnreachable, RemoteError, RequestTimeout
from node.hints import MAX_DELIVERY_ATTEMPTS, HintStore
from node.runtime import Runtime
from node.storage.cells import Cell, Mutation

HINTS = 100


class Replica:
    """The hinted target: applies hints into a dict, refuses the one poisoned key."""

    def __init__(self, poisoned: bytes) -> None:
        self.rows: dict[bytes, bytes] = {}
        self.poisoned = poisoned
        self.up = True
        self.paused = False

    async def send(self, target: str, hint: dict[str, Any]) -> None:
        if not self.up:
            raise PeerUnreachable(f"{target}: connection refused")
        if self.paused:
            raise RequestTimeout(f"no reply from {target} to MUTATION within 2 s")
        m = Mutation.from_obj(hint["m"])
        if m.key == self.poisoned:
            raise RemoteError(f"{target}: InvalidMutation: refused for good")
        self.rows[m.key] = m.cells[0].value  # type: ignore[assignment]


def _store(tmp_path: Path) -> tuple[HintStore, dict[bytes, bytes]]:
    hints = HintStore(tmp_path / "hints", Runtime.real(1), 3600.0, throttle_kb_per_s=1 << 20)
    source: dict[bytes, bytes] = {}
    for i in range(HINTS):
        key, value = b"k%d" % i, b"v%d" % i
        source[key] = value
        hints.store("n2", "ks", "t", Mutation(key, [Cell("c", value, i + 1)]).to_obj(), i)
    return hints, source


def test_a_refused_hint_does_not_block_the_queue_and_is_moved_aside(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    hints, source = _store(tmp_path)
    target = Replica(poisoned=b"k0")  # the first hint in the queue
    caplog.set_level(logging.INFO)
    rounds = 0
    while hints.pending() and rounds < 10:
        trio.run(hints.deliver, "n2", target.send)
        rounds += 1
    delivered_later = sum(1 for i in range(1, HINTS) if target.rows.get(b"k%d" % i) == b"v%d" % i)
    print(f"hints delivered behind an undeliverable one: {delivered_later} of {HINTS - 1}; "
          f"rounds until the queue was empty: {rounds}")
    assert delivered_later == HINTS - 1
    assert rounds == MAX_DELIVERY_ATTEMPTS
    assert hints.pending() == {} and hints.undeliverable == 1
    aside = tmp_path / "hints" / "undeliverable" / "n2.hints"
    assert aside.exists()
    assert any("moved to" in r.getMessage() and str(aside) in r.getMessage() and "refused for good" in r.getMessage()
               for r in caplog.records)
    # Divergence healed: the target holds everything the source holds but the refused row.
    assert {k: v for k, v in source.items() if k != b"k0"} == target.rows


def test_an_unreachable_target_pauses_the_queue_without_counting(tmp_path: Path) -> None:
    hints, source = _store(tmp_path)
    target = Replica(poisoned=b"none")
    target.up = False
    for _ in range(MAX_DELIVERY_ATTEMPTS + 2):  # a down target never makes a hint undeliverable
        assert trio.run(hints.deliver, "n2", target.send) is False
    assert hints.undeliverable == 0 and hints.pending()
    target.up = True
    assert trio.run(hints.deliver, "n2", target.send) is True
    assert target.rows == source


def test_a_target_that_does_not_answer_in_time_keeps_every_hint(tmp_path: Path) -> None:
    # A paused target, or one cut off while gossip through other nodes still calls it alive,
    # times out: no hint may be moved aside for that, however many rounds it lasts.
    hints, source = _store(tmp_path)
    target = Replica(poisoned=b"none")
    target.paused = True
    for _ in range(MAX_DELIVERY_ATTEMPTS + 2):
        assert trio.run(hints.deliver, "n2", target.send) is False
    assert hints.undeliverable == 0 and hints.pending()
    target.paused = False
    assert trio.run(hints.deliver, "n2", target.send) is True
    assert target.rows == source
