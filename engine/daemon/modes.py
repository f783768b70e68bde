"""The device's backup/restore (BUR) mode: its transitions, its publication, the way back.

The device is in Normal mode, or in a backup or a restore (full or partial) of
some drives (see engine/README.md, Modes). Only Normal leads to another mode, and
every mode leads back to Normal, which ends whatever the mode left open: streams
are aborted, staged restores committed (or discarded), restored active owners told
the restore is complete. Every change is published to owners and observers and to
a state file that processes outside the engine can read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

import trio

from ..errors import ArgumentError, CorruptError, EngineError, NotFoundError
from ..types import BackupIncType, BURMode, ModeInfo, format_sid, normalise_drive
from .config import EngineConfig
from .launcher import Launcher
from .modegate import CurrentMode
from .registry import OwnerRegistry
from .transfers import Transfers

log = logging.getLogger(__name__)

ModeListener = Callable[[ModeInfo], Awaitable[None]]


class ModeSwitch:
    """Mode transitions, publication and the return to Normal."""

    def __init__(
        self,
        config: EngineConfig,
        current: CurrentMode,
        registry: OwnerRegistry,
        launcher: Launcher,
        transfers: Transfers,
    ) -> None:
        self.config = config
        self.current = current
        self.registry = registry
        self.launcher = launcher
        self.transfers = transfers
        self.listeners: list[ModeListener] = []

    # ------------------------------------------------------------ publication
    async def publish(self) -> None:
        self.write_state_file()
        mode = self.current.info
        for listener in list(self.listeners):
            try:
                await listener(mode)
            except Exception:
                log.exception("mode listener failed")

    def write_state_file(self) -> None:
        """Replace the state file atomically, so that a reader never sees half of it."""
        path = self.config.state_file
        if path is None:
            return
        mode = self.current.info
        text = (
            f"mode={mode.mode.name}\ninc={mode.inc.name}\n"
            f"value=0x{mode.value:x}\ndrives={','.join(mode.drives)}\n"
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as e:
            log.warning("cannot write state file %s: %s", path, e)

    # ------------------------------------------------------------ transitions
    def rediscover(self) -> None:
        """A fresh owner list, and fresh sequences for every owner on it."""
        self.registry.rescan()
        self.transfers.reset()

    async def set_bur_mode(
        self, drives: list[str], mode: BURMode, inc: BackupIncType, *, commit: bool = True
    ) -> None:
        """Enter ``mode`` (see engine/README.md, Modes); ``commit=False`` discards staged
        restores on the way back to Normal."""
        cur = self.current.info.mode
        if mode.is_normal:
            if cur.is_normal:
                return
            # Begun, it must finish: a caller cancelled half-way (a client gone in the
            # middle of prepare_backup or restore_archive) must not leave the mode
            # Normal inside and unpublished outside, or owners wait for the
            # end of a session that already ended and never confirm the next one.
            with trio.CancelScope(shield=True):
                await self._to_normal(commit)
            return
        if not cur.is_normal:
            raise CorruptError(f"cannot go from {cur.name} to {mode.name}")
        ds: list[str] = []
        for d in drives:
            try:
                nd = normalise_drive(d)
            except ArgumentError as e:
                raise NotFoundError(str(e)) from e
            if nd not in self.config.drives:
                raise NotFoundError(f"drive {nd} does not exist")
            ds.append(nd)
        if not ds:
            ds = list(self.config.backup_drives)
        if self.registry.owners is None:
            self.rediscover()
        owners = self.registry.owners
        assert owners is not None
        partial = self.registry.partial_sids
        if mode.is_partial:
            if not partial:
                raise NotFoundError("partial mode needs a partial SID list")
            for s in partial:
                if s not in owners:
                    raise NotFoundError(f"unknown data owner {format_sid(s)} in the partial list")
        self.transfers.reset()
        self.current.info = ModeInfo(
            mode,
            inc if mode.is_backup or mode.is_restore else BackupIncType.NO_BACKUP,
            tuple(sorted(set(ds))),
            tuple(partial or ()) if mode.is_partial else (),
        )
        if mode.is_backup:
            self.launcher.launch_in_scope()
        await self.publish()
        if self.config.app_close_delay > 0:
            await trio.sleep(self.config.app_close_delay)

    async def _to_normal(self, commit: bool) -> None:
        prev = self.current.info
        await self.transfers.abort_all()
        errors: list[str] = []
        if prev.mode.is_restore:
            errors = await self.transfers.settle_stages(commit)
            await self._restore_complete(prev)
        self.current.info = ModeInfo(BURMode.NORMAL, BackupIncType.NO_BACKUP, ())
        self.registry.forget()
        self.transfers.reset()
        self.registry.unready_sessions()
        self.launcher.reap()
        await self.publish()
        if errors:
            raise CorruptError("; ".join(errors))

    async def _restore_complete(self, prev: ModeInfo) -> None:
        """``restore_complete`` per drive to every active owner the restore fed."""
        owners = self.registry.owners
        if owners is None:
            return
        for sid in self.transfers.active_restored():
            o = owners.get(sid)
            if o is None or not o.registration.active:
                continue
            s = self.registry.live_session(sid)
            if s is None:
                continue
            for d in o.drives:
                if d in prev.drives:
                    try:
                        await s.call("restore_complete", {"drive": d})
                    except EngineError as e:
                        log.warning("restore_complete to %s failed: %s", format_sid(sid), e)

    async def client_gone(self) -> None:
        """The backup client disconnected: abandon everything, return to Normal."""
        if not self.current.info.mode.is_normal:
            log.warning(
                "backup client gone in mode %s: returning to Normal", self.current.info.mode.name
            )
            try:
                await self.set_bur_mode([], BURMode.NORMAL, BackupIncType.NO_BACKUP, commit=False)
            except EngineError as e:
                log.warning("returning to Normal: %s", e)
        self.registry.forget_partial_sids()

    def all_system_files_restored(self) -> None:
        """Restore mode: owners' registrations are back, so rediscover them and start
        the active ones (see engine/README.md, Restore)."""
        if not self.current.info.mode.is_restore:
            return
        self.rediscover()
        self.launcher.launch_in_scope()
