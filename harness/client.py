"""The harness's view of a store client: Jepsen outcomes (ok / fail / info) from store errors.

The mapping is the table in docs/architecture.md: a write whose outcome is unknown (timeout,
lost connection, protocol error) is ``info``; anything the store refused before acting, and any
read that did not answer (a read has no side effect), is ``fail``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import trio

from node.client import Client, ClientTimeout, ConnectionLost, open_client
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
    """A reconnecting connection from one harness worker to one node's client port."""

    def __init__(self, host: str, port: int, *, secret: str | None, timeout: float) -> None:
        self.host = host
        self.port = port
        self.secret = secret
        self.timeout = timeout
        self._stack: AsyncExitStack | None = None
        self._client: Client | None = None

    async def client(self) -> Client:
        """The live client, connecting first if needed (raises ConnectionLost when refused)."""
        if self._client is None:
            stack = AsyncExitStack()
            try:
                with trio.fail_after(self.timeout):
                    self._client = await stack.enter_async_context(
                        open_client(self.host, self.port, secret=self.secret, timeout=math.inf)
                    )
            except (OSError, trio.TooSlowError) as exc:
                await stack.aclose()
                raise ConnectionLost(f"cannot connect to {self.host}:{self.port}: {exc}") from None
            self._stack = stack
        return self._client

    async def close(self) -> None:
        """Drop the connection; the next call reconnects."""
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with trio.CancelScope(shield=True):
                try:
                    await stack.aclose()
                except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is gone either way
                    pass

    async def run(self, fn: Callable[[Client], Awaitable[Completion]], *, writes: bool) -> Completion:
        """Run one operation with the client-side timeout, mapping errors to Jepsen outcomes."""
        try:
            with trio.fail_after(self.timeout):
                return await fn(await self.client())
        except trio.TooSlowError:
            # The node did not answer at all (paused, partitioned from us): start afresh next time
            # so a stale pipelined response can never be mistaken for a new one.
            await self.close()
            return Completion("info" if writes else "fail", error="ClientTimeout",
                              extra={"message": f"no response within {self.timeout:g} s"})
        except (ConnectionLost, ProtocolError, OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            await self.close()
            return completion_for_error(exc, writes=writes)
        except RinglabError as exc:
            return completion_for_error(exc, writes=writes)
