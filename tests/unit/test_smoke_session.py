"""Sessions: what a host can do before, during and after OpenSession."""

from mtp_responder.core.codes import OperationCode, ResponseCode

from .conftest import Device


async def test_device_info_is_served_outside_a_session(device: Device) -> None:
    info = await device.mtp.device_info()
    assert info.manufacturer == "Acme"
    assert info.model == "Board"
    assert info.serial_number == "SN123"
    assert info.standard_version == 100
    assert "microsoft.com: 1.0" in info.vendor_extension_desc
    assert OperationCode.GET_OBJECT_PROP_LIST in info.operations_supported


async def test_operations_need_a_session(device: Device) -> None:
    result = await device.mtp.transaction(OperationCode.GET_STORAGE_IDS)
    assert result.code == ResponseCode.SESSION_NOT_OPEN


async def test_second_open_session_names_the_open_one(device: Device) -> None:
    assert (await device.mtp.open_session(7)).ok
    result = await device.mtp.transaction(OperationCode.OPEN_SESSION, 9)
    assert result.code == ResponseCode.SESSION_ALREADY_OPEN
    assert result.response.params == (7,)


async def test_send_and_get_object_round_trip(session: Device) -> None:
    payload = bytes(range(256)) * 5000
    handle = await session.mtp.send_object("hello.bin", payload, storage_id=session.storage_id)
    assert (session.root / "hello.bin").read_bytes() == payload
    assert await session.mtp.get_object(handle) == payload
    info = await session.mtp.object_info(handle)
    assert info.filename == "hello.bin"
    assert info.compressed_size == len(payload)
