"""report.html in headless Chromium says what happened (issue 18): a failed fault injection is a
red mark counted apart from time under fault, a validation fault switch shows in the summary,
findings are grouped by kind with their times, absent values read nil, and each operation kind
has one colour in every report."""

from __future__ import annotations

import json
from pathlib import Path


from harness import store
from harness.history import NEMESIS, Op
from harness.report.render import write_report
from harness.report.sample import make_run
from tests.e2e.headless import chromium


def broken_run_with_a_failed_injection(root: Path) -> Path:
    run = make_run(root, "clock")
    test = store.read_json(run / store.TEST_FILE)
    test.setdefault("options", {})["validation_faults"] = ["ack_quorum_after_one"]
    test["options"]["toxiproxy"] = None
    store.write_json(run / store.TEST_FILE, test)
    lines = (run / store.HISTORY_FILE).read_text().splitlines()
    last = json.loads(lines[-1])
    failed = [Op(last["index"] + 1, 2_000_000_000, NEMESIS, "invoke", "start-latency"),
              Op(last["index"] + 2, 2_400_000_000, NEMESIS, "fail", "start-latency",
                 value={"error": "ProxyError: fault proxy add latency failed"})]
    with open(run / store.HISTORY_FILE, "a") as f:
        for op in failed:
            f.write(json.dumps(op.to_dict()) + "\n")
    results = store.read_json(run / store.RESULTS_FILE)
    # The client records which replicas acknowledged each write (history fields replicas, acked).
    for op in results["results"]["lww"]["anomalies"][0]["ops"]:
        if op["type"] == "ok":
            op.update(replicas=["n1", "n2", "n3"], acked=[op["node"]], hinted=["n2"])
    results["results"]["campaign"] = {"valid": "unknown", "counts": {"failed_injections": 1}, "anomalies": [],
                                      "details": {"reason": "no injection of latency took effect (latency: 1 failed)"}}
    store.write_json(run / store.RESULTS_FILE, results)
    return run


def test_the_report_says_what_happened(tmp_path: Path) -> None:
    report = write_report(broken_run_with_a_failed_injection(tmp_path))
    with chromium() as ctx:
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(report.as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=20_000)
        assert errors == []
        latency = page.locator("#fault-counts tr.fault-failed")
        assert latency.count() == 1
        assert [c.strip() for c in latency.locator("td").all_text_contents()] == ["latency", "0", "0.000 s", "1"]
        assert "failed injection" in (page.text_content("#op-legend") or "")
        # an unknown checker's reason is a row under it (the sample's quorum says "sample")
        why = page.locator("#checkers tr.why-unknown").all_text_contents()
        assert "unknown: no injection of latency took effect (latency: 1 failed)" in why, why
        row = page.locator("#meta tr.broken")
        assert row.count() == 1 and "ack_quorum_after_one (deliberately broken store)" in (row.text_content() or "")
        groups = page.locator("#anomaly-body details.kind-group")
        assert groups.count() >= 1
        assert (groups.first.locator("summary .kind").text_content() or "") == "lww-timestamp-inversion"
        assert (groups.first.locator(".anomaly .when").first.text_content() or "").startswith("at ")
        # the first finding's writes: the key's replicas, who acknowledged, who got a hint
        acks = groups.first.locator(".anomaly").first.locator(".acks table")
        assert acks.locator("th").all_text_contents() == ["write", "coordinator", "n1", "n2", "n3"]
        cells = [[c.strip() for c in r.locator("td").all_text_contents()] for r in acks.locator("tbody tr").all()]
        assert [c[2:] for c in cells] == [["acked", "hinted", "—"], ["—", "hinted", "acked"]], cells
        options = page.locator("#options tr", has_text="toxiproxy")
        assert (options.locator("td").nth(1).text_content() or "") == "nil"
        # one colour per operation kind, whatever order the kinds first appear in
        colours = page.evaluate("""() => Object.fromEntries(Array.from(
            document.querySelectorAll('#latency-legend > span')).map(s => [s.textContent, s.firstChild.style.background]))""")
        assert colours["read"] == "rgb(31, 119, 180)" and colours["write"] == "rgb(214, 39, 40)", colours
