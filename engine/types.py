"""Value types shared by the engine, its socket protocol and its clients.

Modes, transfer types, data owner statuses and settings flags keep the numeric
values the socket protocol carries (engine/README.md), as plain Python enums and
dataclasses.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum, IntEnum, IntFlag

from .errors import ArgumentError

DRIVE_LETTERS = string.ascii_lowercase


class BURMode(IntEnum):
    """Backup/restore part type (engine/README.md, Modes)."""

    UNSET = 0
    NORMAL = 1
    BACKUP_FULL = 2
    BACKUP_PARTIAL = 4
    RESTORE_FULL = 8
    RESTORE_PARTIAL = 0x10

    @property
    def is_backup(self) -> bool:
        return self in (BURMode.BACKUP_FULL, BURMode.BACKUP_PARTIAL)

    @property
    def is_restore(self) -> bool:
        return self in (BURMode.RESTORE_FULL, BURMode.RESTORE_PARTIAL)

    @property
    def is_partial(self) -> bool:
        return self in (BURMode.BACKUP_PARTIAL, BURMode.RESTORE_PARTIAL)

    @property
    def is_normal(self) -> bool:
        return self in (BURMode.NORMAL, BURMode.UNSET)


class BackupIncType(IntEnum):
    """Base or incremental; published together with the mode (engine/README.md, Modes)."""

    NO_BACKUP = 0
    BASE = 0x100
    INCREMENT = 0x200


class TransferType(IntEnum):
    """The kind of stream of one (owner, drive) (engine/README.md, Transfer types)."""

    REGISTRATION = 0
    PASSIVE_SNAPSHOT = 1
    PASSIVE_BASE = 2
    PASSIVE_INCREMENTAL = 3
    ACTIVE_SNAPSHOT = 4
    ACTIVE_BASE = 5
    ACTIVE_INCREMENTAL = 6
    CENTRAL_REPOSITORY = 7
    PUBLIC_FILE_LISTING = 8
    SYSTEM_DATA = 9
    SYSTEM_SNAPSHOT = 10

    @property
    def is_passive(self) -> bool:
        return self in (
            TransferType.PASSIVE_SNAPSHOT,
            TransferType.PASSIVE_BASE,
            TransferType.PASSIVE_INCREMENTAL,
        )

    @property
    def is_active(self) -> bool:
        return self in (
            TransferType.ACTIVE_SNAPSHOT,
            TransferType.ACTIVE_BASE,
            TransferType.ACTIVE_INCREMENTAL,
        )

    @property
    def is_snapshot(self) -> bool:
        return self in (TransferType.PASSIVE_SNAPSHOT, TransferType.ACTIVE_SNAPSHOT)

    @property
    def is_incremental(self) -> bool:
        return self in (TransferType.PASSIVE_INCREMENTAL, TransferType.ACTIVE_INCREMENTAL)

    @property
    def slug(self) -> str:
        """Name used for archive members and the manifest."""
        return self.name.lower().replace("_", "-")


class DataOwnerStatus(IntEnum):
    UNSET = 0
    NOT_FOUND = 1
    READY = 2
    NOT_READY = 3
    FAILED = 4
    NOT_CONNECTED = 5
    READY_NO_IMPL = 6

    @property
    def is_final(self) -> bool:
        """True when polling this owner any longer cannot change the outcome."""
        return self in (
            DataOwnerStatus.READY,
            DataOwnerStatus.READY_NO_IMPL,
            DataOwnerStatus.FAILED,
            DataOwnerStatus.NOT_FOUND,
        )


class CommonSettings(IntFlag):
    NONE = 0
    ACTIVE_BUR = 0x01
    PASSIVE_BUR = 0x02
    HAS_SYSTEM_FILES = 0x04
    SUPPORTS_SELECTIVE = 0x08
    REQUIRES_REBOOT = 0x10


class PassiveSettings(IntFlag):
    NONE = 0
    HAS_PUBLIC_FILES = 0x01
    DELETE_BEFORE_RESTORE = 0x02
    PASSIVE_SUPPORTS_INC = 0x04


class ActiveSettings(IntFlag):
    NONE = 0
    DELAY_TO_PREPARE_DATA = 0x01
    ACTIVE_SUPPORTS_INC = 0x02


class ActiveType(Enum):
    ACTIVE_ONLY = "activeonly"
    ACTIVE_AND_PROXY = "activeandproxy"
    PROXY_ONLY = "proxyonly"


def format_sid(sid: int) -> str:
    """Canonical spelling of a SID: eight upper-case hex digits, as directory names use."""
    return f"{sid:08X}"


def parse_sid(text: str) -> int:
    """Parse a SID written as hex with or without 0x; raises ArgumentError."""
    t = text.strip()
    if t[:2].lower() == "0x":
        t = t[2:]
    if not t or len(t) > 8 or any(c not in string.hexdigits for c in t):
        raise ArgumentError(f"not a SID: {text!r}")
    return int(t, 16)


def normalise_drive(drive: str) -> str:
    """Accept 'c', 'C', 'c:' and return 'c'; raise ArgumentError for anything else."""
    d = drive.strip().lower().rstrip(":")
    if len(d) != 1 or d not in DRIVE_LETTERS:
        raise ArgumentError(f"not a drive letter: {drive!r}")
    return d


def normalise_drives(drives: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({normalise_drive(d) for d in drives}))


@dataclass(frozen=True)
class DataOwnerInfo:
    """What ``list_data_owners`` reports for one owner.

    See engine/README.md, Drives and data owners (settings flags).
    """

    sid: int
    name: str
    common: CommonSettings
    passive: PassiveSettings
    active: ActiveSettings
    drives: tuple[str, ...]
    package: str | None = None
    disabled: str | None = None
    """Why the owner's registration cannot be used (every flag is then off), else None."""

    def to_wire(self) -> dict[str, object]:
        return {
            "sid": self.sid,
            "name": self.name,
            "common": int(self.common),
            "passive": int(self.passive),
            "active": int(self.active),
            "drives": list(self.drives),
            "package": self.package,
            "disabled": self.disabled,
        }

    @classmethod
    def from_wire(cls, d: dict[str, object]) -> DataOwnerInfo:
        pkg = d.get("package")
        disabled = d.get("disabled")
        return cls(
            sid=_int(d["sid"]),
            name=str(d["name"]),
            common=CommonSettings(_int(d["common"])),
            passive=PassiveSettings(_int(d["passive"])),
            active=ActiveSettings(_int(d["active"])),
            drives=tuple(str(x) for x in _list(d["drives"])),
            package=None if pkg is None else str(pkg),
            disabled=None if disabled is None else str(disabled),
        )


@dataclass(frozen=True)
class FileEntry:
    """One public file: absolute Linux path plus its metadata (engine/README.md, Passive data)."""

    path: str
    size: int
    mtime_ns: int
    mode: int
    is_dir: bool = False

    def wire_size(self) -> int:
        """Bytes this entry counts for in a paged listing's max_response_size."""
        return 32 + len(self.path.encode("utf-8", "surrogateescape"))

    def to_wire(self) -> dict[str, object]:
        return {
            "path": self.path,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "mode": self.mode,
            "is_dir": self.is_dir,
        }

    @classmethod
    def from_wire(cls, d: dict[str, object]) -> FileEntry:
        return cls(
            path=str(d["path"]),
            size=_int(d["size"]),
            mtime_ns=_int(d["mtime_ns"]),
            mode=_int(d["mode"]),
            is_dir=bool(d.get("is_dir", False)),
        )


@dataclass(frozen=True)
class ModeInfo:
    """The published BUR state: mode, increment type, drives (engine/README.md, Modes)."""

    mode: BURMode = BURMode.NORMAL
    inc: BackupIncType = BackupIncType.NO_BACKUP
    drives: tuple[str, ...] = ()
    partial_sids: tuple[int, ...] = field(default=())

    @property
    def value(self) -> int:
        return int(self.mode) | int(self.inc)

    def to_wire(self) -> dict[str, object]:
        return {
            "mode": int(self.mode),
            "inc": int(self.inc),
            "drives": list(self.drives),
            "partial_sids": list(self.partial_sids),
        }

    @classmethod
    def from_wire(cls, d: dict[str, object]) -> ModeInfo:
        return cls(
            mode=BURMode(_int(d["mode"])),
            inc=BackupIncType(_int(d["inc"])),
            drives=tuple(str(x) for x in _list(d.get("drives", []))),
            partial_sids=tuple(_int(x) for x in _list(d.get("partial_sids", []))),
        )


def _int(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ArgumentError(f"expected an integer, got {type(v).__name__}")
    return v


def _list(v: object) -> list[object]:
    if not isinstance(v, list):
        raise ArgumentError(f"expected a list, got {type(v).__name__}")
    return v


# ---------------------------------------------------------------- results


@dataclass
class ArchiveInfo:
    name: str
    size: int
    kind: str  # "full", "owner" or "snapshot"
    sid: int | None = None

    def to_wire(self) -> dict[str, object]:
        return {"name": self.name, "size": self.size, "kind": self.kind, "sid": self.sid}

    @classmethod
    def from_wire(cls, d: dict[str, object]) -> ArchiveInfo:
        sid = d.get("sid")
        size = d["size"]
        assert isinstance(size, int)
        return cls(str(d["name"]), size, str(d["kind"]), sid if isinstance(sid, int) else None)


@dataclass
class OwnerResult:
    sid: int
    code: int
    reason: str

    def to_wire(self) -> dict[str, object]:
        return {"sid": self.sid, "code": self.code, "reason": self.reason}


@dataclass
class RestoreResult:
    """What a restore achieved: ``code`` 0 means every selected owner was restored."""

    code: int
    reason: str
    owners: list[OwnerResult] = field(default_factory=list)
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        return self.code == 0

    def to_wire(self) -> dict[str, object]:
        return {
            "code": self.code,
            "reason": self.reason,
            "owners": [o.to_wire() for o in self.owners],
            "bytes_read": self.bytes_read,
        }

    @classmethod
    def from_wire(cls, d: dict[str, object]) -> RestoreResult:
        owners = d.get("owners") or []
        assert isinstance(owners, list)
        code, reason, nbytes = d["code"], d["reason"], d.get("bytes_read", 0)
        assert isinstance(code, int) and isinstance(nbytes, int)
        return cls(
            code,
            str(reason),
            [OwnerResult(int(o["sid"]), int(o["code"]), str(o["reason"])) for o in owners],
            nbytes,
        )
