"""Session state: whether a host has a session, and its transaction ids.

Kept apart from the operations so that the rules (which operations need a
session, which transaction ids are acceptable) live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .core.codes import OperationCode
from .provider import Upload

SESSIONLESS = frozenset(
    {OperationCode.GET_DEVICE_INFO, OperationCode.OPEN_SESSION, OperationCode.CLOSE_SESSION}
)
"""Operations a host may send before OpenSession (CloseSession then fails
with SessionNotOpen, which is its own answer)."""


@dataclass(slots=True)
class PendingObject:
    """SendObjectInfo accepted; SendObject not yet received."""

    storage_id: int
    handle: int
    upload: Upload
    size: int


@dataclass(slots=True)
class Session:
    session_id: int = 0
    last_transaction_id: int = 0
    pending: PendingObject | None = None
    editing: set[int] = field(default_factory=set)

    @property
    def is_open(self) -> bool:
        return self.session_id != 0

    def transaction_id_ok(self, tid: int) -> bool:
        """Within a session, ids increase by one; anything else is a host bug
        or a replay.  0xFFFFFFFF is reserved; after it the count wraps to 1."""
        if tid in (0, 0xFFFFFFFF):
            return False
        expected = self.last_transaction_id + 1
        if expected >= 0xFFFFFFFF:
            expected = 1
        # Accept gaps forward (a host that skipped ids after a cancel), not
        # repeats or steps back.
        return tid >= expected or (expected > 0xFFFF0000 and tid < 0x10000)
