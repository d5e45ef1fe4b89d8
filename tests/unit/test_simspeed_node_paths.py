"""The cheaper node paths the simulator's profile asked for give what the plain ones gave."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from node import native, server
from node.cluster import membership
from node.server import Node, data_bytes


def _walked(data_dir: Path) -> int:
    # What server.data_bytes (Node._load_bytes) computed before it used scandir.
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

    assert data_bytes(tmp_path) == _walked(tmp_path) == 1017
    assert data_bytes(tmp_path / "missing") == 0


def test_decoded_tokens_follow_the_gossiped_value() -> None:
    from node.cluster.gossip import EndpointState, HeartBeatState, VersionedValue

    st = EndpointState(HeartBeatState(1, 1), {membership.TOKENS: VersionedValue(membership.encode_tokens([3, -5, 2**100]), 1)})
    first = st.info("n1").tokens
    assert first == [3, -5, 2**100]
    first.append(99)  # a caller's copy: the next view is not affected
    assert st.info("n1").tokens == [3, -5, 2**100]
    st.app[membership.TOKENS] = VersionedValue(membership.encode_tokens([7]), 2)  # a new state
    assert st.info("n1").tokens == [7]
    assert EndpointState(HeartBeatState(1, 1)).info("n2").tokens == []
    assert membership.decode_tokens(["1", "x", b"b"]) == [1, b"b"]
    assert membership.decode_tokens("junk") == []


@pytest.mark.skipif(native.compiled(server), reason="patches Node's methods, which a compiled class does not "
                    "allow; tests/unit/test_native.py runs this file in pure Python too")
def test_the_liveness_probe_status_skips_the_data_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The probe's status calls (load=False) record views without the node sizing its data
    # directory; any other status caller still gets this node's load.
    from harness.deploy.sim import run_one
    from harness.liveness_probe import LIVENESS_FILE
    from harness.run import RunOptions

    in_probe_status: list[bool] = [False]
    walks_in_probe: list[int] = [0]
    probe_statuses: list[int] = [0]
    original_status, original_walk = Node._op_status, Node._load_bytes

    async def status(self: Node, req: dict) -> dict:  # type: ignore[type-arg]
        # The op's body has no await: nothing else runs while the flag is set.
        in_probe_status[0] = req.get("load") is False
        probe_statuses[0] += in_probe_status[0]
        try:
            return await original_status(self, req)
        finally:
            in_probe_status[0] = False

    def walk(self: Node) -> int:
        walks_in_probe[0] += in_probe_status[0]
        return original_walk(self)

    monkeypatch.setattr(Node, "_op_status", status)
    monkeypatch.setattr(Node, "_load_bytes", walk)
    opts = RunOptions(deploy="sim", seed=3, time_limit=3, nemesis="pause", nemesis_interval=1, concurrency="1n",
                      rate=50, recovery_time=1, store=str(tmp_path), test_name="t")
    run_one(opts, tmp_path, quiet=True, report=False)
    views = [line for line in (tmp_path / LIVENESS_FILE).read_text().splitlines() if '"type":"view"' in line]
    assert views and probe_statuses[0] >= len(views)
    assert walks_in_probe[0] == 0
