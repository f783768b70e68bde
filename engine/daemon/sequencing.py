"""The order in which one data owner's streams may move, as an explicit state machine.

A backup server moves an owner's data stream by stream: snapshots, base data and
increments, of passive and of active data, per drive (see engine/README.md,
Sequencing rules). Which stream may come next depends on what already moved on
that drive, and a stream out of order is refused with ``CorruptError`` before
any data moves, so an owner never sees an increment without its base or a
snapshot that arrives after the data it describes.

Each drive keeps one :class:`Phase` per :class:`Track`: the tracks are
independent of each other (asking for the passive snapshot does not change
whether passive base data may still be asked for). :data:`RULES` is the whole
order: for every :class:`Event`, the track it moves, the phases it is allowed
in with the phase each leads to, and the refusal otherwise. Nothing here does
I/O; :class:`OwnerSequence` is the only holder of the state, and only its
methods change it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Final

from ..errors import CorruptError
from ..types import TransferType


class Event(Enum):
    """One stream of one drive, named by its kind and the way it moves.

    *Requested* streams go from the engine to the backup server during a backup;
    a *supplied* snapshot comes back from the server during a backup (the previous
    backup's snapshot, which increments are measured against); *received* streams
    come from the server during a restore.
    """

    PASSIVE_SNAPSHOT_REQUESTED = "passive snapshot requested"
    PASSIVE_SNAPSHOT_SUPPLIED = "passive snapshot supplied"
    PASSIVE_BASE_REQUESTED = "passive base requested"
    PASSIVE_INCREMENTAL_REQUESTED = "passive incremental requested"
    PASSIVE_SNAPSHOT_RECEIVED = "passive snapshot received"
    PASSIVE_BASE_RECEIVED = "passive base received"
    PASSIVE_INCREMENTAL_RECEIVED = "passive incremental received"
    ACTIVE_SNAPSHOT_REQUESTED = "active snapshot requested"
    ACTIVE_SNAPSHOT_SUPPLIED = "active snapshot supplied"
    ACTIVE_BASE_REQUESTED = "active base requested"
    ACTIVE_INCREMENTAL_REQUESTED = "active incremental requested"
    ACTIVE_SNAPSHOT_RECEIVED = "active snapshot received"
    ACTIVE_BASE_RECEIVED = "active base received"
    ACTIVE_INCREMENTAL_RECEIVED = "active incremental received"


class Track(Enum):
    """An independent strand of one drive's history, per kind of data."""

    PASSIVE_SNAPSHOT_OUT = "passive snapshot out"
    """The device's current passive snapshot, handed to the server once."""
    PASSIVE_BACKUP = "passive backup"
    """A supplied previous snapshot, then base or incremental data out."""
    PASSIVE_RESTORE = "passive restore"
    """Snapshot, base and increments in."""
    ACTIVE_SNAPSHOT_OUT = "active snapshot out"
    ACTIVE_BACKUP = "active backup"
    ACTIVE_RESTORE = "active restore"


class Phase(Enum):
    """Where one track of one drive stands."""

    FRESH = "fresh"
    """Nothing moved on this track since the mode was entered."""
    SNAPSHOT_REQUESTED = "snapshot requested"
    SNAPSHOT_SUPPLIED = "snapshot supplied"
    """The previous snapshot is in; an increment against it may be asked for."""
    DATA_REQUESTED = "data requested"
    """Base or incremental data went out; this track is closed."""
    SNAPSHOT_RECEIVED = "snapshot received"
    BASE_RECEIVED = "base received"
    SNAPSHOT_AND_BASE_RECEIVED = "snapshot and base received"


@dataclass(frozen=True)
class Rule:
    """Which phases of ``track`` allow an event, what each leads to, and the refusal."""

    track: Track
    moves: Mapping[Phase, Phase]
    refusal: str


_P = Phase
_BASE_REFUSED = "base data not allowed after a snapshot or a previous request"
_INCREMENT_REFUSED = "incremental data needs a supplied snapshot, once"
_SNAPSHOT_SUPPLY_REFUSED = "snapshot supplied after data was requested"
_SNAPSHOT_RECEIVE_REFUSED = "snapshot supplied after restore data"
_BASE_TWICE = "base data supplied twice"

RULES: Final[Mapping[Event, Rule]] = MappingProxyType(
    {
        # Passive data, backup: the current snapshot once; either base data, or a
        # previous snapshot followed by one increment against it.
        Event.PASSIVE_SNAPSHOT_REQUESTED: Rule(
            Track.PASSIVE_SNAPSHOT_OUT,
            {_P.FRESH: _P.SNAPSHOT_REQUESTED},
            "passive snapshot already requested",
        ),
        Event.PASSIVE_SNAPSHOT_SUPPLIED: Rule(
            Track.PASSIVE_BACKUP, {_P.FRESH: _P.SNAPSHOT_SUPPLIED}, _SNAPSHOT_SUPPLY_REFUSED
        ),
        Event.PASSIVE_BASE_REQUESTED: Rule(
            Track.PASSIVE_BACKUP, {_P.FRESH: _P.DATA_REQUESTED}, _BASE_REFUSED
        ),
        Event.PASSIVE_INCREMENTAL_REQUESTED: Rule(
            Track.PASSIVE_BACKUP, {_P.SNAPSHOT_SUPPLIED: _P.DATA_REQUESTED}, _INCREMENT_REFUSED
        ),
        # Passive data, restore: the snapshot before any data, base data once, then
        # any number of increments once both are in.
        Event.PASSIVE_SNAPSHOT_RECEIVED: Rule(
            Track.PASSIVE_RESTORE, {_P.FRESH: _P.SNAPSHOT_RECEIVED}, _SNAPSHOT_RECEIVE_REFUSED
        ),
        Event.PASSIVE_BASE_RECEIVED: Rule(
            Track.PASSIVE_RESTORE,
            {
                _P.FRESH: _P.BASE_RECEIVED,
                _P.SNAPSHOT_RECEIVED: _P.SNAPSHOT_AND_BASE_RECEIVED,
            },
            _BASE_TWICE,
        ),
        Event.PASSIVE_INCREMENTAL_RECEIVED: Rule(
            Track.PASSIVE_RESTORE,
            {_P.SNAPSHOT_AND_BASE_RECEIVED: _P.SNAPSHOT_AND_BASE_RECEIVED},
            "increment supplied without its snapshot and base",
        ),
        # Active data, backup: the same order as passive data.
        Event.ACTIVE_SNAPSHOT_REQUESTED: Rule(
            Track.ACTIVE_SNAPSHOT_OUT,
            {_P.FRESH: _P.SNAPSHOT_REQUESTED},
            "active snapshot already requested",
        ),
        Event.ACTIVE_SNAPSHOT_SUPPLIED: Rule(
            Track.ACTIVE_BACKUP, {_P.FRESH: _P.SNAPSHOT_SUPPLIED}, _SNAPSHOT_SUPPLY_REFUSED
        ),
        Event.ACTIVE_BASE_REQUESTED: Rule(
            Track.ACTIVE_BACKUP, {_P.FRESH: _P.DATA_REQUESTED}, _BASE_REFUSED
        ),
        Event.ACTIVE_INCREMENTAL_REQUESTED: Rule(
            Track.ACTIVE_BACKUP, {_P.SNAPSHOT_SUPPLIED: _P.DATA_REQUESTED}, _INCREMENT_REFUSED
        ),
        # Active data, restore: as passive, except that an increment needs only its
        # base (the owner, not the engine, applies it).
        Event.ACTIVE_SNAPSHOT_RECEIVED: Rule(
            Track.ACTIVE_RESTORE, {_P.FRESH: _P.SNAPSHOT_RECEIVED}, _SNAPSHOT_RECEIVE_REFUSED
        ),
        Event.ACTIVE_BASE_RECEIVED: Rule(
            Track.ACTIVE_RESTORE,
            {
                _P.FRESH: _P.BASE_RECEIVED,
                _P.SNAPSHOT_RECEIVED: _P.SNAPSHOT_AND_BASE_RECEIVED,
            },
            _BASE_TWICE,
        ),
        Event.ACTIVE_INCREMENTAL_RECEIVED: Rule(
            Track.ACTIVE_RESTORE,
            {
                _P.BASE_RECEIVED: _P.BASE_RECEIVED,
                _P.SNAPSHOT_AND_BASE_RECEIVED: _P.SNAPSHOT_AND_BASE_RECEIVED,
            },
            "increment supplied before its base",
        ),
    }
)


def step(phase: Phase, event: Event) -> Phase:
    """The phase ``event`` leads to from ``phase`` of its track; CorruptError if refused."""
    rule = RULES[event]
    nxt = rule.moves.get(phase)
    if nxt is None:
        raise CorruptError(rule.refusal)
    return nxt


_REQUESTED: Final[Mapping[TransferType, Event]] = MappingProxyType(
    {
        TransferType.PASSIVE_SNAPSHOT: Event.PASSIVE_SNAPSHOT_REQUESTED,
        TransferType.PASSIVE_BASE: Event.PASSIVE_BASE_REQUESTED,
        TransferType.PASSIVE_INCREMENTAL: Event.PASSIVE_INCREMENTAL_REQUESTED,
        TransferType.ACTIVE_SNAPSHOT: Event.ACTIVE_SNAPSHOT_REQUESTED,
        TransferType.ACTIVE_BASE: Event.ACTIVE_BASE_REQUESTED,
        TransferType.ACTIVE_INCREMENTAL: Event.ACTIVE_INCREMENTAL_REQUESTED,
    }
)
_RECEIVED: Final[Mapping[TransferType, Event]] = MappingProxyType(
    {
        TransferType.PASSIVE_SNAPSHOT: Event.PASSIVE_SNAPSHOT_RECEIVED,
        TransferType.PASSIVE_BASE: Event.PASSIVE_BASE_RECEIVED,
        TransferType.PASSIVE_INCREMENTAL: Event.PASSIVE_INCREMENTAL_RECEIVED,
        TransferType.ACTIVE_SNAPSHOT: Event.ACTIVE_SNAPSHOT_RECEIVED,
        TransferType.ACTIVE_BASE: Event.ACTIVE_BASE_RECEIVED,
        TransferType.ACTIVE_INCREMENTAL: Event.ACTIVE_INCREMENTAL_RECEIVED,
    }
)
_SUPPLIED: Final[Mapping[TransferType, Event]] = MappingProxyType(
    {
        TransferType.PASSIVE_SNAPSHOT: Event.PASSIVE_SNAPSHOT_SUPPLIED,
        TransferType.ACTIVE_SNAPSHOT: Event.ACTIVE_SNAPSHOT_SUPPLIED,
    }
)


def requested(ttype: TransferType) -> Event:
    """The event of the engine handing out a stream of ``ttype`` during a backup."""
    return _REQUESTED[ttype]


def supplied(ttype: TransferType, *, restore: bool) -> Event:
    """The event of the server handing in a stream of ``ttype``.

    During a backup only snapshots come in (KeyError for anything else: the caller
    refuses those before asking); during a restore every stream does.
    """
    return _RECEIVED[ttype] if restore else _SUPPLIED[ttype]


class OwnerSequence:
    """One owner's history since the mode was entered: a phase per (drive, track).

    A new mode starts a new ``OwnerSequence``. Drives are independent: what moved
    on one says nothing about another.
    """

    def __init__(self) -> None:
        self._phases: dict[tuple[str, Track], Phase] = {}
        self._active_restore_begun = False

    def phase(self, drive: str, track: Track) -> Phase:
        return self._phases.get((drive, track), Phase.FRESH)

    def allows(self, drive: str, event: Event) -> bool:
        return self.phase(drive, RULES[event].track) in RULES[event].moves

    def check(self, drive: str, event: Event) -> None:
        """Refuse ``event`` on ``drive`` now (CorruptError), without recording it.

        For a stream that takes its place in the order later than it starts: a
        supplied snapshot counts once the whole of it is in, and an active snapshot
        is asked for only once its owner is found ready. Until then, another
        attempt is judged on the same history.
        """
        step(self.phase(drive, RULES[event].track), event)

    def advance(self, drive: str, event: Event) -> Phase:
        """Record ``event`` on ``drive`` if the order allows it; CorruptError if not."""
        track = RULES[event].track
        nxt = step(self.phase(drive, track), event)
        self._phases[(drive, track)] = nxt
        return nxt

    def note_active_restore(self) -> None:
        """Active data is being restored to this owner, on one drive or several.

        This holds for the owner as a whole: when the restore ends, the owner is told
        that it is complete on every restored drive it has (see engine/README.md,
        Restore).
        """
        self._active_restore_begun = True

    @property
    def active_restore_begun(self) -> bool:
        return self._active_restore_begun
