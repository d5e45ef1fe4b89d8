"""A newcomer's bad argument gets one line naming it and exit 254, for every subcommand."""

import pytest

from harness.cli import EXIT_BAD_ARGS, main

BAD = [
    ["run", "--time-limit", "abc"],
    ["run", "--workload", "nosuch"],
    ["run", "--coordination", "nosuch"],
    ["check", "--model", "nosuch"],
    ["serve", "--port", "abc"],
    ["cluster", "bogus"],
    ["hosts", "bogus"],
    ["sim", "--seed", "abc"],
    ["coverage-union"],
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a) for a in BAD])
def test_bad_argument_is_one_line_and_254(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """argparse's own errors (types, choices, missing) print one line, not the usage screen."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == EXIT_BAD_ARGS
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"harness {argv[0]}: error: ")
    assert "--help" in lines[0]
