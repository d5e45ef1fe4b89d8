"""``python -m harness.expect``: did the campaigns of a store show the weakness they were run for?

The nightly workflow runs two kinds of cells. Cells that must be valid fail on any other
verdict (`harness run`'s exit code says so). Cells that demonstrate a weakness of a setting --
last-write-wins loses read-modify-write updates, clock skew inverts timestamps -- are green when
the expected anomaly is found (in at least one of the cell's runs) and red when it is absent: a store that stopped showing it has
changed, or the checker stopped seeing it. This module makes that verdict from the stored
results.json files and writes it as JUnit XML for the CI test report.
"""

from __future__ import annotations

import json
import socket
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import store
from harness.cli import Parser

EXIT_SHOWN, EXIT_NOT_SHOWN, EXIT_BAD_ARGS = 0, 1, 254


def found(results: dict[str, Any], checker: str, kind: str) -> bool:
    """Whether ``checker`` reported anomalies of ``kind`` (counted or among the examples)."""
    r = (results.get("checkers") or {}).get(checker) or {}
    if (r.get("counts") or {}).get(kind):
        return True
    return any(isinstance(a, dict) and a.get("kind") == kind for a in r.get("anomalies") or [])


def judge(store_dir: Path, checker: str, kind: str) -> list[tuple[Path, bool, str]]:
    """(run dir, shown, what was seen) for every run of the store, newest first."""
    out = []
    for run in store.runs(store_dir):
        try:
            results = json.loads((run / store.RESULTS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            out.append((run, False, "no results.json (the run did not finish)"))
            continue
        shown = found(results, checker, kind)
        verdict = {True: "valid", False: "invalid", "unknown": "unknown"}.get(results.get("valid"), "?")
        out.append((run, shown, f"{checker} {'found' if shown else 'did not find'} {kind}; verdict {verdict}"))
    return out


def write_junit(path: Path, name: str, checker: str, kind: str, verdicts: list[tuple[Path, bool, str]]) -> None:
    """One suite with one test case: passed when at least one run showed the weakness."""
    suites = ET.Element("testsuites")
    shown = any(s for _, s, _ in verdicts)
    suite = ET.SubElement(suites, "testsuite", name=f"weakness: {name}", tests="1",
                          failures="0" if shown else "1", errors="0", skipped="0", hostname=socket.gethostname())
    case = ET.SubElement(suite, "testcase", classname=f"weakness: {name}",
                         name=f"{checker} finds {kind} in at least one of {len(verdicts)} run(s)")
    lines = "\n".join(f"{'shown' if s else 'not shown'}: {run}: {seen}" for run, s, seen in verdicts)
    if not shown:
        ET.SubElement(case, "failure", message=f"no run showed {kind} (the {checker} checker)", type="missing").text = lines
    ET.SubElement(case, "system-out").text = lines
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when a run of the store shows the anomaly, 1 when none does (or none ran).

    At least one, not every: a weakness shows at some rate, and several runs make its absence
    from all of them the signal (as tests/e2e does with its detection seeds)."""
    p = Parser(prog="python -m harness.expect", description=__doc__.splitlines()[0])
    p.add_argument("store", type=Path, help="the store the campaigns ran in")
    p.add_argument("checker", help="the checker that must report it (counter, lww, quorum, ...)")
    p.add_argument("kind", help="the anomaly kind (lost-update, timestamp-inversion, ...)")
    p.add_argument("--name", help="the weakness, for the report (default CHECKER KIND)")
    p.add_argument("--junit-xml", type=Path, metavar="FILE", help="also write the verdicts as JUnit XML")
    args = p.parse_args(argv)
    if not args.store.is_dir():
        print(f"harness.expect: error: {args.store}: no such store directory", file=sys.stderr)
        return EXIT_BAD_ARGS
    verdicts = judge(args.store, args.checker, args.kind)
    name = args.name or f"{args.checker} {args.kind}"
    if args.junit_xml:
        write_junit(args.junit_xml, name, args.checker, args.kind, verdicts)
    for run, shown, seen in verdicts:
        print(f"{'shown' if shown else 'NOT SHOWN'}  {run}: {seen}")
    if not verdicts:
        print(f"harness.expect: no runs in {args.store}", file=sys.stderr)
        return EXIT_NOT_SHOWN
    return EXIT_SHOWN if any(shown for _, shown, _ in verdicts) else EXIT_NOT_SHOWN


if __name__ == "__main__":
    sys.exit(main())
