"""ringctl against a live cluster: output shapes, errors and exit codes."""

from __future__ import annotations

import subprocess
import sys

from tests.cluster.conftest import SECRET, Cluster


def _ctl(node, *args: str, secret: str | None = SECRET) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "node.ringctl", "--port", str(node.client_port)]
    if secret is not None:
        cmd += ["--secret", secret]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60)


def test_put_get_delete_status_ring_endpoints(cluster3: Cluster) -> None:
    n = cluster3[0]
    r = _ctl(n, "put", "ks", "t", "user1", "name=ada", "age=36", "-c", "QUORUM")
    assert r.returncode == 0 and r.stdout.startswith("ok timestamp="), r.stderr
    r = _ctl(n, "get", "ks", "t", "user1", "-c", "QUORUM")
    assert "name = 'ada'" in r.stdout and "age = 36" in r.stdout
    assert _ctl(n, "delete", "ks", "t", "user1", "age").returncode == 0
    assert "age" not in _ctl(n, "get", "ks", "t", "user1", "-c", "ALL").stdout
    status = _ctl(n, "status").stdout
    assert "Datacenter: dc1" in status and status.count("UN ") == 3
    assert len(_ctl(n, "ring").stdout.splitlines()) == 1 + 3 * 16
    eps = _ctl(n, "getendpoints", "ks", "user1").stdout.splitlines()
    assert eps[0].startswith("token ") and sorted(eps[1:]) == ["n1", "n2", "n3"]
    assert "offset_us=0" in _ctl(n, "clock").stdout or "offset_us=" in _ctl(n, "clock").stdout


def test_errors_and_exit_codes(cluster3: Cluster) -> None:
    n = cluster3[0]
    r = _ctl(n, "status", secret=None)  # a user's mistake, named with the ways to give a secret
    assert r.returncode == 254 and "Unauthorized" in r.stderr and "--secret" in r.stderr
    r = _ctl(n, "get", "ks", "missing", "k")
    assert r.returncode == 1 and "InvalidRequest" in r.stderr and "unknown table" in r.stderr
    r = _ctl(n, "get", "ks", "t", "k", "-c", "MOST")
    assert r.returncode == 1 and "unknown consistency" in r.stderr
    r = subprocess.run([sys.executable, "-m", "node.ringctl", "--port", "1", "status"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "cannot reach" in r.stderr


def test_route_sets_and_lists_and_rejects_half_an_argument(cluster3: Cluster) -> None:
    n = cluster3[0]
    r = _ctl(n, "route", "n9")
    assert r.returncode == 254 and "host:port" in r.stderr
    r = _ctl(n, "route", "n9", "nowhere")
    assert r.returncode == 1 and "expected 'host:port'" in r.stderr
    assert _ctl(n, "route", "n9", "127.0.0.1:9").returncode == 0
    assert "n9 127.0.0.1:9" in _ctl(n, "route").stdout.splitlines()


def test_malformed_pairs_exit_2_before_connecting() -> None:
    for args in (["put", "ks", "t", "k", "no-equals"], ["faults", "drop_hints"], ["route", "n2"]):
        r = subprocess.run([sys.executable, "-m", "node.ringctl", "--port", "1", *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 254 and "ringctl: error:" in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
