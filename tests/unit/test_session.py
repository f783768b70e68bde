"""Sessions and transaction ids, over the loopback link."""

from __future__ import annotations

from mtp_responder.core.codes import EventCode, OperationCode, ResponseCode
from mtp_responder.operations import Operations
from mtp_responder.testing.initiator import Initiator

from .conftest import Device

OPS_NEEDING_A_SESSION = [
    code
    for code in Operations.supported()
    if code
    not in (
        OperationCode.GET_DEVICE_INFO,
        OperationCode.OPEN_SESSION,
        OperationCode.CLOSE_SESSION,
    )
]


async def call(mtp: Initiator, code: int, *params: int, tid: int) -> int:
    """One transaction; operations that take data get a few bytes."""
    await mtp.command(code, *params, tid=tid)
    if Operations.expects_data(code):
        await mtp.send_data(code, tid, b"\x00" * 8)
    _, response = await mtp.read_data_or_response(tid)
    return response.code


async def test_device_info_is_also_served_inside_a_session(session: Device) -> None:
    info = await session.mtp.device_info()
    assert info.serial_number == "SN123"


async def test_device_info_advertises_exactly_the_dispatched_operations(device: Device) -> None:
    info = await device.mtp.device_info()
    assert sorted(info.operations_supported) == Operations.supported()


async def test_every_advertised_operation_is_answered_with_something_else_than_not_supported(
    session: Device,
) -> None:
    mtp = session.mtp
    for tid, code in enumerate(OPS_NEEDING_A_SESSION, start=1):
        if code == OperationCode.RESET_DEVICE:
            continue
        code_back = await call(mtp, code, 0xDEAD, tid=tid)
        assert code_back != ResponseCode.OPERATION_NOT_SUPPORTED, hex(code)


async def test_device_info_advertises_the_events_and_device_properties(device: Device) -> None:
    info = await device.mtp.device_info()
    assert {
        EventCode.OBJECT_ADDED,
        EventCode.OBJECT_REMOVED,
        EventCode.OBJECT_INFO_CHANGED,
        EventCode.STORE_ADDED,
        EventCode.STORE_REMOVED,
        EventCode.DEVICE_PROP_CHANGED,
    } <= set(info.events_supported)
    assert 0xD402 in info.device_properties_supported


async def test_device_info_does_not_claim_android_extensions(device: Device) -> None:
    # libmtp would stop using GetObjectPropList for an "android.com" device.
    info = await device.mtp.device_info()
    assert "android.com" not in info.vendor_extension_desc
    assert info.vendor_extension_id == 6
    assert info.functional_mode == 0


async def test_open_session_succeeds(device: Device) -> None:
    assert (await device.mtp.open_session(5)).ok


async def test_open_session_with_id_zero_is_an_invalid_parameter(device: Device) -> None:
    result = await device.mtp.transaction(OperationCode.OPEN_SESSION, 0)
    assert result.code == ResponseCode.INVALID_PARAMETER


async def test_every_operation_needs_a_session(device: Device) -> None:
    mtp = device.mtp
    for tid, code in enumerate(OPS_NEEDING_A_SESSION, start=1):
        assert await call(mtp, code, 1, tid=tid) == ResponseCode.SESSION_NOT_OPEN, hex(code)


async def test_close_session_without_a_session_is_session_not_open(device: Device) -> None:
    assert (await device.mtp.close_session()).code == ResponseCode.SESSION_NOT_OPEN


async def test_close_session_ends_the_session(session: Device) -> None:
    assert (await session.mtp.close_session()).ok
    result = await session.mtp.transaction(OperationCode.GET_STORAGE_IDS)
    assert result.code == ResponseCode.SESSION_NOT_OPEN


async def test_a_new_session_can_be_opened_after_closing_one(session: Device) -> None:
    assert (await session.mtp.close_session()).ok
    assert (await session.mtp.open_session(2)).ok
    assert await session.mtp.storage_ids() == [session.storage_id]


async def test_reset_device_closes_the_session(session: Device) -> None:
    assert (await session.mtp.transaction(OperationCode.RESET_DEVICE)).response.ok
    result = await session.mtp.transaction(OperationCode.GET_STORAGE_IDS)
    assert result.code == ResponseCode.SESSION_NOT_OPEN
    assert (await session.mtp.open_session(3)).ok


async def test_unknown_operations_are_not_supported_inside_a_session(session: Device) -> None:
    for code in (0x0000, 0x1011, 0x100E, 0x9999, 0xFFFF):
        result = await session.mtp.transaction(code)
        assert result.code == ResponseCode.OPERATION_NOT_SUPPORTED, hex(code)


async def test_unknown_operations_are_not_supported_outside_a_session(device: Device) -> None:
    result = await device.mtp.transaction(0x9999)
    assert result.code == ResponseCode.OPERATION_NOT_SUPPORTED


async def test_transaction_ids_count_up_from_one_after_open_session(session: Device) -> None:
    assert await call(session.mtp, OperationCode.GET_STORAGE_IDS, tid=1) == ResponseCode.OK
    assert await call(session.mtp, OperationCode.GET_STORAGE_IDS, tid=2) == ResponseCode.OK


async def test_a_repeated_transaction_id_is_invalid(session: Device) -> None:
    mtp = session.mtp
    assert await call(mtp, OperationCode.GET_STORAGE_IDS, tid=1) == ResponseCode.OK
    assert await call(mtp, OperationCode.GET_STORAGE_IDS, tid=1) == (
        ResponseCode.INVALID_TRANSACTION_ID
    )


async def test_a_transaction_id_that_steps_back_is_invalid(session: Device) -> None:
    mtp = session.mtp
    assert await call(mtp, OperationCode.GET_STORAGE_IDS, tid=5) == ResponseCode.OK
    assert await call(mtp, OperationCode.GET_STORAGE_IDS, tid=3) == (
        ResponseCode.INVALID_TRANSACTION_ID
    )


async def test_transaction_id_zero_is_invalid_inside_a_session(session: Device) -> None:
    assert await call(session.mtp, OperationCode.GET_STORAGE_IDS, tid=0) == (
        ResponseCode.INVALID_TRANSACTION_ID
    )


async def test_transaction_id_0xffffffff_is_invalid(session: Device) -> None:
    assert await call(session.mtp, OperationCode.GET_STORAGE_IDS, tid=0xFFFFFFFF) == (
        ResponseCode.INVALID_TRANSACTION_ID
    )


async def test_a_gap_forward_in_transaction_ids_is_accepted(session: Device) -> None:
    assert await call(session.mtp, OperationCode.GET_STORAGE_IDS, tid=10) == ResponseCode.OK


async def test_an_invalid_transaction_id_does_not_spoil_the_next_one(session: Device) -> None:
    mtp = session.mtp
    assert await call(mtp, OperationCode.GET_STORAGE_IDS, tid=4) == ResponseCode.OK
    assert await call(mtp, OperationCode.GET_STORAGE_IDS, tid=2) == (
        ResponseCode.INVALID_TRANSACTION_ID
    )
    assert await call(mtp, OperationCode.GET_STORAGE_IDS, tid=5) == ResponseCode.OK


async def test_the_response_carries_the_commands_transaction_id(session: Device) -> None:
    await session.mtp.command(OperationCode.GET_STORAGE_IDS, tid=77)
    _, response = await session.mtp.read_data_or_response(77)
    assert response.transaction_id == 77


async def test_transaction_ids_wrap_after_0xfffffffe(session: Device) -> None:
    mtp = session.mtp
    assert await call(mtp, OperationCode.GET_STORAGE_IDS, tid=0xFFFFFFFE) == ResponseCode.OK
    assert await call(mtp, OperationCode.GET_STORAGE_IDS, tid=1) == ResponseCode.OK
