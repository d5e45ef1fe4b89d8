"""The harness's view of a store client: Jepsen outcomes (ok / fail / info) from store errors.

The mapping is the table in docs/architecture.md: a write whose outcome is unknown (timeout,
lost connection, protocol error) is ``info``; anything the store refused before acting, and any
read that did not answer (a read has no side effect), is ``fail``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from node.client import Client, ClientTimeout, ConnectionLost, _guarded_writer
from node.protocol import (
    InvalidRequest,
    Overloaded,
    ProtocolError,
    ReadTimeout,
    RinglabError,
    Unauthorized,
    Unavailable,
    WriteTimeout,
)

# Errors that prove the store did not apply the operation.
DEFINITE_FAILURES = (Unavailable, Overloaded, InvalidRequest, Unauthorized)
# Errors after which a write may or may not have been applied.
# The error of an operation whose connection could not be opened (it failed: nothing was sent).
CONNECTION_REFUSED = "ConnectionRefused"


class NotConnected(Exception):
    """No connection to the node could be opened (refused, unreachable, or timed out)."""


INDETERMINATE = (WriteTimeout, ReadTimeout, ConnectionLost, ClientTimeout, ProtocolError)


@dataclass
class Completion:
    """How one operation ended, before it becomes a history record."""

    type: str  # ok | fail | info
    value: Any = None
    timestamp: int | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def completion_for_error(exc: BaseException, *, writes: bool) -> Completion:
    """Map a store or transport error to fail or info; ``writes`` says the op has a side effect."""
    name = getattr(exc, "name", None) or type(exc).__name__
    message = str(getattr(exc, "message", "") or exc)
    if isinstance(exc, DEFINITE_FAILURES):
        return Completion("fail", error=name, extra={"message": message})
    if isinstance(exc, (RinglabError, OSError, trio.BrokenResourceError, trio.ClosedResourceError)):
        return Completion("info" if writes else "fail", error=name, extra={"message": message})
    raise exc


class NodeConnection:
    """A reconnecting connection from one harness worker to one node's client port.

    Use as ``async with conn.session():`` in the task that owns it: each connection's reader and
    writer tasks live in that session's nursery, so nothing outlives the worker.
    """

    def __init__(self, host: str, port: int, *, secret: str | None, timeout: float, network: Any = None) -> None:
        self.host = host
        # A node.runtime.Network (harness sim's in-memory one); None: real TCP.
        self.network = network
        self.port = port
        self.secret = secret
        self.timeout = timeout
        self._nursery: trio.Nursery | None = None
        self._client: Client | None = None
        self._scope: trio.CancelScope | None = None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[NodeConnection]:
        """Own this connection's tasks for the duration of the block."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                yield self
            finally:
                self.close()
                self._nursery = None

    async def _pump(self, stream: trio.SocketStream, client: Client, scope: trio.CancelScope,
                    *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client._reader)
                    nursery.start_soon(_guarded_writer, client)
                    task_status.started()
        finally:
            client._fail(ConnectionLost("connection closed by the harness"))
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def client(self) -> Client:
        """The live client, connecting first if needed (raises NotConnected when refused)."""
        if self._client is None:
            if self._nursery is None:
                raise RuntimeError("NodeConnection used outside its session()")
            try:
                with trio.fail_after(self.timeout):
                    stream = await (self.network.open_tcp_stream(self.host, self.port) if self.network is not None
                                    else trio.open_tcp_stream(self.host, self.port))
            except (OSError, trio.TooSlowError) as exc:
                raise NotConnected(f"cannot connect to {self.host}:{self.port}: {exc}") from None
            # One operation at a time per connection: each request written by its own task.
            client = Client(stream, secret=self.secret, timeout=math.inf, direct=True)
            scope = trio.CancelScope()
            await self._nursery.start(self._pump, stream, client, scope)
            self._client, self._scope = client, scope
        return self._client

    def close(self) -> None:
        """Drop the connection; the next call reconnects."""
        if self._scope is not None:
            self._scope.cancel()
        self._client, self._scope = None, None

    async def run(self, fn: Callable[[Client], Awaitable[Completion]], *, writes: bool) -> Completion:
        """Run one operation with the client-side timeout, mapping errors to Jepsen outcomes."""
        try:
            client = await self.client()  # its own connect timeout: a refused or slow connect is a fail
            # trio.fail_after without its generator-based context manager (this runs per operation).
            with trio.CancelScope(relative_deadline=self.timeout) as scope:
                done = await fn(client)
            if scope.cancelled_caught:
                raise trio.TooSlowError
            if writes and done.type == "ok":
                # Which replicas acknowledged (the report shows them for an anomaly's writes).
                acks = client.pop_acks(done.timestamp)
                if acks is not None:
                    done.extra.update({"replicas": acks["replicas"], "acked": acks["acked"]}
                                      | ({"hinted": acks["hinted"]} if acks["hinted"] else {}))
            return done
        except NotConnected as exc:
            # Nothing was sent: the operation certainly did not happen, write or read.
            self.close()
            return Completion("fail", error=CONNECTION_REFUSED, extra={"message": str(exc)})
        except trio.TooSlowError:
            # The node did not answer at all (paused, partitioned from us): start afresh next time
            # so a stale pipelined response can never be mistaken for a new one.
            self.close()
            return Completion("info" if writes else "fail", error="ClientTimeout",
                              extra={"message": f"no response within {self.timeout:g} s"})
        except (ConnectionLost, ProtocolError, OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.close()
            return completion_for_error(exc, writes=writes)
        except RinglabError as exc:
            return completion_for_error(exc, writes=writes)
