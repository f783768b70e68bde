"""Device properties: friendly name, sync partner, device type, battery."""

from __future__ import annotations

import struct
from pathlib import Path

import trio

from mtp_responder.core.codes import (
    DataType,
    DeviceProp,
    EventCode,
    FormFlag,
    OperationCode,
    ResponseCode,
)
from mtp_responder.core.datasets import DevicePropDesc, decode_value, encode_string
from mtp_responder.testing.initiator import Initiator

from .conftest import Device, make_config, start_device

ALL = 0xFFFFFFFF


async def value(mtp: Initiator, code: int, datatype: int) -> object:
    result = await mtp.transaction(OperationCode.GET_DEVICE_PROP_VALUE, code)
    assert result.response.ok, hex(result.code)
    assert result.data is not None
    return decode_value(datatype, result.data)


async def set_value(mtp: Initiator, code: int, data: bytes) -> int:
    result = await mtp.transaction(OperationCode.SET_DEVICE_PROP_VALUE, code, data=data)
    return result.code


def with_battery(tmp_path: Path, capacity: str | None) -> dict[str, object]:
    battery = tmp_path / "power_supply" / "BAT0"
    battery.mkdir(parents=True)
    (battery / "type").write_text("Battery\n")
    if capacity is not None:
        (battery / "capacity").write_text(capacity)
    config = make_config(tmp_path)
    config["device"] = {**config["device"], "battery": str(battery)}  # type: ignore[dict-item]
    return config


async def test_the_friendly_name_defaults_to_the_product(session: Device) -> None:
    assert await value(session.mtp, DeviceProp.DEVICE_FRIENDLY_NAME, DataType.STR) == "Board"


async def test_the_friendly_name_can_be_set(session: Device) -> None:
    assert (
        await set_value(
            session.mtp, DeviceProp.DEVICE_FRIENDLY_NAME, encode_string("Kitchen frame")
        )
        == ResponseCode.OK
    )
    assert await value(session.mtp, DeviceProp.DEVICE_FRIENDLY_NAME, DataType.STR) == (
        "Kitchen frame"
    )


async def test_setting_the_friendly_name_announces_the_change(session: Device) -> None:
    await set_value(session.mtp, DeviceProp.DEVICE_FRIENDLY_NAME, encode_string("New"))
    with trio.fail_after(2):
        event = await session.host.read_event()
    code, params = struct.unpack_from("<H", event, 6)[0], struct.unpack_from("<I", event, 12)
    assert (code, params) == (EventCode.DEVICE_PROP_CHANGED, (DeviceProp.DEVICE_FRIENDLY_NAME,))


async def test_the_friendly_name_survives_a_responder_restart(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = make_config(tmp_path)
    async with trio.open_nursery() as first:
        device = await start_device(first, tmp_path, config)
        await device.mtp.open_session()
        code = await set_value(device.mtp, DeviceProp.DEVICE_FRIENDLY_NAME, encode_string("Kept"))
        assert code == ResponseCode.OK
        first.cancel_scope.cancel()
    device = await start_device(nursery, tmp_path, config)
    await device.mtp.open_session()
    assert await value(device.mtp, DeviceProp.DEVICE_FRIENDLY_NAME, DataType.STR) == "Kept"


async def test_an_empty_friendly_name_is_an_invalid_value(session: Device) -> None:
    code = await set_value(session.mtp, DeviceProp.DEVICE_FRIENDLY_NAME, encode_string(""))
    assert code == ResponseCode.INVALID_DEVICE_PROP_VALUE


async def test_a_friendly_name_of_the_wrong_type_is_an_invalid_format(session: Device) -> None:
    code = await set_value(session.mtp, DeviceProp.DEVICE_FRIENDLY_NAME, struct.pack("<I", 5))
    assert code == ResponseCode.INVALID_DEVICE_PROP_FORMAT


async def test_reset_device_prop_value_restores_the_default(session: Device) -> None:
    await set_value(session.mtp, DeviceProp.DEVICE_FRIENDLY_NAME, encode_string("Temp"))
    result = await session.mtp.transaction(
        OperationCode.RESET_DEVICE_PROP_VALUE, DeviceProp.DEVICE_FRIENDLY_NAME
    )
    assert result.response.ok
    assert await value(session.mtp, DeviceProp.DEVICE_FRIENDLY_NAME, DataType.STR) == "Board"


async def test_reset_of_all_device_props_restores_every_default(session: Device) -> None:
    await set_value(session.mtp, DeviceProp.DEVICE_FRIENDLY_NAME, encode_string("Temp"))
    await set_value(session.mtp, DeviceProp.SYNCHRONIZATION_PARTNER, encode_string("PC"))
    result = await session.mtp.transaction(OperationCode.RESET_DEVICE_PROP_VALUE, ALL)
    assert result.response.ok
    assert await value(session.mtp, DeviceProp.DEVICE_FRIENDLY_NAME, DataType.STR) == "Board"
    assert await value(session.mtp, DeviceProp.SYNCHRONIZATION_PARTNER, DataType.STR) == ""


async def test_the_synchronization_partner_is_settable(session: Device) -> None:
    assert await value(session.mtp, DeviceProp.SYNCHRONIZATION_PARTNER, DataType.STR) == ""
    code = await set_value(session.mtp, DeviceProp.SYNCHRONIZATION_PARTNER, encode_string("WMP"))
    assert code == ResponseCode.OK
    assert await value(session.mtp, DeviceProp.SYNCHRONIZATION_PARTNER, DataType.STR) == "WMP"


async def test_the_perceived_device_type_comes_from_the_config(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    config = make_config(tmp_path)
    config["device"] = {**config["device"], "perceived_device_type": 2}  # type: ignore[dict-item]
    device = await start_device(nursery, tmp_path, config)
    await device.mtp.open_session()
    assert await value(device.mtp, DeviceProp.PERCEIVED_DEVICE_TYPE, DataType.UINT32) == 2


async def test_the_perceived_device_type_is_read_only(session: Device) -> None:
    code = await set_value(session.mtp, DeviceProp.PERCEIVED_DEVICE_TYPE, struct.pack("<I", 3))
    assert code == ResponseCode.ACCESS_DENIED


async def test_resetting_a_read_only_property_is_refused(session: Device) -> None:
    result = await session.mtp.transaction(
        OperationCode.RESET_DEVICE_PROP_VALUE, DeviceProp.PERCEIVED_DEVICE_TYPE
    )
    assert result.code == ResponseCode.ACCESS_DENIED


async def test_every_advertised_device_property_has_a_description(session: Device) -> None:
    info = await session.mtp.device_info()
    for code in info.device_properties_supported:
        result = await session.mtp.transaction(OperationCode.GET_DEVICE_PROP_DESC, code)
        assert result.response.ok, hex(code)
        assert DevicePropDesc.parse(result.data).property_code == code


async def test_the_friendly_name_description_is_settable_with_its_current_value(
    session: Device,
) -> None:
    await set_value(session.mtp, DeviceProp.DEVICE_FRIENDLY_NAME, encode_string("Now"))
    result = await session.mtp.transaction(
        OperationCode.GET_DEVICE_PROP_DESC, DeviceProp.DEVICE_FRIENDLY_NAME
    )
    desc = DevicePropDesc.parse(result.data)
    assert (desc.get_set, desc.factory_default, desc.current_value) == (1, "Board", "Now")


async def test_an_unknown_device_property_is_not_supported(session: Device) -> None:
    for op in (OperationCode.GET_DEVICE_PROP_DESC, OperationCode.GET_DEVICE_PROP_VALUE):
        result = await session.mtp.transaction(op, 0x5011)
        assert result.code == ResponseCode.DEVICE_PROP_NOT_SUPPORTED
    code = await set_value(session.mtp, 0xD4FF, b"\x00")
    assert code == ResponseCode.DEVICE_PROP_NOT_SUPPORTED


async def test_the_battery_level_is_offered_when_a_battery_exists(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    device = await start_device(nursery, tmp_path, with_battery(tmp_path, "73\n"))
    info = await device.mtp.device_info()
    assert DeviceProp.BATTERY_LEVEL in info.device_properties_supported
    await device.mtp.open_session()
    assert await value(device.mtp, DeviceProp.BATTERY_LEVEL, DataType.UINT8) == 73


async def test_the_battery_level_follows_the_power_supply(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    device = await start_device(nursery, tmp_path, with_battery(tmp_path, "73\n"))
    await device.mtp.open_session()
    (tmp_path / "power_supply" / "BAT0" / "capacity").write_text("12\n")
    assert await value(device.mtp, DeviceProp.BATTERY_LEVEL, DataType.UINT8) == 12


async def test_the_battery_level_is_a_range_from_0_to_100(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    device = await start_device(nursery, tmp_path, with_battery(tmp_path, "50"))
    await device.mtp.open_session()
    result = await device.mtp.transaction(
        OperationCode.GET_DEVICE_PROP_DESC, DeviceProp.BATTERY_LEVEL
    )
    desc = DevicePropDesc.parse(result.data)
    assert desc.form_flag == FormFlag.RANGE
    assert (desc.form.minimum, desc.form.maximum, desc.get_set) == (0, 100, 0)


async def test_no_battery_level_without_a_battery(nursery: trio.Nursery, tmp_path: Path) -> None:
    device = await start_device(nursery, tmp_path, with_battery(tmp_path, None))
    info = await device.mtp.device_info()
    assert DeviceProp.BATTERY_LEVEL not in info.device_properties_supported
    await device.mtp.open_session()
    result = await device.mtp.transaction(
        OperationCode.GET_DEVICE_PROP_VALUE, DeviceProp.BATTERY_LEVEL
    )
    assert result.code == ResponseCode.DEVICE_PROP_NOT_SUPPORTED


async def test_an_unreadable_battery_level_reads_as_zero(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    device = await start_device(nursery, tmp_path, with_battery(tmp_path, "full"))
    await device.mtp.open_session()
    assert await value(device.mtp, DeviceProp.BATTERY_LEVEL, DataType.UINT8) == 0


async def test_a_corrupt_state_file_falls_back_to_defaults(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "device-properties.json").write_text("{not json")
    device = await start_device(nursery, tmp_path)
    await device.mtp.open_session()
    assert await value(device.mtp, DeviceProp.DEVICE_FRIENDLY_NAME, DataType.STR) == "Board"


async def test_a_state_file_that_is_not_a_table_falls_back_to_defaults(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "device-properties.json").write_text('["DEVICE_FRIENDLY_NAME"]')
    device = await start_device(nursery, tmp_path)
    await device.mtp.open_session()
    assert await value(device.mtp, DeviceProp.DEVICE_FRIENDLY_NAME, DataType.STR) == "Board"
