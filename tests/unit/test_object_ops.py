"""Objects: enumeration, info, reading, deleting, sending, moving, copying."""

from __future__ import annotations

import os
import time

import pytest

from mtp_responder.core.codes import ObjectFormat, OperationCode, ResponseCode
from mtp_responder.core.datasets import parse_u32_array
from mtp_responder.testing.initiator import Result

from .conftest import Device, handle_of, names_to_handles, object_info

ALL = 0xFFFFFFFF
PACKET = 512
HEADER = 12


@pytest.fixture
def tree(session: Device) -> Device:
    """root: a.txt, b.jpg, DCIM/{c.jpg, Sub/d.png}, empty/"""
    root = session.root
    (root / "a.txt").write_text("alpha")
    (root / "b.jpg").write_bytes(b"\xff\xd8jpeg")
    (root / "DCIM" / "Sub").mkdir(parents=True)
    (root / "DCIM" / "c.jpg").write_bytes(b"\xff\xd8c")
    (root / "DCIM" / "Sub" / "d.png").write_bytes(b"\x89PNG")
    (root / "empty").mkdir()
    return session


async def names(device: Device, handles: list[int]) -> set[str]:
    return {(await device.mtp.object_info(h)).filename for h in handles}


def leftovers(device: Device) -> list[str]:
    """Anything but the expected files: partial uploads, temporary names."""
    return [
        os.path.join(d, f)
        for d, _, files in os.walk(device.root)
        for f in files
        if f.startswith(".")
    ]


# -- enumeration -------------------------------------------------------------------


async def test_parent_0xffffffff_lists_the_root_children(tree: Device) -> None:
    handles = await tree.mtp.object_handles(ALL, parent=ALL)
    assert await names(tree, handles) == {"a.txt", "b.jpg", "DCIM", "empty"}


async def test_parent_0_lists_every_object_in_the_storage(tree: Device) -> None:
    handles = await tree.mtp.object_handles(ALL, parent=0)
    everything = {"a.txt", "b.jpg", "DCIM", "empty", "c.jpg", "Sub", "d.png"}
    assert await names(tree, handles) == everything


async def test_a_folder_handle_lists_its_children(tree: Device) -> None:
    dcim = await handle_of(tree.mtp, "DCIM")
    assert await names(tree, await tree.mtp.object_handles(ALL, parent=dcim)) == {"c.jpg", "Sub"}


async def test_an_empty_folder_has_no_children(tree: Device) -> None:
    empty = await handle_of(tree.mtp, "empty")
    assert await tree.mtp.object_handles(ALL, parent=empty) == []


async def test_the_storage_id_may_be_named_instead_of_all(tree: Device) -> None:
    handles = await tree.mtp.object_handles(tree.storage_id, parent=ALL)
    assert len(handles) == 4


async def test_a_format_filter_keeps_only_that_format(tree: Device) -> None:
    handles = await tree.mtp.object_handles(ALL, parent=0, format_code=ObjectFormat.EXIF_JPEG)
    assert await names(tree, handles) == {"b.jpg", "c.jpg"}


async def test_the_association_format_lists_folders(tree: Device) -> None:
    handles = await tree.mtp.object_handles(ALL, parent=0, format_code=ObjectFormat.ASSOCIATION)
    assert await names(tree, handles) == {"DCIM", "Sub", "empty"}


async def test_handles_are_stable_between_listings(tree: Device) -> None:
    first = await tree.mtp.object_handles(ALL, parent=0)
    second = await tree.mtp.object_handles(ALL, parent=0)
    assert sorted(first) == sorted(second)
    assert len(set(first)) == len(first)


async def test_get_num_objects_counts_what_get_object_handles_lists(tree: Device) -> None:
    for parent, fmt in ((ALL, 0), (0, 0), (0, ObjectFormat.EXIF_JPEG)):
        result = await tree.mtp.transaction(OperationCode.GET_NUM_OBJECTS, ALL, fmt, parent)
        assert result.response.ok
        handles = await tree.mtp.object_handles(ALL, parent=parent, format_code=fmt)
        assert result.response.params == (len(handles),)


async def test_listing_under_a_file_is_an_invalid_parent(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    result = await tree.mtp.transaction(OperationCode.GET_OBJECT_HANDLES, ALL, 0, a)
    assert result.code == ResponseCode.INVALID_PARENT_OBJECT


async def test_listing_under_an_unknown_handle_is_refused(tree: Device) -> None:
    result = await tree.mtp.transaction(OperationCode.GET_OBJECT_HANDLES, ALL, 0, 0x7777)
    assert result.code in (ResponseCode.INVALID_OBJECT_HANDLE, ResponseCode.INVALID_PARENT_OBJECT)


async def test_listing_an_unknown_storage_is_an_invalid_storage_id(tree: Device) -> None:
    result = await tree.mtp.transaction(OperationCode.GET_OBJECT_HANDLES, 0x00090001, 0, ALL)
    assert result.code == ResponseCode.INVALID_STORAGE_ID


async def test_a_folder_of_a_thousand_files_lists_quickly(session: Device) -> None:
    folder = session.root / "many"
    folder.mkdir()
    for i in range(1000):
        (folder / f"f{i:04}.txt").write_bytes(b"")
    handle = await handle_of(session.mtp, "many")
    started = time.monotonic()
    handles = await session.mtp.object_handles(ALL, parent=handle)
    assert len(handles) == 1000
    assert time.monotonic() - started < 1.0


# -- ObjectInfo -----------------------------------------------------------------------


async def test_object_info_of_a_root_file(tree: Device) -> None:
    info = await tree.mtp.object_info(await handle_of(tree.mtp, "a.txt"))
    assert info.filename == "a.txt"
    assert info.storage_id == tree.storage_id
    assert info.object_format == ObjectFormat.TEXT
    assert info.compressed_size == 5
    assert info.parent_object == 0
    assert info.association_type == 0
    assert info.protection_status == 0


async def test_object_info_of_a_folder_is_an_association(tree: Device) -> None:
    info = await tree.mtp.object_info(await handle_of(tree.mtp, "DCIM"))
    assert info.object_format == ObjectFormat.ASSOCIATION
    assert info.association_type == 1
    assert info.compressed_size == 0


async def test_object_info_names_the_parent_folder(tree: Device) -> None:
    sub = await handle_of(tree.mtp, "DCIM/Sub")
    info = await tree.mtp.object_info(await handle_of(tree.mtp, "DCIM/Sub/d.png"))
    assert info.parent_object == sub
    assert info.object_format == ObjectFormat.PNG


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("x.jpg", ObjectFormat.EXIF_JPEG),
        ("x.JPEG", ObjectFormat.EXIF_JPEG),
        ("x.png", ObjectFormat.PNG),
        ("x.mp3", ObjectFormat.MP3),
        ("x.mp4", ObjectFormat.MP4_CONTAINER),
        ("x.txt", ObjectFormat.TEXT),
        ("x.bin", ObjectFormat.UNDEFINED),
        ("noext", ObjectFormat.UNDEFINED),
    ],
)
async def test_formats_follow_the_file_type(session: Device, name: str, fmt: int) -> None:
    (session.root / name).write_bytes(b"x")
    info = await session.mtp.object_info(await handle_of(session.mtp, name))
    assert info.object_format == fmt


async def test_object_info_dates_are_the_files_modification_time(session: Device) -> None:
    path = session.root / "dated.txt"
    path.write_text("x")
    stamp = time.mktime((2021, 6, 5, 4, 3, 2, 0, 0, -1))
    os.utime(path, (stamp, stamp))
    info = await session.mtp.object_info(await handle_of(session.mtp, "dated.txt"))
    assert info.date_modified == "20210605T040302"


async def test_object_info_reports_a_write_protected_file(session: Device) -> None:
    path = session.root / "locked.txt"
    path.write_text("x")
    path.chmod(0o444)
    info = await session.mtp.object_info(await handle_of(session.mtp, "locked.txt"))
    assert info.protection_status == 1


async def test_object_info_sees_a_size_changed_behind_the_responders_back(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    (tree.root / "a.txt").write_text("alpha and more")
    assert (await tree.mtp.object_info(a)).compressed_size == 14


async def test_object_info_of_an_unknown_handle_is_invalid(session: Device) -> None:
    for handle in (0, 0x1234, ALL):
        result = await session.mtp.transaction(OperationCode.GET_OBJECT_INFO, handle)
        assert result.code == ResponseCode.INVALID_OBJECT_HANDLE, hex(handle)


# -- reading -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        PACKET - HEADER - 1,
        PACKET - HEADER,  # the container fills one packet: a ZLP must follow
        PACKET - HEADER + 1,
        511,
        512,
        513,
        4 * PACKET - HEADER,
        256 * 1024 - HEADER,  # the provider's chunk size, packet aligned
        256 * 1024,
        1024 * 1024 + 7,
    ],
)
async def test_get_object_returns_every_byte(session: Device, size: int) -> None:
    payload = os.urandom(size)
    (session.root / "blob.bin").write_bytes(payload)
    handle = await handle_of(session.mtp, "blob.bin")
    assert await session.mtp.get_object(handle) == payload
    # The link is still in step: the next transaction works.
    assert await session.mtp.storage_ids() == [session.storage_id]


async def test_get_object_of_a_folder_is_refused(tree: Device) -> None:
    result = await tree.mtp.transaction(OperationCode.GET_OBJECT, await handle_of(tree.mtp, "DCIM"))
    assert result.code == ResponseCode.INVALID_OBJECT_HANDLE
    assert result.data is None


async def test_get_object_of_an_unknown_handle_is_invalid(session: Device) -> None:
    result = await session.mtp.transaction(OperationCode.GET_OBJECT, 0x4242)
    assert result.code == ResponseCode.INVALID_OBJECT_HANDLE
    assert result.data is None


async def test_get_object_of_a_file_deleted_behind_the_responders_back(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    (tree.root / "a.txt").unlink()
    result = await tree.mtp.transaction(OperationCode.GET_OBJECT, a)
    assert result.code == ResponseCode.INVALID_OBJECT_HANDLE


@pytest.mark.parametrize(
    ("offset", "length", "expected"),
    [
        (0, 10, slice(0, 10)),
        (100, 50, slice(100, 150)),
        (990, 100, slice(990, 1000)),  # past the end: cut at the end
        (0, 0xFFFFFFFF, slice(0, 1000)),
        (1000, 10, slice(1000, 1000)),  # at the end: nothing
        (500, PACKET - HEADER, slice(500, 1000)),
    ],
)
async def test_get_partial_object_returns_the_range_and_its_length(
    session: Device, offset: int, length: int, expected: slice
) -> None:
    payload = os.urandom(1000)
    (session.root / "p.bin").write_bytes(payload)
    handle = await handle_of(session.mtp, "p.bin")
    result = await session.mtp.transaction(OperationCode.GET_PARTIAL_OBJECT, handle, offset, length)
    assert result.response.ok
    assert result.data == payload[expected]
    assert result.response.params == (len(payload[expected]),)


async def test_get_partial_object_beyond_the_end_is_an_invalid_parameter(session: Device) -> None:
    (session.root / "p.bin").write_bytes(b"x" * 10)
    handle = await handle_of(session.mtp, "p.bin")
    result = await session.mtp.transaction(OperationCode.GET_PARTIAL_OBJECT, handle, 11, 1)
    assert result.code == ResponseCode.INVALID_PARAMETER


async def test_get_partial_object_64_reads_at_a_64_bit_offset(session: Device) -> None:
    payload = os.urandom(5000)
    (session.root / "p.bin").write_bytes(payload)
    handle = await handle_of(session.mtp, "p.bin")
    result = await session.mtp.transaction(OperationCode.GET_PARTIAL_OBJECT_64, handle, 4000, 0, 64)
    assert result.data == payload[4000:4064]
    assert result.response.params == (64,)


async def test_get_partial_object_64_with_a_high_offset_beyond_the_end_is_refused(
    session: Device,
) -> None:
    (session.root / "p.bin").write_bytes(b"x")
    handle = await handle_of(session.mtp, "p.bin")
    result = await session.mtp.transaction(OperationCode.GET_PARTIAL_OBJECT_64, handle, 0, 1, 10)
    assert result.code == ResponseCode.INVALID_PARAMETER


async def test_get_partial_object_of_a_sparse_file_past_4_gib(session: Device) -> None:
    path = session.root / "big.bin"
    with open(path, "wb") as f:
        f.seek((5 << 30) - 3)
        f.write(b"end")
    handle = await handle_of(session.mtp, "big.bin")
    offset = (5 << 30) - 3
    result = await session.mtp.transaction(
        OperationCode.GET_PARTIAL_OBJECT_64, handle, offset & 0xFFFFFFFF, offset >> 32, 100
    )
    assert result.data == b"end"
    info = await session.mtp.object_info(handle)
    assert info.compressed_size == 0xFFFFFFFF


async def test_get_thumb_says_there_is_no_thumbnail(tree: Device) -> None:
    result = await tree.mtp.transaction(OperationCode.GET_THUMB, await handle_of(tree.mtp, "b.jpg"))
    assert result.code == ResponseCode.NO_THUMBNAIL_PRESENT


async def test_get_thumb_of_an_unknown_handle_is_invalid(session: Device) -> None:
    result = await session.mtp.transaction(OperationCode.GET_THUMB, 0x999)
    assert result.code == ResponseCode.INVALID_OBJECT_HANDLE


# -- deleting ------------------------------------------------------------------------------


async def test_delete_object_removes_the_file(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    assert (await tree.mtp.transaction(OperationCode.DELETE_OBJECT, a)).response.ok
    assert not (tree.root / "a.txt").exists()


async def test_a_deleted_handle_is_invalid_afterwards(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    await tree.mtp.transaction(OperationCode.DELETE_OBJECT, a)
    result = await tree.mtp.transaction(OperationCode.GET_OBJECT_INFO, a)
    assert result.code == ResponseCode.INVALID_OBJECT_HANDLE


async def test_deleting_a_folder_deletes_its_tree(tree: Device) -> None:
    c = await handle_of(tree.mtp, "DCIM/c.jpg")
    dcim = await handle_of(tree.mtp, "DCIM")
    assert (await tree.mtp.transaction(OperationCode.DELETE_OBJECT, dcim)).response.ok
    assert not (tree.root / "DCIM").exists()
    result = await tree.mtp.transaction(OperationCode.GET_OBJECT_INFO, c)
    assert result.code == ResponseCode.INVALID_OBJECT_HANDLE


async def test_delete_all_empties_the_storage(tree: Device) -> None:
    assert (await tree.mtp.transaction(OperationCode.DELETE_OBJECT, ALL, 0)).response.ok
    assert list(tree.root.iterdir()) == []


async def test_delete_all_of_one_format_keeps_the_others(tree: Device) -> None:
    result = await tree.mtp.transaction(OperationCode.DELETE_OBJECT, ALL, ObjectFormat.EXIF_JPEG)
    assert result.response.ok
    assert not (tree.root / "b.jpg").exists()
    assert not (tree.root / "DCIM" / "c.jpg").exists()
    assert (tree.root / "a.txt").exists()
    assert (tree.root / "DCIM" / "Sub" / "d.png").exists()


async def test_delete_all_folders_deletes_nested_ones_without_partial_deletion(
    tree: Device,
) -> None:
    result = await tree.mtp.transaction(OperationCode.DELETE_OBJECT, ALL, ObjectFormat.ASSOCIATION)
    assert result.response.ok
    assert sorted(p.name for p in tree.root.iterdir()) == ["a.txt", "b.jpg"]


async def test_deleting_a_write_protected_file_is_refused(session: Device) -> None:
    path = session.root / "locked.txt"
    path.write_text("x")
    path.chmod(0o444)
    handle = await handle_of(session.mtp, "locked.txt")
    result = await session.mtp.transaction(OperationCode.DELETE_OBJECT, handle)
    assert result.code == ResponseCode.OBJECT_WRITE_PROTECTED
    assert path.exists()


async def test_deleting_a_folder_with_a_protected_file_is_a_partial_deletion(
    session: Device,
) -> None:
    (session.root / "f").mkdir()
    (session.root / "f" / "gone.txt").write_text("x")
    (session.root / "f" / "kept.txt").write_text("x")
    (session.root / "f" / "kept.txt").chmod(0o444)
    handle = await handle_of(session.mtp, "f")
    result = await session.mtp.transaction(OperationCode.DELETE_OBJECT, handle)
    assert result.code == ResponseCode.PARTIAL_DELETION
    assert sorted(p.name for p in (session.root / "f").iterdir()) == ["kept.txt"]


async def test_deleting_an_unknown_handle_is_invalid(session: Device) -> None:
    result = await session.mtp.transaction(OperationCode.DELETE_OBJECT, 0x5555)
    assert result.code == ResponseCode.INVALID_OBJECT_HANDLE


# -- sending -------------------------------------------------------------------------------


async def send_info(device: Device, dataset: bytes, storage: int = 0, parent: int = ALL) -> Result:
    return await device.mtp.transaction(
        OperationCode.SEND_OBJECT_INFO, storage, parent, data=dataset
    )


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        PACKET - HEADER - 1,
        PACKET - HEADER,  # container of exactly one packet, then a ZLP
        PACKET - HEADER + 1,
        511,
        512,
        513,
        8 * PACKET - HEADER,
        64 * 1024 - HEADER,
        300 * 1024,
    ],
)
async def test_send_object_stores_every_byte(session: Device, size: int) -> None:
    payload = os.urandom(size)
    handle = await session.mtp.send_object("up.bin", payload, storage_id=session.storage_id)
    assert (session.root / "up.bin").read_bytes() == payload
    assert await session.mtp.get_object(handle) == payload
    assert leftovers(session) == []


async def test_send_object_info_answers_storage_parent_and_handle(session: Device) -> None:
    result = await session.mtp.transaction(
        OperationCode.SEND_OBJECT_INFO, session.storage_id, ALL, data=object_info("n.txt", 1)
    )
    assert result.response.ok
    sid, parent, handle = result.response.params
    assert sid == session.storage_id
    assert parent == ALL
    assert handle not in (0, ALL)


async def test_the_new_handle_is_queryable_at_once(session: Device) -> None:
    handle = await session.mtp.send_object("fresh.txt", b"hello")
    info = await session.mtp.object_info(handle)
    assert (info.filename, info.compressed_size, info.parent_object) == ("fresh.txt", 5, 0)


@pytest.mark.parametrize("parent", [0, ALL])
async def test_parent_0_and_0xffffffff_both_mean_the_root(session: Device, parent: int) -> None:
    await session.mtp.send_object("r.txt", b"r", parent=parent)
    assert (session.root / "r.txt").read_bytes() == b"r"


async def test_storage_0_lets_the_responder_choose(session: Device) -> None:
    await session.mtp.send_object("s.txt", b"s", storage_id=0)
    assert (session.root / "s.txt").exists()


async def test_send_object_into_a_subfolder(tree: Device) -> None:
    sub = await handle_of(tree.mtp, "DCIM/Sub")
    handle = await tree.mtp.send_object("new.jpg", b"img", parent=sub)
    assert (tree.root / "DCIM" / "Sub" / "new.jpg").read_bytes() == b"img"
    assert (await tree.mtp.object_info(handle)).parent_object == sub


async def test_send_object_with_storage_0_follows_its_parent(tree: Device) -> None:
    dcim = await handle_of(tree.mtp, "DCIM")
    await tree.mtp.send_object("x.txt", b"x", storage_id=0, parent=dcim)
    assert (tree.root / "DCIM" / "x.txt").exists()


async def test_send_object_applies_the_hosts_modification_date(session: Device) -> None:
    await session.mtp.send_object("d.txt", b"d", date_modified="20200102T030405")
    expected = time.mktime((2020, 1, 2, 3, 4, 5, 0, 0, -1))
    assert (session.root / "d.txt").stat().st_mtime == expected


async def test_a_folder_is_created_by_send_object_info_alone(session: Device) -> None:
    result = await send_info(
        session, object_info("Music", format_code=ObjectFormat.ASSOCIATION, association_type=1)
    )
    assert result.response.ok
    assert (session.root / "Music").is_dir()
    handle = result.response.params[2]
    info = await session.mtp.object_info(handle)
    assert info.object_format == ObjectFormat.ASSOCIATION


async def test_a_new_folder_can_receive_files_at_once(session: Device) -> None:
    result = await send_info(session, object_info("Docs", format_code=ObjectFormat.ASSOCIATION))
    folder = result.response.params[2]
    await session.mtp.send_object("in.txt", b"in", parent=folder)
    assert (session.root / "Docs" / "in.txt").read_bytes() == b"in"


async def test_send_object_without_object_info_is_refused(session: Device) -> None:
    result = await session.mtp.transaction(OperationCode.SEND_OBJECT, data=b"orphan")
    assert result.code == ResponseCode.NO_VALID_OBJECT_INFO


async def test_send_object_after_a_folder_is_refused(session: Device) -> None:
    await send_info(session, object_info("F", format_code=ObjectFormat.ASSOCIATION))
    result = await session.mtp.transaction(OperationCode.SEND_OBJECT, data=b"")
    assert result.code == ResponseCode.NO_VALID_OBJECT_INFO


async def test_a_send_object_shorter_than_announced_leaves_no_file(session: Device) -> None:
    result = await send_info(session, object_info("short.bin", 100))
    assert result.response.ok
    result = await session.mtp.transaction(OperationCode.SEND_OBJECT, data=b"x" * 50)
    assert result.code == ResponseCode.INCOMPLETE_TRANSFER
    assert not (session.root / "short.bin").exists()
    assert leftovers(session) == []


async def test_a_send_object_longer_than_announced_leaves_no_file(session: Device) -> None:
    await send_info(session, object_info("long.bin", 10))
    result = await session.mtp.transaction(OperationCode.SEND_OBJECT, data=b"x" * 50)
    assert result.code == ResponseCode.INCOMPLETE_TRANSFER
    assert not (session.root / "long.bin").exists()
    assert leftovers(session) == []


async def test_a_second_object_info_replaces_the_first(session: Device) -> None:
    await send_info(session, object_info("first.bin", 3))
    await send_info(session, object_info("second.bin", 3))
    result = await session.mtp.transaction(OperationCode.SEND_OBJECT, data=b"abc")
    assert result.response.ok
    assert (session.root / "second.bin").read_bytes() == b"abc"
    assert not (session.root / "first.bin").exists()
    assert leftovers(session) == []


async def test_a_file_of_unknown_size_is_received_until_the_short_packet(session: Device) -> None:
    await send_info(session, object_info("unk.bin", 0xFFFFFFFF))
    tid = await session.mtp.command(OperationCode.SEND_OBJECT)
    payload = os.urandom(3000)
    await session.mtp.send_data_stream(OperationCode.SEND_OBJECT, tid, len(payload), [payload])
    assert (await session.mtp.read_response(tid)).ok
    assert (session.root / "unk.bin").read_bytes() == payload


async def test_an_existing_name_is_refused_up_front(tree: Device) -> None:
    result = await send_info(tree, object_info("a.txt", 3))
    assert result.code == ResponseCode.INVALID_PARAMETER
    assert (tree.root / "a.txt").read_text() == "alpha"


async def test_sending_under_a_file_is_an_invalid_parent(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    result = await send_info(tree, object_info("x.txt", 1), parent=a)
    assert result.code == ResponseCode.INVALID_PARENT_OBJECT


async def test_sending_under_an_unknown_parent_is_refused(session: Device) -> None:
    result = await send_info(
        session, object_info("x.txt", 1), storage=session.storage_id, parent=0x6666
    )
    assert result.code in (
        ResponseCode.INVALID_OBJECT_HANDLE,
        ResponseCode.INVALID_PARENT_OBJECT,
    )


async def test_sending_to_an_unknown_storage_is_refused(session: Device) -> None:
    result = await send_info(session, object_info("x.txt", 1), storage=0x00770001)
    assert result.code == ResponseCode.INVALID_STORAGE_ID


# -- moving and copying ----------------------------------------------------------------------


async def test_move_object_moves_the_file_and_keeps_its_handle(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    dcim = await handle_of(tree.mtp, "DCIM")
    result = await tree.mtp.transaction(OperationCode.MOVE_OBJECT, a, tree.storage_id, dcim)
    assert result.response.ok
    assert (tree.root / "DCIM" / "a.txt").read_text() == "alpha"
    assert not (tree.root / "a.txt").exists()
    info = await tree.mtp.object_info(a)
    assert (info.filename, info.parent_object) == ("a.txt", dcim)


async def test_moving_a_folder_keeps_the_handles_inside_it(tree: Device) -> None:
    c = await handle_of(tree.mtp, "DCIM/c.jpg")
    dcim = await handle_of(tree.mtp, "DCIM")
    empty = await handle_of(tree.mtp, "empty")
    result = await tree.mtp.transaction(OperationCode.MOVE_OBJECT, dcim, tree.storage_id, empty)
    assert result.response.ok
    assert await tree.mtp.get_object(c) == b"\xff\xd8c"
    assert (await tree.mtp.object_info(c)).parent_object == dcim


async def test_move_to_the_root_with_parent_0(tree: Device) -> None:
    c = await handle_of(tree.mtp, "DCIM/c.jpg")
    result = await tree.mtp.transaction(OperationCode.MOVE_OBJECT, c, tree.storage_id, 0)
    assert result.response.ok
    assert (tree.root / "c.jpg").exists()
    assert (await tree.mtp.object_info(c)).parent_object == 0


async def test_moving_a_folder_into_itself_is_refused(tree: Device) -> None:
    dcim = await handle_of(tree.mtp, "DCIM")
    sub = await handle_of(tree.mtp, "DCIM/Sub")
    for target in (dcim, sub):
        result = await tree.mtp.transaction(
            OperationCode.MOVE_OBJECT, dcim, tree.storage_id, target
        )
        assert result.code == ResponseCode.INVALID_PARENT_OBJECT
    assert (tree.root / "DCIM" / "Sub" / "d.png").exists()


async def test_moving_onto_an_existing_name_is_refused(tree: Device) -> None:
    (tree.root / "DCIM" / "a.txt").write_text("other")
    a = await handle_of(tree.mtp, "a.txt")
    dcim = await handle_of(tree.mtp, "DCIM")
    result = await tree.mtp.transaction(OperationCode.MOVE_OBJECT, a, tree.storage_id, dcim)
    assert result.code == ResponseCode.INVALID_PARAMETER
    assert (tree.root / "DCIM" / "a.txt").read_text() == "other"


async def test_moving_an_unknown_handle_is_invalid(tree: Device) -> None:
    result = await tree.mtp.transaction(OperationCode.MOVE_OBJECT, 0x9191, tree.storage_id, 0)
    assert result.code == ResponseCode.INVALID_OBJECT_HANDLE


async def test_copy_object_answers_the_copys_handle(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    dcim = await handle_of(tree.mtp, "DCIM")
    result = await tree.mtp.transaction(OperationCode.COPY_OBJECT, a, tree.storage_id, dcim)
    assert result.response.ok
    (copy,) = result.response.params
    assert copy != a
    assert await tree.mtp.get_object(copy) == b"alpha"
    assert (tree.root / "a.txt").read_text() == "alpha"
    assert (await tree.mtp.object_info(copy)).parent_object == dcim


async def test_copying_a_folder_copies_its_tree(tree: Device) -> None:
    dcim = await handle_of(tree.mtp, "DCIM")
    empty = await handle_of(tree.mtp, "empty")
    result = await tree.mtp.transaction(OperationCode.COPY_OBJECT, dcim, tree.storage_id, empty)
    assert result.response.ok
    assert (tree.root / "empty" / "DCIM" / "Sub" / "d.png").read_bytes() == b"\x89PNG"
    copy = result.response.params[0]
    assert await names(tree, await tree.mtp.object_handles(ALL, parent=copy)) == {"c.jpg", "Sub"}


async def test_copying_into_the_same_folder_picks_a_free_name(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    result = await tree.mtp.transaction(OperationCode.COPY_OBJECT, a, tree.storage_id, 0)
    assert result.response.ok
    info = await tree.mtp.object_info(result.response.params[0])
    assert info.filename == "a (1).txt"


async def test_copying_a_folder_into_itself_is_refused(tree: Device) -> None:
    dcim = await handle_of(tree.mtp, "DCIM")
    sub = await handle_of(tree.mtp, "DCIM/Sub")
    result = await tree.mtp.transaction(OperationCode.COPY_OBJECT, dcim, tree.storage_id, sub)
    assert result.code == ResponseCode.INVALID_PARENT_OBJECT


async def test_copying_to_an_unknown_parent_is_refused(tree: Device) -> None:
    a = await handle_of(tree.mtp, "a.txt")
    result = await tree.mtp.transaction(OperationCode.COPY_OBJECT, a, tree.storage_id, 0x4444)
    assert result.code in (ResponseCode.INVALID_OBJECT_HANDLE, ResponseCode.INVALID_PARENT_OBJECT)


async def test_names_to_handles_sees_new_objects(session: Device) -> None:
    await session.mtp.send_object("one.txt", b"1")
    assert set(await names_to_handles(session.mtp)) == {"one.txt"}


def test_u32_arrays_used_by_listings_parse() -> None:
    assert parse_u32_array(b"\x00\x00\x00\x00") == []


async def test_asking_about_a_reserved_handle_before_its_data_does_not_lose_it(
    session: Device,
) -> None:
    result = await send_info(session, object_info("later.txt", 5))
    handle = result.response.params[2]
    early = await session.mtp.transaction(OperationCode.GET_OBJECT_INFO, handle)
    assert early.code in (ResponseCode.OK, ResponseCode.INVALID_OBJECT_HANDLE)
    assert (await session.mtp.transaction(OperationCode.SEND_OBJECT, data=b"12345")).response.ok
    info = await session.mtp.object_info(handle)
    assert (info.filename, info.compressed_size) == ("later.txt", 5)
