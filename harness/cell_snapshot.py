"""The ttl workload's replicas read once at the end, for checkers/provenance.py.

The convergence passes (harness/convergence.py) read the replicas of the register, set, counter
and row workloads only: expiring values have no convergence model. What a replica holds of an
expiring write can still be judged, cell by cell: its timestamp and its expiry must be the
write's, whatever path brought it there. So once the after pass is done, every replica of every
key the ttl workload's final reads cover is read with the same ``localread`` (every cell with its
timestamp and, for a TTL cell, its local deletion time) into ``ttl_replicas.jsonl``, in the
convergence passes' format.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from harness.convergence import snapshot, snapshot_keys
from node.ring import Strategy

log = logging.getLogger("harness.cell_snapshot")

TTL_SNAPSHOT_FILE = "ttl_replicas.jsonl"
MODELS = ("ttl",)


async def ttl_pass(cluster: Any, secret: str, workload: Any, rf: int | Strategy, run_dir: Path,
                   network: Any = None, now_ns: Any = None) -> dict[str, Any]:
    """Read every replica of every key of a ttl run into ``ttl_replicas.jsonl``; never raises."""
    from harness.workloads import KEYSPACE
    from harness.workloads.register import COLUMN

    if workload.model not in MODELS:
        return {}
    path = run_dir / TTL_SNAPSHOT_FILE
    extra = {"workload": {"model": workload.model, "column": COLUMN}}
    try:
        return await snapshot(cluster, secret, KEYSPACE, workload.table, snapshot_keys(workload), rf, "after", path,
                              extra, network, now_ns)
    except Exception as exc:  # noqa: BLE001 - the check sees no cells, the campaign goes on
        log.exception("ttl replica snapshot failed")
        header = {"type": "pass", "pass": "after", "time": time.time(), "error": f"{type(exc).__name__}: {exc}", **extra}
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(header, default=str) + "\n")
        return header
