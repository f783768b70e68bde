"""A resident active owner takes part in the next backup after one was cut off.

The responder's Backup & Restore storage prepares a backup whenever the host
lists ``Backup/``; a cable pulled during that preparation cuts the client off
in backup mode, and the host's next session prepares again at once.  The
notes app, running all along, must confirm that next session too: the engine
publishes the return to Normal even though the client that asked for it is
gone, and the app's owner loop confirms every new session, even one whose
Normal and backup mode reached it together.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from engine.client import EngineClient
from engine.daemon.config import EngineConfig
from engine.errors import InUseError

from .helpers import EXAMPLES, env
from .test_resident_restore import NOTES, device  # noqa: F401  (the fixture)


def fill(db: Path, count: int) -> None:
    """Enough notes that the app is still sending them when the client is cut off."""
    con = sqlite3.connect(db)
    with con:
        con.executemany("INSERT INTO notes (text) VALUES (?)", [("x" * 1000,)] * count)
    con.close()


def mode(cfg: EngineConfig) -> str:
    assert cfg.state_file is not None
    text = cfg.state_file.read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)["mode"]


async def test_a_backup_cut_off_while_preparing_then_prepared_again_includes_the_app(
    device: tuple[EngineConfig, Path],  # noqa: F811
) -> None:
    cfg, db = device
    fill(db, 400)
    # Cut off at a few moments of the preparation: the race needs the right one.
    for delay in (0.0, 0.01, 0.02, 0.03, 0.05):
        async with trio.open_nursery() as nursery:

            async def prepare() -> None:
                async with EngineClient.connect(cfg.socket_path) as c:
                    await c.prepare_backup()
                    await trio.sleep_forever()

            nursery.start_soon(prepare)
            while mode(cfg) != "BACKUP_FULL":
                await trio.sleep(0.002)
            await trio.sleep(delay)
            nursery.cancel_scope.cancel()
        with trio.fail_after(60):
            async with EngineClient.connect(cfg.socket_path) as c:
                prepared = await c.prepare_backup()
                await c.set_normal()
        assert prepared.skipped == [], f"cut off after {delay} s: {prepared.skipped}"


def texts(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return [t for (t,) in con.execute("SELECT text FROM notes ORDER BY id")]
    finally:
        con.close()


async def test_a_restore_cut_off_while_the_app_takes_its_data_leaves_the_app_serving(
    device: tuple[EngineConfig, Path],  # noqa: F811
) -> None:
    """The app is told its upload was cancelled: it drops what it took and hangs on nothing.

    Before, the engine's cancel to the app was itself cancelled with the client:
    the app waited for the rest of its data for ever, and the engine (waiting
    for the app's answer to restore_complete) turned every client away as
    InUse for minutes.
    """
    cfg, db = device
    fill(db, 1500)
    async with EngineClient.connect(cfg.socket_path) as c:
        prepared = await c.prepare_backup()
        archive = b"".join([x async for x in c.read_archive(prepared.archive("full").name)])
        await c.set_normal()
    backed_up = texts(db)
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM notes WHERE id > 10")
    con.close()
    before = texts(db)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(archive), 65536):
            yield archive[i : i + 65536]

    def app_temporaries() -> list[str]:
        return [p.name for p in db.parent.iterdir() if p.name.startswith(".notes-")]

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:

            async def restore() -> None:
                async with EngineClient.connect(cfg.socket_path) as c:
                    await c.restore_archive(chunks())

            nursery.start_soon(restore)
            while not app_temporaries():
                await trio.sleep(0.001)
            nursery.cancel_scope.cancel()
    assert texts(db) == before

    with trio.fail_after(30):
        while True:
            try:
                async with EngineClient.connect(cfg.socket_path) as c:
                    result = await c.restore_archive(chunks())
                break
            except InUseError:  # the last client's clean-up, for a moment
                await trio.sleep(0.2)
    assert result.ok, result.reason
    assert texts(db) == backed_up
    assert app_temporaries() == []


def engine_pid(cfg: EngineConfig) -> int:
    """The pid of the engine serving ``cfg``'s socket (SO_PEERCRED of a connection)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(cfg.socket_path))
        raw = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid: int = struct.unpack("3i", raw)[0]
    return pid


async def test_an_engine_killed_while_the_app_takes_its_data_leaves_no_temporary_file(
    device: tuple[EngineConfig, Path],  # noqa: F811
) -> None:
    """The app's connection ends mid-upload: it drops its half-written database copy."""
    cfg, db = device
    fill(db, 1500)
    async with EngineClient.connect(cfg.socket_path) as c:
        prepared = await c.prepare_backup()
        archive = b"".join([x async for x in c.read_archive(prepared.archive("full").name)])
        await c.set_normal()
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM notes WHERE id > 10")
    con.close()
    before = texts(db)
    pid = engine_pid(cfg)

    async def chunks() -> AsyncIterator[bytes]:
        yield archive

    def app_temporaries() -> list[str]:
        return [p.name for p in db.parent.iterdir() if p.name.startswith(".notes-")]

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:

            async def restore() -> None:
                with contextlib.suppress(Exception):
                    async with EngineClient.connect(cfg.socket_path) as c:
                        await c.restore_archive(chunks())

            nursery.start_soon(restore)
            while not app_temporaries():
                await trio.sleep(0.001)
            os.kill(pid, signal.SIGKILL)
        while app_temporaries():
            await trio.sleep(0.05)
    assert texts(db) == before


def app_pid(db: Path) -> int:
    """The resident notes app of this test (its command line names this test's database)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if os.fsencode(db) in argv and b"-c" in argv:
            return int(entry.name)
    raise AssertionError("the notes app is not running")


async def test_an_app_killed_while_it_takes_its_data_gets_the_restore_refused_not_hung(
    device: tuple[EngineConfig, Path],  # noqa: F811
) -> None:
    """The owner's process dies mid-upload: the restore is answered, naming it; notes unchanged.

    Before, writing to the dead app's socket raised an error the engine's
    connection took for the client's own link breaking: the client's request
    was never answered, and the client waited until its own timeout.
    """
    cfg, db = device
    fill(db, 1500)
    async with EngineClient.connect(cfg.socket_path) as c:
        prepared = await c.prepare_backup()
        archive = b"".join([x async for x in c.read_archive(prepared.archive("full").name)])
        await c.set_normal()
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM notes WHERE id > 10")
    con.close()
    before = texts(db)
    pid = app_pid(db)

    async def chunks() -> AsyncIterator[bytes]:
        yield archive

    results = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:

            async def restore() -> None:
                async with EngineClient.connect(cfg.socket_path) as c:
                    results.append(await c.restore_archive(chunks()))

            nursery.start_soon(restore)
            while not [p for p in db.parent.iterdir() if p.name.startswith(".notes-restore-")]:
                await trio.sleep(0.001)
            os.kill(pid, signal.SIGKILL)
    (result,) = results
    assert not result.ok
    assert f"{NOTES:08X}" in result.reason, result.reason
    assert texts(db) == before


def test_an_owner_launched_for_a_session_that_already_ended_exits(
    device: tuple[EngineConfig, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The engine relaunches an owner that died during a restore; if the restore
    ended before the new copy connected, that copy exits instead of lingering (it
    held the owner's one session, so the app's own resident copy could not connect).
    """
    cfg, _db = device
    db = tmp_path / "launched.db"
    launched = subprocess.run(
        [sys.executable, str(EXAMPLES / "notes_store.py")],
        env=env()
        | {
            "BACKUP_ENGINE_SOCKET": str(cfg.socket_path),
            "BACKUP_ENGINE_SID": "0FA0FFFF",
            "BACKUP_ENGINE_LAUNCHED": "1",
            "NOTES_DB": str(db),
        },
        timeout=60,
        capture_output=True,
    )
    assert launched.returncode == 0, launched.stderr.decode()
