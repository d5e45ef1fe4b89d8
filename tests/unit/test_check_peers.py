"""`harness check` on the peers' own formats gives the peers' verdicts and says whose conventions it used.

The fixtures in tests/fixtures/peers/ are small hand-written histories in each peer's documented
format: Porcupine's kv test logs (EDN op maps, one per line, in a .txt), the Jepsen log lines
Porcupine's etcd tests read, and Knossos' EDN (a vector of op maps without :index) for the
cas-register, mutex and multi-register models. Each file's comment says why its verdict is what
the peer says.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checkers.conventions import detect
from harness.cli import main
from harness.history import history_format, read_history, write_edn, write_jsonl

PEERS = Path(__file__).resolve().parent.parent / "fixtures" / "peers"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main(["check", "--checkers", "linearizable", *argv])
    except SystemExit as e:  # argparse's own errors (exit 254 through harness.cli._Parser)
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize(
    "name, code, convention",
    [
        ("porcupine-kv-ok.txt", 0, "Porcupine's kv model"),
        ("porcupine-kv-bad.txt", 1, "Porcupine's kv model"),
        ("porcupine-etcd-ok.log", 0, "Porcupine's etcd model"),
        ("porcupine-etcd-bad.log", 1, "Porcupine's etcd model"),
        ("knossos-cas-register-good.edn", 0, "Knossos"),
        ("knossos-mutex-good.edn", 0, "Knossos"),
        ("knossos-mutex-bad.edn", 1, "Knossos"),
        ("knossos-multi-register-good.edn", 0, "Knossos"),
        ("knossos-multi-register-bad.edn", 1, "Knossos"),
    ],
)
def test_peer_fixture_verdicts(capsys: pytest.CaptureFixture[str], name: str, code: int, convention: str) -> None:
    got, out = run(capsys, "--history", str(PEERS / name))
    assert got == code, out
    assert out.startswith(f"conventions: {convention} (")


def test_knossos_cas_register_with_an_initial_value(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(PEERS / "knossos-cas-register-bad.edn")
    code, out = run(capsys, "--history", path, "--init", "0", "--json")
    assert code == 1
    res = json.loads(out)
    a = res["checkers"]["linearizable"]["anomalies"][0]
    assert a["details"]["op"]["invoke_index"] == 8  # the stale read, not op 5 or op 10 beside it
    assert a["details"]["overwritten_by"]["invoke_index"] == 2  # cas 0→1 hid the 0 it read
    assert res["params"]["init"] == 0 and res["params"]["conventions"] == "knossos"
    # From nil instead, the first read of 0 is the one that cannot be linearized.
    code, out = run(capsys, "--history", path)
    assert code == 1 and "read → 0 (op 0, process 0) cannot be linearized" in out


def test_conventions_decide_the_verdicts_and_options_override_them(capsys: pytest.CaptureFixture[str]) -> None:
    # Porcupine's kv log is invalid under ringlab's kv conventions (nil, list appends).
    code, out = run(capsys, "--history", str(PEERS / "porcupine-kv-ok.txt"), "--kv-append", "list", "--init", "nil")
    assert code == 1 and "--kv-append list" in out and "--init nil" in out
    # The failed cas of the etcd log is an observation for Porcupine, a non-event for Knossos.
    code, out = run(capsys, "--history", str(PEERS / "porcupine-etcd-bad.log"), "--failed-cas", "ignore")
    assert code == 0
    # Knossos' nil read is "unknown"; as the value nil it is a stale read.
    code, out = run(capsys, "--history", str(PEERS / "knossos-cas-register-good.edn"), "--nil-read", "value")
    assert code == 1 and "read → nil (op 2, process 1) cannot be linearized" in out


def test_formats_are_told_by_content() -> None:
    assert history_format(PEERS / "porcupine-kv-ok.txt") == "edn"
    assert history_format(PEERS / "porcupine-etcd-ok.log") == "jepsen-log"
    assert history_format(PEERS / "knossos-mutex-good.edn") == "edn"
    ops = list(read_history(PEERS / "porcupine-etcd-ok.log"))
    assert [(o.process, o.type, o.f) for o in ops[:2]] == [(0, "invoke", "read"), (1, "invoke", "write")]
    assert ops[8].process == "nemesis"
    timed_out = ops[10]
    assert timed_out.type == "info" and timed_out.error == "timed-out" and timed_out.value is None
    assert [o.index for o in ops] == list(range(len(ops)))


def test_detect_jepsen_and_ringlab_histories(tmp_path: Path) -> None:
    ops = list(read_history(PEERS / "knossos-cas-register-good.edn"))
    jepsen = tmp_path / "history.edn"
    write_edn(ops, jepsen)  # with :index, as Jepsen's history.edn
    conv, model = detect(jepsen)
    assert conv.name == "jepsen" and model == "register" and conv.options["nil_read"] == "unknown"
    mine = tmp_path / "history.jsonl"
    write_jsonl(ops, mine)
    conv, model = detect(mine)
    assert conv.name == "ringlab" and conv.options == {}
    assert detect(PEERS / "knossos-mutex-good.edn")[1] == "mutex"
    assert detect(PEERS / "knossos-multi-register-bad.edn")[1] == "multi-register"


def test_run_dir_reuses_model_options_from_test_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_jsonl(read_history(PEERS / "porcupine-kv-ok.txt"), run_dir / "history.jsonl")
    (run_dir / "test.json").write_text(json.dumps({"params": {"model": "kv"}}))
    code, out = run(capsys, str(run_dir))
    assert code == 1  # ringlab's conventions: nil keys, list appends
    (run_dir / "test.json").write_text(json.dumps({"params": {"model": "kv", "kv_append": "string", "init": ""}}))
    code, out = run(capsys, str(run_dir))
    assert code == 0 and "--kv-append string" in out and '--init ""' in out
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["params"]["kv_append"] == "string" and saved["params"]["init"] == ""
    # The command line overrides test.json.
    code, out = run(capsys, str(run_dir), "--kv-append", "list")
    assert code == 1


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--model", "register", "--kv-append", "string"], "--kv-append does not apply to the register model"),
        (["--model", "mutex", "--init", "0"], "--init does not apply to the mutex model"),
        (["--model", "set", "--nil-read", "unknown"], "--nil-read does not apply to the set model"),
        (["--model", "register", "--nil-read", "maybe"], "invalid choice"),
        (["--model", "multi-register", "--init", "[1, 2]"], "one value or a JSON object"),
    ],
)
def test_model_option_misuse_exits_254(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    code, out = run(capsys, "--history", str(PEERS / "knossos-mutex-good.edn"), *argv)
    assert code == 254
    assert needle in out and "Traceback" not in out
