"""The kernel's CDC OBEX function beside MTP in one gadget, built by ``mtp-gadget``.

What the kernel does with ``usb_f_obex`` decides what can be offered:

* the function is bound *deactivated* (``bind_deactivated``), which holds the
  whole gadget's pull-up off: the host sees no device at all, MTP included;
* only ``obex_connect()`` activates it again, and the tty layer calls that on
  open only when the host has already selected the data interface
  (``port_usb`` set by ``SET_INTERFACE``), which a host cannot do with a
  device it does not see.

So on this kernel (Debian's 6.1, the same code as mainline) a gadget with an
``obex.*`` function never reaches the host, whether the tty is opened before
or after the bind.  These tests pin that down, together with what
``mtp-gadget`` does around the function (the tty held before the bind, the
status, a tear-down that cannot hang on the tty), so that a kernel that
behaves differently shows up here first.

Run as a program (``python -m tests.e2e.test_obex_usb TTY``) the module is the
tiny OBEX server the tests start through ``obex_command``: :func:`serve_tty`
with the in-memory Folder Browsing server of the OBEX specs.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.guest.support import (
    PYTHON,
    Gadget,
    Tools,
    mtp_responder_command,
)

pytestmark = [pytest.mark.e2e, pytest.mark.long]

OBEX = "obex.usb0"
SERVER = [PYTHON, "-m", "tests.e2e.test_obex_usb", "{tty}"]


def _obex_gadget(make_gadget: Any, guest_tmp: Path, test_logs: Path, **gadget: Any) -> Gadget:
    storage, state = guest_tmp / "storage", guest_tmp / "responder-state"
    storage.mkdir()
    state.mkdir()
    made: Gadget = make_gadget(
        responder_command=mtp_responder_command(),
        extra_functions=["obex.usb0"],
        config={
            "state_dir": str(state),
            "providers": {"files": {"storages": [{"path": str(storage)}]}},
            "gadget": {"obex_log": str(test_logs / "obex-server.log"), **gadget},
        },
        up=False,
    )
    made.write_config()
    return made


def _obex_status(gadget: Gadget) -> dict[str, Any]:
    info = gadget.status()
    (entry,) = info["obex"]
    assert entry["function"] == OBEX
    return {**entry, "info": info}


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout:.0f}s")
        time.sleep(0.1)


def _udc_state() -> str:
    (udc,) = Path("/sys/class/udc").iterdir()
    return (udc / "state").read_text().strip()


def test_up_starts_the_obex_server_on_the_functions_tty_before_binding(
    make_gadget: Any, guest_tmp: Path, test_logs: Path
) -> None:
    gadget = _obex_gadget(make_gadget, guest_tmp, test_logs, obex_command=SERVER)
    gadget.cli("up")
    obex = _obex_status(gadget)
    info = obex["info"]
    port = (gadget.configfs_dir / "functions" / OBEX / "port_num").read_text().strip()
    assert obex["tty"] == f"/dev/ttyGS{port}"
    assert info["configs"] == {"c.1": sorted([f"ffs.{gadget.name}", OBEX])}
    server = info["obex_server"]
    assert server is not None and server["alive"]
    assert obex["holders"] == [server["pid"]], "the OBEX server does not hold its tty"
    assert info["udc"], "not bound although the tty is held"
    lines = gadget.cli("status").stdout
    assert f"obex        {OBEX}: {obex['tty']} held open by pid {server['pid']}" in lines

    # The server put the gadget's tty in raw mode (what a u_serial tty accepts
    # of termios, not only a pseudo-terminal).
    fd = os.open(obex["tty"], os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        iflag, oflag, _, lflag, _, _, _ = termios.tcgetattr(fd)
    finally:
        os.close(fd)
    assert not lflag & (termios.ECHO | termios.ICANON | termios.ISIG)
    assert not iflag & (termios.ICRNL | termios.IXON)
    assert not oflag & termios.OPOST


def test_the_kernel_obex_function_keeps_the_gadget_off_the_bus_with_its_tty_open(
    make_gadget: Any, guest_tmp: Path, test_logs: Path, tools: Tools
) -> None:
    """The whole gadget stays invisible: the kernel's f_obex cannot be offered as is.

    If this fails because the device enumerated, the kernel activates its OBEX
    function now: CDC OBEX over USB (obexftp -u) has become possible, and this
    test should become the obexftp round trip beside MTP.
    """
    gadget = _obex_gadget(make_gadget, guest_tmp, test_logs, obex_command=SERVER)
    gadget.cli("up")
    assert _obex_status(gadget)["holders"], "the tty is not held open"
    time.sleep(10)  # several times what enumeration takes here
    tools.run(["lsusb"], name="lsusb")
    assert gadget.device() is None
    assert _udc_state() == "not attached"
    listing = tools.run(["obexftp", "-u"], name="obexftp-u", timeout=60).output
    assert "Found 0 USB OBEX interfaces" in listing


def test_bind_waits_for_a_server_started_elsewhere_and_fails_naming_the_tty(
    make_gadget: Any, guest_tmp: Path, test_logs: Path
) -> None:
    """No obex_command: the server is another unit's; up binds only once it holds the tty."""
    gadget = _obex_gadget(make_gadget, guest_tmp, test_logs, ready_timeout=5)
    result = gadget.cli("up", check=False)
    assert result.returncode == 1
    assert "/dev/ttyGS" in result.stderr and "not opened after 5s" in result.stderr
    assert "off the bus" in result.stderr
    assert not gadget.configfs_dir.exists(), "a failed up left the gadget behind"


def test_up_binds_once_a_server_started_elsewhere_holds_the_tty_and_down_stops_it(
    make_gadget: Any, guest_tmp: Path, test_logs: Path, tools: Tools
) -> None:
    """The systemd split: the OBEX server is another unit's; mtp-gadget waits for its tty.

    ``down`` then stops that server too before removing the function: the
    kernel's rmdir of a serial function waits, unkillably, for its tty to close.
    """
    gadget = _obex_gadget(make_gadget, guest_tmp, test_logs, ready_timeout=90)
    up_log = open(test_logs / "mtp-gadget-up-background.log", "wb")
    outside_log = open(test_logs / "outside-server.log", "wb")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    up = subprocess.Popen(
        [PYTHON, "-m", "gadget_config.cli", "--config", str(gadget.config_path), "up"],
        stdout=up_log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    outside: subprocess.Popen[bytes] | None = None
    try:
        port_num = gadget.configfs_dir / "functions" / OBEX / "port_num"
        _wait_for(port_num.exists, 60, "the OBEX function")
        tty = f"/dev/ttyGS{port_num.read_text().strip()}"
        _wait_for(Path(tty).exists, 10, tty)
        time.sleep(2)
        assert up.poll() is None, "up finished without anyone holding the tty"
        assert not (gadget.configfs_dir / "UDC").read_text().strip(), "bound too early"
        outside = subprocess.Popen(
            [PYTHON, "-m", "tests.e2e.test_obex_usb", tty],
            stdout=outside_log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        assert up.wait(timeout=120) == 0, (test_logs / "mtp-gadget-up-background.log").read_text()
        obex = _obex_status(gadget)
        assert obex["holders"] == [outside.pid]
        assert obex["info"]["udc"] and obex["info"]["obex_server"] is None

        gadget.cli("down", timeout=60)
        _wait_for(lambda: outside.poll() is not None, 10, "the outside server stopping")
        assert not gadget.configfs_dir.exists()
        assert not Path(tty).exists()
    finally:
        for proc in (up, outside):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        up_log.close()
        outside_log.close()


def test_down_stops_the_obex_server_it_started(
    make_gadget: Any, guest_tmp: Path, test_logs: Path
) -> None:
    gadget = _obex_gadget(make_gadget, guest_tmp, test_logs, obex_command=SERVER)
    gadget.cli("up")
    server = gadget.status()["obex_server"]
    gadget.cli("down", timeout=60)
    assert not Path(f"/proc/{server['pid']}").exists() or (
        Path(f"/proc/{server['pid']}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    )
    assert not gadget.configfs_dir.exists()
    assert "stopping" in (test_logs / "obex-server.log").read_text()


# -- the tiny OBEX server the tests start --------------------------------------------


def _serve(tty: str) -> None:
    import signal

    import trio

    from obex_backup_server.usb import serve_tty
    from tests.obex.peer import MemoryServer

    async def session(stream: trio.abc.Stream) -> None:
        server = MemoryServer(root={"hello.txt": b"hello over USB\r\n"})
        while data := await stream.receive_some():
            if out := server.feed(bytes(data)):
                await stream.send_all(out)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_tty, tty, session)
            logging.info("holding %s", tty)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for number in signals:
                    logging.info("stopping on %s", signal.Signals(number).name)
                    nursery.cancel_scope.cancel()
                    return

    trio.run(main)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    _serve(sys.argv[1])
