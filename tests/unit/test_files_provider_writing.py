"""Changing a file storage: uploads, folders, delete, rename, move, copy, edits."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from data_providers.files import TEMP_PREFIX, FilesProvider, FileStorage
from mtp_responder.core.codes import ObjectFormat, ResponseCode
from mtp_responder.provider import NewObject, ProviderError


class _NoEvents:
    def object_added(self, storage: Any, key: str) -> None: ...
    def object_removed(self, storage: Any, key: str) -> None: ...
    def object_changed(self, storage: Any, key: str) -> None: ...
    def object_moved(self, storage: Any, old_key: str, new_key: str) -> None: ...
    def storage_added(self, storage: Any) -> None: ...
    def storage_removed(self, storage: Any) -> None: ...


def storage_on(path: Path, **opts: Any) -> FileStorage:
    provider = FilesProvider("files", {"storages": [{"path": str(path), **opts}]}, _NoEvents())
    return provider.storages()[0]


def new(name: str, size: int, parent: str = "", mtime: float | None = None) -> NewObject:
    return NewObject(parent_key=parent, name=name, format=0x3000, size=size, mtime=mtime)


async def send(storage: FileStorage, name: str, data: bytes, parent: str = "", **kw: Any) -> Any:
    upload = await storage.create(new(name, len(data), parent, **kw))
    for i in range(0, len(data), 1000):
        await upload.write(data[i : i + 1000])
    return await upload.commit()


def code_of(err: pytest.ExceptionInfo[ProviderError]) -> ResponseCode:
    return err.value.code


def temp_files(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.name.startswith(TEMP_PREFIX)]


# ------------------------------------------------------------------ uploads


async def test_an_upload_appears_only_on_commit_with_its_data(tmp_path: Path) -> None:
    storage = storage_on(tmp_path)
    upload = await storage.create(new("song.mp3", 5))
    await upload.write(b"he")
    await upload.write(memoryview(b"llo"))
    assert not (tmp_path / "song.mp3").exists()
    assert await storage.list("") == []  # the temporary file is never listed
    entry = await upload.commit()
    assert (tmp_path / "song.mp3").read_bytes() == b"hello"
    assert (entry.key, entry.size, entry.format) == ("song.mp3", 5, ObjectFormat.MP3)
    assert temp_files(tmp_path) == []


async def test_an_upload_names_its_key_and_can_be_asked_about_before_the_data(
    tmp_path: Path,
) -> None:
    # The framework hands out the handle at SendObjectInfo, before SendObject.
    (tmp_path / "d").mkdir()
    storage = storage_on(tmp_path)
    upload = await storage.create(new("a.txt", 3, parent="d"))
    assert upload.key == "d/a.txt"
    await upload.write(b"ab")
    early = await storage.stat("d/a.txt")
    # The size is what has reached the disk so far (writes are batched).
    assert (early.key, early.name) == ("d/a.txt", "a.txt")
    assert early.size <= 2
    assert await storage.list("d") == []
    await upload.write(b"c")
    final = await upload.commit()
    assert final.puid == early.puid and final.size == 3


async def test_a_second_upload_to_a_name_being_received_is_refused(tmp_path: Path) -> None:
    storage = storage_on(tmp_path)
    first = await storage.create(new("a.txt", 1))
    with pytest.raises(ProviderError) as err:
        await storage.create(new("a.txt", 1))
    assert code_of(err) == ResponseCode.INVALID_PARAMETER
    await first.abort()
    with pytest.raises(ProviderError) as err:
        await storage.stat("a.txt")
    assert code_of(err) == ResponseCode.INVALID_OBJECT_HANDLE
    await send(storage, "a.txt", b"x")


async def test_an_empty_file_can_be_sent(tmp_path: Path) -> None:
    entry = await send(storage_on(tmp_path), "empty.txt", b"")
    assert entry.size == 0 and (tmp_path / "empty.txt").read_bytes() == b""


async def test_an_aborted_upload_leaves_no_file(tmp_path: Path) -> None:
    storage = storage_on(tmp_path)
    upload = await storage.create(new("half.bin", 10))
    await upload.write(b"12345")
    await upload.abort()
    assert list(tmp_path.iterdir()) == []


async def test_an_upload_gets_the_declared_mtime_umask_and_owner(tmp_path: Path) -> None:
    storage = storage_on(tmp_path, umask=0o027, uid=1234, gid=4321)
    await send(storage, "a.txt", b"x", mtime=1_400_000_000.5)
    st = os.stat(tmp_path / "a.txt")
    assert st.st_mtime == 1_400_000_000.5
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (1234, 4321)


async def test_an_upload_without_declared_mtime_is_dated_now(tmp_path: Path) -> None:
    entry = await send(storage_on(tmp_path), "a.txt", b"x")
    assert abs(entry.mtime - os.stat(tmp_path).st_mtime) < 5


async def test_an_upload_into_a_subfolder(tmp_path: Path) -> None:
    (tmp_path / "Music").mkdir()
    entry = await send(storage_on(tmp_path), "a.ogg", b"ogg", parent="Music")
    assert entry.key == "Music/a.ogg" and entry.parent_key == "Music"
    assert (tmp_path / "Music" / "a.ogg").read_bytes() == b"ogg"


async def test_an_upload_onto_an_existing_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("keep me")
    with pytest.raises(ProviderError) as err:
        await storage_on(tmp_path).create(new("a.txt", 3))
    assert code_of(err) == ResponseCode.INVALID_PARAMETER
    assert (tmp_path / "a.txt").read_text() == "keep me"


async def test_a_name_taken_during_the_upload_is_not_overwritten(tmp_path: Path) -> None:
    storage = storage_on(tmp_path)
    upload = await storage.create(new("a.txt", 3))
    await upload.write(b"new")
    (tmp_path / "a.txt").write_text("old")  # a program on the device was quicker
    with pytest.raises(ProviderError) as err:
        await upload.commit()
    assert code_of(err) == ResponseCode.INVALID_PARAMETER
    assert (tmp_path / "a.txt").read_text() == "old"
    assert temp_files(tmp_path) == []


async def test_an_upload_bigger_than_the_free_space_is_refused_up_front(tmp_path: Path) -> None:
    storage = storage_on(tmp_path)
    free = storage.describe().free_space
    with pytest.raises(ProviderError) as err:
        await storage.create(new("huge.bin", free + 1))
    assert code_of(err) == ResponseCode.STORE_FULL
    assert list(tmp_path.iterdir()) == []


async def test_store_full_through_the_statvfs_seam(tmp_path: Path) -> None:
    storage = storage_on(tmp_path)
    real = os.statvfs(tmp_path)

    def nearly_full(path: str) -> os.statvfs_result:
        values = list(real)
        values[4] = 1  # f_bavail: one block left
        return os.statvfs_result(values)

    storage.statvfs = nearly_full
    assert storage.describe().free_space == real.f_frsize
    with pytest.raises(ProviderError) as err:
        await storage.create(new("a.bin", real.f_frsize + 1))
    assert code_of(err) == ResponseCode.STORE_FULL
    await send(storage, "small.bin", b"fits")


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Any:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.system(f"mount -t tmpfs -o size=256k tmpfs {mnt} 2>/dev/null") != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        os.system(f"umount {mnt}")


async def test_a_disk_filling_up_mid_upload_is_store_full_and_leaves_nothing(
    tiny_tmpfs: Path,
) -> None:
    storage = storage_on(tiny_tmpfs)
    upload = await storage.create(new("stream.bin", -1))  # size unknown up front
    with pytest.raises(ProviderError) as err:
        for _ in range(64):
            await upload.write(b"\xff" * 16384)
    assert code_of(err) == ResponseCode.STORE_FULL
    await upload.abort()
    assert list(tiny_tmpfs.iterdir()) == []


async def test_a_folder_sent_as_object_info_is_created_at_once(tmp_path: Path) -> None:
    storage = storage_on(tmp_path)
    upload = await storage.create(
        NewObject(parent_key="", name="Albums", format=0x3001, size=0, is_folder=True)
    )
    assert (tmp_path / "Albums").is_dir()
    entry = await upload.commit()
    assert entry.is_folder and entry.key == "Albums"


# ------------------------------------------------------------------ folders


async def test_create_folder_applies_umask_and_owner(tmp_path: Path) -> None:
    storage = storage_on(tmp_path, umask=0o002, uid=1000)
    entry = await storage.create_folder("", "Photos")
    assert entry.is_folder and entry.key == "Photos"
    st = os.stat(tmp_path / "Photos")
    assert stat.S_IMODE(st.st_mode) == 0o775 and st.st_uid == 1000


async def test_create_folder_with_an_existing_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "Photos").mkdir()
    with pytest.raises(ProviderError) as err:
        await storage_on(tmp_path).create_folder("", "Photos")
    assert code_of(err) == ResponseCode.INVALID_PARAMETER


async def test_create_inside_a_file_is_an_invalid_parent(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    storage = storage_on(tmp_path)
    with pytest.raises(ProviderError) as err:
        await storage.create_folder("f.txt", "sub")
    assert code_of(err) == ResponseCode.INVALID_PARENT_OBJECT
    with pytest.raises(ProviderError) as err:
        await storage.create(new("a", 1, parent="missing"))
    assert code_of(err) == ResponseCode.INVALID_PARENT_OBJECT


# ------------------------------------------------------------------ delete


async def test_delete_a_file(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    await storage_on(tmp_path).delete("a.txt")
    assert not (tmp_path / "a.txt").exists()


async def test_delete_a_whole_tree(tmp_path: Path) -> None:
    (tmp_path / "d" / "e" / "f").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f" / "x.txt").write_text("x")
    (tmp_path / "d" / ".hidden").write_text("x")
    await storage_on(tmp_path).delete("d")
    assert list(tmp_path.iterdir()) == []


async def test_delete_of_a_protected_file_is_write_protected(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    os.chmod(tmp_path / "a.txt", 0o444)
    with pytest.raises(ProviderError) as err:
        await storage_on(tmp_path).delete("a.txt")
    assert code_of(err) == ResponseCode.OBJECT_WRITE_PROTECTED
    assert (tmp_path / "a.txt").exists()


async def test_delete_of_a_tree_spares_protected_files_and_says_partial(tmp_path: Path) -> None:
    (tmp_path / "d" / "keep").mkdir(parents=True)
    (tmp_path / "d" / "keep" / "ro.txt").write_text("x")
    os.chmod(tmp_path / "d" / "keep" / "ro.txt", 0o444)
    (tmp_path / "d" / "rw.txt").write_text("x")
    with pytest.raises(ProviderError) as err:
        await storage_on(tmp_path).delete("d")
    assert code_of(err) == ResponseCode.PARTIAL_DELETION
    assert sorted(p.name for p in (tmp_path / "d").rglob("*")) == ["keep", "ro.txt"]


async def test_delete_of_a_missing_object_or_the_root_is_an_invalid_handle(
    tmp_path: Path,
) -> None:
    storage = storage_on(tmp_path)
    for key in ("nope", ""):
        with pytest.raises(ProviderError) as err:
            await storage.delete(key)
        assert code_of(err) == ResponseCode.INVALID_OBJECT_HANDLE


# ------------------------------------------------------------------ rename / move


async def test_rename_keeps_the_object_and_gives_the_new_key(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("x")
    storage = storage_on(tmp_path)
    before = await storage.stat("d/a.txt")
    after = await storage.rename("d/a.txt", "b.jpg")
    assert (after.key, after.name, after.format) == ("d/b.jpg", "b.jpg", ObjectFormat.EXIF_JPEG)
    assert after.puid == before.puid
    assert (tmp_path / "d" / "b.jpg").read_text() == "x"


async def test_rename_to_a_name_in_use_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    with pytest.raises(ProviderError) as err:
        await storage_on(tmp_path).rename("a.txt", "b.txt")
    assert code_of(err) == ResponseCode.INVALID_PARAMETER
    assert (tmp_path / "b.txt").read_text() == "b"


async def test_rename_to_the_same_name_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    assert (await storage_on(tmp_path).rename("a.txt", "a.txt")).key == "a.txt"


async def test_rename_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "x").write_text("x")
    entry = await storage_on(tmp_path).rename("old", "new")
    assert entry.is_folder and (tmp_path / "new" / "x").exists()


async def test_move_a_file_and_a_tree_into_another_folder(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "dest").mkdir()
    storage = storage_on(tmp_path)
    puid = (await storage.stat("a.txt")).puid
    moved = await storage.move("a.txt", "dest")
    assert (moved.key, moved.puid) == ("dest/a.txt", puid)
    assert (await storage.move("tree", "dest")).key == "dest/tree"
    assert (tmp_path / "dest" / "tree" / "sub").is_dir()
    assert (await storage.move("dest/a.txt", "")).key == "a.txt"


async def test_move_onto_an_existing_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("new")
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "a.txt").write_text("old")
    with pytest.raises(ProviderError) as err:
        await storage_on(tmp_path).move("a.txt", "dest")
    assert code_of(err) == ResponseCode.INVALID_PARAMETER
    assert (tmp_path / "dest" / "a.txt").read_text() == "old"


async def test_move_of_a_folder_into_itself_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    storage = storage_on(tmp_path)
    for target in ("d", "d/sub"):
        with pytest.raises(ProviderError) as err:
            await storage.move("d", target)
        assert code_of(err) == ResponseCode.INVALID_PARENT_OBJECT
    assert (tmp_path / "d" / "sub").is_dir()


async def test_move_into_a_file_is_an_invalid_parent(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    with pytest.raises(ProviderError) as err:
        await storage_on(tmp_path).move("a", "b")
    assert code_of(err) == ResponseCode.INVALID_PARENT_OBJECT


async def test_move_within_the_same_folder_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("a")
    assert (await storage_on(tmp_path).move("d/a", "d")).key == "d/a"


# ------------------------------------------------------------------ copy


async def test_copy_a_file_into_another_folder_as_a_new_object(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("data")
    (tmp_path / "dest").mkdir()
    storage = storage_on(tmp_path)
    copied = await storage.copy("a.txt", "dest")
    assert (copied.key, copied.size) == ("dest/a.txt", 4)
    assert copied.puid != (await storage.stat("a.txt")).puid
    assert (tmp_path / "dest" / "a.txt").read_text() == "data"
    assert (tmp_path / "a.txt").read_text() == "data"


async def test_copy_into_the_same_folder_picks_a_free_name(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("data")
    (tmp_path / "d").mkdir()
    storage = storage_on(tmp_path)
    assert (await storage.copy("a.txt", "")).name == "a (1).txt"
    assert (await storage.copy("a.txt", "")).name == "a (2).txt"
    assert (await storage.copy("d", "")).name == "d (1)"
    assert (tmp_path / "a (2).txt").read_text() == "data"


async def test_copy_a_tree_with_everything_in_it(tmp_path: Path) -> None:
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "sub" / "x.bin").write_bytes(b"x" * 100_000)
    (tmp_path / "src" / ".hidden").write_text("h")
    (tmp_path / "dest").mkdir()
    copied = await storage_on(tmp_path, uid=1000).copy("src", "dest")
    assert copied.key == "dest/src" and copied.is_folder
    assert (tmp_path / "dest" / "src" / "sub" / "x.bin").read_bytes() == b"x" * 100_000
    assert (tmp_path / "dest" / "src" / ".hidden").read_text() == "h"
    assert os.stat(tmp_path / "dest" / "src" / "sub" / "x.bin").st_uid == 1000
    assert temp_files(tmp_path) == []


async def test_copy_of_a_folder_into_itself_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    with pytest.raises(ProviderError) as err:
        await storage_on(tmp_path).copy("d", "d/sub")
    assert code_of(err) == ResponseCode.INVALID_PARENT_OBJECT


async def test_copy_that_does_not_fit_is_store_full_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_bytes(b"x" * 10_000)
    storage = storage_on(tmp_path)
    real = os.statvfs(tmp_path)
    storage.statvfs = lambda path: os.statvfs_result([*real[:4], 1, *real[5:]])
    with pytest.raises(ProviderError) as err:
        await storage.copy("d", "")
    assert code_of(err) == ResponseCode.STORE_FULL
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


# ------------------------------------------------------------------ dates, protection


async def test_set_mtime(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    entry = await storage_on(tmp_path).set_mtime("a", 1_234_567_890.0)
    assert entry.mtime == 1_234_567_890.0 == os.stat(tmp_path / "a").st_mtime


async def test_protection_is_the_write_bits(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    os.chmod(tmp_path / "a", 0o664)
    storage = storage_on(tmp_path, umask=0o002)
    assert (await storage.set_protection("a", True)).read_only
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o444
    assert not (await storage.set_protection("a", False)).read_only
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o664


async def test_a_protected_object_refuses_every_change_but_unprotecting(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    (tmp_path / "d").mkdir()
    storage = storage_on(tmp_path)
    await storage.set_protection("a", True)
    changes = [
        storage.rename("a", "b"),
        storage.move("a", "d"),
        storage.set_mtime("a", 0.0),
        storage.write_at("a", 0),
        storage.truncate("a", 0),
        storage.delete("a"),
    ]
    for change in changes:
        with pytest.raises(ProviderError) as err:
            await change
        assert code_of(err) == ResponseCode.OBJECT_WRITE_PROTECTED
    assert (await storage.copy("a", "d")).key == "d/a"  # reading it is fine
    await storage.set_protection("a", False)
    await storage.delete("a")


# ------------------------------------------------------------------ edits


async def test_write_at_edits_in_place(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    storage = storage_on(tmp_path)
    edit = await storage.write_at("f", 3)
    assert edit.key == "f"
    await edit.write(b"ab")
    await edit.write(b"cd")
    entry = await edit.commit()
    assert (tmp_path / "f").read_bytes() == b"012abcd789" and entry.size == 10


async def test_write_at_past_the_end_grows_the_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"01")
    storage = storage_on(tmp_path)
    edit = await storage.write_at("f", 4)
    await edit.write(b"x")
    assert (await edit.commit()).size == 5
    assert (tmp_path / "f").read_bytes() == b"01\0\0x"


async def test_write_at_beyond_four_gibibytes(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    edit = await storage_on(tmp_path).write_at("f", 2**32 + 1)
    await edit.write(b"z")
    assert (await edit.commit()).size == 2**32 + 2


async def test_truncate_shrinks_and_grows(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    storage = storage_on(tmp_path)
    assert (await storage.truncate("f", 4)).size == 4
    assert (await storage.truncate("f", 6)).size == 6
    assert (tmp_path / "f").read_bytes() == b"0123\0\0"
    with pytest.raises(ProviderError) as err:
        await storage.truncate("f", -1)
    assert code_of(err) == ResponseCode.INVALID_PARAMETER


async def test_edits_of_a_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    storage = storage_on(tmp_path)
    for change in (storage.write_at("d", 0), storage.truncate("d", 0)):
        with pytest.raises(ProviderError) as err:
            await change
        assert code_of(err) == ResponseCode.INVALID_OBJECT_HANDLE


# ------------------------------------------------------------------ read-only storages


async def test_a_read_only_storage_refuses_every_change(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    (tmp_path / "d").mkdir()
    storage = storage_on(tmp_path, read_only=True)
    changes = [
        storage.create(new("b", 1)),
        storage.create_folder("", "e"),
        storage.delete("a"),
        storage.rename("a", "b"),
        storage.move("a", "d"),
        storage.copy("a", "d"),
        storage.set_mtime("a", 0.0),
        storage.set_protection("a", True),
        storage.write_at("a", 0),
        storage.truncate("a", 0),
    ]
    for change in changes:
        with pytest.raises(ProviderError) as err:
            await change
        assert code_of(err) == ResponseCode.STORE_READ_ONLY
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "d"]
    assert (tmp_path / "a").read_text() == "a"


# ------------------------------------------------------------------ FAT


def pretend_fat(storage: FileStorage, path: Path) -> None:
    """Make the storage believe ``path``'s filesystem is vfat (no mkfs here)."""
    fat, real = os.stat(path).st_dev, storage.filesystem_type
    storage.filesystem_type = lambda dev: "vfat" if dev == fat else real(dev)


async def test_on_fat_a_file_of_4_gib_or_more_is_too_large(tmp_path: Path) -> None:
    storage = storage_on(tmp_path)
    pretend_fat(storage, tmp_path)
    with pytest.raises(ProviderError) as err:
        await storage.create(new("movie.mp4", 2**32))
    assert code_of(err) == ResponseCode.OBJECT_TOO_LARGE
    await (await storage.create(new("ok.mp4", 2**32 - 1))).abort()


async def test_on_fat_the_puid_follows_the_path_because_inodes_are_invented(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.txt").write_text("x")
    first, second = storage_on(tmp_path), storage_on(tmp_path)
    pretend_fat(first, tmp_path)
    pretend_fat(second, tmp_path)
    puid = (await first.stat("a.txt")).puid
    assert (await second.stat("a.txt")).puid == puid  # stable across "reboots"
    os.rename(tmp_path / "a.txt", tmp_path / "b.txt")
    os.rename(tmp_path / "b.txt", tmp_path / "a.txt")
    assert (await second.stat("a.txt")).puid == puid
    assert (await second.rename("a.txt", "c.txt")).puid != puid
