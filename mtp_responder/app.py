"""Assembles a responder from a configuration and runs it on a transport.

Assembling is where a configuration meets the installed plugins and the
filesystem (a storage directory that is missing, a provider option of the wrong
type), so it is also the check ``mtp-responder --check-config`` runs: every
such mistake is a :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import logging

import trio

from .config import Config, ConfigError, ProviderConfig
from .framework import Framework, load_plugin
from .operations import Operations
from .provider import DataProvider
from .server import Server
from .transport.base import Transport

log = logging.getLogger(__name__)


class Responder:
    """Providers, object model and operations: everything but the wire."""

    def __init__(self, config: Config) -> None:
        """Load every provider; a :class:`ConfigError` names what cannot be used."""
        self.config = config
        self.framework = Framework(config.state_dir)
        for pc in config.providers:
            self.framework.add_provider(_provider(pc, self.framework))
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


def _provider(pc: ProviderConfig, framework: Framework) -> DataProvider:
    where = f"providers.{pc.name}"
    try:
        factory = load_plugin(pc.plugin)
    except LookupError as exc:
        raise ConfigError(f"{where}.plugin: {exc.args[0] if exc.args else exc}") from exc
    except (ImportError, AttributeError, SyntaxError, ValueError) as exc:
        # A ``module:Class`` path: importing it runs the module, which may not exist,
        # may lack the attribute or may not compile (an empty name is a ValueError).
        raise ConfigError(f"{where}.plugin: cannot load {pc.plugin!r}: {exc}") from exc
    if not (isinstance(factory, type) and issubclass(factory, DataProvider)):
        raise ConfigError(f"{where}.plugin: {pc.plugin!r} is not a data provider class")
    try:
        return factory(pc.name, dict(pc.options), framework)
    except ConfigError:
        raise
    except ValueError as exc:
        # Providers report their options as ValueError naming the key.
        text = str(exc)
        raise ConfigError(text if text.startswith(where) else f"{where}: {text}") from exc
