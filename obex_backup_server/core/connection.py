"""The server role of an OBEX connection: the state machine, without I/O.

Bytes from the client go in with :meth:`ServerConnection.receive_data`
(``b""`` when the transport ended); events come out of
:meth:`ServerConnection.next_event`; the server's answers go in with
:meth:`ServerConnection.send`, which returns the bytes to write.

OBEX is lockstep: the client sends one request packet and waits for its
response.  The core therefore takes one packet at a time: it parses a packet
only when the previous one is answered, returns :data:`PAUSED` while an
answer is due, and refuses (:class:`RemoteProtocolError`) input piling up
beyond one packet past the one being answered, so a client that does not wait
cannot make it buffer without bound.

Two tables state the protocol.  :data:`ACCEPTS` says which requests each
phase takes (anything else is refused with Bad Request and ends the operation
in progress); :data:`ANSWERS` says which answer a request packet takes and
where it leads.  A GET's response is cut here into packets of at most the
negotiated length: :attr:`ServerConnection.body_room` says how many body
bytes the packet under way still takes.

Single Response Mode (OBEX 1.4) is not offered: its header is never echoed,
so a client that asks for it falls back to lockstep.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from .codes import (
    FINAL,
    FOLDER_BROWSING_UUID,
    MAX_PACKET_LENGTH,
    MIN_PACKET_LENGTH,
    OBEX_VERSION,
    HeaderId,
    Opcode,
    ResponseCode,
)
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .events import (
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
    Operation,
    PutEnd,
    PutOutcome,
    PutStart,
    RequestError,
    Response,
    ResponseHeaders,
    SetPath,
)
from .headers import (
    BODY_OVERHEAD,
    Header,
    ascii_text,
    body_header,
    build_headers,
    find,
    header_name,
    number,
    text,
)
from .packets import PREFIX, ConnectFields, Request, build_response, parse_request


class Signal(enum.Enum):
    NEED_DATA = "need data"
    """Nothing to hand over until more bytes arrive."""
    PAUSED = "paused"
    """The request in hand awaits the server's answer: send it first."""


NEED_DATA = Signal.NEED_DATA
PAUSED = Signal.PAUSED


class Phase(enum.Enum):
    """Where the connection stands between the client's packets and ours."""

    IDLE = "idle"
    """No operation open: the next packet starts one."""
    ANSWER_DUE = "answer due"
    """A request packet is in hand: the server's response is due."""
    PUT = "PUT"
    """A PUT is open: its next packet is due."""
    GET_REQUEST = "GET request"
    """A GET's request spans packets: its next packet is due."""
    GET_RESPONSE = "GET response"
    """The server is filling a packet of a GET's response."""
    GET_WAIT = "GET wait"
    """A Continue packet of a GET's response is out: the client's next GET is due."""
    CLOSED = "closed"
    """The transport ended, or the client broke the lockstep."""


class Kind(enum.Enum):
    """A request as the tables see it (the Final bit aside)."""

    CONNECT = "CONNECT"
    DISCONNECT = "DISCONNECT"
    PUT = "PUT"
    GET = "GET"
    SETPATH = "SETPATH"
    ABORT = "ABORT"


KIND_OF: dict[int, Kind] = {
    Opcode.CONNECT: Kind.CONNECT,
    Opcode.DISCONNECT: Kind.DISCONNECT,
    Opcode.PUT: Kind.PUT,
    Opcode.PUT_FINAL: Kind.PUT,
    Opcode.GET: Kind.GET,
    Opcode.GET_FINAL: Kind.GET,
    Opcode.SETPATH: Kind.SETPATH,
    Opcode.ABORT: Kind.ABORT,
}

_ANYTIME = frozenset({Kind.ABORT, Kind.DISCONNECT})

ACCEPTS: dict[Phase, frozenset[Kind]] = {
    Phase.IDLE: frozenset(Kind),
    Phase.PUT: _ANYTIME | {Kind.PUT},
    Phase.GET_REQUEST: _ANYTIME | {Kind.GET},
    Phase.GET_WAIT: _ANYTIME | {Kind.GET},
}
"""Phase -> the requests it takes.  Only these phases read a packet."""


class Owed(enum.Enum):
    """What the answer due is for."""

    CONNECT = "CONNECT"
    DISCONNECT = "DISCONNECT"
    SETPATH = "SETPATH"
    ABORT = "ABORT"
    REFUSAL = "a refused request"
    PUT_CONTINUE = "a non-final PUT packet"
    PUT_FINAL = "the final PUT packet"
    GET_CONTINUE = "a non-final GET request packet"


class Answer(enum.Enum):
    CONTINUE = "Continue"
    OK = "a success code"
    ERROR = "an error code"


ANSWERS: dict[tuple[Owed, Answer], Phase] = {
    **{(owed, Answer.OK): Phase.IDLE for owed in (Owed.CONNECT, Owed.DISCONNECT, Owed.SETPATH)},
    (Owed.ABORT, Answer.OK): Phase.IDLE,
    (Owed.PUT_FINAL, Answer.OK): Phase.IDLE,
    (Owed.PUT_CONTINUE, Answer.CONTINUE): Phase.PUT,
    (Owed.GET_CONTINUE, Answer.CONTINUE): Phase.GET_REQUEST,
    **{(owed, Answer.ERROR): Phase.IDLE for owed in Owed},
}
"""(what is owed, the answer) -> next phase.  An error ends any operation."""


def _answer_of(code: int) -> Answer:
    if code == ResponseCode.CONTINUE:
        return Answer.CONTINUE
    if 0xA0 <= code <= 0xA6:
        return Answer.OK
    return Answer.ERROR


_Handled = tuple[list[Event], Owed | None, Phase]
"""What a request handler decides: the packet's events, the answer owed, the next phase."""


@dataclass(slots=True)
class _Put:
    received: int = 0
    saw_body: bool = False


@dataclass(slots=True)
class _Get:
    headers: list[Header]
    size: int = 0


class ServerConnection:
    """One client's OBEX session, seen from the server.

    ``max_packet_length`` is the most the server takes in one packet; CONNECT
    settles on the smaller of it and the client's.  ``connection_id`` is what
    a Folder Browsing connection is told to quote in every request.
    """

    def __init__(
        self, *, max_packet_length: int = MAX_PACKET_LENGTH, connection_id: int = 1
    ) -> None:
        if not MIN_PACKET_LENGTH <= max_packet_length <= MAX_PACKET_LENGTH:
            raise ValueError(f"max packet length must be 255..65535, not {max_packet_length}")
        if not 0 <= connection_id < 0xFFFFFFFF:
            raise ValueError(f"connection id must be 0..0xFFFFFFFE, not {connection_id}")
        self.max_packet_length = max_packet_length
        self.connection_id = connection_id
        self.phase = Phase.IDLE
        self.connected = False
        self.target: bytes | None = None
        """The Target the connection was made to (None: the default service)."""
        self.packet_length = MIN_PACKET_LENGTH
        """The negotiated maximum packet length (255 until CONNECT)."""
        self.operation: Operation | None = None
        self._buffer = bytearray()
        self._eof = False
        self._discarding = 0
        self._discard_total = 0
        self._events: deque[Event] = deque()
        self._owed: Owed | None = None
        self._request_opcode = 0
        self._client_max = MIN_PACKET_LENGTH
        self._connect_target: bytes | None = None
        """The Target of the CONNECT being answered (checked when it arrived)."""
        self._put: _Put | None = None
        self._get: _Get | None = None
        self._out_headers = b""
        self._out_body = bytearray()

    # -- limits -------------------------------------------------------------

    @property
    def receive_limit(self) -> int:
        """The longest packet taken now (the server's own limit until CONNECT)."""
        return self.packet_length if self.connected else self.max_packet_length

    @property
    def buffered(self) -> int:
        """Bytes received and not yet parsed: never more than :attr:`receive_limit`."""
        return len(self._buffer)

    @property
    def body_room(self) -> int:
        """Body bytes the GET response packet under way still takes (0 if none is)."""
        if self.phase is not Phase.GET_RESPONSE:
            return 0
        used = PREFIX.size + len(self._out_headers) + BODY_OVERHEAD + len(self._out_body)
        return max(0, self.packet_length - used)

    # -- input ----------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` means the transport ended.

        Raises RemoteProtocolError when the client sent more than one packet
        beyond the one being answered: it does not wait for responses, and the
        connection is closed.
        """
        if self.phase is Phase.CLOSED or self._eof:
            if data:
                raise LocalProtocolError("data received after the connection ended")
            return
        if not data:
            self._eof = True
            return
        self._buffer += data
        self._advance()
        if len(self._buffer) > self.receive_limit:
            held = len(self._buffer)
            self._close()
            raise RemoteProtocolError(
                f"client sent {held} bytes beyond the packet being answered, more than "
                f"one packet ({self.receive_limit}): it does not wait for responses"
            )

    def next_event(self) -> Event | Signal:
        """The next event, NEED_DATA, or PAUSED while the server's answer is due."""
        if self._events:
            return self._events.popleft()
        if self.phase is Phase.CLOSED:
            return ConnectionClosed()
        self._advance()
        if self._events:
            return self._events.popleft()
        if self._eof:
            ended = self.operation
            self._close()
            return ConnectionClosed(ended)
        if self.phase in ACCEPTS:
            return NEED_DATA
        return PAUSED

    # -- output ---------------------------------------------------------------

    def send(self, event: Event) -> bytes:
        """The bytes of the server's ``event``; LocalProtocolError if not allowed now."""
        if self.phase is Phase.CLOSED:
            raise LocalProtocolError("the connection is closed")
        if isinstance(event, Response):
            return self._send_response(event)
        if isinstance(event, ResponseHeaders | BodyChunk | BodyEnd):
            return self._send_body(event)
        raise LocalProtocolError(f"a server does not send {type(event).__name__}")

    # -- framing --------------------------------------------------------------

    def _advance(self) -> None:
        """Parse the next request packet if the phase reads one and it is all here."""
        while self.phase in ACCEPTS and not self._events:
            if self._discarding:
                take = min(self._discarding, len(self._buffer))
                del self._buffer[:take]
                self._discarding -= take
                if self._discarding:
                    return
                self._refuse(
                    f"packet of {self._discard_total} bytes is longer than the "
                    f"{self.receive_limit} negotiated",
                    ResponseCode.REQUEST_ENTITY_TOO_LARGE,
                )
                return
            if len(self._buffer) < PREFIX.size:
                return
            opcode, length = PREFIX.unpack_from(self._buffer)
            self._request_opcode = opcode
            if length < PREFIX.size:
                del self._buffer[: PREFIX.size]
                self._refuse(
                    f"packet length {length} is shorter than the 3-byte prefix",
                    ResponseCode.BAD_REQUEST,
                )
                return
            if length > self.receive_limit:
                self._discarding = self._discard_total = length
                continue
            if len(self._buffer) < length:
                return
            packet = bytes(self._buffer[:length])
            del self._buffer[:length]
            self._handle(packet)

    def _handle(self, packet: bytes) -> None:
        opcode = packet[0]
        kind = KIND_OF.get(opcode)
        if kind is None:
            if opcode | FINAL in (Opcode.CONNECT, Opcode.DISCONNECT, Opcode.SETPATH, Opcode.ABORT):
                self._refuse(
                    f"operation 0x{opcode:02X} lacks the final bit", ResponseCode.BAD_REQUEST
                )
            else:
                self._refuse(
                    f"operation 0x{opcode:02X} is not implemented", ResponseCode.NOT_IMPLEMENTED
                )
            return
        if kind not in ACCEPTS[self.phase]:
            # Only the phases of an open operation refuse a kind of request.
            assert self.operation is not None
            self._refuse(
                f"{kind.value} while a {self.operation.value} is in progress",
                ResponseCode.BAD_REQUEST,
            )
            return
        try:
            request = parse_request(packet)
            events, owed, phase = _HANDLERS[kind](self, request, len(packet))
        except ProtocolError as error:
            self._refuse(error.message, error.response)
            return
        self._events.extend(events)
        self._owed = owed
        self.phase = phase

    def _refuse(self, reason: str, response: ResponseCode) -> None:
        self._events.append(RequestError(reason, response, self.operation, self._request_opcode))
        self._end_operation()
        self._owed = Owed.REFUSAL
        self.phase = Phase.ANSWER_DUE

    def _end_operation(self) -> None:
        self.operation = None
        self._put = None
        self._get = None
        self._out_headers = b""
        self._out_body = bytearray()

    def _close(self) -> None:
        self._end_operation()
        self._events.clear()
        self._buffer.clear()
        self.phase = Phase.CLOSED

    def _check_connection(self, request: Request, what: str, *, first: bool) -> None:
        """A Folder Browsing connection quotes its id in each operation's first packet."""
        if not self.connected:
            raise RemoteProtocolError(
                f"{what} before CONNECT: connect to the service first",
                ResponseCode.SERVICE_UNAVAILABLE,
            )
        if self.target is None:
            return
        quoted = number(request.headers, HeaderId.CONNECTION_ID)
        if quoted is None:
            if first:
                raise RemoteProtocolError(f"{what} carries no Connection-Id")
            return
        if quoted != self.connection_id:
            raise RemoteProtocolError(
                f"{what} quotes Connection-Id {quoted}, not this connection's {self.connection_id}",
                ResponseCode.SERVICE_UNAVAILABLE,
            )

    # -- requests: each returns (events, what is owed, next phase) -------------

    def _on_connect(self, request: Request, _size: int) -> _Handled:
        assert request.connect is not None
        fields = request.connect
        if fields.max_packet_length < MIN_PACKET_LENGTH:
            raise RemoteProtocolError(
                f"CONNECT max packet length {fields.max_packet_length} is below OBEX's "
                f"minimum {MIN_PACKET_LENGTH}"
            )
        target_header = find(request.headers, HeaderId.TARGET)
        target = None
        if target_header is not None:
            assert isinstance(target_header.value, bytes)
            target = target_header.value
            if target != FOLDER_BROWSING_UUID:
                raise RemoteProtocolError(
                    f"CONNECT Target {target.hex().upper()} is not the Folder Browsing service",
                    ResponseCode.SERVICE_UNAVAILABLE,
                )
        self._client_max = fields.max_packet_length
        self._connect_target = target
        event = Connect(
            fields.version, fields.flags, fields.max_packet_length, target, request.headers
        )
        return [event], Owed.CONNECT, Phase.ANSWER_DUE

    def _on_disconnect(self, request: Request, _size: int) -> _Handled:
        if self.connected:
            self._check_connection(request, "DISCONNECT", first=True)
        ended = self.operation
        self._end_operation()
        return [Disconnect(ended, request.headers)], Owed.DISCONNECT, Phase.ANSWER_DUE

    def _on_setpath(self, request: Request, _size: int) -> _Handled:
        assert request.setpath is not None
        self._check_connection(request, "SETPATH", first=True)
        name = text(request.headers, HeaderId.NAME)
        fields = request.setpath
        event = SetPath(name, fields.up, fields.create, request.headers)
        return [event], Owed.SETPATH, Phase.ANSWER_DUE

    def _on_abort(self, request: Request, _size: int) -> _Handled:
        ended = self.operation
        self._end_operation()
        return [Abort(ended)], Owed.ABORT, Phase.ANSWER_DUE

    def _on_put(self, request: Request, _size: int) -> _Handled:
        first = self.phase is Phase.IDLE
        self._check_connection(request, "PUT", first=first)
        events: list[Event] = []
        put = self._put if not first and self._put is not None else _Put()
        if first:
            name = text(request.headers, HeaderId.NAME)
            kind = ascii_text(request.headers, HeaderId.TYPE)
            length = number(request.headers, HeaderId.LENGTH)
            events.append(PutStart(name, kind, length, request.headers))
        received, saw_body = put.received, put.saw_body
        for header in request.headers:
            if header.id in (HeaderId.BODY, HeaderId.END_OF_BODY):
                assert isinstance(header.value, bytes)
                saw_body = True
                if header.value:
                    events.append(BodyChunk(header.value))
                    received += len(header.value)
        put.received, put.saw_body = received, saw_body
        self._put = put
        self.operation = Operation.PUT
        if not request.final:
            events.append(ContinueDue(Operation.PUT))
            return events, Owed.PUT_CONTINUE, Phase.ANSWER_DUE
        if received:
            outcome = PutOutcome.WRITE
        elif saw_body:
            outcome = PutOutcome.CREATE_EMPTY
        else:
            outcome = PutOutcome.DELETE
        events.append(PutEnd(outcome, received))
        return events, Owed.PUT_FINAL, Phase.ANSWER_DUE

    def _on_get(self, request: Request, size: int) -> _Handled:
        if self.phase is Phase.GET_WAIT:
            self._check_connection(request, "GET", first=False)
            self._out_headers = b""
            self._out_body = bytearray()
            return [BodyWanted()], None, Phase.GET_RESPONSE
        first = self.phase is Phase.IDLE
        self._check_connection(request, "GET", first=first)
        get = self._get if not first and self._get is not None else _Get([])
        get.size += size
        if get.size > self.receive_limit:
            raise RemoteProtocolError(
                f"GET request spans {get.size} bytes of packets, more than one packet "
                f"({self.receive_limit})",
                ResponseCode.REQUEST_ENTITY_TOO_LARGE,
            )
        get.headers.extend(request.headers)
        self._get = get
        self.operation = Operation.GET
        if not request.final:
            return [ContinueDue(Operation.GET)], Owed.GET_CONTINUE, Phase.ANSWER_DUE
        headers = tuple(get.headers)
        name = text(headers, HeaderId.NAME)
        kind = ascii_text(headers, HeaderId.TYPE)
        self._get = None
        return [GetRequest(name, kind, headers)], None, Phase.GET_RESPONSE

    # -- answers --------------------------------------------------------------

    def _send_limit(self) -> int:
        if self._owed is Owed.CONNECT or self._request_opcode == Opcode.CONNECT:
            return min(self._client_max, self.max_packet_length)
        return self.packet_length

    def _send_response(self, event: Response) -> bytes:
        code = int(event.code)
        if not 0x80 <= code <= 0xFF:
            raise LocalProtocolError(f"response code 0x{code:02X} lacks the final bit")
        answer = _answer_of(code)
        if self.phase is Phase.GET_RESPONSE:
            if answer is not Answer.ERROR:
                raise LocalProtocolError(
                    "a GET response is sent as body chunks and BodyEnd, or refused with an "
                    "error code"
                )
            packet = build_response(code, event.headers)
            self._check_size(packet)
            self._end_operation()
            self.phase = Phase.IDLE
            return packet
        if self.phase is not Phase.ANSWER_DUE or self._owed is None:
            raise LocalProtocolError(f"no request to answer in phase {self.phase.value!r}")
        owed = self._owed
        next_phase = ANSWERS.get((owed, answer))
        if next_phase is None:
            raise LocalProtocolError(f"{answer.value} does not answer {owed.value}")
        if answer is not Answer.ERROR and self._events:
            raise LocalProtocolError(
                f"{answer.value} answers {owed.value} before its events were read"
            )
        headers = event.headers
        connect = None
        negotiated = self.packet_length
        if self._request_opcode == Opcode.CONNECT:
            negotiated = min(self._client_max, self.max_packet_length)
            connect = ConnectFields(OBEX_VERSION, 0, negotiated)
            target = self._connect_target if owed is Owed.CONNECT else None
            if answer is Answer.OK and target is not None:
                headers = (
                    Header(HeaderId.CONNECTION_ID, self.connection_id),
                    Header(HeaderId.WHO, target),
                    *headers,
                )
        packet = build_response(code, headers, connect=connect)
        self._check_size(packet)
        # The answer is out: the state moves.
        self._events.clear()
        self._owed = None
        if answer is Answer.ERROR:
            self._end_operation()
        elif owed is Owed.CONNECT:
            self.connected = True
            self.target = self._connect_target
            self.packet_length = negotiated
        elif owed is Owed.DISCONNECT:
            self.connected = False
            self.target = None
            self.packet_length = MIN_PACKET_LENGTH
        if next_phase is Phase.IDLE and answer is not Answer.ERROR:
            self._end_operation()
        self.phase = next_phase
        return packet

    def _check_size(self, packet: bytes) -> None:
        limit = self._send_limit()
        if len(packet) > limit:
            raise LocalProtocolError(
                f"response of {len(packet)} bytes is longer than the {limit} negotiated"
            )

    def _send_body(self, event: ResponseHeaders | BodyChunk | BodyEnd) -> bytes:
        if self.phase is not Phase.GET_RESPONSE:
            raise LocalProtocolError(
                f"{type(event).__name__} outside a GET response (phase {self.phase.value!r})"
            )
        if isinstance(event, ResponseHeaders):
            if self._out_headers or self._out_body:
                raise LocalProtocolError("ResponseHeaders come once, before any body")
            encoded = build_headers(event.headers)
            room = self.packet_length - PREFIX.size - BODY_OVERHEAD - 1
            if len(encoded) > room:
                raise LocalProtocolError(
                    f"response headers of {len(encoded)} bytes leave no room for a body byte "
                    f"in a packet of {self.packet_length}"
                )
            for header in event.headers:
                if header.id in (HeaderId.BODY, HeaderId.END_OF_BODY):
                    raise LocalProtocolError(
                        f"{header_name(header.id)} is sent as BodyChunk, not as a header"
                    )
            self._out_headers = encoded
            return b""
        if isinstance(event, BodyChunk):
            room = self.body_room
            if len(event.data) > room:
                raise LocalProtocolError(
                    f"body chunk of {len(event.data)} bytes is more than the {room} the "
                    "packet under way takes (see body_room)"
                )
            self._out_body += event.data
            if len(event.data) < room or not event.data:
                return b""
            packet = build_response(
                ResponseCode.CONTINUE,
                self._out_headers + body_header(bytes(self._out_body), end=False),
            )
            self._out_headers = b""
            self._out_body = bytearray()
            self.phase = Phase.GET_WAIT
            return packet
        packet = build_response(
            ResponseCode.SUCCESS,
            self._out_headers + body_header(bytes(self._out_body), end=True),
        )
        self._end_operation()
        self.phase = Phase.IDLE
        return packet


_HANDLERS = {
    Kind.CONNECT: ServerConnection._on_connect,
    Kind.DISCONNECT: ServerConnection._on_disconnect,
    Kind.SETPATH: ServerConnection._on_setpath,
    Kind.ABORT: ServerConnection._on_abort,
    Kind.PUT: ServerConnection._on_put,
    Kind.GET: ServerConnection._on_get,
}
