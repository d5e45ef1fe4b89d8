"""The CLI registers only the subcommand it runs: the same help, without importing the campaign."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness import cli


def _subparsers(parser):
    return next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")


def test_lazy_top_level_help_is_the_full_one():
    assert cli.build_parser(only="").format_help() == cli.build_parser().format_help()


@pytest.mark.parametrize("name", list(cli._commands()))
def test_a_command_registered_alone_has_its_full_parser(name):
    full = _subparsers(cli.build_parser()).choices[name]
    alone = _subparsers(cli.build_parser(only=name)).choices[name]
    assert alone.format_help() == full.format_help()


def test_command_named_is_the_first_word_not_an_option():
    assert cli._command_named(["--help"]) == ""
    assert cli._command_named(["-h", "run", "--nodes", "3"]) == "run"
    assert cli._command_named([]) == ""


def test_run_options_literals_match_their_owners():
    from harness import datapaths, run_options, ssh_options
    from harness.deploy import DEPLOYS, ssh
    from harness.workloads import WORKLOADS
    from nemesis import faults

    assert run_options.TARGET_SPECS == faults.TARGET_SPECS
    from nemesis import storage

    assert run_options.CORRUPT_MODES == storage.CORRUPT_MODES and run_options.DISKS == storage.DISKS
    assert run_options.WORKLOADS == WORKLOADS
    assert run_options.DEPLOYS == DEPLOYS
    assert run_options.DEFAULT_MEMTABLE_FLUSH_KB == datapaths.DEFAULT_MEMTABLE_FLUSH_KB
    assert run_options.DEFAULT_GC_GRACE_S == datapaths.DEFAULT_GC_GRACE_S
    assert ssh.add_ssh_options is ssh_options.add_ssh_options


def test_run_help_imports_neither_trio_nor_paramiko_nor_the_store():
    code = ("import sys\nfrom harness.cli import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('trio', 'paramiko', 'node.storage', 'harness.run') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
