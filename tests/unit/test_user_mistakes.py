"""User mistakes are one-line errors with exit 254, never a traceback with "internal error"
(issue 18): Vagrant without VMs, a Toxiproxy URL with nothing behind it, host clock faults on
hosts sharing this machine's clock, `serve` on a bad port, Ctrl-C on `serve`, a mistyped --config."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from harness import run as harness_run
from harness.serve import serve_command

REPO = Path(__file__).resolve().parents[2]


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0] and "internal error" not in err[0]
    return err[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_vagrant(bin_dir: Path, script: str) -> None:
    bin_dir.mkdir()
    exe = bin_dir / "vagrant"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)


def test_vagrant_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert cli.main(["run", "--deploy", "vagrant", "--store", str(tmp_path / "s")]) == 254
    assert one_line(capsys) == "harness run: error: --deploy vagrant: `vagrant` is not installed; see docs/hosts.md"
    assert not (tmp_path / "s").exists()  # refused before any run directory


def test_vagrant_without_vms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake_vagrant(tmp_path / "bin", "echo 'The machine n1 is not created.' >&2\necho 'Run `vagrant up` first.' >&2\nexit 1\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert cli.main(["run", "--deploy", "vagrant", "--store", str(tmp_path / "s")]) == 254
    line = one_line(capsys)
    assert line.startswith("harness run: error: --deploy vagrant: `vagrant ssh-config` in ")
    assert line.endswith("failed (are the VMs up? `vagrant up` there): The machine n1 is not created. Run `vagrant up` first.")


def test_vagrant_up_but_printing_no_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake_vagrant(tmp_path / "bin", "exit 0\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert cli.main(["run", "--deploy", "vagrant", "--store", str(tmp_path / "s")]) == 254
    assert one_line(capsys) == ("harness run: error: --deploy vagrant: vagrant ssh-config printed no hosts; "
                                "are the VMs up (`vagrant up` in vagrant/)?")


def test_toxiproxy_pointing_at_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert cli.main(["run", "--toxiproxy", f"http://127.0.0.1:{port}", "--store", str(tmp_path / "s")]) == 254
    line = one_line(capsys)
    assert line.startswith(f"harness run: error: --toxiproxy http://127.0.0.1:{port}: no Toxiproxy API there (cannot reach")
    assert not (tmp_path / "s").exists()
    assert cli.main(["run", "--toxiproxy", "localhost", "--store", str(tmp_path / "s")]) == 254
    assert one_line(capsys) == "harness run: error: --toxiproxy: toxiproxy URL must look like http://HOST:PORT, got 'localhost'"


def test_host_clock_on_hosts_sharing_this_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # The refusal itself is tested on real namespace hosts (tests/hosts/test_ssh_cluster.py);
    # here: what the campaign runner makes of it once the deployment has been torn down.
    from nemesis.hostclock import SharedClockError

    async def refused(opts: harness_run.RunOptions, run_dir: Path, progress: object) -> None:
        raise SharedClockError("hosts n1, n2 share this machine's kernel clock (same boot id).")

    monkeypatch.setattr(harness_run, "campaign", refused)
    code = harness_run.run_command(harness_run.RunOptions(nemesis="clock", nodes=3, store=str(tmp_path)))
    assert code == 254
    assert capsys.readouterr().err.strip().splitlines() == [
        "harness run: error: --nemesis clock: hosts n1, n2 share this machine's kernel clock (same boot id). "
        "Rerun with --clock-mode admin."]


def test_config_value_of_the_wrong_type_names_the_option_and_the_file(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text('time_limit = "thirty"\n')
    assert cli.main(["run", "--config", str(cfg)]) == 254
    assert one_line(capsys) == f"harness run: error: --config {cfg}: option 'time_limit' must be a number, got 'thirty'"
    cfg.write_text("validation_faults = \"drop_hints\"\n")
    assert cli.main(["run", "--config", str(cfg)]) == 254
    assert one_line(capsys) == (f"harness run: error: --config {cfg}: option 'validation_faults' must be a list of "
                                f"strings, got 'drop_hints'")
    cfg.write_text("nodes = true\n")
    assert cli.main(["run", "--config", str(cfg)]) == 254
    assert one_line(capsys) == f"harness run: error: --config {cfg}: option 'nodes' must be an integer or a string, got True"


def test_config_accepts_what_the_flags_accept() -> None:
    from harness import config_file

    path = Path(__file__).with_name("_config_ok.toml")
    try:
        path.write_text('time_limit = 30\nconcurrency = 4\nnodes = "h1,h2"\nseed = 5\nvalidation_faults = ["drop_hints"]\n'
                        'leave_db_running = true\n')
        values = config_file.load(str(path), harness_run.RunOptions)
    finally:
        path.unlink()
    assert values == {"time_limit": 30.0, "concurrency": "4", "nodes": "h1,h2", "seed": 5,
                      "validation_faults": ["drop_hints"], "leave_db_running": True}


def test_serve_on_a_port_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert serve_command(tmp_path, "127.0.0.1", port) == 254
    assert one_line(capsys) == f"harness serve: cannot listen on 127.0.0.1:{port}: Address already in use"


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_serve_on_an_impossible_port(tmp_path: Path, port: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--store", str(tmp_path), "--port", port]) == 254
    assert one_line(capsys) == f"harness serve: --port must be 0-65535 (0: any free port), got {port}"


def test_ctrl_c_stops_serve_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "harness", "serve", "--store", str(tmp_path), "--port", "0"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        assert "harness serve: http://127.0.0.1:" in proc.stdout.readline()  # listening: signals are handled
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and err.strip() == "harness serve: stopped", err


def test_cluster_up_over_a_running_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cluster.json").write_text("{}")
    assert cli.main(["cluster", "up", "--dir", str(tmp_path)]) == 254
    assert one_line(capsys) == (f"harness cluster: error: a cluster is already described by {tmp_path / 'cluster.json'}; "
                                f"stop it with `harness cluster down --dir {tmp_path}` first")


def test_hosts_down_with_nothing_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["hosts", "down", "--state-dir", str(tmp_path)]) == 254
    assert one_line(capsys) == (f"harness hosts down: error: no test hosts recorded in {tmp_path} (no state.json); "
                                "nothing to do")


@pytest.mark.parametrize("nemesis", ["latency", "all"])
def test_latency_over_ssh_is_refused_before_anything_starts(tmp_path: Path, nemesis: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--deploy", "ssh", "--nodes", "h1,h2,h3", "--nemesis", nemesis,
                     "--store", str(tmp_path / "s")]) == 254
    assert one_line(capsys).startswith(f"harness run: error: --nemesis {nemesis}: latency needs a fault proxy, "
                                       "and --deploy ssh partitions with iptables")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("how", ["--history", "run-dir"])
def test_check_of_a_history_that_is_a_directory(tmp_path: Path, how: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "history.jsonl").mkdir()
    argv = ["check", "--history", str(tmp_path / "history.jsonl")] if how == "--history" else ["check", str(tmp_path)]
    assert cli.main(argv) == 254
    assert "not a file" in one_line(capsys)
