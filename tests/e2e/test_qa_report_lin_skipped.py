"""report.html does not claim every key linearizable when clock faults made the checker skip all."""

from __future__ import annotations

from pathlib import Path


from harness import store
from harness.report.render import write_report
from harness.report.sample import make_run
from tests.e2e.headless import chromium


SKIPPED = "5 keys with timestamp inversions from clock faults are judged by the lww checker in timestamp order, not here"


def _lin_text(run: Path) -> str:
    report = write_report(run)
    with chromium() as ctx:
        page = ctx.new_page()
        page.goto(report.as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=20_000)
        return page.locator("#lin-body").inner_text()


def test_all_keys_skipped_reads_as_none_checked(tmp_path: Path) -> None:
    """keys 0 with every key skipped for clock inversions: "No key was checked", and why."""
    run = make_run(tmp_path, "valid")
    results = store.read_json(run / store.RESULTS_FILE)
    lin = results["results"]["linearizable"]  # the sample uses Jepsen's key; runs write "checkers"
    lin["counts"].update({"ops": 0, "keys": 0, "keys_linearizable": 0, "skipped_keys_clock_inversion": 5})
    lin["details"]["skipped"] = SKIPPED
    store.write_json(run / store.RESULTS_FILE, results)
    text = _lin_text(run)
    assert "No key was checked for linearizability" in text, text
    assert "Every key" not in text
    assert SKIPPED in text


def test_keys_set_aside_after_a_periodic_crash_say_why(tmp_path: Path) -> None:
    """Every key set aside by the durability pass: "No key was checked" and the periodic note."""
    run = make_run(tmp_path, "valid")
    results = store.read_json(run / store.RESULTS_FILE)
    lin = results["results"]["linearizable"]
    note = "periodic commit log mode: a crash may lose writes; 10 keys with such writes are set aside"
    lin["counts"] = {"ops": 0, "keys": 0, "periodic-not-linearizable": 1, "keys_set_aside": 10}
    lin["details"]["periodic_note"] = note
    store.write_json(run / store.RESULTS_FILE, results)
    text = _lin_text(run)
    assert "No key was checked for linearizability" in text and note in text, text
