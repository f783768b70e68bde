"""Chunk sources and sinks behind ``request_data`` / ``supply_data`` for passive data.

The passive data stream of one (owner, drive) is a sequence of pax tar members
(headers, content, padding) named relative to the private directory, with no
end-of-archive blocks: the same bytes the archive carries for that stream, minus
the ``owners/<SID>/<drive>/files/`` prefix. It can be cut at any byte and resumed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import trio

from ..errors import CorruptError, OverflowEngineError, UnderflowError
from ..mbak.manifest import StreamEntry
from ..mbak.snapshot import MAX_SNAPSHOT_BYTES, FileRecord, Snapshot
from ..mbak.tar import MemberData, MemberEnd, MemberInfo, MemberStart, TarParser
from ..types import TransferType, format_sid
from .archive import ArchivePlan, FileRun, PlanCursor, Segment, file_layout
from .restore import PassiveStage


class PassiveSource:
    """Serves planned file members (or any segments) in chunks, off the event loop."""

    def __init__(self, segments: list[Segment]) -> None:
        self.plan = ArchivePlan("", segments, [], {})
        self.cursor = PlanCursor(self.plan, 0)

    @classmethod
    def for_files(cls, private_dir: Path, records: list[FileRecord]) -> PassiveSource:
        layout = file_layout(os.fsencode(private_dir), records, b"")
        return cls([FileRun(layout, -1)] if len(layout.table) else [])

    @property
    def finished(self) -> bool:
        return self.cursor.pos >= self.plan.size

    async def read(self, max_bytes: int) -> bytes:
        return await trio.to_thread.run_sync(self.cursor.read, max_bytes)

    async def aclose(self) -> None:
        self.cursor.close()


class FileSource:
    """Serves a spooled file (snapshots)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = os.path.getsize(path)
        self.pos = 0

    @property
    def finished(self) -> bool:
        return self.pos >= self.size

    async def read(self, max_bytes: int) -> bytes:
        def rd() -> bytes:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                return f.read(max_bytes)

        data = await trio.to_thread.run_sync(rd)
        self.pos += len(data)
        return data

    async def aclose(self) -> None:
        pass


class SpoolSink:
    """Collects a bounded stream into a file (snapshots supplied by a client)."""

    def __init__(self, path: Path, limit: int = MAX_SNAPSHOT_BYTES) -> None:
        self.path = path
        self.limit = limit
        self.size = 0
        self._f = open(path, "wb")

    async def write(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise OverflowEngineError("snapshot too large")
        await trio.to_thread.run_sync(self._f.write, data)

    async def finish(self) -> None:
        self._f.close()

    async def abort(self) -> None:
        self._f.close()
        self.path.unlink(missing_ok=True)


class PassiveDataSink:
    """Parses a supplied passive stream and writes it into a restore stage."""

    def __init__(self, stage: PassiveStage) -> None:
        self.stage = stage
        self.parser = TarParser()
        self._skip = False

    def _feed(self, data: bytes | memoryview) -> None:
        for ev in self.parser.feed(data):
            if isinstance(ev, MemberStart):
                i = ev.info
                self._skip = not self.stage.begin(i.name, i.size, i.mtime_ns, i.mode, i.is_dir)
            elif isinstance(ev, MemberData):
                if not self._skip:
                    self.stage.write(ev.data)
            elif isinstance(ev, MemberEnd):
                if not self._skip:
                    self.stage.end()
                self._skip = False

    async def write(self, data: bytes | memoryview) -> None:
        await trio.to_thread.run_sync(self._feed, data)

    async def finish(self) -> None:
        if not (self.parser.ended or self.parser.at_boundary()):
            raise UnderflowError("passive data ends in the middle of a file")

    async def abort(self) -> None:
        pass


def load_snapshot_file(path: Path) -> Snapshot:
    try:
        return Snapshot.from_file(path)
    except OSError as e:
        raise CorruptError(f"cannot read snapshot: {e}") from e


class SnapshotCollector:
    """Keeps only the snapshot streams of an archive (the input of an incremental)."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool
        self.files: dict[tuple[int, str, TransferType], Path] = {}
        self.public: dict[str, Path] = {}
        """The public snapshot of each drive, apart: it belongs to no owner."""
        self.manifest: dict[str, object] = {}
        self._f: object = None

    def on_manifest(self, manifest: dict[str, object], streams: list[StreamEntry]) -> None:
        self.manifest = manifest

    def begin_member(self, entry: StreamEntry, rel: str | None, info: MemberInfo) -> bool:
        if not entry.ttype.is_snapshot:
            return False
        if entry.public:
            p = self.spool / f"public-{entry.drive}-{entry.ttype.slug}"
            self.public[entry.drive] = p
        else:
            p = self.spool / f"{format_sid(entry.sid)}-{entry.drive}-{entry.ttype.slug}"
            self.files[(entry.sid, entry.drive, entry.ttype)] = p
        self._f = open(p, "wb")
        return True

    def data(self, entry: StreamEntry, data: bytes | memoryview) -> None:
        self._f.write(data)  # type: ignore[attr-defined]

    def end_member(self, entry: StreamEntry) -> None:
        self._f.close()  # type: ignore[attr-defined]
        self._f = None

    def end_stream(self, entry: StreamEntry) -> None:
        pass

    def cleanup(self) -> None:
        if self._f is not None:
            self._f.close()  # type: ignore[attr-defined]
        shutil.rmtree(self.spool, ignore_errors=True)
