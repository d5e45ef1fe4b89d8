"""A crash with volatile unsynced files loses what periodic mode never fsynced, and nothing in
batch or group mode: writes acknowledged by every replica, then every node SIGKILLed and restarted.

The sync period is ten minutes, so in periodic mode no fsync covers the writes: their loss is
certain, not a matter of timing (a campaign's crash nemesis only may lose something)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from conftest import Cluster, alive_view, call, wait_until

KEYS = [f"k{i}" for i in range(12)]


@pytest.mark.parametrize("mode", ["periodic", "batch", "group"])
def test_crash_loses_unsynced_writes_in_periodic_mode_only(tmp_path: Path, mode: str) -> None:
    extra = ("[storage]\n"
             f'commitlog_sync = "{mode}"\n'
             "commitlog_sync_period_ms = 600000\n"
             "volatile_unsynced = true\n")
    c = Cluster(tmp_path, 3, extra)
    try:
        c.start()
        wait_until(lambda: all(set(alive_view(n).values()) == {"U"} and len(alive_view(n)) == 3 for n in c.nodes),
                   30, what="3 nodes up")

        async def setup_and_write() -> list[int]:
            await call(c[0], "create_keyspace", name="ks", replication={"class": "SimpleStrategy", "replication_factor": 3})
            await call(c[0], "create_table", keyspace="ks", name="t", options={})
            for key in KEYS:
                # ALL: every replica acknowledged it (in batch mode: after its fsync).
                await call(c[0], "put", keyspace="ks", table="t", key=key, columns={"v": key}, consistency="ALL")
            unsynced = []
            for n in c.nodes:
                status = await call(n, "storage")
                assert status["tables"]["_commitlog"]["files"] == "volatile"
                unsynced.append(status["tables"]["_commitlog"]["unsynced_bytes"])
            return unsynced

        unsynced = trio.run(setup_and_write)
        if mode == "periodic":
            assert all(u > 0 for u in unsynced), unsynced
        else:
            assert unsynced == [0, 0, 0]
        for n in c.nodes:
            n.kill()
        for n in c.nodes:
            n.start()
        for n in c.nodes:
            n.wait_ready()
        wait_until(lambda: all(set(alive_view(n).values()) == {"U"} and len(alive_view(n)) == 3 for n in c.nodes),
                   30, what="3 nodes up again")

        async def read_all() -> dict[str, object]:
            out = {}
            for key in KEYS:
                resp = await call(c[1], "get", keyspace="ks", table="t", key=key, consistency="ALL")
                out[key] = resp["columns"].get("v", [None])[0]
            return out

        found = trio.run(read_all)
        if mode == "periodic":
            assert found == {k: None for k in KEYS}, "every replica lost the unsynced writes"
        else:
            assert found == {k: k for k in KEYS}, f"{mode} mode acknowledged only fsynced writes"
    finally:
        c.stop()
