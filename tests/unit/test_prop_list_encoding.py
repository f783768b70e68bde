"""GetObjectPropList's fast encoder against the construct declaration of the dataset.

The responder builds ObjectPropList with :func:`encode_prop_list` (struct,
no object per element) because a host listing a big folder asks for every
property of every object at once; the construct declaration in
:mod:`mtp_responder.core.datasets` stays the specification, and these tests
hold the two to the same bytes on objects that exercise every datatype.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mtp_responder.core.codes import ALL, ObjectProp, OperationCode
from mtp_responder.core.datasets import (
    ObjectPropList,
    PropListItem,
    build_prop_list,
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
