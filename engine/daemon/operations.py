"""High-level operations for backup servers: prepare a backup, read it, restore one.

These drive the same engine parts as the low-level calls (mode changes, owner
readiness, snapshots, callbacks, the owners' transfer order), so data owners see
exactly the sequence the low-level calls would give them (see engine/README.md,
Sequencing rules, and engine/README.md, Restore).
"""

from __future__ import annotations

import logging
import re
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import trio

from .. import __version__
from ..errors import (
    AccessDeniedError,
    CorruptError,
    EngineError,
    NotFoundError,
)
from ..mbak.ingest import ArchiveIngest
from ..mbak.manifest import StreamEntry
from ..mbak.snapshot import Snapshot, write_snapshot
from ..mbak.tar import MemberInfo
from ..types import (
    ArchiveInfo,
    BackupIncType,
    BURMode,
    DataOwnerStatus,
    OwnerResult,
    RestoreResult,
    TransferType,
    format_sid,
)
from .activedata import ActiveDataSink, ActiveDataSource
from .archive import ArchivePlan, PlanBuilder, PlanCursor, Segment
from .core import Engine
from .owners import DataOwner
from .publicfiles import PublicScope, plan_public
from .publicstage import PublicStage
from .restore import PassiveStage, Scope, check_free_space
from .sequencing import Event, requested
from .spool import new_spool_dir
from .streams import SnapshotCollector

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[bytes | None]]


@dataclass
class PreparedBackup:
    backup_id: str
    mode: str
    archives: list[ArchiveInfo]
    skipped: list[tuple[int, str]] = field(default_factory=list)
    plans: dict[str, ArchivePlan] = field(default_factory=dict)
    spool: Path | None = None

    def to_wire(self) -> dict[str, object]:
        return {
            "backup_id": self.backup_id,
            "mode": self.mode,
            "archives": [a.to_wire() for a in self.archives],
            "skipped": [{"sid": s, "reason": r} for s, r in self.skipped],
        }

    def release(self) -> None:
        if self.spool is not None:
            shutil.rmtree(self.spool, ignore_errors=True)
            self.spool = None
        self.plans.clear()


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:48] or "owner"


async def _spool_active(engine: Engine, src: ActiveDataSource, path: Path) -> int:
    n = 0
    with open(path, "wb") as f:
        while True:
            chunk = await src.read(1 << 20)
            if chunk:
                await trio.to_thread.run_sync(f.write, chunk)
                n += len(chunk)
            if src.finished:
                break
    return n


async def load_previous(engine: Engine, receive: Receive) -> SnapshotCollector | None:
    """Read a previous ``.snapshot`` (or ``.mbak``) upload; None if it was empty."""
    spool = new_spool_dir(engine.config.spool_dir, "prev-")
    col = SnapshotCollector(spool)
    ingest = ArchiveIngest(col)
    got = False
    try:
        while (chunk := await receive()) is not None:
            if chunk:
                got = True
                await trio.to_thread.run_sync(ingest.feed, chunk)
        if not got:
            col.cleanup()
            return None
        await trio.to_thread.run_sync(ingest.finish)
    except BaseException:
        col.cleanup()
        raise
    return col


async def prepare_backup(
    engine: Engine,
    sids: list[int] | None = None,
    previous: SnapshotCollector | None = None,
    drives: list[str] | None = None,
) -> PreparedBackup:
    """Enter backup mode and plan the archives; the engine stays in backup mode."""
    if not engine.mode.mode.is_normal:
        raise AccessDeniedError(f"a backup needs Normal mode, engine is in {engine.mode.mode.name}")
    await engine.registry.list_data_owners()
    partial = sids is not None
    if partial:
        assert sids is not None
        engine.registry.set_partial_sids(sids)
    inc = BackupIncType.INCREMENT if previous is not None else BackupIncType.BASE
    mode = BURMode.BACKUP_PARTIAL if partial else BURMode.BACKUP_FULL
    await engine.set_bur_mode(drives or [], mode, inc)
    try:
        return await _prepare(engine, previous, partial)
    except BaseException:
        await engine.set_bur_mode([], BURMode.NORMAL, BackupIncType.NO_BACKUP, commit=False)
        raise
    finally:
        if previous is not None:
            previous.cleanup()


async def _prepare(
    engine: Engine, previous: SnapshotCollector | None, partial: bool
) -> PreparedBackup:
    registry = engine.registry
    assert registry.owners is not None
    owners = [
        o
        for o in registry.owners.values()
        if registry.in_scope(o) and not o.registration.is_proxy_only
    ]
    active = [o.sid for o in owners if o.is_active]
    await registry.wait_ready(active)
    prev_files = previous.files if previous else {}
    backup_id = uuid.uuid4().hex
    now = time.time_ns()
    spool = new_spool_dir(engine.config.spool_dir, "backup-")
    skipped: list[tuple[int, str]] = []
    incremental = previous is not None
    try:
        # Snapshots first (active owners size their data from them), then the call
        # that tells owners no more are coming.
        for o in owners:
            if not (o.is_active and o.supports_active_incremental):
                continue
            for d in _drives(engine, o):
                p = prev_files.get((o.sid, d, TransferType.ACTIVE_SNAPSHOT))
                if p is None or registry.status_of(o.sid) != DataOwnerStatus.READY:
                    continue
                data = p.read_bytes()
                await engine.transfers.supply_data(
                    o.sid, d, TransferType.ACTIVE_SNAPSHOT, data, True
                )
        await engine.transfers.all_snapshots_supplied()
        builders = {"full": PlanBuilder("full", now)}
        per_owner: dict[int, PlanBuilder] = {}
        owner_meta = []
        for o in owners:
            st = registry.status_of(o.sid)
            if o.is_active and st not in (DataOwnerStatus.READY, DataOwnerStatus.READY_NO_IMPL):
                skipped.append((o.sid, f"status {st.name}"))
                if not o.is_passive:
                    continue
            ob = PlanBuilder(o.name, now)
            per_owner[o.sid] = ob
            owner_meta.append(_owner_meta(o))
            for d in _drives(engine, o):
                await _plan_owner_drive(engine, o, d, st, prev_files, spool, [builders["full"], ob])
        # Public files after the owners' streams: each drive's selected files, once.
        await trio.to_thread.run_sync(
            plan_public,
            engine.config,
            engine.mode.drives,
            builders["full"],
            [(o, per_owner[o.sid]) for o in owners if o.sid in per_owner],
            previous.public if previous else {},
            spool,
        )
        mode = "incremental" if incremental else "base"
        base: dict[str, object] = {
            "device": engine.config.device_name,
            "created": datetime.fromtimestamp(now / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "created_ns": now,
            "backup_id": backup_id,
            "engine": {"name": "backup-engine", "version": __version__},
            "mode": mode,
            "based_on": previous.manifest.get("backup_id") if previous else None,
            "skipped": [{"sid": format_sid(s), "reason": r} for s, r in skipped],
        }
        stamp = datetime.fromtimestamp(now / 1e9).strftime("%Y%m%d-%H%M%S")
        stem = f"{_safe_name(engine.config.device_name)}-{stamp}"
        prepared = PreparedBackup(backup_id, mode, [], skipped, {}, spool)
        full = builders["full"].finish(
            {**base, "kind": "partial" if partial else "full", "owners": owner_meta}
        )
        full.name = f"{stem}.mbak"
        prepared.plans[full.name] = full
        prepared.archives.append(ArchiveInfo(full.name, full.size, "full"))
        # The snapshot file: the same format, snapshot streams only.
        sb = PlanBuilder("snapshot", now)
        for entry, segs in _snapshot_streams(builders["full"]):
            sb.add_segments_from(segs, entry)
        snap = sb.finish({**base, "kind": "snapshot", "owners": owner_meta})
        snap.name = f"{stem}.snapshot"
        prepared.plans[snap.name] = snap
        prepared.archives.append(ArchiveInfo(snap.name, snap.size, "snapshot"))
        for o in owners:
            if o.sid not in per_owner:
                continue
            plan = per_owner[o.sid].finish({**base, "kind": "owner", "owners": [_owner_meta(o)]})
            plan.name = f"owners/{_safe_name(o.name)}-{format_sid(o.sid)}.mbak"
            prepared.plans[plan.name] = plan
            prepared.archives.append(ArchiveInfo(plan.name, plan.size, "owner", o.sid))
        return prepared
    except BaseException:
        shutil.rmtree(spool, ignore_errors=True)
        raise


def _public_owners(manifest: dict[str, object]) -> set[int]:
    """Owners the manifest lists with public files (flag HasPublicFiles): theirs are restored."""
    out: set[int] = set()
    for o in manifest.get("owners") or []:  # type: ignore[attr-defined]
        if isinstance(o, dict) and isinstance(o.get("passive"), int) and o["passive"] & 1:
            try:
                out.add(int(str(o.get("sid")), 16))
            except ValueError:
                continue
    return out


def _snapshot_streams(b: PlanBuilder) -> list[tuple[StreamEntry, list[Segment]]]:
    out: list[tuple[StreamEntry, list[Segment]]] = []
    for e in b.streams:
        if e.ttype.is_snapshot:
            out.append((e, list(b.segments_of(e))))
    return out


def _drives(engine: Engine, o: DataOwner) -> list[str]:
    return [d for d in o.drives if d in engine.mode.drives]


def _owner_meta(o: DataOwner) -> dict[str, object]:
    i = o.info()
    return {
        "sid": format_sid(o.sid),
        "name": o.name,
        "common": int(i.common),
        "passive": int(i.passive),
        "active": int(i.active),
        "drives": list(i.drives),
        "settings": {
            "active": o.is_active,
            "passive": o.is_passive,
            "base_backup_only": o.registration.base_backup_only,
            "delete_before_restore": o.registration.delete_before_restore,
            "supports_incremental": o.supports_active_incremental,
            "proxies": [format_sid(p) for p in o.registration.proxies],
            "requires_reboot": o.registration.requires_reboot,
        },
    }


async def _plan_owner_drive(
    engine: Engine,
    o: DataOwner,
    d: str,
    status: DataOwnerStatus,
    prev: dict[tuple[int, str, TransferType], Path],
    spool: Path,
    builders: list[PlanBuilder],
) -> None:
    cfg = engine.config
    tag = f"{format_sid(o.sid)}-{d}"
    if o.is_passive and (o.sid, d) and (d in o.private_dirs):
        recs = await trio.to_thread.run_sync(o.passive_records, cfg, d)
        snap_path = spool / f"{tag}-passive-snapshot"

        def write() -> None:
            with open(snap_path, "wb") as f:
                write_snapshot(f, recs)

        await trio.to_thread.run_sync(write)
        ttype = TransferType.PASSIVE_BASE
        prev_snap = prev.get((o.sid, d, TransferType.PASSIVE_SNAPSHOT))
        data_recs = recs
        if prev_snap is not None and o.supports_passive_incremental:
            old = await trio.to_thread.run_sync(Snapshot.from_file, prev_snap)
            data_recs = old.changed(recs)
            ttype = TransferType.PASSIVE_INCREMENTAL
        pd = o.private_dir(cfg, d)
        for b in builders:
            b.begin_stream(o.sid, d, TransferType.PASSIVE_SNAPSHOT)
            b.add_spooled(snap_path)
            b.end_stream()
            b.begin_stream(o.sid, d, ttype)
            b.add_files(pd, data_recs)
            b.end_stream()
    if o.is_active and status == DataOwnerStatus.READY:
        registry = engine.registry
        seq = engine.transfers.sequence(o.sid)
        # An increment if the previous snapshot was supplied, else base data.
        incremental = seq.allows(d, Event.ACTIVE_INCREMENTAL_REQUESTED)
        ttype = TransferType.ACTIVE_INCREMENTAL if incremental else TransferType.ACTIVE_BASE
        data_path = spool / f"{tag}-active-data"
        src = ActiveDataSource(o.sid, d, registry.own_session(o), registry.proxies(o))
        seq.advance(d, requested(ttype))
        try:
            await _spool_active(engine, src, data_path)
        finally:
            await src.aclose()
        asnap: Path | None = None
        if o.supports_active_incremental and o.has_own_active_data:
            own = registry.own_session(o)
            if own is not None:
                asnap = spool / f"{tag}-active-snapshot"
                ssrc = ActiveDataSource(o.sid, d, own, [], snapshot=True)
                try:
                    await _spool_active(engine, ssrc, asnap)
                finally:
                    await ssrc.aclose()
        for b in builders:
            if asnap is not None:
                b.begin_stream(o.sid, d, TransferType.ACTIVE_SNAPSHOT)
                b.add_spooled(asnap)
                b.end_stream()
            b.begin_stream(o.sid, d, ttype)
            b.add_spooled(data_path)
            b.end_stream()


def read_plan_sync(plan: ArchivePlan, offset: int, length: int, out: BinaryIO) -> None:
    cur = PlanCursor(plan, offset)
    try:
        left = length
        while left > 0:
            b = cur.read(min(1 << 20, left))
            if not b:
                break
            out.write(b)
            left -= len(b)
    finally:
        cur.close()


# ------------------------------------------------------------------ restore


class RestoreHandler:
    """Stages every selected owner's streams while the archive is verified."""

    def __init__(self, engine: Engine, spool: Path, sids: list[int] | None) -> None:
        self.engine = engine
        self.spool = spool
        self.sids = sids
        self.manifest: dict[str, object] = {}
        self.streams: list[StreamEntry] = []
        self.stages: dict[tuple[int, str], PassiveStage] = {}
        self.active_files: dict[tuple[int, str, TransferType], Path] = {}
        self.snap_files: dict[tuple[int, str], Path] = {}
        self.whole: set[tuple[int, str]] = set()
        self.incremental = False
        self.selected: set[int] = set()
        self.public: dict[str, PublicStage] = {}
        self.public_whole: set[str] = set()
        self._f: BinaryIO | None = None
        self._stage: PassiveStage | PublicStage | None = None

    def on_manifest(self, manifest: dict[str, object], streams: list[StreamEntry]) -> None:
        self.manifest = manifest
        self.streams = streams
        self.incremental = manifest.get("mode") == "incremental"
        if manifest.get("kind") == "snapshot":
            raise CorruptError("a .snapshot file holds no data to restore")
        owners = self.engine.registry.owners or {}
        in_archive = {e.sid for e in streams if not e.public}
        if any(e.public for e in streams):
            in_archive |= _public_owners(manifest)
        wanted = in_archive if self.sids is None else in_archive & set(self.sids)
        if self.sids is not None:
            missing = set(self.sids) - in_archive
            if missing:
                raise NotFoundError(
                    "not in the archive: " + ", ".join(format_sid(s) for s in sorted(missing))
                )
        unknown = sorted(s for s in wanted if s not in owners)
        if unknown:
            raise NotFoundError(
                "archive holds data of owners unknown on this device: "
                + ", ".join(format_sid(s) for s in unknown)
            )
        for e in streams:
            if e.public:
                if e.drive not in self.engine.config.drives:
                    raise NotFoundError(f"drive {e.drive} of the public files does not exist here")
                if e.ttype == TransferType.PASSIVE_BASE:
                    self.public_whole.add(e.drive)
                continue
            if e.sid not in wanted:
                continue
            if e.drive not in self.engine.config.drives:
                raise NotFoundError(f"drive {e.drive} of {format_sid(e.sid)} does not exist here")
            o = owners[e.sid]
            if e.ttype.is_passive and not o.is_passive:
                raise CorruptError(f"{format_sid(e.sid)} has no passive data on this device")
            if e.ttype.is_active and not o.is_active:
                raise CorruptError(f"{format_sid(e.sid)} has no active data on this device")
            if e.ttype in (TransferType.SYSTEM_DATA, TransferType.SYSTEM_SNAPSHOT):
                raise CorruptError("system data is not supported")
            if e.ttype == TransferType.PASSIVE_BASE:
                self.whole.add((e.sid, e.drive))
        self.selected = wanted
        check_free_space(self._space_needed())

    def _space_needed(self) -> list[tuple[Path, int, int]]:
        """Where each selected stream will be staged: passive and public files, or the spool."""
        cfg = self.engine.config
        out = []
        for e in self.streams:
            if not (e.public or e.sid in self.selected):
                continue
            files = e.ttype in (TransferType.PASSIVE_BASE, TransferType.PASSIVE_INCREMENTAL)
            where = cfg.private_root(e.drive) if files else self.spool
            out.append((where, e.content_bytes, e.entries))
        return out

    def _public_for(self, d: str) -> PublicStage:
        st = self.public.get(d)
        if st is None:
            owners = self.engine.registry.owners or {}
            restored = [owners[s] for s in sorted(self.selected) if s in owners]
            st = PublicStage(
                d,
                self.engine.config.drive_root(d),
                PublicScope(d, owners.values()),
                PublicScope(d, restored),
            )
            st.open()
            self.public[d] = st
        return st

    def _stage_for(self, sid: int, d: str) -> PassiveStage:
        st = self.stages.get((sid, d))
        if st is None:
            owners = self.engine.registry.owners
            assert owners is not None
            o = owners[sid]
            reg = o.registration
            st = PassiveStage(
                o.private_dir(self.engine.config, d),
                sid,
                Scope(reg.includes, reg.excludes, o.always_excluded(self.engine.config, d)),
                reg.delete_before_restore and not self.incremental,
            )
            st.open()
            self.stages[(sid, d)] = st
        return st

    def begin_member(self, entry: StreamEntry, rel: str | None, info: MemberInfo) -> bool:
        if entry.public and rel is not None:
            pst = self._public_for(entry.drive)
            self._stage = pst
            return pst.begin(rel, info.size, info.mtime_ns, info.mode, info.is_dir)
        if entry.public:
            p = self.spool / f"public-{entry.drive}-snapshot"
            self.snap_files[(-1, entry.drive)] = p
            self._f = open(p, "wb")
            return True
        if entry.sid not in self.selected:
            return False
        if rel is not None:
            st = self._stage_for(entry.sid, entry.drive)
            self._stage = st
            return st.begin(rel, info.size, info.mtime_ns, info.mode, info.is_dir)
        p = self.spool / f"{format_sid(entry.sid)}-{entry.drive}-{entry.ttype.slug}"
        if entry.ttype == TransferType.PASSIVE_SNAPSHOT:
            self.snap_files[(entry.sid, entry.drive)] = p
        else:
            self.active_files[(entry.sid, entry.drive, entry.ttype)] = p
        self._f = open(p, "wb")
        return True

    def data(self, entry: StreamEntry, data: bytes | memoryview) -> None:
        if self._f is not None:
            self._f.write(data)
        elif self._stage is not None:
            self._stage.write(data)

    def end_member(self, entry: StreamEntry) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        elif self._stage is not None:
            self._stage.end()
            self._stage = None

    def end_stream(self, entry: StreamEntry) -> None:
        if entry.public and entry.ttype == TransferType.PASSIVE_SNAPSHOT:
            p = self.snap_files.get((-1, entry.drive))
            if p is not None:
                self._public_for(entry.drive).set_snapshot(Snapshot.from_file(p))
            return
        if entry.public or entry.sid not in self.selected:
            return
        if entry.ttype == TransferType.PASSIVE_SNAPSHOT:
            p = self.snap_files.get((entry.sid, entry.drive))
            if p is not None:
                snap = Snapshot.from_file(p)
                self._stage_for(entry.sid, entry.drive).set_snapshot(snap)

    def settle(self) -> None:
        """Finalise every stage and check it against its snapshot; nothing is committed.

        Runs for all owners before the first swap, so an archive that contradicts
        itself for any owner is refused as a whole (see engine/README.md, Restore).
        """
        for (sid, d), stage in sorted(self.stages.items()):
            stage.finalize()
            stage.check_complete((sid, d) in self.whole)
        for d, pst in sorted(self.public.items()):
            pst.finalize(d in self.public_whole)

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        for st in self.stages.values():
            st.abort()
        for pst in self.public.values():
            pst.abort()


async def restore_archive(
    engine: Engine, receive: Receive, sids: list[int] | None = None
) -> RestoreResult:
    """Stage, verify, then commit every selected owner; never raises for bad data."""
    if not engine.mode.mode.is_normal:
        raise AccessDeniedError(
            f"a restore needs Normal mode, engine is in {engine.mode.mode.name}"
        )
    engine.modes.rediscover()
    spool = new_spool_dir(engine.config.spool_dir, "restore-")
    handler = RestoreHandler(engine, spool, sids)
    ingest = ArchiveIngest(handler)
    entered = False
    result = RestoreResult(0, "restored")
    try:
        while (chunk := await receive()) is not None:
            if not chunk:
                continue
            await trio.to_thread.run_sync(ingest.feed, chunk)
            if not entered and handler.selected:
                entered = True
                await _enter_restore(engine, handler, sids)
        if not entered and ingest.manifest is None:
            raise CorruptError("empty or truncated archive")
        await trio.to_thread.run_sync(ingest.finish)
        result.bytes_read = ingest.bytes_in
        changed = [
            ingest.streams[i]
            for i in ingest.changed
            if ingest.streams[i].sid in handler.selected or ingest.streams[i].public
        ]
        if changed:
            names = sorted({e.place.split("/")[0] if not e.public else e.place for e in changed})
            raise CorruptError(
                "files changed while the backup was taken (owners " + ", ".join(names) + ")"
            )
        if not entered and handler.selected:
            entered = True
            await _enter_restore(engine, handler, sids)
        await trio.to_thread.run_sync(handler.settle)
        await _commit(engine, handler, result)
    except EngineError as e:
        handler.abort()
        result.code = int(e.code)
        result.reason = e.message
        result.bytes_read = ingest.bytes_in
        log.warning("restore refused: %s", e.message)
    except BaseException:
        handler.abort()
        raise
    finally:
        shutil.rmtree(spool, ignore_errors=True)
        if entered:
            with trio.CancelScope(shield=True):
                try:
                    await engine.set_bur_mode([], BURMode.NORMAL, BackupIncType.NO_BACKUP)
                except EngineError as e:
                    log.warning("leaving restore mode: %s", e)
    return result


async def _enter_restore(engine: Engine, handler: RestoreHandler, sids: list[int] | None) -> None:
    drives = sorted({e.drive for e in handler.streams if e.sid in handler.selected or e.public})
    inc = BackupIncType.INCREMENT if handler.incremental else BackupIncType.BASE
    registry = engine.registry
    if sids is not None:
        registry.set_partial_sids(sids)
        mode = BURMode.RESTORE_PARTIAL
    else:
        mode = BURMode.RESTORE_FULL
    await engine.set_bur_mode(drives, mode, inc)
    engine.launcher.launch(sorted(s for s in handler.selected if registry.owner(s).is_active))


async def _commit(engine: Engine, handler: RestoreHandler, result: RestoreResult) -> None:
    """Feed active owners their data, then swap in the settled passive data owner by owner.

    The order of a low-level restore (passive data is committed at the return to
    Normal, after the active supplies): an owner whose app fails keeps its old
    files instead of getting new files beside old app data.
    """
    registry = engine.registry
    first_error: EngineError | None = None
    failed: set[int] = set()
    actives = sorted({k[0] for k in handler.active_files})
    if actives:
        await registry.wait_ready(actives)
    order = [
        TransferType.ACTIVE_SNAPSHOT,
        TransferType.ACTIVE_BASE,
        TransferType.ACTIVE_INCREMENTAL,
    ]
    for sid in actives:
        o = registry.owner(sid)
        try:
            st = registry.status_of(sid)
            if st not in (DataOwnerStatus.READY, DataOwnerStatus.READY_NO_IMPL):
                raise NotFoundError(f"active owner {format_sid(sid)} is {st.name}")
            engine.transfers.sequence(sid).note_active_restore()
            for d in sorted({k[1] for k in handler.active_files if k[0] == sid}):
                for tt in order:
                    p = handler.active_files.get((sid, d, tt))
                    if p is None:
                        continue
                    if tt == TransferType.ACTIVE_SNAPSHOT and not o.supports_active_incremental:
                        continue
                    sink = ActiveDataSink(
                        sid,
                        d,
                        registry.own_session(o),
                        [] if tt == TransferType.ACTIVE_SNAPSHOT else registry.proxies(o),
                        tt == TransferType.ACTIVE_INCREMENTAL,
                        engine.config.section_size,
                        snapshot=tt == TransferType.ACTIVE_SNAPSHOT,
                    )
                    try:
                        with open(p, "rb") as f:
                            while chunk := f.read(1 << 20):
                                await sink.write(chunk)
                        await sink.finish()
                    except BaseException:
                        await sink.abort()
                        raise
        except EngineError as e:
            result.owners.append(OwnerResult(sid, int(e.code), e.message))
            first_error = first_error or e
            failed.add(sid)
    for (sid, _d), stage in sorted(handler.stages.items()):
        if sid in failed:
            await trio.to_thread.run_sync(stage.abort)
            continue
        try:
            await trio.to_thread.run_sync(stage.commit)
        except EngineError as e:
            await trio.to_thread.run_sync(stage.abort)
            if sid not in failed:  # another drive of the same owner may fail too
                result.owners.append(OwnerResult(sid, int(e.code), e.message))
                first_error = first_error or e
                failed.add(sid)
    # Public files are shared by owners: put back only when every owner was.
    public_failed: list[str] = []
    for d, pst in sorted(handler.public.items()):
        if failed:
            await trio.to_thread.run_sync(pst.abort)
            continue
        try:
            await trio.to_thread.run_sync(pst.commit)
        except EngineError as e:
            await trio.to_thread.run_sync(pst.abort)
            first_error = first_error or e
            public_failed.append(f"public/{d}")
    for sid in sorted(handler.selected):
        if not any(r.sid == sid for r in result.owners):
            result.owners.append(OwnerResult(sid, 0, "restored"))
    result.owners.sort(key=lambda r: r.sid)
    if first_error is not None:
        result.code = int(first_error.code)
        names = [format_sid(r.sid) for r in result.owners if r.code] + public_failed
        result.reason = f"restore failed for {', '.join(names)}: {first_error.message}"
