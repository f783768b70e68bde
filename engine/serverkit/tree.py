"""The virtual tree every backup server shows, and its entries.

::

    Backup/                     listing it prepares a full base backup
      <device>-<stamp>.mbak     the whole backup (pax tar, exact size;
                                .mbak.age when the server encrypts)
      <device>-<stamp>.snapshot what the next incremental needs
      owners/<name>-<SID>.mbak  one data owner each (partial backups)
    Incremental/                drop a .snapshot (or an older .mbak) here;
      <device>-<stamp>.mbak     the increment against it then appears
      <device>-<stamp>.snapshot
    Restore/                    drop a .mbak here to restore it
      status.txt                what the last restore did, in words

Entries are addressed by *keys*, slash-separated paths from the root (``""``).
A key is not always the shown name: an archive's name carries a timestamp that
changes at every preparation, so its key is what it is (``Backup/full``,
``Backup/owners/10203040``) and stays the same across preparations and
sessions.  A transport that addresses by name (OBEX) looks a name up in its
folder's listing (:meth:`BackupServer.find`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from engine.agefile import EncryptedView
from engine.client import PreparedBackup
from engine.types import ArchiveInfo

ROOT = ""
BACKUP = "Backup"
OWNERS = "Backup/owners"
INCREMENTAL = "Incremental"
RESTORE = "Restore"
STATUS = "Restore/status.txt"
FOLDERS = (BACKUP, INCREMENTAL, RESTORE)
#: Keys of the archives in Backup/ and Incremental/ (below their folder): names
#: the peer cannot use for what it sends there.
ARCHIVE_KEYS = ("full", "partial", "snapshot")


class EntryKind(Enum):
    FOLDER = "folder"
    ARCHIVE = "archive"
    """A prepared archive the engine serves (read-only, exact size)."""
    RECEIVED = "received"
    """Something the peer sent into Incremental/ or Restore/ (or its placeholder)."""
    STATUS = "status"
    """Restore/status.txt, plain UTF-8 text."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One node of the tree as the peer should see it now."""

    key: str
    name: str
    kind: EntryKind
    size: int = 0
    mtime: float = 0.0
    uid: int = 0
    """A 128-bit identity: the same object gives the same uid in every session."""
    read_only: bool = False

    @property
    def is_folder(self) -> bool:
        return self.kind is EntryKind.FOLDER


def uid(*parts: str) -> int:
    """A stable 128-bit identity made of ``parts`` (no state kept anywhere)."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=16).digest()
    return int.from_bytes(digest, "little")


def archive_key(folder: str, archive: ArchiveInfo) -> str:
    """Where an archive lives in the tree: the same for every preparation.

    The name carries a timestamp and changes whenever the backup is prepared
    again, but a peer may list in one session and read in the next (libmtp's
    tools open one session per command).  A stable key keeps its handle valid,
    and looking the key up prepares the backup again on demand.
    """
    if archive.kind == "owner" and archive.sid is not None:
        return f"{OWNERS}/{archive.sid:08X}"
    return f"{folder}/{archive.kind}"


def split(key: str) -> tuple[str, str]:
    """``(folder, name)`` of a key one level below a top folder."""
    folder, _, name = key.partition("/")
    return folder, name


@dataclass
class Prepared:
    """A backup the engine has planned, as the tree shows it."""

    backup: PreparedBackup
    folder: str  # BACKUP or INCREMENTAL
    created: float
    entries: dict[str, tuple[str, int]] = field(default_factory=dict)
    """key -> (engine archive name, exact size of the archive itself)"""
    views: dict[str, EncryptedView] = field(default_factory=dict)
    """key -> the encrypted file served instead, for a server with recipients.

    One view per archive for as long as it is prepared: a new view would be
    a new file (fresh keys), so every re-read of the same bytes must use it.
    """
    resumed: bool = False
    """Kept prepared across the end of a peer's session for a download to resume:
    its reads check, piece by piece, that no planned file changed since."""

    def entry(self, key: str) -> Entry:
        name, size = self.entries[key]
        name = name.rpartition("/")[2]
        view = self.views.get(key)
        if view is not None:
            name, size = name + ".age", view.size
        return Entry(
            key=key,
            name=name,
            kind=EntryKind.ARCHIVE,
            size=size,
            mtime=self.created,
            uid=uid("archive", self.backup.backup_id, key),
            read_only=True,
        )


@dataclass
class Received:
    """An object the peer sent into Incremental/ or Restore/.

    ``size`` 0 with no ``path`` is a placeholder: FUSE clients (jmtpfs,
    go-mtpfs) create a file empty, then send its content as a new object of
    the same name.  A placeholder restores nothing, prepares nothing, reads
    back empty, and leaves its name free for the content.
    """

    folder: str
    name: str
    size: int
    mtime: float
    path: Path | None = None  # the snapshot's bytes, for Incremental/

    @property
    def placeholder(self) -> bool:
        return self.size == 0 and self.path is None

    def entry(self) -> Entry:
        return Entry(
            key=f"{self.folder}/{self.name}",
            name=self.name,
            kind=EntryKind.RECEIVED,
            size=self.size,
            mtime=self.mtime,
            uid=uid("received", self.folder, self.name, str(self.mtime)),
        )


def folder_entry(key: str, started: float) -> Entry:
    return Entry(
        key=key,
        name=key.rpartition("/")[2],
        kind=EntryKind.FOLDER,
        mtime=started,
        uid=uid("folder", key),
        read_only=key in (BACKUP, OWNERS),
    )
