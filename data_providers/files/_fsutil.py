"""The few Linux calls the standard library lacks: statx and renameat2.

``statx`` is needed for the birth time (Python 3.11's ``os.stat`` has no
``st_birthtime`` on Linux): it dates DateCreated and keeps persistent ids
unique when an inode number is reused.  ``renameat2(RENAME_NOREPLACE)``
puts a finished upload in place without ever replacing a file that
appeared meanwhile.  Both fall back to the portable calls when the C
library or the filesystem does not offer them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat as stat_mod
import threading
from typing import NamedTuple

_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_STATX_BASIC_AND_BTIME = 0x7FF | 0x800
_STATX_BTIME = 0x800
_RENAME_NOREPLACE = 1


class _Timestamp(ctypes.Structure):
    _fields_ = [
        ("tv_sec", ctypes.c_int64),
        ("tv_nsec", ctypes.c_uint32),
        ("_reserved", ctypes.c_int32),
    ]


class _Statx(ctypes.Structure):
    _fields_ = [
        ("stx_mask", ctypes.c_uint32),
        ("stx_blksize", ctypes.c_uint32),
        ("stx_attributes", ctypes.c_uint64),
        ("stx_nlink", ctypes.c_uint32),
        ("stx_uid", ctypes.c_uint32),
        ("stx_gid", ctypes.c_uint32),
        ("stx_mode", ctypes.c_uint16),
        ("_spare0", ctypes.c_uint16),
        ("stx_ino", ctypes.c_uint64),
        ("stx_size", ctypes.c_uint64),
        ("stx_blocks", ctypes.c_uint64),
        ("stx_attributes_mask", ctypes.c_uint64),
        ("stx_atime", _Timestamp),
        ("stx_btime", _Timestamp),
        ("stx_ctime", _Timestamp),
        ("stx_mtime", _Timestamp),
        ("stx_rdev_major", ctypes.c_uint32),
        ("stx_rdev_minor", ctypes.c_uint32),
        ("stx_dev_major", ctypes.c_uint32),
        ("stx_dev_minor", ctypes.c_uint32),
        ("_spare", ctypes.c_uint64 * 14),
    ]


def _load_libc() -> ctypes.CDLL | None:
    """The C library the interpreter already has loaded.

    ``dlopen(NULL)`` finds it without looking it up by name: ``find_library``
    runs ``ldconfig -p`` in a child process, which the responder's start-up
    on a small board should not pay.  By name only if that fails.
    """
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        pass
    from ctypes.util import find_library

    try:
        return ctypes.CDLL(find_library("c") or None, use_errno=True)
    except OSError:
        return None


_libc = _load_libc()


def c_library() -> ctypes.CDLL:
    """The C library (for inotify too); OSError(ENOSYS) if it could not be loaded."""
    if _libc is None:
        raise OSError(errno.ENOSYS, "the C library could not be loaded")
    return _libc


_statx = getattr(_libc, "statx", None) if _libc is not None else None
if _statx is not None:
    _statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    _statx.restype = ctypes.c_int
_renameat2 = getattr(_libc, "renameat2", None) if _libc is not None else None
if _renameat2 is not None:
    _renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    _renameat2.restype = ctypes.c_int


class FileStat(NamedTuple):
    """The fields of a stat the provider uses, birth time included.

    A named tuple rather than a frozen dataclass: one is made for every
    object a host asks about, and a tuple is built in one step.
    """

    mode: int
    ino: int
    dev: int
    size: int
    mtime_ns: int
    atime_ns: int
    btime_ns: int
    """0 when the filesystem does not record a birth time."""

    @property
    def is_dir(self) -> bool:
        return stat_mod.S_ISDIR(self.mode)

    @property
    def is_link(self) -> bool:
        return stat_mod.S_ISLNK(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat_mod.S_ISREG(self.mode)


def _from_os(st: os.stat_result) -> FileStat:
    birth = getattr(st, "st_birthtime_ns", None)
    if birth is None:
        birth_s = getattr(st, "st_birthtime", None)
        birth = int(birth_s * 1e9) if birth_s else 0
    return FileStat(
        st.st_mode, st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_atime_ns, birth
    )


_buffers = threading.local()
"""One statx buffer per thread (listing runs in worker threads, lookups on the loop)."""


def stat_path(path: str, follow: bool = False) -> FileStat:
    """Stat ``path`` with its birth time; raises OSError like ``os.stat``."""
    if _statx is None:
        return _from_os(os.stat(path, follow_symlinks=follow))
    buf = getattr(_buffers, "statx", None)
    if buf is None:
        buf = _buffers.statx = _Statx()
    flags = 0 if follow else _AT_SYMLINK_NOFOLLOW
    if _statx(_AT_FDCWD, os.fsencode(path), flags, _STATX_BASIC_AND_BTIME, ctypes.byref(buf)):
        err = ctypes.get_errno()
        if err == errno.ENOSYS:
            return _from_os(os.stat(path, follow_symlinks=follow))
        raise OSError(err, os.strerror(err), path)
    btime = 0
    if buf.stx_mask & _STATX_BTIME:
        btime = buf.stx_btime.tv_sec * 1_000_000_000 + buf.stx_btime.tv_nsec
    mtime = buf.stx_mtime
    atime = buf.stx_atime
    return FileStat(
        buf.stx_mode,
        buf.stx_ino,
        os.makedev(buf.stx_dev_major, buf.stx_dev_minor),
        buf.stx_size,
        mtime.tv_sec * 1_000_000_000 + mtime.tv_nsec,
        atime.tv_sec * 1_000_000_000 + atime.tv_nsec,
        btime,
    )


def rename_noreplace(src: str, dst: str) -> None:
    """Rename, failing with FileExistsError instead of replacing ``dst``.

    Filesystems without RENAME_NOREPLACE get a check-then-rename, which
    can only lose against another process on the device, never the host.
    """
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE):
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise OSError(err, os.strerror(err), src, None, dst)
        else:
            return
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
    os.rename(src, dst)


def filesystem_type(dev: int) -> str:
    """The type (``ext4``, ``vfat``, ...) of the mounted device ``dev``.

    Read from /proc/self/mountinfo, whose third field is the same
    major:minor pair as ``st_dev``; ``""`` when it cannot be told.
    """
    wanted = f"{os.major(dev)}:{os.minor(dev)}"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 3 and fields[2] == wanted and "-" in fields:
                    sep = fields.index("-")
                    if sep + 1 < len(fields):
                        return fields[sep + 1]
    except OSError:
        pass
    return ""
