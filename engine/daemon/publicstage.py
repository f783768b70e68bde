"""Staged restore of one drive's public files: per-file rename with a journal.

Public directories are shared (several owners, files nobody selected), so they
cannot be swapped whole like a private directory. Instead every public file of
the restore is first written into a staging directory under the drive's
``private/`` (the same file system, and never itself public), and nothing in
the public area changes while the archive is read and checked. The commit then
writes a journal (the renames and deletions to do), and applies it: each
staged file is renamed over its target and each file the snapshot does not list
is unlinked. A rename and an unlink are atomic, so every file is at any moment
either old or new; a crash during the commit is finished at the next start
(:func:`recover_public`) by applying the journal again, and a crash before it
leaves the public area untouched.

Paths come from an untrusted archive. Each is checked before a byte is
written: relative, no ``..``, inside the public scope of the owners restored
(inside the device's whole public area, else refused), and no existing parent
that is a symlink or not a directory. The commit walks the parents with
``O_NOFOLLOW`` directory descriptors, so a symlink put there in the meantime
is not followed either.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import stat
from pathlib import Path

from ..errors import CorruptError, GeneralError, UnderflowError
from ..mbak.names import safe_relpath
from ..mbak.snapshot import FileRecord, Snapshot
from .filelist import PUBLIC_EXCLUDED_TOP
from .publicfiles import PublicScope
from .restore import os_error

log = logging.getLogger(__name__)

PUBLIC_STAGING_PREFIX = ".mbak-public-"
JOURNAL = "journal.json"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PublicStage:
    """Restore target for the public files of one drive; see the module docstring."""

    def __init__(self, drive: str, drive_root: Path, area: PublicScope, scope: PublicScope) -> None:
        self.drive = drive
        self.drive_root = drive_root
        self.area = area
        """Every owner's public selections on this device: nothing is written outside."""
        self.scope = scope
        """The selections of the owners being restored: what this restore replaces."""
        self.snapshot: Snapshot | None = None
        self.staged: dict[str, tuple[str, FileRecord]] = {}
        self.deletes: list[str] = []
        self.staging: Path | None = None
        self._tmp: int | None = None
        self._cur: FileRecord | None = None
        self._cur_written = 0
        self._dev: int | None = None

    # -- set-up
    def open(self) -> None:
        root = self.drive_root / "private"
        name = f"{PUBLIC_STAGING_PREFIX}{self.drive}-{secrets.token_hex(4)}"
        try:
            root.mkdir(parents=True, exist_ok=True)
            os.mkdir(root / name, 0o700)
        except OSError as e:
            raise os_error(e, "preparing the public restore") from e
        self.staging = root / name

    def set_snapshot(self, snap: Snapshot) -> None:
        self.snapshot = snap

    # -- entries
    def _check_path(self, rel: str) -> None:
        """Refuse a member that would land outside the public area or pass a symlink."""
        if rel not in self.area:
            raise CorruptError(
                f"public member {rel[:200]!r} is outside the public area of drive {self.drive}"
            )
        cur = self.drive_root
        parts = rel.split("/")
        try:
            dev = os.stat(cur).st_dev
        except OSError as e:
            raise os_error(e, rel) from e
        for i, part in enumerate(parts):
            self._check_device(rel, dev)
            cur = cur / part
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                return
            except OSError as e:
                raise os_error(e, rel) from e
            if stat.S_ISDIR(st.st_mode):
                dev = st.st_dev
            last = i == len(parts) - 1
            if stat.S_ISLNK(st.st_mode) and not last:
                where = "/".join(parts[: i + 1])
                raise CorruptError(
                    f"public member {rel[:200]!r} goes through the symbolic link {where[:200]!r}"
                )
            if not last and not stat.S_ISDIR(st.st_mode):
                where = "/".join(parts[: i + 1])
                raise CorruptError(
                    f"public member {rel[:200]!r} is below {where[:200]!r}, not a directory"
                )
            if last and stat.S_ISDIR(st.st_mode):
                raise CorruptError(f"public member {rel[:200]!r} is a directory on the device")

    def _check_device(self, rel: str, dev: int) -> None:
        """A file renamed in from the staging directory must land on the same file system."""
        assert self.staging is not None
        if self._dev is None:
            self._dev = os.stat(self.staging).st_dev
        if self._dev != dev:
            raise GeneralError(
                f"public member {rel[:200]!r} is on another file system than "
                f"{self.staging.parent}: it cannot be put back atomically"
            )

    def begin(self, name: str, size: int, mtime_ns: int, mode: int, is_dir: bool) -> bool:
        """Start a member; False when its bytes are to be skipped (not selected)."""
        if is_dir:
            raise CorruptError(f"public member {name[:200]!r} is a directory: public data is files")
        rel = safe_relpath(name)
        self._check_path(rel)
        if rel not in self.scope:
            return False
        if self.snapshot is not None and rel not in self.snapshot:
            return False
        assert self.staging is not None
        fname = f"f{len(self.staged)}"
        try:
            self._tmp = os.open(
                self.staging / fname,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
        except OSError as e:
            raise os_error(e, rel) from e
        self._cur = FileRecord(rel, size, mtime_ns, mode & 0o7777)
        self._cur_written = 0
        self.staged[rel] = (fname, self._cur)
        return True

    def write(self, data: bytes | memoryview) -> None:
        assert self._tmp is not None and self._cur is not None
        if self._cur_written + len(data) > self._cur.size:
            raise CorruptError(f"public member {self._cur.path[:200]!r}: more data than its size")
        try:
            mv = memoryview(data)
            while mv:
                n = os.write(self._tmp, mv)
                mv = mv[n:]
        except OSError as e:
            raise os_error(e, self._cur.path) from e
        self._cur_written += len(data)

    def end(self) -> None:
        if self._tmp is None or self._cur is None:
            return
        r = self._cur
        fd, self._tmp, self._cur = self._tmp, None, None
        try:
            if self._cur_written != r.size:
                raise UnderflowError(f"public member {r.path[:200]!r}: data ends early")
            os.fchmod(fd, r.mode)
            os.utime(fd, ns=(r.mtime_ns, r.mtime_ns))
        except OSError as e:
            raise os_error(e, r.path) from e
        finally:
            os.close(fd)

    # -- completion
    def device_records(self) -> dict[str, FileRecord]:
        """The regular files of the restored scope as they are on the device now."""
        out: dict[str, FileRecord] = {}
        for inc, _exc in self.scope.per_owner:
            for top in inc:
                for rel, st in _walk_files(self.drive_root, top):
                    if rel in self.scope and rel not in out:
                        r = FileRecord(rel, st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
                        out[rel] = r
        return out

    def finalize(self, whole: bool) -> None:
        """Decide the deletions and check the result against the snapshot; nothing is written.

        Every in-scope snapshot entry must end up as listed: staged from the
        archive (always, for ``whole`` base data) or, for an increment, already
        on the device with the listed size, mtime and mode. Raises Corrupt
        naming the first entry that would not.
        """
        if self._tmp is not None:
            raise UnderflowError("public data ends inside a file")
        if self.snapshot is None:
            raise CorruptError(f"public/{self.drive}: no public snapshot")
        snap = self.snapshot
        # Members that came before the snapshot were staged unchecked: the list decides.
        self.staged = {k: v for k, v in self.staged.items() if k in snap}
        present = self.device_records()
        self.deletes = sorted(p for p in present if p not in snap)
        for r in self.snapshot.entries.values():
            if r.is_dir or r.path not in self.scope:
                continue
            got = self.staged.get(r.path)
            if got is not None:
                have: FileRecord | None = got[1]
            elif whole:
                raise CorruptError(
                    f"public file {r.path[:200]!r} is in the archive's public snapshot "
                    "but not in its public data"
                )
            else:
                have = present.get(r.path)
            if have is None or (have.size, have.mtime_ns, have.mode) != (
                r.size,
                r.mtime_ns,
                r.mode & 0o7777,
            ):
                if whole or got is not None:
                    raise CorruptError(
                        f"public file {r.path[:200]!r} differs from the archive's public snapshot"
                    )
                raise CorruptError(
                    f"public file {r.path[:200]!r} is not in the increment and differs on the "
                    "device from the increment's snapshot: restore the backup it is based on first"
                )

    def commit(self) -> None:
        """Write the journal, then apply it: renames and deletions, each atomic."""
        assert self.staging is not None
        self.write_journal()
        try:
            apply_journal(self.staging)
        except OSError as e:
            # Journalled: the staging stays for the next start to finish, never dropped.
            kept, self.staging = self.staging, None
            log.error("public commit of drive %s stopped; %s is kept", self.drive, kept)
            raise os_error(e, f"committing the public files of drive {self.drive}") from e
        staging, self.staging = self.staging, None
        shutil.rmtree(staging, ignore_errors=True)

    def write_journal(self) -> None:
        """Record the commit durably; from here on a crash is finished at the next start."""
        assert self.staging is not None
        journal = {
            "drive_root": str(self.drive_root),
            "renames": [[f, rel] for rel, (f, _r) in sorted(self.staged.items())],
            "deletes": self.deletes,
        }
        try:
            tmp = self.staging / (JOURNAL + ".tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(journal, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, self.staging / JOURNAL)
            _fsync_dir(self.staging)
        except OSError as e:
            raise os_error(e, f"journalling the public files of drive {self.drive}") from e

    def abort(self) -> None:
        """Drop everything staged; the public area was never touched. Never raises."""
        if self._tmp is not None:
            try:
                os.close(self._tmp)
            except OSError:
                pass
            self._tmp = None
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None


def _walk_files(drive_root: Path, top: str) -> list[tuple[str, os.stat_result]]:
    """Regular files at or below ``top`` (relative to the drive root), symlinks not followed."""
    out: list[tuple[str, os.stat_result]] = []
    stack = [top]
    while stack:
        rel = stack.pop()
        full = drive_root / rel if rel else drive_root
        try:
            st = os.lstat(full)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            out.append((rel, st))
        elif stat.S_ISDIR(st.st_mode):
            try:
                names = os.listdir(full)
            except OSError:
                continue
            stack.extend(
                f"{rel}/{n}" if rel else n
                for n in names
                if rel or n.lower() not in PUBLIC_EXCLUDED_TOP  # never public: not walked
            )
    return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, _DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_parent(root_fd: int, rel: str, create: bool) -> int | None:
    """A descriptor of ``rel``'s parent directory, walked without following symlinks.

    Missing directories are created when ``create`` (owned like their parent);
    None when one is missing and not created.
    """
    fd = os.dup(root_fd)
    try:
        for part in rel.split("/")[:-1]:
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    os.close(fd)
                    return None
                os.mkdir(part, 0o755, dir_fd=fd)
                if os.geteuid() == 0:
                    pst = os.fstat(fd)
                    os.chown(part, pst.st_uid, pst.st_gid, dir_fd=fd, follow_symlinks=False)
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd
    except OSError:
        os.close(fd)
        raise


def apply_journal(staging: Path) -> None:
    """Apply a staging directory's journal; safe to repeat after a crash part-way."""
    with open(staging / JOURNAL, encoding="utf-8") as fh:
        journal = json.load(fh)
    root_fd = os.open(journal["drive_root"], _DIR_FLAGS)
    sfd = os.open(staging, _DIR_FLAGS)
    try:
        for fname, rel in journal["renames"]:
            try:
                os.stat(fname, dir_fd=sfd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # renamed before a crash
            pfd = _open_parent(root_fd, rel, create=True)
            assert pfd is not None
            try:
                leaf = rel.rsplit("/", 1)[-1]
                if os.geteuid() == 0:
                    try:
                        tst = os.stat(leaf, dir_fd=pfd, follow_symlinks=False)
                    except FileNotFoundError:
                        tst = os.fstat(pfd)
                    os.chown(fname, tst.st_uid, tst.st_gid, dir_fd=sfd, follow_symlinks=False)
                os.rename(fname, leaf, src_dir_fd=sfd, dst_dir_fd=pfd)
            finally:
                os.close(pfd)
        for rel in journal["deletes"]:
            pfd = _open_parent(root_fd, rel, create=False)
            if pfd is None:
                continue
            try:
                leaf = rel.rsplit("/", 1)[-1]
                st = os.stat(leaf, dir_fd=pfd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    os.unlink(leaf, dir_fd=pfd)
            except FileNotFoundError:
                pass
            finally:
                os.close(pfd)
    finally:
        os.close(sfd)
        os.close(root_fd)


def recover_public(private_root: Path) -> None:
    """At start-up: finish a public commit a crash interrupted, drop other leftovers.

    Never raises: a journal that cannot be applied is logged and kept for a
    person to look at.
    """
    try:
        names = os.listdir(private_root)
    except OSError:
        return
    for n in names:
        if not n.startswith(PUBLIC_STAGING_PREFIX):
            continue
        p = private_root / n
        if (p / JOURNAL).exists():
            try:
                apply_journal(p)
                log.warning("finished an interrupted restore of public files (%s)", p)
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.error("cannot finish the public restore journalled in %s: %s", p, e)
                continue
        shutil.rmtree(p, ignore_errors=True)
