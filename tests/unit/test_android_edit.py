"""Android's edit-in-place extensions (95C1-95C5), as libmtp and gvfs use them."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from mtp_responder.core.codes import OperationCode, ResponseCode

from .conftest import Device, handle_of, make_config, start_device

BEGIN = OperationCode.BEGIN_EDIT_OBJECT
END = OperationCode.END_EDIT_OBJECT
SEND_PARTIAL = OperationCode.SEND_PARTIAL_OBJECT
TRUNCATE = OperationCode.TRUNCATE_OBJECT


@pytest.fixture
def doc(session: Device) -> Device:
    (session.root / "doc.txt").write_bytes(b"0123456789")
    return session


async def edit(
    device: Device, handle: int, offset: int, data: bytes
) -> tuple[int, tuple[int, ...]]:
    result = await device.mtp.transaction(
        SEND_PARTIAL, handle, offset & 0xFFFFFFFF, offset >> 32, len(data), data=data
    )
    return result.code, result.response.params


async def test_an_edit_overwrites_bytes_in_place(doc: Device) -> None:
    handle = await handle_of(doc.mtp, "doc.txt")
    assert (await doc.mtp.transaction(BEGIN, handle)).response.ok
    assert await edit(doc, handle, 2, b"AB") == (ResponseCode.OK, (2,))
    assert (await doc.mtp.transaction(END, handle)).response.ok
    assert (doc.root / "doc.txt").read_bytes() == b"01AB456789"


async def test_an_edit_past_the_end_extends_the_file(doc: Device) -> None:
    handle = await handle_of(doc.mtp, "doc.txt")
    await doc.mtp.transaction(BEGIN, handle)
    await edit(doc, handle, 10, b"XYZ")
    await doc.mtp.transaction(END, handle)
    assert (doc.root / "doc.txt").read_bytes() == b"0123456789XYZ"


async def test_an_edit_of_a_packet_aligned_length(doc: Device) -> None:
    handle = await handle_of(doc.mtp, "doc.txt")
    await doc.mtp.transaction(BEGIN, handle)
    data = bytes(range(250)) * 2  # 500 bytes: header and data fill one packet
    assert await edit(doc, handle, 0, data) == (ResponseCode.OK, (500,))
    await doc.mtp.transaction(END, handle)
    assert (doc.root / "doc.txt").read_bytes() == data


async def test_truncate_object_cuts_the_file(doc: Device) -> None:
    handle = await handle_of(doc.mtp, "doc.txt")
    await doc.mtp.transaction(BEGIN, handle)
    assert (await doc.mtp.transaction(TRUNCATE, handle, 4, 0)).response.ok
    await doc.mtp.transaction(END, handle)
    assert (doc.root / "doc.txt").read_bytes() == b"0123"


async def test_the_edited_size_is_what_object_info_reports(doc: Device) -> None:
    handle = await handle_of(doc.mtp, "doc.txt")
    await doc.mtp.transaction(BEGIN, handle)
    await doc.mtp.transaction(TRUNCATE, handle, 3, 0)
    await doc.mtp.transaction(END, handle)
    assert (await doc.mtp.object_info(handle)).compressed_size == 3


async def test_a_partial_read_after_an_edit_sees_it(doc: Device) -> None:
    handle = await handle_of(doc.mtp, "doc.txt")
    await doc.mtp.transaction(BEGIN, handle)
    await edit(doc, handle, 5, b"!")
    await doc.mtp.transaction(END, handle)
    result = await doc.mtp.transaction(OperationCode.GET_PARTIAL_OBJECT_64, handle, 4, 0, 3)
    assert result.data == b"4!6"


async def test_send_partial_object_without_begin_edit_is_refused(doc: Device) -> None:
    handle = await handle_of(doc.mtp, "doc.txt")
    code, _ = await edit(doc, handle, 0, b"XX")
    assert code == ResponseCode.GENERAL_ERROR
    assert (doc.root / "doc.txt").read_bytes() == b"0123456789"
    assert (await doc.mtp.object_info(handle)).filename == "doc.txt"


async def test_truncate_without_begin_edit_is_refused(doc: Device) -> None:
    handle = await handle_of(doc.mtp, "doc.txt")
    assert (await doc.mtp.transaction(TRUNCATE, handle, 0, 0)).code == ResponseCode.GENERAL_ERROR
    assert (doc.root / "doc.txt").read_bytes() == b"0123456789"


async def test_end_edit_without_begin_edit_is_refused(doc: Device) -> None:
    handle = await handle_of(doc.mtp, "doc.txt")
    assert (await doc.mtp.transaction(END, handle)).code == ResponseCode.GENERAL_ERROR


async def test_an_edit_ends_with_end_edit(doc: Device) -> None:
    handle = await handle_of(doc.mtp, "doc.txt")
    await doc.mtp.transaction(BEGIN, handle)
    await doc.mtp.transaction(END, handle)
    code, _ = await edit(doc, handle, 0, b"late")
    assert code == ResponseCode.GENERAL_ERROR


async def test_a_session_ends_every_edit(doc: Device) -> None:
    handle = await handle_of(doc.mtp, "doc.txt")
    await doc.mtp.transaction(BEGIN, handle)
    await doc.mtp.close_session()
    await doc.mtp.open_session(2)
    code, _ = await edit(doc, handle, 0, b"late")
    assert code == ResponseCode.GENERAL_ERROR


async def test_a_folder_cannot_be_edited(session: Device) -> None:
    (session.root / "folder").mkdir()
    handle = await handle_of(session.mtp, "folder")
    assert (await session.mtp.transaction(BEGIN, handle)).code == (
        ResponseCode.INVALID_OBJECT_HANDLE
    )


async def test_a_write_protected_file_cannot_be_edited(session: Device) -> None:
    (session.root / "ro.txt").write_text("ro")
    (session.root / "ro.txt").chmod(0o444)
    handle = await handle_of(session.mtp, "ro.txt")
    assert (await session.mtp.transaction(BEGIN, handle)).code == (
        ResponseCode.OBJECT_WRITE_PROTECTED
    )


async def test_an_unknown_object_cannot_be_edited(session: Device) -> None:
    assert (await session.mtp.transaction(BEGIN, 0x2222)).code == (
        ResponseCode.INVALID_OBJECT_HANDLE
    )


async def test_a_file_on_a_read_only_storage_cannot_be_edited(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    (tmp_path / "storage").mkdir()
    (tmp_path / "storage" / "f.txt").write_text("f")
    device = await start_device(nursery, tmp_path, make_config(tmp_path, read_only=True))
    await device.mtp.open_session()
    handle = await handle_of(device.mtp, "f.txt")
    assert (await device.mtp.transaction(BEGIN, handle)).code == ResponseCode.STORE_READ_ONLY
