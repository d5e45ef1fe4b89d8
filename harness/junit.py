"""JUnit XML for CI systems: one test suite per campaign, one test case per checker."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def write_junit(path: Path, outcomes: list[Any]) -> None:
    """Write the verdicts of ``outcomes`` (harness.run.Outcome) as JUnit XML."""
    suites = ET.Element("testsuites")
    for o in outcomes:
        checkers = o.results.to_json().get("checkers", {})
        failures = sum(1 for r in checkers.values() if r.get("valid") is False)
        errors = sum(1 for r in checkers.values() if r.get("valid") not in (True, False))
        suite = ET.SubElement(suites, "testsuite", name=o.run_dir.parent.name, tests=str(len(checkers)),
                              failures=str(failures), errors=str(errors), time=f"{o.duration_s:.1f}")
        ET.SubElement(ET.SubElement(suite, "properties"), "property", name="run_dir", value=str(o.run_dir))
        for name, r in checkers.items():
            case = ET.SubElement(suite, "testcase", classname=o.run_dir.parent.name, name=name)
            explanations = "\n".join(a.get("explanation", "") for a in r.get("anomalies", [])[:20])
            if r.get("valid") is False:
                ET.SubElement(case, "failure", message=f"{name}: invalid", type="anomaly").text = explanations
            elif r.get("valid") is not True:
                ET.SubElement(case, "error", message=f"{name}: unknown", type="unknown").text = str(r.get("details", ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
