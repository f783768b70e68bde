"""Engine side of active data owners: callback sessions, watchdog, proxy framing.

An active owner's data stream for one drive is framed so that proxy managers'
data for this owner travels inside it (engine/README.md, Transfer types; all
little-endian)::

    u32 proxy count (must equal the registration's proxy list)
    per proxy, in registration order, blocks of:
        u8 finished, u32 proxy SID, u32 length, <length bytes>
      until a block with finished = 1
    then the owner's own data, to the end of the stream

Every callback is guarded by the owner's watchdog (``callback_delay_time``); an
owner that does not answer in time is marked Failed and told to terminate the
multi-stage operation. An owner whose bytes are not valid frames loses its
connection; the transfer it was serving fails as corrupt, naming the owner and
what was wrong, so that a broken owner is told apart from one that went away.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio
from construct import Flag, Int32ul, Struct

from ..errors import (
    CorruptError,
    EngineError,
    NotReadyError,
    TimedOutError,
)
from ..types import DataOwnerStatus, format_sid
from ..wire.protocol import ProtocolError
from ..wire.rpc import Connection, ConnectionLostError, Download, Upload

#: What writing to an owner whose process died raises (its socket is gone).  It
#: must become the owner's failure: raised as it is, it reads as the *client's*
#: connection breaking, and the client's request is then never answered.
SOCKET_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)


def _gone(e: BaseException) -> ConnectionLostError:
    return ConnectionLostError(f"connection lost ({e.__class__.__name__})")


log = logging.getLogger(__name__)

ProxyCount = Int32ul
ProxyBlock = Struct("finished" / Flag, "sid" / Int32ul, "length" / Int32ul)
BLOCK_HEADER = 9
MAX_PROXY_BLOCK = 1 << 20


@dataclass
class ActiveSession:
    """A connected active owner (or proxy manager) and what it has confirmed."""

    sid: int
    conn: Connection
    pid: int
    status: DataOwnerStatus = DataOwnerStatus.NOT_READY
    has_impl: bool = True
    timeout: float = 200.0

    @property
    def alive(self) -> bool:
        return not self.conn.closed

    def fail(self, why: str) -> None:
        log.warning("active owner %s failed: %s", format_sid(self.sid), why)
        self.status = DataOwnerStatus.FAILED

    def check_ready(self) -> None:
        if not self.alive:
            raise NotReadyError(f"owner {format_sid(self.sid)} is not connected")
        if self.status == DataOwnerStatus.FAILED:
            raise TimedOutError(f"owner {format_sid(self.sid)} has failed")
        if self.status != DataOwnerStatus.READY:
            raise NotReadyError(f"owner {format_sid(self.sid)} is not ready")

    def lost(self, during: str, e: ConnectionLostError) -> EngineError:
        """Mark the owner Failed and say why its connection ended ``during`` something.

        The connection's reader keeps the error that ended it: a protocol error
        means the owner sent bytes that are not frames, which is corrupt data.
        """
        why = self.conn.error
        if isinstance(why, ProtocolError):
            self.fail(f"corrupt data {during}: {why}")
            return CorruptError(f"corrupt data from owner {format_sid(self.sid)} {during}: {why}")
        self.fail(f"connection lost {during}")
        return e

    async def call(self, op: str, args: dict[str, object] | None = None) -> object:
        try:
            return await self.conn.call(op, args, timeout=self.timeout)
        except trio.TooSlowError:
            self.fail(f"no answer to {op} within {self.timeout:g} s")
            await self.terminate()
            raise TimedOutError(f"owner {format_sid(self.sid)} did not answer {op}") from None
        except ConnectionLostError as e:
            raise self.lost(f"while it was answering {op}", e) from None
        except SOCKET_GONE as e:
            raise self.lost(f"while it was answering {op}", _gone(e)) from None

    async def terminate(self) -> None:
        """Tell the owner its transfer was aborted: best effort, never blocks long."""
        if self.alive:
            with trio.move_on_after(2):
                try:
                    await self.conn.call("terminate", {})
                except (EngineError, *SOCKET_GONE):
                    pass

    async def receive(self, d: Download) -> bytes | None:
        try:
            return await d.receive(timeout=self.timeout)
        except trio.TooSlowError:
            self.fail(f"no data within {self.timeout:g} s")
            await d.cancel()
            raise TimedOutError(f"owner {format_sid(self.sid)} stopped sending data") from None
        except ConnectionLostError as e:
            raise self.lost("while it was sending data", e) from None

    async def send(self, u: Upload, data: bytes) -> None:
        try:
            with trio.fail_after(self.timeout):
                await u.send(data)
        except trio.TooSlowError:
            self.fail(f"did not take data within {self.timeout:g} s")
            await u.abort()
            raise TimedOutError(f"owner {format_sid(self.sid)} stopped taking data") from None
        except ConnectionLostError as e:
            raise self.lost("while it was taking data", e) from None
        except SOCKET_GONE as e:
            raise self.lost("while it was taking data", _gone(e)) from None

    async def finish(self, u: Upload) -> object:
        try:
            return await u.finish(timeout=self.timeout)
        except trio.TooSlowError:
            self.fail(f"did not confirm data within {self.timeout:g} s")
            raise TimedOutError(f"owner {format_sid(self.sid)} did not confirm") from None
        except ConnectionLostError as e:
            raise self.lost("while it was confirming data", e) from None
        except SOCKET_GONE as e:
            raise self.lost("while it was confirming data", _gone(e)) from None


class ActiveDataSource:
    """Produces the framed active stream of one owner for one drive, lazily."""

    def __init__(
        self,
        owner_sid: int,
        drive: str,
        own: ActiveSession | None,
        proxies: list[tuple[int, ActiveSession]],
        snapshot: bool = False,
    ) -> None:
        self.owner_sid = owner_sid
        self.drive = drive
        self.own = own
        self.proxies = proxies
        self.snapshot = snapshot
        self._buf = bytearray() if snapshot else bytearray(ProxyCount.build(len(proxies)))
        self._phase = 0 if not snapshot else len(proxies)
        self._dl: Download | None = None
        self._sess: ActiveSession | None = None
        self.at_end = False

    async def _next(self) -> bool:
        """Append more bytes to the buffer; False at the very end."""
        while True:
            if self._dl is None:
                if self._phase < len(self.proxies):
                    _psid, sess = self.proxies[self._phase]
                    sess.check_ready()
                    self._sess = sess
                    self._dl = await sess.conn.download(
                        "get_backup_data", {"drive": self.drive, "proxy_for": self.owner_sid}
                    )
                elif self._phase == len(self.proxies) and self.own is not None:
                    self.own.check_ready()
                    self._sess = self.own
                    op = "get_snapshot" if self.snapshot else "get_backup_data"
                    self._dl = await self.own.conn.download(op, {"drive": self.drive})
                else:
                    return False
            assert self._sess is not None
            chunk = await self._sess.receive(self._dl)
            proxy = self._phase < len(self.proxies)
            if chunk is None:
                self._dl = None
                if proxy:
                    self._buf += ProxyBlock.build(
                        {"finished": True, "sid": self.proxies[self._phase][0], "length": 0}
                    )
                self._phase += 1
                if proxy:
                    return True
                continue
            if proxy:
                for i in range(0, len(chunk), MAX_PROXY_BLOCK):
                    part = chunk[i : i + MAX_PROXY_BLOCK]
                    self._buf += ProxyBlock.build(
                        {
                            "finished": False,
                            "sid": self.proxies[self._phase][0],
                            "length": len(part),
                        }
                    )
                    self._buf += part
            else:
                self._buf += chunk
            return True

    async def read(self, max_bytes: int) -> bytes:
        while len(self._buf) < max_bytes and not self.at_end:
            if not await self._next():
                self.at_end = True
        out = bytes(self._buf[:max_bytes])
        del self._buf[:max_bytes]
        return out

    @property
    def finished(self) -> bool:
        return self.at_end and not self._buf

    async def aclose(self) -> None:
        if self._dl is not None and not self._dl.done:
            await self._dl.cancel()
            if self._sess is not None:
                await self._sess.terminate()
        self._dl = None


class ActiveDataSink:
    """Consumes a framed active stream and feeds proxies and the owner in sections."""

    def __init__(
        self,
        owner_sid: int,
        drive: str,
        own: ActiveSession | None,
        proxies: list[tuple[int, ActiveSession]],
        increment: bool,
        section_size: int,
        snapshot: bool = False,
    ) -> None:
        self.owner_sid = owner_sid
        self.drive = drive
        self.own = own
        self.proxies = proxies
        self.increment = increment
        self.section = section_size
        self.snapshot = snapshot
        self._buf = bytearray()
        self._state = "own" if snapshot else "count"
        self._idx = 0
        self._remaining = 0
        self._finished_block = False
        self._up: Upload | None = None
        self._sess: ActiveSession | None = None
        self._started: set[int] = set()

    async def _open(self, sess: ActiveSession, proxy_for: int | None) -> Upload:
        sess.check_ready()
        self._sess = sess
        try:
            if self.snapshot:
                return await sess.conn.upload("receive_snapshot", {"drive": self.drive})
            return await sess.conn.upload(
                "restore_data",
                {"drive": self.drive, "increment": self.increment, "proxy_for": proxy_for},
            )
        except SOCKET_GONE as e:
            raise sess.lost("when it was given data", _gone(e)) from None

    async def _deliver(self, data: bytes) -> None:
        assert self._up is not None and self._sess is not None
        for i in range(0, len(data), self.section):
            await self._sess.send(self._up, data[i : i + self.section])

    async def _close_current(self) -> None:
        if self._up is not None:
            assert self._sess is not None
            up, self._up = self._up, None
            await self._sess.finish(up)

    async def write(self, data: bytes | memoryview) -> None:
        self._buf += data
        while self._buf:
            if self._state == "count":
                if len(self._buf) < 4:
                    return
                n = ProxyCount.parse(bytes(self._buf[:4]))
                del self._buf[:4]
                if n != len(self.proxies):
                    raise CorruptError(
                        f"stream names {n} proxies, registration of "
                        f"{format_sid(self.owner_sid)} has {len(self.proxies)}"
                    )
                self._state = "block" if self.proxies else "own"
            elif self._state == "block":
                if len(self._buf) < BLOCK_HEADER:
                    return
                h = ProxyBlock.parse(bytes(self._buf[:BLOCK_HEADER]))
                del self._buf[:BLOCK_HEADER]
                psid, sess = self.proxies[self._idx]
                if h.sid != psid or h.length > MAX_PROXY_BLOCK:
                    raise CorruptError("proxy block out of order or too large")
                if self._up is None:
                    self._up = await self._open(sess, self.owner_sid)
                self._remaining = h.length
                self._finished_block = bool(h.finished)
                self._state = "blockdata"
                if h.length == 0:
                    await self._block_done()
            elif self._state == "blockdata":
                take = min(self._remaining, len(self._buf))
                chunk = bytes(self._buf[:take])
                del self._buf[:take]
                self._remaining -= take
                await self._deliver(chunk)
                if self._remaining == 0:
                    await self._block_done()
            else:
                if self.own is None:
                    raise CorruptError("data for an owner that has no active data of its own")
                if self._up is None:
                    self._up = await self._open(self.own, None)
                chunk = bytes(self._buf)
                self._buf.clear()
                await self._deliver(chunk)

    async def _block_done(self) -> None:
        self._state = "block"
        if self._finished_block:
            await self._close_current()
            self._idx += 1
            if self._idx >= len(self.proxies):
                self._state = "own"

    async def finish(self) -> None:
        if self._state in ("count", "block", "blockdata") and not (
            self._state == "block" and self._idx >= len(self.proxies)
        ):
            if self.proxies or self._state == "count":
                raise CorruptError("active stream ends inside its proxy data")
        if self._up is None and self.own is not None and self._state == "own":
            # An empty own part still gets its initialise + final section.
            self._up = await self._open(self.own, None)
        await self._close_current()

    async def abort(self) -> None:
        """Cancel the owner's open upload and tell it to drop what it took.

        Shielded: the caller is usually being cancelled itself (the client that
        sent the restore is gone), and an owner never told would wait for the
        rest of its upload for ever, deaf to every later callback.  The
        cancel is one frame and ``terminate`` is bounded (2 s).
        """
        with trio.CancelScope(shield=True):
            if self._up is not None:
                await self._up.abort()
                self._up = None
                if self._sess is not None:
                    await self._sess.terminate()
