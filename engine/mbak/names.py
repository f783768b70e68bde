"""Member names from an untrusted archive, checked before anything is written.

A name is relative, uses ``/``, has no empty, ``.`` or ``..`` part and no NUL,
and fits in a Linux path: anything else could escape the owner's area.
"""

from __future__ import annotations

from ..errors import CorruptError

MAX_PATH_BYTES = 4000


def safe_relpath(name: str) -> str:
    """Validate an archive-relative path; raises CorruptError if it could escape."""
    if not name or "\x00" in name:
        raise CorruptError("empty or NUL-containing path in restore data")
    if name.startswith("/") or ("\\" in name and ":" in name):
        raise CorruptError(f"absolute path in restore data: {name[:200]!r}")
    is_dir = name.endswith("/")
    parts = name.rstrip("/").split("/")
    for p in parts:
        if p in ("", ".", ".."):
            raise CorruptError(f"path escapes the owner's area: {name[:200]!r}")
    rel = "/".join(parts)
    if len(rel.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise CorruptError("path too long in restore data")
    return rel + ("/" if is_dir else "")
