"""Report benchmark: size of the 100,000-operation report and time until it is interactive.

Prints figures, never fails on them. Time until interactive is measured in Debian's headless
Chromium (Playwright) as navigation start → the report's script has drawn every canvas and
attached its handlers (``window.__reportReadyMs``), and also as wall time around page.goto +
that point. A 1,000-operation report loaded in the same browser is the reference.

    .venv/bin/python bench/report.py [N_OPS]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness.report.render import write_report
from harness.report.sample import make_run

# Flags that keep the browser from talking to anything but the page.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Loads per report; the median is printed (the first load also warms the browser's caches).
LOADS = 5


def main() -> None:
    n_ops = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    chromium = shutil.which("chromium")
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        root = Path(tmp)
        figures = {}
        for label, n in (("reference", 1_000), ("large", n_ops)):
            t = time.perf_counter()
            run = make_run(root / label, "big", n_ops=n)
            gen = time.perf_counter() - t
            t = time.perf_counter()
            report = write_report(run)
            render = time.perf_counter() - t
            figures[label] = {"ops": n, "history_mb": (run / "history.jsonl").stat().st_size / 1e6,
                              "report_mb": report.stat().st_size / 1e6, "render_s": render, "generate_s": gen,
                              "path": report}
        if chromium is None:
            print("chromium not installed: browser timings skipped")
        else:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
                ctx = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                           args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 900})
                for f in figures.values():
                    ready, wall, interact = [], [], []
                    for _ in range(LOADS):
                        page = ctx.new_page()
                        t = time.perf_counter()
                        page.goto(f["path"].as_uri())
                        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
                        wall.append(time.perf_counter() - t)
                        ready.append(page.evaluate("window.__reportReadyMs") / 1000)
                        # one zoom step at full view, timed inside the page: wheel event → the frame that
                        # redrew the timeline and the plots has run
                        interact.append(page.evaluate("""() => new Promise(done => {
                            const c = document.getElementById('timeline'), r = c.getBoundingClientRect();
                            const t = performance.now();
                            c.dispatchEvent(new WheelEvent('wheel', {deltaY: -400, clientX: r.left + r.width / 2,
                                clientY: r.top + 40, bubbles: true, cancelable: true}));
                            requestAnimationFrame(() => done((performance.now() - t) / 1000));
                        })"""))
                        page.close()
                    f["ready_s"] = sorted(ready)[LOADS // 2]
                    f["wall_s"] = sorted(wall)[LOADS // 2]
                    f["zoom_s"] = sorted(interact)[LOADS // 2]
                ctx.close()
        print(f"{'report':>10} {'ops':>8} {'history MB':>11} {'report MB':>10} {'render s':>9} "
              f"{'ready s':>8} {'load wall s':>12} {'zoom redraw s':>14}")
        for label, f in figures.items():
            print(f"{label:>10} {f['ops']:>8} {f['history_mb']:>11.2f} {f['report_mb']:>10.2f} {f['render_s']:>9.2f} "
                  f"{f.get('ready_s', float('nan')):>8.3f} {f.get('wall_s', float('nan')):>12.3f} "
                  f"{f.get('zoom_s', float('nan')):>14.3f}")
        ref, big = figures["reference"], figures["large"]
        print(f"size per operation: {big['report_mb'] * 1e6 / big['ops']:.0f} bytes "
              f"(report/history ratio {big['report_mb'] / big['history_mb']:.2f})")
        if "ready_s" in big:
            print(f"time until interactive: {big['ready_s']:.3f} s (page script) / {big['wall_s']:.3f} s (wall), "
                  f"{big['wall_s'] / ref['wall_s']:.1f}x the {ref['ops']}-operation reference; budget 3 s, 20 MB")


if __name__ == "__main__":
    main()
