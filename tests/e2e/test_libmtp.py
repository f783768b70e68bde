"""libmtp's own example tools (``mtp-tools``) against the responder on a real gadget.

Each tool opens and closes its own session, the way desktop file managers built
on libmtp (gvfs, KIO) behave, so handles are looked up again by name in every
step instead of trusting an id printed by an earlier process.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.guest.support import (
    Gadget,
    MtpFile,
    Tools,
    make_file,
    parse_mtp_files,
    parse_mtp_folders,
    sha256_file,
)

pytestmark = pytest.mark.e2e

ROUND_TRIP_SIZES = (0, 1, 511, 512, 513, 4096, 1 << 20, 64 << 20)
BIG_TIMEOUT = 300  # a 64 MiB transfer runs at a few MB/s under TCG


def seed(storage: Path) -> dict[str, str]:
    """A small tree on the device side; returns relative path -> SHA-256."""
    (storage / "Music").mkdir()
    (storage / "Pictures").mkdir()
    return {
        "hello.txt": make_file(storage / "hello.txt", 12),
        "Music/song.mp3": make_file(storage / "Music" / "song.mp3", 3000),
        "Pictures/photo.jpg": make_file(storage / "Pictures" / "photo.jpg", 70000),
        "empty.dat": make_file(storage / "empty.dat", 0),
    }


def list_files(tools: Tools) -> list[MtpFile]:
    result = tools.run(["mtp-files"], timeout=60, check=True)
    return parse_mtp_files(result.stdout)


def find(files: list[MtpFile], name: str, parent_id: int | None = None) -> MtpFile:
    matches = [f for f in files if f.name == name
               and (parent_id is None or f.parent_id == parent_id)]
    assert len(matches) == 1, f"{name!r} appears {len(matches)} times in mtp-files: {files}"
    return matches[0]


def assert_clean(result_output: str) -> None:
    """libmtp reports some protocol errors on stderr and still exits 0."""
    for bad in ("LIBMTP PANIC", "PTP_ERROR_IO", "Error 2:", "ptp_usb_getresp"):
        assert bad not in result_output, f"libmtp reported {bad!r}"


@pytest.fixture
def storage(mtp_gadget: Gadget) -> Path:
    return mtp_gadget.storage  # type: ignore[attr-defined, no-any-return]


@pytest.mark.superspeed
def test_mtp_detect_completes(mtp_gadget: Gadget, tools: Tools, link_speed: str) -> None:
    result = tools.run(["mtp-detect"], timeout=120, check=True)
    out = result.stdout
    assert "Device recognized as MTP" in out or "Interface description contains" in out
    assert "Manufacturer: MTP E2E" in out
    assert "Model: MTP E2E Device" in out
    assert f"Serial number: {mtp_gadget.config['device']['serial']}" in out
    assert "StorageDescription: E2E Storage" in out
    packet = 1024 if link_speed == "super-speed" else 512
    assert f"IN endpoint maxpacket: {packet} bytes" in out
    assert out.rstrip().endswith("OK.")
    assert_clean(result.output)


def test_mtp_files_and_folders_list_the_storage(
    mtp_gadget: Gadget, storage: Path, tools: Tools
) -> None:
    seeded = seed(storage)
    files = list_files(tools)
    for rel in seeded:
        entry = find(files, Path(rel).name)
        assert entry.size == (storage / rel).stat().st_size
    folders_out = tools.run(["mtp-folders"], timeout=60, check=True)
    folders = parse_mtp_folders(folders_out.stdout)
    assert {"Music", "Pictures"} <= set(folders)
    assert find(files, "song.mp3").parent_id == folders["Music"]
    assert find(files, "hello.txt").parent_id == 0
    assert_clean(folders_out.output)


def test_newfolder_sendfile_into_it_and_delfile(
    mtp_gadget: Gadget, storage: Path, tools: Tools, guest_tmp: Path
) -> None:
    result = tools.run(["mtp-newfolder", "NewDir", "0", "0"], timeout=60, check=True)
    assert_clean(result.output)
    assert (storage / "NewDir").is_dir()
    folders = parse_mtp_folders(tools.run(["mtp-folders"], timeout=60, check=True).stdout)
    assert "NewDir" in folders

    local = guest_tmp / "inside.txt"
    digest = make_file(local, 1234)
    sent = tools.run(["mtp-sendfile", local, "/NewDir"], timeout=60, check=True)
    assert "New file ID" in sent.stdout, sent.describe()
    assert sha256_file(storage / "NewDir" / "inside.txt") == digest

    entry = find(list_files(tools), "inside.txt", folders["NewDir"])
    deleted = tools.run(["mtp-delfile", "-n", str(entry.item_id)], timeout=60, check=True)
    assert_clean(deleted.output)
    assert not (storage / "NewDir" / "inside.txt").exists()
    assert all(f.name != "inside.txt" for f in list_files(tools))


def test_delfile_removes_a_seeded_file(
    mtp_gadget: Gadget, storage: Path, tools: Tools
) -> None:
    seed(storage)
    entry = find(list_files(tools), "song.mp3")
    tools.run(["mtp-delfile", "-n", str(entry.item_id)], timeout=60, check=True)
    assert not (storage / "Music" / "song.mp3").exists()
    assert (storage / "Music").is_dir()


@pytest.mark.superspeed
def test_sendfile_getfile_round_trips(
    mtp_gadget: Gadget, storage: Path, tools: Tools, guest_tmp: Path
) -> None:
    """Sizes around the 512/1024-byte packet boundaries, empty, and large."""
    failures = []
    for size in ROUND_TRIP_SIZES:
        # An extension on purpose: libmtp's tools misbehave on names without one.
        name = f"rt-{size}.dat"
        local = guest_tmp / name
        digest = make_file(local, size)
        sent = tools.run(["mtp-sendfile", local, "/"], timeout=BIG_TIMEOUT,
                         name=f"sendfile-{size}")
        if sent.returncode != 0 or "New file ID" not in sent.stdout:
            failures.append(f"{size}: mtp-sendfile failed: {sent.describe()}")
            continue
        on_device = storage / name
        if not on_device.exists() or sha256_file(on_device) != digest:
            failures.append(f"{size}: stored file differs from what was sent")
            continue
        entry = find(list_files(tools), name)
        if entry.size != size:
            failures.append(f"{size}: mtp-files reports {entry.size} bytes")
        back = guest_tmp / f"back-{name}"
        got = tools.run(["mtp-getfile", str(entry.item_id), back], timeout=BIG_TIMEOUT,
                        name=f"getfile-{size}")
        if got.returncode != 0 or not back.exists():
            failures.append(f"{size}: mtp-getfile failed: {got.describe()}")
        elif sha256_file(back) != digest:
            failures.append(f"{size}: fetched file differs ({back.stat().st_size} bytes)")
        local.unlink()
        back.unlink(missing_ok=True)
        on_device.unlink(missing_ok=True)
    assert not failures, "\n".join(failures)


def test_getfile_of_files_created_on_the_device(
    mtp_gadget: Gadget, storage: Path, tools: Tools, guest_tmp: Path
) -> None:
    seeded = seed(storage)
    files = list_files(tools)
    for rel, digest in seeded.items():
        entry = find(files, Path(rel).name)
        back = guest_tmp / f"got-{entry.name}"
        tools.run(["mtp-getfile", str(entry.item_id), back], timeout=60, check=True)
        assert sha256_file(back) == digest, rel


@pytest.mark.parametrize("name", ["photo.jpg", "track.mp3", "notes.txt", "firmware.bin"])
def test_sendfile_of_typed_files(
    mtp_gadget: Gadget, storage: Path, tools: Tools, guest_tmp: Path, name: str
) -> None:
    """libmtp derives the object format from the extension; each takes another path."""
    local = guest_tmp / name
    digest = make_file(local, 5000)
    sent = tools.run(["mtp-sendfile", local, "/"], timeout=60)
    assert sent.returncode == 0 and "New file ID" in sent.stdout, sent.describe()
    assert sha256_file(storage / name) == digest
    assert re.search(rf"Filename: {re.escape(name)}", tools.run(["mtp-files"], timeout=60,
                                                                check=True).stdout)
