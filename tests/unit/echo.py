"""A TCP echo handler for tests that push real traffic through the fault proxy."""

import trio


async def echo_handler(stream: trio.SocketStream) -> None:
    """Send back whatever arrives until the peer closes."""
    try:
        async for data in stream:
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass
