"""OBEX over TCP: a listener that hands each connection to the server.

Every accepted connection gets its own task; the server serves one client at
a time (:meth:`~.server.ObexBackupServer.serve_stream`), so a second client
waits for the first to finish, up to ``busy_wait`` seconds, and is then
answered Service Unavailable.  Requests and answers are small and lockstep,
so Nagle's algorithm is turned off: each answer leaves at once.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .config import Address

log = logging.getLogger("obex_backup_server")


async def serve_tcp(
    address: Address,
    serve: Callable[[trio.abc.Stream], Awaitable[None]],
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``address`` and serve each connection; ``task_status`` gets the bound address."""

    async def handle(stream: trio.SocketStream) -> None:
        try:
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        except OSError:
            pass
        await serve(stream)

    listeners = await trio.open_tcp_listeners(address.port, host=address.host)
    actual = Address(address.host, int(listeners[0].socket.getsockname()[1]))
    log.info("listening on tcp %s", actual)
    task_status.started(actual)
    await trio.serve_listeners(handle, listeners)
