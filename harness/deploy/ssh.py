"""A cluster of ringlab nodes on hosts reached over SSH (paramiko): test hosts, VMs, Debian machines.

Setup, per host, in parallel: connect (key, agent or password; host keys checked against
known_hosts), upload a wheelhouse built from this checkout over SFTP, install it into a virtual
environment under ``<remote-root>/<node>``, write ``node.toml``, start the node as a daemon
(``setsid nohup``, pid file) that survives the SSH session. Any failure during setup stops and
removes what was already done on every host and raises an error naming the host.

Paramiko is blocking; every call runs in a worker thread (``trio.to_thread``), one persistent
connection per host carrying many channels. The surface mirrors :class:`LocalCluster`
(``node_ids``, ``client_address``, ``start``, ``wait_converged``, ``start_node``, ``wait_ready``,
``kill``, ``pause``, ``resume``, ``stop_node``, ``stop``, ``describe``, ``add_node``) plus
``teardown`` (logs back into the run directory, installation removed unless ``leave_running``) and
``run`` (a command on a node's host, which the iptables and host clock nemeses use).

Hosts beyond ``node_count`` are spares: connected, installed and given a directory at setup like
the others, with no node started, until the membership nemesis joins a node there (``add_node``).
A host whose node left the ring is not reused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import paramiko
import trio

from harness.datapaths import toml_lines
from harness.deploy.local import DeployError
from harness.deploy.wheels import PROBE as WHEELS_PROBE
from harness.deploy.wheels import PythonTarget, dependency_pip_args, node_requirements
# The defaults and `harness run`'s SSH options live apart so `harness run --help` needs no paramiko.
from harness.ssh_options import DEFAULT_KNOWN_HOSTS, DEFAULT_REMOTE_ROOT, DEFAULT_USERNAME, add_ssh_options  # noqa: F401
from nemesis.membership import admin_timeout
from node.client import open_client

log = logging.getLogger("harness.deploy.ssh")

T = TypeVar("T")

# OpenSSH's default ConnectTimeout is the TCP timeout (minutes); a test host answers in ms and a
# VM in well under a second, so 10 s only fires for hosts that are really not there.
CONNECT_TIMEOUT = 10.0
# Connection attempts before a host is declared unreachable, and the first backoff (doubling):
# covers an sshd that is still starting (VM boot, `hosts up` racing) without hiding a dead host.
CONNECT_ATTEMPTS = 4
CONNECT_BACKOFF = 0.5
# pip installing ~30 wheels into a fresh venv takes ~10 s on an idle core; allow a loaded box.
INSTALL_TIMEOUT = 300.0
# Ordinary commands (signals, iptables, cat) answer in milliseconds.
COMMAND_TIMEOUT = 30.0
# Cassandra's ports, fixed because every node has a host (an address) of its own.
CLIENT_PORT = 9042
INTERNODE_PORT = 7000
# A node on a remote venv imports trio/msgpack and replays its commit log before answering.
START_TIMEOUT = 60.0
# Gossip converges in a few gossip rounds (1 s each); partitions just healed take longer.
CONVERGE_TIMEOUT = 60.0
# SIGTERM drains (flush, exit); past this the node is killed.
STOP_GRACE = 10.0
# A decommissioned node drains and exits by itself half a second after answering; one still
# running after this is stopped like any other.
LEAVE_GRACE = 5.0
# Seeds per cluster: Cassandra recommends a few per datacenter, never every node.
MAX_SEEDS = 3
# Oldest Python the node runs on (pyproject's requires-python).
MIN_PYTHON = (3, 11)
# Node directories that teardown may delete: never a root-ish path, whatever the settings say.
FORBIDDEN_ROOTS = {"", "/", "/root", "/home", "/usr", "/etc", "/var", "/opt", "/tmp"}


class SSHError(DeployError):
    """Something went wrong talking to a host; the message names the host."""


class HostUnreachable(SSHError):
    """A host could not be connected to (after retries) or refused our credentials."""


class HostKeyChanged(SSHError):
    """A host offered a key different from the one recorded in known_hosts: refused."""


class HostKeyUnknown(SSHError):
    """Strict host key checking is on and the host is not in known_hosts."""


class CommandFailed(SSHError):
    """A remote command exited non-zero."""


# ---------------------------------------------------------------- host lists


@dataclass
class HostSpec:
    """One host: how to reach it over SSH and which address the cluster uses for it."""

    host: str
    port: int = 22
    username: str | None = None
    name: str | None = None
    address: str | None = None
    key_filename: str | None = None

    @property
    def label(self) -> str:
        """How errors name this host."""
        where = f"{self.host}:{self.port}" if self.port != 22 else self.host
        return f"{self.name} ({where})" if self.name else where


def parse_host(token: str, where: str = "host") -> HostSpec:
    """``[user@]host[:port]`` (IPv6 as ``[addr]:port``) → HostSpec; ValueError naming ``where``."""
    text = token.strip()
    user = None
    if "@" in text:
        user, _, text = text.rpartition("@")
        if not user:
            raise ValueError(f"{where}: empty user name in {token!r}")
    port = 22
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"{where}: unclosed '[' in {token!r}")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"{where}: bad port in {token!r}")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        if not p.isdigit():
            raise ValueError(f"{where}: bad port {p!r} in {token!r}")
        port = int(p)
    else:
        host = text
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"{where}: no host name in {token!r}")
    if not 0 < port < 65536:
        raise ValueError(f"{where}: port {port} out of range in {token!r}")
    return HostSpec(host=host, port=port, username=user)


# Options a nodes-file line may carry after the host.
_LINE_OPTIONS = ("name", "address", "key")


def parse_nodes_file(text: str, source: str = "nodes file") -> list[HostSpec]:
    """A nodes file: one ``[user@]host[:port] [name=n1] [address=10.0.0.11] [key=path]`` per line, # comments."""
    hosts = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source} line {lineno}"
        first, *opts = line.split()
        spec = parse_host(first, where)
        for opt in opts:
            key, sep, value = opt.partition("=")
            if not sep or key not in _LINE_OPTIONS or not value:
                raise ValueError(f"{where}: unknown option {opt!r}; expected {', '.join(k + '=...' for k in _LINE_OPTIONS)}")
            if key == "name":
                spec.name = value
            elif key == "address":
                spec.address = value
            else:
                spec.key_filename = value
        hosts.append(spec)
    return name_hosts(hosts, source)


def parse_nodes_list(text: str) -> list[HostSpec]:
    """``--nodes a,b,root@c:2222`` → HostSpecs named n1, n2, ..."""
    parts = [p for p in (t.strip() for t in text.split(",")) if p]
    return name_hosts([parse_host(p, f"--nodes entry {i}") for i, p in enumerate(parts, 1)], "--nodes")


def name_hosts(hosts: list[HostSpec], source: str) -> list[HostSpec]:
    """Give unnamed hosts node ids n1, n2, ... by position; refuse duplicates and empty lists."""
    if not hosts:
        raise ValueError(f"{source}: no hosts")
    for i, h in enumerate(hosts, 1):
        if h.name is None:
            h.name = f"n{i}"
    names = [h.name for h in hosts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{source}: duplicate node names {', '.join(str(d) for d in dupes)}")
    return hosts


# ---------------------------------------------------------------- settings and host keys


@dataclass
class SSHSettings:
    """How to log in: user, key, agent, password (also sudo's), host key checking, retries."""

    username: str = DEFAULT_USERNAME
    private_key: Path | None = None
    password: str | None = None
    strict_host_key_checking: bool = False
    known_hosts: Path = DEFAULT_KNOWN_HOSTS
    allow_agent: bool = True
    connect_timeout: float = CONNECT_TIMEOUT
    connect_attempts: int = CONNECT_ATTEMPTS
    backoff: float = CONNECT_BACKOFF


class KnownHosts:
    """A known_hosts file shared by every connection of a deploy (a lock serializes writes)."""

    def __init__(self, path: Path, strict: bool) -> None:
        self.path = Path(path).expanduser()
        self.strict = strict
        self._lock = threading.Lock()

    def load_into(self, client: paramiko.SSHClient) -> None:
        """Give the client every recorded key (paramiko then refuses a changed one by itself)."""
        with self._lock:
            if self.path.exists():
                client.get_host_keys().load(str(self.path))

    def record(self, hostname: str, key: paramiko.PKey) -> None:
        """Append a newly seen key (accept-new), re-reading the file first so parallel adds survive."""
        with self._lock:
            keys = paramiko.HostKeys()
            if self.path.exists():
                keys.load(str(self.path))
            known = keys.lookup(hostname)
            if known is not None and known.get(key.get_name()) not in (None, key):
                raise HostKeyChanged(f"host key of {hostname} changed while connecting; refusing")
            keys.add(hostname, key.get_name(), key)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            keys.save(str(self.path))
            os.chmod(self.path, 0o600)

    def policy(self) -> paramiko.MissingHostKeyPolicy:
        """What to do with a host that has no recorded key."""
        outer = self

        class _Policy(paramiko.MissingHostKeyPolicy):
            def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
                if outer.strict:
                    raise HostKeyUnknown(
                        f"host {hostname} is not in {outer.path} and strict host key checking is on; "
                        f"it offered {key.get_name()} {key.fingerprint}. Add its key (ssh-keyscan) or drop "
                        f"--strict-host-key-checking to accept a new key once"
                    )
                outer.record(hostname, key)
                log.info("recorded new host key for %s (%s %s) in %s", hostname, key.get_name(), key.fingerprint, outer.path)

        return _Policy()


@dataclass
class CommandResult:
    """A finished remote command."""

    command: str
    exit_status: int
    stdout: str
    stderr: str


def quote_command(argv: Sequence[str] | str) -> str:
    """An argv as one shell-safe string (a str is taken as an already-built shell command)."""
    return argv if isinstance(argv, str) else shlex.join(argv)


# ---------------------------------------------------------------- one host


class SSHHost:
    """One persistent SSH connection (blocking; call from worker threads)."""

    def __init__(self, spec: HostSpec, settings: SSHSettings, known_hosts: KnownHosts) -> None:
        self.spec = spec
        self.settings = settings
        self.known_hosts = known_hosts
        self.username = spec.username or settings.username
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.Lock()

    def _pkey(self) -> paramiko.PKey | None:
        path = self.spec.key_filename or self.settings.private_key
        if path is None:
            return None
        path = Path(path).expanduser()
        try:
            return paramiko.PKey.from_path(str(path), self.settings.password)
        except FileNotFoundError:
            raise HostUnreachable(f"{self.spec.label}: private key {path} not found") from None
        except (paramiko.SSHException, ValueError) as exc:
            raise HostUnreachable(f"{self.spec.label}: cannot load private key {path}: {exc}") from exc

    def connect(self) -> None:
        """Connect (with retries and backoff); HostUnreachable / HostKeyChanged name the host."""
        with self._lock:
            if self._client is not None and (t := self._client.get_transport()) is not None and t.is_active():
                return
            self._close_locked()
            pkey = self._pkey()
            delay = self.settings.backoff
            last: Exception | None = None
            for attempt in range(1, self.settings.connect_attempts + 1):
                client = paramiko.SSHClient()
                self.known_hosts.load_into(client)
                client.set_missing_host_key_policy(self.known_hosts.policy())
                try:
                    client.connect(
                        self.spec.host, port=self.spec.port, username=self.username, pkey=pkey,
                        password=self.settings.password, timeout=self.settings.connect_timeout,
                        banner_timeout=self.settings.connect_timeout, auth_timeout=self.settings.connect_timeout,
                        allow_agent=self.settings.allow_agent, look_for_keys=pkey is None,
                    )
                    transport = client.get_transport()
                    if transport is not None:
                        # Dead peers (a paused VM, a cut cable) are noticed instead of hanging forever.
                        transport.set_keepalive(15)
                    self._client = client
                    return
                except paramiko.BadHostKeyException as exc:
                    client.close()
                    raise HostKeyChanged(
                        f"{self.spec.label}: REMOTE HOST KEY CHANGED: {self.known_hosts.path} records "
                        f"{exc.expected_key.get_name()} {exc.expected_key.fingerprint} but the host offers "
                        f"{exc.key.get_name()} {exc.key.fingerprint}; refusing to connect (reinstalled host, "
                        f"or someone in the middle). If the change is expected: "
                        f"ssh-keygen -R {shlex.quote(exc.hostname)} -f {shlex.quote(str(self.known_hosts.path))}"
                    ) from None
                except (HostKeyUnknown, HostKeyChanged):
                    client.close()
                    raise
                except paramiko.AuthenticationException as exc:
                    client.close()
                    raise HostUnreachable(
                        f"{self.spec.label}: authentication as {self.username!r} failed ({exc}); check "
                        f"--username, --ssh-private-key, the agent or --password"
                    ) from None
                except (OSError, paramiko.SSHException, EOFError) as exc:
                    client.close()
                    last = exc
                    if attempt < self.settings.connect_attempts:
                        log.info("%s: connect attempt %d failed (%s); retrying in %.1f s", self.spec.label, attempt, exc, delay)
                        time.sleep(delay)
                        delay *= 2
            raise HostUnreachable(
                f"cannot reach {self.spec.label} over SSH after {self.settings.connect_attempts} attempts: "
                f"{type(last).__name__}: {last}"
            )

    def _transport(self) -> paramiko.Transport:
        self.connect()
        assert self._client is not None
        transport = self._client.get_transport()
        if transport is None:
            raise HostUnreachable(f"{self.spec.label}: connection lost")
        return transport

    def run(self, command: Sequence[str] | str, *, sudo: bool = False, check: bool = True,
            timeout: float = COMMAND_TIMEOUT, stdin: str | None = None) -> CommandResult:
        """Run a command (argv quoted with shlex, or a shell string); CommandFailed on non-zero with check."""
        cmd = quote_command(command)
        shown = cmd
        feed = stdin or ""
        if sudo and self.username != "root":
            if self.settings.password is not None:
                cmd = f"sudo -S -p '' -- sh -c {shlex.quote(cmd)}"
                feed = self.settings.password + "\n" + feed
            else:
                cmd = f"sudo -n -- sh -c {shlex.quote(cmd)}"
        chan = self._transport().open_session(timeout=self.settings.connect_timeout)
        try:
            chan.settimeout(timeout)
            chan.exec_command(cmd)
            if feed:
                chan.sendall(feed.encode())
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while not (chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready()):
                if time.monotonic() > deadline:
                    raise CommandFailed(f"{self.spec.label}: command timed out after {timeout:g} s: {shown}")
                progressed = False
                if chan.recv_ready():
                    out += chan.recv(65536)
                    progressed = True
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    progressed = True
                if not progressed:
                    time.sleep(0.005)
            status = chan.recv_exit_status()
        except socket.timeout:
            raise CommandFailed(f"{self.spec.label}: command timed out after {timeout:g} s: {shown}") from None
        finally:
            chan.close()
        result = CommandResult(shown, status, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and status != 0:
            detail = (result.stderr.strip() or result.stdout.strip())[-2000:]
            raise CommandFailed(f"{self.spec.label}: `{shown}` exited with {status}: {detail}")
        return result

    def sftp(self) -> paramiko.SFTPClient:
        """The host's SFTP session (opened once)."""
        transport = self._transport()
        with self._lock:
            if self._sftp is None or self._sftp.get_channel() is None or self._sftp.get_channel().closed:  # type: ignore[union-attr]
                self._sftp = paramiko.SFTPClient.from_transport(transport)
            assert self._sftp is not None
            return self._sftp

    def put_file(self, local: Path, remote: str) -> None:
        """Upload a file (to a temporary name, then renamed, so a half upload is never used)."""
        sftp = self.sftp()
        with self._lock:
            tmp = remote + ".part"
            sftp.put(str(local), tmp)
            sftp.posix_rename(tmp, remote)

    def write_text(self, remote: str, text: str, mode: int = 0o644) -> None:
        """Write a small text file."""
        sftp = self.sftp()
        with self._lock:
            with sftp.open(remote + ".part", "w") as f:
                f.write(text.encode())
            sftp.chmod(remote + ".part", mode)
            sftp.posix_rename(remote + ".part", remote)

    def get_file(self, remote: str, local: Path) -> bool:
        """Download a file; False when it does not exist."""
        sftp = self.sftp()
        local.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            try:
                sftp.get(remote, str(local))
                return True
            except FileNotFoundError:
                return False

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking paramiko call in a worker thread."""
    return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))


async def for_each(items: Sequence[str], fn: Callable[[str], Awaitable[None]]) -> dict[str, BaseException]:
    """Run ``fn`` on every item concurrently; every failure is collected, none cancels the others."""
    errors: dict[str, BaseException] = {}

    async def one(item: str) -> None:
        try:
            await fn(item)
        except Exception as exc:  # noqa: BLE001 - gathered and reported by the caller, per host
            errors[item] = exc

    async with trio.open_nursery() as nursery:
        for item in items:
            nursery.start_soon(one, item)
    return errors


def _combine(errors: dict[str, BaseException], what: str) -> SSHError:
    parts = [str(e) if isinstance(e, SSHError) else f"{nid}: {type(e).__name__}: {e}" for nid, e in sorted(errors.items())]
    cls = HostUnreachable if all(isinstance(e, HostUnreachable) for e in errors.values()) else SSHError
    if all(isinstance(e, HostKeyChanged) for e in errors.values()):
        cls = HostKeyChanged
    return cls(f"{what} failed on {len(errors)} host(s): " + " | ".join(parts))


# ---------------------------------------------------------------- the wheelhouse


def project_root() -> Path:
    """The checkout this harness runs from (where pyproject.toml is)."""
    return Path(__file__).resolve().parents[2]


# What goes into the wheel: pyproject's packages plus the files setuptools reads.
_SOURCE_ITEMS = ("pyproject.toml", "README.md", "node", "harness", "nemesis", "checkers")


def build_wheelhouse(source_dir: Path, out_dir: Path, target: PythonTarget | None = None) -> list[Path]:
    """Wheels for ringlab (built from a copy of the checkout, so the tree stays clean) and the
    node's dependencies, for the hosts' interpreter ``target`` (default: this one).

    Both are cached in ``out_dir``: the ringlab wheel by a digest of the sources it is built
    from, the dependency wheels as a local index that is tried first with ``--no-index`` (pip
    goes to the configured index only for what it lacks). Building is serialized on a lock per
    target, so campaigns started at once (two checkouts, two test workers) never see each
    other's half-written wheels."""
    target = target or PythonTarget.local()
    out_dir = out_dir / target.tag()  # one wheelhouse per target: wheels of two never mix
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ringlab = _ringlab_wheel(source_dir, out_dir / "ringlab")
        deps = _dependency_wheels(target, out_dir / "deps", [*node_requirements(source_dir), "pip"])
    return [ringlab, *deps]


# How many builds of the ringlab wheel (distinct sources) the cache keeps.
KEEP_RINGLAB_BUILDS = 8


def _source_digest(source_dir: Path) -> str:
    """A digest of every file the ringlab wheel is built from (paths and contents)."""
    h = hashlib.sha256()
    for item in _SOURCE_ITEMS:
        src = source_dir / item
        files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src] if src.exists() else []
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            h.update(f.relative_to(source_dir).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def _ringlab_wheel(source_dir: Path, cache: Path) -> Path:
    """The ringlab wheel of these sources, built once per digest of them."""
    built = cache / _source_digest(source_dir)
    wheels = sorted(built.glob("ringlab-*.whl")) if built.is_dir() else []
    if len(wheels) == 1:
        os.utime(built)  # most recently used: kept by the pruning below
        return wheels[0]
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ringlab-src-") as tmp, \
            tempfile.TemporaryDirectory(prefix="build-", dir=cache) as out:
        for item in _SOURCE_ITEMS:
            src = source_dir / item
            if src.is_dir():
                shutil.copytree(src, Path(tmp) / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif src.exists():
                shutil.copy2(src, Path(tmp) / item)
        _pip(["wheel", "--no-deps", "-q", "-w", out, tmp], "building the ringlab wheel")
        wheels = sorted(Path(out).glob("ringlab-*.whl"))
        if len(wheels) != 1:
            raise DeployError(f"expected one ringlab wheel from {tmp}, found {[w.name for w in wheels]}")
        shutil.rmtree(built, ignore_errors=True)
        os.rename(out, built)  # whole, or not at all
        os.mkdir(out)  # for TemporaryDirectory's cleanup
    for old in sorted((d for d in cache.iterdir() if d.is_dir() and not d.name.startswith("build-")),
                      key=lambda d: d.stat().st_mtime, reverse=True)[KEEP_RINGLAB_BUILDS:]:
        shutil.rmtree(old, ignore_errors=True)
    return built / wheels[0].name


def _dependency_wheels(target: PythonTarget, cache: Path, requirements: list[str]) -> list[Path]:
    """Exactly the dependency wheels ``requirements`` resolve to for ``target``, from the cache
    when it has them all, else topped up from the configured index."""
    cache.mkdir(parents=True, exist_ok=True)
    # Only what a node imports (harness/deploy/wheels.py); hosts then install with --no-index,
    # so they need no index access of their own. Hosts run pip straight from its wheel into a
    # venv made --without-pip: ~5x faster than ensurepip, and the host needs no pip of its own.
    with tempfile.TemporaryDirectory(prefix="deps-", dir=cache) as tmp:
        offline = ["--no-index", "--find-links", str(cache)]
        proc = subprocess.run([sys.executable, "-m", "pip", *dependency_pip_args(target, Path(tmp), requirements),
                               *offline], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            for partial in Path(tmp).iterdir():
                partial.unlink()
            _pip([*dependency_pip_args(target, Path(tmp), requirements), "--find-links", str(cache)],
                 f"collecting the node's dependency wheels for {target.tag()}")
        names = sorted(w.name for w in Path(tmp).glob("*.whl"))
        for name in names:
            if not (cache / name).exists():
                os.replace(Path(tmp) / name, cache / name)
    return [cache / name for name in names]


def _pip(args: list[str], what: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DeployError(f"{what} failed: pip {' '.join(args)}: {proc.stderr.strip()[-2000:]}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- the cluster


@dataclass
class SSHClusterSpec:
    """What to deploy where."""

    hosts: list[HostSpec]
    settings: SSHSettings
    base_dir: Path
    secret: str
    seed: int
    num_tokens: int = 16
    commitlog_sync: str = "batch"
    # More [storage] settings of node.toml (harness/datapaths.py).
    storage: dict[str, Any] = field(default_factory=dict)
    faults: dict[str, bool] = field(default_factory=dict)
    client_port: int = CLIENT_PORT
    internode_port: int = INTERNODE_PORT
    remote_root: str = DEFAULT_REMOTE_ROOT
    remote_python: str = "python3"
    leave_running: bool = False
    source_dir: Path = field(default_factory=project_root)
    wheelhouse: Path = field(default_factory=lambda: Path("~/.cache/ringlab/wheelhouse").expanduser())
    # How many of the hosts start a node at setup (None: all); the others are spares.
    node_count: int | None = None
    # With a local directory, nodes run under coverage.py and teardown downloads each node's data
    # files into <coverage_dir>/raw/<node>/ (harness/campaign_coverage.py).
    coverage_dir: Path | None = None
    # coordination = "zookeeper": the servers' "host:port" list for every node.toml.
    zookeeper: list[str] = field(default_factory=list)
    # node → peer → "host:port" to reach it at (a link proxy of the host's Toxiproxy), as [routes].
    routes: dict[str, dict[str, str]] = field(default_factory=dict)


# A host's part in a run: its node is in the ring (started at setup or joined since), it waits
# prepared for a join, or its node left the ring (decommissioned or removed). A host whose node
# left is never reused: the other nodes keep the departed node id bound to that address in
# gossip, and a new node id answering there would answer for the old one.
MEMBER, SPARE, LEFT = "member", "spare", "left"


def initial_roles(names: Sequence[str], node_count: int | None) -> dict[str, str]:
    """Each host's role at setup: the first ``node_count`` (default all) are members, the rest spares."""
    count = len(names) if node_count is None else node_count
    if not 1 <= count <= len(names):
        raise SSHError(f"--nodes {count}: the host list has {len(names)} host(s); give at most that many "
                       f"(hosts beyond --nodes are spares the membership nemesis can join)")
    return {name: MEMBER if i < count else SPARE for i, name in enumerate(names)}


@dataclass
class RemoteNode:
    """One host and the node it runs (node id = host name: a host carries one node per run)."""

    node_id: str
    spec: HostSpec
    address: str
    dir: str
    conn: SSHHost
    paused: bool = False
    installed: bool = False
    created_root: bool = False
    role: str = MEMBER


class SSHCluster:
    """Install, start, stop, kill, pause and resume nodes on SSH hosts; owns what it installs."""

    def __init__(self, spec: SSHClusterSpec) -> None:
        root = PurePosixPath(spec.remote_root)
        if not root.is_absolute() or str(root) in {"/"} or ".." in root.parts:
            raise ValueError(f"remote root must be an absolute directory below /, got {spec.remote_root!r}")
        self.spec = spec
        self.known_hosts = KnownHosts(spec.settings.known_hosts, spec.settings.strict_host_key_checking)
        # Every host, spares and hosts whose node left included (setup and teardown cover them all).
        self.nodes: dict[str, RemoteNode] = {}
        hosts = name_hosts(list(spec.hosts), "hosts")
        roles = initial_roles([str(h.name) for h in hosts], spec.node_count)
        for h in hosts:
            assert h.name is not None
            self.nodes[h.name] = RemoteNode(
                h.name, h, h.address or h.host, str(root / h.name), SSHHost(h, spec.settings, self.known_hosts),
                role=roles[h.name],
            )
        self._wheels: list[Path] = []

    # ---- topology

    def node_ids(self) -> list[str]:
        """The ring's nodes in host order: started at setup or joined, not yet left."""
        return [nid for nid, n in self.nodes.items() if n.role == MEMBER]

    def host_ids(self) -> list[str]:
        """Every host (by the node id it carries), spares and departed nodes included."""
        return list(self.nodes)

    def spare_ids(self) -> list[str]:
        """Hosts prepared at setup whose node has not started yet."""
        return [nid for nid, n in self.nodes.items() if n.role == SPARE]

    def capacity(self) -> int:
        """How many nodes the ring can have at once from now on: members plus spares."""
        return len(self.node_ids()) + len(self.spare_ids())

    def address(self, node_id: str) -> str:
        """The cluster address of a node's host (what peers and iptables rules use)."""
        return self.nodes[node_id].address

    def client_address(self, node_id: str) -> tuple[str, int]:
        """Where clients reach ``node_id``."""
        return self.nodes[node_id].address, self.spec.client_port

    def describe(self) -> dict[str, Any]:
        """The topology, for test.json: every host, with its role (member, spare, left)."""
        return {
            nid: {"ssh": f"{n.conn.username}@{n.spec.host}:{n.spec.port}", "client": f"{n.address}:{self.spec.client_port}",
                  "internode": f"{n.address}:{self.spec.internode_port}", "dir": n.dir, "role": n.role}
            for nid, n in self.nodes.items()
        }

    # ---- remote commands

    async def run(self, node_id: str, command: Sequence[str] | str, *, sudo: bool = False, check: bool = True,
                  timeout: float = COMMAND_TIMEOUT) -> CommandResult:
        """Run a command on a node's host."""
        return await in_thread(self.nodes[node_id].conn.run, command, sudo=sudo, check=check, timeout=timeout)

    async def connect(self) -> None:
        """Connect to every host in parallel; one error naming every host that failed."""
        errors = await for_each(self.host_ids(), lambda nid: in_thread(self.nodes[nid].conn.connect))
        if errors:
            raise _combine(errors, "connecting")

    # ---- install

    async def install(self) -> None:
        """Build the wheelhouse once, then install it into a venv on every host (spares too) in parallel."""
        if not self._wheels:
            target = await self._python_target(self.host_ids()[0])
            self._wheels = await in_thread(build_wheelhouse, self.spec.source_dir, self.spec.wheelhouse, target)
        errors = await for_each(self.host_ids(), self._install_one)
        if errors:
            raise _combine(errors, "installing")

    async def _python_target(self, node_id: str) -> PythonTarget:
        """The interpreter of a host (the hosts of one deploy are alike), for building its wheels."""
        probe = await self.run(node_id, [self.spec.remote_python, "-c", WHEELS_PROBE], check=False)
        try:
            return PythonTarget.parse(probe.stdout) if probe.exit_status == 0 else PythonTarget.local()
        except ValueError:
            return PythonTarget.local()  # _install_one names the problem with this host's Python

    async def _install_one(self, node_id: str) -> None:
        n = self.nodes[node_id]
        q = shlex.quote
        version = await self.run(node_id, [self.spec.remote_python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], check=False)
        if version.exit_status != 0:
            raise CommandFailed(f"{n.spec.label}: no {self.spec.remote_python} on the host: {version.stderr.strip()}")
        major, minor = (int(x) for x in version.stdout.strip().split("."))
        if (major, minor) < MIN_PYTHON:
            raise CommandFailed(f"{n.spec.label}: {self.spec.remote_python} is {major}.{minor}; the node needs "
                                f"{'.'.join(map(str, MIN_PYTHON))} or newer")
        root_exists = await self.run(node_id, ["test", "-d", self.spec.remote_root], check=False)
        n.created_root = root_exists.exit_status != 0
        user = n.conn.username
        await self.run(node_id, f"mkdir -p {q(n.dir)}/wheels && chown -R {q(user)} {q(n.dir)}", sudo=True)
        n.installed = True
        manifest = {w.name: _sha256(w) for w in self._wheels}
        current = await self.run(node_id, ["cat", f"{n.dir}/installed.json"], check=False)
        try:
            if current.exit_status == 0 and json.loads(current.stdout) == manifest:
                log.info("%s: installation up to date", n.spec.label)
                return
        except ValueError:
            pass
        listing = await self.run(node_id, f"cd {q(n.dir)}/wheels && sha256sum *.whl 2>/dev/null", check=False)
        have = {line.split()[1]: line.split()[0] for line in listing.stdout.splitlines() if len(line.split()) == 2}
        for w in self._wheels:
            if have.get(w.name) != manifest[w.name]:
                await in_thread(n.conn.put_file, w, f"{n.dir}/wheels/{w.name}")
        ringlab_wheel = next(w.name for w in self._wheels if w.name.startswith("ringlab-"))
        pip_wheel = next(w.name for w in self._wheels if w.name.startswith("pip-"))
        # --isolated: the host's pip.conf and PIP_* variables must not point it at an index.
        await self.run(
            node_id,
            f"cd {q(n.dir)} && rm -rf venv && {q(self.spec.remote_python)} -m venv --without-pip venv && "
            f"venv/bin/python wheels/{q(pip_wheel)}/pip --isolated --disable-pip-version-check install -q "
            f"--no-compile --no-index --find-links wheels {' '.join(q(r) for r in node_requirements(self.spec.source_dir))} && "
            # ringlab itself without its dependencies: the harness's (paramiko, rich, ...) stay here.
            f"venv/bin/python wheels/{q(pip_wheel)}/pip --isolated --disable-pip-version-check install -q "
            f"--no-compile --no-index --no-deps wheels/{q(ringlab_wheel)}",
            timeout=INSTALL_TIMEOUT,
        )
        await in_thread(n.conn.write_text, f"{n.dir}/installed.json", json.dumps(manifest, indent=1))
        log.info("%s: installed %s", n.spec.label, ringlab_wheel)

    # ---- configuration

    def config_text(self, node_id: str, auto_bootstrap: bool = False) -> str:
        """node.toml for one node: listens on its host's address, seeds are the first few members
        (for a joiner, written while its host is still a spare: members other than itself)."""
        n = self.nodes[node_id]
        idx = self.host_ids().index(node_id)
        seeds = [f"{self.nodes[s].address}:{self.spec.internode_port}" for s in self.node_ids()[:MAX_SEEDS]]
        lines = [
            f"node_id = {json.dumps(node_id)}",
            f"data_dir = {json.dumps(n.dir + '/data')}",
            f"listen_host = {json.dumps(n.address)}",
            f"client_port = {self.spec.client_port}",
            f"internode_port = {self.spec.internode_port}",
            "seeds = [" + ", ".join(json.dumps(s) for s in seeds) + "]",
            f"num_tokens = {self.spec.num_tokens}",
            f"cluster_secret = {json.dumps(self.spec.secret)}",
            f"rng_seed = {self.spec.seed * 1000 + idx}",
            "",
            "[storage]",
            f"commitlog_sync = {json.dumps(self.spec.commitlog_sync)}",
            *toml_lines(self.spec.storage),
            "",
            "[membership]",
            f"auto_bootstrap = {'true' if auto_bootstrap else 'false'}",
            "",
            "[faults]",
            *[f"{k} = {'true' if v else 'false'}" for k, v in self.spec.faults.items()],
            "",
        ]
        if self.spec.routes.get(node_id):
            lines += ["[routes]", *[f"{json.dumps(peer)} = {json.dumps(addr)}"
                                    for peer, addr in sorted(self.spec.routes[node_id].items())], ""]
        if self.spec.zookeeper:
            lines += ["[coordination]", 'mode = "zookeeper"',
                      "servers = [" + ", ".join(json.dumps(z) for z in self.spec.zookeeper) + "]", ""]
        return "\n".join(lines)

    async def write_configs(self) -> None:
        """Upload node.toml to every member's host (a spare's is written when it joins)."""
        errors = await for_each(self.node_ids(), lambda nid: in_thread(
            self.nodes[nid].conn.write_text, f"{self.nodes[nid].dir}/node.toml", self.config_text(nid), 0o600))
        if errors:
            raise _combine(errors, "writing node.toml")
        if self.spec.coverage_dir is not None:
            from harness.campaign_coverage import NODE_DATA_NAME, RC_FILE, node_rc_text

            # Spares too: a node joined there later runs under coverage like the others.
            errors = await for_each(self.host_ids(), lambda nid: in_thread(
                self.nodes[nid].conn.write_text, f"{self.nodes[nid].dir}/{RC_FILE}",
                node_rc_text(f"{self.nodes[nid].dir}/{NODE_DATA_NAME}")))
            if errors:
                raise _combine(errors, "writing the coverage config")

    # ---- process control

    def _pid_script(self, node_id: str, body: str) -> str:
        """A shell script with $pid set to the node's pid, or exiting 3 when the node is not running."""
        d = shlex.quote(self.nodes[node_id].dir)
        # The pid file alone could name a recycled pid; the process's cwd being the node dir proves
        # it is ours (every node runs the same command line, namespace hosts share one pid space).
        # A zombie (state Z: dead, not yet reaped) is not running.
        return (
            f"pid=$(cat {d}/node.pid 2>/dev/null) || exit 3; "
            f"[ -n \"$pid\" ] && [ \"$(readlink /proc/$pid/cwd 2>/dev/null)\" = {d} ] || exit 3; "
            f"st=$(sed 's/.*) //' /proc/$pid/stat 2>/dev/null | cut -d' ' -f1); [ \"$st\" = Z ] && exit 3; "
            f"{body}"
        )

    async def process_state(self, node_id: str) -> str | None:
        """The node process's /proc state letter (R, S, T when paused...), None when not running."""
        r = await self.run(node_id, self._pid_script(node_id, 'echo "$st"'), check=False)
        return r.stdout.strip() if r.exit_status == 0 else None

    async def alive(self, node_id: str) -> bool:
        """Whether the node process is running (paused counts as running)."""
        return await self.process_state(node_id) is not None

    async def start_node(self, node_id: str) -> None:
        """Start the node as a daemon that survives the SSH session (its log appends across restarts)."""
        n = self.nodes[node_id]
        if await self.alive(node_id):
            return
        d = shlex.quote(n.dir)
        inner = "echo $$ > node.pid; exec venv/bin/python -m node --config node.toml"
        if self.spec.coverage_dir is not None:
            from harness.campaign_coverage import RC_FILE, node_command

            inner = "echo $$ > node.pid; exec " + shlex.join(node_command("venv/bin/python", RC_FILE, ["--config", "node.toml"]))
        await self.run(node_id, (
            f"cd {d} && rm -f data/ready && PYTHONUNBUFFERED=1 setsid nohup sh -c {shlex.quote(inner)} "
            f">> node.log 2>&1 < /dev/null &"
        ))
        n.paused = False
        log.info("started %s on %s", node_id, n.spec.label)

    async def log_tail(self, node_id: str, lines: int = 8) -> str:
        """The last lines of a node's log, for error messages."""
        r = await self.run(node_id, ["tail", "-n", str(lines), f"{self.nodes[node_id].dir}/node.log"], check=False)
        return " | ".join(r.stdout.strip().splitlines()) or "(empty log)"

    async def wait_ready(self, node_id: str, timeout: float = START_TIMEOUT) -> None:
        """Wait until the node answers ``ping``; fails fast (with its log) if the process died."""
        n = self.nodes[node_id]
        host, port = self.client_address(node_id)
        deadline = trio.current_time() + timeout
        checks = 0
        while trio.current_time() < deadline:
            try:
                with trio.fail_after(3):
                    async with open_client(host, port, secret=self.spec.secret, timeout=2.0) as c:
                        await c.request("ping")
                        return
            except Exception:  # noqa: BLE001 - not up yet: any failure means try again
                pass
            checks += 1
            if checks % 10 == 0 and not await self.alive(node_id):
                raise SSHError(f"node {node_id} on {n.spec.label} exited during start; "
                               f"{n.dir}/node.log: {await self.log_tail(node_id)}")
            await trio.sleep(0.2)
        raise SSHError(f"node {node_id} on {n.spec.label} did not answer on {host}:{port} within {timeout:g} s; "
                       f"{n.dir}/node.log: {await self.log_tail(node_id)}")

    async def start(self) -> None:
        """Connect, install, configure, start every node and wait until each answers.

        On any failure everything already done is undone on every host (nothing left running)
        and the error names the host(s).
        """
        try:
            await self.connect()
            await self.install()
            await self.write_configs()
            errors = await for_each(self.node_ids(), self.start_node)
            if errors:
                raise _combine(errors, "starting nodes")
            errors = await for_each(self.node_ids(), self.wait_ready)
            if errors:
                raise _combine(errors, "waiting for nodes")
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.teardown(collect=False, force=True)
            raise

    async def wait_converged(self, timeout: float = CONVERGE_TIMEOUT, nodes: list[str] | None = None) -> None:
        """Wait until every given node (default: every member not paused) sees every one of them UP and NORMAL."""
        want = set(nodes or [nid for nid in self.node_ids() if not self.nodes[nid].paused])
        with trio.move_on_after(timeout):
            while True:
                if all([await self._sees(nid, want) for nid in sorted(want)]):
                    return
                await trio.sleep(0.25)
        raise SSHError(f"gossip did not converge on {sorted(want)} within {timeout:g} s")

    async def _sees(self, node_id: str, want: set[str]) -> bool:
        try:
            status = await self.admin(node_id, "status", load=False)
        except Exception:  # noqa: BLE001 - a node that cannot answer does not see anyone yet
            return False
        up = {r["node_id"] for r in status.get("nodes", []) if r.get("state") == "U" and r.get("status") == "NORMAL"}
        return want <= up

    async def admin(self, node_id: str, op: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """An admin operation on a node's client port."""
        host, port = self.client_address(node_id)
        with trio.fail_after(timeout):
            async with open_client(host, port, secret=self.spec.secret) as c:
                return await c.admin(op, **fields)

    async def signal(self, node_id: str, sig: str) -> bool:
        """Send a signal (by name: KILL, STOP...) to the node process; False if it was not running."""
        r = await self.run(node_id, self._pid_script(node_id, f"kill -{sig} \"$pid\""), check=False)
        return r.exit_status == 0

    async def _wait_gone(self, node_id: str, timeout: float) -> bool:
        # Polled on the host, so one round trip covers the whole wait.
        loops = max(1, int(timeout / 0.05))
        body = f'i=0; while [ $i -lt {loops} ]; do [ -d /proc/$pid ] || exit 0; ' \
               f'[ "$(sed \'s/.*) //\' /proc/$pid/stat 2>/dev/null | cut -d" " -f1)" = Z ] && exit 0; ' \
               f'sleep 0.05; i=$((i+1)); done; exit 1'
        r = await self.run(node_id, self._pid_script(node_id, body), check=False, timeout=timeout + COMMAND_TIMEOUT)
        return r.exit_status in (0, 3)

    async def kill(self, node_id: str) -> None:
        """SIGKILL the node and wait until it is gone."""
        if await self.signal(node_id, "KILL"):
            if not await self._wait_gone(node_id, 10.0):
                raise SSHError(f"node {node_id} on {self.nodes[node_id].spec.label} survived SIGKILL")
            log.info("killed %s", node_id)
        self.nodes[node_id].paused = False

    async def pause(self, node_id: str) -> None:
        """SIGSTOP the node."""
        if await self.signal(node_id, "STOP"):
            self.nodes[node_id].paused = True

    async def resume(self, node_id: str) -> None:
        """SIGCONT the node."""
        await self.signal(node_id, "CONT")
        self.nodes[node_id].paused = False

    async def restart(self, node_id: str) -> None:
        """Start a stopped node and wait until it answers."""
        await self.start_node(node_id)
        await self.wait_ready(node_id)

    async def stop_node(self, node_id: str, grace: float = STOP_GRACE) -> None:
        """SIGTERM (drain), then SIGKILL after the grace period."""
        if self.nodes[node_id].paused:
            await self.resume(node_id)
        if await self.signal(node_id, "TERM") and not await self._wait_gone(node_id, grace):
            await self.kill(node_id)

    # ---- membership changes (the membership nemesis)

    async def add_node(self) -> str:
        """Start a node on the first spare host, configured to bootstrap into the ring through the
        current members; returns its id once it answers. From then on it is a member: a target of
        partitions, kills and pauses. SSHError when no spare host is left."""
        spares = self.spare_ids()
        if not spares:
            raise SSHError("no spare host left to add a node on: give the run more hosts than --nodes")
        nid = spares[0]
        n = self.nodes[nid]
        # Written while the host is still a spare, so the seeds are the current members only.
        await in_thread(n.conn.write_text, f"{n.dir}/node.toml", self.config_text(nid, auto_bootstrap=True), 0o600)
        n.role = MEMBER
        try:
            await self.start_node(nid)
            await self.wait_ready(nid)
        except BaseException:
            # It may have announced JOINING already; its host is not offered again.
            with trio.CancelScope(shield=True):
                await self.forget(nid)
            raise
        log.info("added %s on %s", nid, n.spec.label)
        return nid

    async def forget(self, node_id: str) -> None:
        """A node that left the ring (decommissioned, removed): no longer a target or a seed; stopped
        if still running (a decommissioned node exits by itself). Its host is not reused (see
        ``LEFT``); its log and directory stay until teardown downloads and removes them."""
        self.nodes[node_id].role = LEFT
        if not await self._wait_gone(node_id, LEAVE_GRACE):
            await self.stop_node(node_id)

    async def stop(self) -> None:
        """Stop every node, on every host (used on every exit path)."""
        with trio.CancelScope(shield=True):
            errors = await for_each(self.host_ids(), self.stop_node)
        for nid, exc in errors.items():
            log.warning("stopping %s failed: %s", nid, exc)

    # ---- logs and teardown

    async def collect_logs(self, dest: Path | None = None) -> dict[str, list[Path]]:
        """Download the log and config of every node that ran into ``<dest>/<node>/`` (default: the
        spec's base dir): every host is asked, so nodes that left the ring are included and spares
        that never ran a node have nothing to give."""
        dest = dest or self.spec.base_dir
        got: dict[str, list[Path]] = {}

        async def one(nid: str) -> None:
            n = self.nodes[nid]
            got[nid] = []
            for name in ("node.log", "node.toml"):
                local = dest / nid / name
                if await in_thread(n.conn.get_file, f"{n.dir}/{name}", local):
                    got[nid].append(local)

        errors = await for_each(self.host_ids(), one)
        for nid, exc in errors.items():
            log.warning("could not download the logs of %s: %s", nid, exc)
        return got

    async def collect_coverage(self, cov_dir: Path) -> int:
        """Download every node process's coverage data file into ``<cov_dir>/raw/<node>/``; returns how many."""
        from harness.campaign_coverage import NODE_DATA_NAME, RAW_DIR

        got: list[Path] = []

        def one_host(n: RemoteNode) -> None:
            try:
                names = n.conn.sftp().listdir(n.dir)
            except FileNotFoundError:
                return
            for name in sorted(names):
                if name.startswith(NODE_DATA_NAME + "."):
                    local = cov_dir / RAW_DIR / n.node_id / name
                    if n.conn.get_file(f"{n.dir}/{name}", local):
                        got.append(local)

        errors = await for_each(self.host_ids(), lambda nid: in_thread(one_host, self.nodes[nid]))
        for nid, exc in errors.items():
            log.warning("could not download the coverage data of %s: %s", nid, exc)
        return len(got)

    async def teardown(self, collect: bool = True, force: bool = False) -> None:
        """Download logs, then (unless leave_running and not force) stop nodes and remove what install made."""
        with trio.CancelScope(shield=True):
            if collect:
                await self.collect_logs()
            if not self.spec.leave_running or force:
                await self.stop()
            if collect and self.spec.coverage_dir is not None:
                # After the stop: a node saves its coverage data as it drains.
                await self.collect_coverage(self.spec.coverage_dir)
            if not self.spec.leave_running or force:
                created_root = [nid for nid, n in self.nodes.items() if n.installed and n.created_root]
                errors = await for_each(self.host_ids(), self._uninstall_one)
                # Only once every node dir is gone, and only if empty: namespace hosts share a
                # filesystem, so another node's directory may live in the same root.
                for nid in created_root:
                    await self.run(nid, ["rmdir", "--", self.spec.remote_root], sudo=True, check=False)
                for nid, exc in errors.items():
                    log.warning("could not remove the installation on %s: %s", nid, exc)
            for n in self.nodes.values():
                await in_thread(n.conn.close)

    async def _uninstall_one(self, node_id: str) -> None:
        n = self.nodes[node_id]
        if not n.installed:
            return
        if n.dir.rstrip("/") in FORBIDDEN_ROOTS or not n.dir.startswith(self.spec.remote_root.rstrip("/") + "/"):
            raise SSHError(f"refusing to remove {n.dir} on {n.spec.label}: not a node directory")
        await self.run(node_id, ["rm", "-rf", "--", n.dir], sudo=True)
        n.installed = False


class SSHDB:
    """The nemeses' view (nemesis.faults.DB) of an SSH cluster."""

    def __init__(self, cluster: SSHCluster) -> None:
        self.cluster = cluster

    def node_ids(self) -> list[str]:
        """Node ids."""
        return self.cluster.node_ids()

    async def kill(self, node_id: str) -> None:
        """SIGKILL the remote process."""
        await self.cluster.kill(node_id)

    async def restart(self, node_id: str) -> None:
        """Start it again and wait until it answers."""
        await self.cluster.restart(node_id)

    async def pause(self, node_id: str) -> None:
        """SIGSTOP the remote process."""
        await self.cluster.pause(node_id)

    async def resume(self, node_id: str) -> None:
        """SIGCONT the remote process."""
        await self.cluster.resume(node_id)

    async def admin(self, node_id: str, op: str, **fields: Any) -> dict[str, Any]:
        """An admin operation on the node's client port (decommission and removenode stream data:
        they get longer)."""
        return await self.cluster.admin(node_id, op, timeout=admin_timeout(op), **fields)

    def capacity(self) -> int:
        """How many nodes the ring can have at once from now on (members plus spare hosts)."""
        return self.cluster.capacity()

    async def add_node(self) -> str:
        """Start a node on a spare host that bootstraps into the ring (membership nemesis)."""
        return await self.cluster.add_node()

    async def forget_node(self, node_id: str) -> None:
        """A node that left the ring is no longer a target."""
        await self.cluster.forget(node_id)


def settings_from_args(args: Any) -> SSHSettings:
    """SSHSettings from parsed ``--username``/``--ssh-private-key``/``--password``/... options."""
    return SSHSettings(
        username=args.username or DEFAULT_USERNAME,
        private_key=Path(args.ssh_private_key).expanduser() if args.ssh_private_key else None,
        password=args.password,
        strict_host_key_checking=bool(args.strict_host_key_checking),
        known_hosts=Path(args.known_hosts).expanduser() if getattr(args, "known_hosts", None) else DEFAULT_KNOWN_HOSTS,
    )


def hosts_from_args(args: Any) -> list[HostSpec]:
    """The host list from ``--nodes-file`` or ``--nodes`` (ValueError naming the problem)."""
    if getattr(args, "nodes_file", None):
        path = Path(args.nodes_file)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"--nodes-file {path}: {exc.strerror}") from None
        return parse_nodes_file(text, str(path))
    nodes = getattr(args, "nodes", None)
    if isinstance(nodes, str) and not nodes.strip().isdigit():
        return parse_nodes_list(nodes)
    raise ValueError("--deploy ssh needs --nodes-file or --nodes host1,host2,...")


def nodes_arg(value: str) -> int | str:
    """``--nodes``: a node count for local deploys (``5``) or a comma-separated host list for ssh."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    parse_nodes_list(text)  # refuse a bad list at parse time, naming the entry
    return text
