"""ringlab's own Toxiproxy-compatible server in each namespace host, on the host's address, as
the Vagrant VMs run Toxiproxy: what `--host-toxiproxy PORT` drives for the latency nemesis."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest
import trio

from harness.deploy import hosts as H
from nemesis.proxy_client import ProxyClient
from tests.hosts.conftest import REPO

API_PORT = 18474  # not Toxiproxy's 8474: a real one on this machine must not answer instead


@pytest.fixture
def host_toxiproxies(namespace_hosts: H.HostsState, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """One server per host; their API URLs. Off loopback ringlab's server needs a token, which the
    harness reads from the same variable, $RINGLAB_PROXY_TOKEN."""
    token = secrets.token_hex(8)
    monkeypatch.setenv("RINGLAB_PROXY_TOKEN", token)
    procs = [subprocess.Popen(
        ["ip", "netns", "exec", h.netns, sys.executable, "-m", "nemesis.proxy", "--host", h.address,
         "--port", str(API_PORT), "--log-level", "WARNING"],
        cwd=REPO, env={**os.environ, "RINGLAB_PROXY_TOKEN": token}, stdout=subprocess.PIPE, text=True)
        for h in namespace_hosts.hosts]
    try:
        for proc in procs:
            assert proc.stdout is not None and "listening" in proc.stdout.readline()
        yield [f"http://{h.address}:{API_PORT}" for h in namespace_hosts.hosts]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def proxies_left(urls: list[str]) -> list[list[str]]:
    """The proxy names each server still holds."""
    async def names() -> list[list[str]]:
        token = os.environ["RINGLAB_PROXY_TOKEN"]
        return [sorted(await ProxyClient(url, token=token).proxies()) for url in urls]

    return trio.run(names)
