"""One MTP connection per role: framing plus the transaction state machine.

:class:`ResponderConnection` is what the device's server drives,
:class:`InitiatorConnection` what a host drives (the PC tool over pyusb, the
tests over the loopback link).  Each turns the events its role sends into
bytes (:meth:`send`) and the peer's bytes into events (:meth:`receive_data`,
:meth:`next_event`), and checks every event against the one
:class:`~.transaction.TransactionState`.  No I/O: the caller moves the bytes.

Sending never copies a data chunk: ``send(DataChunk(b))`` returns ``b``
itself, so a 10 GiB data phase passes through in the caller's buffers.
"""

from __future__ import annotations

import enum

from .codes import ContainerType
from .container import build_params_container, data_header
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
from .protocol import NEED_DATA, Connection, NeedData
from .transaction import Phase, RemoteProtocolError, TransactionState


class Interruption(enum.Enum):
    """What a responder's reader learns instead of the event it waited for."""

    PAUSED = enum.auto()
    """The peer's next event belongs after the open transaction: answer it first."""
    ABANDONED = enum.auto()
    """The host sent a new command where the open transaction's data phase
    (or, after a bare data header, its first byte) was due: that transaction
    ends without a response (the host would read it as the new command's),
    and the next event is the new command."""


PAUSED = Interruption.PAUSED
ABANDONED = Interruption.ABANDONED


def encode(event: Event) -> bytes:
    """The bytes that put ``event`` on a bulk pipe (a chunk is returned as is)."""
    if isinstance(event, Command):
        return build_params_container(
            ContainerType.COMMAND, event.code, event.transaction_id, event.params
        )
    if isinstance(event, Response):
        return build_params_container(
            ContainerType.RESPONSE, event.code, event.transaction_id, event.params
        )
    if isinstance(event, DataStart):
        if event.length is None:
            raise ValueError("a data phase we send announces its length")
        return data_header(event.code, event.transaction_id, event.length)
    if isinstance(event, DataChunk):
        return event.data
    if isinstance(event, DataEnd):
        return b""
    raise TypeError(f"{type(event).__name__} is not sent on the bulk pipes")


class _RoleConnection:
    role: Role

    def __init__(self) -> None:
        self._framing = Connection(self.role)
        self.state = TransactionState(self.role)

    @property
    def phase(self) -> Phase:
        return self.state.phase

    def reset(self) -> None:
        """Forget the open transaction and any partial container."""
        self._framing.reset()
        self.state.reset()

    def receive_data(self, data: bytes, end_of_transfer: bool) -> None:
        """Feed bytes read from the bulk pipe; ``end_of_transfer``: a short
        (or zero-length) packet ended the transfer after ``data``."""
        self._framing.receive_data(data, end_of_transfer)

    def send(self, event: Event) -> bytes:
        """Check ``event`` (LocalProtocolError) and return its bytes."""
        self.state.send(event)
        return encode(event)


class ResponderConnection(_RoleConnection):
    """The device's end.

    A host that moves on before a transaction is answered does not lose what
    it sent next.  A new command where a data phase was due, or the next
    transaction's command right after a bare data header, ends the open
    transaction unanswered: :meth:`next_event` says :data:`ABANDONED`, then
    hands over the command.  Anything else that belongs after the open
    transaction (a bad container of another one) is held: :meth:`next_event`
    says :data:`PAUSED` until the open transaction has its response.
    """

    role = Role.RESPONDER

    def __init__(self) -> None:
        super().__init__()
        self._held: Event | None = None
        """Not yet received: waits for the open transaction's response."""
        self._next_command: Command | None = None
        """Received: the command that abandoned the transaction before it."""

    def reset(self) -> None:
        super().reset()
        self._held = None
        self._next_command = None

    def next_event(self) -> Event | NeedData | Interruption:
        """The host's next event, NEED_DATA, PAUSED or ABANDONED.

        Raises RemoteProtocolError for what no framing produces (a chunk
        outside a data phase); the event is dropped.
        """
        if self._next_command is not None:
            command, self._next_command = self._next_command, None
            return command
        event = self._held
        if event is None:
            framed = self._framing.next_event()
            if framed is NEED_DATA:
                return NEED_DATA
            assert isinstance(framed, Event)
            event = framed
        state = self.state
        if state.phase is Phase.IDLE:
            self._held = None
            state.receive(event)
        elif state.receive_if_allowed(event):
            self._held = None
        else:
            self._held = event
            return PAUSED
        if isinstance(event, Command) and self.state.abandoned is not None:
            self._next_command = event
            return ABANDONED
        return event


class InitiatorConnection(_RoleConnection):
    """The host's end: strict about everything the responder sends.

    A container the framing cannot honour, a data phase or response of
    another transaction, a second response: all are RemoteProtocolError.
    """

    role = Role.INITIATOR

    def next_event(self) -> Event | NeedData:
        event = self._framing.next_event()
        if event is NEED_DATA:
            return NEED_DATA
        assert isinstance(event, Event)
        if isinstance(event, BadContainer):
            raise RemoteProtocolError(
                f"responder sent a bad container in phase {self.state.phase.value!r}: "
                f"{event.reason}"
            )
        if isinstance(event, DataEnd) and not event.complete:
            raise RemoteProtocolError(
                f"responder sent an end of data in phase {self.state.phase.value!r}: "
                "the transfer ended before the announced length"
            )
        self.state.receive(event)
        return event
