"""In headless Chromium, a finding shows its key's replicas, which acknowledged the write, and what
each replica held when read directly after healing and after repair (issue 18)."""

from __future__ import annotations

from pathlib import Path

from harness.report.render import write_report
from harness.run import check_run
from tests.e2e.headless import chromium
from tests.unit.test_report_replica_reads import register_run


def test_a_stale_read_shows_who_acknowledged_and_who_held_the_write(tmp_path: Path) -> None:
    run = register_run(tmp_path)
    check_run(run)
    report = write_report(run)
    with chromium() as ctx:
        page = ctx.new_page()
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
