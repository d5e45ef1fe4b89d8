"""Where a campaign's cluster runs: local processes, or hosts over SSH (namespaces, Vagrant, any).

A :class:`Deployment` gives the campaign runner one surface whatever the target: the cluster
(start, converge, client addresses, stop), the nemesis's ``db`` (process and clock control, and
membership changes: ``add_node``, ``forget_node``, ``capacity``) and ``net`` (cutting and slowing
links), and ``teardown`` on every exit path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import trio

DEPLOYS = ("local", "ssh", "vagrant")


class Deployment(Protocol):
    """What the campaign runner needs from a deployment."""

    cluster: Any
    db: Any
    net: Any

    async def setup(self) -> None:
        """Bring the cluster up (raise DeployError naming what failed; leave nothing behind)."""
        ...

    async def clock_db(self) -> Any:
        """The DB the clock nemesis uses."""
        ...

    async def teardown(self, leave_running: bool, run_dir: Path) -> None:
        """Stop and remove what setup made (unless leave_running); shielded by the caller."""
        ...


class LocalDeployment:
    """Node processes on this machine, every internode link through a Toxiproxy-compatible proxy."""

    def __init__(self, node_count: int, run_dir: Path, secret: str, seed: int, *, commitlog_sync: str,
                 faults: dict[str, bool], toxiproxy: str | None, zk_servers: int = 0, coverage: bool = False,
                 storage: dict[str, Any] | None = None, datacenters: int = 1, racks: int = 1,
                 membership: dict[str, Any] | None = None) -> None:
        from harness.campaign_coverage import prepare_local
        from harness.deploy.local import LocalCluster, LocalClusterSpec, LocalDB, ProxyProcess
        from harness.zookeeper import LocalZooKeeper
        from nemesis.proxy_client import ProxyClient, ProxyNet

        # coordination = "zookeeper": an ensemble of our own, its servers behind link proxies.
        self.zookeeper = LocalZooKeeper(run_dir / "zookeeper", zk_servers) if zk_servers else None
        zk = [(s.name, f"{s.host}:{s.client_port}") for s in self.zookeeper.servers] if self.zookeeper else []
        self.cluster = LocalCluster(LocalClusterSpec(node_count, run_dir / "nodes", secret, seed,
                                                     commitlog_sync=commitlog_sync, faults=faults, zookeeper=zk,
                                                     coverage_rc=prepare_local(run_dir) if coverage else None,
                                                     storage=storage or {}, datacenters=datacenters, racks=racks,
                                                     membership=membership or {}))
        self.proxy_proc = ProxyProcess(run_dir / "proxy.log")
        self.external_proxy = toxiproxy
        self.proxy_url = toxiproxy or self.proxy_proc.start(self.cluster.proxy_port)
        self.proxy = ProxyClient(self.proxy_url, token=None if toxiproxy else self.proxy_proc.token)
        self.db = LocalDB(self.cluster, secret, self.proxy)
        self.net = ProxyNet(self.proxy)

    async def setup(self) -> None:
        """Start the proxy (unless external), create the link proxies, start the nodes."""
        if not self.external_proxy:
            await self.proxy_proc.wait_ready(self.proxy)
        if self.zookeeper is not None:
            # First, and the link proxies from the ports it really serves on (a start that met a
            # taken port retried on fresh ones).
            await self.zookeeper.start()
            self.cluster.spec.zookeeper = [(z.name, f"{z.host}:{z.client_port}") for z in self.zookeeper.servers]
        await self.proxy.create_proxies(self.cluster.proxies())
        await self.proxy.heal_all()
        await self.cluster.start()

    async def clock_db(self) -> Any:
        """Local processes share this machine's clock: skew each node's runtime clock."""
        return self.db

    async def teardown(self, leave_running: bool, run_dir: Path) -> None:
        """Stop nodes and the proxy, or record how to reach them."""
        from harness import store

        if leave_running:
            store.write_json(run_dir / "cluster.json", {
                "nodes": {nid: {**d, "pid": self.cluster.nodes[nid].process.pid if self.cluster.nodes[nid].process else None}
                          for nid, d in self.cluster.describe().items()},
                "proxy": {"url": self.proxy_url, "pid": self.proxy_proc.proc.pid if self.proxy_proc.proc else None},
                "secret": self.db.secret,
                **({"zookeeper": self.zookeeper.describe()} if self.zookeeper else {}),
            })
            return
        try:
            await self.cluster.stop()
        finally:
            if self.zookeeper is not None:
                try:
                    await save_assignments(self.zookeeper, run_dir)
                finally:
                    self.zookeeper.stop()
        self.proxy_proc.stop()
        if self.external_proxy:
            await self.remove_link_proxies()

    async def remove_link_proxies(self) -> None:
        """Delete this cluster's link proxies from an external Toxiproxy server (it outlives the
        run, and the next run would find them listening); a failure is logged, never raised."""
        import logging

        try:
            await self.proxy.delete_proxies(self.cluster.proxies())
        except Exception as exc:  # noqa: BLE001 - teardown goes on; the log says what is left
            logging.getLogger("harness.deploy").warning("could not remove the link proxies from %s: %s",
                                                        self.proxy_url, exc)


class SSHDeployment:
    """Nodes installed over SSH on real hosts; partitions with iptables, clocks on the hosts."""

    def __init__(self, hosts: list[Any], opts: Any, run_dir: Path, secret: str, seed: int, *,
                 faults: dict[str, bool]) -> None:
        from harness.datapaths import node_storage
        from harness.deploy.ssh import SSHCluster, SSHClusterSpec, SSHDB, settings_from_args
        from nemesis.iptables import IptablesNet

        # --nodes N with a nodes file (or Vagrant): N hosts start nodes, the rest are spares.
        count = opts.nodes if isinstance(opts.nodes, int) else None
        self.cluster = SSHCluster(SSHClusterSpec(
            hosts, settings_from_args(opts), run_dir / "nodes", secret, seed,
            commitlog_sync=opts.commitlog_sync, storage=node_storage(opts), faults=faults, remote_root=opts.remote_root,
            leave_running=opts.leave_db_running, node_count=count,
            coverage_dir=run_dir / "coverage" if getattr(opts, "coverage", False) else None))
        self.db = SSHDB(self.cluster)
        self.net: Any = IptablesNet(self.cluster)
        self.host_proxies = host_proxies_for(opts, self.cluster)
        if self.host_proxies is not None:
            from nemesis.hostproxies import HostLatencyNet

            self.net = HostLatencyNet(self.net, self.host_proxies)
        self.clock_mode = opts.clock_mode
        self._net_installed = False
        self.zookeeper: Any = None
        if getattr(opts, "coordination", "gossip") == "zookeeper":
            from harness.deploy.ssh_zookeeper import RemoteZooKeeper

            # Beside the nodes on the first hosts; every node.toml names the whole ensemble.
            self.zookeeper = RemoteZooKeeper(self.cluster, opts.zk_servers)
            self.cluster.spec.zookeeper = self.zookeeper.connect_string().split(",")

    async def setup(self) -> None:
        """Install and start the nodes, then ringlab's iptables chain on every host (spares too,
        so a node joined there is partitioned like the others). With a Toxiproxy on every host,
        first its link proxies, which every node.toml routes its peers through."""
        if self.host_proxies is not None:
            await self.host_proxies.check()
            self.cluster.spec.routes = await self.host_proxies.create_links(
                {nid: self.cluster.address(nid) for nid in self.cluster.host_ids()}, self.cluster.spec.internode_port)
        await self.cluster.start()
        self._net_installed = True  # a half-done install is undone by teardown too
        await self.net.install(self.cluster.host_ids())
        if self.zookeeper is not None:
            # After the nodes: they retry their sessions every second until the ensemble serves.
            await self.zookeeper.start()

    async def clock_db(self) -> Any:
        """Real host clocks (refused where hosts share this machine's), or the nodes' own."""
        from nemesis.hostclock import HostClock, clock_db

        helper_dirs = {nid: n.dir for nid, n in self.cluster.nodes.items()}
        return await clock_db(self.db, HostClock(self.cluster, helper_dirs), self.clock_mode)

    async def teardown(self, leave_running: bool, run_dir: Path) -> None:
        """Remove our iptables rules, download logs, stop and uninstall (unless leave_running)."""
        if self._net_installed:
            try:
                await self.net.uninstall()
            except Exception:  # noqa: BLE001 - keep tearing down; the error is in the log
                import logging

                logging.getLogger("harness.deploy").exception("removing iptables rules failed")
        if self.zookeeper is not None:
            with trio.CancelScope(shield=True):
                await save_assignments(self.zookeeper, run_dir)
                if not leave_running:
                    await self.zookeeper.stop()
        await self.cluster.teardown()
        if self.host_proxies is not None and not leave_running:
            with trio.CancelScope(shield=True):
                await self.host_proxies.remove_links()


def host_proxies_for(opts: Any, cluster: Any) -> Any:
    """Each host's Toxiproxy server when latency is asked for and the hosts have one (--host-toxiproxy;
    the Vagrant VMs run one on 8474), else None: links stay direct."""
    from nemesis.faults import parse_nemeses
    from nemesis.hostproxies import DEFAULT_PORT, HostProxies

    port = opts.host_toxiproxy or (DEFAULT_PORT if opts.deploy == "vagrant" else None)
    if port is None or "latency" not in parse_nemeses(opts.nemesis):
        return None
    return HostProxies({nid: cluster.address(nid) for nid in cluster.host_ids()}, port)


def hosts_for(opts: Any) -> list[Any]:
    """The host list for an ssh or vagrant deploy (ValueError naming what is wrong)."""
    if opts.deploy == "vagrant":
        from harness.deploy.vagrant import vagrant_hosts

        return vagrant_hosts()
    from harness.deploy.ssh import hosts_from_args

    return hosts_from_args(opts)


def make_deployment(opts: Any, run_dir: Path, secret: str, seed: int) -> Deployment:
    """The deployment ``opts.deploy`` asks for."""
    faults = {f: True for f in opts.validation_faults}
    if opts.deploy == "local":
        count = opts.node_count()
        assert count is not None  # a local run always has a count (default or --nodes)
        from harness.datapaths import node_membership, node_storage

        return LocalDeployment(count, run_dir, secret, seed, commitlog_sync=opts.commitlog_sync,
                               faults=faults, toxiproxy=opts.toxiproxy,
                               zk_servers=opts.zk_servers if getattr(opts, "coordination", "gossip") == "zookeeper" else 0,
                               coverage=getattr(opts, "coverage", False), storage=node_storage(opts),
                               datacenters=getattr(opts, "datacenters", 1), racks=getattr(opts, "racks", 1),
                               membership=node_membership(opts))
    if opts.deploy == "vagrant" and not opts.known_hosts:
        import dataclasses

        from harness.deploy.vagrant import vagrant_known_hosts

        # The VMs' keys live apart and are forgotten when a VM is recreated (vagrant.py).
        opts = dataclasses.replace(opts, known_hosts=str(vagrant_known_hosts()))
    return SSHDeployment(hosts_for(opts), opts, run_dir, secret, seed, faults=faults)


async def save_assignments(ensemble: Any, run_dir: Path) -> None:
    """Read the ZooKeeper assignment log into the run directory (logged, never raised, if it fails)."""
    from harness.run import ZK_ASSIGNMENTS_FILE
    from harness.zookeeper import read_assignments

    try:
        log = await trio.to_thread.run_sync(read_assignments, ensemble)
    except Exception as exc:  # the run still ends; its results then lack the assignments check
        import logging

        logging.getLogger("harness").warning("could not read the ZooKeeper assignment log: %s", exc)
        return
    (run_dir / ZK_ASSIGNMENTS_FILE).write_text(json.dumps(log, indent=1))


async def shielded(fn: Any, *args: Any) -> None:
    """Run a cleanup step that must finish even while the campaign is being cancelled."""
    with trio.CancelScope(shield=True):
        await fn(*args)
