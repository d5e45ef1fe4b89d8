"""Campaign storage settings: small memtables, segments and tombstone grace so a 20-30 s campaign
reaches every data path (flush, SSTables and bloom filters, compaction, tombstone purge, commit
log segment recycling), and the crash nemesis's volatile file mode.

A default campaign writes a few hundred KB per node; with the store's production defaults
(64 MB memtables, 32 MB segments, ten days of gc_grace) none of that ever runs.
"""

from __future__ import annotations

import json
from typing import Any

from nemesis import faults
from node.storage.config import StorageConfig

# A default campaign logs about 1.5 KB/s per node, mostly overwrites of a few keys (which do not
# grow a memtable): 4 KB of commit log flushes every few seconds, so each node writes several
# SSTables, and so a size-tiered compaction (4 SSTables), within 20 s.
DEFAULT_MEMTABLE_FLUSH_KB = 4
# Long enough for hints to deliver a delete to a node back from a nemesis step (10 s apart by
# default), short enough that compactions late in a 30 s campaign purge tombstones.
DEFAULT_GC_GRACE_S = 10
# Nemeses that need the nodes' unsynced commit log bytes to die with the process.
VOLATILE_NEMESES = ("crash",)


def node_storage(opts: Any) -> dict[str, Any]:
    """The node.toml [storage] settings of a campaign (besides commitlog_sync)."""
    out: dict[str, Any] = {}
    if opts.memtable_flush_kb:
        out["memtable_flush_threshold_kb"] = opts.memtable_flush_kb
        # Segments and commit log space as small as memtables: a log past N KB flushes its
        # oldest tables (overwrites alone never fill a memtable) and each flush frees the
        # segments before it, so the commit log recycles segments within the campaign too.
        out["commitlog_segment_size_kb"] = opts.memtable_flush_kb
        out["commitlog_total_space_kb"] = opts.memtable_flush_kb
    if any(n in VOLATILE_NEMESES for n in faults.parse_nemeses(opts.nemesis)):
        out["volatile_unsynced"] = True
    if "disk" in faults.parse_nemeses(opts.nemesis):
        out["disk_faults"] = True  # the disk nemesis's switch on the engine's file door
        # A data disk failing with EIO would stop the node under the store's default (stop) until
        # a restart; the nemesis heals the disk and expects it served again, as before the policy.
        out["disk_failure_policy"] = "ignore"
    policy = getattr(opts, "commit_failure_policy", "stop")
    if policy != "stop":  # the store's default otherwise
        out["commit_failure_policy"] = policy
    return out


def sim_storage(opts: Any) -> dict[str, Any]:
    """The [storage] settings harness sim gives its nodes: the memtable and segment sizes of
    ``--memtable-flush-kb`` (4 KB by default, as for ``harness run``; 0 keeps the store's own; the file
    nemeses are not simulated)."""
    return {k: v for k, v in node_storage(opts).items() if k not in ("volatile_unsynced", "disk_faults", "commit_failure_policy",
                                                                    "disk_failure_policy")}


def node_hints(opts: Any) -> dict[str, Any]:
    """The node.toml [hints] settings of a campaign: a max_hint_window short enough for a
    campaign's outages to pass it (the store's 3 hours never pass within one)."""
    window = getattr(opts, "max_hint_window", None)
    return {} if window is None else {"max_hint_window": float(window)}


def node_membership(opts: Any) -> dict[str, Any]:
    """The node.toml [membership] settings of a campaign: how small an SSTable may be and still
    go whole in a range transfer (node/rangecopy.py; the store's 1 MiB is never reached by a
    campaign's KB-sized files, so none would take that path), and load balancing."""
    n = getattr(opts, "file_stream_min_bytes", None)
    out: dict[str, Any] = {} if n is None else {"file_stream_min_bytes": n}
    every = getattr(opts, "load_balance", None)
    if every is not None:
        out.update(load_balance=True, balance_interval=float(every))
    return out


def recorded(opts: Any) -> dict[str, Any]:
    """What test.json says about the storage settings the campaign ran with."""
    node = {"commitlog_sync": opts.commitlog_sync}
    if opts.deploy == "sim":
        node.update(sim_storage(opts))
        node.update(node_hints(opts))
        if not opts.memtable_flush_kb:
            node["note"] = "harness sim's nodes use the store's own sizes"
    else:
        node.update(node_storage(opts))
        node.update(node_membership(opts))
    return {"node": node, "table": table_options(opts)}


def table_options(opts: Any) -> dict[str, Any]:
    """Storage options of the campaign's table (schema options)."""
    return {"gc_grace_seconds": opts.gc_grace}


def sync_period_ms() -> int:
    """The periodic commit log's fsync period the nodes run with (the store's default)."""
    return StorageConfig().commitlog_sync_period_ms


def validate(opts: Any) -> None:
    """Raise ValueError naming a bad storage option (or a nemesis the deployment cannot run)."""
    if opts.deploy != "local" and "corrupt" in faults.parse_nemeses(opts.nemesis):
        raise ValueError("--nemesis corrupt damages the nodes' files, which only --deploy local reaches")
    if opts.memtable_flush_kb < 0:
        raise ValueError(f"--memtable-flush-kb must be >= 0 (0 = the store's default), got {opts.memtable_flush_kb}")
    n = getattr(opts, "file_stream_min_bytes", None)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ValueError(f"--file-stream-min-bytes must be an integer >= 0, got {n!r}")
    every = getattr(opts, "load_balance", None)
    if every is not None and not every > 0:
        raise ValueError(f"--load-balance must be a positive number of seconds, got {every!r}")
    if every is not None and opts.deploy != "local":
        raise ValueError("--load-balance sets local nodes' [membership] load_balance (local deployments only)")
    if n is not None and opts.deploy != "local":
        raise ValueError("--file-stream-min-bytes sets local nodes' [membership] file_stream_min_bytes (local deployments only)")
    if getattr(opts, "commit_failure_policy", "stop") != "stop" and opts.deploy == "sim":
        raise ValueError("--commit-failure-policy sets real nodes' [storage] commit_failure_policy (harness sim's "
                         "disk never fails)")
    window = getattr(opts, "max_hint_window", None)
    if window is not None and (isinstance(window, bool) or not isinstance(window, (int, float)) or not window >= 0):
        raise ValueError(f"--max-hint-window must be a number of seconds >= 0, got {window!r}")
    if window is not None and opts.deploy != "sim":
        raise ValueError("--max-hint-window sets harness sim's nodes' [hints] max_hint_window (harness sim only)")
    if opts.gc_grace < 0:
        raise ValueError(f"--gc-grace must be >= 0 seconds, got {opts.gc_grace}")


def toml_lines(settings: dict[str, Any]) -> list[str]:
    """``key = value`` lines of a TOML table (bools, ints and strings)."""
    out = []
    for k, v in settings.items():
        out.append(f"{k} = {'true' if v else 'false'}" if isinstance(v, bool) else f"{k} = {json.dumps(v)}")
    return out
