"""The engine's wire protocol, defined with :mod:`construct`.

Every message is a frame: a fixed 12-byte header then ``length`` payload bytes::

    "BE"  u8 version  u8 kind  u32 request id  u32 length      (big-endian)

Kinds: REQUEST, RESPONSE, ERROR, DATA, END, CANCEL, EVENT. REQUEST, RESPONSE, ERROR,
END and EVENT payloads are one self-describing *value* (below); DATA payloads are raw
bytes of a stream. Values are tagged: none, bool, int (i64), str (UTF-8), bytes,
list, map (str keys). Nothing is ever evaluated or unpickled; every frame is
bounded (``MAX_PAYLOAD``) and nesting is bounded (``MAX_DEPTH``).
"""

from __future__ import annotations

import io
from enum import IntEnum
from typing import Any

from construct import (
    Const,
    ConstructError,
    GreedyBytes,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64sb,
    LazyBound,
    PascalString,
    Pass,
    Prefixed,
    PrefixedArray,
    Struct,
    Switch,
    this,
)

from ..errors import CorruptError

PROTOCOL_VERSION = 1
HEADER_SIZE = 12
MAX_PAYLOAD = 4 << 20
MAX_DEPTH = 16

FrameHeader = Struct(
    "magic" / Const(b"BE"),
    "version" / Int8ub,
    "kind" / Int8ub,
    "request_id" / Int32ub,
    "length" / Int32ub,
)
_FrameHeaderFast = FrameHeader.compile()


class Kind(IntEnum):
    REQUEST = 1
    RESPONSE = 2
    ERROR = 3
    DATA = 4
    END = 5
    CANCEL = 6
    EVENT = 7


class Tag(IntEnum):
    NONE = 0
    FALSE = 1
    TRUE = 2
    INT = 3
    STR = 4
    BYTES = 5
    LIST = 6
    MAP = 7


Value: Any = Struct(
    "tag" / Int8ub,
    "v"
    / Switch(
        this.tag,
        {
            Tag.NONE: Pass,
            Tag.FALSE: Pass,
            Tag.TRUE: Pass,
            Tag.INT: Int64sb,
            Tag.STR: PascalString(Int32ub, "utf8"),
            Tag.BYTES: Prefixed(Int32ub, GreedyBytes),
            Tag.LIST: PrefixedArray(Int32ub, LazyBound(lambda: Value)),
            Tag.MAP: PrefixedArray(
                Int32ub,
                Struct("k" / PascalString(Int16ub, "utf8"), "v" / LazyBound(lambda: Value)),
            ),
        },
    ),
)


class ProtocolError(CorruptError):
    """The peer sent something that is not a valid frame or value."""


def _to_tree(obj: object, depth: int = 0) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise ProtocolError("value nested too deeply")
    if obj is None:
        return {"tag": Tag.NONE, "v": None}
    if obj is True:
        return {"tag": Tag.TRUE, "v": None}
    if obj is False:
        return {"tag": Tag.FALSE, "v": None}
    if isinstance(obj, int):
        if not -(1 << 63) <= obj < (1 << 63):
            raise ProtocolError("integer out of range")
        return {"tag": Tag.INT, "v": int(obj)}
    if isinstance(obj, str):
        return {"tag": Tag.STR, "v": obj}
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"tag": Tag.BYTES, "v": bytes(obj)}
    if isinstance(obj, (list, tuple)):
        return {"tag": Tag.LIST, "v": [_to_tree(x, depth + 1) for x in obj]}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, str):
                raise ProtocolError("map keys must be strings")
            items.append({"k": k, "v": _to_tree(v, depth + 1)})
        return {"tag": Tag.MAP, "v": items}
    raise ProtocolError(f"cannot encode {type(obj).__name__}")


def _from_tree(t: Any, depth: int = 0) -> object:
    if depth > MAX_DEPTH:
        raise ProtocolError("value nested too deeply")
    tag = t.tag
    if tag == Tag.NONE:
        return None
    if tag == Tag.TRUE:
        return True
    if tag == Tag.FALSE:
        return False
    if tag in (Tag.INT, Tag.STR, Tag.BYTES):
        return t.v
    if tag == Tag.LIST:
        return [_from_tree(x, depth + 1) for x in t.v]
    if tag == Tag.MAP:
        return {str(i.k): _from_tree(i.v, depth + 1) for i in t.v}
    raise ProtocolError(f"unknown value tag {tag}")


def encode_value(obj: object) -> bytes:
    return bytes(Value.build(_to_tree(obj)))


def decode_value(data: bytes) -> object:
    """Decode one value that must span ``data`` exactly."""
    if not data:
        return None
    try:
        buf = io.BytesIO(data)
        tree = Value.parse_stream(buf)
        used = buf.tell()
    except (ConstructError, UnicodeDecodeError, RecursionError, ValueError, KeyError) as e:
        raise ProtocolError(f"malformed value: {e.__class__.__name__}") from e
    if used != len(data):
        raise ProtocolError("trailing bytes after value")
    return _from_tree(tree)


def encode_header(kind: Kind, request_id: int, length: int) -> bytes:
    return bytes(
        _FrameHeaderFast.build(
            {
                "version": PROTOCOL_VERSION,
                "kind": int(kind),
                "request_id": request_id,
                "length": length,
            }
        )
    )


def decode_header(data: bytes) -> tuple[Kind, int, int]:
    try:
        h = _FrameHeaderFast.parse(data)
    except ConstructError as e:
        raise ProtocolError("bad frame header") from e
    if h.version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {h.version}")
    try:
        kind = Kind(h.kind)
    except ValueError as e:
        raise ProtocolError(f"unknown frame kind {h.kind}") from e
    if h.length > MAX_PAYLOAD:
        raise ProtocolError(f"frame of {h.length} bytes is too large")
    return kind, int(h.request_id), int(h.length)
