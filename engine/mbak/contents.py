"""Which streams a base and an increment must hold, decided from the manifest alone.

A restore replaces each owner's data with the archive's state, and for passive
data that state is the snapshot (the complete file list) together with the
file members.  An archive that lists file data without the snapshot would be
merged into the device instead of replacing it, and one that lists the same
stream twice would let the later copy silently win.  Such archives are
refused before anything is staged; the rules are stated in README.md
("Backup file format") and engine/README.md ("Restore").
"""

from __future__ import annotations

from ..errors import CorruptError
from ..types import TransferType
from .manifest import StreamEntry

PASSIVE_DATA = (TransferType.PASSIVE_BASE, TransferType.PASSIVE_INCREMENTAL)
ACTIVE_DATA = (TransferType.ACTIVE_BASE, TransferType.ACTIVE_INCREMENTAL)
INCREMENT_ONLY = (TransferType.PASSIVE_INCREMENTAL, TransferType.ACTIVE_INCREMENTAL)


def _where(e: StreamEntry) -> str:
    return e.place


def check_contents(mode: object, kind: object, streams: list[StreamEntry]) -> None:
    """Refuse a stream list that a restore could not apply as one whole state.

    * every stream's member name appears once (so one (owner, drive) has at
      most one file stream, base or incremental);
    * a stream that is not a file stream holds exactly one member;
    * a ``.snapshot`` file (``kind: "snapshot"``) holds snapshot streams only;
    * otherwise passive data comes in pairs: a ``passive-snapshot`` and one
      file stream for the same owner and drive, never one without the other;
      so do a drive's public files (area ``public``), for the same reason:
      without the public snapshot a restore could not delete what the backup
      did not hold;
    * active data is at most one ``active-base`` or ``active-incremental``
      stream per owner and drive, and an ``active-snapshot`` comes with one;
    * a base (``mode: "base"``) holds no incremental stream.
    """
    seen: dict[str, StreamEntry] = {}
    by_place: dict[tuple[str, int, str], list[StreamEntry]] = {}
    for e in streams:
        other = seen.get(e.member)
        if other is not None:
            raise CorruptError(
                f"streams {other.index} ({other.ttype.slug}) and {e.index} ({e.ttype.slug}) "
                f"are both {e.member}"
            )
        seen[e.member] = e
        by_place.setdefault((e.area, e.sid, e.drive), []).append(e)
        if e.ttype not in PASSIVE_DATA and e.entries != 1:
            raise CorruptError(f"stream {e.index} ({e.member}) must hold exactly one member")
        if kind == "snapshot" and not e.ttype.is_snapshot:
            raise CorruptError(f"a snapshot file holds {e.ttype.slug} data ({_where(e)})")
        if mode == "base" and e.ttype in INCREMENT_ONLY:
            raise CorruptError(f"a base archive holds {e.ttype.slug} data ({_where(e)})")
    if kind == "snapshot":
        return
    for place in by_place.values():
        types = {e.ttype for e in place}
        where = _where(place[0])
        has_files = bool(types & set(PASSIVE_DATA))
        if TransferType.PASSIVE_SNAPSHOT in types and not has_files:
            raise CorruptError(
                f"{where}: passive-snapshot without its passive data "
                "(passive-base or passive-incremental)"
            )
        if has_files and TransferType.PASSIVE_SNAPSHOT not in types:
            kinds = " or ".join(t.slug for t in PASSIVE_DATA if t in types)
            raise CorruptError(f"{where}: {kinds} data without its passive-snapshot")
        active = [t for t in ACTIVE_DATA if t in types]
        if len(active) > 1:
            raise CorruptError(f"{where}: both active-base and active-incremental data")
        if TransferType.ACTIVE_SNAPSHOT in types and not active:
            raise CorruptError(f"{where}: active-snapshot without its active data")
