"""GetStorageIDs and GetStorageInfo, with one and several storages."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from mtp_responder.core.codes import (
    AccessCapability,
    FilesystemType,
    OperationCode,
    ResponseCode,
    StorageType,
)

from .conftest import Device, make_config, start_device


async def two_storages(nursery: trio.Nursery, tmp_path: Path) -> Device:
    config = make_config(tmp_path)
    second = tmp_path / "card"
    second.mkdir(exist_ok=True)
    config["providers"] = {
        "files": {
            "storages": [
                {"path": str(tmp_path / "storage"), "description": "Internal"},
                {
                    "path": str(second),
                    "description": "SD card",
                    "removable": True,
                    "read_only": True,
                },
            ]
        }
    }
    device = await start_device(nursery, tmp_path, config)
    assert (await device.mtp.open_session()).ok
    return device


async def test_one_storage_has_one_id(session: Device) -> None:
    assert await session.mtp.storage_ids() == [session.storage_id]


async def test_storage_ids_have_a_non_zero_low_half(session: Device) -> None:
    (sid,) = await session.mtp.storage_ids()
    assert sid & 0xFFFF != 0
    assert sid >> 16 != 0


async def test_storage_info_describes_a_writable_hierarchical_fixed_store(
    session: Device,
) -> None:
    info = await session.mtp.storage_info(session.storage_id)
    assert info.storage_type == StorageType.FIXED_RAM
    assert info.filesystem_type == FilesystemType.GENERIC_HIERARCHICAL
    assert info.access_capability == AccessCapability.READ_WRITE
    assert info.storage_description == "Internal"


async def test_storage_info_reports_capacity_and_free_space_from_the_filesystem(
    session: Device,
) -> None:
    info = await session.mtp.storage_info(session.storage_id)
    vfs = os.statvfs(session.root)
    assert info.max_capacity == vfs.f_blocks * vfs.f_frsize
    assert 0 < info.free_space_in_bytes <= info.max_capacity
    assert info.free_space_in_objects >= 2**30


async def test_an_unknown_storage_id_is_invalid(session: Device) -> None:
    for sid in (0, 0x12340001, 0xFFFFFFFF):
        result = await session.mtp.transaction(OperationCode.GET_STORAGE_INFO, sid)
        assert result.code == ResponseCode.INVALID_STORAGE_ID, hex(sid)


async def test_several_storages_have_distinct_ids(nursery: trio.Nursery, tmp_path: Path) -> None:
    device = await two_storages(nursery, tmp_path)
    ids = await device.mtp.storage_ids()
    assert len(ids) == 2
    assert len(set(ids)) == 2


async def test_a_removable_read_only_storage_says_so(nursery: trio.Nursery, tmp_path: Path) -> None:
    device = await two_storages(nursery, tmp_path)
    card = (await device.mtp.storage_ids())[1]
    info = await device.mtp.storage_info(card)
    assert info.storage_type == StorageType.REMOVABLE_RAM
    assert info.access_capability == AccessCapability.READ_ONLY_WITHOUT_DELETE
    assert info.storage_description == "SD card"


async def test_listing_all_storages_merges_their_objects(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    (tmp_path / "storage").mkdir()
    (tmp_path / "storage" / "a.txt").write_text("a")
    (tmp_path / "card").mkdir()
    (tmp_path / "card" / "b.txt").write_text("b")
    device = await two_storages(nursery, tmp_path)
    handles = await device.mtp.object_handles(0xFFFFFFFF, parent=0xFFFFFFFF)
    names = {(await device.mtp.object_info(h)).filename for h in handles}
    assert names == {"a.txt", "b.txt"}
    assert len(set(handles)) == 2


async def test_handles_are_unique_across_storages(nursery: trio.Nursery, tmp_path: Path) -> None:
    (tmp_path / "storage").mkdir()
    (tmp_path / "storage" / "same.txt").write_text("a")
    (tmp_path / "card").mkdir()
    (tmp_path / "card" / "same.txt").write_text("b")
    device = await two_storages(nursery, tmp_path)
    internal, card = await device.mtp.storage_ids()
    (first,) = await device.mtp.object_handles(internal)
    (second,) = await device.mtp.object_handles(card)
    assert first != second
    assert (await device.mtp.object_info(second)).storage_id == card
    assert await device.mtp.get_object(second) == b"b"
