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

import sqlite3
from pathlib import Path

import trio

from engine.client import EngineClient
from engine.daemon.config import EngineConfig

from .test_resident_restore import device  # noqa: F401  (the fixture)


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
