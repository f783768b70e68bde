"""Raw protocol checks with pyusb against the responder on a real gadget.

These are the probes Windows makes (MS OS descriptors, GetObjectPropList)
and the robustness cases peers fail (Cancel mid-transfer, Device Reset,
unplug mid-transfer).
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import usb.core

from mtp_backup.usb import UsbInitiator, find_device
from mtp_responder.core.codes import (
    ALL,
    ROOT,
    ObjectFormat,
    ObjectProp,
    OperationCode,
    ResponseCode,
)
from mtp_responder.core.datasets import ObjectInfoData, build_object_info, parse_prop_list
from tests.e2e.guest.support import Gadget, make_file

pytestmark = pytest.mark.e2e

BIG = 64 * 1024 * 1024


def open_initiator(gadget: Gadget, timeout_ms: int = 20000) -> UsbInitiator:
    deadline = time.monotonic() + 30
    while True:
        dev = find_device(gadget.vid, gadget.pid)
        if dev is not None:
            try:
                return UsbInitiator(dev, timeout_ms)
            except (usb.core.USBError, StopIteration):
                pass
        if time.monotonic() > deadline:
            raise AssertionError("device did not come back")
        time.sleep(0.2)


@pytest.fixture
def mtp(mtp_gadget: Gadget) -> Any:
    initiator = open_initiator(mtp_gadget)
    yield initiator
    try:
        initiator.close()
    except usb.core.USBError:
        pass


def test_ms_os_descriptors_name_mtp_as_compatible_id(mtp: UsbInitiator) -> None:
    # String descriptor 0xEE: "MSFT100" and the vendor code.
    raw = bytes(mtp.dev.ctrl_transfer(0x80, 6, 0x03EE, 0, 255))
    assert raw[2:16].decode("utf-16-le") == "MSFT100"
    vendor_code = raw[16]
    # Extended compat ID descriptor (wIndex 4), device recipient.
    compat = bytes(mtp.dev.ctrl_transfer(0xC0, vendor_code, 0, 4, 255))
    _length, version, index, count = struct.unpack_from("<IHHB", compat)
    assert (version, index) == (0x0100, 4)
    assert count >= 1
    assert compat[16 + 2 : 16 + 5] == b"MTP"


def test_device_info_outside_a_session(mtp: UsbInitiator) -> None:
    info = mtp.device_info()
    assert info.model == "MTP E2E Device"
    assert OperationCode.GET_OBJECT_PROP_LIST in info.operations_supported
    _, response = mtp.transaction(OperationCode.GET_STORAGE_IDS, check=False)
    assert response.code == ResponseCode.SESSION_NOT_OPEN


def test_get_object_prop_list_on_the_root(mtp: UsbInitiator, mtp_gadget: Gadget) -> None:
    storage: Path = mtp_gadget.storage  # type: ignore[attr-defined]
    (storage / "a.txt").write_text("alpha")
    (storage / "dir").mkdir()
    mtp.open_session()
    payload, _ = mtp.transaction(OperationCode.GET_OBJECT_PROP_LIST, 0, 0, ALL, 0, 1)
    items = parse_prop_list(payload or b"")
    names = {i.value for i in items if i.code == ObjectProp.OBJECT_FILE_NAME}
    assert names == {"a.txt", "dir"}
    sizes = {i.value for i in items if i.code == ObjectProp.OBJECT_SIZE}
    assert 5 in sizes


def test_get_device_status_is_ok_when_idle(mtp: UsbInitiator) -> None:
    code, _ = mtp.device_status()
    assert code == ResponseCode.OK


def test_cancel_in_the_middle_of_a_big_get_object(mtp: UsbInitiator, mtp_gadget: Gadget) -> None:
    storage: Path = mtp_gadget.storage  # type: ignore[attr-defined]
    make_file(storage / "big.bin", BIG)
    mtp.open_session()
    sid = mtp.storage_ids()[0]
    handle = mtp.find(sid, "big.bin")
    tid = mtp.send_command(OperationCode.GET_OBJECT, handle)
    got = 0
    while got < 4 * 1024 * 1024:
        got += len(mtp.ep_in.read(256 * 1024, 20000))
    mtp.cancel(tid)
    # Drain what was in flight, then wait for the device to report idle.
    deadline = time.monotonic() + 20
    while True:
        try:
            mtp.ep_in.read(256 * 1024, 200)
        except usb.core.USBError:
            break
    while True:
        code, _ = mtp.device_status()
        if code == ResponseCode.OK:
            break
        assert code == ResponseCode.DEVICE_BUSY
        assert time.monotonic() < deadline, "device stayed busy after Cancel"
        time.sleep(0.05)
    # The session is still usable.
    info = mtp.object_info(handle)
    assert info.filename == "big.bin"


def test_cancel_in_the_middle_of_a_big_send_object(mtp: UsbInitiator, mtp_gadget: Gadget) -> None:
    storage: Path = mtp_gadget.storage  # type: ignore[attr-defined]
    mtp.open_session()
    sid = mtp.storage_ids()[0]
    info = ObjectInfoData(sid, ObjectFormat.UNDEFINED, 0, BIG, ROOT, 0, "upload.bin")
    mtp.transaction(OperationCode.SEND_OBJECT_INFO, sid, ROOT, data=build_object_info(info))
    tid = mtp.send_command(OperationCode.SEND_OBJECT)
    block = os.urandom(256 * 1024)
    mtp.begin_data(OperationCode.SEND_OBJECT, tid, BIG, block[:-12])
    for _ in range(16):
        mtp.write_data(block)
    mtp.cancel(tid)
    deadline = time.monotonic() + 20
    while mtp.device_status()[0] != ResponseCode.OK:
        assert time.monotonic() < deadline, "device stayed busy after Cancel"
        time.sleep(0.05)
    assert not (storage / "upload.bin").exists()
    assert [p.name for p in storage.iterdir()] == []
    # A normal transaction afterwards.
    assert mtp.storage_info(sid).storage_description == "E2E Storage"
    _handle, response = mtp.send_object_from(sid, ROOT, "after.txt", io.BytesIO(b"ok"), 2)
    assert response.code == ResponseCode.OK
    assert (storage / "after.txt").read_bytes() == b"ok"


def test_device_reset_closes_the_session(mtp: UsbInitiator) -> None:
    mtp.open_session()
    mtp.device_reset()
    time.sleep(0.2)
    _, response = mtp.transaction(OperationCode.GET_STORAGE_IDS, check=False)
    assert response.code == ResponseCode.SESSION_NOT_OPEN
    mtp.open_session()
    assert mtp.storage_ids()


def test_unbinding_the_udc_mid_transfer_leaves_no_partial_file(
    mtp: UsbInitiator, mtp_gadget: Gadget
) -> None:
    storage: Path = mtp_gadget.storage  # type: ignore[attr-defined]
    mtp.open_session()
    sid = mtp.storage_ids()[0]
    udc_file = mtp_gadget.configfs_dir / "UDC"
    udc = udc_file.read_text().strip()
    source = io.BytesIO(os.urandom(BIG))
    failure: list[BaseException] = []

    def upload() -> None:
        try:
            mtp.send_object_from(sid, ROOT, "cut.bin", source, BIG)
        except BaseException as exc:  # the cable goes away under it
            failure.append(exc)

    worker = threading.Thread(target=upload)
    worker.start()
    while source.tell() < 8 * 1024 * 1024 and worker.is_alive():
        time.sleep(0.01)
    udc_file.write_text("\n")
    worker.join(60)
    assert not worker.is_alive()
    assert failure, "the upload should have failed when the cable was pulled"
    mtp_gadget.wait_gone()
    for _ in range(50):
        udc_file.write_text(udc + "\n")
        if udc_file.read_text().strip() == udc:
            break
        time.sleep(0.1)
    mtp_gadget.wait_enumerated()
    again = open_initiator(mtp_gadget)
    try:
        again.open_session()
        sid = again.storage_ids()[0]
        assert [p.name for p in storage.iterdir()] == []
        _handle, response = again.send_object_from(sid, ROOT, "after.txt", io.BytesIO(b"x"), 1)
        assert response.code == ResponseCode.OK
    finally:
        again.close()
