"""Staged, atomic restore of one owner's private directory on one drive.

Restore data is untrusted. Everything is written into a staging directory next to
the private directory (same filesystem), starting from a hard-link clone of the
current contents (or from only the registration files when
``delete_before_restore`` is set). Nothing in the live directory is ever written:
replaced files get new inodes, so the hard links keep the old data intact. Only
when the whole restore for the owner has been received and verified is the
staging directory swapped in with ``renameat2(RENAME_EXCHANGE)``; any failure or
interruption just deletes the staging directory.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import secrets
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from ..errors import CorruptError, DiskFullError, EngineError, GeneralError, UnderflowError
from ..mbak.names import safe_relpath
from ..mbak.snapshot import FileRecord, Snapshot
from ..types import format_sid
from .filelist import ExcludeSet, globally_excluded, passive_file_list
from .registration import REGISTRATION_RE

log = logging.getLogger(__name__)

STAGING_PREFIX = ".mbak-staging-"
OLD_PREFIX = ".mbak-old-"
RENAME_EXCHANGE = 2
AT_FDCWD = -100

_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directory entries; False if the system cannot."""
    if _renameat2 is None:
        return False
    r = _renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if r == 0:
        return True
    e = ctypes.get_errno()
    if e in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(e, os.strerror(e), str(a))


class Scope:
    """Which relative paths belong to an owner's passive data (restore validation)."""

    def __init__(self, includes: list[str], excludes: list[str], always: set[str]) -> None:
        self.includes = includes
        self.ex = ExcludeSet(excludes)
        self.always = always

    def __contains__(self, rel: str) -> bool:
        r = rel.rstrip("/")
        if not r or r in self.always or globally_excluded(r) or self.ex.matches(r):
            return False
        for inc in self.includes:
            if inc == "":
                return True
            if inc.endswith("/"):
                if r.startswith(inc) or r == inc[:-1]:
                    return True
            elif r == inc:
                return True
        return False


def recover(private_root: Path) -> None:
    """Clean up after a crash: drop staging leftovers, put back half-swapped dirs.

    A public restore the crash interrupted during its commit is finished
    (see :mod:`engine.daemon.publicstage`).
    """
    from .publicstage import recover_public  # it builds on this module

    recover_public(private_root)
    try:
        names = os.listdir(private_root)
    except OSError:
        return
    for n in names:
        p = private_root / n
        if n.startswith(STAGING_PREFIX):
            shutil.rmtree(p, ignore_errors=True)
        elif n.startswith(OLD_PREFIX):
            sid = n[len(OLD_PREFIX) :].split("-", 1)[0]
            live = private_root / sid
            if not live.exists():
                os.rename(p, live)
                log.warning("restored %s after an interrupted swap", live)
            else:
                shutil.rmtree(p, ignore_errors=True)


class PassiveStage:
    """Restore target for one (owner, drive); see the module docstring."""

    def __init__(
        self,
        private_dir: Path,
        sid: int,
        scope: Scope,
        delete_before_restore: bool,
        max_bytes: int | None = None,
    ) -> None:
        self.private_dir = private_dir
        self.sid = sid
        self.scope = scope
        self.delete_before_restore = delete_before_restore
        self.snapshot: Snapshot | None = None
        self.dirs: dict[str, FileRecord] = {}
        self.skipped: list[str] = []
        self.received: set[str] = set()
        self.remaining: dict[str, FileRecord] | None = None
        self.written = 0
        self.max_bytes = max_bytes
        self.staging: Path | None = None
        self._tmp: int | None = None
        self._tmp_path: Path | None = None
        self._cur: FileRecord | None = None
        self._cur_written = 0
        self._seq = 0
        self._owner: tuple[int, int] | None = None

    # -- set-up
    def open(self) -> None:
        root = self.private_dir.parent
        root.mkdir(parents=True, exist_ok=True)
        self.staging = root / f"{STAGING_PREFIX}{format_sid(self.sid)}-{secrets.token_hex(4)}"
        try:
            st = os.lstat(self.private_dir)
            exists = stat.S_ISDIR(st.st_mode)
        except FileNotFoundError:
            exists = False
        try:
            os.mkdir(self.staging, 0o700)
            if exists:
                self._owner = (st.st_uid, st.st_gid)
                self._clone(self.private_dir, self.staging, top=True)
                os.chmod(self.staging, stat.S_IMODE(st.st_mode))
            else:
                os.chmod(self.staging, 0o750)
        except OSError as e:
            self.abort()
            raise os_error(e, "preparing the restore") from e

    def _clone(self, src: Path, dst: Path, top: bool = False) -> None:
        with os.scandir(src) as it:
            for e in it:
                s = Path(e.path)
                d = dst / e.name
                if self.delete_before_restore and not (top and REGISTRATION_RE.match(e.name)):
                    continue  # wipe everything but the registration files
                if e.is_dir(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    os.mkdir(d, 0o700)
                    self._clone(s, d)
                    os.chmod(d, stat.S_IMODE(st.st_mode))
                    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
                    self._chown(d, st.st_uid, st.st_gid)
                else:
                    os.link(s, d, follow_symlinks=False)

    def _chown(self, p: Path | int, uid: int, gid: int) -> None:
        if os.geteuid() == 0:
            try:
                if isinstance(p, int):
                    os.fchown(p, uid, gid)
                else:
                    os.chown(p, uid, gid, follow_symlinks=False)
            except OSError:
                pass

    def set_snapshot(self, snap: Snapshot) -> None:
        self.snapshot = snap

    # -- entries
    def _target(self, rel: str) -> Path:
        assert self.staging is not None
        return self.staging / rel.rstrip("/")

    def _ensure_parents(self, rel: str) -> None:
        """Make every parent a real directory inside staging (never follow links)."""
        assert self.staging is not None
        cur = self.staging
        for part in rel.rstrip("/").split("/")[:-1]:
            cur = cur / part
            try:
                st = os.lstat(cur)
                if stat.S_ISDIR(st.st_mode):
                    continue
                os.unlink(cur)
            except FileNotFoundError:
                pass
            os.mkdir(cur, 0o755)

    def wants(self, rel: str) -> bool:
        """False for entries outside the owner's scope or absent from the snapshot."""
        if rel not in self.scope:
            self.skipped.append(rel)
            return False
        if self.snapshot is not None and rel not in self.snapshot:
            return False
        return True

    def begin(self, name: str, size: int, mtime_ns: int, mode: int, is_dir: bool) -> bool:
        """Start an entry; returns False if its bytes must be skipped."""
        rel = safe_relpath(name + ("/" if is_dir and not name.endswith("/") else ""))
        if not self.wants(rel):
            return False
        self.received.add(rel.rstrip("/"))
        if self.max_bytes is not None and self.written + size > self.max_bytes:
            raise CorruptError("restore data larger than announced")
        try:
            self._ensure_parents(rel)
            target = self._target(rel)
            if is_dir:
                try:
                    st = os.lstat(target)
                    if not stat.S_ISDIR(st.st_mode):
                        os.unlink(target)
                        os.mkdir(target, 0o755)
                except FileNotFoundError:
                    os.mkdir(target, 0o755)
                self.dirs[rel] = FileRecord(rel, 0, mtime_ns, mode)
                return True
            assert self.staging is not None
            self._seq += 1
            self._tmp_path = self.staging / f".mbak-part-{self._seq}"
            self._tmp = os.open(
                self._tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
            )
        except OSError as e:
            raise os_error(e, rel) from e
        self._cur = FileRecord(rel, size, mtime_ns, mode)
        self._cur_written = 0
        return True

    def write(self, data: bytes | memoryview) -> None:
        assert self._tmp is not None and self._cur is not None
        if self._cur_written + len(data) > self._cur.size:
            raise CorruptError("more data than the entry's size")
        try:
            mv = memoryview(data)
            while mv:
                n = os.write(self._tmp, mv)
                mv = mv[n:]
        except OSError as e:
            raise os_error(e, self._cur.path) from e
        self._cur_written += len(data)
        self.written += len(data)

    def end(self) -> None:
        if self._tmp is None or self._cur is None:
            return
        r = self._cur
        fd, self._tmp = self._tmp, None
        try:
            if self._cur_written != r.size:
                raise UnderflowError(f"{r.path}: data ends early")
            os.fchmod(fd, r.mode & 0o7777)
            if self._owner:
                self._chown(fd, *self._owner)
            os.utime(fd, ns=(r.mtime_ns, r.mtime_ns))
            os.close(fd)
            fd = -1
            target = self._target(r.path)
            try:
                st = os.lstat(target)
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(target)
            except FileNotFoundError:
                pass
            assert self._tmp_path is not None
            os.rename(self._tmp_path, target)
            self._tmp_path = None
        except OSError as e:
            raise os_error(e, r.path) from e
        finally:
            if fd >= 0:
                os.close(fd)
            self._cur = None

    # -- completion
    def finalize(self) -> None:
        """Apply snapshot deletions, then directory modes and mtimes (deepest first)."""
        if self._tmp is not None:
            raise UnderflowError("restore data ends inside a file")
        assert self.staging is not None
        try:
            if self.snapshot is not None:
                self.remaining = self._apply_deletions(self.snapshot)
            for rel in sorted(self.dirs, key=lambda p: p.count("/"), reverse=True):
                r = self.dirs[rel]
                t = self._target(rel)
                if os.path.isdir(t) and not os.path.islink(t):
                    os.chmod(t, r.mode & 0o7777)
                    if self._owner:
                        self._chown(t, *self._owner)
                    os.utime(t, ns=(r.mtime_ns, r.mtime_ns))
        except OSError as e:
            raise os_error(e, "finishing the restore") from e

    def _apply_deletions(self, snap: Snapshot) -> dict[str, FileRecord]:
        """Delete in-scope entries the snapshot does not list; returns what is left."""
        assert self.staging is not None
        present = passive_file_list(self.staging, self.scope.includes, [], set())
        left = {r.path: r for r in present}
        keep_dirs = set()
        for p in snap.entries:
            parts = p.rstrip("/").split("/")
            for i in range(1, len(parts)):
                keep_dirs.add("/".join(parts[:i]) + "/")
        # Deepest first, a directory after its contents ("a/b/" is as deep as "a/x").
        for r in sorted(present, key=lambda r: r.path.rstrip("/").count("/"), reverse=True):
            if r.path.startswith(".mbak-part-") or r.path not in self.scope:
                continue
            if r.path in snap or r.path in keep_dirs:
                continue
            t = self._target(r.path)
            if r.is_dir:
                try:
                    os.rmdir(t)
                    del left[r.path]
                except OSError:
                    pass
            else:
                os.unlink(t)
                del left[r.path]
        return left

    def check_complete(self, whole: bool) -> None:
        """After :meth:`finalize`: the staging holds exactly what the snapshot lists.

        Every in-scope snapshot entry must be there, of its kind, and a file with
        the listed size, mtime and mode.  ``whole`` (base data) also requires each
        entry to have come from the restore data: a base that lacks one would
        keep the device's copy, old and new mixed.  An increment carries only
        what changed, so the rest must already be on the device as its base left
        it.  Raises Corrupt naming the first entry that is not.
        """
        if self.snapshot is None or self.remaining is None:
            raise CorruptError("no passive snapshot: the restore cannot know what should exist")
        for r in self.snapshot.entries.values():
            if r.path.startswith(".mbak-part-") or r.path not in self.scope:
                continue
            if whole and r.path.rstrip("/") not in self.received:
                raise CorruptError(
                    f"{r.path[:200]!r} is in the archive's passive snapshot "
                    "but not in its passive-base data"
                )
            have = self.remaining.get(r.path)
            ok = have is not None and (
                r.is_dir or (have.size, have.mtime_ns, have.mode) == (r.size, r.mtime_ns, r.mode)
            )
            if ok:
                continue
            if whole:
                raise CorruptError(f"{r.path[:200]!r} differs from the archive's passive snapshot")
            raise CorruptError(
                f"{r.path[:200]!r} is not in the increment and differs on the device from "
                "the increment's snapshot: restore the backup it is based on first"
            )

    def commit(self) -> None:
        """Swap the staging directory in; the old contents are then removed."""
        assert self.staging is not None
        live = self.private_dir
        try:
            if not live.exists():
                os.rename(self.staging, live)
                self.staging = None
                return
            if exchange(self.staging, live):
                old = self.staging
            else:
                old = live.parent / f"{OLD_PREFIX}{format_sid(self.sid)}-{secrets.token_hex(4)}"
                os.rename(live, old)
                os.rename(self.staging, live)
            self.staging = None
            shutil.rmtree(old, ignore_errors=True)
        except OSError as e:
            raise os_error(e, "swapping in the restored data") from e

    def abort(self) -> None:
        if self._tmp is not None:
            os.close(self._tmp)
            self._tmp = None
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent: where its file system is known."""
    p = path
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def check_free_space(needs: Iterable[tuple[Path, int, int]]) -> None:
    """Refuse a restore up front when a file system cannot hold what it will stage.

    ``needs`` are ``(directory, bytes, files)``: what will be written below each
    directory. They are summed per file system, each file rounded up by one
    block, and compared with the space free to the engine's user. Raises
    DiskFull naming the need and the free space, before anything is written,
    instead of failing half-way.
    """
    per_fs: dict[int, tuple[Path, int, int]] = {}
    for directory, nbytes, files in needs:
        where = _existing(directory)
        try:
            dev = os.stat(where).st_dev
        except OSError:
            continue
        first, b, f = per_fs.get(dev, (where, 0, 0))
        per_fs[dev] = (first, b + nbytes, f + files)
    for where, nbytes, files in per_fs.values():
        try:
            vfs = os.statvfs(where)
        except OSError:
            continue
        need = nbytes + files * vfs.f_frsize
        free = vfs.f_bavail * vfs.f_frsize
        if need > free:
            raise DiskFullError(
                f"the restore needs {need} bytes on the file system of {where} "
                f"and only {free} bytes are free there"
            )


def os_error(e: OSError, what: str) -> EngineError:
    """A file system error as an engine error: DiskFull for a full disk, else General."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return DiskFullError(f"no space left while restoring {what}")
    return GeneralError(f"{what}: {e.strerror or e}")
