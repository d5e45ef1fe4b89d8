"""Workloads: what the clients do, how each operation maps to store calls, and the final reads.

A workload is a small object with three jobs (the shape of Jepsen's client + generator pair):
``next_op`` picks the next invocation for a process, ``apply`` performs it against the store and
returns a :class:`~harness.client.Completion`, and ``final_ops`` lists the reads that run once every
fault has healed: a pass at the campaign's read level, then one at ALL. ``checker_params`` tells the checkers which model applies.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

from harness.client import Completion
from node.client import Client

KEYSPACE = "jepsen"


@dataclass(frozen=True)
class Invocation:
    """One operation a process is about to perform."""

    f: str
    key: Any
    value: Any = None


@dataclass(frozen=True)
class WorkloadSettings:
    """The knobs every workload reads."""

    key_count: int
    read_cl: str
    write_cl: str
    # Operations on one key before it is retired for a fresh one; bounds each key's history so the
    # linearizability search stays small (Jepsen's independent keys do the same).
    ops_per_key: int = 300
    # The share of writes that are deletes (register, row, batch); None: the workload's default.
    delete_fraction: float | None = None
    # Register workload: "increasing" writes each key's values 1, 2, 3, ...; "random" writes unique
    # values in a random order, so a reconciliation that lets the larger value win where the
    # timestamp should decide disagrees with time (harness/workloads/register.py).
    value_order: str = "increasing"
    # Register workload: the client stamps each write itself (CQL's USING TIMESTAMP) from a coarse
    # clock, so equal and near-equal timestamps are common (harness/workloads/register.py).
    client_timestamps: bool = False


class Workload(Protocol):
    """The interface every workload implements."""

    name: str
    table: str
    model: str

    def next_op(self, rng: random.Random) -> Invocation:
        """The next invocation (called from one task at a time)."""
        ...

    async def apply(self, client: Client, op: Invocation, cl: str | None = None) -> Completion:
        """Perform the operation; store errors propagate to the caller for mapping."""
        ...

    def is_write(self, op: Invocation) -> bool:
        """Whether the operation has a side effect (an unanswered write is info, a read fail)."""
        ...

    def final_ops(self) -> list[Invocation]:
        """Reads to perform once the cluster has healed (at the read level, then at ALL)."""
        ...


def make_workload(name: str, settings: WorkloadSettings) -> Workload:
    """The workload called ``name`` (register, set, lww-rmw, row, batch, ttl)."""
    from harness.workloads.batch import BatchWorkload
    from harness.workloads.lww_rmw import LwwRmwWorkload
    from harness.workloads.register import RegisterWorkload
    from harness.workloads.row import RowWorkload
    from harness.workloads.sets import SetWorkload
    from harness.workloads.ttl import TtlWorkload

    workloads: dict[str, type] = {
        "register": RegisterWorkload,
        "set": SetWorkload,
        "lww-rmw": LwwRmwWorkload,
        "row": RowWorkload,
        "batch": BatchWorkload,
        "ttl": TtlWorkload,
    }
    try:
        return workloads[name](settings)
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; one of {', '.join(workloads)}") from None


WORKLOADS = ("register", "set", "lww-rmw", "row", "batch", "ttl")
DELETING_WORKLOADS = ("register", "row", "batch")
"""The workloads that take ``--delete-fraction``."""


def validate_delete_fraction(workload: str, fraction: float | None) -> None:
    """Raise ValueError when ``--delete-fraction`` is out of [0, 1] or given to a workload without deletes."""
    if fraction is None:
        return
    if workload not in DELETING_WORKLOADS:
        raise ValueError(f"--delete-fraction applies to the {', '.join(DELETING_WORKLOADS)} workloads, "
                         f"not {workload!r}")
    if not 0 <= fraction <= 1:
        raise ValueError(f"--delete-fraction must be between 0 and 1, got {fraction}")
