"""``mtp-gadget`` on a real kernel gadget, with the echo function standing in for MTP.

These prove the gadget plumbing on its own: configfs tree, MS OS descriptors,
FunctionFS mount, bind-after-descriptors, composite gadgets, clean and repairing
tear-down.  A regression here would otherwise show up as a confusing MTP failure.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

from mtp_responder.device_config import default_serial
from tests.e2e.guest import ffs_echo
from tests.e2e.guest.support import (
    CONFIGFS_GADGETS,
    PYTHON,
    Gadget,
    Tools,
    echo_responder_command,
    functionfs_mount_points,
    mtp_responder_command,
    pyusb_find,
    udc_speed,
)

pytestmark = pytest.mark.e2e

EXPECTED_PACKET = {"high-speed": 512, "super-speed": 1024}
EXPECTED_SYSFS_SPEED = {"high-speed": "480", "super-speed": "5000"}


def _pyusb_device(gadget: Gadget):  # type: ignore[no-untyped-def]
    dev = pyusb_find(gadget.vid, gadget.pid)
    assert dev is not None, f"pyusb cannot see {gadget.vid:04x}:{gadget.pid:04x}"
    return dev


def _echo_endpoints(dev):  # type: ignore[no-untyped-def]
    import usb.util

    cfg = dev.get_active_configuration()
    intf = next(i for i in cfg if i.bInterfaceClass == 0xFF)
    ep_in = usb.util.find_descriptor(
        intf, custom_match=lambda e: usb.util.endpoint_direction(e.bEndpointAddress)
        == usb.util.ENDPOINT_IN)
    ep_out = usb.util.find_descriptor(
        intf, custom_match=lambda e: usb.util.endpoint_direction(e.bEndpointAddress)
        == usb.util.ENDPOINT_OUT)
    assert ep_in is not None and ep_out is not None
    return intf, ep_in, ep_out


def _check_echo(gadget: Gadget, sizes: tuple[int, ...] = (1, 100, 1000, 4000, 30000)) -> None:
    dev = _pyusb_device(gadget)
    intf, ep_in, ep_out = _echo_endpoints(dev)
    magic = bytes(dev.ctrl_transfer(0xC1, ffs_echo.REQ_MAGIC, 0, intf.bInterfaceNumber, 64))
    assert magic == ffs_echo.MAGIC
    for size in sizes:
        payload = os.urandom(size)
        assert ep_out.write(payload, timeout=10000) == size
        echoed = bytes(ep_in.read(max(size, 64) + 1024, timeout=10000))
        assert echoed == payload, f"echo of {size} bytes differs"


@pytest.mark.superspeed
def test_gadget_enumerates_with_configured_descriptors(
    echo_gadget: Gadget, tools: Tools, link_speed: str
) -> None:
    dev = echo_gadget.device()
    assert dev is not None
    assert dev.speed == EXPECTED_SYSFS_SPEED[link_speed]
    assert udc_speed() == link_speed
    out = tools.run(
        ["lsusb", "-v", "-d", f"{echo_gadget.vid:04x}:{echo_gadget.pid:04x}"],
        name="lsusb-v", check=True,
    ).stdout
    cfg = echo_gadget.config["device"]
    assert re.search(rf"idVendor\s+0x{cfg['vendor_id']:04x}", out)
    assert re.search(rf"idProduct\s+0x{cfg['product_id']:04x}", out)
    assert re.search(r"bcdDevice\s+1\.01", out)
    assert re.search(r"bDeviceClass\s+0\b", out)
    assert re.search(rf"iManufacturer\s+\d+ {cfg['manufacturer']}", out)
    assert re.search(rf"iProduct\s+\d+ {cfg['product']}", out)
    assert re.search(rf"iSerial\s+\d+ {cfg['serial']}", out)
    assert re.search(r"bInterfaceClass\s+255 Vendor Specific Class", out)
    assert re.search(rf"iInterface\s+\d+ {ffs_echo.INTERFACE_NAME}", out)
    bcd_usb = re.search(r"bcdUSB\s+(\d+)\.(\d+)", out)
    assert bcd_usb is not None
    major = int(bcd_usb.group(1))
    assert major == (3 if link_speed == "super-speed" else 2)
    packets = {int(m, 16) for m in re.findall(r"wMaxPacketSize\s+0x([0-9a-f]+)", out)}
    assert packets == {EXPECTED_PACKET[link_speed]}


def test_usb_and_mtp_serial_numbers_agree_when_none_is_configured(  # type: ignore[no-untyped-def]
    make_gadget, tools: Tools, guest_tmp: Path
) -> None:
    """Windows keys its per-device caches on the USB serial and shows the MTP one.

    With ``serial`` unset, mtp-gadget (iSerialNumber) and the responder
    (DeviceInfo SerialNumber) each fill in the default; they must fill in the same.
    """
    import usb.util

    storage, state = guest_tmp / "storage", guest_tmp / "responder-state"
    storage.mkdir()
    state.mkdir()
    gadget = make_gadget(
        responder_command=mtp_responder_command(),
        config={
            "state_dir": str(state),
            "providers": {"files": {"storages": [{"path": str(storage)}]}},
        },
        up=False,
    )
    del gadget.config["device"]["serial"]
    gadget.up()
    dev = _pyusb_device(gadget)
    usb_serial = usb.util.get_string(dev, dev.iSerialNumber)
    out = tools.run(["mtp-detect"], timeout=120, check=True).stdout
    mtp_serial = re.search(r"^\s*Serial number: (.*?)\s*$", out, re.MULTILINE)
    assert mtp_serial is not None, "mtp-detect printed no DeviceInfo serial number"
    assert usb_serial == mtp_serial.group(1)
    assert usb_serial == default_serial()


@pytest.mark.superspeed
def test_bulk_and_control_echo(echo_gadget: Gadget) -> None:
    _check_echo(echo_gadget)
    dev = _pyusb_device(echo_gadget)
    intf, _, _ = _echo_endpoints(dev)
    dev.ctrl_transfer(0x41, ffs_echo.REQ_STORE, 0, intf.bInterfaceNumber, b"stored bytes")
    assert bytes(dev.ctrl_transfer(0xC1, ffs_echo.REQ_LOAD, 0, intf.bInterfaceNumber, 64)) \
        == b"stored bytes"


def test_ms_os_descriptors_from_configfs(echo_gadget: Gadget) -> None:
    """os_desc/use, b_vendor_code, qw_sign and the config link are all needed for this."""
    dev = _pyusb_device(echo_gadget)
    raw = bytes(dev.ctrl_transfer(0x80, 6, (3 << 8) | 0xEE, 0, 255))
    assert raw[1] == 3 and raw[2:16].decode("utf-16-le") == "MSFT100"
    vendor_code = raw[16]
    assert vendor_code == 0x01
    compat = bytes(dev.ctrl_transfer(0xC0, vendor_code, 0, 4, 255))
    length, version, index, count = struct.unpack_from("<IHHB", compat)
    assert (version, index, count) == (0x0100, 4, 1)
    assert length == len(compat) == 16 + 24
    first_interface, reserved, compatible_id = struct.unpack_from("<BB8s", compat, 16)
    assert (first_interface, reserved) == (0, 1)
    assert compatible_id.rstrip(b"\0") == b"WINUSB"


def test_status_reports_the_whole_gadget(echo_gadget: Gadget) -> None:
    info = echo_gadget.status()
    fn = f"ffs.{echo_gadget.name}"
    assert info["exists"] is True
    assert info["attributes"]["idVendor"] == f"0x{echo_gadget.vid:04x}"
    assert info["attributes"]["bDeviceClass"] == "0x00"
    assert info["strings"]["serialnumber"] == echo_gadget.config["device"]["serial"]
    assert info["functions"] == [fn]
    assert info["configs"] == {"c.1": [fn]}
    assert info["os_desc"] == {
        "use": "1", "b_vendor_code": "0x01", "qw_sign": "MSFT100", "configs": ["c.1"],
    }
    assert info["udc"] == "dummy_udc.0"
    assert info["udc_state"] == "configured"
    (mount,) = info["mounts"]
    assert mount["mount_point"] == str(echo_gadget.mount)
    assert {"ep0", "ep1", "ep2"} <= set(mount["endpoints"])
    assert info["responder"]["alive"] is True


def test_down_removes_everything(echo_gadget: Gadget) -> None:
    pid = echo_gadget.responder_pid()
    assert pid is not None
    echo_gadget.down()
    echo_gadget.wait_gone()
    assert not echo_gadget.configfs_dir.exists()
    assert str(echo_gadget.mount) not in functionfs_mount_points()
    assert not echo_gadget.mount.exists()
    assert not _running(pid)
    assert "exiting" in echo_gadget.responder_log.read_text()  # SIGTERM, not SIGKILL
    echo_gadget.down()  # idempotent


def test_composite_with_kernel_acm(make_gadget, tools: Tools) -> None:  # type: ignore[no-untyped-def]
    gadget = make_gadget(extra_functions=["acm.usb0"])
    info = gadget.status()
    assert info["configs"] == {"c.1": sorted([f"ffs.{gadget.name}", "acm.usb0"])}
    out = tools.run(["lsusb", "-v", "-d", f"{gadget.vid:04x}:{gadget.pid:04x}"],
                    name="lsusb-v", check=True).stdout
    assert re.search(r"bNumInterfaces\s+3", out)
    assert "Communications" in out and "Vendor Specific Class" in out
    # MTP's function comes first, so its interface is 0 (what its MS OS
    # descriptor refers to).
    assert re.search(r"bInterfaceNumber\s+0\s*\n\s*bAlternateSetting\s+0\s*\n\s*"
                     r"bNumEndpoints\s+2\s*\n\s*bInterfaceClass\s+255", out)
    deadline = time.monotonic() + 20
    while not any(Path("/dev").glob("ttyACM*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert any(Path("/dev").glob("ttyACM*")), "cdc_acm did not bind the gadget's ACM function"
    _check_echo(gadget, sizes=(10, 3000))


def test_composite_with_kernel_ecm_and_its_attributes(make_gadget, tools: Tools) -> None:  # type: ignore[no-untyped-def]
    gadget = make_gadget(
        extra_functions=["ecm.usb0"],
        config={"gadget": {"function_attributes": {"ecm.usb0": {
            "dev_addr": "02:00:00:00:e2:01", "host_addr": "02:00:00:00:e2:02",
        }}}},
    )
    ecm = gadget.configfs_dir / "functions" / "ecm.usb0"
    # u_ether's attributes read back with a trailing NUL.
    assert (ecm / "dev_addr").read_text().strip("\0\n") == "02:00:00:00:e2:01"
    assert (ecm / "host_addr").read_text().strip("\0\n") == "02:00:00:00:e2:02"
    out = tools.run(["lsusb", "-v", "-d", f"{gadget.vid:04x}:{gadget.pid:04x}"],
                    name="lsusb-v", check=True).stdout
    assert "Ethernet Networking" in out
    # The host's end of the link gets host_addr, announced in iMACAddress.
    assert re.search(r"iMacAddress\s+\d+ 02000000E202", out), out
    _check_echo(gadget, sizes=(10, 3000))


@pytest.mark.superspeed
def test_max_speed_caps_the_link(make_gadget, link_speed: str) -> None:  # type: ignore[no-untyped-def]
    gadget = make_gadget(config={"device": {"max_speed": "high-speed"}})
    dev = gadget.device()
    assert dev is not None and dev.speed == "480"
    assert udc_speed() == "high-speed"
    _check_echo(gadget, sizes=(700,))


def test_unbind_and_rebind(echo_gadget: Gadget) -> None:
    echo_gadget.cli("unbind")
    echo_gadget.wait_gone()
    assert echo_gadget.status()["udc"] is None
    echo_gadget.cli("bind")
    echo_gadget.wait_enumerated()
    _check_echo(echo_gadget, sizes=(1, 777))
    log = echo_gadget.responder_log.read_text()
    assert log.count("ENABLE") >= 2 and "UNBIND" in log


def test_up_repairs_a_half_built_gadget(make_gadget) -> None:  # type: ignore[no-untyped-def]
    gadget = make_gadget(up=False)
    _half_build(gadget)
    gadget.up()
    _check_echo(gadget, sizes=(5,))


def test_down_repairs_a_half_built_gadget(make_gadget) -> None:  # type: ignore[no-untyped-def]
    gadget = make_gadget(up=False)
    _half_build(gadget)
    gadget.down()
    assert not gadget.configfs_dir.exists()
    assert str(gadget.mount) not in functionfs_mount_points()


def test_responder_that_dies_early_is_reported(make_gadget) -> None:  # type: ignore[no-untyped-def]
    gadget = make_gadget(
        up=False,
        responder_command=["{python}", "-c", "import sys; print('no descriptors'); sys.exit(3)"],
    )
    result = gadget.cli("up", check=False)
    assert result.returncode != 0
    assert "exited before writing its descriptors" in result.stderr
    assert "no descriptors" in result.stderr  # the log tail is shown
    assert not gadget.configfs_dir.exists(), "a failed `up` must not leave a half-built gadget"
    assert str(gadget.mount) not in functionfs_mount_points()


def test_hung_responder_is_killed(make_gadget) -> None:  # type: ignore[no-untyped-def]
    gadget = make_gadget(
        responder_command=echo_responder_command("--ignore-sigterm"),
        config={"gadget": {"stop_timeout": 2}},
    )
    pid = gadget.responder_pid()
    assert pid is not None
    result = gadget.down()
    assert "SIGKILL" in result.stdout
    assert not _running(pid)
    assert not gadget.configfs_dir.exists()


def test_down_after_responder_crash(echo_gadget: Gadget) -> None:
    pid = echo_gadget.responder_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    # no_disconnect=1: the gadget stays bound while its responder is away
    # (functionfs does not list its mount options in /proc/mounts, so this is the
    # way to see the option took effect).
    time.sleep(1)
    assert echo_gadget.status()["udc"] == "dummy_udc.0"
    echo_gadget.down()
    echo_gadget.wait_gone()
    assert not echo_gadget.configfs_dir.exists()


def test_systemd_style_prepare_then_bind(make_gadget, test_logs: Path) -> None:  # type: ignore[no-untyped-def]
    """The unit split: prepare; responder started by someone else; bind; down."""
    gadget = make_gadget(up=False)
    gadget.cli("prepare")
    assert gadget.status()["udc"] is None
    with open(test_logs / "external-responder.log", "wb") as log:
        responder = subprocess.Popen(
            [PYTHON, str(Path(ffs_echo.__file__)), str(gadget.mount)],
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        gadget.cli("bind", "--responder-pid", str(responder.pid))
        gadget.wait_enumerated()
        _check_echo(gadget, sizes=(42,))
        gadget.down()  # must stop the process holding the FunctionFS files
        assert responder.wait(timeout=15) is not None
    finally:
        if responder.poll() is None:
            responder.kill()
            responder.wait()
    assert not gadget.configfs_dir.exists()


def _half_build(gadget: Gadget) -> None:
    """What a crash half-way through `up` can leave behind."""
    gdir = CONFIGFS_GADGETS / gadget.name
    gdir.mkdir()
    (gdir / "idVendor").write_text("0x1234")
    (gdir / "strings" / "0x409").mkdir()
    fn = gdir / "functions" / f"ffs.{gadget.name}"
    fn.mkdir()
    cfg = gdir / "configs" / "c.1"
    cfg.mkdir()
    (cfg / "strings" / "0x409").mkdir()
    (cfg / fn.name).symlink_to(fn)
    (gdir / "os_desc" / "c.1").symlink_to(cfg)
    gadget.mount.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "functionfs", gadget.name, str(gadget.mount)], check=True
    )


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"
