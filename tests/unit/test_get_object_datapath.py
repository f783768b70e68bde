"""GetObject's data path over the loopback link: the file goes to the bus
through the transport's buffers, and a file that shrinks meanwhile still
gets the data phase its header promised."""

from __future__ import annotations

import os

import trio

from mtp_responder.core.codes import OperationCode, ResponseCode
from mtp_responder.core.connection import InitiatorConnection
from mtp_responder.core.events import Command, DataChunk, DataStart, Response
from mtp_responder.core.protocol import NeedData

from .conftest import Device, still_serving

MIB = 1024 * 1024


async def handle_of(session: Device, name: str) -> int:
    for handle in await session.mtp.object_handles(session.storage_id):
        if (await session.mtp.object_info(handle)).filename == name:
            return handle
    raise AssertionError(f"{name} is not listed")


async def test_get_object_sends_the_whole_file(session: Device) -> None:
    data = os.urandom(3 * MIB + 777)
    (session.root / "big.bin").write_bytes(data)
    handle = await handle_of(session, "big.bin")
    assert await session.mtp.get_object(handle) == data


async def test_get_partial_object_sends_the_range(session: Device) -> None:
    data = os.urandom(2 * MIB)
    (session.root / "part.bin").write_bytes(data)
    handle = await handle_of(session, "part.bin")
    result = await session.mtp.transaction(OperationCode.GET_PARTIAL_OBJECT, handle, 12345, MIB + 3)
    assert result.response.ok
    assert result.response.params == (MIB + 3,)
    assert result.data == data[12345 : 12345 + MIB + 3]


async def test_a_file_truncated_while_sent_is_padded_and_answered_incomplete(
    session: Device,
) -> None:
    size = 16 * MIB
    data = os.urandom(size)
    path = session.root / "shrinks.bin"
    path.write_bytes(data)
    handle = await handle_of(session, "shrinks.bin")
    mtp = session.mtp
    conn = InitiatorConnection()
    tid = mtp.next_tid()
    await session.host.write_transfer(conn.send(Command(OperationCode.GET_OBJECT, tid, (handle,))))
    # The first piece of the data phase is on the link: the device has read
    # at most what the link holds, far less than the file, when it shrinks.
    conn.receive_data(*await session.host.read_item())
    os.truncate(path, 0)
    received = bytearray()
    announced = None
    while True:
        event = conn.next_event()
        if isinstance(event, NeedData):
            with trio.fail_after(10):  # a data phase left short would never end
                conn.receive_data(*await session.host.read_item())
        elif isinstance(event, DataStart):
            announced = event.length
        elif isinstance(event, DataChunk):
            received += event.data
        elif isinstance(event, Response):
            break
    assert announced == size
    assert len(received) == size  # the promised length, whatever the file did
    real = len(received.rstrip(b"\0"))
    assert 0 < real < size
    assert received[:real] == data[:real]
    assert event.code == ResponseCode.INCOMPLETE_TRANSFER
    await still_serving(session)
