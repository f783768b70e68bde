"""Pax tar headers for the writer, and a resumable, hostile-input-safe tar parser.

Headers are the ones :mod:`tarfile` writes in ``PAX_FORMAT`` (ordinary POSIX pax
tar files), built directly for speed. The reader is a push parser instead of
``tarfile.open(mode='r|')``: restore data arrives in arbitrary chunks from a
socket, must be hashed byte for byte, and must be refused member by member (links,
devices, huge pax headers) before any of it touches the disk.
"""

from __future__ import annotations

import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import CorruptError, OverflowEngineError

BLOCK = 512
MAX_PAX_BYTES = 64 * 1024
MAX_NAME_BYTES = 4096
ZERO_BLOCK = bytes(BLOCK)


def padding(size: int) -> int:
    return (-size) % BLOCK


USTAR_SIZE_LIMIT = 8**11
"""Sizes and mtimes from here on do not fit a ustar field: they go in pax records."""
_PAX_NAME = b"././@PaxHeader"
_MAGIC = b"ustar\x0000"
_ZERO_ID = b"0000000\x00"
_BINARY_RECORD = b"21 hdrcharset=BINARY\n"


def _octal(value: int, digits: int) -> bytes:
    return b"%0*o\x00" % (digits - 1, value)


def _pax_record(key: bytes, value: bytes) -> bytes:
    """One ``"<len> key=value\\n"`` record; ``len`` counts its own digits."""
    body = len(key) + len(value) + 3
    n = p = 0
    while True:
        n = body + len(str(p))
        if n == p:
            break
        p = n
    return b"%d %s=%s\n" % (n, key, value)


def _ustar_block(name: bytes, mode: int, size: int, mtime: int, kind: bytes) -> bytes:
    """A ustar header block (uid/gid 0, no user names, no link, no prefix)."""
    head = b"".join(
        (
            name[:100].ljust(100, b"\x00"),
            _octal(mode & 0o7777, 8),
            _ZERO_ID,
            _ZERO_ID,
            _octal(size, 12),
            _octal(mtime, 12),
        )
    )
    tail = kind + bytes(100) + _MAGIC + bytes(32 + 32 + 8 + 8 + 155 + 12)
    # The checksum counts its own field as eight spaces (256).
    chksum = sum(head) + sum(tail) + 256
    return head + b"%06o\x00 " % chksum + tail


def _pax_records(name: bytes, size: int, mtime_ns: int, is_dir: bool) -> tuple[bytes, bytes]:
    """The member's pax records (b"" when ustar suffices) and its ustar name field.

    The rules are those of :mod:`tarfile` writing ``PAX_FORMAT`` with UTF-8 and
    ``surrogateescape``, byte for byte: a sub-second mtime first, then the path
    when it is not ASCII or longer than 100 characters, then a size or mtime too
    large for its octal field; a path that is not valid UTF-8 is stored as its raw
    bytes behind ``hdrcharset=BINARY``.
    """
    sec, frac = divmod(mtime_ns, 1_000_000_000)
    records = []
    if frac:
        records.append(_pax_record(b"mtime", b"%d.%09d" % (sec, frac)))
    if name.isascii():
        ustar_name = name
        if len(name) > 100:
            records.append(_pax_record(b"path", name))
        binary = False
    else:
        text = name.decode("utf-8", "surrogateescape")
        ustar_name = text.encode("ascii", "replace")
        records.append(_pax_record(b"path", name))
        try:
            name.decode("utf-8")
            binary = False
        except UnicodeDecodeError:
            binary = True
    if not 0 <= size < USTAR_SIZE_LIMIT:
        records.append(_pax_record(b"size", b"%d" % size))
    if not 0 <= sec < USTAR_SIZE_LIMIT and not frac:
        records.append(_pax_record(b"mtime", b"%d" % sec))
    if binary:
        records.insert(0, _BINARY_RECORD)
    return b"".join(records), ustar_name


def _dir_name(name: bytes, is_dir: bool) -> bytes:
    return name.rstrip(b"/") + b"/" if is_dir else name


def member_header_bytes(name: bytes, size: int, mtime_ns: int, mode: int, is_dir: bool) -> bytes:
    """Header bytes (pax extended header when needed, then ustar) for one member.

    ``name`` is the member name as bytes (UTF-8, undecodable bytes kept as they
    are on disk). Built directly rather than through :class:`tarfile.TarInfo`:
    a backup of many small files builds one header per file, on demand, and the
    bytes must be the same every time a reader asks for them.
    """
    name = _dir_name(name, is_dir)
    size = 0 if is_dir else size
    records, ustar_name = _pax_records(name, size, mtime_ns, is_dir)
    sec = mtime_ns // 1_000_000_000
    usize = size if size < USTAR_SIZE_LIMIT else 0
    umtime = sec if 0 <= sec < USTAR_SIZE_LIMIT else 0
    block = _ustar_block(ustar_name, mode, usize, umtime, b"5" if is_dir else b"0")
    if not records:
        return block
    pax = _ustar_block(_PAX_NAME, 0, len(records), 0, b"x")
    return pax + records + bytes(padding(len(records))) + block


def member_header_size(name: bytes, size: int, mtime_ns: int, is_dir: bool) -> int:
    """``len(member_header_bytes(...))`` without building the blocks (planning)."""
    name = _dir_name(name, is_dir)
    records, _ = _pax_records(name, 0 if is_dir else size, mtime_ns, is_dir)
    if not records:
        return BLOCK
    return 2 * BLOCK + len(records) + padding(len(records))


def member_header(name: str, size: int, mtime_ns: int, mode: int, is_dir: bool = False) -> bytes:
    """Header bytes for a member named by a ``str`` (see :func:`member_header_bytes`).

    Sub-second mtimes go into a pax ``mtime`` record with nanosecond digits so that
    a restore reproduces ``st_mtime_ns`` exactly. Owner and group are left out: the
    engine decides ownership on restore, never the archive.
    """
    return member_header_bytes(
        name.encode("utf-8", "surrogateescape"), size, mtime_ns, mode, is_dir
    )


def member_bytes_size(header: bytes, size: int) -> int:
    return len(header) + size + padding(size)


@dataclass
class MemberInfo:
    name: str
    size: int
    mtime_ns: int
    mode: int
    is_dir: bool
    header_bytes: bytes


@dataclass
class MemberStart:
    info: MemberInfo


@dataclass
class MemberData:
    data: bytes | memoryview


@dataclass
class MemberEnd:
    raw_padding: bytes


@dataclass
class ArchiveEnd:
    raw: bytes


Event = MemberStart | MemberData | MemberEnd | ArchiveEnd


def parse_pax_records(data: bytes) -> dict[str, str]:
    """Parse ``"%d key=value\\n"`` records strictly; anything odd is Corrupt."""
    out: dict[str, str] = {}
    pos = 0
    n = len(data)
    while pos < n:
        if data[pos] == 0:
            if any(data[pos:]):
                raise CorruptError("garbage after pax records")
            break
        sp = data.find(b" ", pos, min(n, pos + 12))
        if sp < 0:
            raise CorruptError("bad pax record length")
        try:
            length = int(data[pos:sp])
        except ValueError as e:
            raise CorruptError("bad pax record length") from e
        if length <= sp - pos + 1 or pos + length > n or data[pos + length - 1] != 0x0A:
            raise CorruptError("bad pax record")
        rec = data[sp + 1 : pos + length - 1]
        eq = rec.find(b"=")
        if eq <= 0:
            raise CorruptError("bad pax record")
        key = rec[:eq].decode("ascii", "strict") if rec[:eq].isascii() else ""
        if not key:
            raise CorruptError("bad pax key")
        out[key] = rec[eq + 1 :].decode("utf-8", "surrogateescape")
        pos += length
    return out


def _pax_mtime_ns(text: str) -> int:
    t = text.strip()
    neg = t.startswith("-")
    if neg:
        t = t[1:]
    sec, _, frac = t.partition(".")
    if not sec.isdigit() or (frac and not frac.isdigit()) or len(sec) > 15:
        raise CorruptError(f"bad pax mtime {text!r}")
    ns = int(sec) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
    return -ns if neg else ns


class TarParser:
    """Feed bytes in any chunking; get events. Refuses anything but files and dirs.

    Every byte fed comes back exactly once inside an event (header bytes, data,
    padding, end blocks), which lets the caller hash archive ranges precisely.
    """

    def __init__(self, max_member_size: int = 1 << 62) -> None:
        self._buf = bytearray()
        self._state = "header"
        self._need = BLOCK
        self._pending_raw = bytearray()
        self._pax: dict[str, str] = {}
        self._remaining = 0
        self._pad = 0
        self._max_member = max_member_size
        self._pax_size = 0
        self.ended = False
        self.offset = 0

    def feed(self, data: bytes | memoryview) -> Iterator[Event]:
        mv = memoryview(data)
        pos = 0
        n = len(mv)
        while pos < n:
            if self.ended:
                if any(mv[pos:]):
                    raise CorruptError("data after the end of the archive")
                self.offset += n - pos
                yield ArchiveEnd(bytes(mv[pos:]))
                return
            if self._state == "data":
                take = min(self._remaining, n - pos)
                chunk = mv[pos : pos + take]
                pos += take
                self._remaining -= take
                self.offset += take
                yield MemberData(chunk)
                if self._remaining == 0:
                    self._state = "pad"
                    self._need = self._pad
                    if self._need == 0:
                        self._state = "header"
                        self._need = BLOCK
                        yield MemberEnd(b"")
                continue
            take = min(self._need - len(self._buf), n - pos)
            self._buf += mv[pos : pos + take]
            pos += take
            self.offset += take
            if len(self._buf) < self._need:
                continue
            block = bytes(self._buf)
            self._buf.clear()
            yield from self._complete(block)

    def _complete(self, block: bytes) -> Iterator[Event]:
        st = self._state
        if st == "pad":
            if any(block):
                raise CorruptError("non-zero padding in archive")
            self._state = "header"
            self._need = BLOCK
            yield MemberEnd(block)
            return
        if st == "paxdata":
            self._pending_raw += block
            self._pax = parse_pax_records(block[: self._pax_size])
            self._state = "header"
            self._need = BLOCK
            return
        if st == "end2":
            if any(block):
                raise CorruptError("lone zero block inside archive")
            self.ended = True
            yield ArchiveEnd(bytes(self._pending_raw) + block)
            self._pending_raw.clear()
            return
        # a header block
        if block == ZERO_BLOCK:
            if self._pending_raw:
                raise CorruptError("pax header without a member")
            self._pending_raw += block
            self._state = "end2"
            self._need = BLOCK
            return
        try:
            ti = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as e:
            raise CorruptError(f"bad tar header at offset {self.offset - BLOCK}: {e}") from e
        if ti.type == tarfile.XHDTYPE:
            if self._pending_raw:
                raise CorruptError("two pax headers in a row")
            if ti.size > MAX_PAX_BYTES:
                raise OverflowEngineError("pax header too large")
            self._pending_raw += block
            self._pax_size = ti.size
            self._state = "paxdata"
            self._need = ti.size + padding(ti.size)
            if self._need == 0:
                self._pax = {}
                self._state = "header"
                self._need = BLOCK
            return
        raw = bytes(self._pending_raw) + block
        self._pending_raw.clear()
        pax, self._pax = self._pax, {}
        if ti.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
            is_dir = False
        elif ti.type == tarfile.DIRTYPE:
            is_dir = True
        else:
            kind = {
                tarfile.SYMTYPE: "symbolic link",
                tarfile.LNKTYPE: "hard link",
                tarfile.CHRTYPE: "character device",
                tarfile.BLKTYPE: "block device",
                tarfile.FIFOTYPE: "fifo",
                tarfile.XGLTYPE: "pax global header",
                tarfile.GNUTYPE_LONGNAME: "GNU long name",
                tarfile.GNUTYPE_LONGLINK: "GNU long link",
            }.get(ti.type, f"type {ti.type!r}")
            raise CorruptError(f"member {ti.name[:200]!r} is a {kind}: refused")
        name = pax.get("path", ti.name)
        if "linkpath" in pax:
            raise CorruptError(f"member {name[:200]!r} carries a link path: refused")
        size = ti.size
        if "size" in pax:
            if not pax["size"].isdigit() or len(pax["size"]) > 19:
                raise CorruptError("bad pax size")
            size = int(pax["size"])
        if is_dir:
            if size:
                raise CorruptError(f"directory {name[:200]!r} has a size")
        if size > self._max_member:
            raise OverflowEngineError(f"member {name[:200]!r} too large")
        if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise OverflowEngineError("member name too long")
        mtime_ns = _pax_mtime_ns(pax["mtime"]) if "mtime" in pax else int(ti.mtime) * 10**9
        mode = stat.S_IMODE(ti.mode)
        info = MemberInfo(name, size, mtime_ns, mode, is_dir, raw)
        yield MemberStart(info)
        self._remaining = size
        self._pad = padding(size)
        if size:
            self._state = "data"
        elif self._pad:
            self._state, self._need = "pad", self._pad
        else:
            self._state, self._need = "header", BLOCK
            yield MemberEnd(b"")

    def at_boundary(self) -> bool:
        """True between members (a passive stream may end there)."""
        return self._state == "header" and not self._buf and not self._pending_raw

    def finish(self) -> None:
        """Call at end of input: anything short of two zero blocks is a truncation."""
        if not self.ended:
            raise CorruptError("archive is truncated")
