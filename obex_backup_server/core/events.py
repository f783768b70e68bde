"""What the server's core hands its server (received) and takes from it (to send).

Received, one request packet at a time:

- :class:`Connect`, :class:`Disconnect`, :class:`SetPath`, :class:`Abort`: one
  packet each, answered with one :class:`Response`.
- a PUT: :class:`PutStart` (its first packet's headers), any number of
  :class:`BodyChunk`, then per non-final packet a :class:`ContinueDue`
  (answer ``Response(CONTINUE)`` or an error) and, after the final packet,
  :class:`PutEnd` (answer Success, Created or an error).  Each chunk is one
  Body header's bytes, so a file of any size streams through memory bounded
  by one packet.
- a GET: a :class:`ContinueDue` per non-final request packet, then one
  :class:`GetRequest` with every header of the request.  The server answers
  with :class:`ResponseHeaders` (optional), :class:`BodyChunk` and
  :class:`BodyEnd`, or with an error :class:`Response`; the core cuts the
  body into packets and says :class:`BodyWanted` each time the client asks
  for the next one.
- :class:`RequestError`: a packet the core refused itself (garbage, a header
  that cannot be parsed, a missing Connection-Id, an unknown operation);
  answer ``Response(event.response)``.
- :class:`ConnectionClosed`: the transport ended.

Events that end an operation (PUT or GET) in progress say so in ``ended``,
so the server can drop a half-written file.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .codes import ResponseCode
from .headers import Header


class Operation(enum.Enum):
    """An operation that spans packets."""

    PUT = "PUT"
    GET = "GET"


class PutOutcome(enum.Enum):
    """What a finished PUT asks for."""

    WRITE = "write"
    """Body bytes arrived: the object is what they say."""
    CREATE_EMPTY = "create empty"
    """An End-of-Body (or Body) header without a byte: an empty object."""
    DELETE = "delete"
    """No Body and no End-of-Body at all: delete the named object."""


class Event:
    """Something that crossed the connection, in either direction."""


# -- received ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connect(Event):
    version: int
    flags: int
    max_packet_length: int
    """The client's: the core answers with the smaller of it and the server's."""
    target: bytes | None
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True, slots=True)
class Disconnect(Event):
    ended: Operation | None = None
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True, slots=True)
class SetPath(Event):
    """Change the current folder.

    ``up``: first go to the parent.  Then ``name`` (a child's name) goes down
    into it, creating it when ``create``; without ``up``, an empty or absent
    name goes to the root.
    """

    name: str | None
    up: bool
    create: bool
    headers: tuple[Header, ...] = ()

    @property
    def to_root(self) -> bool:
        return not self.up and not self.name


@dataclass(frozen=True, slots=True)
class PutStart(Event):
    name: str | None
    type: str | None
    length: int | None
    """The Length header: what the client announces, if it does."""
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True, slots=True)
class BodyChunk(Event):
    """Object bytes: of a PUT when received, of a GET response when sent."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ContinueDue(Event):
    """A non-final PUT or GET request packet is complete: answer Continue (or refuse)."""

    operation: Operation


@dataclass(frozen=True, slots=True)
class PutEnd(Event):
    outcome: PutOutcome
    received: int
    """Body bytes received over the whole PUT."""


@dataclass(frozen=True, slots=True)
class GetRequest(Event):
    name: str | None
    type: str | None
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True, slots=True)
class BodyWanted(Event):
    """The client asked for the next packet of the GET response."""


@dataclass(frozen=True, slots=True)
class Abort(Event):
    ended: Operation | None


@dataclass(frozen=True, slots=True)
class RequestError(Event):
    """A request packet the core refused; answer it with ``response``."""

    reason: str
    response: ResponseCode
    ended: Operation | None = None
    opcode: int | None = None
    """The refused packet's operation code (the answer to a CONNECT keeps its fields)."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    ended: Operation | None = None


# -- sent ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Response(Event):
    """The answer to the request packet in hand.

    To a CONNECT, the core adds version, flags, the negotiated packet length
    and, on success with a Target, Who and Connection-Id.
    """

    code: ResponseCode
    headers: tuple[Header, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ResponseHeaders(Event):
    """Headers (Length, Type, Time...) for the first packet of a GET response."""

    headers: tuple[Header, ...]


@dataclass(frozen=True, slots=True)
class BodyEnd(Event):
    """The GET response's body is complete: the last packet goes out with Success."""
