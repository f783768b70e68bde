"""The responder side of MTP framing, without I/O.

Bytes from the bulk OUT pipe go in with :meth:`Connection.receive_data`
(together with "a short packet ended the transfer"); events come out of
:meth:`Connection.next_event`.  Nothing here blocks, reads a socket or knows
about USB, in the style of h11: the same object runs over FunctionFS, an
in-memory loopback or a TCP stream.

A data phase is surfaced as ``DataStart``, any number of ``DataChunk`` and a
``DataEnd`` so that a 10 GiB SendObject streams through a fixed amount of
memory.  Outgoing containers are built by :mod:`.container`; they need no
state beyond the transaction id the dispatcher already has.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .codes import ContainerType, ResponseCode
from .container import HEADER_SIZE, MAX_PARAMS, UNKNOWN_LENGTH, parse_header, parse_params


class Event:
    """Something the host did."""


@dataclass(frozen=True, slots=True)
class Command(Event):
    code: int
    transaction_id: int
    params: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DataStart(Event):
    code: int
    transaction_id: int
    length: int | None
    """Payload bytes announced, or ``None`` (0xFFFFFFFF: until a short packet)."""


@dataclass(frozen=True, slots=True)
class DataChunk(Event):
    data: bytes


@dataclass(frozen=True, slots=True)
class DataEnd(Event):
    complete: bool
    """False when the transfer ended before the announced length."""


@dataclass(frozen=True, slots=True)
class BadContainer(Event):
    """A container that cannot be honoured.

    ``transaction_id`` is ``None`` when not even a header arrived, in which
    case there is no transaction to answer.
    """

    reason: str
    code: int | None
    transaction_id: int | None
    response: ResponseCode


class _NeedData(enum.Enum):
    NEED_DATA = enum.auto()


NEED_DATA = _NeedData.NEED_DATA


class _State(enum.Enum):
    IDLE = enum.auto()  # between containers: expecting a header
    HEADER = enum.auto()  # part of a header has arrived
    COMMAND = enum.auto()  # header says command; collecting params
    DATA = enum.auto()  # streaming a data payload
    DISCARD = enum.auto()  # dropping the rest of a bad transfer


class Connection:
    """Parses the host's containers, one event at a time."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._events: list[Event] = []
        self._state = _State.IDLE
        self._header_length = 0
        self._header_code = 0
        self._header_tid = 0
        self._remaining: int | None = None
        self._payload_seen = False

    def reset(self) -> None:
        """Forget everything in progress (cancel, device reset, unplug)."""
        self.__init__()  # type: ignore[misc]

    def next_event(self) -> Event | _NeedData:
        if self._events:
            return self._events.pop(0)
        return NEED_DATA

    def receive_data(self, data: bytes, end_of_transfer: bool) -> None:
        """Feed bytes read from the OUT pipe.

        ``end_of_transfer`` means a short (or zero-length) packet ended the
        transfer after ``data``.
        """
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

    # -- internals ------------------------------------------------------

    def _feed_header(self, view: memoryview, end: bool) -> memoryview:
        needed = HEADER_SIZE - len(self._buffer)
        if self._state is _State.COMMAND:
            needed = self._header_length - len(self._buffer)
        take, view = view[:needed], view[needed:]
        self._buffer += take
        if self._state in (_State.IDLE, _State.HEADER):
            if len(self._buffer) < HEADER_SIZE:
                self._state = _State.HEADER if self._buffer else _State.IDLE
                return view
            header = parse_header(bytes(self._buffer))
            self._header_length = header.length
            self._header_code = header.code
            self._header_tid = header.transaction_id
            if header.type == ContainerType.COMMAND:
                if (
                    header.length < HEADER_SIZE
                    or header.length > HEADER_SIZE + 4 * MAX_PARAMS
                    or header.length % 4
                ):
                    self._bad(
                        f"command container length {header.length} is invalid",
                        ResponseCode.INVALID_PARAMETER,
                        discard=not end or bool(view),
                    )
                    return memoryview(b"")
                self._state = _State.COMMAND
                if len(self._buffer) < self._header_length:
                    return view
            elif header.type == ContainerType.DATA:
                self._buffer.clear()
                if header.length == UNKNOWN_LENGTH:
                    self._remaining = None
                elif header.length < HEADER_SIZE:
                    self._bad(
                        f"data container length {header.length} is shorter than its header",
                        ResponseCode.INVALID_DATASET,
                        discard=True,
                    )
                    return memoryview(b"")
                else:
                    self._remaining = header.length - HEADER_SIZE
                self._state = _State.DATA
                self._payload_seen = False
                self._events.append(
                    DataStart(header.code, header.transaction_id, self._remaining)
                )
                if self._remaining == 0:
                    self._finish_data(complete=True)
                return view
            else:
                self._bad(
                    f"unexpected container type {header.type}",
                    ResponseCode.GENERAL_ERROR,
                    discard=True,
                )
                return memoryview(b"")
        # A complete command container.
        if len(self._buffer) >= self._header_length:
            params = parse_params(bytes(self._buffer[HEADER_SIZE : self._header_length]))
            self._buffer.clear()
            self._state = _State.IDLE
            self._events.append(Command(self._header_code, self._header_tid, params))
            if view:
                # Bytes after a command in the same transfer: the host packed
                # two containers in one transfer, or the length lied.
                self._bad(
                    "trailing bytes after a command container",
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
            if rest:
                # Bytes beyond the announced length within the same transfer.
                self._state = _State.DISCARD
                return memoryview(b"")
        return rest

    def _finish_data(self, *, complete: bool) -> None:
        self._events.append(DataEnd(complete))
        self._state = _State.IDLE
        self._remaining = None

    def _end_transfer(self) -> None:
        if self._state is _State.DATA:
            if not self._payload_seen:
                # The header came in a transfer of its own (Windows does
                # this); the payload follows in the next transfers.
                return
            if self._remaining is None:
                self._finish_data(complete=True)
            else:
                self._finish_data(complete=False)
        elif self._state is _State.DISCARD:
            self._state = _State.IDLE
        elif self._state in (_State.HEADER, _State.COMMAND):
            truncated_tid = self._header_tid if self._state is _State.COMMAND else None
            code = self._header_code if self._state is _State.COMMAND else None
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
        if replace_last and self._events and isinstance(self._events[-1], Command):
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
