"""Hinted handoff: writes for a replica that is down (or did not answer) kept on disk, per target.

A hint file per target node holds length-prefixed msgpack frames (the protocol's framing), each
one mutation with its keyspace and table. New hints stop once the target has been down longer
than ``max_hint_window`` (Cassandra's rule: past that, repair is the tool). When the target is
seen UP again the file is delivered at a throttled byte rate and deleted once every hint was
acknowledged; on failure the undelivered rest goes back into the target's file.

A target that cannot be reached pauses its queue (nothing is lost, delivery resumes on the next UP).
A hint the target *answers* with an error (it refuses the mutation, its disk failed) or never
answers in time is counted: it is retried after the rest of the queue, and after
``MAX_DELIVERY_ATTEMPTS`` such failures it is moved aside to ``undeliverable/<target>.hints`` and
logged, so one bad hint never blocks the hints behind it (it blocked them forever before).
"""

from __future__ import annotations

# io.open rather than the builtin: looked up at each call in the compiled build too, so the
# tests' file-fault shim (tests/unit/nth_fault.py) sees these files opened.
import io
import logging
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

import trio

from node.cluster.messaging import PeerUnreachable, RequestTimeout
from node.protocol import FrameDecoder, ProtocolError, encode_frame
from node.runtime import Runtime

log = logging.getLogger("node.hints")

# Reading hint files in chunks keeps delivery memory bounded whatever the file size.
_READ_CHUNK = 256 * 1024

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")

SendHint = Callable[[str, dict[str, Any]], Awaitable[None]]

# Deliveries a hint may fail with the target answering (an error or no reply in time) before it
# is moved aside. Cassandra drops a hint its target refuses; three tries ride out a transient
# refusal (a replica catching up on schema, a disk freeing up) without holding the queue for long.
MAX_DELIVERY_ATTEMPTS = 3


class HintStore:
    """Per-target hint files under ``directory`` and their throttled delivery."""

    def __init__(
        self,
        directory: Path,
        runtime: Runtime,
        max_hint_window: float,
        throttle_kb_per_s: int,
        check_interval: float = 10.0,
    ) -> None:
        self.directory = directory
        self.runtime = runtime
        self.max_hint_window = max_hint_window
        self.throttle_bytes_per_s = throttle_kb_per_s * 1024
        self.check_interval = check_interval
        directory.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, BinaryIO] = {}
        self._down_since: dict[str, float] = {}
        self._delivering: set[str] = set()
        self._wake = trio.Event()
        self.stored = 0
        self.delivered = 0
        self.refused_window = 0
        self.undeliverable = 0

    # ---- membership events

    def note_down(self, target: str) -> None:
        """The target was convicted DOWN now (starts its hint window)."""
        self._down_since.setdefault(target, self.runtime.clock.monotonic())

    def note_up(self, target: str) -> None:
        """The target is UP again: close its window and wake delivery."""
        self._down_since.pop(target, None)
        self._wake.set()

    def within_window(self, target: str) -> bool:
        """True unless the target has been down for longer than max_hint_window."""
        since = self._down_since.get(target)
        return since is None or self.runtime.clock.monotonic() - since <= self.max_hint_window

    # ---- storing

    def _path(self, target: str) -> Path:
        if not _SAFE_NAME.match(target):
            raise ValueError(f"node id {target!r} cannot name a hint file")
        return self.directory / f"{target}.hints"

    def store(self, target: str, keyspace: str, table: str, mutation_obj: Any, created_us: int) -> bool:
        """Append one hint for ``target``; False if its hint window has passed."""
        if not self.within_window(target):
            self.refused_window += 1
            return False
        f = self._files.get(target)
        if f is None:
            f = self._files[target] = io.open(self._path(target), "ab", buffering=0)
        # One unbuffered write per frame: the hint reaches the OS at once, so a node crash (not a
        # machine crash) keeps it; hints are best effort in Cassandra too (no fsync per hint).
        try:
            _append_whole(f, encode_frame({"ks": keyspace, "t": table, "m": mutation_obj, "at": created_us}))
        except OSError:
            del self._files[target]
            f.close()
            raise
        self.stored += 1
        return True

    def pending(self) -> dict[str, int]:
        """Bytes of undelivered hints per target."""
        out: dict[str, int] = {}
        for p in self.directory.glob("*.hints*"):  # not undeliverable/: those are no longer pending
            target = p.name.split(".hints")[0]
            out[target] = out.get(target, 0) + p.stat().st_size
        return {k: v for k, v in out.items() if v > 0}

    def close(self) -> None:
        """Close the open hint files."""
        for f in self._files.values():
            f.close()
        self._files.clear()

    # ---- delivery

    async def run(
        self,
        is_alive: Callable[[str], bool],
        send: SendHint,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Deliver hints to live targets on UP events and every ``check_interval`` until cancelled."""
        task_status.started()
        try:
            while True:
                with trio.move_on_after(self.check_interval):
                    await self._wake.wait()
                self._wake = trio.Event()
                for target in sorted(self.pending()):
                    if is_alive(target) and target not in self._delivering:
                        await self.deliver(target, send)
        finally:
            self.close()

    async def deliver(self, target: str, send: SendHint) -> bool:
        """Send every hint for ``target`` (throttled); True if all were acknowledged. A disk
        error is logged and returns False: what was not delivered stays on disk for the next round
        (an OSError here used to end the delivery task, and the node with it)."""
        try:
            return await self._deliver(target, send)
        except OSError as exc:
            log.error("hint delivery to %s stopped by a disk error: %s; the hints stay for the next round",
                      target, exc)
            return False

    async def _deliver(self, target: str, send: SendHint) -> bool:
        self._delivering.add(target)
        try:
            f = self._files.pop(target, None)
            if f is not None:
                f.close()
            live = self._path(target)
            work = live.with_suffix(".hints.delivering")
            if not work.exists():
                if not live.exists():
                    return True
                os.replace(live, work)
            return await self._deliver_file(target, work, send)
        finally:
            self._delivering.discard(target)

    def _undeliverable_path(self, target: str) -> Path:
        return self.directory / "undeliverable" / self._path(target).name

    def _retry_later(self, target: str, msg: dict[str, Any], exc: Exception, retry: list[bytes]) -> None:
        """Count a failed delivery the target answered; keep the hint for later or move it aside."""
        n = msg.get("n")
        tries = (n if isinstance(n, int) else 0) + 1
        if tries < MAX_DELIVERY_ATTEMPTS:
            retry.append(encode_frame({**msg, "n": tries}))
            return
        aside = self._undeliverable_path(target)
        aside.parent.mkdir(parents=True, exist_ok=True)
        _append_file(aside, encode_frame({**msg, "n": tries, "error": str(exc)[:500]}))
        self.undeliverable += 1
        log.error("hint for %s (%s.%s, written at %s us) failed %d deliveries, last: %s; moved to %s",
                  target, msg.get("ks"), msg.get("t"), msg.get("at"), tries, exc, aside)

    def _keep_corrupt_rest(self, target: str, work: Path, sent: int, corrupt: Exception, rest: bytes) -> None:
        """A hint file that stops decoding (bit rot, a file damaged on disk): its rest cannot be
        delivered, but it is kept, not dropped with a warning: the writes it held were
        acknowledged by other replicas and this target lacks them until a repair. Counted with
        the undeliverable hints (``status`` shows them) and logged at ERROR saying so."""
        aside = self._undeliverable_path(target).with_suffix(".corrupt")
        try:
            aside.parent.mkdir(parents=True, exist_ok=True)
            _append_file(aside, rest)
            kept = f"the undecodable rest ({len(rest)} bytes) kept in {aside}"
        except OSError as exc:
            kept = f"the undecodable rest ({len(rest)} bytes) could not be kept ({exc})"
        self.undeliverable += 1
        log.error("hint file %s is corrupt after %d hints delivered (%s); %s; %s lacks the writes those hints "
                  "held until a repair of its ranges", work, sent, corrupt, kept, target)

    async def _deliver_file(self, target: str, work: Path, send: SendHint) -> bool:
        decoder = FrameDecoder()
        sent = 0
        retry: list[bytes] = []  # hints the target failed, retried after the rest of the queue
        fed = 0  # bytes of the file fed to the decoder: the next frame starts at fed - buffered
        with io.open(work, "rb") as f:
            while True:
                frame_at = fed - decoder.buffered
                try:
                    msg = decoder.next_message()
                except ProtocolError as corrupt:
                    f.seek(frame_at)  # the failed decoder keeps no bytes: take them from the file
                    self._keep_corrupt_rest(target, work, sent, corrupt, f.read())
                    break
                if msg is None:
                    chunk = f.read(_READ_CHUNK)
                    if not chunk:
                        break
                    fed += len(chunk)
                    decoder.feed(chunk)
                    continue
                try:
                    await send(target, msg)
                except (PeerUnreachable, RequestTimeout) as exc:
                    # The target is gone again, or paused, or cut off while gossip still calls it
                    # alive: that says nothing against this hint, so keep the rest for later and
                    # count no try. Only an answer refusing the hint counts toward moving it aside
                    # (before, three delivery rounds into a partition moved every hint aside).
                    log.info("hint delivery to %s paused after %d hints: %s", target, sent, exc)
                    rest = bytearray(encode_frame(msg))
                    rest += decoder.take_buffered()
                    rest += f.read()
                    rest += b"".join(retry)
                    _append_file(self._path(target), bytes(rest))
                    os.unlink(work)
                    return False
                except Exception as refused:  # the target answered with an error
                    log.info("hint delivery to %s failed (%s); the rest of the queue goes on", target, refused)
                    self._retry_later(target, msg, refused, retry)
                    continue
                sent += 1
                self.delivered += 1
                # Throttle by bytes, like Cassandra's hinted_handoff_throttle_in_kb.
                await self.runtime.clock.sleep(len(encode_frame(msg)) / self.throttle_bytes_per_s)
        if retry:
            _append_file(self._path(target), b"".join(retry))
        os.unlink(work)
        log.info("delivered %d hints to %s%s", sent, target, f", {len(retry)} to retry" if retry else "")
        return not retry


def _append_whole(f: BinaryIO, data: bytes) -> None:
    """Append ``data`` to an unbuffered file, or cut off what part of it was written and raise:
    a torn frame would make delivery drop every hint stored after it as corrupt."""
    start = os.fstat(f.fileno()).st_size
    view = memoryview(data)
    try:
        while view:
            # Not in the slice: mypyc evaluates a call in a memoryview's slice bound twice.
            written = f.write(view)
            view = view[written or 0:]
    except OSError:
        try:
            os.ftruncate(f.fileno(), start)
        except OSError:
            pass  # nothing more to do; delivery stops at the torn frame and logs it
        raise


def _append_file(path: Path, data: bytes) -> None:
    """:func:`_append_whole` to ``path``, opened for this one write."""
    with io.open(path, "ab", buffering=0) as f:
        _append_whole(f, data)
