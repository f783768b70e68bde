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
from collections.abc import Iterable
from dataclasses import dataclass, field
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
from ..mbak.tar import ZERO_BLOCK, member_header, padding
from ..types import TransferType

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


class FileSegment(Segment):
    """A passive file member: header rebuilt on demand, content read from disk."""

    __slots__ = ("header_len", "name", "path", "record")

    def __init__(self, name: str, path: bytes, record: FileRecord, stream: int) -> None:
        hdr = member_header(name, record.size, record.mtime_ns, record.mode, record.is_dir)
        size = record.size if not record.is_dir else 0
        super().__init__(len(hdr) + size + padding(size), stream)
        self.header_len = len(hdr)
        self.name = name
        self.path = path
        self.record = record

    def header(self) -> bytes:
        r = self.record
        return member_header(self.name, r.size, r.mtime_ns, r.mode, r.is_dir)


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


@dataclass
class _Digest:
    pos: int
    end: int
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    hexdigest: str | None = None


class ArchivePlan:
    """A prepared archive: exact size, random access, digests computed as it streams."""

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
        self.starts: list[int] = []
        pos = 0
        for s in segments:
            self.starts.append(pos)
            pos += s.size
        self.size = pos
        self._lock = threading.Lock()
        self._digests = [_Digest(st.start, st.end) for st in streams]
        for d in self._digests:
            if d.pos == d.end:
                d.hexdigest = d.hasher.hexdigest()
        self.changed: set[int] = set()
        self.changed_paths: list[str] = []

    # -- digests
    def _feed(self, offset: int, data: bytes | memoryview, stream: int) -> None:
        if stream < 0:
            return
        d = self._digests[stream]
        with self._lock:
            if d.hexdigest is not None:
                return
            end = offset + len(data)
            if offset <= d.pos < end:
                d.hasher.update(data[d.pos - offset :])
                d.pos = end
                if d.pos >= d.end:
                    d.hexdigest = d.hasher.hexdigest()

    def _mark_changed(self, stream: int, what: str) -> None:
        with self._lock:
            if stream >= 0:
                self.changed.add(stream)
            if len(self.changed_paths) < 1000:
                self.changed_paths.append(what)

    def ensure_digests(self) -> None:
        """Hash every stream a reader skipped, resuming where hashing stopped."""
        for i, d in enumerate(self._digests):
            while d.hexdigest is None:
                with self._lock:
                    pos = d.pos
                cur = PlanCursor(self, pos, hash_only=i)
                try:
                    while d.hexdigest is None and cur.pos < d.end:
                        if not cur.read(min(1 << 20, d.end - cur.pos)):
                            break
                finally:
                    cur.close()

    def digest(self, index: int) -> str | None:
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
    """Sequential reader over a plan from any offset; blocking, run it in a thread."""

    def __init__(self, plan: ArchivePlan, offset: int, hash_only: int | None = None) -> None:
        if not 0 <= offset <= plan.size:
            raise CorruptError(f"offset {offset} outside archive of {plan.size} bytes")
        self.plan = plan
        self.pos = offset
        self._fd: int | None = None
        self._fd_seg = -1
        self._hdr_seg = -1
        self._hdr = b""
        self._trailer: bytes | None = None
        self._hash_only = hash_only

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._fd_seg = -1

    def read(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` from the current position; b"" at the end."""
        out = bytearray()
        plan = self.plan
        while len(out) < max_bytes and self.pos < plan.size:
            idx = plan.segment_at(self.pos)
            seg = plan.segments[idx]
            off = self.pos - plan.starts[idx]
            want = min(max_bytes - len(out), seg.size - off)
            piece = self._produce(idx, seg, off, want)
            if seg.stream >= 0:
                plan._feed(self.pos, piece, seg.stream)
            out += piece
            self.pos += len(piece)
            if self._hash_only is not None and seg.stream != self._hash_only:
                break
        return bytes(out)

    def _produce(self, idx: int, seg: Segment, off: int, want: int) -> bytes:
        if isinstance(seg, BytesSegment):
            return seg.data[off : off + want]
        if isinstance(seg, FileSegment):
            return self._produce_file(idx, seg, off, want)
        if isinstance(seg, SpoolSegment):
            return self._produce_member(idx, seg.hdr, seg.content_size, seg.path, off, want)
        if isinstance(seg, TrailerSegment):
            if self._trailer is None:
                body = self.plan.trailer_bytes()
                self._trailer = seg.hdr + body + bytes(padding(len(body)))
            return self._trailer[off : off + want]
        raise AssertionError(type(seg))

    def _produce_member(
        self, idx: int, hdr: bytes, size: int, path: Path, off: int, want: int
    ) -> bytes:
        out = bytearray()
        if off < len(hdr):
            out += hdr[off : off + want]
            off += len(out)
        rel = off - len(hdr)
        if len(out) < want and rel < size:
            n = min(want - len(out), size - rel)
            out += self._read_content(idx, os.fsencode(path), rel, n, None, -1)
        if len(out) < want:
            out += bytes(want - len(out))
        return bytes(out)

    def _produce_file(self, idx: int, seg: FileSegment, off: int, want: int) -> bytes:
        out = bytearray()
        if off < seg.header_len:
            if self._hdr_seg != idx:
                self._hdr = seg.header()
                self._hdr_seg = idx
            out += self._hdr[off : off + want]
            off += len(out)
        rel = off - seg.header_len
        size = 0 if seg.record.is_dir else seg.record.size
        if len(out) < want and rel < size:
            n = min(want - len(out), size - rel)
            out += self._read_content(idx, seg.path, rel, n, seg.record, seg.stream)
        if len(out) < want:
            out += bytes(want - len(out))
        return bytes(out)

    def _read_content(
        self, idx: int, path: bytes, rel: int, n: int, record: FileRecord | None, stream: int
    ) -> bytes:
        """Planned bytes of a file: what it holds, padded/truncated to the planned size.

        A file whose size or mtime no longer match the plan (or that vanished) is
        still served at its planned size so every later offset stays valid, and its
        stream is flagged ``C`` in the trailer; restore refuses flagged streams.
        """
        if self._fd_seg != idx:
            self.close()
            try:
                self._fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                self._fd_seg = idx
                if record is not None:
                    st = os.fstat(self._fd)
                    if st.st_size != record.size or st.st_mtime_ns != record.mtime_ns:
                        self.plan._mark_changed(stream, record.path)
            except OSError as e:
                self._fd = None
                self._fd_seg = idx
                if record is not None:
                    self.plan._mark_changed(stream, record.path)
                elif e.errno != errno.ENOENT:
                    raise
        if self._fd is None:
            return bytes(n)
        data = os.pread(self._fd, n, rel)
        if len(data) < n:
            if record is not None:
                self.plan._mark_changed(stream, record.path)
            data += bytes(n - len(data))
        return data


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
        prefix = self._cur.member
        root = os.fsencode(root_dir)
        for r in records:
            path = os.path.join(root, os.fsencode(r.path.rstrip("/")))
            name = f"{prefix}/{r.path}"
            self._add(FileSegment(name, path, r, self._cur.index), 0 if r.is_dir else r.size)

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
            if isinstance(seg, FileSegment):
                copy = FileSegment(seg.name, seg.path, seg.record, st.index)
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
