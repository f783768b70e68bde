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

from .device_config import ConfigError, DeviceConfig, expect, parse_device

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


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


_TOP_LEVEL = {"device", "gadget", "transport", "providers", "log_level", "state_dir"}


def parse_config(data: dict[str, Any], source: Path | None = None) -> Config:
    """Validate a decoded TOML document."""
    config = Config(source=source, raw=data)
    for key in data:
        if key not in _TOP_LEVEL:
            raise ConfigError(f"{key}: unknown key (expected one of {sorted(_TOP_LEVEL)})")

    if "log_level" in data:
        level = expect("log_level", data["log_level"], str).lower()
        if level not in LOG_LEVELS:
            raise ConfigError(f"log_level: {level!r} is not one of {', '.join(LOG_LEVELS)}")
        config.log_level = level
    if "state_dir" in data:
        state_dir = expect("state_dir", data["state_dir"], str)
        if not state_dir or "\x00" in state_dir:
            raise ConfigError("state_dir: must be a non-empty path without NUL")
        config.state_dir = Path(state_dir)

    # The same parser as mtp-gadget's: USB and MTP describe the device alike.
    config.device = parse_device(data.get("device", {}))

    transport = expect("transport", data.get("transport", {}), dict)
    for key, value in transport.items():
        if key not in ("buffer_size", "blocks_in_flight"):
            raise ConfigError(f"transport.{key}: unknown key")
        setattr(config.transport, key, expect(f"transport.{key}", value, int))
    if config.transport.buffer_size <= 0 or config.transport.buffer_size % 1024:
        raise ConfigError("transport.buffer_size: must be a positive multiple of 1024")
    if not 1 <= config.transport.blocks_in_flight <= 64:
        raise ConfigError("transport.blocks_in_flight: must be between 1 and 64")

    # gadget_config validates its own table.
    expect("gadget", data.get("gadget", {}), dict)

    providers = expect("providers", data.get("providers", None) or _default_providers(), dict)
    for name, table in providers.items():
        table = dict(expect(f"providers.{name}", table, dict))
        enabled = expect(f"providers.{name}.enabled", table.pop("enabled", True), bool)
        plugin = expect(f"providers.{name}.plugin", table.pop("plugin", name), str)
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


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document at ``path``, or a :class:`ConfigError` naming the file and the problem.

    TOML files are UTF-8; an editor that saved Latin-1 gets told where, rather
    than a decoding traceback.  ``mtp-gadget`` reads the same file through here.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line}: byte {raw[exc.start]:#04x} is not UTF-8"
            " (a TOML file must be saved as UTF-8)"
        ) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def load_config(path: Path | None) -> Config:
    """Read and validate ``path``; ``None`` gives the defaults."""
    if path is None:
        return parse_config({})
    return parse_config(read_toml(path), source=path)
