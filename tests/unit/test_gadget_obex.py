"""mtp-gadget and the CDC OBEX function: the config, the tty holders, the status.

The configfs side runs in the VM (tests/e2e/test_obex_usb.py); these need no
kernel gadget.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gadget_config.gadget import iter_status_lines, tty_holders
from gadget_config.settings import ConfigError, format_keys, parse

SERVER = ["{python}", "/opt/obex-on-tty.py", "{tty}", "--config", "{config}"]


def gadget(**keys: object) -> dict[str, object]:
    return {"gadget": keys}


def test_an_obex_function_and_its_server_command_are_read() -> None:
    s = parse(gadget(extra_functions=["obex.usb0"], obex_command=SERVER), Path("/etc/m.toml"))
    assert s.obex_function == "obex.usb0"
    assert s.obex_argv("/dev/ttyGS1") == [
        sys.executable, "/opt/obex-on-tty.py", "/dev/ttyGS1", "--config", "/etc/m.toml",
    ]  # fmt: skip
    assert s.obex_pid_file == Path("/run/mtp-gadget/mtp-obex.pid")
    assert s.obex_log == Path("/run/mtp-gadget/mtp-obex.log")
    assert any(
        line.startswith("OBEX server") and "obex-on-tty.py" in line for line in format_keys(s)
    )


def test_without_an_obex_function_there_is_no_obex_server() -> None:
    s = parse(gadget(extra_functions=["acm.usb0"]))
    assert s.obex_function is None
    assert "no obex function" in format_keys(s)[-1]


def test_an_obex_function_without_a_command_waits_for_a_server_started_elsewhere() -> None:
    s = parse(gadget(extra_functions=["obex.usb0"]))
    assert s.obex_function == "obex.usb0" and s.gadget.obex_command == ()
    assert "started by someone else" in format_keys(s)[-1]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"obex_command": SERVER},
            "gadget.obex_command: the gadget has no OBEX function",
        ),
        (
            {"extra_functions": ["obex.usb0"], "obex_command": "obexd --tty {tty}"},
            "gadget.obex_command: give a list of arguments",
        ),
        (
            {"extra_functions": ["obex.usb0"], "obex_command": ["srv", "--tty={ttty}"]},
            "gadget.obex_command: '--tty={ttty}': unknown placeholder {ttty}",
        ),
        (
            {"extra_functions": ["obex.usb0"], "obex_command": ["srv", "{tty"]},
            "gadget.obex_command: '{tty'",
        ),
        (
            {"extra_functions": ["obex.a", "obex.b"]},
            "gadget.extra_functions: obex.a, obex.b: at most one obex function",
        ),
        (
            {"extra_functions": ["acm.a", "acm.b", "gser.c", "acm.d", "obex.e"]},
            "gadget.extra_functions: 5 serial functions (acm.a, acm.b, gser.c, acm.d, obex.e)",
        ),
        (
            {"extra_functions": ["obex.usb0", "obex.usb0"]},
            "gadget.extra_functions: 'obex.usb0' is listed twice",
        ),
        ({"obex_log": 3}, "gadget.obex_log: expected a string"),
    ],
    ids=[
        "command without function",
        "shell string",
        "misspelt placeholder",
        "broken placeholder",
        "two obex functions",
        "five serial ports",
        "duplicate",
        "log not a string",
    ],
)
def test_bad_obex_settings_name_the_key(keys: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(gadget(**keys))
    assert str(info.value).startswith(message), str(info.value)


def test_four_serial_functions_are_allowed() -> None:
    s = parse(gadget(extra_functions=["acm.a", "acm.b", "gser.c", "obex.d", "ecm.e"]))
    assert s.obex_function == "obex.d"


@pytest.fixture
def held_pty() -> Iterator[tuple[str, int]]:
    """A pseudo-terminal held open by a child process, as an OBEX server holds its tty."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    child = subprocess.Popen(["sleep", "60"], stdin=slave, close_fds=True)
    os.close(slave)
    try:
        yield path, child.pid
    finally:
        child.kill()
        child.wait()
        os.close(master)


def test_tty_holders_finds_the_process_holding_the_tty(held_pty: tuple[str, int]) -> None:
    path, pid = held_pty
    deadline = time.monotonic() + 5
    while pid not in tty_holders(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tty_holders(path) == [pid]
    assert tty_holders(path + "-other") == []


def test_tty_holders_ignores_this_process(held_pty: tuple[str, int]) -> None:
    path, child = held_pty
    mine = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        deadline = time.monotonic() + 5
        while child not in tty_holders(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert tty_holders(path) == [child]
    finally:
        os.close(mine)


def _info(**extra: object) -> dict[str, object]:
    info: dict[str, object] = {
        "gadget": "/sys/kernel/config/usb_gadget/mtp",
        "exists": True,
        "attributes": {},
        "strings": {},
        "functions": ["ffs.mtp", "obex.usb0"],
        "configs": {"c.1": ["ffs.mtp", "obex.usb0"]},
        "os_desc": None,
        "udc": None,
        "mounts": [],
        "responder": None,
        "obex_server": None,
        "available_udcs": ["dummy_udc.0"],
    }
    info.update(extra)
    return info


def test_status_shows_the_obex_function_its_tty_and_who_holds_it() -> None:
    lines = list(
        iter_status_lines(
            _info(
                obex=[{"function": "obex.usb0", "tty": "/dev/ttyGS0", "holders": [42]}],
                obex_server={"pid": 42, "alive": True, "log": "/run/x.log"},
            )
        )
    )
    assert "obex        obex.usb0: /dev/ttyGS0 held open by pid 42" in lines
    assert "obex server pid 42 running; log /run/x.log" in lines


def test_status_says_an_unopened_obex_tty_keeps_the_gadget_off_the_bus() -> None:
    lines = list(
        iter_status_lines(
            _info(obex=[{"function": "obex.usb0", "tty": "/dev/ttyGS0", "holders": []}])
        )
    )
    line = next(line for line in lines if line.startswith("obex "))
    assert "/dev/ttyGS0 not open" in line and "off the bus" in line
