"""Clock faults on hosts' real clocks: bump, strobe and reset with ``clock_settime`` via sudo.

A small helper script (:data:`HELPER`) is uploaded into each node's directory and run with sudo;
it reads and sets ``CLOCK_REALTIME`` (Python's ``time.clock_settime``). Offsets are measured from
the control machine like NTP does: the host's reading against the midpoint of the round trip,
with half the round trip as the uncertainty. ``reset`` asks the configured time source to step
the clock (``chronyc makestep``, as the Vagrant VMs run chrony) or, without one, steps it back by
the measured offset.

Hosts that share the control machine's kernel share its clock: a namespace test host setting
"its" clock would set this machine's and every other host's. :meth:`HostClock.install` detects
that (same kernel boot id) and refuses with :class:`SharedClockError`. For those hosts
:func:`clock_db` can fall back to the nodes' own admin clock control (``mode="admin"``, the
per-process skew the local deployment uses) — only when asked explicitly.
"""

from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path
from typing import Any

from nemesis.iptables import HostRunner

log = logging.getLogger("nemesis.hostclock")

HELPER_NAME = "ringlab-clock.py"
# Where this machine's kernel says which boot it is; equal on two "hosts" = one kernel, one clock.
BOOT_ID = "/proc/sys/kernel/random/boot_id"
CLOCK_MODES = ("host", "admin")
# Time sources reset() knows how to ask for a step back to true time.
TIME_SOURCES = {"chrony": "chronyc -a makestep"}

HELPER = '''\
"""ringlab clock helper (uploaded by the harness; run with sudo): now | bump US | strobe MS PERIOD_MS SECONDS."""
import sys
import time


def now_ns():
    return time.clock_gettime_ns(time.CLOCK_REALTIME)


def bump(delta_us):
    time.clock_settime_ns(time.CLOCK_REALTIME, now_ns() + delta_us * 1000)


def main(argv):
    if argv[:1] == ["now"]:
        print(now_ns())
    elif argv[:1] == ["bump"] and len(argv) == 2:
        bump(int(argv[1]))
        print(now_ns())
    elif argv[:1] == ["strobe"] and len(argv) == 4:
        delta_us, period, duration = int(argv[1]) * 1000, int(argv[2]) / 1000, float(argv[3])
        # Flip forward and back on the host itself so the period does not depend on SSH latency;
        # monotonic time drives the loop because the wall clock is what we are flipping.
        end, flips = time.monotonic() + duration, 0
        while time.monotonic() < end:
            bump(delta_us if flips % 2 == 0 else -delta_us)
            flips += 1
            time.sleep(period)
        if flips % 2:
            bump(-delta_us)
            flips += 1
        print(flips)
    else:
        sys.exit("usage: ringlab-clock.py now | bump DELTA_US | strobe DELTA_MS PERIOD_MS SECONDS")


main(sys.argv[1:])
'''


class SharedClockError(RuntimeError):
    """The hosts share the control machine's clock: a host clock fault would hit every host."""


def local_boot_id() -> str:
    """This machine's kernel boot id."""
    return Path(BOOT_ID).read_text().strip()


class HostClock:
    """Real clock control on every host of a deployment (an SSHCluster or any HostRunner with node dirs)."""

    def __init__(self, hosts: HostRunner, helper_dirs: dict[str, str], time_source: str | None = None,
                 python: str = "python3") -> None:
        if time_source is not None and time_source not in TIME_SOURCES:
            raise ValueError(f"unknown time source {time_source!r}; one of {', '.join(TIME_SOURCES)}")
        self.hosts = hosts
        self.helper = {nid: f"{d.rstrip('/')}/{HELPER_NAME}" for nid, d in helper_dirs.items()}
        self.time_source = time_source
        self.python = python
        self.offsets: list[dict[str, Any]] = []

    async def shared_clock_hosts(self) -> list[str]:
        """Hosts running on this machine's kernel (and so on its clock), of every host given a
        helper directory (spare hosts a node may join later included)."""
        mine = local_boot_id()
        shared = []
        for nid in self.helper:
            r = await self.hosts.run(nid, ["cat", BOOT_ID], check=False)
            if r.exit_status == 0 and r.stdout.strip() == mine:
                shared.append(nid)
        return shared

    async def install(self) -> None:
        """Refuse shared clocks; upload the helper to every host given a helper directory."""
        shared = await self.shared_clock_hosts()
        if shared:
            raise SharedClockError(
                f"hosts {', '.join(shared)} share this machine's kernel clock (same boot id): setting their "
                f"clock would set the control machine's and every other host's. Real clock faults need separate "
                f"machines or VMs; on namespace test hosts use the nodes' own clock control instead "
                f"(clock mode 'admin')."
            )
        for nid, path in self.helper.items():
            await self.hosts.run(nid, f"cat > {shlex.quote(path)} <<'RINGLAB_EOF'\n{HELPER}RINGLAB_EOF\n")

    async def _helper(self, nid: str, *args: str, timeout: float = 30.0) -> str:
        r = await self.hosts.run(nid, [self.python, self.helper[nid], *args], sudo=True, timeout=timeout)
        return str(r.stdout).strip()

    async def offset_us(self, nid: str) -> tuple[int, int]:
        """(host clock − control clock, uncertainty) in µs, measured over one SSH round trip."""
        t0 = time.time_ns()
        remote = int(await self._helper(nid, "now"))
        t1 = time.time_ns()
        return (remote - (t0 + t1) // 2) // 1000, (t1 - t0) // 2000

    async def bump(self, nid: str, delta_us: int) -> None:
        """Move the host's clock by ``delta_us``."""
        await self._helper(nid, "bump", str(int(delta_us)))

    async def strobe(self, nid: str, delta_ms: int, period_ms: int, duration_s: float) -> int:
        """Flip the host's clock ±delta every period for a duration (on the host); returns the flips."""
        return int(await self._helper(nid, "strobe", str(delta_ms), str(period_ms), str(duration_s),
                                      timeout=duration_s + 30))

    async def reset(self, nid: str) -> None:
        """Step the clock back to true time: the time source when configured, else by the measured offset."""
        if self.time_source is not None:
            await self.hosts.run(nid, TIME_SOURCES[self.time_source], sudo=True)
            return
        offset, _ = await self.offset_us(nid)
        await self.bump(nid, -offset)

    async def record_offsets(self) -> dict[str, int | None]:
        """Every host's offset in µs (None where it could not be measured), kept in :attr:`offsets`."""
        out: dict[str, int | None] = {}
        for nid in self.hosts.node_ids():
            try:
                out[nid] = (await self.offset_us(nid))[0]
            except Exception as exc:  # noqa: BLE001 - an unreachable host has no offset to record
                log.debug("offset of %s unavailable: %s", nid, exc)
                out[nid] = None
        self.offsets.append({"time": time.time(), "offsets_us": out})
        return out


class HostClockDB:
    """A nemesis DB whose ``clock`` admin operation acts on the hosts' real clocks."""

    def __init__(self, db: Any, clock: HostClock) -> None:
        self.db = db
        self.clock = clock

    def node_ids(self) -> list[str]:
        """The nodes."""
        return list(self.db.node_ids())

    async def kill(self, node_id: str) -> None:
        """Delegated."""
        await self.db.kill(node_id)

    async def restart(self, node_id: str) -> None:
        """Delegated."""
        await self.db.restart(node_id)

    async def pause(self, node_id: str) -> None:
        """Delegated."""
        await self.db.pause(node_id)

    async def resume(self, node_id: str) -> None:
        """Delegated."""
        await self.db.resume(node_id)

    async def admin(self, node_id: str, op: str, **fields: Any) -> dict[str, Any]:
        """``clock`` get/bump/strobe/reset on the host; every other op goes to the node."""
        if op != "clock":
            return dict(await self.db.admin(node_id, op, **fields))
        action = fields.get("action")
        if action == "bump":
            await self.clock.bump(node_id, int(fields["delta_us"]))
        elif action == "reset":
            await self.clock.reset(node_id)
        elif action == "strobe":
            flips = await self.clock.strobe(node_id, int(fields["delta_ms"]), int(fields["period_ms"]), float(fields["duration_s"]))
            return {"flips": flips, "offset_us": (await self.clock.offset_us(node_id))[0]}
        elif action != "get":
            raise ValueError(f"unknown clock action {action!r} (get, bump, strobe, reset)")
        offset, uncertainty = await self.clock.offset_us(node_id)
        return {"offset_us": offset, "uncertainty_us": uncertainty}


async def clock_db(db: Any, clock: HostClock, mode: str = "host") -> Any:
    """The DB the clock nemesis should use: real host clocks (``host``) or the nodes' own (``admin``).

    ``host`` installs the helper and raises SharedClockError where hosts share this machine's
    clock; ``admin`` is the explicit fallback that skews each node process's clock instead.
    """
    if mode not in CLOCK_MODES:
        raise ValueError(f"clock mode must be one of {', '.join(CLOCK_MODES)}, got {mode!r}")
    if mode == "admin":
        return db
    await clock.install()
    return HostClockDB(db, clock)
