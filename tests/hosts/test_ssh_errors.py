"""Host key checking and unreachable hosts, against the namespace hosts' real sshds."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest
import trio

from harness.deploy import hosts as H
from harness.deploy.ssh import (HostKeyChanged, HostKeyUnknown, HostSpec, HostUnreachable, KnownHosts, SSHCluster,
                                SSHClusterSpec, SSHHost, SSHSettings, parse_nodes_file)
from tests.hosts.conftest import only_sshd_left

pytestmark = pytest.mark.hosts


def _settings(state: H.HostsState, known_hosts: Path, strict: bool, **kw: object) -> SSHSettings:
    return SSHSettings(private_key=state.key_path, known_hosts=known_hosts, strict_host_key_checking=strict, **kw)  # type: ignore[arg-type]


def test_changed_host_key_is_refused(namespace_hosts: H.HostsState, tmp_path: Path) -> None:
    h = namespace_hosts.hosts[0]
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = tmp_path / "known_hosts"
    known.write_text(f"{h.address} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n")
    before = known.read_text()
    for strict in (False, True):
        conn = SSHHost(HostSpec(h.address, name=h.name), _settings(namespace_hosts, known, strict), KnownHosts(known, strict))
        with pytest.raises(HostKeyChanged) as info:
            conn.connect()
        msg = str(info.value)
        assert "CHANGED" in msg and h.address in msg and h.name in msg and "ssh-keygen -R" in msg
    assert known.read_text() == before, "a changed key must never be written over the recorded one"


def test_new_host_key_accepted_once_then_pinned(namespace_hosts: H.HostsState, tmp_path: Path) -> None:
    h = namespace_hosts.hosts[1]
    known = tmp_path / "kh"
    strict = SSHHost(HostSpec(h.address, name=h.name), _settings(namespace_hosts, known, True), KnownHosts(known, True))
    with pytest.raises(HostKeyUnknown, match="strict host key checking"):
        strict.connect()
    assert not known.exists()
    conn = SSHHost(HostSpec(h.address, name=h.name), _settings(namespace_hosts, known, False), KnownHosts(known, False))
    conn.connect()
    assert conn.run(["echo", "it's quoted; $HOME"]).stdout == "it's quoted; $HOME\n"
    conn.close()
    recorded = known.read_text()
    assert h.address in recorded and "ssh-ed25519" in recorded
    # Now pinned: strict mode accepts it, and it matches the key `hosts up` generated.
    strict.connect()
    strict.close()
    assert recorded.split()[2] == Path(h.dir, "ssh_host_ed25519_key.pub").read_text().split()[1]


def test_unreachable_host_fails_setup_naming_it_and_leaves_nothing(namespace_hosts: H.HostsState, tmp_path: Path) -> None:
    state = namespace_hosts
    hosts = parse_nodes_file(state.nodes_file.read_text())[:4]
    ghost = str(ipaddress.ip_network(state.subnet).network_address + 99)  # inside our subnet, nobody there
    hosts.append(HostSpec(ghost, username="root", name="n5"))
    settings = _settings(state, state.known_hosts_path, False, connect_attempts=2, connect_timeout=3.0, backoff=0.2)
    remote_root = tmp_path / "remote" / "ringlab"
    cluster = SSHCluster(SSHClusterSpec(hosts, settings, tmp_path / "run", "s", 1, remote_root=str(remote_root)))
    with pytest.raises(HostUnreachable) as info:
        trio.run(cluster.start)
    assert f"n5 ({ghost})" in str(info.value) and "cannot reach" in str(info.value)
    assert "n1" not in str(info.value)
    assert not remote_root.exists()
    assert only_sshd_left(state) == {}, "something left running"
