"""Builds report.html from a run directory's stored files (never from a live cluster).

The report is one self-contained file: the CSS and JavaScript of this package inlined, and the
run's data embedded as JSON in a ``<script type="application/json">`` block. Operations are
stored column by column (one array per field) so that a history of 100,000 operations stays a few
megabytes and parses in tens of milliseconds; the page draws them on canvases.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from harness import store
from harness.campaign_coverage import load_summary, section_html
from harness.history import NEMESIS, HistoryError, Op, pair_ops, read_history
from harness.report import replica_reads

# Above this many distinct client processes, lanes are per worker (process mod concurrency):
# every `info` gives a worker a fresh process id, so a long faulty run has thousands of processes
# and one lane each would be a pixel high.
MAX_PROCESS_LANES = 64
# How much of each node's logs the report keeps (the tail: the end of a run is where the faults
# and the final reads are). Five nodes at this cap stay well inside the 20 MB report budget.
NODE_LOG_TAIL_BYTES = 2 * 1024 * 1024
# Bytes read from a *.log file to decide whether it is text; commit log segments are also named
# *.log but are binary.
TEXT_SNIFF_BYTES = 4096
# Node log lines start with "YYYY-mm-ddTHH:MM:SS.mmm" (node/server.py's formatter, local time);
# harness.log uses a space and a comma ("YYYY-mm-dd HH:MM:SS,mmm").
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)[.,](\d{3})")
# Characters that must not appear raw inside a <script> element: "<" could open "</script>" or
# "<!--"; the line separators are escaped so the block is also valid JavaScript source.
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_SCRIPT_UNSAFE = re.compile("[<>&\u2028\u2029]")
TYPE_CODES = {"ok": 0, "fail": 1, "info": 2}


class ReportError(Exception):
    """The run directory lacks what a report needs; the message names the file."""


def write_report(run_dir: Path) -> Path:
    """Render run_dir/report.html from test.json, history.jsonl, results.json and node logs."""
    run_dir = Path(run_dir)
    data = collect(run_dir)
    html = render_html(data)
    out = run_dir / store.REPORT_FILE
    tmp = out.with_name(out.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a planted symlink there would make write_text write through it
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out


def report_command(run_dir: str | Path) -> int:
    """`harness report RUN_DIR`: rewrite the report; 0 on success, 254 for a bad run directory."""
    import sys

    try:
        out = write_report(Path(run_dir))
    except (ReportError, HistoryError, OSError, ValueError) as exc:
        print(f"harness report: {exc}", file=sys.stderr)
        return 254
    print(f"report: {out}")
    return 0


def script_json(data: Any) -> str:
    """JSON that is safe inside a <script> element: no raw '<', '>' or '&' anywhere."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)
    return _SCRIPT_UNSAFE.sub(lambda m: _SCRIPT_ESCAPES[m.group()], text)


def render_html(data: dict[str, Any]) -> str:
    """The whole page: template with inlined CSS, JS and data."""
    pkg = resources.files("harness.report")
    template = pkg.joinpath("report.html").read_text(encoding="utf-8")
    css = pkg.joinpath("report.css").read_text(encoding="utf-8")
    js = pkg.joinpath("report.js").read_text(encoding="utf-8")
    if "</script" in js.lower() or "</style" in css.lower():
        raise ReportError("report.js/report.css must not contain a closing script/style tag")
    title = f"{data['meta'].get('name') or 'run'} — ringlab report"
    coverage = section_html(data.get("coverage"))
    parts = {
        "/*CSS*/": css,
        "/*JS*/": js,
        "/*DATA*/": script_json({k: v for k, v in data.items() if k != "coverage"}),
        "<!--TITLE-->": _html_text(title),
        "<!--COVERAGE-NAV-->": ' <a href="#coverage">Coverage</a>' if coverage else "",
        "<!--COVERAGE-->": coverage,
    }
    out = template
    for marker, text in parts.items():
        before, sep, after = out.partition(marker)
        if not sep:
            raise ReportError(f"report.html template lacks the {marker} marker")
        out = before + text + after
    return out


def _html_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


# ------------------------------------------------------------------------------------------------
# Collecting the data


def collect(run_dir: Path) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data."""
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: not a run directory")
    for name in (store.TEST_FILE, store.RESULTS_FILE, store.HISTORY_FILE, "history.edn"):
        _refuse_escape(run_dir / name, run_dir)
    test = _read_json_or(run_dir / store.TEST_FILE, {})
    results = _read_json_or(run_dir / store.RESULTS_FILE, None)
    history_path = run_dir / store.HISTORY_FILE
    if not history_path.exists():
        edn = run_dir / "history.edn"
        history_path = edn if edn.exists() else history_path
    if not history_path.exists():
        raise ReportError(f"{run_dir}: no history.jsonl (nothing to report)")
    table = OpTable(_concurrency(test))
    nemesis_ops: list[Op] = []
    for inv, comp in pair_ops(_tee_nemesis(read_history(history_path), nemesis_ops)):
        if inv.process == NEMESIS:
            continue
        table.add(inv, comp)
    ops = table.to_json()
    checkers = normalize_results(results, table)
    windows, clock = nemesis_windows(nemesis_ops, table.end_us)
    t0_epoch = _history_epoch(test)
    meta = {
        "name": test.get("name") or run_dir.parent.name,
        "run": run_dir.name,
        "seed": test.get("seed"),
        "options": test.get("options") or {},
        "params": test.get("params") or {},
        "versions": test.get("versions") or {},
        "concurrency": test.get("concurrency"),
        "nodes": sorted((test.get("nodes") or {}).keys()) if isinstance(test.get("nodes"), dict) else [],
        "start_time": test.get("start_time"),
        "history_epoch": t0_epoch,
        "history_epoch_exact": "history_start_time" in test,
        "duration_s": _duration(test, table),
        "generated": time.time(),
        "history_file": history_path.name,
    }
    return {
        "meta": meta,
        "valid": _overall(results, checkers),
        "checkers": checkers,
        "counts": table.counts,
        "ops": ops,
        "lanes": table.lane_labels(),
        "nemesis": windows,
        "clock": clock,
        "logs": collect_logs(run_dir, t0_epoch),
        # What each replica of a finding's key held when read directly (harness/report/replica_reads.py).
        "replica_reads": replica_reads.attach(run_dir, checkers),
        # Rendered as static HTML by harness/campaign_coverage.py, not embedded in the page's data.
        "coverage": load_summary(run_dir, results),
    }


def _tee_nemesis(ops: Iterable[Op], sink: list[Op]) -> Iterable[Op]:
    for op in ops:
        if op.process == NEMESIS:
            sink.append(op)  # nemesis ops become fault windows, not timeline bars
            continue
        yield op


def contained(path: Path, run_dir: Path) -> bool:
    """True if ``path``, every symlink followed, stays inside ``run_dir`` (itself resolved)."""
    try:
        return path.resolve().is_relative_to(run_dir.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _refuse_escape(path: Path, run_dir: Path) -> None:
    """A run file that is a symlink out of the run directory is never read into a report."""
    if (path.is_symlink() or path.exists()) and not contained(path, run_dir):
        raise ReportError(f"{path} is a symlink out of the run directory; not read")


def _read_json_or(path: Path, default: Any) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ReportError(f"{path}: not valid JSON: {exc}") from None


def _concurrency(test: dict[str, Any]) -> int | None:
    c = test.get("concurrency")
    return c if isinstance(c, int) and c > 0 else None


def _history_epoch(test: dict[str, Any]) -> float | None:
    """Wall-clock seconds at history time 0, to line node logs up with operations."""
    for k in ("history_start_time", "start_time"):
        v = test.get(k)
        if isinstance(v, (int, float)):
            return float(v)
    return None


def _duration(test: dict[str, Any], table: OpTable) -> float | None:
    sim = test.get("sim")
    if isinstance(sim, dict) and isinstance(sim.get("virtual_s"), (int, float)):
        # A simulated run's history and timeline are in virtual time; its wall seconds (a few,
        # for a campaign of tens) made the summary disagree with the timeline below it.
        return round(float(sim["virtual_s"]), 3)
    end = test.get("end_time")
    start = test.get("start_time")
    if isinstance(end, (int, float)) and isinstance(start, (int, float)):
        return round(end - start, 3)
    return round(table.end_us / 1e6, 3) if table.n else None


def _overall(results: Any, checkers: list[dict[str, Any]]) -> Any:
    if isinstance(results, dict) and "valid" in results and results["valid"] in (True, False, "unknown"):
        return results["valid"]
    vals = [c["valid"] for c in checkers]
    if not vals:
        return "unknown"
    if any(v is False for v in vals):
        return False
    if any(v is not True for v in vals):
        return "unknown"
    return True


class _Interner:
    """Maps repeated strings (f, node, cl, error) to small integers."""

    def __init__(self) -> None:
        self.names: list[Any] = []
        self._ids: dict[Any, int] = {}

    def __call__(self, v: Any) -> int:
        if v is None:
            return -1
        key = json.dumps(v, sort_keys=True, default=str) if not isinstance(v, str) else v
        i = self._ids.get(key)
        if i is None:
            i = self._ids[key] = len(self.names)
            self.names.append(v)
        return i


class OpTable:
    """Client operations (invocation + completion pairs) as columns, in invocation order."""

    def __init__(self, concurrency: int | None) -> None:
        self.concurrency = concurrency
        self.n = 0
        self.cols: dict[str, list[Any]] = {k: [] for k in (
            "inv", "cmp", "proc", "type", "f", "key", "val", "node", "cl", "ts", "err", "ii", "ci")}
        self.ival: dict[str, Any] = {}
        self.extra: dict[str, dict[str, Any]] = {}
        self.f = _Interner()
        self.nodes = _Interner()
        self.cls = _Interner()
        self.errs = _Interner()
        self.row_of_index: dict[int, int] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.end_us = 0
        self.processes: set[Any] = set()

    def add(self, inv: Op, comp: Op | None) -> None:
        """Append one operation."""
        c = self.cols
        row = self.n
        self.n += 1
        t_inv = inv.time // 1000
        t_cmp = comp.time // 1000 if comp is not None else -1
        typ = comp.type if comp is not None else "info"
        self.end_us = max(self.end_us, t_inv, t_cmp)
        c["inv"].append(t_inv)
        c["cmp"].append(t_cmp)
        c["proc"].append(inv.process)
        self.processes.add(inv.process)
        c["type"].append(TYPE_CODES[typ])
        c["f"].append(self.f(inv.f))
        c["key"].append(inv.key)
        val = comp.value if comp is not None else inv.value
        c["val"].append(val)
        if comp is not None and inv.value != comp.value:
            self.ival[str(row)] = inv.value
        c["node"].append(self.nodes((comp or inv).node or inv.node))
        c["cl"].append(self.cls((comp or inv).cl or inv.cl))
        c["ts"].append(comp.timestamp if comp is not None and comp.timestamp is not None else inv.timestamp)
        c["err"].append(self.errs(comp.error if comp is not None else "never completed"))
        c["ii"].append(inv.index)
        c["ci"].append(comp.index if comp is not None else -1)
        extra = dict(inv.extra)
        if comp is not None:
            extra.update(comp.extra)
        if extra:
            self.extra[str(row)] = extra
        self.row_of_index[inv.index] = row
        if comp is not None:
            self.row_of_index[comp.index] = row
        per_f = self.counts.setdefault(inv.f, {"ok": 0, "fail": 0, "info": 0})
        per_f[typ] += 1

    def lanes(self) -> tuple[list[int], list[str]]:
        """Lane of each row, and each lane's label."""
        procs = self.cols["proc"]
        if len(self.processes) <= MAX_PROCESS_LANES:
            order = sorted(self.processes, key=lambda p: (not isinstance(p, int), p if isinstance(p, int) else 0))
            lane_of = {p: i for i, p in enumerate(order)}
            return [lane_of[p] for p in procs], [f"process {p}" for p in order]
        c = self.concurrency or MAX_PROCESS_LANES
        workers = sorted({p % c for p in procs if isinstance(p, int)})
        lane_of = {w: i for i, w in enumerate(workers)}
        return ([lane_of[p % c] if isinstance(p, int) else 0 for p in procs],
                [f"worker {w} (processes ≡ {w} mod {c})" for w in workers])

    def lane_labels(self) -> list[str]:
        """Each lane's label."""
        return self.lanes()[1]

    def to_json(self) -> dict[str, Any]:
        """The columns, the string tables and the sparse fields."""
        lane, _ = self.lanes()
        return {
            "n": self.n,
            **self.cols,
            "lane": lane,
            "fs": self.f.names,
            "nodes": self.nodes.names,
            "cls": self.cls.names,
            "errs": self.errs.names,
            "ival": self.ival,
            "extra": self.extra,
            "end": self.end_us,
        }


# ------------------------------------------------------------------------------------------------
# Checker results


def normalize_results(results: Any, table: OpTable) -> list[dict[str, Any]]:
    """Every checker result found in results.json, with each anomaly's ops mapped to table rows."""
    found: list[dict[str, Any]] = []

    def walk(node: Any, name_hint: str | None) -> None:
        if isinstance(node, dict):
            if "valid" in node and ("anomalies" in node or "counts" in node):
                found.append({"name": node.get("name") or name_hint or "checker", **node})
                return
            for k, v in node.items():
                if k in ("valid",):
                    continue
                walk(v, k if isinstance(k, str) else None)
        elif isinstance(node, list):
            for v in node:
                walk(v, name_hint)

    if isinstance(results, dict):
        for k, v in results.items():
            if k != "valid":
                walk(v, k)
    else:
        walk(results, None)
    def finding(a: dict[str, Any]) -> dict[str, Any]:
        rows = sorted({table.row_of_index[o["index"]] for o in a.get("ops") or []
                       if isinstance(o, dict) and isinstance(o.get("index"), int) and o["index"] in table.row_of_index})
        return {
            "kind": a.get("kind", "anomaly"),
            "key": a.get("key"),
            "explanation": a.get("explanation", ""),
            "rows": rows,
            "ops": (a.get("ops") or [])[:50],
            "details": a.get("details") or {},
        }

    out = []
    for r in found:
        anomalies = [finding(a) for a in r.get("anomalies") or [] if isinstance(a, dict)]
        # Findings the levels or the design allow (quorum's expected stale reads and
        # resurrections, isolation's equal-timestamp mixes): shown with their ops, not as violations.
        details = r.get("details") if isinstance(r.get("details"), dict) else {}
        expected = [finding(a) for a in details.get("expected") or [] if isinstance(a, dict)]
        out.append({
            "expected": expected,
            "name": r["name"],
            "valid": r.get("valid"),
            "counts": r.get("counts") or {},
            "details": r.get("details") or {},
            "anomalies": anomalies,
            "anomaly_counts": _anomaly_counts(r),
        })
    return out


def _anomaly_counts(r: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in r.get("anomalies") or []:
        if isinstance(a, dict):
            counts[a.get("kind", "anomaly")] = counts.get(a.get("kind", "anomaly"), 0) + 1
    return counts


# ------------------------------------------------------------------------------------------------
# Nemesis windows and clock offsets


def nemesis_windows(ops: list[Op], end_us: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Fault windows (start-X … stop-X) with kind and targets, and clock offset samples."""
    windows: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}
    clock: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for op in ops:
        t = op.time // 1000
        if isinstance(op.value, dict) and isinstance(op.value.get("offsets"), dict):
            clock.append({"t": t, "offsets": op.value["offsets"], "action": op.extra.get("action")})
        if op.type != "invoke":
            events.append({"t": t, "f": op.f, "action": op.extra.get("action"), "value": op.value,
                           "index": op.index})
        if op.f == "heal" and op.type != "invoke":
            # The runner's final heal ends every fault still open (it records no stop-<name>).
            for w in open_.values():
                w["end"] = t
                w["stop_value"] = op.value
                w["actions"].append("heal")
                windows.append(w)
            open_.clear()
            continue
        m = re.match(r"(start|stop)-(.+)", op.f)
        if not m:
            continue
        phase, kind = m.groups()
        if phase == "start":
            w = open_.get(kind)
            if w is None:
                w = open_[kind] = {"kind": kind, "start": t, "end": None, "targets": "", "actions": [],
                                   "start_value": None, "stop_value": None}
            if op.type != "invoke":
                w["start_value"] = op.value
                w["targets"] = describe_targets(kind, op.value)
                if op.extra.get("action"):
                    w["actions"].append(op.extra["action"])
                if op.type == "fail" or (isinstance(op.value, dict) and "error" in op.value):
                    # An injection that failed: a red mark, never time under fault.
                    w["failed"] = True
                if op.type == "fail":
                    w["end"] = t  # nothing was injected: the window closes where it failed
                    windows.append(open_.pop(kind))
        else:
            w = open_.get(kind)
            if w is None:
                continue
            if op.type == "invoke":
                continue
            w["end"] = t
            w["stop_value"] = op.value
            if op.extra.get("action"):
                w["actions"].append(op.extra["action"])
            if kind == "membership" or (isinstance(op.value, dict) and isinstance(op.value.get("summary"), str)):
                # Both steps of a membership window (and of a storage nemesis) do something: name both.
                w["targets"] = " → ".join(x for x in (w["targets"], describe_targets(kind, op.value)) if x)
            windows.append(open_.pop(kind))
    for w in open_.values():
        w["end"] = max(end_us, w["start"])
        w["open"] = True
        windows.append(w)
    windows.sort(key=lambda w: w["start"])
    return windows, clock


def describe_targets(kind: str, value: Any) -> str:
    """A short text naming what a fault hit: a partition's description, the nodes, the offsets."""
    if isinstance(value, dict):
        if value.get("error"):
            return f"failed: {value['error']}"
        if isinstance(value.get("summary"), str):  # storage nemeses say what they did (nemesis/storage.py)
            return value["summary"]
        if isinstance(value.get("description"), str):
            return value["description"]
        result = value.get("result")
        if isinstance(result, dict) and isinstance(value.get("node"), str):
            # A membership change: what it was, on which node, what it streamed and how long.
            what = f"{result.get('op', 'change')} {value['node']}"
            if isinstance(result.get("bytes"), int):
                what += f" ({result['bytes']:,} B streamed"
                what += f", {result['seconds']:g} s)" if isinstance(result.get("seconds"), (int, float)) else ")"
            return what
        if value.get("action") == "none":
            return "no change (cluster size at its bounds)"
        if isinstance(value.get("delta_ms"), dict):
            return ", ".join(f"{n} {d:+} ms" for n, d in value["delta_ms"].items())
        if isinstance(value.get("nodes"), list):
            spec = f"{value['spec']}: " if value.get("spec") else ""
            return spec + " ".join(map(str, value["nodes"]))
        return json.dumps(value, sort_keys=True, default=str)[:200]
    if isinstance(value, list):
        return " ".join(map(str, value))
    return "" if value is None else str(value)


# ------------------------------------------------------------------------------------------------
# Node logs


def collect_logs(run_dir: Path, t0_epoch: float | None) -> dict[str, Any]:
    """Each node's text *.log files (tail, deduplicated), each line with its time relative to the history."""
    nodes_dir = run_dir / "nodes"
    out: dict[str, Any] = {}
    if not nodes_dir.is_dir():
        return out
    if not contained(nodes_dir, run_dir):
        return out  # never follow nodes/ out of the run directory
    for node_dir in sorted(p for p in nodes_dir.iterdir() if p.is_dir() and contained(p, run_dir)):
        files = sorted((p for p in node_dir.rglob("*.log")
                        if p.is_file() and contained(p, run_dir) and _is_text(p)),
                       key=lambda p: (p.name != "node.log", str(p)))
        if not files:
            continue
        budget = NODE_LOG_TAIL_BYTES
        seen: set[str] = set()
        times: list[int | None] = []
        texts: list[str] = []
        names: list[str] = []
        srcs: list[int] = []
        truncated = False
        for fi, path in enumerate(files):
            if budget <= 0:
                truncated = True
                break
            lines, cut = _tail_lines(path, budget)
            truncated |= cut
            names.append(str(path.relative_to(node_dir)))
            last: int | None = None
            for line in lines:
                t = _line_time_ms(line, t0_epoch)
                last = t if t is not None else last  # a traceback line takes its log line's time
                if line in seen:
                    continue  # stdout.log repeats node.log's lines (the node logs to both)
                seen.add(line)
                budget -= len(line) + 1
                times.append(last)
                texts.append(line)
                srcs.append(len(names) - 1)
        order = sorted(range(len(texts)), key=lambda i: (times[i] is None, times[i] or 0, i))
        out[node_dir.name] = {
            "files": names,
            "t": [times[i] for i in order],
            "line": [texts[i] for i in order],
            "src": [srcs[i] for i in order],
            "truncated": truncated,
        }
    return out


def _is_text(path: Path) -> bool:
    if path.name.startswith("CommitLog-"):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(TEXT_SNIFF_BYTES)
    except OSError:
        return False
    return b"\0" not in head


def _tail_lines(path: Path, limit: int) -> tuple[list[str], bool]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        cut = size > limit
        if cut:
            f.seek(size - limit)
        raw = f.read(limit)
    text = raw.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if cut and lines:
        lines = lines[1:]  # the first line is probably cut in the middle
    return [ln for ln in lines if ln.strip()], cut


def _line_time_ms(line: str, t0_epoch: float | None) -> int | None:
    """Milliseconds since history time 0 (or since the epoch when that is unknown)."""
    m = _LOG_TIME.match(line)
    if m is None:
        return None
    try:
        st = time.strptime(f"{m.group(1)}T{m.group(2)}", "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    epoch = time.mktime(st) + int(m.group(3)) / 1000  # node logs are in the machine's local time
    if t0_epoch is None:
        return int(epoch * 1000)
    return int(math.floor((epoch - t0_epoch) * 1000))
