"""The backup archive (``.mbak``): a POSIX pax tar whose exact size is known up front.

A backup is *planned* before the first byte is produced: the plan is a list of
segments (literal bytes, file members read from disk, spooled members, the digest
trailer), built from ``stat`` results and spool files only. That gives the exact
size MTP needs for ObjectSize, and lets a reader start at any offset without
producing what comes before it (GetPartialObject).

SHA-256 digests are not computed at planning time (listing must be fast). They are
computed while the archive is streamed, cached per plan, and computed on demand
for any stream a reader jumped over when the trailer member is reached. See
``engine/README.md`` for the full format description.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import json
import os
import threading
import time
import weakref
from array import array
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from .. import __version__
from ..errors import CorruptError
from ..mbak.manifest import (
    FLAG_CHANGED,
    FLAG_OK,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    OWNER_AREA,
    TRAILER_LINE,
    TRAILER_NAME,
    StreamEntry,
    stream_member,
)
from ..mbak.snapshot import FileRecord
from ..mbak.tar import ZERO_BLOCK, member_header, member_header_bytes, member_header_size, padding
from ..types import TransferType

# ---------------------------------------------------------------- file tables


class FileTable:
    """The records of one listing, packed: one name blob and arrays of numbers.

    A plan of many files must not cost an object graph per file (a backup of
    100,000 files is prepared for several archives at once, and kept while the
    host reads them). Names are stored as the bytes the archive carries (UTF-8,
    undecodable bytes as on disk), directories ending in ``/``.
    """

    __slots__ = ("__weakref__", "modes", "mtimes", "name_end", "names", "root", "sizes")

    def __init__(self, root: bytes, records: Iterable[FileRecord]) -> None:
        self.root = root
        blob = bytearray()
        self.name_end = array("q")
        self.sizes = array("q")
        self.mtimes = array("q")
        self.modes = array("l")
        for r in records:
            blob += r.path.encode("utf-8", "surrogateescape")
            self.name_end.append(len(blob))
            self.sizes.append(0 if r.is_dir else r.size)
            self.mtimes.append(r.mtime_ns)
            self.modes.append(r.mode)
        self.names = bytes(blob)

    def __len__(self) -> int:
        return len(self.name_end)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FileTable)
            and self.root == other.root
            and self.names == other.names
            and self.name_end == other.name_end
            and self.sizes == other.sizes
            and self.mtimes == other.mtimes
            and self.modes == other.modes
        )

    __hash__ = None  # type: ignore[assignment]

    def name(self, i: int) -> bytes:
        return self.names[self.name_end[i - 1] if i else 0 : self.name_end[i]]

    def path(self, i: int) -> bytes:
        """The file on disk (directories without their trailing ``/``)."""
        return os.path.join(self.root, self.name(i).rstrip(b"/"))

    def is_dir(self, i: int) -> bool:
        return self.names[self.name_end[i] - 1] == 0x2F

    def display(self, i: int) -> str:
        return self.name(i).decode("utf-8", "surrogateescape")


class FileLayout:
    """Where each member of a table lies in a stream whose names start with ``prefix``.

    ``starts[i]`` is member ``i``'s offset from the first member, ``starts[-1]`` the
    layout's size: the header sizes are computed once, the headers themselves
    only when a reader reaches them.
    """

    __slots__ = ("__weakref__", "content", "prefix", "starts", "table")

    def __init__(self, table: FileTable, prefix: bytes) -> None:
        self.table = table
        self.prefix = prefix
        starts = array("q", [0])
        pos = 0
        content = 0
        names, ends, sizes, mtimes = table.names, table.name_end, table.sizes, table.mtimes
        begin = 0
        for i in range(len(table)):
            end = ends[i]
            name = names[begin:end]
            begin = end
            is_dir = name[-1] == 0x2F
            size = sizes[i]
            pos += member_header_size(prefix + name, size, mtimes[i], is_dir) + size
            pos += padding(size)
            content += size
            starts.append(pos)
        self.starts = starts
        self.content = content

    def header(self, i: int) -> bytes:
        t = self.table
        return member_header_bytes(
            self.prefix + t.name(i), t.sizes[i], t.mtimes[i], t.modes[i], t.is_dir(i)
        )


_last_layout: weakref.ref[FileLayout] | None = None
_layout_lock = threading.Lock()


def file_layout(root: bytes, records: Iterable[FileRecord], prefix: bytes) -> FileLayout:
    """The layout of ``records``, shared with the previous one when it is the same.

    The engine plans a listing into several archives in a row (the full archive
    and the owner's own); they get one table and one layout between them.
    """
    global _last_layout
    table = FileTable(root, records)
    with _layout_lock:
        last = _last_layout() if _last_layout is not None else None
        if last is not None and last.prefix == prefix and last.table == table:
            return last
    layout = FileLayout(table, prefix)
    with _layout_lock:
        _last_layout = weakref.ref(layout)
    return layout


# ---------------------------------------------------------------- segments


class Segment:
    """A contiguous piece of the archive; ``stream`` is its manifest index or -1."""

    __slots__ = ("size", "stream")

    def __init__(self, size: int, stream: int) -> None:
        self.size = size
        self.stream = stream


class BytesSegment(Segment):
    __slots__ = ("data",)

    def __init__(self, data: bytes, stream: int = -1) -> None:
        super().__init__(len(data), stream)
        self.data = data


class FileRun(Segment):
    """Passive file members, in a row: headers built on demand, content read from disk."""

    __slots__ = ("layout",)

    def __init__(self, layout: FileLayout, stream: int) -> None:
        super().__init__(layout.starts[-1], stream)
        self.layout = layout


class SpoolSegment(Segment):
    """A member whose content was spooled to a file by the engine (trusted, fixed)."""

    __slots__ = ("content_size", "hdr", "path")

    def __init__(self, name: str, path: Path, size: int, mtime_ns: int, stream: int) -> None:
        hdr = member_header(name, size, mtime_ns, 0o600)
        super().__init__(len(hdr) + size + padding(size), stream)
        self.hdr = hdr
        self.path = path
        self.content_size = size


class TrailerSegment(Segment):
    __slots__ = ("hdr", "nbytes")

    def __init__(self, nstreams: int, mtime_ns: int) -> None:
        nbytes = nstreams * TRAILER_LINE
        hdr = member_header(TRAILER_NAME, nbytes, mtime_ns, 0o644)
        super().__init__(len(hdr) + nbytes + padding(nbytes), -1)
        self.hdr = hdr
        self.nbytes = nbytes


def bytes_member(name: str, data: bytes, mtime_ns: int, stream: int = -1) -> BytesSegment:
    return BytesSegment(
        member_header(name, len(data), mtime_ns, 0o644) + data + bytes(padding(len(data))), stream
    )


# ---------------------------------------------------------------- the plan


_MAX_HASH_QUEUE = 4
"""Pieces waiting to be hashed, at most, before a reader waits for the hashing."""


class _Digest:
    """One stream's SHA-256, fed in order; ``pos`` is how far it has been claimed."""

    __slots__ = ("end", "hasher", "hexdigest", "pos")

    def __init__(self, pos: int, end: int) -> None:
        self.pos = pos
        self.end = end
        self.hasher = hashlib.sha256()
        self.hexdigest: str | None = None
        if pos == end:
            self.hexdigest = self.hasher.hexdigest()


def _hash(d: _Digest, data: memoryview, last: bool) -> None:
    d.hasher.update(data)
    if last:
        d.hexdigest = d.hasher.hexdigest()


class ArchivePlan:
    """A prepared archive: exact size, random access, digests computed as it streams.

    Hashing runs on one worker thread per plan, in the order the bytes were
    claimed, while the reader goes on producing (hashlib releases the GIL on
    large buffers): the stream is not held up by its digest.
    """

    def __init__(
        self,
        name: str,
        segments: list[Segment],
        streams: list[StreamEntry],
        manifest: dict[str, object],
    ) -> None:
        self.name = name
        self.segments = segments
        self.streams = streams
        self.manifest = manifest
        self.starts = array("q")
        pos = 0
        for s in segments:
            self.starts.append(pos)
            pos += s.size
        self.size = pos
        self._lock = threading.Lock()
        self._digests = [_Digest(st.start, st.end) for st in streams]
        self._hasher: ThreadPoolExecutor | None = None
        self._pending: deque[Future[None]] = deque()
        self.changed: set[int] = set()
        self.changed_paths: list[str] = []

    # -- digests
    def _feed(self, offset: int, data: memoryview, stream: int) -> None:
        """Hash ``data`` (a view of immutable bytes) if it is the next piece of its stream."""
        if stream < 0:
            return
        d = self._digests[stream]
        with self._lock:
            if d.hexdigest is not None or d.pos >= d.end:
                return
            end = offset + len(data)
            if not offset <= d.pos < end:
                return
            view = data[d.pos - offset :]
            d.pos = end
            last = d.pos >= d.end
            if self._hasher is None:
                self._hasher = ThreadPoolExecutor(1, thread_name_prefix="archive-digest")
            pending = self._pending
            pending.append(self._hasher.submit(_hash, d, view, last))
            while pending and pending[0].done():
                pending.popleft()
            oldest = pending.popleft() if len(pending) > _MAX_HASH_QUEUE else None
        if oldest is not None:
            # The reader is ahead of the hashing: wait, so that pending pieces
            # (a read's worth of memory each) stay few.
            oldest.result()

    def _drain(self) -> None:
        """Wait until every claimed piece has been hashed."""
        with self._lock:
            last = self._pending[-1] if self._pending else None
        if last is not None:
            last.result()

    def _mark_changed(self, stream: int, what: str) -> None:
        with self._lock:
            if stream >= 0:
                self.changed.add(stream)
            if len(self.changed_paths) < 1000:
                self.changed_paths.append(what)

    def ensure_digests(self) -> None:
        """Hash every stream a reader skipped, resuming where hashing stopped."""
        for i, d in enumerate(self._digests):
            while True:
                with self._lock:
                    pos = d.pos
                if pos >= d.end:
                    break
                cur = PlanCursor(self, pos, hash_only=i)
                try:
                    while cur.pos < d.end:
                        if not cur.read(min(1 << 20, d.end - cur.pos)):
                            break
                finally:
                    cur.close()
        self._drain()

    def digest(self, index: int) -> str | None:
        self._drain()
        return self._digests[index].hexdigest

    def trailer_bytes(self) -> bytes:
        self.ensure_digests()
        lines = []
        for i, d in enumerate(self._digests):
            flag = FLAG_CHANGED if i in self.changed else FLAG_OK
            lines.append(f"{i:06d} {d.hexdigest} {flag}\n")
        data = "".join(lines).encode("ascii")
        assert len(data) == len(self._digests) * TRAILER_LINE
        return data

    def segment_at(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset) - 1


class PlanCursor:
    """Sequential reader over a plan from any offset; blocking, run it in a thread.

    Each read fills one buffer the cursor keeps (file content lands there with
    ``preadv``) and returns it as one ``bytes``: no object per block, no
    concatenation.
    """

    def __init__(self, plan: ArchivePlan, offset: int, hash_only: int | None = None) -> None:
        if not 0 <= offset <= plan.size:
            raise CorruptError(f"offset {offset} outside archive of {plan.size} bytes")
        self.plan = plan
        self.pos = offset
        self._fd: int | None = None
        self._fd_key: tuple[int, int] = (-1, -1)
        self._hdr_key: tuple[int, int] = (-1, -1)
        self._hdr = b""
        self._trailer: bytes | None = None
        self._hash_only = hash_only
        self._buf = bytearray()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._fd_key = (-1, -1)
            try:
                os.close(fd)
            except OSError:
                pass

    def read(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` from the current position; b"" at the end."""
        plan = self.plan
        want = min(max_bytes, plan.size - self.pos)
        if want <= 0:
            return b""
        direct = self._direct(want)
        if direct is not None:
            data, stream = direct
            if stream >= 0:
                plan._feed(self.pos, memoryview(data), stream)
            self.pos += want
            return data
        if len(self._buf) < want:
            self._buf = bytearray(want)
        mv = memoryview(self._buf)
        filled = 0
        fed: list[tuple[int, int, int]] = []
        while filled < want:
            idx = plan.segment_at(self.pos + filled)
            seg = plan.segments[idx]
            off = self.pos + filled - plan.starts[idx]
            n = min(want - filled, seg.size - off)
            self._produce(idx, seg, off, mv[filled : filled + n])
            if seg.stream >= 0:
                fed.append((filled, n, seg.stream))
            filled += n
            if self._hash_only is not None and seg.stream != self._hash_only:
                break
        out = bytes(mv[:filled])
        mv.release()
        if fed:
            view = memoryview(out)
            for start, n, stream in fed:
                plan._feed(self.pos + start, view[start : start + n], stream)
        self.pos += filled
        return out

    def _direct(self, want: int) -> tuple[bytes, int] | None:
        """The next ``want`` bytes read straight from a file, when they are all content.

        The common case for large files: one ``pread``, no copy into the buffer.
        Anything else (headers, padding, a file that came up short) returns None
        and goes through the buffer.
        """
        plan = self.plan
        idx = plan.segment_at(self.pos)
        seg = plan.segments[idx]
        off = self.pos - plan.starts[idx]
        planned: tuple[int, int, FileTable, int] | None = None
        if isinstance(seg, FileRun):
            starts = seg.layout.starts
            i = bisect.bisect_right(starts, off) - 1
            t = seg.layout.table
            size = t.sizes[i]
            rel = off - (starts[i + 1] - padding(size) - size)
            if rel < 0 or rel + want > size:
                return None
            key = (idx, i)
            path = t.path(i)
            planned = (seg.stream, t.mtimes[i], t, i)
        elif isinstance(seg, SpoolSegment):
            size = seg.content_size
            rel = off - len(seg.hdr)
            if rel < 0 or rel + want > size:
                return None
            key = (idx, 0)
            path = os.fsencode(seg.path)
        else:
            return None
        self._open(key, path, size, planned)
        if self._fd is None:
            return None
        data = os.pread(self._fd, want, rel)
        if len(data) != want:
            return None
        return data, seg.stream

    def _produce(self, idx: int, seg: Segment, off: int, dst: memoryview) -> None:
        if isinstance(seg, FileRun):
            self._produce_run(idx, seg, off, dst)
        elif isinstance(seg, BytesSegment):
            dst[:] = seg.data[off : off + len(dst)]
        elif isinstance(seg, SpoolSegment):
            key = (idx, 0)
            self._produce_member(key, seg.hdr, seg.content_size, os.fsencode(seg.path), off, dst)
        elif isinstance(seg, TrailerSegment):
            if self._trailer is None:
                body = self.plan.trailer_bytes()
                self._trailer = seg.hdr + body + bytes(padding(len(body)))
            dst[:] = self._trailer[off : off + len(dst)]
        else:
            raise AssertionError(type(seg))

    def _produce_run(self, idx: int, seg: FileRun, off: int, dst: memoryview) -> None:
        layout = seg.layout
        starts = layout.starts
        i = bisect.bisect_right(starts, off) - 1
        done = 0
        while done < len(dst):
            rel = off + done - starts[i]
            n = min(len(dst) - done, starts[i + 1] - starts[i] - rel)
            key = (idx, i)
            if self._hdr_key != key:
                self._hdr = layout.header(i)
                self._hdr_key = key
            t = layout.table
            self._produce_member(
                key,
                self._hdr,
                t.sizes[i],
                t.path(i),
                rel,
                dst[done : done + n],
                (seg.stream, t.mtimes[i], t, i),
            )
            done += n
            i += 1

    def _produce_member(
        self,
        key: tuple[int, int],
        hdr: bytes,
        size: int,
        path: bytes,
        off: int,
        dst: memoryview,
        planned: tuple[int, int, FileTable, int] | None = None,
    ) -> None:
        """Header, content and padding of one member, from ``off``, into ``dst``."""
        pos = 0
        want = len(dst)
        if off < len(hdr):
            piece = hdr[off : off + want]
            dst[: len(piece)] = piece
            pos = len(piece)
            off += pos
        rel = off - len(hdr)
        if pos < want and rel < size:
            n = min(want - pos, size - rel)
            self._read_content(key, path, rel, dst[pos : pos + n], size, planned)
            pos += n
        if pos < want:
            dst[pos:] = bytes(want - pos)

    def _read_content(
        self,
        key: tuple[int, int],
        path: bytes,
        rel: int,
        dst: memoryview,
        size: int,
        planned: tuple[int, int, FileTable, int] | None,
    ) -> None:
        """Planned bytes of a file: what it holds, padded/truncated to the planned size.

        A file whose size or mtime no longer match the plan (or that vanished) is
        still served at its planned size so every later offset stays valid, and its
        stream is flagged ``C`` in the trailer; restore refuses flagged streams.
        """
        self._open(key, path, size, planned)
        n = len(dst)
        got = 0
        if self._fd is not None:
            while got < n:
                r = os.preadv(self._fd, [dst[got:]], rel + got)
                if r <= 0:
                    break
                got += r
        if got < n:
            if self._fd is not None and planned is not None:
                self._changed(planned)
            dst[got:] = bytes(n - got)

    def _open(
        self,
        key: tuple[int, int],
        path: bytes,
        size: int,
        planned: tuple[int, int, FileTable, int] | None,
    ) -> None:
        """Make ``self._fd`` the member's file (None if it is gone), checking its stat."""
        if self._fd_key != key:
            self.close()
            self._fd_key = key
            try:
                self._fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as e:
                if planned is not None:
                    self._changed(planned)
                elif e.errno != errno.ENOENT:
                    raise
            else:
                if planned is not None:
                    st = os.fstat(self._fd)
                    if st.st_size != size or st.st_mtime_ns != planned[1]:
                        self._changed(planned)
                if size >= _ADVISE_FROM:
                    _advise_sequential(self._fd)

    def _changed(self, planned: tuple[int, int, FileTable, int]) -> None:
        stream, _mtime, table, i = planned
        self.plan._mark_changed(stream, table.display(i))


_ADVISE_FROM = 1 << 20
"""Files from this size on are announced as read sequentially (read-ahead)."""


def _advise_sequential(fd: int) -> None:
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except (OSError, AttributeError):
        pass


# ---------------------------------------------------------------- building


class PlanBuilder:
    """Collects streams, then lays out manifest + streams + trailer + end blocks."""

    def __init__(self, name: str, mtime_ns: int | None = None) -> None:
        self.name = name
        self.mtime_ns = mtime_ns if mtime_ns is not None else time.time_ns()
        self._segments: list[Segment] = []
        self.streams: list[StreamEntry] = []
        self._cur: StreamEntry | None = None

    def begin_stream(
        self, sid: int, drive: str, ttype: TransferType, area: str = OWNER_AREA
    ) -> StreamEntry:
        assert self._cur is None
        member = stream_member(sid, drive, ttype, area)
        st = StreamEntry(len(self.streams), sid, drive, ttype, member, area=area)
        self.streams.append(st)
        self._cur = st
        return st

    def end_stream(self) -> None:
        self._cur = None

    def _add(self, seg: Segment, content: int) -> None:
        assert self._cur is not None
        self._segments.append(seg)
        self._cur.size += seg.size
        self._cur.entries += 1
        self._cur.content_bytes += content

    def add_files(self, root_dir: Path, records: Iterable[FileRecord]) -> None:
        """Add file members planned from their stat records, paths relative to ``root_dir``.

        ``root_dir`` is the private directory for an owner's passive data, the
        drive's root for its public files.
        """
        assert self._cur is not None
        prefix = self._cur.member.encode("utf-8", "surrogateescape") + b"/"
        layout = file_layout(os.fsencode(root_dir), records, prefix)
        if not len(layout.table):
            return
        self._segments.append(FileRun(layout, self._cur.index))
        self._cur.size += layout.starts[-1]
        self._cur.entries += len(layout.table)
        self._cur.content_bytes += layout.content

    def add_spooled(self, path: Path, size: int | None = None) -> None:
        assert self._cur is not None
        if size is None:
            size = os.path.getsize(path)
        self._add(SpoolSegment(self._cur.member, path, size, self.mtime_ns, self._cur.index), size)

    def add_segments_from(self, other: list[Segment], entry: StreamEntry) -> None:
        """Reuse another plan's segments for one stream (per-owner archives)."""
        st = self.begin_stream(entry.sid, entry.drive, entry.ttype, entry.area)
        for seg in other:
            copy: Segment
            if isinstance(seg, FileRun):
                copy = FileRun(seg.layout, st.index)
            elif isinstance(seg, SpoolSegment):
                copy = SpoolSegment(st.member, seg.path, seg.content_size, self.mtime_ns, st.index)
            else:
                raise AssertionError(type(seg))
            self._segments.append(copy)
        st.size, st.entries, st.content_bytes = entry.size, entry.entries, entry.content_bytes
        self.end_stream()

    def segments_of(self, entry: StreamEntry) -> list[Segment]:
        return [s for s in self._segments if s.stream == entry.index]

    def finish(self, manifest: dict[str, object]) -> ArchivePlan:
        manifest = dict(manifest)
        manifest["format"] = FORMAT
        manifest["format_version"] = FORMAT_VERSION
        manifest.setdefault("engine", {"name": "backup-engine", "version": __version__})
        manifest["streams"] = [s.to_manifest() for s in self.streams]
        manifest["digests"] = {
            "member": TRAILER_NAME,
            "algorithm": "sha256",
            "line_bytes": TRAILER_LINE,
            "line_format": "index(6 digits) SP sha256(64 hex) SP flag LF",
            "flags": {FLAG_OK: "ok", FLAG_CHANGED: "a file changed while the backup was read"},
            "covers": "the archive bytes of each stream: its members' headers, data and padding",
        }
        data = json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8") + b"\n"
        head = bytes_member(MANIFEST_NAME, data, self.mtime_ns)
        pos = head.size
        for st in self.streams:
            st.start = pos
            pos += st.size
        segs: list[Segment] = [head, *self._segments]
        segs.append(TrailerSegment(len(self.streams), self.mtime_ns))
        segs.append(BytesSegment(ZERO_BLOCK * 2))
        plan = ArchivePlan(self.name, segs, self.streams, manifest)
        return plan
