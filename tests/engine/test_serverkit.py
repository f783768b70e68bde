"""The backup servers' toolkit driven directly, as a transport would, against a real engine.

No MTP and no OBEX here: the calls an OBEX server makes (list, open_read,
create/write/commit/abort, delete, link_lost, session_closed) and what the
engine and the data owner's files show afterwards.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from engine.daemon.config import EngineConfig
from engine.errors import ErrorCode
from engine.serverkit import (
    BACKUP,
    INCREMENTAL,
    OWNERS,
    RESTORE,
    ROOT,
    STATUS,
    BackupServer,
    Entry,
    EntryKind,
    ErrorKind,
    ServerConfig,
    ServerError,
    kind_of,
)

from .conftest import EngineProcess, start_engine, stop_engine
from .helpers import PASSIVE_ALL, make_config, make_tree, register, tree_state

SID = 0x10203040
KEEP_OUT = ("cache", "NoBackup")


@dataclass
class Events:
    """What the toolkit told its transport, in order."""

    seen: list[tuple[str, str]] = field(default_factory=list)

    def added(self, key: str) -> None:
        self.seen.append(("added", key))

    def removed(self, key: str) -> None:
        self.seen.append(("removed", key))

    def changed(self, key: str) -> None:
        self.seen.append(("changed", key))


@dataclass
class Kit:
    server: BackupServer
    events: Events
    engine: EngineProcess
    owner_dir: Path

    def mode(self) -> str:
        state = self.engine.config.state_file
        assert state is not None
        lines = state.read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)["mode"]

    def owner_state(self) -> dict[str, tuple[object, ...]]:
        state = tree_state(self.owner_dir)
        return {k: v for k, v in state.items() if not k.startswith(KEEP_OUT)}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    cfg: EngineConfig = make_config(tmp_path / "engine", device_name="board")
    make_tree(register(cfg, SID, PASSIVE_ALL))
    proc = start_engine(cfg, tmp_path / "engine")
    yield proc
    stop_engine(proc)


async def start_kit(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess, **config: object
) -> Kit:
    events = Events()
    server = BackupServer(
        ServerConfig(
            spool_dir=tmp_path / "spool",
            socket=engine.config.socket_path,
            space_path=str(tmp_path),
            **config,  # type: ignore[arg-type]
        ),
        events,
    )
    await nursery.start(server.run)
    return Kit(server, events, engine, engine.config.drives["c"] / "private" / f"{SID:08X}")


@pytest.fixture
async def kit(nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess) -> AsyncIterator[Kit]:
    kit = await start_kit(nursery, tmp_path, engine, idle_timeout=600.0)
    yield kit
    await kit.server.session_closed()


async def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)


async def read_all(kit: Kit, key: str, offset: int = 0, length: int | None = None) -> bytes:
    return b"".join([c async for c in kit.server.open_read(key, offset, length)])


def by_suffix(entries: list[Entry], suffix: str) -> Entry:
    return next(e for e in entries if e.name.endswith(suffix))


async def take_backup(kit: Kit) -> tuple[bytes, bytes]:
    """The full archive and its snapshot, read out of Backup/."""
    listing = await kit.server.list(BACKUP)
    mbak = await read_all(kit, by_suffix(listing, ".mbak").key)
    snapshot = await read_all(kit, by_suffix(listing, ".snapshot").key)
    return mbak, snapshot


async def send(kit: Kit, key: str, data: bytes, size: int | None, chunk: int = 65536) -> Entry:
    upload = await kit.server.create(key, size)
    try:
        for i in range(0, len(data), chunk):
            await upload.write(data[i : i + chunk])
        return await upload.commit()
    except BaseException:
        await upload.abort()
        raise


def change_the_owner(kit: Kit) -> None:
    (kit.owner_dir / "new.txt").write_text("added after the backup")
    (kit.owner_dir / "d0" / "s0" / "f0.bin").write_bytes(b"modified after the backup")


# -- the tree ----------------------------------------------------------------------------


async def test_the_root_holds_backup_incremental_and_restore_and_prepares_nothing(
    kit: Kit,
) -> None:
    root = await kit.server.list(ROOT)
    assert [(e.key, e.name, e.kind) for e in root] == [
        (BACKUP, "Backup", EntryKind.FOLDER),
        (INCREMENTAL, "Incremental", EntryKind.FOLDER),
        (RESTORE, "Restore", EntryKind.FOLDER),
    ]
    assert [e.read_only for e in root] == [True, False, False]
    assert kit.mode() == "NORMAL"


async def test_listing_backup_prepares_archives_with_exact_sizes(kit: Kit) -> None:
    listing = await kit.server.list(BACKUP)
    assert kit.mode() == "BACKUP_FULL"
    assert listing[0].key == OWNERS and listing[0].is_folder
    mbak, snapshot = by_suffix(listing, ".mbak"), by_suffix(listing, ".snapshot")
    assert mbak.name.startswith("board-") and mbak.read_only
    assert len(await read_all(kit, mbak.key)) == mbak.size
    assert len(await read_all(kit, snapshot.key)) == snapshot.size > 0
    owners = await kit.server.list(OWNERS)
    assert [e.name for e in owners if e.name.endswith(f"-{SID:08X}.mbak")]
    assert sorted(kit.events.seen) == sorted(("added", e.key) for e in listing[1:] + owners)


async def test_an_archive_found_by_its_shown_name(kit: Kit) -> None:
    """Transports that address by name (OBEX) find the key in the folder's listing."""
    listing = await kit.server.list(BACKUP)
    mbak = by_suffix(listing, ".mbak")
    assert await kit.server.find(BACKUP, mbak.name) == mbak
    with pytest.raises(ServerError) as caught:
        await kit.server.find(BACKUP, "nothing.mbak")
    assert caught.value.kind is ErrorKind.NOT_FOUND


async def test_reads_at_any_offset_match_the_whole(kit: Kit) -> None:
    whole, _ = await take_backup(kit)
    key = by_suffix(await kit.server.list(BACKUP), ".mbak").key
    for offset, length in ((0, 100), (511, 1030), (len(whole) - 700, 4096), (1000, None)):
        got = await read_all(kit, key, offset, length)
        end = len(whole) if length is None else offset + length
        assert got == whole[offset:end], (offset, length)


async def test_the_backup_extracts_with_tar_to_the_owners_files(kit: Kit, tmp_path: Path) -> None:
    whole, _ = await take_backup(kit)
    out = tmp_path / "extract"
    with tarfile.open(fileobj=io.BytesIO(whole)) as tar:
        assert tar.getnames()[0] == "manifest.json"
        tar.extractall(out, filter="tar")
    files = tree_state(out / "owners" / f"{SID:08X}" / "c" / "files")
    want = kit.owner_state()
    assert {k: v[1] for k, v in files.items() if v[0] == "f"} == {
        k: v[1] for k, v in want.items() if v[0] == "f"
    }


async def test_keys_stay_the_same_across_sessions_and_a_stat_prepares_again(kit: Kit) -> None:
    """A peer may list in one session and read in the next."""
    first = by_suffix(await kit.server.list(BACKUP), ".mbak")
    await kit.server.session_closed()
    await wait_until(lambda: kit.mode() == "NORMAL", 10)
    again = await kit.server.stat(first.key)
    assert kit.mode() == "BACKUP_FULL"
    assert again.key == first.key and again.size == first.size
    assert again.uid != first.uid, "a new preparation is a new object"
    assert ("changed", first.key) in kit.events.seen
    assert len(await read_all(kit, first.key)) == again.size


# -- incremental -------------------------------------------------------------------------


async def test_a_snapshot_dropped_into_incremental_makes_the_increment_appear(kit: Kit) -> None:
    _, snapshot = await take_backup(kit)
    change_the_owner(kit)
    entry = await send(kit, f"{INCREMENTAL}/prev.snapshot", snapshot, len(snapshot))
    assert (entry.key, entry.size, entry.kind) == (
        f"{INCREMENTAL}/prev.snapshot",
        len(snapshot),
        EntryKind.RECEIVED,
    )
    listing = await kit.server.list(INCREMENTAL)
    assert listing[0] == entry
    increment = by_suffix(listing, ".mbak")
    data = await read_all(kit, increment.key)
    assert len(data) == increment.size
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert any(n.endswith("new.txt") for n in names), names
    assert not any(n.endswith("f1.bin") for n in names), "unchanged files stay out"
    assert not [e for e in listing if e.key.startswith(OWNERS)]


async def test_a_snapshot_of_unknown_size_is_spooled_all_the_same(kit: Kit) -> None:
    _, snapshot = await take_backup(kit)
    await send(kit, f"{INCREMENTAL}/prev.snapshot", snapshot, None)
    assert by_suffix(await kit.server.list(INCREMENTAL), ".mbak").size > 0


async def test_deleting_the_snapshot_takes_the_increment_away(kit: Kit) -> None:
    _, snapshot = await take_backup(kit)
    await send(kit, f"{INCREMENTAL}/prev.snapshot", snapshot, len(snapshot))
    increment = by_suffix(await kit.server.list(INCREMENTAL), ".mbak")
    await kit.server.delete(f"{INCREMENTAL}/prev.snapshot")
    assert await kit.server.list(INCREMENTAL) == []
    assert ("removed", increment.key) in kit.events.seen
    assert kit.mode() == "NORMAL"


# -- restore -----------------------------------------------------------------------------


async def test_an_archive_of_unknown_size_is_restored_before_commit_answers(kit: Kit) -> None:
    """OBEX PUT without a Length header: the engine needs no total."""
    whole, _ = await take_backup(kit)
    backed_up = kit.owner_state()
    change_the_owner(kit)
    entry = await send(kit, f"{RESTORE}/r.mbak", whole, None)
    assert kit.owner_state() == backed_up
    assert entry.size == len(whole)
    status = (await read_all(kit, STATUS)).decode()
    assert "r.mbak: RESTORED" in status and f"{SID:08X}: ok" in status
    assert [e.name for e in await kit.server.list(RESTORE)] == ["status.txt", "r.mbak"]
    assert ("changed", STATUS) in kit.events.seen
    assert kit.mode() == "NORMAL"


async def test_a_truncated_archive_is_refused_with_a_reason_and_changes_nothing(kit: Kit) -> None:
    whole, _ = await take_backup(kit)
    change_the_owner(kit)
    before = kit.owner_state()
    cut = whole[: len(whole) // 2]
    with pytest.raises(ServerError) as caught:
        await send(kit, f"{RESTORE}/cut.mbak", cut, len(cut))
    assert caught.value.kind in (ErrorKind.BAD_DATA, ErrorKind.INCOMPLETE)
    assert kit.owner_state() == before
    status = (await read_all(kit, STATUS)).decode()
    assert "cut.mbak: REFUSED" in status and "truncated" in status
    assert kit.mode() == "NORMAL"


async def test_an_archive_larger_than_the_free_space_is_refused_before_any_data(
    kit: Kit,
) -> None:
    with pytest.raises(ServerError) as caught:
        await kit.server.create(f"{RESTORE}/huge.mbak", 1 << 50)
    assert caught.value.kind is ErrorKind.NO_SPACE
    assert "huge.mbak: REFUSED" in (await read_all(kit, STATUS)).decode()


async def test_empty_creates_are_placeholders_that_prepare_and_restore_nothing(kit: Kit) -> None:
    """FUSE clients create a file empty, read it back, then send the content."""
    status = await read_all(kit, STATUS)
    for folder in (INCREMENTAL, RESTORE):
        entry = await send(kit, f"{folder}/x.mbak", b"", 0)
        assert entry.size == 0
        assert await read_all(kit, entry.key) == b""
    assert [e.name for e in await kit.server.list(INCREMENTAL)] == ["x.mbak"]
    assert await read_all(kit, STATUS) == status
    assert kit.mode() == "NORMAL"
    upload = await kit.server.create(f"{RESTORE}/y.mbak", 0)
    with pytest.raises(ServerError) as caught:
        await upload.write(b"more than announced")
    assert caught.value.kind is ErrorKind.INCOMPLETE
    await upload.abort()


async def test_an_upload_of_unknown_size_that_is_empty_is_a_placeholder(kit: Kit) -> None:
    """An OBEX PUT without Length and without a body creates an empty file."""
    status = await read_all(kit, STATUS)
    for folder in (INCREMENTAL, RESTORE):
        entry = await send(kit, f"{folder}/x.mbak", b"", None)
        assert entry.size == 0
        assert await read_all(kit, entry.key) == b""
    assert [e.name for e in await kit.server.list(INCREMENTAL)] == ["x.mbak"]
    assert [e.name for e in await kit.server.list(RESTORE)] == ["status.txt", "x.mbak"]
    assert await read_all(kit, STATUS) == status
    await wait_until(lambda: kit.mode() == "NORMAL", 10)


async def test_the_content_after_a_placeholder_restores_under_the_same_name(kit: Kit) -> None:
    whole, _ = await take_backup(kit)
    backed_up = kit.owner_state()
    change_the_owner(kit)
    await send(kit, f"{RESTORE}/r.mbak", b"", 0)
    await send(kit, f"{RESTORE}/r.mbak", whole, len(whole))
    assert kit.owner_state() == backed_up
    assert [(e.name, e.size) for e in await kit.server.list(RESTORE)][1:] == [
        ("r.mbak", len(whole))
    ]


# -- leaving backup mode -----------------------------------------------------------------


async def test_an_idle_peer_does_not_keep_the_device_in_backup_mode(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess
) -> None:
    kit = await start_kit(nursery, tmp_path, engine, idle_timeout=1.0)
    await kit.server.list(BACKUP)
    assert kit.mode() == "BACKUP_FULL"
    await wait_until(lambda: kit.mode() == "NORMAL", 10)
    # Reading again prepares again.
    await take_backup(kit)
    await kit.server.session_closed()


async def test_reading_keeps_an_idle_timeout_from_firing(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess
) -> None:
    kit = await start_kit(nursery, tmp_path, engine, idle_timeout=1.5)
    key = by_suffix(await kit.server.list(BACKUP), ".mbak").key
    for _ in range(10):  # 2.5 s in all, longer than the idle timeout
        await trio.sleep(0.25)
        kit.server.touch()
        assert len(await read_all(kit, key, 0, 10)) == 10
    assert kit.mode() == "BACKUP_FULL"
    await kit.server.session_closed()


async def test_a_link_lost_in_the_middle_of_a_read_returns_to_normal(kit: Kit) -> None:
    (kit.owner_dir / "big.bin").write_bytes(os.urandom(12 << 20))
    before = kit.owner_state()
    mbak = by_suffix(await kit.server.list(BACKUP), ".mbak")
    stream = kit.server.open_read(mbak.key)
    received = len(await stream.__anext__())
    assert received < mbak.size
    await kit.server.link_lost()
    try:
        async for chunk in stream:
            received += len(chunk)
    except ServerError as exc:
        assert exc.kind is ErrorKind.FAILED, exc
    finally:
        await stream.aclose()
    await wait_until(lambda: kit.mode() == "NORMAL", 10)
    assert kit.owner_state() == before
    # The next peer is served.
    assert len(await read_all(kit, mbak.key)) == (await kit.server.stat(mbak.key)).size


async def test_a_link_lost_in_the_middle_of_a_restore_leaves_every_owner_old(kit: Kit) -> None:
    (kit.owner_dir / "big.bin").write_bytes(os.urandom(8 << 20))
    whole, _ = await take_backup(kit)
    change_the_owner(kit)
    before = kit.owner_state()
    upload = await kit.server.create(f"{RESTORE}/r.mbak", len(whole))
    half = len(whole) // 2
    for i in range(0, half, 65536):
        await upload.write(whole[i : min(i + 65536, half)])
    await kit.server.link_lost()
    await upload.abort()  # what the transport does with a transfer the link took away
    await wait_until(lambda: kit.mode() == "NORMAL", 10)
    assert kit.owner_state() == before
    status = (await read_all(kit, STATUS)).decode()
    assert "r.mbak: REFUSED" in status and "nothing was changed" in status
    assert [e.name for e in await kit.server.list(RESTORE)] == ["status.txt"]


async def test_a_cancelled_restore_leaves_every_owner_old(kit: Kit) -> None:
    whole, _ = await take_backup(kit)
    change_the_owner(kit)
    before = kit.owner_state()
    upload = await kit.server.create(f"{RESTORE}/r.mbak", len(whole))
    await upload.write(whole[: len(whole) // 2])
    await upload.abort()
    assert kit.owner_state() == before
    await wait_until(lambda: kit.mode() == "NORMAL", 10)
    # The engine connection is still good for the next restore.
    await send(kit, f"{RESTORE}/r.mbak", whole, len(whole))
    assert "r.mbak: RESTORED" in (await read_all(kit, STATUS)).decode()


# -- what a peer may not do --------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        (f"{BACKUP}/mine.mbak", ErrorKind.DENIED),
        (f"{OWNERS}/mine.mbak", ErrorKind.DENIED),
        ("top.mbak", ErrorKind.DENIED),
        (f"{RESTORE}/a/b.mbak", ErrorKind.DENIED),
        (f"{INCREMENTAL}/full", ErrorKind.BAD_NAME),
        (f"{INCREMENTAL}/snapshot", ErrorKind.BAD_NAME),
        (f"{RESTORE}/..", ErrorKind.BAD_NAME),
    ],
)
async def test_the_layout_is_fixed(kit: Kit, key: str, kind: ErrorKind) -> None:
    with pytest.raises(ServerError) as caught:
        await kit.server.create(key, 10)
    assert caught.value.kind is kind, caught.value.reason
    assert kit.mode() == "NORMAL"


async def test_backups_cannot_be_deleted_and_unknown_paths_are_not_found(kit: Kit) -> None:
    full = by_suffix(await kit.server.list(BACKUP), ".mbak")
    for key in (full.key, STATUS, BACKUP):
        with pytest.raises(ServerError) as caught:
            await kit.server.delete(key)
        assert caught.value.kind is ErrorKind.DENIED
    with pytest.raises(ServerError) as caught:
        await kit.server.list("Nowhere")
    assert caught.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(ServerError) as caught:
        await kit.server.stat(f"{RESTORE}/never-sent.mbak")
    assert caught.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(ServerError) as caught:
        await read_all(kit, f"{RESTORE}/never-sent.mbak")
    assert caught.value.kind is ErrorKind.DENIED


async def test_a_second_snapshot_of_the_same_name_is_refused(kit: Kit) -> None:
    _, snapshot = await take_backup(kit)
    await send(kit, f"{INCREMENTAL}/prev.snapshot", snapshot, len(snapshot))
    with pytest.raises(ServerError) as caught:
        await kit.server.create(f"{INCREMENTAL}/prev.snapshot", len(snapshot))
    assert caught.value.kind is ErrorKind.BAD_NAME


async def test_an_unreachable_engine_is_unavailable(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = BackupServer(
        ServerConfig(spool_dir=tmp_path / "spool", socket=tmp_path / "no.sock"), Events()
    )
    await nursery.start(server.run)
    with pytest.raises(ServerError) as caught:
        await server.list(BACKUP)
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert "unreachable" in caught.value.reason


def test_engine_error_codes_become_kinds() -> None:
    assert kind_of(ErrorCode.CORRUPT) is ErrorKind.BAD_DATA
    assert kind_of(ErrorCode.NOT_FOUND) is ErrorKind.BAD_DATA
    assert kind_of(ErrorCode.UNDERFLOW) is ErrorKind.INCOMPLETE
    assert kind_of(ErrorCode.DISK_FULL) is ErrorKind.NO_SPACE
    assert kind_of(ErrorCode.IN_USE) is ErrorKind.BUSY
    assert kind_of(ErrorCode.ACCESS_DENIED) is ErrorKind.DENIED
    assert kind_of(ErrorCode.TIMED_OUT) is ErrorKind.FAILED
    assert kind_of(-12345) is ErrorKind.FAILED
