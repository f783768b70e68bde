"""A symmetric request/stream multiplexer over one byte stream (a Unix socket).

Both ends can issue requests: backup clients call the engine, the engine calls its
active data owners back on their own connection. Requests are handled one at a
time per connection (engine/README.md, Wire protocol), so calls never overlap; data
streams ride in DATA frames tagged with the request id, with back-pressure from
bounded channels and the socket itself.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from ..errors import CancelledError, EngineError, ErrorCode, GeneralError, error_from_code
from .protocol import (
    HEADER_SIZE,
    Kind,
    ProtocolError,
    decode_header,
    decode_value,
    encode_header,
    encode_value,
)

log = logging.getLogger(__name__)

CHANNEL_DEPTH = 8


class ConnectionLostError(GeneralError):
    """The peer went away in the middle of something."""


@dataclass
class _Frame:
    kind: Kind
    rid: int
    payload: bytes


class FrameStream:
    """Reads and writes whole frames on a trio stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buf = bytearray()
        self._send_lock = trio.Lock()

    async def send(self, kind: Kind, rid: int, payload: bytes = b"") -> None:
        hdr = encode_header(kind, rid, len(payload))
        async with self._send_lock:
            if len(payload) < 65536:
                await self.stream.send_all(hdr + payload)
            else:
                await self.stream.send_all(hdr)
                await self.stream.send_all(payload)

    async def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = await self.stream.receive_some(max(65536, n - len(self._buf)))
            if not chunk:
                return False
            self._buf += chunk
        return True

    async def receive(self) -> _Frame | None:
        if not await self._fill(HEADER_SIZE):
            if self._buf:
                raise ProtocolError("connection closed inside a frame header")
            return None
        kind, rid, length = decode_header(bytes(self._buf[:HEADER_SIZE]))
        if not await self._fill(HEADER_SIZE + length):
            raise ProtocolError("connection closed inside a frame")
        payload = bytes(self._buf[HEADER_SIZE : HEADER_SIZE + length])
        del self._buf[: HEADER_SIZE + length]
        return _Frame(kind, rid, payload)


class IncomingRequest:
    """A request from the peer; answer it exactly once (respond, fail or end)."""

    def __init__(self, conn: Connection, rid: int, op: str, args: dict[str, object]) -> None:
        self.conn = conn
        self.rid = rid
        self.op = op
        self.args = args
        self.answered = False
        self.cancelled = False
        self._send, self._recv = trio.open_memory_channel[_Frame](CHANNEL_DEPTH)
        self.upload_done = False

    async def respond(self, value: object = None) -> None:
        if not self.answered:
            self.answered = True
            await self.conn.frames.send(Kind.RESPONSE, self.rid, encode_value(value))

    async def fail(self, err: EngineError) -> None:
        if not self.answered:
            self.answered = True
            payload = encode_value({"code": int(err.code), "message": err.message[:4000]})
            await self.conn.frames.send(Kind.ERROR, self.rid, payload)

    async def send_data(self, data: bytes) -> None:
        if self.cancelled:
            raise CancelledError("the peer cancelled the stream")
        if data:
            await self.conn.frames.send(Kind.DATA, self.rid, data)

    async def end(self, value: object = None) -> None:
        if not self.answered:
            self.answered = True
            await self.conn.frames.send(Kind.END, self.rid, encode_value(value))

    async def receive_data(self, timeout: float = math.inf) -> bytes | None:
        """Next uploaded chunk, or None once the peer sent END."""
        if self.upload_done:
            return None
        with trio.fail_after(timeout):
            try:
                f = await self._recv.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                raise ConnectionLostError("connection lost during upload") from None
        if f.kind == Kind.DATA:
            return f.payload
        if f.kind == Kind.CANCEL:
            self.cancelled = True
            raise CancelledError("the peer cancelled the upload")
        self.upload_done = True
        return None

    def close(self) -> None:
        self._recv.close()


class Download:
    """The data of a request answered with DATA frames then END (or ERROR)."""

    def __init__(self, conn: Connection, rid: int) -> None:
        self.conn = conn
        self.rid = rid
        self.result: object = None
        self.done = False
        self._send, self._recv = trio.open_memory_channel[_Frame](CHANNEL_DEPTH)

    async def receive(self, timeout: float = math.inf) -> bytes | None:
        """Next chunk; None at the end. Raises the peer's error, or TooSlow on timeout."""
        if self.done:
            return None
        with trio.fail_after(timeout):
            try:
                f = await self._recv.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                self.done = True
                raise ConnectionLostError("connection lost during download") from None
        if f.kind == Kind.DATA:
            return f.payload
        self.done = True
        self.conn._pending.pop(self.rid, None)
        value = decode_value(f.payload)
        if f.kind == Kind.ERROR:
            raise _error(value)
        if f.kind == Kind.RESPONSE or f.kind == Kind.END:
            self.result = value
            return None
        raise ProtocolError(f"unexpected {f.kind.name} in a download")

    async def cancel(self) -> None:
        if not self.done:
            self.done = True
            self.conn._pending.pop(self.rid, None)
            self._recv.close()
            if not self.conn.closed:
                try:
                    await self.conn.frames.send(Kind.CANCEL, self.rid)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass


class Upload:
    """A request whose body is sent as DATA frames; the answer comes after END."""

    def __init__(self, conn: Connection, rid: int) -> None:
        self.conn = conn
        self.rid = rid
        self._send, self._recv = trio.open_memory_channel[_Frame](CHANNEL_DEPTH)
        self._early: _Frame | None = None
        self.ended = False

    def _check_early(self) -> None:
        if self._early is None:
            try:
                self._early = self._recv.receive_nowait()
            except trio.WouldBlock:
                return
            except (trio.EndOfChannel, trio.ClosedResourceError):
                raise ConnectionLostError("connection lost during upload") from None
        if self._early is not None and self._early.kind == Kind.ERROR:
            raise _error(decode_value(self._early.payload))

    async def send(self, data: bytes) -> None:
        self._check_early()
        for i in range(0, len(data), 1 << 20):
            await self.conn.frames.send(Kind.DATA, self.rid, data[i : i + (1 << 20)])

    async def finish(self, timeout: float = math.inf) -> object:
        if not self.ended:
            self.ended = True
            await self.conn.frames.send(Kind.END, self.rid)
        f = self._early
        with trio.fail_after(timeout):
            try:
                if f is None:
                    f = await self._recv.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                raise ConnectionLostError("connection lost during upload") from None
        self.conn._pending.pop(self.rid, None)
        value = decode_value(f.payload)
        if f.kind == Kind.ERROR:
            raise _error(value)
        return value

    async def abort(self) -> None:
        if not self.ended:
            self.ended = True
            self.conn._pending.pop(self.rid, None)
            try:
                await self.conn.frames.send(Kind.CANCEL, self.rid)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


def _error(value: object) -> EngineError:
    if isinstance(value, dict):
        code = value.get("code")
        msg = value.get("message")
        return error_from_code(
            code if isinstance(code, int) else ErrorCode.GENERAL,
            msg if isinstance(msg, str) else "",
        )
    return GeneralError("malformed error from peer")


Handler = Callable[[IncomingRequest], Awaitable[None]]
EventHandler = Callable[[object], Awaitable[None]]


class Connection:
    """One peer. ``serve()`` runs the reader and the request worker until it leaves."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        handler: Handler | None = None,
        on_event: EventHandler | None = None,
        odd_ids: bool = True,
    ) -> None:
        self.frames = FrameStream(stream)
        self.stream = stream
        self.handler = handler
        self.on_event = on_event
        self._next_id = 1 if odd_ids else 2
        self._pending: dict[int, Download | Upload | trio.MemorySendChannel[_Frame]] = {}
        self._incoming: dict[int, IncomingRequest] = {}
        self._req_send, self._req_recv = trio.open_memory_channel[IncomingRequest](64)
        self.closed = False
        self.closed_event = trio.Event()
        self.error: BaseException | None = None

    def _rid(self) -> int:
        rid = self._next_id
        self._next_id = (self._next_id + 2) % (1 << 32) or (1 if rid % 2 else 2)
        return rid

    # -- outgoing
    async def call(
        self, op: str, args: dict[str, object] | None = None, timeout: float = math.inf
    ) -> object:
        d = await self.download(op, args)
        try:
            with trio.fail_after(timeout):
                chunk = await d.receive()
                while chunk is not None:
                    chunk = await d.receive()
        except BaseException:
            await d.cancel()
            raise
        return d.result

    async def download(self, op: str, args: dict[str, object] | None = None) -> Download:
        self._check_open()
        rid = self._rid()
        d = Download(self, rid)
        self._pending[rid] = d
        await self.frames.send(Kind.REQUEST, rid, encode_value({"op": op, "args": args or {}}))
        return d

    async def upload(self, op: str, args: dict[str, object] | None = None) -> Upload:
        self._check_open()
        rid = self._rid()
        u = Upload(self, rid)
        self._pending[rid] = u
        await self.frames.send(Kind.REQUEST, rid, encode_value({"op": op, "args": args or {}}))
        return u

    async def send_event(self, value: object) -> None:
        if not self.closed:
            await self.frames.send(Kind.EVENT, 0, encode_value(value))

    def _check_open(self) -> None:
        if self.closed:
            raise ConnectionLostError("connection is closed")

    # -- running
    async def serve(self) -> None:
        """Run until the peer disconnects or breaks the protocol."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._worker)
                try:
                    await self._reader()
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self.closed = True
        for p in list(self._pending.values()):
            ch = p._send if isinstance(p, Download | Upload) else p
            ch.close()
        self._pending.clear()
        for r in list(self._incoming.values()):
            r._send.close()
        self._incoming.clear()
        self.closed_event.set()

    async def aclose(self) -> None:
        self.closed = True
        try:
            await self.stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _reader(self) -> None:
        try:
            while True:
                f = await self.frames.receive()
                if f is None:
                    return
                await self._route(f)
        except ProtocolError as e:
            self.error = e
            log.warning("protocol error from peer: %s", e)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            self.error = e

    async def _route(self, f: _Frame) -> None:
        if f.kind == Kind.REQUEST:
            msg = decode_value(f.payload)
            if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
                raise ProtocolError("request without an op")
            args = msg.get("args") or {}
            if not isinstance(args, dict):
                raise ProtocolError("request args must be a map")
            req = IncomingRequest(self, f.rid, str(msg["op"]), args)
            self._incoming[f.rid] = req
            await self._req_send.send(req)
            return
        if f.kind == Kind.EVENT:
            if self.on_event is not None:
                await self.on_event(decode_value(f.payload))
            return
        if f.kind in (Kind.DATA, Kind.END, Kind.CANCEL) and f.rid in self._incoming:
            req = self._incoming[f.rid]
            if f.kind == Kind.CANCEL:
                req.cancelled = True
            try:
                await req._send.send(f)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            return
        p = self._pending.get(f.rid)
        if p is None:
            return  # late frames of a cancelled transfer
        ch = p._send if isinstance(p, Download | Upload) else p
        try:
            await ch.send(f)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._pending.pop(f.rid, None)

    async def _worker(self) -> None:
        async for req in self._req_recv:
            try:
                if self.handler is None:
                    await req.fail(GeneralError(f"no handler for {req.op}"))
                else:
                    await self.handler(req)
                    if not req.answered:
                        await req.respond(None)
            except EngineError as e:
                await self._safe_fail(req, e)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            except Exception as e:
                log.exception("internal error handling %s", req.op)
                await self._safe_fail(req, GeneralError(f"internal error: {e.__class__.__name__}"))
            finally:
                self._incoming.pop(req.rid, None)
                req.close()

    async def _safe_fail(self, req: IncomingRequest, e: EngineError) -> None:
        try:
            await req.fail(e)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


@asynccontextmanager
async def open_session(
    path: str,
    hello: dict[str, object],
    handler: Handler | None = None,
    on_event: EventHandler | None = None,
) -> AsyncIterator[tuple[Connection, object]]:
    """Connect to the engine, say hello, and yield the connection and the answer.

    Clients and active owners both start this way; the connection is closed
    (and its reader stopped) when the block ends, however it ends.
    """
    stream = await trio.open_unix_socket(path)
    conn = Connection(stream, handler, on_event, odd_ids=True)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.serve)
            try:
                yield conn, await conn.call("hello", hello)
            finally:
                # Close before cancelling: a checkpoint inside a cancelled scope
                # here would swallow the exception that is unwinding the body.
                with trio.CancelScope(shield=True):
                    await conn.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as eg:
        # One failure (a refused hello, an error in the body) is raised as itself.
        if len(eg.exceptions) == 1:
            raise eg.exceptions[0] from None
        raise

