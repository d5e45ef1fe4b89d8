"""``--deploy vagrant``: the SSH deploy with hosts read from ``vagrant ssh-config``.

``vagrant ssh-config`` says how to reach each VM over SSH (often a forwarded port on 127.0.0.1,
with a per-VM key); the cluster address of each VM is its private-network address, which
``vagrant/Vagrantfile`` assigns as ``<RINGLAB_NET>.1<i>`` for VM ``n<i>`` (read from $RINGLAB_NET
or the Vagrantfile, as ``vagrant up`` did).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from harness.deploy.ssh import HostSpec, name_hosts

# vagrant/Vagrantfile's default RINGLAB_NET (VirtualBox's host-only range), used only when
# neither $RINGLAB_NET nor the Vagrantfile says otherwise.
PRIVATE_NET = "192.168.56"
VAGRANT_DIR = Path(__file__).resolve().parents[2] / "vagrant"
# `RINGLAB_NET = ENV.fetch("RINGLAB_NET", "10.9.8")` or `RINGLAB_NET = "10.9.8"` in the Vagrantfile.
_VAGRANTFILE_NET = re.compile(r'^\s*RINGLAB_NET\s*=\s*(?:ENV\.fetch\(\s*["\']RINGLAB_NET["\']\s*,\s*)?'
                              r'["\'](\d{1,3}(?:\.\d{1,3}){2})["\']', re.MULTILINE)


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


def private_net(vagrant_dir: Path = VAGRANT_DIR) -> str:
    """The VMs' private network prefix as ``vagrant up`` used it: $RINGLAB_NET (the Vagrantfile
    reads it too), else the Vagrantfile's own default, else PRIVATE_NET."""
    env = os.environ.get("RINGLAB_NET")
    if env:
        return env
    try:
        m = _VAGRANTFILE_NET.search((vagrant_dir / "Vagrantfile").read_text(encoding="utf-8"))
    except OSError:
        m = None
    return m.group(1) if m else PRIVATE_NET


def vagrant_hosts(vagrant_dir: Path = VAGRANT_DIR, private_net_prefix: str | None = None) -> list[HostSpec]:
    """Run ``vagrant ssh-config`` in ``vagrant_dir`` and parse it."""
    try:
        proc = subprocess.run(["vagrant", "ssh-config"], cwd=vagrant_dir, capture_output=True, text=True,
                              check=False, timeout=120)
    except FileNotFoundError:
        raise VagrantError("`vagrant` is not installed; see docs/hosts.md") from None
    if proc.returncode != 0:
        raise VagrantError(f"`vagrant ssh-config` in {vagrant_dir} failed (are the VMs up? `vagrant up` there): "
                           f"{' '.join(proc.stderr.split())[:300]}")
    return parse_ssh_config(proc.stdout, private_net_prefix or private_net(vagrant_dir))


# Host keys of the VMs, kept apart from ~/.ssh/known_hosts: vagrant forwards every VM's SSH to a
# port on 127.0.0.1, and a VM recreated by `vagrant destroy && vagrant up` has a new host key
# behind the same port.
KNOWN_HOSTS_FILE = "ringlab_known_hosts"
# The Vagrant machine ids the known hosts were recorded for (a recreated VM gets a new id).
MACHINE_IDS_FILE = "ringlab_machine_ids.json"


def vagrant_known_hosts(vagrant_dir: Path = VAGRANT_DIR) -> Path:
    """The known_hosts file for the VMs, emptied when any VM was recreated since it was written
    (its Vagrant machine id changed), so the new host keys are learned instead of refused."""
    import json
    import logging

    state = vagrant_dir / ".vagrant"
    path = state / KNOWN_HOSTS_FILE
    ids = {str(p.parent.relative_to(state / "machines")): p.read_text(encoding="utf-8").strip()
           for p in sorted((state / "machines").glob("*/*/id"))}
    record = state / MACHINE_IDS_FILE
    try:
        old = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if old != ids:
        if path.exists():
            logging.getLogger("harness.deploy").info("Vagrant VMs were recreated; forgetting their old host keys in %s", path)
        path.unlink(missing_ok=True)
        state.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(ids, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path
