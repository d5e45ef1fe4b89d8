"""Campaign coverage: which lines of ``node/`` a campaign's node processes ran (coverage.py).

With ``harness run --coverage`` every node process starts through :func:`main` here, which runs
the node under ``coverage.Coverage`` (coverage.py's own tracer and data files) and saves what it
measured every :data:`SAVE_INTERVAL` seconds as well as on its graceful stop (SIGTERM drains), so
a node killed with SIGKILL (the kill nemesis, or one that outlives its stop grace) loses only what
it ran since its last save. Each process writes its own data file (coverage's parallel mode);
remote hosts write theirs in their node directory and teardown downloads them. After teardown the
harness combines every file (coverage's ``[paths]`` remapping turns remote install paths into
this checkout's ``node/``), writes the HTML report to ``<run>/coverage/``, and puts a per-file
table of ``node/`` statement coverage with totals for ``node/`` and ``node/storage/`` in
``results.json`` (key ``coverage``) and ``coverage/summary.json``.

``harness coverage-union RUN_DIR...`` combines several runs' data into one figure.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import runpy
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# How often a node under coverage saves its data: a SIGKILL loses at most this many seconds of
# that process's measurements. A save is a few SQLite inserts; every 2 s costs nothing visible.
SAVE_INTERVAL = 2.0
# In the run directory: the HTML report and, beside it, the data.
COVERAGE_DIR = "coverage"
RAW_DIR = "raw"  # coverage/raw/: one data file per node process (coverage/raw/<node>/ for ssh)
DATA_FILE = "coverage.db"  # coverage/coverage.db: the combined data (what coverage-union reads)
SUMMARY_FILE = "summary.json"  # coverage/summary.json: the table also stored in results.json
RC_FILE = "coveragerc"
# The node processes' data files start with this name (coverage adds .host.pid.random).
NODE_DATA_NAME = ".coverage"
# Totals the table reports, as prefixes of the file names.
TOTALS = ("node/", "node/storage/")
# Where remote (or other checkouts') installs keep the node package; remapped to this checkout's.
REMOTE_PATTERNS = ("*/site-packages/node", "*/node")


class CoverageError(Exception):
    """Coverage data could not be combined or reported; the message says which file or run."""


def local_node_dir() -> Path:
    """This checkout's ``node/`` package (the canonical place every measured path maps to)."""
    import importlib.util

    spec = importlib.util.find_spec("node")
    if spec is None or spec.origin is None:
        raise CoverageError("the node package is not importable here")
    return Path(spec.origin).resolve().parent


def node_rc_text(data_file: str) -> str:
    """The coverage config a node process runs with: its data file, one file per process."""
    return "\n".join([
        "[run]",
        f"data_file = {data_file}",
        "parallel = true",
        # source_pkgs also records the node/ files a process never imported (as 0 lines run).
        "source_pkgs = node",
        "",
    ])


def prepare_local(run_dir: Path) -> Path:
    """Make ``<run>/coverage/raw/`` and the node processes' coverage config; returns its path."""
    cov_dir = Path(run_dir) / COVERAGE_DIR
    (cov_dir / RAW_DIR).mkdir(parents=True, exist_ok=True)
    rc = cov_dir / RC_FILE
    rc.write_text(node_rc_text(str((cov_dir / RAW_DIR / NODE_DATA_NAME).resolve())))
    return rc


# node/native.py's switch to pure Python (node.native.PURE_ENV; not imported from there, since
# importing node before coverage starts would leave its module-level lines unmeasured).
PURE_ENV = "RINGLAB_PURE"


def measure_pure_python() -> None:
    """Make the node's modules load from their .py sources in this process and its children:
    coverage.py traces interpreted code only, and node/_native/'s compiled modules would all
    read as 0% covered. Call it before anything imports node."""
    os.environ[PURE_ENV] = "1"


def node_command(python: str, rcfile: str, node_args: Sequence[str]) -> list[str]:
    """The argv that starts a node under coverage (instead of ``python -m node ARGS``)."""
    return [python, "-m", "harness.campaign_coverage", "--rcfile", rcfile, "--", *node_args]


# ------------------------------------------------------------------------------------------------
# Inside the node process


def _save_periodically(cov: Any, stop: threading.Event, lock: threading.Lock) -> None:
    while not stop.wait(SAVE_INTERVAL):
        with lock:
            cov.save()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one node (``python -m node``) under coverage, saving every SAVE_INTERVAL and at exit."""
    import coverage

    parser = argparse.ArgumentParser(prog="python -m harness.campaign_coverage",
                                     description="Run a ringlab node under coverage.py.")
    parser.add_argument("--rcfile", required=True, help="the coverage config (data file, sources)")
    parser.add_argument("node_args", nargs=argparse.REMAINDER, help="-- then the node's arguments")
    args = parser.parse_args(argv)
    node_args = args.node_args[1:] if args.node_args[:1] == ["--"] else args.node_args
    measure_pure_python()
    cov = coverage.Coverage(config_file=args.rcfile)
    cov.start()
    lock = threading.Lock()
    stop = threading.Event()
    # A thread, not a task in the node's Trio loop: the node's code stays as it runs uninstrumented.
    saver = threading.Thread(target=_save_periodically, args=(cov, stop, lock), name="coverage-saver", daemon=True)
    saver.start()
    try:
        # Exactly what `python -m node ARGS` runs (node/__main__.py included).
        sys.argv = ["node", *node_args]
        try:
            runpy.run_module("node", run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return 0
    finally:
        stop.set()
        saver.join()
        with lock:
            cov.stop()
            cov.save()


def start_in_process(run_dir: Path) -> Any:
    """Measure node/ in this process (the simulator runs every node in one); returns the started
    Coverage. Start it before anything imports node, or module-level lines go unmeasured."""
    import coverage

    measure_pure_python()
    cov = coverage.Coverage(config_file=str(prepare_local(run_dir)))
    cov.start()
    return cov


def save_in_process(run_dir: Path) -> None:
    """Save this process's measurement of ``run_dir`` (from start_in_process) so finish() sees it;
    nothing when this process measures something else or nothing (the harness of a local run)."""
    import coverage

    cov = coverage.Coverage.current()
    raw = (Path(run_dir) / COVERAGE_DIR / RAW_DIR).resolve()
    if cov is not None and Path(str(cov.get_option("run:data_file"))).parent == raw:
        cov.save()


# ------------------------------------------------------------------------------------------------
# In the harness: combine, report, summarize


def _reporter(data_file: Path, node_dir: Path) -> Any:
    """A Coverage object for combining and reporting, remote paths remapped onto ``node_dir``."""
    import coverage

    cov = coverage.Coverage(data_file=str(data_file), config_file=False)
    cov.set_option("paths", {"node": [str(node_dir), *REMOTE_PATTERNS]})
    return cov


def summarize(cov: Any, node_dir: Path | None = None) -> dict[str, Any]:
    """The per-file table of ``node/`` statement coverage and the totals, from loaded data.

    Every ``.py`` file of this checkout's node/ counts, measured or not, so that the totals of
    different runs have one denominator.
    """
    node_dir = node_dir or local_node_dir()
    root = node_dir.parent
    files = []
    for path in sorted(p for p in node_dir.rglob("*.py") if "__pycache__" not in p.parts):
        _, statements, _excluded, missing, missing_text = cov.analysis2(str(path))
        n = len(statements)
        covered = n - len(missing)
        files.append({
            "file": path.relative_to(root).as_posix(),
            "statements": n,
            "covered": covered,
            "percent": percent(covered, n),
            "missing_lines": missing_text,
        })
    return {"files": files, "totals": totals(files)}


def percent(covered: int, statements: int) -> float:
    """coverage.py's convention: a file without statements is fully covered."""
    return round(100.0 * covered / statements, 1) if statements else 100.0


def totals(files: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Statements, covered and percent over each TOTALS prefix."""
    out = {}
    for prefix in TOTALS:
        rows = [f for f in files if f["file"].startswith(prefix)]
        n = sum(f["statements"] for f in rows)
        c = sum(f["covered"] for f in rows)
        out[prefix] = {"files": len(rows), "statements": n, "covered": c, "percent": percent(c, n)}
    return out


# SQLite's side files: a process killed mid-save leaves its rollback journal beside the data file.
SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")


def data_files(raw_dir: Path) -> list[Path]:
    """Every node process's data file under ``raw_dir`` (ssh runs keep one folder per node); a
    journal left by a SIGKILL mid-save is SQLite's to roll back, not a data file of its own."""
    return sorted(p for p in raw_dir.rglob(NODE_DATA_NAME + ".*")
                  if p.is_file() and not p.name.endswith(SQLITE_SIDE_FILES))


def finish(run_dir: Path, *, html: bool = True) -> dict[str, Any]:
    """Combine the run's node data, write coverage/ (HTML unless ``html`` is False, data,
    summary.json), add the table to results.json; returns the summary. CoverageError when there
    is nothing to combine."""
    import coverage

    run_dir = Path(run_dir)
    cov_dir = run_dir / COVERAGE_DIR
    raw = data_files(cov_dir / RAW_DIR)
    if not raw:
        raise CoverageError(f"no node coverage data in {cov_dir / RAW_DIR}")
    node_dir = local_node_dir()
    combined = cov_dir / DATA_FILE
    combined.unlink(missing_ok=True)
    cov = _reporter(combined, node_dir)
    try:
        # keep=True: the raw files stay, so a run can be combined again (or differently) later.
        cov.combine([str(p) for p in raw], keep=True)
        cov.save()
        if html:
            cov.html_report(directory=str(cov_dir), title=f"ringlab node/ coverage: {run_dir.parent.name}/{run_dir.name}")
    except coverage.CoverageException as exc:
        raise CoverageError(f"combining {len(raw)} data file(s) in {cov_dir / RAW_DIR}: {exc}") from None
    summary = summarize(cov, node_dir)
    summary.update({"data_files": len(raw), "html": f"{COVERAGE_DIR}/index.html" if html else None,
                    "save_interval_s": SAVE_INTERVAL})
    (cov_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    merge_into_results(run_dir, summary)
    return summary


def merge_into_results(run_dir: Path, summary: dict[str, Any]) -> None:
    """Add the summary to results.json under ``coverage`` (written beside the checkers' results)."""
    path = Path(run_dir) / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["coverage"] = summary
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=str))
    tmp.replace(path)


def load_summary(run_dir: Path, results: Any = None) -> dict[str, Any] | None:
    """A run's coverage table: results.json's, else coverage/summary.json's; None for runs without."""
    if isinstance(results, dict) and isinstance(results.get("coverage"), dict):
        return results["coverage"]
    path = Path(run_dir) / COVERAGE_DIR / SUMMARY_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def console_line(summary: dict[str, Any], run_dir: Path | None = None) -> str:
    """The one line `harness run --coverage` prints after the verdict."""
    t = summary["totals"]
    line = ", ".join(f"{p} {t[p]['percent']:.1f}% ({t[p]['covered']}/{t[p]['statements']} statements)"
                     for p in TOTALS if p in t)
    where = f"; html: {Path(run_dir) / summary.get('html', COVERAGE_DIR + '/index.html')}" if run_dir else ""
    return f"coverage: {line} from {summary.get('data_files', '?')} process(es){where}"


def section_html(summary: dict[str, Any] | None) -> str:
    """The report's Coverage section (static HTML): totals and the per-file table; '' without data."""
    if not summary or not isinstance(summary.get("files"), list):
        return ""
    e = html.escape
    t = summary.get("totals") or {}
    head = "".join(
        f"<tr><th>{e(p)}</th><td>{v['percent']:.1f}%</td><td>{v['covered']}</td><td>{v['statements']}</td></tr>"
        for p, v in t.items())
    rows = "".join(
        f"<tr><td><code>{e(f['file'])}</code></td><td>{f['percent']:.1f}%</td><td>{f['covered']}</td>"
        f"<td>{f['statements']}</td><td class=\"missing\">{e(f.get('missing_lines') or '')}</td></tr>"
        for f in summary["files"])
    link = summary.get("html")
    interval = summary.get("save_interval_s")
    note = (f" Each node process saved its data every {interval:g} s and on its graceful stop; "
            f"a process killed with SIGKILL lost what it ran since its last save.") if interval else ""
    return (
        '<section id="coverage">\n<h2>Coverage of node/</h2>\n'
        f"<p class=\"hint\">Statements of <code>node/</code> that the run's "
        f"{e(str(summary.get('data_files', '?')))} node process(es) executed (coverage.py).{note}"
        + (f' Line by line: <a href="{e(link)}">{e(link)}</a>.' if link else "") + "</p>\n"
        '<table id="coverage-totals"><thead><tr><th>files</th><th>covered</th><th>statements run</th>'
        f"<th>statements</th></tr></thead><tbody>{head}</tbody></table>\n"
        '<details open><summary>Per file</summary>\n'
        '<table id="coverage-files"><thead><tr><th>file</th><th>covered</th><th>run</th><th>statements</th>'
        f"<th>lines not run</th></tr></thead><tbody>{rows}</tbody></table>\n</details>\n</section>\n"
    )


def union(run_dirs: Sequence[Path], html_dir: Path | None = None) -> dict[str, Any]:
    """The union of several runs' combined data (each run's coverage/coverage.db), as one summary."""
    import coverage

    paths = []
    for d in run_dirs:
        p = Path(d) / COVERAGE_DIR / DATA_FILE
        if not p.is_file():
            raise CoverageError(f"{d}: no {COVERAGE_DIR}/{DATA_FILE} (was it run with --coverage?)")
        paths.append(p)
    node_dir = local_node_dir()
    with tempfile.TemporaryDirectory(prefix="ringlab-cov-") as tmp:
        cov = _reporter(Path(tmp) / DATA_FILE, node_dir)
        try:
            cov.combine([str(p) for p in paths], keep=True)
            cov.save()
            if html_dir is not None:
                cov.html_report(directory=str(html_dir), title="ringlab node/ coverage: union of runs")
        except coverage.CoverageException as exc:
            raise CoverageError(f"combining {len(paths)} run(s): {exc}") from None
        summary = summarize(cov, node_dir)
    summary["runs"] = [str(d) for d in run_dirs]
    return summary


def union_command(args: argparse.Namespace) -> int:
    """`harness coverage-union RUN_DIR...`: each run's totals, then their union's."""
    dirs = [Path(d).resolve() for d in args.run_dirs]
    for d in dirs:
        s = load_summary(d)
        if s is None:
            print(f"harness coverage-union: {d}: no coverage summary (was it run with --coverage?)", file=sys.stderr)
            return 254
        print(f"{d}: " + ", ".join(f"{p} {v['percent']:.1f}%" for p, v in s["totals"].items()))
    try:
        summary = union(dirs, Path(args.html) if args.html else None)
    except CoverageError as exc:
        print(f"harness coverage-union: {exc}", file=sys.stderr)
        return 254
    if args.files:
        for f in summary["files"]:
            print(f"  {f['file']:<36} {f['percent']:5.1f}% {f['covered']:>5}/{f['statements']:<5} {f['missing_lines']}")
    t = summary["totals"]
    print(f"union of {len(dirs)} run(s): " + ", ".join(
        f"{p} {v['percent']:.1f}% ({v['covered']}/{v['statements']} statements)" for p, v in t.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    if args.html:
        print(f"html: {Path(args.html) / 'index.html'}")
    return 0


def add_union_options(p: argparse.ArgumentParser) -> None:
    """`harness coverage-union`'s arguments."""
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories of `harness run --coverage` runs")
    p.add_argument("--files", action="store_true", help="also print the per-file table with the lines not run")
    p.add_argument("--html", metavar="DIR", help="also write the union's HTML report to DIR")
    p.add_argument("--json", metavar="FILE", help="also write the union's summary as JSON to FILE")


if __name__ == "__main__":
    sys.exit(main())
