"""OBEX packets: an operation (or response) code, a u16 length, fields, headers.

Every packet starts with one code byte and a big-endian u16 that counts the
whole packet.  Two requests carry fixed fields before their headers: CONNECT
(version, flags, maximum packet length; its response carries the same three)
and SETPATH (flags, constants).  These functions build and parse single,
complete packets for both roles; :mod:`.connection` cuts a byte stream into
them.  Parsing raises :class:`RemoteProtocolError` (Bad Request), never an
IndexError.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from .codes import FINAL, MAX_PACKET_LENGTH, OBEX_VERSION, Opcode, SetPathFlag
from .errors import LocalProtocolError, RemoteProtocolError
from .headers import Header, build_headers, parse_headers

PREFIX = struct.Struct(">BH")
"""Code and length: the 3 bytes that start every packet."""
CONNECT_FIELDS = struct.Struct(">BBH")
"""Version, flags, maximum packet length: after the prefix of CONNECT and its response."""
SETPATH_FIELDS = struct.Struct(">BB")
"""Flags, constants: after the prefix of SETPATH."""


@dataclass(frozen=True, slots=True)
class ConnectFields:
    version: int = OBEX_VERSION
    flags: int = 0
    max_packet_length: int = MAX_PACKET_LENGTH


@dataclass(frozen=True, slots=True)
class SetPathFields:
    flags: int = 0
    constants: int = 0

    @property
    def up(self) -> bool:
        return bool(self.flags & SetPathFlag.UP)

    @property
    def create(self) -> bool:
        return not self.flags & SetPathFlag.DONT_CREATE


@dataclass(frozen=True, slots=True)
class Request:
    """One request packet as it came off the wire."""

    opcode: int
    headers: tuple[Header, ...]
    connect: ConnectFields | None = None
    setpath: SetPathFields | None = None

    @property
    def final(self) -> bool:
        return bool(self.opcode & FINAL)


@dataclass(frozen=True, slots=True)
class ResponsePacket:
    """One response packet as it came off the wire."""

    code: int
    headers: tuple[Header, ...]
    connect: ConnectFields | None = None


def fixed_length(opcode: int) -> int:
    """Bytes of fixed fields after the 3-byte prefix of a request with ``opcode``."""
    if opcode == Opcode.CONNECT:
        return CONNECT_FIELDS.size
    if opcode == Opcode.SETPATH:
        return SETPATH_FIELDS.size
    return 0


def _packet(code: int, fields: bytes, headers: bytes | Iterable[Header]) -> bytes:
    body = headers if isinstance(headers, bytes) else build_headers(headers)
    length = PREFIX.size + len(fields) + len(body)
    if length > MAX_PACKET_LENGTH:
        raise LocalProtocolError(f"packet would be {length} bytes, more than 65535")
    return PREFIX.pack(code, length) + fields + body


def build_request(
    opcode: int,
    headers: bytes | Iterable[Header] = (),
    *,
    connect: ConnectFields | None = None,
    setpath: SetPathFields | None = None,
) -> bytes:
    """A request packet; CONNECT and SETPATH get their fixed fields (defaults if not given)."""
    fields = b""
    if opcode == Opcode.CONNECT:
        c = connect or ConnectFields()
        fields = CONNECT_FIELDS.pack(c.version, c.flags, c.max_packet_length)
    elif opcode == Opcode.SETPATH:
        s = setpath or SetPathFields()
        fields = SETPATH_FIELDS.pack(s.flags, s.constants)
    return _packet(opcode, fields, headers)


def build_response(
    code: int, headers: bytes | Iterable[Header] = (), *, connect: ConnectFields | None = None
) -> bytes:
    """A response packet; the answer to CONNECT carries ``connect`` fields."""
    fields = b""
    if connect is not None:
        fields = CONNECT_FIELDS.pack(connect.version, connect.flags, connect.max_packet_length)
    return _packet(code, fields, headers)


def _check_length(data: bytes | memoryview, what: str) -> int:
    if len(data) < PREFIX.size:
        raise RemoteProtocolError(f"{what} of {len(data)} bytes is shorter than its 3-byte prefix")
    code, length = PREFIX.unpack_from(data)
    if length != len(data):
        raise RemoteProtocolError(f"{what} says {length} bytes but has {len(data)}")
    return int(code)


def parse_request(data: bytes | memoryview) -> Request:
    """One complete request packet."""
    opcode = _check_length(data, "request packet")
    extra = fixed_length(opcode)
    if len(data) < PREFIX.size + extra:
        name = Opcode(opcode).name
        raise RemoteProtocolError(
            f"{name} packet of {len(data)} bytes is shorter than its "
            f"{PREFIX.size + extra} bytes of fixed fields"
        )
    connect = setpath = None
    if opcode == Opcode.CONNECT:
        connect = ConnectFields(*CONNECT_FIELDS.unpack_from(data, PREFIX.size))
    elif opcode == Opcode.SETPATH:
        setpath = SetPathFields(*SETPATH_FIELDS.unpack_from(data, PREFIX.size))
    headers = parse_headers(memoryview(data)[PREFIX.size + extra :])
    return Request(opcode, headers, connect, setpath)


def parse_response(data: bytes | memoryview, *, to_connect: bool = False) -> ResponsePacket:
    """One complete response packet; ``to_connect``: it answers a CONNECT."""
    code = _check_length(data, "response packet")
    if not code & FINAL:
        raise RemoteProtocolError(f"response code 0x{code:02X} lacks the final bit")
    connect = None
    start = PREFIX.size
    if to_connect:
        if len(data) < PREFIX.size + CONNECT_FIELDS.size:
            raise RemoteProtocolError(
                f"CONNECT response of {len(data)} bytes lacks its version, flags and length"
            )
        connect = ConnectFields(*CONNECT_FIELDS.unpack_from(data, PREFIX.size))
        start += CONNECT_FIELDS.size
    return ResponsePacket(code, parse_headers(memoryview(data)[start:]), connect)
