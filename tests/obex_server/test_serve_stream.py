"""``serve_stream`` serves any trio stream (the USB tty's too), not only TCP connections.

Here the client is the protocol core's client role on one end of an
in-memory stream pair, the server the real one on the other, over a real
engine.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import trio
import trio.testing

from obex_backup_server.config import ObexConfig
from obex_backup_server.core.client import ClientConnection
from obex_backup_server.core.codes import FOLDER_BROWSING_UUID, HeaderId, Opcode, ResponseCode
from obex_backup_server.core.connection import NEED_DATA
from obex_backup_server.core.headers import Header
from obex_backup_server.core.listing import FOLDER_LISTING_TYPE
from obex_backup_server.core.packets import ResponsePacket
from obex_backup_server.server import ObexBackupServer
from tests.engine.conftest import EngineProcess


class StreamClient:
    def __init__(self, stream: trio.StapledStream) -> None:
        self.stream = stream
        self.conn = ClientConnection(max_packet_length=4096)

    async def request(self, opcode: int, headers: list[Header] | None = None) -> ResponsePacket:
        await self.stream.send_all(self.conn.request(opcode, headers or []))
        while True:
            response = self.conn.next_response()
            if response is not NEED_DATA:
                assert isinstance(response, ResponsePacket)
                return response
            data = await self.stream.receive_some(65536)
            assert data, "the server closed the stream"
            self.conn.receive_data(bytes(data))

    async def connect(self) -> int:
        headers = [Header(HeaderId.TARGET, FOLDER_BROWSING_UUID)]
        return (await self.request(Opcode.CONNECT, headers)).code


async def start(nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess) -> ObexBackupServer:
    config = ObexConfig(
        listen=None,
        socket=engine.config.socket_path,
        spool_dir=tmp_path / "spool",
        space_path=str(tmp_path),
        busy_wait=0.0,
    )
    server = ObexBackupServer(config)
    await nursery.start(server.run)
    return server


def open_client(nursery: trio.Nursery, server: ObexBackupServer) -> StreamClient:
    client_end, server_end = trio.testing.memory_stream_pair()
    nursery.start_soon(server.serve_stream, server_end)
    return StreamClient(client_end)


async def test_a_session_over_a_memory_stream(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess
) -> None:
    server = await start(nursery, tmp_path, engine)
    client = open_client(nursery, server)
    assert await client.connect() == ResponseCode.SUCCESS
    type_header = Header(HeaderId.TYPE, FOLDER_LISTING_TYPE.encode() + b"\0")
    response = await client.request(Opcode.GET_FINAL, [type_header])
    assert response.code == ResponseCode.SUCCESS
    [body] = [h.value for h in response.headers if h.id == HeaderId.END_OF_BODY]
    assert isinstance(body, bytes)
    assert [e.get("name") for e in ET.fromstring(body)] == ["Backup", "Incremental", "Restore"]
    assert (await client.request(Opcode.DISCONNECT)).code == ResponseCode.SUCCESS
    # The server closes its end when the session is over and the client has gone.
    await client.stream.send_eof()
    with trio.fail_after(10):
        assert await client.stream.receive_some(10) == b""


async def test_with_no_busy_wait_a_second_client_is_refused_at_once_and_the_next_served(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess
) -> None:
    server = await start(nursery, tmp_path, engine)
    first = open_client(nursery, server)
    assert await first.connect() == ResponseCode.SUCCESS
    second = open_client(nursery, server)
    with trio.fail_after(5):
        assert await second.connect() == ResponseCode.SERVICE_UNAVAILABLE
    assert (await first.request(Opcode.DISCONNECT)).code == ResponseCode.SUCCESS
    await first.stream.aclose()
    with trio.fail_after(10):
        while True:
            third = open_client(nursery, server)
            code = await third.connect()
            if code == ResponseCode.SUCCESS:
                break
            await trio.sleep(0.05)  # the first session's end is still being cleaned up
