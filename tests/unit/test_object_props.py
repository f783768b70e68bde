"""Object properties: 9801-9806 and 9808 over the loopback link."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from mtp_responder.core.codes import DataType, ObjectFormat, ObjectProp, OperationCode, ResponseCode
from mtp_responder.core.datasets import (
    ObjectPropDesc,
    PropListItem,
    build_prop_list,
    decode_value,
    encode_string,
    encode_value,
    parse_prop_list,
)
from mtp_responder.properties import PROPERTIES

from .conftest import Device, handle_of, make_config, start_device

ALL = 0xFFFFFFFF
REQUIRED_BY_WINDOWS = {
    ObjectProp.STORAGE_ID,
    ObjectProp.OBJECT_FORMAT,
    ObjectProp.PROTECTION_STATUS,
    ObjectProp.OBJECT_SIZE,
    ObjectProp.OBJECT_FILE_NAME,
    ObjectProp.DATE_CREATED,
    ObjectProp.DATE_MODIFIED,
    ObjectProp.PARENT_OBJECT,
    ObjectProp.PERSISTENT_UNIQUE_OBJECT_IDENTIFIER,
    ObjectProp.NAME,
    ObjectProp.DISPLAY_NAME,
    ObjectProp.NON_CONSUMABLE,
    ObjectProp.HIDDEN,
}


@pytest.fixture
def tree(session: Device) -> Device:
    """root: a.txt, b.jpg, DCIM/{c.jpg, Sub/d.png}"""
    (session.root / "a.txt").write_text("alpha")
    (session.root / "b.jpg").write_bytes(b"jpeg")
    (session.root / "DCIM" / "Sub").mkdir(parents=True)
    (session.root / "DCIM" / "c.jpg").write_bytes(b"c")
    (session.root / "DCIM" / "Sub" / "d.png").write_bytes(b"d")
    return session


async def prop(device: Device, handle: int, code: int) -> Any:
    result = await device.mtp.transaction(OperationCode.GET_OBJECT_PROP_VALUE, handle, code)
    assert result.response.ok, hex(result.code)
    assert result.data is not None
    return decode_value(PROPERTIES[code].datatype, result.data)


async def prop_list(
    device: Device, handle: int, fmt: int = 0, code: int = ALL, group: int = 0, depth: int = 0
) -> list[PropListItem]:
    result = await device.mtp.transaction(
        OperationCode.GET_OBJECT_PROP_LIST, handle, fmt, code, group, depth
    )
    assert result.response.ok, hex(result.code)
    assert result.data is not None
    return parse_prop_list(result.data)


def names_in(items: list[PropListItem]) -> set[str]:
    return {i.value for i in items if i.code == ObjectProp.OBJECT_FILE_NAME}


async def set_prop(device: Device, handle: int, code: int, data: bytes) -> int:
    result = await device.mtp.transaction(
        OperationCode.SET_OBJECT_PROP_VALUE, handle, code, data=data
    )
    return result.code


# -- 9801 / 9802 ----------------------------------------------------------------------


async def test_the_properties_windows_maps_are_supported(session: Device) -> None:
    result = await session.mtp.transaction(
        OperationCode.GET_OBJECT_PROPS_SUPPORTED, ObjectFormat.EXIF_JPEG
    )
    (count,) = struct.unpack_from("<I", result.data or b"")
    codes = set(struct.unpack_from(f"<{count}H", result.data or b"", 4))
    assert REQUIRED_BY_WINDOWS <= codes


async def test_props_supported_are_answered_for_any_format(session: Device) -> None:
    """libmtp asks for the format it guessed from a file name; a refusal makes it
    leave ObjectFileName out of SendObjectPropList."""
    result = await session.mtp.transaction(OperationCode.GET_OBJECT_PROPS_SUPPORTED, 0x1234)
    assert result.response.ok
    assert ObjectProp.OBJECT_FILE_NAME in parse_u16_array(result.data)


@pytest.mark.parametrize("code", sorted(PROPERTIES))
async def test_every_property_has_a_description(session: Device, code: int) -> None:
    result = await session.mtp.transaction(OperationCode.GET_OBJECT_PROP_DESC, code, 0x3000)
    assert result.response.ok
    desc = ObjectPropDesc.parse(result.data)
    assert desc.property_code == code
    assert desc.datatype == PROPERTIES[code].datatype


async def test_the_file_name_can_be_set_so_explorer_offers_rename(session: Device) -> None:
    result = await session.mtp.transaction(
        OperationCode.GET_OBJECT_PROP_DESC, ObjectProp.OBJECT_FILE_NAME, 0x3000
    )
    assert ObjectPropDesc.parse(result.data).get_set == 1


async def test_object_size_is_64_bit_and_puid_128_bit(session: Device) -> None:
    assert PROPERTIES[ObjectProp.OBJECT_SIZE].datatype == DataType.UINT64
    assert PROPERTIES[ObjectProp.PERSISTENT_UNIQUE_OBJECT_IDENTIFIER].datatype == DataType.UINT128


async def test_an_unknown_property_has_no_description(session: Device) -> None:
    result = await session.mtp.transaction(OperationCode.GET_OBJECT_PROP_DESC, 0xDC99, 0x3000)
    assert result.code == ResponseCode.INVALID_OBJECT_PROP_CODE


async def test_a_description_is_given_for_any_format(session: Device) -> None:
    result = await session.mtp.transaction(
        OperationCode.GET_OBJECT_PROP_DESC, ObjectProp.OBJECT_SIZE, 0x1234
    )
    assert result.response.ok
    assert ObjectPropDesc.parse(result.data).property_code == ObjectProp.OBJECT_SIZE


# -- 9803 ---------------------------------------------------------------------------------


async def test_property_values_describe_the_file(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    assert await prop(tree, a, ObjectProp.OBJECT_FILE_NAME) == "a.txt"
    assert await prop(tree, a, ObjectProp.NAME) == "a.txt"
    assert await prop(tree, a, ObjectProp.OBJECT_SIZE) == 5
    assert await prop(tree, a, ObjectProp.STORAGE_ID) == tree.storage_id
    assert await prop(tree, a, ObjectProp.OBJECT_FORMAT) == ObjectFormat.TEXT
    assert await prop(tree, a, ObjectProp.PARENT_OBJECT) == 0
    assert await prop(tree, a, ObjectProp.PROTECTION_STATUS) == 0
    assert await prop(tree, a, ObjectProp.PERSISTENT_UNIQUE_OBJECT_IDENTIFIER) != 0


async def test_a_folder_is_an_association_in_its_properties(tree: Device) -> None:
    dcim = await handle_of(tree.mtp, "DCIM")
    assert await prop(tree, dcim, ObjectProp.OBJECT_FORMAT) == ObjectFormat.ASSOCIATION
    assert await prop(tree, dcim, ObjectProp.OBJECT_SIZE) == 0
    assert await prop(tree, dcim, ObjectProp.ASSOCIATION_TYPE) == 1


async def test_the_size_property_holds_sizes_beyond_4_gib(session: Device) -> None:
    with open(session.root / "big.bin", "wb") as f:
        f.truncate(5 << 30)
    handle = await handle_of(session.mtp, "big.bin")
    assert await prop(session, handle, ObjectProp.OBJECT_SIZE) == 5 << 30


async def test_the_parent_property_names_the_folder(tree: Device) -> None:
    dcim = await handle_of(tree.mtp, "DCIM")
    c = await handle_of(tree.mtp, "DCIM/c.jpg")
    assert await prop(tree, c, ObjectProp.PARENT_OBJECT) == dcim


async def test_an_unknown_property_value_is_refused(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    result = await tree.mtp.transaction(OperationCode.GET_OBJECT_PROP_VALUE, a, 0xDC99)
    assert result.code == ResponseCode.INVALID_OBJECT_PROP_CODE


async def test_a_property_of_an_unknown_object_is_refused(session: Device) -> None:
    result = await session.mtp.transaction(
        OperationCode.GET_OBJECT_PROP_VALUE, 0x8888, ObjectProp.OBJECT_SIZE
    )
    assert result.code == ResponseCode.INVALID_OBJECT_HANDLE


# -- 9804 ---------------------------------------------------------------------------------


async def test_setting_the_file_name_renames_on_disk(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    assert await set_prop(tree, a, ObjectProp.OBJECT_FILE_NAME, encode_string("z.txt")) == (
        ResponseCode.OK
    )
    assert (tree.root / "z.txt").read_text() == "alpha"
    assert not (tree.root / "a.txt").exists()


async def test_the_handle_stays_valid_after_a_rename(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    await set_prop(tree, a, ObjectProp.OBJECT_FILE_NAME, encode_string("z.txt"))
    assert (await tree.mtp.object_info(a)).filename == "z.txt"
    assert await tree.mtp.get_object(a) == b"alpha"


async def test_renaming_a_folder_keeps_the_handles_inside_it(tree: Device) -> None:
    dcim = await handle_of(tree.mtp, "DCIM")
    d = await handle_of(tree.mtp, "DCIM/Sub/d.png")
    await set_prop(tree, dcim, ObjectProp.OBJECT_FILE_NAME, encode_string("Camera"))
    assert (tree.root / "Camera" / "Sub" / "d.png").exists()
    assert await tree.mtp.get_object(d) == b"d"


async def test_setting_the_name_property_renames_too(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    assert await set_prop(tree, a, ObjectProp.NAME, encode_string("n.txt")) == ResponseCode.OK
    assert (tree.root / "n.txt").exists()


async def test_renaming_to_the_same_name_is_fine(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    code = await set_prop(tree, a, ObjectProp.OBJECT_FILE_NAME, encode_string("a.txt"))
    assert code == ResponseCode.OK


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../escape", "nul\x00name"])
async def test_renaming_to_an_impossible_name_is_an_invalid_value(tree: Device, name: str) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    code = await set_prop(tree, a, ObjectProp.OBJECT_FILE_NAME, encode_string(name))
    assert code == ResponseCode.INVALID_OBJECT_PROP_VALUE
    assert (tree.root / "a.txt").read_text() == "alpha"
    assert sorted(p.name for p in tree.root.iterdir()) == ["DCIM", "a.txt", "b.jpg"]


async def test_renaming_onto_an_existing_name_is_refused(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    code = await set_prop(tree, a, ObjectProp.OBJECT_FILE_NAME, encode_string("b.jpg"))
    assert code == ResponseCode.INVALID_PARAMETER
    assert (tree.root / "b.jpg").read_bytes() == b"jpeg"


async def test_setting_the_modification_date_changes_the_mtime(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    code = await set_prop(tree, a, ObjectProp.DATE_MODIFIED, encode_string("20190807T060504"))
    assert code == ResponseCode.OK
    assert (tree.root / "a.txt").stat().st_mtime == time.mktime((2019, 8, 7, 6, 5, 4, 0, 0, -1))


async def test_a_bad_modification_date_is_an_invalid_value(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    code = await set_prop(tree, a, ObjectProp.DATE_MODIFIED, encode_string("yesterday"))
    assert code == ResponseCode.INVALID_OBJECT_PROP_VALUE


async def test_a_read_only_property_cannot_be_set(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    code = await set_prop(tree, a, ObjectProp.OBJECT_SIZE, struct.pack("<Q", 1))
    assert code == ResponseCode.ACCESS_DENIED


async def test_a_value_of_the_wrong_size_is_an_invalid_format(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    code = await set_prop(tree, a, ObjectProp.OBJECT_FILE_NAME, encode_string("x") + b"junk")
    assert code == ResponseCode.INVALID_OBJECT_PROP_FORMAT


async def test_setting_an_unknown_property_is_refused(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    assert await set_prop(tree, a, 0xDC99, b"\x00") == ResponseCode.INVALID_OBJECT_PROP_CODE


async def test_setting_a_property_of_an_unknown_object_is_refused(session: Device) -> None:
    code = await set_prop(session, 0x7777, ObjectProp.OBJECT_FILE_NAME, encode_string("x"))
    assert code == ResponseCode.INVALID_OBJECT_HANDLE


# -- 9805 ---------------------------------------------------------------------------------


async def test_one_object_depth_0_gives_all_its_properties(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    items = await prop_list(tree, a)
    assert {i.handle for i in items} == {a}
    assert {i.code for i in items} == set(PROPERTIES)


async def test_prop_list_values_agree_with_single_values(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    for item in await prop_list(tree, a):
        assert item.value == await prop(tree, a, item.code), hex(item.code)


async def test_one_property_of_one_object(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    items = await prop_list(tree, a, code=ObjectProp.OBJECT_SIZE)
    assert items == [PropListItem(a, ObjectProp.OBJECT_SIZE, DataType.UINT64, 5)]


async def test_every_object_with_handle_and_depth_0xffffffff(tree: Device) -> None:
    items = await prop_list(tree, ALL, depth=ALL)
    assert names_in(items) == {"a.txt", "b.jpg", "DCIM", "c.jpg", "Sub", "d.png"}
    assert len(items) == 6 * len(PROPERTIES)


async def test_handle_0xffffffff_with_depth_0_is_also_every_object(tree: Device) -> None:
    items = await prop_list(tree, ALL, code=ObjectProp.OBJECT_FILE_NAME, depth=0)
    assert names_in(items) == {"a.txt", "b.jpg", "DCIM", "c.jpg", "Sub", "d.png"}


async def test_handle_0_depth_1_gives_the_root_children(tree: Device) -> None:
    items = await prop_list(tree, 0, code=ObjectProp.OBJECT_FILE_NAME, depth=1)
    assert names_in(items) == {"a.txt", "b.jpg", "DCIM"}


async def test_handle_0_depth_0xffffffff_gives_every_object(tree: Device) -> None:
    items = await prop_list(tree, 0, code=ObjectProp.OBJECT_FILE_NAME, depth=ALL)
    assert names_in(items) == {"a.txt", "b.jpg", "DCIM", "c.jpg", "Sub", "d.png"}


async def test_a_folder_depth_1_gives_its_children(tree: Device) -> None:
    dcim = await handle_of(tree.mtp, "DCIM")
    items = await prop_list(tree, dcim, code=ObjectProp.OBJECT_FILE_NAME, depth=1)
    assert {"c.jpg", "Sub"} <= names_in(items) <= {"c.jpg", "Sub", "DCIM"}


async def test_a_folder_depth_0xffffffff_gives_its_whole_tree(tree: Device) -> None:
    dcim = await handle_of(tree.mtp, "DCIM")
    items = await prop_list(tree, dcim, code=ObjectProp.OBJECT_FILE_NAME, depth=ALL)
    assert {"c.jpg", "Sub", "d.png"} <= names_in(items) <= {"c.jpg", "Sub", "d.png", "DCIM"}


async def test_a_format_filter_applies_to_the_list(tree: Device) -> None:
    items = await prop_list(
        tree, ALL, fmt=ObjectFormat.EXIF_JPEG, code=ObjectProp.OBJECT_FILE_NAME, depth=ALL
    )
    assert names_in(items) == {"b.jpg", "c.jpg"}


async def test_a_format_filter_that_does_not_match_the_object_gives_nothing(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    assert await prop_list(tree, a, fmt=ObjectFormat.PNG) == []


async def test_a_group_only_query_is_refused_as_unsupported_by_group(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    result = await tree.mtp.transaction(OperationCode.GET_OBJECT_PROP_LIST, a, 0, 0, 1, 0)
    assert result.code == ResponseCode.SPECIFICATION_BY_GROUP_UNSUPPORTED == 0xA807


async def test_property_0_without_a_group_is_not_supported(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    result = await tree.mtp.transaction(OperationCode.GET_OBJECT_PROP_LIST, a, 0, 0, 0, 0)
    assert result.code == ResponseCode.PARAMETER_NOT_SUPPORTED


async def test_depth_2_is_refused_as_unsupported_by_depth(tree: Device) -> None:
    dcim = await handle_of(tree.mtp, "DCIM")
    result = await tree.mtp.transaction(OperationCode.GET_OBJECT_PROP_LIST, dcim, 0, ALL, 0, 2)
    assert result.code == ResponseCode.SPECIFICATION_BY_DEPTH_UNSUPPORTED == 0xA808


async def test_an_unsupported_property_in_a_list_query_is_refused(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    result = await tree.mtp.transaction(OperationCode.GET_OBJECT_PROP_LIST, a, 0, 0xDC99, 0, 0)
    assert result.code == ResponseCode.OBJECT_PROP_NOT_SUPPORTED


async def test_a_list_for_an_unknown_object_is_refused(session: Device) -> None:
    result = await session.mtp.transaction(OperationCode.GET_OBJECT_PROP_LIST, 0x3333, 0, ALL, 0, 0)
    assert result.code == ResponseCode.INVALID_OBJECT_HANDLE


# -- 9806 ---------------------------------------------------------------------------------


async def test_set_object_prop_list_applies_every_item(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    b = await handle_of(tree.mtp, "b.jpg")
    data = build_prop_list(
        [
            PropListItem(a, ObjectProp.OBJECT_FILE_NAME, DataType.STR, "a2.txt"),
            PropListItem(b, ObjectProp.OBJECT_FILE_NAME, DataType.STR, "b2.jpg"),
        ]
    )
    result = await tree.mtp.transaction(OperationCode.SET_OBJECT_PROP_LIST, data=data)
    assert result.response.ok
    assert (tree.root / "a2.txt").exists()
    assert (tree.root / "b2.jpg").exists()


async def test_set_object_prop_list_names_the_index_of_the_failing_item(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    data = build_prop_list(
        [
            PropListItem(a, ObjectProp.OBJECT_FILE_NAME, DataType.STR, "ok.txt"),
            PropListItem(a, ObjectProp.OBJECT_SIZE, DataType.UINT64, 1),
        ]
    )
    result = await tree.mtp.transaction(OperationCode.SET_OBJECT_PROP_LIST, data=data)
    assert result.code == ResponseCode.ACCESS_DENIED
    assert result.response.params == (1,)
    assert (tree.root / "ok.txt").exists()


async def test_set_object_prop_list_with_a_wrong_datatype_is_an_invalid_format(
    tree: Device,
) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    data = build_prop_list([PropListItem(a, ObjectProp.OBJECT_FILE_NAME, DataType.UINT32, 7)])
    result = await tree.mtp.transaction(OperationCode.SET_OBJECT_PROP_LIST, data=data)
    assert result.code == ResponseCode.INVALID_OBJECT_PROP_FORMAT
    assert result.response.params == (0,)


async def test_a_malformed_set_object_prop_list_is_an_invalid_dataset(tree: Device) -> None:
    result = await tree.mtp.transaction(OperationCode.SET_OBJECT_PROP_LIST, data=b"\x05\x00")
    assert result.code == ResponseCode.INVALID_DATASET


# -- 9808 ---------------------------------------------------------------------------------


def new_object(name: str, *extra: PropListItem) -> bytes:
    return build_prop_list(
        [PropListItem(0, ObjectProp.OBJECT_FILE_NAME, DataType.STR, name), *extra]
    )


async def send_prop_list(
    device: Device, data: bytes, size: int, fmt: int = 0x3000, parent: int = ALL
) -> Any:
    return await device.mtp.transaction(
        OperationCode.SEND_OBJECT_PROP_LIST,
        device.storage_id,
        parent,
        fmt,
        size >> 32,
        size & 0xFFFFFFFF,
        data=data,
    )


async def test_send_object_prop_list_then_send_object_creates_the_file(session: Device) -> None:
    result = await send_prop_list(session, new_object("pl.bin"), 6)
    assert result.response.ok
    sid, parent, handle, failed = result.response.params
    assert (sid, parent, failed) == (session.storage_id, ALL, 0)
    sent = await session.mtp.transaction(OperationCode.SEND_OBJECT, data=b"123456")
    assert sent.response.ok
    assert (session.root / "pl.bin").read_bytes() == b"123456"
    assert (await session.mtp.object_info(handle)).filename == "pl.bin"


async def test_send_object_prop_list_takes_the_size_as_64_bits(session: Device) -> None:
    storage = session.responder.framework.storage(session.storage_id)
    real = os.statvfs(session.root)

    def roomy(path: str) -> Any:
        return os.statvfs_result((*real[:4], 1 << 40, *real[5:]))

    storage.statvfs = roomy  # type: ignore[attr-defined]
    result = await send_prop_list(session, new_object("huge.bin"), (1 << 32) + 5)
    assert result.response.ok
    # Five bytes are not the 4 GiB + 5 announced.
    sent = await session.mtp.transaction(OperationCode.SEND_OBJECT, data=b"12345")
    assert sent.code == ResponseCode.INCOMPLETE_TRANSFER
    assert not (session.root / "huge.bin").exists()


async def test_send_object_prop_list_refuses_what_does_not_fit(session: Device) -> None:
    result = await send_prop_list(session, new_object("toolarge.bin"), 1 << 60)
    assert result.code == ResponseCode.STORE_FULL
    assert list(session.root.iterdir()) == []


async def test_send_object_prop_list_of_a_folder_creates_it_at_once(session: Device) -> None:
    result = await send_prop_list(session, new_object("Album"), 0, fmt=ObjectFormat.ASSOCIATION)
    assert result.response.ok
    assert (session.root / "Album").is_dir()


async def test_send_object_prop_list_applies_the_modification_date(session: Device) -> None:
    data = new_object(
        "dated.bin",
        PropListItem(0, ObjectProp.DATE_MODIFIED, DataType.STR, "20180101T000000"),
    )
    await send_prop_list(session, data, 1)
    await session.mtp.transaction(OperationCode.SEND_OBJECT, data=b"x")
    expected = time.mktime((2018, 1, 1, 0, 0, 0, 0, 0, -1))
    assert (session.root / "dated.bin").stat().st_mtime == expected


async def test_send_object_prop_list_without_a_file_name_is_an_invalid_dataset(
    session: Device,
) -> None:
    data = build_prop_list([PropListItem(0, ObjectProp.OBJECT_SIZE, DataType.UINT64, 1)])
    result = await send_prop_list(session, data, 1)
    assert result.code == ResponseCode.INVALID_DATASET


# -- persistent ids ---------------------------------------------------------------------


async def test_puids_differ_between_objects(tree: Device) -> None:
    puid = ObjectProp.PERSISTENT_UNIQUE_OBJECT_IDENTIFIER
    items = await prop_list(tree, ALL, code=puid, depth=ALL)
    puids = [i.value for i in items]
    assert len(set(puids)) == len(puids) == 6


async def test_a_puid_is_stable_across_sessions(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    before = await prop(tree, a, ObjectProp.PERSISTENT_UNIQUE_OBJECT_IDENTIFIER)
    await tree.mtp.close_session()
    await tree.mtp.open_session(2)
    a = await handle_of(tree.mtp, "a.txt")
    assert await prop(tree, a, ObjectProp.PERSISTENT_UNIQUE_OBJECT_IDENTIFIER) == before


async def test_a_puid_survives_a_rename(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    before = await prop(tree, a, ObjectProp.PERSISTENT_UNIQUE_OBJECT_IDENTIFIER)
    await set_prop(tree, a, ObjectProp.OBJECT_FILE_NAME, encode_string("renamed.txt"))
    assert await prop(tree, a, ObjectProp.PERSISTENT_UNIQUE_OBJECT_IDENTIFIER) == before


async def test_a_puid_is_stable_across_a_responder_restart(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = make_config(tmp_path)
    (tmp_path / "storage" / "keep.txt").write_text("k")
    puids = []
    for _ in range(2):
        async with trio.open_nursery() as inner:
            device = await start_device(inner, tmp_path, config)
            await device.mtp.open_session()
            handle = await handle_of(device.mtp, "keep.txt")
            puids.append(await prop(device, handle, ObjectProp.PERSISTENT_UNIQUE_OBJECT_IDENTIFIER))
            inner.cancel_scope.cancel()
    assert puids[0] == puids[1] != 0


def test_every_property_value_encodes_with_its_datatype() -> None:
    for definition in PROPERTIES.values():
        assert encode_value(definition.datatype, definition.default) is not None


def parse_u16_array(data: bytes | None) -> list[int]:
    assert data is not None
    (count,) = struct.unpack_from("<I", data)
    return list(struct.unpack_from(f"<{count}H", data, 4))
