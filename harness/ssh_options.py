"""`harness run`'s SSH deploy options and their defaults, apart from harness/deploy/ssh.py so
`harness run --help` starts without importing paramiko (ssh.py re-exports all of it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT_USERNAME = "root"
# Where nodes are installed on a host, one directory per node id (so namespace hosts, which share
# one filesystem, never share a directory).
DEFAULT_REMOTE_ROOT = "/opt/ringlab"
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")


def add_ssh_options(parser: Any) -> None:
    """Register the SSH deploy options on ``harness run``'s parser."""
    g = parser.add_argument_group("ssh deploy (--deploy ssh|vagrant)")
    g.add_argument("--nodes-file", type=Path, default=None,
                   help="hosts, one per line: [user@]host[:port] [name=n1] [address=ip] [key=path]")
    g.add_argument("--username", default=None, help=f"SSH user (default {DEFAULT_USERNAME})")
    g.add_argument("--ssh-private-key", default=None, help="private key (ed25519, RSA, ECDSA); default: agent and ~/.ssh")
    g.add_argument("--password", default=None, help="SSH password and sudo password for non-root users")
    g.add_argument("--strict-host-key-checking", action="store_true",
                   help="refuse hosts not in known_hosts (default: record a new key once, refuse a changed one)")
    g.add_argument("--known-hosts", default=None, help=f"known_hosts file (default {DEFAULT_KNOWN_HOSTS})")
    g.add_argument("--remote-root", default=DEFAULT_REMOTE_ROOT, help="install directory on the hosts")
    g.add_argument("--host-toxiproxy", type=_port, default=None, metavar="PORT",
                   help="every host runs a Toxiproxy server with its API on its address at PORT: internode "
                        "links go through link proxies there and --nemesis latency works "
                        "(vagrant: 8474, the VMs' own, when latency is asked for)")
    g.add_argument("--clock-mode", choices=("host", "admin"), default="host",
                   help="clock nemesis on hosts: their real clocks (refused where they share this machine's), "
                        "or each node's own admin clock control")


def _port(text: str) -> int:
    """A TCP port number for argparse (its error names the option)."""
    import argparse

    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1-65535")
    return port
