"""The MTP wire never crashes the responder and never falls out of step.

Each test replays, over the loopback link, a sequence that a real initiator
or a fuzzer sent: cleanup after an upload whose folder is gone, bytes hidden
after a container's announced end, a host that moves on without a data
phase, 64-bit offsets beyond what a file can have.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from engine.daemon.config import EngineConfig
from mtp_responder.core.codes import ObjectFormat, OperationCode, ResponseCode
from mtp_responder.core.connection import encode
from mtp_responder.core.container import data_header
from mtp_responder.core.events import Command
from tests.engine.conftest import EngineProcess, start_engine, stop_engine
from tests.engine.helpers import PASSIVE_ALL, make_config, make_tree, register

from .conftest import Device, handle_of, object_info, start_device, still_serving, wait_until

Op = OperationCode


def leftovers(device: Device) -> list[str]:
    """Every file below the storage root: partial uploads included."""
    return sorted(
        os.path.relpath(os.path.join(d, f), device.root)
        for d, _, files in os.walk(device.root)
        for f in files
    )


async def pending_upload_in_a_deleted_folder(device: Device) -> None:
    """Folder F, an upload into F announced by SendObjectInfo, then F deleted."""
    mtp, sid = device.mtp, device.storage_id
    r = await mtp.transaction(
        Op.SEND_OBJECT_INFO, sid, 0, data=object_info("F", format_code=ObjectFormat.ASSOCIATION)
    )
    assert r.response.ok
    folder = r.response.params[2]
    r = await mtp.transaction(
        Op.SEND_OBJECT_INFO, sid, folder, data=object_info("x.txt", 5, parent=folder)
    )
    assert r.response.ok
    assert (await mtp.transaction(Op.DELETE_OBJECT, folder)).response.ok
    assert not (device.root / "F").exists()


async def wait_idle(device: Device) -> None:
    await wait_until(lambda: not device.host.device_status_busy(), 5)


# -- defect 1: cleanup paths never raise --------------------------------------------


async def test_reset_after_the_pending_uploads_folder_was_deleted_keeps_serving(
    session: Device,
) -> None:
    await pending_upload_in_a_deleted_folder(session)
    session.host.device_reset()
    await wait_idle(session)
    assert (await session.mtp.open_session(2)).ok
    await still_serving(session)
    assert leftovers(session) == []


async def test_unplug_after_the_pending_uploads_folder_was_deleted_keeps_serving(
    session: Device,
) -> None:
    await pending_upload_in_a_deleted_folder(session)
    session.host.unplug()
    await wait_idle(session)
    session.host.plug()
    assert (await session.mtp.open_session(2)).ok
    await still_serving(session)
    assert leftovers(session) == []


async def test_close_session_after_the_pending_uploads_folder_was_deleted_is_ok(
    session: Device,
) -> None:
    await pending_upload_in_a_deleted_folder(session)
    assert (await session.mtp.close_session()).ok
    assert (await session.mtp.open_session(2)).ok
    await still_serving(session)


async def test_a_new_upload_after_the_pending_uploads_folder_was_deleted_is_accepted(
    session: Device,
) -> None:
    await pending_upload_in_a_deleted_folder(session)
    handle = await session.mtp.send_object("y.txt", b"fresh")
    assert await session.mtp.get_object(handle) == b"fresh"
    assert leftovers(session) == ["y.txt"]


SID = 0x10203040


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    cfg: EngineConfig = make_config(tmp_path / "engine", device_name="board")
    make_tree(register(cfg, SID, PASSIVE_ALL))
    proc = start_engine(cfg, tmp_path / "engine")
    yield proc
    stop_engine(proc)


@pytest.fixture
async def with_backup(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess
) -> AsyncIterator[tuple[Device, EngineProcess]]:
    """A files storage and a Backup & Restore storage whose idle timeout never fires here."""
    (tmp_path / "storage").mkdir()
    config = {
        "state_dir": str(tmp_path / "state"),
        "providers": {
            "files": {"storages": [{"path": str(tmp_path / "storage"), "description": "Files"}]},
            "backup_restore": {"socket": str(engine.config.socket_path), "idle_timeout": 600},
        },
    }
    device = await start_device(nursery, tmp_path, config)
    assert (await device.mtp.open_session()).ok
    yield device, engine


def engine_mode(engine: EngineProcess) -> str:
    state = engine.config.state_file
    assert state is not None
    lines = state.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)["mode"]


async def enter_backup_mode(device: Device) -> None:
    """List the Backup folder: the engine prepares a backup and leaves Normal."""
    m = device.mtp
    for sid in await m.storage_ids():
        if (await m.storage_info(sid)).storage_description != "Backup & Restore":
            continue
        for handle in await m.object_handles(sid):
            if (await m.object_info(handle)).filename == "Backup":
                assert await m.object_handles(sid, handle)
                return
    raise AssertionError("no Backup folder")


async def test_close_session_after_a_failed_cleanup_still_returns_the_engine_to_normal(
    with_backup: tuple[Device, EngineProcess],
) -> None:
    device, engine = with_backup
    await enter_backup_mode(device)
    assert engine_mode(engine) != "NORMAL"
    await pending_upload_in_a_deleted_folder(device)
    closed = await device.mtp.close_session()
    await wait_until(lambda: engine_mode(engine) == "NORMAL", 10)
    assert closed.ok


# -- defect 2: nothing after a container's announced end is executed ----------------


@pytest.mark.parametrize("payload", [b"", b"abcd"], ids=["zero-length", "four-bytes"])
async def test_a_command_hidden_after_a_data_containers_end_is_never_executed(
    session: Device, payload: bytes
) -> None:
    (session.root / "keep.txt").write_bytes(b"precious")
    victim = await handle_of(session.mtp, "keep.txt")
    mtp = session.mtp
    tid = await mtp.command(Op.SET_OBJECT_PROP_VALUE, victim, 0xDC44)  # Name
    hidden = mtp.tid
    smuggled = encode(Command(Op.DELETE_OBJECT, hidden, (victim,)))
    await session.host.write_transfer(
        data_header(Op.SET_OBJECT_PROP_VALUE, tid, len(payload)) + payload + smuggled
    )
    response = await mtp.read_response(tid)
    assert response.transaction_id == tid
    assert not response.ok
    await still_serving(session)
    assert (session.root / "keep.txt").read_bytes() == b"precious"


# -- defect 3: a command where a data phase was due ends that transaction ------------


async def test_a_command_instead_of_send_objects_data_phase_is_served_with_its_own_id(
    session: Device,
) -> None:
    # go-mtpfs: SendObject, then without its data phase the next SendObjectInfo.
    mtp = session.mtp
    r = await mtp.transaction(Op.SEND_OBJECT_INFO, 0, 0, data=object_info("x.txt", 5))
    assert r.response.ok
    await mtp.command(Op.SEND_OBJECT)
    tid = await mtp.command(Op.SEND_OBJECT_INFO, 0, 0)
    await mtp.send_data(Op.SEND_OBJECT_INFO, tid, object_info("y.txt", 3))
    response = await mtp.read_response(tid)
    assert response.ok and response.transaction_id == tid
    r = await mtp.transaction(Op.SEND_OBJECT, data=b"abc")
    assert r.response.ok and r.response.transaction_id == mtp.tid - 1
    await still_serving(session)
    assert leftovers(session) == ["y.txt"]
    assert (session.root / "y.txt").read_bytes() == b"abc"


async def test_an_abandoned_upload_leaves_nothing_on_disk(session: Device) -> None:
    mtp = session.mtp
    r = await mtp.transaction(Op.SEND_OBJECT_INFO, 0, 0, data=object_info("x.txt", 5))
    assert r.response.ok
    await mtp.command(Op.SEND_OBJECT)
    tid = await mtp.command(Op.GET_STORAGE_IDS)
    data, response = await mtp.read_data_or_response(tid)
    assert response.ok and response.transaction_id == tid and data
    await still_serving(session)
    assert leftovers(session) == []
    # The object info was used up: a SendObject now has nothing to send.
    r = await mtp.transaction(Op.SEND_OBJECT, data=b"hello")
    assert r.code == ResponseCode.NO_VALID_OBJECT_INFO


async def test_a_bare_data_header_then_the_next_command_is_served_with_its_own_id(
    session: Device,
) -> None:
    # go-mtpfs, when it cannot read its own temporary file: SendObject, the data
    # header alone (announcing the whole file, no payload ever follows), then
    # the next SendObjectInfo as a transfer of its own.
    mtp = session.mtp
    r = await mtp.transaction(Op.SEND_OBJECT_INFO, 0, 0, data=object_info("x.txt", 511))
    assert r.response.ok
    abandoned = await mtp.command(Op.SEND_OBJECT)
    await session.host.write_transfer(data_header(Op.SEND_OBJECT, abandoned, 511))
    tid = await mtp.command(Op.SEND_OBJECT_INFO, 0, 0)
    assert tid == abandoned + 1
    await mtp.send_data(Op.SEND_OBJECT_INFO, tid, object_info("y.txt", 3))
    response = await mtp.read_response(tid)
    assert response.transaction_id == tid and response.ok
    r = await mtp.transaction(Op.SEND_OBJECT, data=b"abc")
    assert r.response.transaction_id == tid + 1 and r.response.ok
    await still_serving(session)
    assert leftovers(session) == ["y.txt"]
    assert (session.root / "y.txt").read_bytes() == b"abc"


async def test_a_bare_data_header_of_a_refused_send_object_then_the_next_command(
    session: Device,
) -> None:
    # No object info: SendObject drains its data phase before it answers.
    mtp = session.mtp
    abandoned = await mtp.command(Op.SEND_OBJECT)
    await session.host.write_transfer(data_header(Op.SEND_OBJECT, abandoned, 511))
    tid = await mtp.command(Op.GET_STORAGE_IDS)
    data, response = await mtp.read_data_or_response(tid)
    assert response.transaction_id == tid and response.ok and data
    await still_serving(session)


async def test_a_stray_bare_data_header_then_the_next_command_gets_one_answer(
    session: Device,
) -> None:
    mtp = session.mtp
    stray = mtp.next_tid()
    await session.host.write_transfer(data_header(Op.SEND_OBJECT, stray, 511))
    tid = await mtp.command(Op.GET_STORAGE_IDS)
    data, response = await mtp.read_data_or_response(tid)
    assert response.transaction_id == tid and response.ok and data
    await still_serving(session)


async def test_a_bare_data_header_then_a_zero_length_packet_ends_the_upload_incomplete(
    session: Device,
) -> None:
    # go-mtpfs's other way of failing to read its temporary file: the data header
    # alone, announcing the whole file, then a zero-length packet "to be sure",
    # and then it waits for SendObject's response.  Waiting for the payload
    # instead left both sides waiting until the host timed out and closed.
    mtp = session.mtp
    r = await mtp.transaction(Op.SEND_OBJECT_INFO, 0, 0, data=object_info("x.txt", 1))
    assert r.response.ok
    tid = await mtp.command(Op.SEND_OBJECT)
    await session.host.write_transfer(data_header(Op.SEND_OBJECT, tid, 1))
    await session.host.write_transfer(b"")
    with trio.fail_after(5):
        response = await mtp.read_response(tid)
    assert response.transaction_id == tid
    assert response.code == ResponseCode.INCOMPLETE_TRANSFER
    await still_serving(session)
    assert leftovers(session) == []


# -- defect 5: 64-bit offsets of 2^63 and more -----------------------------------------


@pytest.fixture
async def editing(session: Device) -> AsyncIterator[tuple[Device, int]]:
    (session.root / "doc.txt").write_bytes(b"0123456789")
    handle = await handle_of(session.mtp, "doc.txt")
    assert (await session.mtp.transaction(Op.BEGIN_EDIT_OBJECT, handle)).response.ok
    yield session, handle


@pytest.mark.parametrize("high", [0x80000000, 0xFFFFFFFF])
async def test_truncating_to_2_63_or_more_is_an_invalid_parameter(
    editing: tuple[Device, int], high: int
) -> None:
    device, handle = editing
    r = await device.mtp.transaction(Op.TRUNCATE_OBJECT, handle, 0, high)
    assert r.code == ResponseCode.INVALID_PARAMETER
    assert (device.root / "doc.txt").read_bytes() == b"0123456789"
    await still_serving(device)


@pytest.mark.parametrize("high", [0x80000000, 0xFFFFFFFF])
async def test_writing_at_2_63_or_more_is_an_invalid_parameter(
    editing: tuple[Device, int], high: int
) -> None:
    device, handle = editing
    r = await device.mtp.transaction(Op.SEND_PARTIAL_OBJECT, handle, 0, high, 3, data=b"abc")
    assert r.code == ResponseCode.INVALID_PARAMETER
    assert (device.root / "doc.txt").read_bytes() == b"0123456789"
    await still_serving(device)


@pytest.mark.parametrize("high", [0x80000000, 0xFFFFFFFF])
async def test_reading_at_2_63_or_more_is_an_invalid_parameter(
    editing: tuple[Device, int], high: int
) -> None:
    device, handle = editing
    r = await device.mtp.transaction(Op.GET_PARTIAL_OBJECT_64, handle, 0, high, 3)
    assert r.code == ResponseCode.INVALID_PARAMETER
    await still_serving(device)
