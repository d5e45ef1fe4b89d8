"""harness sim --max-hint-window: the option reaches the simulated nodes' [hints] config."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import datapaths
from harness.run import RunOptions
from node.config import HintsConfig
from sim.world import SimNode, SimWorld, WorldSpec


def _window(tmp_path: Path, hints: dict) -> float:
    # The world's node config alone (a whole SimWorld needs the virtual clock running).
    world = SimWorld.__new__(SimWorld)
    world.spec = WorldSpec(1, tmp_path, "s", 1, hints=hints)
    world.nodes = {"n1": SimNode("n1", 0, tmp_path / "n1", tmp_path / "n1")}
    world.forgotten = set()
    return world.config("n1").hints.max_hint_window


def test_the_window_reaches_the_nodes_only_when_asked(tmp_path: Path) -> None:
    short = datapaths.node_hints(RunOptions(deploy="sim", max_hint_window=20))
    assert short == {"max_hint_window": 20.0}
    assert _window(tmp_path, short) == 20.0
    assert datapaths.node_hints(RunOptions(deploy="sim")) == {}
    assert _window(tmp_path, {}) == HintsConfig().max_hint_window
    assert datapaths.recorded(RunOptions(deploy="sim", max_hint_window=20))["node"]["max_hint_window"] == 20.0


def test_harness_sim_parses_the_window_and_refuses_a_bad_one() -> None:
    from harness.cli import build_parser
    from harness.simcli import build_options

    opts, _ = build_options(build_parser().parse_args(["sim", "--max-hint-window", "20"]))
    assert opts.max_hint_window == 20.0
    assert build_options(build_parser().parse_args(["sim"]))[0].max_hint_window is None
    with pytest.raises(ValueError, match="--max-hint-window"):
        datapaths.validate(RunOptions(deploy="sim", max_hint_window=-1))
    with pytest.raises(ValueError, match="harness sim only"):
        datapaths.validate(RunOptions(deploy="local", max_hint_window=20))
