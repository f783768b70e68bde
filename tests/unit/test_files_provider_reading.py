"""Browsing a file storage: storage info, listings, object entries, reads."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from data_providers.files import CHUNK_SIZE, FilesProvider, FileStorage
from mtp_responder.core.codes import ObjectFormat, ResponseCode
from mtp_responder.provider import ProviderError


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


async def read_all(
    storage: FileStorage, key: str, offset: int = 0, length: int | None = None
) -> bytes:
    return b"".join([chunk async for chunk in storage.read(key, offset, length)])


def test_storage_info_reports_capacity_and_free_space_from_statvfs(tmp_path: Path) -> None:
    info = storage_on(tmp_path, description="Media").describe()
    vfs = os.statvfs(tmp_path)
    assert info.description == "Media"
    assert info.max_capacity == vfs.f_blocks * vfs.f_frsize
    assert 0 < info.free_space <= info.max_capacity


def test_storage_info_of_a_vanished_directory_is_store_not_available(tmp_path: Path) -> None:
    root = tmp_path / "card"
    root.mkdir()
    storage = storage_on(root)
    root.rmdir()
    with pytest.raises(ProviderError) as err:
        storage.describe()
    assert err.value.code == ResponseCode.STORE_NOT_AVAILABLE


async def test_listing_gives_files_and_folders_sorted_with_keys_below_the_folder(
    tmp_path: Path,
) -> None:
    (tmp_path / "DCIM").mkdir()
    (tmp_path / "DCIM" / "b.jpg").write_bytes(b"12345")
    (tmp_path / "DCIM" / "a.png").write_bytes(b"")
    (tmp_path / "DCIM" / "Sub").mkdir()
    storage = storage_on(tmp_path)
    root = await storage.list("")
    assert [(e.key, e.is_folder, e.format) for e in root] == [
        ("DCIM", True, ObjectFormat.ASSOCIATION)
    ]
    entries = await storage.list("DCIM")
    assert [(e.key, e.name, e.size, e.format) for e in entries] == [
        ("DCIM/Sub", "Sub", 0, ObjectFormat.ASSOCIATION),
        ("DCIM/a.png", "a.png", 0, ObjectFormat.PNG),
        ("DCIM/b.jpg", "b.jpg", 5, ObjectFormat.EXIF_JPEG),
    ]
    assert entries[2].parent_key == "DCIM"


async def test_listing_a_file_or_missing_folder_is_an_invalid_parent(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    storage = storage_on(tmp_path)
    for key in ("f.txt", "nope"):
        with pytest.raises(ProviderError) as err:
            await storage.list(key)
        assert err.value.code == ResponseCode.INVALID_PARENT_OBJECT


async def test_a_folder_of_ten_thousand_files_lists_completely(tmp_path: Path) -> None:
    # Speed is measured by the benchmarks; this proves the path works at scale.
    big = tmp_path / "big"
    big.mkdir()
    for i in range(10_000):
        os.close(os.open(big / f"IMG_{i:05}.jpg", os.O_CREAT | os.O_WRONLY, 0o644))
    entries = await storage_on(tmp_path).list("big")
    assert len(entries) == 10_000
    assert entries[0].key == "big/IMG_00000.jpg" and entries[-1].name == "IMG_09999.jpg"
    assert len({e.puid for e in entries}) == 10_000


async def test_unlistable_entries_are_skipped_without_failing_the_folder(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    os.mkfifo(tmp_path / "fifo")
    names = [e.name for e in await storage_on(tmp_path).list("")]
    assert names == ["ok.txt"]


async def test_hidden_names_are_listed_only_when_configured(tmp_path: Path) -> None:
    (tmp_path / ".config").mkdir()
    (tmp_path / ".profile").write_text("x")
    (tmp_path / "visible").write_text("x")
    assert [e.name for e in await storage_on(tmp_path).list("")] == ["visible"]
    shown = await storage_on(tmp_path, show_hidden=True).list("")
    assert [(e.name, e.hidden) for e in shown] == [
        (".config", True),
        (".profile", True),
        ("visible", False),
    ]


async def test_a_hidden_object_stays_reachable_by_key(tmp_path: Path) -> None:
    # The host may create ".gitignore" and must be able to use the handle it got.
    (tmp_path / ".gitignore").write_text("*.o\n")
    storage = storage_on(tmp_path)
    assert (await storage.stat(".gitignore")).hidden
    assert await read_all(storage, ".gitignore") == b"*.o\n"


async def test_size_is_fresh_on_every_call(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("one\n")
    storage = storage_on(tmp_path)
    assert (await storage.stat("app.log")).size == 4
    with log.open("a") as f:
        f.write("two\n")
    assert (await storage.stat("app.log")).size == 8
    assert (await storage.list(""))[0].size == 8


async def test_dates_are_mtime_and_birth_time(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("x")
    os.utime(f, (1_600_000_000, 1_500_000_000))
    entry = await storage_on(tmp_path).stat("a.txt")
    assert entry.mtime == 1_500_000_000
    # Birth time is "now" where recorded, never the inode change time.
    assert entry.ctime == 1_500_000_000 or abs(entry.ctime - time.time()) < 60


async def test_read_only_reflects_the_owner_write_bit_and_the_storage(tmp_path: Path) -> None:
    (tmp_path / "rw.txt").write_text("x")
    (tmp_path / "ro.txt").write_text("x")
    os.chmod(tmp_path / "ro.txt", 0o444)
    storage = storage_on(tmp_path)
    assert not (await storage.stat("rw.txt")).read_only
    assert (await storage.stat("ro.txt")).read_only
    assert (await storage_on(tmp_path, read_only=True).stat("rw.txt")).read_only


async def test_stat_of_a_missing_key_is_an_invalid_handle(tmp_path: Path) -> None:
    with pytest.raises(ProviderError) as err:
        await storage_on(tmp_path).stat("gone.txt")
    assert err.value.code == ResponseCode.INVALID_OBJECT_HANDLE


async def test_root_entry_is_a_folder(tmp_path: Path) -> None:
    root = await storage_on(tmp_path, description="Card").stat("")
    assert (root.key, root.is_folder, root.parent_key) == ("", True, None)


async def test_names_that_are_not_utf8_are_shown_with_replacement_characters(
    tmp_path: Path,
) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9.txt"
    with open(raw, "wb") as f:
        f.write(b"latin-1 name")
    storage = storage_on(tmp_path)
    [entry] = await storage.list("")
    assert entry.name == "caf\ufffd.txt"
    entry.name.encode("utf-16-le")  # the wire can carry it
    assert await read_all(storage, entry.key) == b"latin-1 name"


async def test_puid_is_stable_across_sessions_and_survives_rename_and_move(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "dir").mkdir()
    first = (await storage_on(tmp_path).stat("a.txt")).puid
    assert first == (await storage_on(tmp_path).stat("a.txt")).puid  # a new "boot"
    os.rename(tmp_path / "a.txt", tmp_path / "dir" / "b.txt")
    assert (await storage_on(tmp_path).stat("dir/b.txt")).puid == first
    assert 0 < first < 2**128


async def test_puid_differs_between_storages_and_for_a_replaced_file(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.txt").write_text("x")
    storage = storage_on(tmp_path)
    old = (await storage.stat("one/a.txt")).puid
    assert old != (await storage_on(tmp_path / "one").stat("a.txt")).puid
    (tmp_path / "one" / "a.txt").unlink()
    (tmp_path / "one" / "a.txt").write_text("x")  # may well reuse the inode number
    assert (await storage.stat("one/a.txt")).puid != old


async def test_read_streams_bounded_chunks(tmp_path: Path) -> None:
    data = os.urandom(CHUNK_SIZE * 2 + 100)
    (tmp_path / "f.bin").write_bytes(data)
    chunks = [c async for c in storage_on(tmp_path).read("f.bin")]
    assert [len(c) for c in chunks] == [CHUNK_SIZE, CHUNK_SIZE, 100]
    assert b"".join(chunks) == data


async def test_partial_reads_honour_offset_and_length(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(bytes(range(256)) * 10)
    storage = storage_on(tmp_path)
    assert await read_all(storage, "f.bin", 10, 5) == bytes(range(10, 15))
    assert await read_all(storage, "f.bin", 2555) == bytes([251, 252, 253, 254, 255])
    assert await read_all(storage, "f.bin", 2550, 1000) == bytes(range(246, 256))
    assert await read_all(storage, "f.bin", 9999) == b""
    assert await read_all(storage, "f.bin", 0, 0) == b""


async def test_reads_beyond_four_gibibytes_on_a_sparse_file(tmp_path: Path) -> None:
    offset = 5 * 2**30 + 7
    with open(tmp_path / "big.bin", "wb") as f:
        f.seek(offset)
        f.write(b"past 4 GiB")
    storage = storage_on(tmp_path)
    assert (await storage.stat("big.bin")).size == offset + 10
    assert await read_all(storage, "big.bin", offset, 10) == b"past 4 GiB"
    assert await read_all(storage, "big.bin", offset - 2, 4) == b"\0\0pa"


async def test_reading_a_folder_or_with_negative_offset_is_refused_before_any_data(
    tmp_path: Path,
) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    storage = storage_on(tmp_path)
    with pytest.raises(ProviderError) as err:
        storage.read("d")
    assert err.value.code == ResponseCode.INVALID_OBJECT_HANDLE
    with pytest.raises(ProviderError) as err:
        storage.read("f", -1)
    assert err.value.code == ResponseCode.INVALID_PARAMETER
    with pytest.raises(ProviderError) as err:
        storage.read("missing")
    assert err.value.code == ResponseCode.INVALID_OBJECT_HANDLE


async def test_size_for_read_is_the_current_size(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    assert await storage_on(tmp_path).size_for_read("f") == 3
