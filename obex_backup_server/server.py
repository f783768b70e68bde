"""The OBEX backup server's I/O pump: one task per connection, any byte stream.

:meth:`ObexBackupServer.serve_stream` takes any :class:`trio.abc.Stream` (a
TCP connection, the USB CDC OBEX tty) and pumps bytes between it and a
:class:`~obex_backup_server.core.connection.ServerConnection`, answering each
of the core's events with the backup toolkit's tree
(:class:`~engine.serverkit.BackupServer`):

* GET of ``x-obex/folder-listing`` lists a folder; GET of
  ``x-obex/capability`` says what the device is; GET of a name streams it
  from :meth:`~engine.serverkit.BackupServer.open_read`, one engine chunk in
  memory at a time, cut to the negotiated packet by the core, with a Length
  header of the exact size.
* PUT streams into a toolkit upload; its final answer comes after the
  upload's commit (a restore is verified and swapped in by then).  A PUT
  without a body deletes.
* SETPATH moves the current folder (:mod:`.tree`).

One peer at a time: the toolkit holds one engine session.  A second
connection waits up to ``busy_wait`` seconds for the first to end, then its
first request is answered Service Unavailable and it is closed.  A
connection that ends without DISCONNECT (reset, unplug, protocol violation,
no byte for ``link_timeout`` seconds) is a lost link: an upload in flight is
aborted (a restore then changes nothing) and the engine goes back to Normal.
Nothing a client sends can end the process: each connection's failures end
that connection only.
"""

from __future__ import annotations

import errno
import logging
from collections import OrderedDict
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import trio

from engine import serverkit
from engine.serverkit import BackupServer, ErrorKind, ServerConfig, ServerError
from obex_backup_server.core.codes import HeaderId, ResponseCode
from obex_backup_server.core.connection import NEED_DATA, PAUSED, Phase, ServerConnection
from obex_backup_server.core.errors import ProtocolError
from obex_backup_server.core.events import (
    Abort,
    BodyChunk,
    BodyEnd,
    BodyWanted,
    Connect,
    ConnectionClosed,
    ContinueDue,
    Disconnect,
    Event,
    GetRequest,
    Operation,
    PutEnd,
    PutOutcome,
    PutStart,
    RequestError,
    Response,
    ResponseHeaders,
    SetPath,
)
from obex_backup_server.core.headers import Header
from obex_backup_server.core.listing import (
    CAPABILITY_TYPE,
    FOLDER_LISTING_TYPE,
    ListingEntry,
    capability,
    folder_listing,
)

from .config import ObexConfig
from .errors import obex_code
from .tree import CurrentFolder, check_name

log = logging.getLogger("obex_backup_server")

RECEIVE_SIZE = 1 << 16
REFUSAL_WAIT = 10.0
"""How long a refused client has to send its first request (to be told why)."""
SHOWN_NAMES = 256
"""How many listed archive names stay valid for later sessions."""
MAX_LENGTH_HEADER = 0xFFFFFFFF
"""The Length header is 32 bits: a larger object is sent without one."""


class _Quiet:
    """OBEX has no change notifications: the toolkit's are dropped."""

    def added(self, key: str) -> None:
        return None

    def removed(self, key: str) -> None:
        return None

    def changed(self, key: str) -> None:
        return None


class ObexBackupServer:
    """The backup toolkit's tree served to one OBEX client at a time."""

    def __init__(self, config: ObexConfig) -> None:
        self.config = config
        self.backup = BackupServer(
            ServerConfig(
                spool_dir=config.spool_dir,
                socket=config.socket,
                idle_timeout=config.idle_timeout,
                space_path=config.space_path,
                recipients=config.recipients,
                identities=config.identities,
            ),
            _Quiet(),
        )
        self._lock = trio.Lock()
        self._connections = 0
        self.shown: OrderedDict[tuple[str, str], str] = OrderedDict()
        """(folder, name) -> key of the archives listed to a client, the latest last."""

    def remember(self, folder: str, entries: list[serverkit.Entry]) -> None:
        """Note the archive names a listing showed, so a later session can still ask for them.

        An archive's name carries the time its backup was prepared, and every
        OBEX session (each obexftp command) prepares anew when it needs to:
        the name a client listed in one session is gone in the next.  Its key
        is not, so a name once shown finds the archive of the same key.
        """
        for entry in entries:
            if entry.kind is serverkit.EntryKind.ARCHIVE:
                self.shown[folder, entry.name] = entry.key
                self.shown.move_to_end((folder, entry.name))
        while len(self.shown) > SHOWN_NAMES:
            self.shown.popitem(last=False)

    async def find(self, folder: str, name: str) -> serverkit.Entry:
        """The entry ``name`` in ``folder``: listed now, or an archive listed earlier."""
        try:
            return await self.backup.find(folder, name)
        except ServerError as exc:
            key = self.shown.get((folder, name))
            if exc.kind is not ErrorKind.NOT_FOUND or key is None:
                raise
        return await self.backup.stat(key)

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the toolkit's engine session; runs until cancelled."""
        await self.backup.run(task_status=task_status)

    async def serve_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one client on ``stream`` until it disconnects or is lost; closes ``stream``.

        Never raises for anything the client does or the link suffers.
        """
        self._connections += 1
        name = f"connection {self._connections}{_peer(stream)}"
        try:
            if not await self._acquire():
                await self._refuse_busy(stream, name)
                return
            try:
                await _Connection(self, stream, name).run()
            finally:
                self._lock.release()
        finally:
            with trio.CancelScope(shield=True):
                await _close(stream)

    async def _acquire(self) -> bool:
        """Take the one client's place, waiting up to ``busy_wait`` seconds for it."""
        try:
            self._lock.acquire_nowait()
            return True
        except trio.WouldBlock:
            pass
        with trio.move_on_after(self.config.busy_wait):
            await self._lock.acquire()
            return True
        return False

    async def _refuse_busy(self, stream: trio.abc.Stream, name: str) -> None:
        """Answer the first request Service Unavailable: another client is being served."""
        log.info("%s: refused, another client is being served", name)
        core = ServerConnection(max_packet_length=self.config.max_packet_length)
        try:
            with trio.move_on_after(REFUSAL_WAIT):
                while True:
                    event = core.next_event()
                    if event is NEED_DATA:
                        core.receive_data(bytes(await stream.receive_some(RECEIVE_SIZE)))
                        continue
                    if isinstance(event, ConnectionClosed) or event is PAUSED:
                        return
                    if isinstance(event, PutStart | BodyChunk):
                        continue
                    code = ResponseCode.SERVICE_UNAVAILABLE
                    if isinstance(event, RequestError):
                        code = event.response
                    await stream.send_all(core.send(Response(code)))
                    return
        except (ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return


def _peer(stream: trio.abc.Stream) -> str:
    """`` from HOST:PORT`` for a TCP connection (for the log), nothing for other streams."""
    sock = getattr(stream, "socket", None)
    try:
        host, port = sock.getpeername()[:2] if sock is not None else ("", 0)
    except (OSError, ValueError, TypeError):
        return ""
    return f" from {host}:{port}" if host else ""


async def _close(stream: trio.abc.Stream) -> None:
    try:
        await stream.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


def _storage_error(key: str, exc: OSError) -> ServerError:
    """A file system error while receiving ``key`` (the snapshot spool) as a toolkit error."""
    kind = ErrorKind.NO_SPACE if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ErrorKind.FAILED
    return ServerError(kind, f"{key}: {exc.strerror or exc}")


class _LinkLost(Exception):
    """The stream ended or broke without a DISCONNECT."""


@dataclass
class _Put:
    key: str
    length: int | None
    upload: serverkit.Upload | None = None
    error: ServerError | None = None


@dataclass
class _Get:
    chunks: AsyncGenerator[bytes, None] | None
    pending: memoryview
    done: bool = False


class _Connection:
    """One client's session: the core, the current folder, the transfer under way."""

    def __init__(self, owner: ObexBackupServer, stream: trio.abc.Stream, name: str) -> None:
        self.owner = owner
        self.backup = owner.backup
        self.stream = stream
        self.name = name
        self.core = ServerConnection(max_packet_length=owner.config.max_packet_length)
        self.cwd = CurrentFolder()
        self.put: _Put | None = None
        self.get: _Get | None = None
        self.disconnected = False

    async def run(self) -> None:
        log.info("%s: opened", self.name)
        clean = False
        try:
            clean = await self._pump()
        except _LinkLost as exc:
            log.info("%s: link lost: %s", self.name, exc)
        except ProtocolError as exc:
            log.warning("%s: closed: %s", self.name, exc.message)
        except Exception:
            # A fault of ours: this connection ends, the server goes on.
            log.exception("%s: closed by an internal error", self.name)
        finally:
            with trio.CancelScope(shield=True):
                await self._end_transfers()
                try:
                    if clean:
                        await self.backup.session_closed()
                    else:
                        await self.backup.link_lost()
                except Exception:
                    log.exception("%s: ending the engine session", self.name)
        log.info("%s: closed%s", self.name, "" if clean else " (link lost)")

    async def _pump(self) -> bool:
        """Answer events until the connection ends; True if it ended with DISCONNECT."""
        while True:
            event = self.core.next_event()
            if event is NEED_DATA:
                await self._receive()
                continue
            if event is PAUSED:
                raise AssertionError("an event was left unanswered")
            assert isinstance(event, Event)
            if isinstance(event, ConnectionClosed):
                if event.ended is not None:
                    raise _LinkLost(f"the client went away in the middle of a {event.ended.value}")
                return self.disconnected
            self.backup.touch()
            await self._answer(event)

    async def _receive(self) -> None:
        data = b""
        with trio.move_on_after(self.owner.config.link_timeout) as timer:
            try:
                data = bytes(await self.stream.receive_some(RECEIVE_SIZE))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise _LinkLost(f"receive failed: {exc or type(exc).__name__}") from exc
        if timer.cancelled_caught:
            raise _LinkLost(f"no byte for {self.owner.config.link_timeout:g} s")
        self.core.receive_data(data)

    async def _send(self, event: Event) -> None:
        packet = self.core.send(event)
        if not packet:
            return
        try:
            await self.stream.send_all(packet)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise _LinkLost(f"send failed: {exc or type(exc).__name__}") from exc

    async def _error(self, error: ServerError) -> None:
        code = obex_code(error)
        log.info("%s: %s: %s", self.name, code.name, error.reason)
        await self._send(Response(code))

    # -- events ---------------------------------------------------------------

    async def _answer(self, event: Event) -> None:
        if isinstance(event, RequestError):
            log.info("%s: refused request: %s", self.name, event.reason)
            await self._end_transfers()
            await self._send(Response(event.response))
        elif isinstance(event, Connect):
            self.disconnected = False
            self.cwd = CurrentFolder()
            await self._send(Response(ResponseCode.SUCCESS))
        elif isinstance(event, Disconnect):
            await self._end_transfers()
            await self.backup.session_closed()
            self.disconnected = True
            await self._send(Response(ResponseCode.SUCCESS))
        elif isinstance(event, Abort):
            await self._end_transfers()
            await self._send(Response(ResponseCode.SUCCESS))
        elif isinstance(event, SetPath):
            await self._setpath(event)
        elif isinstance(event, PutStart):
            await self._put_start(event)
        elif isinstance(event, BodyChunk):
            await self._put_data(event.data)
        elif isinstance(event, ContinueDue):
            await self._continue(event)
        elif isinstance(event, PutEnd):
            await self._put_end(event)
        elif isinstance(event, GetRequest):
            await self._get_start(event)
        elif isinstance(event, BodyWanted):
            await self._stream_body()
        else:
            raise AssertionError(f"unexpected event {event!r}")

    async def _setpath(self, event: SetPath) -> None:
        try:
            self.cwd.setpath(event.name, up=event.up, create=event.create)
        except ServerError as exc:
            await self._error(exc)
            return
        await self._send(Response(ResponseCode.SUCCESS))

    # -- PUT ------------------------------------------------------------------

    async def _put_start(self, event: PutStart) -> None:
        try:
            key = self.cwd.child(event.name)
        except ServerError as exc:
            self.put = _Put("", event.length, error=exc)
            return
        self.put = _Put(key, event.length)

    async def _put_data(self, data: bytes) -> None:
        put = self.put
        if put is None or put.error is not None:
            return
        try:
            if put.upload is None:
                put.upload = await self.backup.create(put.key, put.length)
            await put.upload.write(data)
        except ServerError as exc:
            put.error = exc
            await self._abort_upload(put)
        except OSError as exc:
            put.error = _storage_error(put.key, exc)
            await self._abort_upload(put)

    async def _continue(self, event: ContinueDue) -> None:
        if event.operation is Operation.PUT and self.put is not None:
            if self.put.error is not None:
                error = self.put.error
                self.put = None
                await self._error(error)
                return
        await self._send(Response(ResponseCode.CONTINUE))

    async def _put_end(self, event: PutEnd) -> None:
        put, self.put = self.put, None
        assert put is not None
        try:
            if put.error is not None:
                raise put.error
            if event.outcome is PutOutcome.DELETE:
                await self._delete(put.key)
                await self._send(Response(ResponseCode.SUCCESS))
                return
            if put.upload is None:
                # An empty object (End-of-Body without a byte): a placeholder.
                put.upload = await self.backup.create(put.key, 0)
            upload, put.upload = put.upload, None
            try:
                entry = await upload.commit()
            except BaseException:
                with trio.CancelScope(shield=True):
                    await upload.abort()
                raise
            log.info("%s: received %s (%d bytes)", self.name, entry.key, entry.size)
        except ServerError as exc:
            await self._error(exc)
            return
        except OSError as exc:
            await self._error(_storage_error(put.key, exc))
            return
        await self._send(Response(ResponseCode.SUCCESS))

    async def _delete(self, key: str) -> None:
        folder, _, name = key.rpartition("/")
        if folder not in (serverkit.INCREMENTAL, serverkit.RESTORE):
            raise ServerError(ErrorKind.DENIED, f"nothing can be deleted in {folder or '/'!r}")
        entry = await self.backup.find(folder, name)
        await self.backup.delete(entry.key)
        log.info("%s: deleted %s", self.name, entry.key)

    async def _abort_upload(self, put: _Put) -> None:
        upload, put.upload = put.upload, None
        if upload is not None:
            with trio.CancelScope(shield=True):
                await upload.abort()

    # -- GET ------------------------------------------------------------------

    async def _get_start(self, event: GetRequest) -> None:
        try:
            if event.type == FOLDER_LISTING_TYPE:
                body = await self._listing(event.name)
                await self._get_body(None, len(body), body)
            elif event.type == CAPABILITY_TYPE:
                body = capability(
                    manufacturer=self.owner.config.manufacturer, model=self.owner.config.model
                )
                await self._get_body(None, len(body), body)
            elif event.type is not None and not event.name:
                raise ServerError(ErrorKind.NOT_FOUND, f"no object of Type {event.type!r}")
            else:
                entry = await self.owner.find(self.cwd.key, check_name(event.name))
                if entry.is_folder:
                    raise ServerError(
                        ErrorKind.DENIED, f"{entry.key!r} is a folder: list it with SETPATH"
                    )
                await self._get_body(self.backup.open_read(entry.key), entry.size, b"")
        except ServerError as exc:
            await self._end_get()
            await self._error(exc)

    async def _listing(self, name: str | None) -> bytes:
        folder = self.cwd.folder(name)
        listed = await self.backup.list(folder)
        self.owner.remember(folder, listed)
        entries = [
            ListingEntry(e.name, e.is_folder, e.size, datetime.fromtimestamp(e.mtime, UTC))
            for e in listed
        ]
        return folder_listing(entries, at_root=not folder)

    async def _get_body(
        self,
        chunks: AsyncGenerator[bytes, None] | None,
        size: int,
        first: bytes,
    ) -> None:
        headers = []
        if size <= MAX_LENGTH_HEADER:
            headers.append(Header(HeaderId.LENGTH, size))
        self.get = _Get(chunks, memoryview(first), done=chunks is None)
        await self._send(ResponseHeaders(tuple(headers)))
        await self._stream_body()

    async def _stream_body(self) -> None:
        """Fill the response packet under way; send it when full, or end the body."""
        get = self.get
        assert get is not None
        try:
            while True:
                room = self.core.body_room
                if not get.pending:
                    if get.done or get.chunks is None:
                        await self._end_get()
                        await self._send(BodyEnd())
                        return
                    try:
                        get.pending = memoryview(await get.chunks.__anext__())
                    except StopAsyncIteration:
                        get.done = True
                    continue
                piece, get.pending = get.pending[:room], get.pending[room:]
                await self._send(BodyChunk(bytes(piece)))
                if self.core.phase is not Phase.GET_RESPONSE:
                    return  # the packet went out: the client asks for the next
        except ServerError as exc:
            await self._end_get()
            await self._error(exc)

    async def _end_get(self) -> None:
        get, self.get = self.get, None
        if get is not None and get.chunks is not None:
            with trio.CancelScope(shield=True):
                try:
                    await get.chunks.aclose()
                except ServerError as exc:
                    log.debug("%s: closing a read: %s", self.name, exc.reason)

    # -- cleanup --------------------------------------------------------------

    async def _end_transfers(self) -> None:
        """Drop the transfer under way (abort, refusal, disconnect, lost link); never raises."""
        put, self.put = self.put, None
        if put is not None:
            try:
                await self._abort_upload(put)
            except Exception:
                log.exception("%s: aborting an upload", self.name)
        try:
            await self._end_get()
        except Exception:
            log.exception("%s: ending a read", self.name)
