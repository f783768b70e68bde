"""An engine killed in the middle of a restore leaves nothing behind once it is back.

systemd restarts a crashed engine (``Restart=on-failure``); the new one must
find the owners' data as it was and clear what the dead one had staged: the
staging directories beside the private directories, and the restore's spool
(owners' data too) in the cache directory that outlives restarts.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from engine.client import EngineClient
from engine.daemon.restore import STAGING_PREFIX
from engine.daemon.spool import SPOOL_PREFIXES

from .conftest import start_engine, stop_engine
from .helpers import PASSIVE_ALL, make_config, make_tree, register, tree_state, write_file

SID = 0x0FA00030


def _spooled(spool: Path) -> list[str]:
    return sorted(p.name for p in spool.iterdir() if p.name.startswith(SPOOL_PREFIXES))


def _staged(private_root: Path) -> list[str]:
    return sorted(p.name for p in private_root.iterdir() if p.name.startswith(STAGING_PREFIX))


async def test_a_restarted_engine_clears_what_a_killed_restore_left(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    pd = register(cfg, SID, PASSIVE_ALL)
    make_tree(pd)
    ep = start_engine(cfg, tmp_path)
    try:
        async with EngineClient.connect(cfg.socket_path) as c:
            prep = await c.prepare_backup([SID])
            data = b"".join([x async for x in c.read_archive(prep.archive("full").name)])
            await c.set_normal()
        write_file(pd / "added-after-the-backup.dat", b"only on the device")
        old = tree_state(pd)
        half_sent = trio.Event()

        async def half_then_hang() -> AsyncIterator[bytes]:
            yield data[: len(data) // 2]
            half_sent.set()
            await trio.sleep_forever()
            yield b""  # pragma: no cover

        async def restore() -> None:
            async with EngineClient.connect(cfg.socket_path) as c:
                await c.restore_archive(half_then_hang())

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(restore)
                await half_sent.wait()
                private_root = pd.parent
                while not (_spooled(cfg.spool_dir) and _staged(private_root)):
                    await trio.sleep(0.02)
                ep.proc.kill()
                ep.proc.wait()
                nursery.cancel_scope.cancel()
        # The dead engine's leftovers, and a file in the spool that is not the engine's.
        assert _spooled(cfg.spool_dir) and _staged(private_root)
        (cfg.spool_dir / "not-the-engines").mkdir()
    finally:
        stop_engine(ep)

    ep = start_engine(cfg, tmp_path)
    try:
        assert _spooled(cfg.spool_dir) == []
        assert _staged(pd.parent) == []
        assert (cfg.spool_dir / "not-the-engines").is_dir()
        assert tree_state(pd) == old
        assert "removed restore-" in ep.log.read_text()
        # And it serves: a restore of the whole archive goes through.
        async with EngineClient.connect(cfg.socket_path) as c:

            async def whole() -> AsyncIterator[bytes]:
                yield data

            result = await c.restore_archive(whole())
        assert result.code == 0, result.reason
        assert not (pd / "added-after-the-backup.dat").exists()
        assert os.listdir(cfg.spool_dir) == ["not-the-engines"]
    finally:
        stop_engine(ep)
