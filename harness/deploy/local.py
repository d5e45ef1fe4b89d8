"""A cluster of real node processes on this machine, each internode link through the fault proxy.

Node ``a`` reaches node ``b`` at the proxy ``a_to_b`` (listening on its own loopback port, upstream
``b``'s internode port), so a partition is a set of link proxies whose traffic is held, the way
an iptables DROP holds it. Clients connect to nodes directly: like Jepsen's control node, the
harness is never partitioned from the cluster it watches.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets as _secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from harness.datapaths import toml_lines
from harness.topology import node_lines
from nemesis.membership import admin_timeout
from nemesis.proxy_client import ProxyClient, link_name
from node.client import open_client

log = logging.getLogger("harness.deploy.local")

# How long a node may take from exec to answering on its client port (imports, commit log replay).
START_TIMEOUT = 30.0
# How long to wait for every node to see every other UP through gossip before giving up.
CONVERGE_TIMEOUT = 30.0
# SIGTERM drains (flush, exit); past this the node is killed.
STOP_GRACE = 10.0
# Seeds per cluster: Cassandra recommends a few per datacenter, never every node.
MAX_SEEDS = 3


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1", taken: Iterable[int] = ()) -> list[int]:
    """``count`` distinct ports that were free a moment ago, none of ``taken``.

    All sockets stay bound until every port is chosen, so the OS cannot hand out one port twice;
    ports come from below the ephemeral range (see ip_local_port_range) so that outgoing
    connections, which take ephemeral ports, cannot grab them between our choice and the bind.
    ``taken`` are ports already promised to something not listening right now (a killed node,
    a link proxy not yet created), which a bind test alone would hand out again.
    """
    socks: list[socket.socket] = []
    try:
        skip = set(taken)
        candidates = [p for p in port_range() if p not in skip]
        random.SystemRandom().shuffle(candidates)
        ports: list[int] = []
        for port in candidates:
            if len(ports) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((host, port))
            except OSError:
                s.close()
                continue
            socks.append(s)
            ports.append(port)
        if len(ports) < count:
            raise DeployError(f"could not find {count} free ports on {host}")
        return ports
    finally:
        for s in socks:
            s.close()


PORT_RANGE_ENV = "RINGLAB_PORT_RANGE"


def port_range() -> range:
    """Where local nodes' ports come from: ``$RINGLAB_PORT_RANGE`` (``LOW-HIGH``, e.g. one block
    per campaign run side by side, so a node restarting on its port never finds it taken by
    another campaign's node), else the 20,000 ports below the ephemeral range."""
    text = os.environ.get(PORT_RANGE_ENV, "").strip()
    if text:
        try:
            lo, hi = (int(x) for x in text.split("-"))
        except ValueError:
            raise DeployError(f"{PORT_RANGE_ENV}={text!r}: expected LOW-HIGH, e.g. 20000-24999") from None
        if not 1024 <= lo <= hi <= 65535:
            raise DeployError(f"{PORT_RANGE_ENV}={text!r}: expected 1024 <= LOW <= HIGH <= 65535")
        return range(lo, hi + 1)
    low = _ephemeral_low()
    return range(max(1024, low - 20000), low)


def _ephemeral_low() -> int:
    """The lowest port of the kernel's ephemeral range (Linux default 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


@dataclass
class LocalNode:
    """One node process and where it listens."""

    node_id: str
    dir: Path
    client_port: int
    internode_port: int
    host: str = "127.0.0.1"
    process: trio.Process | None = None
    paused: bool = False
    # Set when the harness itself kills or stops the process, so any other exit is a crash.
    stopping: bool = False
    config_path: Path = field(default_factory=Path)

    @property
    def log_path(self) -> Path:
        """Where the node's stdout and stderr go."""
        return self.dir / "stdout.log"

    def alive(self) -> bool:
        """Whether the process is running (stopped-by-signal counts as running)."""
        return self.process is not None and self.process.returncode is None


@dataclass
class LocalClusterSpec:
    """What to start."""

    node_count: int
    base_dir: Path
    secret: str
    seed: int
    num_tokens: int = 16
    commitlog_sync: str = "batch"
    faults: dict[str, bool] = field(default_factory=dict)
    host: str = "127.0.0.1"
    # coordination = "zookeeper": the ZooKeeper servers (name, "host:port"); each node reaches
    # each server through a link proxy of its own (nX_to_zkY), which the zk nemesis can cut.
    zookeeper: list[tuple[str, str]] = field(default_factory=list)
    # With a coverage config, nodes run under coverage.py (harness/campaign_coverage.py).
    coverage_rc: Path | None = None
    # More [storage] settings of node.toml (harness/datapaths.py).
    storage: dict[str, Any] = field(default_factory=dict)
    # More [membership] settings of node.toml (harness/datapaths.py).
    membership: dict[str, Any] = field(default_factory=dict)
    # Datacenters and racks the nodes are spread over (harness/topology.py).
    datacenters: int = 1
    racks: int = 1


class LocalCluster:
    """Start, stop, kill, pause and resume local node processes; owns their lifetimes."""

    def __init__(self, spec: LocalClusterSpec, proxy_host: str = "127.0.0.1") -> None:
        self.spec = spec
        self.proxy_host = proxy_host
        self.nodes: dict[str, LocalNode] = {}
        self.link_ports: dict[tuple[str, str], int] = {}
        self.forgotten: set[str] = set()
        n = spec.node_count
        # One draw for every port of the cluster, the fault proxy's API included: ports drawn
        # apart could coincide (each free until its owner binds it).
        ports = free_ports(2 * n + n * (n - 1) + 1, spec.host)
        self.proxy_port = ports.pop()
        for i in range(1, n + 1):
            nid = f"n{i}"
            self.nodes[nid] = LocalNode(nid, spec.base_dir / nid, ports.pop(), ports.pop(), spec.host)
        for a in self.nodes:
            for b in self.nodes:
                if a != b:
                    self.link_ports[(a, b)] = ports.pop()
        self._add_zk_links(list(self.nodes))

    def ports_in_use(self) -> set[int]:
        """Every port this cluster has promised: nodes' (down ones too), link proxies', the proxy API's."""
        return ({p for n in self.nodes.values() for p in (n.client_port, n.internode_port)}
                | set(self.link_ports.values()) | {self.proxy_port})

    # ---- topology

    def node_ids(self) -> list[str]:
        """Node ids in order (nodes that left the ring excluded)."""
        return [n for n in self.nodes if n not in self.forgotten]

    def proxies(self) -> dict[str, tuple[str, str]]:
        """Every link proxy: name → (listen, upstream)."""
        out = {}
        zk = dict(self.spec.zookeeper)
        for (a, b), port in self.link_ports.items():
            if b in zk:
                out[link_name(a, b)] = (f"{self.proxy_host}:{port}", zk[b])
                continue
            nb = self.nodes[b]
            out[link_name(a, b)] = (f"{self.proxy_host}:{port}", f"{nb.host}:{nb.internode_port}")
        return out

    def _add_zk_links(self, node_ids: list[str]) -> None:
        names = [name for name, _ in self.spec.zookeeper]
        ports = free_ports(len(node_ids) * len(names), self.spec.host, self.ports_in_use()) if names else []
        for nid in node_ids:
            for name in names:
                self.link_ports[(nid, name)] = ports.pop()

    def _coordination_lines(self, nid: str) -> list[str]:
        if not self.spec.zookeeper:
            return []
        servers = [f'"{self.proxy_host}:{self.link_ports[(nid, name)]}"' for name, _ in self.spec.zookeeper]
        return ["[coordination]", 'mode = "zookeeper"', "servers = [" + ", ".join(servers) + "]", ""]

    def client_address(self, node_id: str) -> tuple[str, int]:
        """Where clients reach ``node_id``."""
        n = self.nodes[node_id]
        return n.host, n.client_port

    def write_configs(self) -> None:
        """One node.toml per node, routes through the link proxies, seeds through them too."""
        for idx, nid in enumerate(self.nodes):
            self._write_config(nid, idx)

    def _write_config(self, nid: str, idx: int, auto_bootstrap: bool = False) -> None:
        n = self.nodes[nid]
        ids = [i for i in self.node_ids() if (nid, i) in self.link_ports or i == nid]
        seeds = [s for s in self.node_ids() if s not in self.forgotten][:MAX_SEEDS]
        n.dir.mkdir(parents=True, exist_ok=True)
        routes = {b: f"{self.proxy_host}:{self.link_ports[(nid, b)]}" for b in ids if b != nid}
        seed_addrs = [f"{n.host}:{n.internode_port}" if s == nid else routes[s] for s in seeds if s in routes or s == nid]
        lines = [
            f'node_id = "{nid}"',
            f'data_dir = "{(n.dir / "data").as_posix()}"',
            f'listen_host = "{n.host}"',
            f"client_port = {n.client_port}",
            f"internode_port = {n.internode_port}",
            "seeds = [" + ", ".join(f'"{s}"' for s in seed_addrs) + "]",
            f"num_tokens = {self.spec.num_tokens}",
            f'cluster_secret = "{self.spec.secret}"',
            f"rng_seed = {self.spec.seed * 1000 + idx}",
            *node_lines(idx, self.spec),
            "",
            "[routes]",
            *[f'{b} = "{addr}"' for b, addr in routes.items()],
            "",
            "[storage]",
            f'commitlog_sync = "{self.spec.commitlog_sync}"',
            *toml_lines(self.spec.storage),
            "",
            "[membership]",
            f"auto_bootstrap = {'true' if auto_bootstrap else 'false'}",
            *toml_lines(self.spec.membership),
            "",
            "[faults]",
            *[f"{k} = {'true' if v else 'false'}" for k, v in self.spec.faults.items()],
            "",
            *self._coordination_lines(nid),
        ]
        n.config_path = n.dir / "node.toml"
        n.config_path.write_text("\n".join(lines))

    def add_node(self) -> tuple[str, dict[str, tuple[str, str]]]:
        """Describe a fresh node that will bootstrap into the ring; returns its id and new link proxies.

        Every link to and from the new node gets its own proxy, like the first nodes' links. The
        running nodes' configs gain a route to the newcomer (for restarts); the running
        processes learn it through the admin op ``route`` (see :meth:`LocalDB.add_node`).
        """
        nid = f"n{len(self.nodes) + 1}"
        others = [i for i in self.nodes]
        ports = free_ports(2 + 2 * len(others), self.spec.host, self.ports_in_use())
        self.nodes[nid] = LocalNode(nid, self.spec.base_dir / nid, ports.pop(), ports.pop(), self.spec.host)
        for b in others:
            self.link_ports[(nid, b)] = ports.pop()
            self.link_ports[(b, nid)] = ports.pop()
        self._add_zk_links([nid])
        self._write_config(nid, len(self.nodes) - 1, auto_bootstrap=True)
        for idx, b in enumerate(self.nodes):
            if b != nid and b not in self.forgotten:
                self._write_config(b, idx)
        new = {k: v for k, v in self.proxies().items() if k.startswith(f"{nid}_to_") or k.endswith(f"_to_{nid}")}
        return nid, new

    def forget(self, node_id: str) -> None:
        """A node that left the ring: no longer a target, a seed, or expected to be running."""
        self.forgotten.add(node_id)
        self.nodes[node_id].stopping = True

    # ---- process control

    async def start_node(self, node_id: str) -> None:
        """Start one node process (its log appends, so restarts keep earlier lines)."""
        n = self.nodes[node_id]
        if n.alive():
            return
        logf = open(n.log_path, "ab")  # noqa: SIM115 - handed to the child, closed right after
        try:
            argv = [sys.executable, "-m", "node", "--config", str(n.config_path)]
            if self.spec.coverage_rc is not None:
                from harness.campaign_coverage import node_command

                argv = node_command(sys.executable, str(self.spec.coverage_rc), argv[3:])
            n.process = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                # Its own session: a Ctrl-C at the terminal reaches the harness, which heals and
                # stops the nodes in order, and `cluster up` nodes outlive the command.
                start_new_session=True,
            )
        finally:
            logf.close()
        n.paused = False
        n.stopping = False
        log.info("started %s pid=%s client=%s:%s", node_id, n.process.pid, n.host, n.client_port)

    async def wait_ready(self, node_id: str, timeout: float = START_TIMEOUT) -> None:
        """Wait until the node answers ``ping`` on its client port."""
        n = self.nodes[node_id]
        with trio.move_on_after(timeout) as scope:
            while True:
                if n.process is not None and n.process.returncode is not None:
                    raise DeployError(
                        f"node {node_id} exited with code {n.process.returncode} during start; "
                        f"see {n.log_path}: {tail(n.log_path)}"
                    )
                try:
                    async with open_client(n.host, n.client_port, secret=self.spec.secret, timeout=2.0) as c:
                        await c.request("ping")
                        return
                except Exception:  # noqa: BLE001 - not up yet: any failure means try again
                    await trio.sleep(0.1)
        if scope.cancelled_caught:
            raise DeployError(f"node {node_id} did not answer within {timeout:g} s; see {n.log_path}: {tail(n.log_path)}")

    async def start(self) -> None:
        """Write configs, start every node, wait until each answers."""
        self.write_configs()
        for nid in self.nodes:
            await self.start_node(nid)
        for nid in self.nodes:
            await self.wait_ready(nid)

    async def wait_converged(self, timeout: float = CONVERGE_TIMEOUT, nodes: list[str] | None = None) -> None:
        """Wait until every running node sees every running node UP and NORMAL."""
        want = set(nodes or [nid for nid in self.node_ids() if self.nodes[nid].alive() and not self.nodes[nid].paused])
        with trio.move_on_after(timeout):
            while True:
                if all([await self._sees(nid, want) for nid in want]):
                    return
                await trio.sleep(0.25)
        raise DeployError(f"gossip did not converge on {sorted(want)} within {timeout:g} s")

    async def _sees(self, node_id: str, want: set[str]) -> bool:
        host, port = self.client_address(node_id)
        try:
            async with open_client(host, port, secret=self.spec.secret, timeout=2.0) as c:
                status = await c.admin("status", load=False)
        except Exception:  # noqa: BLE001 - a node that cannot answer does not see anyone yet
            return False
        up = {row["node_id"] for row in status.get("nodes", []) if row.get("state") == "U" and row.get("status") == "NORMAL"}
        return want <= up

    def signal(self, node_id: str, sig: int) -> None:
        """Send a signal to a node process if it is running."""
        n = self.nodes[node_id]
        if n.alive() and n.process is not None:
            n.process.send_signal(sig)

    async def kill(self, node_id: str) -> None:
        """SIGKILL a node and reap it."""
        n = self.nodes[node_id]
        if n.process is None:
            return
        n.stopping = True
        if n.paused:
            self.signal(node_id, signal.SIGCONT)
        self.signal(node_id, signal.SIGKILL)
        with trio.CancelScope(shield=True):
            await n.process.wait()
        n.paused = False
        log.info("killed %s", node_id)

    def pause(self, node_id: str) -> None:
        """SIGSTOP a node."""
        self.signal(node_id, signal.SIGSTOP)
        self.nodes[node_id].paused = True

    def resume(self, node_id: str) -> None:
        """SIGCONT a node."""
        self.signal(node_id, signal.SIGCONT)
        self.nodes[node_id].paused = False

    async def stop_node(self, node_id: str, grace: float = STOP_GRACE) -> None:
        """SIGTERM (drain), then SIGKILL after the grace period."""
        n = self.nodes[node_id]
        if n.process is None or n.process.returncode is not None:
            return
        n.stopping = True
        if n.paused:
            self.resume(node_id)
        self.signal(node_id, signal.SIGTERM)
        with trio.CancelScope(shield=True):
            with trio.move_on_after(grace):
                await n.process.wait()
            if n.process.returncode is None:
                await self.kill(node_id)

    async def stop(self) -> None:
        """Stop every node (used on every exit path)."""
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for nid in self.nodes:
                    nursery.start_soon(self.stop_node, nid)

    def crashed(self) -> dict[str, str]:
        """Nodes whose process exited without the harness killing or stopping it: node → why."""
        out = {}
        for nid, n in self.nodes.items():
            if n.process is not None and n.process.returncode is not None and not n.stopping:
                out[nid] = f"exited with code {n.process.returncode}; see {n.log_path}: {tail(n.log_path, 2)}"
        return out

    def describe(self) -> dict[str, Any]:
        """The topology, for test.json."""
        return {
            nid: {"client": f"{n.host}:{n.client_port}", "internode": f"{n.host}:{n.internode_port}",
                  "dir": str(n.dir)}
            for nid, n in self.nodes.items()
        }


class ProxyProcess:
    """ringlab's fault proxy as a child process (so it survives --leave-db-running)."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        # Only the harness may drive it: other local users can reach a loopback port too.
        self.token = _secrets.token_hex(16)

    def start(self, port: int | None = None) -> str:
        """Start it on ``port`` (the cluster's draw, see LocalCluster.proxy_port) or a free
        loopback port and return its URL (requests need ``self.token``)."""
        port = port or free_port()
        logf = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nemesis.proxy", "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True,
            env={**os.environ, "RINGLAB_PROXY_TOKEN": self.token},
        )
        logf.close()
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def wait_ready(self, client: ProxyClient, timeout: float = 15.0) -> None:
        """Wait until the API answers."""
        with trio.move_on_after(timeout):
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise DeployError(f"fault proxy exited with code {self.proc.returncode}; see {self.log_path}")
                try:
                    await client.version()
                    return
                except Exception:  # noqa: BLE001 - not listening yet
                    await trio.sleep(0.1)
        raise DeployError(f"fault proxy did not answer within {timeout:g} s; see {self.log_path}")

    def stop(self) -> None:
        """Terminate it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class LocalDB:
    """The nemesis's view of a local cluster."""

    def __init__(self, cluster: LocalCluster, secret: str, proxy: ProxyClient | None = None) -> None:
        self.cluster = cluster
        self.secret = secret
        self.proxy = proxy

    def node_ids(self) -> list[str]:
        """Node ids."""
        return self.cluster.node_ids()

    async def kill(self, node_id: str) -> None:
        """SIGKILL."""
        await self.cluster.kill(node_id)

    async def restart(self, node_id: str) -> None:
        """Start and wait until it answers."""
        await self.cluster.start_node(node_id)
        await self.cluster.wait_ready(node_id)

    async def pause(self, node_id: str) -> None:
        """SIGSTOP."""
        self.cluster.pause(node_id)

    async def resume(self, node_id: str) -> None:
        """SIGCONT."""
        self.cluster.resume(node_id)

    def storage_dir(self, node_id: str) -> Path:
        """The node's storage engine files (the corrupt nemesis damages them)."""
        return self.cluster.nodes[node_id].dir / "data" / "storage"

    async def admin(self, node_id: str, op: str, **fields: Any) -> dict[str, Any]:
        """An admin operation (decommission and removenode stream data: they get longer)."""
        host, port = self.cluster.client_address(node_id)
        with trio.fail_after(admin_timeout(op)):
            async with open_client(host, port, secret=self.secret) as c:
                return await c.admin(op, **fields)

    async def add_node(self) -> str:
        """Start a fresh node that bootstraps into the ring (membership nemesis)."""
        nid, proxies = self.cluster.add_node()
        if self.proxy is not None:
            await self.proxy.create_proxies(proxies)
            # Running nodes reach the newcomer through its proxies too, before it first gossips,
            # so partitions cut both directions of its links.
            for b in self.cluster.node_ids():
                if b != nid and self.cluster.nodes[b].alive():
                    listen, _ = proxies[link_name(b, nid)]
                    with contextlib.suppress(Exception):  # a node that is down reads it from node.toml
                        await self.admin(b, "route", node=nid, address=listen)
        await self.cluster.start_node(nid)
        await self.cluster.wait_ready(nid)
        return nid

    async def forget_node(self, node_id: str) -> None:
        """A node that left the ring is no longer a target."""
        self.cluster.forget(node_id)

    def capacity(self) -> int | None:
        """No limit of its own: every added node is a new process with ports of its own."""
        return None


class DeployError(RuntimeError):
    """The cluster could not be brought up; the message names the node and its log."""


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log, for error messages."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


# ---- `harness cluster up|down|status`: a long-lived local cluster for manual use, as ccm does.

CLUSTER_FILE = "cluster.json"


async def cluster_up(cluster_dir: Path, node_count: int, seed: int, commitlog_sync: str = "periodic") -> dict[str, Any]:
    """Start a fault proxy and ``node_count`` nodes that outlive this command; returns the state."""
    import json
    import secrets as _secrets

    state_path = cluster_dir / CLUSTER_FILE
    if state_path.exists():
        raise DeployError(f"a cluster is already described by {state_path}; run `harness cluster down` first")
    cluster_dir.mkdir(parents=True, exist_ok=True)
    secret = _secrets.token_hex(16)
    cluster = LocalCluster(LocalClusterSpec(node_count, cluster_dir / "nodes", secret, seed, commitlog_sync=commitlog_sync))
    proxy = ProxyProcess(cluster_dir / "proxy.log")
    url = proxy.start(cluster.proxy_port)
    state: dict[str, Any] = {"proxy": {"url": url, "pid": proxy.proc.pid if proxy.proc else None, "token": proxy.token},
                             "secret": secret, "nodes": {}}
    try:
        client = ProxyClient(url, token=proxy.token)
        await proxy.wait_ready(client)
        await client.create_proxies(cluster.proxies())
        await cluster.start()
        await cluster.wait_converged()
    except BaseException:
        with trio.CancelScope(shield=True):
            await cluster.stop()
        proxy.stop()
        raise
    for nid, n in cluster.nodes.items():
        state["nodes"][nid] = {**cluster.describe()[nid], "pid": n.process.pid if n.process else None}
    state_path.write_text(json.dumps(state, indent=2))
    return state


def cluster_down(cluster_dir: Path) -> list[str]:
    """Stop everything ``cluster up`` started (SIGTERM, then SIGKILL); returns what was stopped."""
    import time as _time

    state_path = cluster_dir / CLUSTER_FILE
    state = _read_state(state_path)
    pids = {nid: n.get("pid") for nid, n in state.get("nodes", {}).items()}
    pids["proxy"] = state.get("proxy", {}).get("pid")
    stopped = []
    for name, pid in pids.items():
        if not pid:
            continue
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
            stopped.append(name)
        except ProcessLookupError:
            continue
    deadline = _time.monotonic() + STOP_GRACE
    for pid in (p for p in pids.values() if p):
        while _time.monotonic() < deadline and _pid_alive(pid):
            _time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    state_path.unlink()
    return stopped


def _read_state(state_path: Path) -> dict[str, Any]:
    """The cluster.json `cluster up` wrote; DeployError in one line when there is none or it is not one."""
    import json

    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        raise DeployError(f"no cluster is running here ({state_path} does not exist)") from None
    except (OSError, ValueError) as exc:
        raise DeployError(f"{state_path} is not a cluster's state ({exc})") from None
    if not isinstance(state, dict) or not isinstance(state.get("nodes"), dict):
        raise DeployError(f"{state_path} is not a cluster's state (no 'nodes')")
    return state


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours would still answer; we are never the parent of `cluster up` nodes.
    return True


async def cluster_status(cluster_dir: Path) -> list[dict[str, Any]]:
    """Each node's process state and what it reports about the ring."""
    state_path = cluster_dir / CLUSTER_FILE
    state = _read_state(state_path)
    rows = []
    for nid, n in state["nodes"].items():
        host, port = n["client"].rsplit(":", 1)
        row: dict[str, Any] = {"node": nid, "pid": n.get("pid"), "client": n["client"],
                               "process": "running" if n.get("pid") and _pid_alive(n["pid"]) else "gone"}
        try:
            with trio.fail_after(3):
                async with open_client(host, int(port), secret=state["secret"]) as c:
                    status = await c.admin("status")
            row["sees"] = {r["node_id"]: r["state"] + r["status"][0] for r in status.get("nodes", [])}
        except Exception as exc:  # noqa: BLE001 - report whatever is wrong per node
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return rows
