"""Latency on SSH hosts through a Toxiproxy server on each host (the Vagrant VMs run one).

iptables can only drop packets, so for latency every internode link must pass through a proxy.
Each host's Toxiproxy server holds one link proxy per peer, ``<src>_to_<dst>``, listening on
that host's loopback and forwarding to the peer's internode port; the node's ``[routes]`` send its
traffic to each peer through them. A link's traffic then leaves the source host from the source's
own address, so the iptables partitions of nemesis/iptables.py cut it as before, and latency is
a toxic on the source host's link proxy. The servers are driven over HTTP from this machine
(``http://<host address>:<port>``): a real Toxiproxy (no token), or ringlab's own proxy server
(``python -m nemesis.proxy --host ADDR``, which off loopback needs the token in
``$RINGLAB_PROXY_TOKEN``, read here too).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from nemesis.proxy_client import ProxyClient, ProxyError, link_name

log = logging.getLogger("nemesis.hostproxies")

# Toxiproxy's own default API port, which vagrant/provision.sh serves on each VM's address.
DEFAULT_PORT = 8474
# The link proxies listen on the host's loopback only: the node beside them is their one client.
LINK_LISTEN = "127.0.0.1:0"
TOKEN_ENV = "RINGLAB_PROXY_TOKEN"


class HostProxyError(Exception):
    """A host's Toxiproxy server is missing or refused a request; names the host."""


def _url(address: str, port: int) -> str:
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


class HostProxies:
    """The Toxiproxy server of each host and the link proxies ringlab made there."""

    def __init__(self, addresses: Mapping[str, str], port: int = DEFAULT_PORT, token: str | None = None) -> None:
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.urls = {nid: _url(addr, port) for nid, addr in addresses.items()}
        self.clients = {nid: ProxyClient(url, token=token) for nid, url in self.urls.items()}
        self.created: dict[str, list[str]] = {}  # host → link proxy names made there

    async def check(self) -> None:
        """Every host answers the Toxiproxy API (HostProxyError naming the first that does not)."""
        for nid, client in self.clients.items():
            try:
                await client.version()
            except ProxyError as exc:
                raise HostProxyError(f"{nid}: no Toxiproxy API at {self.urls[nid]} ({exc.detail}); latency on "
                                     f"SSH hosts needs a Toxiproxy server on each (see docs/hosts.md)") from None

    async def create_links(self, addresses: Mapping[str, str], internode_port: int) -> dict[str, dict[str, str]]:
        """On every host, a link proxy to every other host's internode port; returns each host's
        routes (peer → the loopback address of its link proxy there)."""
        routes: dict[str, dict[str, str]] = {}
        for src, client in self.clients.items():
            wanted = {link_name(src, dst): (LINK_LISTEN, f"{addr}:{internode_port}")
                      for dst, addr in addresses.items() if dst != src}
            self.created[src] = list(wanted)
            try:
                listens = await client.create_proxies(wanted)
                await client.heal_all()  # nothing of an earlier run's faults stays on them
            except ProxyError as exc:
                raise HostProxyError(f"{src}: creating its link proxies on {self.urls[src]} failed: {exc}") from None
            routes[src] = {dst: listens[link_name(src, dst)] for dst in addresses if dst != src}
            log.info("%s routes its peers through its host's link proxies: %s", src,
                     ", ".join(f"{dst} via {addr}" for dst, addr in sorted(routes[src].items())))
        return routes

    async def remove_links(self) -> None:
        """Delete the link proxies ringlab made (each host's server outlives the run); logged, never raised."""
        for src, names in self.created.items():
            try:
                await self.clients[src].delete_proxies(names)
            except ProxyError as exc:
                log.warning("could not remove the link proxies from %s: %s", self.urls[src], exc)
        self.created.clear()


class HostLatencyNet:
    """nemesis.faults.Net for hosts with a Toxiproxy each: partitions through iptables (``inner``),
    latency as toxics on each source host's link proxies."""

    def __init__(self, inner: Any, proxies: HostProxies) -> None:
        self.inner = inner
        self.proxies = proxies
        self._slowed: dict[str, list[str]] = {}  # host → link proxies with latency

    def __getattr__(self, name: str) -> Any:
        # install, uninstall, counters...: the iptables side, unchanged.
        return getattr(self.inner, name)

    async def cut(self, links: Iterable[tuple[str, str]]) -> None:
        """Drop traffic on the links (iptables)."""
        await self.inner.cut(links)

    async def heal(self) -> Any:
        """Restore every cut link (iptables)."""
        return await self.inner.heal()

    async def slow(self, links: Iterable[tuple[str, str]], latency_ms: int, jitter_ms: int) -> None:
        """Latency ± jitter on both streams of each link's proxy, on its source host."""
        by_src: dict[str, list[str]] = {}
        for a, b in sorted(links):
            by_src.setdefault(a, []).append(link_name(a, b))
        for src, names in by_src.items():
            self._slowed.setdefault(src, []).extend(names)
            await self.proxies.clients[src].add_latency(names, latency_ms, jitter_ms)

    async def unslow(self) -> None:
        """Remove ringlab's latency toxics from every link proxy it slowed."""
        slowed, self._slowed = self._slowed, {}
        for src, names in slowed.items():
            await self.proxies.clients[src].remove_latency(names)
