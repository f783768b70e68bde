"""The part of the responder's TOML config that shapes the USB gadget.

The responder and the gadget script read the same file, so a product is described
once.  Only the ``[device]`` and ``[gadget]`` tables matter here; everything else
belongs to the responder and is ignored.  ``[device]`` is read by the responder's
own parser (:mod:`mtp_responder.device_config`), so the USB descriptors and the MTP
DeviceInfo carry the same strings, defaults included.  Every key has a default, so
an empty file gives a working development gadget (with the Linux Foundation's test
IDs, which a product must replace).
"""

from __future__ import annotations

import re
import string
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtp_responder.config import read_toml
from mtp_responder.device_config import ConfigError, DeviceConfig, parse_device

DEFAULT_FFS_MOUNT = "/dev/ffs-mtp"
DEFAULT_STATE_DIR = Path("/run/mtp-gadget")

_FUNCTION_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")

#: Kernel functions that each take one of u_serial's ttyGS ports.
SERIAL_FUNCTION_TYPES = frozenset({"acm", "gser", "obex"})
#: u_serial ports a gadget may use (older kernels have no more in all).
MAX_SERIAL_FUNCTIONS = 4
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


_GADGET_KEYS = frozenset(
    {
        "name",
        "udc",
        "bcd_usb",
        "ffs_instance",
        "functionfs_mount",
        "configuration",
        "max_power",
        "os_desc",
        "os_desc_vendor_code",
        "extra_functions",
        "function_attributes",
        "responder_command",
        "responder_log",
        "obex_command",
        "obex_log",
        "ready_timeout",
        "stop_timeout",
        "bind_timeout",
        "state_dir",
    }
)


@dataclass(frozen=True)
class GadgetSettings:
    """How the configfs tree, the FunctionFS mount and the responder are set up."""

    name: str = "mtp"
    udc: str = ""
    bcd_usb: int = 0x0200
    ffs_instance: str = "mtp"
    functionfs_mount: str = DEFAULT_FFS_MOUNT
    configuration: str = "MTP"
    max_power: int = 500
    os_desc: bool = True
    os_desc_vendor_code: int = 0x01
    extra_functions: tuple[str, ...] = ()
    function_attributes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    responder_command: tuple[str, ...] = ()
    responder_log: str = ""
    obex_command: tuple[str, ...] = ()
    obex_log: str = ""
    ready_timeout: float = 30.0
    stop_timeout: float = 10.0
    bind_timeout: float = 10.0
    state_dir: str = str(DEFAULT_STATE_DIR)


@dataclass(frozen=True)
class Settings:
    """Everything gadget_config reads, plus where it was read from."""

    device: DeviceConfig
    gadget: GadgetSettings
    config_path: Path | None

    def responder_argv(self) -> list[str]:
        """The responder command line, with ``{python}``/``{config}``/``{mount}`` filled."""
        values = {
            "python": sys.executable,
            "config": str(self.config_path) if self.config_path else "",
            "mount": self.gadget.functionfs_mount,
            "name": self.gadget.name,
        }
        if self.gadget.responder_command:
            return [part.format(**values) for part in self.gadget.responder_command]
        argv = [sys.executable, "-m", "mtp_responder.cli"]
        if self.config_path:
            argv += ["--config", str(self.config_path)]
        return [*argv, "--functionfs", self.gadget.functionfs_mount]

    @property
    def obex_function(self) -> str | None:
        """The ``obex.<instance>`` function of the gadget, if it has one."""
        return next((f for f in self.gadget.extra_functions if f.startswith("obex.")), None)

    def obex_argv(self, tty: str) -> list[str]:
        """The OBEX server command line, with ``{tty}`` and the responder's placeholders."""
        values = {
            "python": sys.executable,
            "config": str(self.config_path) if self.config_path else "",
            "tty": tty,
            "name": self.gadget.name,
        }
        return [part.format(**values) for part in self.gadget.obex_command]

    @property
    def obex_pid_file(self) -> Path:
        return self.state_dir / f"{self.gadget.name}-obex.pid"

    @property
    def obex_log(self) -> Path:
        if self.gadget.obex_log:
            return Path(self.gadget.obex_log)
        return self.state_dir / f"{self.gadget.name}-obex.log"

    @property
    def state_dir(self) -> Path:
        return Path(self.gadget.state_dir)

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.gadget.name}.pid"

    @property
    def responder_log(self) -> Path:
        if self.gadget.responder_log:
            return Path(self.gadget.responder_log)
        return self.state_dir / f"{self.gadget.name}-responder.log"


def _int(table: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = table.get(key, default)
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError as exc:
            raise ConfigError(f"gadget.{key}: not an integer: {value!r}") from exc
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"gadget.{key}: expected an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"gadget.{key}: {value:#x} out of range [{lo:#x}, {hi:#x}]")
    return value


def _str(table: Mapping[str, Any], key: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"gadget.{key}: expected a string, got {value!r}")
    if "\x00" in value:
        raise ConfigError(f"gadget.{key}: contains a NUL character")
    return value


def _bool(table: Mapping[str, Any], key: str, default: bool) -> bool:
    # ``bool("no")`` is True: a string here is a typo, not a switch.
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"gadget.{key}: expected true or false, got {value!r}")
    return value


def _float(table: Mapping[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < float("inf")
    ):
        raise ConfigError(f"gadget.{key}: expected a positive number of seconds, got {value!r}")
    return float(value)


def _str_list(table: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"gadget.{key}: expected a list of strings, got {value!r}")
    if any("\x00" in v for v in value):
        raise ConfigError(f"gadget.{key}: contains a NUL character")
    return tuple(value)


def parse(data: Mapping[str, Any], config_path: Path | None = None) -> Settings:
    """Validate the ``[device]`` and ``[gadget]`` tables of a parsed config."""
    gad = data.get("gadget", {})
    if not isinstance(gad, dict):
        raise ConfigError("gadget: must be a table")
    device = parse_device(data.get("device", {}))

    unknown = sorted(set(gad) - _GADGET_KEYS)
    if unknown:
        raise ConfigError(
            f"gadget.{unknown[0]}: unknown key (known: {', '.join(sorted(_GADGET_KEYS))})"
        )
    name = _str(gad, "name", GadgetSettings.name)
    instance = _str(gad, "ffs_instance", GadgetSettings.ffs_instance)
    for key, value in (("name", name), ("ffs_instance", instance)):
        if not _NAME_RE.match(value):
            raise ConfigError(f"gadget.{key}: {value!r} is not a valid configfs name")
    udc = _str(gad, "udc", "")
    if udc and not _NAME_RE.match(udc):
        raise ConfigError(f"gadget.udc: {udc!r} is not a UDC name (see /sys/class/udc)")
    extra = _str_list(gad, "extra_functions")
    for fn in extra:
        if not _FUNCTION_RE.match(fn) or fn.startswith("ffs."):
            raise ConfigError(
                f"gadget.extra_functions: {fn!r} is not a kernel function 'type.instance'"
            )
    _check_serial_functions(extra)
    attrs_table = gad.get("function_attributes", {})
    if not isinstance(attrs_table, dict):
        raise ConfigError("gadget.function_attributes: must be a table")
    function_attributes: dict[str, dict[str, str]] = {}
    for fn, attrs in attrs_table.items():
        where = f"gadget.function_attributes.{fn}"
        if fn not in extra:
            raise ConfigError(f"{where}: not listed in extra_functions")
        if not isinstance(attrs, dict):
            raise ConfigError(f"{where}: must be a table")
        function_attributes[fn] = {str(k): _attr_value(f"{where}.{k}", v) for k, v in attrs.items()}
    for key in ("responder_command", "obex_command"):
        if isinstance(gad.get(key), str):
            raise ConfigError(f"gadget.{key}: give a list of arguments, not a shell string")
    obex_command = _str_list(gad, "obex_command")
    if obex_command and not any(f.startswith("obex.") for f in extra):
        raise ConfigError(
            'gadget.obex_command: the gadget has no OBEX function (add "obex.<instance>" '
            "to extra_functions)"
        )
    _check_placeholders("obex_command", obex_command, {"python", "config", "tty", "name"})
    mount = _str(gad, "functionfs_mount", DEFAULT_FFS_MOUNT)
    if not mount.startswith("/"):
        raise ConfigError("gadget.functionfs_mount: must be an absolute path")
    state_dir = _str(gad, "state_dir", str(DEFAULT_STATE_DIR))
    if not state_dir.startswith("/"):
        raise ConfigError("gadget.state_dir: must be an absolute path")
    gadget = GadgetSettings(
        name=name,
        udc=udc,
        bcd_usb=_int(gad, "bcd_usb", GadgetSettings.bcd_usb, 0x0200, 0xFFFF),
        ffs_instance=instance,
        functionfs_mount=mount,
        configuration=_str(gad, "configuration", GadgetSettings.configuration),
        max_power=_int(gad, "max_power", GadgetSettings.max_power, 0, 900),
        os_desc=_bool(gad, "os_desc", True),
        os_desc_vendor_code=_int(gad, "os_desc_vendor_code", 0x01, 0x01, 0xFF),
        extra_functions=extra,
        function_attributes=function_attributes,
        responder_command=_str_list(gad, "responder_command"),
        responder_log=_str(gad, "responder_log", ""),
        obex_command=obex_command,
        obex_log=_str(gad, "obex_log", ""),
        ready_timeout=_float(gad, "ready_timeout", GadgetSettings.ready_timeout),
        stop_timeout=_float(gad, "stop_timeout", GadgetSettings.stop_timeout),
        bind_timeout=_float(gad, "bind_timeout", GadgetSettings.bind_timeout),
        state_dir=state_dir,
    )
    return Settings(device=device, gadget=gadget, config_path=config_path)


def _check_serial_functions(functions: Sequence[str]) -> None:
    """u_serial has few ttyGS ports, and one OBEX server serves one tty."""
    if len(set(functions)) != len(functions):
        dup = next(f for f in functions if functions.count(f) > 1)
        raise ConfigError(f"gadget.extra_functions: {dup!r} is listed twice")
    serial = [f for f in functions if f.partition(".")[0] in SERIAL_FUNCTION_TYPES]
    if len(serial) > MAX_SERIAL_FUNCTIONS:
        raise ConfigError(
            f"gadget.extra_functions: {len(serial)} serial functions ({', '.join(serial)}); "
            f"a gadget has at most {MAX_SERIAL_FUNCTIONS} (acm, gser and obex each take a "
            "ttyGS port)"
        )
    obex = [f for f in functions if f.startswith("obex.")]
    if len(obex) > 1:
        raise ConfigError(
            f"gadget.extra_functions: {', '.join(obex)}: at most one obex function per gadget"
        )


def _check_placeholders(key: str, argv: Sequence[str], known: set[str]) -> None:
    """A misspelt ``{placeholder}`` is a config error now, not a KeyError at ``up``."""
    for part in argv:
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(part) if name is not None]
        except ValueError as exc:
            raise ConfigError(f"gadget.{key}: {part!r}: {exc}") from exc
        for name in fields:
            if name not in known:
                raise ConfigError(
                    f"gadget.{key}: {part!r}: unknown placeholder {{{name}}} "
                    f"(known: {', '.join('{' + k + '}' for k in sorted(known))})"
                )


def _attr_value(where: str, value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float | str):
        return str(value)
    raise ConfigError(f"{where}: {value!r} must be a scalar")


def load(path: str | Path | None) -> Settings:
    """Read ``path`` (or use all defaults when it is None)."""
    if path is None:
        return parse({}, None)
    p = Path(path).resolve()
    return parse(read_toml(p), p)


def format_keys(settings: Settings) -> Sequence[str]:
    """Human-readable effective settings, for ``mtp-gadget status``."""
    d, g = settings.device, settings.gadget
    return [
        f"config file      {settings.config_path or '(defaults)'}",
        f"VID:PID          {d.vendor_id:04x}:{d.product_id:04x}  bcdDevice {d.bcd_device:04x}",
        f"strings          {d.manufacturer!r} / {d.product!r} / serial {d.serial!r}",
        f"max_speed        {d.max_speed}",
        f"gadget           {g.name}  (ffs.{g.ffs_instance} at {g.functionfs_mount})",
        f"extra functions  {', '.join(g.extra_functions) or '-'}",
        f"responder        {' '.join(settings.responder_argv())}",
        f"OBEX server      {_obex_line(settings)}",
    ]


def _obex_line(settings: Settings) -> str:
    fn = settings.obex_function
    if fn is None:
        return "- (no obex function)"
    if not settings.gadget.obex_command:
        return f"for {fn}: started by someone else (e.g. a systemd unit); bind waits for it"
    return f"for {fn}: {' '.join(settings.obex_argv('/dev/ttyGS<port_num>'))}"
