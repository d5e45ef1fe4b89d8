"""The task-free read path (issue 17): Coordinator.read_now's answers, speculative retry, timeout
and digest mismatch on a virtual clock, with no task per read."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from node.coordinator import SPECULATIVE_RETRY_S, Coordinator
from node.deadlines import DEFAULT_RESOLUTION_S
from node.faults import FaultSwitches
from node.protocol import ReadTimeout
from node.runtime import Runtime
from node.storage.cells import Cell, Partition
from tests.unit.test_fast_writes import _Members, _Messaging, _Ring, _Schema

READ_TIMEOUT = 1.0
OLD = Partition(b"k", {"v": Cell("v", b"\x01", 5, None, None)})
NEW = Partition(b"k", {"v": Cell("v", b"\x02", 9, None, None)})


class _Table:
    read_repair = "NONE"


class _ReadSchema(_Schema):
    def table(self, keyspace: str, table: str) -> _Table:  # type: ignore[override]
        return _Table()


class _ReadMessaging(_Messaging):
    """Callback requests as the write tests' fake; awaited full-data requests answered from ``full``."""

    def __init__(self) -> None:
        super().__init__()
        self.full: dict[str, Partition] = {}

    async def request(self, peer: str, verb: str, payload: Any, timeout: float) -> dict[str, Any]:
        assert payload["d"] is False
        return {"p": self.full[peer].to_obj()}


class _Local:
    waits_for_sync = False

    def __init__(self, part: Partition) -> None:
        self.part = part
        self.reads = 0

    def read_now(self, keyspace: str, table: str, key: bytes, columns: Any) -> Partition:
        self.reads += 1
        return self.part


def _coordinator(local_part: Partition = OLD) -> tuple[Coordinator, _ReadMessaging, _Local]:
    messaging, local = _ReadMessaging(), _Local(local_part)
    schema, ring = _ReadSchema(), _Ring()
    c = Coordinator(Runtime.real(), "me", "dc1", messaging, _Members(), lambda: ring, lambda: schema, local,  # type: ignore[arg-type]
                    None, FaultSwitches(), read_timeout=READ_TIMEOUT)
    return c, messaging, local


async def _running(nursery: trio.Nursery, c: Coordinator) -> None:
    await nursery.start(c.run)
    await trio.testing.wait_all_tasks_blocked()


async def test_a_quorum_read_answers_once_data_and_a_matching_digest_arrived(autojump_clock: Any) -> None:
    c, messaging, local = _coordinator()
    answers: list[tuple[Any, Any]] = []
    async with trio.open_nursery() as nursery:
        await _running(nursery, c)
        c.read_now("ks", "t", b"k", None, "QUORUM", lambda exc, part: answers.append((exc, part)))
        # Data from this node in place, a digest from one peer; the third replica is spare.
        assert local.reads == 1 and not answers
        [(peer, payload, reply)] = messaging.sent
        assert payload["d"] is True
        reply({"g": OLD.digest()}, None)
        assert answers == [(None, OLD)]
        await trio.sleep(READ_TIMEOUT * 2)  # neither a retry nor the deadline answers again
        assert len(answers) == 1 and len(messaging.sent) == 1
        assert c.stats["speculative_retries"] == 0 and c.stats["read_timeouts"] == 0
        nursery.cancel_scope.cancel()


async def test_a_silent_replica_is_replaced_by_the_spare_after_the_speculative_delay(autojump_clock: Any) -> None:
    c, messaging, _ = _coordinator()
    answers: list[tuple[Any, float]] = []
    async with trio.open_nursery() as nursery:
        await _running(nursery, c)
        start = trio.current_time()
        c.read_now("ks", "t", b"k", None, "QUORUM", lambda exc, part: answers.append((part, trio.current_time())))
        await trio.sleep(SPECULATIVE_RETRY_S - 0.02)
        assert len(messaging.sent) == 1
        await trio.sleep(0.02 + DEFAULT_RESOLUTION_S)
        assert len(messaging.sent) == 2 and messaging.sent[1][0] != messaging.sent[0][0]
        assert messaging.sent[1][1]["d"] is True  # the data replica answered: a digest is enough
        messaging.sent[1][2]({"g": OLD.digest()}, None)
        messaging.sent[0][2]({"g": NEW.digest()}, None)  # after the answer: ignored
        nursery.cancel_scope.cancel()
    [(part, at)] = answers
    assert part == OLD and start + SPECULATIVE_RETRY_S <= at
    assert c.stats["speculative_retries"] == 1 and c.stats["digest_mismatches"] == 0


async def test_a_read_without_enough_answers_times_out_at_the_read_timeout(autojump_clock: Any) -> None:
    c, messaging, _ = _coordinator()
    answers: list[tuple[Any, float]] = []
    async with trio.open_nursery() as nursery:
        await _running(nursery, c)
        start = trio.current_time()
        c.read_now("ks", "t", b"k", None, "ALL", lambda exc, part: answers.append((exc, trio.current_time())))
        messaging.sent[0][2]({"g": OLD.digest()}, None)
        await trio.sleep(READ_TIMEOUT - 0.05)
        assert not answers
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    [(exc, at)] = answers
    assert isinstance(exc, ReadTimeout) and "2 of 3 required" in exc.message
    assert start + READ_TIMEOUT <= at <= start + READ_TIMEOUT + DEFAULT_RESOLUTION_S + 1e-9
    assert c.stats["read_timeouts"] == 1


async def test_a_digest_mismatch_reads_full_data_and_answers_the_merge(autojump_clock: Any) -> None:
    c, messaging, _ = _coordinator(local_part=OLD)
    async with trio.open_nursery() as nursery:
        await _running(nursery, c)

        async def answer_digest() -> None:
            await trio.testing.wait_all_tasks_blocked()
            peer, _, reply = messaging.sent[0]
            messaging.full[peer] = NEW
            reply({"g": NEW.digest()}, None)

        nursery.start_soon(answer_digest)
        # The awaiting form rides on read_now: the same answer, raised errors.
        part = await c.read("ks", "t", b"k", None, "QUORUM")
        nursery.cancel_scope.cancel()
    assert part == NEW
    assert c.stats["digest_mismatches"] == 1 and c.stats["read_repairs"] == 0  # read_repair NONE
