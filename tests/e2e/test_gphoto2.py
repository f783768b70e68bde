"""gphoto2 (libgphoto2's PTP driver) against the responder on a real gadget.

gphoto2 sees the device as a PTP camera, asks for the object handles of all
storages at once, and walks folders itself; the reference responder times out on
its listing, so every call here has a short timeout.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.guest.support import Gadget, Tools, make_file, sha256_file

pytestmark = pytest.mark.e2e

TIMEOUT = 90


@pytest.fixture
def storage(mtp_gadget: Gadget) -> Path:
    return mtp_gadget.storage  # type: ignore[attr-defined, no-any-return]


def gphoto2(tools: Tools, *args: str | Path, cwd: Path | None = None) -> str:
    result = tools.run(["gphoto2", *args], timeout=TIMEOUT, cwd=cwd, check=True)
    assert "*** Error" not in result.output, result.describe()
    return result.stdout


def storage_folder(tools: Tools) -> str:
    """gphoto2 names each storage ``/store_<storage id>``."""
    out = gphoto2(tools, "--list-folders")
    stores = re.findall(r"- (store_[0-9A-Fa-f]{8})", out)
    assert len(stores) == 1, out
    return f"/{stores[0]}"


def file_numbers(listing: str) -> dict[str, int]:
    """``#N  name  ...`` lines of ``--list-files`` -> name: N."""
    return {m.group(2): int(m.group(1))
            for m in re.finditer(r"^#(\d+)\s+(\S+)", listing, re.M)}


def test_auto_detect_lists_the_device(mtp_gadget: Gadget, tools: Tools) -> None:
    out = gphoto2(tools, "--auto-detect")
    dev = mtp_gadget.device()
    assert dev is not None
    assert re.search(rf"usb:{dev.busnum:03d},{dev.devnum:03d}", out), out


def test_list_files_shows_the_tree(mtp_gadget: Gadget, storage: Path, tools: Tools) -> None:
    (storage / "DCIM").mkdir()
    make_file(storage / "DCIM" / "IMG_0001.JPG", 20000)
    make_file(storage / "readme.txt", 100)
    out = gphoto2(tools, "--list-files")
    store = storage_folder(tools)
    assert f"folder '{store}'" in out and f"folder '{store}/DCIM'" in out
    assert set(file_numbers(out)) >= {"IMG_0001.JPG", "readme.txt"}


def test_get_file(mtp_gadget: Gadget, storage: Path, tools: Tools, guest_tmp: Path) -> None:
    (storage / "DCIM").mkdir()
    digest = make_file(storage / "DCIM" / "IMG_0002.JPG", 300000)
    make_file(storage / "other.txt", 10)
    number = file_numbers(gphoto2(tools, "--list-files"))["IMG_0002.JPG"]
    download = guest_tmp / "download"
    download.mkdir()
    gphoto2(tools, "--get-file", str(number), "--force-overwrite", cwd=download)
    assert sha256_file(download / "IMG_0002.JPG") == digest


def test_upload_file(mtp_gadget: Gadget, storage: Path, tools: Tools, guest_tmp: Path) -> None:
    local = guest_tmp / "upload.jpg"
    digest = make_file(local, 123457)
    store = storage_folder(tools)
    gphoto2(tools, "--folder", store, "--upload-file", local)
    assert sha256_file(storage / "upload.jpg") == digest
    assert "upload.jpg" in file_numbers(gphoto2(tools, "--list-files"))
