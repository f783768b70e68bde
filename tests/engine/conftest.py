"""Fixtures: a real engine process on a real Unix socket, per test."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.daemon.config import EngineConfig

from .helpers import env, make_config, write_toml


@dataclass
class EngineProcess:
    config: EngineConfig
    config_path: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "engine.cli", "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            env=env(),
            check=check,
            timeout=120,
        )


def start_engine(
    cfg: EngineConfig, tmp: Path, extra_env: dict[str, str] | None = None
) -> EngineProcess:
    cpath = write_toml(cfg, tmp / "engine.toml")
    log = tmp / "engine.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--config", str(cpath), "serve"],
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        env={**env(), **(extra_env or {})},
    )
    deadline = time.monotonic() + 20
    # The socket file exists from bind(); the engine serves from listen().
    while not _accepts(cfg.socket_path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("engine did not start:\n" + log.read_text())
        time.sleep(0.05)
    return EngineProcess(cfg, cpath, proc, log)


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def stop_engine(ep: EngineProcess) -> None:
    if ep.proc.poll() is None:
        ep.proc.terminate()
        try:
            ep.proc.wait(10)
        except subprocess.TimeoutExpired:
            ep.proc.kill()
            ep.proc.wait()


@pytest.fixture
def cfg(tmp_path: Path) -> EngineConfig:
    return make_config(tmp_path)


@pytest.fixture
def engine_proc(cfg: EngineConfig, tmp_path: Path) -> Iterator[EngineProcess]:
    """Start lazily-configured engine: tests register owners first, then start it."""
    ep = start_engine(cfg, tmp_path)
    try:
        yield ep
    finally:
        stop_engine(ep)
