"""``--deploy vagrant``: the SSH deploy with hosts read from ``vagrant ssh-config``.

``vagrant ssh-config`` says how to reach each VM over SSH (often a forwarded port on 127.0.0.1,
with a per-VM key); the cluster address of each VM is its private-network address, which
``vagrant/Vagrantfile`` assigns as ``<PRIVATE_NET>.1<i>`` for VM ``n<i>``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.deploy.ssh import HostSpec, name_hosts

# Must match vagrant/Vagrantfile (RINGLAB_NET there): VirtualBox's default host-only range.
PRIVATE_NET = "192.168.56"
VAGRANT_DIR = Path(__file__).resolve().parents[2] / "vagrant"


class VagrantError(RuntimeError):
    """vagrant is missing, the VMs are not up, or its output could not be read."""


def parse_ssh_config(text: str, private_net: str = PRIVATE_NET) -> list[HostSpec]:
    """``vagrant ssh-config`` output → one HostSpec per ``Host`` block, addressed on the private network."""
    hosts: list[HostSpec] = []
    current: dict[str, str] = {}

    def flush() -> None:
        if not current:
            return
        name = current["host"]
        if "hostname" not in current:
            raise VagrantError(f"vagrant ssh-config: Host {name} has no HostName")
        address = current.get("address")
        if address is None and name.startswith("n") and name[1:].isdigit():
            address = f"{private_net}.1{int(name[1:])}"
        hosts.append(HostSpec(host=current["hostname"], port=int(current.get("port", "22")),
                              username=current.get("user"), name=name, address=address,
                              key_filename=current.get("identityfile")))

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        key, value = key.lower(), value.strip().strip('"')
        if key == "host":
            flush()
            current = {"host": value}
        elif current and key in ("hostname", "user", "port", "identityfile"):
            current.setdefault(key, value)
    flush()
    if not hosts:
        raise VagrantError("vagrant ssh-config printed no hosts; are the VMs up (`vagrant up` in vagrant/)?")
    return name_hosts(hosts, "vagrant ssh-config")


def vagrant_hosts(vagrant_dir: Path = VAGRANT_DIR, private_net: str = PRIVATE_NET) -> list[HostSpec]:
    """Run ``vagrant ssh-config`` in ``vagrant_dir`` and parse it."""
    try:
        proc = subprocess.run(["vagrant", "ssh-config"], cwd=vagrant_dir, capture_output=True, text=True,
                              check=False, timeout=120)
    except FileNotFoundError:
        raise VagrantError("`vagrant` is not installed; see docs/hosts.md") from None
    if proc.returncode != 0:
        raise VagrantError(f"`vagrant ssh-config` in {vagrant_dir} failed (are the VMs up? `vagrant up` there): "
                           f"{' '.join(proc.stderr.split())[:300]}")
    return parse_ssh_config(proc.stdout, private_net)
