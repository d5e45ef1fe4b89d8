"""`harness sim --datacenters/--racks`: simulated nodes sit where harness/topology.py places local
ones, so NetworkTopologyStrategy placement and per-datacenter consistency levels are on a sim
campaign's path (one short deterministic seed), and the placement oracle judges them there."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from checkers import convergence, placement
from harness import store, topology
from harness.deploy.sim import run_one
from harness.run import RunOptions


def test_sim_locations_follow_the_local_round_robin() -> None:
    opts = RunOptions(deploy="sim", nodes=8, datacenters=2, racks=2, replication_factor=3)
    locs = topology.sim_locations(opts)
    assert locs is not None and locs[:4] == (("dc1", "rack1"), ("dc2", "rack1"), ("dc1", "rack2"), ("dc2", "rack2"))
    assert all(locs[i] == topology.location(i, 2, 2) for i in range(len(locs)))
    assert topology.sim_locations(RunOptions(deploy="sim")) is None
    opts.validate()  # sim is a deployment that can place nodes
    with pytest.raises(ValueError, match="ssh"):
        topology.validate(RunOptions(deploy="ssh", datacenters=2), None)


def test_a_two_datacenter_sim_campaign_places_replicas_by_rack_and_the_oracle_judges_them(tmp_path: Path) -> None:
    opts = RunOptions(deploy="sim", seed=1, nodes=8, datacenters=2, racks=2, replication_factor=3,
                      write_cl="EACH_QUORUM", read_cl="QUORUM", nemesis="partition", nemesis_interval=2,
                      time_limit=4, recovery_time=1, key_count=5, concurrency="1n", rate=20,
                      store=str(tmp_path), test_name="t")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_one(opts, run_dir, quiet=True)
    results = store.read_json(run_dir / store.RESULTS_FILE)["checkers"]
    assert all(r["valid"] is True for r in results.values()), {k: r.get("anomalies") for k, r in results.items()}
    assert results["convergence"]["counts"]["placement_keys"] > 0
    records = convergence.load_snapshots(run_dir / convergence.SNAPSHOT_FILE)
    header = next(r for r in records if r.get("type") == "pass" and (r.get("placement") or {}).get("tokens"))
    info = header["placement"]
    assert info["replication"] == {"class": "NetworkTopologyStrategy", "dc1": 3, "dc2": 3}
    assert Counter(dc for dc, _ in info["locations"].values()) == {"dc1": 4, "dc2": 4}
    assert {rack for _, rack in info["locations"].values()} == {"rack1", "rack2"}
    # Three replicas per datacenter on two racks: both racks of each datacenter hold one.
    key, nodes = info["endpoints"][0]
    assert len(nodes) == 6
    for dc in ("dc1", "dc2"):
        assert {info["locations"][n][1] for n in nodes if info["locations"][n][0] == dc} == {"rack1", "rack2"}
    # Another choice of dc1's three (its fourth node in, one of the right ones out) is flagged.
    dc1 = [n for n in nodes if info["locations"][n][0] == "dc1"]
    (spare,) = {n for n, (dc, _) in info["locations"].items() if dc == "dc1"} - set(dc1)
    wrong = [n for n in nodes if n not in dc1] + [spare, *dc1[:2]]
    forged = {**header, "placement": {**info, "endpoints": [[key, wrong]]}}
    anomalies, counts = placement.check_pass(forged, [])
    assert counts["placement_wrong"] == 1 and anomalies[0].kind == placement.KIND
