"""Data streams between a backup server and the owners: requested in backup, supplied in both.

A stream is one (owner, drive, transfer type) and moves chunk by chunk: a backup
server may interleave streams of different owners and abandon any of them, but
one owner has at most one stream open at a time (see engine/README.md, Transfer
types). Which stream may start is the owner's sequence (``sequencing``); file I/O
runs in worker threads.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from ..errors import (
    AccessDeniedError,
    CorruptError,
    EngineError,
    NotFoundError,
    NotReadyError,
    NotSupportedError,
)
from ..mbak.snapshot import Snapshot, snapshot_size, write_snapshot
from ..mbak.tar import BLOCK
from ..types import DataOwnerStatus, TransferType, format_sid
from .activedata import ActiveDataSink, ActiveDataSource
from .config import EngineConfig
from .modegate import CurrentMode
from .owners import DataOwner
from .registry import OwnerRegistry
from .restore import PassiveStage, Scope
from .sequencing import OwnerSequence, requested, supplied
from .spool import new_spool_dir
from .streams import FileSource, PassiveDataSink, PassiveSource, SpoolSink, load_snapshot_file

log = logging.getLogger(__name__)

MAX_CHUNK = 4 << 20
"""Largest chunk one request hands out: under the wire protocol's frame limit."""


class Source(Protocol):
    @property
    def finished(self) -> bool: ...

    async def read(self, max_bytes: int) -> bytes: ...

    async def aclose(self) -> None: ...


class Sink(Protocol):
    async def write(self, data: bytes | memoryview) -> None: ...

    async def finish(self) -> None: ...

    async def abort(self) -> None: ...


@dataclass
class Transfer:
    """The one stream an owner may have open at a time."""

    supply: bool
    drive: str
    ttype: TransferType
    source: Source | None = None
    sink: Sink | None = None
    on_done: Callable[[], None] | None = None

    @property
    def key(self) -> tuple[bool, str, TransferType]:
        return (self.supply, self.drive, self.ttype)


@dataclass
class OwnerRuntime:
    """What one owner's streams left behind since the mode was entered."""

    sequence: OwnerSequence = field(default_factory=OwnerSequence)
    transfer: Transfer | None = None
    stages: dict[str, PassiveStage] = field(default_factory=dict)
    """Restore: passive data staged per drive, swapped in when the restore ends."""
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    """Backup: the previous passive snapshot supplied per drive."""
    failed_drives: set[str] = field(default_factory=set)
    """Drives where a supplied stream was aborted: their staged data is discarded."""


class Transfers:
    """Every owner's streams in the current mode."""

    def __init__(self, config: EngineConfig, current: CurrentMode, registry: OwnerRegistry) -> None:
        self.config = config
        self.current = current
        self.registry = registry
        self._runtime: dict[int, OwnerRuntime] = {}

    def _rt(self, sid: int) -> OwnerRuntime:
        return self._runtime.setdefault(sid, OwnerRuntime())

    def sequence(self, sid: int) -> OwnerSequence:
        """The owner's transfer order in this mode, for streams moved outside this module."""
        return self._rt(sid).sequence

    def reset(self) -> None:
        """A new mode (or a new owner list): every owner starts from a fresh sequence."""
        self._runtime.clear()

    def active_restored(self) -> list[int]:
        """Owners whose active data a restore in this mode began to feed."""
        return [sid for sid, rt in self._runtime.items() if rt.sequence.active_restore_begun]

    async def abort_all(self) -> None:
        for sid, rt in list(self._runtime.items()):
            if rt.transfer is not None:
                await self._abort_transfer(sid, rt)

    async def settle_stages(self, commit: bool) -> list[str]:
        """Swap in staged passive restores (or discard them); the errors, per owner and drive.

        A drive whose stream was aborted is discarded even when committing.
        """
        errors: list[str] = []
        for sid, rt in self._runtime.items():
            for drive, stage in list(rt.stages.items()):
                ok = commit and drive not in rt.failed_drives
                try:
                    if ok:
                        await trio.to_thread.run_sync(stage.finalize)
                        await trio.to_thread.run_sync(stage.commit)
                    else:
                        await trio.to_thread.run_sync(stage.abort)
                except EngineError as e:
                    errors.append(f"{format_sid(sid)}/{drive}: {e}")
                    await trio.to_thread.run_sync(stage.abort)
            rt.stages.clear()
        return errors

    # ------------------------------------------------------------ sizes / snapshots
    async def expected_data_size(self, sid: int, drive: str, ttype: TransferType) -> int:
        self.current.require(backup=True)
        o = self.registry.owner(sid)
        d = self.registry.check_drive(o, drive)
        if ttype in (TransferType.PASSIVE_BASE, TransferType.PASSIVE_INCREMENTAL):
            recs = await trio.to_thread.run_sync(o.passive_records, self.config, d)
            rt = self._rt(sid)
            if ttype == TransferType.PASSIVE_INCREMENTAL and d in rt.snapshots:
                recs = rt.snapshots[d].changed(recs)
            return sum(3 * BLOCK + r.size + (-r.size) % BLOCK for r in recs)
        if ttype == TransferType.PASSIVE_SNAPSHOT:
            recs = await trio.to_thread.run_sync(o.passive_records, self.config, d)
            return snapshot_size(recs)
        if ttype in (TransferType.ACTIVE_BASE, TransferType.ACTIVE_INCREMENTAL):
            s = self.registry.own_session(o) if o.has_own_active_data else None
            if s is None:
                return 0
            v = await s.call("get_expected_data_size", {"drive": d})
            return v if isinstance(v, int) and v >= 0 else 0
        if ttype == TransferType.ACTIVE_SNAPSHOT:
            return 0
        raise NotSupportedError(f"no size for {ttype.name}")

    async def all_snapshots_supplied(self) -> None:
        """Tell every ready active owner in scope that no more snapshots will come.

        Owners hear it whether or not a snapshot was supplied to them: one that got
        none makes base data.
        """
        self.current.require(backup=True)
        assert self.registry.owners is not None
        for o in self.registry.owners.values():
            if not self.registry.in_scope(o) or not o.has_own_active_data:
                continue
            s = self.registry.live_session(o.sid)
            if s is None or s.status != DataOwnerStatus.READY or not s.has_impl:
                continue
            try:
                await s.call("all_snapshots_supplied", {})
            except EngineError as e:
                log.warning("all_snapshots_supplied to %s: %s", format_sid(o.sid), e)

    # ------------------------------------------------------------ streams
    def _open(self, sid: int, drive: str) -> tuple[DataOwner, str, OwnerRuntime]:
        o = self.registry.owner(sid)
        if not self.registry.in_scope(o):
            raise NotFoundError(f"owner {format_sid(sid)} is not in the partial selection")
        return o, self.registry.check_drive(o, drive), self._rt(sid)

    async def _abort_transfer(self, sid: int, rt: OwnerRuntime) -> None:
        t, rt.transfer = rt.transfer, None
        if t is None:
            return
        if t.supply:
            rt.failed_drives.add(t.drive)
        try:
            if t.source is not None:
                await t.source.aclose()
            if t.sink is not None:
                await t.sink.abort()
        except EngineError as e:
            log.warning("aborting transfer of %s: %s", format_sid(sid), e)

    async def request_data(
        self, sid: int, drive: str, ttype: TransferType, max_bytes: int | None = None
    ) -> tuple[bytes, bool]:
        """Next chunk of a stream: ``(data, finished)``; repeat until finished."""
        self.current.require(backup=True)
        o, d, rt = self._open(sid, drive)
        max_bytes = min(max_bytes or self.config.transfer_size, MAX_CHUNK)
        key = (False, d, ttype)
        if rt.transfer is not None and rt.transfer.key != key:
            raise NotReadyError("another transfer of this data owner is still in progress")
        if rt.transfer is None:
            rt.transfer = await self._start_request(o, rt, d, ttype)
        t = rt.transfer
        assert t.source is not None
        try:
            data = await t.source.read(max_bytes)
        except BaseException:
            await self._abort_transfer(sid, rt)
            raise
        finished = t.source.finished
        if finished:
            rt.transfer = None
            await t.source.aclose()
            if t.on_done:
                t.on_done()
        return data, finished

    async def _start_request(
        self, o: DataOwner, rt: OwnerRuntime, d: str, ttype: TransferType
    ) -> Transfer:
        seq = rt.sequence
        t = Transfer(False, d, ttype)
        if ttype in (TransferType.SYSTEM_DATA, TransferType.SYSTEM_SNAPSHOT):
            raise NotSupportedError("system (package) data is not supported on this device")
        if not (ttype.is_passive or ttype.is_active):
            raise NotSupportedError(f"transfer type {ttype.name} is not supported")
        if ttype.is_passive:
            if not o.is_passive:
                raise CorruptError(f"owner {format_sid(o.sid)} has no passive data")
            if ttype == TransferType.PASSIVE_INCREMENTAL and not o.supports_passive_incremental:
                raise CorruptError("owner is base_backup_only")
            seq.advance(d, requested(ttype))
            recs = await trio.to_thread.run_sync(o.passive_records, self.config, d)
            if ttype == TransferType.PASSIVE_SNAPSHOT:
                spool = new_spool_dir(self.config.spool_dir, "snap-") / "passive-snapshot"
                with open(spool, "wb") as fh:
                    write_snapshot(fh, recs)
                t.source = FileSource(spool)
                t.on_done = lambda: shutil.rmtree(spool.parent, ignore_errors=True)
                return t
            if ttype == TransferType.PASSIVE_INCREMENTAL:
                recs = rt.snapshots[d].changed(recs)
            t.source = PassiveSource.for_files(o.private_dir(self.config, d), recs)
            return t
        if not o.is_active:
            raise CorruptError(f"owner {format_sid(o.sid)} has no active data")
        if ttype == TransferType.ACTIVE_SNAPSHOT:
            if not o.supports_active_incremental:
                raise CorruptError("owner does not support incremental backup")
            # A refused owner session leaves the snapshot still to be asked for.
            seq.check(d, requested(ttype))
            own = self.registry.own_session(o)
            seq.advance(d, requested(ttype))
            t.source = ActiveDataSource(o.sid, d, own, [], snapshot=True)
            return t
        # Counts as requested before readiness is checked (see engine/README.md,
        # Sequencing rules): a refused request is not retried in this mode.
        seq.advance(d, requested(ttype))
        proxies = self.registry.proxies(o)
        own = self.registry.own_session(o)
        t.source = ActiveDataSource(o.sid, d, own, proxies)
        return t

    async def supply_data(
        self, sid: int, drive: str, ttype: TransferType, data: bytes, finished: bool
    ) -> None:
        """Feed one chunk of a stream; ``finished`` on the last one."""
        self.current.require(backup=True, restore=True)
        if ttype == TransferType.REGISTRATION:
            raise NotSupportedError("registration data cannot be supplied")
        o, d, rt = self._open(sid, drive)
        key = (True, d, ttype)
        if rt.transfer is not None and rt.transfer.key != key:
            raise NotReadyError("another transfer of this data owner is still in progress")
        if rt.transfer is None:
            rt.transfer = await self._start_supply(o, rt, d, ttype)
        t = rt.transfer
        assert t.sink is not None
        try:
            if data:
                await t.sink.write(data)
            if finished:
                await t.sink.finish()
        except BaseException:
            await self._abort_transfer(sid, rt)
            raise
        if finished:
            rt.transfer = None
            if t.on_done:
                t.on_done()

    def _stage(self, o: DataOwner, rt: OwnerRuntime, d: str) -> PassiveStage:
        st = rt.stages.get(d)
        if st is None:
            reg = o.registration
            st = PassiveStage(
                o.private_dir(self.config, d),
                o.sid,
                Scope(reg.includes, reg.excludes, o.always_excluded(self.config, d)),
                reg.delete_before_restore,
            )
            st.open()
            rt.stages[d] = st
        return st

    async def _start_supply(
        self, o: DataOwner, rt: OwnerRuntime, d: str, ttype: TransferType
    ) -> Transfer:
        seq = rt.sequence
        t = Transfer(True, d, ttype)
        restore = not self.current.info.mode.is_backup
        if ttype in (TransferType.SYSTEM_DATA, TransferType.SYSTEM_SNAPSHOT):
            raise NotSupportedError("system (package) data is not supported on this device")
        if ttype == TransferType.PASSIVE_SNAPSHOT:
            if not o.is_passive or not o.supports_passive_incremental:
                raise CorruptError("owner takes no passive snapshot (not passive or base only)")
            snapshot_in = supplied(ttype, restore=restore)
            # A snapshot takes its place in the order once the whole of it is in.
            seq.check(d, snapshot_in)
            spool = new_spool_dir(self.config.spool_dir, "snapin-") / "snapshot"
            t.sink = SpoolSink(spool)

            def snapshot_done() -> None:
                try:
                    snap = load_snapshot_file(spool)
                finally:
                    shutil.rmtree(spool.parent, ignore_errors=True)
                if restore:
                    self._stage(o, rt, d).set_snapshot(snap)
                else:
                    rt.snapshots[d] = snap
                seq.advance(d, snapshot_in)

            t.on_done = snapshot_done
            return t
        if not restore and ttype != TransferType.ACTIVE_SNAPSHOT:
            raise AccessDeniedError("only snapshots can be supplied during a backup")
        if not (ttype.is_passive or ttype.is_active):
            raise NotSupportedError(f"transfer type {ttype.name} is not supported")
        event = supplied(ttype, restore=restore)
        if ttype.is_passive:
            if not o.is_passive:
                raise CorruptError("owner has no passive data")
            if ttype == TransferType.PASSIVE_INCREMENTAL and o.registration.base_backup_only:
                raise CorruptError("owner is base_backup_only")
            seq.advance(d, event)
            t.sink = PassiveDataSink(self._stage(o, rt, d))
            return t
        if not o.is_active:
            raise CorruptError("owner has no active data")
        if ttype == TransferType.ACTIVE_SNAPSHOT:
            if not o.supports_active_incremental:
                raise CorruptError("owner does not support incremental backup")
            seq.check(d, event)
            own = self.registry.own_session(o)
            t.sink = ActiveDataSink(
                o.sid, d, own, [], False, self.config.section_size, snapshot=True
            )

            def active_snapshot_done() -> None:
                seq.advance(d, event)

            t.on_done = active_snapshot_done
            return t
        seq.advance(d, event)
        proxies = self.registry.proxies(o)
        own = self.registry.own_session(o)
        seq.note_active_restore()
        t.sink = ActiveDataSink(
            o.sid,
            d,
            own,
            proxies,
            ttype == TransferType.ACTIVE_INCREMENTAL,
            self.config.section_size,
        )
        return t
