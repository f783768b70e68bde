"""Passive snapshots: the complete file list of one (owner, drive) at backup time.

Portable binary format (all integers little-endian)::

    magic   8 bytes  b"MBSNAP\\x01\\n"
    record  repeated until end of data:
        u16 path length, i64 mtime (ns since the Unix epoch), u64 size, u32 mode,
        path bytes (relative to the private directory, '/'-separated, directories
        end in '/', bytes as on disk — normally UTF-8)

A snapshot is what the next incremental backup is compared with, and, on restore,
the authoritative list of what should exist: in-scope files not in it are deleted
so that base + increments give exactly the latest state.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from ..errors import CorruptError

MAGIC = b"MBSNAP\x01\n"
RECORD = struct.Struct("<HqQI")
MAX_SNAPSHOT_BYTES = 1 << 30


class FileRecord(NamedTuple):
    """One passive entry; ``path`` is relative to the private directory, dirs end in '/'."""

    path: str
    size: int
    mtime_ns: int
    mode: int

    @property
    def is_dir(self) -> bool:
        return self.path.endswith("/")


def _enc(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def snapshot_size(records: Iterable[FileRecord]) -> int:
    return len(MAGIC) + sum(RECORD.size + len(_enc(r.path)) for r in records)


def write_snapshot(f: BinaryIO, records: Iterable[FileRecord]) -> int:
    """Write a snapshot; returns the number of bytes written."""
    n = f.write(MAGIC)
    parts: list[bytes] = []
    pack = RECORD.pack
    pending = 0
    for r in records:
        p = _enc(r.path)
        if len(p) > 0xFFFF:
            raise CorruptError(f"path too long for a snapshot: {r.path[:80]}...")
        parts.append(pack(len(p), r.mtime_ns, r.size, r.mode))
        parts.append(p)
        pending += len(p)
        if pending >= 1 << 16:
            n += f.write(b"".join(parts))
            parts.clear()
            pending = 0
    n += f.write(b"".join(parts))
    return n


def _check(data: bytes) -> int:
    """Walk the record structure (not the names); returns the number of records."""
    if data[: len(MAGIC)] != MAGIC:
        raise CorruptError("not a passive snapshot (bad magic)")
    pos = len(MAGIC)
    end = len(data)
    rs = RECORD.size
    count = 0
    while pos < end:
        if end - pos < rs:
            raise CorruptError("truncated snapshot record")
        ln = data[pos] | data[pos + 1] << 8
        pos += rs
        if ln == 0 or end - pos < ln:
            raise CorruptError("bad path length in snapshot")
        pos += ln
        count += 1
    return count


def iter_snapshot(data: bytes | memoryview) -> Iterator[FileRecord]:
    """Decode a snapshot held in memory (snapshots are small: ~50 bytes a file)."""
    mv = memoryview(data)
    if bytes(mv[: len(MAGIC)]) != MAGIC:
        raise CorruptError("not a passive snapshot (bad magic)")
    pos = len(MAGIC)
    end = len(mv)
    unpack = RECORD.unpack_from
    rs = RECORD.size
    while pos < end:
        if end - pos < rs:
            raise CorruptError("truncated snapshot record")
        ln, mtime, size, mode = unpack(mv, pos)
        pos += rs
        if ln == 0 or end - pos < ln:
            raise CorruptError("bad path length in snapshot")
        path = bytes(mv[pos : pos + ln]).decode("utf-8", "surrogateescape")
        pos += ln
        yield FileRecord(path, size, mtime, mode)


class Snapshot:
    """A snapshot, compared with a new listing for an incremental backup.

    A snapshot read from its bytes keeps those bytes and nothing else until a
    caller asks for entries by path: comparing an unchanged listing, in the
    order both were written, is a run of byte comparisons with no object per
    file (an incremental scan of a large tree that changed little).
    """

    def __init__(self, records: Iterable[FileRecord] = ()) -> None:
        self._raw = b""
        self._count = 0
        self._entries: dict[str, FileRecord] | None = {r.path: r for r in records}
        self._ends: dict[str, int] | None = None

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> Snapshot:
        raw = bytes(data)
        count = _check(raw)
        snap = cls()
        snap._raw = raw
        snap._count = count
        snap._entries = None
        return snap

    @classmethod
    def from_file(cls, path: Path) -> Snapshot:
        size = os.path.getsize(path)
        if size > MAX_SNAPSHOT_BYTES:
            raise CorruptError("snapshot too large")
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    @property
    def entries(self) -> dict[str, FileRecord]:
        """Every entry by path (decoded on first use)."""
        if self._entries is None:
            self._entries = {r.path: r for r in iter_snapshot(self._raw)}
        return self._entries

    def __contains__(self, path: str) -> bool:
        return path in self.entries

    def __len__(self) -> int:
        return self._count if self._entries is None else len(self._entries)

    def changed(self, records: Iterable[FileRecord]) -> list[FileRecord]:
        """Entries new since the snapshot or whose mtime, size or mode differ.

        Not only files whose mtime is newer: a file put back from an older copy has
        an older mtime and would be missed, so any difference counts.  A chmod
        leaves mtime alone, and base + increments must give the latest state, modes
        included (engine/README.md, Passive data).
        """
        raw = self._raw
        end = len(raw)
        pos = len(MAGIC) if raw else end
        pack = RECORD.pack
        enc = str.encode
        out = []
        for r in records:
            if pos < end:
                # The next old record, byte for byte: same path and same stat.
                path, size, mtime_ns, mode = r
                p = enc(path, "utf-8", "surrogateescape")
                try:
                    rec = pack(len(p), mtime_ns, size, mode) + p
                except struct.error:
                    rec = b""
                if rec and raw.startswith(rec, pos):
                    pos += len(rec)
                    continue
            old = self.entries.get(r.path)
            if (
                old is None
                or old.mtime_ns != r.mtime_ns
                or old.size != r.size
                or old.mode != r.mode
            ):
                out.append(r)
            elif raw:
                pos = self._after(r.path, pos)
        return out

    def _after(self, path: str, pos: int) -> int:
        """Where the old record after ``path`` starts, to go on comparing in order."""
        if self._ends is None:
            ends: dict[str, int] = {}
            at = len(MAGIC)
            raw = self._raw
            while at < len(raw):
                ln = raw[at] | raw[at + 1] << 8
                at += RECORD.size + ln
                ends[raw[at - ln : at].decode("utf-8", "surrogateescape")] = at
            self._ends = ends
        return self._ends.get(path, pos)
