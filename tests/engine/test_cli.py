"""The ``backup-engine`` command line against a real engine process."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from engine.daemon.config import EngineConfig
from engine.types import format_sid

from .conftest import EngineProcess
from .helpers import PASSIVE_ALL, make_tree, register, tree_state

SID = 0x0FA00010


def _strip(state: dict[str, tuple[object, ...]]) -> dict[str, tuple[object, ...]]:
    return {k: v for k, v in state.items() if not k.startswith(("cache", "NoBackup"))}


def test_cli_backup_restore_roundtrip(
    cfg: EngineConfig, engine_proc: EngineProcess, tmp_path: Path
) -> None:
    """backup then restore round-trips contents, mtimes, modes and empty directories."""
    pd = register(cfg, SID, PASSIVE_ALL)
    make_tree(pd, files=40)
    before = tree_state(pd)
    out = engine_proc.cli("owners")
    assert format_sid(SID) in out.stdout
    arc = tmp_path / "b.mbak"
    r = engine_proc.cli("--progress", "backup", str(arc))
    assert "backup" in r.stderr and "%" in r.stderr
    assert arc.exists() and (tmp_path / "b.snapshot").exists()
    # Plain tar can read it, and extracting gives the same bytes and mtimes.
    x = tmp_path / "x"
    x.mkdir()
    subprocess.run(["tar", "-xf", str(arc), "-C", str(x)], check=True)
    files = x / "owners" / format_sid(SID) / "c" / "files"
    assert (files / "d0" / "s0" / "f0.bin").read_bytes() == (
        pd / "d0" / "s0" / "f0.bin"
    ).read_bytes()
    assert (files / "d0" / "s0" / "f0.bin").stat().st_mtime_ns == (
        pd / "d0" / "s0" / "f0.bin"
    ).stat().st_mtime_ns
    assert (files / "empty" / "deeper").is_dir()
    # Change the device, restore, compare.
    (pd / "d2" / "s2" / "f2.bin").write_bytes(b"new content")
    (pd / "added.txt").write_text("x")
    os.rmdir(pd / "empty" / "deeper")
    os.chmod(pd / "ro.txt", 0o600)
    r = engine_proc.cli("restore", str(arc))
    assert "restored" in r.stdout
    assert _strip(tree_state(pd)) == _strip(before)
    st = engine_proc.cli("status")
    assert "mode=NORMAL" in st.stdout


def test_cli_increment_removes_deleted_directories(
    cfg: EngineConfig, engine_proc: EngineProcess, tmp_path: Path
) -> None:
    """A deleted folder stays deleted and a chmod comes back, after base + increment."""
    pd = register(cfg, SID, PASSIVE_ALL)
    make_tree(pd, files=12)
    engine_proc.cli("-q", "backup", str(tmp_path / "base.mbak"))
    shutil.rmtree(pd / "d1")
    os.chmod(pd / "ro.txt", 0o640)  # mtime and size stay the same
    latest = _strip(tree_state(pd))
    engine_proc.cli(
        "-q", "backup", str(tmp_path / "inc.mbak"), "--incremental", str(tmp_path / "base.snapshot")
    )
    engine_proc.cli("restore", str(tmp_path / "base.mbak"))
    assert (pd / "d1").is_dir()
    engine_proc.cli("restore", str(tmp_path / "inc.mbak"))
    assert not (pd / "d1").exists()
    assert {k: v[:3] for k, v in _strip(tree_state(pd)).items()} == {
        k: v[:3] for k, v in latest.items()
    }
