"""An active data owner: a tiny SQLite notes store with consistent backups.

Run ``notes_store.py DB add TEXT`` / ``notes_store.py DB list`` to use it; run it
with no command (as the engine does from ``process_name``, with ``$NOTES_DB`` set)
to take part in backup and restore through :mod:`engine.sdk`.

Backup: the database is copied with SQLite's online backup API into a private
temporary file at ``begin_backup_data`` — a consistent image even while the app
writes — and streamed from there in sections. The snapshot is the highest note id
backed up; an increment holds only newer notes, as JSON lines. Whether a backup
is a base or an increment (and against which snapshot) is what the SDK's
``BackupRequest`` says, never what an earlier backup or restore left behind: the
app is resident, and a snapshot it received during a restore must not turn the
next base backup into an increment.
Restore: the base image is written to a temporary file and swapped in with
``os.replace`` only when complete; increments are applied in one transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.sdk import BackupRequest, BlockingActiveBackupDataClient, DataKind, run_owner
from engine.types import ModeInfo


def open_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
    return db


class NotesOwner(BlockingActiveBackupDataClient):
    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.backup_file: Path | None = None
        self.reader: object = None
        self.max_id: int | None = None
        self.restore_tmp: Path | None = None
        self.increment = bytearray()

    def new_mode(self, mode: ModeInfo) -> None:
        """Nothing of the last backup or restore is carried into the next one."""
        self.terminate_multi_stage_operation()
        self.max_id = None
        self.increment.clear()

    # -- backup
    def get_expected_data_size(self, drive: str) -> int:
        return self.db_path.stat().st_size if self.db_path.exists() else 0

    def begin_backup_data(self, request: BackupRequest) -> None:
        since: int | None = None
        if request.kind is DataKind.INCREMENT:
            assert request.snapshot is not None
            since = int(json.loads(request.snapshot)["max_id"])
        fd, tmp = tempfile.mkstemp(prefix=".notes-backup-", dir=self.db_path.parent)
        os.close(fd)
        self.backup_file = Path(tmp)
        src = open_db(self.db_path)
        try:
            self.max_id = src.execute("SELECT COALESCE(MAX(id), 0) FROM notes").fetchone()[0]
            if since is None:
                dst = sqlite3.connect(tmp)
                src.backup(dst)  # consistent image, even with writers around
                dst.close()
            else:
                rows = src.execute("SELECT id, text FROM notes WHERE id > ?", (since,))
                with open(tmp, "w") as f:
                    for i, t in rows:
                        f.write(json.dumps({"id": i, "text": t}) + "\n")
        finally:
            src.close()
        self.reader = open(tmp, "rb")

    def get_backup_data_section(self, max_size: int) -> tuple[bytes, bool]:
        data = self.reader.read(max_size)  # type: ignore[attr-defined]
        if len(data) < max_size:
            self._close_backup()
            return data, True
        return data, False

    def get_snapshot_data(self, drive: str, max_size: int) -> tuple[bytes, bool]:
        max_id = self.max_id
        if max_id is None:  # asked before the data: what the data would hold now
            db = open_db(self.db_path)
            max_id = db.execute("SELECT COALESCE(MAX(id), 0) FROM notes").fetchone()[0]
            db.close()
        return json.dumps({"max_id": max_id}).encode(), True

    def terminate_multi_stage_operation(self) -> None:
        self._close_backup()
        if self.restore_tmp is not None:
            self.restore_tmp.unlink(missing_ok=True)
            self.restore_tmp = None

    def _close_backup(self) -> None:
        if self.reader is not None:
            self.reader.close()  # type: ignore[attr-defined]
            self.reader = None
        if self.backup_file is not None:
            self.backup_file.unlink(missing_ok=True)
            self.backup_file = None

    # -- restore
    def initialise_restore_base_data(self, drive: str) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".notes-restore-", dir=self.db_path.parent)
        os.close(fd)
        self.restore_tmp = Path(tmp)
        self.reader = open(tmp, "wb")

    def restore_base_data_section(self, section: bytes, finished: bool) -> None:
        self.reader.write(section)  # type: ignore[attr-defined]
        if finished:
            self.reader.close()  # type: ignore[attr-defined]
            self.reader = None
            assert self.restore_tmp is not None
            check = sqlite3.connect(self.restore_tmp)
            ok = check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            check.close()
            if not ok:
                self.restore_tmp.unlink()
                raise ValueError("restored database is corrupt")
            os.replace(self.restore_tmp, self.db_path)
            self.restore_tmp = None

    def initialise_restore_increment_data(self, drive: str) -> None:
        self.increment.clear()

    def restore_increment_data_section(self, section: bytes, finished: bool) -> None:
        self.increment += section
        if finished:
            db = open_db(self.db_path)
            with db:
                for line in bytes(self.increment).splitlines():
                    n = json.loads(line)
                    db.execute(
                        "INSERT OR REPLACE INTO notes (id, text) VALUES (?, ?)",
                        (n["id"], n["text"]),
                    )
            db.close()
            self.increment.clear()


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] in ("add", "list"):
        db = open_db(Path(argv[0]))
        if argv[1] == "add":
            with db:
                db.execute("INSERT INTO notes (text) VALUES (?)", (" ".join(argv[2:]),))
        else:
            for i, t in db.execute("SELECT id, text FROM notes ORDER BY id"):
                print(f"{i}\t{t}")
        return 0
    path = Path(argv[0]) if argv else Path(os.environ["NOTES_DB"])
    open_db(path).close()
    trio.run(run_owner, NotesOwner(path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
