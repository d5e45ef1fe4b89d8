"""Mistakes met walking the README on a fresh clone (issue 18), each one line with its exit code:
ringctl's bad --timeout was an exception-group traceback, its argparse errors a usage block
above the line that matters; bare `harness` named no command; --host-toxiproxy was silently
ignored on a local run; a --config file that is missing or not TOML said so in Python's words."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli
from node import ringctl


def err_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("argv, line", [
    (["--timeout", "-1", "status"],
     "ringctl: error: argument --timeout: must be a positive number of seconds, got -1 (see `ringctl --help`)"),
    (["--timeout", "soon", "status"],
     "ringctl: error: argument --timeout: not a number of seconds: 'soon' (see `ringctl --help`)"),
    (["get", "ks"], "ringctl get: error: the following arguments are required: table, key, columns "
                    "(see `ringctl get --help`)"),
])
def test_ringctl_argument_errors_are_one_line_exit_254(argv: list[str], line: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert ringctl.main(argv) == 254
    assert err_lines(capsys) == [line]


def test_bare_harness_names_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 254
    [line] = err_lines(capsys)
    assert line.startswith("harness: error: a COMMAND is required: run, check, ") and line.endswith("(see `harness --help`)")


def test_host_toxiproxy_is_refused_on_a_local_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--host-toxiproxy", "8474", "--store", str(tmp_path / "s")]) == 254
    assert err_lines(capsys) == ["harness run: error: --host-toxiproxy is for --deploy ssh|vagrant (a Toxiproxy "
                                 "server on every host); --deploy local has its own fault proxy (--toxiproxy URL "
                                 "for an external one)"]
    assert not (tmp_path / "s").exists()


def test_config_files_missing_or_not_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.toml"
    assert cli.main(["run", "--config", str(missing)]) == 254
    assert err_lines(capsys) == [f"harness run: error: --config {missing}: cannot read it: No such file or directory"]
    broken = tmp_path / "broken.toml"
    broken.write_text("nemesis = [\n")
    assert cli.main(["run", "--config", str(broken)]) == 254
    assert err_lines(capsys) == [f"harness run: error: --config {broken}: not valid TOML: Invalid value (at end of document)"]
