"""Engine configuration, read from a TOML file.

Defaults apply to anything missing so that a device with no config still gets a
working engine; a malformed file is an error at start-up rather than a silent
fallback, because a wrong socket group or client list is a security problem.
Every key's type and range is checked when the file is loaded (``_CHECKS``), so
no value fails later, inside a running engine.
"""

from __future__ import annotations

import grp
import math
import os
import pwd
import socket
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ArgumentError
from ..types import normalise_drive

DEFAULT_CALLBACK_TIMEOUT = 200.0
DEFAULT_CENTRAL_REPOSITORY = 0x10202BE9


@dataclass
class EngineConfig:
    """Where the engine finds data owners and how it talks to the world.

    ``drives`` maps a drive letter to a directory (usually a mount point): drive
    ``c`` is the device's internal data root, removable media get other letters.
    Owner ``0AB7E57C``'s private directory on drive ``c`` is
    ``drives['c'] / 'private' / '0AB7E57C'``.
    """

    drives: dict[str, Path] = field(default_factory=lambda: {"c": Path("/var/lib/backup-engine/c")})
    socket_path: Path = Path("/run/backup-engine/engine.sock")
    socket_group: str | None = None
    socket_mode: int = 0o660
    client_uids: tuple[int, ...] = (0,)
    state_file: Path | None = Path("/run/backup-engine/bur-mode")
    spool_dir: Path = Path("/var/cache/backup-engine/spool")
    excluded_drives: tuple[str, ...] = ("z",)
    central_repository_sid: int = DEFAULT_CENTRAL_REPOSITORY
    callback_timeout: float = DEFAULT_CALLBACK_TIMEOUT
    section_size: int = 4096
    transfer_size: int = 1 << 20
    idle_timeout: float = 600.0
    ready_timeout: float = 30.0
    delayed_ready_timeout: float = 120.0
    device_name: str = field(default_factory=socket.gethostname)
    bin_dirs: tuple[Path, ...] = ()
    launch_owners: bool = True
    app_close_delay: float = 0.0

    def __post_init__(self) -> None:
        self.drives = {normalise_drive(k): Path(v) for k, v in self.drives.items()}
        self.excluded_drives = tuple(normalise_drive(d) for d in self.excluded_drives)

    @property
    def backup_drives(self) -> tuple[str, ...]:
        """Drives an owner can have data on: configured minus excluded (Z by default)."""
        return tuple(sorted(d for d in self.drives if d not in self.excluded_drives))

    def drive_root(self, drive: str) -> Path:
        return self.drives[drive]

    def private_root(self, drive: str) -> Path:
        return self.drives[drive] / "private"

    def socket_gid(self) -> int | None:
        if self.socket_group is None:
            return None
        try:
            return int(self.socket_group)
        except ValueError:
            return grp.getgrnam(self.socket_group).gr_gid

    @classmethod
    def load(cls, path: Path | None) -> EngineConfig:
        """Read and check a TOML config; ``None`` means defaults.

        Every problem is a :class:`ConfigError` that names the file and the key.
        """
        if path is None:
            return cls.from_mapping({}, base=Path.cwd())
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from e
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise ConfigError(
                f"{path}: line {line}: byte {raw[e.start]:#04x} is not UTF-8"
                " (a TOML file must be saved as UTF-8)"
            ) from e
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from e
        try:
            return cls.from_mapping(data, base=path.parent)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e.message}") from e

    @classmethod
    def from_mapping(cls, data: dict[str, object], base: Path | None = None) -> EngineConfig:
        """Check every key's type and range; relative paths are relative to ``base``."""
        base = base or Path.cwd()
        kw: dict[str, object] = {}
        known = set(cls.__dataclass_fields__)
        for key, value in data.items():
            check = _CHECKS.get(key) if key in known else None
            if check is None:
                raise ConfigError(f"{key}: unknown config key")
            kw[key] = check(key, value, base)
        return cls(**kw)  # type: ignore[arg-type]


class ConfigError(ArgumentError):
    """The engine config cannot be used; the message names the key."""


_Check = Callable[[str, object, Path], object]


def _path(key: str, value: object, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a non-empty path string, got {value!r}")
    if "\x00" in value:
        raise ConfigError(f"{key}: contains a NUL character")
    return Path(value) if os.path.isabs(value) else (base / value).resolve()


def _optional_path(key: str, value: object, base: Path) -> Path | None:
    return None if value == "" else _path(key, value, base)


def _list(key: str, value: object) -> list[object]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list, got {value!r}")
    return value


def _drive(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a drive letter, got {value!r}")
    try:
        return normalise_drive(value)
    except ArgumentError as e:
        raise ConfigError(f"{key}: {e.message}") from e


def _drives(key: str, value: object, base: Path) -> dict[str, Path]:
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{key}: expected a table of letter = path, got {value!r}")
    return {_drive(f"{key}.{k}", k): _path(f"{key}.{k}", v, base) for k, v in value.items()}


def _excluded(key: str, value: object, base: Path) -> tuple[str, ...]:
    return tuple(_drive(f"{key}[{i}]", d) for i, d in enumerate(_list(key, value)))


def _paths(key: str, value: object, base: Path) -> tuple[Path, ...]:
    return tuple(_path(f"{key}[{i}]", p, base) for i, p in enumerate(_list(key, value)))


def _uid(key: str, value: object) -> int:
    """A numeric uid, or a user name resolved now (a name never equals a peer's uid)."""
    if isinstance(value, str):
        try:
            return pwd.getpwnam(value).pw_uid
        except KeyError:
            raise ConfigError(f"{key}: no user named {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32 - 1:
        raise ConfigError(f"{key}: expected a user name or a uid (0 .. 4294967294), got {value!r}")
    return value


def _uids(key: str, value: object, base: Path) -> tuple[int, ...]:
    return tuple(_uid(f"{key}[{i}]", u) for i, u in enumerate(_list(key, value)))


def _group(key: str, value: object, base: Path) -> str:
    """A group name or gid, checked to exist now rather than when the socket is made."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigError(f"{key}: expected a group name or gid, got {value!r}")
    try:
        if isinstance(value, int) or value.isdigit():
            grp.getgrgid(int(value))
        else:
            grp.getgrnam(value)
    except (KeyError, OverflowError, ValueError):
        raise ConfigError(f"{key}: no group {value!r}") from None
    return str(value)


def _int_in(lo: int, hi: int) -> _Check:
    def check(key: str, value: object, base: Path) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(f"{key}: expected an integer from {lo} to {hi}, got {value!r}")
        return value

    return check


def _mode(key: str, value: object, base: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise ConfigError(f"{key}: expected permission bits such as 0o660, got {value!r}")
    return value


def _seconds(lo_inclusive: bool) -> _Check:
    def check(key: str, value: object, base: Path) -> float:
        ok = (
            not isinstance(value, bool)
            and isinstance(value, int | float)
            and math.isfinite(value)
            and (value >= 0 if lo_inclusive else value > 0)
        )
        if not ok:
            what = "zero or more" if lo_inclusive else "a positive number of"
            raise ConfigError(f"{key}: expected {what} seconds, got {value!r}")
        return float(value)  # type: ignore[arg-type]

    return check


def _sid(key: str, value: object, base: Path) -> int:
    if isinstance(value, str):
        t = value.strip()
        t = t[2:] if t[:2].lower() == "0x" else t
        if not (t and len(t) <= 8 and all(c in "0123456789abcdefABCDEF" for c in t)):
            raise ConfigError(f"{key}: {value!r} is not a SID (up to 8 hex digits)")
        return int(t, 16)
    return _int_in(0, 0xFFFFFFFF)(key, value, base)  # type: ignore[return-value]


def _name(key: str, value: object, base: Path) -> str:
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise ConfigError(f"{key}: expected a non-empty printable string, got {value!r}")
    return value


def _bool(key: str, value: object, base: Path) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


MAX_CHUNK = 4 << 20

_CHECKS: dict[str, _Check] = {
    "drives": _drives,
    "socket_path": _path,
    "socket_group": _group,
    "socket_mode": _mode,
    "client_uids": _uids,
    "state_file": _optional_path,
    "spool_dir": _path,
    "excluded_drives": _excluded,
    "central_repository_sid": _sid,
    "callback_timeout": _seconds(False),
    "section_size": _int_in(1, MAX_CHUNK),
    "transfer_size": _int_in(1, MAX_CHUNK),
    "idle_timeout": _seconds(False),
    "ready_timeout": _seconds(False),
    "delayed_ready_timeout": _seconds(False),
    "device_name": _name,
    "bin_dirs": _paths,
    "launch_owners": _bool,
    "app_close_delay": _seconds(True),
}
"""One check per key of :class:`EngineConfig`: its TOML type and its range."""
