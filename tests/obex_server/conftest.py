"""Fixtures: a real engine process with one data owner, and the OBEX server process on it.

The server is started as ``obex-backup-server`` would be by systemd, with a
TOML config, on an ephemeral TCP port it names in its log; the tests talk to
it with Debian's ``obexftp`` binary.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.engine.conftest import EngineProcess, start_engine, stop_engine
from tests.engine.helpers import PASSIVE_ALL, env, make_config, make_tree, register, tree_state

SID = 0x10203040
KEEP_OUT = ("cache", "NoBackup")
OBEXFTP = shutil.which("obexftp")
needs_obexftp = pytest.mark.skipif(OBEXFTP is None, reason="obexftp is not installed")


@dataclass
class ObexServer:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    engine: EngineProcess
    owner_dir: Path

    def mode(self) -> str:
        state = self.engine.config.state_file
        assert state is not None
        lines = state.read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)["mode"]

    def wait_normal(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.mode() != "NORMAL":
            assert time.monotonic() < deadline, f"engine still in {self.mode()}"
            time.sleep(0.05)

    def owner_state(self) -> dict[str, tuple[object, ...]]:
        state = tree_state(self.owner_dir)
        return {k: v for k, v in state.items() if not k.startswith(KEEP_OUT)}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "obex_backup_server.cli", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),
        env=env(),
    )
    deadline = time.monotonic() + 20
    while True:
        found = re.search(r"listening on tcp \S+:(\d+)", log.read_text(errors="replace"))
        if found:
            return proc, int(found.group(1))
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("obex-backup-server did not start:\n" + log.read_text())
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    cfg = make_config(tmp_path / "engine", device_name="board")
    make_tree(register(cfg, SID, PASSIVE_ALL))
    proc = start_engine(cfg, tmp_path / "engine")
    yield proc
    stop_engine(proc)


def launch(tmp_path: Path, engine: EngineProcess, obex: str = "", keys: str = "") -> ObexServer:
    """Start the server on ``engine``; ``obex`` and ``keys`` go into ``[obex]`` and ``[engine]``."""
    config = tmp_path / "obex.toml"
    config.write_text(
        "[obex]\n"
        'listen = "127.0.0.1:0"\n'
        "busy_wait = 2.0\n"
        f"{obex}\n"
        "[engine]\n"
        f'socket = "{engine.config.socket_path}"\n'
        "idle_timeout = 600.0\n"
        f'spool_dir = "{tmp_path / "spool"}"\n'
        f'space_path = "{tmp_path}"\n'
        f"{keys}\n"
    )
    log = tmp_path / "obex.log"
    proc, port = start_server(config, log)
    owner = engine.config.drives["c"] / "private" / f"{SID:08X}"
    return ObexServer(proc, log, port, engine, owner)


@pytest.fixture
def server(tmp_path: Path, engine: EngineProcess) -> Iterator[ObexServer]:
    running = launch(tmp_path, engine)
    yield running
    stop(running.proc)
