"""The file & folder data provider: directories as MTP storages.

Configured as::

    [providers.files]
    storages = [
      { path = "/srv/media", description = "Media", uid = 1000, gid = 1000 },
      { path = "/mnt/sd", removable = true, read_only = true },
    ]

(options: ``path``, ``description``, ``read_only``, ``uid``, ``gid``,
``umask``, ``show_hidden``, ``removable``; see :mod:`.options`).

Behaviours a host can observe, and why they were chosen:

Name collisions
    MTP has no "overwrite".  SendObjectInfo, new folders, rename and move
    onto a name that exists are refused with InvalidParameter, as Android
    refuses them: every host checks for a collision itself before sending
    (Explorer asks "replace or skip" and deletes first), so a collision
    reaching us means the host's view is stale, and silently writing
    ``name (1).ext`` would make the file it believes it sent appear under
    another name.  CopyObject is the exception: copying into the folder
    that holds the original is how hosts duplicate a file, so a copy picks
    the first free ``name (1).ext``, ``name (2).ext``... like desktop file
    managers; the new entry tells the host the name it got.  On a
    case-insensitive filesystem a case-only rename is allowed.

Symlinks
    A symlink is shown as what it points to, provided that target exists
    and lies inside the storage root.  Symlinks that lead out of the root
    (or dangle, or loop) are not listed, and any key that would resolve
    outside the root, through a link at any depth, is refused with
    AccessDenied, for reads and writes alike.  Deleting, renaming or moving
    a symlink acts on the link, never on its target.  Folders reached
    through a symlink are not watched by inotify.  FIFOs, sockets and
    device nodes are not listed (reading a FIFO would block forever).

Hidden and temporary files
    Names starting with "." are hidden unless ``show_hidden``; a host may
    still create them (copying a project with ``.git`` must not fail) and
    reach them through the handle it got.  Uploads and copies in progress
    are written to ``.mtp-partial-<random>`` in the target folder and
    renamed into place only once complete and synced; those names are
    never listed, never notified, and refused from the host.  Leftovers
    of an upload cut short by a power loss are deleted when the provider
    starts (read-write storages only).

Persistent unique object ids (PUID, u128)
    BLAKE2b-128 of (resolved storage root, inode number, birth time).  The
    inode survives rename and move, the birth time (statx) tells apart a
    new file that reuses a deleted file's inode number (common on ext4),
    and the configured root path is stable across reboots where device
    numbers of removable media are not.  So the id survives sessions,
    reboots, renames and moves, and changes when a file is replaced by a
    copy, which is a new object.  On filesystems without stable inode
    numbers (vfat, exfat: the kernel invents them at mount) the id is the
    hash of (root, key) instead: stable across reboots, but it changes
    when the object is renamed or moved.  A symlink's id is its own
    inode's, so a link and its target are distinct objects.

Dates
    DateModified is mtime.  DateCreated is the birth time from statx when
    the filesystem records one, else mtime (``st_ctime`` is the inode
    change time, not a creation date).

Protection
    ``set_protection(read_only=True)`` is ``chmod a-w``; an object without
    its owner's write bit is reported read-only and refuses delete, rename,
    move, date changes, edits and truncation with ObjectWriteProtected (a
    protected file inside a deleted folder survives, and the delete
    answers PartialDeletion).  A read-only storage refuses every change
    with StoreReadOnly.

Copies (CopyObject)
    A copy is made under a hidden temporary name and renamed into place
    when complete.  It runs in chunks of a few MiB and stops between two of
    them when the host cancels, removing the temporary copy: the device is
    idle again within milliseconds and the host never finds a copy it
    cancelled.  Holes of a sparse file stay holes (a file that
    TruncateObject grew is copied without writing its hole), and the free
    space is checked before anything is written against exactly the data
    the copy will write; StoreFull otherwise.

Edits (SendPartialObject)
    Bytes land in the file as they arrive; an aborted edit keeps what was
    written, as on Android.  New files, in contrast, are all or nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio

from mtp_responder.provider import DataProvider, ProviderContext

from .options import StorageOptions, parse_options
from .storage import CHUNK_SIZE, TEMP_PREFIX, FileStorage
from .watch import TreeWatcher

__all__ = [
    "CHUNK_SIZE",
    "TEMP_PREFIX",
    "FileStorage",
    "FilesProvider",
    "StorageOptions",
    "parse_options",
]


class FilesProvider(DataProvider):
    """Exposes each configured directory as a storage and watches it."""

    def __init__(self, name: str, options: dict[str, Any], context: ProviderContext) -> None:
        super().__init__(name, options, context)
        self._storages = [
            FileStorage(opts) for opts in parse_options(options, prefix=f"providers.{name}")
        ]

    def storages(self) -> Sequence[FileStorage]:
        return tuple(self._storages)

    async def run(self, task_status: Any = None) -> None:
        """Watch every storage until cancelled.

        Reports ready once every storage's existing folders are watched, so
        that a change made after start-up is never missed.
        """
        async with trio.open_nursery() as nursery:
            for storage in self._storages:
                await nursery.start(TreeWatcher(storage, self.context).run)
            if task_status is not None:
                task_status.started()
