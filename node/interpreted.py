"""What the modules scripts/build_native.py compiles need from a module mypyc does not compile."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from node.coordinator import Coordinator
    from node.schema import Schema
    from node.storage.cells import Mutation, Partition


class Packed(bytes):
    """The msgpack bytes of one map, to splice into frames as is (packed once, sent to many);
    here because a compiled module cannot subclass ``bytes``."""


class ServedNode(Protocol):
    """What node/fast_writes.py uses of a node.server.Node. A protocol, for which the compiled
    build checks no type: node.server.Node is compiled too, and the unit tests pass stubs."""

    coordinator: Coordinator
    schema: Schema

    def authorize(self, req: dict[str, Any]) -> None:
        """Raise if the request's credentials do not allow it."""

    def write_mutation(self, req: dict[str, Any]) -> tuple[Mutation, int]:
        """The validated write's mutation and its timestamp."""

    def get_result(self, req: dict[str, Any], part: Partition | None) -> dict[str, Any]:
        """A validated get's answer from the partition its read returned."""
