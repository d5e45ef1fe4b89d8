"""A campaign on two datacenters with racks (NetworkTopologyStrategy) under the operator nemeses:
ringctl snapshots and inspection, cleanup and subrange repair (admin), a token move and cleanup
on every node (move). The history shows what each ringctl said, and the unmodified store at
QUORUM stays valid with four replicas per key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def campaign(store: Path, *args: str) -> tuple[Path, dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """One campaign as a user runs it; (run directory, results, completed nemesis steps by f).

    The first fault starts 1 s in, and a step running at the time limit is let finish, so each
    campaign's first start step happens whatever the load; later steps are not counted on."""
    cmd = [sys.executable, "-m", "harness", "run", "--seed", "2", "--recovery-time", "1", "--store", str(store),
           "--time-limit", "4", "--nemesis-interval", "1", *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    run_dir = (store / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["valid"] is True
    steps: dict[str, list[dict[str, Any]]] = {}
    for line in (run_dir / "history.jsonl").open():
        o = json.loads(line)
        if o["process"] == "nemesis" and o["type"] == "info":
            steps.setdefault(o["f"], []).append(o["value"])
    return run_dir, results, steps


def test_admin_on_two_datacenters_with_racks_stays_valid(tmp_path: Path) -> None:
    run_dir, results, steps = campaign(tmp_path, "--nemesis", "admin", "--nodes", "5", "--datacenters", "2",
                                       "--racks", "2", "--replication-factor", "2")
    test = json.loads((run_dir / "test.json").read_text())
    # Placed as asked: NetworkTopologyStrategy, two replicas in each datacenter, on both racks.
    assert test["topology"]["replication"] == {"class": "NetworkTopologyStrategy", "dc1": 2, "dc2": 2}
    assert test["topology"]["nodes"]["n2"] == "dc2/rack1"
    assert results["checkers"]["quorum"]["details"]["replication_factor"] == 4
    replicas = [p for p in map(json.loads, (run_dir / "replicas.jsonl").open()) if p["type"] == "replica"]
    assert replicas and all(len(r["replicas"]) == 4 for r in replicas)

    admin = steps["start-admin"][0]
    assert admin["snapshot"]["exit"] == 0, admin
    assert len(admin["commands"]) == 4 and all(c["command"].startswith("ringctl ") for c in admin["commands"])
    # The scratch table lived and died beside the test table: every answer as written, dropped.
    scratch = admin["scratch"]
    assert scratch["wrong"] == [] and scratch["errors"] == [], scratch
    assert scratch["done"][0] == "created" and scratch["done"][-1] == "dropped", scratch
    assert "TTL expired" in scratch["done"] and scratch["done"].count("read back") == 2, scratch
    snap = run_dir / "nodes" / admin["node"] / "data" / "storage" / "snapshots" / admin["snapshot"]["tag"]
    maints = steps.get("stop-admin", [])
    assert snap.is_dir() or maints, snap
    for maint in maints:
        assert [c["command"].split()[1] for c in maint["commands"]] == ["cleanup", "repair", "listsnapshots",
                                                                        "clearsnapshot"]
        assert all(c["exit"] == 0 for c in maint["commands"]), maint
        # The snapshot the start took was listed, then cleared from the node's disk.
        assert maint["snapshots"]["tag"] in maint["snapshots"]["listed"] and maint["snapshots"]["cleared"]
        assert not (run_dir / "nodes" / maint["node"] / "data" / "storage" / "snapshots" / maint["snapshots"]["tag"]).exists()


def test_move_then_cleanup_stays_valid(tmp_path: Path) -> None:
    run_dir, results, steps = campaign(tmp_path, "--nemesis", "move", "--nodes", "3")
    move = steps["start-move"][0]
    assert move["command"]["exit"] == 0, move
    assert move["took"] in move["tokens"] and move["gave"] not in move["tokens"]
    # The node took the new token: its tokens.json says so.
    tokens = json.loads((run_dir / "nodes" / move["node"] / "data" / "tokens.json").read_text())
    assert move["took"] in tokens and move["gave"] not in tokens
    for cleanup in steps.get("stop-move", []):
        assert all(c["exit"] == 0 for c in cleanup["commands"]), cleanup
