"""What went wrong, in words every transport can map to its own answer.

A backup server speaks MTP, OBEX or something else; the toolkit reports a
failure as a :class:`ServerError` carrying an :class:`ErrorKind` and a reason
in words.  Each transport keeps one table from kind to its own response code
(MTP response codes, OBEX response codes), so every server answers the same
failure the same way.
"""

from __future__ import annotations

from enum import Enum

from engine.errors import ErrorCode


class ErrorKind(Enum):
    """The failures a backup server can report, whatever its protocol."""

    NOT_FOUND = "not-found"
    """No such entry (a path that never existed, or one that has gone)."""
    DENIED = "denied"
    """The tree's layout does not allow it (write into Backup/, read a restore back)."""
    BAD_NAME = "bad-name"
    """The name cannot be used there: reserved, already taken, or not one path component."""
    NO_SPACE = "no-space"
    """Not enough room for the data (checked up front when the size is known)."""
    BAD_DATA = "bad-data"
    """The engine refused the data: corrupt, hostile, unknown owner, not an archive."""
    INCOMPLETE = "incomplete"
    """Fewer (or more) bytes than announced, or an archive cut short."""
    BUSY = "busy"
    """The engine is busy with another client or an owner is not ready."""
    UNAVAILABLE = "unavailable"
    """The engine cannot be reached, or its connection broke."""
    FAILED = "failed"
    """Anything else; the reason says what."""


class ServerError(Exception):
    """A failure the peer should see as ``kind``, with ``reason`` for the logs and status."""

    def __init__(self, kind: ErrorKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


ENGINE_KINDS: dict[int, ErrorKind] = {
    ErrorCode.DISK_FULL: ErrorKind.NO_SPACE,
    ErrorCode.CORRUPT: ErrorKind.BAD_DATA,
    ErrorCode.NOT_FOUND: ErrorKind.BAD_DATA,
    ErrorCode.ARGUMENT: ErrorKind.BAD_DATA,
    ErrorCode.OVERFLOW: ErrorKind.BAD_DATA,
    ErrorCode.UNDERFLOW: ErrorKind.INCOMPLETE,
    ErrorCode.ACCESS_DENIED: ErrorKind.DENIED,
    ErrorCode.IN_USE: ErrorKind.BUSY,
    ErrorCode.NOT_READY: ErrorKind.BUSY,
}
"""The engine's error codes (engine/README.md, Wire protocol) as kinds.

NotFound is bad data here: the engine says it when an archive names an owner
or drive this device does not have, never for a path of the tree.
"""


def kind_of(engine_code: int) -> ErrorKind:
    """The kind for an engine error code; codes not listed are :attr:`ErrorKind.FAILED`."""
    return ENGINE_KINDS.get(engine_code, ErrorKind.FAILED)
