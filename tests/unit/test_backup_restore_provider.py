"""The Backup & Restore storage over the loopback link, with a real engine process.

What a host sees: a storage with Backup/, Incremental/ and Restore/; copying
a file out of Backup/ backs the device up, copying one into Restore/
restores it, and the engine never stays in backup mode after the host is
done.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from engine.daemon.config import EngineConfig
from mtp_responder.core.codes import OperationCode, ResponseCode
from mtp_responder.core.datasets import ObjectInfoData, build_object_info
from mtp_responder.testing.initiator import Initiator
from tests.engine.conftest import EngineProcess, start_engine, stop_engine
from tests.engine.helpers import PASSIVE_ALL, make_config, make_tree, register, tree_state

from .conftest import Device, start_device, wait_until

SID = 0x10203040


@dataclass
class Rig:
    device: Device
    engine: EngineProcess
    owner_dir: Path

    @property
    def mtp(self) -> Initiator:
        return self.device.mtp

    def mode(self) -> str:
        state = self.engine.config.state_file
        assert state is not None
        return dict(line.split("=", 1) for line in state.read_text().splitlines() if "=" in line)[
            "mode"
        ]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    cfg: EngineConfig = make_config(tmp_path / "engine", device_name="board")
    owner = register(cfg, SID, PASSIVE_ALL)
    make_tree(owner)
    proc = start_engine(cfg, tmp_path / "engine")
    yield proc
    stop_engine(proc)


@pytest.fixture
async def rig(nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess) -> AsyncIterator[Rig]:
    store = tmp_path / "storage"
    store.mkdir()
    config = {
        "state_dir": str(tmp_path / "state"),
        "providers": {
            "files": {"storages": [{"path": str(store), "description": "Internal"}]},
            "backup_restore": {"socket": str(engine.config.socket_path), "idle_timeout": 2},
        },
    }
    device = await start_device(nursery, tmp_path, config)
    assert (await device.mtp.open_session()).ok
    yield Rig(device, engine, engine.config.drives["c"] / "private" / f"{SID:08X}")


async def backup_storage(mtp: Initiator) -> int:
    for sid in await mtp.storage_ids():
        if (await mtp.storage_info(sid)).storage_description == "Backup & Restore":
            return sid
    raise AssertionError("no Backup & Restore storage")


async def children(mtp: Initiator, storage: int, parent: int) -> dict[str, int]:
    return {
        (await mtp.object_info(h)).filename: h for h in await mtp.object_handles(storage, parent)
    }


async def folder(mtp: Initiator, storage: int, name: str) -> int:
    return (await children(mtp, storage, 0xFFFFFFFF))[name]


async def take_backup(rig: Rig) -> tuple[int, dict[str, int], bytes, bytes]:
    storage = await backup_storage(rig.mtp)
    listing = await children(rig.mtp, storage, await folder(rig.mtp, storage, "Backup"))
    mbak = next(n for n in listing if n.endswith(".mbak"))
    snap = next(n for n in listing if n.endswith(".snapshot"))
    return (
        storage,
        listing,
        await rig.mtp.get_object(listing[mbak]),
        await rig.mtp.get_object(listing[snap]),
    )


async def send_into(rig: Rig, storage: int, folder_name: str, name: str, data: bytes) -> int:
    """SendObjectInfo + SendObject into a folder; returns the SendObject response code."""
    mtp = rig.mtp
    parent = await folder(mtp, storage, folder_name)
    info = ObjectInfoData(storage, 0x3000, 0, len(data), parent, 0, name)
    r = await mtp.transaction(
        OperationCode.SEND_OBJECT_INFO, storage, parent, data=build_object_info(info)
    )
    if not r.response.ok:
        return r.code
    r = await mtp.transaction(OperationCode.SEND_OBJECT, data=data)
    return r.code


async def test_the_storage_has_backup_incremental_and_restore_folders(rig: Rig) -> None:
    storage = await backup_storage(rig.mtp)
    assert set(await children(rig.mtp, storage, 0xFFFFFFFF)) == {
        "Backup",
        "Incremental",
        "Restore",
    }
    assert rig.mode() == "NORMAL"


async def test_listing_backup_prepares_archives_with_exact_sizes(rig: Rig) -> None:
    storage, listing, mbak, snapshot = await take_backup(rig)
    assert rig.mode() == "BACKUP_FULL"
    infos = {n: await rig.mtp.object_info(h) for n, h in listing.items()}
    sizes = {n: i.compressed_size for n, i in infos.items() if not n == "owners"}
    mbak_name = next(n for n in listing if n.endswith(".mbak"))
    assert sizes[mbak_name] == len(mbak)
    assert len(snapshot) > 0
    owners = await children(rig.mtp, storage, listing["owners"])
    assert [n for n in owners if n.endswith(f"{SID:08X}.mbak")]


async def test_a_backup_extracts_with_tar_to_the_owners_files(rig: Rig, tmp_path: Path) -> None:
    _, _, mbak, _ = await take_backup(rig)
    out = tmp_path / "extract"
    with tarfile.open(fileobj=io.BytesIO(mbak)) as tar:
        names = tar.getnames()
        tar.extractall(out, filter="tar")
    assert names[0] == "manifest.json"
    files_root = out / "owners" / f"{SID:08X}" / "c" / "files"
    want = tree_state(rig.owner_dir)
    want = {k: v for k, v in want.items() if not k.startswith(("cache", "NoBackup"))}
    got = tree_state(files_root)
    assert {k: v[1] for k, v in got.items() if v[0] == "f"} == {
        k: v[1] for k, v in want.items() if v[0] == "f"
    }


async def test_a_partial_read_at_any_offset_matches_the_whole(rig: Rig) -> None:
    _storage, listing, mbak, _ = await take_backup(rig)
    handle = listing[next(n for n in listing if n.endswith(".mbak"))]
    for offset, length in ((0, 100), (511, 1030), (len(mbak) - 700, 4096)):
        r = await rig.mtp.transaction(OperationCode.GET_PARTIAL_OBJECT, handle, offset, length)
        assert r.response.ok
        assert r.data == mbak[offset : offset + length]


async def test_closing_the_session_returns_the_engine_to_normal(rig: Rig) -> None:
    await take_backup(rig)
    assert rig.mode() == "BACKUP_FULL"
    assert (await rig.mtp.close_session()).ok
    await wait_until(lambda: rig.mode() == "NORMAL", 10)


async def test_an_idle_host_does_not_keep_the_device_in_backup_mode(rig: Rig) -> None:
    await take_backup(rig)
    await wait_until(lambda: rig.mode() == "NORMAL", 15)


async def test_unplugging_returns_the_engine_to_normal(rig: Rig) -> None:
    await take_backup(rig)
    rig.device.host.unplug()
    await wait_until(lambda: rig.mode() == "NORMAL", 10)


async def test_restoring_a_backup_brings_back_the_backed_up_state(rig: Rig) -> None:
    storage, _, mbak, _ = await take_backup(rig)
    before = tree_state(rig.owner_dir)
    (rig.owner_dir / "ro.txt").chmod(0o644)
    (rig.owner_dir / "ro.txt").write_text("changed")
    (rig.owner_dir / "new.txt").write_text("added after the backup")
    shutil.rmtree(rig.owner_dir / "empty")
    code = await send_into(rig, storage, "Restore", "restore.mbak", mbak)
    assert code == ResponseCode.OK
    after = tree_state(rig.owner_dir)
    keep = ("cache", "NoBackup")
    assert {k: v for k, v in after.items() if not k.startswith(keep)} == {
        k: v for k, v in before.items() if not k.startswith(keep)
    }
    status = await read_status(rig, storage)
    assert "RESTORED" in status
    assert rig.mode() == "NORMAL"


async def read_status(rig: Rig, storage: int) -> str:
    listing = await children(rig.mtp, storage, await folder(rig.mtp, storage, "Restore"))
    return (await rig.mtp.get_object(listing["status.txt"])).decode()


def hostile_archive(good: bytes) -> bytes:
    """The good archive with a member that climbs out of the owner's area."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(good)) as src,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst,
    ):
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if member.isfile() and member.name.endswith(".bin"):
                member.name = member.name.rsplit("/files/", 1)[0] + "/files/../../../../evil.bin"
            dst.addfile(member, data)
    return out.getvalue()


async def test_a_hostile_restore_is_refused_with_a_reason_and_changes_nothing(
    rig: Rig, tmp_path: Path
) -> None:
    storage, _, mbak, _ = await take_backup(rig)
    before = tree_state(rig.owner_dir)
    code = await send_into(rig, storage, "Restore", "evil.mbak", hostile_archive(mbak))
    assert code == ResponseCode.INVALID_DATASET
    assert tree_state(rig.owner_dir) == before
    assert not list(tmp_path.rglob("evil.bin"))
    status = await read_status(rig, storage)
    assert "REFUSED" in status
    assert "evil.bin" in status or ".." in status, status
    assert rig.mode() == "NORMAL"


async def test_a_truncated_restore_is_refused(rig: Rig) -> None:
    storage, _, mbak, _ = await take_backup(rig)
    before = tree_state(rig.owner_dir)
    code = await send_into(rig, storage, "Restore", "cut.mbak", mbak[: len(mbak) // 2])
    assert code in (ResponseCode.INVALID_DATASET, ResponseCode.INCOMPLETE_TRANSFER)
    assert tree_state(rig.owner_dir) == before
    assert "truncated" in await read_status(rig, storage)


async def test_an_archive_larger_than_the_free_space_is_refused_up_front(rig: Rig) -> None:
    storage = await backup_storage(rig.mtp)
    parent = await folder(rig.mtp, storage, "Restore")
    info = ObjectInfoData(storage, 0x3000, 0, 0xFFFFFFFF, parent, 0, "huge.mbak")
    # A 64-bit size through SendObjectPropList: 1 PiB.
    del info
    from mtp_responder.core.datasets import PropListItem, build_prop_list

    props = build_prop_list([PropListItem(0, 0xDC07, 0xFFFF, "huge.mbak")])
    size = 1 << 50
    r = await rig.mtp.transaction(
        OperationCode.SEND_OBJECT_PROP_LIST,
        storage,
        parent,
        0x3000,
        size >> 32,
        size & 0xFFFFFFFF,
        data=props,
    )
    assert r.code == ResponseCode.STORE_FULL
    assert "REFUSED" in await read_status(rig, storage)


async def test_base_then_increment_restores_the_latest_state(rig: Rig) -> None:
    storage, _, base, snapshot = await take_backup(rig)
    # Change the device: modify, add, delete.
    (rig.owner_dir / "d0" / "s0" / "f0.bin").write_bytes(b"modified")
    (rig.owner_dir / "added.txt").write_text("new file")
    os.unlink(rig.owner_dir / "d1" / "s1" / "f1.bin")
    assert (
        await send_into(rig, storage, "Incremental", "prev.snapshot", snapshot) == ResponseCode.OK
    )
    listing = await children(rig.mtp, storage, await folder(rig.mtp, storage, "Incremental"))
    increment_name = next(n for n in listing if n.endswith(".mbak"))
    increment = await rig.mtp.get_object(listing[increment_name])
    latest = tree_state(rig.owner_dir)
    assert (await rig.mtp.close_session()).ok
    assert (await rig.mtp.open_session()).ok
    # Wipe the owner's data, then restore base and increment.
    for child in rig.owner_dir.iterdir():
        if not child.name.startswith("backup_registration"):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    assert await send_into(rig, storage, "Restore", "base.mbak", base) == ResponseCode.OK
    assert await send_into(rig, storage, "Restore", "inc.mbak", increment) == ResponseCode.OK
    keep = ("cache", "NoBackup")
    got = {k: v for k, v in tree_state(rig.owner_dir).items() if not k.startswith(keep)}
    want = {k: v for k, v in latest.items() if not k.startswith(keep)}
    assert {k: v[:2] for k, v in got.items() if v[0] == "f"} == {
        k: v[:2] for k, v in want.items() if v[0] == "f"
    }
    assert not (rig.owner_dir / "d1" / "s1" / "f1.bin").exists()


async def test_cancelling_a_restore_leaves_the_data_as_it_was(rig: Rig) -> None:
    storage, _, mbak, _ = await take_backup(rig)
    (rig.owner_dir / "new.txt").write_text("after the backup")
    before = tree_state(rig.owner_dir)
    mtp = rig.mtp
    parent = await folder(mtp, storage, "Restore")
    info = ObjectInfoData(storage, 0x3000, 0, len(mbak), parent, 0, "r.mbak")
    r = await mtp.transaction(
        OperationCode.SEND_OBJECT_INFO, storage, parent, data=build_object_info(info)
    )
    assert r.response.ok
    tid = await mtp.command(OperationCode.SEND_OBJECT)
    half = len(mbak) // 2
    half -= half % 512
    from mtp_responder.core.container import data_header

    await rig.device.host.write_transfer(
        data_header(OperationCode.SEND_OBJECT, tid, len(mbak)) + mbak[:half], end=False
    )
    rig.device.host.cancel(tid)
    await wait_until(lambda: not rig.device.host.device_status_busy(), 10)
    assert tree_state(rig.owner_dir) == before
    await wait_until(lambda: rig.mode() == "NORMAL", 10)
    # The storage keeps working.
    assert "Restore" in await children(mtp, storage, 0xFFFFFFFF)


async def test_a_handle_listed_in_one_session_reads_in_the_next(rig: Rig) -> None:
    """libmtp's tools: mtp-files prints a handle, mtp-getfile uses it in a new session."""
    _, listing, _, _ = await take_backup(rig)
    handle = listing[next(n for n in listing if n.endswith(".mbak"))]
    assert (await rig.mtp.close_session()).ok
    # A host reopens at once: the next session's engine connection must not find the
    # previous one still closing.
    await wait_until(lambda: rig.mode() == "NORMAL", 10, interval=0.005)
    assert (await rig.mtp.open_session()).ok
    info = await rig.mtp.object_info(handle)  # no listing first: prepared on demand
    assert info.filename.endswith(".mbak")
    data = await rig.mtp.get_object(handle)
    assert len(data) == info.compressed_size
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames()[0] == "manifest.json"
    assert rig.mode() == "BACKUP_FULL"


async def test_unplugging_in_the_middle_of_a_restore_changes_nothing(rig: Rig) -> None:
    """The engine connection may close under a restore that is still sending."""
    (rig.owner_dir / "big.bin").write_bytes(os.urandom(8 << 20))
    storage, _, mbak, _ = await take_backup(rig)
    (rig.owner_dir / "new.txt").write_text("after the backup")
    before = tree_state(rig.owner_dir)
    mtp = rig.mtp
    parent = await folder(mtp, storage, "Restore")
    info = ObjectInfoData(storage, 0x3000, 0, len(mbak), parent, 0, "r.mbak")
    r = await mtp.transaction(
        OperationCode.SEND_OBJECT_INFO, storage, parent, data=build_object_info(info)
    )
    assert r.response.ok
    tid = await mtp.command(OperationCode.SEND_OBJECT)
    half = len(mbak) // 2
    half -= half % 512
    from mtp_responder.core.container import data_header

    await rig.device.host.write_transfer(
        data_header(OperationCode.SEND_OBJECT, tid, len(mbak)) + mbak[:half], end=False
    )
    rig.device.host.unplug()
    # The engine aborts the restore's stage before it reports Normal.
    await wait_until(lambda: rig.mode() == "NORMAL", 10)
    assert tree_state(rig.owner_dir) == before
    # The responder lives on: plug in again, and the storage answers.
    rig.device.host.plug()
    assert (await mtp.open_session()).ok
    assert "Restore" in await children(mtp, storage, 0xFFFFFFFF)


# -- how FUSE clients write a file into Restore/ ------------------------------------------


async def restore_listing(rig: Rig, storage: int) -> dict[str, int]:
    return await children(rig.mtp, storage, await folder(rig.mtp, storage, "Restore"))


def change_the_owner(rig: Rig) -> None:
    (rig.owner_dir / "new.txt").write_text("added after the backup")
    (rig.owner_dir / "d0" / "s0" / "f0.bin").write_bytes(b"modified after the backup")


def owner_state(rig: Rig) -> dict[str, object]:
    keep = ("cache", "NoBackup")
    return {k: v for k, v in tree_state(rig.owner_dir).items() if not k.startswith(keep)}


async def test_an_empty_create_is_kept_as_a_placeholder_not_a_refused_restore(rig: Rig) -> None:
    """jmtpfs creates a file with SendObjectInfo of size 0 and a SendObject of 0 bytes."""
    storage, _, _, _ = await take_backup(rig)
    change_the_owner(rig)
    before = owner_state(rig)
    status_before = await read_status(rig, storage)
    assert await send_into(rig, storage, "Restore", "r.mbak", b"") == ResponseCode.OK
    assert owner_state(rig) == before
    assert await read_status(rig, storage) == status_before
    handle = (await restore_listing(rig, storage))["r.mbak"]
    assert (await rig.mtp.object_info(handle)).compressed_size == 0
    # jmtpfs reads the file back before it writes the content.
    assert await rig.mtp.get_object(handle) == b""
    await wait_until(lambda: rig.mode() == "NORMAL", 10)


async def test_an_empty_create_deleted_and_sent_again_with_content_restores(rig: Rig) -> None:
    """jmtpfs's cp: empty create, read back, DeleteObject, then the whole file again."""
    storage, _, mbak, _ = await take_backup(rig)
    backed_up = owner_state(rig)
    change_the_owner(rig)
    assert await send_into(rig, storage, "Restore", "r.mbak", b"") == ResponseCode.OK
    handle = (await restore_listing(rig, storage))["r.mbak"]
    assert await rig.mtp.get_object(handle) == b""
    assert (await rig.mtp.transaction(OperationCode.DELETE_OBJECT, handle)).response.ok
    assert "r.mbak" not in await restore_listing(rig, storage)
    assert await send_into(rig, storage, "Restore", "r.mbak", mbak) == ResponseCode.OK
    assert owner_state(rig) == backed_up
    status = await read_status(rig, storage)
    assert "r.mbak: RESTORED" in status and "REFUSED" not in status
    listing = await restore_listing(rig, storage)
    assert (await rig.mtp.object_info(listing["r.mbak"])).compressed_size == len(mbak)


async def test_an_empty_create_followed_by_the_content_under_the_same_name_restores(
    rig: Rig,
) -> None:
    storage, _, mbak, _ = await take_backup(rig)
    backed_up = owner_state(rig)
    change_the_owner(rig)
    assert await send_into(rig, storage, "Restore", "r.mbak", b"") == ResponseCode.OK
    assert await send_into(rig, storage, "Restore", "r.mbak", mbak) == ResponseCode.OK
    assert owner_state(rig) == backed_up
    assert "r.mbak: RESTORED" in await read_status(rig, storage)
    assert list(await restore_listing(rig, storage)) == ["status.txt", "r.mbak"]


async def test_a_restored_archive_deleted_and_sent_again_restores_again(rig: Rig) -> None:
    storage, _, mbak, _ = await take_backup(rig)
    backed_up = owner_state(rig)
    assert await send_into(rig, storage, "Restore", "r.mbak", mbak) == ResponseCode.OK
    change_the_owner(rig)
    handle = (await restore_listing(rig, storage))["r.mbak"]
    assert (await rig.mtp.transaction(OperationCode.DELETE_OBJECT, handle)).response.ok
    assert await send_into(rig, storage, "Restore", "r.mbak", mbak) == ResponseCode.OK
    assert owner_state(rig) == backed_up
    assert "r.mbak: RESTORED" in await read_status(rig, storage)
