"""A decommissioned node (status LEFT) refuses replica reads and mutations from peers whose view
is behind, with a named failure the coordinator treats as a replica's failure (it asks a spare),
so a value no write reaches any more never counts towards a read's level."""

from __future__ import annotations

from typing import Any

import pytest

from node.coordinator import Coordinator, ReplicaLeft, replica_failure
from node.faults import FaultSwitches
from node.ring import SimpleStrategy
from node.runtime import Runtime
from node.storage.cells import Cell, Mutation, Partition


class _Messaging:
    def register(self, verb: str, handler: Any) -> None:
        pass


class _Keyspace:
    replication = {"class": "SimpleStrategy", "replication_factor": 3}

    def strategy(self) -> SimpleStrategy:
        return SimpleStrategy(3)


class _Schema:
    def table(self, keyspace: str, table: str) -> object:
        return object()

    def keyspace(self, keyspace: str) -> _Keyspace:
        return _Keyspace()


class _Server:
    """The membership side: the node's own status, as node/server.py keeps it."""

    status = "NORMAL"

    def is_alive(self, node_id: str) -> bool:
        return True

    def datacenter_of(self, node_id: str) -> str:
        return "dc1"


class _Local:
    def __init__(self) -> None:
        self.applied: list[Mutation] = []

    async def apply(self, keyspace: str, table: str, mutation: Mutation) -> None:
        self.applied.append(mutation)

    async def read(self, keyspace: str, table: str, key: bytes, columns: Any) -> Partition | None:
        return Partition(key, {"v": Cell("v", b"old", 1, None, None)})


def _coordinator(server: _Server, local: _Local) -> Coordinator:
    return Coordinator(Runtime.real(), "me", "dc1", _Messaging(), server, lambda: None,  # type: ignore[arg-type]
                       lambda: _Schema(), local, None, FaultSwitches())  # type: ignore[arg-type]


MUTATION = Mutation(b"k", [Cell("v", b"new", 5, None, None)])


async def test_a_node_that_left_refuses_replica_reads_and_writes_with_a_named_failure() -> None:
    server, local = _Server(), _Local()
    c = _coordinator(server, local)
    read = {"ks": "ks", "t": "t", "k": b"k", "c": None}
    write = {"ks": "ks", "t": "t", "m": MUTATION.to_obj()}
    assert (await c._handle_read("peer", read))["p"] is not None  # NORMAL: served
    await c._handle_mutation("peer", write)
    assert local.applied == [MUTATION]
    server.status = "LEFT"
    with pytest.raises(ReplicaLeft) as e:
        await c._handle_read("peer", read)
    # The coordinator that asked reads it as a replica failure (and asks a spare), also when it
    # arrives as a remote error's text.
    assert replica_failure(e.value) is not None
    assert replica_failure(RuntimeError(f"n2: ReplicaLeft: {e.value}")) is not None
    with pytest.raises(ReplicaLeft):
        await c._handle_mutation("peer", write)
    assert local.applied == [MUTATION]  # the refused write was not applied
    assert all(isinstance(r, ReplicaLeft) for r in c._handle_mutations_now([("peer", write)] * 2))
