"""The backup server's tree, driven by any transport.

A transport (the MTP data provider, an OBEX server) maps its operations onto
these calls and the toolkit's :class:`~.errors.ErrorKind` onto its own codes:

* :meth:`BackupServer.list` (a folder's entries; listing Backup/ prepares a
  backup), :meth:`BackupServer.stat`, :meth:`BackupServer.find` (a shown
  name to its entry),
* :meth:`BackupServer.open_read` (bytes from any offset),
* :meth:`BackupServer.create` (an :class:`~.uploads.Upload`; the size may be
  unknown), :meth:`BackupServer.delete`,
* :meth:`BackupServer.session_closed`, :meth:`BackupServer.link_lost` and
  :meth:`BackupServer.touch` for the engine's backup mode,
* a :class:`Listener` told which keys were added, removed or changed.

With ``resume_window`` set, a peer gone in the middle of a download finds the
same archives (names, sizes, bytes) when it comes back within that many
seconds, and reads the rest from where it stopped (:mod:`.resume`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import trio

from engine.agefile import AgeError, EncryptedView, X25519Identity, X25519Recipient
from engine.client import EngineClient
from engine.errors import EngineError

from .encryption import AGE_SUFFIX, NO_IDENTITY, read_pieces
from .errors import ErrorKind, ServerError, kind_of
from .resume import RESUME_PIECE, ReadLog, held_line
from .session import LINK_ERRORS, EngineSession
from .status import RestoreStatus
from .tree import (
    ARCHIVE_KEYS,
    BACKUP,
    FOLDERS,
    INCREMENTAL,
    OWNERS,
    RESTORE,
    ROOT,
    STATUS,
    Entry,
    Prepared,
    Received,
    folder_entry,
    split,
)
from .uploads import PlaceholderUpload, RestoreUpload, SnapshotUpload, Upload

log = logging.getLogger("engine.serverkit")


class Listener(Protocol):
    """Told when the tree changes, so the transport can tell its peer."""

    def added(self, key: str) -> None: ...

    def removed(self, key: str) -> None: ...

    def changed(self, key: str) -> None: ...


@dataclass
class ServerConfig:
    spool_dir: Path
    """Where snapshots sent into Incremental/ are kept while they are used."""
    socket: str | Path | None = None
    """The engine's socket; ``None``: ``$BACKUP_ENGINE_SOCKET`` or the default."""
    idle_timeout: float = 300.0
    """Seconds without a read or write before the engine goes back to Normal."""
    space_path: str = "/"
    """The filesystem whose free space is checked before a restore of known size."""
    recipients: Sequence[X25519Recipient] = ()
    """age recipients: when given, archives are served as ``.mbak.age`` encrypted to them."""
    identities: Sequence[X25519Identity] = field(default=(), repr=False)
    """age identities that open an encrypted archive sent into Restore/ (none: refused)."""
    resume_window: float = 0.0
    """Seconds a backup stays prepared after its peer left in the middle of a download.

    The peer's next session then reads the same archives from where it
    stopped.  0: the end of a session releases the backup at once.
    """


class BackupServer:
    """One backup server's tree and engine session; one peer at a time."""

    def __init__(self, config: ServerConfig, listener: Listener) -> None:
        self.config = config
        self.listener = listener
        self.spool = config.spool_dir
        self.session = EngineSession(
            config.socket,
            config.idle_timeout,
            self._announce,
            recipients=config.recipients,
            on_hold_end=self._hold_ended,
        )
        self.status = RestoreStatus(listener.changed)
        self.reads = ReadLog()
        """Which preparation each archive key was read from, and how far."""
        self.received: dict[str, dict[str, Received]] = {INCREMENTAL: {}, RESTORE: {}}
        self.started = time.time()
        self._shown: dict[str, set[str]] = {}
        """archive keys the peer has been shown, per folder (Backup/, Incremental/)"""

    # -- lifetime --------------------------------------------------------------------

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled (start it in the transport's nursery)."""
        await self.session.run(task_status=task_status)

    async def session_closed(self) -> None:
        """The peer ended its session: the engine goes back to Normal.

        Unless a download is unfinished and ``resume_window`` is set: then
        the backup is held for that long (:meth:`held`).
        """
        await self._peer_gone("session closed")

    async def link_lost(self) -> None:
        """The link went down (unplug, dropped connection): back to Normal as well.

        A restore in flight loses its engine connection with it, so the engine
        drops everything it staged; the transport still aborts the upload.
        A download in flight may hold the backup, as for :meth:`session_closed`.
        """
        await self._peer_gone("link lost")

    def touch(self) -> None:
        """The peer is still busy with us (the idle timeout starts again)."""
        self.session.touch()

    async def _peer_gone(self, why: str) -> None:
        if self.session.held_until is not None:
            # Sessions opened and closed without touching the backup (a desktop
            # polling the device) must not push the deadline back.
            return
        prepared = self.session.prepared
        window = self.config.resume_window
        unfinished = self.reads.unfinished(prepared) if prepared is not None else []
        if prepared is None or window <= 0 or not unfinished:
            await self.session.close(why)
            return
        names = [prepared.entry(k).name for k in unfinished]
        self.session.hold(window)
        until = self.session.held_until
        assert until is not None
        log.info("%s in the middle of %s: held for resuming for %g s", why, names, window)
        self.status.set_held(held_line(names, until))

    def _peer_back(self) -> None:
        """The peer lists or reads the backup again: the hold ends, the backup is in use.

        Reading ``status.txt`` or listing the root does not: a person may look
        at why the device is still in backup mode without changing it.
        """
        if self.session.held_until is not None:
            self.session.end_hold()
            self.session.touch()  # the idle timeout counts from now, not from before the hold

    def _hold_ended(self) -> None:
        self.status.set_held("")

    @property
    def held(self) -> float | None:
        """When the backup held for a resuming peer is released; ``None``: not held."""
        return self.session.held_until

    def space(self) -> tuple[int, int]:
        """``(capacity, free)`` bytes of ``space_path``; zeros when it cannot be read."""
        try:
            st = os.statvfs(self.config.space_path)
        except OSError:
            return 0, 0
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

    # -- the tree ----------------------------------------------------------------------

    @property
    def snapshots(self) -> dict[str, Received]:
        """What the peer sent into Incremental/ that an increment can be taken against."""
        return {n: r for n, r in self.received[INCREMENTAL].items() if not r.placeholder}

    async def ensure_prepared(self, folder: str) -> Prepared:
        previous = None
        if folder == INCREMENTAL:
            snapshots = self.snapshots
            if not snapshots:
                raise ServerError(ErrorKind.NOT_FOUND, "no snapshot in Incremental/")
            previous = max(snapshots.values(), key=lambda r: r.mtime).path
        return await self.session.ensure_prepared(folder, previous)

    async def list(self, folder: str) -> list[Entry]:
        """A folder's entries in a stable order; listing Backup/ prepares the backup."""
        if folder in (BACKUP, OWNERS, INCREMENTAL):
            self._peer_back()
        if folder == ROOT:
            return [folder_entry(k, self.started) for k in FOLDERS]
        if folder == BACKUP:
            prepared = await self.ensure_prepared(BACKUP)
            entries = [folder_entry(OWNERS, self.started)]
            entries += [prepared.entry(k) for k in prepared.entries if k.count("/") == 1]
            return entries
        if folder == OWNERS:
            prepared = await self.ensure_prepared(BACKUP)
            return [prepared.entry(k) for k in prepared.entries if k.startswith(OWNERS + "/")]
        if folder == INCREMENTAL:
            entries = [r.entry() for r in self.received[INCREMENTAL].values()]
            if self.snapshots:
                prepared = await self.ensure_prepared(INCREMENTAL)
                entries += [prepared.entry(k) for k in prepared.entries if k.count("/") == 1]
            return entries
        if folder == RESTORE:
            return [self.status.entry()] + [r.entry() for r in self.received[RESTORE].values()]
        raise ServerError(ErrorKind.NOT_FOUND, f"no folder {folder!r}")

    async def stat(self, key: str) -> Entry:
        """One entry; an archive listed earlier is prepared again if it was released."""
        if key in FOLDERS or key == OWNERS:
            return folder_entry(key, self.started)
        if key == STATUS:
            return self.status.entry()
        self._peer_back()
        prepared = self.session.prepared
        if prepared is not None and key in prepared.entries:
            return prepared.entry(key)
        shown_in = self._shown_in(key)
        if shown_in is not None and (shown_in == BACKUP or self.snapshots):
            # Released since it was listed (another session, idle): prepare anew.
            prepared = await self.ensure_prepared(shown_in)
            if key in prepared.entries:
                return prepared.entry(key)
        folder, name = split(key)
        if folder in self.received and name in self.received[folder]:
            return self.received[folder][name].entry()
        raise ServerError(ErrorKind.NOT_FOUND, f"{key!r} is gone")

    async def find(self, folder: str, name: str) -> Entry:
        """The entry shown as ``name`` in ``folder`` (for transports that address by name)."""
        for entry in await self.list(folder):
            if entry.name == name:
                return entry
        raise ServerError(ErrorKind.NOT_FOUND, f"no {name!r} in {folder or '/'!r}")

    def _shown_in(self, key: str) -> str | None:
        """The folder whose archive ``key`` is, if the peer has seen it listed."""
        for folder, keys in self._shown.items():
            if key in keys:
                return folder
        return None

    def _announce(self, folder: str, keys: set[str]) -> None:
        """Tell the listener what a preparation changed in ``folder``'s listing.

        Releasing a backup removes nothing: its archives stay listed (and keep
        their keys) because reading them prepares the backup again.  A new
        preparation changes their names, sizes and times, and may add or drop
        owners.
        """
        shown = self._shown.get(folder, set())
        for key in sorted(shown - keys):
            self.listener.removed(key)
        for key in sorted(keys - shown):
            self.listener.added(key)
        for key in sorted(keys & shown):
            self.listener.changed(key)
        self._shown[folder] = keys

    # -- reading ---------------------------------------------------------------------

    async def open_read(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """``length`` bytes (all when ``None``) from ``offset``, in bounded chunks.

        Archives are read from the prepared backup, prepared again if it was
        released since the peer saw it listed (a new session, an idle timeout).
        A read from above offset 0 that continues an archive of a preparation
        that is gone is refused (:class:`~.resume.ReadLog`): its bytes would
        not be the rest of what the peer has.
        """
        if key == STATUS:
            yield self.status.read(offset, length)
            return
        self._peer_back()
        folder, name = split(key)
        received = self.received.get(folder, {}).get(name)
        if received is not None and received.placeholder:
            # What a FUSE client reads back before it writes the content.
            return
        prepared = self.session.prepared
        if (prepared is None or key not in prepared.entries) and self._shown_in(key):
            await self.stat(key)  # released since it was listed: prepare anew
            prepared = self.session.prepared
        if prepared is None or key not in prepared.entries:
            raise ServerError(ErrorKind.DENIED, f"{key!r} cannot be read back")
        self.reads.check(key, prepared, offset)
        client = await self.session.client()
        view = prepared.views.get(key)
        if view is not None:
            reader = self._read_encrypted(client, key, prepared, view, offset, length)
        else:
            reader = self._read_plain(client, key, prepared, offset, length)
        backup_id = prepared.backup.backup_id
        at = offset
        try:
            async for chunk in reader:
                yield chunk
                at += len(chunk)
                self.reads.advance(key, backup_id, at)
        finally:
            await reader.aclose()

    async def _read_plain(
        self, client: EngineClient, key: str, prepared: Prepared, offset: int, length: int | None
    ) -> AsyncGenerator[bytes, None]:
        """The engine's archive bytes as they are, with its errors as :class:`ServerError`."""
        archive, size = prepared.entries[key]
        if prepared.resumed:
            reader = self._read_checked(client, key, prepared, offset, length, size)
            try:
                async for chunk in reader:
                    yield chunk
            finally:
                await reader.aclose()
            return
        stream = client.read_archive(archive, offset, -1 if length is None else length)
        try:
            async for chunk in stream:
                self.touch()
                yield chunk
        except EngineError as exc:
            raise ServerError(kind_of(exc.code), exc.message) from exc
        except LINK_ERRORS as exc:
            raise ServerError(ErrorKind.FAILED, f"the engine connection broke: {exc}") from exc
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await stream.aclose()
                except (EngineError, *LINK_ERRORS) as exc:
                    log.debug("%s: closing the read: %s", key, exc)
            if stream.changed:
                log.warning("%s: %d stream(s) changed while read", key, len(stream.changed))

    async def _read_checked(
        self,
        client: EngineClient,
        key: str,
        prepared: Prepared,
        offset: int,
        length: int | None,
        size: int,
    ) -> AsyncGenerator[bytes, None]:
        """A resumed archive's bytes, passed on only once the engine says none changed.

        The first part of the download left before the peer's link went down;
        what follows must be the same archive's.  The engine reopens every
        planned file it reaches and flags one whose size or modification time
        differs from the plan (or that vanished); each piece is held back
        until the engine's answer at its end, so a flagged piece fails the
        read instead of being sent, the backup is released, and the next
        listing prepares a fresh one under a new name.
        """
        archive = prepared.entries[key][0]
        end = size if length is None else min(size, offset + length)
        at = offset
        while at < end:
            want = min(RESUME_PIECE, end - at)
            piece = bytearray()
            stream = client.read_archive(archive, at, want)
            try:
                async for chunk in stream:
                    piece += chunk
            except EngineError as exc:
                raise ServerError(kind_of(exc.code), exc.message) from exc
            except LINK_ERRORS as exc:
                raise ServerError(ErrorKind.FAILED, f"the engine connection broke: {exc}") from exc
            finally:
                with trio.CancelScope(shield=True):
                    try:
                        await stream.aclose()
                    except (EngineError, *LINK_ERRORS) as exc:
                        log.debug("%s: closing the read: %s", key, exc)
            if stream.changed:
                name = prepared.entry(key).name
                reason = (
                    f"{name} cannot be resumed: data it holds changed on the device since "
                    f"it was prepared ({len(stream.changed)} stream(s)); list the folder "
                    "again for a fresh backup"
                )
                log.warning("%s: %s", key, reason)
                if self.session.prepared is prepared:
                    await self.session.release("the held backup's data changed")
                raise ServerError(ErrorKind.FAILED, reason)
            if not piece:
                return
            self.touch()
            yield bytes(piece)
            at += len(piece)

    async def _read_encrypted(
        self,
        client: EngineClient,
        key: str,
        prepared: Prepared,
        view: EncryptedView,
        offset: int,
        length: int | None,
    ) -> AsyncGenerator[bytes, None]:
        """Bytes of the ``.age`` file served for ``archive``, sealed piece by piece.

        One sequential read of the plaintext the whole request needs; each
        piece ends on a sealed chunk's end, so its plaintext is what follows
        the previous piece's and nothing is read twice.
        """
        if offset >= view.size or length == 0:
            return
        plain_offset, plain_length = view.plain_span(
            offset, view.size if length is None else length
        )
        source = self._read_plain(client, key, prepared, plain_offset, plain_length)
        buf = bytearray()
        try:
            for at, n in read_pieces(view, offset, length):
                _, need = view.plain_span(at, n)
                while len(buf) < need:
                    chunk = await anext(source, None)
                    if chunk is None:
                        break
                    buf += chunk
                plain, buf = bytes(buf[:need]), buf[need:]
                try:
                    sealed = view.seal(at, n, plain)
                except AgeError as exc:
                    raise ServerError(ErrorKind.FAILED, f"{key!r}: {exc.message}") from exc
                yield sealed
        finally:
            await source.aclose()

    # -- writing ---------------------------------------------------------------------

    async def create(self, key: str, size: int | None) -> Upload:
        """Start receiving ``key`` (``Incremental/<name>`` or ``Restore/<name>``).

        ``size`` is the announced size, ``None`` when the peer did not say.
        Size 0 is a placeholder.  An unknown size is streamed all the same
        (neither the snapshot spool nor the engine's restore needs a total);
        only the up-front free-space check needs a known size.  Errors raised
        here come before any data: refuse the transfer with them.
        """
        folder, name = split(key)
        if folder not in (INCREMENTAL, RESTORE) or not name or "/" in name:
            raise ServerError(ErrorKind.DENIED, "only Incremental/ and Restore/ accept files")
        if name in (".", "..") or "\x00" in name:
            raise ServerError(ErrorKind.BAD_NAME, f"{name!r} is not a file name")
        if folder == INCREMENTAL:
            return await self._receive_snapshot(name, size)
        return await self._start_restore(name, size)

    async def _receive_snapshot(self, name: str, size: int | None) -> Upload:
        if name in ARCHIVE_KEYS:
            raise ServerError(ErrorKind.BAD_NAME, f"{name!r} is reserved")
        if name in self.snapshots:
            raise ServerError(ErrorKind.BAD_NAME, f"{name!r} exists")
        if size == 0:
            # FUSE clients create a file empty, then send its content as a new
            # object of the same name: no increment can be taken from nothing.
            return PlaceholderUpload(self, INCREMENTAL, name)
        self.spool.mkdir(parents=True, exist_ok=True)
        return SnapshotUpload(self, name)

    async def _start_restore(self, name: str, size: int | None) -> Upload:
        if size == 0:
            return PlaceholderUpload(self, RESTORE, name)
        if name.endswith(AGE_SUFFIX) and not self.config.identities:
            reason = f"{NO_IDENTITY}; nothing was changed"
            self.status.set(name, False, reason)
            raise ServerError(ErrorKind.DENIED, reason)
        _capacity, free = self.space()
        if size is not None and size > 0 and free and size > free:
            self.status.set(
                name,
                False,
                f"refused before any data was read: the archive is {size} bytes, "
                f"{free} bytes are free",
            )
            raise ServerError(ErrorKind.NO_SPACE, "archive larger than the free space")
        await self.session.release("a restore begins")
        client = await self.session.client()
        upload = RestoreUpload(self, client, name, self.config.identities)
        await self.session.nursery.start(upload.run)
        return upload

    async def delete(self, key: str) -> None:
        """Deleting what the peer sent is allowed (tidying up); the rest is fixed."""
        folder, name = split(key)
        received = self.received.get(folder, {}).pop(name, None)
        if received is None:
            raise ServerError(ErrorKind.DENIED, "backups cannot be deleted here")
        if received.path is not None:
            received.path.unlink(missing_ok=True)
            await self.session.release("snapshot deleted")
            if not self.snapshots:
                self._announce(INCREMENTAL, set())
