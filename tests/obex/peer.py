"""Both ends of an OBEX session for the specs, with no transport between them.

:class:`MemoryServer` is a small Folder Browsing server over an in-memory tree,
written on the protocol core the way the real server is: it reads events,
answers each, and streams GET bodies through ``body_room``.  :class:`Client`
is the client role, lockstep as obexftp is: one request packet, then exactly
one response packet.  The specs talk to the core through them, so what they
check is what a real client would see on the wire.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from obex_backup_server.core.client import ClientConnection
from obex_backup_server.core.codes import (
    FOLDER_BROWSING_UUID,
    HeaderId,
    Opcode,
    ResponseCode,
    SetPathFlag,
)
from obex_backup_server.core.connection import NEED_DATA, PAUSED, Phase, ServerConnection
from obex_backup_server.core.events import (
    Abort,
    BodyChunk,
    BodyEnd,
    BodyWanted,
    Connect,
    ConnectionClosed,
    ContinueDue,
    Disconnect,
    Event,
    GetRequest,
    PutEnd,
    PutOutcome,
    PutStart,
    RequestError,
    Response,
    ResponseHeaders,
    SetPath,
)
from obex_backup_server.core.headers import Header
from obex_backup_server.core.listing import FOLDER_LISTING_TYPE, ListingEntry, folder_listing
from obex_backup_server.core.packets import (
    PREFIX,
    ResponsePacket,
    SetPathFields,
    parse_response,
)

Folder = dict[str, "Folder | bytes"]


def split_packets(data: bytes) -> list[bytes]:
    """Cut a run of response bytes into packets by their length fields."""
    packets = []
    while data:
        assert len(data) >= PREFIX.size, f"{len(data)} stray bytes after the last packet"
        _, length = PREFIX.unpack_from(data)
        assert PREFIX.size <= length <= len(data), f"packet length {length} of {len(data)}"
        packets.append(data[:length])
        data = data[length:]
    return packets


@dataclass(frozen=True)
class Answered:
    """One packet the server wrote, the event it answered, the packet length then."""

    event: Event
    packet: bytes
    packet_length: int

    @property
    def to_connect(self) -> bool:
        if isinstance(self.event, RequestError):
            return self.event.opcode == Opcode.CONNECT
        return isinstance(self.event, Connect)


@dataclass
class MemoryServer:
    """A Folder Browsing server over a dict tree (folders are dicts, files bytes)."""

    connection: ServerConnection = field(default_factory=ServerConnection)
    root: Folder = field(default_factory=dict)
    chunk: int = 1 << 16
    """The most body bytes the server hands the core at once (to exercise accumulation)."""
    events: list[Event] = field(default_factory=list)
    answers: list[Answered] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    _put: tuple[str | None, bytearray] | None = None
    _get: tuple[bytes, int] | None = None

    @property
    def cwd(self) -> Folder:
        folder = self.root
        for name in self.path:
            child = folder[name]
            assert isinstance(child, dict)
            folder = child
        return folder

    def feed(self, data: bytes) -> bytes:
        """Give the core ``data``; return everything the server writes back."""
        self.connection.receive_data(data)
        out = bytearray()
        while True:
            event = self.connection.next_event()
            if event is NEED_DATA:
                return bytes(out)
            assert event is not PAUSED, "the server left a request unanswered"
            assert isinstance(event, Event)
            self.events.append(event)
            if isinstance(event, ConnectionClosed):
                return bytes(out)
            limit = self.connection.packet_length
            answer = self._answer(event)
            if answer:
                self.answers.append(Answered(event, answer, limit))
            out += answer

    def _answer(self, event: Event) -> bytes:
        send = self.connection.send
        if isinstance(event, RequestError):
            self._put = self._get = None
            return send(Response(event.response))
        if isinstance(event, Connect | Disconnect):
            return send(Response(ResponseCode.SUCCESS))
        if isinstance(event, Abort):
            self._put = self._get = None
            return send(Response(ResponseCode.SUCCESS))
        if isinstance(event, SetPath):
            return send(Response(self._setpath(event)))
        if isinstance(event, PutStart):
            self._put = (event.name, bytearray())
            return b""
        if isinstance(event, BodyChunk):
            assert self._put is not None
            self._put[1].extend(event.data)
            return b""
        if isinstance(event, ContinueDue):
            return send(Response(ResponseCode.CONTINUE))
        if isinstance(event, PutEnd):
            return send(Response(self._finish_put(event)))
        if isinstance(event, GetRequest):
            return self._start_get(event)
        if isinstance(event, BodyWanted):
            return self._stream()
        raise AssertionError(f"unexpected event {event!r}")

    def _setpath(self, event: SetPath) -> ResponseCode:
        if event.to_root:
            self.path = []
            return ResponseCode.SUCCESS
        if event.up:
            if not self.path:
                return ResponseCode.NOT_FOUND
            self.path.pop()
        if not event.name:
            return ResponseCode.SUCCESS
        child = self.cwd.get(event.name)
        if child is None:
            if not event.create:
                return ResponseCode.NOT_FOUND
            self.cwd[event.name] = child = {}
        if not isinstance(child, dict):
            return ResponseCode.FORBIDDEN
        self.path.append(event.name)
        return ResponseCode.SUCCESS

    def _finish_put(self, event: PutEnd) -> ResponseCode:
        assert self._put is not None
        name, data = self._put
        self._put = None
        if not name:
            return ResponseCode.BAD_REQUEST
        if event.outcome is PutOutcome.DELETE:
            return (
                ResponseCode.SUCCESS
                if self.cwd.pop(name, None) is not None
                else (ResponseCode.NOT_FOUND)
            )
        assert event.received == len(data)
        self.cwd[name] = bytes(data)
        return ResponseCode.SUCCESS

    def _start_get(self, event: GetRequest) -> bytes:
        if event.type == FOLDER_LISTING_TYPE:
            body = folder_listing(
                (
                    ListingEntry(
                        name, isinstance(child, dict), 0 if isinstance(child, dict) else len(child)
                    )
                    for name, child in sorted(self.cwd.items())
                ),
                at_root=not self.path,
            )
        else:
            found = self.cwd.get(event.name or "")
            if not isinstance(found, bytes):
                return self.connection.send(Response(ResponseCode.NOT_FOUND))
            body = found
        self._get = (body, 0)
        self.connection.send(ResponseHeaders((Header(HeaderId.LENGTH, len(body)),)))
        return self._stream()

    def _stream(self) -> bytes:
        """Fill packets until one goes out (the client must ask for the next) or the body ends."""
        assert self._get is not None
        body, sent = self._get
        while self.connection.phase is Phase.GET_RESPONSE:
            room = min(self.connection.body_room, self.chunk)
            if sent == len(body):
                self._get = None
                return self.connection.send(BodyEnd())
            piece = body[sent : sent + room]
            sent += len(piece)
            self._get = (body, sent)
            packet = self.connection.send(BodyChunk(piece))
            if packet:
                return packet
        raise AssertionError("left the GET response without a packet")


class Client:
    """The client role (the core's ClientConnection) talking to a MemoryServer."""

    def __init__(self, server: MemoryServer, *, max_packet_length: int = 0xFFFF) -> None:
        self.server = server
        self.conn = ClientConnection(max_packet_length=max_packet_length)

    @property
    def connection_id(self) -> int | None:
        return self.conn.connection_id

    def exchange(self, packet: bytes, *, to_connect: bool = False) -> ResponsePacket:
        """Send raw request bytes (garbage too); return the one response packet they get."""
        packets = split_packets(self.server.feed(packet))
        assert len(packets) == 1, f"{len(packets)} response packets to one request"
        return parse_response(packets[0], to_connect=to_connect)

    def request(
        self,
        opcode: int,
        headers: Iterable[Header] = (),
        *,
        quote_id: bool = True,
        setpath: SetPathFields | None = None,
    ) -> ResponsePacket:
        """One request through the client role; exactly one response must come back."""
        packet = self.conn.request(opcode, list(headers), setpath=setpath, quote_id=quote_id)
        self.conn.receive_data(self.server.feed(packet))
        response = self.conn.next_response()
        assert isinstance(response, ResponsePacket), "the server did not answer"
        assert self.conn.next_response() is NEED_DATA
        return response

    def connect(self, target: bytes | None = FOLDER_BROWSING_UUID) -> ResponsePacket:
        headers = [] if target is None else [Header(HeaderId.TARGET, target)]
        return self.request(Opcode.CONNECT, headers)

    def put(
        self, name: str, data: bytes, *, chunk: int = 1000, headers: Iterable[Header] = ()
    ) -> list[ResponsePacket]:
        """PUT ``data`` as ``name`` in Body headers of ``chunk`` bytes, End-of-Body last."""
        responses = [
            self.request(
                Opcode.PUT,
                [Header(HeaderId.NAME, name), Header(HeaderId.LENGTH, len(data)), *headers],
            )
        ]
        offset = 0
        while responses[-1].code == ResponseCode.CONTINUE:
            piece = data[offset : offset + chunk]
            offset += len(piece)
            last = offset >= len(data)
            header = HeaderId.END_OF_BODY if last else HeaderId.BODY
            opcode = Opcode.PUT_FINAL if last else Opcode.PUT
            responses.append(self.request(opcode, [Header(header, piece)], quote_id=False))
            if last:
                break
        return responses

    def get(self, headers: Iterable[Header]) -> tuple[bytes, list[ResponsePacket]]:
        """GET with ``headers``; the body and every response packet."""
        responses = [self.request(Opcode.GET_FINAL, headers)]
        while responses[-1].code == ResponseCode.CONTINUE:
            responses.append(self.request(Opcode.GET_FINAL, quote_id=False))
        body = b"".join(
            bytes(h.value)  # type: ignore[arg-type]
            for r in responses
            for h in r.headers
            if h.id in (HeaderId.BODY, HeaderId.END_OF_BODY)
        )
        return body, responses

    def setpath(
        self, name: str | None = None, *, up: bool = False, create: bool = True
    ) -> ResponsePacket:
        flags = (SetPathFlag.UP if up else 0) | (0 if create else SetPathFlag.DONT_CREATE)
        headers = [] if name is None else [Header(HeaderId.NAME, name)]
        return self.request(Opcode.SETPATH, headers, setpath=SetPathFields(flags, 0))


def connected_pair(
    *, server_max: int = 0xFFFF, client_max: int = 0xFFFF, chunk: int = 1 << 16
) -> tuple[Client, MemoryServer]:
    server = MemoryServer(ServerConnection(max_packet_length=server_max), chunk=chunk)
    client = Client(server, max_packet_length=client_max)
    assert client.connect().code == ResponseCode.SUCCESS
    return client, server
