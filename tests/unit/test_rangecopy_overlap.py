"""The whole-file path's overlaps (node/rangecopy.py, node/streaming.py, node/storage/engine.py): a
batch cut after its first file keeps that file imported and sends only the rest again (files are
fsynced and imported as they arrive, not after the batch), and a node serving a transfer holds the
compactions that would re-cut its SSTables at new split points until the transfer is over."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from nemesis.proxy import ProxyServer
from node import rangecopy, streaming
from node.storage.cells import Cell, Mutation
from node.streaming import Streamer

sys.path.insert(0, str(Path(__file__).parent))
from test_range_copy_files import KEYS, P, _engine, _fill, _held, _pair, _value  # noqa: E402


def test_a_batch_cut_after_its_first_file_keeps_it_and_resends_only_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = rangecopy.receive_files
    calls = {"n": 0}

    def cut_second(sock_fd: int, dest: Path, gen: int, components: Any) -> Any:
        # The connection of the first batch breaks after its first file has arrived whole.
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("cut after the first file")
        return real(sock_fd, dest, gen, components)

    monkeypatch.setattr(rangecopy, "receive_files", cut_second)

    async def main() -> dict[str, Any]:
        async with trio.open_nursery() as nursery:
            nodes = await _pair(nursery, tmp_path, ProxyServer(nursery))
            src = nodes["a"]["engine"]
            toks = sorted(P.token(k) for k in KEYS)
            points = [toks[i * len(toks) // 4] for i in range(1, 4)]
            src.set_split_points(points)
            _fill(src, KEYS)
            src.flush()  # four SSTables, one per split range: four whole files
            result = await nodes["b"]["streamer"].fetch("a", "ks", "t", [(toks[-1], toks[-1])])
            out = {"fetch": result, "target": nodes["b"]["rc"].stats, "held": _held(nodes["b"]["engine"]),
                   "sstables": len(nodes["b"]["engine"]._table("ks", "t").sstables), "sent": nodes["a"]["rc"].stats}
            nursery.cancel_scope.cancel()
        for n in ("a", "b"):
            nodes[n]["engine"].close()
        return out

    out = trio.run(main)
    target = out["target"]
    assert target.batches_failed == 1 and target.files_imported == 4 and target.files_fallback == 0, target
    # Four SSTables on the target: the first file was imported once, not again with the re-send.
    assert out["sstables"] == 4 and out["fetch"]["files"] == 4 and out["fetch"]["partitions"] == 0, out
    # The re-send carried the three that had not arrived. The source counts the cut batch's four
    # only when its sendfile calls had all returned before the target cut the connection (a race
    # the test does not own): 3 + 4, or 3 alone when the cut reset its last send.
    assert out["sent"].files_sent in (3, 7), out["sent"]
    assert out["held"] == {k: _value(i) for i, k in enumerate(KEYS)}


def test_resplitting_compactions_wait_while_the_node_serves_a_transfer(tmp_path: Path) -> None:
    e = _engine(tmp_path / "e")
    for rnd in range(4):
        for i in range(100):
            e.apply("ks", "t", Mutation(f"k{i}".encode(), [Cell("v", b"%d" % rnd, rnd * 1000 + i)]))
        e.flush()
    # A ring change: every SSTable now spans the new split point.
    e.set_split_points([P.token(b"k50")])
    assert e.compact("ks", "t", resplit=False) is None
    assert len(e._table("ks", "t").sstables) == 4
    result = e.compact("ks", "t")
    assert result is not None and len(result["outputs"]) == 2  # merged and cut at the point
    e.close()

    streamer = Streamer("a", _NoMessaging(), None, P, True, "periodic", lambda ks, t: True)  # type: ignore[arg-type]

    async def main() -> list[bool]:
        seen = [streamer.resplit_allowed()]
        with streamer.serving_transfer():
            seen.append(streamer.resplit_allowed())
            await trio.sleep(streaming.RESPLIT_HOLD_S * 3)  # a long push still holds them
            seen.append(streamer.resplit_allowed())
        seen.append(streamer.resplit_allowed())
        await trio.sleep(streaming.RESPLIT_HOLD_S / 2)
        seen.append(streamer.resplit_allowed())
        await trio.sleep(streaming.RESPLIT_HOLD_S)
        seen.append(streamer.resplit_allowed())
        return seen

    assert trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) == [True, False, False, False, False, True]


class _NoMessaging:
    """A messaging stand-in that only takes handler registrations."""

    def register(self, verb: str, handler: Any) -> None:
        """Accept a handler (never called here)."""


def test_the_import_journal_keeps_every_entry_when_transfers_journal_at_once(tmp_path: Path) -> None:
    import threading

    journal = rangecopy.Journal(tmp_path / "streamed_files.json")
    keys = [[f"bootstrap:x/n{t}/ks.t/{i}/0" for i in range(40)] for t in range(4)]
    threads = [threading.Thread(target=lambda ks=ks: [journal.add(k) for k in ks]) for ks in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Every import is on disk once (a lost entry would make a resumed bootstrap fetch it again).
    again = rangecopy.Journal(tmp_path / "streamed_files.json")
    assert sorted(again.entries) == sorted(k for ks in keys for k in ks)
