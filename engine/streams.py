"""Chunk sources and sinks behind ``request_data`` / ``supply_data`` for passive data.

The passive data stream of one (owner, drive) is a sequence of pax tar members
(headers, content, padding) named relative to the private directory, with no
end-of-archive blocks: the same bytes the archive carries for that stream, minus
the ``owners/<SID>/<drive>/files/`` prefix. It can be cut at any byte and resumed.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

from .archive import ArchivePlan, FileSegment, PlanCursor, Segment
from .errors import CorruptError, OverflowEngineError, UnderflowError
from .filelist import FileRecord
from .restore import PassiveStage
from .snapshot import MAX_SNAPSHOT_BYTES, Snapshot
from .tarstream import MemberData, MemberEnd, MemberStart, TarParser


class PassiveSource:
    """Serves planned file members (or any segments) in chunks, off the event loop."""

    def __init__(self, segments: list[Segment]) -> None:
        self.plan = ArchivePlan("", segments, [], {})
        self.cursor = PlanCursor(self.plan, 0)

    @classmethod
    def for_files(cls, private_dir: Path, records: list[FileRecord]) -> PassiveSource:
        root = os.fsencode(private_dir)
        segs: list[Segment] = [
            FileSegment(r.path, os.path.join(root, os.fsencode(r.path.rstrip("/"))), r, -1)
            for r in records
        ]
        return cls(segs)

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
