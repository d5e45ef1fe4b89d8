"""JUnit XML for CI systems: one test suite per campaign, one test case per checker.

The file is rewritten (atomically) before each campaign starts and after each one ends, so a
CI job killed mid-run still leaves the campaigns that finished and, for the one that was
running, a suite whose error says it never finished.
"""

from __future__ import annotations

import datetime
import os
import socket
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Running:
    """A campaign that has started and not finished (yet, or ever: the job was killed)."""

    run_dir: Path
    started: float
    seed: int | None


def _stamp(t: float) -> str:
    """JUnit's timestamp: ISO 8601 local time without a zone, to the second."""
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S")


def suite_name(run_dir: Path) -> str:
    """Distinct per campaign (--test-count N gives N suites): the test name and the run's stamp."""
    return f"{run_dir.parent.name}/{run_dir.name}"


def _suite(parent: ET.Element, run_dir: Path, started: float | None, seed: Any, **attrs: str) -> ET.Element:
    suite = ET.SubElement(parent, "testsuite", name=suite_name(run_dir), hostname=socket.gethostname(), **attrs)
    if started is not None:
        suite.set("timestamp", _stamp(started))
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="run_dir", value=str(run_dir))
    if seed is not None:
        ET.SubElement(props, "property", name="seed", value=str(seed))
    return suite


def write_junit(path: Path, outcomes: list[Any], running: Running | None = None) -> None:
    """Write the verdicts of ``outcomes`` (harness.run.Outcome), and the campaign ``running``."""
    suites = ET.Element("testsuites")
    for o in outcomes:
        data = o.results.to_json()
        checkers = data.get("checkers", {})
        elapsed = data.get("elapsed_s", {})
        failures = sum(1 for r in checkers.values() if r.get("valid") is False)
        errors = sum(1 for r in checkers.values() if r.get("valid") not in (True, False))
        suite = _suite(suites, o.run_dir, getattr(o, "started", None), getattr(o, "seed", None),
                       tests=str(len(checkers)), failures=str(failures), errors=str(errors), skipped="0",
                       time=f"{o.duration_s:.1f}")
        for name, r in checkers.items():
            case = ET.SubElement(suite, "testcase", classname=suite_name(o.run_dir), name=name,
                                 time=f"{float(elapsed.get(name, 0.0)):.3f}")
            explanations = "\n".join(a.get("explanation", "") for a in r.get("anomalies", [])[:20])
            if r.get("valid") is False:
                ET.SubElement(case, "failure", message=f"{name}: invalid", type="anomaly").text = explanations
            elif r.get("valid") is not True:
                reason = (r.get("details") or {}).get("reason")
                ET.SubElement(case, "error", message=f"{name}: unknown", type="unknown").text = \
                    str(reason) if reason else str(r.get("details", ""))
    if running is not None:
        suite = _suite(suites, running.run_dir, running.started, running.seed, tests="1", failures="0",
                       errors="1", skipped="0", time="0")
        case = ET.SubElement(suite, "testcase", classname=suite_name(running.run_dir), name="campaign", time="0")
        ET.SubElement(case, "error", message="campaign: did not finish", type="incomplete").text = (
            f"the campaign in {running.run_dir} started and never finished (the harness failed or was killed; "
            "see its harness.log); its history.jsonl holds what was recorded")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    ET.ElementTree(suites).write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)


def write_sweep_junit(path: Path, name: str, rows: list[dict[str, Any]], replay: Any, started: float,
                      expected: int | None = None) -> None:
    """A sim sweep as one suite, one test case per seed: an invalid seed is a failure whose text
    names the checkers that failed, the first anomalies and the one command that replays it; an
    unknown or crashed seed is an error. ``expected`` seeds not yet run (the job was killed) make
    one more error case, so a cut sweep never reads as a short green one."""
    suites = ET.Element("testsuites")
    failures = sum(1 for r in rows if r.get("valid") is False)
    errors = sum(1 for r in rows if r.get("valid") not in (True, False))
    missing = expected - len(rows) if expected is not None and expected > len(rows) else 0
    suite = ET.SubElement(suites, "testsuite", name=name, hostname=socket.gethostname(), timestamp=_stamp(started),
                          tests=str(len(rows) + (1 if missing else 0)), failures=str(failures),
                          errors=str(errors + (1 if missing else 0)), skipped="0",
                          time=f"{sum(float(r.get('wall_s', 0.0)) for r in rows):.1f}")
    for r in rows:
        case = ET.SubElement(suite, "testcase", classname=name, name=f"seed {r['seed']}",
                             time=f"{float(r.get('wall_s', 0.0)):.3f}")
        valid = r.get("valid")
        if valid is True:
            continue
        text = [f"replay: {replay(r['seed'])}", f"run directory: {r.get('run_dir')}"]
        if r.get("error"):
            text.append(str(r["error"]))
        text += _explanations(Path(str(r.get("run_dir"))))
        kind = "failure" if valid is False else "error"
        what = f"invalid ({', '.join(r.get('failed_checkers') or [])})" if valid is False else str(valid)
        ET.SubElement(case, kind, message=f"seed {r['seed']}: {what}",
                      type="anomaly" if valid is False else "unknown").text = "\n".join(text)
    if missing:
        case = ET.SubElement(suite, "testcase", classname=name, name="sweep", time="0")
        ET.SubElement(case, "error", message=f"sweep: {missing} of {expected} seeds never ran",
                      type="incomplete").text = "the sweep was cut short (the job failed or was killed)"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    ET.ElementTree(suites).write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)


def _explanations(run_dir: Path, limit: int = 5) -> list[str]:
    """The first anomalies of a kept run directory's results.json (none if it has none)."""
    import json

    try:
        data = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    out = []
    for cname, r in (data.get("checkers") or {}).items():
        for a in (r.get("anomalies") or [])[:limit]:
            out.append(f"{cname}: {str(a.get('explanation', ''))[:2000]}")
    return out[:limit]
