"""What crosses the bulk pipes, as events: the vocabulary of both roles.

The framing (:mod:`.protocol`) turns bytes into these events, the
transaction state machine (:mod:`.transaction`) decides whether each is
allowed now, and the role connections (:mod:`.connection`) turn the events a
role sends back into bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .codes import ResponseCode


class Role(enum.Enum):
    """Which end of the USB cable an object speaks for."""

    INITIATOR = "initiator"
    """The host (a PC): sends commands and data-out phases."""
    RESPONDER = "responder"
    """The device: sends data-in phases and responses."""

    @property
    def peer(self) -> Role:
        return Role.RESPONDER if self is Role.INITIATOR else Role.INITIATOR


class Event:
    """Something one of the two ends put on the bulk pipes."""


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
    complete: bool = True
    """False when the transfer ended before the announced length."""


@dataclass(frozen=True, slots=True)
class Response(Event):
    code: int
    transaction_id: int
    params: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code == ResponseCode.OK


@dataclass(frozen=True, slots=True)
class BadContainer(Event):
    """A container that cannot be honoured.

    ``transaction_id`` is ``None`` when not even a header arrived, in which
    case there is no transaction to answer.  ``response`` is what a
    responder answers it with.
    """

    reason: str
    code: int | None
    transaction_id: int | None
    response: ResponseCode
