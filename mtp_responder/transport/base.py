"""The contract between the responder and whatever carries its bytes.

MTP over USB is a stream of bulk *transfers*: a transfer ends with a short
packet (or a zero-length packet when its length is a multiple of
wMaxPacketSize).  The protocol core needs to know where transfers end (a data
phase of unknown length, 0xFFFFFFFF, ends with a short packet), so the
transport reports transfer ends explicitly instead of hiding them behind a
plain byte stream.

Class requests on the control endpoint (Cancel, Device Reset) and link state
changes (cable pulled, host reset) arrive out of band, on `control_events()`,
while a bulk transfer may be blocked.  The server watches both at once and
cancels the transaction in flight when the host asks.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

WRITE_FROM_BLOCK = 1024 * 1024
"""Bytes per read of :meth:`Transport.write_from`'s generic implementation."""


class TransportError(Exception):
    """The link cannot carry the transfer (disconnected, reset, halted)."""


class Disconnected(TransportError):
    """The host went away (unplug, UDC unbind, DISABLE) during a transfer."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes read from the OUT pipe.

    ``end_of_transfer`` is true when a short packet (possibly zero-length)
    ended the USB transfer after ``data``.
    """

    data: bytes
    end_of_transfer: bool


@runtime_checkable
class BlockSource(Protocol):
    """Data that can be read straight into the caller's buffers (a file).

    :meth:`Transport.write_from` hands it the transport's own buffers, so a
    data phase goes from the disk to the bus without a ``bytes`` object per
    block.
    """

    async def readinto(self, buffers: Sequence[memoryview]) -> int:
        """Fill ``buffers`` in order; the number of bytes read.

        Fewer than their total only at the end of the data; 0 when there is
        nothing more.
        """
        ...


class ControlEvent:
    """Something that happened on the control endpoint or the link."""


@dataclass(frozen=True, slots=True)
class Connected(ControlEvent):
    """The host configured the device (FunctionFS ENABLE); a fresh start."""

    max_packet_size: int


@dataclass(frozen=True, slots=True)
class LinkLost(ControlEvent):
    """DISABLE / UNBIND / suspend-to-nothing: everything in flight is void."""


@dataclass(frozen=True, slots=True)
class CancelRequest(ControlEvent):
    """Still-image class request 0x64: the host abandons ``transaction_id``."""

    transaction_id: int


@dataclass(frozen=True, slots=True)
class DeviceResetRequest(ControlEvent):
    """Still-image class request 0x66: abort and close the session."""


class Transport(abc.ABC):
    """A bidirectional MTP pipe: bulk OUT, bulk IN, interrupt IN, control.

    Implementations: :mod:`.loopback` (in-memory, for tests) and
    :mod:`.functionfs` (a Linux USB gadget).
    """

    @property
    @abc.abstractmethod
    def max_packet_size(self) -> int:
        """wMaxPacketSize of the bulk endpoints on the current link."""

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """Whether a host has configured the device (the link is up)."""

    @abc.abstractmethod
    async def read(self) -> Chunk:
        """Wait for the next bytes from the host.

        Raises :class:`Disconnected` when the link is down or goes away
        while waiting; the caller then waits for :class:`Connected` (or
        :attr:`connected`) before reading again.
        """

    @abc.abstractmethod
    async def write(self, data: bytes | memoryview, *, end_of_transfer: bool) -> None:
        """Queue ``data`` on the bulk IN pipe.

        A transfer is the concatenation of writes up to the one flagged
        ``end_of_transfer``; the transport terminates it with a zero-length
        packet when its total length is a multiple of the packet size.
        Returns when the transport can take more (back-pressure), not
        necessarily when the host has read the bytes.  Raises
        :class:`Disconnected` if the link is down or goes down meanwhile.
        """

    async def write_from(self, source: BlockSource, length: int) -> int:
        """Queue up to ``length`` bytes read from ``source`` on the bulk IN pipe.

        Like :meth:`write` without ``end_of_transfer``: the transfer goes on
        (a write with ``end_of_transfer`` ends it).  Returns how many bytes
        ``source`` gave, fewer than ``length`` only when it ended early.
        Transports that own DMA buffers read into those; this generic form
        reads into one reused buffer and writes it.
        """
        buffer: bytearray | None = getattr(self, "_write_from_buffer", None)
        if buffer is None:
            buffer = bytearray(WRITE_FROM_BLOCK)
            self._write_from_buffer = buffer
        view = memoryview(buffer)
        done = 0
        while done < length:
            block = view[: min(len(view), length - done)]
            count = await source.readinto((block,))
            if count <= 0:
                break
            await self.write(block[:count], end_of_transfer=False)
            done += count
        return done

    @abc.abstractmethod
    async def flush(self) -> None:
        """Wait until every queued IN byte has been taken by the host."""

    @abc.abstractmethod
    def send_event(self, data: bytes) -> None:
        """Queue an event container on the interrupt pipe; never blocks.

        Events that cannot be delivered (no host, queue full) are dropped:
        events are hints, a host that misses one re-reads the listing.
        """

    @abc.abstractmethod
    def control_events(self) -> AsyncIterator[ControlEvent]:
        """Out-of-band events, in order of arrival."""

    @abc.abstractmethod
    async def abort_transfers(self) -> None:
        """Drop queued IN data and pending OUT data of a cancelled transaction.

        After a Cancel request the host discards what it already received
        and sends nothing more for the cancelled transaction; the transport
        must not deliver stale OUT bytes to the next command.
        """

    @abc.abstractmethod
    def set_idle(self, idle: bool) -> None:
        """Tell the transport whether a cancel is still being processed.

        Get Device Status (class request 0x67) answers Device Busy until the
        responder has finished tearing the cancelled transaction down.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release the endpoints."""
