"""Configuration: defaults that work, and errors that name the key and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gadget_config.settings import parse as parse_gadget_settings
from mtp_responder import device_config
from mtp_responder.config import ConfigError, load_config, parse_config
from mtp_responder.device_config import FALLBACK_SERIAL, SPEEDS, default_serial


def error_for(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def test_no_config_file_gives_working_defaults() -> None:
    config = load_config(None)
    assert config.device.manufacturer
    assert config.device.product
    assert config.log_level == "info"
    assert [p.plugin for p in config.providers] == ["files"]


def test_the_default_storage_is_the_home_directory() -> None:
    config = load_config(None)
    (storage,) = config.providers[0].options["storages"]
    assert storage["path"] == str(Path.home())


def test_an_empty_document_is_the_defaults() -> None:
    assert parse_config({}).device == load_config(None).device


def test_the_serial_defaults_to_the_machine_id() -> None:
    assert parse_config({}).device.serial == default_serial()
    assert parse_config({"device": {"serial": ""}}).device.serial == default_serial()
    assert parse_config({"device": {"serial": "SN1"}}).device.serial == "SN1"


def test_the_machine_id_comes_from_systemd_then_dbus_then_a_fixed_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    systemd, dbus = tmp_path / "etc-machine-id", tmp_path / "dbus-machine-id"
    monkeypatch.setattr(device_config, "MACHINE_ID_FILES", (systemd, dbus))
    assert default_serial() == FALLBACK_SERIAL
    dbus.write_text("d" * 32 + "\n")
    assert default_serial() == "d" * 32
    systemd.write_text("\n")  # present but empty, as on a freshly built image
    assert default_serial() == "d" * 32
    systemd.write_text("e" * 40 + "\n")
    assert default_serial() == "e" * 32
    assert parse_config({}).device.serial == "e" * 32


@pytest.mark.parametrize(
    "device",
    [
        {},
        {"serial": ""},
        {"manufacturer": "Acme", "product": "Frame", "serial": "X1", "version": "2.3"},
    ],
    ids=["empty table", "empty serial", "every string set"],
)
def test_the_gadget_reads_the_device_table_as_the_responder_does(device: dict[str, Any]) -> None:
    """USB descriptors and MTP DeviceInfo agree: Windows keys caches on one, shows the other."""
    data = {"device": device}
    responder, gadget = parse_config(data).device, parse_gadget_settings(data).device
    for key in ("manufacturer", "product", "serial", "version"):
        assert getattr(gadget, key) == getattr(responder, key), key
    assert gadget == responder


def test_the_gadget_and_the_responder_know_the_same_speeds() -> None:
    for speed in SPEEDS:
        assert parse_config({"device": {"max_speed": speed}}).device.max_speed == speed
        assert parse_gadget_settings({"device": {"max_speed": speed}}).device.max_speed == speed


def test_a_full_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "mtp.toml"
    path.write_text(
        """
log_level = "debug"
state_dir = "/tmp/state"

[device]
manufacturer = "Acme"
product = "Frame"
serial = "X1"
vendor_id = 0x1234
product_id = 0x5678
friendly_name = "Kitchen"
perceived_device_type = 2

[transport]
buffer_size = 131072
blocks_in_flight = 8

[providers.files]
storages = [{ path = "/srv", description = "Media" }]
"""
    )
    config = load_config(path)
    assert config.log_level == "debug"
    assert config.state_dir == Path("/tmp/state")
    assert (config.device.manufacturer, config.device.vendor_id) == ("Acme", 0x1234)
    assert config.transport.blocks_in_flight == 8
    assert config.providers[0].options == {"storages": [{"path": "/srv", "description": "Media"}]}
    assert config.source == path


def test_an_unknown_top_level_key_is_named() -> None:
    assert error_for({"devices": {}}).startswith("devices: unknown key")


def test_an_unknown_device_key_is_named() -> None:
    assert error_for({"device": {"manufactuer": "x"}}) == "device.manufactuer: unknown key"


def test_a_value_of_the_wrong_type_names_key_and_types() -> None:
    assert error_for({"device": {"vendor_id": "0x1234"}}) == (
        "device.vendor_id: expected int, got str"
    )


def test_a_boolean_is_not_an_integer() -> None:
    assert error_for({"device": {"vendor_id": True}}) == "device.vendor_id: expected int, got bool"


def test_a_usb_id_beyond_16_bits_is_refused() -> None:
    assert error_for({"device": {"product_id": 0x10000}}) == (
        "device.product_id: 0x10000 does not fit in 16 bits"
    )


def test_a_string_too_long_for_mtp_is_refused() -> None:
    assert error_for({"device": {"serial": "x" * 255}}) == (
        "device.serial: longer than 254 characters"
    )


def test_a_string_with_nul_is_refused() -> None:
    message = error_for({"device": {"product": "a\x00b"}})
    assert message == "device.product: contains a NUL character"


def test_an_empty_product_is_refused() -> None:
    assert error_for({"device": {"product": ""}}) == "device.product: must not be empty"


def test_an_unknown_speed_is_refused_with_the_choices() -> None:
    message = error_for({"device": {"max_speed": "warp"}})
    assert message.startswith("device.max_speed: must be one of")
    assert "high-speed" in message


def test_a_perceived_device_type_out_of_range_is_refused() -> None:
    assert error_for({"device": {"perceived_device_type": 9}}).startswith(
        "device.perceived_device_type:"
    )


def test_an_unknown_log_level_is_refused_with_the_choices() -> None:
    message = error_for({"log_level": "loud"})
    assert message.startswith("log_level: 'loud' is not one of")
    assert "debug" in message


def test_log_levels_are_case_insensitive() -> None:
    assert parse_config({"log_level": "WARNING"}).log_level == "warning"


def test_a_transport_buffer_that_is_not_a_multiple_of_1024_is_refused() -> None:
    assert error_for({"transport": {"buffer_size": 1000}}).startswith("transport.buffer_size:")


def test_too_many_blocks_in_flight_are_refused() -> None:
    assert error_for({"transport": {"blocks_in_flight": 0}}).startswith(
        "transport.blocks_in_flight:"
    )


def test_an_unknown_transport_key_is_named() -> None:
    assert error_for({"transport": {"speed": 1}}) == "transport.speed: unknown key"


def test_a_provider_table_of_the_wrong_type_is_named() -> None:
    assert error_for({"providers": {"files": "yes"}}) == ("providers.files: expected dict, got str")


def test_disabling_every_provider_is_refused() -> None:
    assert error_for({"providers": {"files": {"enabled": False}}}) == (
        "providers: no data provider is enabled"
    )


def test_a_provider_names_its_plugin_or_defaults_to_its_own_name() -> None:
    config = parse_config(
        {"providers": {"files": {"storages": []}, "cards": {"plugin": "files", "storages": []}}}
    )
    names = [(p.name, p.plugin) for p in config.providers]
    assert names == [("files", "files"), ("cards", "files")]


def test_a_provider_switch_must_be_a_boolean() -> None:
    assert error_for({"providers": {"files": {"enabled": "no"}}}) == (
        "providers.files.enabled: expected bool, got str"
    )


def test_the_gadget_table_is_left_to_its_owner_but_must_be_a_table() -> None:
    assert parse_config({"gadget": {"anything": 1}}).raw["gadget"] == {"anything": 1}
    assert error_for({"gadget": 3}) == "gadget: expected dict, got int"


def test_a_state_dir_must_be_a_usable_path() -> None:
    assert error_for({"state_dir": ""}).startswith("state_dir: must be a non-empty path")
    assert error_for({"state_dir": "/var/a\x00b"}).startswith("state_dir: must be")


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml")
    assert str(info.value).startswith(f"{tmp_path / 'missing.toml'}: cannot read")


def test_a_file_that_is_not_toml_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[device\nproduct = 1")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: not valid TOML")


def test_a_provider_option_error_names_the_option(tmp_path: Path) -> None:
    from mtp_responder.app import Responder

    config = parse_config(
        {"providers": {"files": {"storages": [{"path": str(tmp_path), "readonly": True}]}}}
    )
    with pytest.raises(ValueError, match=r"files\.storages\[0\]\.readonly: unknown option"):
        Responder(config)
