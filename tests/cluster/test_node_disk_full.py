"""A node whose data disk fills up: writes answer WriteFailure naming the path at once (not a
WriteTimeout), reads keep serving, a flush's ENOSPC is a named error and never ends the node, and
a restart while full exits with status 3 saying why, without a traceback.

The disk is a small tmpfs the test mounts (root only) and unmounts afterwards."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from node.protocol import RinglabError
from tests.cluster.conftest import Cluster, alive_view, ask, call, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")

TMPFS_BYTES = 24 * 1024 * 1024


def _fill(path: Path) -> int:
    """Write a file until the file system is full; returns the bytes it took."""
    written = 0
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        # Top up the last partial pages so no appended record finds room in a page.
        for size in (4096, 512, 64, 1):
            try:
                while True:
                    written += f.write(b"\0" * size)
            except OSError:
                pass
    return written


@pytest.fixture
def full_node(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 1, extra="[storage]\ncommitlog_sync = \"batch\"\n")
    data = c[0].dir / "data"
    data.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(data)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:  # root without CAP_SYS_ADMIN (some containers)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        c.start()
        wait_until(lambda: len(alive_view(c[0])) == 1, 20, what="node up")
        trio.run(lambda: call(c[0], "create_keyspace", name="ks", replication={"class": "SimpleStrategy", "replication_factor": 1}))
        trio.run(lambda: call(c[0], "create_table", keyspace="ks", name="t", options={}))
        yield c
    finally:
        c.stop()
        subprocess.run(["umount", str(data)], check=False)
        if os.path.ismount(data):
            subprocess.run(["umount", "-l", str(data)], check=False)


def _put(node, key: str, value: bytes) -> dict | RinglabError:  # type: ignore[no-untyped-def]
    return ask(node, "put", keyspace="ks", table="t", key=key, columns={"v": value})


def test_full_disk_is_a_named_write_failure_reads_serve_and_restart_exits_cleanly(full_node: Cluster) -> None:
    node = full_node[0]
    for i in range(5):
        assert not isinstance(_put(node, f"before{i}", b"v%d" % i), RinglabError)
    filled = _fill(node.dir / "data" / "filler")
    answers = [_put(node, f"full{i}", b"x" * 65536) for i in range(3)]
    names = [getattr(a, "name", "ok") for a in answers]
    print(f"disk full after {filled} filler bytes: write answers {names}")
    assert names == ["WriteFailure"] * 3
    assert all("DiskFull" in a.message and "CommitLog-" in a.message for a in answers)  # type: ignore[union-attr]
    # Reads keep serving what was written.
    got = trio.run(lambda: call(node, "get", keyspace="ks", table="t", key="before3"))
    assert got["columns"]["v"][0] == b"v3"
    # A flush on the full disk is a named error too, and the node stays up.
    flushed = ask(node, "flush")
    assert isinstance(flushed, RinglabError), flushed
    assert flushed.name == "WriteFailure" and "No space left" in flushed.message
    assert trio.run(lambda: call(node, "ping"))["ok"] is True
    assert node.proc is not None and node.proc.poll() is None
    # Restart while full: exit status 3 with the reason, no traceback.
    node.kill()
    _fill(node.dir / "data" / "filler2")  # pages the killed process freed
    node.start()
    assert node.proc is not None
    rc = node.proc.wait(30)
    err = (node.dir / "stderr.log").read_text(errors="replace")
    tail = err[err.rfind("received") if "received" in err else 0:]
    print(f"restart while full: exit {rc}; {tail.strip().splitlines()[-1]}")
    assert rc == 3
    assert "cannot start" in err and "No space left on device" in err
    assert "Traceback" not in err
    # Space back: the node starts and has every acknowledged write.
    (node.dir / "data" / "filler").unlink()
    (node.dir / "data" / "filler2").unlink()
    node.start()
    node.wait_ready()
    got = trio.run(lambda: call(node, "get", keyspace="ks", table="t", key="before4"))
    assert got["columns"]["v"][0] == b"v4"
