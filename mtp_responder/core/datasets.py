"""MTP datasets: building and reading them.

The wire layout is declared with construct in :mod:`.dataset_specs`, the
reference.  What the responder builds and reads while serving goes through
:mod:`struct` here: construct interprets each field at run time (tens of
microseconds per element, and ObjectPropList has thousands), and importing
it is a noticeable part of start-up on a small board.  The tests check that
both agree byte for byte.  The declarations are also reachable from this
module (``datasets.DeviceInfo``...), loaded on first use.

Parsing input from the host raises :class:`DatasetError` for anything
malformed (truncated, invalid UTF-16, lengths that lie) so the dispatcher
can answer InvalidDataset instead of crashing.
"""

from __future__ import annotations

import datetime as _dt
import io
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from .codes import DataType

if TYPE_CHECKING:
    from .dataset_specs import SCALARS as SCALARS
    from .dataset_specs import VALUE_TYPES as VALUE_TYPES
    from .dataset_specs import DeviceInfo as DeviceInfo
    from .dataset_specs import DevicePropDesc as DevicePropDesc
    from .dataset_specs import Int128sl as Int128sl
    from .dataset_specs import Int128ul as Int128ul
    from .dataset_specs import MTPString as MTPString
    from .dataset_specs import ObjectInfo as ObjectInfo
    from .dataset_specs import ObjectInfoFixed as ObjectInfoFixed
    from .dataset_specs import ObjectPropDesc as ObjectPropDesc
    from .dataset_specs import ObjectPropList as ObjectPropList
    from .dataset_specs import ObjectPropListElement as ObjectPropListElement
    from .dataset_specs import StorageInfo as StorageInfo
    from .dataset_specs import U16Array as U16Array
    from .dataset_specs import U32Array as U32Array
    from .dataset_specs import value_construct as value_construct

_SPECS = frozenset(
    {
        "SCALARS",
        "VALUE_TYPES",
        "DeviceInfo",
        "DevicePropDesc",
        "Int128sl",
        "Int128ul",
        "MTPString",
        "ObjectInfo",
        "ObjectInfoFixed",
        "ObjectPropDesc",
        "ObjectPropList",
        "ObjectPropListElement",
        "StorageInfo",
        "U16Array",
        "U32Array",
        "value_construct",
    }
)


def __getattr__(name: str) -> Any:
    """The construct declarations, imported on first use (see the module docstring)."""
    if name in _SPECS:
        from . import dataset_specs

        return getattr(dataset_specs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class DatasetError(ValueError):
    """A dataset from the host could not be decoded."""


# --------------------------------------------------------------------------
# MTP strings: a u8 count of UTF-16 code units *including* the terminating
# NUL, then the code units; the empty string is a single 0 byte.

MAX_STRING_UNITS = 254


def encode_string(text: str) -> bytes:
    """Encode, truncating at 254 UTF-16 code units (plus the NUL)."""
    if not text:
        return b"\x00"
    units = text.encode("utf-16-le", "surrogatepass")
    if len(units) > 2 * MAX_STRING_UNITS:
        units = units[: 2 * MAX_STRING_UNITS]
        # Never cut a surrogate pair in half.
        if 0xD8 <= units[-1] <= 0xDB:
            units = units[:-2]
    return bytes([len(units) // 2 + 1]) + units + b"\x00\x00"


def string_at(data: bytes, offset: int, what: str = "dataset") -> tuple[str, int]:
    """The MTP string at ``offset`` and the offset after it, read as :data:`MTPString` reads it.

    A string whose counted NUL is missing is taken as it is (some hosts do
    that); NULs inside the count are dropped.
    """
    if offset >= len(data):
        raise DatasetError(f"{what}: MTP string missing at offset {offset}")
    count = data[offset]
    start = offset + 1
    if count == 0:
        return "", start
    end = start + 2 * count
    if end > len(data):
        raise DatasetError(f"{what}: MTP string runs past the end of the data")
    units = data[start : end - 2] if data[end - 2 : end] == b"\x00\x00" else data[start:end]
    try:
        return units.decode("utf-16-le").rstrip("\x00"), end
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{what}: invalid UTF-16 in MTP string: {exc}") from exc


# --------------------------------------------------------------------------
# Dates: "YYYYMMDDThhmmss[.s][Z|+hhmm|-hhmm]".


def format_date(timestamp: float) -> str:
    """Device local time, the form Windows and Android use."""
    if timestamp <= 0:
        return ""
    return time.strftime("%Y%m%dT%H%M%S", time.localtime(timestamp))


def parse_date(text: str) -> float | None:
    """A timestamp, or ``None`` when the host sent an empty or bad date."""
    try:
        return _parse_date(text.strip())
    except (ValueError, OverflowError):  # digits that are not ASCII, offsets of a day
        return None


def _parse_date(text: str) -> float | None:
    if len(text) < 15 or text[8] != "T":
        return None
    base = _dt.datetime.strptime(text[:15], "%Y%m%dT%H%M%S")
    rest = text[15:]
    if rest.startswith("."):
        digits = rest[1:].split("Z")[0].split("+")[0].split("-")[0]
        if digits.isdigit():
            micro = min(999_999, int(float("0." + digits) * 1_000_000))
            base = base.replace(microsecond=micro)
        rest = rest[1 + len(digits) :]
    if rest == "":
        return base.timestamp()  # local time
    if rest == "Z":
        return base.replace(tzinfo=_dt.UTC).timestamp()
    if len(rest) == 5 and rest[0] in "+-" and rest[1:].isdigit():
        offset = _dt.timedelta(hours=int(rest[1:3]), minutes=int(rest[3:5]))
        if rest[0] == "-":
            offset = -offset
        return base.replace(tzinfo=_dt.timezone(offset)).timestamp()
    return None


# --------------------------------------------------------------------------
# Typed values (device and object properties).

_STRUCT_CODES: dict[int, str] = {
    DataType.INT8: "b",
    DataType.UINT8: "B",
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
}
_STRUCTS: dict[int, struct.Struct] = {
    code: struct.Struct("<" + fmt) for code, fmt in _STRUCT_CODES.items()
}


def scalar_packer(datatype: int) -> Callable[[Any], bytes] | None:
    """The packer of a fixed-size integer datatype up to 64 bits, else ``None``."""
    packer = _STRUCTS.get(datatype)
    return None if packer is None else packer.pack


def encode_value(datatype: int, value: Any) -> bytes:
    """Fast encoder, equivalent to ``value_construct(datatype).build(value)``."""
    packer = _STRUCTS.get(datatype)
    if packer is not None:
        return packer.pack(value)
    if datatype == DataType.STR:
        return encode_string(value)
    if datatype == DataType.UINT128:
        return int(value).to_bytes(16, "little", signed=False)
    if datatype == DataType.INT128:
        return int(value).to_bytes(16, "little", signed=True)
    if datatype & 0x4000 and (datatype & 0xFF) in _STRUCT_CODES:
        fmt = _STRUCT_CODES[datatype & 0xFF]
        items = list(value)
        return struct.pack(f"<I{len(items)}{fmt}", len(items), *items)
    raise DatasetError(f"unsupported datatype 0x{datatype:04x}")


def parse_exact(con: Any, data: bytes, what: str) -> Any:
    """Parse ``data`` with ``con``; every byte must be used, no more."""
    stream = io.BytesIO(data)
    try:
        value = con.parse_stream(stream)
    except Exception as exc:  # construct raises assorted errors on garbage
        raise DatasetError(f"{what} is malformed: {exc}") from exc
    if stream.tell() != len(data):
        raise DatasetError(f"{what} has {len(data) - stream.tell()} trailing bytes")
    return value


def decode_value(datatype: int, data: bytes) -> Any:
    """Decode exactly one value that fills ``data`` (arrays by the construct declaration)."""
    what = f"value of datatype 0x{datatype:04x}"
    packer = _STRUCTS.get(datatype)
    if packer is not None:
        if len(data) != packer.size:
            raise DatasetError(f"{what} takes {packer.size} bytes, not {len(data)}")
        return packer.unpack(data)[0]
    if datatype == DataType.STR:
        text, end = string_at(data, 0, what)
        if end != len(data):
            raise DatasetError(f"{what} has {len(data) - end} trailing bytes")
        return text
    if datatype in (DataType.UINT128, DataType.INT128):
        if len(data) != 16:
            raise DatasetError(f"{what} takes 16 bytes, not {len(data)}")
        return int.from_bytes(data, "little", signed=datatype == DataType.INT128)
    from .dataset_specs import value_construct

    return parse_exact(value_construct(datatype), data, what)


def build_device_info(
    *,
    standard_version: int,
    vendor_extension_id: int,
    vendor_extension_version: int,
    vendor_extension_desc: str,
    functional_mode: int,
    operations_supported: Sequence[int],
    events_supported: Sequence[int],
    device_properties_supported: Sequence[int],
    capture_formats: Sequence[int],
    playback_formats: Sequence[int],
    manufacturer: str,
    model: str,
    device_version: str,
    serial_number: str,
) -> bytes:
    """The DeviceInfo dataset (the fields of :data:`DeviceInfo`, in its order)."""
    return b"".join(
        (
            struct.pack("<HIH", standard_version, vendor_extension_id, vendor_extension_version),
            encode_string(vendor_extension_desc),
            struct.pack("<H", functional_mode),
            build_u16_array(operations_supported),
            build_u16_array(events_supported),
            build_u16_array(device_properties_supported),
            build_u16_array(capture_formats),
            build_u16_array(playback_formats),
            encode_string(manufacturer),
            encode_string(model),
            encode_string(device_version),
            encode_string(serial_number),
        )
    )


# --------------------------------------------------------------------------
# Typed views used by the dispatcher.


class _ObjectInfoFixed(NamedTuple):
    """The fixed part of ObjectInfo, field for field as :data:`ObjectInfoFixed` declares it."""

    storage_id: int
    object_format: int
    protection_status: int
    object_compressed_size: int
    thumb_format: int
    thumb_compressed_size: int
    thumb_pix_width: int
    thumb_pix_height: int
    image_pix_width: int
    image_pix_height: int
    image_bit_depth: int
    parent_object: int
    association_type: int
    association_desc: int
    sequence_number: int


_OBJECT_INFO_FIXED = struct.Struct("<IHHIHIIIIIIIHII")
OBJECT_INFO_FIXED_SIZE = _OBJECT_INFO_FIXED.size


@dataclass(slots=True)
class ObjectInfoData:
    storage_id: int
    object_format: int
    protection_status: int
    compressed_size: int
    parent_object: int
    association_type: int
    filename: str
    date_created: str = ""
    date_modified: str = ""
    keywords: str = ""
    association_desc: int = 0


def build_object_info(info: ObjectInfoData) -> bytes:
    fixed = _OBJECT_INFO_FIXED.pack(
        info.storage_id,
        info.object_format,
        info.protection_status,
        min(info.compressed_size, 0xFFFFFFFF),
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        info.parent_object,
        info.association_type,
        info.association_desc,
        0,
    )
    return b"".join(
        (
            fixed,
            encode_string(info.filename),
            encode_string(info.date_created),
            encode_string(info.date_modified),
            encode_string(info.keywords),
        )
    )


def parse_object_info(data: bytes) -> ObjectInfoData:
    """Decode SendObjectInfo's dataset.

    Trailing strings after the file name are optional in practice (some
    hosts stop after it), so missing ones read as empty.
    """
    if len(data) < OBJECT_INFO_FIXED_SIZE + 1:
        raise DatasetError("ObjectInfo dataset is truncated")
    try:
        fixed = _ObjectInfoFixed(*_OBJECT_INFO_FIXED.unpack_from(data))
        strings: list[str] = []
        offset = OBJECT_INFO_FIXED_SIZE
        for _ in range(4):
            if offset >= len(data):
                break
            text, offset = _parse_string_at(data, offset)
            strings.append(text)
    except struct.error as exc:
        raise DatasetError(f"ObjectInfo dataset is malformed: {exc}") from exc
    strings += [""] * (4 - len(strings))
    return ObjectInfoData(
        storage_id=fixed.storage_id,
        object_format=fixed.object_format,
        protection_status=fixed.protection_status,
        compressed_size=fixed.object_compressed_size,
        parent_object=fixed.parent_object,
        association_type=fixed.association_type,
        association_desc=fixed.association_desc,
        filename=strings[0],
        date_created=strings[1],
        date_modified=strings[2],
        keywords=strings[3],
    )


def _parse_string_at(data: bytes, offset: int) -> tuple[str, int]:
    return string_at(data, offset)


def parse_string(data: bytes) -> str:
    """A dataset that is exactly one string (SetDevicePropValue of a STR)."""
    if not data:
        raise DatasetError("empty string dataset")
    text, end = _parse_string_at(data, 0)
    if end != len(data):
        raise DatasetError("trailing bytes after string")
    return text


@dataclass(frozen=True, slots=True)
class PropListItem:
    handle: int
    code: int
    datatype: int
    value: Any


class _ArrayValue(Exception):
    """An element the struct path leaves to the construct declaration."""


_ELEMENT_HEAD = struct.Struct("<IHH")
_U32 = struct.Struct("<I")


def parse_prop_list(data: bytes) -> list[PropListItem]:
    """Decode an ObjectPropList (sent by the host in 9806 and 9808; read by the initiators).

    Scalars and strings are read with :mod:`struct`; a list holding an array
    value is read by the construct declaration, as every list once was.  Both
    accept and refuse the same input (the tests compare them).
    """
    try:
        return _parse_prop_list_struct(data)
    except _ArrayValue:
        from .dataset_specs import ObjectPropList

        items = parse_exact(ObjectPropList, data, "ObjectPropList")
        return [PropListItem(i.object_handle, i.property_code, i.datatype, i.value) for i in items]


def _parse_prop_list_struct(data: bytes) -> list[PropListItem]:
    size = len(data)
    if size < 4:
        raise DatasetError("ObjectPropList is truncated")
    (count,) = _U32.unpack_from(data)
    offset = 4
    items: list[PropListItem] = []
    append = items.append
    for _ in range(count):
        if offset + 8 > size:
            raise DatasetError(f"ObjectPropList is truncated in element {len(items)}")
        handle, code, datatype = _ELEMENT_HEAD.unpack_from(data, offset)
        offset += 8
        value: Any
        packer = _STRUCTS.get(datatype)
        if packer is not None:
            end = offset + packer.size
            if end > size:
                raise DatasetError(f"ObjectPropList is truncated in element {len(items)}")
            (value,) = packer.unpack_from(data, offset)
        elif datatype == DataType.STR:
            if offset >= size:
                raise DatasetError(f"ObjectPropList is truncated in element {len(items)}")
            value, end = string_at(data, offset, "ObjectPropList")
        elif datatype in (DataType.UINT128, DataType.INT128):
            end = offset + 16
            if end > size:
                raise DatasetError(f"ObjectPropList is truncated in element {len(items)}")
            value = int.from_bytes(data[offset:end], "little", signed=datatype == DataType.INT128)
        elif datatype & 0x4000 and datatype & ~0x4000 in _STRUCTS:
            raise _ArrayValue
        else:
            raise DatasetError(f"ObjectPropList: unsupported datatype 0x{datatype:04x}")
        offset = end
        append(PropListItem(handle, code, datatype, value))
    if offset != size:
        raise DatasetError(f"ObjectPropList has {size - offset} trailing bytes")
    return items


def build_prop_list(items: Sequence[PropListItem] | Iterable[PropListItem]) -> bytes:
    parts = [b""]
    count = 0
    for item in items:
        parts.append(_ELEMENT_HEAD.pack(item.handle, item.code, item.datatype))
        parts.append(encode_value(item.datatype, item.value))
        count += 1
    parts[0] = struct.pack("<I", count)
    return b"".join(parts)


def build_u32_array(values: Sequence[int]) -> bytes:
    return struct.pack(f"<I{len(values)}I", len(values), *values)


def build_u16_array(values: Sequence[int]) -> bytes:
    return struct.pack(f"<I{len(values)}H", len(values), *values)


def parse_u32_array(data: bytes) -> list[int]:
    if len(data) < 4:
        raise DatasetError("array dataset is truncated")
    (count,) = struct.unpack_from("<I", data)
    if len(data) != 4 + 4 * count:
        raise DatasetError("array length does not match its count")
    return list(struct.unpack_from(f"<{count}I", data, 4))
