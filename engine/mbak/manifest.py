"""The manifest of a ``.mbak`` archive: stream entries, member names, the digest trailer.

An archive is a pax tar; its first member is ``manifest.json`` (format, mode,
owners, one entry per data stream with its size), and its last is
``manifest-digests``, one fixed-width line per stream with the stream's SHA-256
and a flag saying whether the data changed while it was read.  A reader of an
untrusted archive checks every stream against both.

Streams belong to an *area*: ``owner`` (an owner's private data, under
``owners/<SID>/<drive>/``) or ``public`` (the public files of one drive, shared
by every owner that selects them, under ``public/<drive>/``; their SID is 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import CorruptError
from ..types import TransferType, format_sid, parse_sid

FORMAT = "mbak"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Version 2 added the public area; version 1 archives have none and read the same."""
MANIFEST_NAME = "manifest.json"
TRAILER_NAME = "manifest-digests"
TRAILER_LINE = 74  # "NNNNNN <64 hex> F\n"
MAX_MANIFEST_BYTES = 16 << 20
FLAG_OK = "-"
FLAG_CHANGED = "C"
OWNER_AREA = "owner"
PUBLIC_AREA = "public"
PUBLIC_TYPES = (
    TransferType.PASSIVE_SNAPSHOT,
    TransferType.PASSIVE_BASE,
    TransferType.PASSIVE_INCREMENTAL,
)
"""A public area is described like passive data: a snapshot and a file stream."""


def owner_prefix(sid: int, drive: str) -> str:
    return f"owners/{format_sid(sid)}/{drive}"


def public_prefix(drive: str) -> str:
    return f"public/{drive}"


def stream_member(sid: int, drive: str, ttype: TransferType, area: str = OWNER_AREA) -> str:
    """Member name of a stream; file streams are a directory of members instead."""
    base = public_prefix(drive) if area == PUBLIC_AREA else owner_prefix(sid, drive)
    if ttype in (TransferType.PASSIVE_BASE, TransferType.PASSIVE_INCREMENTAL):
        return f"{base}/files"
    return f"{base}/{ttype.slug}"


@dataclass
class StreamEntry:
    """One stream in the manifest, with where it lies in this archive."""

    index: int
    sid: int
    drive: str
    ttype: TransferType
    member: str
    size: int = 0
    entries: int = 0
    content_bytes: int = 0
    start: int = 0
    area: str = OWNER_AREA

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def public(self) -> bool:
        return self.area == PUBLIC_AREA

    @property
    def place(self) -> str:
        """Where the stream's data lives, for messages: ``0FA00001/c`` or ``public/c``."""
        return f"public/{self.drive}" if self.public else f"{format_sid(self.sid)}/{self.drive}"

    def to_manifest(self) -> dict[str, object]:
        out: dict[str, object] = {
            "index": self.index,
            "sid": format_sid(self.sid),
            "drive": self.drive,
            "type": self.ttype.slug,
            "member": self.member,
            "size": self.size,
            "entries": self.entries,
            "content_bytes": self.content_bytes,
        }
        if self.public:
            out["area"] = PUBLIC_AREA
        return out


def load_manifest(data: bytes) -> dict[str, object]:
    """Parse and sanity-check a manifest from an untrusted archive."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise CorruptError("manifest too large")
    try:
        m = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CorruptError(f"manifest is not valid JSON: {e}") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise CorruptError("not a backup archive manifest")
    if m.get("format_version") not in READABLE_VERSIONS:
        raise CorruptError(f"unsupported archive format version {m.get('format_version')!r}")
    if m.get("mode") not in ("base", "incremental"):
        raise CorruptError("manifest has no valid mode")
    if not isinstance(m.get("streams"), list) or not isinstance(m.get("owners"), list):
        raise CorruptError("manifest has no stream or owner list")
    return m


def parse_manifest_streams(m: dict[str, object]) -> list[StreamEntry]:

    out = []
    raw = m["streams"]
    assert isinstance(raw, list)
    slugs = {t.slug: t for t in TransferType}
    for i, s in enumerate(raw):
        try:
            if not isinstance(s, dict) or s.get("index") != i:
                raise ValueError("bad index")
            ttype = slugs[str(s["type"])]
            sid = parse_sid(str(s["sid"]))
            drive = str(s["drive"])
            if len(drive) != 1 or not drive.isalpha() or not drive.islower():
                raise ValueError("bad drive")
            area = s.get("area", OWNER_AREA)
            if area not in (OWNER_AREA, PUBLIC_AREA):
                raise ValueError(f"unknown area {str(area)[:40]!r}")
            if area == PUBLIC_AREA and (ttype not in PUBLIC_TYPES or sid != 0):
                raise ValueError("a public stream is passive data of SID 0")
            e = StreamEntry(i, sid, drive, ttype, stream_member(sid, drive, ttype, area))
            e.area = area
            if s.get("member") != e.member:
                raise ValueError("bad member name")
            for k in ("size", "entries", "content_bytes"):
                v = s.get(k)
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ValueError(f"bad {k}")
            e.size, e.entries, e.content_bytes = (
                int(s["size"]),
                int(s["entries"]),
                int(s["content_bytes"]),
            )
        except (KeyError, ValueError, Exception) as exc:
            raise CorruptError(f"manifest stream {i} is invalid: {exc}") from exc
        out.append(e)
    return out
