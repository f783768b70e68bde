"""Engine configuration, read from a TOML file.

Defaults apply to anything missing so that a device with no config still gets a
working engine; a malformed file is an error at start-up rather than a silent
fallback, because a wrong socket group or client list is a security problem.
"""

from __future__ import annotations

import grp
import os
import socket
import tomllib
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
        """Read a TOML config; ``None`` means defaults (plus environment overrides)."""
        data: dict[str, object] = {}
        if path is not None:
            with open(path, "rb") as f:
                try:
                    data = tomllib.load(f)
                except tomllib.TOMLDecodeError as e:
                    raise ArgumentError(f"{path}: {e}") from e
        return cls.from_mapping(data, base=path.parent if path else Path.cwd())

    @classmethod
    def from_mapping(cls, data: dict[str, object], base: Path | None = None) -> EngineConfig:
        base = base or Path.cwd()
        kw: dict[str, object] = {}

        def p(v: object) -> Path:
            return (base / str(v)).resolve() if not os.path.isabs(str(v)) else Path(str(v))

        known = {f for f in cls.__dataclass_fields__}
        for key, value in data.items():
            if key not in known:
                raise ArgumentError(f"unknown config key {key!r}")
            if key == "drives":
                if not isinstance(value, dict):
                    raise ArgumentError("drives must be a table of letter = path")
                kw[key] = {str(k): p(v) for k, v in value.items()}
            elif key in ("socket_path", "spool_dir", "state_file"):
                kw[key] = None if value in ("", None) else p(value)
            elif key in ("bin_dirs",):
                kw[key] = tuple(p(v) for v in _seq(value))
            elif key in ("client_uids", "excluded_drives"):
                kw[key] = tuple(_seq(value))
            elif key == "central_repository_sid" and isinstance(value, str):
                kw[key] = int(value, 16)
            else:
                kw[key] = value
        return cls(**kw)  # type: ignore[arg-type]


def _seq(v: object) -> list[object]:
    if not isinstance(v, list):
        raise ArgumentError("expected a list in config")
    return v
