"""The engine's state machine: owners, BUR mode, sequencing rules, transfers.

This is the CSBEClient contract of the reference (section 2), as one object that
the socket server drives. Everything here is async and runs in one trio loop; file
I/O is pushed to worker threads. Data streams are chunk-based and resumable so
that a backup server can interleave and abort them exactly as the reference's
``RequestDataL`` / ``SupplyDataL`` allow.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import trio

from ..errors import (
    AccessDeniedError,
    ArgumentError,
    CorruptError,
    EngineError,
    InUseError,
    NotFoundError,
    NotReadyError,
    NotSupportedError,
)
from ..mbak.snapshot import Snapshot, snapshot_size, write_snapshot
from ..mbak.tar import BLOCK
from ..types import (
    ActiveType,
    BackupIncType,
    BURMode,
    DataOwnerInfo,
    DataOwnerStatus,
    FileEntry,
    ModeInfo,
    TransferType,
    format_sid,
    normalise_drive,
)
from .activedata import ActiveDataSink, ActiveDataSource, ActiveSession
from .config import EngineConfig
from .filelist import iter_public_files
from .owners import DataOwner, discover
from .restore import PassiveStage, Scope, recover
from .streams import FileSource, PassiveDataSink, PassiveSource, SpoolSink, load_snapshot_file

log = logging.getLogger(__name__)


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
    """The one multi-part transfer an owner may have open at a time."""

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
    """Per-session state of one owner (Appendix B of the reference)."""

    flags: dict[str, set[str]] = field(default_factory=dict)
    transfer: Transfer | None = None
    stages: dict[str, PassiveStage] = field(default_factory=dict)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    failed_drives: set[str] = field(default_factory=set)

    def f(self, drive: str) -> set[str]:
        return self.flags.setdefault(drive, set())


ModeListener = Callable[[ModeInfo], Awaitable[None]]


class Engine:
    """One engine instance; the server owns exactly one."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.owners: dict[int, DataOwner] | None = None
        self.mode = ModeInfo()
        self.partial_sids: list[int] | None = None
        self.sessions: dict[int, ActiveSession] = {}
        self.launched: dict[int, subprocess.Popen[bytes]] = {}
        self.exiting: list[subprocess.Popen[bytes]] = []
        self.runtime: dict[int, OwnerRuntime] = {}
        self.listeners: list[ModeListener] = []
        self.session_changed = trio.Event()
        self.lock = trio.Lock()
        self._spool_root = config.spool_dir
        for d in config.drives:
            recover(config.private_root(d))

    # ------------------------------------------------------------ helpers
    def spool_dir(self, prefix: str) -> Path:
        self._spool_root.mkdir(parents=True, exist_ok=True)
        os.chmod(self._spool_root, 0o700)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self._spool_root))

    def _require(
        self, *, normal: bool = False, backup: bool = False, restore: bool = False
    ) -> None:
        m = self.mode.mode
        ok = (normal and m.is_normal) or (backup and m.is_backup) or (restore and m.is_restore)
        if not ok:
            raise AccessDeniedError(f"not allowed in mode {m.name}")

    def owner(self, sid: int) -> DataOwner:
        if self.owners is None or sid not in self.owners:
            raise NotFoundError(f"unknown data owner {format_sid(sid)}")
        return self.owners[sid]

    def rt(self, sid: int) -> OwnerRuntime:
        return self.runtime.setdefault(sid, OwnerRuntime())

    def in_scope(self, o: DataOwner) -> bool:
        if self.mode.mode.is_partial:
            return o.sid in (self.partial_sids or [])
        return True

    def _check_drive(self, o: DataOwner, drive: str) -> str:
        try:
            d = normalise_drive(drive)
        except ArgumentError as e:
            raise NotFoundError(str(e)) from e
        if d not in self.mode.drives or d not in o.drives:
            raise NotFoundError(f"drive {d} is not in the data owner's drive state")
        return d

    # ------------------------------------------------------------ owners
    def rescan(self) -> dict[int, DataOwner]:
        self.owners = discover(self.config)
        self.runtime.clear()
        return self.owners

    async def list_data_owners(self) -> list[DataOwnerInfo]:
        """Rescan registrations (Normal mode only) and report every listed owner."""
        self._require(normal=True)
        owners = await trio.to_thread.run_sync(discover, self.config)
        self.owners = owners
        self.runtime.clear()
        return [o.info() for o in owners.values() if not o.registration.is_proxy_only]

    def set_partial_sids(self, sids: list[int]) -> None:
        self._require(normal=True)
        self.partial_sids = list(dict.fromkeys(sids))

    def does_partial_affect(self, sid: int) -> bool:
        if self.partial_sids is None:
            raise NotFoundError("no partial list was set")
        if not self.mode.mode.is_partial:
            return True
        return sid in self.partial_sids

    # ------------------------------------------------------------ status
    def _own_status(self, o: DataOwner) -> DataOwnerStatus:
        r = o.registration
        if not r.active:
            return DataOwnerStatus.READY
        if r.active_type is ActiveType.PROXY_ONLY and not r.proxies:
            s = self.sessions.get(o.sid)
            if s is None or not s.alive:
                return DataOwnerStatus.NOT_CONNECTED
            return DataOwnerStatus.READY_NO_IMPL if s.status == DataOwnerStatus.READY else s.status
        s = self.sessions.get(o.sid)
        if s is None or not s.alive:
            return DataOwnerStatus.NOT_CONNECTED
        if s.status == DataOwnerStatus.READY and not s.has_impl:
            return DataOwnerStatus.READY_NO_IMPL
        return s.status

    def status_of(self, sid: int) -> DataOwnerStatus:
        if self.owners is None or sid not in self.owners:
            return DataOwnerStatus.NOT_FOUND
        o = self.owners[sid]
        own = self._own_status(o)
        if own not in (DataOwnerStatus.READY, DataOwnerStatus.READY_NO_IMPL):
            return own
        for p in o.registration.proxies:
            ps = self.proxy_status(p)
            if ps != DataOwnerStatus.READY:
                return ps
        return own

    def proxy_status(self, p: int) -> DataOwnerStatus:
        if self.owners is None or p not in self.owners:
            return DataOwnerStatus.NOT_FOUND
        po = self.owners[p]
        if not po.registration.active or po.registration.active_type is ActiveType.ACTIVE_ONLY:
            return DataOwnerStatus.FAILED
        s = self.sessions.get(p)
        if s is None or not s.alive:
            return DataOwnerStatus.NOT_CONNECTED
        return s.status

    def sid_status(self, sids: list[int]) -> list[tuple[int, DataOwnerStatus]]:
        self._require(backup=True, restore=True)
        return [(s, self.status_of(s)) for s in sids]

    async def wait_ready(self, sids: list[int], timeout: float | None = None) -> None:
        """Poll until every owner's status is final or the time budget is spent."""
        budget = self.config.ready_timeout if timeout is None else timeout
        if self.owners and any(
            self.owners[s].registration.requires_delay for s in sids if s in self.owners
        ):
            budget = max(budget, self.config.delayed_ready_timeout)
        with trio.move_on_after(budget):
            while not all(self.status_of(s).is_final for s in sids):
                ev = self.session_changed
                with trio.move_on_after(0.2):
                    await ev.wait()

    # ------------------------------------------------------------ active sessions
    def attach_session(self, sess: ActiveSession) -> None:
        old = self.sessions.get(sess.sid)
        if old is not None and old.alive and old.conn is not sess.conn:
            raise InUseError(f"owner {format_sid(sess.sid)} is already connected")
        if self.owners and sess.sid in self.owners:
            sess.timeout = self.owners[sess.sid].registration.callback_timeout
        else:
            sess.timeout = self.config.callback_timeout
        self.sessions[sess.sid] = sess
        self._poke()

    def detach_session(self, sess: ActiveSession) -> None:
        if self.sessions.get(sess.sid) is sess:
            del self.sessions[sess.sid]
        proc = self.launched.get(sess.sid)
        if proc is not None and proc.pid == sess.pid:
            # The process is leaving; it may be relaunched while it winds down.
            self.exiting.append(self.launched.pop(sess.sid))
        if not self.mode.mode.is_normal and self.owners and sess.sid in self.owners:
            if self.in_scope(self.owners[sess.sid]) or any(
                sess.sid in o.registration.proxies for o in self.owners.values()
            ):
                self.launch_owners([sess.sid])
        self._poke()

    def confirm_ready(self, sess: ActiveSession, error: int, has_impl: bool) -> None:
        if self.owners and sess.sid in self.owners:
            sess.timeout = self.owners[sess.sid].registration.callback_timeout
        sess.has_impl = has_impl
        sess.status = DataOwnerStatus.READY if error == 0 else DataOwnerStatus.FAILED
        self._poke()

    def _poke(self) -> None:
        self.session_changed.set()
        self.session_changed = trio.Event()

    def _session(self, sid: int) -> ActiveSession | None:
        s = self.sessions.get(sid)
        return s if s is not None and s.alive else None

    def _proxies(self, o: DataOwner) -> list[tuple[int, ActiveSession]]:
        out = []
        for p in o.registration.proxies:
            st = self.proxy_status(p)
            if st == DataOwnerStatus.NOT_FOUND:
                raise NotFoundError(f"proxy {format_sid(p)} of {format_sid(o.sid)} is not an owner")
            s = self._session(p)
            if s is None or st != DataOwnerStatus.READY:
                raise NotReadyError(f"proxy {format_sid(p)} is not ready ({st.name})")
            out.append((p, s))
        return out

    def _own_session(self, o: DataOwner) -> ActiveSession | None:
        if not o.has_own_active_data:
            return None
        s = self._session(o.sid)
        if s is None:
            raise NotReadyError(f"owner {format_sid(o.sid)} is not connected")
        if s.status == DataOwnerStatus.READY and not s.has_impl:
            return None
        s.check_ready()
        return s

    # ------------------------------------------------------------ launching
    def resolve_process(self, name: str) -> list[str] | None:
        if not name or "/" in name or name.startswith("."):
            return None
        dirs = [str(d) for d in self.config.bin_dirs]
        path = None
        for d in dirs:
            cand = os.path.join(d, name)
            if os.path.isfile(cand):
                path = cand
                break
        if path is None and not dirs:
            path = shutil.which(name)
        if path is None:
            return None
        if path.endswith(".py"):
            return [sys.executable, path]
        return [path]

    def launch_owners(self, sids: list[int]) -> None:
        """Start active owners (and their proxies) that are not connected yet."""
        if not self.config.launch_owners or self.owners is None:
            return
        want: list[int] = []
        for sid in sids:
            o = self.owners.get(sid)
            if o is None:
                continue
            if o.registration.active:
                want.append(sid)
            want.extend(p for p in o.registration.proxies if p in self.owners)
        for sid in dict.fromkeys(want):
            o = self.owners[sid]
            if self._session(sid) is not None or not o.registration.active:
                continue
            proc = self.launched.get(sid)
            if proc is not None and proc.poll() is None:
                continue
            cmd = self.resolve_process(o.registration.process_name or "")
            if cmd is None:
                log.warning(
                    "cannot launch %s: process %r not found",
                    format_sid(sid),
                    o.registration.process_name,
                )
                self._fail_unlaunchable(sid)
                continue
            env = dict(os.environ)
            env["BACKUP_ENGINE_SOCKET"] = str(self.config.socket_path)
            env["BACKUP_ENGINE_SID"] = format_sid(sid)
            env["BACKUP_ENGINE_LAUNCHED"] = "1"
            root = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
            kw: dict[str, object] = {}
            pd = next(iter(o.private_dirs.values()), None)
            if os.geteuid() == 0 and pd is not None:
                st = os.stat(pd)
                if st.st_uid != 0:
                    kw = {"user": st.st_uid, "group": st.st_gid, "extra_groups": []}
            try:
                self.launched[sid] = subprocess.Popen(
                    cmd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    **kw,  # type: ignore[call-overload]
                )
                log.info("launched %s for owner %s", cmd, format_sid(sid))
            except OSError as e:
                log.warning("cannot launch %s: %s", cmd, e)
                self._fail_unlaunchable(sid)

    def _fail_unlaunchable(self, sid: int) -> None:
        self.runtime.setdefault(sid, OwnerRuntime()).f("*").add("launch_failed")

    def reap(self) -> None:
        for sid, p in list(self.launched.items()):
            if p.poll() is not None:
                del self.launched[sid]
        self.exiting = [p for p in self.exiting if p.poll() is None]

    def stop_launched(self) -> None:
        for p in self.exiting:
            self.launched.setdefault(-p.pid, p)
        self.exiting.clear()
        for p in self.launched.values():
            if p.poll() is None:
                p.terminate()
        for p in self.launched.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        self.launched.clear()

    # ------------------------------------------------------------ mode
    async def publish(self) -> None:
        self._write_state_file()
        for listener in list(self.listeners):
            try:
                await listener(self.mode)
            except Exception:
                log.exception("mode listener failed")

    def _write_state_file(self) -> None:
        path = self.config.state_file
        if path is None:
            return
        text = (
            f"mode={self.mode.mode.name}\ninc={self.mode.inc.name}\n"
            f"value=0x{self.mode.value:x}\ndrives={','.join(self.mode.drives)}\n"
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as e:
            log.warning("cannot write state file %s: %s", path, e)

    async def set_bur_mode(
        self, drives: list[str], mode: BURMode, inc: BackupIncType, *, commit: bool = True
    ) -> None:
        """Mode transitions of section 2.2; ``commit=False`` discards staged restores."""
        cur = self.mode.mode
        if mode.is_normal:
            if cur.is_normal:
                return
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
        if self.owners is None:
            self.rescan()
        assert self.owners is not None
        if mode.is_partial:
            if not self.partial_sids:
                raise NotFoundError("partial mode needs a partial SID list")
            for s in self.partial_sids:
                if s not in self.owners:
                    raise NotFoundError(f"unknown data owner {format_sid(s)} in the partial list")
        self.runtime.clear()
        self.mode = ModeInfo(
            mode,
            inc if mode.is_backup or mode.is_restore else BackupIncType.NO_BACKUP,
            tuple(sorted(set(ds))),
            tuple(self.partial_sids or ()) if mode.is_partial else (),
        )
        if mode.is_backup:
            self.launch_owners([o.sid for o in self.owners.values() if self.in_scope(o)])
        await self.publish()
        if self.config.app_close_delay > 0:
            await trio.sleep(self.config.app_close_delay)

    async def _to_normal(self, commit: bool) -> None:
        prev = self.mode
        for sid, rt in list(self.runtime.items()):
            if rt.transfer is not None:
                await self._abort_transfer(sid, rt)
        errors: list[str] = []
        if prev.mode.is_restore:
            for sid, rt in self.runtime.items():
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
            await self._restore_complete(prev)
        self.mode = ModeInfo(BURMode.NORMAL, BackupIncType.NO_BACKUP, ())
        self.owners = None
        self.runtime.clear()
        for s in self.sessions.values():
            if s.status != DataOwnerStatus.FAILED:
                s.status = DataOwnerStatus.NOT_READY
        self.reap()
        await self.publish()
        if errors:
            raise CorruptError("; ".join(errors))

    async def _restore_complete(self, prev: ModeInfo) -> None:
        """RestoreComplete(drive) to every active owner touched by the restore."""
        if self.owners is None:
            return
        for sid, rt in self.runtime.items():
            o = self.owners.get(sid)
            if o is None or not o.registration.active or "restored" not in rt.f("*"):
                continue
            s = self._session(sid)
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
        if not self.mode.mode.is_normal:
            log.warning("backup client gone in mode %s: returning to Normal", self.mode.mode.name)
            try:
                await self.set_bur_mode([], BURMode.NORMAL, BackupIncType.NO_BACKUP, commit=False)
            except EngineError as e:
                log.warning("returning to Normal: %s", e)
        self.partial_sids = None

    # ------------------------------------------------------------ public files
    def public_file_list(self, drive: str, sid: int) -> list[FileEntry]:
        self._require(backup=True)
        o = self.owner(sid)
        d = normalise_drive(drive)
        if d not in self.mode.drives:
            raise ArgumentError(f"drive {d} is not in the backup drive list")
        sels = [(s.include, s.drive, s.path, s.is_dir) for s in o.registration.public_selections]
        out = []
        for p, st in iter_public_files(d, self.config.drive_root(d), sels):
            out.append(FileEntry(str(p), st.st_size, st.st_mtime_ns, st.st_mode & 0o7777))
        return out

    def public_file_list_page(
        self, drive: str, sid: int, cursor: int, max_response_size: int
    ) -> tuple[list[FileEntry], bool, int]:
        entries = self.public_file_list(drive, sid)
        if cursor < 0 or cursor > len(entries):
            raise ArgumentError("bad cursor")
        out: list[FileEntry] = []
        used = 0
        i = cursor
        while i < len(entries):
            sz = entries[i].wire_size()
            if out and used + sz > max_response_size:
                break
            out.append(entries[i])
            used += sz
            i += 1
        return out, i >= len(entries), i

    def raw_public_file_list(self, drive: str, sid: int) -> list[tuple[bool, str]]:
        self._require(backup=True)
        o = self.owner(sid)
        d = normalise_drive(drive)
        if d not in self.mode.drives:
            raise ArgumentError(f"drive {d} is not in the backup drive list")
        root = self.config.drive_root(d)
        out = []
        for s in o.registration.public_selections:
            if s.drive not in (d, "!"):
                continue
            p = str(root / s.path.rstrip("/")) if s.path else str(root)
            out.append((s.include, p + ("/" if s.is_dir else "")))
        return out

    # ------------------------------------------------------------ sizes / snapshots
    async def expected_data_size(self, sid: int, drive: str, ttype: TransferType) -> int:
        self._require(backup=True)
        o = self.owner(sid)
        d = self._check_drive(o, drive)
        if ttype in (TransferType.PASSIVE_BASE, TransferType.PASSIVE_INCREMENTAL):
            recs = await trio.to_thread.run_sync(o.passive_records, self.config, d)
            rt = self.rt(sid)
            if ttype == TransferType.PASSIVE_INCREMENTAL and d in rt.snapshots:
                recs = rt.snapshots[d].changed(recs)
            return sum(3 * BLOCK + r.size + (-r.size) % BLOCK for r in recs)
        if ttype == TransferType.PASSIVE_SNAPSHOT:
            recs = await trio.to_thread.run_sync(o.passive_records, self.config, d)
            return snapshot_size(recs)
        if ttype in (TransferType.ACTIVE_BASE, TransferType.ACTIVE_INCREMENTAL):
            s = self._own_session(o) if o.has_own_active_data else None
            if s is None:
                return 0
            v = await s.call("get_expected_data_size", {"drive": d})
            return v if isinstance(v, int) and v >= 0 else 0
        if ttype == TransferType.ACTIVE_SNAPSHOT:
            return 0
        raise NotSupportedError(f"no size for {ttype.name}")

    async def all_snapshots_supplied(self) -> None:
        """Tell every active owner in scope (not only partial ones: the original's quirk)."""
        self._require(backup=True)
        assert self.owners is not None
        for o in self.owners.values():
            if not self.in_scope(o) or not o.has_own_active_data:
                continue
            s = self._session(o.sid)
            if s is None or s.status != DataOwnerStatus.READY or not s.has_impl:
                continue
            try:
                await s.call("all_snapshots_supplied", {})
            except EngineError as e:
                log.warning("all_snapshots_supplied to %s: %s", format_sid(o.sid), e)
        self.all_snapshots = True

    def all_system_files_restored(self) -> None:
        """Restore mode: rediscover owners and launch the active ones."""
        if not self.mode.mode.is_restore:
            return
        self.rescan()
        assert self.owners is not None
        self.launch_owners([o.sid for o in self.owners.values() if self.in_scope(o)])

    # ------------------------------------------------------------ transfers
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
        self._require(backup=True)
        o = self.owner(sid)
        if not self.in_scope(o):
            raise NotFoundError(f"owner {format_sid(sid)} is not in the partial selection")
        d = self._check_drive(o, drive)
        max_bytes = min(max_bytes or self.config.transfer_size, 4 << 20)
        rt = self.rt(sid)
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
        f = rt.f(d)
        t = Transfer(False, d, ttype)
        if ttype.is_passive:
            if not o.is_passive:
                raise CorruptError(f"owner {format_sid(o.sid)} has no passive data")
            if ttype == TransferType.PASSIVE_SNAPSHOT:
                if "p.snap_req" in f:
                    raise CorruptError("passive snapshot already requested")
                f.add("p.snap_req")
                recs = await trio.to_thread.run_sync(o.passive_records, self.config, d)
                spool = self.spool_dir("snap-") / "passive-snapshot"
                with open(spool, "wb") as fh:
                    write_snapshot(fh, recs)
                t.source = FileSource(spool)
                t.on_done = lambda: shutil.rmtree(spool.parent, ignore_errors=True)
                return t
            if ttype == TransferType.PASSIVE_BASE:
                if f & {"p.snap_sup", "p.base_req", "p.inc_req"}:
                    raise CorruptError(
                        "base data not allowed after a snapshot or a previous request"
                    )
                f.add("p.base_req")
                recs = await trio.to_thread.run_sync(o.passive_records, self.config, d)
            else:
                if not o.supports_passive_incremental:
                    raise CorruptError("owner is base_backup_only")
                if "p.snap_sup" not in f or f & {"p.inc_req", "p.base_req"}:
                    raise CorruptError("incremental data needs a supplied snapshot, once")
                f.add("p.inc_req")
                recs = await trio.to_thread.run_sync(o.passive_records, self.config, d)
                recs = rt.snapshots[d].changed(recs)
            t.source = PassiveSource.for_files(o.private_dir(self.config, d), recs)
            return t
        if ttype.is_active:
            if not o.is_active:
                raise CorruptError(f"owner {format_sid(o.sid)} has no active data")
            if ttype == TransferType.ACTIVE_SNAPSHOT:
                if not o.supports_active_incremental:
                    raise CorruptError("owner does not support incremental backup")
                if "a.snap_req" in f:
                    raise CorruptError("active snapshot already requested")
                own = self._own_session(o)
                f.add("a.snap_req")
                t.source = ActiveDataSource(o.sid, d, own, [], snapshot=True)
                return t
            if ttype == TransferType.ACTIVE_BASE:
                if f & {"a.snap_sup", "a.base_req", "a.inc_req"}:
                    raise CorruptError(
                        "base data not allowed after a snapshot or a previous request"
                    )
                f.add("a.base_req")
            else:
                if "a.snap_sup" not in f or f & {"a.inc_req", "a.base_req"}:
                    raise CorruptError("incremental data needs a supplied snapshot, once")
                f.add("a.inc_req")
            proxies = self._proxies(o)
            own = self._own_session(o)
            t.source = ActiveDataSource(o.sid, d, own, proxies)
            return t
        if ttype in (TransferType.SYSTEM_DATA, TransferType.SYSTEM_SNAPSHOT):
            raise NotSupportedError("system (package) data is not supported on this device")
        raise NotSupportedError(f"transfer type {ttype.name} is not supported")

    async def supply_data(
        self, sid: int, drive: str, ttype: TransferType, data: bytes, finished: bool
    ) -> None:
        """Feed one chunk of a stream; ``finished`` on the last one."""
        self._require(backup=True, restore=True)
        if ttype == TransferType.REGISTRATION:
            raise NotSupportedError("registration data cannot be supplied")
        o = self.owner(sid)
        if not self.in_scope(o):
            raise NotFoundError(f"owner {format_sid(sid)} is not in the partial selection")
        d = self._check_drive(o, drive)
        rt = self.rt(sid)
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
        f = rt.f(d)
        t = Transfer(True, d, ttype)
        backup = self.mode.mode.is_backup
        if ttype in (TransferType.SYSTEM_DATA, TransferType.SYSTEM_SNAPSHOT):
            raise NotSupportedError("system (package) data is not supported on this device")
        if ttype == TransferType.PASSIVE_SNAPSHOT:
            if not o.is_passive or not o.supports_passive_incremental:
                raise CorruptError("owner takes no passive snapshot (not passive or base only)")
            if backup:
                if f & {"p.base_req", "p.inc_req", "p.snap_sup"}:
                    raise CorruptError("snapshot supplied after data was requested")
            elif f & {"p.base_rcv", "p.inc_rcv", "p.snap_rcv"}:
                raise CorruptError("snapshot supplied after restore data")
            spool = self.spool_dir("snapin-") / "snapshot"
            sink = SpoolSink(spool)
            t.sink = sink

            def done() -> None:
                try:
                    snap = load_snapshot_file(spool)
                finally:
                    shutil.rmtree(spool.parent, ignore_errors=True)
                if backup:
                    rt.snapshots[d] = snap
                    f.add("p.snap_sup")
                else:
                    self._stage(o, rt, d).set_snapshot(snap)
                    f.add("p.snap_rcv")

            t.on_done = done
            return t
        if backup and ttype != TransferType.ACTIVE_SNAPSHOT:
            raise AccessDeniedError("only snapshots can be supplied during a backup")
        if ttype in (TransferType.PASSIVE_BASE, TransferType.PASSIVE_INCREMENTAL):
            if not o.is_passive:
                raise CorruptError("owner has no passive data")
            if ttype == TransferType.PASSIVE_BASE:
                if "p.base_rcv" in f:
                    raise CorruptError("base data supplied twice")
                f.add("p.base_rcv")
            else:
                if o.registration.base_backup_only:
                    raise CorruptError("owner is base_backup_only")
                if "p.snap_rcv" not in f or "p.base_rcv" not in f:
                    raise CorruptError("increment supplied without its snapshot and base")
                f.add("p.inc_rcv")
            t.sink = PassiveDataSink(self._stage(o, rt, d))
            return t
        if ttype.is_active:
            if not o.is_active:
                raise CorruptError("owner has no active data")
            if ttype == TransferType.ACTIVE_SNAPSHOT:
                if not o.supports_active_incremental:
                    raise CorruptError("owner does not support incremental backup")
                if backup and f & {"a.base_req", "a.inc_req", "a.snap_sup"}:
                    raise CorruptError("snapshot supplied after data was requested")
                if not backup and f & {"a.base_rcv", "a.inc_rcv", "a.snap_rcv"}:
                    raise CorruptError("snapshot supplied after restore data")
                own = self._own_session(o)
                t.sink = ActiveDataSink(
                    o.sid, d, own, [], False, self.config.section_size, snapshot=True
                )
                t.on_done = lambda: f.add("a.snap_sup" if backup else "a.snap_rcv")
                return t
            if ttype == TransferType.ACTIVE_BASE:
                if "a.base_rcv" in f:
                    raise CorruptError("base data supplied twice")
                f.add("a.base_rcv")
            else:
                if "a.base_rcv" not in f:
                    raise CorruptError("increment supplied before its base")
                f.add("a.inc_rcv")
            proxies = self._proxies(o)
            own = self._own_session(o)
            rt.f("*").add("restored")
            t.sink = ActiveDataSink(
                o.sid,
                d,
                own,
                proxies,
                ttype == TransferType.ACTIVE_INCREMENTAL,
                self.config.section_size,
            )
            return t
        raise NotSupportedError(f"transfer type {ttype.name} is not supported")
