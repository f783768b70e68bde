"""Taking a backup into a directory: full, incremental, or of single data owners.

The device prepares a backup when its ``Backup/`` folder is listed; this
copies out what it made (``.mbak`` and ``.snapshot``), verified on the way in,
and records it in the directory's ``chain.json``.  An increment is asked for by
dropping the newest ``.snapshot`` into ``Incremental/``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import EngineError
from engine.types import format_sid, parse_sid
from mtp_responder.core.codes import ResponseCode

from .chain import CHAIN_FILE, Chain, ChainEntry, unique_path
from .device import BackupDevice, RemoteObject, open_device, partial_path, response_name
from .encrypted import AGE_SUFFIX
from .errors import EXIT_USAGE, ToolError
from .space import require_space
from .verify import ArchiveSummary

if TYPE_CHECKING:
    from engine.agefile import X25519Identity

ARCHIVE_SUFFIXES = (".mbak", ".mbak" + AGE_SUFFIX)
"""What the device serves: ``.mbak``, or ``.mbak.age`` when it encrypts its backups."""


def take_backup(
    directory: Path,
    *,
    incremental: bool,
    owners: list[str],
    selector: str | None,
    timeout_s: float,
    identities: Sequence[X25519Identity] | None = None,
) -> None:
    """``mtp-backup backup``: everything checked that can be before USB is touched.

    ``identities`` check an encrypted backup (``.mbak.age``) as it arrives;
    without them it is copied as it is, and said to be unchecked.
    """
    directory.mkdir(parents=True, exist_ok=True)
    chain = Chain.load(directory)
    if incremental and owners:
        raise ToolError("--incremental and --owner cannot be combined", EXIT_USAGE)
    try:
        sids = [parse_sid(s) for s in owners]
    except EngineError as exc:
        raise ToolError(exc.message, EXIT_USAGE) from exc
    previous = chain.latest_snapshot() if incremental else None
    with open_device(selector, timeout_s) as device:
        fetcher = _Fetcher(device, directory, identities or [])
        if sids:
            _backup_owners(fetcher, chain, sids)
        elif previous is not None:
            _backup_incremental(fetcher, chain, previous)
        else:
            _backup_full(fetcher, chain)


def entry_for(summary: ArchiveSummary, path: Path, directory: Path) -> ChainEntry:
    """The chain entry of a verified archive at ``path`` inside ``directory``."""
    m = summary.manifest
    sids = [o.get("sid") for o in m.get("owners") or [] if isinstance(o, dict)]
    kind = str(m.get("kind", "full"))
    return ChainEntry(
        archive=str(path.relative_to(directory)),
        snapshot=None,
        backup_id=summary.backup_id,
        based_on=summary.based_on,
        mode=str(m.get("mode", "base")),
        kind=kind,
        created=str(m.get("created", "")),
        size=summary.size,
        sha256=summary.sha256,
        sid=str(sids[0]) if kind == "owner" and sids else None,
    )


def pick(
    listing: dict[str, RemoteObject], suffix: str | tuple[str, ...], exclude: str | None = None
) -> RemoteObject:
    """The object the device produced (read-only), not something a host dropped."""
    found = [
        o
        for o in listing.values()
        if o.name.endswith(suffix) and o.read_only and not o.is_folder and o.name != exclude
    ]
    if len(found) != 1:
        names = ", ".join(sorted(listing)) or "nothing"
        wanted = suffix if isinstance(suffix, str) else " or ".join(suffix)
        raise ToolError(f"expected one {wanted} from the device, the folder holds: {names}")
    return found[0]


class _Fetcher:
    """Copies archives out of one device into one directory, space checked first."""

    def __init__(
        self, device: BackupDevice, directory: Path, identities: Sequence[X25519Identity]
    ) -> None:
        self.device = device
        self.directory = directory
        self.identities = identities

    def make_room(self, objects: Sequence[RemoteObject], where: Path | None = None) -> None:
        """Space before time: every byte of the backup must fit before the first is copied.

        Bytes a partial file in ``where`` (DIR by default) already holds for an
        object are not needed again.
        """
        where = where or self.directory
        names = ", ".join(o.name for o in objects)
        needed = sum(o.size - self.resumable(o, where) for o in objects)
        require_space(self.directory, needed, names)

    def resumable(self, obj: RemoteObject, where: Path | None = None) -> int:
        """Bytes of ``obj`` a partial file from an interrupted run holds (0: none)."""
        try:
            have = partial_path(where or self.directory, obj).stat().st_size
        except OSError:
            return 0
        return have if have <= obj.size else 0

    def mention_leftovers(self, objects: Sequence[RemoteObject], where: Path | None = None) -> None:
        """Say which partial files are not of this backup: they are left as they are."""
        where = where or self.directory
        mine = {partial_path(where, o).name for o in objects}
        for part in sorted(where.glob("*.part")):
            if part.name not in mine:
                print(f"{part.name}: not the backup the device lists now; left alone")

    def fetch(self, obj: RemoteObject, dest: Path) -> ArchiveSummary:
        summary = self.device.fetch(obj, dest, self.identities)
        if not summary.checked:
            for line in summary.describe()[1:]:
                print(line)
        return summary


def _fetch_pair(
    fetcher: _Fetcher, chain: Chain, archive: RemoteObject, snapshot: RemoteObject
) -> ChainEntry:
    directory = fetcher.directory
    fetcher.mention_leftovers([archive, snapshot])
    fetcher.make_room([archive, snapshot])
    mbak_path = unique_path(directory, archive.name)
    snap_path = unique_path(directory, snapshot.name)
    summary = fetcher.fetch(archive, mbak_path)
    snap_summary = fetcher.fetch(snapshot, snap_path)
    if not summary.checked:
        # The snapshot stays plain: it names the backup, its base and its owners.
        summary.manifest = {**snap_summary.manifest, "kind": "full"}
    elif snap_summary.backup_id != summary.backup_id:
        raise ToolError(f"{snapshot.name} does not belong to {archive.name}")
    entry = entry_for(summary, mbak_path, directory)
    entry.snapshot = str(snap_path.relative_to(directory))
    if summary.checked:
        for line in summary.describe()[1:]:
            print(line)
    chain.device = str(summary.manifest.get("device", chain.device))
    chain.add(entry)
    chain.save(directory)
    return entry


def _backup_full(fetcher: _Fetcher, chain: Chain) -> None:
    print("preparing a full backup (listing Backup/)...", flush=True)
    listing = fetcher.device.folder("Backup")
    entry = _fetch_pair(fetcher, chain, pick(listing, ARCHIVE_SUFFIXES), pick(listing, ".snapshot"))
    print(f"base backup {entry.archive} saved; chain of {len(chain.current)} in {CHAIN_FILE}")


def _backup_incremental(fetcher: _Fetcher, chain: Chain, previous: ChainEntry) -> None:
    assert previous.snapshot is not None
    device = fetcher.device
    if _resume_increment(fetcher, chain, previous):
        return
    snap = fetcher.directory / previous.snapshot
    # A name of our own: a snapshot left in Incremental/ by an earlier run must
    # not clash with (or be mistaken for) this one.
    sent_name = f"previous-{previous.backup_id[:12]}-{int(time.time())}.snapshot"
    print(f"sending {previous.snapshot} into Incremental/ (the device prepares the increment)")
    handle, code = device.send("Incremental", snap, sent_name)
    if code != ResponseCode.OK:
        raise ToolError(f"the device did not accept the snapshot: {response_name(code)}")
    try:
        listing = device.folder("Incremental")
        _fetch_pair(
            fetcher,
            chain,
            pick(listing, ARCHIVE_SUFFIXES, sent_name),
            pick(listing, ".snapshot", sent_name),
        )
    finally:
        # Tidy up: also tells the device the incremental is done.
        with contextlib.suppress(Exception):
            device.delete(handle)
    print(f"increment saved; chain of {len(chain.current)} in {CHAIN_FILE}")


def _resume_increment(fetcher: _Fetcher, chain: Chain, previous: ChainEntry) -> bool:
    """Finish the download of an increment the device still holds from an interrupted run.

    The run sent its snapshot under a name of its own; the device keeps the
    increment prepared for a while after the link went down, and a partial
    file in DIR of that increment's exact name and size says the download
    had begun.  Sending the snapshot again would prepare another increment.
    """
    device = fetcher.device
    ours = f"previous-{previous.backup_id[:12]}-"
    listing = device.folder("Incremental")
    sent = [o for o in listing.values() if o.name.startswith(ours) and not o.read_only]
    if not sent:
        return False
    archives = [
        o
        for o in listing.values()
        if o.name.endswith(ARCHIVE_SUFFIXES) and o.read_only and fetcher.resumable(o)
    ]
    if len(archives) != 1:
        return False
    print(f"the device still holds the increment {archives[0].name}: continuing its download")
    try:
        _fetch_pair(fetcher, chain, archives[0], pick(listing, ".snapshot", sent[0].name))
    finally:
        for o in sent:
            with contextlib.suppress(Exception):
                device.delete(o.handle)
    print(f"increment saved; chain of {len(chain.current)} in {CHAIN_FILE}")
    return True


def _backup_owners(fetcher: _Fetcher, chain: Chain, sids: list[int]) -> None:
    print("preparing a backup (listing Backup/)...", flush=True)
    fetcher.device.folder("Backup")
    listing = fetcher.device.folder("Backup/owners")
    target = fetcher.directory / "owners"
    target.mkdir(exist_ok=True)
    wanted: list[tuple[int, RemoteObject]] = []
    for sid in sids:
        suffixes = tuple(f"-{format_sid(sid)}{s}".upper() for s in ARCHIVE_SUFFIXES)
        found = [o for o in listing.values() if o.name.upper().endswith(suffixes)]
        if not found:
            raise ToolError(
                f"no data owner {format_sid(sid)} on the device "
                f"(Backup/owners/ holds: {', '.join(sorted(listing)) or 'nothing'})"
            )
        wanted.append((sid, found[0]))
    fetcher.mention_leftovers([obj for _, obj in wanted], target)
    fetcher.make_room([obj for _, obj in wanted], target)
    for sid, obj in wanted:
        path = unique_path(target, obj.name)
        summary = fetcher.fetch(obj, path)
        if not summary.checked:
            summary.manifest = {
                "kind": "owner",
                "mode": "base",
                "owners": [{"sid": format_sid(sid)}],
            }
        chain.add(entry_for(summary, path, fetcher.directory))
        chain.save(fetcher.directory)
