"""`harness sim --junit-xml`: a sweep as one JUnit suite, one case per seed, replay commands in failures."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.cli import main
from harness.junit import write_sweep_junit


def test_failing_unknown_and_missing_seeds_are_cases_with_what_a_developer_needs(tmp_path: Path) -> None:
    bad = tmp_path / "seed-2"
    bad.mkdir()
    (bad / "results.json").write_text(json.dumps({"checkers": {"quorum": {"anomalies": [
        {"explanation": "read began after the write of 20 completed, but returned 19"}]}}}))
    rows = [{"seed": 1, "valid": True, "wall_s": 1.5, "run_dir": str(tmp_path / "seed-1")},
            {"seed": 2, "valid": False, "wall_s": 2.0, "run_dir": str(bad), "failed_checkers": ["quorum"]},
            {"seed": 3, "valid": "error", "wall_s": 0.1, "run_dir": str(tmp_path / "seed-3"), "error": "OSError: boom"}]
    out = tmp_path / "j" / "sweep.xml"
    write_sweep_junit(out, "sim-register-partition/sweep-1", rows, lambda s: f"harness sim --seed {s}", 0.0,
                      expected=5)
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "1", "2")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["seed 1", "seed 2", "seed 3", "sweep"]
    assert cases["seed 1"].find("failure") is None and cases["seed 1"].get("time") == "1.500"
    failure = cases["seed 2"].find("failure")
    assert failure is not None and failure.get("message") == "seed 2: invalid (quorum)"
    assert "replay: harness sim --seed 2" in (failure.text or "") and "returned 19" in (failure.text or "")
    error = cases["seed 3"].find("error")
    assert error is not None and "OSError: boom" in (error.text or "")
    cut = cases["sweep"].find("error")
    assert cut is not None and cut.get("message") == "sweep: 2 of 5 seeds never ran"


def test_a_sim_run_writes_its_junit_file(tmp_path: Path, capsys: object) -> None:
    out = tmp_path / "junit.xml"
    code = main(["sim", "--seeds", "4,5", "--jobs", "1", "--time-limit", "3", "--nemesis", "kill",
                 "--store", str(tmp_path / "store"), "--junit-xml", str(out)])
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "2"
    names = [c.get("name") for c in suite.findall("testcase")]
    assert names == ["seed 4", "seed 5"]
    failed = int(suite.get("failures") or 0) + int(suite.get("errors") or 0)
    assert (code == 0) == (failed == 0)
