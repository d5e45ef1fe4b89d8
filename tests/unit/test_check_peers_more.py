"""`harness check` on hostile inputs in the peers' formats: a clear error naming the file and line
(exit 254), or a documented tolerant behaviour, never a traceback; and the Jepsen semantics of
`fail`, `info` and never-completed operations where the peers' own parsers differ.

Every history here is a few hand-written lines (docs/history-format.md, "Validated against the
peers' own test data", lists the tolerant behaviours and the differences from the peers).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.history import op_line

T = "\t"


def log(*lines: str) -> str:
    """Jepsen log lines as Porcupine's etcd tests read them: 'P :type :f value' per line."""
    return "".join(f"INFO  jepsen.util - {T.join(line.split(' ', 3))}\n" for line in lines)


def run(capsys: pytest.CaptureFixture[str], path: Path, *argv: str) -> tuple[int, str]:
    try:
        code = main(["check", "--checkers", "linearizable", "--history", str(path), *argv])
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


HOSTILE = [
    # (file name, content, line the error names, words the error says)
    ("long-int.edn", "[{:process 0, :type :invoke, :f :write, :value 1}\n"
     " {:process 0, :type :ok, :f :write, :value " + "7" * 5000 + "}]\n", 2, "5000 digits"),
    ("long-int.log", log("0 :invoke :write 1", "0 :ok :write " + "7" * 5000), 2, "5000 digits"),
    ("list-process.edn", "[{:process 0, :type :invoke, :f :read, :value nil}\n"
     " {:process [0], :type :ok, :f :read, :value nil}]\n", 2, ":process must be an integer or :nemesis"),
    ("nil-process.edn", "[{:process nil, :type :invoke, :f :read, :value nil}]\n", 1, "got nil"),
    ("no-process.edn", "[{:type :invoke, :f :read, :value nil}]\n", 1, "missing :process"),
    ("no-process.jsonl", '{"index": 0, "time": 0, "type": "invoke", "f": "read", "value": null}\n', 1,
     "missing field 'process'"),
    ("not-an-op.edn", "[{:process 0, :type :invoke, :f :read, :value nil}\n 42]\n", 2, "expected an EDN map"),
    ("not-an-op.jsonl", '{"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "read", "value": null}\n'
     "this is not json\n"
     '{"index": 1, "time": 1, "process": 0, "type": "ok", "f": "read", "value": null}\n', 2, "not valid JSON"),
    ("unknown-f.edn", "[{:process 0, :type :invoke, :f :read, :value nil}\n"
     " {:process 0, :type :ok, :f :read, :value nil}\n"
     " {:process 1, :type :invoke, :f :frobnicate, :value 3}\n"
     " {:process 1, :type :ok, :f :frobnicate, :value 3}]\n", 3, "unknown operation f='frobnicate'"),
    ("unknown-f.log", log("0 :invoke :read nil", "0 :ok :read nil", "1 :invoke :frobnicate 3"), 3,
     "unknown operation f='frobnicate'"),
    ("double-invoke.log", log("0 :invoke :write 1", "0 :invoke :write 2", "0 :ok :write 2"), 2,
     "process 0 invoked again before op 0 completed"),
    ("double-invoke.edn", "[{:process 3, :type :invoke, :f :write, :value 1}\n"
     " {:process 4, :type :invoke, :f :read, :value nil}\n"
     " {:process 3, :type :invoke, :f :write, :value 2}]\n", 3, "process 3 invoked again"),
    ("orphan.jsonl", '{"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "write", "value": 1}\n'
     '{"index": 1, "time": 1, "process": 0, "type": "ok", "f": "write", "value": 1}\n'
     '{"index": 2, "time": 2, "process": 5, "type": "ok", "f": "read", "value": 1}\n', 3,
     "ok from process 5 without an invocation"),
    ("orphan.log", log("2 :ok :write 1", "0 :invoke :read nil", "0 :ok :read 1"), 1, "without an invocation"),
    ("bad-cas.edn", "[{:process 0, :type :invoke, :f :cas, :value 7}\n"
     " {:process 0, :type :ok, :f :cas, :value 7}]\n", 1, "cas value must be [expected, new]"),
    ("unclosed-value.log", log("0 :invoke :cas [1", "0 :ok :cas [1 2]"), 1, "unclosed '['"),
    ("truncated.edn", "[{:process 0, :type :invoke, :f :write, :value 1}\n {:process 0, :type :ok, :f :wr", 2,
     "EDN ends inside an unclosed '{'"),
]


@pytest.mark.parametrize("name, content, line, words", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_history_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
                                              content: str, line: int, words: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    code, out = run(capsys, path)
    assert code == 254, out
    assert f"{path}:{line}: " in out and words in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize("name", ["bad.edn", "bad.jsonl", "bad.log"])
def test_non_utf8_names_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    first = {"bad.edn": "[{:process 0, :type :invoke, :f :write, :value 1}\n",
             "bad.jsonl": '{"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "write", "value": 1}\n',
             "bad.log": log("0 :invoke :write 1")}[name]
    second = {"bad.edn": b' {:process 0, :type :ok, :f :write, :value "\xff"}]\n',
              "bad.jsonl": b'{"index": 1, "time": 1, "process": 0, "type": "ok", "f": "write", "value": "\xff"}\n',
              "bad.log": b"INFO  jepsen.util - 0\t:ok\t:write\t\xfe\n"}[name]
    path = tmp_path / name
    path.write_bytes(first.encode() + second)
    code, out = run(capsys, path)
    assert code == 254 and f"{path}:2: not valid UTF-8" in out and "Traceback" not in out


def test_cut_off_last_lines_are_dropped_as_an_interrupted_run_leaves_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # JSONL and Jepsen logs are appended a line at a time: a last line without its newline that
    # does not parse was being written when the run stopped. Its operation never completed.
    jsonl = tmp_path / "cut.jsonl"
    jsonl.write_text('{"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "write", "value": 1}\n'
                     '{"index": 1, "time": 1, "process": 0, "type": "ok", "f": "wr')
    code, out = run(capsys, jsonl)
    assert code == 0 and "info 1" in out
    for cut in ("0\t:ok\t:read\t[1", "0\t:ok\t:read\t"):
        etcd = tmp_path / "cut.log"
        etcd.write_text(log("1 :invoke :write 1", "1 :ok :write 1", "0 :invoke :read nil")
                        + "INFO  jepsen.util - " + cut)
        code, out = run(capsys, etcd)
        assert code == 0 and "info 1" in out, (cut, out)
    # With its newline the same line is damage in the middle of the file, not an interruption.
    etcd.write_text(log("1 :invoke :write 1", "1 :ok :write 1", "0 :invoke :read nil")
                    + "INFO  jepsen.util - 0\t:ok\t:read\t[1\n")
    code, out = run(capsys, etcd)
    assert code == 254 and f"{etcd}:4: " in out


def test_huge_values_and_a_byte_order_mark_are_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = "v" * 2_000_000
    edn = tmp_path / "big.edn"
    edn.write_text(f'\ufeff[{{:process 0, :type :invoke, :f :write, :value "{big}"}}\n'
                   f' {{:process 0, :type :ok, :f :write, :value "{big}"}}\n'
                   ' {:process 1, :type :invoke, :f :read, :value nil}\n'
                   f' {{:process 1, :type :ok, :f :read, :value "{big}x"}}]\n')
    code, out = run(capsys, edn)
    assert code == 1 and "cannot be linearized" in out


def test_op_line_in_each_format(tmp_path: Path) -> None:
    edn = tmp_path / "h.edn"
    edn.write_text("[{:process 0,\n  :type :invoke, :f :read, :value nil}\n {:process 0, :type :ok, :f :read,\n"
                   "  :value nil}]\n")
    assert [op_line(edn, 0), op_line(edn, 1), op_line(edn, 2)] == [2, 4, None]
    etcd = tmp_path / "h.log"
    etcd.write_text("a line that is no operation\n" + log("0 :invoke :read nil", "0 :ok :read nil"))
    assert [op_line(etcd, 0), op_line(etcd, 1)] == [2, 3]
    jsonl = tmp_path / "h.jsonl"
    jsonl.write_text('{"index": 7, "time": 0, "process": 0, "type": "invoke", "f": "read", "value": null}\n')
    assert op_line(jsonl, 7) == 1 and op_line(jsonl, 0) is None
    assert op_line(tmp_path / "missing.edn", 0) is None


def test_a_failed_write_did_not_happen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Jepsen's :fail means the operation certainly did not take effect. Porcupine's etcd parser
    # matches no ':fail :write' line, so it keeps the write pending (as if it were :info) and
    # would accept this read of 2; by Jepsen's semantics the read saw a write that never happened.
    path = tmp_path / "fail-write.log"
    path.write_text(log("0 :invoke :write 1", "0 :ok :write 1", "1 :invoke :write 2", "1 :fail :write 2",
                        "2 :invoke :read nil", "2 :ok :read 2"))
    code, out = run(capsys, path)
    assert code == 1 and "read → 2" in out
    # As :info (a timeout) the same write may have happened: valid.
    path.write_text(log("0 :invoke :write 1", "0 :ok :write 1", "1 :invoke :write 2", "1 :info :write :timed-out",
                        "2 :invoke :read nil", "2 :ok :read 2"))
    code, out = run(capsys, path)
    assert code == 0, out


def test_a_never_completed_get_constrains_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Porcupine's kv parser closes a never-completed get with the result "" at the end of the
    # history, which here (the key holds "x 0 0 y" by then) would make the history invalid. An
    # operation that never completed is indeterminate: it may not have happened at all.
    path = tmp_path / "kv.txt"
    path.write_text('{:process 0, :type :invoke, :f :append, :key "1", :value "x 0 0 y"}\n'
                    '{:process 0, :type :ok, :f :append, :key "1", :value "x 0 0 y"}\n'
                    '{:process 1, :type :invoke, :f :get, :key "1", :value nil}\n'
                    '{:process 0, :type :invoke, :f :get, :key "1", :value nil}\n'
                    '{:process 0, :type :ok, :f :get, :key "1", :value "x 0 0 y"}\n')
    code, out = run(capsys, path)
    assert code == 0 and out.startswith("conventions: Porcupine's kv model"), out


def test_identical_timed_out_writes_can_each_take_effect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The search tries identical info calls in invocation order only (either can stand in for
    # the other); both must still be usable, one after each write of 2.
    two = log("0 :invoke :write 1", "1 :invoke :write 1", "0 :info :write :timed-out", "1 :info :write :timed-out",
              "2 :invoke :write 2", "2 :ok :write 2", "3 :invoke :read nil", "3 :ok :read 1",
              "2 :invoke :write 2", "2 :ok :write 2", "3 :invoke :read nil", "3 :ok :read 1")
    path = tmp_path / "twins.log"
    path.write_text(two)
    code, out = run(capsys, path)
    assert code == 0, out
    # With one timed-out write of 1 there is nothing left to explain the second read.
    path.write_text(two.replace("INFO  jepsen.util - 1\t:invoke\t:write\t1\n", "")
                    .replace("INFO  jepsen.util - 1\t:info\t:write\t:timed-out\n", ""))
    code, out = run(capsys, path)
    assert code == 1 and "read → 1" in out, out


def test_porcupines_long_etcd_log_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Porcupine's 20000-operation etcd logs put a space between :type and :f and a field
    # after the value: "3 \t:ok :read \t66 \t:hint 2913". The value is the first form.
    path = tmp_path / "rr.log"
    path.write_text("INFO  jepsen.util - 3 \t:invoke :write \t66 \t:hint 0\n"
                    "INFO  jepsen.util - 3 \t:ok :write \t66 \t:hint 1\n"
                    "INFO  jepsen.util - 4 \t:invoke :read \tnil \t:hint 0\n"
                    "INFO  jepsen.util - 4 \t:ok :read \t66 \t:hint 1\n")
    code, out = run(capsys, path)
    assert code == 0 and "ops 2, ok 2" in out and out.startswith("conventions: Porcupine's etcd model"), out
    path.write_text(path.read_text() + "INFO  jepsen.util - 5 \t:invoke :read \tnil \t:hint 0\n"
                    "INFO  jepsen.util - 5 \t:ok :read \t67 \t:hint 1\n")
    code, out = run(capsys, path)
    assert code == 1 and "read → 67" in out, out


def test_jepsen_log_lines_padded_with_spaces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Some of Porcupine's etcd logs pad the fields with spaces instead of tabs
    # ("0   :ok     :read   nil"), as its regular expressions (\s+) allow.
    path = tmp_path / "spaces.log"
    path.write_text("INFO  jepsen.util - 2   :invoke :write  2\n"
                    "INFO  jepsen.util - 2   :ok     :write  2\n"
                    "INFO  jepsen.util - 0   :invoke :read   nil\n"
                    "INFO  jepsen.util - 0   :fail   :read   :timed-out\n"
                    "INFO  jepsen.util - 14  :invoke :cas    [2 4]\n"
                    "INFO  jepsen.util - 14  :info   :cas    :timed-out\n"
                    "INFO  jepsen.util - 1   :invoke :read   nil\n"
                    "INFO  jepsen.util - 1   :ok     :read   4\n")
    code, out = run(capsys, path)
    assert code == 0 and "ops 4" in out and out.startswith("conventions: Porcupine's etcd model"), out
    path.write_text(path.read_text().replace(":read   4", ":read   3"))
    code, out = run(capsys, path)
    assert code == 1 and "read → 3" in out, out
