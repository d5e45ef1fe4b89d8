"""Each SSTable's recorded statistics against a count from its own data file.

The ``after`` pass asks every node for its ``storage`` status with ``sstables`` (harness/convergence.py
``storage_health``): per live SSTable, the statistics its writer recorded in Statistics.db (as
Cassandra's ``sstablemetadata`` prints them: partitions, cells, tombstones, min/max timestamp,
max local deletion time, first/last key) and the same counted again from the data file (as
``sstabledump`` would see it). The read path trusts the recorded ones: the time-ordered read
stops before a file whose max timestamp is older than what it already holds, a lookup skips a
file whose key range leaves the key out, compaction's tombstone estimates and gc decisions start
from them. So any difference is an anomaly, ``sstable-metadata-wrong``, whatever the faults: a
file whose data could not be read through reports ``scan_error`` and is not judged, and a
corrupt file is not listed at all (store-damaged judges those).

One detail follows the writer's contract rather than equality: a file with no timestamp at all
(nothing but partitions it skipped) records none, and the reader takes "none" as "could be
anything", so a recorded ``None`` is judged only against a scan that found a timestamp.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from checkers.result import Anomaly, AnomalyLog

KIND = "sstable-metadata-wrong"
# Compared as they are: a count or a bound the data determines exactly.
EXACT_FIELDS = ("partitions", "cells", "tombstones", "first_key", "last_key", "max_local_deletion_time")
TIMESTAMP_FIELDS = ("min_timestamp", "max_timestamp")
MAX_FIELDS_LISTED = 4


def _differences(stats: dict[str, Any], scan: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, recorded, counted) for every statistic the data contradicts."""
    out = []
    for f in EXACT_FIELDS:
        if f in stats and f in scan and stats[f] != scan[f]:
            out.append((f, stats[f], scan[f]))
    for f in TIMESTAMP_FIELDS:
        if f not in stats or f not in scan or scan[f] is None:
            continue
        if stats[f] != scan[f]:
            out.append((f, stats[f], scan[f]))
    return out


def judge(health: Any, log: AnomalyLog) -> dict[str, int]:
    """Add an ``sstable-metadata-wrong`` anomaly per SSTable whose statistics its data contradicts;
    returns counts (SSTables judged, scans that failed)."""
    judged = failed = 0
    if not isinstance(health, dict):
        return {"sstables_judged": 0, "sstable_scan_errors": 0}
    for node, st in sorted(health.items()):
        tables = st.get("sstables") if isinstance(st, dict) else None
        if not isinstance(tables, dict):
            continue
        for table, rows in sorted(tables.items()):
            for row in rows if isinstance(rows, list) else []:
                if not isinstance(row, dict):
                    continue
                stats, scan = row.get("stats"), row.get("scan")
                if not isinstance(stats, dict) or not isinstance(scan, dict):
                    failed += int("scan_error" in row)
                    continue
                judged += 1
                diffs = _differences(stats, scan)
                if not diffs:
                    continue
                name = PurePath(str(row.get("sstable"))).name
                listed = ", ".join(f"{f} {rec!r} (its data: {cnt!r})" for f, rec, cnt in diffs[:MAX_FIELDS_LISTED])
                log.add(Anomaly(
                    KIND,
                    f"{node}'s SSTable {name} of {table} records statistics its own data contradicts: "
                    f"{listed}; reads and compaction trust them (a max timestamp too old makes the time-ordered "
                    f"read skip the file, a key range too narrow hides its keys)",
                    [], None, {"node": node, "table": table, "sstable": name,
                               "fields": {f: {"recorded": rec, "data": cnt} for f, rec, cnt in diffs}}))
    return {"sstables_judged": judged, "sstable_scan_errors": failed}
