"""A config the commands cannot use gives one line naming the key, never a traceback.

Each case runs the real command (``python -m <package>.cli``): ``mtp-responder
--check-config`` must refuse exactly what a start refuses, with the same message,
and ``mtp-gadget`` must read the same file as carefully.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def refused(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """The one line a refused config gives, checked to name every one of ``names``."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mtp-responder.toml"
    path.write_text(text)
    return path


LATIN1 = b'[device]\nmanufacturer = "Acme"\nproduct = "Caf\xe9 frame"\n'


def test_a_config_that_is_not_utf8_is_named_by_the_responder(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(LATIN1)
    for mode in ("--check-config", "--loopback"):
        line = refused(run("mtp_responder.cli", "--config", str(path), mode), str(path), "UTF-8")
        assert "line 3" in line


def test_a_config_that_is_not_utf8_is_named_by_the_gadget(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(LATIN1)
    refused(run("gadget_config.cli", "--config", str(path), "show-config"), str(path), "UTF-8")


def storage(path: Path, extra: str = "") -> str:
    return f'[[providers.files.storages]]\npath = "{path}"\n{extra}'


CHECKED_AT_START: dict[str, tuple[Callable[[Path], str], str]] = {
    "missing storage directory": (
        lambda tmp: storage(tmp / "nowhere"),
        "providers.files.storages[0].path",
    ),
    "unknown storage key": (
        lambda tmp: storage(tmp, "readonly = true\n"),
        "providers.files.storages[0].readonly",
    ),
    "unknown provider": (
        lambda tmp: storage(tmp) + "[providers.nosuch]\n",
        "providers.nosuch.plugin",
    ),
    "backup idle_timeout of the wrong type": (
        lambda tmp: (
            storage(tmp) + '[providers.backup]\nplugin = "backup_restore"\nidle_timeout = "x"\n'
        ),
        "providers.backup.idle_timeout",
    ),
    "backup idle_timeout not positive": (
        lambda tmp: (
            storage(tmp) + '[providers.backup]\nplugin = "backup_restore"\nidle_timeout = 0\n'
        ),
        "providers.backup.idle_timeout",
    ),
    "backup idle_timeout a boolean": (
        lambda tmp: (
            storage(tmp) + '[providers.backup]\nplugin = "backup_restore"\nidle_timeout = true\n'
        ),
        "providers.backup.idle_timeout",
    ),
    "plugin module that does not import": (
        lambda tmp: storage(tmp) + '[providers.extra]\nplugin = "no_such_module_x:Provider"\n',
        "providers.extra.plugin",
    ),
    "plugin attribute that does not exist": (
        lambda tmp: storage(tmp) + '[providers.extra]\nplugin = "data_providers.files:Nothing"\n',
        "providers.extra.plugin",
    ),
    "plugin that is not a provider class": (
        lambda tmp: storage(tmp) + '[providers.extra]\nplugin = "os:sep"\n',
        "providers.extra.plugin",
    ),
}


@pytest.mark.parametrize("make,key", CHECKED_AT_START.values(), ids=CHECKED_AT_START.keys())
def test_check_config_refuses_what_a_start_refuses(
    tmp_path: Path, make: Callable[[Path], str], key: str
) -> None:
    path = write(tmp_path, make(tmp_path))
    checked = refused(run("mtp_responder.cli", "--config", str(path), "--check-config"), key)
    started = refused(run("mtp_responder.cli", "--config", str(path), "--loopback"), key)
    assert checked == started


def test_check_config_accepts_a_config_that_starts(tmp_path: Path) -> None:
    path = write(tmp_path, storage(tmp_path) + '[providers.backup]\nplugin = "backup_restore"\n')
    result = run("mtp_responder.cli", "--config", str(path), "--check-config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path}: OK"


def test_an_unwritable_log_file_is_a_message(tmp_path: Path) -> None:
    path = write(tmp_path, storage(tmp_path))
    log = tmp_path / "no" / "such" / "dir" / "log"
    result = run("mtp_responder.cli", "--config", str(path), "--log-file", str(log), "--loopback")
    refused(result, str(log))


GADGET_VALUES = {
    "os_desc a string": ('[gadget]\nos_desc = "no"\n', "gadget.os_desc"),
    "max_power out of range": ("[gadget]\nmax_power = 1000\n", "gadget.max_power"),
    "state_dir relative": ('[gadget]\nstate_dir = "run"\n', "gadget.state_dir"),
    "udc with a slash": ('[gadget]\nudc = "../x"\n', "gadget.udc"),
    "responder_command of the wrong type": (
        "[gadget]\nresponder_command = 0\n",
        "gadget.responder_command",
    ),
    "ready_timeout not finite": ("[gadget]\nready_timeout = inf\n", "gadget.ready_timeout"),
}


@pytest.mark.parametrize("text,key", GADGET_VALUES.values(), ids=GADGET_VALUES.keys())
def test_the_gadget_names_a_bad_value(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    refused(run("gadget_config.cli", "--config", str(path), "show-config"), key)
