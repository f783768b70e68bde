"""Private scratch directories for streams that must be held whole before they move on."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def new_spool_dir(root: Path, prefix: str) -> Path:
    """A fresh directory under ``root``, which only the engine's user may enter.

    Spooled data is owners' private data, so the root is kept at mode 0700 even
    when something else created it.
    """
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))


#: The prefixes of the directories the engine's operations and transfers spool into.
SPOOL_PREFIXES = ("prev-", "backup-", "restore-", "snap-", "snapin-")


def clear_leftovers(root: Path) -> list[str]:
    """Delete the scratch directories an engine that crashed (SIGKILL, power cut) left.

    They hold owners' private data (spooled active streams, snapshots) that no
    later operation reuses, and a device that crashes now and then would
    otherwise fill its cache with them.  Runs before the engine serves, and one
    engine uses a spool root, so none of them is live.  Anything else in the
    root is not the engine's and stays.  Returns the names removed.
    """
    try:
        names = os.listdir(root)
    except OSError:
        return []
    removed = []
    for name in names:
        path = root / name
        if name.startswith(SPOOL_PREFIXES) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    return sorted(removed)
