"""The responder's main loop: transport bytes in, operations dispatched.

One transaction runs at a time (MTP is strictly sequential), inside its own
cancel scope so that a host Cancel, a Device Reset or an unplug can abort it
wherever it is blocked: on the bus, on the disk or on the backup engine.
Cleanup (removing a half-received file) runs shielded, after which the
transport is flushed and Get Device Status reports idle again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import trio

from .core.codes import ContainerType, EventCode, OperationCode, ResponseCode, try_enum
from .core.container import build_params_container, data_header
from .core.protocol import (
    NEED_DATA,
    BadContainer,
    Command,
    Connection,
    DataChunk,
    DataEnd,
    DataStart,
    Event,
)
from .operations import Operations, Response
from .provider import ProviderError
from .transport.base import (
    CancelRequest,
    Connected,
    DeviceResetRequest,
    Disconnected,
    LinkLost,
    Transport,
)

log = logging.getLogger(__name__)

MAX_DATASET = 16 * 1024 * 1024
"""Largest dataset (not object) we accept from the host, against memory abuse."""


class _Abort(Exception):
    """The transaction cannot continue on the wire (host skipped a phase)."""


@dataclass
class _Pending:
    event: Event


class Transaction:
    """One operation's view of the wire: its data phase and nothing else."""

    def __init__(self, server: Server, command: Command) -> None:
        self._server = server
        self.command = command
        self.code = command.code
        self.transaction_id = command.transaction_id
        self.params = command.params + (0,) * (5 - len(command.params))
        self.nparams = len(command.params)
        self.data_in_done = False
        self.data_sent = False
        self.incomplete = False
        self.data_in_started = False

    # -- host to device -------------------------------------------------------

    async def data_chunks(self) -> AsyncIterator[bytes]:
        """The host's data phase, chunk by chunk.

        ``self.incomplete`` is set when the transfer ended early.
        """
        server = self._server
        if self.data_in_done:
            return
        if not self.data_in_started:  # else resume a phase a caller left (drain)
            event = await server.next_event()
            if not isinstance(event, DataStart):
                self.data_in_done = True
                if isinstance(event, BadContainer) and event.transaction_id == self.transaction_id:
                    # This transaction's data container was broken: answer it once.
                    raise ProviderError(ResponseCode(event.response), event.reason)
                server.push_back(event)
                raise ProviderError(ResponseCode.INVALID_DATASET, "expected a data phase")
            self.data_in_started = True
            if event.transaction_id != self.transaction_id:
                await self.drain()
                raise ProviderError(
                    ResponseCode.INVALID_TRANSACTION_ID,
                    f"data phase for transaction {event.transaction_id}",
                )
        while True:
            event = await server.next_event()
            if isinstance(event, DataChunk):
                yield event.data
            elif isinstance(event, DataEnd):
                self.data_in_done = True
                self.incomplete = not event.complete
                return
            else:  # a new container inside a data phase: the framing broke
                server.push_back(event)
                self.data_in_done = True
                self.incomplete = True
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
        if self.data_in_done:
            return
        async for _ in self.data_chunks():
            pass

    # -- device to host -------------------------------------------------------

    async def send(self, payload: bytes) -> None:
        transport = self._server.transport
        self.data_sent = True
        await transport.write(
            data_header(self.code, self.transaction_id, len(payload)) + payload,
            end_of_transfer=True,
        )

    async def send_stream(self, length: int, chunks: AsyncIterator[bytes]) -> int:
        """Send ``length`` bytes from ``chunks``; return how many were real.

        The data phase length is promised in the header, so a source that
        falls short is padded (and the caller answers with an error) and
        one that runs long is cut.
        """
        transport = self._server.transport
        self.data_sent = True
        header = data_header(self.code, self.transaction_id, length)
        remaining = length
        real = 0
        pending: bytes | memoryview = header
        try:
            async for chunk in chunks:
                if remaining <= 0:
                    break
                if len(chunk) > remaining:
                    chunk = chunk[:remaining]
                remaining -= len(chunk)
                real += len(chunk)
                if pending:
                    chunk = bytes(pending) + bytes(chunk)
                    pending = b""
                await transport.write(chunk, end_of_transfer=remaining == 0)
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
        if remaining > 0 or pending:
            filler = bytes(pending)
            while remaining > 0:
                step = min(remaining, 1 << 20)
                remaining -= step
                await transport.write(filler + bytes(step), end_of_transfer=remaining == 0)
                filler = b""
            if filler:
                await transport.write(filler, end_of_transfer=True)
        return real


class Server:
    """Runs the responder on one transport until cancelled."""

    def __init__(self, operations: Operations, transport: Transport) -> None:
        self.ops = operations
        self.transport = transport
        self.conn = Connection()
        self._pushed: list[Event] = []
        self._scope: trio.CancelScope | None = None
        self._reset_after: bool = False
        self._link_changed = trio.Event()
        self._last_answered: int | None = None

    # -- events from the wire -----------------------------------------------

    async def next_event(self) -> Event:
        if self._pushed:
            return self._pushed.pop()
        while True:
            event = self.conn.next_event()
            if event is not NEED_DATA:
                assert isinstance(event, Event)
                return event
            chunk = await self.transport.read()
            self.conn.receive_data(chunk.data, chunk.end_of_transfer)

    def push_back(self, event: Event) -> None:
        self._pushed.append(event)

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
                    if event.transaction_id is not None and event.code is not None:
                        await self._respond(event.code, event.transaction_id, event.response, ())
                elif isinstance(event, DataStart):
                    await self._stray_data(event)
                # Stray DataChunk/DataEnd cannot occur outside a DataStart.
            except Disconnected:
                await self._link_lost()
                while not self.transport.connected:
                    await self._link_changed.wait()

    async def _stray_data(self, start: DataStart) -> None:
        """A data phase nobody asked for: drop it, answer its transaction."""
        log.warning("data phase without a command (transaction %d)", start.transaction_id)
        with trio.CancelScope() as scope:  # a host Cancel ends the wait for its end
            self._scope = scope
            try:
                while True:
                    event = await self.next_event()
                    if isinstance(event, DataEnd):
                        break
                    if not isinstance(event, DataChunk):
                        self.push_back(event)
                        break
            finally:
                self._scope = None
            if start.transaction_id != self._last_answered:
                # Else it trails a command that took no data: one answer per transaction.
                code = ResponseCode.GENERAL_ERROR
                await self._respond(start.code, start.transaction_id, code, ())
        if scope.cancelled_caught:
            await self._after_cancel()

    async def _transaction(self, command: Command) -> None:
        tx = Transaction(self, command)
        name = try_enum(OperationCode, command.code)
        log.debug("-> %s tid=%d params=%s", name, command.transaction_id, command.params)
        response: Response | None = None
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                response = await self.ops.dispatch(tx)
            except _Abort:
                response = None
            finally:
                self._scope = None
            if self.ops.expects_data(command.code) and not tx.data_in_done:
                try:
                    await tx.drain()
                except ProviderError:
                    pass
            if response is not None:
                code, params = response
                log.debug("<- %s %s", try_enum(ResponseCode, code), params)
                await self._respond(command.code, command.transaction_id, code, params)
        if scope.cancelled_caught:
            await self._after_cancel()

    async def _respond(
        self, op_code: int, tid: int, code: int, params: tuple[int, ...]
    ) -> None:
        del op_code
        self._last_answered = tid
        await self.transport.write(
            build_params_container(ContainerType.RESPONSE, code, tid, params),
            end_of_transfer=True,
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
                    await self._after_cancel()
            elif isinstance(event, DeviceResetRequest):
                log.info("host reset the device")
                self._reset_after = True
                self._cancel_current()
                if self._scope is None:
                    await self._after_cancel()
            elif isinstance(event, LinkLost):
                log.info("link lost")
                self._cancel_current()
                with trio.CancelScope(shield=True):
                    await self.ops.close_session("link lost")
            elif isinstance(event, Connected):
                log.info("link up, max packet size %d", event.max_packet_size)
                self.conn.reset()
                self._pushed.clear()

    def _cancel_current(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def _after_cancel(self) -> None:
        with trio.CancelScope(shield=True):
            self.conn.reset()
            self._pushed.clear()
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
            self._pushed.clear()
            self._reset_after = False
            try:
                # Half-queued IN bytes of the lost transfer must not lead
                # the first response on the next link.
                await self.transport.abort_transfers()
            except Disconnected:
                pass
            await self.ops.close_session("link lost")
            self.transport.set_idle(True)
