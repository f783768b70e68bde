"""CopyObject on a files storage: a host Cancel stops it, and it writes only what fits.

A copy runs in chunks and looks for a Cancel between two of them, so the
device is idle again within a chunk's time rather than the whole file's,
and the half-made copy (a hidden temporary file) is removed: the host never
finds a copy it cancelled.  A sparse file is copied sparse, so what a copy
needs from the free space is the data it really writes, not the file's size.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from data_providers.files import FilesProvider, FileStorage
from mtp_responder.core.codes import OperationCode, ResponseCode
from mtp_responder.provider import ProviderError

from .conftest import Device, handle_of, still_serving, wait_until

MIB = 1024 * 1024

BIG = 512 * MIB
"""Big enough that copying it takes a while, even from the page cache (> 0.1 s)."""

IDLE_WITHIN = 1 / 4
"""A Cancel at the start of a copy makes the device idle within this fraction of
the time the whole copy takes: one chunk and removing the partial copy."""


def write_big(path: Path, size: int = BIG) -> None:
    """A file whose every block is allocated (no holes), so it costs real copying."""
    block = b"\xa5" * (8 * MIB)
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Written once per module and linked into each test's storage (same filesystem)."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    write_big(path)
    yield path
    path.unlink()


@pytest.fixture
def big(session: Device, big_file: Path) -> Iterator[Path]:
    """``big.bin`` at the storage root; the storage is emptied afterwards, so that
    no gigabyte stays behind in the kept temporary directories."""
    path = session.root / "big.bin"
    os.link(big_file, path)
    yield path
    for entry in session.root.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def everything_in(folder: Path) -> list[str]:
    """Every entry below ``folder``, hidden ones included, as relative paths."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            found.append(os.path.relpath(os.path.join(dirpath, name), folder))
    return sorted(found)


async def start_copy(device: Device, source: str) -> int:
    """CopyObject of ``source`` into the folder ``dest``; returns its transaction id
    once the copy is under way (its hidden temporary entry exists)."""
    (device.root / "dest").mkdir()
    handle = await handle_of(device.mtp, source)
    dest = await handle_of(device.mtp, "dest")
    tid = await device.mtp.command(OperationCode.COPY_OBJECT, handle, device.storage_id, dest)
    await wait_until(lambda: bool(everything_in(device.root / "dest")), 5)
    return tid


async def wait_idle(device: Device, timeout: float = 20.0) -> None:
    await wait_until(lambda: not device.host.device_status_busy(), timeout)


def free_space_of(device: Device, free: int) -> None:
    """Make the storage report ``free`` bytes free (a multiple of the block size)."""
    storage: Any = device.responder.framework.storage(device.storage_id)
    real = os.statvfs(device.root)
    blocks = free // real.f_frsize
    storage.statvfs = lambda path: os.statvfs_result((*real[:4], blocks, *real[5:]))


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


# -- Cancel ----------------------------------------------------------------------------


async def test_cancel_during_copy_object_makes_the_device_idle_long_before_the_copy_ends(
    session: Device, big: Path
) -> None:
    (session.root / "whole").mkdir()
    big = await handle_of(session.mtp, "big.bin")
    whole = await handle_of(session.mtp, "whole")
    started = trio.current_time()
    result = await session.mtp.transaction(
        OperationCode.COPY_OBJECT, big, session.storage_id, whole
    )
    assert result.response.ok
    copy_takes = trio.current_time() - started
    (session.root / "whole" / "big.bin").unlink()

    tid = await start_copy(session, "big.bin")
    cancelled = trio.current_time()
    session.host.cancel(tid)
    assert session.host.device_status_busy()
    await wait_idle(session)
    assert trio.current_time() - cancelled < copy_takes * IDLE_WITHIN


async def test_a_cancelled_copy_leaves_nothing_at_its_destination(
    session: Device, big: Path
) -> None:
    tid = await start_copy(session, "big.bin")
    session.host.cancel(tid)
    await wait_idle(session)
    assert everything_in(session.root / "dest") == []
    assert everything_in(session.root) == ["big.bin", "dest"]


async def test_a_cancelled_folder_copy_leaves_nothing_at_its_destination(
    session: Device, big: Path
) -> None:
    (session.root / "folder" / "inner").mkdir(parents=True)
    (session.root / "folder" / "small.txt").write_text("small")
    big.rename(session.root / "folder" / "inner" / "big.bin")
    tid = await start_copy(session, "folder")
    session.host.cancel(tid)
    await wait_idle(session)
    assert everything_in(session.root / "dest") == []


async def test_the_next_operation_is_served_after_a_cancelled_copy(
    session: Device, big: Path
) -> None:
    tid = await start_copy(session, "big.bin")
    session.host.cancel(tid)
    await wait_idle(session)
    await still_serving(session)
    (session.root / "small.txt").write_text("small")
    small = await handle_of(session.mtp, "small.txt")
    dest = await handle_of(session.mtp, "dest")
    result = await session.mtp.transaction(
        OperationCode.COPY_OBJECT, small, session.storage_id, dest
    )
    assert result.response.ok
    assert (session.root / "dest" / "small.txt").read_text() == "small"
    assert everything_in(session.root / "dest") == ["small.txt"]


# -- free space and sparse files ---------------------------------------------------------


async def test_a_file_grown_to_the_whole_free_space_is_copied_without_filling_it(
    session: Device,
) -> None:
    """TruncateObject grows a file without writing (a hole); its copy writes no more."""
    free_space_of(session, 64 * MIB)
    (session.root / "grown.bin").write_bytes(b"head")
    grown = await handle_of(session.mtp, "grown.bin")
    for code, params in (
        (OperationCode.BEGIN_EDIT_OBJECT, (grown,)),
        (OperationCode.TRUNCATE_OBJECT, (grown, 64 * MIB, 0)),
        (OperationCode.END_EDIT_OBJECT, (grown,)),
    ):
        assert (await session.mtp.transaction(code, *params)).response.ok
    result = await session.mtp.transaction(OperationCode.COPY_OBJECT, grown, session.storage_id, 0)
    assert result.response.ok
    copy = session.root / "grown (1).bin"
    assert os.path.getsize(copy) == 64 * MIB
    assert allocated(copy) < MIB
    with open(copy, "rb") as f:
        assert f.read(8) == b"head\0\0\0\0"
        f.seek(64 * MIB - 4)
        assert f.read() == b"\0\0\0\0"


async def test_copy_needs_free_space_for_the_data_it_writes_not_the_size(
    session: Device,
) -> None:
    sparse = session.root / "sparse.bin"
    with open(sparse, "wb") as f:
        f.seek(100 * MIB)
        f.write(b"\x5a" * (2 * MIB))
        f.truncate(256 * MIB)
    handle = await handle_of(session.mtp, "sparse.bin")

    free_space_of(session, MIB)
    result = await session.mtp.transaction(OperationCode.COPY_OBJECT, handle, session.storage_id, 0)
    assert result.code == ResponseCode.STORE_FULL
    assert everything_in(session.root) == ["sparse.bin"]

    free_space_of(session, 16 * MIB)
    result = await session.mtp.transaction(OperationCode.COPY_OBJECT, handle, session.storage_id, 0)
    assert result.response.ok
    copy = session.root / "sparse (1).bin"
    assert os.path.getsize(copy) == 256 * MIB
    assert allocated(copy) < 16 * MIB
    with open(copy, "rb") as f:
        f.seek(100 * MIB - 1)
        assert f.read(2 * MIB + 2) == b"\0" + b"\x5a" * (2 * MIB) + b"\0"


async def test_a_dense_file_bigger_than_the_free_space_is_store_full_before_copying(
    session: Device,
) -> None:
    (session.root / "dense.bin").write_bytes(b"\x01" * (2 * MIB))
    handle = await handle_of(session.mtp, "dense.bin")
    free_space_of(session, MIB)
    result = await session.mtp.transaction(OperationCode.COPY_OBJECT, handle, session.storage_id, 0)
    assert result.code == ResponseCode.STORE_FULL
    assert everything_in(session.root) == ["dense.bin"]
    await still_serving(session)


# -- onto another filesystem, with its real free space -------------------------------------


class _NoEvents:
    def object_added(self, storage: Any, key: str) -> None: ...
    def object_removed(self, storage: Any, key: str) -> None: ...
    def object_changed(self, storage: Any, key: str) -> None: ...
    def object_moved(self, storage: Any, old_key: str, new_key: str) -> None: ...
    def storage_added(self, storage: Any) -> None: ...
    def storage_removed(self, storage: Any) -> None: ...


@pytest.fixture
def card(tmp_path: Path) -> Iterator[tuple[FileStorage, Path]]:
    """A storage with a 1 MiB tmpfs mounted at ``card`` inside it: copies onto it
    cross filesystems (no ``copy_file_range`` there) and meet a really full disk."""
    root = tmp_path / "storage"
    mnt = root / "card"
    mnt.mkdir(parents=True)
    if os.system(f"mount -t tmpfs -o size=1m tmpfs {mnt} 2>/dev/null") != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        provider = FilesProvider("files", {"storages": [{"path": str(root)}]}, _NoEvents())
        yield provider.storages()[0], root
    finally:
        os.system(f"umount {mnt}")


async def test_a_sparse_file_copied_onto_another_filesystem_keeps_its_holes(
    card: tuple[FileStorage, Path],
) -> None:
    storage, root = card
    with open(root / "sparse.bin", "wb") as f:
        f.seek(10 * MIB)
        f.write(b"\x5a" * 100_000)
        f.truncate(64 * MIB)
    copied = await storage.copy("sparse.bin", "card")
    assert copied.key == "card/sparse.bin" and copied.size == 64 * MIB
    assert (root / "card" / "sparse.bin").read_bytes() == (root / "sparse.bin").read_bytes()
    assert allocated(root / "card" / "sparse.bin") < 256 * 1024


async def test_a_copy_whose_data_does_not_fit_is_refused_before_writing(
    card: tuple[FileStorage, Path],
) -> None:
    storage, root = card
    (root / "dense.bin").write_bytes(b"\x01" * (2 * MIB))
    with pytest.raises(ProviderError) as err:
        await storage.copy("dense.bin", "card")
    assert err.value.code == ResponseCode.STORE_FULL
    assert everything_in(root / "card") == []
