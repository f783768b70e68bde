"""Data owner discovery and the per-owner facts derived from registrations.

Linux mapping: each configured drive is a directory (a mount point); an owner's
private directory on drive ``d`` is ``<drive d>/private/<SID>/`` where ``<SID>`` is
eight hex digits (any case). The registration files live at the top of it.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..mbak.snapshot import FileRecord
from ..types import (
    ActiveSettings,
    ActiveType,
    CommonSettings,
    DataOwnerInfo,
    DataOwnerStatus,
    PassiveSettings,
    format_sid,
)
from .config import EngineConfig
from .filelist import passive_file_list
from .registration import REGISTRATION_RE, Registration, load_registration, registration_relpaths

log = logging.getLogger(__name__)

SID_DIR_RE = re.compile(r"^[0-9a-fA-F]{8}$")


@dataclass
class DataOwner:
    """One owner: its registration plus where its private directories are."""

    sid: int
    registration: Registration
    private_dirs: dict[str, Path] = field(default_factory=dict)
    drives: tuple[str, ...] = ()
    status: DataOwnerStatus = DataOwnerStatus.UNSET

    @property
    def name(self) -> str:
        r = self.registration
        if r.name:
            return r.name
        if r.process_name:
            base = os.path.basename(r.process_name)
            return base.rsplit(".", 1)[0] if "." in base else base
        return f"owner-{format_sid(self.sid)}"

    @property
    def is_active(self) -> bool:
        """Active data is exchanged: the owner is active itself or names proxies."""
        return self.registration.active or bool(self.registration.proxies)

    @property
    def has_own_active_data(self) -> bool:
        r = self.registration
        return r.active and r.active_type is not ActiveType.PROXY_ONLY

    @property
    def is_passive(self) -> bool:
        return self.registration.passive

    @property
    def supports_active_incremental(self) -> bool:
        r = self.registration
        return r.active and r.supports_incremental and not (r.proxies and not r.active)

    @property
    def supports_passive_incremental(self) -> bool:
        return self.registration.passive and not self.registration.base_backup_only

    def common_settings(self) -> CommonSettings:
        r = self.registration
        f = CommonSettings.NONE
        if r.active or r.proxies:
            f |= CommonSettings.ACTIVE_BUR
        if r.passive:
            f |= CommonSettings.PASSIVE_BUR
        if r.system_backup:
            f |= CommonSettings.HAS_SYSTEM_FILES
        if r.active_selective and r.passive_selective:
            f |= CommonSettings.SUPPORTS_SELECTIVE
        if r.requires_reboot:
            f |= CommonSettings.REQUIRES_REBOOT
        return f

    def passive_settings(self) -> PassiveSettings:
        r = self.registration
        f = PassiveSettings.NONE
        if r.public:
            f |= PassiveSettings.HAS_PUBLIC_FILES
        if r.delete_before_restore:
            f |= PassiveSettings.DELETE_BEFORE_RESTORE
        if self.supports_passive_incremental:
            f |= PassiveSettings.PASSIVE_SUPPORTS_INC
        return f

    def active_settings(self) -> ActiveSettings:
        r = self.registration
        f = ActiveSettings.NONE
        if r.active and r.requires_delay:
            f |= ActiveSettings.DELAY_TO_PREPARE_DATA
        if self.supports_active_incremental:
            f |= ActiveSettings.ACTIVE_SUPPORTS_INC
        return f

    def info(self) -> DataOwnerInfo:
        return DataOwnerInfo(
            sid=self.sid,
            name=self.name,
            common=self.common_settings(),
            passive=self.passive_settings(),
            active=self.active_settings(),
            drives=self.drives,
            disabled=self.registration.disabled_reason,
        )

    def private_dir(self, config: EngineConfig, drive: str) -> Path:
        """Existing private dir on ``drive``, or where it would be created."""
        return self.private_dirs.get(drive) or config.private_root(drive) / format_sid(self.sid)

    def always_excluded(self, config: EngineConfig, drive: str) -> set[str]:
        """Registration files (and every backup_registration*.xml) are never data."""
        pd = self.private_dir(config, drive)
        out = registration_relpaths(self.registration.files, pd)
        try:
            for n in os.listdir(pd):
                if REGISTRATION_RE.match(n):
                    out.add(n)
        except OSError:
            pass
        return out

    def passive_records(self, config: EngineConfig, drive: str) -> list[FileRecord]:
        r = self.registration
        if not r.passive:
            return []
        return passive_file_list(
            self.private_dir(config, drive),
            r.includes,
            r.excludes,
            self.always_excluded(config, drive),
        )


def discover(config: EngineConfig) -> dict[int, DataOwner]:
    """Scan every drive for ``private/<SID>/backup_registration*.xml``.

    Directory names that are not eight hex digits are ignored; an owner with files
    on several drives is one owner whose registration files are all merged.
    """
    found: dict[int, tuple[list[Path], dict[str, Path]]] = {}
    for drive in sorted(config.drives):
        proot = config.private_root(drive)
        try:
            names = sorted(os.listdir(proot))
        except OSError:
            continue
        for n in names:
            if not SID_DIR_RE.match(n):
                continue
            d = proot / n
            if d.is_symlink() or not d.is_dir():
                continue
            try:
                regs = sorted(
                    d / f for f in os.listdir(d) if REGISTRATION_RE.match(f) and (d / f).is_file()
                )
            except OSError:
                continue
            sid = int(n, 16)
            files, dirs = found.setdefault(sid, ([], {}))
            dirs.setdefault(drive, d)
            files.extend(regs)
    owners: dict[int, DataOwner] = {}
    for sid in sorted(found):
        files, dirs = found[sid]
        if not files:
            continue
        reg = load_registration(sid, files, config.central_repository_sid)
        o = DataOwner(sid, reg, dirs)
        o.drives = config.backup_drives
        owners[sid] = o
    return owners
