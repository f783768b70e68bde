"""Space before time: a backup that cannot fit in DIR is refused before its first byte.

The device announces every archive's exact size when it prepares a backup,
so the PC's free space is compared with it up front, rather than a long
transfer failing near its end with a disk full.  :data:`statvfs` is the one
place free space is read, so a test can stand in a small file system for it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import EXIT_FAILED, ToolError
from .progress import human_bytes

statvfs = os.statvfs
"""How free space is read (``os.statvfs``); a test may replace it."""

MARGIN = 1 << 20
"""Room kept free beyond the archives: ``chain.json`` and the file system's own needs."""


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged user may still write in ``directory``'s file system."""
    st = statvfs(directory)
    return st.f_bavail * st.f_frsize


def require_space(directory: Path, needed: int, what: str) -> None:
    """Refuse (a :class:`ToolError`) unless ``needed`` bytes fit in ``directory``."""
    try:
        free = free_bytes(directory)
    except OSError as exc:
        raise ToolError(f"{directory}: cannot read its free space: {exc.strerror or exc}") from exc
    if needed + MARGIN > free:
        raise ToolError(
            f"not enough space in {directory} for {what}: it needs {needed} bytes "
            f"({human_bytes(needed)}), {free} bytes ({human_bytes(free)}) are free; "
            "nothing was copied",
            EXIT_FAILED,
        )
