"""Failing and hostile disks applied from outside a real node process, without the node's fault
switches: files damaged or removed between restarts, and an ext4 file system on a loop device
that turns read-only under a running node (ext4's own reaction to an error, errors=remount-ro).

Each test writes acknowledged data, applies the fault, and checks that the node either keeps
serving or refuses to start with one line naming the file (exit 3, no traceback), and that every
acknowledged write is still there once the fault is gone. docs/storage.md "Failing disks: what
the node does" has the whole table."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from node.protocol import RinglabError
from tests.cluster.conftest import Cluster, alive_view, ask, call, one_node, start_three_with_table, wait_until

BATCH = '[storage]\ncommitlog_sync = "batch"\n'


def _put(node: Any, i: int) -> Any:
    return ask(node, "put", keyspace="ks", table="t", key=f"k{i}", columns={"c": f"v{i}"}, consistency="ONE")


def _missing(node: Any, keys: range) -> list[Any]:
    """The keys of ``keys`` whose acknowledged value does not read back (or the read's error)."""
    out = []
    for i in keys:
        got = ask(node, "get", keyspace="ks", table="t", key=f"k{i}", consistency="ONE")
        if isinstance(got, RinglabError):
            out.append((i, got.name, got.message))
        elif got["columns"].get("c", [None])[0] != f"v{i}":
            out.append(i)
    return out


def _start_fails(node: Any) -> tuple[int, str]:
    """Start ``node`` expecting it to refuse: its exit status and its stderr."""
    node.start()
    rc = node.proc.wait(30)
    return rc, (node.dir / "stderr.log").read_text(errors="replace")


# ---- files damaged between restarts


def test_a_lost_sstable_toc_does_not_delete_the_finished_sstable(tmp_path: Path) -> None:
    """A TOC is written last, so a generation without one used to be taken for an interrupted
    flush and deleted at open, with its commit log segments long gone: acknowledged writes
    vanished with an INFO line. A digest that checks tells a finished SSTable from an unfinished
    one; the TOC is rewritten and the data served."""
    with one_node(tmp_path, BATCH) as c:
        node = c[0]
        for i in range(30):
            assert not isinstance(_put(node, i), RinglabError)
        assert not isinstance(ask(node, "flush"), RinglabError)
        # A second flush after it: the first one's records are below the table's replay position,
        # so the commit log no longer brings them back.
        for i in range(30, 60):
            assert not isinstance(_put(node, i), RinglabError)
        assert not isinstance(ask(node, "flush"), RinglabError)
        assert node.terminate() == 0
        table = next((node.dir / "data" / "storage" / "data" / "ks").iterdir())
        tocs = sorted(table.glob("*-TOC.txt"), key=lambda p: int(p.name.split("-")[0]))
        assert len(tocs) >= 2
        for toc in tocs[: len(tocs) // 2]:  # the older (first flush's) files
            toc.unlink()
        node.start()
        node.wait_ready()
        assert _missing(node, range(60)) == []
        log = (node.dir / "stderr.log").read_text(errors="replace")
        assert "TOC was lost" in log and "TOC rewritten" in log
        assert not isinstance(_put(node, 60), RinglabError)


def test_a_torn_sstable_write_without_toc_is_still_removed(tmp_path: Path) -> None:
    """The other side of the rule above: a generation whose parts do not match a digest (here a
    Data file cut short) is an unfinished write and is removed as before, not loaded."""
    with one_node(tmp_path, BATCH) as c:
        node = c[0]
        for i in range(20):
            assert not isinstance(_put(node, i), RinglabError)
        assert node.terminate() == 0  # drain flushes
        table = next((node.dir / "data" / "storage" / "data" / "ks").iterdir())
        toc = next(table.glob("*-TOC.txt"))
        gen = toc.name.split("-")[0]
        toc.unlink()
        data = table / f"{gen}-Data.db"
        os.truncate(data, data.stat().st_size // 2)
        node.start()
        node.wait_ready()
        assert not list(table.glob(f"{gen}-*"))
        assert "removing unfinished SSTable generation" in (node.dir / "stderr.log").read_text(errors="replace")


@pytest.mark.parametrize("name, content", [
    ("schema.json", b"\xde\xad\xbe\xef"),
    ("schema.json", b""),
    ("tokens.json", b"\xde\xad\xbe\xef"),
    ("tokens.json", b'["not a token"]'),
])
def test_a_garbled_startup_file_is_a_named_refusal_not_a_traceback(tmp_path: Path, name: str, content: bytes) -> None:
    """schema.json or tokens.json holding garbage (a torn copy, a bit-rotted disk): the node used
    to die with a UnicodeDecodeError or JSONDecodeError traceback (exit 1). Now it refuses to
    start with exit 3 and one CRITICAL line naming the file and what to do; put the file back and
    it starts with every acknowledged write."""
    with one_node(tmp_path, BATCH) as c:
        node = c[0]
        for i in range(10):
            assert not isinstance(_put(node, i), RinglabError)
        node.kill()
        path = node.dir / "data" / name
        good = path.read_bytes()
        path.write_bytes(content)
        rc, err = _start_fails(node)
        assert rc == 3, err
        assert "Traceback" not in err
        assert "cannot start" in err and str(path) in err and f"unusable {name}" in err
        path.write_bytes(good)
        node.start()
        node.wait_ready()
        assert _missing(node, range(10)) == []


def test_a_storage_directory_that_is_a_file_is_a_named_refusal(tmp_path: Path) -> None:
    """data_dir/storage replaced by a file (a botched restore): exit 3 naming it, no traceback."""
    with one_node(tmp_path, BATCH) as c:
        node = c[0]
        assert not isinstance(_put(node, 1), RinglabError)
        node.kill()
        storage = node.dir / "data" / "storage"
        shutil.move(storage, node.dir / "storage.bak")
        storage.write_bytes(b"not a directory")
        rc, err = _start_fails(node)
        assert rc == 3, err
        assert "Traceback" not in err and "cannot start" in err and str(storage) in err
        storage.unlink()
        shutil.move(node.dir / "storage.bak", storage)
        node.start()
        node.wait_ready()
        assert _missing(node, range(1, 2)) == []


# ---- a file system that turns read-only under a running node


def _have_loop_ext4() -> str | None:
    """Why this machine cannot mount an ext4 image on a loop device, or None."""
    if os.geteuid() != 0:
        return "mounting a loop device needs root"
    if not Path("/dev/loop-control").exists():
        return "no loop devices"
    if shutil.which("mkfs.ext4") is None:
        return "no mkfs.ext4"
    return None


@pytest.fixture
def ext4_node(tmp_path: Path) -> Iterator[tuple[Cluster, Path, Path]]:
    """A one-node cluster whose data dir is a fresh 64 MiB ext4 on a loop device (errors=remount-ro)."""
    why = _have_loop_ext4()
    if why:
        pytest.skip(why)
    c = Cluster(tmp_path, 1, extra=BATCH)
    data = c[0].dir / "data"
    data.mkdir(parents=True)
    img = tmp_path / "data.img"
    subprocess.run(["truncate", "-s", "64M", str(img)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True)
    mounted = subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(img), str(data)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:  # root without CAP_SYS_ADMIN, or no free loop device
        pytest.skip(f"cannot mount a loop device here: {mounted.stderr.strip()}")
    try:
        c.start()
        trio.run(lambda: call(c[0], "create_keyspace", name="ks",
                              replication={"class": "SimpleStrategy", "replication_factor": 1}))
        trio.run(lambda: call(c[0], "create_table", keyspace="ks", name="t", options={}))
        yield c, data, img
    finally:
        c.stop()
        subprocess.run(["umount", str(data)], check=False)
        if os.path.ismount(data):
            subprocess.run(["umount", "-l", str(data)], check=False)


def _ext4_error(mountpoint: Path) -> bool:
    """Make ext4 record an error on the file system at ``mountpoint`` (it remounts itself
    read-only); False when the kernel has no such knob."""
    dev = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(mountpoint)], capture_output=True, text=True).stdout.strip()
    knob = Path(f"/sys/fs/ext4/{os.path.basename(dev)}/trigger_fs_error")
    if not knob.exists():
        return False
    knob.write_text("1")
    return True


def test_a_data_fs_turning_read_only_fails_writes_by_name_and_loses_nothing(
        ext4_node: tuple[Cluster, Path, Path]) -> None:
    """ext4 meets an error and remounts itself read-only under the node (what errors=remount-ro
    does on a failing disk). Writes answer WriteFailure naming the commit log segment and EROFS,
    then WritesStopped (commit_failure_policy = stop); reads keep serving; after the file system
    is checked and mounted again, the restarted node has every acknowledged write."""
    c, data, img = ext4_node
    node = c[0]
    for i in range(40):
        assert not isinstance(_put(node, i), RinglabError)
    if not _ext4_error(data):
        pytest.skip("this kernel has no ext4 trigger_fs_error")
    first = _put(node, 1000)
    assert isinstance(first, RinglabError) and first.name == "WriteFailure", first
    assert "Read-only file system" in first.message and "CommitLog-" in first.message
    second = _put(node, 1001)
    assert isinstance(second, RinglabError) and "WritesStopped" in second.message
    assert _missing(node, range(40)) == []  # reads go on
    assert node.proc is not None and node.proc.poll() is None
    node.kill()
    subprocess.run(["umount", str(data)], check=True)
    subprocess.run(["e2fsck", "-fy", str(img)], capture_output=True)
    subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(img), str(data)], check=True)
    node.start()
    node.wait_ready()
    assert _missing(node, range(40)) == []
    assert not isinstance(_put(node, 41), RinglabError)


# ---- files cut short under a running node


def _truncate_data_files(node: Any, only_one: bool = False) -> list[Path]:
    files = sorted((node.dir / "data" / "storage" / "data" / "ks").glob("t-*/*-Data.db"))
    assert files
    if only_one:
        files = files[:1]
    for f in files:
        os.truncate(f, 0)  # in place: the node's mapping of the file now ends at 0
    return files


def test_a_data_file_truncated_under_the_node_is_a_named_corrupt_file_not_a_sigbus(tmp_path: Path) -> None:
    """The node maps Data.db; truncating it under the running node made the next read touch a
    page past the file's end, SIGBUS, and the process died without a word (exit -7). Now the read
    names the file ("truncated under the running node"), the file is quarantined, the node keeps
    serving, and the table's reads stay refused across a restart until a repair, where they used
    to come back without the file's keys, as if they had never been written."""
    with one_node(tmp_path, BATCH + "auto_repair_after_s = 0\n") as c:
        node = c[0]
        for i in range(20):
            assert not isinstance(_put(node, i), RinglabError)
        assert not isinstance(ask(node, "flush"), RinglabError)
        # One file: the others stay intact, so after a restart nothing but the hold could refuse.
        _truncate_data_files(node, only_one=True)
        answers = [ask(node, "get", keyspace="ks", table="t", key=f"k{i}", consistency="ONE") for i in range(20)]
        assert node.proc is not None and node.proc.poll() is None, node.log_tail()
        errors = [a for a in answers if isinstance(a, RinglabError)]
        assert errors and all(a.name == "ReadFailure" for a in errors), answers
        assert any("truncated under the running node" in a.message and "-Data.db" in a.message for a in errors)
        assert not isinstance(_put(node, 100), RinglabError)  # writes go on
        held = ask(node, "storage")["held"]
        assert "ks.t" in held, held
        node.kill()
        node.start()
        node.wait_ready()
        still = [ask(node, "get", keyspace="ks", table="t", key=f"k{i}", consistency="ONE") for i in range(20)]
        assert all(isinstance(a, RinglabError) and "AwaitingRepair" in a.message for a in still), still
        assert "ks.t" in ask(node, "storage")["held"]
        assert "still refuses reads after the restart" in (node.dir / "stderr.log").read_text(errors="replace")


def _local_value(node: Any, key: str) -> Any:
    rows = trio.run(lambda: call(node, "localread", keyspace="ks", table="t", keys=[key]))["rows"]
    cells = rows[0]["cells"] if rows and rows[0] else []
    return cells[0][1] if cells else None


def test_a_replica_whose_files_were_cut_short_says_so_across_a_restart_and_repair_restores_it(tmp_path: Path) -> None:
    """RF 3: n1's data files truncated under it. Reads through n1 keep being answered (the other
    replicas), n1 stays up, and after a restart it still refuses the table's reads (it used to
    serve it as if the keys were never written); a scrub repairs it from n2 and n3."""
    c = Cluster(tmp_path, 3, extra=BATCH + "auto_repair_after_s = 0\n")
    try:
        start_three_with_table(c)
        n1 = c[0]
        for i in range(20):
            got = ask(n1, "put", keyspace="ks", table="t", key=f"k{i}", columns={"c": f"v{i}"}, consistency="ALL")
            assert not isinstance(got, RinglabError), got
        assert not isinstance(ask(n1, "flush", keyspace="ks", table="t"), RinglabError)
        _truncate_data_files(n1)
        for i in range(20):  # QUORUM through n1: n2 and n3 answer what n1 refuses
            got = ask(n1, "get", keyspace="ks", table="t", key=f"k{i}", consistency="QUORUM")
            assert not isinstance(got, RinglabError) and got["columns"]["c"][0] == f"v{i}", (i, got)
        assert n1.proc is not None and n1.proc.poll() is None, n1.log_tail()
        assert "ks.t" in ask(n1, "storage")["held"]
        n1.kill()
        n1.start()
        n1.wait_ready()
        assert "ks.t" in ask(n1, "storage")["held"]  # it still says so
        wait_until(lambda: all(set(alive_view(n).values()) == {"U"} for n in c.nodes), 30, what="n1 up again")
        scrub = trio.run(lambda: call(n1, "scrub", timeout=60))
        assert "ks.t" in scrub.get("released", []), scrub
        assert [_local_value(n1, f"k{i}") for i in range(20)] == [f"v{i}" for i in range(20)]
    finally:
        c.stop()


# ---- a hint file damaged on disk


def test_a_corrupt_hint_file_keeps_its_rest_and_says_the_target_needs_a_repair(tmp_path: Path) -> None:
    """Hints for a down n3 are damaged on n1's disk while n1 is stopped. Delivery used to drop
    every hint after the damage with a WARNING; now the undecodable rest is kept under
    hints/undeliverable/, counted in status (hints.undeliverable), logged at ERROR naming the
    target that lacks those writes until a repair, and a repair brings them to n3."""
    c = Cluster(tmp_path, 3, extra=BATCH + "[hints]\ndelivery_check_interval = 1.0\n")
    try:
        start_three_with_table(c)
        n1, n3 = c[0], c[2]
        n3.kill()
        wait_until(lambda: alive_view(n1).get("n3") == "D", 30, what="n3 down")
        for i in range(20):
            got = ask(n1, "put", keyspace="ks", table="t", key=f"k{i}", columns={"c": f"v{i}"}, consistency="QUORUM")
            assert not isinstance(got, RinglabError), got
        hints = n1.dir / "data" / "hints" / "n3.hints"
        n1.kill()
        raw = bytearray(hints.read_bytes())
        off = 0
        for _ in range(10):  # the 11th frame's length prefix (4 bytes, big-endian) turns to garbage
            off += 4 + struct.unpack_from(">I", raw, off)[0]
        raw[off:off + 4] = b"\xff\xff\xff\xf0"
        hints.write_bytes(bytes(raw))
        n1.start()
        n1.wait_ready()
        n3.start()
        n3.wait_ready()
        log = n1.dir / "stderr.log"
        wait_until(lambda: "is corrupt after" in log.read_text(errors="replace"), 60, what="delivery met the damage")
        text = log.read_text(errors="replace")
        line = next(x for x in text.splitlines() if "is corrupt after" in x)
        assert " ERROR " in line and "n3 lacks the writes" in line and "kept in" in line, line
        kept = n1.dir / "data" / "hints" / "undeliverable" / "n3.corrupt"
        assert kept.exists() and kept.stat().st_size > 0
        assert trio.run(lambda: call(n1, "status"))["hints"]["undeliverable"] >= 1
        repaired = trio.run(lambda: call(n3, "repair", keyspace="ks", timeout=60))
        assert not isinstance(repaired, RinglabError)
        assert [_local_value(n3, f"k{i}") for i in range(20)] == [f"v{i}" for i in range(20)]
    finally:
        c.stop()
