"""Latency on SSH hosts through each host's Toxiproxy server (issue 18): link proxies per peer on
the source host, node.toml [routes] through them, latency toxics on the source's link proxies,
the proxies removed at teardown; Vagrant uses the VMs' own servers. Without real hosts: ringlab's
proxy server on loopback stands in for each host's Toxiproxy."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import trio

from harness import cli
from harness.deploy import host_proxies_for
from harness.deploy.ssh import HostSpec, SSHCluster, SSHClusterSpec, SSHSettings
from harness.run import RunOptions
from nemesis.hostproxies import HostLatencyNet, HostProxies, HostProxyError
from nemesis.proxy import serve_proxy_api
from nemesis.proxy_client import ProxyClient
from tests.unit.echo import echo_handler
from tests.unit.test_proxy_client import echoes


class FakeIptables:
    """The iptables side of the net, recording what it was asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def cut(self, links: object) -> None:
        self.calls.append("cut")

    async def heal(self) -> None:
        self.calls.append("heal")

    async def install(self, nodes: object) -> None:
        self.calls.append("install")


async def test_link_proxies_routes_latency_and_removal(nursery: trio.Nursery) -> None:
    port = await nursery.start(serve_proxy_api, "127.0.0.1", 0)
    listeners = await nursery.start(functools.partial(trio.serve_tcp, echo_handler, 0, host="127.0.0.1"))
    internode = listeners[0].socket.getsockname()[1]
    # Three "hosts" whose servers are one server on loopback (each host's proxies are its own names).
    addresses = {"n1": "127.0.0.1", "n2": "127.0.0.1", "n3": "127.0.0.1"}
    proxies = HostProxies(addresses, port)
    await proxies.check()
    routes = await proxies.create_links(addresses, internode)
    assert sorted(routes) == ["n1", "n2", "n3"] and sorted(routes["n1"]) == ["n2", "n3"]
    assert await echoes(routes["n1"]["n2"])  # the route reaches the peer's internode port
    api = ProxyClient(f"http://127.0.0.1:{port}")
    assert sorted(await api.proxies()) == ["n1_to_n2", "n1_to_n3", "n2_to_n1", "n2_to_n3", "n3_to_n1", "n3_to_n2"]
    iptables = FakeIptables()
    net = HostLatencyNet(iptables, proxies)
    await net.slow({("n1", "n2"), ("n3", "n1")}, 100, 50)
    toxics = {name: sorted(t["name"] for t in p["toxics"]) for name, p in (await api.proxies()).items()}
    assert toxics["n1_to_n2"] == toxics["n3_to_n1"] == ["ringlab_latency_downstream", "ringlab_latency_upstream"]
    assert toxics["n2_to_n1"] == toxics["n1_to_n3"] == []
    await net.unslow()
    assert all(not p["toxics"] for p in (await api.proxies()).values())
    await net.cut({("n1", "n2")})
    await net.heal()
    await net.install(["n1"])  # the rest of the Net is iptables' own
    assert iptables.calls == ["cut", "heal", "install"]
    await api.create_proxies({"someone_elses": ("127.0.0.1:0", "127.0.0.1:9")})
    await proxies.remove_links()
    assert list(await api.proxies()) == ["someone_elses"]


async def test_a_host_without_a_toxiproxy_is_named() -> None:
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(HostProxyError, match=r"^n1: no Toxiproxy API at http://127.0.0.1:\d+ "):
            await HostProxies({"n1": "127.0.0.1"}, dead).check()


def test_node_toml_routes_each_peer_through_its_link_proxy(tmp_path: Path) -> None:
    hosts = [HostSpec(host=f"10.0.0.{i}", name=f"n{i}") for i in (1, 2)]
    cluster = SSHCluster(SSHClusterSpec(hosts, SSHSettings(), tmp_path, "s", 1))
    assert "[routes]" not in cluster.config_text("n1")
    cluster.spec.routes = {"n1": {"n2": "127.0.0.1:40001"}}
    text = cluster.config_text("n1")
    assert '[routes]\n"n2" = "127.0.0.1:40001"\n' in text
    import tomllib

    assert tomllib.loads(text)["routes"] == {"n2": "127.0.0.1:40001"}


def test_host_proxies_only_for_latency_and_vagrant_defaults_to_its_vms(tmp_path: Path) -> None:
    hosts = [HostSpec(host="10.0.0.1", name="n1")]
    cluster = SSHCluster(SSHClusterSpec(hosts, SSHSettings(), tmp_path, "s", 1))
    assert host_proxies_for(RunOptions(deploy="ssh", nemesis="latency"), cluster) is None
    assert host_proxies_for(RunOptions(deploy="ssh", nemesis="partition", host_toxiproxy=8474), cluster) is None
    ssh = host_proxies_for(RunOptions(deploy="ssh", nemesis="partition,latency", host_toxiproxy=9000), cluster)
    assert ssh.urls == {"n1": "http://10.0.0.1:9000"}
    vagrant = host_proxies_for(RunOptions(deploy="vagrant", nemesis="all"), cluster)
    assert vagrant.urls == {"n1": "http://10.0.0.1:8474"}


def test_latency_over_ssh_without_host_toxiproxy_names_the_option(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--deploy", "ssh", "--nodes", "h1,h2,h3", "--nemesis", "latency",
                     "--store", str(tmp_path / "s")]) == 254
    assert "give --host-toxiproxy PORT when every host runs a Toxiproxy server" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--deploy", "ssh", "--nodes", "h1", "--host-toxiproxy", "99999"])
    assert exited.value.code == 254
    err = capsys.readouterr().err.strip()
    assert "--host-toxiproxy" in err and "port 99999 is outside 1-65535" in err and len(err.splitlines()) == 1


def test_a_missing_host_toxiproxy_is_a_user_error() -> None:
    from harness.preflight import user_error

    assert user_error(HostProxyError("n2: no Toxiproxy API at http://10.0.0.2:8474 (refused)")) == \
        "--nemesis latency: n2: no Toxiproxy API at http://10.0.0.2:8474 (refused)"
