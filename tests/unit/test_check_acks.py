"""checkers/acks.py on hand-made writes: each level's acknowledgement count, per datacenter where
the keyspace has several, and the parameters a run records for it."""

from __future__ import annotations

from typing import Any

from checkers import acks
from checkers.compose import default_checkers
from harness import topology
from harness.cli import params_from_test
from harness.history import Op
from harness.run import RunOptions

DCS = {"n1": "dc1", "n3": "dc1", "n5": "dc1", "n2": "dc2", "n4": "dc2", "n6": "dc2"}
NTS = {"replication_factor": 6, "replication": {"class": "NetworkTopologyStrategy", "dc1": 3, "dc2": 3},
       "node_datacenters": DCS}
ALL6 = ["n1", "n2", "n3", "n4", "n5", "n6"]


def _write(i: int, cl: str, acked: list[str], replicas: list[str] = ALL6, node: str = "n1", t: str = "ok") -> list[Op]:
    extra: dict[str, Any] = {"replicas": replicas, "acked": acked} if t == "ok" else {}
    return [Op(2 * i, 10 * i, i, "invoke", "write", i, i, node, cl),
            Op(2 * i + 1, 10 * i + 5, i, t, "write", i, i, node, cl, 100 + i, None, extra)]


def test_simple_strategy_levels() -> None:
    params = {"replication_factor": 3, "write_cl": "QUORUM"}
    reps = ["n1", "n2", "n3"]
    good = [*_write(0, "QUORUM", ["n1", "n2"], reps), *_write(1, "ONE", ["n3"], reps),
            *_write(2, "ALL", ["n3", "n1", "n2"], reps), *_write(3, "ANY", [], reps),
            *_write(4, "LOCAL_QUORUM", ["n2", "n3"], reps), *_write(5, "QUORUM", ["n1"], reps, t="info")]
    r = acks.check(good, params)
    assert r.valid is True and r.counts["judged_writes"] == 5
    # QUORUM after one replica; ALL short of one; two acks of which one is a pending (non-replica) node.
    bad = [*_write(0, "QUORUM", ["n1"], reps), *_write(1, "ALL", ["n1", "n2"], reps),
           *_write(2, "QUORUM", ["n1", "n4"], reps)]
    r = acks.check(bad, params)
    assert r.valid is False and r.counts[acks.KIND] == 3
    assert "not replicas of the key: ['n4']" in r.anomalies[2].explanation


def test_datacenter_levels() -> None:
    ok = [*_write(0, "EACH_QUORUM", ["n1", "n3", "n2", "n4"]), *_write(1, "QUORUM", ["n1", "n2", "n3", "n4"]),
          *_write(2, "LOCAL_QUORUM", ["n2", "n6"], node="n4"), *_write(3, "LOCAL_ONE", ["n5"], node="n3")]
    assert acks.check(ok, NTS).valid is True
    bad = [*_write(0, "EACH_QUORUM", ["n1", "n3", "n5", "n2"]),          # dc2 has one of two
           *_write(1, "LOCAL_QUORUM", ["n1", "n2"], node="n1"),          # one in dc1, one in dc2
           *_write(2, "LOCAL_QUORUM", ["n2", "n4"], node="n1"),          # a quorum, but of the other datacenter
           *_write(3, "QUORUM", ["n1", "n2", "n3"])]                     # three of six
    r = acks.check(bad, NTS)
    assert r.counts[acks.KIND] == 4
    assert "dc2: 1 of 2" in r.anomalies[0].explanation
    # Where the coordinator is not recorded, a quorum of any one datacenter is enough.
    assert acks.check(_write(0, "LOCAL_QUORUM", ["n2", "n4"], node=None), NTS).valid is True  # type: ignore[arg-type]


def test_runs_record_what_the_check_needs() -> None:
    opts = RunOptions(deploy="sim", nodes=8, datacenters=2, racks=2, replication_factor=3)
    params = opts.checker_params()
    assert params["write_acks"] is True and "acks" in default_checkers({**params, "model": "register"})
    assert params["replication"] == topology.replication(opts)
    assert params["node_datacenters"]["n1"] == "dc1" and params["node_datacenters"]["n8"] == "dc2"
    # harness check reads them back from test.json (mappings included).
    again = params_from_test({"params": params})
    assert again["replication"] == params["replication"] and again["node_datacenters"] == params["node_datacenters"]
    assert "node_datacenters" not in RunOptions().checker_params()
    assert "acks" not in default_checkers({"model": "register"})
