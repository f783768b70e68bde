"""Assembles a responder from a configuration and runs it on a transport."""

from __future__ import annotations

import logging

import trio

from .config import Config
from .framework import Framework
from .operations import Operations
from .server import Server
from .transport.base import Transport

log = logging.getLogger(__name__)


class Responder:
    """Providers, object model and operations: everything but the wire."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.framework = Framework.from_config(config)
        self.operations = Operations(config, self.framework)

    async def run(
        self, transport: Transport, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; providers' background tasks run alongside."""
        async with trio.open_nursery() as nursery:
            for provider in self.framework.providers:
                await nursery.start(provider.run)
            server = Server(self.operations, transport)
            nursery.start_soon(server.serve)
            log.info(
                "serving %d storage(s) from %s",
                len(self.framework.storage_ids),
                ", ".join(p.name for p in self.framework.providers),
            )
            task_status.started()

    async def shutdown(self) -> None:
        await self.operations.close_session("shutdown")
