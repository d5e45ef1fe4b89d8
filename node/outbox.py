"""Connection writers, and the readers' batches that write what they queued themselves.

Every connection a node writes to (an internode connection either way, a client connection)
queues frames in a :class:`StreamOut`, whose writer task sends them. Waking that task is a trip
through Trio's scheduler per batch: a replica's acknowledgement, a coordinator's replica
requests and a client's answer each cost one, some six of a QUORUM write's sixteen task steps
in a simulation. Most frames are queued by a connection's reader while it handles what one read
brought (a replica's writes, the acknowledgements a coordinator collects, a client's
pipelined requests). The reader opens an :class:`Outbox` batch around that work; a writer that
is idle then is not woken: when the batch ends, the reader hands each such connection's frames
to the kernel itself (a non-blocking send, :meth:`node.runtime.Network.send_nowait`). What the
kernel does not take at once, and anything queued outside a batch, goes through the writer task
as before, so frames are still coalesced per batch and a slow reader still gets backpressure.
"""

from __future__ import annotations

from typing import Any, Protocol

import trio


class _Network(Protocol):
    def send_nowait(self, stream: Any, data: bytes) -> int: ...


class _Sealer(Protocol):
    def seal_all(self, frames: list[bytes]) -> bytes: ...


class Outbox:
    """One node's reader batches: frames queued inside one go out when it ends (see the module doc).

    A batch must not span an ``await``: a task that waits inside one would make every other
    task's frames wait for it. Readers end their batch before any wait and begin a new one after.
    """

    __slots__ = ("depth", "network", "_dirty")

    def __init__(self, network: _Network) -> None:
        self.network = network
        self.depth = 0
        self._dirty: list[StreamOut] = []

    def begin(self) -> None:
        """Start deferring idle writers' wake-ups to :meth:`end`."""
        self.depth += 1

    def end(self) -> None:
        """End a batch; the outermost end writes what the batch queued."""
        self.depth -= 1
        if self.depth == 0 and self._dirty:
            dirty, self._dirty = self._dirty, []
            for out in dirty:
                out.flush()


class StreamOut:
    """The frames queued for one connection and the writer task that sends them."""

    __slots__ = ("frames", "outbox", "sealer", "stream", "closing", "_writer", "_leftover", "_dirty")

    def __init__(self, outbox: Outbox) -> None:
        self.frames: list[bytes] = []
        self.outbox = outbox
        # Seals what is sent (node/cluster/auth.py's per-connection MAC), once the handshake
        # made one; a batch is sealed when it is sent, so sealed batches go out in order.
        self.sealer: _Sealer | None = None
        self.stream: Any = None  # while :meth:`write_frames` runs
        self.closing = False
        self._writer: trio.lowlevel.Task | None = None  # the writer task, while it waits for frames
        self._leftover: bytes | memoryview | None = None  # what a direct send left for the writer
        self._dirty = False

    # ---- hooks for the owners' counters

    def wrote(self, frames: int) -> None:
        """``frames`` frames were sealed into one send (messaging counts them)."""

    def sent(self, nbytes: int) -> None:
        """``nbytes`` bytes were handed to the kernel (a client connection's backpressure)."""

    # ----

    def push(self, frame: bytes) -> None:
        """Queue one frame."""
        self.frames.append(frame)
        self.wake()

    def wake(self) -> None:
        """Frames were queued: wake the writer, or leave them to the current batch's end."""
        task = self._writer
        if task is None:
            return  # busy sending, or not started: it looks at the frames next
        outbox = self.outbox
        if outbox.depth:
            if not self._dirty:
                self._dirty = True
                outbox._dirty.append(self)
            return
        self._writer = None
        trio.lowlevel.reschedule(task)

    def close_when_drained(self) -> None:
        """Let the writer return once everything queued is sent."""
        self.closing = True
        task, self._writer = self._writer, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    def _seal(self, frames: list[bytes]) -> bytes:
        self.wrote(len(frames))
        if self.sealer is not None:
            return self.sealer.seal_all(frames)
        return frames[0] if len(frames) == 1 else b"".join(frames)

    def flush(self) -> None:
        """At a batch's end: send the queued frames without the writer task if the kernel takes them."""
        self._dirty = False
        task = self._writer
        if task is None or not self.frames:
            return
        frames, self.frames = self.frames, []
        data = self._seal(frames)
        try:
            n = self.outbox.network.send_nowait(self.stream, data)
        except Exception:  # noqa: BLE001 - a broken connection: the writer's send reports it
            n = 0
        if n:
            self.sent(n)
        if n < len(data):
            self._leftover = memoryview(data)[n:] if n else data
            self._writer = None
            trio.lowlevel.reschedule(task)

    async def write_frames(self, stream: Any) -> None:
        """The writer task: send what is queued, in order, until cancelled or closed when drained."""
        self.stream = stream
        try:
            while True:
                data = self._leftover
                if data is not None:
                    self._leftover = None
                    await stream.send_all(data)
                    self.sent(len(data))
                    continue
                if not self.frames:
                    if self.closing:
                        return
                    await self._wait()
                    continue
                frames, self.frames = self.frames, []
                data = self._seal(frames)
                await stream.send_all(data)
                self.sent(len(data))
        finally:
            self.stream = None
            self._writer = None
            self._leftover = None

    async def _wait(self) -> None:
        task = trio.lowlevel.current_task()
        self._writer = task

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._writer = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


class ClientOut(StreamOut):
    """A client connection's answers (node/server.py); the bytes not yet sent bound how much more
    its reader takes. Here, not in node/server.py, because scripts/build_native.py compiles this
    module and an interpreted class cannot subclass a compiled one."""

    def __init__(self, outbox: Outbox, bounds: Any) -> None:
        super().__init__(outbox)
        self.bounds = bounds  # node/client_limits.py's ConnectionBounds
        self.buffered = 0  # answer bytes queued, not yet handed to the kernel
        self.drained = trio.Event()

    def sent(self, nbytes: int) -> None:
        self.buffered -= nbytes
        self.bounds.last_activity = trio.current_time()
        self.drained.set()
        self.drained = trio.Event()
