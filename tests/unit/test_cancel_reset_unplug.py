"""Host Cancel, Device Reset and unplugging in the middle of transfers."""

from __future__ import annotations

import os

from mtp_responder.core.codes import OperationCode, ResponseCode
from mtp_responder.core.container import data_header

from .conftest import Device, handle_of, object_info, still_serving, wait_until

BIG = 8 * 1024 * 1024


async def wait_idle(device: Device) -> None:
    """Poll Get Device Status until it stops answering Device Busy."""
    await wait_until(lambda: not device.host.device_status_busy(), 5)


def leftovers(device: Device) -> list[str]:
    return [
        os.path.join(d, f) for d, _, files in os.walk(device.root) for f in files if f[0] == "."
    ]


async def start_big_get(device: Device) -> int:
    """GetObject of a big file; returns its tid once data is flowing."""
    (device.root / "big.bin").write_bytes(os.urandom(BIG))
    handle = await handle_of(device.mtp, "big.bin")
    tid = await device.mtp.command(OperationCode.GET_OBJECT, handle)
    for _ in range(3):
        await device.host.read_item()
    return tid


async def start_big_send(device: Device) -> int:
    """SendObjectInfo, then a SendObject whose data stops half way."""
    result = await device.mtp.transaction(
        OperationCode.SEND_OBJECT_INFO, 0, 0, data=object_info("big.bin", BIG)
    )
    assert result.response.ok
    tid = await device.mtp.command(OperationCode.SEND_OBJECT)
    first = data_header(OperationCode.SEND_OBJECT, tid, BIG) + b"x" * (1024 * 1024 - 12)
    await device.host.write_transfer(first, end=False)
    # The responder is writing the file once its hidden partial file exists.
    await wait_until(lambda: bool(leftovers(device)), 5)
    return tid


# -- Cancel ------------------------------------------------------------------------


async def test_cancel_during_get_object_makes_the_device_busy_then_idle(session: Device) -> None:
    tid = await start_big_get(session)
    session.host.cancel(tid)
    assert session.host.device_status_busy()
    await wait_idle(session)


async def test_the_next_transaction_works_after_cancelling_get_object(session: Device) -> None:
    tid = await start_big_get(session)
    session.host.cancel(tid)
    await wait_idle(session)
    await still_serving(session)


async def test_a_cancelled_get_object_can_be_read_again(session: Device) -> None:
    tid = await start_big_get(session)
    session.host.cancel(tid)
    await wait_idle(session)
    handle = await handle_of(session.mtp, "big.bin")
    assert await session.mtp.get_object(handle) == (session.root / "big.bin").read_bytes()


async def test_cancel_during_send_object_leaves_no_partial_file(session: Device) -> None:
    tid = await start_big_send(session)
    session.host.cancel(tid)
    await wait_idle(session)
    assert not (session.root / "big.bin").exists()
    assert leftovers(session) == []


async def test_the_next_transaction_works_after_cancelling_send_object(session: Device) -> None:
    tid = await start_big_send(session)
    session.host.cancel(tid)
    await wait_idle(session)
    await still_serving(session)


async def test_the_same_file_can_be_sent_again_after_a_cancel(session: Device) -> None:
    tid = await start_big_send(session)
    session.host.cancel(tid)
    await wait_idle(session)
    await session.mtp.send_object("big.bin", b"small now")
    assert (session.root / "big.bin").read_bytes() == b"small now"


async def test_a_cancelled_send_object_needs_a_new_object_info(session: Device) -> None:
    tid = await start_big_send(session)
    session.host.cancel(tid)
    await wait_idle(session)
    result = await session.mtp.transaction(OperationCode.SEND_OBJECT, data=b"late")
    assert result.code == ResponseCode.NO_VALID_OBJECT_INFO


async def test_cancel_when_nothing_runs_is_harmless(session: Device) -> None:
    session.host.cancel(99)
    await wait_idle(session)
    await still_serving(session)


# -- Device Reset -------------------------------------------------------------------


async def test_device_reset_closes_the_session(session: Device) -> None:
    session.host.device_reset()
    await wait_idle(session)
    result = await session.mtp.transaction(OperationCode.GET_STORAGE_IDS)
    assert result.code == ResponseCode.SESSION_NOT_OPEN
    assert (await session.mtp.open_session(2)).ok


async def test_device_reset_during_send_object_leaves_no_partial_file(session: Device) -> None:
    await start_big_send(session)
    session.host.device_reset()
    await wait_idle(session)
    assert not (session.root / "big.bin").exists()
    assert leftovers(session) == []
    assert (await session.mtp.open_session(2)).ok
    await still_serving(session)


async def test_device_reset_during_get_object_closes_the_session(session: Device) -> None:
    await start_big_get(session)
    session.host.device_reset()
    await wait_idle(session)
    assert (await session.mtp.open_session(3)).ok
    await still_serving(session)


# -- unplug ----------------------------------------------------------------------------


async def replug(device: Device) -> None:
    """Unplug, wait until the device has cleaned up after the lost link, plug back in."""
    device.host.unplug()
    await wait_idle(device)
    device.host.plug()


async def test_unplug_closes_the_session(session: Device) -> None:
    await replug(session)
    result = await session.mtp.transaction(OperationCode.GET_STORAGE_IDS)
    assert result.code == ResponseCode.SESSION_NOT_OPEN


async def test_open_session_works_after_replugging(session: Device) -> None:
    await replug(session)
    assert (await session.mtp.open_session(4)).ok
    await still_serving(session)


async def test_unplug_during_send_object_leaves_no_partial_file(session: Device) -> None:
    await start_big_send(session)
    await replug(session)
    assert not (session.root / "big.bin").exists()
    assert leftovers(session) == []
    assert (await session.mtp.open_session(5)).ok
    await session.mtp.send_object("big.bin", b"again")
    assert (session.root / "big.bin").read_bytes() == b"again"


async def test_unplug_during_get_object_then_a_new_session_reads_it(session: Device) -> None:
    await start_big_get(session)
    await replug(session)
    assert (await session.mtp.open_session(6)).ok
    handle = await handle_of(session.mtp, "big.bin")
    assert len(await session.mtp.get_object(handle)) == BIG


async def test_unplug_between_send_object_info_and_send_object_leaves_nothing(
    session: Device,
) -> None:
    result = await session.mtp.transaction(
        OperationCode.SEND_OBJECT_INFO, 0, 0, data=object_info("pending.bin", 10)
    )
    assert result.response.ok
    await replug(session)
    assert list(session.root.iterdir()) == []
    assert (await session.mtp.open_session(7)).ok


async def test_unplug_while_idle_outside_a_session_is_harmless(device: Device) -> None:
    await replug(device)
    assert (await device.mtp.open_session()).ok

