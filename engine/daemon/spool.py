"""Private scratch directories for streams that must be held whole before they move on."""

from __future__ import annotations

import os
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
