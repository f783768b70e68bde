"""The numbers of OBEX: operation codes, response codes, header identifiers.

OBEX packs a flag into the top bit of every operation and response code: on a
request, *Final* (the last packet of this request); on a response, always set.
A PUT or GET that spans packets therefore arrives as 0x02/0x03 until its last
packet, 0x82/0x83.  A header identifier's top two bits say how its value is
encoded (:class:`HeaderEncoding`), so a receiver can skip headers it does not
know.
"""

from __future__ import annotations

import enum

FINAL = 0x80
"""The Final bit of an operation code (always set on a response code)."""

OBEX_VERSION = 0x10
"""OBEX 1.0, as every CONNECT and its response carry it."""

MIN_PACKET_LENGTH = 255
"""The smallest maximum packet length a peer may announce, and the limit
before CONNECT has negotiated one."""

MAX_PACKET_LENGTH = 0xFFFF
"""The length field is 16 bits."""

FOLDER_BROWSING_UUID = bytes.fromhex("F9EC7BC4953C11D2984E525400DC9E09")
"""The Target of the Folder Browsing service (F9EC7BC4-953C-11D2-984E-525400DC9E09)."""


class Opcode(enum.IntEnum):
    """Request operation codes, with the Final bit where OBEX requires it."""

    CONNECT = 0x80
    DISCONNECT = 0x81
    PUT = 0x02
    PUT_FINAL = 0x82
    GET = 0x03
    GET_FINAL = 0x83
    SETPATH = 0x85
    ACTION = 0x86
    SESSION = 0x87
    ABORT = 0xFF


class ResponseCode(enum.IntEnum):
    """Response codes, Final bit included (as they go on the wire)."""

    CONTINUE = 0x90
    SUCCESS = 0xA0
    CREATED = 0xA1
    ACCEPTED = 0xA2
    NO_CONTENT = 0xA4
    BAD_REQUEST = 0xC0
    UNAUTHORIZED = 0xC1
    FORBIDDEN = 0xC3
    NOT_FOUND = 0xC4
    METHOD_NOT_ALLOWED = 0xC5
    NOT_ACCEPTABLE = 0xC6
    CONFLICT = 0xC9
    LENGTH_REQUIRED = 0xCB
    PRECONDITION_FAILED = 0xCC
    REQUEST_ENTITY_TOO_LARGE = 0xCD
    UNSUPPORTED_MEDIA_TYPE = 0xCF
    INTERNAL_SERVER_ERROR = 0xD0
    NOT_IMPLEMENTED = 0xD1
    SERVICE_UNAVAILABLE = 0xD3
    DATABASE_FULL = 0xE0
    DATABASE_LOCKED = 0xE1

    @property
    def ok(self) -> bool:
        """Success and its siblings (0xA0-0xA6)."""
        return 0xA0 <= self <= 0xA6


class HeaderEncoding(enum.IntEnum):
    """The top two bits of a header identifier: how the value is encoded."""

    UNICODE = 0x00
    """UTF-16BE text with a terminating NUL, after a u16 length."""
    BYTES = 0x40
    """A byte sequence after a u16 length."""
    BYTE = 0x80
    """One byte."""
    FOUR_BYTES = 0xC0
    """A big-endian 32-bit quantity."""

    @classmethod
    def of(cls, header_id: int) -> HeaderEncoding:
        return cls(header_id & 0xC0)


class HeaderId(enum.IntEnum):
    """Header identifiers of OBEX 1.5 (the encoding is in the top two bits)."""

    COUNT = 0xC0
    NAME = 0x01
    TYPE = 0x42
    LENGTH = 0xC3
    TIME = 0x44
    """ISO 8601 time as text bytes: ``YYYYMMDDTHHMMSS`` (``Z`` for UTC)."""
    TIME_4 = 0xC4
    """Seconds since 1970, for old clients."""
    DESCRIPTION = 0x05
    TARGET = 0x46
    HTTP = 0x47
    BODY = 0x48
    END_OF_BODY = 0x49
    WHO = 0x4A
    CONNECTION_ID = 0xCB
    APP_PARAMETERS = 0x4C
    AUTH_CHALLENGE = 0x4D
    AUTH_RESPONSE = 0x4E
    CREATOR_ID = 0xCF
    WAN_UUID = 0x50
    OBJECT_CLASS = 0x51
    SESSION_PARAMETERS = 0x52
    SESSION_SEQUENCE_NUMBER = 0x93
    ACTION_ID = 0x94
    DEST_NAME = 0x15
    PERMISSIONS = 0xD6
    SINGLE_RESPONSE_MODE = 0x97
    SINGLE_RESPONSE_MODE_PARAMETERS = 0x98

    @property
    def encoding(self) -> HeaderEncoding:
        return HeaderEncoding.of(self)


class SetPathFlag(enum.IntFlag):
    """The flags byte of SETPATH."""

    UP = 0x01
    """Back up a level before applying the Name."""
    DONT_CREATE = 0x02
    """Fail rather than create a folder that does not exist."""


def code_name(code: int) -> str:
    """A readable name for a response code, also for one OBEX does not define."""
    try:
        return ResponseCode(code).name
    except ValueError:
        return f"0x{code:02X}"
