"""The cheaper node paths the simulator's profile asked for give what the plain ones gave."""

from __future__ import annotations

import os
from pathlib import Path

from node.cluster import membership
from node.server import Node


def _walked(data_dir: Path) -> int:
    # What Node._load_bytes computed before it used scandir.
    total = 0
    for root, _, files in os.walk(data_dir / "storage" / "data"):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def test_load_bytes_counts_what_the_walk_counted(tmp_path: Path) -> None:
    data = tmp_path / "storage" / "data" / "ks"
    (data / "t-1").mkdir(parents=True)
    (data / "t-2" / "sub").mkdir(parents=True)
    (data / "t-1" / "1-Data.db").write_bytes(b"x" * 10)
    (data / "t-2" / "sub" / "2-Data.db").write_bytes(b"y" * 7)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "big").write_bytes(b"z" * 1000)
    os.symlink(tmp_path / "elsewhere", data / "dir-link")  # not followed, not counted
    os.symlink(tmp_path / "elsewhere" / "big", data / "file-link")  # its target's size
    os.symlink(tmp_path / "nowhere", data / "dangling")  # skipped

    class Holder:
        data_dir = tmp_path

    assert Node._load_bytes(Holder()) == _walked(tmp_path) == 1017  # type: ignore[arg-type]
    Holder.data_dir = tmp_path / "missing"
    assert Node._load_bytes(Holder()) == 0  # type: ignore[arg-type]


def test_decoded_tokens_follow_the_gossiped_value() -> None:
    value = membership.encode_tokens([3, -5, 2**100])
    first = membership.decode_tokens(value)
    assert first == [3, -5, 2**100]
    first.append(99)  # a caller's copy: the next decode is not affected
    assert membership.decode_tokens(value) == [3, -5, 2**100]
    value.append("7")  # a value changed in place is decoded again
    assert membership.decode_tokens(value) == [3, -5, 2**100, 7]
    assert membership.decode_tokens(["1", "x", b"b"]) == [1, b"b"]
    assert membership.decode_tokens("junk") == []
    for i in range(membership._DECODED_MAX + 5):  # the cache stays bounded
        assert membership.decode_tokens([str(i)]) == [i]
    assert len(membership._DECODED) <= membership._DECODED_MAX
