"""Builders for data roots, registrations and trees used by the engine tests."""

from __future__ import annotations

import os
import random
from pathlib import Path

import trio

from engine.client import EngineClient
from engine.daemon.config import EngineConfig
from engine.types import DataOwnerStatus, format_sid

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "data_owners"


def make_config(tmp: Path, **kw: object) -> EngineConfig:
    drives = {"c": tmp / "c", "e": tmp / "e"}
    for p in drives.values():
        (p / "private").mkdir(parents=True, exist_ok=True)
    base: dict[str, object] = {
        "drives": drives,
        "socket_path": tmp / "run" / "engine.sock",
        "state_file": tmp / "run" / "bur-mode",
        "spool_dir": tmp / "spool",
        "device_name": "testdev",
        "bin_dirs": (EXAMPLES,),
        "ready_timeout": 20.0,
        "callback_timeout": 20.0,
    }
    base.update(kw)
    return EngineConfig(**base)  # type: ignore[arg-type]


def private(cfg: EngineConfig, sid: int, drive: str = "c") -> Path:
    p = cfg.drives[drive] / "private" / format_sid(sid)
    p.mkdir(parents=True, exist_ok=True)
    return p


def register(
    cfg: EngineConfig, sid: int, xml: str, drive: str = "c", name: str = "backup_registration.xml"
) -> Path:
    p = private(cfg, sid, drive)
    (p / name).write_text(xml)
    return p


PASSIVE_ALL = """<?xml version="1.0"?>
<backup_registration version="1.0">
  <passive_backup>
    <include_directory name="\\"/>
    <exclude name="cache/"/>
  </passive_backup>
</backup_registration>
"""


def write_file(p: Path, data: bytes, mtime_ns: int | None = None, mode: int = 0o644) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    os.chmod(p, mode)
    if mtime_ns is not None:
        os.utime(p, ns=(mtime_ns, mtime_ns))


def make_tree(root: Path, seed: int = 1, files: int = 20) -> None:
    rnd = random.Random(seed)
    for i in range(files):
        d = root / f"d{i % 4}" / f"s{i % 3}"
        size = rnd.choice([0, 1, 511, 512, 513, 4096, 70000])
        write_file(
            d / f"f{i}.bin", rnd.randbytes(size), 1_600_000_000_123_456_789 + i * 1000, 0o640
        )
    (root / "empty" / "deeper").mkdir(parents=True, exist_ok=True)
    write_file(root / "ro.txt", b"read only", None, 0o444)
    write_file(root / "cache" / "junk", b"never backed up")
    write_file(root / "NoBackup" / "tmp", b"never backed up either")


def tree_state(
    root: Path, skip: tuple[str, ...] = ("backup_registration",)
) -> dict[str, tuple[object, ...]]:
    """Everything a restore must reproduce: type, content, mode, mtime (dirs: mode only)."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames:
            p = Path(dirpath) / n
            st = p.lstat()
            out[str(p.relative_to(root)) + "/"] = ("d", st.st_mode & 0o7777, st.st_mtime_ns)
        for n in filenames:
            if n.startswith(skip):
                continue
            p = Path(dirpath) / n
            st = p.lstat()
            out[str(p.relative_to(root))] = (
                "f",
                p.read_bytes(),
                st.st_mode & 0o7777,
                st.st_mtime_ns,
            )
    return out


def write_toml(cfg: EngineConfig, path: Path) -> Path:
    """Write the config as TOML so a real ``backup-engine serve`` process can load it."""
    lines = [
        f'socket_path = "{cfg.socket_path}"',
        f'state_file = "{cfg.state_file}"',
        f'spool_dir = "{cfg.spool_dir}"',
        f'device_name = "{cfg.device_name}"',
        f"bin_dirs = [{', '.join(repr(str(d)).replace(chr(39), chr(34)) for d in cfg.bin_dirs)}]",
        f"ready_timeout = {cfg.ready_timeout}",
        f"callback_timeout = {cfg.callback_timeout}",
        f"idle_timeout = {cfg.idle_timeout}",
        f"client_uids = [{', '.join(str(u) for u in cfg.client_uids)}]",
        "[drives]",
    ]
    lines += [f'{k} = "{v}"' for k, v in cfg.drives.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


async def wait_for_status(
    client: EngineClient, sid: int, status: DataOwnerStatus, timeout: float = 15.0
) -> None:
    """Poll the engine until owner ``sid`` reports ``status``; fail after ``timeout`` s.

    Owners are separate processes that confirm readiness in their own time, and
    the engine publishes no event for it: polling with a deadline is the only
    wait that neither hangs nor guesses.
    """
    with trio.fail_after(timeout):
        while (await client.sid_status([sid]))[sid] != status:
            await trio.sleep(0.05)
