"""The ZooKeeper assignment-log checker on hand-made logs, and the [coordination] config."""

from __future__ import annotations

from pathlib import Path

import pytest

from checkers.assignments import check_assignments
from node.config import ConfigError, parse_config
from node.coordination import leader_of


def reg(seq: int, node: str, tokens: list[str]) -> dict:
    return {"seq": seq, "kind": "register", "node": node, "tokens": tokens, "epoch": None, "by": node}


def assign(seq: int, node: str, tokens: list[str], epoch: int, by: str) -> dict:
    return {"seq": seq, "kind": "assign", "node": node, "tokens": tokens, "epoch": epoch, "by": by}


def release(seq: int, node: str) -> dict:
    return {"seq": seq, "kind": "release", "node": node, "tokens": [], "epoch": 3, "by": "n2"}


def test_a_clean_log_with_a_failover_is_valid() -> None:
    log = [reg(0, "n1", ["1"]), reg(1, "n2", ["2"]), assign(2, "n3", ["3"], 0, "n1"),
           assign(3, "n4", ["4"], 5, "n2"), release(4, "n3"), assign(5, "n5", ["3"], 5, "n2")]
    result = check_assignments(log)
    assert result.valid is True, result.to_json()
    assert result.counts["assignments"] == 3 and result.counts["leaders"] == 2 and result.counts["releases"] == 1


def test_two_leaders_in_one_epoch_are_reported() -> None:
    result = check_assignments([assign(0, "n3", ["3"], 7, "n1"), assign(1, "n4", ["4"], 7, "n2")])
    assert result.valid is False
    assert [a.kind for a in result.anomalies] == ["two-leaders-one-epoch"]


def test_an_older_epoch_acting_after_a_newer_one_is_a_stale_leader() -> None:
    result = check_assignments([assign(0, "n3", ["3"], 9, "n2"), assign(1, "n4", ["4"], 4, "n1")])
    assert result.valid is False
    assert [a.kind for a in result.anomalies] == ["stale-leader"]
    assert result.anomalies[0].details == {"epoch": 4, "newest": 9, "seq": 1}


def test_a_token_given_to_two_nodes_is_reported_until_released() -> None:
    bad = check_assignments([reg(0, "n1", ["1", "2"]), assign(1, "n3", ["2"], 0, "n1")])
    assert [a.kind for a in bad.anomalies] == ["token-held-twice"]
    # After the holder's release the token may be handed out again.
    ok = check_assignments([reg(0, "n1", ["1", "2"]), release(1, "n1"), assign(2, "n3", ["2"], 0, "n2")])
    assert ok.valid is True, ok.to_json()


def test_the_lowest_election_znode_leads_and_names_the_epoch() -> None:
    assert leader_of({"c_0000000012": "n3", "c_0000000004": "n2", "c_0000000020": "n1"}) == ("n2", 4)
    assert leader_of({}) is None


@pytest.mark.parametrize(("section", "word"), [
    ({"mode": "zk"}, "mode"),
    ({"mode": "zookeeper"}, "servers"),
    ({"mode": "zookeeper", "servers": ["nohost"]}, "host:port"),
    ({"mode": "zookeeper", "servers": ["127.0.0.1:2181"], "root": "relative"}, "root"),
    ({"mode": "zookeeper", "servers": ["127.0.0.1:2181"], "session_timeout": 0.1}, "session_timeout"),
    ({"servers": "127.0.0.1:2181"}, "servers"),
])
def test_a_bad_coordination_section_is_refused_by_name(section: dict, word: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=word):
        parse_config({"node_id": "n1", "data_dir": str(tmp_path), "coordination": section})


def test_the_default_coordination_is_gossip(tmp_path: Path) -> None:
    cfg = parse_config({"node_id": "n1", "data_dir": str(tmp_path)})
    assert cfg.coordination.mode == "gossip"
    zk = parse_config({"node_id": "n1", "data_dir": str(tmp_path),
                       "coordination": {"mode": "zookeeper", "servers": ["127.0.0.1:2181", "127.0.0.1:2182"]}})
    assert zk.coordination.servers == ["127.0.0.1:2181", "127.0.0.1:2182"]


# ---- the zk nemesis over fakes, and the options that refuse it


class FakeServer:
    def __init__(self, sid: int) -> None:
        self.sid, self.name, self.state = sid, f"zk{sid}", "up"


class FakeEnsemble:
    def __init__(self, n: int) -> None:
        self.servers = [FakeServer(i) for i in range(1, n + 1)]
        self.ready_waits: list[list[str]] = []

    async def kill(self, s: FakeServer) -> None:
        s.state = "killed"

    async def pause(self, s: FakeServer) -> None:
        s.state = "paused"

    async def resume(self, s: FakeServer) -> None:
        s.state = "up"

    async def start_server(self, s: FakeServer) -> None:
        s.state = "up"

    async def wait_ready(self, timeout: float = 60.0, servers: list | None = None) -> None:
        self.ready_waits.append([s.name for s in servers or []])


class FakeNet:
    def __init__(self) -> None:
        self.links: set = set()

    async def cut(self, links) -> None:
        self.links |= set(links)

    async def heal(self) -> None:
        self.links = set()


class FakeDB:
    def node_ids(self) -> list[str]:
        return ["n1", "n2", "n3"]


def test_the_zk_nemesis_undoes_every_fault_it_drew() -> None:
    import random

    import trio

    from nemesis.zookeeper import ZooKeeperNemesis

    ensemble, net = FakeEnsemble(3), FakeNet()
    nem = ZooKeeperNemesis(ensemble, FakeDB(), net)  # type: ignore[arg-type]
    seen = set()

    async def main() -> None:
        rng = random.Random(5)
        for _ in range(12):
            event = await nem.start(rng)
            seen.add(event.f)
            if event.f == "partition-zk":
                assert {b for _, b in net.links} == {"zk1", "zk2", "zk3"} and {a for a, _ in net.links} == set(event.value["nodes"])
            else:
                hit = [s for s in ensemble.servers if s.state != "up"]
                assert [s.name for s in hit] == event.value["servers"] and len(hit) in (1, 2)
            await nem.stop()
            assert all(s.state == "up" for s in ensemble.servers) and not net.links
        await nem.heal()

    trio.run(main)
    assert seen == {"kill-zk", "pause-zk", "partition-zk"}
    assert ensemble.ready_waits, "killed servers are waited for after their restart"


@pytest.mark.parametrize(("opts", "word"), [
    ({"nemesis": "zk"}, "--coordination zookeeper"),
    ({"coordination": "etcd"}, "--coordination"),
    ({"coordination": "zookeeper", "zk_servers": 2}, "--zk-servers"),
])
def test_zookeeper_options_are_refused_by_name(opts: dict, word: str) -> None:
    from harness.run import RunOptions

    with pytest.raises(ValueError, match=word):
        RunOptions(**opts).validate()
