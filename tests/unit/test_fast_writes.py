"""The task-free write path (issue 17): the deadline wheel, Coordinator.write_now's answers and
timeouts on a virtual clock, and the hand-built frames and MAC tags equal to the general ones."""

from __future__ import annotations

import os
import struct
from typing import Any

import msgpack
import pytest
import trio
import trio.testing

from node import protocol
from node.cluster import auth
from node.coordinator import Coordinator
from node.deadlines import DEFAULT_RESOLUTION_S, TimingWheel
from node.fast_writes import start_write
from node.faults import FaultSwitches
from node.protocol import WriteTimeout
from node.ring import SimpleStrategy
from node.runtime import Runtime
from node.storage.cells import Cell, Mutation

WRITE_TIMEOUT = 2.0


async def test_the_wheel_fires_each_deadline_once_never_early_at_most_a_bucket_late(autojump_clock: Any) -> None:
    wheel = TimingWheel()
    fired: list[tuple[str, float]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wheel.run)
        await trio.testing.wait_all_tasks_blocked()
        assert wheel.running
        now = trio.current_time()
        for name, delay in (("late", 1.0), ("early", 0.25), ("same-bucket", 0.251)):
            wheel.add(now + delay, lambda n: fired.append((n, trio.current_time())), (name, now + delay))
        wheel.add(float("inf"), lambda n: fired.append((n, 0.0)), ("never", 0.0))
        await trio.sleep(2.0)
        nursery.cancel_scope.cancel()
    assert [n[0] for n, _ in fired] == ["early", "same-bucket", "late"]
    for (_, deadline), at in fired:
        assert deadline <= at <= deadline + DEFAULT_RESOLUTION_S + 1e-9
    assert not wheel.running


class _Messaging:
    """Records callback requests; the test answers them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, Any]] = []

    def register(self, verb: str, handler: Any) -> None:
        pass

    def register_inline(self, verb: str, handler: Any) -> None:
        pass

    def request_callback(self, peer: str, verb: str, payload: Any, timeout: float, callback: Any) -> None:
        self.sent.append((peer, payload, callback))


class _Keyspace:
    replication = {"class": "SimpleStrategy", "replication_factor": 3}

    def strategy(self) -> SimpleStrategy:
        return SimpleStrategy(3)


class _Schema:
    ks = _Keyspace()

    def table(self, keyspace: str, table: str) -> object:
        return object()

    def keyspace(self, keyspace: str) -> _Keyspace:
        return self.ks


class _Ring:
    def endpoints_for(self, key: bytes, strategy: Any) -> tuple[str, ...]:
        return ("me", "a", "b")


class _Members:
    def is_alive(self, node_id: str) -> bool:
        return True

    def datacenter_of(self, node_id: str) -> str:
        return "dc1"


class _Local:
    waits_for_sync = False

    def __init__(self) -> None:
        self.applied: list[Mutation] = []

    def apply_now(self, keyspace: str, table: str, mutation: Mutation) -> None:
        self.applied.append(mutation)


def _coordinator() -> tuple[Coordinator, _Messaging, _Local]:
    messaging, local = _Messaging(), _Local()
    schema, ring = _Schema(), _Ring()
    c = Coordinator(Runtime.real(), "me", "dc1", messaging, _Members(), lambda: ring, lambda: schema, local,  # type: ignore[arg-type]
                    None, FaultSwitches(), write_timeout=WRITE_TIMEOUT)
    return c, messaging, local


MUTATION = Mutation(b"k", [Cell("v", b"\x01", 5, None, None)])


async def test_write_now_answers_once_the_quorum_acknowledged_and_only_once(autojump_clock: Any) -> None:
    c, messaging, local = _coordinator()
    answers: list[tuple[Any, Any]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(c.run)
        await trio.testing.wait_all_tasks_blocked()
        assert c.accepts_write_now
        c.write_now("ks", "t", MUTATION, "QUORUM", lambda exc, acks: answers.append((exc, acks)))
        assert local.applied == [MUTATION] and not answers  # the local ack alone is not a quorum
        assert [peer for peer, _, _ in messaging.sent] == ["a", "b"]
        # Packed once for both peers, and what the peers decode is the mutation itself.
        payload = messaging.sent[0][1]
        assert payload is messaging.sent[1][1] and type(payload) is protocol.Packed
        assert Mutation.from_obj(msgpack.unpackb(msgpack.unpackb(payload)["mb"])) == MUTATION
        messaging.sent[1][2]({}, None)
        assert answers == [(None, {"replicas": ["me", "a", "b"], "acked": ["me", "b"], "hinted": []})]
        messaging.sent[0][2]({}, None)  # a late ack changes nothing the client was told
        await trio.sleep(WRITE_TIMEOUT * 2)  # nor does the deadline passing after the answer
        assert len(answers) == 1
        nursery.cancel_scope.cancel()


async def test_write_now_times_out_at_the_write_timeout_not_before(autojump_clock: Any) -> None:
    c, messaging, _ = _coordinator()
    answers: list[tuple[Any, float]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(c.run)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        c.write_now("ks", "t", MUTATION, "ALL", lambda exc, acks: answers.append((exc, trio.current_time())))
        messaging.sent[0][2]({}, None)
        await trio.sleep(WRITE_TIMEOUT - 0.05)
        assert not answers
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    [(exc, at)] = answers
    assert isinstance(exc, WriteTimeout) and "2 of 3 required" in exc.message
    assert start + WRITE_TIMEOUT <= at <= start + WRITE_TIMEOUT + DEFAULT_RESOLUTION_S + 1e-9
    assert c.stats["write_timeouts"] == 1


@pytest.mark.parametrize("rid", [0, 1, 127, 128, 255, 65536, 2**32 + 1, 2**63])
def test_hand_built_frames_are_the_general_encodings(rid: int) -> None:
    payload = {"ks": "ks", "t": "t", "m": MUTATION.to_obj()}
    assert protocol.encode_request(rid, "MUTATION", protocol.pack_map(payload)) == \
        protocol.encode_frame({"i": rid, "v": "MUTATION", "p": payload})
    assert protocol.encode_request(rid, "READ", payload) == protocol.encode_frame({"i": rid, "v": "READ", "p": payload})
    assert protocol.encode_empty_reply(rid) == protocol.encode_frame({"r": rid, "p": {}})


def test_sealed_batches_carry_the_keyed_blake2s_tag_and_open_in_order() -> None:
    key = os.urandom(32)
    frames = [protocol.encode_frame({"r": i, "p": {}}) for i in range(3)]
    sealer = auth.Sealer(key)
    sealed = sealer.seal_all(frames) + sealer.seal(frames[0])
    # One batch for the three frames (one tag over all of them), then frame 0 alone as batch 1.
    joined = b"".join(frames)
    assert sealed[:4] == struct.pack(">I", len(joined) + auth.TAG_BYTES)
    assert sealed[4:4 + len(joined)] == joined
    first = 4 + len(joined) + auth.TAG_BYTES
    assert sealed[4 + len(joined):first] == auth._tag(key, 0, joined)
    assert sealed[first + 4 + len(frames[0]):] == auth._tag(key, 1, frames[0])
    opener = auth.OpeningDecoder(key)
    for i in range(0, len(sealed), 7):  # fed in any chunking
        opener.feed(sealed[i:i + 7])
    assert [m["r"] for m in opener.messages()] == [0, 1, 2, 0]
    assert opener.buffered == 0
    forged = bytearray(sealed)
    forged[first - 1] ^= 1
    opener = auth.OpeningDecoder(key)
    opener.feed(bytes(forged))
    with pytest.raises(protocol.ProtocolError, match="fails its MAC"):
        opener.messages()


def test_a_long_queue_is_sealed_in_batches_that_each_fit_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "MAX_BATCH_BYTES", 100)
    key = os.urandom(32)
    frames = [protocol.encode_frame({"r": i, "p": "x" * (i * 7)}) for i in range(12)]
    sealed = auth.Sealer(key).seal_all(frames)
    sizes = []
    at = 0
    while at < len(sealed):
        (n,) = struct.unpack_from(">I", sealed, at)
        sizes.append(n - auth.TAG_BYTES)
        at += 4 + n
    # Greedy batches of whole frames, none past the limit unless a frame alone is longer.
    assert sum(sizes) == sum(map(len, frames)) and len(sizes) > 1
    assert all(s <= 100 or s in map(len, frames) for s in sizes)
    opener = auth.OpeningDecoder(key, sealed)
    assert [m["r"] for m in opener.messages()] == list(range(12))


def test_an_authentic_batch_cut_inside_a_frame_is_refused() -> None:
    key = os.urandom(32)
    frame = protocol.encode_frame({"r": 1, "p": {}})
    cut = auth.Sealer(key).seal(frame[:-1])  # a sender bug: the tag is right, the frame is not whole
    with pytest.raises(protocol.ProtocolError, match="ends inside a frame"):
        auth.OpeningDecoder(key, cut).messages()


def test_tracker_templates_give_independent_trackers_equal_to_fresh_ones() -> None:
    c, _, _ = _coordinator()
    strategy = SimpleStrategy(3)
    a = c._tracker("QUORUM", ("me", "a", "b"), strategy, writes=True)
    b = c._tracker("QUORUM", ("me", "a", "b"), strategy, writes=True)
    a.add("me")
    a.add("a")
    assert a.satisfied() and a.received == 2
    assert not b.satisfied() and b.received == 0 and b.required == 2  # nothing shared but the spec
    each = c._tracker("EACH_QUORUM", ("me", "a", "b"), strategy, writes=False)
    assert each.required == 2 and not each.satisfied()
    c.faults.ack_quorum_after_one = True
    broken = c._tracker("QUORUM", ("me", "a", "b"), strategy, writes=True)
    broken.add("b")
    assert broken.satisfied()  # the fault switch is part of the template's key
    assert c._tracker("QUORUM", ("me", "a", "b"), strategy, writes=False).required == 2  # reads: unaffected


class _NodeStub:
    """What start_write needs of a Node."""

    def __init__(self) -> None:
        self.coordinator, _, _ = _coordinator()


@pytest.mark.parametrize("op", [["put"], {"put": 1}, None, 3, "get", "status"])
def test_start_write_leaves_every_request_but_a_write_to_the_general_path(op: Any) -> None:
    answers: list[dict[str, Any]] = []
    assert start_write(_NodeStub(), {"id": 1, "op": op}, answers.append) is False  # type: ignore[arg-type]
    assert answers == []
