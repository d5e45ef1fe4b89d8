"""Whole-file transfer in one process (node/rangecopy.py, node/storage/slicing.py): a slice of an
SSTable is a valid SSTable holding exactly the segment's partitions; a transfer over real
messaging on loopback sends whole files and slices and leaves only the memtable to the pages; its
file connection goes through the source's route to the target (a ringlab fault proxy here), so a
partition of that link cuts the copy and the copy completes after the heal."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from nemesis.proxy import ProxyServer
from node import rangecopy
from node.cluster.messaging import Messaging
from node.rangecopy import RangeCopy
from node.ring import make_partitioner
from node.runtime import Runtime
from node.storage import StorageConfig, StorageEngine
from node.storage.cells import Cell, Mutation
from node.storage.slicing import slice_sstable
from node.storage.sstable import COMPONENTS, DIGEST, TOC, component_path
from node.streaming import Streamer

sys.path.insert(0, str(Path(__file__).parent))
from storage_model import ManualClock  # noqa: E402

P = make_partitioner("murmur3")
KEYS = [f"key-{i}".encode() for i in range(400)]
SECRET = "unit-secret"


def _engine(path: Path) -> StorageEngine:
    e = StorageEngine(path, StorageConfig(), ManualClock(), sort_key=P.token)  # type: ignore[arg-type]
    e.open()
    e.create_table("ks", "t")
    return e


def _value(i: int) -> bytes:
    return b"v%d-" % i + b"x" * 200


def _fill(e: StorageEngine, keys: list[bytes], ts: int = 1000) -> None:
    for k in keys:
        e.apply("ks", "t", Mutation(k, [Cell("v", _value(KEYS.index(k)), ts)]))


def _held(e: StorageEngine) -> dict[bytes, bytes]:
    return {p.key: p.cells["v"].value for p in e.scan("ks", "t")}


def _segment() -> tuple[int, int]:
    """A segment holding roughly the middle half of the keys' tokens."""
    toks = sorted(P.token(k) for k in KEYS)
    return toks[len(toks) // 4], toks[3 * len(toks) // 4]


def test_a_slice_is_an_sstable_of_exactly_the_segments_partitions(tmp_path: Path) -> None:
    src = _engine(tmp_path / "src")
    _fill(src, KEYS)
    src.flush()
    (reader,) = src._table("ks", "t").sstables
    lo, hi = _segment()
    sl = slice_sstable(reader, lo, hi, 0.01)
    assert sl is not None
    want = {k for k in KEYS if lo < P.token(k) <= hi}
    assert sl.partitions == len(want) and 0 < sl.length < reader.data_bytes
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    with open(reader.data_path, "rb") as f:
        component_path(incoming, 7, "Data.db").write_bytes(os.pread(f.fileno(), sl.length, sl.offset))
    for comp in (*COMPONENTS[1:], DIGEST, TOC):
        component_path(incoming, 7, comp).write_bytes(sl.blobs[comp])
    dst = _engine(tmp_path / "dst")
    dst.import_sstable("ks", "t", incoming, 7, sl.data_crc)
    held = _held(dst)
    assert set(held) == want and all(held[k] == _value(KEYS.index(k)) for k in want)
    (imported,) = dst._table("ks", "t").sstables
    assert imported.stats["origin"] == "stream" and imported.stats["sliced_from"] == reader.generation
    # Point reads go through the slice's own index, summary and bloom filter.
    for k in sorted(want)[:20]:
        assert dst.read("ks", "t", k) is not None
    assert dst.read("ks", "t", next(k for k in KEYS if k not in want)) is None
    assert slice_sstable(reader, hi, hi, 0.01) is None  # an empty segment has no slice
    src.close()
    dst.close()


async def _pair(nursery: trio.Nursery, tmp: Path, proxy: ProxyServer) -> dict[str, Any]:
    """Source a and target b on loopback; a reaches b through a fault proxy (link a_to_b)."""
    out: dict[str, Any] = {}
    for name in ("a", "b"):
        rt = Runtime.real()
        m = Messaging(rt, name, "127.0.0.1", 0, secret=SECRET)
        engine = _engine(tmp / name)
        rc = RangeCopy(name, m, engine, rt, None, 0)
        streamer = Streamer(name, m, engine, P, True, "periodic", lambda ks, t: (ks, t) == ("ks", "t"), rc)
        port = await nursery.start(m.run)
        out[name] = {"m": m, "engine": engine, "rc": rc, "streamer": streamer, "port": port}
    status, body = await proxy.handle("POST", "/proxies", {"name": "a_to_b", "listen": "127.0.0.1:0",
                                                         "upstream": f"127.0.0.1:{out['b']['port']}"})
    assert status == 201, body
    host, port = body["listen"].rsplit(":", 1)
    out["a"]["m"].set_route("b", host, int(port))
    out["b"]["m"].set_address("a", "127.0.0.1", out["a"]["port"])
    return out


def test_a_transfer_sends_files_and_slices_through_the_route_and_a_partition_cuts_it_until_healed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Enough attempts that the heal below always comes before the last one.
    monkeypatch.setattr(rangecopy, "FILE_ATTEMPTS", 8)
    # A cut copy is noticed once the source has sent it and no connection arrived within this.
    monkeypatch.setattr(rangecopy, "ACCEPT_GRACE", 1.0)
    lo, hi = _segment()
    inside = [k for k in KEYS if lo < P.token(k) <= hi]

    async def main() -> dict[str, Any]:
        async with trio.open_nursery() as nursery:
            proxy = ProxyServer(nursery)
            nodes = await _pair(nursery, tmp_path, proxy)
            src: StorageEngine = nodes["a"]["engine"]
            # One SSTable wholly inside the segment, one spanning the whole ring (a slice), and
            # memtable rows (pages).
            src.set_split_points([lo, hi])
            _fill(src, inside[: len(inside) // 2], ts=1000)
            src.flush()
            src.set_split_points([])
            _fill(src, KEYS, ts=2000)
            src.flush()
            _fill(src, inside[-5:], ts=3000)
            # The partition: every byte from a to b is dropped (what `harness run` partitions do).
            await proxy.handle("POST", "/proxies/a_to_b/toxics", {"name": "cut", "type": "timeout", "stream": "upstream",
                                                                 "attributes": {"timeout": 0}})
            target: RangeCopy = nodes["b"]["rc"]
            result: dict[str, Any] = {}

            async def fetch() -> None:
                result["fetch"] = await nodes["b"]["streamer"].fetch("a", "ks", "t", [(lo, hi)])

            nursery.start_soon(fetch)
            with trio.fail_after(60):
                while target.stats.batches_failed == 0:
                    await trio.sleep(0.05)
            result["imported_while_cut"] = target.stats.files_imported
            await proxy.handle("DELETE", "/proxies/a_to_b/toxics/cut", None)
            with trio.fail_after(60):
                while "fetch" not in result:
                    await trio.sleep(0.05)
            result["held"] = _held(nodes["b"]["engine"])
            result["target"] = target.stats
            result["source"] = nodes["a"]["rc"].stats
            nursery.cancel_scope.cancel()
        for n in ("a", "b"):
            nodes[n]["engine"].close()
        return result

    out = trio.run(main)
    assert out["imported_while_cut"] == 0
    fetch, target = out["fetch"], out["target"]
    # Both SSTables came as files (one whole, one slice), each once, after the heal; the pages
    # carried only the memtable's rows.
    assert target.files_imported == 2 and target.slices_imported == 1 and target.files_fallback == 0, target
    assert out["source"].files_sent >= 3  # the cut copy, then the two that arrived
    assert fetch["files"] == 2 and fetch["partitions"] == 5, fetch
    held = out["held"]
    assert set(held) == set(inside)
    assert all(held[k] == _value(KEYS.index(k)) for k in inside)



def test_the_whole_file_test_hooks_are_not_campaign_faults_but_stay_node_switches() -> None:
    from harness.run_options import VALIDATION_FAULTS, RunOptions
    from node.faults import FaultSwitches

    assert "skip_pending_streaming" in VALIDATION_FAULTS
    for hook in ("damage_file_stream", "exit_after_file_import"):
        assert hook not in VALIDATION_FAULTS
        with pytest.raises(ValueError, match="--fault must be one of"):
            RunOptions(validation_faults=[hook]).validate()
        switches = FaultSwitches()
        switches.set(hook, True)  # node.toml [faults] and the faults admin op still take it
        assert getattr(switches, hook) is True
