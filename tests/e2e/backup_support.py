"""Guest-side helpers for the backup and restore end-to-end tests.

A real ``backup-engine serve`` runs in the guest with its drive on the guest's
tmpfs and two data owners: a passive one (the example registration, files the
engine copies itself) and the active SQLite notes store (an app the engine
launches and calls back).  The responder's "Backup & Restore" storage talks to
that engine; the tests drive it with libmtp, gphoto2, pyusb and ``mtp-backup``.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.guest.support import (
    REPO_ROOT,
    MtpFile,
    ToolResult,
    Tools,
    parse_mtp_files,
    parse_mtp_folders,
)

EXAMPLES = REPO_ROOT / "examples" / "data_owners"
DEVICE_NAME = "board"
PASSIVE_SID = 0x1000A001
NOTES_SID = 0x1000A002
UNKNOWN_SID = 0x7EADBEEF
LIBMTP_TIMEOUT = 180  # every libmtp tool lists Backup/, which prepares a backup

NOTES_XML = """<?xml version="1.0" encoding="utf-8"?>
<backup_registration version="1.0" name="notes">
  <active_backup process_name="notes_store.py" supports_incremental="yes"/>
</backup_registration>
"""

TreeState = dict[str, tuple[object, ...]]

#: The notes store as a running app: run_owner, with a marker file touched once
#: the engine has accepted it as the owner (so no second copy gets launched).
RESIDENT_APP = """
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import trio

sys.path.insert(0, sys.argv[1])
import notes_store
from engine import sdk

marker, db = Path(sys.argv[2]), Path(sys.argv[3])
connect = sdk.ActiveBackupClient.connect


@asynccontextmanager
async def connect_and_say_so(*args, **kwargs):
    async with connect(*args, **kwargs) as client:
        marker.touch()
        yield client


sdk.ActiveBackupClient.connect = connect_and_say_so
notes_store.open_db(db).close()
trio.run(sdk.run_owner, notes_store.NotesOwner(db))
"""


# -- the engine -------------------------------------------------------------------------


@dataclass
class GuestEngine:
    """``backup-engine serve`` in the guest, with its drive ``c`` on tmpfs."""

    root: Path
    log: Path
    active: bool = True
    resident_app: bool = False
    """the notes store already runs (else the engine launches it for each backup)"""
    proc: subprocess.Popen[bytes] | None = None
    app: subprocess.Popen[bytes] | None = None
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="be-")))
    """socket and state file: a short path (a Unix socket's is limited to 107 bytes)"""

    @property
    def drive(self) -> Path:
        return self.root / "c"

    @property
    def socket(self) -> Path:
        return self.run_dir / "engine.sock"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "bur-mode"

    @property
    def config_path(self) -> Path:
        return self.root / "engine.toml"

    @property
    def passive_dir(self) -> Path:
        return self.drive / "private" / f"{PASSIVE_SID:08X}"

    @property
    def notes_dir(self) -> Path:
        return self.drive / "private" / f"{NOTES_SID:08X}"

    @property
    def notes_db(self) -> Path:
        return self.notes_dir / "notes.db"

    def setup(self) -> None:
        """Registrations and config; the owners' data is the test's business."""
        self.passive_dir.mkdir(parents=True)
        shutil.copy(EXAMPLES / "passive_owner" / "backup_registration.xml", self.passive_dir)
        if self.active:
            self.notes_dir.mkdir(parents=True)
            (self.notes_dir / "backup_registration.xml").write_text(NOTES_XML)
            set_notes(self.notes_db, ["first note", "second note"])
        self.config_path.write_text(
            "\n".join(
                [
                    f'socket_path = "{self.socket}"',
                    f'state_file = "{self.state_file}"',
                    f'spool_dir = "{self.root / "spool"}"',
                    f'device_name = "{DEVICE_NAME}"',
                    f'bin_dirs = ["{EXAMPLES}"]',
                    "ready_timeout = 90.0",
                    "callback_timeout = 90.0",
                    "idle_timeout = 300.0",
                    "client_uids = [0]",
                    "[drives]",
                    f'c = "{self.drive}"',
                    "",
                ]
            )
        )

    def start(self, timeout: float = 90) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO_ROOT)
        env["NOTES_DB"] = str(self.notes_db)  # the notes store finds its database here
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine.cli", "--config", str(self.config_path), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.root,
            )
        deadline = time.monotonic() + timeout
        while not (self.socket.exists() and self.state_file.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"backup engine did not start:\n{self.log_tail()}")
            time.sleep(0.1)
        if self.active and self.resident_app:
            self._start_app(env, deadline)

    def _start_app(self, env: dict[str, str], deadline: float) -> None:
        """Launching an app costs seconds under TCG on every backup; a running one does not."""
        marker = self.run_dir / "app-connected"
        env = {
            **env,
            "BACKUP_ENGINE_SOCKET": str(self.socket),
            "BACKUP_ENGINE_SID": f"{NOTES_SID:08X}",
        }
        with open(self.log.with_name("notes-app.log"), "ab") as log:
            self.app = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    RESIDENT_APP,
                    str(EXAMPLES),
                    str(marker),
                    str(self.notes_db),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        while not marker.exists():
            if self.app.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the notes app did not connect to the engine")
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in (self.app, self.proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no engine log)"

    def mode(self) -> str:
        text = self.state_file.read_text()
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)["mode"]

    def wait_mode(self, mode: str = "NORMAL", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                current = self.mode()
            except (OSError, KeyError):
                current = "?"
            if current == mode:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"engine in {current}, not {mode}, after {timeout}s\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def notes(self) -> list[tuple[int, str]]:
        return read_notes(self.notes_db)

    def add_notes(self, *texts: str) -> None:
        db = sqlite3.connect(self.notes_db)
        with db:
            db.executemany("INSERT INTO notes (text) VALUES (?)", [(t,) for t in texts])
        db.close()

    def state(self) -> tuple[TreeState, list[tuple[int, str]]]:
        """Everything a backup covers: the passive tree and the notes."""
        return tree_state(self.passive_dir), (self.notes() if self.active else [])


def set_notes(path: Path, texts: list[str]) -> None:
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
        db.executemany("INSERT INTO notes (text) VALUES (?)", [(t,) for t in texts])
    db.close()


def read_notes(path: Path) -> list[tuple[int, str]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [(int(i), str(t)) for i, t in db.execute("SELECT id, text FROM notes ORDER BY id")]
    finally:
        db.close()


def responder_config(engine: GuestEngine, work: Path) -> dict[str, Any]:
    """A responder with a file storage and the Backup & Restore storage."""
    storage = work / "storage"
    storage.mkdir(exist_ok=True)
    state = work / "responder-state"
    state.mkdir(exist_ok=True)
    return {
        "device": {"product": "MTP Backup Device"},
        "state_dir": str(state),
        "providers": {
            "files": {"storages": [{"path": str(storage), "description": "E2E Storage"}]},
            "backup_restore": {
                "socket": str(engine.socket),
                "idle_timeout": 120,
                "space_path": str(work),
            },
        },
    }


# -- owners' data ---------------------------------------------------------------------------


def write(path: Path, data: bytes, mode: int = 0o644, mtime_ns: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def seed_passive(root: Path, seed: int = 1, files: int = 14, big: int = 0) -> None:
    """Files of awkward sizes, modes and nanosecond mtimes, nested and empty dirs."""
    rnd = random.Random(seed)
    for i in range(files):
        size = rnd.choice([0, 1, 511, 512, 513, 4096, 20000, 70001])
        mode = rnd.choice([0o600, 0o640, 0o644, 0o755, 0o444])
        write(
            root / f"album{i % 3}" / f"day{i % 2}" / f"photo{i}.jpg",
            rnd.randbytes(size),
            mode,
            1_650_000_000_123_456_789 + i * 1_000_003,
        )
    write(root / "index.txt", b"photo index\n", 0o600, 1_660_000_000_000_000_001)
    (root / "empty" / "deeper").mkdir(parents=True, exist_ok=True)
    os.chmod(root / "empty", 0o750)
    if big:
        write(root / "video" / "clip.mp4", rnd.randbytes(big), 0o644, 1_670_000_000_500_000_000)
    write(root / "cache" / "thumbs.db", b"never backed up")
    write(root / "NoBackup" / "tmp.bin", b"never backed up either")


def change_passive(root: Path) -> None:
    """Modify, add, delete (a file and a whole folder) and chmod."""
    write(root / "album0" / "day0" / "photo0.jpg", b"edited on the device", 0o644)
    write(root / "album9" / "new.jpg", os.urandom(3000), 0o640, 1_690_000_000_000_000_007)
    write(root / "index.txt", b"photo index, second edition\n", 0o600)
    (root / "album1" / "day1" / "photo1.jpg").unlink()
    shutil.rmtree(root / "album2")
    (root / "album0" / "day1" / "photo3.jpg").chmod(0o600)


def wipe(root: Path) -> None:
    """Everything but the registration, as on a freshly reset device."""
    for child in root.iterdir():
        if child.name.startswith("backup_registration"):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


IGNORED = ("backup_registration", "cache", "NoBackup", "notes.db", ".notes-")


def tree_state(root: Path) -> TreeState:
    """What a restore must reproduce: files (content, mode, mtime) and dirs (mode)."""
    out: TreeState = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir.parts and rel_dir.parts[0].startswith(IGNORED):
            continue
        for name in dirnames:
            rel = rel_dir / name
            if not rel.parts[0].startswith(IGNORED):
                out[f"{rel}/"] = ("d", (Path(dirpath) / name).lstat().st_mode & 0o7777)
        for name in filenames:
            rel = rel_dir / name
            if rel.parts[0].startswith(IGNORED):
                continue
            st = (Path(dirpath) / name).lstat()
            digest = hashlib.sha256((Path(dirpath) / name).read_bytes()).hexdigest()
            out[str(rel)] = ("f", digest, st.st_mode & 0o7777, st.st_mtime_ns)
    return out


def outside_files(top: Path, area: Path) -> set[str]:
    """Every path under ``top`` that is not under ``area`` (to find stray writes)."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if area != p and area not in p.parents:
                found.add(str(p.relative_to(top)))
    return found


# -- archives -------------------------------------------------------------------------------


def extract(tools: Tools, archive: Path, dest: Path) -> Path:
    """``tar -xf`` as a PC user would; returns the extraction root."""
    dest.mkdir(parents=True, exist_ok=True)
    tools.run(["tar", "-xf", archive, "-C", dest], name="tar-x", check=True)
    return dest


def passive_files_root(extracted: Path, sid: int = PASSIVE_SID) -> Path:
    return extracted / "owners" / f"{sid:08X}" / "c" / "files"


def active_payload(framed: bytes) -> bytes:
    """The owner's own bytes of an active stream (no proxies in these tests)."""
    (proxies,) = struct.unpack_from("<I", framed)
    assert proxies == 0, f"unexpected proxy data ({proxies} proxies)"
    return framed[4:]


def notes_in_archive(extracted: Path, work: Path) -> list[tuple[int, str]]:
    """The notes the active owner produced for a base backup (a SQLite image)."""
    framed = (extracted / "owners" / f"{NOTES_SID:08X}" / "c" / "active-base").read_bytes()
    db = work / "notes-from-backup.db"
    db.write_bytes(active_payload(framed))
    return read_notes(db)


def rewrite_archive(good: bytes, change: Callable[[tarfile.TarInfo, bytes | None], Any]) -> bytes:
    """Copy a pax tar member by member; ``change`` returns None (keep), a list
    of (TarInfo, data) to write instead, or ``"drop"``."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(good)) as src,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst,
    ):
        for member in src.getmembers():
            f = src.extractfile(member) if member.isfile() else None
            data = f.read() if f is not None else None
            result = change(member, data)
            if result == "drop":
                continue
            items = [(member, data)] if result is None else result
            for info, payload in items:
                if payload is not None:
                    info.size = len(payload)
                dst.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return out.getvalue()


def hostile_archives(good: bytes, outside: Path) -> dict[str, bytes]:
    """One archive per way of escaping or lying, built from a good backup.

    ``outside`` is a path outside every owner's area that a successful attack
    would write to; the test checks it never appears.
    """
    prefix = f"owners/{PASSIVE_SID:08X}/c/files/"
    target = f"{prefix}index.txt"

    def replace_index(make: Callable[[tarfile.TarInfo], list[Any]]) -> Callable[..., Any]:
        def change(m: tarfile.TarInfo, data: bytes | None) -> Any:
            return make(m) if m.name == target else None

        return change

    def link(kind: bytes, linkname: str) -> Callable[[tarfile.TarInfo], list[Any]]:
        def make(m: tarfile.TarInfo) -> list[Any]:
            info = tarfile.TarInfo(m.name)
            info.type = kind
            info.linkname = linkname
            return [(info, None)]

        return make

    def renamed(name: str) -> Callable[[tarfile.TarInfo], list[Any]]:
        def make(m: tarfile.TarInfo) -> list[Any]:
            m.name = name
            return [(m, b"escaped\n")]

        return make

    def device(m: tarfile.TarInfo) -> list[Any]:
        info = tarfile.TarInfo(m.name)
        info.type = tarfile.CHRTYPE
        info.devmajor, info.devminor = 1, 3
        return [(info, None)]

    def grown(m: tarfile.TarInfo, data: bytes | None) -> Any:
        return [(m, (data or b"") + b"x" * 1000)] if m.name == target else None

    def unknown(m: tarfile.TarInfo, data: bytes | None) -> Any:
        old, new = f"{PASSIVE_SID:08X}", f"{UNKNOWN_SID:08X}"
        m.name = m.name.replace(old, new)
        if m.name == "manifest.json" and data is not None:
            return [(m, data.replace(old.encode(), new.encode()))]
        return [(m, data)]

    depth = "../" * 12
    return {
        "path-traversal": rewrite_archive(
            good, replace_index(renamed(f"{prefix}{depth}{str(outside).lstrip('/')}"))
        ),
        "absolute-path": rewrite_archive(good, replace_index(renamed(f"{prefix}/{outside}"))),
        "symlink-out": rewrite_archive(good, replace_index(link(tarfile.SYMTYPE, str(outside)))),
        "hardlink-out": rewrite_archive(
            good, replace_index(link(tarfile.LNKTYPE, f"{depth}{str(outside).lstrip('/')}"))
        ),
        "device-node": rewrite_archive(good, replace_index(device)),
        "size-mismatch": rewrite_archive(good, grown),
        "truncated": good[: len(good) * 2 // 3],
        "unknown-owner": rewrite_archive(good, unknown),
    }


# -- libmtp ---------------------------------------------------------------------------------


def mtp_files(tools: Tools, name: str = "mtp-files") -> list[MtpFile]:
    result = tools.run(["mtp-files"], timeout=LIBMTP_TIMEOUT, name=name, check=True)
    return parse_mtp_files(result.stdout)


def mtp_folders(tools: Tools) -> dict[str, int]:
    result = tools.run(["mtp-folders"], timeout=LIBMTP_TIMEOUT, check=True)
    folders = parse_mtp_folders(result.stdout)
    missing = {"Backup", "owners", "Incremental", "Restore"} - set(folders)
    assert not missing, f"mtp-folders lacks {missing}:\n{result.stdout}"
    return folders


def pick(files: list[MtpFile], parent: int, suffix: str, exclude: str = "") -> MtpFile:
    found = [f for f in files if f.parent_id == parent and f.name.endswith(suffix)]
    found = [f for f in found if f.name != exclude]
    assert len(found) == 1, f"want one {suffix} in folder {parent}, mtp-files shows {files}"
    return found[0]


def getfile(tools: Tools, item_id: int, dest: Path, name: str = "mtp-getfile") -> float:
    """``mtp-getfile``; returns its wall time in seconds."""
    result = tools.run(
        ["mtp-getfile", str(item_id), dest], timeout=LIBMTP_TIMEOUT, name=name, check=True
    )
    assert dest.exists(), result.describe()
    return result.seconds


def sendfile(tools: Tools, local: Path, folder: str, name: str = "mtp-sendfile") -> ToolResult:
    """``mtp-sendfile`` into a folder of the device; the caller judges the result."""
    return tools.run(["mtp-sendfile", local, f"/{folder}"], timeout=LIBMTP_TIMEOUT, name=name)


def sendfile_ok(result: ToolResult) -> bool:
    """libmtp's example tools print errors and may still exit 0: read what they say."""
    return bool(
        result.returncode == 0
        and not result.timed_out
        and "New file ID" in result.stdout
        and "Error sending file" not in result.output
    )


# -- pyusb ----------------------------------------------------------------------------------


@dataclass
class Unplug:
    """Pulls the cable (unbinds the UDC) once ``after`` bytes have moved."""

    udc_file: Path
    after: int
    done: bool = False
    at: int = 0

    def __call__(self, moved: int) -> None:
        if not self.done and moved >= self.after:
            self.done = True
            self.at = moved
            self.udc_file.write_text("\n")


def iter_chunks(data: bytes, size: int = 1 << 16) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


# -- faults: crashes and their recovery --------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc), e.g. the owners an engine launched."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the ")".
        fields = stat_line.rpartition(")")[2].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def kill_engine(engine: GuestEngine) -> None:
    """SIGKILL the engine and, as systemd's cgroup clean-up would, what it launched."""
    proc = engine.proc
    assert proc is not None and proc.poll() is None, "the engine is not running"
    launched = children_of(proc.pid)
    proc.kill()
    proc.wait()
    for pid in launched:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def restart_engine(engine: GuestEngine) -> None:
    """What ``Restart=on-failure`` does: a fresh runtime directory, the same command.

    systemd removes ``RuntimeDirectory`` when the unit stops, so the dead
    engine's socket and mode file are gone before the new one starts (and
    ``start`` waits for the new ones).  The resident notes app exits when its
    engine connection drops; its own unit starts it again.
    """
    if engine.proc is not None and engine.proc.poll() is None:
        raise AssertionError("restart_engine: the engine still runs")
    if engine.app is not None and engine.app.poll() is None:
        try:
            engine.app.wait(30)
        except subprocess.TimeoutExpired:
            raise AssertionError("the notes app kept running after its engine died") from None
    for leftover in (engine.socket, engine.state_file, engine.run_dir / "app-connected"):
        leftover.unlink(missing_ok=True)
    engine.start()


def ensure_app(engine: GuestEngine) -> None:
    """The resident notes app runs and is connected (its unit restarts it)."""
    if not (engine.active and engine.resident_app):
        return
    if engine.app is not None and engine.app.poll() is None:
        return
    # A copy the engine launched for the last backup or restore holds the
    # owner's one session until it winds down after Normal.
    deadline = time.monotonic() + 30
    while engine.proc is not None and children_of(engine.proc.pid):
        if time.monotonic() > deadline:
            raise AssertionError("an owner the engine launched still runs 30 s after Normal")
        time.sleep(0.2)
    (engine.run_dir / "app-connected").unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["NOTES_DB"] = str(engine.notes_db)
    engine._start_app(env, time.monotonic() + 90)


STAGING_LEFTOVERS = (".mbak-staging-", ".mbak-old-", ".mbak-part-")


def engine_leftovers(engine: GuestEngine) -> list[str]:
    """Staging directories, half-written files and spooled streams the engine left behind.

    Only meaningful in Normal mode with no backup prepared: then nothing of a
    restore or a backup may remain, in any owner's area or in the spool.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(engine.drive):
        for name in dirnames + filenames:
            if name.startswith(STAGING_LEFTOVERS):
                found.append(str(Path(dirpath, name).relative_to(engine.root)))
    spool = engine.root / "spool"
    if spool.is_dir():
        found += [f"spool/{p.name}" for p in spool.iterdir()]
    return sorted(found)


def app_leftovers(engine: GuestEngine) -> list[str]:
    """The notes app's own temporary files (``.notes-*``) beside its database."""
    if not engine.notes_dir.is_dir():
        return []
    return sorted(p.name for p in engine.notes_dir.iterdir() if p.name.startswith(".notes-"))


def many_notes(count: int, size: int, seed: int) -> list[str]:
    """Notes large enough that handing them to the app takes a while under TCG."""
    rnd = random.Random(seed)
    return [f"{i} " + rnd.randbytes(size // 2).hex() for i in range(count)]


@dataclass
class SavedState:
    """A copy of every owner's data, to put the device back between fault points."""

    passive: Path
    notes: Path

    @classmethod
    def take(cls, engine: GuestEngine, where: Path) -> SavedState:
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        saved = cls(where / "passive", where / "notes.db")
        shutil.copytree(engine.passive_dir, saved.passive, symlinks=True)
        if engine.active:
            shutil.copy2(engine.notes_db, saved.notes)
        return saved

    def put_back(self, engine: GuestEngine) -> None:
        """Only while the engine is in Normal mode and no transfer is running."""
        wipe(engine.passive_dir)
        for child in self.passive.iterdir():
            if child.name.startswith("backup_registration"):
                continue
            target = engine.passive_dir / child.name
            if child.is_dir():
                shutil.copytree(child, target, symlinks=True)
            else:
                shutil.copy2(child, target)
        shutil.copystat(self.passive, engine.passive_dir)
        if engine.active:
            tmp = engine.notes_db.with_name(".notes-put-back")
            shutil.copy2(self.notes, tmp)
            os.replace(tmp, engine.notes_db)
