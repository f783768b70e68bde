"""The responder's main loop: transport bytes in, operations dispatched.

One transaction runs at a time (MTP is strictly sequential), inside its own
cancel scope so that a host Cancel, a Device Reset or an unplug can abort it
wherever it is blocked: on the bus, on the disk or on the backup engine.
Cleanup (removing a half-received file) runs shielded, after which the
transport is flushed and Get Device Status reports idle again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import cast

import trio

from .core.codes import ContainerType, EventCode, OperationCode, ResponseCode, try_enum
from .core.connection import ABANDONED, PAUSED, Interruption, ResponderConnection
from .core.container import build_params_container
from .core.events import BadContainer, Command, DataChunk, DataEnd, DataStart, Event, Response
from .core.protocol import NeedData
from .core.transaction import Phase, RemoteProtocolError
from .operations import Operations
from .provider import ProviderError
from .transport.base import (
    BlockSource,
    CancelRequest,
    Connected,
    DeviceResetRequest,
    Disconnected,
    LinkLost,
    Transport,
    TransportError,
)

log = logging.getLogger(__name__)

MAX_DATASET = 16 * 1024 * 1024
"""Largest dataset (not object) we accept from the host, against memory abuse."""

_PAD_STEP = 1 << 20


class Transaction:
    """One operation's view of the wire: its data phase and nothing else.

    Where the data phase stands is the connection's transaction state; this
    object only moves bytes.
    """

    def __init__(self, server: Server, command: Command) -> None:
        self._server = server
        self.command = command
        self.code = command.code
        self.transaction_id = command.transaction_id
        self.params = command.params + (0,) * (5 - len(command.params))
        self.nparams = len(command.params)
        self.incomplete = False
        """Set when the host's data phase ended before its announced length."""
        self.abandoned = False
        """Set when the host sent its next command instead of the data phase:
        the transaction ends IncompleteTransfer, without a response."""

    # -- host to device -------------------------------------------------------

    async def data_chunks(self) -> AsyncIterator[bytes]:
        """The host's data phase, chunk by chunk.

        ``self.incomplete`` is set when the transfer ended early.
        """
        server = self._server
        if self.abandoned:
            raise ProviderError(
                ResponseCode.INCOMPLETE_TRANSFER, "the host abandoned the data phase"
            )
        phase = server.conn.phase
        if phase is Phase.COMMAND:
            event = await server.next_event()
            if event is ABANDONED:
                self.abandoned = True
                raise ProviderError(
                    ResponseCode.INCOMPLETE_TRANSFER, "a new command came instead of the data phase"
                )
            if event is PAUSED:
                # The host moved on to another container; it is held for later.
                raise ProviderError(ResponseCode.INVALID_DATASET, "expected a data phase")
            if isinstance(event, BadContainer):
                # This transaction's data container was broken: answer it once.
                raise ProviderError(ResponseCode(event.response), event.reason)
            assert isinstance(event, DataStart)
            if event.transaction_id != self.transaction_id:
                await self.drain()
                raise ProviderError(
                    ResponseCode.INVALID_TRANSACTION_ID,
                    f"data phase for transaction {event.transaction_id}",
                )
        elif phase is not Phase.DATA_OUT:  # else resume a phase a caller left (drain)
            return
        while True:
            event = await server.next_event()
            if isinstance(event, DataChunk):
                yield event.data
            elif event is ABANDONED:
                self.abandoned = True
                raise ProviderError(
                    ResponseCode.INCOMPLETE_TRANSFER,
                    "a new command came after the data header instead of its payload",
                )
            else:
                assert isinstance(event, DataEnd), event
                self.incomplete = not event.complete
                return

    async def receive(self, limit: int = MAX_DATASET) -> bytes:
        """A whole (small) dataset."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self.data_chunks():
            size += len(chunk)
            if size > limit:
                break
            parts.append(chunk)
        if size > limit:
            await self.drain()
            raise ProviderError(ResponseCode.INVALID_DATASET, "dataset is too large")
        if self.incomplete:
            raise ProviderError(ResponseCode.INCOMPLETE_TRANSFER, "dataset is truncated")
        return b"".join(parts)

    async def drain(self) -> None:
        """Consume and drop the rest of the host's data phase."""
        async for _ in self.data_chunks():
            pass

    # -- device to host -------------------------------------------------------

    async def send(self, payload: bytes) -> None:
        conn = self._server.conn
        header = conn.send(DataStart(self.code, self.transaction_id, len(payload)))
        body = conn.send(DataChunk(payload)) if payload else b""
        conn.send(DataEnd())
        await self._server.transport.write(header + body, end_of_transfer=True)

    async def send_stream(self, length: int, chunks: AsyncIterator[bytes]) -> int:
        """Send ``length`` bytes from ``chunks``; return how many were real.

        The data phase length is promised in the header, so a source that
        falls short (or fails) is padded, and the caller answers with an
        error; one that runs long is cut.  A source that can read into
        buffers (a :class:`~.transport.base.BlockSource`, a file) is read
        straight into the transport's.
        """
        conn = self._server.conn
        write = self._server.transport.write
        await write(
            conn.send(DataStart(self.code, self.transaction_id, length)),
            end_of_transfer=length == 0,
        )
        remaining = length
        real = 0
        failure: Exception | None = None
        try:
            if isinstance(chunks, BlockSource):
                counted = _CountedSource(chunks, conn)
                try:
                    real = await self._server.transport.write_from(counted, length)
                finally:
                    real = max(real, counted.sent)
                remaining -= real
            else:
                async for chunk in chunks:
                    if remaining <= 0:
                        break
                    if len(chunk) > remaining:
                        chunk = chunk[:remaining]
                    remaining -= len(chunk)
                    real += len(chunk)
                    await write(conn.send(DataChunk(chunk)), end_of_transfer=remaining == 0)
        except TransportError:
            raise
        except Exception as exc:  # the source failed; the caller answers it
            failure = exc
            remaining = length - real
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
        if remaining > 0:
            await self._pad(b"", remaining)
        elif length and isinstance(chunks, BlockSource):
            await write(b"", end_of_transfer=True)  # write_from leaves the transfer open
        conn.send(DataEnd())
        if failure is not None:
            raise failure
        return real

    async def _pad(self, pending: bytes, remaining: int) -> None:
        """Finish a data phase whose source fell short with zero bytes.

        Also when the source failed: the response that reports the failure
        must not land inside the data phase the header promised.
        """
        conn = self._server.conn
        write = self._server.transport.write
        filler = pending
        while remaining > 0:
            step = min(remaining, _PAD_STEP)
            remaining -= step
            data = filler + conn.send(DataChunk(bytes(step)))
            await write(data, end_of_transfer=remaining == 0)
            filler = b""
        if filler:
            await write(filler, end_of_transfer=True)


class _CountedSource:
    """A block source whose bytes the connection counts as they are read.

    The transaction state holds a data phase to the length it announced;
    the bytes never leave the transport's buffers, so each filled buffer is
    passed to it as a view (it only measures them).
    """

    def __init__(self, source: BlockSource, conn: ResponderConnection) -> None:
        self._source = source
        self._conn = conn
        self.sent = 0

    async def readinto(self, buffers: Sequence[memoryview]) -> int:
        count = await self._source.readinto(buffers)
        left = count
        for buffer in buffers:
            if left <= 0:
                break
            part = buffer if len(buffer) <= left else buffer[:left]
            self._conn.send(DataChunk(cast(bytes, part)))
            left -= len(part)
        self.sent += count
        return count


class Server:
    """Runs the responder on one transport until cancelled.

    An I/O pump: bytes from the transport go into a
    :class:`~.core.connection.ResponderConnection`, its events are
    dispatched, and what the operations send goes through it back out.
    """

    def __init__(self, operations: Operations, transport: Transport) -> None:
        self.ops = operations
        self.transport = transport
        self.conn = ResponderConnection()
        self._scope: trio.CancelScope | None = None
        self._reset_after: bool = False
        self._link_changed = trio.Event()
        self._links = 0
        """Links brought up so far: a transaction's teardown must not touch a newer one."""
        self._lost = 0
        """Links lost so far: a link that comes up after one starts from a reset connection."""

    # -- events from the wire -----------------------------------------------

    async def next_event(self) -> Event | Interruption:
        while True:
            event = self.conn.next_event()
            if not isinstance(event, NeedData):
                return event
            chunk = await self.transport.read()
            self.conn.receive_data(chunk.data, chunk.end_of_transfer)

    # -- main loop -------------------------------------------------------------

    async def serve(self) -> None:
        self.ops.event_sender = self._send_event
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_control)
            await self._command_loop()

    async def _command_loop(self) -> None:
        while True:
            try:
                event = await self.next_event()
                if isinstance(event, Command):
                    await self._transaction(event)
                elif isinstance(event, BadContainer):
                    log.warning("bad container: %s", event.reason)
                    if self.conn.state.response_due:
                        await self._respond(event.response, ())
                elif isinstance(event, DataStart):
                    await self._stray_data(event)
            except RemoteProtocolError as exc:  # no framing produces these; drop it
                log.warning("host broke the protocol: %s", exc)
            except Disconnected:
                await self._link_lost()
                while not self.transport.connected:
                    await self._link_changed.wait()

    async def _stray_data(self, start: DataStart) -> None:
        """A data phase nobody asked for: drop it, answer its transaction."""
        log.warning("data phase without a command (transaction %d)", start.transaction_id)
        links = self._links
        abandoned = False
        with trio.CancelScope() as scope:  # a host Cancel ends the wait for its end
            self._scope = scope
            try:
                while self.conn.phase is Phase.STRAY_DATA:
                    abandoned = await self.next_event() is ABANDONED
                if abandoned:
                    # A bare header, then the next command: the host has moved on.
                    log.warning("stray data phase %d abandoned by the host", start.transaction_id)
                elif self.conn.state.response_due:
                    # Else it trails a command that took no data: one answer per transaction.
                    await self._respond(ResponseCode.GENERAL_ERROR, ())
            finally:
                self._scope = None
        if scope.cancel_called:  # even when the cancel came after the last checkpoint
            await self._after_cancel(links)

    async def _transaction(self, command: Command) -> None:
        tx = Transaction(self, command)
        debug = log.isEnabledFor(logging.DEBUG)
        if debug:
            name = try_enum(OperationCode, command.code)
            log.debug("-> %s tid=%d params=%s", name, command.transaction_id, command.params)
        links = self._links
        # The scope covers the drain and the response too: a Cancel, Device
        # Reset or unplug then interrupts them here, and the connection is reset
        # only after this transaction has let go of it.
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                code, params = await self.ops.dispatch(tx)
                if self.ops.expects_data(command.code) and not tx.abandoned:
                    try:
                        await tx.drain()
                    except ProviderError:
                        pass
                if tx.abandoned:
                    # The host has moved on: a response now would answer its next command.
                    log.warning(
                        "transaction %d abandoned by the host before its data (%s); not answered",
                        command.transaction_id,
                        try_enum(ResponseCode, code),
                    )
                else:
                    if debug:
                        log.debug("<- %s %s", try_enum(ResponseCode, code), params)
                    await self._respond(code, params)
            finally:
                self._scope = None
        if scope.cancel_called:  # even when the cancel came after the last checkpoint
            await self._after_cancel(links)

    async def _respond(self, code: int, params: tuple[int, ...]) -> None:
        """The open transaction's one response.

        None is due when the connection was reset under the transaction (the
        link went and came back): an answer then would meet the host's next
        command, so it is dropped rather than failing the serve loop.
        """
        tid = self.conn.state.transaction_id
        if tid is None or not self.conn.state.response_due:
            log.warning("no response due; %s dropped", try_enum(ResponseCode, code))
            return
        await self.transport.write(
            self.conn.send(Response(code, tid, params)), end_of_transfer=True
        )

    def _send_event(self, code: EventCode, params: tuple[int, ...]) -> None:
        self.transport.send_event(
            build_params_container(ContainerType.EVENT, code, self.ops.last_transaction_id, params)
        )

    # -- out of band -------------------------------------------------------------

    async def _watch_control(self) -> None:
        async for event in self.transport.control_events():
            if isinstance(event, (LinkLost, Connected)):
                self._link_changed.set()
                self._link_changed = trio.Event()
            if isinstance(event, CancelRequest):
                log.info("host cancelled transaction %d", event.transaction_id)
                self._cancel_current()
                if self._scope is None:
                    await self._after_cancel(self._links)
            elif isinstance(event, DeviceResetRequest):
                log.info("host reset the device")
                self._reset_after = True
                self._cancel_current()
                if self._scope is None:
                    await self._after_cancel(self._links)
            elif isinstance(event, LinkLost):
                log.info("link lost")
                self._lost += 1
                self._cancel_current()
                with trio.CancelScope(shield=True):
                    await self.ops.close_session("link lost")
            elif isinstance(event, Connected):
                log.info("link up, max packet size %d", event.max_packet_size)
                self._links += 1
                if self._lost:
                    # What a lost link left. Before any loss the connection is new:
                    # the kernel may have reported the link up before serving
                    # began, and its first command may already be in hand.
                    self.conn.reset()

    def _cancel_current(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def _after_cancel(self, links: int) -> None:
        """Tear down what a cancelled transaction left on link number ``links``.

        When the link was lost and a new one came up meanwhile (a slow
        cleanup), the new link's first command may already be queued: it
        is not this transaction's to drop.
        """
        with trio.CancelScope(shield=True):
            if links == self._links:
                self.conn.reset()
                try:
                    await self.transport.abort_transfers()
                except Disconnected:
                    pass
            if self._reset_after:
                self._reset_after = False
                await self.ops.close_session("device reset")
            self.transport.set_idle(True)

    async def _link_lost(self) -> None:
        with trio.CancelScope(shield=True):
            self.conn.reset()
            self._reset_after = False
            try:
                # Half-queued IN bytes of the lost transfer must not lead
                # the first response on the next link.
                await self.transport.abort_transfers()
            except Disconnected:
                pass
            await self.ops.close_session("link lost")
            self.transport.set_idle(True)
