"""`harness check` against the peers' own test data: verdicts and times; prints figures, never fails.

The peers' histories are not part of this repository (they are theirs); fetch them into a
directory of your own (docs/history-format.md, "Validated against the peers' own test data",
says from where) and write a verdicts file beside them, one history a line:

    # PATH (relative to DIR)     EXPECTED   [harness check flags the history needs]
    etcd/etcd_002.log            valid
    etcd/etcd_000.log            invalid
    knossos/cas-register/bad/bad-analysis.edn   invalid   --init 0

EXPECTED is `valid`/`invalid` (or `true`/`false`, as the peers' tests write them). Each history
is checked by a fresh `harness check --checkers linearizable --json --history PATH FLAGS`
process, as a user would run it; `wall s` is that process's whole life (start-up, reading,
checking), `check s` the linearizability checker's own time from results.json's `elapsed_s`.

    .venv/bin/python bench/peers.py /tmp/peers /tmp/peers/verdicts.txt
    .venv/bin/python bench/peers.py /tmp/peers /tmp/peers/verdicts.txt --markdown
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# The linearizability budget per history: Porcupine checks each of these in well under a second,
# so a history that needs more than this is a performance bug to look at, not a verdict.
TIME_LIMIT_S = 60.0

EXPECTED = {"valid": True, "true": True, "invalid": False, "false": False}


@dataclass
class Case:
    path: str
    expected: bool
    flags: list[str]


@dataclass
class Outcome:
    case: Case
    got: object  # True, False, "unknown", or "error"
    wall_s: float
    check_s: float | None
    ops: int | None
    note: str

    @property
    def agrees(self) -> bool:
        return self.got is self.case.expected


def read_verdicts(path: Path) -> list[Case]:
    """The verdicts file: PATH EXPECTED [FLAGS...] per line; # starts a comment."""
    cases = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if len(words) < 2 or words[1].lower() not in EXPECTED:
            sys.exit(f"{path}:{n}: expected 'PATH valid|invalid [FLAGS]', got {line!r}")
        cases.append(Case(words[0], EXPECTED[words[1].lower()], words[2:]))
    return cases


def check(directory: Path, case: Case, time_limit: float) -> Outcome:
    """One fresh `harness check` process on one history."""
    harness = Path(sys.executable).with_name("harness")
    argv = [str(harness), "check", "--checkers", "linearizable", "--json", "--time-limit", str(time_limit),
            "--history", str(directory / case.path), *case.flags]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    try:
        res = json.loads(proc.stdout)
    except json.JSONDecodeError:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Outcome(case, "error", wall, None, None, f"exit {proc.returncode}: {last}")
    lin = res.get("checkers", {}).get("linearizable", {})
    counts = lin.get("counts", {})
    note = ""
    if lin.get("valid") == "unknown":
        note = str(lin.get("details", {}).get("reason", "unknown"))
    return Outcome(case, lin.get("valid", res.get("valid")), wall, res.get("elapsed_s", {}).get("linearizable"),
                   counts.get("ops"), note)


def _verdict(v: object) -> str:
    return {True: "valid", False: "invalid"}.get(v, str(v)) if isinstance(v, bool) else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", type=Path, help="where the peers' files are")
    ap.add_argument("verdicts", type=Path, help="PATH EXPECTED [FLAGS] per line")
    ap.add_argument("--time-limit", type=float, default=TIME_LIMIT_S)
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()

    outcomes = []
    for case in read_verdicts(args.verdicts):
        o = check(args.directory, case, args.time_limit)
        outcomes.append(o)
        if not args.markdown:
            flags = " ".join(case.flags)
            check_s = f"{o.check_s:.3f}" if o.check_s is not None else "-"
            print(f"{case.path:48} {flags:22} expected {_verdict(case.expected):8} got {_verdict(o.got):8} "
                  f"{'agree' if o.agrees else 'DISAGREE':8} ops {o.ops or '-':>5}  wall {o.wall_s:5.2f} s  "
                  f"check {check_s} s  {o.note}", flush=True)
    if args.markdown:
        print("| history | flags | expected | `harness check` | ops | check s | wall s |")
        print("|---|---|---|---|---:|---:|---:|")
        for o in outcomes:
            check_s = f"{o.check_s:.3f}" if o.check_s is not None else "-"
            got = _verdict(o.got) if o.agrees else f"**{_verdict(o.got)}**"
            print(f"| {o.case.path} | {' '.join(o.case.flags)} | {_verdict(o.case.expected)} | {got} | "
                  f"{o.ops or '-'} | {check_s} | {o.wall_s:.2f} |")
    agree = sum(o.agrees for o in outcomes)
    unknown = sum(o.got == "unknown" for o in outcomes)
    errors = sum(o.got == "error" for o in outcomes)
    disagree = len(outcomes) - agree - unknown - errors
    checks = [o.check_s for o in outcomes if o.check_s is not None]
    print(f"\n{len(outcomes)} histories: {agree} agree, {disagree} disagree, {unknown} unknown, {errors} errors; "
          f"checker time total {sum(checks):.2f} s, max {max(checks, default=0):.3f} s; "
          f"wall total {sum(o.wall_s for o in outcomes):.1f} s")


if __name__ == "__main__":
    main()
