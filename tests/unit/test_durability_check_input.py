"""`harness check` on hostile input: undecodable, too deep or too long input is exit 254 with
file:line (never a traceback and exit 255), and a history with no operations is unknown (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import harness.history as history
from checkers.synth import generate
from harness.cli import main
from harness.history import write_jsonl


def _check(path: Path, *extra: str) -> int:
    return main(["check", "--history", str(path), "--model", "register", *extra])


def _ops(path: Path) -> list[str]:
    write_jsonl(generate("register", n_ops=20, clients=2, seed=1), path)
    return path.read_text().splitlines()


def test_invalid_utf8_in_jsonl_is_254_with_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.jsonl"
    lines = _ops(path)
    path.write_bytes(("\n".join(lines[:3]) + "\n").encode() + b'{"bad": "\xff\xfe"}\n' +
                     ("\n".join(lines[3:]) + "\n").encode())
    assert _check(path) == 254
    err = capsys.readouterr().err
    assert f"{path}:4: not valid UTF-8" in err and "Traceback" not in err


def test_invalid_utf8_in_edn_is_254_with_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.edn"
    path.write_bytes(b'{:type :invoke, :f :read, :process 0}\n{:type :ok, :f :read, :process 0, :value "\xff"}\n')
    assert _check(path) == 254
    assert f"{path}:2: not valid UTF-8" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["jsonl", "edn"])
def test_deep_nesting_is_254_with_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    path = tmp_path / f"h.{fmt}"
    if fmt == "jsonl":
        path.write_text('{"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "write", "value": '
                        + "[" * 100_000 + "]" * 100_000 + "}\n")
    else:
        path.write_text("{:type :invoke, :f :read, :process 0}\n{:type :ok, :f :read, :process 0, :value "
                        + "[" * 100_000 + "]" * 100_000 + "}\n")
    assert _check(path) == 254
    err = capsys.readouterr().err
    assert f"{path}:" in err and "nested deeper than" in err and "Traceback" not in err


def test_a_line_over_the_limit_is_254_without_reading_it_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "h.jsonl"
    lines = _ops(path)
    path.write_text(lines[0] + "\n" + '{"value": "' + "x" * 5000 + '"}\n' + "\n".join(lines[1:]) + "\n")
    assert _check(path) == 254
    assert f"{path}:2: line longer than 1000 bytes" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["", "\n\n", '{"index": 0, "time": 0, "process": "nemesis", "type": "info", "f": "start"}\n'])
def test_an_empty_or_operation_less_history_is_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      content: str) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(content)
    assert _check(path) == 2
    out = capsys.readouterr().out
    assert "no client operations" in out and "Overall: unknown" in out
    assert _check(path, "--json") == 2
    assert json.loads(capsys.readouterr().out)["valid"] == "unknown"


def test_the_cli_process_exits_254_not_255_on_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(b'{"index": 0, "\xc3\x28": 1}\n')
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "check", "--history", str(path)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 254, proc.stderr
    assert "Traceback" not in proc.stderr and f"{path}:1" in proc.stderr
