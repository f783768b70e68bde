"""A lockstep OBEX client on a blocking TCP socket, for what obexftp cannot do on cue.

obexftp cannot be stopped at a chosen packet; this client (the protocol
core's client role over a socket) can: it drops the connection with a TCP
reset in the middle of a GET or a PUT, or sends bytes no client would.
"""

from __future__ import annotations

import socket
import struct

from obex_backup_server.core.client import ClientConnection
from obex_backup_server.core.codes import (
    FOLDER_BROWSING_UUID,
    HeaderId,
    Opcode,
    ResponseCode,
    SetPathFlag,
)
from obex_backup_server.core.connection import NEED_DATA
from obex_backup_server.core.headers import Header
from obex_backup_server.core.packets import ResponsePacket, SetPathFields


class WireClient:
    def __init__(self, port: int, *, max_packet_length: int = 1024) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.conn = ClientConnection(max_packet_length=max_packet_length)

    def request(
        self,
        opcode: int,
        headers: list[Header] | None = None,
        *,
        setpath: SetPathFields | None = None,
        quote_id: bool = True,
    ) -> ResponsePacket:
        packet = self.conn.request(opcode, headers or [], setpath=setpath, quote_id=quote_id)
        self.sock.sendall(packet)
        while True:
            response = self.conn.next_response()
            if response is not NEED_DATA:
                assert isinstance(response, ResponsePacket)
                return response
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            self.conn.receive_data(data)

    def connect(self) -> None:
        response = self.request(Opcode.CONNECT, [Header(HeaderId.TARGET, FOLDER_BROWSING_UUID)])
        assert response.code == ResponseCode.SUCCESS

    def cd(self, name: str) -> int:
        flags = SetPathFlag.DONT_CREATE
        fields = SetPathFields(flags, 0)
        return self.request(Opcode.SETPATH, [Header(HeaderId.NAME, name)], setpath=fields).code

    def reset(self) -> None:
        """Drop the connection with a TCP RST, as a cable pulled or a client killed does."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()
