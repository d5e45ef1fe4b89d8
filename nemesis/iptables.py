"""The network nemesis on real hosts: partitions as iptables DROP rules in ringlab's own chain.

A grudge link ``(src, dst)`` (``dst`` must not hear from ``src``) becomes, on ``dst``'s host,
``iptables -A RINGLAB-INPUT -s <src address> -j DROP`` — Jepsen's ``drop!``. The chain is
ringlab's: ``install`` creates it and puts one jump to it at the top of ``INPUT``; every rule
this object adds is remembered and removed one by one by ``heal``, so rules anyone else put in
``INPUT`` (or anywhere) are never flushed or touched. The chain's packet counters are read before
healing and kept in :attr:`IptablesNet.dropped`, which is how a run proves the partition really
dropped traffic.

Latency needs a Toxiproxy server on the hosts; without one ``slow`` raises
:class:`LatencyUnavailable` with that explanation instead of pretending.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

log = logging.getLogger("nemesis.iptables")

# ringlab's own chain, jumped to from INPUT; its name says whose rules these are.
CHAIN = "RINGLAB-INPUT"
# -w: wait for the xtables lock instead of failing when another iptables runs at the same time.
IPTABLES = ("iptables", "-w")


class LatencyUnavailable(RuntimeError):
    """The hosts have no way to add latency (no Toxiproxy server configured)."""


class HostRunner(Protocol):
    """What the iptables and host clock nemeses need from a deployment (SSHCluster has it)."""

    def node_ids(self) -> list[str]:
        """The nodes, in order."""
        ...

    def address(self, node_id: str) -> str:
        """The node's host address, as its peers see it."""
        ...

    async def run(self, node_id: str, command: Sequence[str] | str, *, sudo: bool = False,
                  check: bool = True, timeout: float = 30.0) -> Any:
        """Run a command on the node's host (result has exit_status, stdout, stderr)."""
        ...


@dataclass(frozen=True)
class RuleCount:
    """One rule of the chain and what it matched."""

    packets: int
    bytes: int
    target: str
    source: str


def parse_counters(text: str) -> list[RuleCount]:
    """Rules of ``iptables -L <chain> -n -v -x`` output, in order (header lines skipped)."""
    rules = []
    for line in text.splitlines():
        fields = line.split()
        # pkts bytes target prot opt in out source destination [extra]
        if len(fields) < 9 or not fields[0].isdigit() or not fields[1].isdigit():
            continue
        rules.append(RuleCount(int(fields[0]), int(fields[1]), fields[2], fields[7].removesuffix("/32")))
    return rules


def _ipt(*args: str) -> str:
    return shlex.join([*IPTABLES, *args])


class IptablesNet:
    """nemesis.faults.Net for hosts: cut links with DROP rules, heal by removing exactly those."""

    def __init__(self, hosts: HostRunner, chain: str = CHAIN) -> None:
        self.hosts = hosts
        self.chain = chain
        # dst node → src nodes whose traffic this object is dropping there.
        self.rules: dict[str, set[str]] = {}
        # (src, dst) → packets dropped, summed over every partition healed so far.
        self.dropped: dict[tuple[str, str], int] = {}
        self.installed: set[str] = set()

    async def _each(self, nodes: Iterable[str], fn: Any) -> None:
        errors: dict[str, BaseException] = {}

        async def one(nid: str) -> None:
            try:
                await fn(nid)
            except Exception as exc:  # noqa: BLE001 - reported below, naming each host
                errors[nid] = exc

        async with trio.open_nursery() as nursery:
            for nid in nodes:
                nursery.start_soon(one, nid)
        if errors:
            raise RuntimeError("iptables failed: " + " | ".join(f"{nid}: {e}" for nid, e in sorted(errors.items())))

    async def install(self, nodes: Iterable[str] | None = None) -> None:
        """Create the chain on the hosts of ``nodes`` (default: every node; a deployment with spare
        hosts names them too), emptying a leftover of ours, and jump to it from INPUT."""
        async def one(nid: str) -> None:
            script = (
                f"{_ipt('-N', self.chain)} 2>/dev/null || {_ipt('-F', self.chain)}; "
                f"{_ipt('-C', 'INPUT', '-j', self.chain)} 2>/dev/null || {_ipt('-I', 'INPUT', '1', '-j', self.chain)}"
            )
            await self.hosts.run(nid, script, sudo=True)
            self.installed.add(nid)

        await self._each(list(nodes) if nodes is not None else self.hosts.node_ids(), one)

    async def cut(self, links: Iterable[tuple[str, str]]) -> None:
        """Drop, on each dst host, packets from each src of the links."""
        by_dst: dict[str, set[str]] = {}
        for src, dst in links:
            if src not in self.rules.get(dst, set()):
                by_dst.setdefault(dst, set()).add(src)
        missing = set(by_dst) - self.installed
        if missing:
            raise RuntimeError(f"iptables chain not installed on {sorted(missing)}; call install() first")

        async def one(dst: str) -> None:
            srcs = sorted(by_dst[dst])
            script = " && ".join(_ipt("-A", self.chain, "-s", self.hosts.address(s), "-j", "DROP") for s in srcs)
            # Recorded before running: a half-applied batch must still be healed.
            self.rules.setdefault(dst, set()).update(srcs)
            await self.hosts.run(dst, script, sudo=True)

        await self._each(sorted(by_dst), one)
        log.info("cut %s", sorted((s, d) for d, ss in by_dst.items() for s in ss))

    async def counters(self) -> dict[str, dict[str, int]]:
        """Packets dropped so far by each of our current rules: dst → src → packets."""
        out: dict[str, dict[str, int]] = {}
        # Sources of our rules included: a node cut off may have left the ring since.
        cut_off = {s for srcs in self.rules.values() for s in srcs}
        by_addr = {self.hosts.address(n): n for n in [*cut_off, *self.hosts.node_ids()]}

        async def one(dst: str) -> None:
            r = await self.hosts.run(dst, _ipt("-L", self.chain, "-n", "-v", "-x"), sudo=True)
            out[dst] = {by_addr.get(rc.source, rc.source): rc.packets for rc in parse_counters(r.stdout) if rc.target == "DROP"}

        await self._each(sorted(self.rules), one)
        return out

    async def heal(self) -> None:
        """Record the drop counters, then delete exactly the rules this object added."""
        if not any(self.rules.values()):
            return
        try:
            for dst, srcs in (await self.counters()).items():
                for src, packets in srcs.items():
                    self.dropped[(src, dst)] = self.dropped.get((src, dst), 0) + packets
        except Exception as exc:  # noqa: BLE001 - healing matters more than the statistics
            log.warning("could not read iptables counters before healing: %s", exc)

        async def one(dst: str) -> None:
            srcs = sorted(self.rules.get(dst, set()))
            # One -D per rule we added (a rule added twice by someone else stays once).
            script = "; ".join(_ipt("-D", self.chain, "-s", self.hosts.address(s), "-j", "DROP") for s in srcs)
            await self.hosts.run(dst, script, sudo=True, check=False)
            self.rules.pop(dst, None)

        await self._each(sorted(self.rules), one)
        log.info("healed; dropped packets so far: %s", self.dropped)

    async def slow(self, links: Iterable[tuple[str, str]], latency_ms: int, jitter_ms: int) -> None:
        """Latency needs Toxiproxy on the hosts; refuse clearly."""
        raise LatencyUnavailable(
            "latency is unavailable on these hosts: iptables can only drop packets, and no Toxiproxy "
            "server is configured (the Vagrant VMs run one; see docs/hosts.md). Drop `latency` from --nemesis."
        )

    async def unslow(self) -> None:
        """Nothing to undo: slow never succeeds here."""

    async def uninstall(self) -> None:
        """Heal, then remove our jump from INPUT and our (now empty) chain."""
        await self.heal()

        async def one(nid: str) -> None:
            script = (
                f"while {_ipt('-C', 'INPUT', '-j', self.chain)} 2>/dev/null; do {_ipt('-D', 'INPUT', '-j', self.chain)} || break; done; "
                f"{_ipt('-F', self.chain)} 2>/dev/null; {_ipt('-X', self.chain)} 2>/dev/null; true"
            )
            await self.hosts.run(nid, script, sudo=True, check=False)
            self.installed.discard(nid)

        await self._each(sorted(self.installed), one)
