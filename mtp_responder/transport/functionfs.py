"""MTP over a Linux USB gadget, through FunctionFS and python-functionfs.

The library writes the descriptors, opens the endpoint files and decodes ep0
events; the bulk and interrupt data move through our own kernel AIO blocks,
because the library's endpoint helpers cannot do two things MTP needs:

* back-pressure on OUT: the library resubmits an OUT buffer as soon as its
  completion callback returns, so a slow consumer would lose data or stall
  the loop.  Here a completed OUT block stays parked, its bytes untouched,
  until :meth:`FunctionFSTransport.read` hands them over;
* cancelling what is in flight (Cancel request, Device Reset): that needs the
  AIO blocks themselves, which the library keeps to itself.

Everything runs on one trio loop: the AIO eventfd (and ep0, which the kernel
also signals there) are watched with ``trio.lowlevel.wait_readable`` and the
library's non-blocking ``processEvents`` is called from that task.  No
threads touch USB.

Transfer boundaries follow the USB rules MTP relies on: a bulk transfer ends
with a short packet, so every block submitted in the middle of an IN transfer
is a whole number of packets (writes are packed into fixed-size staging
buffers), the last one may be short, and a transfer whose length is a
multiple of wMaxPacketSize gets an explicit zero-length packet.  On OUT, a
block that completes shorter than it asked for was ended by a short packet.

Each block costs a constant amount of Python work: the AIO blocks are made
once (one per buffer, and one per zero-length packet in flight) and
resubmitted as they are, and :meth:`FunctionFSTransport.write_from` reads a
file straight into the IN buffers, so GetObject data is never copied by
Python.  The eventfd's wakeups, nearly all bulk completions, only reap AIO;
ep0 events are read when ep0 itself is readable.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import errno
import fcntl
import logging
import math
import mmap
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import libaio
import trio

from . import descriptors
from .base import (
    BlockSource,
    CancelRequest,
    Chunk,
    Connected,
    ControlEvent,
    DeviceResetRequest,
    Disconnected,
    LinkLost,
    Transport,
    TransportError,
)
from .ffs_function import MTPFunction, ffs_eventfd_is_unsafe
from .ffs_function import parse_kernel_release as parse_kernel_release
from .stillimage import DeviceStatus, parse_cancel_data

_log = logging.getLogger(__name__)

DEFAULT_BUFFER_SIZE = 128 * 1024
DEFAULT_BLOCKS = 4
DEFAULT_EVENT_QUEUE = 8
DEFAULT_EVENT_TIMEOUT = 2.0

# Completion statuses that mean "the endpoint went away", not "this transfer
# failed": the host deconfigured or reset the device, or the UDC was unbound.
_LINK_ERRNOS = frozenset({errno.ESHUTDOWN, errno.ENODEV, errno.EAGAIN, errno.ECONNRESET})

# How long teardown paths wait for cancelled AIO blocks to come back.
_CANCEL_GRACE = 1.0


def needs_zlp(transfer_length: int, max_packet_size: int) -> bool:
    """Whether an IN transfer must be closed with a zero-length packet.

    A transfer ends with a short packet; when its length is a multiple of the
    packet size (including an empty transfer) only a ZLP can be that packet.
    """
    return transfer_length % max_packet_size == 0


class _BlockState(enum.Enum):
    IDLE = enum.auto()  # ours, may be submitted
    SUBMITTED = enum.auto()  # in the kernel
    FULL = enum.auto()  # completed with data the consumer has not taken yet


@dataclass(eq=False)
class _OutBlock:
    buffer: mmap.mmap
    view: memoryview
    aio: Any = None
    state: _BlockState = _BlockState.IDLE
    generation: int = 0
    length: int = 0


@dataclass(eq=False)
class _InBlock:
    """An IN buffer and the AIO block that submits it, made once and reused.

    The AIO block's buffer list is the whole buffer; only a transfer's short
    last block changes it (to a slice), and the next full block changes it
    back: a block of a long data phase costs one ``io_submit`` and nothing
    else.  ``buffer`` is ``None`` for a zero-length packet.
    """

    buffer: mmap.mmap | None
    view: memoryview | None
    aio: Any = None
    length: int = 0
    """Bytes the AIO block's buffer list holds now."""
    generation: int = 0


@dataclass(eq=False)
class _Event:
    aio: Any
    since: float
    data: bytearray = field(repr=False)


class FunctionFSTransport(Transport):
    """MTP transport on a FunctionFS mount (``<path>/ep0``, ``ep1``..``ep3``).

    Use :func:`open_functionfs`, which writes the descriptors and runs the
    event loop; the gadget can be bound to its UDC once it has returned.
    ``read`` waits for a host while there is none and raises
    :class:`Disconnected` if the link goes away while it waits for data;
    ``write`` and ``flush`` raise it at once without a configured host.

    ``buffer_size`` is the size of each AIO block (a multiple of 1024 so that
    it is a whole number of packets at every speed); ``out_blocks`` and
    ``in_blocks`` are how many are in flight per direction (``[transport]
    buffer_size`` and ``blocks_in_flight``).  Memory use is
    ``(out_blocks + in_blocks) * buffer_size``: 4 MiB with the
    configuration's defaults (512 KiB x 4 each way).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        out_blocks: int = DEFAULT_BLOCKS,
        in_blocks: int = DEFAULT_BLOCKS,
        strings: Mapping[int, str] = descriptors.DEFAULT_STRINGS,
        event_queue_size: int = DEFAULT_EVENT_QUEUE,
        event_timeout: float = DEFAULT_EVENT_TIMEOUT,
        kernel_release: str | None = None,
        function: MTPFunction | None = None,
    ) -> None:
        if buffer_size <= 0 or buffer_size % 1024:
            raise ValueError("buffer_size must be a positive multiple of 1024")
        if out_blocks < 1 or in_blocks < 1:
            raise ValueError("at least one block per direction")
        self._path = os.fspath(path)
        self._buffer_size = buffer_size
        self._n_out = out_blocks
        self._n_in = in_blocks
        self._strings = dict(strings)
        self._event_queue_size = event_queue_size
        self._event_timeout = event_timeout
        release = kernel_release if kernel_release is not None else os.uname().release
        self._unsafe_eventfd = ffs_eventfd_is_unsafe(release)
        if function is not None:
            self._unsafe_eventfd = bool(function.quirks_ffs_unsafe_eventfd)

        self._function: MTPFunction | None = None
        self._prewritten = function
        """A function whose descriptors were written before this transport
        existed (see :func:`~.ffs_function.open_function`); taken over by serve."""
        self._aio: Any = None
        self._eventfd: Any = None
        self._ep_in: Any = None
        self._ep_out: Any = None
        self._ep_int: Any = None
        self._in_address = 0
        self._out_address = 0

        # _link changes whenever the host (re)configures or drops us: a call
        # that sees it change has lost its link.  _generation changes with it
        # and with every abort: data of an older generation is void.
        self._connected = False
        self._link = 0
        self._generation = 0
        self._mps = 0
        self._status = DeviceStatus()
        # After a Cancel request, IN data of the cancelled transaction may
        # still be written until the server has reacted; drop it, the host
        # will not read it.
        self._discard_in = False

        self._out_blocks: list[_OutBlock] = []
        self._out_ready: collections.deque[_OutBlock] = collections.deque()
        self._out_error: int | None = None

        self._in_free: list[_InBlock] = []
        self._zlp_free: list[_InBlock] = []
        self._in_flight: list[_InBlock] = []
        self._in_error: int | None = None
        self._stage: _InBlock | None = None
        self._stage_fill = 0
        self._transfer_length = 0

        self._event_queue: collections.deque[bytearray] = collections.deque()
        self._event_flight: _Event | None = None

        self._lot = trio.lowlevel.ParkingLot()
        self._events_send, self._events_recv = trio.open_memory_channel[ControlEvent](math.inf)
        self._serve_scope: trio.CancelScope | None = None
        self._served = trio.Event()
        self._closed = False

    # -- Transport API -----------------------------------------------------

    @property
    def max_packet_size(self) -> int:
        """wMaxPacketSize of bulk IN on the current link; 0 before the first ENABLE."""
        return self._mps

    @property
    def connected(self) -> bool:
        return self._connected

    async def read(self) -> Chunk:
        while not self._connected:
            if self._closed:
                raise Disconnected("transport closed")
            await self._lot.park()
        link = self._link
        while True:
            if self._link != link:
                raise Disconnected("link lost during read")
            if self._out_ready:
                block = self._out_ready.popleft()
                data = bytes(block.view[: block.length])
                block.state = _BlockState.IDLE
                self._refill_out()
                return Chunk(data, end_of_transfer=block.length < self._buffer_size)
            if self._out_error is not None:
                raise _error("bulk OUT", self._out_error)
            await self._lot.park()

    async def write(self, data: bytes | memoryview, *, end_of_transfer: bool) -> None:
        link = self._require_link()
        generation = self._generation
        view = memoryview(data).cast("B")
        position = 0
        while position < len(view):
            if not await self._wait_stage(link, generation):
                return
            assert self._stage is not None and self._stage.buffer is not None
            count = min(len(view) - position, self._buffer_size - self._stage_fill)
            self._stage.buffer[self._stage_fill : self._stage_fill + count] = view[
                position : position + count
            ]
            self._stage_fill += count
            self._transfer_length += count
            position += count
            if self._stage_fill == self._buffer_size:
                self._submit_stage()
        if not end_of_transfer:
            return
        if not await self._wait_in_slot(link, generation):
            return
        if self._stage is not None:
            if self._stage_fill:
                self._submit_stage()
            else:
                self._in_free.append(self._stage)
                self._stage = None
        if needs_zlp(self._transfer_length, self._mps):
            if not await self._wait_in_slot(link, generation):
                return
            self._submit_in(self._zlp_free.pop() if self._zlp_free else self._new_zlp(), 0)
        self._transfer_length = 0

    async def write_from(self, source: BlockSource, length: int) -> int:
        """Read ``source`` straight into the IN buffers, then submit them.

        Each round takes the staging buffer and as many free buffers as the
        rest of ``length`` needs, fills them with one ``source.readinto``
        (one ``preadv`` for a file) and submits every full one; a partly
        filled one stays staged for the next write, as :meth:`write` leaves
        it.  While the source reads, the buffers submitted before are on the
        bus: disk and USB overlap.
        """
        link = self._require_link()
        generation = self._generation
        size = self._buffer_size
        done = 0
        while done < length:
            if not await self._wait_stage(link, generation):
                return done
            assert self._stage is not None and self._stage.view is not None
            blocks = [self._stage]
            fill, self._stage, self._stage_fill = self._stage_fill, None, 0
            want = length - done
            views = [self._stage_view(blocks[0], fill, min(want, size - fill))]
            room = len(views[0])
            while (
                room < want
                and self._in_free
                and len(self._in_flight) + len(blocks) < 2 * self._n_in
            ):
                block = self._in_free.pop()
                blocks.append(block)
                views.append(self._stage_view(block, 0, min(size, want - room)))
                room += len(views[-1])
            try:
                count = await source.readinto(views)
            except BaseException:
                self._restage(blocks, fill, 0, generation)
                raise
            self._restage(blocks, fill, count, generation)
            self._check_in(link)
            if self._generation != generation or self._discard_in:
                return done
            self._transfer_length += count
            done += count
            if count < room:
                break  # the source ended early
        return done

    async def flush(self) -> None:
        link = self._require_link()
        while True:
            if self._link != link:
                raise Disconnected("link lost during flush")
            if self._in_error is not None:
                raise _error("bulk IN", self._in_error)
            if not self._in_flight:
                return
            await self._lot.park()

    def send_event(self, data: bytes) -> None:
        if not self._connected or self._ep_int is None:
            _log.debug("event dropped: no host")
            return
        flight = self._event_flight
        if flight is not None and time.monotonic() - flight.since > self._event_timeout:
            _log.info(
                "interrupt IN: host did not read an event for %.1f s, dropping it",
                self._event_timeout,
            )
            self._cancel(flight.aio)
        if len(self._event_queue) >= self._event_queue_size:
            _log.info("event dropped: queue full")
            return
        self._event_queue.append(bytearray(data))
        self._pump_event()

    def control_events(self) -> AsyncIterator[ControlEvent]:
        return self._events_recv

    async def abort_transfers(self) -> None:
        self._abort_now()
        if self._aio is not None:
            with trio.move_on_after(_CANCEL_GRACE):
                while self._stale_in_kernel():
                    await self._lot.park()
            if self._stale_in_kernel():
                _log.warning("cancelled AIO blocks did not come back in %.1f s", _CANCEL_GRACE)
        self._discard_in = False
        self._refill_out()

    def set_idle(self, idle: bool) -> None:
        self._status.set_idle(idle)
        if idle:
            self._discard_in = False

    async def halt_bulk_endpoints(self) -> None:
        """Abort the transaction from the device side (e.g. a storage error).

        Halts bulk IN and OUT, which is how the device tells the host that a
        data phase will not complete; the next Get Device Status answers
        TransactionCancelled with both endpoint addresses.  The host then
        clears the halts and carries on with a new transaction.
        """
        self._require_link()
        await self.abort_transfers()
        for endpoint in (self._ep_in, self._ep_out):
            try:
                endpoint.halt()
            except OSError as exc:
                raise _error("halt", exc.errno or errno.EIO) from exc
        self._status.device_cancelled((self._in_address, self._out_address))

    async def aclose(self) -> None:
        if self._serve_scope is not None:
            self._serve_scope.cancel()
            await self._served.wait()
        else:
            self._close()

    # -- running ------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write descriptors, then process ep0 and AIO events until cancelled.

        ``task_status.started()`` is called once the descriptors are written,
        i.e. when the UDC may be bound.
        """
        self._open()
        try:
            async with trio.open_nursery() as nursery:
                self._serve_scope = nursery.cancel_scope
                assert self._function is not None
                eventfd = self._function.eventfd.fileno()
                if self._unsafe_eventfd:
                    # ep0 events come as completions of the library's AIO
                    # block on ep0: every wakeup may be one.
                    nursery.start_soon(self._watch, eventfd, self._process)
                else:
                    # The kernel signals ep0 events on the eventfd too, but
                    # only once per event: watching ep0 itself guarantees that
                    # events beyond the 4 read at a time are not left behind,
                    # and leaves the eventfd to the bulk transfers.
                    nursery.start_soon(self._watch, eventfd, self._process_aio)
                    nursery.start_soon(self._watch, self._function.ep0.fileno(), self._process)
                task_status.started()
        finally:
            self._close()
            self._served.set()

    async def _watch(self, fd: int, handle: Callable[[], None]) -> None:
        while True:
            await trio.lowlevel.wait_readable(fd)
            handle()

    def _process(self) -> None:
        """ep0 events and AIO completions."""
        assert self._function is not None
        self._function.processEvents()
        self._completions()

    def _process_aio(self) -> None:
        """AIO completions alone: the eventfd's wakeups when ep0 has a watcher
        of its own (nearly all of them come from bulk transfers)."""
        try:
            self._eventfd.read()
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                raise
        self._completions()

    def _completions(self) -> None:
        self._reap()
        self._refill_out()
        self._pump_event()
        self._lot.unpark_all()

    def _reap(self) -> None:
        try:
            self._aio.getEvents(0)
        except OSError as exc:
            if exc.errno != errno.EINTR:
                raise

    def _open(self) -> None:
        if self._function is not None or self._closed:
            raise RuntimeError("FunctionFS transport already opened")
        function = self._prewritten
        self._prewritten = None
        if function is None:
            function = MTPFunction(self._path, self._strings, self._unsafe_eventfd)
            function.__enter__()
        function.transport = self
        try:
            self._ep_in = function.getEndpoint(descriptors.EP_BULK_IN)
            self._ep_out = function.getEndpoint(descriptors.EP_BULK_OUT)
            self._ep_int = function.getEndpoint(descriptors.EP_INTERRUPT_IN)
            for endpoint in (self._ep_in, self._ep_out, self._ep_int):
                # Without O_NONBLOCK, submitting to an endpoint that is not
                # enabled (yet, or any more) blocks io_submit until the host
                # configures us again: the whole loop would hang.
                flags = fcntl.fcntl(endpoint.fileno(), fcntl.F_GETFL)
                fcntl.fcntl(endpoint.fileno(), fcntl.F_SETFL, flags | os.O_NONBLOCK)
            self._eventfd = function.eventfd
            # OUT blocks + IN blocks with a zero-length packet each + one event.
            self._aio = libaio.AIOContext(self._n_out + 2 * self._n_in + 2)
            for _ in range(self._n_out):
                buffer = mmap.mmap(-1, self._buffer_size)
                block = _OutBlock(buffer=buffer, view=memoryview(buffer))
                block.aio = libaio.AIOBlock(
                    mode=libaio.AIOBLOCK_MODE_READ,
                    target_file=self._ep_out,
                    buffer_list=(buffer,),
                    offset=0,
                    eventfd=self._eventfd,
                    onCompletion=self._out_completion(block),
                )
                self._out_blocks.append(block)
            self._in_free = [self._new_in_block() for _ in range(self._n_in)]
        except BaseException:
            function.__exit__(None, None, None)
            raise
        self._function = function
        _log.info(
            "FunctionFS %s: descriptors written (%d x %d KiB per direction, eventfd quirk %s)",
            self._path,
            self._n_in,
            self._buffer_size // 1024,
            "on" if self._unsafe_eventfd else "off",
        )

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        function, self._function = self._function, None
        if self._connected:
            self._link_lost("close")
        self._link += 1
        self._generation += 1
        if function is not None:
            for aio in self._kernel_blocks():
                self._cancel(aio)
            deadline = time.monotonic() + _CANCEL_GRACE
            while self._kernel_blocks() and time.monotonic() < deadline:
                try:
                    self._aio.getEvents(1, timeout=max(0.0, deadline - time.monotonic()))
                except OSError as exc:
                    if exc.errno != errno.EINTR:
                        raise
            if self._kernel_blocks():
                _log.error("AIO blocks still in the kernel at close; waiting for them")
            function.__exit__(None, None, None)
            self._aio.close()
        for block in self._out_blocks:
            block.view.release()
        self._events_send.close()
        self._lot.unpark_all()
        _log.info("FunctionFS %s: closed", self._path)

    # -- ep0 callbacks (run inside processEvents) -----------------------------

    def _enabled(self) -> None:
        if self._connected:
            # ENABLE without DISABLE (host re-sent SET_CONFIGURATION): what was
            # in flight belongs to the previous configuration.
            self._link_lost("ENABLE")
        try:
            in_descriptor = self._ep_in.getDescriptor()
            out_descriptor = self._ep_out.getDescriptor()
        except OSError as exc:
            # Disabled again before we got here; the DISABLE event follows.
            _log.info("ENABLE: endpoints already gone (%s)", exc)
            return
        self._mps = in_descriptor.wMaxPacketSize & 0x7FF
        self._in_address = in_descriptor.bEndpointAddress
        self._out_address = out_descriptor.bEndpointAddress
        self._connected = True
        self._link += 1
        self._generation += 1
        self._reset_data_state()
        self._status.reset()
        _log.info(
            "ENABLE: host configured us, wMaxPacketSize %d (bulk IN 0x%02x, OUT 0x%02x)",
            self._mps,
            self._in_address,
            self._out_address,
        )
        self._refill_out()
        self._emit(Connected(self._mps))

    def _link_lost(self, reason: str) -> None:
        if not self._connected:
            _log.info("%s (not connected)", reason)
            return
        _log.info("%s: link lost, aborting transfers", reason)
        self._connected = False
        self._link += 1
        self._generation += 1
        # The kernel completes whatever was queued with ESHUTDOWN; cancelling
        # as well covers UDCs that are slower to let go.
        for aio in self._kernel_blocks():
            self._cancel(aio)
        self._reset_data_state()
        self._status.reset()
        self._event_queue.clear()
        self._emit(LinkLost())
        self._lot.unpark_all()

    def _cancel_requested(self, data: bytes) -> None:
        try:
            transaction_id = parse_cancel_data(data)
        except ValueError as exc:
            _log.warning("ignoring malformed Cancel request: %s", exc)
            return
        _log.info("Cancel request for transaction %d", transaction_id)
        self._status.cancel_started()
        self._abort_now()
        self._discard_in = True
        self._emit(CancelRequest(transaction_id))

    def _device_reset_requested(self) -> None:
        _log.info("Device Reset request")
        self._abort_now()
        self._emit(DeviceResetRequest())

    # -- internals ----------------------------------------------------------

    def _emit(self, event: ControlEvent) -> None:
        with contextlib.suppress(trio.ClosedResourceError):
            self._events_send.send_nowait(event)

    def _require_link(self) -> int:
        if not self._connected:
            raise Disconnected("no host")
        return self._link

    def _reset_data_state(self) -> None:
        for block in self._out_ready:
            block.state = _BlockState.IDLE
        self._out_ready.clear()
        self._out_error = None
        self._in_error = None
        if self._stage is not None:
            self._in_free.append(self._stage)
            self._stage = None
        self._stage_fill = 0
        self._transfer_length = 0
        self._discard_in = False

    def _abort_now(self) -> None:
        """Void the transaction in flight: staged, queued and submitted data."""
        self._generation += 1
        self._reset_data_state()
        for entry in list(self._in_flight):
            self._cancel(entry.aio)
        for block in self._out_blocks:
            if block.state is _BlockState.SUBMITTED and not self._cancel(block.aio):
                # Not cancellable: either it completed a moment ago (then its
                # data is old and reaping drops it) or the UDC is filling it
                # right now and what it gets belongs to the next transaction.
                self._reap()
                if block.state is _BlockState.SUBMITTED:
                    block.generation = self._generation
        self._lot.unpark_all()

    def _cancel(self, aio: Any) -> bool:
        try:
            self._aio.cancel(aio)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            return False
        return True

    def _kernel_blocks(self) -> list[Any]:
        blocks = [b.aio for b in self._out_blocks if b.state is _BlockState.SUBMITTED]
        blocks += [entry.aio for entry in self._in_flight]
        if self._event_flight is not None:
            blocks.append(self._event_flight.aio)
        return blocks

    def _stale_in_kernel(self) -> bool:
        return any(
            b.state is _BlockState.SUBMITTED and b.generation != self._generation
            for b in self._out_blocks
        ) or any(entry.generation != self._generation for entry in self._in_flight)

    # OUT

    def _refill_out(self) -> None:
        if not self._connected or self._out_error is not None or self._function is None:
            return
        idle = [b for b in self._out_blocks if b.state is _BlockState.IDLE]
        if not idle:
            return
        for block in idle:
            block.state = _BlockState.SUBMITTED
            block.generation = self._generation
        try:
            submitted = self._aio.submit([b.aio for b in idle])
        except OSError as exc:
            _log.warning("bulk OUT: io_submit failed: %s", exc)
            submitted = 0
        for block in idle[submitted:]:
            block.state = _BlockState.IDLE

    def _out_completion(self, block: _OutBlock) -> Callable[[Any, int, int], None]:
        def completed(_aio: Any, res: int, _res2: int) -> None:
            block.state = _BlockState.IDLE
            if block.generation != self._generation or not self._connected:
                return  # data of a cancelled transaction or a lost link
            if res < 0:
                _log.info("bulk OUT completed with %s", os.strerror(-res))
                if self._out_error is None:
                    self._out_error = -res
                return
            block.state = _BlockState.FULL
            block.length = res
            self._out_ready.append(block)

        return completed

    # IN

    async def _wait_stage(self, link: int, generation: int) -> bool:
        """Make sure there is a staging buffer; False if the data is void."""
        while True:
            self._check_in(link)
            if self._generation != generation or self._discard_in:
                return False
            if self._stage is not None:
                return True
            if self._in_free and len(self._in_flight) < 2 * self._n_in:
                self._stage = self._in_free.pop()
                self._stage_fill = 0
                return True
            await self._lot.park()

    async def _wait_in_slot(self, link: int, generation: int) -> bool:
        """Wait for room for one more IN submission; False if the data is void."""
        while True:
            self._check_in(link)
            if self._generation != generation or self._discard_in:
                return False
            if len(self._in_flight) < 2 * self._n_in:
                return True
            await self._lot.park()

    def _check_in(self, link: int) -> None:
        if self._link != link:
            raise Disconnected("link lost during write")
        if self._in_error is not None:
            raise _error("bulk IN", self._in_error)

    def _new_in_block(self) -> _InBlock:
        buffer = mmap.mmap(-1, self._buffer_size)
        block = _InBlock(buffer=buffer, view=memoryview(buffer), length=self._buffer_size)
        block.aio = self._in_aio(block, (buffer,))
        return block

    def _new_zlp(self) -> _InBlock:
        """A zero-length packet's block; kept for reuse once it completes."""
        block = _InBlock(buffer=None, view=None)
        block.aio = self._in_aio(block, ())
        return block

    def _in_aio(self, block: _InBlock, buffers: tuple[mmap.mmap, ...]) -> Any:
        return libaio.AIOBlock(
            mode=libaio.AIOBLOCK_MODE_WRITE,
            target_file=self._ep_in,
            buffer_list=buffers,
            offset=0,
            eventfd=self._eventfd,
            onCompletion=lambda _aio, res, _res2: self._in_completed(block, res),
        )

    @staticmethod
    def _stage_view(block: _InBlock, start: int, count: int) -> memoryview:
        assert block.view is not None
        return block.view[start : start + count]

    def _restage(self, blocks: list[_InBlock], fill: int, count: int, generation: int) -> None:
        """After a read of ``count`` bytes into ``blocks`` (the first already
        holding ``fill``): submit the full ones, stage the partly filled one,
        give back the rest.  All go back when the data became void meanwhile."""
        if self._generation != generation or self._discard_in or not self._connected:
            self._in_free.extend(blocks)
            return
        size = self._buffer_size
        left = count
        for index, block in enumerate(blocks):
            start = fill if index == 0 else 0
            got = min(size - start, left)
            left -= got
            if start + got == size:
                self._submit_in(block, size)
            elif start + got:
                self._stage, self._stage_fill = block, start + got
            else:
                self._in_free.append(block)

    def _submit_stage(self) -> None:
        assert self._stage is not None
        block, length = self._stage, self._stage_fill
        self._stage = None
        self._stage_fill = 0
        self._submit_in(block, length)

    def _submit_in(self, block: _InBlock, length: int) -> None:
        if block.length != length:
            assert block.buffer is not None and block.view is not None
            full = length == self._buffer_size
            block.aio.buffer_list = (block.buffer,) if full else (block.view[:length],)
            block.length = length
        block.generation = self._generation
        self._in_flight.append(block)
        try:
            self._aio.submit([block.aio])
        except OSError as exc:
            self._in_flight.remove(block)
            self._release_in(block)
            self._in_error = exc.errno or errno.EIO

    def _release_in(self, block: _InBlock) -> None:
        (self._zlp_free if block.buffer is None else self._in_free).append(block)

    def _in_completed(self, entry: _InBlock, res: int) -> None:
        self._in_flight.remove(entry)
        self._release_in(entry)
        if entry.generation != self._generation:
            return
        if res < 0:
            _log.info("bulk IN completed with %s", os.strerror(-res))
            if self._in_error is None:
                self._in_error = -res
        elif res != entry.length:
            _log.warning("bulk IN: %d of %d bytes sent", res, entry.length)

    # interrupt IN

    def _pump_event(self) -> None:
        if self._event_flight is not None or not self._event_queue or not self._connected:
            return
        data = self._event_queue.popleft()
        flight = _Event(aio=None, since=time.monotonic(), data=data)
        flight.aio = libaio.AIOBlock(
            mode=libaio.AIOBLOCK_MODE_WRITE,
            target_file=self._ep_int,
            buffer_list=(data,),
            offset=0,
            eventfd=self._eventfd,
            onCompletion=lambda _aio, res, _res2: self._event_completed(flight, res),
        )
        self._event_flight = flight
        try:
            self._aio.submit([flight.aio])
        except OSError as exc:
            self._event_flight = None
            _log.info("event dropped: io_submit failed: %s", exc)

    def _event_completed(self, flight: _Event, res: int) -> None:
        if self._event_flight is flight:
            self._event_flight = None
        if res < 0:
            _log.debug("interrupt IN completed with %s", os.strerror(-res))


def _error(what: str, code: int) -> TransportError:
    message = f"{what}: {os.strerror(code)}"
    if code in _LINK_ERRNOS:
        return Disconnected(message)
    return TransportError(message)


@contextlib.asynccontextmanager
async def open_functionfs(
    path: str | os.PathLike[str], **options: Any
) -> AsyncIterator[FunctionFSTransport]:
    """Write the MTP descriptors to ``<path>/ep0`` and serve events until exit.

    Once this has entered, the UDC can be bound.  ``options`` are those of
    :class:`FunctionFSTransport`.
    """
    transport = FunctionFSTransport(path, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.serve)
        try:
            yield transport
        finally:
            await transport.aclose()
