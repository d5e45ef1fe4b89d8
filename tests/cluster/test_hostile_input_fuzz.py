"""Seeded hostile input on a live node's client and internode ports (bench/fuzz_protocol.py):
only named errors come back, the node stays up and serves a write and a read at ONE after every
burst, and its log holds no traceback."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import trio

from node.protocol import InvalidRequest

from tests.cluster.conftest import SECRET, Cluster, bench_module, call, one_node

fz = bench_module("fuzz_protocol")

SEEDS = (1, 2, 3)


@pytest.fixture(scope="module")
def node1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with one_node(tmp_path_factory.mktemp("fuzz")) as c:
        yield c


def _round_trip(c: Cluster, n: int) -> None:
    """The node is alive and takes a write and reads it back at ONE."""
    node = c[0]
    assert node.proc is not None and node.proc.poll() is None, node.log_tail()

    async def go() -> None:
        await call(node, "put", keyspace="ks", table="t", key=f"probe{n}", columns={"a": n}, consistency="ONE")
        got = await call(node, "get", keyspace="ks", table="t", key=f"probe{n}", consistency="ONE")
        assert got["columns"]["a"][0] == n, got

    trio.run(go)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_burst_of_hostile_input_gets_named_errors_and_the_node_serves(node1: Cluster, seed: int) -> None:
    rng = random.Random(seed)
    found = fz.burst(rng, node1[0].client_port, node1[0].internode_port, lambda: _round_trip(node1, seed), SECRET)
    assert found == []


def test_the_log_holds_no_traceback_after_the_bursts(node1: Cluster) -> None:
    _round_trip(node1, 99)
    log = (node1[0].dir / "stderr.log").read_text(errors="replace")
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


def test_flush_and_compact_name_a_keyspace_that_is_no_name(node1: Cluster) -> None:
    # They took any type: flush passed it to storage ("unknown table -1.t"), compact matched nothing.
    for op in ("flush", "compact"):
        refused = ""
        try:
            trio.run(lambda: call(node1[0], op, keyspace=-1))
        except* InvalidRequest as group:
            refused = str(group.exceptions[0])
        assert refused == f"{op}: keyspace must be a string, got int"
        assert trio.run(lambda: call(node1[0], op, keyspace="ks", table="t"))["ok"] is True


def test_writes_pipelined_behind_a_create_table_never_meet_a_table_storage_lacks(node1: Cluster) -> None:
    # The schema showed a new table while the node still awaited the disk to create it, so a put
    # served meanwhile got "storage refused the request: unknown table" (found by the fuzzer).
    answers: list[dict] = []
    for i in range(4):
        name = f"race{i}"
        reqs = [{"id": 1, "op": "create_table", "keyspace": "ks", "name": name, "options": {}, "secret": SECRET}]
        reqs += [{"id": 2 + j, "op": "put", "keyspace": "ks", "table": name, "key": str(j), "columns": {"a": j},
                  "consistency": "ONE"} for j in range(60)]
        got = fz.send_each(node1[0].client_port, [b"".join(fz.frame(r) for r in reqs)], read_s=20)[0]
        answers += fz.decode_answers(got)
    errors = [a["error"] for a in answers if "error" in a]
    assert all(e["name"] == "InvalidRequest" and e["message"].startswith("unknown table") for e in errors), errors
    assert len(answers) == 4 * 61


def test_a_dropped_table_is_gone_from_schema_and_storage_and_can_be_made_again(node1: Cluster) -> None:
    node = node1[0]

    async def go() -> None:
        await call(node, "create_table", keyspace="ks", name="gone", options={})
        await call(node, "put", keyspace="ks", table="gone", key="k", columns={"a": 1}, consistency="ONE")
        assert "ks.gone" in (await call(node, "storage"))["tables"]
        await call(node, "drop_table", keyspace="ks", name="gone")
        assert "ks.gone" not in (await call(node, "storage"))["tables"]
        refused = ""
        try:
            await call(node, "put", keyspace="ks", table="gone", key="k", columns={"a": 2}, consistency="ONE")
        except* InvalidRequest as group:
            refused = str(group.exceptions[0])
        assert refused == "unknown table ks.gone"

    trio.run(go)
