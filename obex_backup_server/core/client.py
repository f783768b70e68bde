"""The client role of an OBEX connection, without I/O.

What a test client or a PC tool drives: :meth:`ClientConnection.request`
returns the bytes of one request packet, :meth:`ClientConnection.receive_data`
takes the server's bytes and :meth:`ClientConnection.next_response` hands over
the one response packet each request gets.  Strict about the server: a
response nobody asked for, one longer than the client announced, or one that
does not parse is a :class:`RemoteProtocolError`.

It keeps what CONNECT settles: the packet length (the smaller of both ends'),
and the Connection-Id, which it quotes first in every later request.
"""

from __future__ import annotations

from .codes import (
    MAX_PACKET_LENGTH,
    MIN_PACKET_LENGTH,
    OBEX_VERSION,
    HeaderId,
    Opcode,
    ResponseCode,
)
from .connection import NEED_DATA, Signal
from .errors import LocalProtocolError, RemoteProtocolError
from .headers import Header, number
from .packets import PREFIX, ConnectFields, ResponsePacket, SetPathFields, build_request
from .packets import parse_response as _parse_response


class ClientConnection:
    """One OBEX session, seen from the client: lockstep, one request at a time."""

    def __init__(self, *, max_packet_length: int = MAX_PACKET_LENGTH) -> None:
        if not MIN_PACKET_LENGTH <= max_packet_length <= MAX_PACKET_LENGTH:
            raise ValueError(f"max packet length must be 255..65535, not {max_packet_length}")
        self.max_packet_length = max_packet_length
        self.packet_length = MIN_PACKET_LENGTH
        """The negotiated maximum packet length (255 until CONNECT)."""
        self.connected = False
        self.connection_id: int | None = None
        self.waiting: int | None = None
        """The operation code of the request awaiting its response, if any."""
        self._buffer = bytearray()

    def request(
        self,
        opcode: int,
        headers: tuple[Header, ...] | list[Header] = (),
        *,
        setpath: SetPathFields | None = None,
        quote_id: bool = True,
    ) -> bytes:
        """The bytes of one request packet; LocalProtocolError while one awaits its answer."""
        if self.waiting is not None:
            raise LocalProtocolError(
                f"request 0x{self.waiting:02X} still awaits its response: OBEX is lockstep"
            )
        connect = None
        if opcode == Opcode.CONNECT:
            connect = ConnectFields(OBEX_VERSION, 0, self.max_packet_length)
        elif quote_id and self.connection_id is not None:
            headers = [Header(HeaderId.CONNECTION_ID, self.connection_id), *headers]
        packet = build_request(opcode, headers, connect=connect, setpath=setpath)
        limit = self.packet_length if opcode != Opcode.CONNECT else MAX_PACKET_LENGTH
        if len(packet) > limit:
            raise LocalProtocolError(
                f"request of {len(packet)} bytes is longer than the {limit} negotiated"
            )
        self.waiting = opcode
        return packet

    def body_room(self, headers: bytes | int = 0) -> int:
        """Body bytes one request packet takes beside ``headers`` (bytes or their length)."""
        used = headers if isinstance(headers, int) else len(headers)
        quoted = 5 if self.connection_id is not None else 0
        return max(0, self.packet_length - PREFIX.size - quoted - used - 3)

    def receive_data(self, data: bytes) -> None:
        """Bytes from the server (``b""`` at the end is not a response and is ignored)."""
        if data and self.waiting is None and not self._buffer:
            raise RemoteProtocolError(
                f"server sent {len(data)} bytes with no request awaiting an answer"
            )
        self._buffer += data
        if len(self._buffer) > self.max_packet_length:
            raise RemoteProtocolError(
                f"server sent {len(self._buffer)} bytes, more than one packet of "
                f"{self.max_packet_length}"
            )

    def next_response(self) -> ResponsePacket | Signal:
        """The response to the request sent, or NEED_DATA."""
        if len(self._buffer) < PREFIX.size:
            return NEED_DATA
        _, length = PREFIX.unpack_from(self._buffer)
        if length < PREFIX.size or length > self.max_packet_length:
            raise RemoteProtocolError(
                f"response length {length} is outside 3..{self.max_packet_length}"
            )
        if len(self._buffer) < length:
            return NEED_DATA
        if self.waiting is None:
            raise RemoteProtocolError("server answered a request that was not sent")
        packet = bytes(self._buffer[:length])
        del self._buffer[:length]
        if self._buffer:
            raise RemoteProtocolError(
                f"server sent {len(self._buffer)} bytes after its one response"
            )
        opcode, self.waiting = self.waiting, None
        response = _parse_response(packet, to_connect=opcode == Opcode.CONNECT)
        if opcode == Opcode.CONNECT and response.code == ResponseCode.SUCCESS:
            assert response.connect is not None
            announced = response.connect.max_packet_length
            if announced < MIN_PACKET_LENGTH:
                raise RemoteProtocolError(
                    f"server announced max packet length {announced}, below OBEX's minimum 255"
                )
            self.packet_length = min(announced, self.max_packet_length)
            self.connection_id = number(response.headers, HeaderId.CONNECTION_ID)
            self.connected = True
        elif opcode == Opcode.DISCONNECT and response.code == ResponseCode.SUCCESS:
            self.connected = False
            self.connection_id = None
            self.packet_length = MIN_PACKET_LENGTH
        return response
