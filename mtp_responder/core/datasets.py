"""MTP datasets, declared with construct.

Declarations double as documentation of the wire layout.  Parsing input from
the host raises :class:`DatasetError` for anything malformed (truncated,
invalid UTF-16, lengths that lie) so the dispatcher can answer
InvalidDataset instead of crashing.

Two hot paths (ObjectPropList for thousands of objects, ObjectInfo) build
with :mod:`struct` through :func:`encode_value`, because construct's per-field
interpretation costs tens of microseconds per element; the construct
declarations remain the reference and the tests check both agree.
"""

from __future__ import annotations

import datetime as _dt
import io
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from construct import (
    BytesInteger,
    Construct,
    ConstructError,
    Error,
    Int8sl,
    Int8ul,
    Int16sl,
    Int16ul,
    Int32sl,
    Int32ul,
    Int64sl,
    Int64ul,
    PrefixedArray,
    SizeofError,
    Struct,
    Switch,
    this,
)

from .codes import DataType, FormFlag


class DatasetError(ValueError):
    """A dataset from the host could not be decoded."""


# --------------------------------------------------------------------------
# MTP strings: a u8 count of UTF-16 code units *including* the terminating
# NUL, then the code units; the empty string is a single 0 byte.


class _MTPString(Construct):
    def _parse(self, stream: Any, context: Any, path: Any) -> str:
        count = Int8ul._parsereport(stream, context, path)
        if count == 0:
            return ""
        raw = stream.read(2 * count)
        if len(raw) != 2 * count:
            raise ConstructError("truncated MTP string", path=path)
        units = raw[:-2]
        if raw[-2:] != b"\x00\x00":
            # Some hosts omit the NUL but count it; accept the text anyway.
            units = raw
        try:
            return units.decode("utf-16-le").rstrip("\x00")
        except UnicodeDecodeError as exc:
            raise ConstructError(f"invalid UTF-16 in MTP string: {exc}", path=path) from exc

    def _build(self, obj: str, stream: Any, context: Any, path: Any) -> str:
        stream.write(encode_string(obj))
        return obj

    def _sizeof(self, context: Any, path: Any) -> int:
        raise SizeofError("MTP strings have variable size", path=path)


MTPString = _MTPString()

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

Int128ul = BytesInteger(16, swapped=True, signed=False)
Int128sl = BytesInteger(16, swapped=True, signed=True)

SCALARS: dict[int, Any] = {
    DataType.INT8: Int8sl,
    DataType.UINT8: Int8ul,
    DataType.INT16: Int16sl,
    DataType.UINT16: Int16ul,
    DataType.INT32: Int32sl,
    DataType.UINT32: Int32ul,
    DataType.INT64: Int64sl,
    DataType.UINT64: Int64ul,
    DataType.INT128: Int128sl,
    DataType.UINT128: Int128ul,
}

VALUE_TYPES: dict[int, Any] = {
    **SCALARS,
    **{code | 0x4000: PrefixedArray(Int32ul, sub) for code, sub in SCALARS.items() if code <= 8},
    DataType.STR: MTPString,
}


def value_construct(datatype: int) -> Any:
    try:
        return VALUE_TYPES[datatype]
    except KeyError:
        raise DatasetError(f"unsupported datatype 0x{datatype:04x}") from None


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
    """Decode exactly one value that fills ``data``."""
    return parse_exact(value_construct(datatype), data, f"value of datatype 0x{datatype:04x}")


# --------------------------------------------------------------------------
# Datasets.

U16Array = PrefixedArray(Int32ul, Int16ul)
U32Array = PrefixedArray(Int32ul, Int32ul)

DeviceInfo = Struct(
    "standard_version" / Int16ul,
    "vendor_extension_id" / Int32ul,
    "vendor_extension_version" / Int16ul,
    "vendor_extension_desc" / MTPString,
    "functional_mode" / Int16ul,
    "operations_supported" / U16Array,
    "events_supported" / U16Array,
    "device_properties_supported" / U16Array,
    "capture_formats" / U16Array,
    "playback_formats" / U16Array,
    "manufacturer" / MTPString,
    "model" / MTPString,
    "device_version" / MTPString,
    "serial_number" / MTPString,
)

StorageInfo = Struct(
    "storage_type" / Int16ul,
    "filesystem_type" / Int16ul,
    "access_capability" / Int16ul,
    "max_capacity" / Int64ul,
    "free_space_in_bytes" / Int64ul,
    "free_space_in_objects" / Int32ul,
    "storage_description" / MTPString,
    "volume_identifier" / MTPString,
)

ObjectInfoFixed = Struct(
    "storage_id" / Int32ul,
    "object_format" / Int16ul,
    "protection_status" / Int16ul,
    "object_compressed_size" / Int32ul,
    "thumb_format" / Int16ul,
    "thumb_compressed_size" / Int32ul,
    "thumb_pix_width" / Int32ul,
    "thumb_pix_height" / Int32ul,
    "image_pix_width" / Int32ul,
    "image_pix_height" / Int32ul,
    "image_bit_depth" / Int32ul,
    "parent_object" / Int32ul,
    "association_type" / Int16ul,
    "association_desc" / Int32ul,
    "sequence_number" / Int32ul,
)
OBJECT_INFO_FIXED_SIZE = 52

ObjectInfo = Struct(
    "fixed" / ObjectInfoFixed,
    "filename" / MTPString,
    "date_created" / MTPString,
    "date_modified" / MTPString,
    "keywords" / MTPString,
)


def _form(datatype_field: str) -> Any:
    # One level down: inside the range Struct or the enumeration's FocusedSeq.
    value = Switch(this._[datatype_field], VALUE_TYPES, default=Error)
    return Switch(
        this.form_flag,
        {
            FormFlag.RANGE: Struct("minimum" / value, "maximum" / value, "step" / value),
            FormFlag.ENUMERATION: PrefixedArray(Int16ul, value),
        },
    )


DevicePropDesc = Struct(
    "property_code" / Int16ul,
    "datatype" / Int16ul,
    "get_set" / Int8ul,
    "factory_default" / Switch(this.datatype, VALUE_TYPES, default=Error),
    "current_value" / Switch(this.datatype, VALUE_TYPES, default=Error),
    "form_flag" / Int8ul,
    "form" / _form("datatype"),
)

ObjectPropDesc = Struct(
    "property_code" / Int16ul,
    "datatype" / Int16ul,
    "get_set" / Int8ul,
    "default_value" / Switch(this.datatype, VALUE_TYPES, default=Error),
    "group_code" / Int32ul,
    "form_flag" / Int8ul,
    "form" / _form("datatype"),
)

ObjectPropListElement = Struct(
    "object_handle" / Int32ul,
    "property_code" / Int16ul,
    "datatype" / Int16ul,
    "value" / Switch(this.datatype, VALUE_TYPES, default=Error),
)

ObjectPropList = PrefixedArray(Int32ul, ObjectPropListElement)


# --------------------------------------------------------------------------
# Typed views used by the dispatcher.


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
    fixed = struct.pack(
        "<IHHIHIIIIIIIHII",
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
        fixed = ObjectInfoFixed.parse(data[:OBJECT_INFO_FIXED_SIZE])
        strings: list[str] = []
        offset = OBJECT_INFO_FIXED_SIZE
        for _ in range(4):
            if offset >= len(data):
                break
            text, offset = _parse_string_at(data, offset)
            strings.append(text)
    except (ConstructError, struct.error) as exc:
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
    count = data[offset]
    end = offset + 1 + 2 * count
    if end > len(data):
        raise DatasetError("MTP string runs past the end of the dataset")
    try:
        return MTPString.parse(data[offset:end]), end
    except ConstructError as exc:
        raise DatasetError(str(exc)) from exc


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
            value, end = _string_in_list(data, offset)
        elif datatype in (DataType.UINT128, DataType.INT128):
            end = offset + 16
            if end > size:
                raise DatasetError(f"ObjectPropList is truncated in element {len(items)}")
            value = int.from_bytes(data[offset:end], "little", signed=datatype == DataType.INT128)
        elif datatype in VALUE_TYPES:
            raise _ArrayValue
        else:
            raise DatasetError(f"ObjectPropList: unsupported datatype 0x{datatype:04x}")
        offset = end
        append(PropListItem(handle, code, datatype, value))
    if offset != size:
        raise DatasetError(f"ObjectPropList has {size - offset} trailing bytes")
    return items


def _string_in_list(data: bytes, offset: int) -> tuple[str, int]:
    """An MTP string at ``offset``, read as :data:`MTPString` reads it."""
    count = data[offset]
    start = offset + 1
    if count == 0:
        return "", start
    end = start + 2 * count
    if end > len(data):
        raise DatasetError("ObjectPropList: truncated MTP string")
    units = data[start : end - 2] if data[end - 2 : end] == b"\x00\x00" else data[start:end]
    try:
        return units.decode("utf-16-le").rstrip("\x00"), end
    except UnicodeDecodeError as exc:
        raise DatasetError(f"ObjectPropList: invalid UTF-16 in MTP string: {exc}") from exc


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
