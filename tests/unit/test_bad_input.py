"""Hostile input from the host: every field lies, and the responder keeps serving."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest
import trio

from mtp_responder.core.codes import (
    ContainerType,
    DeviceProp,
    ObjectFormat,
    ObjectProp,
    OperationCode,
    ResponseCode,
)
from mtp_responder.core.container import data_header, parse_header
from mtp_responder.core.datasets import OBJECT_INFO_FIXED_SIZE, encode_string

from .conftest import Device, handle_of, make_config, object_info, start_device, still_serving

ALL = 0xFFFFFFFF
SEND_INFO = OperationCode.SEND_OBJECT_INFO


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


async def send_info(device: Device, dataset: bytes, storage: int = 0, parent: int = ALL) -> int:
    result = await device.mtp.transaction(SEND_INFO, storage, parent, data=dataset)
    return result.code


# -- framing ------------------------------------------------------------------------------


async def test_a_command_longer_than_five_parameters_is_an_invalid_parameter(
    session: Device,
) -> None:
    raw = struct.pack(
        "<IHHI6I", 36, ContainerType.COMMAND, OperationCode.GET_STORAGE_IDS, 1, *range(6)
    )
    await session.host.write_transfer(raw)
    assert (await session.mtp.read_response(1)).code == ResponseCode.INVALID_PARAMETER
    session.mtp.tid = 2
    await still_serving(session)


async def test_a_command_whose_length_claims_more_than_arrived_is_answered(
    session: Device,
) -> None:
    raw = struct.pack("<IHHII", 20, ContainerType.COMMAND, OperationCode.GET_OBJECT_INFO, 1, 5)
    await session.host.write_transfer(raw)
    assert (await session.mtp.read_response(1)).code == ResponseCode.INVALID_PARAMETER
    session.mtp.tid = 2
    await still_serving(session)


async def test_a_command_whose_length_claims_less_than_arrived_is_answered(
    session: Device,
) -> None:
    raw = struct.pack("<IHHII", 12, ContainerType.COMMAND, OperationCode.GET_OBJECT_INFO, 1, 5)
    await session.host.write_transfer(raw)
    assert (await session.mtp.read_response(1)).code == ResponseCode.INVALID_PARAMETER
    session.mtp.tid = 2
    await still_serving(session)


async def test_a_truncated_header_gets_no_answer_and_does_not_stop_the_responder(
    session: Device,
) -> None:
    await session.host.write_transfer(b"\x0c\x00\x00\x00\x01\x00")
    session.mtp.tid = 1
    await still_serving(session)


@pytest.mark.parametrize("ctype", [ContainerType.RESPONSE, ContainerType.EVENT, 0, 7])
async def test_containers_of_the_wrong_type_are_answered_and_forgotten(
    session: Device, ctype: int
) -> None:
    raw = struct.pack("<IHHI", 12, ctype, OperationCode.GET_STORAGE_IDS, 1)
    await session.host.write_transfer(raw)
    assert (await session.mtp.read_response(1)).code == ResponseCode.GENERAL_ERROR
    session.mtp.tid = 2
    await still_serving(session)


async def test_a_data_phase_without_its_command_is_answered_and_dropped(session: Device) -> None:
    await session.mtp.send_data(OperationCode.SEND_OBJECT, 1, b"x" * 2000)
    response = await session.mtp.read_response(1)
    assert response.code != ResponseCode.OK
    session.mtp.tid = 2
    await still_serving(session)
    assert listing(session.root) == []


async def test_a_data_phase_for_another_transaction_is_an_invalid_transaction_id(
    session: Device,
) -> None:
    tid = await session.mtp.command(SEND_INFO, 0, ALL)
    await session.mtp.send_data(SEND_INFO, tid + 5, object_info("x.txt", 1))
    assert (await session.mtp.read_response(tid)).code == ResponseCode.INVALID_TRANSACTION_ID
    assert listing(session.root) == []
    await still_serving(session)


async def test_a_long_data_phase_for_another_transaction_is_dropped_whole(
    session: Device,
) -> None:
    tid = await session.mtp.command(SEND_INFO, 0, ALL)
    await session.mtp.send_data(SEND_INFO, tid + 5, object_info("x.txt", 1) + b"\0" * 5000)
    assert (await session.mtp.read_response(tid)).code == ResponseCode.INVALID_TRANSACTION_ID
    await still_serving(session)


async def test_a_data_operation_whose_data_phase_never_comes_ends_unanswered(
    session: Device,
) -> None:
    # The host moved on: the next response it reads must be its new command's.
    await session.mtp.command(SEND_INFO, 0, ALL)
    next_tid = await session.mtp.command(OperationCode.GET_STORAGE_IDS)
    _, response = await session.mtp.read_data_or_response(next_tid)
    assert response.ok and response.transaction_id == next_tid
    await still_serving(session)


async def test_a_dataset_shorter_than_announced_is_an_incomplete_transfer(
    session: Device,
) -> None:
    tid = await session.mtp.command(SEND_INFO, 0, ALL)
    await session.host.write_transfer(data_header(SEND_INFO, tid, 1000) + b"x" * 100)
    assert (await session.mtp.read_response(tid)).code == ResponseCode.INCOMPLETE_TRANSFER
    assert listing(session.root) == []
    await still_serving(session)


async def test_bytes_after_the_announced_dataset_are_ignored(session: Device) -> None:
    dataset = object_info("ok.txt", 1)
    tid = await session.mtp.command(SEND_INFO, 0, ALL)
    header = data_header(SEND_INFO, tid, len(dataset))
    await session.host.write_transfer(header + dataset + b"Z" * 9)
    assert (await session.mtp.read_response(tid)).ok
    await still_serving(session)


async def test_a_data_container_shorter_than_its_header_is_an_invalid_dataset(
    session: Device,
) -> None:
    tid = await session.mtp.command(SEND_INFO, 0, ALL)
    await session.host.write_transfer(struct.pack("<IHHI", 4, ContainerType.DATA, SEND_INFO, tid))
    assert (await session.mtp.read_response(tid)).code == ResponseCode.INVALID_DATASET
    await still_serving(session)


async def test_a_too_large_device_property_value_is_an_invalid_dataset(session: Device) -> None:
    result = await session.mtp.transaction(
        OperationCode.SET_DEVICE_PROP_VALUE, DeviceProp.DEVICE_FRIENDLY_NAME, data=b"A" * 5000
    )
    assert result.code == ResponseCode.INVALID_DATASET
    await still_serving(session)


# -- datasets -----------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 30, OBJECT_INFO_FIXED_SIZE])
async def test_a_truncated_object_info_is_an_invalid_dataset(session: Device, length: int) -> None:
    assert await send_info(session, object_info("x.txt", 1)[:length]) == (
        ResponseCode.INVALID_DATASET
    )
    assert listing(session.root) == []


async def test_an_object_info_whose_name_runs_past_the_end_is_an_invalid_dataset(
    session: Device,
) -> None:
    dataset = object_info("x.txt", 1)[:OBJECT_INFO_FIXED_SIZE] + b"\x40abc"
    assert await send_info(session, dataset) == ResponseCode.INVALID_DATASET


async def test_an_invalid_utf16_name_is_an_invalid_dataset(session: Device) -> None:
    dataset = object_info("x", 1)[:OBJECT_INFO_FIXED_SIZE] + b"\x03a\x00\x00\xd8\x00\x00"
    assert await send_info(session, dataset) == ResponseCode.INVALID_DATASET
    assert listing(session.root) == []


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/abs", "../up", "nul\x00byte"])
@pytest.mark.parametrize("fmt", [ObjectFormat.UNDEFINED, ObjectFormat.ASSOCIATION])
async def test_impossible_names_are_refused_and_nothing_is_written(
    session: Device, name: str, fmt: int
) -> None:
    code = await send_info(session, object_info(name, 1, format_code=fmt))
    assert code == ResponseCode.INVALID_DATASET
    assert listing(session.root) == []
    assert {p.name for p in session.root.parent.iterdir()} <= {"state", "storage"}


async def test_a_name_longer_than_a_filesystem_allows_is_refused(session: Device) -> None:
    code = await send_info(session, object_info("é" * 200, 1))
    assert code != ResponseCode.OK
    assert listing(session.root) == []


async def test_a_bad_date_in_object_info_is_ignored(session: Device) -> None:
    dataset = object_info("d.txt", 1, date_modified="20249999T999999+9999")
    assert await send_info(session, dataset) == ResponseCode.OK


async def test_a_malformed_prop_list_is_an_invalid_dataset(session: Device) -> None:
    result = await session.mtp.transaction(
        OperationCode.SEND_OBJECT_PROP_LIST, 0, ALL, 0x3000, 0, 1, data=b"\x01\x00\x00\x00\x07"
    )
    assert result.code == ResponseCode.INVALID_DATASET
    assert listing(session.root) == []


async def test_a_prop_list_with_an_impossible_name_is_refused(session: Device) -> None:
    data = struct.pack("<IIHH", 1, 0, ObjectProp.OBJECT_FILE_NAME, 0xFFFF) + encode_string("..")
    result = await session.mtp.transaction(
        OperationCode.SEND_OBJECT_PROP_LIST, 0, ALL, 0x3000, 0, 1, data=data
    )
    assert result.code == ResponseCode.INVALID_DATASET
    assert listing(session.root) == []


async def test_a_reserved_temporary_name_is_refused(session: Device) -> None:
    assert await send_info(session, object_info(".mtp-partial-1234", 1)) != ResponseCode.OK


# -- codes, sessions, ids -------------------------------------------------------------------


@pytest.mark.parametrize("code", [0x0000, 0x1000, 0x100F, 0x1011, 0x1013, 0x9807, 0x9820, 0xFFFF])
async def test_unknown_operations_are_not_supported(session: Device, code: int) -> None:
    assert (await session.mtp.transaction(code, 1, 2, 3)).code == (
        ResponseCode.OPERATION_NOT_SUPPORTED
    )
    await still_serving(session)


async def test_a_data_operation_out_of_session_is_refused_and_its_data_dropped(
    device: Device,
) -> None:
    result = await device.mtp.transaction(SEND_INFO, 0, ALL, data=object_info("x.txt", 1))
    assert result.code == ResponseCode.SESSION_NOT_OPEN
    assert listing(device.root) == []
    assert (await device.mtp.open_session()).ok


async def test_a_replayed_transaction_id_is_refused_without_effect(session: Device) -> None:
    (session.root / "a.txt").write_text("a")
    handle = await handle_of(session.mtp, "a.txt")
    tid = session.mtp.tid - 1
    await session.mtp.command(OperationCode.DELETE_OBJECT, handle, tid=tid)
    assert (await session.mtp.read_response(tid)).code == ResponseCode.INVALID_TRANSACTION_ID
    assert (session.root / "a.txt").exists()


# -- handles, storages, parents ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "params"),
    [
        (OperationCode.GET_OBJECT_INFO, (0x4321,)),
        (OperationCode.GET_OBJECT, (0x4321,)),
        (OperationCode.GET_PARTIAL_OBJECT, (0x4321, 0, 10)),
        (OperationCode.GET_PARTIAL_OBJECT_64, (0x4321, 0, 0, 10)),
        (OperationCode.GET_THUMB, (0x4321,)),
        (OperationCode.DELETE_OBJECT, (0x4321, 0)),
        (OperationCode.MOVE_OBJECT, (0x4321, 0, 0)),
        (OperationCode.COPY_OBJECT, (0x4321, 0, 0)),
        (OperationCode.GET_OBJECT_PROP_VALUE, (0x4321, ObjectProp.OBJECT_SIZE)),
        (OperationCode.GET_OBJECT_PROP_LIST, (0x4321, 0, ALL, 0, 0)),
        (OperationCode.GET_OBJECT_REFERENCES, (0x4321,)),
        (OperationCode.BEGIN_EDIT_OBJECT, (0x4321,)),
    ],
)
async def test_unknown_handles_are_invalid_object_handles(
    session: Device, op: int, params: tuple[int, ...]
) -> None:
    result = await session.mtp.transaction(op, *params)
    assert result.code == ResponseCode.INVALID_OBJECT_HANDLE
    assert result.data is None


@pytest.mark.parametrize(
    ("op", "params"),
    [
        (OperationCode.GET_STORAGE_INFO, (0x00420001,)),
        (OperationCode.GET_NUM_OBJECTS, (0x00420001, 0, ALL)),
        (OperationCode.GET_OBJECT_HANDLES, (0x00420001, 0, ALL)),
    ],
)
async def test_unknown_storage_ids_are_invalid_storage_ids(
    session: Device, op: int, params: tuple[int, ...]
) -> None:
    assert (await session.mtp.transaction(op, *params)).code == ResponseCode.INVALID_STORAGE_ID


async def test_moving_to_an_unknown_storage_is_an_invalid_storage_id(session: Device) -> None:
    (session.root / "a.txt").write_text("a")
    handle = await handle_of(session.mtp, "a.txt")
    result = await session.mtp.transaction(OperationCode.MOVE_OBJECT, handle, 0x00420001, 0)
    assert result.code == ResponseCode.INVALID_STORAGE_ID


async def test_a_parent_in_another_storage_is_an_invalid_parent(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = make_config(tmp_path)
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "Folder").mkdir()
    config["providers"]["files"]["storages"].append(  # type: ignore[index]
        {"path": str(tmp_path / "two")}
    )
    device = await start_device(nursery, tmp_path, config)
    await device.mtp.open_session()
    first, second = await device.mtp.storage_ids()
    (folder,) = await device.mtp.object_handles(second)
    code = await send_info(device, object_info("x.txt", 1), storage=first, parent=folder)
    assert code == ResponseCode.INVALID_PARENT_OBJECT


# -- read-only stores, full stores, escapes --------------------------------------------------


@pytest.fixture
async def read_only(nursery: trio.Nursery, tmp_path: Path) -> Device:
    (tmp_path / "storage").mkdir()
    (tmp_path / "storage" / "f.txt").write_text("f")
    (tmp_path / "storage" / "dir").mkdir()
    device = await start_device(nursery, tmp_path, make_config(tmp_path, read_only=True))
    assert (await device.mtp.open_session()).ok
    return device


async def test_a_read_only_storage_refuses_new_files(read_only: Device) -> None:
    assert await send_info(read_only, object_info("n.txt", 1)) == ResponseCode.STORE_READ_ONLY
    code = await send_info(read_only, object_info("n.txt", 1), storage=read_only.storage_id)
    assert code == ResponseCode.STORE_READ_ONLY


async def test_a_read_only_storage_refuses_new_folders(read_only: Device) -> None:
    code = await send_info(
        read_only, object_info("D", format_code=ObjectFormat.ASSOCIATION), read_only.storage_id
    )
    assert code == ResponseCode.STORE_READ_ONLY


async def test_a_read_only_storage_refuses_changes(read_only: Device) -> None:
    f = await handle_of(read_only.mtp, "f.txt")
    d = await handle_of(read_only.mtp, "dir")
    sid = read_only.storage_id
    attempts: list[tuple[int, tuple[int, ...], bytes | None]] = [
        (OperationCode.DELETE_OBJECT, (f,), None),
        (OperationCode.MOVE_OBJECT, (f, sid, d), None),
        (OperationCode.COPY_OBJECT, (f, sid, d), None),
        (OperationCode.SET_OBJECT_PROP_VALUE, (f, ObjectProp.OBJECT_FILE_NAME), encode_string("g")),
    ]
    for op, params, data in attempts:
        result = await read_only.mtp.transaction(op, *params, data=data)
        assert result.code == ResponseCode.STORE_READ_ONLY, hex(op)
    assert listing(read_only.root) == ["dir", "f.txt"]


async def test_deleting_everything_on_a_read_only_storage_is_refused(read_only: Device) -> None:
    result = await read_only.mtp.transaction(OperationCode.DELETE_OBJECT, ALL, 0)
    assert result.code == ResponseCode.STORE_READ_ONLY
    assert listing(read_only.root) == ["dir", "f.txt"]


async def test_a_read_only_storage_still_serves_reads(read_only: Device) -> None:
    assert await read_only.mtp.get_object(await handle_of(read_only.mtp, "f.txt")) == b"f"


async def test_a_file_that_does_not_fit_is_refused_up_front(session: Device) -> None:
    storage: Any = session.responder.framework.storage(session.storage_id)
    real = os.statvfs(session.root)
    storage.statvfs = lambda path: os.statvfs_result((*real[:4], 10, *real[5:]))
    free = 10 * real.f_frsize
    assert await send_info(session, object_info("big.bin", free + 1)) == ResponseCode.STORE_FULL
    assert listing(session.root) == []


async def test_a_symlink_leading_out_of_the_storage_is_not_reachable(
    session: Device, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (session.root / "escape").symlink_to(outside)
    assert await session.mtp.object_handles(parent=0) == []


async def test_the_responder_survives_a_burst_of_garbage(session: Device) -> None:
    for seed in range(20):
        rng = bytes((seed * 37 + i * 11) & 0xFF for i in range(5 + seed * 13))
        await session.host.write_transfer(rng)
    # Bulk IN keeps order: whatever the garbage was answered with comes before
    # the answer to the next command. Read up to that answer; then all is in step.
    session.mtp.tid = 1000
    tid = await session.mtp.command(OperationCode.GET_STORAGE_IDS)
    with trio.fail_after(5):
        header = parse_header(await session.host.read_transfer())
        while (header.type, header.transaction_id) != (ContainerType.RESPONSE, tid):
            header = parse_header(await session.host.read_transfer())
    assert header.code == ResponseCode.OK
    await still_serving(session)


async def test_a_data_phase_after_a_command_that_takes_none_gets_no_second_response(
    session: Device,
) -> None:
    tid = await session.mtp.command(OperationCode.GET_STORAGE_IDS)
    await session.mtp.send_data(OperationCode.GET_STORAGE_IDS, tid, b"unexpected")
    _, response = await session.mtp.read_data_or_response(tid)
    assert response.ok
    await still_serving(session)


async def test_a_prop_list_file_name_that_is_not_a_string_is_an_invalid_dataset(
    session: Device,
) -> None:
    data = struct.pack("<IIHHI", 1, 0, ObjectProp.OBJECT_FILE_NAME, 0x0006, 1234)
    result = await session.mtp.transaction(
        OperationCode.SEND_OBJECT_PROP_LIST, 0, ALL, 0x3000, 0, 1, data=data
    )
    assert result.code == ResponseCode.INVALID_DATASET
    assert listing(session.root) == []


async def test_a_stray_zero_length_packet_between_transactions_is_ignored(
    session: Device,
) -> None:
    await session.host.write_transfer(b"")
    await still_serving(session)
    assert session.host.in_queued == 0
