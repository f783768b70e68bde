"""``backup-engine`` checks every config key when it loads the file.

A value of the wrong type or out of range stops the command at once with one
line naming the key, never a traceback and never a later failure of ``serve``
(an ``idle_timeout`` that is a string used to load, then kill the engine at its
first idle check). User names in ``client_uids`` are resolved to uids, so
``client_uids = ["root"]`` admits root rather than locking every client out.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.daemon.config import EngineConfig

from .conftest import EngineProcess, stop_engine
from .conftest import _accepts as accepts
from .helpers import env, make_config, write_toml


def serve(config: Path) -> subprocess.CompletedProcess[str]:
    """``backup-engine serve``; a config that passes would serve until the timeout."""
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "--config", str(config), "serve"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=30,
    )


def refused(result: subprocess.CompletedProcess[str], *names: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def config_with(tmp_path: Path, line: str) -> Path:
    """A working test config plus ``line`` (which replaces any line of the same key)."""
    path = write_toml(make_config(tmp_path), tmp_path / "engine.toml")
    key = line.split("=", 1)[0].strip()
    kept = [x for x in path.read_text().splitlines() if x.split("=", 1)[0].strip() != key]
    path.write_text("\n".join([line, *kept]) + "\n")
    return path


BAD_VALUES = {
    "central_repository_sid not hex": ('central_repository_sid = "zz"', "central_repository_sid"),
    "central_repository_sid beyond 32 bits": (
        "central_repository_sid = 0x1_0000_0000",
        "central_repository_sid",
    ),
    "excluded_drives of numbers": ("excluded_drives = [1]", "excluded_drives"),
    "excluded_drives not a list": ('excluded_drives = "z"', "excluded_drives"),
    "excluded_drives not a letter": ('excluded_drives = ["zz"]', "excluded_drives"),
    "spool_dir with NUL": ('spool_dir = "/tmp/a\\u0000b"', "spool_dir"),
    "socket_path empty": ('socket_path = ""', "socket_path"),
    "idle_timeout a string": ('idle_timeout = "x"', "idle_timeout"),
    "idle_timeout negative": ("idle_timeout = -1", "idle_timeout"),
    "idle_timeout infinite": ("idle_timeout = inf", "idle_timeout"),
    "ready_timeout a boolean": ("ready_timeout = true", "ready_timeout"),
    "app_close_delay negative": ("app_close_delay = -0.5", "app_close_delay"),
    "client_uids an unknown user": ('client_uids = ["no-such-user-x"]', "client_uids"),
    "client_uids negative": ("client_uids = [-1]", "client_uids"),
    "socket_group an unknown group": ('socket_group = "no-such-group-x"', "socket_group"),
    "socket_mode beyond permission bits": ("socket_mode = 0o17777", "socket_mode"),
    "socket_mode a string": ('socket_mode = "660"', "socket_mode"),
    "section_size zero": ("section_size = 0", "section_size"),
    "transfer_size a float": ("transfer_size = 1.5", "transfer_size"),
    "launch_owners a string": ('launch_owners = "yes"', "launch_owners"),
    "device_name a number": ("device_name = 5", "device_name"),
    "bin_dirs not a list": ('bin_dirs = "/usr/bin"', "bin_dirs"),
    "state_file a number": ("state_file = 3", "state_file"),
    "unknown key": ("idle_timeot = 5", "idle_timeot"),
}


@pytest.mark.parametrize("line,key", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_bad_value_is_named_at_load(tmp_path: Path, line: str, key: str) -> None:
    path = config_with(tmp_path, line)
    message = refused(serve(path), key)
    assert str(path) in message


def test_drives_must_map_letters_to_paths(tmp_path: Path) -> None:
    path = write_toml(make_config(tmp_path), tmp_path / "engine.toml")
    text = path.read_text()
    for bad, key in (("d = 5", "drives.d"), ('cc = "/x"', "drives.cc")):
        path.write_text(text + bad + "\n")
        refused(serve(path), key)


def test_a_config_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = write_toml(make_config(tmp_path), tmp_path / "engine.toml")
    path.write_bytes(b'device_name = "Caf\xe9"\n' + path.read_bytes())
    for command in ("serve", "status"):
        result = subprocess.run(
            [sys.executable, "-m", "engine.cli", "--config", str(path), command],
            capture_output=True,
            text=True,
            env=env(),
            timeout=30,
        )
        refused(result, str(path), "line 1", "UTF-8")


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    refused(serve(tmp_path / "missing.toml"), str(tmp_path / "missing.toml"))


def test_client_uids_accepts_user_names(tmp_path: Path) -> None:
    """The user running this test, named in ``client_uids``, may act as the backup client."""
    me = pwd.getpwuid(os.getuid()).pw_name
    path = config_with(tmp_path, f'client_uids = ["{me}"]')
    ep = _start_from(path, make_config(tmp_path), tmp_path)
    try:
        out = ep.cli("owners", check=False)
        assert out.returncode == 0, out.stderr
        assert ep.cli("status").stdout.startswith("mode=NORMAL")
    finally:
        stop_engine(ep)


def _start_from(config: Path, cfg: EngineConfig, tmp: Path) -> EngineProcess:
    """A ``serve`` process on a config file written by the test."""
    log = tmp / "engine.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--config", str(config), "serve"],
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        env=env(),
    )
    deadline = time.monotonic() + 20
    while not accepts(cfg.socket_path):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError("engine did not start:\n" + log.read_text())
        time.sleep(0.05)
    return EngineProcess(cfg, config, proc, log)
