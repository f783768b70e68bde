"""Events: changes made on the device behind the responder's back reach the host."""

from __future__ import annotations

import os
import struct

import trio

from mtp_responder.core.codes import (
    ContainerType,
    EventCode,
    ObjectFormat,
    ObjectProp,
    OperationCode,
)
from mtp_responder.core.datasets import encode_string

from .conftest import Device, handle_of, object_info

QUIET = 0.3
"""How long to listen before concluding that no event is coming."""


def parse_event(raw: bytes) -> tuple[int, tuple[int, ...]]:
    length, ctype, code, _tid = struct.unpack_from("<IHHI", raw)
    assert ctype == ContainerType.EVENT
    assert length == len(raw)
    count = (length - 12) // 4
    return code, struct.unpack_from(f"<{count}I", raw, 12)


async def next_event(device: Device, timeout: float = 3.0) -> tuple[int, tuple[int, ...]]:
    with trio.fail_after(timeout):
        return parse_event(await device.host.read_event())


async def events_within(
    device: Device, seconds: float = QUIET
) -> list[tuple[int, tuple[int, ...]]]:
    await trio.sleep(seconds)
    out = []
    while (raw := device.host.read_event_nowait()) is not None:
        out.append(parse_event(raw))
    return out


async def test_a_file_created_on_the_device_is_announced(session: Device) -> None:
    (session.root / "new.txt").write_text("n")
    code, (handle,) = await next_event(session)
    assert code == EventCode.OBJECT_ADDED
    assert (await session.mtp.object_info(handle)).filename == "new.txt"


async def test_a_folder_created_on_the_device_is_announced(session: Device) -> None:
    (session.root / "Folder").mkdir()
    code, (handle,) = await next_event(session)
    assert code == EventCode.OBJECT_ADDED
    info = await session.mtp.object_info(handle)
    assert (info.filename, info.object_format) == ("Folder", ObjectFormat.ASSOCIATION)


async def test_a_file_in_a_new_folder_is_announced(session: Device) -> None:
    (session.root / "Folder").mkdir()
    await next_event(session)
    (session.root / "Folder" / "inner.txt").write_text("i")
    code, (handle,) = await next_event(session)
    assert code == EventCode.OBJECT_ADDED
    assert (await session.mtp.object_info(handle)).filename == "inner.txt"


async def test_a_known_file_deleted_on_the_device_is_announced(session: Device) -> None:
    (session.root / "old.txt").write_text("o")
    handle = await handle_of(session.mtp, "old.txt")
    await events_within(session)
    (session.root / "old.txt").unlink()
    assert await next_event(session) == (EventCode.OBJECT_REMOVED, (handle,))


async def test_a_known_file_changed_on_the_device_is_announced_with_its_new_size(
    session: Device,
) -> None:
    (session.root / "grow.txt").write_text("1")
    handle = await handle_of(session.mtp, "grow.txt")
    await events_within(session)
    with open(session.root / "grow.txt", "a") as f:
        f.write("2345")
    assert await next_event(session) == (EventCode.OBJECT_INFO_CHANGED, (handle,))
    assert (await session.mtp.object_info(handle)).compressed_size == 5


async def test_a_known_file_renamed_on_the_device_keeps_its_handle(session: Device) -> None:
    (session.root / "before.txt").write_text("b")
    handle = await handle_of(session.mtp, "before.txt")
    await events_within(session)
    os.rename(session.root / "before.txt", session.root / "after.txt")
    assert await next_event(session) == (EventCode.OBJECT_INFO_CHANGED, (handle,))
    assert (await session.mtp.object_info(handle)).filename == "after.txt"


async def test_a_file_moved_out_of_the_storage_is_removed(session: Device) -> None:
    (session.root / "leaving.txt").write_text("l")
    handle = await handle_of(session.mtp, "leaving.txt")
    await events_within(session)
    os.rename(session.root / "leaving.txt", session.root.parent / "leaving.txt")
    assert await next_event(session) == (EventCode.OBJECT_REMOVED, (handle,))


async def test_no_events_without_a_session(device: Device) -> None:
    (device.root / "quiet.txt").write_text("q")
    assert await events_within(device) == []


async def test_changes_before_the_session_are_not_replayed_after_it_opens(device: Device) -> None:
    (device.root / "early.txt").write_text("e")
    await trio.sleep(QUIET)
    assert (await device.mtp.open_session()).ok
    assert await events_within(device) == []


async def test_no_events_after_the_session_closed(session: Device) -> None:
    assert (await session.mtp.close_session()).ok
    (session.root / "late.txt").write_text("l")
    assert await events_within(session) == []


async def test_no_events_for_the_hosts_own_upload(session: Device) -> None:
    await session.mtp.send_object("mine.bin", b"m" * 5000)
    assert await events_within(session) == []


async def test_no_events_for_the_hosts_own_new_folder(session: Device) -> None:
    result = await session.mtp.transaction(
        OperationCode.SEND_OBJECT_INFO, 0, 0, data=object_info("Mine", format_code=0x3001)
    )
    assert result.response.ok
    assert await events_within(session) == []


async def test_no_events_for_the_hosts_own_delete(session: Device) -> None:
    (session.root / "victim.txt").write_text("v")
    handle = await handle_of(session.mtp, "victim.txt")
    await events_within(session)
    assert (await session.mtp.transaction(OperationCode.DELETE_OBJECT, handle)).response.ok
    assert await events_within(session) == []


async def test_no_events_for_the_hosts_own_rename(session: Device) -> None:
    (session.root / "r.txt").write_text("r")
    handle = await handle_of(session.mtp, "r.txt")
    await events_within(session)
    result = await session.mtp.transaction(
        OperationCode.SET_OBJECT_PROP_VALUE,
        handle,
        ObjectProp.OBJECT_FILE_NAME,
        data=encode_string("s.txt"),
    )
    assert result.response.ok
    assert await events_within(session) == []


async def test_no_events_for_the_hosts_own_move(session: Device) -> None:
    (session.root / "m.txt").write_text("m")
    (session.root / "dest").mkdir()
    handle = await handle_of(session.mtp, "m.txt")
    dest = await handle_of(session.mtp, "dest")
    await events_within(session)
    result = await session.mtp.transaction(
        OperationCode.MOVE_OBJECT, handle, session.storage_id, dest
    )
    assert result.response.ok
    assert await events_within(session) == []


async def test_no_events_for_the_hosts_own_copy(session: Device) -> None:
    (session.root / "c.txt").write_text("c")
    handle = await handle_of(session.mtp, "c.txt")
    await events_within(session)
    result = await session.mtp.transaction(
        OperationCode.COPY_OBJECT, handle, session.storage_id, 0
    )
    assert result.response.ok
    assert await events_within(session) == []


async def test_no_events_for_the_hosts_own_date_change(session: Device) -> None:
    (session.root / "t.txt").write_text("t")
    handle = await handle_of(session.mtp, "t.txt")
    await events_within(session)
    result = await session.mtp.transaction(
        OperationCode.SET_OBJECT_PROP_VALUE,
        handle,
        ObjectProp.DATE_MODIFIED,
        data=encode_string("20200101T000000"),
    )
    assert result.response.ok
    assert await events_within(session) == []


async def test_no_inotify_echo_for_the_hosts_own_edit(session: Device) -> None:
    (session.root / "e.txt").write_text("edit me")
    handle = await handle_of(session.mtp, "e.txt")
    await events_within(session)
    assert (await session.mtp.transaction(OperationCode.BEGIN_EDIT_OBJECT, handle)).response.ok
    result = await session.mtp.transaction(
        OperationCode.SEND_PARTIAL_OBJECT, handle, 0, 0, 4, data=b"EDIT"
    )
    assert result.response.ok
    assert await events_within(session, 1.5) == []


async def test_a_device_change_after_the_hosts_change_settles_is_announced(
    session: Device,
) -> None:
    (session.root / "later.txt").write_text("x")
    handle = await handle_of(session.mtp, "later.txt")
    await session.mtp.transaction(
        OperationCode.SET_OBJECT_PROP_VALUE,
        handle,
        ObjectProp.DATE_MODIFIED,
        data=encode_string("20200101T000000"),
    )
    await trio.sleep(2.2)
    with open(session.root / "later.txt", "a") as f:
        f.write("more")
    events = await events_within(session, 1.0)
    assert (EventCode.OBJECT_INFO_CHANGED, (handle,)) in events


async def test_an_event_carries_a_handle_the_host_can_use(session: Device) -> None:
    (session.root / "use.txt").write_text("use me")
    _, (handle,) = await next_event(session)
    assert await session.mtp.get_object(handle) == b"use me"
