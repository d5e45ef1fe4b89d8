"""report.html in real headless Chromium (Debian's package) driven by Playwright.

Run directories are synthetic (harness.report.sample): a valid run, an invalid linearizability
run, a clock-skew run with last-write-wins timestamp inversions, and a 100,000-operation run.
Each test checks there are no console errors, that the parts of the report are there, and that
hovering and zooming work; screenshots go to artifacts/ for a human to look at.
"""

from __future__ import annotations

import re

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.report.render import write_report
from harness.report.sample import HOSTILE_VALUE, make_run
from tests.e2e.headless import chromium

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium with a fresh profile for the module."""
    with chromium() as ctx:
        yield ctx


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("report-store")


class Opened:
    """A loaded report page and every console error or page exception it produced."""

    def __init__(self, browser: Any, report: Path) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page()
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(report.as_uri())
        self.page.wait_for_selector("body[data-ready='1']", timeout=20_000)

    def view(self) -> tuple[float, float]:
        d = self.page.evaluate("[window.__report.view.t0, window.__report.view.t1]")
        return d[0], d[1]

    def op_point(self, row: int) -> tuple[float, float]:
        """Page coordinates of the middle of an operation's bar in the timeline."""
        return self.page.evaluate(
            """row => {
                const D = JSON.parse(document.getElementById('report-data').textContent).ops;
                const g = window.__report.geom();
                const c = document.getElementById('timeline').getBoundingClientRect();
                const end = D.cmp[row] < 0 ? D.end : D.cmp[row];
                const x = g.toX((D.inv[row] + end) / 2);
                return [c.left + x, c.top + g.top + D.lane[row] * g.lh + g.lh / 2];
            }""", row)

    def hover_op(self, row: int) -> str:
        """Move the mouse onto an operation and return the tooltip's text."""
        self.page.locator("#timeline").scroll_into_view_if_needed()
        x, y = self.op_point(row)
        self.page.mouse.move(x, y)
        self.page.wait_for_selector("#tooltip:not([hidden])", timeout=5000)
        return self.page.text_content("#tooltip") or ""

    def zoom_in(self) -> None:
        """Wheel up over the middle of the timeline."""
        box = self.page.locator("#timeline").bounding_box()
        assert box is not None
        self.page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
        self.page.mouse.wheel(0, -600)
        self.page.wait_for_timeout(100)

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"report-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.page.close()


def longest_op(opened: Opened) -> int:
    """The row of the longest completed operation (easy to hit with the mouse)."""
    return opened.page.evaluate(
        """() => { const D = JSON.parse(document.getElementById('report-data').textContent).ops;
                  let best = 0, bl = -1;
                  for (let i = 0; i < D.n; i++) if (D.cmp[i] >= 0 && D.cmp[i] - D.inv[i] > bl) { bl = D.cmp[i] - D.inv[i]; best = i; }
                  return best; }""")


def common_checks(o: Opened, name: str) -> None:
    """What every report must do: no errors, no fetches, the sections, hover and zoom."""
    page = o.page
    page.click("#zoom-reset")
    page.wait_for_timeout(50)
    for sel in ("#summary", "#checkers tbody tr", "#op-counts tbody tr", "#timeline", "#latency", "#rate",
                "#linearizability", "#anomalies", "#logs", "#log-tabs button"):
        assert page.locator(sel).count() > 0, f"{sel} missing"
    assert int(page.eval_on_selector("#timeline", "c => c.dataset.drawn")) > 0
    assert page.text_content("#overall") in ("valid", "invalid", "unknown")
    row = longest_op(o)
    tip = o.hover_op(row)
    assert "process" in tip and "latency" in tip and "history index" in tip, tip
    t0, t1 = o.view()
    o.zoom_in()
    z0, z1 = o.view()
    assert z1 - z0 < (t1 - t0) * 0.8, ((t0, t1), (z0, z1))
    # drag pans: the span stays, the start moves
    box = page.locator("#timeline").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 500, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + 300, box["y"] + 40, steps=5)
    page.mouse.up()
    p0, p1 = o.view()
    assert p0 > z0 and abs((p1 - p0) - (z1 - z0)) < 1e-6 * (z1 - z0) + 1
    page.click("#zoom-reset")
    page.wait_for_timeout(50)
    assert o.view()[1] - o.view()[0] >= t1 - t0 - 1
    # the whole run shown: the label's range never runs past the run's end
    shown = re.fullmatch(r"showing (\S+) s – (\S+) s of (\S+) s", page.text_content("#range") or "")
    assert shown and float(shown[1]) == 0 and float(shown[2]) == float(shown[3]), page.text_content("#range")
    # clicking an operation selects it and shows the log lines near it
    o.hover_op(row)
    x, y = o.op_point(row)
    page.mouse.click(x, y)
    assert "Selected operation" in (page.text_content("#selected") or "")
    assert "line(s) within" in (page.text_content("#log-near-note") or "")
    shot = o.screenshot(name)
    assert shot.stat().st_size > 10_000
    assert all(u.startswith(("file:", "data:", "about:")) for u in o.requests), o.requests
    assert o.errors == []


def test_valid_run(browser: Any, store: Path) -> None:
    run = make_run(store, "valid")
    o = Opened(browser, write_report(run))
    try:
        common_checks(o, "valid")
        page = o.page
        assert page.text_content("#overall") == "valid"
        assert page.locator("#checkers .verdict.valid").count() == 2
        assert "Every key is linearizable" in (page.text_content("#lin-body") or "")
        assert page.locator("#log-tabs button").count() == 5
        # the log viewer searches; the binary commit log segment is not among the files
        page.fill("#log-search", "read repair")
        count = page.text_content("#log-count") or ""
        assert "matching" in count and "CommitLog" not in count
        assert all("read repair" in ln for ln in (page.text_content("#log-view") or "").splitlines())
        assert o.errors == []
    finally:
        o.close()


def test_hostile_values_are_text(browser: Any, store: Path) -> None:
    """A value holding </script>, <script> and an onerror handler is shown as text everywhere."""
    run = make_run(store, "valid", seed=11)
    report = write_report(run)
    raw = report.read_text()
    assert "</script><script>window.__pwned" not in raw
    o = Opened(browser, report)
    try:
        page = o.page
        row = page.evaluate("v => JSON.parse(document.getElementById('report-data').textContent).ops.val.indexOf(v)",
                            HOSTILE_VALUE)
        assert row >= 0
        tip = o.hover_op(row)
        assert HOSTILE_VALUE in tip
        assert "<b>not bold</b>" in tip
        page.evaluate("row => window.__report.selectRows([row])", row)
        assert HOSTILE_VALUE in (page.text_content("#selected") or "")
        page.fill("#log-search", "odd key")
        assert HOSTILE_VALUE in (page.text_content("#log-view") or "")
        assert page.evaluate("window.__pwned") is None
        assert page.locator("img").count() == 0
        assert page.locator("b").count() == 0
        assert page.locator("script").count() == 2  # the data block and the report's own code
        o.screenshot("hostile")
        assert o.errors == []
    finally:
        o.close()


def test_invalid_linearizability_run(browser: Any, store: Path) -> None:
    run = make_run(store, "linearizability")
    o = Opened(browser, write_report(run))
    try:
        page = o.page
        assert page.text_content("#overall") == "invalid"
        assert page.locator("#checkers .verdict.invalid").count() == 1
        lin = page.locator("#lin-body .lin")
        assert lin.count() == 1
        assert "cannot be linearized" in (lin.text_content() or "")
        assert page.locator("#lin-body tr.blocked").count() == 1
        assert page.locator("#lin-body tr.linearized").count() > 5
        # hovering the red bar in the drawing names the operation that cannot be placed
        canvas = page.locator("#lin-body canvas")
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        assert box is not None
        target = page.evaluate("""() => { const c = document.querySelector('#lin-body canvas');
            const b = c._boxes.find(b => b.e.role === 'blocked'); return [b.x + b.w / 2, b.y + b.h / 2]; }""")
        page.mouse.move(box["x"] + target[0], box["y"] + target[1])
        page.wait_for_selector("#tooltip:not([hidden])")
        assert "blocked" in (page.text_content("#tooltip") or "")
        lin.locator("p").first.screenshot(path=str(ARTIFACTS / "report-linearizability-explanation.png"))
        canvas.screenshot(path=str(ARTIFACTS / "report-linearizability-porcupine.png"))
        # the link selects the operations and zooms the timeline to them
        t0, t1 = o.view()
        lin.locator("a.ops-link").first.click()
        z0, z1 = o.view()
        assert z1 - z0 < (t1 - t0) / 2
        assert "highlighted" in (page.text_content("#selected") or "")
        common_checks(o, "linearizability")
    finally:
        o.close()


def test_clock_anomalies_run(browser: Any, store: Path) -> None:
    run = make_run(store, "clock")
    o = Opened(browser, write_report(run))
    try:
        page = o.page
        assert page.is_visible("#clock-block")
        assert page.locator("#clock-legend span.sw").count() == 5
        assert page.locator("#checkers .verdict.unknown").count() == 1
        findings = page.locator("#anomaly-body .anomaly")
        assert findings.count() >= 1
        first = findings.first
        assert "older timestamp" in (first.locator(".explanation").text_content() or "")
        t0, t1 = o.view()
        first.locator("a.ops-link").click()
        z0, z1 = o.view()
        assert z1 - z0 < (t1 - t0) / 2
        selected = page.text_content("#selected") or ""
        assert "write" in selected and "timestamp" in selected
        page.locator("#clock").screenshot(path=str(ARTIFACTS / "report-clock-offsets.png"))
        common_checks(o, "clock")
    finally:
        o.close()


def test_hundred_thousand_operations(browser: Any, store: Path) -> None:
    run = make_run(store, "big")
    report = write_report(run)
    size = report.stat().st_size
    assert size < 20 * 1024 * 1024, f"report is {size / 1e6:.1f} MB"
    o = Opened(browser, report)
    try:
        page = o.page
        assert page.evaluate("JSON.parse(document.getElementById('report-data').textContent).ops.n") == 100_000
        assert int(page.eval_on_selector("#timeline", "c => c.dataset.drawn")) > 90_000
        common_checks(o, "100k")
        # deep zoom still finds and shows single operations
        for _ in range(6):
            o.zoom_in()
        assert int(page.eval_on_selector("#timeline", "c => c.dataset.drawn")) < 20_000
        assert o.errors == []
    finally:
        o.close()
