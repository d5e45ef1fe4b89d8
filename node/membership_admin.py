"""Admin ops for membership changes and repair: join, decommission, removenode, cleanup, move,
repair, netstats. The node's request handler looks them up here by op name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from node.coordination import CoordinationError
from node.protocol import InvalidRequest

AdminOp = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _tokens(node: Any, raw: Any) -> list[Any]:
    if not isinstance(raw, list) or not raw or not all(isinstance(t, (str, int)) and not isinstance(t, bool) for t in raw):
        raise InvalidRequest("tokens must be a non-empty list of tokens (decimal strings)")
    try:
        return [node.partitioner.from_string(str(t)) for t in raw]
    except ValueError as exc:
        raise InvalidRequest(f"bad token: {exc}") from exc


def _range(node: Any, raw: Any) -> tuple[Any, Any] | None:
    if raw is None:
        return None
    if isinstance(raw, str) and ":" in raw:
        raw = raw.split(":", 1)
    if not isinstance(raw, (list, tuple)) or len(raw) != 2:
        raise InvalidRequest("range must be [left, right] or 'left:right' (tokens, (left, right])")
    try:
        return node.partitioner.from_string(str(raw[0])), node.partitioner.from_string(str(raw[1]))
    except ValueError as exc:
        raise InvalidRequest(f"bad range token: {exc}") from exc


def _optional_str(req: dict[str, Any], name: str) -> str | None:
    value = req.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string")
    return value


def admin_ops(node: Any) -> dict[str, AdminOp]:
    """The membership and repair admin ops of ``node`` by op name."""

    async def join(req: dict[str, Any]) -> dict[str, Any]:
        return await node.membership.join()

    async def decommission(req: dict[str, Any]) -> dict[str, Any]:
        return await node.membership.decommission()

    async def removenode(req: dict[str, Any]) -> dict[str, Any]:
        target = _optional_str(req, "node")
        if not target:
            raise InvalidRequest("removenode needs 'node' (the dead node's id)")
        return await node.membership.removenode(target)

    async def cleanup(req: dict[str, Any]) -> dict[str, Any]:
        return await node.membership.cleanup(_optional_str(req, "keyspace"))

    async def move(req: dict[str, Any]) -> dict[str, Any]:
        return await node.membership.move(_tokens(node, req.get("tokens")))

    async def repair(req: dict[str, Any]) -> dict[str, Any]:
        return await node.repairer.repair(_optional_str(req, "keyspace"), _range(node, req.get("range")))

    async def netstats(req: dict[str, Any]) -> dict[str, Any]:
        out = node.membership.status()
        out["repair"] = node.repairer.last_result
        return out

    async def leader(req: dict[str, Any]) -> dict[str, Any]:
        # The ZooKeeper leader as this node sees it; with log=true, the assignment log as well.
        if node.zk is None:
            return {"mode": "gossip"}
        out = node.zk.status()
        if req.get("log"):
            try:
                out["assignments"] = await node.zk.assignment_log()
            except CoordinationError as exc:
                raise InvalidRequest(f"cannot read the assignment log: {exc}") from exc
        return out

    return {"join": join, "decommission": decommission, "removenode": removenode, "cleanup": cleanup,
            "move": move, "repair": repair, "netstats": netstats, "leader": leader}
