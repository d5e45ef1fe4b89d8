"""Test hosts on one machine: network namespaces on a bridge, each with its own address and sshd.

``harness hosts up`` makes N namespaces (``<prefix>-n1`` ...) joined by a bridge in the root
namespace, gives each an address of a private subnet and starts Debian's sshd inside it with a
freshly generated host key, authorizing a harness key generated for the purpose. The SSH deploy
then treats them as separate machines: its own address, its own iptables, its own processes.
They share this machine's kernel, filesystem and clock (so clock faults are refused on them).

Everything ``up`` creates is recorded in ``<state-dir>/state.json`` *as it is created*, so ``down``
removes exactly that (also after a half-failed ``up``) and nothing else.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
# Where the state of a host set lives unless --state-dir says otherwise; one dir per prefix so two
# host sets (e.g. a test run and a manual one) never share state.
DEFAULT_STATE_ROOT = Path("/tmp/ringlab-hosts")
DEFAULT_PREFIX = "rl"
# A private range that exists only inside this machine's namespaces.
DEFAULT_SUBNET = "10.77.0.0/24"
DEFAULT_COUNT = 5
# Host i gets subnet address HOST_OFFSET + i (the bridge, i.e. the control machine, gets .1).
HOST_OFFSET = 10
# Linux interface names are at most 15 bytes (IFNAMSIZ - 1); prefixes must leave room for "br0"/"v12".
MAX_PREFIX = 8
SSHD = "/usr/sbin/sshd"
# sshd opens its port a few ms after daemonizing; on a loaded 2-core box give it a few seconds.
SSHD_READY_TIMEOUT = 10.0
# sshd refuses to start without its privilege-separation directory (Debian creates it at boot).
PRIVSEP_DIR = Path("/run/sshd")
REQUIRED_TOOLS = ("ip", "ssh-keygen", SSHD, "iptables")


class HostsError(RuntimeError):
    """The test hosts could not be created or removed; the message says which step failed."""


class HostsUsageError(HostsError):
    """The command cannot work as given (no root, a prefix in use, nothing recorded): exit 254."""


@dataclass
class HostEntry:
    """One namespace host as created."""

    name: str
    netns: str
    veth: str
    address: str
    dir: str
    sshd_pid: int | None = None


@dataclass
class HostsState:
    """Everything ``up`` created, in creation order (``down`` undoes it in reverse)."""

    prefix: str
    subnet: str
    state_dir: str
    bridge: str | None = None
    bridge_address: str | None = None
    hosts: list[HostEntry] = field(default_factory=list)
    created_privsep_dir: bool = False

    @property
    def key_path(self) -> Path:
        """The harness's private key (authorized on every host)."""
        return Path(self.state_dir) / "id_ed25519"

    @property
    def known_hosts_path(self) -> Path:
        """A known_hosts file with every host's generated key."""
        return Path(self.state_dir) / "known_hosts"

    @property
    def nodes_file(self) -> Path:
        """A nodes file for ``harness run --deploy ssh --nodes-file``."""
        return Path(self.state_dir) / "hosts.txt"

    def addresses(self) -> dict[str, str]:
        """Host name → address."""
        return {h.name: h.address for h in self.hosts}

    def save(self) -> None:
        """Write state.json atomically."""
        path = Path(self.state_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, state_dir: Path) -> HostsState:
        """Read state.json (HostsError when there is none)."""
        path = Path(state_dir) / STATE_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise HostsUsageError(f"no test hosts recorded in {state_dir} (no {STATE_FILE}); nothing to do") from None
        hosts = [HostEntry(**h) for h in raw.pop("hosts", [])]
        return cls(**raw, hosts=hosts)


def missing_requirements() -> list[str]:
    """What this machine lacks to run namespace hosts (empty when everything is there)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces, bridges and iptables need it)")
    for tool in REQUIRED_TOOLS:
        if shutil.which(tool) is None and not Path(tool).exists():
            missing.append(f"{tool} (Debian: {'openssh-server' if 'sshd' in tool else 'openssh-client' if 'ssh' in tool else tool if tool == 'iptables' else 'iproute2'})")
    return missing


def _sh(argv: list[str], what: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise HostsError(f"{what} failed: {' '.join(argv)}: {(proc.stderr or proc.stdout).strip()}")
    return proc


def _subnet_in_use(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str | None:
    """The interface of this machine (root namespace) with an address in ``net``, if any."""
    out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] in ("inet", "inet6"):
            try:
                if ipaddress.ip_interface(fields[3]).ip in net:
                    return fields[1]
            except ValueError:
                continue
    return None


def _netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not a running sshd.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _port_open(address: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


SSHD_CONFIG = """\
# Written by `harness hosts up`; this sshd serves one ringlab test host only.
Port 22
ListenAddress {address}
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {state_dir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# The state dir may live under /tmp with loose permissions; the key files themselves are 0600.
StrictModes no
PrintMotd no
Subsystem sftp internal-sftp
LogLevel INFO
"""


def hosts_up(count: int = DEFAULT_COUNT, prefix: str = DEFAULT_PREFIX, subnet: str = DEFAULT_SUBNET,
             state_dir: Path | None = None, authorized_keys: list[Path] | None = None) -> HostsState:
    """Create ``count`` namespace hosts with an sshd each; on failure remove what was made and raise."""
    problems = missing_requirements()
    if problems:
        raise HostsUsageError("cannot create test hosts; missing: " + "; ".join(problems))
    if not prefix.isalnum() or len(prefix) > MAX_PREFIX:
        raise HostsUsageError(f"prefix must be 1-{MAX_PREFIX} letters/digits (it goes into interface names), got {prefix!r}")
    net = ipaddress.ip_network(subnet)
    if not net.is_private or net.version != 4:
        raise HostsUsageError(f"subnet must be a private IPv4 range, got {subnet}")
    if count < 1:
        raise HostsUsageError(f"--count must be at least 1, got {count}")
    if HOST_OFFSET + count >= net.num_addresses - 1:
        raise HostsUsageError(f"{count} hosts do not fit in {subnet}")
    state_dir = Path(state_dir or DEFAULT_STATE_ROOT / prefix)
    if (state_dir / STATE_FILE).exists():
        raise HostsUsageError(f"test hosts already recorded in {state_dir}; run `harness hosts down --state-dir {state_dir}` first")
    bridge = f"{prefix}br0"
    for i in range(1, count + 1):
        if _netns_exists(f"{prefix}-n{i}") or _link_exists(f"{prefix}v{i}"):
            raise HostsUsageError(f"namespace {prefix}-n{i} or link {prefix}v{i} already exists and was not made by this state dir; pick another --prefix")
    if _link_exists(bridge):
        raise HostsUsageError(f"bridge {bridge} already exists; pick another --prefix")
    # Two bridges on one subnet would route each other's hosts' traffic at random.
    in_use = _subnet_in_use(net)
    if in_use:
        raise HostsUsageError(f"subnet {net} is already configured on {in_use} (another set of test "
                              f"hosts?); pick another --subnet")
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o755)
    state = HostsState(prefix=prefix, subnet=str(net), state_dir=str(state_dir))
    state.save()
    try:
        _build(state, net, count, authorized_keys or [])
    except BaseException:
        hosts_down(state_dir)
        raise
    return state


def _build(state: HostsState, net: ipaddress.IPv4Network | ipaddress.IPv6Network, count: int,
           authorized_keys: list[Path]) -> None:
    state_dir = Path(state.state_dir)
    _sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"ringlab-harness-{state.prefix}",
         "-f", str(state.key_path)], "generating the harness key")
    pubs = [state.key_path.with_suffix(".pub").read_text().strip()]
    pubs += [Path(p).read_text().strip() for p in authorized_keys]
    (state_dir / "authorized_keys").write_text("\n".join(pubs) + "\n")
    if not PRIVSEP_DIR.exists():
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True)
        state.created_privsep_dir = True
        state.save()
    bridge = f"{state.prefix}br0"
    gateway = net.network_address + 1
    _sh(["ip", "link", "add", bridge, "type", "bridge"], "creating the bridge")
    state.bridge, state.bridge_address = bridge, str(gateway)
    state.save()
    _sh(["ip", "addr", "add", f"{gateway}/{net.prefixlen}", "dev", bridge], "addressing the bridge")
    _sh(["ip", "link", "set", bridge, "up"], "bringing the bridge up")
    known = []
    for i in range(1, count + 1):
        name, netns, veth, peer = f"n{i}", f"{state.prefix}-n{i}", f"{state.prefix}v{i}", f"{state.prefix}p{i}"
        address = str(net.network_address + HOST_OFFSET + i)
        hdir = state_dir / name
        hdir.mkdir(exist_ok=True)
        _sh(["ip", "netns", "add", netns], f"creating namespace {netns}")
        entry = HostEntry(name, netns, veth, address, str(hdir))
        state.hosts.append(entry)
        state.save()
        _sh(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer], f"creating veth {veth}")
        _sh(["ip", "link", "set", peer, "netns", netns], f"moving {peer} into {netns}")
        _sh(["ip", "link", "set", veth, "master", bridge], f"attaching {veth} to {bridge}")
        _sh(["ip", "link", "set", veth, "up"], f"bringing {veth} up")
        inside = ["ip", "netns", "exec", netns]
        _sh(inside + ["ip", "link", "set", "lo", "up"], f"loopback in {netns}")
        _sh(inside + ["ip", "link", "set", peer, "name", "eth0"], f"renaming {peer} in {netns}")
        _sh(inside + ["ip", "addr", "add", f"{address}/{net.prefixlen}", "dev", "eth0"], f"addressing {netns}")
        _sh(inside + ["ip", "link", "set", "eth0", "up"], f"bringing eth0 up in {netns}")
        _sh(inside + ["ip", "route", "add", "default", "via", str(gateway)], f"default route in {netns}")
        hostkey = hdir / "ssh_host_ed25519_key"
        _sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{netns}", "-f", str(hostkey)], f"host key for {name}")
        known.append(f"{address} {' '.join(hostkey.with_suffix('.pub').read_text().split()[:2])}")
        config = hdir / "sshd_config"
        config.write_text(SSHD_CONFIG.format(address=address, dir=hdir, state_dir=state_dir))
        _sh(inside + [SSHD, "-f", str(config), "-E", str(hdir / "sshd.log")], f"starting sshd for {name}")
        entry.sshd_pid = _wait_pidfile(hdir / "sshd.pid", name)
        state.save()
    state.known_hosts_path.write_text("\n".join(known) + "\n")
    state.nodes_file.write_text(
        "# ringlab test hosts: [user@]host[:port] [name=<node id>] [address=<cluster address>]\n"
        + "".join(f"root@{h.address} name={h.name}\n" for h in state.hosts)
    )
    for h in state.hosts:
        deadline = time.monotonic() + SSHD_READY_TIMEOUT
        while not _port_open(h.address, 22):
            if time.monotonic() > deadline:
                raise HostsError(f"sshd of {h.name} ({h.address}:22) did not accept connections within "
                                 f"{SSHD_READY_TIMEOUT:g} s; see {h.dir}/sshd.log")
            time.sleep(0.05)


def _wait_pidfile(path: Path, name: str) -> int:
    deadline = time.monotonic() + SSHD_READY_TIMEOUT
    while time.monotonic() < deadline:
        try:
            return int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            time.sleep(0.02)
    raise HostsError(f"sshd of {name} wrote no pid file {path}; see {path.parent}/sshd.log")


def netns_pids(netns: str) -> list[int]:
    """Every process running in a namespace (sshd, sessions, nodes)."""
    proc = _sh(["ip", "netns", "pids", netns], f"listing processes of {netns}", check=False)
    return [int(p) for p in proc.stdout.split() if p.strip().isdigit()]


def hosts_down(state_dir: Path) -> list[str]:
    """Remove exactly what ``up`` recorded; returns what was removed (HostsError if something stays)."""
    state = HostsState.load(state_dir)
    removed: list[str] = []
    errors: list[str] = []
    for h in reversed(state.hosts):
        if _netns_exists(h.netns):
            # Everything in the namespace was started there by us (sshd, its sessions, deployed nodes).
            for _ in range(50):
                pids = netns_pids(h.netns)
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.05)
            else:
                errors.append(f"processes {netns_pids(h.netns)} in {h.netns} would not die")
            proc = _sh(["ip", "netns", "del", h.netns], "", check=False)
            if proc.returncode != 0:
                errors.append(f"ip netns del {h.netns}: {proc.stderr.strip()}")
            else:
                removed.append(f"namespace {h.netns}")
        elif _pid_alive(h.sshd_pid) and str(h.dir) in _cmdline(h.sshd_pid):
            os.kill(h.sshd_pid, signal.SIGKILL)  # type: ignore[arg-type]
        if _link_exists(h.veth):
            proc = _sh(["ip", "link", "del", h.veth], "", check=False)
            if proc.returncode != 0 and _link_exists(h.veth):
                errors.append(f"ip link del {h.veth}: {proc.stderr.strip()}")
            else:
                removed.append(f"link {h.veth}")
    if state.bridge and _link_exists(state.bridge):
        proc = _sh(["ip", "link", "del", state.bridge], "", check=False)
        if proc.returncode != 0:
            errors.append(f"ip link del {state.bridge}: {proc.stderr.strip()}")
        else:
            removed.append(f"bridge {state.bridge}")
    if state.created_privsep_dir and PRIVSEP_DIR.exists() and not _other_sshd_running():
        try:
            PRIVSEP_DIR.rmdir()
            removed.append(str(PRIVSEP_DIR))
        except OSError:
            pass  # something else put files there since: it is no longer only ours
    if errors:
        raise HostsError("test hosts not fully removed: " + "; ".join(errors))
    shutil.rmtree(state.state_dir, ignore_errors=True)
    removed.append(f"state dir {state.state_dir}")
    return removed


def _cmdline(pid: int | None) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _other_sshd_running() -> bool:
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and _cmdline(int(p.name)).startswith(SSHD):
            return True
    return False


def hosts_status(state_dir: Path) -> list[dict[str, Any]]:
    """Per host: namespace present, sshd running, port 22 answering."""
    state = HostsState.load(state_dir)
    return [
        {"name": h.name, "netns": h.netns, "address": h.address, "netns_exists": _netns_exists(h.netns),
         "sshd_running": _pid_alive(h.sshd_pid), "ssh_port_open": _port_open(h.address, 22),
         "processes": len(netns_pids(h.netns)) if _netns_exists(h.netns) else 0}
        for h in state.hosts
    ]


def add_hosts_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hosts up|down|status`` on an argparse subparsers object."""
    p = subparsers.add_parser("hosts", help="network-namespace test hosts with an sshd each (needs root)")
    p.add_argument("hosts_action", choices=("up", "down", "status"))
    p.add_argument("--count", type=int, default=DEFAULT_COUNT, help="how many hosts (up)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="namespace/interface name prefix")
    p.add_argument("--subnet", default=DEFAULT_SUBNET, help="private IPv4 subnet for the bridge (up)")
    p.add_argument("--state-dir", type=Path, default=None,
                   help=f"where the state is kept (default {DEFAULT_STATE_ROOT}/<prefix>)")
    p.add_argument("--authorized-key", type=Path, action="append", default=[],
                   help="an extra public key to authorize on every host (repeatable)")
    p.set_defaults(func=hosts_command)
    return p


def hosts_command(args: argparse.Namespace) -> int:
    """Run ``harness hosts up|down|status``; returns the exit code."""
    state_dir = Path(args.state_dir or DEFAULT_STATE_ROOT / args.prefix)
    try:
        if args.hosts_action == "up":
            state = hosts_up(args.count, args.prefix, args.subnet, state_dir, args.authorized_key)
            print(f"{len(state.hosts)} test hosts up on {state.bridge} ({state.subnet}):")
            for h in state.hosts:
                print(f"  {h.name}  {h.address}  netns {h.netns}")
            print(f"nodes file:  {state.nodes_file}\nprivate key: {state.key_path}\nknown_hosts: {state.known_hosts_path}")
            print(f"use: harness run --deploy ssh --nodes-file {state.nodes_file} --ssh-private-key {state.key_path} "
                  f"--known-hosts {state.known_hosts_path} --strict-host-key-checking")
        elif args.hosts_action == "down":
            for item in hosts_down(state_dir):
                print(f"removed {item}")
        else:
            rows = hosts_status(state_dir)
            for r in rows:
                print(f"{r['name']:>4} {r['address']:<15} netns={'yes' if r['netns_exists'] else 'NO':<3} "
                      f"sshd={'up' if r['sshd_running'] else 'DOWN':<4} port22={'open' if r['ssh_port_open'] else 'CLOSED':<6} "
                      f"processes={r['processes']}")
            return 0 if rows and all(r["sshd_running"] and r["ssh_port_open"] for r in rows) else 1
    except HostsUsageError as exc:
        print(f"harness hosts {args.hosts_action}: error: {exc}", file=sys.stderr)
        return 254
    except HostsError as exc:
        print(f"harness hosts {args.hosts_action}: {exc}", file=sys.stderr)
        return 255 if args.hosts_action != "status" else 1
    return 0
