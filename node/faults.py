"""Validation fault switches: deliberate bugs the harness's checkers must catch. All off by default.

They exist so an end-to-end test can break one guarantee on purpose and assert that the checkers
notice. Each switch is settable in node.toml ``[faults]`` and at run time through the admin op
``faults`` (with the cluster secret). Only switches that really change behaviour are listed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


# Switches that are hooks for the cluster tests of whole-file streaming, not bugs a checker could
# catch: a damaged copy is refused and sent again (a campaign stays valid, so it proves nothing
# there), and a joiner that exits after its first import fails the membership nemesis's join
# (the harness, not a checker, would report it). Campaigns and sweeps do not offer them.
TEST_ONLY = frozenset({"damage_file_stream", "exit_after_file_import"})


@dataclass
class FaultSwitches:
    """The deliberate bugs one node can be told to have."""

    # Coordinator: acknowledge QUORUM (and LOCAL_QUORUM / EACH_QUORUM) writes after one replica
    # acknowledged, so a QUORUM read can miss an acknowledged write.
    ack_quorum_after_one: bool = False
    # Coordinator: on a digest mismatch answer with the merged value but skip the blocking repair,
    # although the table says read_repair = BLOCKING (monotonic reads can break).
    skip_read_repair: bool = False
    # Coordinator: claim hints were stored but keep none (writes to down replicas are silently
    # lost there, and an ANY write acknowledged on a hint alone is lost outright).
    drop_hints: bool = False
    # Coordinator: do not send writes to pending replicas (nodes joining, or gaining ranges in a
    # move/decommission/removenode), so writes acknowledged while ranges stream are lost there.
    skip_pending_ranges: bool = False
    # Membership: a change (join, decommission, removenode, move) skips streaming the ranges
    # the new replicas gain, so they take ownership empty and data written before the change
    # exists only on the replicas that remain (two such changes leave a quorum without it).
    skip_pending_streaming: bool = False
    # Streaming: the first whole-file send of each SSTable flips one byte in transit (the target
    # must refuse that copy and have it sent again; node/rangecopy.py).
    damage_file_stream: bool = False
    # Streaming: the node exits (status 70) right after importing and journaling its first
    # SSTable received whole, so tests cut a transfer at a known point and watch it resume.
    exit_after_file_import: bool = False

    def set(self, name: str, value: Any) -> None:
        """Set one switch by name (ValueError names an unknown switch or a non-bool value)."""
        names = {f.name for f in dataclasses.fields(self)}
        if name not in names:
            raise ValueError(f"unknown fault switch {name!r}; known: {', '.join(sorted(names))}")
        if not isinstance(value, bool):
            raise ValueError(f"fault switch {name} takes true or false, got {value!r}")
        setattr(self, name, value)

    def as_dict(self) -> dict[str, bool]:
        """Every switch and its state."""
        # Flat booleans: a shallow copy (asdict deep-copies, and the status op asks every second).
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
