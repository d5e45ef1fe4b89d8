"""In headless Chromium, a finding shows its key's replicas, which acknowledged the write, and what
each replica held when read directly after healing and after repair (issue 18)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import store
from harness.history import Op, write_jsonl
from harness.report import replica_reads
from harness.report.render import write_report
from harness.run import check_run
from tests.e2e.headless import chromium
from tests.unit.test_report_replica_reads import REPLICAS, register_run, snapshot_lines


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module's pages (each launch costs seconds)."""
    with chromium() as ctx:
        yield ctx


def test_a_stale_read_shows_who_acknowledged_and_who_held_the_write(tmp_path: Path, browser: Any) -> None:
    run = register_run(tmp_path)
    check_run(run)
    report = write_report(run)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(report.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    assert errors == []
    finding = page.locator("#anomaly-body .kind-group", has_text="stale-read").locator(".anomaly").first
    table = finding.locator(".acks table")
    assert table.locator("th").all_text_contents() == ["write", "coordinator", "n1", "n2", "n3"]
    rows = [[c.strip() for c in tr.locator("td").all_text_contents()] for tr in table.locator("tbody tr").all()]
    assert rows[-3] == ["write 2 (op 2)", "n1", "acked", "—", "—"], rows
    assert rows[-2] == ["held after healing", "2 @ 200 (write 2)", "1 @ 100 (older: lacks write 2)", "nothing"], rows
    assert rows[-1] == ["held after hint delivery"] + ["2 @ 200 (write 2)"] * 3, rows
    lacking = table.locator("tr.held td.noack").all_text_contents()
    assert lacking == ["1 @ 100 (older: lacks write 2)", "nothing"], lacking
    # The linearizability box of the same key has the same table, and names the key once.
    assert page.locator("#lin-body .lin .acks tr.held").count() == 2
    head = page.locator("#lin-body .lin p").first.text_content() or ""
    assert head.startswith("key 7: ") and "key 7: key 7" not in head, head
    assert "key 7 ·" not in (finding.text_content() or "")  # the explanation names it already


def test_a_lost_set_element_shows_which_replicas_lack_it(tmp_path: Path, browser: Any) -> None:
    run = store.new_run_dir(tmp_path, "set-kill")
    add = [Op(0, 1_000_000, 0, "invoke", "add", "s", 9, node="n1", cl="ANY"),
           Op(1, 2_000_000, 0, "ok", "add", "s", 9, node="n1", cl="ANY",
              extra={"replicas": REPLICAS, "acked": [], "hinted": REPLICAS})]
    write_jsonl(add, run / store.HISTORY_FILE)
    store.write_json(run / store.TEST_FILE, {"name": "set-kill", "params": {"model": "set"}})
    store.write_json(run / store.RESULTS_FILE, {"valid": False, "checkers": {"set": {
        "valid": False, "counts": {"lost": 1},
        "anomalies": [{"kind": "lost", "key": "s", "explanation": "key 's': element 9 was acknowledged (op 0) but no read showed it",
                       "ops": [o.to_dict() for o in add]}]}}})
    element = ["e009", None, 5, False, None]
    lines = snapshot_lines({"after": {"n1": {"s": [element]}, "n2": {"s": []}, "n3": {"s": []}}},
                           {"model": "set", "element_prefix": "e", "element_digits": 3})
    (run / replica_reads.SNAPSHOT_FILE).write_text("\n".join(lines) + "\n")
    report = write_report(run)
    page = browser.new_page()
    page.goto(report.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    table = page.locator("#anomaly-body .anomaly .acks table").first
    rows = [[c.strip() for c in tr.locator("td").all_text_contents()] for tr in table.locator("tbody tr").all()]
    assert rows == [["add 9 (op 0)", "n1", "hinted", "hinted", "hinted"],
                    ["held after hint delivery", "1 element; holds 9", "0 elements; lacks 9", "0 elements; lacks 9"]], rows
    assert "which of this finding's elements it holds or lacks" in (page.locator("#anomaly-body .acks p").first.text_content() or "")


def test_findings_of_a_kind_are_in_time_order(tmp_path: Path, browser: Any) -> None:
    run = store.new_run_dir(tmp_path, "t")
    ops = [Op(i, (10 - i) * 1_000_000_000, i, t, "read", i, None) for i in range(4) for t in ("invoke", "ok")]
    for j, op in enumerate(ops):
        op.index = j
    write_jsonl(ops, run / store.HISTORY_FILE)
    # Listed per key by the checker: key 0's read is the latest (at 10 s), key 3's the earliest (7 s).
    store.write_json(run / store.RESULTS_FILE, {"valid": False, "checkers": {"quorum": {"valid": False, "counts": {}, "anomalies": [
        {"kind": "stale-read", "key": k, "explanation": f"key {k}: stale", "ops": [ops[2 * k].to_dict(), ops[2 * k + 1].to_dict()]}
        for k in range(4)]}}})
    report = write_report(run)
    page = browser.new_page()
    page.goto(report.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    whens = page.locator("#anomaly-body .anomaly .when").all_text_contents()
    assert [w.split(" ")[1] for w in whens] == ["7.000", "8.000", "9.000", "10.00"], whens
