"""The public files of an owner that a backup server copies itself, during a backup.

Public files live outside the owner's private directory, so the engine does not
stream them: it lists them (whole, in pages, or as the raw selections) and the
backup server reads them from the file system (see engine/README.md, Passive data).
"""

from __future__ import annotations

from ..errors import ArgumentError
from ..types import FileEntry, normalise_drive
from .config import EngineConfig
from .filelist import iter_public_files
from .modegate import CurrentMode
from .registry import OwnerRegistry


class PublicFiles:
    def __init__(self, config: EngineConfig, current: CurrentMode, registry: OwnerRegistry) -> None:
        self.config = config
        self.current = current
        self.registry = registry

    def _backup_drive(self, drive: str) -> str:
        d = normalise_drive(drive)
        if d not in self.current.info.drives:
            raise ArgumentError(f"drive {d} is not in the backup drive list")
        return d

    def public_file_list(self, drive: str, sid: int) -> list[FileEntry]:
        self.current.require(backup=True)
        o = self.registry.owner(sid)
        d = self._backup_drive(drive)
        sels = [(s.include, s.drive, s.path, s.is_dir) for s in o.registration.public_selections]
        out = []
        for p, st in iter_public_files(d, self.config.drive_root(d), sels):
            out.append(FileEntry(str(p), st.st_size, st.st_mtime_ns, st.st_mode & 0o7777))
        return out

    def public_file_list_page(
        self, drive: str, sid: int, cursor: int, max_response_size: int
    ) -> tuple[list[FileEntry], bool, int]:
        """Entries from ``cursor`` within ``max_response_size`` (at least one); the next cursor."""
        entries = self.public_file_list(drive, sid)
        if cursor < 0 or cursor > len(entries):
            raise ArgumentError("bad cursor")
        out: list[FileEntry] = []
        used = 0
        i = cursor
        while i < len(entries):
            sz = entries[i].wire_size()
            if out and used + sz > max_response_size:
                break
            out.append(entries[i])
            used += sz
            i += 1
        return out, i >= len(entries), i

    def raw_public_file_list(self, drive: str, sid: int) -> list[tuple[bool, str]]:
        """The owner's public selections on ``drive`` as ``(include, absolute path)``."""
        self.current.require(backup=True)
        o = self.registry.owner(sid)
        d = self._backup_drive(drive)
        root = self.config.drive_root(d)
        out = []
        for s in o.registration.public_selections:
            if s.drive not in (d, "!"):
                continue
            p = str(root / s.path.rstrip("/")) if s.path else str(root)
            out.append((s.include, p + ("/" if s.is_dir else "")))
        return out
