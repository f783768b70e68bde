"""Resumable downloads in the backup servers' toolkit, against a real engine.

A peer gone in the middle of an archive (link lost, session closed) finds the
very same archive when it comes back within ``resume_window``: same name,
same size, the same bytes at every offset.  After the window the device is
back in Normal mode; when a planned file changed meanwhile the rest is refused
with a reason and a fresh backup, under a new name, is prepared instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from engine.agefile import X25519Identity
from engine.daemon.config import EngineConfig
from engine.serverkit import BACKUP, STATUS, BackupServer, Entry, ErrorKind, ServerError

from .conftest import EngineProcess, start_engine, stop_engine
from .helpers import PASSIVE_ALL, make_config, make_tree, register
from .test_serverkit import Kit, by_suffix, read_all, start_kit, wait_until

SID = 0x10203040


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    cfg: EngineConfig = make_config(tmp_path / "engine", device_name="board")
    make_tree(register(cfg, SID, PASSIVE_ALL))
    proc = start_engine(cfg, tmp_path / "engine")
    yield proc
    stop_engine(proc)


async def resumable_kit(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess, window: float, **config: object
) -> Kit:
    kit = await start_kit(
        nursery, tmp_path, engine, idle_timeout=600.0, resume_window=window, **config
    )
    (kit.owner_dir / "big.bin").write_bytes(os.urandom(3 << 20))
    return kit


async def status_text(server: BackupServer) -> str:
    return (await read_all_status(server)).decode()


async def read_all_status(server: BackupServer) -> bytes:
    return b"".join([c async for c in server.open_read(STATUS)])


async def begin_download(kit: Kit, suffix: str = ".mbak", part: int = 2) -> tuple[Entry, bytes]:
    """List Backup/ and read the first ``1/part`` of its archive, as a cut-off peer did."""
    entry = by_suffix(await kit.server.list(BACKUP), suffix)
    head = await read_all(kit, entry.key, 0, entry.size // part)
    assert len(head) == entry.size // part
    return entry, head


async def test_a_download_cut_off_is_held_and_its_rest_is_the_same_archive(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess
) -> None:
    kit = await resumable_kit(nursery, tmp_path, engine, window=60)
    entry, head = await begin_download(kit)
    await kit.server.link_lost()
    assert kit.server.held is not None
    await trio.sleep(0.5)
    assert kit.mode() == "BACKUP_FULL", "a held backup keeps the device in backup mode"
    assert f"backup {entry.name} held for resuming until" in await status_text(kit.server)

    # The next session: the listing shows the same archive, and the rest follows on.
    again = by_suffix(await kit.server.list(BACKUP), ".mbak")
    assert (again.key, again.name, again.size, again.uid) == (
        entry.key,
        entry.name,
        entry.size,
        entry.uid,
    )
    assert kit.server.held is None
    assert "held for resuming" not in await status_text(kit.server)
    rest = await read_all(kit, entry.key, len(head))
    whole = await read_all(kit, entry.key)
    assert head + rest == whole
    assert len(whole) == entry.size
    for offset in (1, 511, 512 + 7, entry.size // 3, entry.size - 1000):
        assert await read_all(kit, entry.key, offset, 4096) == whole[offset : offset + 4096]
    await kit.server.session_closed()
    await wait_until(lambda: kit.mode() == "NORMAL", 10)


async def test_a_download_cut_off_by_the_end_of_the_session_is_held_as_well(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess
) -> None:
    kit = await resumable_kit(nursery, tmp_path, engine, window=60)
    entry, head = await begin_download(kit, part=3)
    await kit.server.session_closed()
    assert kit.server.held is not None
    rest = await read_all(kit, entry.key, len(head))
    assert len(head) + len(rest) == entry.size
    assert (head + rest)[-1024:] == bytes(1024), "an archive ends with two zero blocks"
    await kit.server.session_closed()
    await wait_until(lambda: kit.mode() == "NORMAL", 10)


async def test_sessions_that_leave_the_backup_alone_do_not_push_the_deadline_back(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess
) -> None:
    kit = await resumable_kit(nursery, tmp_path, engine, window=2)
    await begin_download(kit)
    await kit.server.link_lost()
    deadline = kit.server.held
    assert deadline is not None
    for _ in range(3):
        await trio.sleep(0.3)
        await kit.server.list("")  # a host looking at the root only
        assert "held for resuming" in await status_text(kit.server)
        await kit.server.session_closed()
        assert kit.server.held == deadline
    await wait_until(lambda: kit.mode() == "NORMAL", 10)
    assert kit.server.held is None


async def test_a_finished_download_is_released_at_the_end_of_the_session(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess
) -> None:
    kit = await resumable_kit(nursery, tmp_path, engine, window=60)
    listing = await kit.server.list(BACKUP)
    for suffix in (".mbak", ".snapshot"):
        await read_all(kit, by_suffix(listing, suffix).key)
    await kit.server.session_closed()
    assert kit.server.held is None
    await wait_until(lambda: kit.mode() == "NORMAL", 10)


async def test_without_a_window_a_cut_off_download_is_released_at_once(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess
) -> None:
    kit = await resumable_kit(nursery, tmp_path, engine, window=0)
    await begin_download(kit)
    await kit.server.link_lost()
    assert kit.server.held is None
    await wait_until(lambda: kit.mode() == "NORMAL", 10)


async def test_after_the_window_the_device_is_normal_and_the_old_archive_is_not_continued(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess
) -> None:
    kit = await resumable_kit(nursery, tmp_path, engine, window=1)
    entry, head = await begin_download(kit)
    await kit.server.link_lost()
    await wait_until(lambda: kit.mode() == "NORMAL", 10)
    assert kit.server.held is None
    assert "held for resuming" not in await status_text(kit.server)

    # A peer asking for the rest gets a reason, not another backup's bytes.
    with pytest.raises(ServerError) as caught:
        await read_all(kit, entry.key, len(head))
    assert caught.value.kind is ErrorKind.FAILED
    assert entry.name in caught.value.reason
    assert "read it from the start" in caught.value.reason
    fresh = by_suffix(await kit.server.list(BACKUP), ".mbak")
    assert fresh.name != entry.name
    assert len(await read_all(kit, fresh.key)) == fresh.size
    await kit.server.session_closed()


async def test_a_file_changed_while_held_fails_the_rest_and_a_fresh_backup_is_prepared(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess
) -> None:
    kit = await resumable_kit(nursery, tmp_path, engine, window=60)
    entry = by_suffix(await kit.server.list(BACKUP), ".mbak")
    head = await read_all(kit, entry.key, 0, 512)  # the first header: no file content yet
    await kit.server.link_lost()
    (kit.owner_dir / "big.bin").write_bytes(os.urandom(3 << 20))  # same size, new mtime

    with pytest.raises(ServerError) as caught:
        await read_all(kit, entry.key, len(head))
    assert caught.value.kind is ErrorKind.FAILED
    assert f"{entry.name} cannot be resumed" in caught.value.reason
    assert "changed" in caught.value.reason
    await wait_until(lambda: kit.mode() == "NORMAL", 10)
    # The same request again is still refused: never the new backup's bytes at that offset.
    with pytest.raises(ServerError):
        await read_all(kit, entry.key, len(head))

    fresh = by_suffix(await kit.server.list(BACKUP), ".mbak")
    assert fresh.name != entry.name, "a fresh backup never reuses the old name"
    whole = await read_all(kit, fresh.key)
    assert len(whole) == fresh.size
    await kit.server.session_closed()


async def test_an_encrypted_archive_is_resumed_with_the_same_header_and_nonce(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess
) -> None:
    identity = X25519Identity.generate()
    kit = await resumable_kit(nursery, tmp_path, engine, window=60, recipients=[identity.recipient])
    entry, head = await begin_download(kit, ".mbak.age")
    await kit.server.link_lost()
    again = by_suffix(await kit.server.list(BACKUP), ".mbak.age")
    assert (again.name, again.size) == (entry.name, entry.size)
    rest = await read_all(kit, entry.key, len(head))
    assert head + rest == await read_all(kit, entry.key)
    await kit.server.session_closed()
