"""Public files: the files outside private directories that owners select.

Public files live outside the owners' private directories and several owners
may select the same ones. The engine lists them for a backup server (whole, in
pages, or as the raw selections), and puts them into archives as the public
area of each drive: one snapshot and one file stream per drive holding the
union of the owners' selections, each file once (see engine/README.md, Public
files). :class:`PublicScope` answers "is this path public, and selected?" for
restores, which must never write anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import ArgumentError
from ..mbak.manifest import PUBLIC_AREA
from ..mbak.snapshot import FileRecord, Snapshot, write_snapshot
from ..types import FileEntry, TransferType, format_sid, normalise_drive
from .archive import PlanBuilder
from .config import EngineConfig
from .filelist import PUBLIC_EXCLUDED_TOP, iter_public_files
from .modegate import CurrentMode
from .owners import DataOwner
from .registry import OwnerRegistry

Selection = tuple[bool, str, str, bool]
"""``(include, drive, path relative to the drive root, is_dir)``; drive ``!`` is any."""


def selections_of(owners: Iterable[DataOwner], drive: str) -> list[Selection]:
    """The public selections of ``owners`` that apply to ``drive``, in registration order."""
    out: list[Selection] = []
    for o in owners:
        for s in o.registration.public_selections:
            if s.drive in (drive, "!"):
                out.append((s.include, s.drive, s.path, s.is_dir))
    return out


def public_records(drive: str, drive_root: Path, owners: Iterable[DataOwner]) -> list[FileRecord]:
    """Every public file the owners select on ``drive``, once, sorted; paths from the drive root.

    Each owner's excludes apply to its own includes only: a file one owner
    excludes and another includes is public data. Only regular files are
    listed, from ``lstat`` (no symlink is followed).
    """
    found: dict[str, FileRecord] = {}
    for o in owners:
        sels = selections_of([o], drive)
        for p, st in iter_public_files(drive, drive_root, sels):
            rel = p.relative_to(drive_root).as_posix()
            found.setdefault(rel, FileRecord(rel, st.st_size, st.st_mtime_ns, st.st_mode & 0o7777))
    return [found[k] for k in sorted(found)]


class PublicScope:
    """The public paths of one drive that some owners select (restore validation).

    Mirrors :func:`engine.daemon.filelist.iter_public_files`: a path is in scope
    when an include is it or one of its parents, no exclude of the same owner
    is, and its first component is not a system area (``private``, ``sys``,
    ``system``, ``resource``).
    """

    def __init__(self, drive: str, owners: Iterable[DataOwner]) -> None:
        self.per_owner: list[tuple[list[str], set[str]]] = []
        for o in owners:
            sels = selections_of([o], drive)
            inc = [s[2].rstrip("/") for s in sels if s[0]]
            exc = {s[2].rstrip("/") for s in sels if not s[0]}
            if inc:
                self.per_owner.append((inc, exc))

    def __bool__(self) -> bool:
        return bool(self.per_owner)

    def __contains__(self, rel: str) -> bool:
        r = rel.rstrip("/")
        if not r or r.split("/", 1)[0].lower() in PUBLIC_EXCLUDED_TOP:
            return False
        parts = r.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        for inc, exc in self.per_owner:
            if any(p in exc for p in prefixes):
                continue
            if any(i == "" or i == r or r.startswith(i + "/") for i in inc):
                return True
        return False


class PublicFiles:
    def __init__(self, config: EngineConfig, current: CurrentMode, registry: OwnerRegistry) -> None:
        self.config = config
        self.current = current
        self.registry = registry

    def _backup_drive(self, drive: str) -> str:
        d = normalise_drive(drive)
        if d not in self.current.info.drives:
            raise ArgumentError(f"drive {d} is not in the backup drive list")
        return d

    def public_file_list(self, drive: str, sid: int) -> list[FileEntry]:
        self.current.require(backup=True)
        o = self.registry.owner(sid)
        d = self._backup_drive(drive)
        sels = [(s.include, s.drive, s.path, s.is_dir) for s in o.registration.public_selections]
        out = []
        for p, st in iter_public_files(d, self.config.drive_root(d), sels):
            out.append(FileEntry(str(p), st.st_size, st.st_mtime_ns, st.st_mode & 0o7777))
        return out

    def public_file_list_page(
        self, drive: str, sid: int, cursor: int, max_response_size: int
    ) -> tuple[list[FileEntry], bool, int]:
        """Entries from ``cursor`` within ``max_response_size`` (at least one); the next cursor."""
        entries = self.public_file_list(drive, sid)
        if cursor < 0 or cursor > len(entries):
            raise ArgumentError("bad cursor")
        out: list[FileEntry] = []
        used = 0
        i = cursor
        while i < len(entries):
            sz = entries[i].wire_size()
            if out and used + sz > max_response_size:
                break
            out.append(entries[i])
            used += sz
            i += 1
        return out, i >= len(entries), i

    def raw_public_file_list(self, drive: str, sid: int) -> list[tuple[bool, str]]:
        """The owner's public selections on ``drive`` as ``(include, absolute path)``."""
        self.current.require(backup=True)
        o = self.registry.owner(sid)
        d = self._backup_drive(drive)
        root = self.config.drive_root(d)
        out = []
        for s in o.registration.public_selections:
            if s.drive not in (d, "!"):
                continue
            p = str(root / s.path.rstrip("/")) if s.path else str(root)
            out.append((s.include, p + ("/" if s.is_dir else "")))
        return out


def _add_public_streams(
    builder: PlanBuilder,
    drive: str,
    drive_root: Path,
    records: list[FileRecord],
    previous: Snapshot | None,
    snap_path: Path,
) -> None:
    """One drive's public area in ``builder``: its snapshot, then its (changed) files."""
    with open(snap_path, "wb") as fh:
        write_snapshot(fh, records)
    builder.begin_stream(0, drive, TransferType.PASSIVE_SNAPSHOT, PUBLIC_AREA)
    builder.add_spooled(snap_path)
    builder.end_stream()
    ttype = TransferType.PASSIVE_BASE
    data = records
    if previous is not None:
        ttype = TransferType.PASSIVE_INCREMENTAL
        data = previous.changed(records)
    builder.begin_stream(0, drive, ttype, PUBLIC_AREA)
    builder.add_files(drive_root, data)
    builder.end_stream()


def plan_public(
    config: EngineConfig,
    drives: Iterable[str],
    whole: PlanBuilder,
    per_owner: list[tuple[DataOwner, PlanBuilder]],
    previous: dict[str, Path],
    spool: Path,
) -> None:
    """Add the public areas to a backup's archives (blocking: lists and writes snapshots).

    ``whole`` (the full or partial archive) gets, per drive, the union of the
    selections of every owner in ``per_owner``, each file once; each owner's
    own archive gets its own selections. ``previous`` holds the public
    snapshots of the backup an increment is taken against: a drive with one
    gets only the files that changed since, a drive without one all of them.
    """
    for d in sorted(drives):
        root = config.drive_root(d)
        prev_path = previous.get(d)
        prev = Snapshot.from_file(prev_path) if prev_path is not None else None
        selecting = [o for o, _b in per_owner if selections_of([o], d)]
        if not selecting:
            continue
        _add_public_streams(
            whole, d, root, public_records(d, root, selecting), prev, spool / f"public-{d}-all"
        )
        for o, b in per_owner:
            if o in selecting:
                recs = public_records(d, root, [o])
                snap = spool / f"public-{d}-{format_sid(o.sid)}"
                _add_public_streams(b, d, root, recs, prev, snap)
