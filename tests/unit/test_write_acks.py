"""Which replicas acknowledged a write (issue 18): the coordinator answers a write with the key's
replicas, the ones that acknowledged before it answered and the ones it hinted; the harness
client records them on the write's ok op, and findings name them. The real node code under the
simulator (2 virtual seconds, 3 nodes), plus hand-made histories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checkers import quorum
from harness.deploy.sim import run_one
from harness.history import Op
from harness.run import RunOptions
from node.client import _KEPT_ACKS, Client


def ok_writes(switches: list[str], tmp: Path) -> list[dict]:
    opts = RunOptions(deploy="sim", seed=1, nodes=3, time_limit=2, nemesis="none", recovery_time=1,
                      store=str(tmp), test_name="acks", validation_faults=switches)
    run_one(opts, tmp, quiet=True)
    ops = [json.loads(line) for line in (tmp / "history.jsonl").open()]
    return [o for o in ops if o["type"] == "ok" and o["f"] == "write"]


@pytest.mark.parametrize("switches, fewest", [([], 2), (["ack_quorum_after_one"], 1)])
def test_every_ok_write_records_its_replicas_and_who_acknowledged(
        tmp_path: Path, switches: list[str], fewest: int) -> None:
    writes = ok_writes(switches, tmp_path)
    assert len(writes) > 50
    for w in writes:
        assert len(set(w["replicas"])) == 3 and set(w["acked"]) <= set(w["replicas"]), w
    # QUORUM of 3 is two acknowledgements; the broken store answers on the first one.
    assert min(len(w["acked"]) for w in writes) == fewest


class _Stream:
    """No I/O: the client's bookkeeping only."""


def test_the_client_keeps_acks_until_popped_and_bounds_them() -> None:
    c = Client(_Stream())  # type: ignore[arg-type]
    assert c._written({"timestamp": 7, "replicas": ["n1", "n2"], "acked": ["n2"], "hinted": []}) == 7
    assert c.pop_acks(7) == {"replicas": ["n1", "n2"], "acked": ["n2"], "hinted": []}
    assert c.pop_acks(7) is None and c.pop_acks(None) is None
    assert c._written({"timestamp": 8}) == 8 and c.pop_acks(8) is None  # a node without the fields
    for ts in range(_KEPT_ACKS + 10):
        c._written({"timestamp": ts, "replicas": [], "acked": []})
    assert len(c._acks) == _KEPT_ACKS and c.pop_acks(0) is None and c.pop_acks(_KEPT_ACKS + 9) is not None


def test_a_stale_read_names_who_acknowledged_the_write_it_missed() -> None:
    ops = [Op(0, 0, 0, "invoke", "write", "k", 1, node="n2", cl="QUORUM"),
           Op(1, 10, 0, "ok", "write", "k", 1, node="n2", cl="QUORUM", timestamp=100,
              extra={"replicas": ["n1", "n2", "n3"], "acked": ["n1"]}),
           Op(2, 20, 1, "invoke", "read", "k", None, node="n3", cl="QUORUM"),
           Op(3, 30, 1, "ok", "read", "k", None, node="n3", cl="QUORUM")]
    r = quorum.check(ops, {"replication_factor": 3})
    stale = [a for a in r.anomalies if a.kind == "stale-read"]
    assert stale and stale[0].explanation.endswith(
        "; the write was acknowledged by n1 of replicas n1, n2, n3 when n2 answered"), stale
    assert quorum.acked_note(ops[0]) == ""  # a history without the fields says nothing
