"""An in-memory USB link for tests: a device end and a host end.

The link models bulk transfers the way the bus does: a transfer is a run of
full packets ended by a short packet, or by a zero-length packet when its
length is a multiple of the packet size.  Runs of full packets travel as one
item so that tests of large objects stay fast, but every transfer boundary
is where USB would put it, so the responder's framing (split data phases,
ZLPs, 0xFFFFFFFF lengths) is exercised for real.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import trio

from .base import (
    CancelRequest,
    Chunk,
    Connected,
    ControlEvent,
    DeviceResetRequest,
    Disconnected,
    LinkLost,
    Transport,
)

ITEM = 64 * 1024
"""Default bytes per queued item: the device's read size, like an AIO block."""


@dataclass(slots=True)
class _Item:
    data: bytes
    short: bool


def _packetise(
    data: bytes | memoryview, mps: int, *, end: bool, sent_before: int, item: int = ITEM
) -> list[_Item]:
    """Split the bytes of a transfer into items of at most ``item`` bytes;
    ``sent_before`` bytes of the same transfer were already queued (only
    whole packets, by construction)."""
    if len(data) <= item and (not end or len(data) % mps):
        # One item, as it is: a command, a response, a short data phase.
        return [_Item(data if type(data) is bytes else bytes(data), end)] if data or end else []
    items = []
    view = memoryview(data)
    while len(view) > item:
        items.append(_Item(bytes(view[:item]), False))
        view = view[item:]
    if end:
        total = sent_before + len(data)
        whole = len(view) - len(view) % mps
        if whole:
            items.append(_Item(bytes(view[:whole]), False))
        tail = bytes(view[whole:])
        if tail or total % mps == 0:
            items.append(_Item(tail, True))
    elif len(view):
        items.append(_Item(bytes(view), False))
    return items


class _Link:
    def __init__(self, max_packet_size: int, capacity: int, item_size: int = ITEM) -> None:
        self.mps = max_packet_size
        self.item = item_size
        self.out_send, self.out_recv = trio.open_memory_channel[_Item](capacity)
        self.in_send, self.in_recv = trio.open_memory_channel[_Item](capacity)
        self.event_send, self.event_recv = trio.open_memory_channel[bytes](16)
        self.control_send, self.control_recv = trio.open_memory_channel[ControlEvent](64)
        self.up = True
        self.up_event = trio.Event()
        self.up_event.set()
        self.generation = 0
        self.idle = True


class LoopbackTransport(Transport):
    """The device end."""

    def __init__(self, link: _Link) -> None:
        self._link = link
        self._in_transfer = 0  # bytes of the current IN transfer queued so far
        self._pending_in = b""  # a partial packet waiting for more bytes

    @property
    def max_packet_size(self) -> int:
        return self._link.mps

    @property
    def connected(self) -> bool:
        return self._link.up

    async def read(self) -> Chunk:
        link = self._link
        if not link.up:
            raise Disconnected("link is down")
        generation = link.generation
        item = await link.out_recv.receive()
        if generation != link.generation:
            raise Disconnected("link went down during read")
        return Chunk(item.data, item.short)

    async def write(self, data: bytes | memoryview, *, end_of_transfer: bool) -> None:
        link = self._link
        if not link.up:
            raise Disconnected("link is down")
        # Items are copies (the caller may reuse its buffer); nothing else is.
        whole = memoryview(self._pending_in + data if self._pending_in else data).cast("B")
        self._pending_in = b""
        if not end_of_transfer:
            keep = len(whole) % link.mps
            if keep:
                whole, self._pending_in = whole[: len(whole) - keep], bytes(whole[-keep:])
        generation = link.generation
        items = _packetise(
            whole, link.mps, end=end_of_transfer, sent_before=self._in_transfer, item=link.item
        )
        for item in items:
            await link.in_send.send(item)
            if generation != link.generation:
                raise Disconnected("link went down during write")
        self._in_transfer = 0 if end_of_transfer else self._in_transfer + len(whole)

    async def flush(self) -> None:
        while self._link.in_recv.statistics().current_buffer_used:
            await trio.sleep(0.001)

    def send_event(self, data: bytes) -> None:
        try:
            self._link.event_send.send_nowait(data)
        except trio.WouldBlock:
            pass

    async def control_events(self) -> AsyncIterator[ControlEvent]:
        async for event in self._link.control_recv:
            yield event

    async def abort_transfers(self) -> None:
        link = self._link
        self._drain(link.in_recv)
        self._drain(link.out_recv)
        self._in_transfer = 0
        self._pending_in = b""

    @staticmethod
    def _drain(channel: trio.MemoryReceiveChannel[_Item]) -> None:
        while True:
            try:
                channel.receive_nowait()
            except trio.WouldBlock:
                return

    def set_idle(self, idle: bool) -> None:
        self._link.idle = idle


class LoopbackHost:
    """The host end: what a USB host controller lets an initiator do."""

    def __init__(self, link: _Link) -> None:
        self._link = link

    @property
    def max_packet_size(self) -> int:
        return self._link.mps

    async def write_transfer(self, data: bytes, *, end: bool = True, sent_before: int = 0) -> None:
        """Send bytes on bulk OUT; ``end`` terminates the transfer."""
        link = self._link
        for item in _packetise(data, link.mps, end=end, sent_before=sent_before, item=link.item):
            await link.out_send.send(item)

    async def read_transfer(self, limit: int | None = None) -> bytes:
        """Read one whole IN transfer (up to its short packet)."""
        parts = []
        size = 0
        while True:
            item = await self._link.in_recv.receive()
            parts.append(item.data)
            size += len(item.data)
            if item.short:
                return b"".join(parts)
            if limit is not None and size >= limit:
                return b"".join(parts)

    @property
    def out_queued(self) -> int:
        """Packets the host has written on bulk OUT that the device has not taken yet."""
        return self._link.out_recv.statistics().current_buffer_used

    @property
    def in_queued(self) -> int:
        """Pieces of IN transfers the device has sent and the host not read yet."""
        return self._link.in_recv.statistics().current_buffer_used

    async def read_item(self) -> tuple[bytes, bool]:
        """The next piece of an IN transfer and whether it ended it."""
        item = await self._link.in_recv.receive()
        return item.data, item.short

    def read_event_nowait(self) -> bytes | None:
        try:
            return self._link.event_recv.receive_nowait()
        except trio.WouldBlock:
            return None

    async def read_event(self) -> bytes:
        return await self._link.event_recv.receive()

    def cancel(self, transaction_id: int) -> None:
        """Class request 0x64."""
        self._link.idle = False
        self._link.control_send.send_nowait(CancelRequest(transaction_id))

    def device_reset(self) -> None:
        """Class request 0x66."""
        self._link.idle = False
        self._link.control_send.send_nowait(DeviceResetRequest())

    def device_status_busy(self) -> bool:
        """Class request 0x67: True while the device reports Device Busy."""
        return not self._link.idle

    def unplug(self) -> None:
        """Pull the cable: the device reports Device Busy until it has cleaned up."""
        link = self._link
        link.up = False
        link.idle = False
        link.up_event = trio.Event()
        link.generation += 1
        LoopbackTransport._drain(link.out_recv)
        LoopbackTransport._drain(link.in_recv)
        link.control_send.send_nowait(LinkLost())
        # Wake a device blocked on an empty OUT pipe so it notices.
        try:
            link.out_send.send_nowait(_Item(b"", True))
        except trio.WouldBlock:
            pass

    def plug(self) -> None:
        link = self._link
        LoopbackTransport._drain(link.out_recv)
        LoopbackTransport._drain(link.in_recv)
        link.up = True
        link.up_event.set()
        link.control_send.send_nowait(Connected(link.mps))


def loopback_pair(
    max_packet_size: int = 512, capacity: int = 64, item_size: int = ITEM
) -> tuple[LoopbackTransport, LoopbackHost]:
    """A linked device end and host end.

    ``item_size`` is how many bytes of a transfer travel as one item (a
    multiple of ``max_packet_size``): what one read on the device returns at
    most, as the size of an AIO block does over FunctionFS.
    """
    if item_size <= 0 or item_size % max_packet_size:
        raise ValueError("item_size must be a positive multiple of max_packet_size")
    link = _Link(max_packet_size, capacity, item_size)
    return LoopbackTransport(link), LoopbackHost(link)
