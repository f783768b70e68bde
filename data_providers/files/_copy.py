"""Copying files for CopyObject: data only, in chunks, stoppable between two chunks.

Three properties the storage relies on:

* **Holes stay holes.**  Only the data regions of a file (``SEEK_DATA`` /
  ``SEEK_HOLE``) are copied and the copy is then extended to the source's
  size, so a sparse file (TruncateObject grows a file without writing) is
  copied sparse.  :func:`bytes_to_write` counts exactly those regions, which
  makes the free-space check before a copy match what the copy writes: a
  file grown to the whole free space copies in no time and no space, and a
  file whose data does not fit is refused before anything is written.  A
  filesystem that cannot tell holes reports the whole file as data, and its
  copy then writes (and is counted as) the whole size.
* **The kernel moves the bytes**: ``copy_file_range``, else ``sendfile``,
  else ``pread``/``pwrite``, :data:`COPY_CHUNK` bytes at a time.
* **A checkpoint between chunks.**  The storage runs a copy in a worker thread
  and passes ``trio.from_thread.check_cancelled``, which raises ``Cancelled``
  there once the host cancels the transaction: the copy stops within one
  chunk, and the caller removes what it had written.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator

COPY_CHUNK = 4 * 1024 * 1024
"""Bytes per kernel copy call: a few milliseconds of work, the most a Cancel waits."""

Checkpoint = Callable[[], None]
"""Called between chunks; raises to stop the copy."""

_FALLBACK_ERRNOS = frozenset({errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL})
"""What a kernel copy call answers when it cannot copy between these two files."""


def data_regions(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The ``(start, end)`` byte ranges of ``fd`` below ``size`` that hold data."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole from here to the end
                return
            if exc.errno != errno.EINVAL:
                raise
            yield pos, size  # no SEEK_DATA here: all of it is data
            return
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        pos = end


def file_data_bytes(path: str) -> int:
    """What copying the file at ``path`` writes: the size of its data regions."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return sum(end - start for start, end in data_regions(fd, os.fstat(fd).st_size))
    finally:
        os.close(fd)


def bytes_to_write(path: str, is_dir: bool, checkpoint: Checkpoint) -> tuple[int, int]:
    """``(bytes a copy of path writes, size of its largest file)``.

    A folder counts the regular files below it; symlinks are copied as links
    and need no data.  The largest size is for filesystems that limit a file's
    size (FAT), whatever its holes.
    """
    if not is_dir:
        return file_data_bytes(path), os.stat(path).st_size
    total = largest = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        checkpoint()
        for name in filenames:
            child = os.path.join(dirpath, name)
            try:
                if not os.path.isfile(child) or os.path.islink(child):
                    continue
                total += file_data_bytes(child)
                largest = max(largest, os.stat(child).st_size)
            except OSError:
                continue  # unreadable: the copy fails on it, not the count
    return total, largest


def copy_file(src: str, dst: str, checkpoint: Checkpoint) -> str:
    """Copy ``src`` to the new file ``dst`` with its metadata (like ``shutil.copy2``).

    ``dst`` must not exist.  Returns ``dst``, so that it can serve as
    ``shutil.copytree``'s ``copy_function``.  On any exception (a Cancel
    included) ``dst`` is left as far as it got: the caller removes it.
    """
    checkpoint()
    in_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out_fd = os.open(dst, flags, 0o600)
        try:
            size = os.fstat(in_fd).st_size
            mover = _Mover(in_fd, out_fd)
            for start, end in data_regions(in_fd, size):
                offset = start
                while offset < end:
                    checkpoint()
                    moved = mover.move(offset, min(COPY_CHUNK, end - offset))
                    if moved == 0:  # the source shrank meanwhile
                        break
                    offset += moved
            os.ftruncate(out_fd, size)
        finally:
            os.close(out_fd)
    finally:
        os.close(in_fd)
    shutil.copystat(src, dst)
    return dst


class _Mover:
    """Moves byte ranges between two files with the best call that works for them."""

    def __init__(self, in_fd: int, out_fd: int) -> None:
        self.in_fd = in_fd
        self.out_fd = out_fd
        self._ways: list[Callable[[int, int], int]] = [
            self._copy_file_range,
            self._sendfile,
            self._read_write,
        ]

    def move(self, offset: int, count: int) -> int:
        """Copy up to ``count`` bytes at ``offset`` to the same offset; 0 at end of file."""
        while True:
            try:
                return self._ways[0](offset, count)
            except OSError as exc:
                if exc.errno not in _FALLBACK_ERRNOS or len(self._ways) == 1:
                    raise
            del self._ways[0]  # and never try it again for this file

    def _copy_file_range(self, offset: int, count: int) -> int:
        return os.copy_file_range(self.in_fd, self.out_fd, count, offset, offset)

    def _sendfile(self, offset: int, count: int) -> int:
        os.lseek(self.out_fd, offset, os.SEEK_SET)
        return os.sendfile(self.out_fd, self.in_fd, offset, count)

    def _read_write(self, offset: int, count: int) -> int:
        data = os.pread(self.in_fd, count, offset)
        view = memoryview(data)
        while view:
            written = os.pwrite(self.out_fd, view, offset)
            view = view[written:]
            offset += written
        return len(data)
