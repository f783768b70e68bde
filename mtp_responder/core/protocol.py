"""MTP framing of what a role receives, without I/O.

Bytes from the bulk pipe go in with :meth:`Connection.receive_data`
(together with "a short packet ended the transfer"); events come out of
:meth:`Connection.next_event`.  Nothing here blocks, reads a socket or knows
about USB, in the style of h11: the same object runs over FunctionFS, an
in-memory loopback, pyusb or a TCP stream.

A responder receives commands and data-out phases; an initiator receives
data-in phases and responses.  A data phase is surfaced as ``DataStart``, any
number of ``DataChunk`` and a ``DataEnd`` so that a 10 GiB object streams
through a fixed amount of memory.  Whether an event is allowed *now* is not
decided here but by the transaction state machine (:mod:`.transaction`);
:mod:`.connection` puts the two together.

A data phase ends with ``DataEnd``, with one exception: a data header that
came alone in its transfer, followed by a transfer that is exactly the next
transaction's command (see :meth:`Connection._abandons_bare_header`), ends
with that ``Command``: the host gave up on the data phase.
"""

from __future__ import annotations

import enum

from .codes import ContainerType, ResponseCode
from .container import (
    HEADER_SIZE,
    MAX_PARAMS,
    UNKNOWN_LENGTH,
    parse_header,
    parse_params,
    unpack_header,
)
from .events import (
    BadContainer,
    Command,
    DataChunk,
    DataEnd,
    DataStart,
    Event,
    Response,
    Role,
)

__all__ = [
    "NEED_DATA",
    "BadContainer",
    "Command",
    "Connection",
    "DataChunk",
    "DataEnd",
    "DataStart",
    "Event",
    "NeedData",
    "Response",
    "Role",
]


class _NeedData(enum.Enum):
    NEED_DATA = enum.auto()


NEED_DATA = _NeedData.NEED_DATA
NeedData = _NeedData
"""The type of :data:`NEED_DATA`, for annotations."""


class _State(enum.Enum):
    IDLE = enum.auto()  # between containers: expecting a header
    HEADER = enum.auto()  # part of a header has arrived
    PARAMS = enum.auto()  # header says command (response); collecting params
    DATA = enum.auto()  # streaming a data payload
    DISCARD = enum.auto()  # dropping the rest of a bad transfer


class Connection:
    """Parses the containers the peer of ``role`` sends, one event at a time.

    A responder reads commands, an initiator responses; both read data
    phases.  Everything else is a ``BadContainer``.
    """

    def __init__(self, role: Role = Role.RESPONDER) -> None:
        self.role = role
        self._params_type = (
            ContainerType.COMMAND if role is Role.RESPONDER else ContainerType.RESPONSE
        )
        self._buffer = bytearray()
        self._events: list[Event] = []
        self._state = _State.IDLE
        self._header_length = 0
        self._header_code = 0
        self._header_tid = 0
        self._remaining: int | None = None
        self._payload_seen = False
        self._header_in_transfer = False
        """A data header arrived in the transfer under way."""
        self._bare_header = False
        """A data header ended its transfer and nothing has come since."""

    def reset(self) -> None:
        """Forget everything in progress (cancel, device reset, unplug)."""
        self.__init__(self.role)  # type: ignore[misc]

    def next_event(self) -> Event | _NeedData:
        if self._events:
            return self._events.pop(0)
        return NEED_DATA

    def receive_data(self, data: bytes, end_of_transfer: bool) -> None:
        """Feed bytes read from the OUT pipe.

        ``end_of_transfer`` means a short (or zero-length) packet ended the
        transfer after ``data``.
        """
        if self._bare_header:
            self._bare_header = False
            if self._abandons_bare_header(data, end_of_transfer):
                return
            if not data and end_of_transfer and self._state is _State.DATA:
                # A zero-length packet right after a bare header: the host ended
                # the data phase with nothing in it (go-mtpfs, when it cannot read
                # the file it uploads, then waits for the response).  A payload
                # never starts with a zero-length packet, so nothing is lost.
                self._finish_data(complete=self._remaining is None)
                return
        view = memoryview(data)
        while True:
            if self._state is _State.DATA:
                view = self._feed_data(view, end_of_transfer)
            elif self._state is _State.DISCARD:
                if end_of_transfer:
                    self._state = _State.IDLE
                return
            else:
                view = self._feed_header(view, end_of_transfer)
            if not view:
                break
        if end_of_transfer:
            self._end_transfer()
            self._header_in_transfer = False

    # -- internals ------------------------------------------------------

    def _abandons_bare_header(self, data: bytes, end: bool) -> bool:
        """Whether ``data``, the transfer after a bare data header, is the
        host's next command rather than the payload; if so, it is parsed.

        go-mtpfs, when it cannot read the file it uploads, still sends the
        data header of SendObject alone in its transfer, announcing the whole
        file, and then its next command with the next transaction id.  Taken
        as payload, that command would end the data phase short and the
        responder would answer every later command with the id before it.

        Windows also sends a data header in a transfer of its own, followed
        by the payload, so the payload must win every doubt.  The command is
        recognised only when all of these hold: nothing of the data phase
        arrived after its header; the transfer is exactly one container (a
        short packet ended it, its length field equals the transfer's length,
        12 to 32 bytes, a multiple of 4); the type is COMMAND; its transaction
        id is the data header's plus one.  The trade-off: a file of 12 to 32
        bytes whose content is exactly such a container, uploaded by a host
        that sends the header alone, is taken for a command; the upload ends
        IncompleteTransfer and that "command" is executed.  Its id must be
        the next one, which no file written before the transfer can know
        without predicting the host's ids; the announced length is not
        compared, since go-mtpfs announces the file it failed to read, and a
        file of that very length must not bring back the desynchronisation.
        """
        if self.role is not Role.RESPONDER or not end:
            return False
        if not HEADER_SIZE <= len(data) <= HEADER_SIZE + 4 * MAX_PARAMS or len(data) % 4:
            return False
        header = parse_header(data)
        if (
            header.length != len(data)
            or header.type != ContainerType.COMMAND
            or header.transaction_id != self._header_tid + 1
        ):
            return False
        params = parse_params(data[HEADER_SIZE:])
        self._state = _State.IDLE
        self._remaining = None
        self._events.append(Command(header.code, header.transaction_id, params))
        return True

    @property
    def _params_name(self) -> str:
        return "command" if self.role is Role.RESPONDER else "response"

    def _feed_header(self, view: memoryview, end: bool) -> memoryview:
        buffer = self._buffer
        if self._state is _State.PARAMS:
            needed = self._header_length - len(buffer)
            buffer += view[:needed]
            view = view[needed:]
            if len(buffer) < self._header_length:
                return view
            return self._params_done(
                parse_params(buffer[HEADER_SIZE : self._header_length]), view, end
            )
        if buffer or len(view) < HEADER_SIZE:
            # A header split across reads: gather it first.
            needed = HEADER_SIZE - len(buffer)
            buffer += view[:needed]
            view = view[needed:]
            if len(buffer) < HEADER_SIZE:
                self._state = _State.HEADER if buffer else _State.IDLE
                return view
            header: bytearray | memoryview = buffer
        else:
            # The usual case: the whole header is in this read, parsed in place.
            header, view = view, view[HEADER_SIZE:]
        length, type_, code, tid = unpack_header(header)
        self._header_length = length
        self._header_code = code
        self._header_tid = tid
        if type_ == self._params_type:
            if length < HEADER_SIZE or length > HEADER_SIZE + 4 * MAX_PARAMS or length % 4:
                self._bad(
                    f"{self._params_name} container length {length} is invalid",
                    ResponseCode.INVALID_PARAMETER,
                    discard=not end or bool(view),
                )
                return memoryview(b"")
            body = length - HEADER_SIZE
            if not buffer and len(view) >= body:
                return self._params_done(parse_params(view[:body]), view[body:], end)
            if not buffer:
                buffer += header[:HEADER_SIZE]
            self._state = _State.PARAMS
            return self._feed_header(view, end)
        if type_ == ContainerType.DATA:
            buffer.clear()
            if length == UNKNOWN_LENGTH:
                self._remaining = None
            elif length < HEADER_SIZE:
                self._bad(
                    f"data container length {length} is shorter than its header",
                    ResponseCode.INVALID_DATASET,
                    discard=True,
                )
                return memoryview(b"")
            else:
                self._remaining = length - HEADER_SIZE
            self._state = _State.DATA
            self._payload_seen = False
            self._header_in_transfer = True
            self._events.append(DataStart(code, tid, self._remaining))
            if self._remaining == 0:
                self._finish_data(complete=True)
                return self._after_data(view)
            return view
        self._bad(f"unexpected container type {type_}", ResponseCode.GENERAL_ERROR, discard=True)
        return memoryview(b"")

    def _params_done(self, params: tuple[int, ...], view: memoryview, end: bool) -> memoryview:
        """A complete command (response) container; ``view`` is what followed it."""
        self._buffer.clear()
        self._state = _State.IDLE
        if self.role is Role.RESPONDER:
            self._events.append(Command(self._header_code, self._header_tid, params))
        else:
            self._events.append(Response(self._header_code, self._header_tid, params))
        if view:
            # Bytes after a command in the same transfer: the peer packed
            # two containers in one transfer, or the length lied.
            self._bad(
                f"trailing bytes after a {self._params_name} container",
                ResponseCode.INVALID_PARAMETER,
                discard=not end,
                replace_last=True,
            )
            return memoryview(b"")
        return view

    def _feed_data(self, view: memoryview, end: bool) -> memoryview:
        if self._remaining is None:
            if view:
                self._payload_seen = True
                self._events.append(DataChunk(_as_bytes(view)))
            return memoryview(b"")
        take = min(self._remaining, len(view))
        if take:
            self._payload_seen = True
            self._events.append(DataChunk(_as_bytes(view[:take])))
            self._remaining -= take
        rest = view[take:]
        if self._remaining == 0:
            self._finish_data(complete=True)
            return self._after_data(rest)
        return rest

    def _after_data(self, rest: memoryview) -> memoryview:
        """What follows a data container's announced end in the same transfer.

        Never a new container, whether the container was empty or not: a
        transfer holds one container, so a command hidden behind a data
        payload must not run.  A responder drops the surplus up to the end
        of the transfer; to an initiator it is a responder that forgot the
        zero-length packet and ran its response into the data phase.
        """
        if not rest:
            return rest
        if self.role is Role.INITIATOR:
            self._bad(
                "trailing bytes after a data container", ResponseCode.GENERAL_ERROR, discard=True
            )
        self._state = _State.DISCARD
        return memoryview(b"")

    def _finish_data(self, *, complete: bool) -> None:
        self._events.append(DataEnd(complete))
        self._state = _State.IDLE
        self._remaining = None

    def _end_transfer(self) -> None:
        if self._state is _State.DATA:
            if not self._payload_seen:
                # The header came in a transfer of its own (Windows does
                # this); the payload follows in the next transfers, unless
                # the host gave up on it (go-mtpfs does): only the very
                # next transfer may say so.
                self._bare_header = self._header_in_transfer
                return
            if self._remaining is None:
                self._finish_data(complete=True)
            else:
                self._finish_data(complete=False)
        elif self._state is _State.DISCARD:
            self._state = _State.IDLE
        elif self._state in (_State.HEADER, _State.PARAMS):
            truncated_tid = self._header_tid if self._state is _State.PARAMS else None
            code = self._header_code if self._state is _State.PARAMS else None
            self._events.append(
                BadContainer(
                    "transfer ended inside a container header",
                    code,
                    truncated_tid,
                    ResponseCode.INVALID_PARAMETER,
                )
            )
            self._buffer.clear()
            self._state = _State.IDLE

    def _bad(
        self,
        reason: str,
        response: ResponseCode,
        *,
        discard: bool,
        replace_last: bool = False,
    ) -> None:
        if replace_last and self._events and isinstance(self._events[-1], (Command, Response)):
            self._events.pop()
        self._events.append(BadContainer(reason, self._header_code, self._header_tid, response))
        self._buffer.clear()
        self._state = _State.DISCARD if discard else _State.IDLE


def _as_bytes(view: memoryview) -> bytes:
    """The bytes of ``view``, without a copy when it spans a whole bytes object.

    Nearly every chunk of a data phase is a whole transport read: copying
    each again would double the memory traffic of a SendObject.
    """
    if isinstance(view.obj, bytes) and view.nbytes == len(view.obj):
        return view.obj
    return bytes(view)
