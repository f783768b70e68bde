"""The FunctionFS transport's IN data path, with real kernel AIO and no gadget.

The bulk IN endpoint is stood in for by one end of a ``SOCK_SEQPACKET``
socket pair: kernel AIO writes to it like to an endpoint file, and every
submitted block arrives as one message, a zero-length packet as an empty one.
So the blocks a transfer is cut into, the ZLP rule and the reuse of AIO
blocks are seen exactly as the transport submits them.  File data comes from
the Files provider's reader, as in a GetObject.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import libaio
import pytest
import trio

from data_providers.files.storage import FileReader
from mtp_responder.provider import ProviderError
from mtp_responder.transport.functionfs import FunctionFSTransport

BLOCK = 4096
MPS = 512
HEADER = b"H" * 12


class Endpoint:
    """The host's side of the stand-in endpoint: one message per AIO block."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock

    async def blocks(self, until_short: bool = True) -> list[bytes]:
        """Blocks up to and including the one that ends the transfer."""
        got = []
        while True:
            with trio.fail_after(5):
                data = await self.sock.recv(1 << 20)
            got.append(data)
            if until_short and len(data) % MPS:
                return got
            if not data:  # a zero-length packet
                return got


@asynccontextmanager
async def piped(blocks: int = 2) -> AsyncIterator[tuple[FunctionFSTransport, Endpoint]]:
    """A connected transport whose bulk IN is a socket, its AIO reaped by its own watcher."""
    device, host = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    transport = FunctionFSTransport(
        "/nonexistent", buffer_size=BLOCK, in_blocks=blocks, out_blocks=1, kernel_release="6.1.0"
    )
    transport._ep_in = device
    transport._eventfd = libaio.EventFD(flags=libaio.EFD_NONBLOCK)  # as the library makes it
    transport._aio = libaio.AIOContext(4 * blocks + 4)
    transport._in_free = [transport._new_in_block() for _ in range(blocks)]
    transport._mps = MPS
    transport._connected = True
    transport._link = 1
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                transport._watch, transport._eventfd.fileno(), transport._process_aio
            )
            yield transport, Endpoint(trio.socket.from_stdlib_socket(host))
            nursery.cancel_scope.cancel()
    finally:
        transport._aio.close()
        device.close()
        host.close()


def aio_blocks(transport: FunctionFSTransport) -> set[int]:
    free = transport._in_free + ([transport._stage] if transport._stage else [])
    return {id(block.aio) for block in free}


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(5 * BLOCK + 300)
    path = tmp_path / "object.bin"
    path.write_bytes(data)
    return path, data


async def send_phase(
    transport: FunctionFSTransport, path: Path, length: int, offset: int = 0
) -> int:
    """What GetObject does: header, the file straight into the buffers, end."""
    await transport.write(HEADER, end_of_transfer=False)
    sent = await transport.write_from(FileReader(str(path), offset, length), length)
    await transport.write(b"", end_of_transfer=True)
    return sent


@pytest.mark.parametrize(
    "length",
    [
        0,
        100,  # header and payload in one short block
        BLOCK - 12,  # exactly one full block: a ZLP follows
        BLOCK - 12 + MPS,  # one full block, then a whole packet: a ZLP follows
        3 * BLOCK,  # three blocks and 12 bytes
        5 * BLOCK + 300,  # the whole file, more than the buffers in flight
    ],
)
async def test_file_data_goes_out_in_full_blocks(
    data_file: tuple[Path, bytes], length: int
) -> None:
    path, data = data_file
    async with piped() as (transport, host):
        sent = await send_phase(transport, path, length)
        blocks = await host.blocks()
    assert sent == length
    assert b"".join(blocks) == HEADER + data[:length]
    # Every data block but the last is a whole buffer; a zero-length packet
    # follows exactly when the transfer is a whole number of packets.
    data_blocks = [block for block in blocks if block]
    assert all(len(block) == BLOCK for block in data_blocks[:-1])
    assert len(data_blocks) == -(-(12 + length) // BLOCK)
    zlp = (12 + length) % MPS == 0
    assert blocks[len(data_blocks) :] == ([b""] if zlp else [])


async def test_a_partial_read_starts_at_its_offset(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    async with piped() as (transport, host):
        assert await send_phase(transport, path, 2 * BLOCK, offset=777) == 2 * BLOCK
        blocks = await host.blocks()
    assert b"".join(blocks) == HEADER + data[777 : 777 + 2 * BLOCK]


async def test_aio_blocks_are_made_once_and_reused(data_file: tuple[Path, bytes]) -> None:
    path, data = data_file
    async with piped(blocks=2) as (transport, host):
        before = aio_blocks(transport)
        assert len(before) == 2
        for _ in range(3):
            await send_phase(transport, path, len(data))
            assert b"".join(await host.blocks()) == HEADER + data
            await transport.flush()
            assert aio_blocks(transport) == before
        # A zero-length packet's block is kept too, not made per transfer.
        await transport.write(b"x" * BLOCK, end_of_transfer=True)
        await host.blocks()
        await transport.flush()
        zlps = {id(block.aio) for block in transport._zlp_free}
        await transport.write(b"x" * BLOCK, end_of_transfer=True)
        await host.blocks()
        await transport.flush()
        assert {id(block.aio) for block in transport._zlp_free} == zlps
        assert len(zlps) == 1


async def test_a_file_that_shrank_leaves_the_transfer_open_for_padding(
    data_file: tuple[Path, bytes],
) -> None:
    path, data = data_file
    async with piped() as (transport, host):
        await transport.write(HEADER, end_of_transfer=False)
        asked = len(data) + 1000  # announced more than the file holds
        sent = await transport.write_from(FileReader(str(path), 0, asked), asked)
        assert sent == len(data)
        await transport.write(bytes(asked - sent), end_of_transfer=True)
        blocks = await host.blocks()
    assert b"".join(blocks) == HEADER + data + bytes(1000)
    assert all(len(block) == BLOCK for block in blocks[:-1])


async def test_a_source_that_fails_keeps_what_was_staged(tmp_path: Path) -> None:
    async with piped() as (transport, host):
        await transport.write(HEADER, end_of_transfer=False)
        with pytest.raises(ProviderError):
            await transport.write_from(FileReader(str(tmp_path / "missing"), 0, 100), 100)
        # The header is still staged; the data phase is finished with padding.
        await transport.write(bytes(100), end_of_transfer=True)
        blocks = await host.blocks()
        await transport.flush()
        assert len(transport._in_free) == 2
    assert blocks == [HEADER + bytes(100)]


class CancelledWhileReading:
    """A file whose second read is overtaken by the host's Cancel request."""

    def __init__(self, transport: FunctionFSTransport, path: Path, length: int) -> None:
        self.transport = transport
        self.reader = FileReader(str(path), 0, length)
        self.reads = 0

    async def readinto(self, buffers: Sequence[memoryview]) -> int:
        self.reads += 1
        if self.reads == 2:
            # What ep0 delivers while the disk read is in a worker thread.
            self.transport._cancel_requested(struct.pack("<HI", 0x4001, 1))
        return await self.reader.readinto(buffers)


async def test_a_cancel_during_a_read_voids_the_data_and_frees_the_buffers(
    data_file: tuple[Path, bytes],
) -> None:
    path, data = data_file
    async with piped(blocks=1) as (transport, host):
        source = CancelledWhileReading(transport, path, len(data))
        await transport.write(HEADER, end_of_transfer=False)
        sent = await transport.write_from(source, len(data))
        assert source.reads == 2  # it stopped at the read the cancel overtook
        assert sent < len(data)
        await transport.write(bytes(len(data) - sent), end_of_transfer=True)  # dropped
        await transport.abort_transfers()
        transport.set_idle(True)
        assert len(transport._in_free) == 1 and transport._stage is None
        # The next transaction's data goes out whole, from a clean transfer.
        await transport.write(b"next", end_of_transfer=True)
        blocks = []
        while not blocks or blocks[-1] != b"next":
            blocks += await host.blocks()
    # Before the cancel only the first, full block went out; nothing after it.
    assert blocks == [HEADER + data[: BLOCK - 12], b"next"]
