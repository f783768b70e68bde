"""The MTP datasets declared with construct: the specification of the wire layout.

The responder builds and reads its datasets with :mod:`struct` in
:mod:`.datasets` (construct interprets each field at run time, tens of
microseconds per element, and importing it is a noticeable part of
start-up on a small board).  These declarations remain the reference: the
tests check that the struct code and they agree byte for byte, initiators
and tests parse with them, and the rare inputs the struct code leaves
alone (array values) are read by them.  Loaded on first use, through
:mod:`.datasets`.
"""

from __future__ import annotations

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
from .datasets import DatasetError, encode_string

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


# --------------------------------------------------------------------------
# Datasets.

ContainerHeader = Struct(
    "length" / Int32ul,
    "type" / Int16ul,
    "code" / Int16ul,
    "transaction_id" / Int32ul,
)
"""Every container's first 12 bytes (:mod:`.container` packs them with struct)."""

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
