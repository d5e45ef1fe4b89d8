"""ZooKeeper on SSH hosts for ``--coordination zookeeper`` (namespace hosts, Vagrant VMs, Debian).

The servers run on the first ``--zk-servers`` hosts, beside their nodes (as Jepsen's ZooKeeper
tests co-locate them), each a ``QuorumPeerMain`` JVM from Debian's ``zookeeper`` package,
installed with apt-get where the host lacks it. Each lives in ``<node dir>/zk`` so the SSH
teardown's removal of the node directory removes it too. The zk nemesis kills and pauses these
servers by pid; it does not partition them here (a host's iptables rules cannot tell a node's
traffic from its ZooKeeper's without port rules, which the host nemesis does not write).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

import trio

from harness.deploy.ssh import SSHError, in_thread
from harness.zookeeper import HEAP, READY_TIMEOUT, TICK_MS, ZK_CONF, ZK_JAR, four_letter

# ZooKeeper's own default ports: clients, followers to the leader, leader election.
CLIENT_PORT, PEER_PORT, ELECTION_PORT = 2181, 2888, 3888
INSTALL_TIMEOUT = 600.0


@dataclass
class RemoteZkServer:
    """One ZooKeeper server on an SSH host."""

    sid: int
    node_id: str  # the host, by the node id it carries
    host: str  # its cluster address
    dir: str
    client_port: int = CLIENT_PORT
    paused: bool = False
    started: bool = False

    @property
    def name(self) -> str:
        """zk1, zk2, ... as in the history."""
        return f"zk{self.sid}"


class RemoteZooKeeper:
    """Install, start, kill, pause and stop ZooKeeper servers on an SSH cluster's hosts."""

    # See the module docstring: host iptables rules here are per address, not per port.
    can_partition = False

    def __init__(self, cluster: Any, count: int) -> None:
        hosts = cluster.host_ids()
        if count not in (1, 3, 5):
            raise ValueError(f"--zk-servers must be 1, 3 or 5 (an odd ensemble), got {count}")
        if count > len(hosts):
            raise SSHError(f"--zk-servers {count}: only {len(hosts)} host(s) to run them on")
        self.cluster = cluster
        self.servers = [RemoteZkServer(i + 1, nid, cluster.address(nid), f"{cluster.nodes[nid].dir}/zk")
                        for i, nid in enumerate(hosts[:count])]

    def connect_string(self) -> str:
        """host:port,... of every server."""
        return ",".join(f"{s.host}:{s.client_port}" for s in self.servers)

    def describe(self) -> list[dict[str, object]]:
        """What test.json records about the ensemble."""
        return [{"name": s.name, "host": s.node_id, "client": f"{s.host}:{s.client_port}"} for s in self.servers]

    def _config(self, s: RemoteZkServer) -> str:
        lines = [f"tickTime={TICK_MS}", "initLimit=20", "syncLimit=10", f"dataDir={s.dir}/data",
                 f"clientPort={s.client_port}", f"clientPortAddress={s.host}", "admin.enableServer=false",
                 "4lw.commands.whitelist=ruok,srvr,stat,mntr", "maxClientCnxns=0"]
        if len(self.servers) > 1:
            lines += [f"server.{o.sid}={o.host}:{PEER_PORT}:{ELECTION_PORT}" for o in self.servers]
        return "\n".join(lines) + "\n"

    async def _install(self, s: RemoteZkServer) -> None:
        check = f"command -v java >/dev/null && test -f {shlex.quote(str(ZK_JAR))}"
        have = await self.cluster.run(s.node_id, check, check=False)
        if have.exit_status == 0:
            return
        got = await self.cluster.run(
            s.node_id, "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends zookeeper",
            sudo=True, check=False, timeout=INSTALL_TIMEOUT)
        if got.exit_status != 0:
            raise SSHError(f"{s.node_id}: cannot install Debian's zookeeper package: "
                           f"{(got.stderr or got.stdout).strip()[-300:]}")

    async def start(self) -> None:
        """Install where missing, write each server's config, start every server, wait until they serve."""
        async with trio.open_nursery() as nursery:
            for s in self.servers:
                nursery.start_soon(self._install, s)
        for s in self.servers:
            q = shlex.quote
            await self.cluster.run(s.node_id, f"mkdir -p {q(s.dir)}/data")
            conn = self.cluster.nodes[s.node_id].conn
            await in_thread(conn.write_text, f"{s.dir}/zoo.cfg", self._config(s))
            if len(self.servers) > 1:
                await in_thread(conn.write_text, f"{s.dir}/data/myid", f"{s.sid}\n")
            await self.start_server(s)
        await self.wait_ready()

    async def start_server(self, s: RemoteZkServer) -> None:
        """Start one server's JVM as a daemon that outlives the SSH session."""
        q = shlex.quote
        java = shlex.join(["java", HEAP, f"-Dzookeeper.log.dir={s.dir}", "-Dzookeeper.root.logger=INFO,CONSOLE",
                           "-cp", f"{ZK_CONF}:{ZK_JAR}", "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                           f"{s.dir}/zoo.cfg"])
        inner = f"echo $$ > zk.pid; exec {java}"
        await self.cluster.run(s.node_id, f"cd {q(s.dir)} && setsid nohup sh -c {q(inner)} >> zookeeper.log 2>&1 < /dev/null &")
        s.started, s.paused = True, False

    def _pid(self, s: RemoteZkServer, body: str) -> str:
        d = shlex.quote(s.dir)
        # The pid file alone could name a recycled pid: the command line naming our zoo.cfg proves it.
        return (f"pid=$(cat {d}/zk.pid 2>/dev/null) || exit 3; "
                f"tr '\\0' ' ' < /proc/$pid/cmdline 2>/dev/null | grep -qF {shlex.quote(s.dir + '/zoo.cfg')} || exit 3; {body}")

    async def _signal(self, s: RemoteZkServer, sig: str) -> None:
        await self.cluster.run(s.node_id, self._pid(s, f"kill -{sig} $pid"), check=False)

    async def kill(self, s: RemoteZkServer) -> None:
        """SIGKILL one server."""
        await self._signal(s, "CONT")
        await self._signal(s, "KILL")
        s.paused = False

    async def pause(self, s: RemoteZkServer) -> None:
        """SIGSTOP one server."""
        await self._signal(s, "STOP")
        s.paused = True

    async def resume(self, s: RemoteZkServer) -> None:
        """SIGCONT a paused server."""
        await self._signal(s, "CONT")
        s.paused = False

    async def wait_ready(self, timeout: float = READY_TIMEOUT, servers: list[RemoteZkServer] | None = None) -> None:
        """Until the given servers (default all) answer as part of a quorum, or SSHError naming them."""
        wanted = servers or self.servers

        def serving(s: RemoteZkServer) -> bool:
            out = four_letter(s.host, s.client_port, "srvr")
            return "Mode: " in out and "not currently serving" not in out

        with trio.move_on_after(timeout):
            while not all([await trio.to_thread.run_sync(serving, s) for s in wanted]):
                await trio.sleep(0.3)
            return
        late = [f"{s.name} on {s.node_id}" for s in wanted if not serving(s)]
        raise SSHError(f"ZooKeeper {', '.join(late)} not serving after {timeout:g} s (see {wanted[0].dir}/zookeeper.log)")

    async def stop(self) -> None:
        """Kill every server we started; idempotent."""
        for s in self.servers:
            if s.started:
                await self.kill(s)
                s.started = False
