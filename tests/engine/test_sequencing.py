"""The transfer order of one data owner, rule by rule (see engine/README.md, Sequencing rules).

Every refusal is a ``CorruptError`` with the message a backup server sees.
"""

from __future__ import annotations

import pytest

from engine.daemon.sequencing import (
    RULES,
    Event,
    OwnerSequence,
    Phase,
    Track,
    requested,
    step,
    supplied,
)
from engine.errors import CorruptError, ErrorCode
from engine.types import TransferType

E = Event
C = "c"

BASE_REFUSED = "base data not allowed after a snapshot or a previous request"
INCREMENT_REFUSED = "incremental data needs a supplied snapshot, once"
SNAPSHOT_SUPPLY_REFUSED = "snapshot supplied after data was requested"
SNAPSHOT_RECEIVE_REFUSED = "snapshot supplied after restore data"
BASE_TWICE = "base data supplied twice"


def after(*events: Event, drive: str = C) -> OwnerSequence:
    """A sequence that went through ``events`` on ``drive``, each of them allowed."""
    seq = OwnerSequence()
    for e in events:
        seq.advance(drive, e)
    return seq


def refused(seq: OwnerSequence, event: Event, message: str, drive: str = C) -> None:
    with pytest.raises(CorruptError) as info:
        seq.advance(drive, event)
    assert info.value.code == ErrorCode.CORRUPT
    assert info.value.message == message


class Backup:
    """The backup events of one kind of data: passive and active follow the same order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.snapshot_requested = Event[f"{kind}_SNAPSHOT_REQUESTED"]
        self.snapshot_supplied = Event[f"{kind}_SNAPSHOT_SUPPLIED"]
        self.base = Event[f"{kind}_BASE_REQUESTED"]
        self.increment = Event[f"{kind}_INCREMENTAL_REQUESTED"]
        self.snapshot_twice = f"{kind.lower()} snapshot already requested"


@pytest.fixture(params=["PASSIVE", "ACTIVE"], ids=["passive", "active"])
def backup(request: pytest.FixtureRequest) -> Backup:
    return Backup(request.param)


# ---------------------------------------------------------------- backup


def test_backup_base_data_may_be_requested_on_a_fresh_drive(backup: Backup) -> None:
    assert after().allows(C, backup.base)
    assert after(backup.base).phase(C, RULES[backup.base].track) is Phase.DATA_REQUESTED


def test_backup_increment_follows_a_supplied_snapshot(backup: Backup) -> None:
    seq = after(backup.snapshot_supplied, backup.increment)
    assert seq.phase(C, RULES[backup.increment].track) is Phase.DATA_REQUESTED


def test_backup_current_snapshot_may_be_requested_before_or_after_data(backup: Backup) -> None:
    after(backup.snapshot_requested, backup.base)
    after(backup.base, backup.snapshot_requested)
    after(backup.snapshot_supplied, backup.snapshot_requested, backup.increment)


def test_backup_current_snapshot_is_refused_the_second_time(backup: Backup) -> None:
    refused(after(backup.snapshot_requested), backup.snapshot_requested, backup.snapshot_twice)


def test_backup_base_data_is_refused_after_a_supplied_snapshot(backup: Backup) -> None:
    refused(after(backup.snapshot_supplied), backup.base, BASE_REFUSED)


def test_backup_base_data_is_refused_after_base_data(backup: Backup) -> None:
    refused(after(backup.base), backup.base, BASE_REFUSED)


def test_backup_base_data_is_refused_after_an_increment(backup: Backup) -> None:
    refused(after(backup.snapshot_supplied, backup.increment), backup.base, BASE_REFUSED)


def test_backup_increment_is_refused_without_a_supplied_snapshot(backup: Backup) -> None:
    refused(after(), backup.increment, INCREMENT_REFUSED)
    refused(after(backup.snapshot_requested), backup.increment, INCREMENT_REFUSED)


def test_backup_increment_is_refused_after_base_data(backup: Backup) -> None:
    refused(after(backup.base), backup.increment, INCREMENT_REFUSED)


def test_backup_increment_is_refused_the_second_time(backup: Backup) -> None:
    seq = after(backup.snapshot_supplied, backup.increment)
    refused(seq, backup.increment, INCREMENT_REFUSED)


def test_backup_snapshot_supply_is_refused_after_base_data(backup: Backup) -> None:
    refused(after(backup.base), backup.snapshot_supplied, SNAPSHOT_SUPPLY_REFUSED)


def test_backup_snapshot_supply_is_refused_after_an_increment(backup: Backup) -> None:
    seq = after(backup.snapshot_supplied, backup.increment)
    refused(seq, backup.snapshot_supplied, SNAPSHOT_SUPPLY_REFUSED)


def test_backup_snapshot_supply_is_refused_the_second_time(backup: Backup) -> None:
    refused(after(backup.snapshot_supplied), backup.snapshot_supplied, SNAPSHOT_SUPPLY_REFUSED)


def test_backup_snapshot_supply_is_not_held_against_the_current_snapshot(backup: Backup) -> None:
    after(backup.snapshot_requested, backup.snapshot_supplied)


# ---------------------------------------------------------------- restore, both kinds


@pytest.mark.parametrize("kind", ["PASSIVE", "ACTIVE"], ids=["passive", "active"])
def test_restore_snapshot_then_base_then_increments(kind: str) -> None:
    snap, base, inc = (Event[f"{kind}_{s}_RECEIVED"] for s in ("SNAPSHOT", "BASE", "INCREMENTAL"))
    seq = after(snap, base, inc, inc, inc)
    assert seq.phase(C, RULES[inc].track) is Phase.SNAPSHOT_AND_BASE_RECEIVED


@pytest.mark.parametrize("kind", ["PASSIVE", "ACTIVE"], ids=["passive", "active"])
def test_restore_base_alone(kind: str) -> None:
    base = Event[f"{kind}_BASE_RECEIVED"]
    assert after(base).phase(C, RULES[base].track) is Phase.BASE_RECEIVED


@pytest.mark.parametrize("kind", ["PASSIVE", "ACTIVE"], ids=["passive", "active"])
def test_restore_snapshot_is_refused_after_base_data(kind: str) -> None:
    refused(
        after(Event[f"{kind}_BASE_RECEIVED"]),
        Event[f"{kind}_SNAPSHOT_RECEIVED"],
        SNAPSHOT_RECEIVE_REFUSED,
    )


@pytest.mark.parametrize("kind", ["PASSIVE", "ACTIVE"], ids=["passive", "active"])
def test_restore_snapshot_is_refused_after_an_increment(kind: str) -> None:
    snap, base, inc = (Event[f"{kind}_{s}_RECEIVED"] for s in ("SNAPSHOT", "BASE", "INCREMENTAL"))
    refused(after(snap, base, inc), snap, SNAPSHOT_RECEIVE_REFUSED)


@pytest.mark.parametrize("kind", ["PASSIVE", "ACTIVE"], ids=["passive", "active"])
def test_restore_snapshot_is_refused_the_second_time(kind: str) -> None:
    snap = Event[f"{kind}_SNAPSHOT_RECEIVED"]
    refused(after(snap), snap, SNAPSHOT_RECEIVE_REFUSED)


@pytest.mark.parametrize("kind", ["PASSIVE", "ACTIVE"], ids=["passive", "active"])
def test_restore_base_data_is_refused_the_second_time(kind: str) -> None:
    snap, base = Event[f"{kind}_SNAPSHOT_RECEIVED"], Event[f"{kind}_BASE_RECEIVED"]
    refused(after(base), base, BASE_TWICE)
    refused(after(snap, base), base, BASE_TWICE)


# ---------------------------------------------------------------- restore, per kind


def test_passive_restore_increment_is_refused_without_its_snapshot() -> None:
    refused(
        after(E.PASSIVE_BASE_RECEIVED),
        E.PASSIVE_INCREMENTAL_RECEIVED,
        "increment supplied without its snapshot and base",
    )


def test_passive_restore_increment_is_refused_without_its_base() -> None:
    refused(
        after(E.PASSIVE_SNAPSHOT_RECEIVED),
        E.PASSIVE_INCREMENTAL_RECEIVED,
        "increment supplied without its snapshot and base",
    )
    refused(
        after(), E.PASSIVE_INCREMENTAL_RECEIVED, "increment supplied without its snapshot and base"
    )


def test_active_restore_increment_needs_only_its_base() -> None:
    seq = after(
        E.ACTIVE_BASE_RECEIVED, E.ACTIVE_INCREMENTAL_RECEIVED, E.ACTIVE_INCREMENTAL_RECEIVED
    )
    assert seq.phase(C, Track.ACTIVE_RESTORE) is Phase.BASE_RECEIVED


def test_active_restore_increment_is_refused_without_its_base() -> None:
    refused(after(), E.ACTIVE_INCREMENTAL_RECEIVED, "increment supplied before its base")
    refused(
        after(E.ACTIVE_SNAPSHOT_RECEIVED),
        E.ACTIVE_INCREMENTAL_RECEIVED,
        "increment supplied before its base",
    )


# ---------------------------------------------------------------- independence


def test_drives_are_independent() -> None:
    seq = after(E.PASSIVE_BASE_REQUESTED, drive="c")
    assert seq.allows("e", E.PASSIVE_BASE_REQUESTED)
    seq.advance("e", E.PASSIVE_BASE_REQUESTED)
    refused(seq, E.PASSIVE_BASE_REQUESTED, BASE_REFUSED, drive="e")


def test_passive_and_active_data_are_independent() -> None:
    seq = after(E.PASSIVE_BASE_REQUESTED, E.ACTIVE_SNAPSHOT_SUPPLIED)
    seq.advance(C, E.ACTIVE_INCREMENTAL_REQUESTED)
    seq.advance(C, E.PASSIVE_SNAPSHOT_REQUESTED)
    assert seq.phase(C, Track.PASSIVE_BACKUP) is Phase.DATA_REQUESTED
    assert seq.phase(C, Track.ACTIVE_BACKUP) is Phase.DATA_REQUESTED


def test_a_refused_event_changes_nothing() -> None:
    seq = after(E.PASSIVE_BASE_REQUESTED)
    refused(seq, E.PASSIVE_SNAPSHOT_SUPPLIED, SNAPSHOT_SUPPLY_REFUSED)
    assert seq.phase(C, Track.PASSIVE_BACKUP) is Phase.DATA_REQUESTED


def test_check_judges_without_recording() -> None:
    """A snapshot coming in is judged when it starts and recorded once it is all in."""
    seq = OwnerSequence()
    seq.check(C, E.PASSIVE_SNAPSHOT_SUPPLIED)
    seq.check(C, E.PASSIVE_SNAPSHOT_SUPPLIED)
    assert seq.phase(C, Track.PASSIVE_BACKUP) is Phase.FRESH
    seq.advance(C, E.PASSIVE_SNAPSHOT_SUPPLIED)
    with pytest.raises(CorruptError, match=SNAPSHOT_SUPPLY_REFUSED):
        seq.check(C, E.PASSIVE_SNAPSHOT_SUPPLIED)


def test_active_restore_is_noted_for_the_owner_as_a_whole() -> None:
    seq = OwnerSequence()
    assert not seq.active_restore_begun
    seq.note_active_restore()
    assert seq.active_restore_begun


# ---------------------------------------------------------------- the table


def test_every_event_has_exactly_one_rule() -> None:
    assert set(RULES) == set(Event)


def test_step_is_the_table() -> None:
    for event, rule in RULES.items():
        for phase in Phase:
            if phase in rule.moves:
                assert step(phase, event) is rule.moves[phase]
            else:
                with pytest.raises(CorruptError, match=rule.refusal):
                    step(phase, event)


def test_transfer_types_name_their_events() -> None:
    assert requested(TransferType.PASSIVE_BASE) is E.PASSIVE_BASE_REQUESTED
    assert requested(TransferType.ACTIVE_SNAPSHOT) is E.ACTIVE_SNAPSHOT_REQUESTED
    assert supplied(TransferType.ACTIVE_SNAPSHOT, restore=False) is E.ACTIVE_SNAPSHOT_SUPPLIED
    assert supplied(TransferType.ACTIVE_SNAPSHOT, restore=True) is E.ACTIVE_SNAPSHOT_RECEIVED
    assert supplied(TransferType.PASSIVE_INCREMENTAL, restore=True) is (
        E.PASSIVE_INCREMENTAL_RECEIVED
    )


def test_only_snapshots_come_in_during_a_backup() -> None:
    with pytest.raises(KeyError):
        supplied(TransferType.PASSIVE_BASE, restore=False)
