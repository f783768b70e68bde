"""Reading an untrusted ``.mbak`` stream: structure, sizes and digests are checked.

The ingest is a push parser: feed it chunks as they arrive (from a socket or a
file) and it routes each member to a handler, hashing every stream's archive bytes
on the way. Nothing is trusted until :meth:`ArchiveIngest.finish` has compared all
sizes with the manifest and all digests with the trailer; handlers stage data and
only commit after that.

What the format alone decides is refused here, before a handler sees a member:
a stream list a restore could not apply whole (:mod:`.contents`), and a member
that appears twice (the second copy would silently replace the first, against
the archive's own file list).
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from ..errors import CorruptError, OverflowEngineError
from ..types import TransferType
from .contents import check_contents
from .manifest import (
    FLAG_CHANGED,
    FLAG_OK,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    TRAILER_LINE,
    TRAILER_NAME,
    StreamEntry,
    load_manifest,
    parse_manifest_streams,
)
from .snapshot import MAX_SNAPSHOT_BYTES
from .tar import ArchiveEnd, MemberData, MemberEnd, MemberInfo, MemberStart, TarParser


class IngestHandler(Protocol):
    def on_manifest(self, manifest: dict[str, object], streams: list[StreamEntry]) -> None: ...

    def begin_member(self, entry: StreamEntry, rel: str | None, info: MemberInfo) -> bool: ...

    def data(self, entry: StreamEntry, data: bytes | memoryview) -> None: ...

    def end_member(self, entry: StreamEntry) -> None: ...

    def end_stream(self, entry: StreamEntry) -> None: ...


def _is_files(e: StreamEntry) -> bool:
    return e.ttype in (TransferType.PASSIVE_BASE, TransferType.PASSIVE_INCREMENTAL)


class ArchiveIngest:
    def __init__(self, handler: IngestHandler) -> None:
        self.handler = handler
        self.parser = TarParser()
        self.manifest: dict[str, object] | None = None
        self.streams: list[StreamEntry] = []
        self._mbuf = bytearray()
        self._state = "manifest"
        self._idx = -1
        self._consumed: list[int] = []
        self._entries: list[int] = []
        self._content: list[int] = []
        self._hashers: list[hashlib._Hash] = []
        self._accept = False
        self._trailer = bytearray()
        self._names: set[str] = set()
        self._names_of = -1
        self.changed: list[int] = []
        self.verified = False
        self.bytes_in = 0

    # -- helpers
    def _hash(self, raw: bytes | memoryview) -> None:
        if self._state == "stream" and raw:
            i = self._idx
            self._consumed[i] += len(raw)
            if self._consumed[i] > self.streams[i].size:
                raise CorruptError(f"stream {self._describe(i)} is larger than its manifest size")
            self._hashers[i].update(raw)

    def _describe(self, i: int) -> str:
        e = self.streams[i]
        return f"{i} ({e.place}/{e.ttype.slug})"

    def _close_stream(self) -> None:
        if self._state == "stream" and self._idx >= 0:
            i = self._idx
            e = self.streams[i]
            if (
                self._consumed[i] != e.size
                or self._entries[i] != e.entries
                or self._content[i] != e.content_bytes
            ):
                raise CorruptError(f"stream {self._describe(i)} does not match the manifest sizes")
            self.handler.end_stream(e)

    def _select_stream(self, name: str) -> tuple[StreamEntry, str | None]:
        i = self._idx
        if i >= 0:
            e = self.streams[i]
            if _is_files(e) and name.startswith(e.member + "/") and name != e.member + "/":
                return e, name[len(e.member) + 1 :]
            if not _is_files(e) and name == e.member:
                raise CorruptError(f"member {name[:200]!r} appears twice in the archive")
        self._close_stream()
        j = i + 1
        while j < len(self.streams):
            e = self.streams[j]
            if _is_files(e) and name.startswith(e.member + "/") and name != e.member + "/":
                rel: str | None = name[len(e.member) + 1 :]
            elif not _is_files(e) and name == e.member:
                rel = None
            else:
                if e.size != 0:
                    raise CorruptError(f"unexpected member {name[:200]!r} (stream {j} missing)")
                self._state = "stream"
                self._idx = j
                self._close_stream()
                j += 1
                continue
            self._idx = j
            self._state = "stream"
            return e, rel
        raise CorruptError(f"member {name[:200]!r} is not in the manifest")

    # -- feeding
    def feed(self, data: bytes | memoryview) -> None:
        self.bytes_in += len(data)
        for ev in self.parser.feed(data):
            if isinstance(ev, MemberStart):
                self._start(ev.info)
            elif isinstance(ev, MemberData):
                self._data(ev.data)
            elif isinstance(ev, MemberEnd):
                self._end(ev.raw_padding)
            elif isinstance(ev, ArchiveEnd):
                if self._state != "done":
                    raise CorruptError("archive ends before its digest trailer")

    def _start(self, info: MemberInfo) -> None:
        if self._state == "manifest":
            if info.name != MANIFEST_NAME or info.is_dir:
                raise CorruptError("the first member must be manifest.json")
            if info.size > MAX_MANIFEST_BYTES:
                raise OverflowEngineError("manifest too large")
            self._state = "manifest-data"
            return
        if self._state == "done":
            raise CorruptError("member after the digest trailer")
        if info.name == TRAILER_NAME:
            self._close_stream()
            for j in range(self._idx + 1, len(self.streams)):
                if self.streams[j].size:
                    raise CorruptError(f"stream {self._describe(j)} is missing")
                self.handler.end_stream(self.streams[j])
            if info.size != TRAILER_LINE * len(self.streams):
                raise CorruptError("digest trailer has the wrong size")
            self._state = "trailer"
            return
        name = info.name + ("/" if info.is_dir and not info.name.endswith("/") else "")
        e, rel = self._select_stream(name)
        if rel is not None:
            self._check_unique(e, name, rel)
        self._hash(info.header_bytes)
        self._entries[e.index] += 1
        self._content[e.index] += info.size
        if rel is None:
            if info.is_dir:
                raise CorruptError(f"{name[:200]!r} must be a file")
            limit = MAX_SNAPSHOT_BYTES if e.ttype.is_snapshot else 1 << 50
            if info.size > limit:
                raise OverflowEngineError(f"{name[:200]!r} too large")
        self._accept = self.handler.begin_member(e, rel, info)

    def _check_unique(self, e: StreamEntry, name: str, rel: str) -> None:
        """One member per path in a file stream ("x" and "x/" are the same path)."""
        if self._names_of != e.index:
            self._names.clear()
            self._names_of = e.index
        key = rel.rstrip("/")
        if key in self._names:
            raise CorruptError(f"member {name[:200]!r} appears twice in the archive")
        self._names.add(key)

    def _data(self, data: bytes | memoryview) -> None:
        if self._state == "manifest-data":
            self._mbuf += data
            return
        if self._state == "trailer":
            self._trailer += data
            return
        self._hash(data)
        if self._accept:
            self.handler.data(self.streams[self._idx], data)

    def _end(self, pad: bytes) -> None:
        if self._state == "manifest-data":
            self.manifest = load_manifest(bytes(self._mbuf))
            self._mbuf.clear()
            self.streams = parse_manifest_streams(self.manifest)
            check_contents(self.manifest.get("mode"), self.manifest.get("kind"), self.streams)
            n = len(self.streams)
            self._consumed = [0] * n
            self._entries = [0] * n
            self._content = [0] * n
            self._hashers = [hashlib.sha256() for _ in range(n)]
            self._state = "stream" if n else "streams-none"
            self._idx = -1
            self.handler.on_manifest(self.manifest, self.streams)
            self._state = "between"
            return
        if self._state == "trailer":
            self._check_trailer(bytes(self._trailer))
            self._state = "done"
            return
        self._hash(pad)
        if self._accept:
            self.handler.end_member(self.streams[self._idx])
        self._accept = False

    def _check_trailer(self, data: bytes) -> None:
        for i in range(len(self.streams)):
            line = data[i * TRAILER_LINE : (i + 1) * TRAILER_LINE]
            try:
                idx, hexd, flag = line.decode("ascii").rstrip("\n").split(" ")
            except (UnicodeDecodeError, ValueError) as e:
                raise CorruptError("malformed digest trailer") from e
            if int(idx) != i or flag not in (FLAG_OK, FLAG_CHANGED):
                raise CorruptError("malformed digest trailer")
            if hexd != self._hashers[i].hexdigest():
                raise CorruptError(f"stream {self._describe(i)} does not match its SHA-256 digest")
            if flag == FLAG_CHANGED:
                self.changed.append(i)
        self.verified = True

    def finish(self) -> None:
        self.parser.finish()
        if not self.verified:
            raise CorruptError("archive has no digest trailer")
