"""The struct code that serves datasets against their construct declarations.

The responder never loads construct while serving (it is slow per field and
slow to import on a small board); :mod:`mtp_responder.core.dataset_specs`
declares the wire layout and these tests hold the struct code to it: the
same bytes built, the same values read, the same input refused.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mtp_responder.core import dataset_specs as spec
from mtp_responder.core.codes import ContainerType, DataType
from mtp_responder.core.container import HEADER_SIZE, build_header, parse_header
from mtp_responder.core.datasets import (
    OBJECT_INFO_FIXED_SIZE,
    DatasetError,
    ObjectInfoData,
    build_device_info,
    build_object_info,
    decode_value,
    encode_string,
    encode_value,
    parse_exact,
    parse_object_info,
    parse_string,
)

REPO = Path(__file__).resolve().parents[2]

DEVICE_INFO: dict[str, Any] = {
    "standard_version": 100,
    "vendor_extension_id": 6,
    "vendor_extension_version": 100,
    "vendor_extension_desc": "microsoft.com: 1.0; android.com: 1.0",
    "functional_mode": 0,
    "operations_supported": [0x1001, 0x1002, 0x9805],
    "events_supported": [],
    "device_properties_supported": [0xD402],
    "capture_formats": [0x3000, 0x3001],
    "playback_formats": [0x3000, 0x3001, 0xB901],
    "manufacturer": "Acme \u2603",
    "model": "",
    "device_version": "1.2.3",
    "serial_number": "SN\U0001f600",
}


def test_device_info_is_built_as_declared() -> None:
    built = build_device_info(**DEVICE_INFO)
    assert built == spec.DeviceInfo.build(DEVICE_INFO)
    parsed = spec.DeviceInfo.parse(built)
    assert {k: parsed[k] for k in DEVICE_INFO} == DEVICE_INFO


def test_the_container_header_is_packed_as_declared() -> None:
    fields = {"length": 24, "type": ContainerType.DATA, "code": 0x1001, "transaction_id": 7}
    header = build_header(ContainerType.DATA, 0x1001, 7, 24)
    assert len(header) == HEADER_SIZE
    assert header == spec.ContainerHeader.build(fields)
    parsed = parse_header(header)
    assert (parsed.length, parsed.type, parsed.code, parsed.transaction_id) == tuple(
        fields.values()
    )


OBJECT_INFOS = [
    ObjectInfoData(0x10001, 0x3000, 0, 13, 5, 0, "a.txt", "20240102T030405", "", "kw"),
    ObjectInfoData(0, 0x3001, 1, 0xFFFFFFFF, 0xFFFFFFFF, 1, "\U0001f600 folder", "", "", "", 7),
]


@pytest.mark.parametrize("info", OBJECT_INFOS, ids=["file", "folder"])
def test_object_info_is_built_and_read_as_declared(info: ObjectInfoData) -> None:
    built = build_object_info(info)
    declared = spec.ObjectInfo.parse(built)
    assert len(spec.ObjectInfoFixed.build(declared.fixed)) == OBJECT_INFO_FIXED_SIZE
    assert built == spec.ObjectInfo.build(declared)
    read = parse_object_info(built)
    assert read == info
    fixed = declared.fixed
    assert (read.storage_id, read.object_format, read.compressed_size, read.parent_object) == (
        fixed.storage_id,
        fixed.object_format,
        fixed.object_compressed_size,
        fixed.parent_object,
    )
    assert (read.filename, read.keywords) == (declared.filename, declared.keywords)


VALUES = [
    (DataType.INT8, -128),
    (DataType.UINT8, 255),
    (DataType.INT16, -2),
    (DataType.UINT16, 0xABCD),
    (DataType.INT32, -(1 << 31)),
    (DataType.UINT32, 1 << 31),
    (DataType.INT64, -1),
    (DataType.UINT64, (1 << 64) - 1),
    (DataType.INT128, -(1 << 100)),
    (DataType.UINT128, (1 << 128) - 1),
    (DataType.STR, ""),
    (DataType.STR, "Friendly \u2603 name"),
    (DataType.UINT16 | 0x4000, [1, 2, 0xFFFF]),
    (DataType.INT32 | 0x4000, []),
]


def _declared(datatype: int, data: bytes) -> Any:
    return parse_exact(spec.value_construct(datatype), data, "value")


@pytest.mark.parametrize(("datatype", "value"), VALUES)
def test_values_are_read_as_declared(datatype: int, value: Any) -> None:
    data = encode_value(datatype, value)
    assert data == spec.value_construct(datatype).build(value)
    assert decode_value(datatype, data) == _declared(datatype, data) == value


REFUSED = [
    (DataType.UINT32, b"\x01\x02\x03"),
    (DataType.UINT32, b"\x01\x02\x03\x04\x05"),
    (DataType.UINT8, b""),
    (DataType.UINT128, bytes(15)),
    (DataType.INT128, bytes(17)),
    (DataType.STR, b""),
    (DataType.STR, b"\x03A\x00"),  # shorter than its count
    (DataType.STR, b"\x02\x00\xd8\x00\x00"),  # a lone surrogate
    (DataType.STR, encode_string("ab") + b"\x00"),  # trailing byte
    (DataType.STR, b"\x00\x00"),  # the empty string, then a byte more
    (DataType.UINT16 | 0x4000, b"\x02\x00\x00\x00\x01\x00"),
    (0x0042, b"\x00"),  # no such datatype
]


@pytest.mark.parametrize(("datatype", "data"), REFUSED)
def test_what_the_declaration_refuses_is_refused(datatype: int, data: bytes) -> None:
    with pytest.raises(DatasetError):
        if datatype in spec.VALUE_TYPES:
            _declared(datatype, data)
        else:
            spec.value_construct(datatype)
    with pytest.raises(DatasetError):
        decode_value(datatype, data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x02A\x00B\x00",  # the counted NUL missing: taken as it is
        b"\x03A\x00\x00\x00\x00\x00",  # NULs inside the count: dropped
        encode_string("x" * 300),
    ],
)
def test_odd_strings_read_as_declared(data: bytes) -> None:
    assert parse_string(data) == decode_value(DataType.STR, data) == spec.MTPString.parse(data)


def test_serving_loads_no_construct() -> None:
    code = (
        "import sys, mtp_responder.app, data_providers.files;"
        "print(sorted(m for m in sys.modules if m.startswith(('construct', "
        "'mtp_responder.core.dataset_specs'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "[]"


def test_the_declarations_are_reachable_from_datasets() -> None:
    from mtp_responder.core import datasets

    assert datasets.DeviceInfo is spec.DeviceInfo
    assert datasets.ObjectPropList is spec.ObjectPropList
    with pytest.raises(AttributeError):
        datasets.NoSuchDataset  # noqa: B018
    assert struct.calcsize("<IHHIHIIIIIIIHII") == OBJECT_INFO_FIXED_SIZE
