"""bench/mutants/: every planted-bug patch still applies to node/ as it is now (no sweeps).

A store refactor that moves the code a mutant patches makes this fail: regenerate that patch
against the new code (docs/mutants.md) so the mutation table never shrinks silently.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench_modules import bench_module

ROOT = Path(__file__).resolve().parents[2]

bench = bench_module("mutants")
MUTANTS = bench.load_mutants()  # type: ignore[attr-defined]


def test_there_are_enough_mutants_across_the_store() -> None:
    assert len(MUTANTS) >= 15
    # node/<part>/...: the part of the store each patch plants its bug in
    touched = {line[len("+++ b/"):].split("/")[1]
               for m in MUTANTS for line in m.path.read_text().splitlines() if line.startswith("+++ b/")}
    assert {"storage", "cluster", "coordinator.py", "hints.py", "repair.py"} <= touched
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_patch_applies_to_the_current_tree(mutant: object) -> None:
    assert bench.apply_problem(mutant, ROOT) is None  # type: ignore[attr-defined]


def test_patch_touches_only_node() -> None:
    for m in MUTANTS:
        files = [line[6:] for line in m.path.read_text().splitlines() if line.startswith("+++ b/")]
        assert files and all(f.startswith("node/") for f in files), m.path.name


def test_a_patch_that_does_not_apply_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "99-bad.patch"
    bad.write_text("Mutant: bad\nBreaks: nothing\nCampaign: faults\n\n--- a/node/ring.py\n+++ b/node/ring.py\n"
                   "@@ -1,1 +1,1 @@\n-this line is not in ring.py\n+neither is this\n")
    [m] = bench.load_mutants(tmp_path)  # type: ignore[attr-defined]
    assert bench.apply_problem(m, ROOT) is not None  # type: ignore[attr-defined]


def test_a_header_naming_no_campaign_is_refused(tmp_path: Path) -> None:
    (tmp_path / "01-x.patch").write_text("Mutant: x\nBreaks: y\nCampaign: nowhere\n\n--- a/node/ring.py\n")
    with pytest.raises(ValueError, match="unknown campaign"):
        bench.load_mutants(tmp_path)  # type: ignore[attr-defined]
