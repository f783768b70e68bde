"""A directory exposed as one MTP storage.

See the package docstring for the behaviours chosen (name collisions,
symlinks, persistent ids).  Everything that can block on a slow card
(listing, reading, writing, copying, deleting trees) runs in a worker
thread; single lookups stay on the trio loop because a thread hop costs
more than the few syscalls they make, and a host listing a big folder
issues thousands of them.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import functools
import hashlib
import logging
import os
import posixpath
import secrets
import shutil
import stat as stat_mod
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass

import trio

from mtp_responder.core.codes import AccessCapability, ResponseCode, StorageType
from mtp_responder.formats import format_for_name
from mtp_responder.provider import (
    NewObject,
    ObjectEntry,
    ProviderError,
    Storage,
    StorageDescription,
    Upload,
    join_key,
    validate_name,
)

from ._copy import bytes_to_write, copy_file
from ._fsutil import FileStat, filesystem_type, rename_noreplace, stat_path
from .options import StorageOptions

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
"""Bytes per read: big enough to keep USB 2 busy, small enough for flat memory."""

TEMP_PREFIX = ".mtp-partial-"
"""Uploads and copies in progress live under this name in the target folder
(same filesystem, so the final rename is atomic) and are never listed."""

_UNSTABLE_INODE_FS = frozenset({"vfat", "msdos", "umsdos", "exfat"})
"""Filesystems whose inode numbers are made up at mount time."""

_FAT_FS = frozenset({"vfat", "msdos", "umsdos"})
_FAT_MAX_FILE = 0xFFFFFFFF

_ERRNO_CODES: dict[int, ResponseCode] = {
    errno.ENOENT: ResponseCode.INVALID_OBJECT_HANDLE,
    errno.ENOTDIR: ResponseCode.INVALID_OBJECT_HANDLE,
    errno.EACCES: ResponseCode.ACCESS_DENIED,
    errno.EPERM: ResponseCode.ACCESS_DENIED,
    errno.ELOOP: ResponseCode.ACCESS_DENIED,
    errno.ENOSPC: ResponseCode.STORE_FULL,
    errno.EDQUOT: ResponseCode.STORE_FULL,
    errno.EROFS: ResponseCode.STORE_READ_ONLY,
    errno.EFBIG: ResponseCode.OBJECT_TOO_LARGE,
    errno.EEXIST: ResponseCode.INVALID_PARAMETER,
    errno.ENOTEMPTY: ResponseCode.PARTIAL_DELETION,
    errno.ENAMETOOLONG: ResponseCode.INVALID_PARAMETER,
    errno.EINVAL: ResponseCode.INVALID_PARAMETER,
    errno.ENODEV: ResponseCode.STORE_NOT_AVAILABLE,
    errno.ENXIO: ResponseCode.STORE_NOT_AVAILABLE,
}


def provider_error(exc: OSError) -> ProviderError:
    """The response code a host should see for a filesystem error."""
    code = _ERRNO_CODES.get(exc.errno or 0, ResponseCode.GENERAL_ERROR)
    return ProviderError(code, f"{exc.strerror or exc}: {exc.filename or ''}")


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise provider_error(exc) from exc


def _display_name(name: str) -> str:
    """A name the wire can carry: bytes that are not UTF-8 become U+FFFD.

    The key keeps the raw name so the file stays reachable; only what the
    host is shown changes, and a rename from the host gives it a clean one.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return name


def _check_host_name(name: str) -> None:
    """``validate_name`` plus what only a filesystem cares about."""
    validate_name(name)
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise ProviderError(ResponseCode.INVALID_DATASET, "name is not valid Unicode") from None
    if len(encoded) > 255:
        raise ProviderError(ResponseCode.INVALID_DATASET, "name longer than 255 bytes")
    if name.startswith(TEMP_PREFIX):
        # Such a file would be invisible and could be swept as a leftover.
        raise ProviderError(ResponseCode.INVALID_PARAMETER, f"reserved name {name!r}")


@dataclass(slots=True)
class _Found:
    """A key looked up: where its entry is and what it points to."""

    key: str
    name: str
    entry_path: str
    """The directory entry itself (a symlink stays a symlink)."""
    real_path: str
    """What reading and editing touch: the entry, or its symlink's target."""
    lst: FileStat
    st: FileStat


class FileStorage(Storage):
    """One configured directory as a storage."""

    def __init__(self, options: StorageOptions) -> None:
        self.options = options
        self.root = os.path.realpath(options.path)
        self._root_prefix = self.root.rstrip("/") + "/"
        self.read_only = options.read_only
        self.show_hidden = options.show_hidden
        # Seeded from the resolved root, not st_dev: device numbers of
        # removable media change between boots, the configured path does not.
        self._puid_seed = os.fsencode(self.root) + b"\x00"
        self._stable_inodes: dict[int, bool] = {}
        self._fs_types: dict[int, str] = {}
        self.statvfs: Callable[[str], os.statvfs_result] = os.statvfs
        """Replaceable so that a full disk can be simulated without filling one."""
        self.filesystem_type: Callable[[int], str] = filesystem_type
        """The filesystem type of a device number (``vfat``, ``ext4``...); replaceable
        so that FAT's limits can be simulated without making a FAT filesystem."""
        self._receiving: dict[str, _NewFileUpload] = {}
        """Uploads between SendObjectInfo and commit, by the key they will have."""

    def __repr__(self) -> str:
        return f"FileStorage({self.root!r})"

    # ----------------------------------------------------------------- naming

    def is_visible_name(self, name: str) -> bool:
        """Whether a directory entry with this name is shown to the host."""
        if name.startswith("."):
            return self.show_hidden and not name.startswith(TEMP_PREFIX)
        return True

    def is_inside(self, real_path: str) -> bool:
        return real_path == self.root or real_path.startswith(self._root_prefix)

    def path_of(self, key: str) -> str:
        """The on-disk path of ``key`` without resolving anything (for watching)."""
        return self.root if key == "" else self._root_prefix + key

    @staticmethod
    def _split(key: str) -> list[str]:
        if key == "":
            return []
        parts = key.split("/")
        for part in parts:
            if part in ("", ".", "..") or "\x00" in part or part.startswith(TEMP_PREFIX):
                raise ProviderError(ResponseCode.INVALID_OBJECT_HANDLE, f"bad key {key!r}")
        return parts

    def _real_folder_of(self, parts: list[str]) -> str:
        """The resolved parent folder of a key's last component.

        The root is resolved once; below it, a folder path whose components
        are all real folders (one lstat each) is its own resolved path.  That
        is most lookups, and far cheaper than resolving from ``/`` for each of
        the thousands of objects a host lists.  A symlink (or anything else
        odd) on the way is resolved in full and judged by where it leads.
        """
        if len(parts) <= 1:
            return self.root
        path = self._root_prefix[:-1]  # "" for a storage at /
        for part in parts[:-1]:
            path = f"{path}/{part}"
            try:
                if not stat_mod.S_ISDIR(os.lstat(path).st_mode):
                    break
            except OSError:
                break  # resolved in full below; the entry's own stat reports it
        else:
            return path
        parent = os.path.realpath(os.path.join(self.root, *parts[:-1]))
        if not self.is_inside(parent):
            raise ProviderError(ResponseCode.ACCESS_DENIED, "path leaves the storage")
        return parent

    def _lookup(self, key: str) -> _Found:
        """Find ``key``, refusing anything that resolves outside the root.

        The parent is resolved first so that an entry reached through a
        symlinked folder is judged by where it really is, then the entry
        itself if it is a symlink.
        """
        parts = self._split(key)
        try:  # not _mapped(): this runs for every object a host asks about
            if not parts:
                st = stat_path(self.root, follow=True)
                return _Found("", self.options.description, self.root, self.root, st, st)
            entry_path = os.path.join(self._real_folder_of(parts), parts[-1])
            lst = stat_path(entry_path)
            real = entry_path
            st = lst
            if lst.is_link:
                real = os.path.realpath(entry_path)
                if not self.is_inside(real):
                    raise ProviderError(ResponseCode.ACCESS_DENIED, "symlink leaves the storage")
                st = stat_path(real, follow=True)
        except OSError as exc:
            raise provider_error(exc) from exc
        if not (st.is_dir or st.is_reg):
            # FIFOs would block a read forever; device nodes are not files.
            raise ProviderError(ResponseCode.INVALID_OBJECT_HANDLE, f"not a file: {key!r}")
        return _Found(key, parts[-1], entry_path, real, lst, st)

    def _folder(self, key: str) -> str:
        """The resolved path of a folder the host wants to put something in."""
        try:
            found = self._lookup(key)
        except ProviderError as exc:
            if exc.code == ResponseCode.INVALID_OBJECT_HANDLE:
                raise ProviderError(ResponseCode.INVALID_PARENT_OBJECT, str(exc)) from None
            raise
        if not found.st.is_dir:
            raise ProviderError(ResponseCode.INVALID_PARENT_OBJECT, f"not a folder: {key!r}")
        return found.real_path

    # ----------------------------------------------------------------- entries

    def _puid(self, key: str, lst: FileStat) -> int:
        """See the package docstring: (root, inode, birth time), or the path on FAT."""
        stable = self._stable_inodes.get(lst.dev)
        if stable is None:
            stable = self._fs_type(lst.dev) not in _UNSTABLE_INODE_FS
            self._stable_inodes[lst.dev] = stable
        if stable:
            ident = b"i" + lst.ino.to_bytes(8, "big") + lst.btime_ns.to_bytes(9, "big", signed=True)
        else:
            ident = b"p" + key.encode("utf-8", "surrogateescape")
        digest = hashlib.blake2b(self._puid_seed + ident, digest_size=16).digest()
        return int.from_bytes(digest, "big") or 1

    def _fs_type(self, dev: int) -> str:
        fs = self._fs_types.get(dev)
        if fs is None:
            fs = self._fs_types[dev] = self.filesystem_type(dev)
        return fs

    def _entry(self, key: str, name: str, lst: FileStat, st: FileStat) -> ObjectEntry:
        is_folder = st.is_dir
        mtime = st.mtime_ns / 1e9
        return ObjectEntry(
            key=key,
            name=_display_name(name),
            is_folder=is_folder,
            size=0 if is_folder else st.size,
            format=format_for_name(name, is_folder),
            mtime=mtime,
            ctime=st.btime_ns / 1e9 if st.btime_ns > 0 else mtime,
            puid=self._puid(key, lst),
            hidden=name.startswith("."),
            read_only=self.read_only or not st.mode & stat_mod.S_IWUSR,
        )

    def _found_entry(self, found: _Found) -> ObjectEntry:
        return self._entry(found.key, found.name, found.lst, found.st)

    def _stat_entry(self, key: str) -> ObjectEntry:
        return self._found_entry(self._lookup(key))

    # ----------------------------------------------------------------- reading

    def describe(self) -> StorageDescription:
        try:
            vfs = self.statvfs(self.root)
        except OSError as exc:
            raise ProviderError(ResponseCode.STORE_NOT_AVAILABLE, str(exc)) from exc
        return StorageDescription(
            description=self.options.description,
            volume_label=os.path.basename(self.root) or self.options.description,
            storage_type=(
                StorageType.REMOVABLE_RAM if self.options.removable else StorageType.FIXED_RAM
            ),
            access=(
                AccessCapability.READ_ONLY_WITHOUT_DELETE
                if self.read_only
                else AccessCapability.READ_WRITE
            ),
            max_capacity=vfs.f_blocks * vfs.f_frsize,
            free_space=vfs.f_bavail * vfs.f_frsize,
        )

    async def list(self, folder_key: str) -> Sequence[ObjectEntry]:
        folder = self._folder(folder_key)
        return await trio.to_thread.run_sync(self._list_sync, folder_key, folder)

    def _list_sync(self, folder_key: str, folder: str) -> Sequence[ObjectEntry]:
        entries: builtins.list[ObjectEntry] = []
        try:
            it = os.scandir(folder)
        except OSError as exc:
            raise provider_error(exc) from exc
        with it:
            while True:
                try:
                    de = next(it)
                except StopIteration:
                    break
                except OSError as exc:
                    # A bad directory block: show what was readable.
                    log.warning("listing %s stopped early: %s", folder, exc)
                    break
                entry = self._list_one(folder_key, de)
                if entry is not None:
                    entries.append(entry)
        entries.sort(key=lambda e: e.key)
        return entries

    def _list_one(self, folder_key: str, de: os.DirEntry[str]) -> ObjectEntry | None:
        """One listed entry, or ``None`` to skip it without failing the folder."""
        name = de.name
        if not self.is_visible_name(name):
            return None
        try:
            lst = stat_path(de.path)
            st = lst
            if lst.is_link:
                target = os.path.realpath(de.path)
                if not self.is_inside(target):
                    return None
                st = stat_path(target, follow=True)
        except OSError:
            return None  # unreadable or dangling
        if not (st.is_dir or st.is_reg):
            return None
        return self._entry(join_key(folder_key, name), name, lst, st)

    async def stat(self, key: str) -> ObjectEntry:
        try:
            return self._stat_entry(key)
        except ProviderError as exc:
            upload = self._receiving.get(key)
            if exc.code != ResponseCode.INVALID_OBJECT_HANDLE or upload is None:
                raise
            # The host holds a handle from SendObjectInfo and may ask about it
            # before SendObject; it sees the file as received so far.  The
            # temporary file's inode becomes the final one, so the PUID holds.
            with _mapped():
                st = stat_path(upload.temp_path)
            return self._entry(key, posixpath.basename(key), st, st)

    def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        # Checked now, not at the first chunk, so the framework can answer
        # with a response code before it starts a data phase.
        found = self._lookup(key)
        if found.st.is_dir:
            raise ProviderError(ResponseCode.INVALID_OBJECT_HANDLE, "a folder has no data")
        if offset < 0 or (length is not None and length < 0):
            raise ProviderError(ResponseCode.INVALID_PARAMETER, "negative offset or length")
        return FileReader(found.real_path, offset, length)

    # ----------------------------------------------------------------- writing

    def _check_writable(self) -> None:
        if self.read_only:
            raise ProviderError(ResponseCode.STORE_READ_ONLY)

    @staticmethod
    def _check_unprotected(found: _Found) -> None:
        if not found.st.mode & stat_mod.S_IWUSR:
            raise ProviderError(ResponseCode.OBJECT_WRITE_PROTECTED, found.key)

    def _free_bytes(self) -> int:
        with _mapped():
            vfs = self.statvfs(self.root)
        return vfs.f_bavail * vfs.f_frsize

    def _check_space(self, folder: str, size: int, largest: int | None = None) -> None:
        """Refuse up front what cannot fit: ``size`` bytes to write into ``folder``,
        in files of at most ``largest`` bytes (``size`` when not given)."""
        largest = size if largest is None else largest
        if largest > _FAT_MAX_FILE:
            with _mapped():
                dev = os.stat(folder).st_dev
            if self._fs_type(dev) in _FAT_FS:
                raise ProviderError(ResponseCode.OBJECT_TOO_LARGE, "FAT holds at most 4 GiB - 1")
        if size > 0 and size > self._free_bytes():
            raise ProviderError(ResponseCode.STORE_FULL, f"{size} bytes do not fit")

    def _apply_owner(self, path: str, mode: int | None) -> None:
        """Give a new object the configured mode and owner."""
        if mode is not None:
            os.chmod(path, mode, follow_symlinks=False)
        if self.options.uid is not None or self.options.gid is not None:
            os.chown(path, *self.owner_ids(), follow_symlinks=False)

    def owner_ids(self) -> tuple[int, int]:
        """(uid, gid) for chown, -1 leaving one unchanged."""
        uid, gid = self.options.uid, self.options.gid
        return (-1 if uid is None else uid, -1 if gid is None else gid)

    def _temp_name(self, folder: str) -> str:
        return os.path.join(folder, TEMP_PREFIX + secrets.token_hex(8))

    async def create(self, new: NewObject) -> Upload:
        self._check_writable()
        if new.is_folder:
            # Hosts send a folder as ObjectInfo with no data phase after it.
            return _FinishedUpload(await self.create_folder(new.parent_key, new.name))
        _check_host_name(new.name)
        folder = self._folder(new.parent_key)
        target = os.path.join(folder, new.name)
        key = join_key(new.parent_key, new.name)
        if os.path.lexists(target) or key in self._receiving:
            raise ProviderError(ResponseCode.INVALID_PARAMETER, f"{new.name!r} exists")
        self._check_space(folder, new.size)
        temp = self._temp_name(folder)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with _mapped():
            fd = os.open(temp, flags, 0o600)
        upload = _NewFileUpload(self, fd, temp, target, key, new.mtime)
        self._receiving[key] = upload
        return upload

    async def create_folder(self, parent_key: str, name: str) -> ObjectEntry:
        self._check_writable()
        _check_host_name(name)
        folder = self._folder(parent_key)
        target = os.path.join(folder, name)
        try:
            os.mkdir(target, 0o700)
        except FileExistsError:
            raise ProviderError(ResponseCode.INVALID_PARAMETER, f"{name!r} exists") from None
        except OSError as exc:
            raise provider_error(exc) from exc
        with _mapped():
            self._apply_owner(target, 0o777 & ~self.options.umask)
        return self._stat_entry(join_key(parent_key, name))

    async def delete(self, key: str) -> None:
        self._check_writable()
        if key == "":
            raise ProviderError(ResponseCode.INVALID_OBJECT_HANDLE, "the storage root")
        found = self._lookup(key)
        self._check_unprotected(found)
        if found.lst.is_link or not found.st.is_dir:
            with _mapped():
                os.unlink(found.entry_path)
            return
        complete = await trio.to_thread.run_sync(self._delete_tree, found.entry_path)
        if not complete:
            raise ProviderError(ResponseCode.PARTIAL_DELETION, f"protected objects in {key!r}")

    def _delete_tree(self, path: str) -> bool:
        """Delete a folder bottom-up, sparing write-protected objects.

        Returns whether everything went; what could go is gone either way,
        which is what PartialDeletion tells the host.
        """
        complete = True
        try:
            with os.scandir(path) as it:
                children = list(it)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        for de in children:
            try:
                st = de.stat(follow_symlinks=False)
                protected = stat_mod.S_ISREG(st.st_mode) or stat_mod.S_ISDIR(st.st_mode)
                if protected and not st.st_mode & stat_mod.S_IWUSR:
                    complete = False
                elif stat_mod.S_ISDIR(st.st_mode):
                    complete = self._delete_tree(de.path) and complete
                else:
                    os.unlink(de.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("could not delete %s: %s", de.path, exc)
                complete = False
        if complete:
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not delete %s: %s", path, exc)
                complete = False
        return complete

    def _place(self, src: str, dst: str) -> None:
        """Rename ``src`` to a name that must not exist yet.

        A case-only rename on a case-insensitive filesystem finds "itself"
        at the destination and is let through.
        """
        try:
            rename_noreplace(src, dst)
        except FileExistsError:
            if not os.path.samestat(os.lstat(src), os.lstat(dst)):
                raise
            os.rename(src, dst)

    async def rename(self, key: str, new_name: str) -> ObjectEntry:
        self._check_writable()
        _check_host_name(new_name)
        if key == "":
            raise ProviderError(ResponseCode.INVALID_OBJECT_HANDLE, "the storage root")
        found = self._lookup(key)
        self._check_unprotected(found)
        parent_key = posixpath.dirname(key)
        if new_name == found.name:
            return self._found_entry(found)
        dst = os.path.join(os.path.dirname(found.entry_path), new_name)
        try:
            self._place(found.entry_path, dst)
        except FileExistsError:
            raise ProviderError(ResponseCode.INVALID_PARAMETER, f"{new_name!r} exists") from None
        except OSError as exc:
            raise provider_error(exc) from exc
        return self._stat_entry(join_key(parent_key, new_name))

    def _refuse_into_itself(self, found: _Found, folder: str, follow: bool) -> None:
        """A move takes a symlink along as a link; a copy copies its target,
        so for a copy a linked folder counts as the folder it points to."""
        if found.st.is_dir and (follow or not found.lst.is_link):
            inner = found.real_path.rstrip("/") + "/"
            if folder == found.real_path or folder.startswith(inner):
                raise ProviderError(ResponseCode.INVALID_PARENT_OBJECT, "a folder into itself")

    async def move(self, key: str, new_parent_key: str) -> ObjectEntry:
        self._check_writable()
        if key == "":
            raise ProviderError(ResponseCode.INVALID_OBJECT_HANDLE, "the storage root")
        found = self._lookup(key)
        self._check_unprotected(found)
        folder = self._folder(new_parent_key)
        self._refuse_into_itself(found, folder, follow=False)
        new_key = join_key(new_parent_key, found.name)
        dst = os.path.join(folder, found.name)
        if dst == found.entry_path:
            return self._found_entry(found)
        if os.path.lexists(dst):
            raise ProviderError(ResponseCode.INVALID_PARAMETER, f"{found.name!r} exists there")
        try:
            rename_noreplace(found.entry_path, dst)
        except FileExistsError:
            raise ProviderError(ResponseCode.INVALID_PARAMETER, "name exists there") from None
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise provider_error(exc) from exc
            # A filesystem mounted inside the storage: copy, then delete.  Once
            # the copy is in place the move is finished even if the host cancels.
            await self._copy_into(found, folder, found.name)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._remove_any, found.entry_path)
        return self._stat_entry(new_key)

    @classmethod
    def remove_leftover(cls, path: str) -> None:
        """Delete a temporary file or folder an interrupted upload left."""
        log.info("removing leftover %s", path)
        try:
            cls._remove_any(path)
        except OSError as exc:
            log.warning("could not remove leftover %s: %s", path, exc)

    @staticmethod
    def _remove_any(path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)

    def free_name(self, folder: str, name: str, is_folder: bool) -> str:
        """``name``, or ``name (1).ext``, ``name (2).ext``... if taken."""
        if not os.path.lexists(os.path.join(folder, name)):
            return name
        stem, ext = (name, "") if is_folder else posixpath.splitext(name)
        for n in range(1, 10_000):
            suffix = f" ({n}){ext}"
            while len((stem + suffix).encode("utf-8", "surrogateescape")) > 255:
                stem = stem[:-1]
            candidate = stem + suffix
            if not os.path.lexists(os.path.join(folder, candidate)):
                return candidate
        raise ProviderError(ResponseCode.INVALID_PARAMETER, f"no free name for {name!r}")

    async def copy(self, key: str, new_parent_key: str) -> ObjectEntry:
        self._check_writable()
        if key == "":
            raise ProviderError(ResponseCode.INVALID_OBJECT_HANDLE, "the storage root")
        found = self._lookup(key)
        folder = self._folder(new_parent_key)
        self._refuse_into_itself(found, folder, follow=True)
        name = self.free_name(folder, found.name, found.st.is_dir)
        try:
            needed, largest = await trio.to_thread.run_sync(
                bytes_to_write, found.real_path, found.st.is_dir, trio.from_thread.check_cancelled
            )
        except OSError as exc:
            raise provider_error(exc) from exc
        self._check_space(folder, needed, largest)
        await self._copy_into(found, folder, name)
        return self._stat_entry(join_key(new_parent_key, name))

    async def _copy_into(self, found: _Found, folder: str, name: str) -> None:
        try:
            await trio.to_thread.run_sync(
                self._copy_sync, found.real_path, found.st.is_dir, folder, name
            )
        except FileExistsError:
            raise ProviderError(ResponseCode.INVALID_PARAMETER, f"{name!r} exists") from None
        except OSError as exc:
            raise provider_error(exc) from exc

    def _copy_sync(self, src: str, is_dir: bool, folder: str, name: str) -> None:
        """Copy under a temporary name and rename at the end, so that a
        failed copy (disk full half way) or a cancelled one leaves nothing
        and the host never sees a half-copied tree.

        Runs in a worker thread; see :mod:`._copy` for how a host Cancel
        stops it between two chunks (``Cancelled`` is raised here, and the
        temporary copy removed before it reaches the transaction).
        """
        checkpoint = trio.from_thread.check_cancelled
        temp = self._temp_name(folder)
        try:
            if is_dir:
                shutil.copytree(
                    src,
                    temp,
                    symlinks=True,
                    ignore=shutil.ignore_patterns(TEMP_PREFIX + "*"),
                    copy_function=functools.partial(copy_file, checkpoint=checkpoint),
                )
                if self.options.uid is not None or self.options.gid is not None:
                    for dirpath, dirnames, filenames in os.walk(temp):
                        for child in dirnames + filenames:
                            self._apply_owner(os.path.join(dirpath, child), None)
            else:
                copy_file(src, temp, checkpoint)
            self._apply_owner(temp, None)
            checkpoint()  # the last moment a Cancel undoes the copy
            rename_noreplace(temp, os.path.join(folder, name))
        except BaseException:
            with contextlib.suppress(OSError):
                self._remove_any(temp)
            raise

    async def set_mtime(self, key: str, mtime: float) -> ObjectEntry:
        self._check_writable()
        found = self._lookup(key)
        self._check_unprotected(found)
        with _mapped():
            os.utime(found.real_path, ns=(found.st.atime_ns, int(mtime * 1e9)))
        return self._stat_entry(key)

    async def set_protection(self, key: str, read_only: bool) -> ObjectEntry:
        self._check_writable()
        found = self._lookup(key)
        mode = stat_mod.S_IMODE(found.st.mode)
        if read_only:
            mode &= ~0o222
        else:
            mode |= stat_mod.S_IWUSR | (0o222 & ~self.options.umask)
        with _mapped():
            os.chmod(found.real_path, mode)
        return self._stat_entry(key)

    async def write_at(self, key: str, offset: int) -> Upload:
        self._check_writable()
        found = self._lookup(key)
        if found.st.is_dir:
            raise ProviderError(ResponseCode.INVALID_OBJECT_HANDLE, "a folder has no data")
        self._check_unprotected(found)
        if offset < 0:
            raise ProviderError(ResponseCode.INVALID_PARAMETER, "negative offset")
        with _mapped():
            fd = os.open(found.real_path, os.O_WRONLY | os.O_CLOEXEC)
        return _EditUpload(self, fd, offset, key)

    async def truncate(self, key: str, size: int) -> ObjectEntry:
        self._check_writable()
        found = self._lookup(key)
        if found.st.is_dir:
            raise ProviderError(ResponseCode.INVALID_OBJECT_HANDLE, "a folder has no data")
        self._check_unprotected(found)
        if size < 0:
            raise ProviderError(ResponseCode.INVALID_PARAMETER, "negative size")
        try:
            await trio.to_thread.run_sync(os.truncate, found.real_path, size)
        except OSError as exc:
            raise provider_error(exc) from exc
        return self._stat_entry(key)


def _write_all(fd: int, data: bytes | memoryview, offset: int | None = None) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[n:]
        if offset is not None:
            offset += n


def _fsync_dir(path: str) -> None:
    """Make a rename durable: the new name is data of the folder."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot sync a directory; the file itself is synced
    finally:
        os.close(fd)


class _FinishedUpload(Upload):
    """A folder sent with SendObjectInfo: created at once, nothing to receive."""

    def __init__(self, entry: ObjectEntry) -> None:
        self._entry = entry
        self.key = entry.key

    async def write(self, data: bytes | memoryview) -> None:
        if len(data):
            raise ProviderError(ResponseCode.INVALID_PARAMETER, "a folder has no data")

    async def commit(self) -> ObjectEntry:
        return self._entry

    async def abort(self) -> None:
        return None


class _NewFileUpload(Upload):
    """A new file received into a hidden temporary name, renamed on commit."""

    def __init__(
        self,
        storage: FileStorage,
        fd: int,
        temp: str,
        target: str,
        key: str,
        mtime: float | None,
    ) -> None:
        self._storage = storage
        self._fd = fd
        self._temp = temp
        self._target = target
        self.key = key
        self._mtime = mtime
        # Bytes from the bus arrive in transport-sized pieces; one thread
        # hand-off per piece costs more CPU than the write itself.
        self._pending = bytearray()

    @property
    def temp_path(self) -> str:
        return self._temp

    async def write(self, data: bytes | memoryview) -> None:
        if self._fd < 0:
            raise ProviderError(ResponseCode.GENERAL_ERROR, "upload already finished")
        self._pending += data
        if len(self._pending) >= CHUNK_SIZE:
            await self._flush()

    async def _flush(self) -> None:
        pending, self._pending = self._pending, bytearray()
        try:
            await trio.to_thread.run_sync(_write_all, self._fd, memoryview(pending))
        except OSError as exc:
            raise provider_error(exc) from exc

    def _finish(self) -> None:
        fd = self._fd
        opts = self._storage.options
        os.fchmod(fd, 0o666 & ~opts.umask)
        if opts.uid is not None or opts.gid is not None:
            os.fchown(fd, *self._storage.owner_ids())
        if self._mtime is not None:
            atime_ns = os.fstat(fd).st_atime_ns
            os.utime(fd, ns=(atime_ns, int(self._mtime * 1e9)))
        # Hosts show the copy as done on our OK: the data must be on disk.
        os.fsync(fd)
        self._fd = -1
        os.close(fd)
        rename_noreplace(self._temp, self._target)
        _fsync_dir(os.path.dirname(self._target))

    async def commit(self) -> ObjectEntry:
        if self._fd < 0:
            raise ProviderError(ResponseCode.GENERAL_ERROR, "upload already finished")
        try:
            if self._pending:
                await self._flush()
            await trio.to_thread.run_sync(self._finish)
            self._storage._receiving.pop(self.key, None)
        except FileExistsError:
            await self.abort()
            raise ProviderError(ResponseCode.INVALID_PARAMETER, "the name was taken") from None
        except OSError as exc:
            await self.abort()
            raise provider_error(exc) from exc
        return self._storage._stat_entry(self.key)

    async def abort(self) -> None:
        if self._storage._receiving.get(self.key) is self:
            del self._storage._receiving[self.key]
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temp)


class _EditUpload(Upload):
    """SendPartialObject: bytes land in the file as they arrive.

    Like Android, an aborted edit keeps what was already written: undoing
    it would mean copying the whole file first, which is what partial
    edits exist to avoid.
    """

    def __init__(self, storage: FileStorage, fd: int, offset: int, key: str) -> None:
        self._storage = storage
        self._fd = fd
        self._offset = offset
        self.key = key

    async def write(self, data: bytes | memoryview) -> None:
        if self._fd < 0:
            raise ProviderError(ResponseCode.GENERAL_ERROR, "edit already finished")
        try:
            await trio.to_thread.run_sync(_write_all, self._fd, data, self._offset)
        except OSError as exc:
            raise provider_error(exc) from exc
        self._offset += len(memoryview(data).cast("B"))

    async def commit(self) -> ObjectEntry:
        if self._fd < 0:
            raise ProviderError(ResponseCode.GENERAL_ERROR, "edit already finished")
        fd, self._fd = self._fd, -1
        try:
            await trio.to_thread.run_sync(os.fsync, fd)
        except OSError as exc:
            raise provider_error(exc) from exc
        finally:
            os.close(fd)
        return self._storage._stat_entry(self.key)

    async def abort(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


class FileReader:
    """A file's bytes for GetObject: chunk by chunk, or straight into buffers.

    Iterating yields ``bytes`` of :data:`CHUNK_SIZE` (CopyObject across
    storages uses that); :meth:`readinto` fills the transport's own buffers
    with one ``preadv`` per call, so a GetObject costs no ``bytes`` object
    per block.  Either way reads run in a worker thread, one hop per call.
    The file is opened at the first read and closed by :meth:`aclose` or at
    the end of the iteration.
    """

    def __init__(self, path: str, offset: int, length: int | None) -> None:
        self._path = path
        self._offset = offset
        self._remaining = length
        self._fd = -1
        self._closed = False

    async def _open(self) -> int:
        if self._fd < 0:
            if self._closed:
                raise ProviderError(ResponseCode.GENERAL_ERROR, "the file was already read")
            try:
                self._fd = await trio.to_thread.run_sync(
                    os.open, self._path, os.O_RDONLY | os.O_CLOEXEC
                )
            except OSError as exc:
                raise provider_error(exc) from exc
        return self._fd

    def __aiter__(self) -> FileReader:
        return self

    async def __anext__(self) -> bytes:
        want = CHUNK_SIZE if self._remaining is None else min(CHUNK_SIZE, self._remaining)
        if want <= 0:
            await self.aclose()
            raise StopAsyncIteration
        fd = await self._open()
        try:
            data = await trio.to_thread.run_sync(os.pread, fd, want, self._offset)
        except OSError as exc:
            raise provider_error(exc) from exc
        if not data:
            await self.aclose()
            raise StopAsyncIteration
        self._advance(len(data))
        return data

    async def readinto(self, buffers: Sequence[memoryview]) -> int:
        if self._remaining is not None:
            buffers = _cut(buffers, self._remaining)
        if not buffers:
            return 0
        fd = await self._open()
        try:
            count = await trio.to_thread.run_sync(_preadv_all, fd, buffers, self._offset)
        except OSError as exc:
            raise provider_error(exc) from exc
        self._advance(count)
        return count

    def _advance(self, count: int) -> None:
        self._offset += count
        if self._remaining is not None:
            self._remaining -= count

    async def aclose(self) -> None:
        self._closed = True
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):
                os.close(fd)


def _cut(buffers: Sequence[memoryview], limit: int) -> list[memoryview]:
    """``buffers`` holding at most ``limit`` bytes in all."""
    cut = []
    for buffer in buffers:
        if limit <= 0:
            break
        cut.append(buffer if len(buffer) <= limit else buffer[:limit])
        limit -= len(cut[-1])
    return cut


def _preadv_all(fd: int, buffers: Sequence[memoryview], offset: int) -> int:
    """Fill ``buffers`` from ``offset``; short only at the end of the file."""
    total = sum(len(buffer) for buffer in buffers)
    done = os.preadv(fd, buffers, offset)
    while 0 < done < total:
        # Rare (a signal, a file growing under us): finish the rest with
        # whole-buffer reads.
        more = _read_rest(fd, buffers, offset, done)
        if more == 0:
            break
        done += more
    return done


def _read_rest(fd: int, buffers: Sequence[memoryview], offset: int, done: int) -> int:
    skip = done
    rest = []
    for buffer in buffers:
        if skip >= len(buffer):
            skip -= len(buffer)
            continue
        rest.append(buffer[skip:])
        skip = 0
    return os.preadv(fd, rest, offset + done)
