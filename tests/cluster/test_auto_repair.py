"""A table that refuses reads after a quarantine heals itself: repaired from its replicas, served again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from tests.cluster.conftest import Cluster, call, start_three_with_table, wait_until


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("autorepair"), 3, extra="[storage]\nauto_repair_after_s = 2.0\n")
    try:
        start_three_with_table(c, 20)
        yield c
    finally:
        c.stop()


def _local(node: object, key: str) -> list[list[object]]:
    rows = trio.run(lambda: call(node, "localread", keyspace="ks", table="t", keys=[key]))["rows"]  # type: ignore[arg-type]
    return rows[0]["cells"] if rows and rows[0] else []


def test_a_quarantined_table_is_repaired_and_served_again_without_a_scrub(cluster: Cluster) -> None:
    n1 = cluster[0]
    for i in range(20):
        trio.run(lambda: call(n1, "put", keyspace="ks", table="t", key=f"k{i}", columns={"a": f"v{i}" * 500},
                              consistency="ALL"))
    trio.run(lambda: call(n1, "flush", keyspace="ks", table="t"))
    files = sorted((n1.dir / "data" / "storage" / "data" / "ks").glob("t-*/*-Data.db"))
    assert files
    for data in files:  # a flush writes one SSTable per local range group: damage each
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0x40
        with open(data, "r+b") as f:  # in place: the node's mapping of the file sees it
            f.write(raw)
    # Reading every key at ONE through n1 meets the damage: the file is quarantined, reads held.
    for i in range(20):
        try:
            trio.run(lambda: call(n1, "get", keyspace="ks", table="t", key=f"k{i}", consistency="ONE"))
        except Exception:  # noqa: BLE001 - the read that met the damage, or one refused after it
            pass
    held = trio.run(lambda: call(n1, "storage"))["held"]
    assert "ks.t" in held, held
    # No scrub: the node repairs the table from its replicas and serves it again by itself.
    wait_until(lambda: not trio.run(lambda: call(n1, "storage"))["held"], 60, what="reads released")
    log = (n1.dir / "stderr.log").read_text(errors="replace")
    assert "automatic repair after quarantine: ks.t repaired from their replicas" in log
    for i in range(20):
        assert _local(n1, f"k{i}")[0][1] == f"v{i}" * 500, i
    got = trio.run(lambda: call(n1, "get", keyspace="ks", table="t", key="k3", consistency="ALL"))
    assert got["columns"]["a"][0] == "v3" * 500
