"""Object references (9810 / 9811): playlists and albums point at objects."""

from __future__ import annotations

import pytest

from mtp_responder.core.codes import OperationCode, ResponseCode
from mtp_responder.core.datasets import build_u32_array, parse_u32_array

from .conftest import Device, handle_of


@pytest.fixture
def files(session: Device) -> Device:
    for name in ("list.m3u", "one.mp3", "two.mp3"):
        (session.root / name).write_bytes(b"x")
    return session


async def references(device: Device, handle: int) -> list[int]:
    result = await device.mtp.transaction(OperationCode.GET_OBJECT_REFERENCES, handle)
    assert result.response.ok, hex(result.code)
    assert result.data is not None
    return parse_u32_array(result.data)


async def set_references(device: Device, handle: int, refs: list[int]) -> int:
    result = await device.mtp.transaction(
        OperationCode.SET_OBJECT_REFERENCES, handle, data=build_u32_array(refs)
    )
    return result.code


async def test_an_object_starts_without_references(files: Device) -> None:
    assert await references(files, await handle_of(files.mtp, "list.m3u")) == []


async def test_set_references_are_read_back_in_order(files: Device) -> None:
    playlist = await handle_of(files.mtp, "list.m3u")
    one = await handle_of(files.mtp, "one.mp3")
    two = await handle_of(files.mtp, "two.mp3")
    assert await set_references(files, playlist, [two, one]) == ResponseCode.OK
    assert await references(files, playlist) == [two, one]


async def test_setting_references_replaces_the_old_ones(files: Device) -> None:
    playlist = await handle_of(files.mtp, "list.m3u")
    one = await handle_of(files.mtp, "one.mp3")
    two = await handle_of(files.mtp, "two.mp3")
    await set_references(files, playlist, [one, two])
    await set_references(files, playlist, [two])
    assert await references(files, playlist) == [two]


async def test_a_reference_to_an_unknown_object_is_refused(files: Device) -> None:
    playlist = await handle_of(files.mtp, "list.m3u")
    code = await set_references(files, playlist, [0x7654])
    assert code == ResponseCode.INVALID_OBJECT_REFERENCE
    assert await references(files, playlist) == []


async def test_a_deleted_object_drops_out_of_the_references(files: Device) -> None:
    playlist = await handle_of(files.mtp, "list.m3u")
    one = await handle_of(files.mtp, "one.mp3")
    two = await handle_of(files.mtp, "two.mp3")
    await set_references(files, playlist, [one, two])
    assert (await files.mtp.transaction(OperationCode.DELETE_OBJECT, one)).response.ok
    assert await references(files, playlist) == [two]


async def test_references_of_an_unknown_object_are_refused(session: Device) -> None:
    result = await session.mtp.transaction(OperationCode.GET_OBJECT_REFERENCES, 0x1111)
    assert result.code == ResponseCode.INVALID_OBJECT_HANDLE


async def test_setting_references_of_an_unknown_object_is_refused(session: Device) -> None:
    assert await set_references(session, 0x1111, []) == ResponseCode.INVALID_OBJECT_HANDLE


async def test_a_reference_array_whose_count_lies_is_an_invalid_dataset(files: Device) -> None:
    playlist = await handle_of(files.mtp, "list.m3u")
    result = await files.mtp.transaction(
        OperationCode.SET_OBJECT_REFERENCES, playlist, data=b"\x03\x00\x00\x00\x01\x00\x00\x00"
    )
    assert result.code == ResponseCode.INVALID_DATASET
