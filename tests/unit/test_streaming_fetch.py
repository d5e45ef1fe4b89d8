"""Range streaming between two real storage engines, over a messaging stand-in that calls the
other side's handlers (the wire itself is covered by the cluster tests): pages, the pipelined
fetch, progress cursors, failures raised as themselves, resuming from the last cursor."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from node import streaming
from node.ring import make_partitioner
from node.storage import StorageConfig, StorageEngine
from node.storage.cells import Cell, Mutation
from node.streaming import Streamer

sys.path.insert(0, str(Path(__file__).parent))
from storage_model import ManualClock  # noqa: E402

P = make_partitioner("murmur3")
KEYS = [f"key-{i}".encode() for i in range(300)]


class Wire:
    """Requests go straight to the peer's registered handler; pages can be made to fail."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.handlers: dict[str, Any] = {}
        self.peers: dict[str, Wire] = {}
        self.fail_pages_from: int | None = None  # page requests from this one on raise OSError
        self.pages_served = 0

    def register(self, verb: str, handler: Any) -> None:
        self.handlers[verb] = handler

    async def request(self, peer: str, verb: str, payload: Any, timeout: float) -> Any:
        target = self.peers[peer]
        if verb == streaming.VERB_STREAM_PAGE:
            if target.fail_pages_from is not None and target.pages_served >= target.fail_pages_from:
                raise OSError(f"{peer} is unreachable")
            target.pages_served += 1
        return await target.handlers[verb](self.node_id, payload)


def _node(tmp: Path, name: str, wire: Wire) -> tuple[StorageEngine, Streamer]:
    engine = StorageEngine(tmp / name, StorageConfig(), ManualClock(), sort_key=P.token)  # type: ignore[arg-type]
    engine.open()
    engine.create_table("ks", "t")
    return engine, Streamer(name, wire, engine, P, True, "periodic", lambda ks, t: (ks, t) == ("ks", "t"))


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(streaming, "PAGE_BYTES", 2048)  # many pages for 300 small partitions
    a, b = Wire("a"), Wire("b")
    a.peers, b.peers = {"b": b}, {"a": a}
    src, src_streamer = _node(tmp_path, "a", a)
    dst, dst_streamer = _node(tmp_path, "b", b)
    for i, k in enumerate(KEYS):
        src.apply("ks", "t", Mutation(k, [Cell("v", b"x" * 40 + str(i).encode(), 1000 + i)]))
    yield a, src, dst, dst_streamer
    src.close()
    dst.close()


def _ring_range() -> list[tuple[int, int]]:
    return [(0, 0)]  # left == right: the whole ring


def _held(engine: StorageEngine) -> set[bytes]:
    return {p.key for p in engine.scan("ks", "t")}


def test_a_pipelined_fetch_copies_every_partition_and_reports_each_applied_page(pair: Any) -> None:
    _, _, dst, streamer = pair
    cursors: list[Any] = []
    result = trio.run(lambda: streamer.fetch("a", "ks", "t", _ring_range(), on_progress=cursors.append))
    assert _held(dst) == set(KEYS)
    assert result["partitions"] == len(KEYS) and result["bytes"] > 0
    assert len(cursors) > 5 and cursors[-1] is None and all(c is not None for c in cursors[:-1])
    assert streamer.stats.pages_received == len(cursors) and streamer.stats.transfers_done == 1


def test_a_failing_source_raises_its_error_and_the_transfer_resumes_from_the_last_cursor(pair: Any) -> None:
    source_wire, _, dst, streamer = pair
    source_wire.fail_pages_from = 4
    cursors: list[Any] = []
    with pytest.raises(OSError, match="a is unreachable"):  # the error itself, not a group
        trio.run(lambda: streamer.fetch("a", "ks", "t", _ring_range(), on_progress=cursors.append))
    assert streamer.stats.transfers_failed == 1
    # Only applied pages were reported: everything before the last cursor is on the target.
    assert 0 < len(cursors) <= 4 and cursors[-1] is not None
    partial = _held(dst)
    assert 0 < len(partial) < len(KEYS)
    source_wire.fail_pages_from = None
    trio.run(lambda: streamer.fetch("a", "ks", "t", _ring_range(), cursor=cursors[-1]))
    assert _held(dst) == set(KEYS)
