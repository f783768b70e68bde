"""Generic container framing (PTP over USB, ISO 15740 annex D).

Every transfer starts with a 12-byte header: length u32, type u16, code u16,
transaction id u32.  Commands, responses and events carry up to five u32
parameters after it; data containers carry the payload.  A data phase whose
container would be 4 GiB or more says length 0xFFFFFFFF and is ended by a
short packet instead.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .codes import ContainerType

HEADER_SIZE = 12
"""The header's layout is declared in :data:`.dataset_specs.ContainerHeader`."""
MAX_PARAMS = 5
UNKNOWN_LENGTH = 0xFFFFFFFF

_HEADER = struct.Struct("<IHHI")
unpack_header = _HEADER.unpack_from
"""``(length, type, code, transaction_id)`` of the header at the start of a
buffer: one C call, for the framing's hot path."""
_PARAMS = tuple(struct.Struct(f"<{count}I") for count in range(MAX_PARAMS + 1))


@dataclass(frozen=True, slots=True)
class Header:
    length: int
    type: int
    code: int
    transaction_id: int


def parse_header(data: bytes | memoryview) -> Header:
    """Decode the first 12 bytes; the caller checks there are 12."""
    length, type_, code, tid = _HEADER.unpack_from(data)
    return Header(length, type_, code, tid)


def build_header(type_: ContainerType, code: int, transaction_id: int, length: int) -> bytes:
    return _HEADER.pack(length, type_, code, transaction_id)


def build_params_container(
    type_: ContainerType, code: int, transaction_id: int, params: tuple[int, ...] = ()
) -> bytes:
    """A command, response or event container."""
    if len(params) > MAX_PARAMS:
        raise ValueError(f"at most {MAX_PARAMS} parameters, got {len(params)}")
    length = HEADER_SIZE + 4 * len(params)
    return _HEADER.pack(length, type_, code, transaction_id) + struct.pack(
        f"<{len(params)}I", *params
    )


def data_header(code: int, transaction_id: int, payload_length: int) -> bytes:
    """The header of a data container announcing ``payload_length`` bytes."""
    total = HEADER_SIZE + payload_length
    length = total if total < UNKNOWN_LENGTH else UNKNOWN_LENGTH
    return _HEADER.pack(length, ContainerType.DATA, code, transaction_id)


def parse_params(body: bytes | bytearray | memoryview) -> tuple[int, ...]:
    """Parameters after a header; ``body`` must hold a multiple of 4 bytes."""
    count = len(body) // 4
    if count <= MAX_PARAMS:
        return _PARAMS[count].unpack_from(body)
    return struct.unpack_from(f"<{count}I", body)
