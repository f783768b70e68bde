"""The current BUR mode as every part of the engine reads it, and the check that an
operation is allowed in it (see engine/README.md, Modes)."""

from __future__ import annotations

from ..errors import AccessDeniedError
from ..types import ModeInfo


class CurrentMode:
    """The mode every part of the engine reads; only the mode switch (``modes``) changes it."""

    def __init__(self) -> None:
        self.info = ModeInfo()

    def require(self, *, normal: bool = False, backup: bool = False, restore: bool = False) -> None:
        """AccessDenied unless the current mode is one of those named."""
        m = self.info.mode
        ok = (normal and m.is_normal) or (backup and m.is_backup) or (restore and m.is_restore)
        if not ok:
            raise AccessDeniedError(f"not allowed in mode {m.name}")
