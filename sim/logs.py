"""Node logs in a simulation: each record goes to the log of the node whose task emitted it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import IO

import trio

from sim.clock import EPOCH_US
from sim.world import CURRENT_NODE


def _stamp() -> str:
    try:
        return f"{trio.current_time():11.6f}"
    except RuntimeError:
        return f"{'-':>11}"


class NodeLogs(logging.Handler):
    """Writes ``nodes/<node>/node.log`` per node, stamped with virtual seconds."""

    def __init__(self, base_dir: Path) -> None:
        super().__init__()
        self.base_dir = base_dir
        self._files: dict[str, IO[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        """Append the record to its node's log (records of the harness are not ours)."""
        nid = CURRENT_NODE.get()
        if not nid:
            return
        f = self._files.get(nid)
        if f is None:
            (self.base_dir / nid).mkdir(parents=True, exist_ok=True)
            f = self._files[nid] = open(self.base_dir / nid / "node.log", "a")  # noqa: SIM115 - closed in close()
        line = f"{_stamp()} {record.levelname} node={nid} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += " | " + logging.Formatter().formatException(record.exc_info).replace("\n", " | ")
        f.write(line + "\n")

    def close(self) -> None:
        """Close every node log."""
        for f in self._files.values():
            f.close()
        self._files.clear()
        super().close()


class HarnessOnly(logging.Filter):
    """Keeps node records out of harness.log (they have their own logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """True for records emitted outside any simulated node."""
        return not CURRENT_NODE.get()


__all__ = ["EPOCH_US", "HarnessOnly", "NodeLogs"]
