"""Start-up time of the `harness` CLI against `python -c pass` measured in the same run; prints
figures, never fails.

Each row is the median wall time of N runs in fresh processes (the machine may be loaded: read
the harness rows against the interpreter's own start-up in the same run).

    .venv/bin/python bench/cli.py            # 15 runs per row
    .venv/bin/python bench/cli.py --runs 5
    .venv/bin/python bench/cli.py --tree /tmp/old   # also another checkout's CLI (e.g. `git archive`)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The harness console script beside this interpreter (a venv's bin/), else `python -m harness`.
_SCRIPT = Path(sys.executable).with_name("harness")
HARNESS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "harness"]

ROWS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "harness --help": [*HARNESS, "--help"],
    "harness run --help": [*HARNESS, "run", "--help"],
    "harness check --help": [*HARNESS, "check", "--help"],
}


def _tree_rows(tree: str) -> dict[str, list[str]]:
    """The harness rows run from another checkout's source (first on sys.path)."""
    def cmd(*argv: str) -> list[str]:
        code = f"import sys; sys.path.insert(0, {tree!r}); from harness.cli import main; sys.exit(main({list(argv)!r}))"
        return [sys.executable, "-c", code]

    return {f"{tree}: harness --help": cmd("--help"), f"{tree}: harness run --help": cmd("run", "--help")}


def _median_ms(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    """Print each row's median start-up time and its excess over `python -c pass`."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="runs per row (median printed)")
    ap.add_argument("--tree", metavar="DIR", help="also time the CLI of the checkout in DIR")
    args = ap.parse_args()
    rows = dict(ROWS)
    if args.tree:
        rows.update(_tree_rows(str(Path(args.tree).resolve())))
        rows.update(_tree_rows(str(ROOT)))
    # Interleave the rows round by round so a load change hits every row alike.
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.runs):
        for name, cmd in rows.items():
            samples[name].append(_median_ms(cmd, 1))
    base = statistics.median(samples["python -c pass"])
    print(f"{'command':<40} {'median ms':>10} {'over python -c pass':>20}")
    for name, ms in samples.items():
        m = statistics.median(ms)
        print(f"{name:<40} {m:>10.0f} {m - base:>17.0f} ms")


if __name__ == "__main__":
    main()
