"""The engine connection and the backup mode it holds, for one peer at a time.

The engine keeps the device in backup mode from the moment a backup is
prepared until the server releases it or disconnects.  A peer that goes away
must never leave the device there: the end of its session, a lost link and an
idle timeout all bring the engine back to Normal (:meth:`EngineSession.close`,
:meth:`EngineSession.release`, the idle watchdog).  The one exception is
bounded: a peer gone in the middle of a download may have the backup held
for ``resume_window`` seconds (:meth:`EngineSession.hold`), the engine
connection kept open so the engine keeps the very same archives, and then
released all the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import trio

from engine.agefile import X25519Recipient
from engine.client import EngineClient
from engine.errors import EngineError

from .encryption import new_view
from .errors import ErrorKind, ServerError, kind_of
from .tree import INCREMENTAL, Prepared, archive_key

log = logging.getLogger("engine.serverkit")

T = TypeVar("T")
#: Errors that mean the engine connection itself is gone.
LINK_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


class EngineSession:
    """Owns the engine connection, the prepared backup and the idle watchdog.

    ``on_prepared(folder, keys)`` is called after each preparation with the
    keys of the archives it shows in ``folder`` (for change notifications).
    With ``recipients``, every archive but the snapshot is served encrypted
    to them (:mod:`.encryption`).
    """

    def __init__(
        self,
        socket: str | Path | None,
        idle_timeout: float,
        on_prepared: Callable[[str, set[str]], None],
        recipients: Sequence[X25519Recipient] = (),
        on_hold_end: Callable[[], None] | None = None,
    ) -> None:
        self.socket = socket
        self.recipients = list(recipients)
        self.idle_timeout = idle_timeout
        self.prepared: Prepared | None = None
        self._on_prepared = on_prepared
        self._client: EngineClient | None = None
        self._client_done: trio.Event | None = None
        self._client_closed: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        self._lock = trio.Lock()
        self._last_activity = time.monotonic()
        self.held_until: float | None = None
        """Wall-clock time a held backup is released at; ``None`` when not held."""
        self._hold_scope: trio.CancelScope | None = None
        self._on_hold_end = on_hold_end
        self._last_created = 0.0

    # -- lifetime --------------------------------------------------------------------

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the nursery the connection and restores live in; runs until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._idle_watchdog)
            task_status.started()
            await trio.sleep_forever()

    @property
    def nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise ServerError(ErrorKind.UNAVAILABLE, "the backup server is not running")
        return self._nursery

    async def close(self, why: str) -> None:
        """The peer is gone or done: back to Normal, and the connection closed."""
        await self.release(why)
        self.disconnect()

    def touch(self) -> None:
        """The peer did something: the idle timeout starts again."""
        self._last_activity = time.monotonic()

    async def _idle_watchdog(self) -> None:
        while True:
            await trio.sleep(min(5.0, self.idle_timeout / 4))
            idle = time.monotonic() - self._last_activity
            if self.held_until is not None:
                continue  # the hold has its own deadline
            if self.prepared is not None and idle > self.idle_timeout:
                await self.release(f"idle for {idle:.0f} s")

    # -- holding a backup for a download to resume -------------------------------------

    def hold(self, seconds: float) -> None:
        """Keep the prepared backup and the engine connection for ``seconds``, then close.

        The peer is gone in the middle of a download; the engine drops a
        prepared backup with its client, so the connection stays open and
        the device stays in backup mode, for at most ``seconds``.  A peer
        that comes back in time ends the hold (:meth:`end_hold`) and reads
        the same archives.
        """
        self.end_hold()
        if self.prepared is None:
            return
        self.prepared.resumed = True
        scope = trio.CancelScope()
        self._hold_scope = scope
        self.held_until = time.time() + seconds
        self.nursery.start_soon(self._hold_timer, scope, seconds)

    def end_hold(self) -> bool:
        """The peer is back (or the backup went away): no more deadline; True if held."""
        scope, self._hold_scope = self._hold_scope, None
        held = self.held_until is not None
        self.held_until = None
        if scope is not None:
            scope.cancel()
        if held and self._on_hold_end is not None:
            self._on_hold_end()
        return held

    async def _hold_timer(self, scope: trio.CancelScope, seconds: float) -> None:
        with scope:
            await trio.sleep(seconds)
            self._hold_scope = None  # ending the hold below must not cancel this task
            self.end_hold()
            with trio.CancelScope(shield=True):
                await self.close(f"nobody resumed the download within {seconds:g} s")

    # -- engine connection ---------------------------------------------------------

    async def client(self) -> EngineClient:
        if self._client is None:
            nursery = self.nursery
            await self._previous_closed()
            try:
                self._client = await nursery.start(self._hold_connection)
            except (EngineError, *LINK_ERRORS) as exc:
                raise ServerError(
                    ErrorKind.UNAVAILABLE, f"backup engine unreachable: {exc}"
                ) from exc
        assert self._client is not None
        return self._client

    async def _previous_closed(self) -> None:
        """Wait until the last engine connection has really closed.

        The engine takes one backup client at a time, and a peer may open its
        next session the moment the last one closed: the new connection must not
        find the old one still closing.  (Waiting here rather than in
        :meth:`disconnect` keeps :meth:`close` quick on a lost link.)
        """
        closed = self._client_closed
        if closed is not None:
            with trio.move_on_after(10):
                await closed.wait()

    async def _hold_connection(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        done = trio.Event()
        closed = trio.Event()
        self._client_closed = closed
        started = False
        try:
            async with EngineClient.connect(self.socket, role="client") as client:
                self._client_done = done
                task_status.started(client)
                started = True
                await done.wait()
        except (EngineError, *LINK_ERRORS) as exc:
            if not started:
                raise  # the engine is unreachable: :meth:`client` says so
            log.warning("backup engine connection ended: %s", exc)
        finally:
            if self._client_done is done:
                self._client = None
                self._client_done = None
            # The engine drops a prepared backup with its client.
            self.prepared = None
            self.end_hold()
            closed.set()

    def disconnect(self) -> None:
        """Close the engine connection; the next :meth:`client` waits until it is closed."""
        done = self._client_done
        self._client = None
        self._client_done = None
        if done is not None:
            done.set()

    async def call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
        """``fn(client, ...)`` with the engine's errors as :class:`ServerError`."""
        client = await self.client()
        try:
            return await fn(client, *args, **kw)
        except EngineError as exc:
            raise ServerError(kind_of(exc.code), f"{what}: {exc.message}") from exc
        except LINK_ERRORS as exc:
            self.disconnect()
            raise ServerError(ErrorKind.UNAVAILABLE, f"{what}: {exc}") from exc

    # -- preparing backups -----------------------------------------------------------

    async def ensure_prepared(self, folder: str, previous: Path | None = None) -> Prepared:
        """The backup shown in ``folder``, prepared now unless it already is.

        ``previous`` (an earlier ``.snapshot`` or ``.mbak``) makes it an
        increment.  Preparing one folder's backup releases the other's: the
        engine holds one prepared backup at a time.
        """
        async with self._lock:
            self.touch()
            if self.prepared is not None and self.prepared.folder == folder:
                return self.prepared
            await self._release_locked("another backup was asked for")
            await self._next_name()
            log.info("preparing a %s backup", "base" if previous is None else "incremental")
            if previous is None:
                backup = await self.call("prepare", EngineClient.prepare_backup)
            else:
                backup = await self.call(
                    "prepare", EngineClient.prepare_backup, previous=file_chunks(previous)
                )
            prepared = Prepared(backup, folder, time.time())
            self._last_created = prepared.created
            for archive in backup.archives:
                if folder == INCREMENTAL and archive.kind == "owner":
                    continue  # per-owner increments would only clutter the folder
                key = archive_key(folder, archive)
                prepared.entries[key] = (archive.name, archive.size)
                if self.recipients and archive.kind != "snapshot":
                    prepared.views[key] = new_view(self.recipients, archive.size)
            for sid, reason in backup.skipped:
                log.warning("data owner %08X left out of the backup: %s", sid, reason)
            self.prepared = prepared
            self._on_prepared(folder, set(prepared.entries))
            log.info(
                "backup prepared: %s",
                ", ".join(f"{k} ({prepared.entry(k).size} bytes)" for k in prepared.entries),
            )
            return prepared

    async def _next_name(self) -> None:
        """Wait, if need be, until a new preparation cannot get the last one's name.

        Archive names carry the preparation's time to the second; a backup
        prepared again within the same second (after its data changed) would
        show the same name with other bytes, and a host could splice the two.
        """
        while int(time.time()) <= int(self._last_created):
            await trio.sleep(int(self._last_created) + 1.01 - time.time())

    async def release(self, why: str) -> None:
        """Leave backup mode (if in it): the engine tells every owner."""
        async with self._lock:
            await self._release_locked(why)

    async def _release_locked(self, why: str) -> None:
        self.end_hold()
        if self.prepared is None:
            return
        log.info("leaving backup mode: %s", why)
        self.prepared = None
        client = self._client
        if client is not None:
            with trio.move_on_after(10) as scope:
                scope.shield = True
                try:
                    await client.set_normal()
                except (EngineError, *LINK_ERRORS) as exc:
                    log.warning("could not set Normal mode (%s); closing the connection", exc)
                    self.disconnect()


async def file_chunks(path: Path, size: int = 1 << 20) -> AsyncIterator[bytes]:
    f = await trio.open_file(path, "rb")
    async with f:
        while chunk := await f.read(size):
            yield chunk
