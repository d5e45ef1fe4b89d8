"""SSTableReader.find (the read path's one-search lookup) answers as might_contain + get do."""

from __future__ import annotations

from pathlib import Path

from node.runtime import Clock
from node.storage import Cell, Mutation, StorageConfig, StorageEngine


def test_find_agrees_with_might_contain_and_get_cold_and_warm(tmp_path: Path) -> None:
    e = StorageEngine(tmp_path, StorageConfig(key_cache_entries=64), Clock())
    e.open()
    e.create_table("ks", "t")
    for i in range(600):
        e.apply("ks", "t", Mutation(b"k%04d" % (i * 2), [Cell("c%d" % (i % 3), b"v%d" % i, i + 1)]))
    e.flush()
    (r,) = e._tables[("ks", "t")].sstables
    keys = [b"k%04d" % i for i in range(-5, 1210)] + [b"a", b"zzz"]
    for rounds in range(2):  # the second round finds its index blocks decoded
        for key in keys:
            skey = e.sort_key(key)
            want = r.get(key, skey, ["c1"]) if r.might_contain(key, skey) else None
            assert r.find(key, skey, ["c1"]) == want
            whole = r.get(key, skey) if r.might_contain(key, skey) else None
            assert r.find(key, skey) == whole
            assert (whole is not None) == (key[1:].isdigit() and int(key[1:]) % 2 == 0 and 0 <= int(key[1:]) < 1200)
    e.close()
