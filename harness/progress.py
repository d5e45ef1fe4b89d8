"""The live progress display of a campaign: ops/s, ok/fail/info, active faults, time left.

On a terminal it redraws one status line in place (rich); elsewhere (CI logs, pipes) it prints a
plain line every few seconds, so logs stay readable.
"""

from __future__ import annotations

import time
from typing import IO, Any

import trio

# Plain output: one line this often, enough to follow a CI log without flooding it.
PLAIN_EVERY_S = 5.0
# Terminal output: redraws per second.
LIVE_FPS = 4


class Progress:
    """Shows what a running campaign is doing."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.tty = out.isatty()
        self.phase_name = "starting"
        self.recorder: Any = None
        self.schedule: Any = None
        self.time_limit = 0.0
        self.started = 0.0
        self._last_ops = 0
        self._last_t = time.monotonic()
        self._live: Any = None

    def phase(self, name: str) -> None:
        """Enter a phase (printed at once)."""
        self.phase_name = name
        if not self.tty:
            print(f"[harness] {name}", file=self.out, flush=True)

    def attach(self, recorder: Any, schedule: Any, time_limit: float) -> None:
        """Start counting operations from ``recorder``."""
        self.recorder, self.schedule, self.time_limit = recorder, schedule, time_limit
        self.started = time.monotonic()

    def line(self) -> str:
        """The current status line."""
        if self.recorder is None:
            return f"{self.phase_name}..."
        c = self.recorder.counts
        done = c["ok"] + c["fail"] + c["info"]
        now = time.monotonic()
        rate = (done - self._last_ops) / max(now - self._last_t, 1e-9)
        self._last_ops, self._last_t = done, now
        left = max(0.0, self.time_limit - (now - self.started))
        faults = ",".join(self.schedule.active) if self.schedule and self.schedule.active else "none"
        return (f"{self.phase_name}: {rate:6.0f} ops/s  ok {c['ok']}  fail {c['fail']}  info {c['info']}"
                f"  faults: {faults}  left {left:4.0f} s")

    async def run(self) -> None:
        """Redraw until cancelled."""
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(file=self.out), refresh_per_second=LIVE_FPS, transient=True)
            self._live.start()
            while True:
                self._live.update(self.line())
                await trio.sleep(1 / LIVE_FPS)
        else:
            while True:
                await trio.sleep(PLAIN_EVERY_S)
                if self.recorder is not None and self.phase_name == "running":
                    print(f"[harness] {self.line()}", file=self.out, flush=True)

    def close(self) -> None:
        """Stop redrawing."""
        if self._live is not None:
            self._live.stop()
            self._live = None
