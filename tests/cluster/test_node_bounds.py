"""Client-port bounds on a real node: a connection cap with a clear refusal, idle and slow-frame
timeouts, and out of file descriptors a refusal (logged at most once a second) instead of a hang."""

from __future__ import annotations

import resource
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import trio

from tests.cluster.conftest import Cluster, call, decode_frames, rss_mib, wait_until

MAX_CONNECTIONS = 12
IDLE_S = 4.0
FRAME_S = 1.5
CLIENT_SECRET = "data-ops-secret"


def _one_node(tmp_path_factory: pytest.TempPathFactory, name: str, extra: str) -> Iterator[Cluster]:
    """A one-node cluster with ``extra`` appended to its node.toml, stopped afterwards."""
    c = Cluster(tmp_path_factory.mktemp(name), 1, extra=extra)
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    extra = (f'client_secret = "{CLIENT_SECRET}"\n'
             f"[clients]\nmax_connections = {MAX_CONNECTIONS}\nidle_timeout = {IDLE_S}\n"
             f"frame_timeout = {FRAME_S}\n")
    yield from _one_node(tmp_path_factory, "bounds", extra)


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def _closed_within(s: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """(True, bytes read) once the peer closed the socket, (False, ...) if it stays open."""
    s.settimeout(seconds)
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except (socket.timeout, TimeoutError):
        return False, got
    except ConnectionResetError:
        pass
    return True, got


def _ping(port: int) -> dict:
    with _connect(port) as s:
        body = msgpack.packb({"id": 1, "op": "ping"})
        s.sendall(struct.pack(">I", len(body)) + body)
        s.shutdown(socket.SHUT_WR)
        _, got = _closed_within(s, 10)
    return decode_frames(got)[0]


def _wait_for_idle_slots(node: Cluster) -> None:
    """Every earlier connection of this module's tests has closed on the node."""
    # The status call itself is the one open connection; it is refused while the cap is reached.
    wait_until(lambda: trio.run(lambda: call(node[0], "status"))["clients"]["open"] <= 1, 20,
               what="earlier client connections closed")


def test_connection_cap_refuses_with_a_named_error(node: Cluster) -> None:
    port = node[0].client_port
    _wait_for_idle_slots(node)
    held = [_connect(port) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)  # let the node accept them all
        extra = _connect(port)
        closed, got = _closed_within(extra, 10)
        extra.close()
        assert closed
        [refusal] = decode_frames(got)
        print(f"connection {MAX_CONNECTIONS + 1}: {refusal['error']['name']}: {refusal['error']['message']}")
        assert refusal["error"]["name"] == "Overloaded" and "max_connections" in refusal["error"]["message"]
    finally:
        for s in held:
            s.close()
    _wait_for_idle_slots(node)
    assert _ping(port)["ok"] is True


def test_idle_and_slow_frame_connections_are_closed(node: Cluster) -> None:
    port = node[0].client_port
    _wait_for_idle_slots(node)
    idle = [_connect(port) for _ in range(4)]
    slow = [_connect(port) for _ in range(4)]
    # One byte at a time of a 100-byte frame, every 0.3 s: never idle, never a whole frame.
    for s in slow:
        s.sendall(struct.pack(">I", 100))
    started = time.monotonic()
    open_slow = list(slow)
    while open_slow and time.monotonic() - started < 15:
        for s in list(open_slow):
            try:
                s.sendall(b"x")
            except OSError:
                open_slow.remove(s)
        time.sleep(0.3)
    closed_idle = sum(_closed_within(s, 15)[0] for s in idle)
    closed_slow = sum(_closed_within(s, 15)[0] for s in slow)
    print(f"closed by the node: {closed_idle} of 4 idle, {closed_slow} of 4 one-byte-per-0.3-s "
          f"(idle_timeout {IDLE_S} s, frame_timeout {FRAME_S} s)")
    for s in idle + slow:
        s.close()
    assert (closed_idle, closed_slow) == (4, 4)
    log = (node[0].dir / "stderr.log").read_text()
    assert "idle for" in log and "not finished within" in log


def test_out_of_file_descriptors_refuses_and_logs_at_most_once_a_second(node: Cluster) -> None:
    n = node[0]
    assert n.proc is not None
    port = n.client_port
    _wait_for_idle_slots(node)
    pid = n.proc.pid
    before = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    in_use = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    log_before = (n.dir / "stderr.log").read_text().count("cannot accept connections")
    held: list[socket.socket] = []
    refusals = []
    started = time.monotonic()
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 3, before[1]))
        for _ in range(8):
            s = _connect(port)
            held.append(s)
            s.settimeout(0.3)
            try:
                got = s.recv(65536)
            except (socket.timeout, TimeoutError):
                continue  # accepted and served: a descriptor was still free
            refusals.extend(decode_frames(got))
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, before)
        elapsed = time.monotonic() - started
        for s in held:
            s.close()
    lines = (n.dir / "stderr.log").read_text().count("cannot accept connections") - log_before
    print(f"out of fds: {len(refusals)} of 8 connections refused at once, {lines} log lines in {elapsed:.1f} s")
    assert refusals and all(r["error"]["name"] == "Overloaded" and "file descriptors" in r["error"]["message"]
                            for r in refusals)
    assert 1 <= lines <= int(elapsed) + 1
    assert "Traceback" not in (n.dir / "stderr.log").read_text()
    _wait_for_idle_slots(node)
    assert _ping(port)["ok"] is True


def test_client_secret_is_required_for_data_ops_when_set(node: Cluster) -> None:
    from node.client import open_client
    from node.protocol import RinglabError

    n = node[0]
    _wait_for_idle_slots(node)
    trio.run(lambda: call(n, "create_keyspace", name="ks", if_not_exists=True,
                          replication={"class": "SimpleStrategy", "replication_factor": 1}))
    trio.run(lambda: call(n, "create_table", keyspace="ks", name="t", options={}, if_not_exists=True))

    async def put(client_secret: str | None) -> str:
        try:
            async with open_client("127.0.0.1", n.client_port, timeout=10, client_secret=client_secret) as c:
                await c.request("put", keyspace="ks", table="t", key="k", columns={"v": 1})
        except RinglabError as exc:
            return exc.name
        except BaseExceptionGroup as group:
            [exc] = group.exceptions
            return getattr(exc, "name", repr(exc))
        return "ok"

    assert trio.run(put, None) == "Unauthorized"
    assert trio.run(put, "wrong") == "Unauthorized"
    assert trio.run(put, CLIENT_SECRET) == "ok"


PARTIAL_BUDGET = 1_000_000
BUFFER_BUDGET = 2_000_000


@pytest.fixture(scope="module")
def small_budget(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    extra = (f"[clients]\nmax_partial_frame_bytes = {PARTIAL_BUDGET}\nframe_timeout = 20.0\n"
             f"max_buffered_bytes = {BUFFER_BUDGET}\n")
    yield from _one_node(tmp_path_factory, "partial", extra)


def test_incomplete_frames_past_the_node_wide_budget_are_refused_by_name(small_budget: Cluster) -> None:
    port = small_budget[0].client_port
    head = struct.pack(">I", 4 * 1024 * 1024)  # a legal 4 MiB frame, of which only part arrives
    first, second = _connect(port), _connect(port)
    try:
        first.sendall(head + b"\0" * 600_000)
        time.sleep(0.5)  # the node holds the first 600 kB before the second connection adds more
        second.sendall(head + b"\0" * 600_000)
        closed, got = _closed_within(second, 10)
        assert closed, "the connection that passed the budget stays open"
        frames = decode_frames(got)
        assert frames and frames[0]["error"]["name"] == "Overloaded", frames
        assert "max_partial_frame_bytes" in frames[0]["error"]["message"], frames
        # The first connection, within the budget, is still served: it stays open.
        still_open, _ = _closed_within(first, 0.5)
        assert not still_open
    finally:
        first.close()
        second.close()
    # Its bytes are given back when it closes: the node serves new connections normally.
    wait_until(lambda: "error" not in _ping(port), 10, what="ping served")


def test_a_client_that_does_not_read_its_answers_stops_being_read(small_budget: Cluster) -> None:
    node = small_budget[0]
    value = "v" * 500_000

    async def setup() -> None:
        await call(node, "create_keyspace", name="kb", replication={"class": "SimpleStrategy", "replication_factor": 1})
        await call(node, "create_table", keyspace="kb", name="t", options={})
        await call(node, "put", keyspace="kb", table="t", key="big", columns={"v": value}, consistency="ONE")

    trio.run(setup)
    assert node.proc is not None
    before = rss_mib(node.proc.pid)
    s = _connect(node.client_port)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        body = b"".join(struct.pack(">I", len(b)) + b for b in (
            msgpack.packb({"id": i, "op": "get", "keyspace": "kb", "table": "t", "key": "big", "consistency": "ONE"})
            for i in range(400)))
        s.settimeout(10)
        s.sendall(body)  # 400 answers of 500 kB each (200 MB) that this client never reads
        time.sleep(3)
        grown = rss_mib(node.proc.pid) - before
        print(f"\n[unread answers] node RSS grew {grown:.0f} MiB for 200 MB of unread answers "
              f"(max_buffered_bytes {BUFFER_BUDGET})")
        assert grown < 60, grown
    finally:
        s.close()
    assert "error" not in _ping(node.client_port)
