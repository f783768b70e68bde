"""The responder's configuration: one TOML file, validated up front.

A wrong key should stop the responder at start with a message that names
the key and the reason, not surface later as a host-side mystery.  No file
at all is valid: the defaults expose the home directory as one storage.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key."""


@dataclass(slots=True)
class DeviceConfig:
    manufacturer: str = "Linux"
    product: str = "MTP Device"
    serial: str = ""
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


@dataclass(slots=True)
class TransportConfig:
    buffer_size: int = 512 * 1024
    blocks_in_flight: int = 4


@dataclass(slots=True)
class ProviderConfig:
    name: str
    plugin: str
    options: dict[str, Any]


@dataclass(slots=True)
class Config:
    device: DeviceConfig = field(default_factory=DeviceConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    providers: list[ProviderConfig] = field(default_factory=list)
    log_level: str = "info"
    state_dir: Path = Path("/var/lib/mtp-responder")
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def logging_level(self) -> int:
        return int(getattr(logging, self.log_level.upper()))


_DEVICE_TYPES: dict[str, type] = {
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
_SPEEDS = ("full-speed", "high-speed", "super-speed", "super-speed-plus")
_TOP_LEVEL = {"device", "gadget", "transport", "providers", "log_level", "state_dir"}


def _expect(key: str, value: Any, kind: type) -> Any:
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _check_string(key: str, value: str, limit: int = 254) -> None:
    if len(value) > limit:
        raise ConfigError(f"{key}: longer than {limit} characters")
    if "\x00" in value:
        raise ConfigError(f"{key}: contains a NUL character")


def parse_config(data: dict[str, Any], source: Path | None = None) -> Config:
    """Validate a decoded TOML document."""
    config = Config(source=source, raw=data)
    for key in data:
        if key not in _TOP_LEVEL:
            raise ConfigError(f"{key}: unknown key (expected one of {sorted(_TOP_LEVEL)})")

    if "log_level" in data:
        level = _expect("log_level", data["log_level"], str).lower()
        if level not in LOG_LEVELS:
            raise ConfigError(f"log_level: {level!r} is not one of {', '.join(LOG_LEVELS)}")
        config.log_level = level
    if "state_dir" in data:
        config.state_dir = Path(_expect("state_dir", data["state_dir"], str))

    device = _expect("device", data.get("device", {}), dict)
    for key, value in device.items():
        kind = _DEVICE_TYPES.get(key)
        if kind is None:
            raise ConfigError(f"device.{key}: unknown key")
        setattr(config.device, key, _expect(f"device.{key}", value, kind))
    for key in ("vendor_id", "product_id", "bcd_device"):
        value = getattr(config.device, key)
        if not 0 <= value <= 0xFFFF:
            raise ConfigError(f"device.{key}: {value:#x} does not fit in 16 bits")
    for key in ("manufacturer", "product", "serial", "version", "friendly_name", "extensions"):
        _check_string(f"device.{key}", getattr(config.device, key))
    if config.device.max_speed not in _SPEEDS:
        raise ConfigError(f"device.max_speed: must be one of {', '.join(_SPEEDS)}")
    if not 0 <= config.device.perceived_device_type <= 6:
        raise ConfigError("device.perceived_device_type: must be between 0 and 6")

    transport = _expect("transport", data.get("transport", {}), dict)
    for key, value in transport.items():
        if key not in ("buffer_size", "blocks_in_flight"):
            raise ConfigError(f"transport.{key}: unknown key")
        setattr(config.transport, key, _expect(f"transport.{key}", value, int))
    if config.transport.buffer_size <= 0 or config.transport.buffer_size % 1024:
        raise ConfigError("transport.buffer_size: must be a positive multiple of 1024")
    if not 1 <= config.transport.blocks_in_flight <= 64:
        raise ConfigError("transport.blocks_in_flight: must be between 1 and 64")

    # gadget_config validates its own table.
    _expect("gadget", data.get("gadget", {}), dict)

    providers = _expect("providers", data.get("providers", None) or _default_providers(), dict)
    for name, table in providers.items():
        table = dict(_expect(f"providers.{name}", table, dict))
        enabled = _expect(f"providers.{name}.enabled", table.pop("enabled", True), bool)
        plugin = _expect(f"providers.{name}.plugin", table.pop("plugin", name), str)
        if enabled:
            config.providers.append(ProviderConfig(name, plugin, table))
    if not config.providers:
        raise ConfigError("providers: no data provider is enabled")
    return config


def _default_providers() -> dict[str, Any]:
    return {
        "files": {
            "storages": [{"path": str(Path.home()), "description": "Internal storage"}],
        }
    }


def load_config(path: Path | None) -> Config:
    """Read and validate ``path``; ``None`` gives the defaults."""
    if path is None:
        return parse_config({})
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(data, source=path)
