"""Device properties: friendly name, sync partner, battery, device type.

The friendly name is what Explorer shows as the device's label; a user who
renames the device expects the name to survive a reboot, so settable values
are persisted in the state directory.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core.codes import DataType, DeviceProp, FormFlag, ResponseCode
from .core.datasets import DatasetError, decode_value, encode_value
from .device_config import DeviceConfig
from .provider import ProviderError

log = logging.getLogger(__name__)

POWER_SUPPLY = Path("/sys/class/power_supply")


@dataclass(frozen=True, slots=True)
class DevicePropDef:
    code: DeviceProp
    datatype: DataType
    settable: bool
    default: Any
    form_flag: FormFlag = FormFlag.NONE
    form: bytes = b""


def find_battery(configured: str) -> Path | None:
    if configured:
        path = Path(configured)
        return path if (path / "capacity").exists() else None
    try:
        candidates = sorted(POWER_SUPPLY.iterdir())
    except OSError:
        return None
    for candidate in candidates:
        try:
            if (candidate / "type").read_text().strip() == "Battery":
                return candidate
        except OSError:
            continue
    return None


class DeviceProperties:
    def __init__(self, device: DeviceConfig, state_dir: Path) -> None:
        self._state_file = state_dir / "device-properties.json"
        self._battery = find_battery(device.battery)
        default_name = device.friendly_name or device.product
        defs = [
            DevicePropDef(DeviceProp.SYNCHRONIZATION_PARTNER, DataType.STR, True, ""),
            DevicePropDef(DeviceProp.DEVICE_FRIENDLY_NAME, DataType.STR, True, default_name),
            DevicePropDef(
                DeviceProp.PERCEIVED_DEVICE_TYPE,
                DataType.UINT32,
                False,
                device.perceived_device_type,
            ),
        ]
        if self._battery is not None:
            defs.insert(
                0,
                DevicePropDef(
                    DeviceProp.BATTERY_LEVEL,
                    DataType.UINT8,
                    False,
                    0,
                    FormFlag.RANGE,
                    struct.pack("<BBB", 0, 100, 1),
                ),
            )
        self.definitions: dict[int, DevicePropDef] = {d.code: d for d in defs}
        self._values: dict[int, Any] = {d.code: d.default for d in defs}
        self._load()

    @property
    def codes(self) -> list[int]:
        return list(self.definitions)

    def _definition(self, code: int) -> DevicePropDef:
        try:
            return self.definitions[code]
        except KeyError:
            raise ProviderError(
                ResponseCode.DEVICE_PROP_NOT_SUPPORTED, f"device property {code:#x}"
            ) from None

    def value(self, code: int) -> Any:
        self._definition(code)
        if code == DeviceProp.BATTERY_LEVEL:
            return self._battery_level()
        return self._values[code]

    def encoded_value(self, code: int) -> bytes:
        return encode_value(self._definition(code).datatype, self.value(code))

    def describe(self, code: int) -> bytes:
        d = self._definition(code)
        return b"".join(
            (
                struct.pack("<HHB", d.code, d.datatype, 1 if d.settable else 0),
                encode_value(d.datatype, d.default),
                encode_value(d.datatype, self.value(code)),
                struct.pack("<B", d.form_flag),
                d.form,
            )
        )

    def set_encoded(self, code: int, data: bytes) -> None:
        d = self._definition(code)
        if not d.settable:
            raise ProviderError(ResponseCode.ACCESS_DENIED, f"{d.code.name} is read-only")
        try:
            value = decode_value(d.datatype, data)
        except DatasetError as exc:
            raise ProviderError(ResponseCode.INVALID_DEVICE_PROP_FORMAT, str(exc)) from exc
        if d.code == DeviceProp.DEVICE_FRIENDLY_NAME and not str(value).strip():
            raise ProviderError(ResponseCode.INVALID_DEVICE_PROP_VALUE, "empty friendly name")
        self._values[code] = value
        self._save()

    def reset(self, code: int) -> None:
        """ResetDevicePropValue; 0xFFFFFFFF resets every settable property."""
        if code == 0xFFFFFFFF:
            codes = [c for c, d in self.definitions.items() if d.settable]
        else:
            codes = [code]
        for c in codes:
            d = self._definition(c)
            if not d.settable:
                raise ProviderError(ResponseCode.ACCESS_DENIED, f"{d.code.name} is read-only")
            self._values[c] = d.default
        self._save()

    def _battery_level(self) -> int:
        assert self._battery is not None
        try:
            return max(0, min(100, int((self._battery / "capacity").read_text().strip())))
        except (OSError, ValueError):
            return 0

    def _load(self) -> None:
        try:
            stored = json.loads(self._state_file.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self._state_file, exc)
            return
        if not isinstance(stored, dict):
            log.warning("ignoring %s: not a table", self._state_file)
            return
        for name, value in stored.items():
            try:
                code = DeviceProp[name]
            except KeyError:
                continue
            d = self.definitions.get(code)
            if d is not None and d.settable and isinstance(value, type(d.default)):
                self._values[code] = value

    def _save(self) -> None:
        stored = {
            DeviceProp(c).name: v for c, v in self._values.items() if self.definitions[c].settable
        }
        try:
            self._state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(stored, indent=1))
            os.replace(tmp, self._state_file)
        except OSError as exc:
            log.warning("cannot persist device properties in %s: %s", self._state_file, exc)
