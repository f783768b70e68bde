"""A proxy data manager: keeps settings for other apps and backs them up for them.

Apps name it with ``<proxy_data_manager SID="..."/>``; the engine then asks this
process for ``initialise_get_proxy_backup_data(app_sid, drive)`` and embeds the
answer in the app's active stream. Settings live in ``$PROXY_STORE/<SID>.json``
(one file per app); restore replaces a file atomically once it is complete.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.sdk import BlockingActiveBackupDataClient, run_owner
from engine.types import format_sid


class ProxyManager(BlockingActiveBackupDataClient):
    def __init__(self, store: Path) -> None:
        self.store = store
        self.data = b""
        self.pos = 0
        self.target: Path | None = None
        self.buf = bytearray()

    def initialise_get_backup_data(self, drive: str) -> None:
        # Its own data (activeandproxy): the list of apps it serves.
        self.data = "\n".join(sorted(p.stem for p in self.store.glob("*.json"))).encode()
        self.pos = 0

    def initialise_get_proxy_backup_data(self, sid: int, drive: str) -> None:
        p = self.store / f"{format_sid(sid)}.json"
        self.data = p.read_bytes() if p.exists() else b""
        self.pos = 0

    def get_backup_data_section(self, max_size: int) -> tuple[bytes, bool]:
        chunk = self.data[self.pos : self.pos + max_size]
        self.pos += len(chunk)
        return chunk, self.pos >= len(self.data)

    def initialise_restore_base_data(self, drive: str) -> None:
        self.target = None
        self.buf.clear()

    def initialise_restore_proxy_base_data(self, sid: int, drive: str) -> None:
        self.target = self.store / f"{format_sid(sid)}.json"
        self.buf.clear()

    def restore_base_data_section(self, section: bytes, finished: bool) -> None:
        self.buf += section
        if finished and self.target is not None:
            fd, tmp = tempfile.mkstemp(dir=self.store)
            with os.fdopen(fd, "wb") as f:
                f.write(self.buf)
            os.replace(tmp, self.target)
            self.buf.clear()

    def terminate_multi_stage_operation(self) -> None:
        self.buf.clear()


def main() -> int:
    store = Path(os.environ["PROXY_STORE"])
    store.mkdir(parents=True, exist_ok=True)
    trio.run(run_owner, ProxyManager(store))
    return 0


if __name__ == "__main__":
    sys.exit(main())
