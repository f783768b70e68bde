"""The "Backup & Restore" storage: device backup and restore by copying files.

A client of the backup engine (``engine.client``) and nothing else: it never
reads a data owner's files itself.  The storage looks like this::

    Backup/                     listing it prepares a full base backup
      <device>-<stamp>.mbak     the whole backup (pax tar, exact size)
      <device>-<stamp>.snapshot what the next incremental needs
      owners/<name>-<SID>.mbak  one data owner each (partial backups)
    Incremental/                drop a .snapshot (or an older .mbak) here;
      <device>-<stamp>.mbak     the increment against it then appears
      <device>-<stamp>.snapshot
    Restore/                    drop a .mbak here to restore it
      status.txt                what the last restore did, in words

The engine holds the device in backup mode from the moment a backup is
prepared until the host is done: CloseSession, ResetDevice, an unplug and an
idle timeout all bring it back to Normal (``session_closed`` and the idle
watchdog below), so a device is never left stuck in backup mode.

Configured as::

    [providers.backup_restore]
    socket = "/run/backup-engine/engine.sock"
    idle_timeout = 300          # seconds without a read before leaving backup mode
    description = "Backup & Restore"
    space_path = "/"            # free space reported, and checked before a restore
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from engine.client import ArchiveInfo, EngineClient, PreparedBackup
from engine.errors import EngineError, ErrorCode
from mtp_responder.core.codes import AccessCapability, ObjectFormat, ResponseCode, StorageType
from mtp_responder.provider import (
    DataProvider,
    NewObject,
    ObjectEntry,
    ProviderContext,
    ProviderError,
    Storage,
    StorageDescription,
    Upload,
    validate_name,
)

log = logging.getLogger(__name__)

BACKUP = "Backup"
OWNERS = "Backup/owners"
INCREMENTAL = "Incremental"
RESTORE = "Restore"
STATUS = "Restore/status.txt"
FOLDERS = (BACKUP, INCREMENTAL, RESTORE)
#: Keys of the archives in Backup/ and Incremental/ (below their folder).
ARCHIVE_KEYS = ("full", "partial", "snapshot")

ENGINE_TO_MTP: dict[int, ResponseCode] = {
    ErrorCode.DISK_FULL: ResponseCode.STORE_FULL,
    ErrorCode.CORRUPT: ResponseCode.INVALID_DATASET,
    ErrorCode.NOT_FOUND: ResponseCode.INVALID_DATASET,
    ErrorCode.ARGUMENT: ResponseCode.INVALID_DATASET,
    ErrorCode.OVERFLOW: ResponseCode.INVALID_DATASET,
    ErrorCode.UNDERFLOW: ResponseCode.INCOMPLETE_TRANSFER,
    ErrorCode.ACCESS_DENIED: ResponseCode.ACCESS_DENIED,
    ErrorCode.IN_USE: ResponseCode.DEVICE_BUSY,
    ErrorCode.NOT_READY: ResponseCode.DEVICE_BUSY,
}


def mtp_code(engine_code: int) -> ResponseCode:
    """The MTP answer for an engine error code (the engine keeps SBE's numbers)."""
    return ENGINE_TO_MTP.get(engine_code, ResponseCode.GENERAL_ERROR)


def _puid(*parts: str) -> int:
    return int.from_bytes(
        hashlib.blake2b("\0".join(parts).encode(), digest_size=16).digest(), "little"
    )


def _archive_key(folder: str, archive: ArchiveInfo) -> str:
    """Where an archive lives in this storage: the same for every preparation.

    The name carries a timestamp and changes whenever the backup is prepared
    again, but libmtp's tools open one session per command: ``mtp-files``
    prints a handle, the backup is released when that session closes, and
    ``mtp-getfile`` asks for that handle in a new session.  A stable key keeps
    the handle valid; ``stat`` prepares the backup again on demand.
    """
    if archive.kind == "owner" and archive.sid is not None:
        return f"{OWNERS}/{archive.sid:08X}"
    return f"{folder}/{archive.kind}"


@dataclass
class _Options:
    socket: str | None = None
    idle_timeout: float = 300.0
    description: str = "Backup & Restore"
    space_path: str = "/"

    @classmethod
    def parse(cls, name: str, options: dict[str, Any]) -> _Options:
        """Every option's type and range; a ValueError names ``providers.<name>.<key>``."""
        opts = cls()
        for key, value in options.items():
            where = f"providers.{name}.{key}"
            if key == "idle_timeout":
                # A bool is an int to Python; inf would never release backup mode.
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or not 0 < value < float("inf")
                ):
                    raise ValueError(
                        f"{where}: must be a positive number of seconds, not {value!r}"
                    )
                opts.idle_timeout = float(value)
            elif key in ("socket", "description", "space_path"):
                if not isinstance(value, str) or not value or "\x00" in value:
                    raise ValueError(f"{where}: must be a non-empty string without NUL")
                if key == "description" and len(value) > 254:
                    raise ValueError(f"{where}: longer than 254 characters")
                setattr(opts, key, value)
            else:
                known = "description, idle_timeout, socket, space_path"
                raise ValueError(f"{where}: unknown option (known: {known})")
        return opts


@dataclass
class _Prepared:
    """A backup the engine has planned, as this storage shows it."""

    backup: PreparedBackup
    folder: str  # BACKUP or INCREMENTAL
    created: float
    entries: dict[str, tuple[str, int]] = field(default_factory=dict)
    """key -> (engine archive name, exact size)"""


@dataclass
class _Received:
    """An object the host sent into Incremental/ or Restore/."""

    name: str
    size: int
    mtime: float
    path: Path | None = None  # the snapshot's bytes, for Incremental/


class BackupRestoreStorage(Storage):
    def __init__(self, provider: BackupRestoreProvider) -> None:
        self.p = provider

    def describe(self) -> StorageDescription:
        try:
            st = os.statvfs(self.p.opts.space_path)
            capacity, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        except OSError:
            capacity = free = 0
        return StorageDescription(
            description=self.p.opts.description,
            volume_label="backup",
            storage_type=StorageType.FIXED_RAM,
            access=AccessCapability.READ_WRITE,
            max_capacity=capacity,
            free_space=free,
        )

    # -- reading -----------------------------------------------------------------

    async def list(self, folder_key: str) -> Sequence[ObjectEntry]:
        p = self.p
        if folder_key == "":
            return [p.folder_entry(k) for k in FOLDERS]
        if folder_key == BACKUP:
            prepared = await p.ensure_prepared(BACKUP)
            entries = [p.folder_entry(OWNERS)]
            entries += [p.archive_entry(k) for k in prepared.entries if k.count("/") == 1]
            return entries
        if folder_key == OWNERS:
            prepared = await p.ensure_prepared(BACKUP)
            return [p.archive_entry(k) for k in prepared.entries if k.startswith(OWNERS + "/")]
        if folder_key == INCREMENTAL:
            entries = [p.received_entry(INCREMENTAL, r) for r in p.snapshots.values()]
            if p.snapshots:
                prepared = await p.ensure_prepared(INCREMENTAL)
                entries += [p.archive_entry(k) for k in prepared.entries if k.count("/") == 1]
            return entries
        if folder_key == RESTORE:
            return [p.status_entry()] + [p.received_entry(RESTORE, r) for r in p.restored.values()]
        raise ProviderError(ResponseCode.INVALID_OBJECT_HANDLE, f"no folder {folder_key!r}")

    async def stat(self, key: str) -> ObjectEntry:
        p = self.p
        if key in FOLDERS or key == OWNERS:
            return p.folder_entry(key)
        if key == STATUS:
            return p.status_entry()
        if p.prepared is not None and key in p.prepared.entries:
            return p.archive_entry(key)
        shown_in = p.shown_in(key)
        if shown_in is not None and (shown_in == BACKUP or p.snapshots):
            # Released since it was listed (another session, idle): prepare anew.
            if key in (await p.ensure_prepared(shown_in)).entries:
                return p.archive_entry(key)
        folder, _, name = key.partition("/")
        if folder == INCREMENTAL and name in p.snapshots:
            return p.received_entry(INCREMENTAL, p.snapshots[name])
        if folder == RESTORE and name in p.restored:
            return p.received_entry(RESTORE, p.restored[name])
        raise ProviderError(ResponseCode.INVALID_OBJECT_HANDLE, f"{key!r} is gone")

    def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.p.read(key, offset, length)

    # -- writing ------------------------------------------------------------------

    async def create(self, new: NewObject) -> Upload:
        validate_name(new.name)
        if new.parent_key == INCREMENTAL:
            return await self.p.receive_snapshot(new)
        if new.parent_key == RESTORE:
            return await self.p.start_restore(new)
        raise ProviderError(
            ResponseCode.ACCESS_DENIED, "only Incremental/ and Restore/ accept files"
        )

    async def create_folder(self, parent_key: str, name: str) -> ObjectEntry:
        raise ProviderError(ResponseCode.ACCESS_DENIED, "this storage has a fixed layout")

    async def delete(self, key: str) -> None:
        """Deleting what the host sent is allowed (tidying up); the rest is fixed."""
        folder, _, name = key.partition("/")
        if folder == INCREMENTAL and name in self.p.snapshots:
            received = self.p.snapshots.pop(name)
            if received.path is not None:
                received.path.unlink(missing_ok=True)
            await self.p.release("snapshot deleted")
            if not self.p.snapshots:
                self.p.announce(INCREMENTAL, set())
            return
        if folder == RESTORE and name in self.p.restored:
            del self.p.restored[name]
            return
        raise ProviderError(ResponseCode.ACCESS_DENIED, "backups cannot be deleted here")


class BackupRestoreProvider(DataProvider):
    """Owns the engine connection and the prepared backup for one host session."""

    def __init__(self, name: str, options: dict[str, Any], context: ProviderContext) -> None:
        super().__init__(name, options, context)
        self.opts = _Options.parse(name, options)
        self.storage = BackupRestoreStorage(self)
        self.prepared: _Prepared | None = None
        self.snapshots: dict[str, _Received] = {}
        self.restored: dict[str, _Received] = {}
        self.status_text = "No restore has run since the device started.\n"
        self.status_time = time.time()
        self._client: EngineClient | None = None
        self._client_done: trio.Event | None = None
        self._client_closed: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        self._lock = trio.Lock()
        self._last_activity = time.monotonic()
        self._spool = (
            Path(getattr(context, "state_dir", "/var/lib/mtp-responder")) / "backup-restore"
        )
        self._started = time.time()
        self._shown: dict[str, set[str]] = {}
        """archive keys the host has been shown, per folder (Backup/, Incremental/)"""

    def storages(self) -> Sequence[Storage]:
        return [self.storage]

    # -- lifetime --------------------------------------------------------------------

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._idle_watchdog)
            task_status.started()
            await trio.sleep_forever()

    async def session_closed(self) -> None:
        await self.release("session closed")
        await self._disconnect()

    async def _idle_watchdog(self) -> None:
        while True:
            await trio.sleep(min(5.0, self.opts.idle_timeout / 4))
            idle = time.monotonic() - self._last_activity
            if self.prepared is not None and idle > self.opts.idle_timeout:
                await self.release(f"idle for {idle:.0f} s")

    def touch(self) -> None:
        self._last_activity = time.monotonic()

    # -- engine connection ---------------------------------------------------------

    async def client(self) -> EngineClient:
        if self._client is None:
            assert self._nursery is not None, "provider not running"
            await self._previous_closed()
            try:
                self._client = await self._nursery.start(self._hold_connection)
            except (OSError, EngineError) as exc:
                raise ProviderError(
                    ResponseCode.STORE_NOT_AVAILABLE, f"backup engine unreachable: {exc}"
                ) from exc
        return self._client

    async def _previous_closed(self) -> None:
        """Wait until the last engine connection has really closed.

        The engine takes one backup client at a time, and a host may open its
        next session the moment the last one closed: the new connection must not
        find the old one still closing.  (Waiting here rather than in
        ``_disconnect`` keeps ``session_closed`` quick on an unplug.)
        """
        closed = self._client_closed
        if closed is not None:
            with trio.move_on_after(10):
                await closed.wait()

    async def _hold_connection(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        done = trio.Event()
        closed = trio.Event()
        self._client_closed = closed
        try:
            async with EngineClient.connect(self.opts.socket, role="client") as client:
                self._client_done = done
                task_status.started(client)
                await done.wait()
        except (OSError, EngineError, trio.BrokenResourceError) as exc:
            log.warning("backup engine connection ended: %s", exc)
        finally:
            if self._client_done is done:
                self._client = None
                self._client_done = None
            if self.prepared is not None:
                self._forget_prepared("engine connection lost")
            closed.set()

    async def _disconnect(self) -> None:
        """Close the engine connection; the next ``client()`` waits until it is closed."""
        done = self._client_done
        self._client = None
        self._client_done = None
        if done is not None:
            done.set()

    async def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        client = await self.client()
        try:
            return await fn(client, *args, **kwargs)
        except EngineError as exc:
            raise ProviderError(mtp_code(exc.code), f"{what}: {exc.message}") from exc
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            await self._disconnect()
            raise ProviderError(ResponseCode.STORE_NOT_AVAILABLE, f"{what}: {exc}") from exc

    # -- preparing backups -----------------------------------------------------------

    async def ensure_prepared(self, folder: str) -> _Prepared:
        async with self._lock:
            self.touch()
            if self.prepared is not None and self.prepared.folder == folder:
                return self.prepared
            await self._release_locked("another backup was asked for")
            previous: Path | None = None
            if folder == INCREMENTAL:
                previous = max(self.snapshots.values(), key=lambda r: r.mtime).path
            log.info("preparing a %s backup", "base" if previous is None else "incremental")
            if previous is None:
                backup = await self._call("prepare", EngineClient.prepare_backup)
            else:
                backup = await self._call(
                    "prepare", EngineClient.prepare_backup, previous=_file_chunks(previous)
                )
            prepared = _Prepared(backup, folder, time.time())
            for archive in backup.archives:
                if folder == INCREMENTAL and archive.kind == "owner":
                    continue  # per-owner increments would only clutter the folder
                prepared.entries[_archive_key(folder, archive)] = (archive.name, archive.size)
            for name, reason in ((f"{s:08X}", r) for s, r in backup.skipped):
                log.warning("data owner %s left out of the backup: %s", name, reason)
            self.prepared = prepared
            self.announce(folder, set(prepared.entries))
            log.info(
                "backup prepared: %s",
                ", ".join(f"{k} ({s} bytes)" for k, (_, s) in prepared.entries.items()),
            )
            return prepared

    def shown_in(self, key: str) -> str | None:
        """The folder whose archive ``key`` is, if the host has seen it listed."""
        for folder, keys in self._shown.items():
            if key in keys:
                return folder
        return None

    def announce(self, folder: str, keys: set[str]) -> None:
        """Events for what a preparation changed in ``folder``'s listing.

        Releasing a backup removes nothing: its objects stay listed (and keep
        their handles) because reading them prepares the backup again.  A new
        preparation changes their names, sizes and times, and may add or drop
        owners.
        """
        shown = self._shown.get(folder, set())
        for key in sorted(shown - keys):
            self.context.object_removed(self.storage, key)
        for key in sorted(keys - shown):
            self.context.object_added(self.storage, key)
        for key in sorted(keys & shown):
            self.context.object_changed(self.storage, key)
        self._shown[folder] = keys

    async def release(self, why: str) -> None:
        async with self._lock:
            await self._release_locked(why)

    async def _release_locked(self, why: str) -> None:
        if self.prepared is None:
            return
        log.info("leaving backup mode: %s", why)
        self._forget_prepared(why)
        client = self._client
        if client is not None:
            with trio.move_on_after(10) as scope:
                scope.shield = True
                try:
                    await client.set_normal()
                except (EngineError, OSError, trio.BrokenResourceError) as exc:
                    log.warning("could not set Normal mode (%s); closing the connection", exc)
                    await self._disconnect()

    def _forget_prepared(self, why: str) -> None:
        self.prepared = None

    async def read(self, key: str, offset: int, length: int | None) -> AsyncIterator[bytes]:
        if key == STATUS:
            data = self.status_text.encode()
            end = len(data) if length is None else offset + length
            yield data[offset:end]
            return
        folder, _, name = key.partition("/")
        if folder == RESTORE and name in self.restored and self.restored[name].size == 0:
            # What a FUSE client reads back before it writes the content.
            return
        prepared = self.prepared
        if prepared is None or key not in prepared.entries:
            raise ProviderError(ResponseCode.ACCESS_DENIED, f"{key!r} cannot be read back")
        name, _size = prepared.entries[key]
        client = await self.client()
        stream = client.read_archive(name, offset, -1 if length is None else length)
        try:
            async for chunk in stream:
                self.touch()
                yield chunk
        except EngineError as exc:
            raise ProviderError(mtp_code(exc.code), exc.message) from exc
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            if stream.changed:
                log.warning("%s: %d stream(s) changed while read", key, len(stream.changed))

    # -- receiving ---------------------------------------------------------------------

    async def receive_snapshot(self, new: NewObject) -> Upload:
        if new.name in ARCHIVE_KEYS:
            raise ProviderError(ResponseCode.INVALID_PARAMETER, f"{new.name!r} is reserved")
        if new.name in self.snapshots:
            raise ProviderError(ResponseCode.INVALID_PARAMETER, f"{new.name!r} exists")
        self._spool.mkdir(parents=True, exist_ok=True)
        return _SnapshotUpload(self, new)

    async def start_restore(self, new: NewObject) -> Upload:
        if new.size == 0:
            # FUSE clients (jmtpfs) create a file empty, then send its content as a
            # new object of the same name: an empty object is a placeholder.
            return _EmptyUpload(self, new)
        free = self.storage.describe().free_space
        if new.size > 0 and free and new.size > free:
            self.set_status(
                new.name,
                False,
                f"refused before any data was read: the archive is {new.size} bytes, "
                f"{free} bytes are free",
            )
            raise ProviderError(ResponseCode.STORE_FULL, "archive larger than the free space")
        await self.release("a restore begins")
        client = await self.client()
        assert self._nursery is not None
        upload = _RestoreUpload(self, client, new)
        await self._nursery.start(upload.run)
        return upload

    def set_status(self, name: str, ok: bool, detail: str) -> None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        verdict = "RESTORED" if ok else "REFUSED"
        self.status_text = f"{when} {name}: {verdict}\n{detail.rstrip()}\n"
        self.status_time = time.time()
        self.context.object_changed(self.storage, STATUS)

    # -- entries -------------------------------------------------------------------------

    def folder_entry(self, key: str) -> ObjectEntry:
        return ObjectEntry(
            key=key,
            name=key.rpartition("/")[2],
            is_folder=True,
            format=ObjectFormat.ASSOCIATION,
            mtime=self._started,
            ctime=self._started,
            puid=_puid("folder", key),
            read_only=key in (BACKUP, OWNERS),
        )

    def archive_entry(self, key: str) -> ObjectEntry:
        assert self.prepared is not None
        name, size = self.prepared.entries[key]
        return ObjectEntry(
            key=key,
            name=name.rpartition("/")[2],
            is_folder=False,
            size=size,
            format=ObjectFormat.UNDEFINED,
            mtime=self.prepared.created,
            ctime=self.prepared.created,
            puid=_puid("archive", self.prepared.backup.backup_id, key),
            read_only=True,
        )

    def received_entry(self, folder: str, received: _Received) -> ObjectEntry:
        return ObjectEntry(
            key=f"{folder}/{received.name}",
            name=received.name,
            is_folder=False,
            size=received.size,
            mtime=received.mtime,
            ctime=received.mtime,
            puid=_puid("received", folder, received.name, str(received.mtime)),
        )

    def status_entry(self) -> ObjectEntry:
        return ObjectEntry(
            key=STATUS,
            name="status.txt",
            is_folder=False,
            size=len(self.status_text.encode()),
            format=ObjectFormat.TEXT,
            mtime=self.status_time,
            ctime=self.status_time,
            puid=_puid("status"),
            read_only=True,
        )


async def _file_chunks(path: Path, size: int = 1 << 20) -> AsyncIterator[bytes]:
    f = await trio.open_file(path, "rb")
    async with f:
        while chunk := await f.read(size):
            yield chunk


class _SnapshotUpload(Upload):
    """A snapshot (or earlier .mbak) for Incremental/, spooled to a file."""

    def __init__(self, provider: BackupRestoreProvider, new: NewObject) -> None:
        self.p = provider
        self.new = new
        self.key = f"{INCREMENTAL}/{new.name}"
        self.path = provider._spool / f"snapshot-{os.getpid()}-{time.monotonic_ns()}"
        self._f = open(self.path, "wb")
        self._size = 0

    async def write(self, data: bytes | memoryview) -> None:
        await trio.to_thread.run_sync(self._f.write, data)
        self._size += len(data)

    async def commit(self) -> ObjectEntry:
        self._f.close()
        received = _Received(self.new.name, self._size, time.time(), self.path)
        self.p.snapshots[self.new.name] = received
        # An increment prepared earlier was taken against an older snapshot.
        await self.p.release("a new snapshot arrived")
        try:
            await self.p.ensure_prepared(INCREMENTAL)
        except ProviderError:
            del self.p.snapshots[self.new.name]
            self.path.unlink(missing_ok=True)
            raise
        return self.p.received_entry(INCREMENTAL, received)

    async def abort(self) -> None:
        self._f.close()
        self.path.unlink(missing_ok=True)


class _EmptyUpload(Upload):
    """An empty object in Restore/: kept and listed, restores nothing.

    Its name stays free: the content that follows (a new object of the same
    name, with or without a DeleteObject before it) replaces it.
    """

    def __init__(self, provider: BackupRestoreProvider, new: NewObject) -> None:
        self.p = provider
        self.new = new
        self.key = f"{RESTORE}/{new.name}"

    async def write(self, data: bytes | memoryview) -> None:
        if data:
            raise ProviderError(
                ResponseCode.INCOMPLETE_TRANSFER, "more data than the object info announced"
            )

    async def commit(self) -> ObjectEntry:
        received = _Received(self.new.name, 0, time.time())
        self.p.restored[self.new.name] = received
        return self.p.received_entry(RESTORE, received)

    async def abort(self) -> None:
        return None


class _RestoreUpload(Upload):
    """Streams the host's bytes into the engine's restore as they arrive.

    SendObject is answered only when the engine has verified and swapped the
    data in (``commit``); an abort cancels the engine's restore, which then
    leaves every owner's data as it was.
    """

    def __init__(
        self, provider: BackupRestoreProvider, client: EngineClient, new: NewObject
    ) -> None:
        self.p = provider
        self.client = client
        self.new = new
        self.key = f"{RESTORE}/{new.name}"
        self._send, self._recv = trio.open_memory_channel[bytes](4)
        self._done = trio.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._aborted = False
        self._reported = False
        self._size = 0

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            self._result = await self.client.restore_archive(self._chunks())
        except _HostAborted:
            pass
        except (EngineError, OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            # Closed: the session ended (unplug) and took the engine connection
            # with it; the engine then drops everything it staged.
            self._error = exc
        finally:
            # Writers blocked on a refused archive must wake up.
            await self._recv.aclose()
            self._done.set()

    async def _chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._recv:
            yield chunk
        if self._aborted:
            # Raised inside the engine client's upload, which then tells the
            # engine to drop everything it staged.
            raise _HostAborted

    async def write(self, data: bytes | memoryview) -> None:
        self._size += len(data)
        self.p.touch()
        try:
            await self._send.send(bytes(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The engine stopped reading: it refused the archive already.
            await self._done.wait()
            raise self._failure() from None

    def _failure(self) -> ProviderError:
        if self._error is not None:
            code = (
                mtp_code(self._error.code)
                if isinstance(self._error, EngineError)
                else ResponseCode.GENERAL_ERROR
            )
            reason = str(self._error)
        else:
            result = self._result
            code = mtp_code(result.code) if result is not None else ResponseCode.GENERAL_ERROR
            reason = result.reason if result is not None else "the restore did not finish"
        self._reported = True
        self.p.set_status(self.new.name, False, reason)
        return ProviderError(code, reason)

    async def commit(self) -> ObjectEntry:
        await self._send.aclose()
        await self._done.wait()
        result = self._result
        if result is None or not result.ok:
            raise self._failure()
        lines = [f"{len(result.owners)} data owner(s):"] + [
            f"  {o.sid:08X}: {'ok' if o.code == 0 else f'error {o.code}'} {o.reason}"
            for o in result.owners
        ]
        self.p.set_status(self.new.name, True, "\n".join(lines))
        received = _Received(self.new.name, self._size, time.time())
        self.p.restored[self.new.name] = received
        return self.p.received_entry(RESTORE, received)

    async def abort(self) -> None:
        self._aborted = True
        await self._send.aclose()
        with trio.CancelScope(shield=True):
            await self._done.wait()
        if not self._reported and (self._result is None or not self._result.ok):
            self.p.set_status(
                self.new.name, False, "the transfer was interrupted; nothing was changed"
            )


class _HostAborted(Exception):
    """The host cancelled the restore's data phase, or the cable was pulled."""
