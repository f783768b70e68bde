"""One engine: its parts, each with one job, composed for the server and the operations.

- ``registry``: which data owners exist, their connections and status
  (see engine/README.md, Drives and data owners);
- ``launcher``: the owner processes the engine starts and keeps up
  (see engine/README.md, Active owners);
- ``modes``: the BUR mode, its publication and the return to Normal
  (see engine/README.md, Modes);
- ``transfers``: the data streams, in the order the owners' sequences allow
  (see engine/README.md, Transfer types and Sequencing rules);
- ``public``: the public file lists a backup server copies itself.

Everything runs in one trio loop; a backup server's requests are serialised by
``lock``.
"""

from __future__ import annotations

import trio

from ..types import BackupIncType, BURMode, ModeInfo
from .config import EngineConfig
from .launcher import Launcher
from .modegate import CurrentMode
from .modes import ModeSwitch
from .publicfiles import PublicFiles
from .registry import OwnerRegistry
from .restore import recover
from .transfers import Transfers


class Engine:
    """One engine instance; the server owns exactly one."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.current = CurrentMode()
        self.registry = OwnerRegistry(config, self.current)
        self.launcher = Launcher(config, self.current, self.registry)
        self.transfers = Transfers(config, self.current, self.registry)
        self.public = PublicFiles(config, self.current, self.registry)
        self.modes = ModeSwitch(config, self.current, self.registry, self.launcher, self.transfers)
        self.lock = trio.Lock()
        # Staging left by a restore that a crash interrupted goes before anything else.
        for d in config.drives:
            recover(config.private_root(d))

    @property
    def mode(self) -> ModeInfo:
        return self.current.info

    async def set_bur_mode(
        self, drives: list[str], mode: BURMode, inc: BackupIncType, *, commit: bool = True
    ) -> None:
        await self.modes.set_bur_mode(drives, mode, inc, commit=commit)
