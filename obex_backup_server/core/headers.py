"""OBEX headers: parse and build each of the four encodings.

A header is an identifier byte whose top two bits say how its value follows:

- ``00`` text: a u16 length (the whole header, its 3-byte prefix included),
  then UTF-16BE with a terminating NUL; an empty text (an empty Name: "the
  root", "no name") is the bare 3-byte prefix;
- ``01`` bytes: a u16 length, then the bytes;
- ``10`` one byte;
- ``11`` four bytes, big-endian.

Everything here reads hostile input: a length shorter than its prefix or past
the end of the packet, an odd UTF-16 length, text without its NUL or with one
inside, text that is not UTF-16, all raise :class:`RemoteProtocolError`
(answered Bad Request) naming the header, never an IndexError.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from .codes import HeaderEncoding, HeaderId
from .errors import LocalProtocolError, RemoteProtocolError

HeaderValue = str | bytes | int

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_PREFIX = 3
_MAX_LENGTH = 0xFFFF


@dataclass(frozen=True, slots=True)
class Header:
    """One header: its identifier and its value (``str``, ``bytes`` or ``int``)."""

    id: int
    value: HeaderValue

    @property
    def encoding(self) -> HeaderEncoding:
        return HeaderEncoding.of(self.id)


def header_name(header_id: int) -> str:
    """A readable name for a header identifier, known or not."""
    try:
        return HeaderId(header_id).name
    except ValueError:
        return f"0x{header_id:02X}"


# -- parsing ------------------------------------------------------------------


def parse_headers(data: bytes | memoryview) -> tuple[Header, ...]:
    """Every header in ``data`` (the part of a packet after its fixed fields)."""
    view = memoryview(data)
    headers: list[Header] = []
    offset = 0
    while offset < len(view):
        header, offset = _parse_one(view, offset)
        headers.append(header)
    return tuple(headers)


def _parse_one(view: memoryview, offset: int) -> tuple[Header, int]:
    header_id = view[offset]
    name = header_name(header_id)
    encoding = HeaderEncoding.of(header_id)
    left = len(view) - offset
    if encoding is HeaderEncoding.BYTE:
        if left < 2:
            raise RemoteProtocolError(f"header {name} is cut off: its byte is missing")
        return Header(header_id, view[offset + 1]), offset + 2
    if encoding is HeaderEncoding.FOUR_BYTES:
        if left < 5:
            raise RemoteProtocolError(f"header {name} is cut off: {left - 1} of its 4 bytes")
        return Header(header_id, _U32.unpack_from(view, offset + 1)[0]), offset + 5
    if left < _PREFIX:
        raise RemoteProtocolError(f"header {name} is cut off inside its length")
    (length,) = _U16.unpack_from(view, offset + 1)
    if length < _PREFIX:
        raise RemoteProtocolError(f"header {name} has length {length}, less than its 3-byte prefix")
    if length > left:
        raise RemoteProtocolError(
            f"header {name} has length {length}, past the end of the packet ({left} bytes left)"
        )
    content = bytes(view[offset + _PREFIX : offset + length])
    end = offset + length
    if encoding is HeaderEncoding.BYTES:
        return Header(header_id, content), end
    return Header(header_id, _decode_text(name, content)), end


def _decode_text(name: str, content: bytes) -> str:
    if not content:
        return ""
    if len(content) % 2:
        raise RemoteProtocolError(f"header {name} has an odd UTF-16 length ({len(content)} bytes)")
    if content[-2:] != b"\0\0":
        raise RemoteProtocolError(f"header {name} lacks its terminating NUL")
    try:
        text = content[:-2].decode("utf-16-be")
    except UnicodeDecodeError as e:
        raise RemoteProtocolError(f"header {name} is not valid UTF-16: {e.reason}") from None
    if "\0" in text:
        raise RemoteProtocolError(f"header {name} has a NUL inside its text")
    return text


# -- building -----------------------------------------------------------------


def build_header(header: Header) -> bytes:
    """The bytes of ``header``; LocalProtocolError if its value cannot be encoded."""
    header_id, value = header.id, header.value
    name = header_name(header_id)
    if not 0 <= header_id <= 0xFF:
        raise LocalProtocolError(f"header identifier {header_id} is not a byte")
    encoding = HeaderEncoding.of(header_id)
    if encoding is HeaderEncoding.BYTE:
        if not isinstance(value, int) or not 0 <= value <= 0xFF:
            raise LocalProtocolError(f"header {name} takes one byte, not {value!r}")
        return bytes((header_id, value))
    if encoding is HeaderEncoding.FOUR_BYTES:
        if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
            raise LocalProtocolError(f"header {name} takes a 32-bit number, not {value!r}")
        return bytes((header_id,)) + _U32.pack(value)
    if encoding is HeaderEncoding.BYTES:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise LocalProtocolError(f"header {name} takes bytes, not {type(value).__name__}")
        content = bytes(value)
    else:
        if not isinstance(value, str):
            raise LocalProtocolError(f"header {name} takes text, not {type(value).__name__}")
        if "\0" in value:
            raise LocalProtocolError(f"header {name} cannot carry a NUL")
        try:
            content = value.encode("utf-16-be") + b"\0\0" if value else b""
        except UnicodeEncodeError:
            raise LocalProtocolError(f"header {name} is not encodable as UTF-16") from None
    length = _PREFIX + len(content)
    if length > _MAX_LENGTH:
        raise LocalProtocolError(f"header {name} is {length} bytes, more than 65535")
    return bytes((header_id,)) + _U16.pack(length) + content


def build_headers(headers: Iterable[Header]) -> bytes:
    return b"".join(build_header(h) for h in headers)


def body_header(data: bytes, *, end: bool) -> bytes:
    """A Body (End-of-Body) header around ``data``, without copying it twice."""
    header_id = HeaderId.END_OF_BODY if end else HeaderId.BODY
    return bytes((header_id,)) + _U16.pack(_PREFIX + len(data)) + data


BODY_OVERHEAD = _PREFIX
"""Bytes a Body or End-of-Body header adds to its data."""


# -- reading values -----------------------------------------------------------


def find(headers: Iterable[Header], header_id: int) -> Header | None:
    """The first header with ``header_id``, or None."""
    for header in headers:
        if header.id == header_id:
            return header
    return None


def text(headers: Iterable[Header], header_id: int) -> str | None:
    """The text of a Unicode header (Name, Description), or None when absent."""
    header = find(headers, header_id)
    if header is None:
        return None
    assert isinstance(header.value, str)
    return header.value


def ascii_text(headers: Iterable[Header], header_id: int) -> str | None:
    """The NUL-terminated ASCII text of a byte-sequence header (Type, Time)."""
    header = find(headers, header_id)
    if header is None:
        return None
    assert isinstance(header.value, bytes)
    raw = header.value[:-1] if header.value.endswith(b"\0") else header.value
    try:
        value = raw.decode("ascii")
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"header {header_name(header_id)} is not ASCII text") from None
    if "\0" in value:
        raise RemoteProtocolError(f"header {header_name(header_id)} has a NUL inside its text")
    return value


def number(headers: Iterable[Header], header_id: int) -> int | None:
    """The value of a one- or four-byte header, or None when absent."""
    header = find(headers, header_id)
    if header is None:
        return None
    assert isinstance(header.value, int)
    return header.value
