"""What the peer sends: snapshots for Incremental/, archives for Restore/, placeholders.

Every upload is driven the same way by every transport: :meth:`Upload.write`
for each chunk as it arrives, then exactly one of :meth:`Upload.commit` (its
answer is the answer to the peer's transfer) or :meth:`Upload.abort` (the peer
cancelled, or the link was lost).  ``abort`` never raises and leaves nothing
behind.
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import trio

from engine.agefile import AgeError, X25519Identity
from engine.client import EngineClient
from engine.errors import EngineError
from engine.types import RestoreResult

from .encryption import AGE_MAGIC, NoIdentity, RestoreDecoder, refusal
from .errors import ErrorKind, ServerError, kind_of
from .session import LINK_ERRORS
from .tree import INCREMENTAL, RESTORE, Entry, Received

if TYPE_CHECKING:
    from .server import BackupServer


class Upload(abc.ABC):
    """The receiving end of one object the peer sends; ``key`` is where it will appear."""

    key: str

    @abc.abstractmethod
    async def write(self, data: bytes | memoryview) -> None: ...

    @abc.abstractmethod
    async def commit(self) -> Entry: ...

    @abc.abstractmethod
    async def abort(self) -> None: ...


class PlaceholderUpload(Upload):
    """An empty object in Incremental/ or Restore/: kept and listed, does nothing.

    Its name stays free: the content that follows (a new object of the same
    name, with or without a delete before it) replaces it.
    """

    def __init__(self, server: BackupServer, folder: str, name: str) -> None:
        self.server = server
        self.folder = folder
        self.name = name
        self.key = f"{folder}/{name}"

    async def write(self, data: bytes | memoryview) -> None:
        if data:
            raise ServerError(ErrorKind.INCOMPLETE, "more data than the object info announced")

    async def commit(self) -> Entry:
        received = Received(self.folder, self.name, 0, time.time())
        self.server.received[self.folder][self.name] = received
        return received.entry()

    async def abort(self) -> None:
        return None


class SnapshotUpload(Upload):
    """A snapshot (or earlier .mbak) for Incremental/, spooled to a file.

    Committing it prepares the increment against it, so a snapshot the engine
    refuses is refused as the peer's copy, and nothing of it is kept.
    """

    def __init__(self, server: BackupServer, name: str) -> None:
        self.server = server
        self.name = name
        self.key = f"{INCREMENTAL}/{name}"
        self.path = server.spool / f"snapshot-{os.getpid()}-{time.monotonic_ns()}"
        self._f = open(self.path, "wb")
        self._size = 0
        self._head = b""
        """The first bytes, to tell an encrypted archive sent by mistake."""

    async def write(self, data: bytes | memoryview) -> None:
        if len(self._head) < len(AGE_MAGIC):
            self._head += bytes(data[: len(AGE_MAGIC) - len(self._head)])
        await trio.to_thread.run_sync(self._f.write, data)
        self._size += len(data)

    async def commit(self) -> Entry:
        self._f.close()
        if self._size == 0:
            # Of unknown size and empty after all: a placeholder, like an
            # announced empty create (no increment is taken from nothing).
            self.path.unlink(missing_ok=True)
            return await PlaceholderUpload(self.server, INCREMENTAL, self.name).commit()
        if self._head.startswith(AGE_MAGIC):
            self.path.unlink(missing_ok=True)
            raise ServerError(
                ErrorKind.BAD_DATA,
                f"{self.name} is an encrypted archive; an increment is taken against "
                "the backup's .snapshot, which stays plain: send that instead",
            )
        snapshots = self.server.received[INCREMENTAL]
        received = Received(INCREMENTAL, self.name, self._size, time.time(), self.path)
        snapshots[self.name] = received
        # An increment prepared earlier was taken against an older snapshot.
        session = self.server.session
        try:
            await session.release("a new snapshot arrived")
            await self.server.ensure_prepared(INCREMENTAL)
        except BaseException:  # refused, or cut off (unplug): keep nothing of it
            if snapshots.get(self.name) is received:
                del snapshots[self.name]
            self.path.unlink(missing_ok=True)
            raise
        return received.entry()

    async def abort(self) -> None:
        self._f.close()
        self.path.unlink(missing_ok=True)


class RestoreUpload(Upload):
    """Streams the peer's bytes into the engine's restore as they arrive.

    The engine needs no total: it reads the archive to its trailer, so a peer
    that did not announce a size restores the same way.  :meth:`commit`
    answers only when the engine has verified and swapped the data in; an
    abort (or a lost link) cancels the engine's restore, which then leaves
    every owner's data as it was.

    An age-encrypted archive is decrypted on the way (:mod:`.encryption`)
    with ``identities``; one that cannot be opened, or whose bytes do not
    authenticate, makes the engine's restore fail, which changes nothing.
    """

    def __init__(
        self,
        server: BackupServer,
        client: EngineClient,
        name: str,
        identities: Sequence[X25519Identity] = (),
    ) -> None:
        self.server = server
        self.client = client
        self.name = name
        self.key = f"{RESTORE}/{name}"
        self._decoder = RestoreDecoder(identities)
        self._send, self._recv = trio.open_memory_channel[bytes](4)
        self._done = trio.Event()
        self._result: RestoreResult | None = None
        self._error: BaseException | None = None
        self._aborted = False
        self._reported = False
        self._size = 0

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            self._result = await self.client.restore_archive(self._chunks())
        except _PeerAborted:
            pass
        except (AgeError, EngineError, *LINK_ERRORS) as exc:
            # Closed: the session ended (link lost) and took the engine
            # connection with it; the engine then drops everything it staged.
            self._error = exc
        finally:
            # Writers blocked on a refused archive must wake up.
            await self._recv.aclose()
            self._done.set()

    async def _chunks(self) -> AsyncIterator[bytes]:
        """The archive for the engine: the peer's bytes, decrypted if they are age.

        An :class:`AgeError` raised here (like :class:`_PeerAborted`) goes
        through the engine client's upload, which then tells the engine to
        drop everything it staged.
        """
        async for chunk in self._recv:
            for plain in await self._decode(chunk):
                yield plain
        if self._aborted:
            raise _PeerAborted
        for plain in self._decoder.finish():
            yield plain

    async def _decode(self, chunk: bytes) -> list[bytes]:
        if self._decoder.encrypted and len(chunk) >= DECRYPT_IN_THREAD:
            return await trio.to_thread.run_sync(self._decoder.feed, chunk)
        return self._decoder.feed(chunk)

    async def write(self, data: bytes | memoryview) -> None:
        self._size += len(data)
        self.server.touch()
        try:
            await self._send.send(bytes(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The engine stopped reading: it refused the archive already.
            await self._done.wait()
            raise self._failure() from None

    def _failure(self) -> ServerError:
        kind = ErrorKind.FAILED
        if isinstance(self._error, AgeError):
            kind = ErrorKind.DENIED if isinstance(self._error, NoIdentity) else ErrorKind.BAD_DATA
            reason = refusal(self._error)
        elif self._error is not None:
            if isinstance(self._error, EngineError):
                kind = kind_of(self._error.code)
            reason = str(self._error)
        elif self._result is not None:
            kind = kind_of(self._result.code)
            reason = self._result.reason
        else:
            reason = "the restore did not finish"
        self._reported = True
        self.server.status.set(self.name, False, reason)
        return ServerError(kind, reason)

    async def commit(self) -> Entry:
        if self._size == 0:
            # Of unknown size and empty after all: a placeholder, like an
            # announced empty create; the engine's restore is dropped unseen.
            self._aborted = True
            await self._send.aclose()
            await self._done.wait()
            return await PlaceholderUpload(self.server, RESTORE, self.name).commit()
        await self._send.aclose()
        await self._done.wait()
        result = self._result
        if result is None or not result.ok:
            raise self._failure()
        self.server.status.restored(self.name, result)
        received = Received(RESTORE, self.name, self._size, time.time())
        self.server.received[RESTORE][self.name] = received
        return received.entry()

    async def abort(self) -> None:
        self._aborted = True
        await self._send.aclose()
        with trio.CancelScope(shield=True):
            await self._done.wait()
        if not self._reported and (self._result is None or not self._result.ok):
            self.server.status.set(
                self.name, False, "the transfer was interrupted; nothing was changed"
            )


DECRYPT_IN_THREAD = 256 * 1024
"""Bytes from which a piece is decrypted in a worker thread, off the event loop."""


class _PeerAborted(Exception):
    """The peer cancelled the restore's transfer, or the link was lost."""
