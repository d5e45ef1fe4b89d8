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

The peers' largest histories (Porcupine's c50 kv logs, its 20000-operation etcd logs) are too
big to fetch by hand; ``--synthetic DIR`` writes histories of their shape and size, in their
formats, whose verdicts are known by construction (each operation takes effect at a random
instant inside its interval; the invalid ones read a value nothing wrote), and their verdicts
file, DIR/verdicts.txt:

    .venv/bin/python bench/peers.py --synthetic /tmp/peers-synth
    .venv/bin/python bench/peers.py /tmp/peers-synth /tmp/peers-synth/verdicts.txt
"""

from __future__ import annotations

import argparse
import json
import random
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


def _timeline(rng: random.Random, clients: int, n: int) -> list[tuple[float, float, float, int]]:
    """(invoke, takes effect, complete, client) for n operations; a client's never overlap."""
    free = [0.0] * clients
    ops = []
    for _ in range(n):
        c = rng.randrange(clients)
        start = free[c] + rng.random() * clients / 4
        lin = start + rng.random() * 3
        free[c] = end = lin + rng.random() * 3
        ops.append((start, lin, end, c))
    return ops


def synth_kv(path: Path, clients: int, n: int, seed: int, bad: bool) -> None:
    """Porcupine's kv test log shape: get/put/append on 10 keys, "" initially, string appends."""
    rng = random.Random(seed)
    state: dict[str, str] = {}
    events = []
    for i, (start, lin, end, c) in enumerate(sorted(_timeline(rng, clients, n), key=lambda o: o[1])):
        f, k, v = rng.choice(["get", "put", "append"]), str(rng.randrange(10)), f"x {c} {i} y"
        if f == "get":
            v = state.get(k, "")
            if bad and i >= n // 2:
                v, bad = v + "z", False  # no append ends in z: no linearization can return it
        else:
            state[k] = v if f == "put" else state.get(k, "") + v
        arg = "nil" if f == "get" else json.dumps(v)
        events.append((start, f'{{:process {c}, :type :invoke, :f :{f}, :key "{k}", :value {arg}}}'))
        events.append((end, f'{{:process {c}, :type :ok, :f :{f}, :key "{k}", :value {json.dumps(v)}}}'))
    path.write_text("".join(line + "\n" for _, line in sorted(events)))


def synth_etcd(path: Path, clients: int, n: int, seed: int, bad: bool, p_info: float = 0.05) -> None:
    """Porcupine's Jepsen etcd log shape: read/write/cas of 0-4, timeouts as :info, new processes after them."""
    rng = random.Random(seed)
    state: int | None = None
    process = list(range(clients))
    fresh = clients
    events = []
    for i, (start, lin, end, c) in enumerate(sorted(_timeline(rng, clients, n), key=lambda o: o[1])):
        f, a, b = rng.choice(["read", "write", "cas"]), rng.randrange(5), rng.randrange(5)
        p = process[c]
        events.append((start, f"{p}\t:invoke\t:{f}\t" + {"read": "nil", "write": str(a), "cas": f"[{a} {b}]"}[f]))
        if f == "read":
            done = f"ok\t:read\t{'nil' if state is None else state}"
            if bad and i >= n // 2:
                done, bad = "ok\t:read\t9", False  # nothing writes 9
        elif f == "write":
            state, done = a, f"ok\t:write\t{a}"
        else:
            done = f"{'ok' if state == a else 'fail'}\t:cas\t[{a} {b}]"
            state = b if state == a else state
        if rng.random() < p_info and not done.endswith("\t9"):
            done = f"info\t:{f}\t:timed-out"  # it took effect, but the client cannot know
            process[c], fresh = fresh, fresh + 1
        events.append((end, f"{p}\t:{done}"))
    path.write_text("".join(f"INFO  jepsen.util - {line}\n" for _, line in sorted(events)))


def synthesize(directory: Path) -> None:
    """Write the synthetic histories and DIR/verdicts.txt."""
    directory.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, clients, n, seed, bad in [("c50-ok", 50, 3000, 1, False), ("c50-bad", 50, 3000, 2, True)]:
        synth_kv(directory / f"kv-{name}.txt", clients, n, seed, bad)
        cases.append(f"kv-{name}.txt {'invalid' if bad else 'valid'}")
    for name, clients, n, seed, bad in [("CLI16_OPS20000", 16, 20000, 3, False),
                                         ("CLI16_OPS20000-bad", 16, 20000, 4, True),
                                         ("CLI8_OPS2000", 8, 2000, 5, False)]:
        synth_etcd(directory / f"etcd-{name}.log", clients, n, seed, bad)
        cases.append(f"etcd-{name}.log {'invalid' if bad else 'valid'}")
    (directory / "verdicts.txt").write_text("# synthetic: verdicts known by construction (bench/peers.py --synthetic)\n"
                                            + "".join(c + "\n" for c in cases))
    print(f"wrote {len(cases)} histories and {directory / 'verdicts.txt'}")


def _verdict(v: object) -> str:
    return {True: "valid", False: "invalid"}.get(v, str(v)) if isinstance(v, bool) else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", type=Path, nargs="?", help="where the peers' files are")
    ap.add_argument("verdicts", type=Path, nargs="?", help="PATH EXPECTED [FLAGS] per line")
    ap.add_argument("--time-limit", type=float, default=TIME_LIMIT_S)
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--synthetic", type=Path, metavar="DIR", help="write synthetic peer-shaped histories to DIR")
    args = ap.parse_args()
    if args.synthetic is not None:
        synthesize(args.synthetic)
        return
    if args.directory is None or args.verdicts is None:
        ap.error("DIRECTORY and VERDICTS are needed (or --synthetic DIR)")

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
