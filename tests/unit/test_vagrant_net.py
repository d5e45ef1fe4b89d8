"""`--deploy vagrant` addresses the VMs on the private network the Vagrantfile gave them, not a
hard-coded one (issue 18)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.deploy.vagrant import PRIVATE_NET, private_net, vagrant_hosts

SSH_CONFIG = """Host n1
  HostName 127.0.0.1
  User vagrant
  Port 2222
Host n2
  HostName 127.0.0.1
  User vagrant
  Port 2200
"""


def test_the_network_comes_from_the_environment_then_the_vagrantfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RINGLAB_NET", raising=False)
    assert private_net(tmp_path) == PRIVATE_NET  # no Vagrantfile
    (tmp_path / "Vagrantfile").write_text('RINGLAB_NET = ENV.fetch("RINGLAB_NET", "10.77.3")\n')
    assert private_net(tmp_path) == "10.77.3"
    monkeypatch.setenv("RINGLAB_NET", "172.20.9")
    assert private_net(tmp_path) == "172.20.9"


def test_vagrant_hosts_are_addressed_on_that_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RINGLAB_NET", raising=False)
    (tmp_path / "Vagrantfile").write_text('RINGLAB_NET = "10.77.3"\n')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vagrant").write_text(f"#!/bin/sh\ncat <<'EOF'\n{SSH_CONFIG}EOF\n")
    (bin_dir / "vagrant").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    hosts = vagrant_hosts(tmp_path)
    assert [(h.name, h.address, h.port) for h in hosts] == [("n1", "10.77.3.11", 2222), ("n2", "10.77.3.12", 2200)]


def machine(vagrant_dir: Path, name: str, machine_id: str) -> None:
    d = vagrant_dir / ".vagrant" / "machines" / name / "virtualbox"
    d.mkdir(parents=True, exist_ok=True)
    (d / "id").write_text(machine_id)


def test_host_keys_of_recreated_vms_are_forgotten(tmp_path: Path) -> None:
    from harness.deploy.vagrant import vagrant_known_hosts

    machine(tmp_path, "n1", "aaa")
    machine(tmp_path, "n2", "bbb")
    path = vagrant_known_hosts(tmp_path)
    assert path == tmp_path / ".vagrant" / "ringlab_known_hosts"
    path.write_text("[127.0.0.1]:2222 ssh-ed25519 AAAAold\n")
    assert vagrant_known_hosts(tmp_path).read_text() == "[127.0.0.1]:2222 ssh-ed25519 AAAAold\n"  # same VMs: kept
    machine(tmp_path, "n1", "ccc")  # vagrant destroy n1 && vagrant up n1
    assert not vagrant_known_hosts(tmp_path).exists()  # the new key is learned, not refused
