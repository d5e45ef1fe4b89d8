"""disk_failure_policy on a live node. stop (the default): a data disk failing an SSTable read
with EIO fails that read with a named error, then the node stops serving client and internode
traffic, stays up, and its status says why. best_effort: the file leaves service, its keys are
refused by name and every other key is served."""

from __future__ import annotations

import socket
from pathlib import Path

import trio

from node.protocol import ReadFailure, Unavailable

from tests.cluster.conftest import call, one_node, wait_until


def _error(node: object, op: str, **fields: object) -> BaseException:
    """The error a request raised (the client's task group wraps it)."""
    try:
        trio.run(lambda: call(node, op, **fields))  # type: ignore[arg-type]
    except BaseExceptionGroup as group:
        return group.exceptions[0]
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError(f"{op} was answered")


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _read_meets_a_failing_disk(node: object, key: str) -> None:
    """Write ``key`` into an SSTable, fail the data disk with EIO and read it: the read is an
    error (a ReadFailure naming the disk's), never an answer without the file."""

    async def setup() -> None:
        await call(node, "put", keyspace="ks", table="t", key=key, columns={"a": 1}, consistency="ONE")  # type: ignore[arg-type]
        await call(node, "flush", keyspace="ks", table="t")  # type: ignore[arg-type]
        await call(node, "disk", action="fail", error="EIO", disk="data")  # type: ignore[arg-type]

    trio.run(setup)
    err = _error(node, "get", keyspace="ks", table="t", key=key, consistency="ONE")
    assert isinstance(err, ReadFailure) and "Input/output error" in str(err), err


def test_a_data_disk_read_error_stops_the_nodes_traffic_and_status_says_why(tmp_path: Path) -> None:
    with one_node(tmp_path, extra="[storage]\ndisk_faults = true\n") as c:
        node = c[0]

        _read_meets_a_failing_disk(node, "k")
        status = trio.run(lambda: call(node, "status"))
        assert "read of ks.t failed" in status["disk_failure"], status
        storage = trio.run(lambda: call(node, "storage"))
        assert storage["disk_failure_policy"] == "stop" and storage["disk_failure"] == status["disk_failure"]
        trio.run(lambda: call(node, "disk", action="heal"))
        # Healed or not, it serves no client request but inspection until restarted ...
        for op, fields in (("put", {"keyspace": "ks", "table": "t", "key": "k2", "columns": {"a": 2}, "consistency": "ONE"}),
                           ("get", {"keyspace": "ks", "table": "t", "key": "k", "consistency": "ONE"}),
                           ("scrub", {})):
            err = _error(node, op, **fields)
            assert isinstance(err, Unavailable), err
            assert "serves no traffic since a data disk failure (disk_failure_policy = stop)" in str(err), err
        # ... and no internode traffic (its port is closed, so peers see it down); the process is up.
        wait_until(lambda: _refused(node.internode_port), 5, what="internode port closed")
        assert node.proc is not None and node.proc.poll() is None
        assert "stopped client and internode traffic after a data disk failure" in (node.dir / "stderr.log").read_text()


def test_best_effort_refuses_only_the_keys_the_failed_file_may_hold_and_keeps_serving(tmp_path: Path) -> None:
    with one_node(tmp_path, extra='[storage]\ndisk_faults = true\ndisk_failure_policy = "best_effort"\n') as c:
        node = c[0]

        _read_meets_a_failing_disk(node, "old")
        trio.run(lambda: call(node, "disk", action="heal"))
        # The file is out of service: its key is refused by name (an answer without the file
        # could be stale), never answered as missing ...
        err = _error(node, "get", keyspace="ks", table="t", key="old", consistency="ONE")
        assert isinstance(err, ReadFailure) and "disk_failure_policy = best_effort" in str(err), err

        async def serving() -> None:
            # ... while the node serves every key the file cannot hold, and stays in the cluster.
            await call(node, "put", keyspace="ks", table="t", key="new", columns={"a": 2}, consistency="ONE")
            got = await call(node, "get", keyspace="ks", table="t", key="new", consistency="ONE")
            assert got["columns"]["a"][0] == 2, got
            storage = await call(node, "storage")
            assert storage["disk_failure"] is None and list(storage["out_of_service"]) == ["ks.t"], storage
            assert (await call(node, "status"))["disk_failure"] is None

        trio.run(serving)
        assert not _refused(node.internode_port)
