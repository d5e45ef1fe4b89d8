"""`python -m harness.expect`: the nightly weakness cells are green when the expected anomaly
shows in at least one run, red when it shows in none (issue 18)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import expect, store


def run_with(root: Path, counter_anomalies: list[str] | None) -> Path:
    run = store.new_run_dir(root, "lww-rmw-none")
    store.write_json(run / store.TEST_FILE, {"name": "lww-rmw-none"})
    if counter_anomalies is not None:
        store.write_json(run / store.RESULTS_FILE, {
            "valid": not counter_anomalies,
            "checkers": {"counter": {"valid": not counter_anomalies, "counts": {},
                                     "anomalies": [{"kind": k, "explanation": "…"} for k in counter_anomalies]}}})
    return run


def test_one_run_showing_the_anomaly_is_enough(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_with(tmp_path, [])
    run_with(tmp_path, ["lost-update"])
    junit = tmp_path / "expect.xml"
    assert expect.main([str(tmp_path), "counter", "lost-update", "--name", "lww loses updates",
                        "--junit-xml", str(junit)]) == 0
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("name") == "weakness: lww loses updates" and suite.get("failures") == "0"
    assert suite.find("testcase/failure") is None
    assert "NOT SHOWN" in capsys.readouterr().out  # the run that missed it is still listed


def test_absent_everywhere_is_red(tmp_path: Path) -> None:
    run_with(tmp_path, [])
    run_with(tmp_path, None)  # never finished: no results.json
    junit = tmp_path / "expect.xml"
    assert expect.main([str(tmp_path), "counter", "lost-update", "--junit-xml", str(junit)]) == 1
    failure = ET.parse(junit).getroot().find("testsuite/testcase/failure")
    assert failure is not None and "no results.json" in failure.text and "did not find lost-update" in failure.text


def test_counts_alone_are_enough_and_an_empty_store_is_red(tmp_path: Path) -> None:
    assert expect.found({"checkers": {"lww": {"counts": {"timestamp-inversion": 3}, "anomalies": []}}},
                        "lww", "timestamp-inversion")
    assert expect.main([str(tmp_path), "lww", "timestamp-inversion"]) == 1
    assert expect.main([str(tmp_path / "nope"), "lww", "timestamp-inversion"]) == 254


def test_missing_arguments_are_a_usage_error_not_argparse_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        expect.main([])
    assert e.value.code == 254
    err = capsys.readouterr().err
    assert "required: store, checker, kind" in err and len(err.strip().splitlines()) == 1
