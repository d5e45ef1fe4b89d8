"""What `harness run` checks before it makes a run directory, and which campaign errors are the
user's: a --store or --junit-xml path that cannot be written, an --ssh-private-key that is not
there, a Toxiproxy URL that answers nothing, Vagrant VMs that are not up, host clock faults on
hosts that share this machine's clock. Each is a one-line error and exit 254 (Jepsen's bad
arguments), never a traceback with "internal error"; a real harness bug still exits 255.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import trio

# A Toxiproxy server answers /version in milliseconds; this is generous for a remote one.
TOXIPROXY_PROBE_TIMEOUT_S = 5.0


class SetupMistake(Exception):
    """Something the user pointed the run at is not there or cannot work; the message says what."""


def check(opts: Any) -> None:
    """Probe what the options point at outside this process; SetupMistake names the first problem."""
    check_paths(opts.store, opts.junit_xml, opts.ssh_private_key if opts.deploy in ("ssh", "vagrant") else None)
    if opts.deploy in ("ssh", "vagrant"):
        from nemesis.faults import parse_nemeses

        if "latency" in parse_nemeses(opts.nemesis) and opts.deploy == "ssh" and not opts.host_toxiproxy:
            # Every injection would fail (iptables can only drop packets) and the run end unknown.
            raise SetupMistake(f"--nemesis {opts.nemesis}: latency needs a fault proxy, and --deploy {opts.deploy} "
                               "partitions with iptables, which can only drop packets; give --host-toxiproxy PORT "
                               "when every host runs a Toxiproxy server, or leave latency out "
                               "(`all` includes it: list the others, e.g. partition,kill,pause,clock)")
    if opts.toxiproxy:
        trio.run(_probe_toxiproxy, opts.toxiproxy)
    if opts.deploy == "vagrant":
        from harness.deploy.vagrant import VagrantError, vagrant_hosts

        try:
            vagrant_hosts()
        except VagrantError as exc:
            raise SetupMistake(f"--deploy vagrant: {exc}") from None


def dir_problem(path: Path) -> str | None:
    """Why no file can be written under ``path`` (made if missing), or None: the first of it and
    its ancestors that exists must be a writable directory."""
    here = path
    while not here.exists() and here != here.parent:
        here = here.parent
    if not here.is_dir():
        return f"{here} is not a directory"
    if not os.access(here, os.W_OK | os.X_OK):
        return f"{here} is not writable"
    return None


def check_paths(store: str, junit_xml: str | None, ssh_private_key: str | None = None) -> None:
    """The local paths a run (or a sim sweep) writes to or reads from: a campaign found them
    broken only once its cluster had started, with a traceback."""
    problem = dir_problem(Path(store).expanduser().absolute())
    if problem:
        raise SetupMistake(f"--store {store}: cannot keep runs there: {problem}")
    if junit_xml:
        junit = Path(junit_xml).expanduser().absolute()
        problem = "it is a directory (give a file name)" if junit.is_dir() else dir_problem(junit.parent)
        if problem:
            raise SetupMistake(f"--junit-xml {junit_xml}: cannot write it: {problem}")
    if ssh_private_key and not Path(ssh_private_key).expanduser().is_file():
        raise SetupMistake(f"--ssh-private-key {ssh_private_key}: no such file")


async def _probe_toxiproxy(url: str) -> None:
    from nemesis.proxy_client import ProxyClient, ProxyError

    try:
        client = ProxyClient(url, timeout_s=TOXIPROXY_PROBE_TIMEOUT_S)
        await client.version()
    except ValueError as exc:
        raise SetupMistake(f"--toxiproxy: {exc}") from None
    except ProxyError as exc:
        raise SetupMistake(f"--toxiproxy {url}: no Toxiproxy API there ({exc.detail})") from None


def user_error(exc: BaseException) -> str | None:
    """The one-line message when a campaign failed because of the user's setup, else None."""
    from harness.deploy.vagrant import VagrantError
    from nemesis.hostclock import SharedClockError
    from nemesis.hostproxies import HostProxyError

    if isinstance(exc, SharedClockError):
        return f"--nemesis clock: {exc} Rerun with --clock-mode admin."
    if isinstance(exc, HostProxyError):
        return f"--nemesis latency: {exc}"
    if isinstance(exc, (VagrantError, SetupMistake)):
        return str(exc)
    return None
