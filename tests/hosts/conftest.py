"""Namespace test hosts for the SSH deploy tests: brought up once per session, always torn down."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.deploy import hosts as H

HOST_COUNT = 5


def _free_subnet() -> str:
    """A 10.77.x.0/24 not configured on any interface (two runs at once must not collide)."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=False).stdout
    for x in range(0, 250):
        net = f"10.77.{x}.0/24"
        if f" 10.77.{x}." not in used:
            return net
    pytest.skip("no free 10.77.x.0/24 subnet for test hosts")


def leftovers(state: H.HostsState) -> list[str]:
    """Namespaces, links and processes of ``state`` that still exist."""
    out = [h.netns for h in state.hosts if Path("/run/netns", h.netns).exists()]
    out += [h.veth for h in state.hosts if Path("/sys/class/net", h.veth).exists()]
    if state.bridge and Path("/sys/class/net", state.bridge).exists():
        out.append(state.bridge)
    out += [f"sshd pid {h.sshd_pid}" for h in state.hosts if h.sshd_pid and H._pid_alive(h.sshd_pid)]
    return out


def only_sshd_left(state: H.HostsState, timeout: float = 10.0) -> dict[str, dict[int, str]]:
    """Processes other than each host's sshd listener (and its session children), once closed
    sessions had ``timeout`` seconds to exit: a session's shell may still be exiting when the
    client has already returned, so one look would race it."""
    deadline = time.monotonic() + timeout
    while True:
        left = {h.name: {pid: H._cmdline(pid) for pid in H.netns_pids(h.netns)
                         if pid != h.sshd_pid and "sshd" not in H._cmdline(pid)}
                for h in state.hosts}
        left = {name: procs for name, procs in left.items() if procs}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


@pytest.fixture(scope="session")
def namespace_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[H.HostsState]:
    """Five namespace hosts with an sshd each; skipped with the reason when this machine cannot."""
    missing = H.missing_requirements()
    if missing:
        pytest.skip("host tests need " + "; ".join(missing))
    prefix = f"rlt{os.getpid() % 10000}"
    state_dir = tmp_path_factory.mktemp("hosts") / prefix
    # Test runs at once (xdist workers, two checkouts) each make their hosts: one at a time, so
    # the second sees the first's bridge address and picks another subnet.
    with open("/tmp/ringlab-test-hosts.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = H.hosts_up(HOST_COUNT, prefix, _free_subnet(), state_dir)
    try:
        yield state
    finally:
        if (state_dir / H.STATE_FILE).exists():
            H.hosts_down(state_dir)
    assert leftovers(state) == [], f"test hosts left behind: {leftovers(state)}"


REPO = Path(__file__).resolve().parents[2]


def ssh_campaign(state: H.HostsState, store: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    """``harness run --deploy ssh`` on the namespace hosts (their key, pinned host keys), as a user
    runs it; ``args`` add the campaign's own options."""
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", "--deploy", "ssh",
         "--nodes-file", str(state.nodes_file), "--ssh-private-key", str(state.key_path),
         "--known-hosts", str(state.known_hosts_path), "--strict-host-key-checking",
         *args, "--store", str(store)],
        cwd=REPO, capture_output=True, text=True, timeout=timeout)
