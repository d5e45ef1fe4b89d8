"""A mistyped option or value gets the closest right one named, by the command it was given to."""

from __future__ import annotations

import pytest

from harness.cli import EXIT_BAD_ARGS, main
from node.cliparse import with_suggestion


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's own errors exit from inside the parse
        code = e.code
    assert code == EXIT_BAD_ARGS
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, not a screenful of usage
    return err[0]


@pytest.mark.parametrize(("argv", "said", "suggested"), [
    (("run", "--nemesis-intervl", "3"), "harness run: error: unrecognized arguments: --nemesis-intervl 3",
     "did you mean --nemesis-interval?"),
    (("sim", "--seeds", "1-2", "--time-limt", "3"), "harness sim: error: unrecognized arguments", "did you mean --time-limit?"),
    (("run", "--workload", "regster"), "invalid choice: 'regster'", "did you mean register?"),
    (("run", "--nemesis", "partition,kil"), "unknown nemesis 'kil'", "did you mean kill?"),
    (("run", "--fault", "ack_quorum_after_on"), "--fault must be one of", "did you mean ack_quorum_after_one?"),
    (("sim", "--partition", "majorty"), "--partition must be a comma list of", "did you mean majority?"),
    (("run", "--read-cl", "QUORAM"), "--read-cl must be one of", "did you mean QUORUM?"),
])
def test_a_near_miss_names_the_closest_choice(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...],
                                              said: str, suggested: str) -> None:
    line = _error(capsys, *argv)
    assert said in line and suggested in line, line
    assert line.startswith(f"harness {argv[0]}: error: "), line  # named by the command it was given to


def test_nothing_close_suggests_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    line = _error(capsys, "run", "--nemesis", "xyz")
    assert "unknown nemesis 'xyz'" in line and "did you mean" not in line
    line = _error(capsys, "check", "--bogus")
    assert line.startswith("harness check: error: unrecognized arguments: --bogus") and "did you mean" not in line


def test_consistency_levels_are_case_insensitive_as_in_cql() -> None:
    from harness.cli import build_parser

    args = build_parser(only="run").parse_args(["run", "--read-cl", "quorum", "--write-cl", "local_quorum"])
    assert (args.read_cl, args.write_cl) == ("QUORUM", "LOCAL_QUORUM")


def test_the_suggestion_is_only_added_when_a_listed_choice_is_close() -> None:
    assert with_suggestion("no list here 'abc'") == "no list here 'abc'"
    assert with_suggestion("--x must be one of alpha, beta, got 'alpah'").endswith("; did you mean alpha?")
    assert with_suggestion("--x must be one of alpha, beta, got 'alpha'") == "--x must be one of alpha, beta, got 'alpha'"


def test_ringctl_names_a_misplaced_global_option_and_a_mistyped_command(capsys: pytest.CaptureFixture[str]) -> None:
    from node import ringctl

    with pytest.raises(SystemExit) as e:
        ringctl.build_parser().parse_args(["status", "--host", "127.0.0.1"])
    assert e.value.code == ringctl.USAGE_EXIT
    err = capsys.readouterr().err
    assert err.startswith("ringctl status: error: unrecognized arguments: --host 127.0.0.1") \
        and "--host is an option of `ringctl`: give it before the command" in err, err
    with pytest.raises(SystemExit):
        ringctl.build_parser().parse_args(["statuss"])
    assert "did you mean status?" in capsys.readouterr().err
