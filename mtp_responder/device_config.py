"""The ``[device]`` table: who the device says it is, over USB and over MTP.

``mtp-gadget`` writes these values into the USB descriptors and the responder
reports them in GetDeviceInfo.  A host sees both, and Windows keys its
per-device caches on the USB serial while showing the MTP one, so the two must
never disagree: both read the table through :func:`parse_device`, and both get
the same defaults from this module.  No I/O beyond reading the machine ID, so
gadget_config may import it without pulling in the server or a transport.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPEEDS = ("full-speed", "high-speed", "super-speed", "super-speed-plus")
"""The values of configfs ``max_speed``, slowest first."""

MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
"""Where the default serial number comes from, in order (systemd's, then D-Bus's)."""

FALLBACK_SERIAL = "0"
"""The serial number of a system without a machine ID: still the same on both sides."""

MAX_STRING = 254
"""An MTP string holds at most 255 UTF-16 units, the terminating NUL included."""


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key."""


def default_serial() -> str:
    """The machine ID, or :data:`FALLBACK_SERIAL` if there is none.

    Stable across boots because the machine ID is, and at most 32 characters
    (the length of a machine ID), so it fits every USB and MTP string.
    """
    for candidate in MACHINE_ID_FILES:
        try:
            machine_id = candidate.read_text().strip()
        except OSError:
            continue
        if machine_id:
            return machine_id[:32]
    return FALLBACK_SERIAL


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """The validated ``[device]`` table, every default filled in."""

    manufacturer: str = "Linux"
    product: str = "MTP Device"
    """The USB product string and the MTP model."""
    serial: str = field(default_factory=default_serial)
    """The USB iSerialNumber and the MTP SerialNumber; unset or empty: :func:`default_serial`."""
    version: str = "1.0"
    friendly_name: str = ""
    vendor_id: int = 0x1D6B
    product_id: int = 0x0100
    bcd_device: int = 0x0100
    max_speed: str = "super-speed"
    perceived_device_type: int = 0
    battery: str = ""
    """A power_supply directory to read the battery level from; empty means
    the first battery under /sys/class/power_supply, if any."""
    extensions: str = "microsoft.com: 1.0; mtp-responder: 1.0"


_TYPES: dict[str, type] = {
    "manufacturer": str,
    "product": str,
    "serial": str,
    "version": str,
    "friendly_name": str,
    "vendor_id": int,
    "product_id": int,
    "bcd_device": int,
    "max_speed": str,
    "perceived_device_type": int,
    "battery": str,
    "extensions": str,
}
_USB_IDS = ("vendor_id", "product_id", "bcd_device")
_STRINGS = ("manufacturer", "product", "serial", "version", "friendly_name", "extensions")
_NOT_EMPTY = ("manufacturer", "product")


def expect(key: str, value: Any, kind: type) -> Any:
    """``value`` if it is a ``kind`` (a bool is not an int), else a :class:`ConfigError`."""
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def parse_device(table: Any) -> DeviceConfig:
    """Validate a decoded ``[device]`` table; errors name the key as ``device.<key>``."""
    table = expect("device", table, dict)
    values: dict[str, Any] = {}
    for key, value in table.items():
        kind = _TYPES.get(key)
        if kind is None:
            raise ConfigError(f"device.{key}: unknown key")
        values[key] = expect(f"device.{key}", value, kind)
    if not values.get("serial"):
        values.pop("serial", None)
    device = DeviceConfig(**values)
    _check(device)
    return device


def _check(device: DeviceConfig) -> None:
    for key in _USB_IDS:
        value = getattr(device, key)
        if not 0 <= value <= 0xFFFF:
            raise ConfigError(f"device.{key}: {value:#x} does not fit in 16 bits")
    for key in _STRINGS:
        value = getattr(device, key)
        if len(value) > MAX_STRING:
            raise ConfigError(f"device.{key}: longer than {MAX_STRING} characters")
        if "\x00" in value:
            raise ConfigError(f"device.{key}: contains a NUL character")
    for key in _NOT_EMPTY:
        if not getattr(device, key):
            raise ConfigError(f"device.{key}: must not be empty")
    if device.max_speed not in SPEEDS:
        raise ConfigError(f"device.max_speed: must be one of {', '.join(SPEEDS)}")
    if not 0 <= device.perceived_device_type <= 6:
        raise ConfigError("device.perceived_device_type: must be between 0 and 6")
