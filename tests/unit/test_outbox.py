"""node/outbox.py: what a reader's batch queues goes out at its end, written by the reader, in
order with whatever the writer task sends; anything the kernel does not take at once, or
queued outside a batch, goes through the writer task."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import node.outbox as outbox_module
from node import native, protocol
from node.cluster import auth
from node.outbox import Outbox, StreamOut


class _Net:
    """send_nowait that takes at most ``take`` bytes per call (None: all), or raises."""

    def __init__(self, take: int | None = None, error: Exception | None = None) -> None:
        self.take = take
        self.error = error
        self.direct: list[bytes] = []

    def send_nowait(self, stream: Any, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        n = len(data) if self.take is None else min(self.take, len(data))
        self.direct.append(bytes(data[:n]))
        stream.wire += bytes(data[:n])
        return n


class _Stream:
    def __init__(self, error: Exception | None = None) -> None:
        self.wire = b""
        self.by_writer: list[bytes] = []
        self.error = error

    async def send_all(self, data: Any) -> None:
        await trio.lowlevel.checkpoint()
        if self.error is not None:
            raise self.error
        self.by_writer.append(bytes(data))
        self.wire += bytes(data)


class _Steps(trio.abc.Instrument):
    def __init__(self) -> None:
        self.writer_steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if "write_frames" in task.name:  # a compiled method names its task differently
            self.writer_steps += 1


async def _started(out: StreamOut, stream: _Stream, nursery: trio.Nursery) -> None:
    nursery.start_soon(out.write_frames, stream)
    await trio.testing.wait_all_tasks_blocked()


async def test_a_batch_writes_its_frames_at_its_end_without_waking_the_writer() -> None:
    net, stream, steps = _Net(), _Stream(), _Steps()
    outbox = Outbox(net)
    out = StreamOut(outbox)
    async with trio.open_nursery() as nursery:
        await _started(out, stream, nursery)
        trio.lowlevel.add_instrument(steps)
        outbox.begin()
        out.push(b"one")
        out.push(b"two")
        assert stream.wire == b""  # nothing before the batch ends
        outbox.end()
        assert net.direct == [b"onetwo"] and stream.wire == b"onetwo"  # one write for the batch
        await trio.testing.wait_all_tasks_blocked()
        assert steps.writer_steps == 0 and stream.by_writer == []
        # Outside a batch the writer task sends, as before.
        out.push(b"three")
        await trio.testing.wait_all_tasks_blocked()
        assert stream.by_writer == [b"three"] and steps.writer_steps > 0
        trio.lowlevel.remove_instrument(steps)
        nursery.cancel_scope.cancel()
    assert stream.wire == b"onetwothree"


async def test_nested_batches_write_once_at_the_outermost_end() -> None:
    net, stream = _Net(), _Stream()
    outbox = Outbox(net)
    a, b = StreamOut(outbox), StreamOut(outbox)
    async with trio.open_nursery() as nursery:
        await _started(a, stream, nursery)
        other = _Stream()
        await _started(b, other, nursery)
        outbox.begin()
        a.push(b"a1")
        outbox.begin()
        b.push(b"b1")
        a.push(b"a2")
        outbox.end()
        assert stream.wire == other.wire == b""
        outbox.end()
        assert stream.wire == b"a1a2" and other.wire == b"b1"
        nursery.cancel_scope.cancel()


@pytest.mark.skipif(native.compiled(outbox_module), reason="an interpreted class cannot subclass the compiled "
                    "StreamOut; tests/unit/test_native.py runs this file in pure Python too")
async def test_what_the_kernel_does_not_take_goes_through_the_writer_before_later_frames() -> None:
    net, stream = _Net(take=3), _Stream()
    outbox = Outbox(net)
    sent: list[int] = []

    class _Counted(StreamOut):
        def sent(self, nbytes: int) -> None:
            sent.append(nbytes)

    out = _Counted(outbox)
    async with trio.open_nursery() as nursery:
        await _started(out, stream, nursery)
        outbox.begin()
        out.push(b"abcdefgh")
        outbox.end()
        out.push(b"XYZ")  # queued behind the leftover
        await trio.testing.wait_all_tasks_blocked()
        assert stream.wire == b"abcdefghXYZ"
        assert stream.by_writer == [b"defgh", b"XYZ"] and sent == [3, 5, 3]
        nursery.cancel_scope.cancel()


async def test_a_failed_direct_send_leaves_the_data_to_the_writer_which_reports_the_broken_connection() -> None:
    net = _Net(error=BrokenPipeError(32, "Broken pipe"))
    stream = _Stream(error=trio.BrokenResourceError("gone"))
    outbox = Outbox(net)
    out = StreamOut(outbox)
    errors: list[Exception] = []

    async def writer() -> None:
        try:
            await out.write_frames(stream)
        except trio.BrokenResourceError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        outbox.begin()
        out.push(b"frame")
        outbox.end()  # never raises: the writer does
    assert len(errors) == 1 and out.stream is None and out.frames == []


async def test_sealed_batches_from_both_paths_open_in_order() -> None:
    key = b"k" * 32
    net, stream = _Net(), _Stream()
    outbox = Outbox(net)
    out = StreamOut(outbox)
    out.sealer = auth.Sealer(key)
    frames = [protocol.encode_frame({"n": i}) for i in range(6)]
    async with trio.open_nursery() as nursery:
        await _started(out, stream, nursery)
        out.push(frames[0])  # the writer
        await trio.testing.wait_all_tasks_blocked()
        outbox.begin()
        out.push(frames[1])
        out.push(frames[2])
        outbox.end()  # direct
        out.push(frames[3])  # the writer again
        await trio.testing.wait_all_tasks_blocked()
        outbox.begin()
        out.push(frames[4])
        out.push(frames[5])
        outbox.end()
        nursery.cancel_scope.cancel()
    decoder = auth.OpeningDecoder(key, stream.wire)
    got = []
    while (msg := decoder.next_message()) is not None:
        got.append(msg["n"])
    assert got == [0, 1, 2, 3, 4, 5]


async def test_a_busy_or_gone_writer_is_never_bypassed() -> None:
    net = _Net()
    outbox = Outbox(net)
    out = StreamOut(outbox)
    # No writer yet (a connection still in its handshake): frames wait for it.
    outbox.begin()
    out.push(b"early")
    outbox.end()
    assert net.direct == [] and out.frames == [b"early"]
    stream = _Stream()
    async with trio.open_nursery() as nursery:
        await _started(out, stream, nursery)  # it sends what waited at once
        assert stream.by_writer == [b"early"]
        nursery.cancel_scope.cancel()
    # The writer is gone (its connection ended): nothing is written directly to a dead stream.
    outbox.begin()
    out.push(b"late")
    outbox.end()
    assert net.direct == [] and out.frames == [b"late"]


async def test_close_when_drained_sends_what_is_queued_then_returns() -> None:
    outbox = Outbox(_Net())
    out = StreamOut(outbox)
    stream = _Stream()
    async with trio.open_nursery() as nursery:
        await _started(out, stream, nursery)
        out.push(b"last")
        out.close_when_drained()
    assert stream.wire == b"last"
