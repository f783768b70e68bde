"""The MTP transaction state machine, the same for both roles.

MTP is strictly sequential: the initiator sends a command, at most one data
phase follows (initiator to responder, "data out", or responder to
initiator, "data in"), and the responder answers with exactly one response
carrying the command's transaction id.  Only then may the next command come.

In the style of h11's ``_state.py``: the phases are explicit, one table says
which role may put which event on the pipes in which phase and where that
leads, and everything else is refused with an exception that says whose
fault it is: :class:`LocalProtocolError` when our own side tried to send
something not allowed now, :class:`RemoteProtocolError` when the peer did.
The same machine runs in a responder (which sends responses and data-in
phases) and in an initiator (which sends commands and data-out phases).

A responder must survive a host that breaks these rules, so a few of the
initiator's mistakes are *tolerated* when a responder receives them: they
lead to phases in which the responder drains the stray bytes and answers,
once.  They are listed apart, in :data:`TOLERATED`; an initiator may not make
them (sending one is a :class:`LocalProtocolError`).

The session-level rule that transaction ids increase is not enforced here:
a responder answers a stale id with InvalidTransactionID, an ordinary
response, and ids outside a session (GetDeviceInfo, OpenSession) repeat.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .events import BadContainer, Command, DataChunk, DataEnd, DataStart, Event, Response, Role


class ProtocolError(Exception):
    """An event that MTP does not allow in the current phase."""


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol does not allow now."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow now."""


class Phase(enum.Enum):
    """Where the one transaction on the pipes stands."""

    # Members are unique objects: hashing them by identity keeps every
    # table lookup in C (Enum's own hash is a Python call per lookup, and a
    # transaction makes a dozen).
    __hash__ = object.__hash__

    IDLE = "idle"
    """No transaction open: the next container is a command."""
    COMMAND = "command"
    """A command is open: its data phase (either way) or its response comes next."""
    DATA_OUT = "data out"
    """The initiator is sending the transaction's data phase."""
    DATA_IN = "data in"
    """The responder is sending the transaction's data phase."""
    RESPONSE_DUE = "response due"
    """The data phase is over (or the transaction failed before one): only the
    response may follow."""
    STRAY_DATA = "stray data"
    """A responder is draining a data phase that no open command asked for."""


class Kind(enum.Enum):
    """An event as the table sees it: its type, and whether its transaction
    id is the open transaction's (or, for a command, the next one's)."""

    __hash__ = object.__hash__

    COMMAND = "command"
    NEXT_COMMAND = "command of the next transaction before any data byte"
    """A command carrying the id after the open data phase's, none of whose
    payload has arrived: the host sent the data header and gave up."""
    DATA_START = "data container"
    FOREIGN_DATA_START = "data container of another transaction"
    DATA_CHUNK = "data chunk"
    DATA_END = "end of data"
    RESPONSE = "response"
    FOREIGN_RESPONSE = "response of another transaction"
    BAD_CONTAINER = "bad container"
    OWN_BAD_CONTAINER = "bad container of the open transaction"
    HEADERLESS = "bad container without a header"


_I, _R = Role.INITIATOR, Role.RESPONDER

TRANSITIONS: dict[tuple[Phase, Role, Kind], Phase] = {
    (Phase.IDLE, _I, Kind.COMMAND): Phase.COMMAND,
    (Phase.COMMAND, _I, Kind.DATA_START): Phase.DATA_OUT,
    (Phase.COMMAND, _R, Kind.DATA_START): Phase.DATA_IN,
    (Phase.COMMAND, _R, Kind.RESPONSE): Phase.IDLE,
    (Phase.DATA_OUT, _I, Kind.DATA_CHUNK): Phase.DATA_OUT,
    (Phase.DATA_OUT, _I, Kind.DATA_END): Phase.RESPONSE_DUE,
    (Phase.DATA_IN, _R, Kind.DATA_CHUNK): Phase.DATA_IN,
    (Phase.DATA_IN, _R, Kind.DATA_END): Phase.RESPONSE_DUE,
    (Phase.RESPONSE_DUE, _R, Kind.RESPONSE): Phase.IDLE,
}
"""(phase, sender, event) -> next phase: every legal step of a transaction."""

TOLERATED: dict[tuple[Phase, Kind], Phase] = {
    # A data phase no command opened: drained, then answered GeneralError,
    # unless it trails the transaction answered last (one answer each).
    (Phase.IDLE, Kind.DATA_START): Phase.STRAY_DATA,
    (Phase.STRAY_DATA, Kind.DATA_CHUNK): Phase.STRAY_DATA,
    (Phase.STRAY_DATA, Kind.DATA_END): Phase.RESPONSE_DUE,
    # A data phase carrying another transaction's id: drained, then the open
    # transaction is answered InvalidTransactionID.
    (Phase.COMMAND, Kind.FOREIGN_DATA_START): Phase.DATA_OUT,
    # A command where the open transaction's data phase was due: the host
    # gave up on that transaction (go-mtpfs does, after a SendObject without
    # its data).  It ends unanswered, since the host reads the next response
    # as the new command's, and the new command opens its own transaction.
    (Phase.COMMAND, Kind.COMMAND): Phase.COMMAND,
    # The same after a data header alone (go-mtpfs sends it when it cannot
    # read the file it uploads): the next transaction's command, before any
    # payload byte, ends the data phase unanswered.  The framing recognises
    # it only in a narrow window (protocol.Connection._abandons_bare_header).
    (Phase.DATA_OUT, Kind.NEXT_COMMAND): Phase.COMMAND,
    (Phase.STRAY_DATA, Kind.NEXT_COMMAND): Phase.COMMAND,
    # A container that cannot be honoured: answered with the framing's code.
    (Phase.IDLE, Kind.BAD_CONTAINER): Phase.RESPONSE_DUE,
    (Phase.COMMAND, Kind.OWN_BAD_CONTAINER): Phase.RESPONSE_DUE,
    # Not even a header: there is no transaction to answer.
    (Phase.IDLE, Kind.HEADERLESS): Phase.IDLE,
}
"""(phase, event) -> next phase: the initiator's mistakes a responder absorbs."""

Steps = dict[tuple[Phase, Kind], Phase]


def steps_of(sender: Role, tolerant: bool) -> Steps:
    """What :data:`TRANSITIONS` (and, if ``tolerant``, :data:`TOLERATED`)
    allow ``sender``, keyed by (phase, event) alone.

    Each :class:`TransactionState` picks its two tables once, so checking an
    event is one lookup of two identity-hashed members.
    """
    table = {
        (phase, kind): step for (phase, who, kind), step in TRANSITIONS.items() if who is sender
    }
    if tolerant:
        for key, step in TOLERATED.items():
            table.setdefault(key, step)
    return table


_STEPS: dict[tuple[Role, bool], Steps] = {
    (sender, tolerant): steps_of(sender, tolerant) for sender in Role for tolerant in (False, True)
}


@dataclass(slots=True)
class _DataCount:
    transaction_id: int
    announced: int | None
    seen: int = 0


class TransactionState:
    """The phase of the one transaction on the pipes, seen from ``role``.

    Call :meth:`send` before putting an event on the pipes and
    :meth:`receive` for each event the peer's bytes produced; both raise
    when the event is not allowed now and change nothing in that case.
    """

    def __init__(self, role: Role) -> None:
        self.role = role
        self.phase = Phase.IDLE
        self.transaction_id: int | None = None
        """The open transaction's id (the one its data and response carry)."""
        self.code: int | None = None
        """The open transaction's operation code."""
        self.last_answered: int | None = None
        """The id of the transaction answered last."""
        self.abandoned: int | None = None
        """The id of the transaction the open command replaced unanswered
        (the host sent it where a data phase or its first byte was due),
        else ``None``."""
        self._data: _DataCount | None = None
        self._peer = role.peer
        self._own_steps = _STEPS[role, False]
        # A responder absorbs the initiator's tolerated mistakes.
        self._peer_steps = _STEPS[self._peer, role is Role.RESPONDER]

    def reset(self) -> None:
        """Forget the open transaction (cancel, device reset, unplug)."""
        self.phase = Phase.IDLE
        self.transaction_id = None
        self.code = None
        self.abandoned = None
        self._data = None

    @property
    def response_due(self) -> bool:
        """Whether the one response of the open transaction is still to be sent."""
        return self.phase in (Phase.COMMAND, Phase.RESPONSE_DUE)

    def send(self, event: Event) -> None:
        """``event`` is about to go out from our side; raises LocalProtocolError."""
        self._process(self.role, event)

    def receive(self, event: Event) -> None:
        """``event`` came from the peer; raises RemoteProtocolError."""
        self._process(self._peer, event)

    def receive_if_allowed(self, event: Event) -> bool:
        """Receive ``event`` if the peer may send it now, else change nothing.

        The same as ``allows(peer, event)`` followed by ``receive(event)``,
        with the event classified once.
        """
        kind = self._kind(event)
        step = self._peer_steps.get((self.phase, kind))
        if step is None:
            return False
        self._count(RemoteProtocolError, kind, event)
        self._enter(step, kind, event)
        return True

    def allows(self, sender: Role, event: Event) -> bool:
        """Whether ``sender`` may put ``event`` on the pipes now."""
        return self._next_phase(sender, self._kind(event)) is not None

    # -- internals ------------------------------------------------------------

    def _kind(self, event: Event) -> Kind:
        if isinstance(event, DataChunk):  # the most frequent by far
            return Kind.DATA_CHUNK
        open_tid = self.transaction_id if self.phase is not Phase.IDLE else None
        if isinstance(event, Command):
            data = self._data
            if (
                data is not None
                and data.seen == 0
                and event.transaction_id == data.transaction_id + 1
            ):
                return Kind.NEXT_COMMAND
            return Kind.COMMAND
        if isinstance(event, DataStart):
            if open_tid is not None and event.transaction_id != open_tid:
                return Kind.FOREIGN_DATA_START
            return Kind.DATA_START
        if isinstance(event, DataEnd):
            return Kind.DATA_END
        if isinstance(event, Response):
            if open_tid is not None and event.transaction_id != open_tid:
                return Kind.FOREIGN_RESPONSE
            return Kind.RESPONSE
        if isinstance(event, BadContainer):
            if event.transaction_id is None:
                return Kind.HEADERLESS
            if open_tid is not None and event.transaction_id == open_tid:
                return Kind.OWN_BAD_CONTAINER
            return Kind.BAD_CONTAINER
        raise TypeError(f"not an MTP event: {event!r}")

    def _next_phase(self, sender: Role, kind: Kind) -> Phase | None:
        steps = self._own_steps if sender is self.role else self._peer_steps
        return steps.get((self.phase, kind))

    def _process(self, sender: Role, event: Event) -> None:
        error = LocalProtocolError if sender is self.role else RemoteProtocolError
        kind = self._kind(event)
        step = self._next_phase(sender, kind)
        if step is None:
            raise error(self._refusal(sender, kind, event))
        self._count(error, kind, event)
        self._enter(step, kind, event)

    def _refusal(self, sender: Role, kind: Kind, event: Event) -> str:
        article = "an" if kind.value[0] in "aeiou" else "a"
        what = f"{sender.value} sent {article} {kind.value} in phase {self.phase.value!r}"
        if kind is Kind.RESPONSE and self.phase is Phase.IDLE:
            return f"{what}: transaction {event.transaction_id} was already answered"  # type: ignore[attr-defined]
        if kind in (Kind.FOREIGN_RESPONSE, Kind.FOREIGN_DATA_START):
            tid = event.transaction_id  # type: ignore[attr-defined]
            return f"{what}: it carries id {tid}, the open transaction is {self.transaction_id}"
        return what

    def _count(self, error: type[ProtocolError], kind: Kind, event: Event) -> None:
        """Data phases carry exactly the bytes they announce.

        Only our own side is held to it: an incoming phase that ends short is
        an ordinary IncompleteTransfer, which the framing reports.
        """
        if error is not LocalProtocolError or self._data is None or self._data.announced is None:
            return
        remaining = self._data.announced - self._data.seen
        if kind is Kind.DATA_CHUNK:
            assert isinstance(event, DataChunk)
            if len(event.data) > remaining:
                raise error(
                    f"{self.role.value} sent a data chunk of {len(event.data)} bytes in phase "
                    f"{self.phase.value!r}: only {remaining} of the announced "
                    f"{self._data.announced} remain"
                )
        elif kind is Kind.DATA_END and remaining:
            raise error(
                f"{self.role.value} sent an end of data in phase {self.phase.value!r}: "
                f"{remaining} of the announced {self._data.announced} bytes are missing"
            )

    def _enter(self, step: Phase, kind: Kind, event: Event) -> None:
        if kind is Kind.DATA_CHUNK:
            assert self._data is not None and isinstance(event, DataChunk)
            self._data.seen += len(event.data)
        elif kind is Kind.COMMAND:
            assert isinstance(event, Command)
            self.abandoned = self.transaction_id if self.phase is Phase.COMMAND else None
            self.transaction_id, self.code = event.transaction_id, event.code
        elif kind is Kind.NEXT_COMMAND:
            assert isinstance(event, Command)
            self.abandoned = self.transaction_id
            self.transaction_id, self.code = event.transaction_id, event.code
            self._data = None
        elif kind in (Kind.DATA_START, Kind.FOREIGN_DATA_START):
            assert isinstance(event, DataStart)
            if self.phase is Phase.IDLE:  # stray: the data names the transaction
                self.transaction_id, self.code = event.transaction_id, event.code
            self._data = _DataCount(event.transaction_id, event.length)
        elif kind is Kind.DATA_END:
            self._data = None
            if self.phase is Phase.STRAY_DATA and self.transaction_id == self.last_answered:
                step = Phase.IDLE  # it trails a transaction already answered
        elif kind is Kind.BAD_CONTAINER:
            assert isinstance(event, BadContainer)
            self.transaction_id, self.code = event.transaction_id, event.code
        elif kind is Kind.RESPONSE:
            self.last_answered = self.transaction_id
        self.phase = step
