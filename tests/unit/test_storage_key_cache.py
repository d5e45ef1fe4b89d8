"""The key cache (node/storage/keycache.py): hits skip the index and the sort key, entries leave
with their SSTable (compaction, quarantine, discard, drop, close), and the cache stays bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from node.runtime import Clock
from node.storage import Cell, CorruptSSTableError, Mutation, StorageConfig, StorageEngine
from node.storage.keycache import KeyCache

KEYS = [b"k%03d" % i for i in range(40)]


class CountingSortKey:
    """A sort key that does not follow byte order, counting its calls (the node's is Murmur3)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, key: bytes) -> int:
        self.calls += 1
        return (sum(key) * 7919) % 1009


def _engine(path: Path, entries: int = 100_000, sort_key: Any = None) -> StorageEngine:
    e = StorageEngine(path, StorageConfig(key_cache_entries=entries), Clock(), sort_key=sort_key)
    e.open()
    e.create_table("ks", "t")
    return e


def _fill(e: StorageEngine, files: int = 4) -> None:
    """``files`` SSTables, each holding every key with its own column."""
    for f in range(files):
        for i, key in enumerate(KEYS):
            e.apply("ks", "t", Mutation(key, [Cell(f"c{f}", b"v%d-%d" % (f, i), 100 * f + 1)]))
        e.flush()


def _readers(e: StorageEngine) -> list[Any]:
    return e._tables[("ks", "t")].sstables


def _read_all(e: StorageEngine) -> None:
    for i, key in enumerate(KEYS):
        for f in range(4):
            assert e.read("ks", "t", key, columns=[f"c{f}"]).cells[f"c{f}"].value == b"v%d-%d" % (f, i)
        assert len(e.read("ks", "t", key).cells) == 4


def test_a_hit_skips_the_index_and_the_sort_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sk = CountingSortKey()
    e = _engine(tmp_path, sort_key=sk)
    _fill(e)
    _read_all(e)
    assert len(e._key_cache) == 4 * len(KEYS)
    assert all(set(r.cached_keys) == set(KEYS) for r in _readers(e))
    sk.calls = 0
    for r in _readers(e):
        monkeypatch.setattr(r, "_index_lookup", lambda *a: pytest.fail("index consulted on a hit"))
    _read_all(e)
    assert sk.calls == 0
    e.close()


def test_a_hit_still_checks_the_record(tmp_path: Path) -> None:
    """A cached location does not vouch for the bytes: damage found after caching still fails
    the read, quarantines the file and gives its entries back."""
    e = _engine(tmp_path)
    _fill(e)
    _read_all(e)
    victim = _readers(e)[0]
    assert victim.cached_keys
    # Flip one byte of one cell value inside the live mapping's file (MAP_SHARED pages).
    data = victim.data_path.read_bytes()
    at = data.index(b"v3-7")
    with open(victim.data_path, "r+b") as f:
        f.seek(at)
        f.write(b"X")
    with pytest.raises(CorruptSSTableError, match="checksum mismatch"):
        e.read("ks", "t", KEYS[7], columns=["c3"])
    assert victim not in _readers(e) and victim.cached_keys.dropped and not victim.cached_keys
    assert len(e._key_cache) == 3 * len(KEYS)
    e.close()


def test_compaction_gives_the_inputs_entries_back(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    _fill(e)
    _read_all(e)
    inputs = list(_readers(e))
    e.compact("ks", "t", major=True)
    assert all(r.cached_keys.dropped and not r.cached_keys for r in inputs)
    assert len(e._key_cache) == 0
    _read_all(e)
    (out,) = _readers(e)
    assert len(e._key_cache) == len(out.cached_keys) == len(KEYS)
    e.close()
    assert len(e._key_cache) == 0  # close gives everything back


def test_discard_and_drop_give_entries_back(tmp_path: Path) -> None:
    e = _engine(tmp_path)
    _fill(e, files=2)
    for key in KEYS:
        e.read("ks", "t", key)
    assert len(e._key_cache) == 2 * len(KEYS)
    r = _readers(e)[0]
    r.verify = lambda: None  # a scrub that found it corrupt:
    r.corrupt = CorruptSSTableError(r.name, "marked by the test")
    e.discard_corrupt("ks", "t")
    assert len(e._key_cache) == len(KEYS)
    e.drop_table("ks", "t")
    assert len(e._key_cache) == 0
    e.close()


def test_the_cache_is_bounded_and_reads_stay_right(tmp_path: Path) -> None:
    e = _engine(tmp_path, entries=50)
    _fill(e)
    for _ in range(2):
        _read_all(e)
        assert len(e._key_cache) == 50
        assert sum(len(r.cached_keys) for r in _readers(e)) == 50
    e.close()


def test_eviction_takes_the_oldest_entry_of_the_fullest_segment_and_a_dropped_segment_takes_nothing() -> None:
    kc = KeyCache(4)
    a, b = kc.segment(), kc.segment()
    for i in range(3):
        kc.put(a, b"a%d" % i, (i, 1))
    kc.put(b, b"b0", (0, 1))
    kc.put(b, b"b1", (1, 1))  # full: a (3 entries) loses its oldest
    assert list(a) == [b"a1", b"a2"] and list(b) == [b"b0", b"b1"] and len(kc) == 4
    kc.put(b, b"b1", (1, 1))  # already there: nothing changes
    assert len(kc) == 4
    kc.drop(a)
    assert len(kc) == 2 and not a
    kc.put(a, b"late", (9, 9))  # a read still holding the dropped file's reader
    assert not a and len(kc) == 2
    kc.drop(a)  # idempotent
    assert len(kc) == 2
    off = KeyCache(0)
    seg = off.segment()
    off.put(seg, b"k", (0, 1))
    assert not seg and len(off) == 0
