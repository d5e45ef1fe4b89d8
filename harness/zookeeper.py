"""Local ZooKeeper servers for ``--coordination zookeeper``: Debian's package, run on loopback.

The harness starts one server, or an ensemble of three with ``--zk-servers 3``, each a real
``QuorumPeerMain`` JVM from Debian's ``zookeeper`` package (installed by
``scripts/system-deps.sh``) with its own data directory inside the run directory. Nodes reach
the servers through the fault proxy (links ``nX_to_zkY``), so the zk nemesis can partition
a node from the ensemble as it partitions nodes from each other; it also kills and pauses the
server processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import trio

# Debian's zookeeper package: the server jar (its manifest names the libraries it needs) and a
# log4j configuration; no systemd unit is used, every campaign runs its own servers.
ZK_JAR = Path("/usr/share/java/zookeeper.jar")
ZK_CONF = Path("/etc/zookeeper/conf_example")
# 500 ms ticks: sessions may be as short as 2 ticks (1 s), and a 3-server ensemble elects a
# leader within a few ticks, so a killed server is replaced quickly in short campaigns.
TICK_MS = 500
# How long a server may take to answer `ruok` after its JVM starts (JVM start on 2 cores).
READY_TIMEOUT = 60.0
# Starts of the ensemble when a port was taken between choosing and binding it.
START_ATTEMPTS = 3
# The JVM's heap: ZooKeeper's own examples run in far less; keep five nodes and three servers
# comfortable on a small machine.
HEAP = "-Xmx256m"


def unavailable_reason() -> str | None:
    """Why a local ZooKeeper cannot run here, or None when it can."""
    if shutil.which("java") is None:
        return "java is not installed (scripts/system-deps.sh installs Debian's zookeeper, which brings it)"
    if not ZK_JAR.exists():
        return f"{ZK_JAR} is missing: install Debian's zookeeper package (scripts/system-deps.sh does, as root)"
    return None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def four_letter(host: str, port: int, word: str, timeout: float = 2.0) -> str:
    """Send a ZooKeeper four-letter word (ruok, srvr) and return the answer ('' when unreachable)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(word.encode())
            chunks = []
            while True:
                data = s.recv(4096)
                if not data:
                    break
                chunks.append(data)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


@dataclass
class ZkServer:
    """One ZooKeeper server of the ensemble."""

    sid: int
    dir: Path
    host: str
    client_port: int
    peer_port: int
    election_port: int
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False

    @property
    def name(self) -> str:
        """The server's name in proxies and the history: zk1, zk2, ..."""
        return f"zk{self.sid}"

    def alive(self) -> bool:
        """Whether its JVM is running (paused counts as running)."""
        return self.proc is not None and self.proc.poll() is None


class LocalZooKeeper:
    """Start, kill, pause and stop a local ZooKeeper ensemble; owns the server processes."""

    def __init__(self, base_dir: Path, count: int = 1, host: str = "127.0.0.1") -> None:
        if count not in (1, 3, 5):
            raise ValueError(f"--zk-servers must be 1, 3 or 5 (a ZooKeeper ensemble is an odd number), got {count}")
        self.base_dir = base_dir
        self.host = host
        self.servers = [ZkServer(i, base_dir / f"zk{i}", host, _free_port(host), _free_port(host), _free_port(host))
                        for i in range(1, count + 1)]

    def connect_string(self) -> str:
        """host:port,... of every server, direct (the harness's own view, not through proxies)."""
        return ",".join(f"{s.host}:{s.client_port}" for s in self.servers)

    def _write_config(self, s: ZkServer) -> Path:
        data = s.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        lines = [f"tickTime={TICK_MS}", "initLimit=20", "syncLimit=10", f"dataDir={data}",
                 f"clientPort={s.client_port}", f"clientPortAddress={s.host}", "admin.enableServer=false",
                 "4lw.commands.whitelist=ruok,srvr,stat,mntr", "maxClientCnxns=0"]
        if len(self.servers) > 1:
            (data / "myid").write_text(f"{s.sid}\n")
            lines += [f"server.{o.sid}={o.host}:{o.peer_port}:{o.election_port}" for o in self.servers]
        cfg = s.dir / "zoo.cfg"
        cfg.write_text("\n".join(lines) + "\n")
        return cfg

    async def start_server(self, s: ZkServer) -> None:
        """Start (or restart) one server's JVM from its own data directory."""
        self._start(s)

    def _start(self, s: ZkServer) -> None:
        cfg = self._write_config(s)
        log = open(s.dir / "zookeeper.log", "ab")
        cmd = ["java", HEAP, f"-Dzookeeper.log.dir={s.dir}", "-Dzookeeper.root.logger=INFO,CONSOLE",
               "-cp", f"{ZK_CONF}:{ZK_JAR}", "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(cfg)]
        s.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
        log.close()
        s.paused = False

    async def start(self) -> None:
        """Start every server and wait until the ensemble serves (a leader when 3 or 5).

        Raises DeployError naming the server and its log. Ports are picked free a moment before
        the JVMs bind them, so another process can take one in between: then the ensemble is
        started again on fresh ports, up to START_ATTEMPTS times.
        """
        from harness.deploy.local import DeployError

        reason = unavailable_reason()
        if reason:
            raise DeployError(f"cannot start ZooKeeper: {reason}")
        for attempt in range(1, START_ATTEMPTS + 1):
            for s in self.servers:
                self._start(s)
            try:
                await self.wait_ready()
                return
            except RuntimeError as exc:
                clash = any("Address already in use" in (s.dir / "zookeeper.log").read_text(errors="replace")
                            for s in self.servers if (s.dir / "zookeeper.log").exists())
                self.stop()
                if not clash or attempt == START_ATTEMPTS:
                    raise DeployError(str(exc)) from None
                for s in self.servers:
                    (s.dir / "zookeeper.log").rename(s.dir / f"zookeeper.attempt{attempt}.log")
                    s.client_port, s.peer_port, s.election_port = (_free_port(s.host) for _ in range(3))

    def serving(self, s: ZkServer) -> bool:
        """Whether one server answers and is part of a quorum (standalone, leader or follower)."""
        out = four_letter(s.host, s.client_port, "srvr")
        return "Mode: " in out and "not currently serving" not in out

    async def wait_ready(self, timeout: float = READY_TIMEOUT, servers: list[ZkServer] | None = None) -> None:
        """Until every given running server serves, or RuntimeError naming the one that does not."""
        wanted = servers or [s for s in self.servers if s.alive()]
        with trio.move_on_after(timeout):
            while True:
                for s in wanted:
                    if not s.alive():
                        raise RuntimeError(f"ZooKeeper {s.name} exited at start: see {s.dir / 'zookeeper.log'}")
                ready = [await trio.to_thread.run_sync(self.serving, s) for s in wanted]
                if all(ready):
                    return
                await trio.sleep(0.2)
        late = [s.name for s in wanted if not self.serving(s)]
        raise RuntimeError(f"ZooKeeper {', '.join(late)} not serving after {timeout:g} s (logs in {self.base_dir})")

    def mode(self, s: ZkServer) -> str | None:
        """leader, follower or standalone, as the server says (None when it does not answer)."""
        for line in four_letter(s.host, s.client_port, "srvr").splitlines():
            if line.startswith("Mode: "):
                return line.split(": ", 1)[1].strip()
        return None

    async def kill(self, s: ZkServer) -> None:
        """SIGKILL one server (a paused one is killed too)."""
        self._kill(s)

    def _kill(self, s: ZkServer) -> None:
        if s.proc is not None and s.proc.poll() is None:
            os.killpg(s.proc.pid, signal.SIGKILL)
            s.proc.wait()
        s.paused = False

    async def pause(self, s: ZkServer) -> None:
        """SIGSTOP one server's JVM: its sessions stop being served."""
        self._pause(s)

    def _pause(self, s: ZkServer) -> None:
        if s.alive():
            os.killpg(s.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            s.paused = True

    async def resume(self, s: ZkServer) -> None:
        """SIGCONT a paused server."""
        self._resume(s)

    def _resume(self, s: ZkServer) -> None:
        if s.alive() and s.paused:
            os.killpg(s.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
        s.paused = False

    def stop(self) -> None:
        """Kill every server; idempotent (teardown calls it on every exit path)."""
        for s in self.servers:
            if s.paused:
                self._resume(s)
            self._kill(s)

    def describe(self) -> list[dict[str, object]]:
        """What test.json records about the ensemble."""
        return [{"name": s.name, "client": f"{s.host}:{s.client_port}"} for s in self.servers]


def read_assignments(ensemble: Any, root: str | None = None) -> list[dict[str, object]]:
    """The assignment log (``<root>/assignments``) in sequence order, read with kazoo directly."""
    import json

    from kazoo.client import KazooClient

    from node.coordination import CoordinationConfig, epoch_of

    base = root or CoordinationConfig().root
    zk = KazooClient(hosts=ensemble.connect_string(), timeout=10.0)
    zk.start(timeout=15.0)
    try:
        path = f"{base}/assignments"
        if not zk.exists(path):
            return []
        out: list[dict[str, object]] = []
        for name in sorted(zk.get_children(path), key=epoch_of):
            data, _ = zk.get(f"{path}/{name}")
            out.append({"seq": epoch_of(name), **json.loads(data)})
        return out
    finally:
        zk.stop()
        zk.close()
