"""ObjectPropList's struct encoder and reader against the construct declaration.

The responder builds ObjectPropList with :func:`encode_prop_list` (struct,
no object per element) because a host listing a big folder asks for every
property of every object at once; the construct declaration in
:mod:`mtp_responder.core.datasets` stays the specification, and these tests
hold the two to the same bytes on objects that exercise every datatype.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest

from mtp_responder.core.codes import ALL, DataType, ObjectProp, OperationCode
from mtp_responder.core.datasets import (
    DatasetError,
    ObjectPropList,
    PropListItem,
    build_prop_list,
    encode_value,
    parse_exact,
    parse_prop_list,
)
from mtp_responder.properties import PROPERTIES, ObjectView, encode_prop_list, prop_value

from .conftest import Device


def _populate(root: Path) -> None:
    (root / "Music").mkdir()
    (root / "Music" / "song.mp3").write_bytes(b"\xff\xfb" * 100)
    (root / "empty.txt").write_bytes(b"")
    (root / "snowman \u2603 and \U0001f600.txt").write_bytes(b"x")
    (root / ("long" * 80)[:250]).write_bytes(b"y")
    protected = root / "protected.jpg"
    protected.write_bytes(b"z" * 10)
    protected.chmod(0o444)
    with open(root / "huge.bin", "wb") as f:  # beyond 4 GiB, sparse
        f.truncate(5 << 30)
    os.utime(root / "empty.txt", (0, 0))  # a date the dataset leaves empty


def _reference(views: list[ObjectView], codes: list[int]) -> bytes:
    elements: list[dict[str, Any]] = [
        {
            "object_handle": v.handle,
            "property_code": code,
            "datatype": PROPERTIES[code].datatype,
            "value": prop_value(PROPERTIES[code], v),
        }
        for v in views
        for code in codes
    ]
    return bytes(ObjectPropList.build(elements))


async def _all_views(device: Device) -> list[ObjectView]:
    views = await device.responder.operations._select(ALL, 0, 0)
    assert len(views) == 7
    return views


async def test_every_property_of_every_object_matches_the_declaration(session: Device) -> None:
    _populate(session.root)
    views = await _all_views(session)
    codes = list(PROPERTIES)
    fast = encode_prop_list(views, [PROPERTIES[c] for c in codes])
    assert fast == _reference(views, codes)
    items = [
        PropListItem(v.handle, c, PROPERTIES[c].datatype, prop_value(PROPERTIES[c], v))
        for v in views
        for c in codes
    ]
    assert fast == build_prop_list(items)
    assert parse_prop_list(fast) == items


async def test_one_property_and_no_object(session: Device) -> None:
    _populate(session.root)
    views = await _all_views(session)
    size = PROPERTIES[ObjectProp.OBJECT_SIZE]
    assert encode_prop_list(views, [size]) == _reference(views, [ObjectProp.OBJECT_SIZE])
    assert encode_prop_list([], list(PROPERTIES.values())) == _reference([], list(PROPERTIES))


async def test_the_wire_carries_the_declared_dataset(session: Device) -> None:
    _populate(session.root)
    views = await _all_views(session)
    result = await session.mtp.transaction(OperationCode.GET_OBJECT_PROP_LIST, ALL, 0, ALL, 0, ALL)
    assert result.response.ok
    assert result.data == _reference(views, list(PROPERTIES))
    sizes = {
        item.handle: item.value
        for item in parse_prop_list(result.data)
        if item.code == ObjectProp.OBJECT_SIZE
    }
    assert sorted(sizes.values()) == [0, 0, 1, 1, 10, 200, 5 << 30]


# -- reading: the struct path against the declaration ----------------------------------


def _declared(data: bytes) -> list[PropListItem]:
    """What the construct declaration reads from ``data``."""
    items = parse_exact(ObjectPropList, data, "ObjectPropList")
    return [PropListItem(i.object_handle, i.property_code, i.datatype, i.value) for i in items]


def _element(handle: int, datatype: int, value_bytes: bytes) -> bytes:
    return struct.pack("<IHH", handle, 0xDC07, datatype) + value_bytes


SCALARS = [
    (DataType.INT8, -5),
    (DataType.UINT8, 200),
    (DataType.INT16, -300),
    (DataType.UINT16, 0xFFFF),
    (DataType.INT32, -(1 << 31)),
    (DataType.UINT32, 0xDEADBEEF),
    (DataType.INT64, -(1 << 63)),
    (DataType.UINT64, (1 << 64) - 1),
    (DataType.INT128, -(1 << 127)),
    (DataType.UINT128, (1 << 128) - 1),
    (DataType.STR, ""),
    (DataType.STR, "a.txt"),
    (DataType.STR, "\U0001f600 \u2603"),
]


def _list(elements: list[bytes]) -> bytes:
    return struct.pack("<I", len(elements)) + b"".join(elements)


VALID = _list(
    [_element(i + 1, dt, encode_value(dt, v)) for i, (dt, v) in enumerate(SCALARS)]
    + [
        _element(90, DataType.STR, b"\x02A\x00B\x00"),  # counted NUL missing
        _element(91, DataType.STR, b"\x03A\x00\x00\x00\x00\x00"),  # NULs inside the count
    ]
)


def test_every_scalar_and_string_reads_as_the_declaration_reads_it() -> None:
    items = parse_prop_list(VALID)
    assert items == _declared(VALID)
    assert [i.value for i in items][: len(SCALARS)] == [v for _, v in SCALARS]
    assert [i.value for i in items][len(SCALARS) :] == ["AB", "A"]


def test_a_list_with_an_array_value_is_read_by_the_declaration() -> None:
    array = DataType.UINT16 | 0x4000
    data = _list(
        [
            _element(1, DataType.UINT32, encode_value(DataType.UINT32, 7)),
            _element(2, array, encode_value(array, [1, 2, 3])),
        ]
    )
    assert parse_prop_list(data) == _declared(data)
    assert parse_prop_list(data)[1].value == [1, 2, 3]


@pytest.mark.parametrize(
    "data",
    [
        *(VALID[:cut] for cut in range(len(VALID))),
        VALID + b"\x00",
        _list([_element(1, DataType.STR, b"\x02\x00\xd8\x00\x00")]),  # a lone surrogate
        _list([_element(1, 0x0042, b"\x00")]),  # no such datatype
        struct.pack("<I", 0xFFFFFFFF),  # a count the data cannot hold
    ],
)
def test_what_the_declaration_refuses_is_refused(data: bytes) -> None:
    with pytest.raises(DatasetError):
        _declared(data)
    with pytest.raises(DatasetError):
        parse_prop_list(data)
