"""Events: changes made on the device behind the responder's back reach the host."""

from __future__ import annotations

import os
import struct

import trio

from data_providers.files.watch import CHANGE_INTERVAL, MOVE_PAIR_WAIT
from mtp_responder.core.codes import (
    ContainerType,
    EventCode,
    ObjectFormat,
    ObjectProp,
    OperationCode,
)
from mtp_responder.core.datasets import encode_string
from mtp_responder.framework import ECHO_WINDOW

from .conftest import Device, object_info

QUIET = CHANGE_INTERVAL + MOVE_PAIR_WAIT + 0.25
"""How long to listen before concluding that no event is coming: longer than
the files provider's watcher holds a change back, so a held-back event would
land inside the window and fail the test."""


def parse_event(raw: bytes) -> tuple[int, tuple[int, ...]]:
    length, ctype, code, _tid = struct.unpack_from("<IHHI", raw)
    assert ctype == ContainerType.EVENT
    assert length == len(raw)
    count = (length - 12) // 4
    return code, struct.unpack_from(f"<{count}I", raw, 12)


async def next_event(device: Device, timeout: float = 3.0) -> tuple[int, tuple[int, ...]]:
    with trio.fail_after(timeout):
        return parse_event(await device.host.read_event())


async def device_makes(device: Device, name: str, data: str = "x") -> int:
    """Create a file on the device as a careful program does, and return its handle.

    Written under a hidden name and renamed into place, the file makes exactly
    one event (ObjectAdded, which carries the handle) and leaves no change held
    back in the watcher to leak into what the test listens for next.
    """
    hidden = device.root / f".{name}.part"
    hidden.write_text(data)
    os.rename(hidden, device.root / name)
    code, (handle,) = await next_event(device)
    assert code == EventCode.OBJECT_ADDED
    return handle


async def event_arrives(
    device: Device, expected: tuple[int, tuple[int, ...]], timeout: float = 3.0
) -> None:
    """Read events until ``expected`` comes; fail if it has not after ``timeout`` s."""
    with trio.fail_after(timeout):
        while parse_event(await device.host.read_event()) != expected:
            pass


async def events_within(
    device: Device, seconds: float = QUIET
) -> list[tuple[int, tuple[int, ...]]]:
    """Every event sent in the next ``seconds``: the listening is what is tested."""
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
    handle = await device_makes(session, "old.txt", "o")
    (session.root / "old.txt").unlink()
    assert await next_event(session) == (EventCode.OBJECT_REMOVED, (handle,))


async def test_a_known_file_changed_on_the_device_is_announced_with_its_new_size(
    session: Device,
) -> None:
    handle = await device_makes(session, "grow.txt", "1")
    with open(session.root / "grow.txt", "a") as f:
        f.write("2345")
    assert await next_event(session) == (EventCode.OBJECT_INFO_CHANGED, (handle,))
    assert (await session.mtp.object_info(handle)).compressed_size == 5


async def test_a_known_file_renamed_on_the_device_keeps_its_handle(session: Device) -> None:
    handle = await device_makes(session, "before.txt", "b")
    os.rename(session.root / "before.txt", session.root / "after.txt")
    assert await next_event(session) == (EventCode.OBJECT_INFO_CHANGED, (handle,))
    assert (await session.mtp.object_info(handle)).filename == "after.txt"


async def test_a_file_moved_out_of_the_storage_is_removed(session: Device) -> None:
    handle = await device_makes(session, "leaving.txt", "l")
    os.rename(session.root / "leaving.txt", session.root.parent / "leaving.txt")
    assert await next_event(session) == (EventCode.OBJECT_REMOVED, (handle,))


async def test_no_events_without_a_session(device: Device) -> None:
    (device.root / "quiet.txt").write_text("q")
    assert await events_within(device) == []


async def test_changes_before_the_session_are_not_replayed_after_it_opens(device: Device) -> None:
    (device.root / "early.txt").write_text("e")
    assert await events_within(device) == []
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
    handle = await device_makes(session, "victim.txt", "v")
    assert (await session.mtp.transaction(OperationCode.DELETE_OBJECT, handle)).response.ok
    assert await events_within(session) == []


async def test_no_events_for_the_hosts_own_rename(session: Device) -> None:
    handle = await device_makes(session, "r.txt", "r")
    result = await session.mtp.transaction(
        OperationCode.SET_OBJECT_PROP_VALUE,
        handle,
        ObjectProp.OBJECT_FILE_NAME,
        data=encode_string("s.txt"),
    )
    assert result.response.ok
    assert await events_within(session) == []


async def test_no_events_for_the_hosts_own_move(session: Device) -> None:
    handle = await device_makes(session, "m.txt", "m")
    (session.root / "dest").mkdir()
    code, (dest,) = await next_event(session)
    assert code == EventCode.OBJECT_ADDED
    result = await session.mtp.transaction(
        OperationCode.MOVE_OBJECT, handle, session.storage_id, dest
    )
    assert result.response.ok
    assert await events_within(session) == []


async def test_no_events_for_the_hosts_own_copy(session: Device) -> None:
    handle = await device_makes(session, "c.txt", "c")
    result = await session.mtp.transaction(OperationCode.COPY_OBJECT, handle, session.storage_id, 0)
    assert result.response.ok
    assert await events_within(session) == []


async def test_no_events_for_the_hosts_own_date_change(session: Device) -> None:
    handle = await device_makes(session, "t.txt", "t")
    result = await session.mtp.transaction(
        OperationCode.SET_OBJECT_PROP_VALUE,
        handle,
        ObjectProp.DATE_MODIFIED,
        data=encode_string("20200101T000000"),
    )
    assert result.response.ok
    assert await events_within(session) == []


async def test_no_inotify_echo_for_the_hosts_own_edit(session: Device) -> None:
    handle = await device_makes(session, "e.txt", "edit me")
    assert (await session.mtp.transaction(OperationCode.BEGIN_EDIT_OBJECT, handle)).response.ok
    result = await session.mtp.transaction(
        OperationCode.SEND_PARTIAL_OBJECT, handle, 0, 0, 4, data=b"EDIT"
    )
    assert result.response.ok
    assert await events_within(session, 1.5) == []


async def test_a_device_change_after_the_hosts_change_settles_is_announced(
    session: Device,
) -> None:
    handle = await device_makes(session, "later.txt")
    await session.mtp.transaction(
        OperationCode.SET_OBJECT_PROP_VALUE,
        handle,
        ObjectProp.DATE_MODIFIED,
        data=encode_string("20200101T000000"),
    )
    # The echo window running out is what this test is about: wait it out.
    assert await events_within(session, ECHO_WINDOW + 0.2) == []
    with open(session.root / "later.txt", "a") as f:
        f.write("more")
    await event_arrives(session, (EventCode.OBJECT_INFO_CHANGED, (handle,)))


async def test_an_event_carries_a_handle_the_host_can_use(session: Device) -> None:
    (session.root / "use.txt").write_text("use me")
    _, (handle,) = await next_event(session)
    assert await session.mtp.get_object(handle) == b"use me"
