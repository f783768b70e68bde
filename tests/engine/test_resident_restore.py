"""A resident active owner keeps every note through restore, base backup, restore.

The notes app (examples/data_owners/notes_store.py) runs as its own process,
started before the engine needs it, as an app that is always running is: it
takes part in one backup or restore after another without restarting, so
nothing one of them leaves behind may change what the next one does. The
engine is a real process on a real Unix socket.
"""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from engine.client import EngineClient
from engine.daemon.config import EngineConfig
from engine.types import format_sid

from .conftest import start_engine, stop_engine
from .helpers import EXAMPLES, REPO, env, make_config, register

NOTES = 0x1000A002
NOTES_XML = """<?xml version="1.0" encoding="utf-8"?>
<backup_registration version="1.0" name="notes">
  <active_backup process_name="notes_store.py" supports_incremental="yes"/>
</backup_registration>
"""

#: notes_store.py's owner loop, with a marker file touched once the engine has
#: accepted the connection (so the engine never launches a second copy).
RESIDENT = """
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import trio

sys.path.insert(0, sys.argv[1])
import notes_store
from engine import sdk

marker, db = Path(sys.argv[2]), Path(sys.argv[3])
connect = sdk.ActiveBackupClient.connect


@asynccontextmanager
async def connect_and_say_so(*args, **kwargs):
    async with connect(*args, **kwargs) as client:
        marker.touch()
        yield client


sdk.ActiveBackupClient.connect = connect_and_say_so
notes_store.open_db(db).close()
trio.run(sdk.run_owner, notes_store.NotesOwner(db))
"""


def notes(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return [t for (t,) in con.execute("SELECT text FROM notes ORDER BY id")]
    finally:
        con.close()


def add_note(db: Path, text: str) -> None:
    con = sqlite3.connect(db)
    with con:
        con.execute("INSERT INTO notes (text) VALUES (?)", (text,))
    con.close()


@pytest.fixture
def device(tmp_path: Path) -> Iterator[tuple[EngineConfig, Path]]:
    cfg = make_config(tmp_path / "engine")
    register(cfg, NOTES, NOTES_XML)
    db = tmp_path / "notes.db"
    proc = start_engine(cfg, tmp_path / "engine")
    marker = tmp_path / "owner-connected"
    owner_env = env() | {
        "BACKUP_ENGINE_SOCKET": str(cfg.socket_path),
        "BACKUP_ENGINE_SID": format_sid(NOTES),
    }
    owner_env.pop("BACKUP_ENGINE_LAUNCHED", None)
    app = subprocess.Popen(
        [sys.executable, "-c", RESIDENT, str(EXAMPLES), str(marker), str(db)],
        env=owner_env,
        cwd=REPO,
    )
    try:
        for _ in range(400):
            if marker.exists() or app.poll() is not None:
                break
            time.sleep(0.05)
        assert marker.exists(), "the notes app did not connect"
        yield cfg, db
    finally:
        app.terminate()
        app.wait(10)
        stop_engine(proc)


async def backup(cfg: EngineConfig) -> bytes:
    async with EngineClient.connect(cfg.socket_path) as c:
        prepared = await c.prepare_backup()
        out = bytearray()
        stream = c.read_archive(prepared.archive("full").name)
        try:
            async for chunk in stream:
                out += chunk
        finally:
            await stream.aclose()
        await c.set_normal()
    return bytes(out)


async def restore(cfg: EngineConfig, archive: bytes) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(archive), 65536):
            yield archive[i : i + 65536]

    async with EngineClient.connect(cfg.socket_path) as c:
        result = await c.restore_archive(chunks())
    assert result.ok, result.reason


def active_base_size(archive: bytes) -> int:
    """The smallest of the notes app's active-base streams (one per drive)."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        sizes = [m.size for m in tar.getmembers() if m.name.endswith("active-base")]
    assert sizes, "the notes app's active-base stream"
    return min(sizes)


async def test_a_base_backup_after_a_restore_holds_every_note(
    device: tuple[EngineConfig, Path],
) -> None:
    cfg, db = device
    for text in ("first", "second", "third"):
        add_note(db, text)
    first = await backup(cfg)
    await restore(cfg, first)
    assert notes(db) == ["first", "second", "third"]

    # The base backup right after the restore: the whole database, not "newer notes".
    second = await backup(cfg)
    assert active_base_size(second) >= os.path.getsize(db)

    add_note(db, "after the second backup")
    await restore(cfg, second)
    assert notes(db) == ["first", "second", "third"]
