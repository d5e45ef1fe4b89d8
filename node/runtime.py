"""The only doors from node code to time, sockets, randomness, threads and durability.

Every module under ``node/`` takes a :class:`Runtime` (or one of its parts) instead of calling
``time.time()``, ``random.*`` or ``trio.open_tcp_stream`` itself, and runs blocking work and
fsyncs through :func:`offload`, :func:`fsync` and :func:`fdatasync`. Two reasons:

* the clock nemesis skews one node's wall clock (offset and rate) through its admin port, and the
  wall clock is what stamps last-write-wins timestamps, so skew must reach every stamp;
* the simulated runtime (``sim/``: virtual clock, in-memory network, modelled fsync, seeded RNG)
  runs a whole cluster deterministically in one process without touching node code.

Threads and fsync go through a :class:`System` found in a context variable rather than through
:class:`Runtime`, because the storage engine's files and threads are reached from many small
objects (commit log segments, SSTable writers, schema files) that never held a runtime; ``sim/``
sets its own System in each simulated node's task tree, real processes use the default.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableSequence, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from node.client_limits import serve_listeners_refusing

T = TypeVar("T")


class Clock:
    """Wall and monotonic time for one node; the wall clock can be skewed by offset and rate.

    The skewed wall clock is ``anchor_wall + (real_now - anchor_real) * rate``: changing the
    offset or rate re-anchors at the current skewed reading, so a rate change never makes the
    clock jump and an offset change jumps by exactly the requested amount.
    """

    def __init__(self, offset_us: int = 0, rate: float = 1.0) -> None:
        # Reads come from trio tasks and from worker threads (flushes, fsyncs).
        self._lock = threading.Lock()
        real = self._real_us()
        self._anchor_real_us = real
        self._anchor_wall_us = real + offset_us
        self._rate = rate

    def _real_us(self) -> int:
        """The unskewed time in microseconds since the epoch (sim/ overrides it with virtual time)."""
        return time.time_ns() // 1000

    def wall_us(self) -> int:
        """Microseconds since the Unix epoch, as this node believes it to be."""
        real = self._real_us()
        with self._lock:
            return self._anchor_wall_us + int((real - self._anchor_real_us) * self._rate)

    def wall(self) -> float:
        """Seconds since the Unix epoch, as this node believes it to be."""
        return self.wall_us() / 1e6

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (not skewed by the clock nemesis)."""
        return time.monotonic()

    def offset_us(self) -> int:
        """How far this node's wall clock is ahead of the real one, in microseconds."""
        return self.wall_us() - self._real_us()

    @property
    def rate(self) -> float:
        """How many skewed microseconds pass per real microsecond."""
        with self._lock:
            return self._rate

    def set_skew(self, offset_us: int | None = None, rate: float | None = None) -> None:
        """Set the offset from real time (absolute) and/or the rate; ``None`` keeps the current one."""
        real = self._real_us()
        with self._lock:
            current = self._anchor_wall_us + int((real - self._anchor_real_us) * self._rate)
            self._anchor_real_us = real
            self._anchor_wall_us = real + offset_us if offset_us is not None else current
            if rate is not None:
                if rate <= 0:
                    raise ValueError(f"clock rate must be positive, got {rate}")
                self._rate = rate

    def bump(self, delta_us: int) -> None:
        """Move the wall clock by ``delta_us`` relative to where it is now."""
        self.set_skew(offset_us=self.offset_us() + delta_us)

    def reset(self) -> None:
        """Return to real time at rate 1."""
        self.set_skew(offset_us=0, rate=1.0)

    async def sleep(self, seconds: float) -> None:
        """Sleep for real seconds (timeouts and periods are not skewed)."""
        await trio.sleep(seconds)


class Network:
    """TCP sockets for node code: listeners and outgoing streams."""

    async def open_tcp_stream(self, host: str, port: int) -> trio.SocketStream:
        """Connect to ``host:port``."""
        return await trio.open_tcp_stream(host, port)

    async def open_tcp_listeners(self, port: int, host: str | None = None) -> list[trio.SocketListener]:
        """Bind listeners on ``host:port`` (port 0 picks a free one)."""
        return await trio.open_tcp_listeners(port, host=host)

    def send_nowait(self, stream: Any, data: bytes) -> int:
        """Hand ``data`` to the kernel without waiting; the number of bytes it took (0 when its
        buffer is full, or for a stream that is not a socket). node/outbox.py's direct writes:
        only while no task is sending on ``stream``. A broken connection raises OSError (or
        trio's BrokenResourceError, from a stream with its own ``send_nowait``: sim/net.py's)."""
        own = getattr(stream, "send_nowait", None)
        if own is not None:
            return own(data)
        sock = getattr(stream, "socket", None)
        if sock is None:
            return 0
        try:
            return os.write(sock.fileno(), data)
        except BlockingIOError:
            return 0

    async def serve_listeners(
        self,
        handler: Callable[[trio.SocketStream], Awaitable[Any]],
        listeners: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve each accepted connection with ``handler`` in its own task until cancelled.

        Out of file descriptors, a waiting connection is refused at once (node/client_limits.py).
        """
        await serve_listeners_refusing(handler, listeners, task_status=task_status)


class Rng:
    """Randomness for node code; seeded for reproducible runs."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._random = random.Random(seed)

    def random(self) -> float:
        """A float in [0, 1)."""
        return self._random.random()

    def randrange(self, start: int, stop: int | None = None) -> int:
        """An int in [start, stop)."""
        return self._random.randrange(start, stop) if stop is not None else self._random.randrange(start)

    def getrandbits(self, k: int) -> int:
        """An int with ``k`` random bits."""
        return self._random.getrandbits(k)

    def choice(self, seq: Sequence[T]) -> T:
        """One element of a non-empty sequence."""
        return self._random.choice(seq)

    def sample(self, population: Sequence[T], k: int) -> list[T]:
        """``k`` distinct elements."""
        return self._random.sample(population, k)

    def shuffle(self, seq: MutableSequence[Any]) -> None:
        """Shuffle in place."""
        self._random.shuffle(seq)

    def uniform(self, a: float, b: float) -> float:
        """A float in [a, b]."""
        return self._random.uniform(a, b)

    def expovariate(self, lambd: float) -> float:
        """An exponentially distributed float with rate ``lambd``."""
        return self._random.expovariate(lambd)


class System:
    """Worker threads and fsync for node code: real ones here; sim/ runs both inline and models fsync."""

    async def offload(self, fn: Callable[..., T], *args: Any, limiter: trio.CapacityLimiter | None = None) -> T:
        """Run blocking ``fn(*args)`` without blocking the event loop (a worker thread)."""
        return await trio.to_thread.run_sync(fn, *args, limiter=limiter)

    def fsync(self, fd: int) -> None:
        """Make a file's data and metadata (or a directory's entries) durable."""
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        """Make a file's data and size durable (fdatasync where the OS has it)."""
        if hasattr(os, "fdatasync"):
            os.fdatasync(fd)
        else:
            os.fsync(fd)


# The System of the running code; a context variable so that each simulated node's task tree
# (and everything it spawns) sees its world's System while real processes see the default.
_SYSTEM: ContextVar[System] = ContextVar("ringlab_system", default=System())


def current_system() -> System:
    """The System of the calling task."""
    return _SYSTEM.get()


@contextlib.contextmanager
def use_system(system: System) -> Iterator[None]:
    """Make ``system`` the System of the calling task and of every task it spawns from here."""
    token = _SYSTEM.set(system)
    try:
        yield
    finally:
        _SYSTEM.reset(token)


async def offload(fn: Callable[..., T], *args: Any, limiter: trio.CapacityLimiter | None = None) -> T:
    """Run blocking ``fn(*args)`` off the event loop: a worker thread, or inline in sim."""
    return await _SYSTEM.get().offload(fn, *args, limiter=limiter)


def fsync(fd: int) -> None:
    """fsync ``fd`` through the current System (sim records what became durable)."""
    _SYSTEM.get().fsync(fd)


def fdatasync(fd: int) -> None:
    """fdatasync ``fd`` through the current System."""
    _SYSTEM.get().fdatasync(fd)


@dataclass
class Runtime:
    """The clock, network and randomness one node uses."""

    clock: Clock = field(default_factory=Clock)
    network: Network = field(default_factory=Network)
    rng: Rng = field(default_factory=Rng)

    @classmethod
    def real(cls, seed: int | None = None) -> "Runtime":
        """The production runtime: real time (skewable), real TCP, optionally seeded RNG."""
        return cls(clock=Clock(), network=Network(), rng=Rng(seed))
