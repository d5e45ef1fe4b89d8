"""Client writes (put, delete, batch) and reads (get) served without a task per request.

The client port's general path starts a task per request that awaits the coordinator's write.
A profile of the 8-client QUORUM bench showed that task (its start, its cancel scope, the event it
waits on and its reschedule) costing as much as the coordinator's own work, so the connection's
reader hands writes to :meth:`Coordinator.write_now` instead: the write's completion (level met,
WriteTimeout, WriteFailure) builds the response and queues it from the messaging reader or the
deadline reaper. Validation, authorization, timestamps and error names are the general path's
(:func:`response_for_error` is shared with ``Node.handle_request``).

Gets go to :meth:`Coordinator.read_now` the same way: the read's answer (or its ReadTimeout,
ReadFailure) builds the response in the messaging reader, the deadline reaper or, after a digest
mismatch, the coordinator's repair task; a QUORUM read with one client cost its coordinator ~1.8x
a write's CPU while it had a task of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from node import protocol
from node.protocol import InvalidRequest, RinglabError, ServerError, WriteFailure, error_response, ok_response
from node.storage.errors import StorageError, StorageFailure

if TYPE_CHECKING:
    from node.interpreted import ServedNode as Node

log = logging.getLogger("node.server")

WRITE_OPS = frozenset(("put", "delete", "batch"))
READ_OP = "get"

Respond = Callable[[dict[str, Any]], None]


def response_for_error(rid: Any, op: Any, exc: Exception) -> dict[str, Any]:
    """The error response a request that raised ``exc`` gets (named errors; others logged)."""
    if isinstance(exc, RinglabError):
        return error_response(rid if isinstance(rid, int) else None, exc)
    if isinstance(exc, StorageFailure):
        return error_response(rid, WriteFailure(f"storage failed: {type(exc).__name__}: {exc}", path=exc.path))
    if isinstance(exc, StorageError):
        return error_response(rid, InvalidRequest(f"storage refused the request: {exc}"))
    log.error("request %r failed", op, exc_info=exc)
    return error_response(rid if isinstance(rid, int) else None, ServerError(f"{type(exc).__name__}: {exc}"))


def start_write(node: Node, msg: dict[str, Any], finish: Respond) -> bool:
    """Serve ``msg`` if it is a write: ``finish(response)`` is called once, now or when the write
    completes. False (nothing done) for any other request, or before the coordinator runs."""
    op = msg.get("op")
    # A str first: a hostile op (a list, a map) is unhashable, and the general path names it.
    if type(op) is not str or op not in WRITE_OPS or not node.coordinator.accepts_write_now:
        return False
    rid = msg.get("id")
    try:
        req = protocol.validate_request(msg)
        node.authorize(req)
        mutation, ts = node.write_mutation(req)

        def done(exc: Exception | None, acks: dict[str, list[str]] | None) -> None:
            finish(ok_response(rid, timestamp=ts, **(acks or {})) if exc is None else response_for_error(rid, op, exc))

        node.coordinator.write_now(req["keyspace"], req["table"], mutation, req["consistency"], done)
    except Exception as exc:
        finish(response_for_error(rid, op, exc))
    return True


def start_read(node: Node, msg: dict[str, Any], finish: Respond) -> bool:
    """Serve ``msg`` if it is a get, as :func:`start_write` serves writes."""
    if msg.get("op") != READ_OP or not node.coordinator.accepts_write_now:
        return False
    rid = msg.get("id")
    try:
        req = protocol.validate_request(msg)
        node.authorize(req)

        def done(exc: Exception | None, part: Any) -> None:
            if exc is None:
                try:
                    response = ok_response(rid, **node.get_result(req, part))
                except Exception as error:  # the table dropped since, say: as the general path
                    exc = error
                else:
                    finish(response)
                    return
            finish(response_for_error(rid, READ_OP, exc))

        node.schema.table(req["keyspace"], req["table"])
        node.coordinator.read_now(req["keyspace"], req["table"], req["key_bytes"], req["columns"], req["consistency"], done)
    except Exception as exc:
        finish(response_for_error(rid, READ_OP, exc))
    return True
