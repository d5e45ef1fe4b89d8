"""Replica writes batched per internode read (issue 17): the commit log appends a batch of records
with one write per segment, the engine applies a batch with one append and a refusal each, and
the messaging reader hands a read's MUTATIONs to one batch handler, in order with other verbs."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from node import protocol
from node.cluster.messaging import Messaging, RemoteError, _Incoming
from node.runtime import Clock, Runtime
from node.storage import files
from node.storage.cells import Cell, Mutation
from node.storage.commitlog import CommitLog, make_position
from node.storage.config import StorageConfig
from node.storage.engine import StorageEngine
from node.storage.errors import DiskFull, UnknownTable


def _log(tmp_path: Path, segment_bytes: int = 1 << 20, door: Any = None, start: bool = True) -> CommitLog:
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = CommitLog(tmp_path, sync_mode="periodic", segment_bytes=segment_bytes, group_window_s=0.0,
                    clock=Clock(), files=door)
    if start:
        log.start()
    return log


def _replayed(tmp_path: Path) -> list[Any]:
    return [obj for _, _, obj in _log(tmp_path, start=False).replay()]


def test_a_batch_of_records_is_one_write_and_replays_as_separate_appends(tmp_path: Path) -> None:
    writes: list[int] = []
    door = files.OSFiles()
    create = door.create

    def counting(path: Path) -> Any:
        f = create(path)
        real = f.write
        f.write = lambda data: (writes.append(len(data)), real(data))[1]  # type: ignore[method-assign]
        return f

    door.create = counting  # type: ignore[method-assign]
    log = _log(tmp_path / "a", door=door)
    payloads = [(1, protocol.pack([1, [b"k%d" % i, None, None, {}, []]])) for i in range(5)]
    writes.clear()
    positions, error = log.append_payloads(payloads)
    assert error is None and len(writes) == 1
    one_by_one = _log(tmp_path / "b")
    assert positions == [one_by_one.append_payload(t, p) for t, p in payloads]  # same positions
    log.close()
    assert _replayed(tmp_path / "a") == [[b"k%d" % i, None, None, {}, []] for i in range(5)]


def test_a_batch_rolls_segments_where_single_appends_would(tmp_path: Path) -> None:
    payloads = [(2, protocol.pack([2, [b"x" * 60, None, None, {}, []]])) for _ in range(7)]
    batched, single = _log(tmp_path / "a", segment_bytes=200), _log(tmp_path / "b", segment_bytes=200)
    positions, error = batched.append_payloads(payloads)
    assert error is None
    assert positions == [single.append_payload(t, p) for t, p in payloads]
    assert len({p >> 32 for p in positions}) > 1  # it did span segments
    assert batched.segment_count() == single.segment_count()


def test_a_failed_batch_write_keeps_nothing_of_it_and_names_the_error(tmp_path: Path) -> None:
    door = files.file_ops(False, disk_faults=True)
    log = _log(tmp_path, door=door)
    first = log.append_payload(1, protocol.pack([1, [b"a", None, None, {}, []]]))
    files.disk_admin(door, "fail", "ENOSPC")
    positions, error = log.append_payloads([(1, protocol.pack([1, [b"b", None, None, {}, []]]))] * 3)
    assert positions == [] and isinstance(error, DiskFull)
    files.disk_admin(door, "heal")
    assert log.current_position() == first
    log.close()
    assert [obj[0] for obj in _replayed(tmp_path)] == [b"a"]


def _engine(tmp_path: Path, **cfg: Any) -> StorageEngine:
    eng = StorageEngine(tmp_path, StorageConfig(**cfg), Clock())
    eng.open()
    eng.create_table("ks", "t")
    return eng


def test_the_engine_applies_a_prepared_batch_and_refuses_each_item_it_cannot(tmp_path: Path) -> None:
    eng = _engine(tmp_path)
    ok = [eng.prepare("ks", "t", Mutation(b"k%d" % i, [Cell("v", b"\x01", 10 + i)])) for i in range(3)]
    eng.create_table("ks", "gone")
    gone = eng.prepare("ks", "gone", Mutation(b"g", [Cell("v", b"\x01", 1)]))
    eng.drop_table("ks", "gone")
    out = eng.apply_prepared([ok[0], gone, ok[1], ok[2]])
    assert isinstance(out[1], UnknownTable)
    assert all(isinstance(p, int) for p in (out[0], out[2], out[3])) and out[0] < out[2] < out[3]
    for i in range(3):
        assert eng.read("ks", "t", b"k%d" % i).cells["v"].timestamp == 10 + i  # type: ignore[union-attr]


def test_encoded_mutations_are_logged_as_sent_and_validated_like_decoded_ones(tmp_path: Path) -> None:
    eng = _engine(tmp_path)
    m = Mutation(b"k", [Cell("v", b"\x07", 5)])
    sent = protocol.pack(m.to_obj())
    p = eng.prepare_encoded("ks", "t", sent)
    assert p.mutation == m and p.obj_bytes == sent and p.payload == eng.prepare("ks", "t", m).payload
    # A tombstone gets this replica's deletion time: then the record is encoded again.
    d = eng.prepare_encoded("ks", "t", protocol.pack(Mutation(b"k", [Cell("v", None, 6)]).to_obj()))
    assert d.mutation.cells[0].local_deletion_time is not None and d.obj_bytes == protocol.pack(d.mutation.to_obj())
    from node.storage.errors import InvalidMutation
    with pytest.raises(InvalidMutation, match="undecodable mutation"):
        eng.prepare_encoded("ks", "t", b"\xc1")
    with pytest.raises(InvalidMutation, match="empty mutation"):
        eng.prepare_encoded("ks", "t", protocol.pack(Mutation(b"k").to_obj()))


async def test_the_reader_batches_a_reads_mutations_in_order_with_other_verbs() -> None:
    m = Messaging(Runtime.real(seed=1), "r", "127.0.0.1", 0, secret="s")
    calls: list[Any] = []

    def batch(items: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        calls.append(("batch", [p["n"] for _, p in items]))
        return [ValueError("refused") if p["n"] == 2 else {} for _, p in items]

    def read(sender: str, payload: dict[str, Any]) -> dict[str, Any]:
        calls.append(("read", payload["n"]))
        return {"got": payload["n"]}

    m.register_batch("MUTATION", batch)
    m.register_inline("READ", read)
    decoder = protocol.FrameDecoder()
    for rid, verb, n in ((1, "MUTATION", 1), (2, "MUTATION", 2), (3, "READ", 3), (4, "MUTATION", 4)):
        decoder.feed(protocol.encode_frame({"i": rid, "v": verb, "p": {"n": n}}))
    conn = _Incoming(m.outbox)

    class _Stream:
        async def receive_some(self, n: int) -> bytes:
            return b""  # the peer hung up after these frames

    async with trio.open_nursery() as nursery:
        await m._incoming_reader(conn, _Stream(), (decoder, "c", nursery))  # type: ignore[arg-type]
    # Mutations before the read were applied before it; the one after it in a batch of its own.
    assert calls == [("batch", [1, 2]), ("read", 3), ("batch", [4])]
    replies = {r["r"]: r for r in (protocol.decode_body(f[4:]) for f in conn.frames)}
    assert replies[1] == {"r": 1, "p": {}} and replies[4] == {"r": 4, "p": {}}
    assert replies[2]["e"] == "ValueError: refused" and replies[3]["p"] == {"got": 3}


async def test_a_batched_verb_sent_to_this_node_runs_its_handler() -> None:
    m = Messaging(Runtime.real(seed=1), "me", "127.0.0.1", 0, secret="s")
    m.register_batch("MUTATION", lambda items: [{} if p.get("ok") else OSError(errno.EIO, "disk") for _, p in items])
    assert await m.request("me", "MUTATION", {"ok": True}, timeout=1) == {}
    with pytest.raises(RemoteError, match="OSError"):
        await m.request("me", "MUTATION", {}, timeout=1)


def test_positions_are_segment_and_offset() -> None:
    assert make_position(3, 10) == (3 << 32) | 10


async def test_a_cancelled_deadline_never_fires_and_an_emptied_bucket_is_not_woken_for(autojump_clock: Any) -> None:
    from node.deadlines import TimingWheel

    wheel = TimingWheel()
    fired: list[str] = []
    wakes = 0

    class _Count(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            nonlocal wakes
            if task.name.endswith("TimingWheel.run"):
                wakes += 1

    trio.lowlevel.add_instrument(_Count())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wheel.run)
        await trio.testing.wait_all_tasks_blocked()
        now = trio.current_time()
        done = [wheel.add(now + 1.0 + i / 1000, fired.append, f"done{i}") for i in range(50)]
        kept = wheel.add(now + 3.0, fired.append, "kept")
        assert wheel.add(float("inf"), fired.append, "never") is None
        for h in done:
            wheel.cancel(h)
        wheel.cancel(done[0])  # twice: nothing
        wheel.cancel(None)
        wakes = 0
        await trio.sleep(5.0)
        assert fired == ["kept"]
        assert wakes <= 3  # the first, emptied bucket at most once, then the kept one
        wheel.cancel(kept)  # after it fired: nothing
        nursery.cancel_scope.cancel()
