"""Pulled cables and crashed processes at named points of every transfer.

The promise under test: every data owner's data is fully old or fully new,
and the device keeps serving.  One rig (a real engine with a passive owner
and the resident notes app, a responder with a file storage and the Backup &
Restore storage) serves every point of a table; after each fault the device is
recovered the way the product is (the cable plugged back in, or systemd's
``Restart=`` and the units' ``ExecStop``/``ExecStartPost``), and then:

* the device enumerates and serves a session, a listing, a small send + get;
* the engine is back in Normal mode;
* no partial file is in the file storage, no staging or half-written file in
  any owner's area, nothing left in the engine's spool;
* each owner's data (the passive files and the notes app's database) is
  exactly the state before the fault or exactly the archive's state, as the
  point allows.

The host side is a pyusb initiator running each transfer in a thread; the
fault fires from inside the transfer (after a byte count, after
SendObjectInfo, after the data phase) or from a watcher that sees the device
reach a state (engine mode, an app's temporary file, the passive directory
swapped).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import usb.core

from mtp_backup.usb import UsbInitiator, find_device
from mtp_responder.core.codes import ROOT, ObjectFormat, OperationCode, ResponseCode
from mtp_responder.core.datasets import ObjectInfoData, build_object_info
from tests.e2e.backup_support import (
    NOTES_SID,
    GuestEngine,
    SavedState,
    app_leftovers,
    change_passive,
    engine_leftovers,
    ensure_app,
    kill_engine,
    many_notes,
    responder_config,
    restart_engine,
    seed_passive,
    set_notes,
)
from tests.e2e.guest.support import (
    LINK,
    PYTHON,
    REPO_ROOT,
    RESULTS,
    Gadget,
    Tools,
    base_config,
    fresh_dir,
    functionfs_mount_points,
    leftover_gadgets,
    make_file,
    mtp_responder_command,
)

pytestmark = pytest.mark.e2e

State = tuple[dict[str, tuple[object, ...]], list[tuple[int, str]]]
FILES = "E2E Storage"
BACKUP_STORAGE = "Backup & Restore"
PLAIN = "plain.bin"
PLAIN_SIZE = 3 << 20
RESUME_WINDOW = 2.0
"""seconds the responder holds a backup whose download was cut off"""
TIMEOUT_MS = 60_000
"""A host transfer the fault cut off fails long before this; a device that hangs does not."""


# -- the rig ------------------------------------------------------------------------------


@dataclass
class Archive:
    """A backup taken once: the state it holds, its bytes, and its snapshot file."""

    path: Path
    snapshot: Path
    state: State
    notes_size: int
    """the notes database's size in the archive: how much the app takes on restore"""


@dataclass
class FaultRig:
    engine: GuestEngine
    gadget: Gadget
    tools: Tools
    work: Path
    plain_digest: str
    udc: str = ""
    restarted: list[subprocess.Popen[bytes]] = field(default_factory=list)
    archive: Archive | None = None
    started: float = 0.0
    """when the current point began, for its timeline"""
    dirty: bool = False
    """a point started and did not finish its checks: the device may be mid-transaction"""
    old: SavedState | None = None
    old_state: State | None = None

    @property
    def storage(self) -> Path:
        return self.work / "storage"

    @property
    def udc_file(self) -> Path:
        return self.gadget.configfs_dir / "UDC"

    @property
    def responder_spool(self) -> Path:
        return self.work / "responder-state" / "backup-restore"

    # -- faults
    def unplug(self) -> None:
        self.udc_file.write_text("\n")

    def responder_pid(self) -> int:
        for proc in reversed(self.restarted):
            if proc.poll() is None:
                return proc.pid
        pid = self.gadget.responder_pid()
        assert pid is not None, "no responder pid file"
        return pid

    def kill_responder(self) -> None:
        """A crash; systemd then runs ExecStop, ``mtp-gadget unbind``: the UDC file emptied."""
        os.kill(self.responder_pid(), signal.SIGKILL)
        self.unplug()

    def kill_engine(self) -> None:
        kill_engine(self.engine)

    def kill_app(self) -> None:
        app = self.engine.app
        assert app is not None and app.poll() is None, "the notes app is not running"
        app.kill()

    # -- recovery
    def replug(self) -> None:
        """The cable plugged back in: the UDC bound again (as ``mtp-gadget bind`` does)."""
        self.gadget.wait_gone()
        for _ in range(100):
            try:
                self.udc_file.write_text(self.udc + "\n")
            except OSError:
                pass
            if self.udc_file.read_text().strip() == self.udc:
                break
            time.sleep(0.1)
        self.gadget.wait_enumerated()

    def restart_responder(self) -> None:
        """``Restart=on-failure``: ExecStart, then ExecStartPost's ``bind --responder-pid``."""
        self.gadget.wait_gone()
        pid = self.responder_pid()
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(self.gadget.responder_log, "ab") as log:
            proc = subprocess.Popen(
                [
                    PYTHON,
                    "-m",
                    "mtp_responder.cli",
                    "--config",
                    str(self.gadget.config_path),
                    "--functionfs",
                    str(self.gadget.mount),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            )
        self.restarted.append(proc)
        self.gadget.cli("bind", "--responder-pid", str(proc.pid))
        self.gadget.wait_enumerated()

    def heal(self) -> None:
        """Before a point: whatever an earlier failed point broke is running again."""
        if self.engine.proc is None or self.engine.proc.poll() is not None:
            restart_engine(self.engine)
        ensure_app(self.engine)
        if self.dirty and self.udc_file.read_text().strip():
            self.unplug()  # whatever transaction the failed point left open goes with it
        if self.gadget.device() is None:
            self.replug()
        self.engine.wait_mode("NORMAL")
        self.dirty = True

    # -- owners' data
    def ensure_archive(self) -> Archive:
        """The backup restores use (its state: big notes), then a changed device."""
        if self.archive is not None:
            return self.archive
        set_notes(self.engine.notes_db, many_notes(500, 1000, seed=7))
        state = self.engine.state()
        path, snapshot = self.work / "new.mbak", self.work / "new.snapshot"
        with session(self) as s:
            backup = s.storage(BACKUP_STORAGE)
            listing = s.children(backup, s.find(backup, "Backup"))
            for name, (handle, _size) in listing.items():
                if name.endswith(".mbak"):
                    with open(path, "wb") as f:
                        s.mtp.get_object_to(handle, f)
                elif name.endswith(".snapshot"):
                    with open(snapshot, "wb") as f:
                        s.mtp.get_object_to(handle, f)
        self.engine.wait_mode("NORMAL")
        assert path.stat().st_size > 1 << 20 and snapshot.stat().st_size > 0
        assert self.engine.state() == state, "taking the backup changed the device"
        self.archive = Archive(path, snapshot, state, self.engine.notes_db.stat().st_size)
        change_passive(self.engine.passive_dir)
        set_notes(self.engine.notes_db, many_notes(250, 1000, seed=8))
        self.old = SavedState.take(self.engine, self.work / "old-state")
        self.old_state = self.engine.state()
        assert self.old_state[0] != state[0] and self.old_state[1] != state[1]
        return self.archive

    def put_back_old(self) -> State:
        """The changed device again, whatever the last point left."""
        self.ensure_archive()
        assert self.old is not None and self.old_state is not None
        if self.engine.state() != self.old_state:
            self.old.put_back(self.engine)
            assert self.engine.state() == self.old_state, "putting the old state back failed"
        return self.old_state


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def rig() -> Iterator[FaultRig]:
    """One engine and one gadget for the whole table (a new rig costs seconds under TCG)."""
    logs = fresh_dir(RESULTS / "logs" / LINK / "test_fault_matrix")
    work = fresh_dir(Path("/tmp/e2e/fault_matrix"))
    home = work / "home"
    home.mkdir()
    tools = Tools(logs, env={"HOME": str(home)})
    engine = GuestEngine(work / "engine", logs / "engine.log", active=True, resident_app=True)
    engine.setup()
    seed_passive(engine.passive_dir, files=14, big=1 << 20)
    gadget: Gadget | None = None
    restarted: list[subprocess.Popen[bytes]] = []
    try:
        engine.start()
        config = base_config(
            name="fault",
            work_dir=work,
            log_dir=logs / "fault",
            responder_command=mtp_responder_command(),
        )
        for table, values in responder_config(engine, work).items():
            if isinstance(values, dict):
                config.setdefault(table, {}).update(values)
            else:
                config[table] = values
        # A download cut off holds the backup for a resume, then Normal comes back:
        # a short window keeps that path in every backup-stream point.
        config["providers"]["backup_restore"]["resume_window"] = RESUME_WINDOW
        (logs / "fault").mkdir(parents=True, exist_ok=True)
        gadget = Gadget(
            tools=tools,
            config=config,
            config_path=work / "fault.toml",
            work_dir=work,
            log_dir=logs,
        )
        gadget.up()
        digest = make_file(work / "storage" / PLAIN, PLAIN_SIZE)
        udc = (gadget.configfs_dir / "UDC").read_text().strip()
        the_rig = FaultRig(engine, gadget, tools, work, digest, udc, restarted)
        yield the_rig
    finally:
        problems = []
        if gadget is not None:
            result = gadget.down(check=False)
            if result.returncode != 0:
                problems.append(result.describe())
        for proc in restarted:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        engine.stop()
        if leftover_gadgets() or functionfs_mount_points():
            problems.append(
                f"left behind: gadgets {leftover_gadgets()}, mounts {functionfs_mount_points()}"
            )
        if problems:
            pytest.fail("fault matrix teardown: " + "\n".join(problems), pytrace=False)


@pytest.fixture
def fault_rig(rig: FaultRig, test_logs: Path) -> FaultRig:
    """The shared rig, healed, its tools logging into this point's directory."""
    rig.tools.log_dir = test_logs
    rig.started = time.monotonic()
    rig.heal()
    mark(rig, "healed")
    return rig


def mark(rig: FaultRig, what: str) -> None:
    """One line of the point's timeline (where its seconds go, under TCG)."""
    with open(rig.tools.log_dir / "timeline.txt", "a") as f:
        f.write(f"{time.monotonic() - rig.started:7.2f} {what}\n")


# -- a host session -------------------------------------------------------------------------


@dataclass
class Session:
    mtp: UsbInitiator
    ids: dict[str, int] = field(default_factory=dict)

    def storage(self, description: str) -> int:
        if not self.ids:
            for sid in self.mtp.storage_ids():
                self.ids[self.mtp.storage_info(sid).storage_description] = sid
        return self.ids[description]

    def children(self, storage: int, parent: int = ROOT) -> dict[str, tuple[int, int]]:
        return {
            info.filename: (handle, info.compressed_size)
            for handle, info in self.mtp.children(storage, parent)
        }

    def find(self, storage: int, path: str) -> int:
        return self.mtp.find(storage, path)


def open_initiator(rig: FaultRig, timeout_s: float = 30) -> UsbInitiator:
    deadline = time.monotonic() + timeout_s
    while True:
        dev = find_device(rig.gadget.vid, rig.gadget.pid)
        if dev is not None:
            try:
                return UsbInitiator(dev, TIMEOUT_MS)
            except (usb.core.USBError, StopIteration):
                pass
        if time.monotonic() > deadline:
            raise AssertionError("the device did not come back")
        time.sleep(0.2)


@contextlib.contextmanager
def session(rig: FaultRig) -> Iterator[Session]:
    mtp = open_initiator(rig)
    try:
        try:
            mtp.open_session()
        except Exception:
            # Left open by a session the fault cut off: start a clean one.
            mtp.close_session()
            mtp.open_session()
        yield Session(mtp)
    finally:
        with contextlib.suppress(Exception):
            mtp.close_session()
        with contextlib.suppress(Exception):
            mtp.close()


# -- faults and where they fire ---------------------------------------------------------------


class Fault:
    """One fault, fired once, by whichever thread reaches its point first."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.lock = threading.Lock()
        self.fired = False
        self.where = ""

    def fire(self, where: str) -> None:
        with self.lock:
            if self.fired:
                return
            self.fired = True
            self.where = where
        self.action()


@dataclass(frozen=True)
class At:
    """After ``fraction`` of the object (minus ``back`` bytes) has moved."""

    fraction: float
    back: int = 0

    def offset(self, size: int) -> int:
        return max(1, min(size, int(size * self.fraction) - self.back))


@dataclass(frozen=True)
class AfterInfo:
    """SendObjectInfo answered, SendObject not sent yet."""


@dataclass(frozen=True)
class AfterData:
    """The whole data phase sent (with its zero-length packet), the response not read."""


@dataclass(frozen=True)
class AfterCommand:
    """The operation's command sent, nothing read yet."""


@dataclass(frozen=True)
class When:
    """The device reached a state a watcher can see (polled while the transfer runs)."""

    what: str
    seen: Callable[[FaultRig, dict[str, Any]], bool]


Trigger = At | AfterInfo | AfterData | AfterCommand | When


def _mode(rig: FaultRig) -> tuple[str, str]:
    try:
        text = rig.engine.state_file.read_text()
    except OSError:
        return "?", "?"
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return fields.get("mode", "?"), fields.get("inc", "?")


def engine_in(mode: str, inc: str | None = None) -> When:
    def seen(rig: FaultRig, memo: dict[str, Any]) -> bool:
        m, i = _mode(rig)
        return m == mode and (inc is None or i == inc)

    return When(f"engine in {mode}{'/' + inc if inc else ''}", seen)


def app_writing(prefix: str) -> When:
    """The notes app holds a temporary file: it is producing or taking its data."""

    def seen(rig: FaultRig, memo: dict[str, Any]) -> bool:
        return any(n.startswith(prefix) for n in app_leftovers(rig.engine))

    return When(f"notes app has a {prefix}* file", seen)


def app_receiving() -> When:
    """The notes app has taken some, not all, of its restore data (its temporary file grows)."""

    def seen(rig: FaultRig, memo: dict[str, Any]) -> bool:
        assert rig.archive is not None
        for p in rig.engine.notes_dir.glob(".notes-restore-*"):
            try:
                size = p.stat().st_size
            except OSError:
                continue
            if 0 < size < rig.archive.notes_size // 2:
                memo["size"] = size
                return True
        return False

    return When("notes app has taken part of its restore data", seen)


def passive_swapped() -> When:
    """The passive owner's private directory is another inode: the swap happened."""

    def seen(rig: FaultRig, memo: dict[str, Any]) -> bool:
        try:
            ino = rig.engine.passive_dir.stat().st_ino
        except OSError:
            return False
        first = memo.setdefault("ino", ino)
        return ino != first

    return When("passive directory swapped in", seen)


def restore_finished() -> When:
    """The engine went into a restore mode and came back to Normal: only the answer is left."""

    def seen(rig: FaultRig, memo: dict[str, Any]) -> bool:
        mode = _mode(rig)[0]
        if mode.startswith("RESTORE"):
            memo["restoring"] = True
        return bool(memo.get("restoring")) and mode == "NORMAL"

    return When("engine back in NORMAL after the restore", seen)


class TriggerReader:
    """A source whose reads stop at the trigger's offset, where the fault then fires."""

    def __init__(self, f: IO[bytes], at: int, fault: Fault, where: str) -> None:
        self.f = f
        self.at = at
        self.pos = 0
        self.fault = fault
        self.where = where

    def read(self, n: int) -> bytes:
        if self.pos >= self.at:
            self.fault.fire(f"{self.where} after {self.pos} bytes")
        elif self.pos + n > self.at:
            n = self.at - self.pos
        data = self.f.read(n)
        self.pos += len(data)
        return data


# -- host operations (each runs in a worker thread) --------------------------------------------


def get_object(mtp: UsbInitiator, handle: int, size: int, fault: Fault, trigger: Trigger) -> None:
    sink = io.BytesIO()
    if isinstance(trigger, At):
        at = trigger.offset(size)

        def progress(got: int) -> None:
            if got >= at:
                fault.fire(f"GetObject after {got} of {size} bytes")

        mtp.get_object_to(handle, sink, progress)
    else:
        mtp.get_object_to(handle, sink)


def send_object(
    mtp: UsbInitiator,
    storage: int,
    parent: int,
    name: str,
    path: Path,
    fault: Fault,
    trigger: Trigger,
) -> ResponseCode:
    size = path.stat().st_size
    info = ObjectInfoData(storage, ObjectFormat.UNDEFINED, 0, size, parent, 0, name)
    mtp.transaction(OperationCode.SEND_OBJECT_INFO, storage, parent, data=build_object_info(info))
    if isinstance(trigger, AfterInfo):
        fault.fire("after SendObjectInfo")
    with open(path, "rb") as f:
        source: IO[bytes] | TriggerReader = f
        if isinstance(trigger, At):
            source = TriggerReader(f, trigger.offset(size), fault, "SendObject")
        tid = mtp.send_command(OperationCode.SEND_OBJECT)
        mtp.send_data_from(OperationCode.SEND_OBJECT, tid, source, size)  # type: ignore[arg-type]
    if isinstance(trigger, AfterData):
        fault.fire("after the data phase, before the response")
    return ResponseCode(mtp.read_response().code)


def list_folder(
    mtp: UsbInitiator, storage: int, parent: int, fault: Fault, trigger: Trigger
) -> None:
    tid = mtp.send_command(OperationCode.GET_OBJECT_HANDLES, storage, 0, parent)
    del tid
    if isinstance(trigger, AfterCommand):
        fault.fire("after GetObjectHandles was sent")
    mtp.read_data(None)


# -- running one point ---------------------------------------------------------------------------


@dataclass
class Outcome:
    where: str
    error: BaseException | None
    result: object = None


def run_with_fault(
    rig: FaultRig,
    host: Callable[[Fault], object],
    fault: Fault,
    trigger: Trigger,
    timeout: float = 120,
) -> Outcome:
    """Run ``host`` in a thread; fire ``fault`` at ``trigger``; wait for the host to give up."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = host(fault)
        except BaseException as exc:  # the fault cuts the transfer off
            box["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    if isinstance(trigger, When):
        memo: dict[str, Any] = {}
        while worker.is_alive() and not fault.fired:
            if trigger.seen(rig, memo):
                fault.fire(trigger.what)
                break
            time.sleep(0.002)
    worker.join(timeout)
    mark(rig, f"host done (fired: {fault.where})")
    assert not worker.is_alive(), f"the host transfer still hangs {timeout:.0f} s after the fault"
    assert fault.fired, (
        f"the transfer ended before its point was reached: {box.get('error') or box.get('result')}"
    )
    (rig.tools.log_dir / "fault.txt").write_text(
        f"fired: {fault.where}\nhost saw: {box.get('error')!r} / {box.get('result')!r}\n"
    )
    return Outcome(fault.where, box.get("error"), box.get("result"))


# -- after a fault: the device serves, nothing is left over, owners old or new --------------------


def assert_serving(rig: FaultRig, complete: set[str]) -> None:
    """A session, a listing of both storages, a small send + get on the file storage.

    ``complete`` names whole files a send left before the fault cut its answer
    off; they are deleted here, as the user who retries would.
    """
    with session(rig) as s:
        files = s.storage(FILES)
        listing = s.children(files)
        assert set(listing) == {PLAIN} | complete, f"file storage lists {sorted(listing)}"
        for name in complete:
            s.mtp.delete_object(listing[name][0])
        backup = s.storage(BACKUP_STORAGE)
        assert set(s.children(backup)) == {"Backup", "Incremental", "Restore"}
        payload = os.urandom(1000)
        handle, response = s.mtp.send_object_from(
            files, ROOT, "probe.txt", io.BytesIO(payload), len(payload)
        )
        assert response.code == ResponseCode.OK, response
        got = io.BytesIO()
        s.mtp.get_object_to(handle, got)
        assert got.getvalue() == payload, "the probe file came back different"
        s.mtp.delete_object(handle)
    assert sorted(p.name for p in rig.storage.iterdir()) == [PLAIN]


def partial_files(rig: FaultRig, allowed: dict[str, str]) -> set[str]:
    """Checks the file storage holds what it held plus only whole copies of ``allowed``.

    Returns the names of those whole copies.
    """
    complete = set()
    for p in rig.storage.iterdir():
        if p.name == PLAIN:
            continue
        digest = allowed.get(p.name)
        assert digest is not None, f"{p.name} is left in the file storage"
        assert _sha256(p) == digest, f"{p.name} is in the file storage, but not whole"
        complete.add(p.name)
    assert _sha256(rig.storage / PLAIN) == rig.plain_digest, f"{PLAIN} changed"
    return complete


def assert_clean_engine(rig: FaultRig, app_files: bool = True) -> None:
    """No staging, half-written file or spooled stream (the engine may still be clearing up).

    ``app_files``: nor the notes app's temporary files (an app that lived through
    the fault drops them when its transfer is cancelled or its engine goes away).
    """
    deadline = time.monotonic() + 20
    while True:
        left = engine_leftovers(rig.engine) + (app_leftovers(rig.engine) if app_files else [])
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, f"left behind: {left}\n{rig.engine.log_tail()}"


def assert_owners(rig: FaultRig, old: State, new: State | None, want: str) -> str:
    """Each owner exactly old or exactly new; ``want`` "old", "new" or "either" per point.

    Returns what each owner ended as, for the point's log.
    """
    passive, notes = rig.engine.state()
    verdicts = []
    for label, got, was, will in (
        ("passive", passive, old[0], new[0] if new else None),
        ("notes", notes, old[1], new[1] if new else None),
    ):
        if got == was:
            verdicts.append((label, "old"))
        elif will is not None and got == will:
            verdicts.append((label, "new"))
        else:
            raise AssertionError(f"{label} data is neither the old nor the archive's state")
    summary = ", ".join(f"{label} {v}" for label, v in verdicts)
    if want != "either":
        assert all(v == want for _, v in verdicts), f"expected every owner {want}: {summary}"
    (rig.tools.log_dir / "owners.txt").write_text(summary + "\n")
    return summary


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_after(
    rig: FaultRig,
    old: State,
    new: State | None = None,
    want: str = "old",
    allowed_files: dict[str, str] | None = None,
    app_files: bool = True,
) -> str:
    mark(rig, "recovered")
    rig.engine.wait_mode("NORMAL")
    complete = partial_files(rig, allowed_files or {})
    assert_serving(rig, complete)
    mark(rig, "served")
    rig.engine.wait_mode("NORMAL")
    assert_clean_engine(rig, app_files)
    mark(rig, "clean")
    spooled = (
        sorted(p.name for p in rig.responder_spool.glob("*"))
        if rig.responder_spool.is_dir()
        else []
    )
    assert not spooled, f"left in the responder's spool: {spooled}"
    summary = assert_owners(rig, old, new, want)
    rig.dirty = False
    return summary


# -- the points --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    name: str
    op: str
    """get-plain, send-plain, list-backup, get-mbak, restore, incremental"""
    trigger: Trigger
    want: str = "old"
    """each owner's data after the fault: old, new (the archive's) or either"""


UPLOAD = "upload.bin"


def host_for(rig: FaultRig, point: Point) -> Callable[[Fault], object]:
    """What the host does at this point, as a function of the fault it will meet."""
    trigger = point.trigger

    def run(fault: Fault) -> object:
        with session(rig) as s:
            if point.op == "get-plain":
                handle, size = s.children(s.storage(FILES))[PLAIN]
                get_object(s.mtp, handle, size, fault, trigger)
                return None
            if point.op == "send-plain":
                return send_object(
                    s.mtp, s.storage(FILES), ROOT, UPLOAD, rig.work / UPLOAD, fault, trigger
                )
            backup = s.storage(BACKUP_STORAGE)
            if point.op == "list-backup":
                list_folder(s.mtp, backup, s.find(backup, "Backup"), fault, trigger)
                return None
            if point.op == "get-mbak":
                listing = s.children(backup, s.find(backup, "Backup"))
                ((handle, size),) = [v for k, v in listing.items() if k.endswith(".mbak")]
                get_object(s.mtp, handle, size, fault, trigger)
                return None
            assert rig.archive is not None
            if point.op == "restore":
                parent = s.find(backup, "Restore")
                return send_object(
                    s.mtp, backup, parent, "fault.mbak", rig.archive.path, fault, trigger
                )
            if point.op == "incremental":
                parent = s.find(backup, "Incremental")
                return send_object(
                    s.mtp, backup, parent, "prev.snapshot", rig.archive.snapshot, fault, trigger
                )
            raise ValueError(point.op)

    return run


UNPLUG_POINTS = [
    Point("get-plain-first-packet", "get-plain", At(0.0)),
    Point("get-plain-middle", "get-plain", At(0.5)),
    Point("get-plain-before-end", "get-plain", At(1.0, back=300_000)),
    Point("send-plain-after-info", "send-plain", AfterInfo()),
    Point("send-plain-early", "send-plain", At(0.1)),
    Point("send-plain-last-bytes", "send-plain", At(1.0, back=100)),
    Point("send-plain-before-response", "send-plain", AfterData()),
    Point("backup-listing-command-sent", "list-backup", AfterCommand()),
    Point("backup-listing-engine-in-backup-mode", "list-backup", engine_in("BACKUP_FULL")),
    Point("backup-listing-notes-app-preparing", "list-backup", app_writing(".notes-backup-")),
    Point("backup-stream-first-packet", "get-mbak", At(0.0)),
    Point("backup-stream-early", "get-mbak", At(0.3)),
    Point("backup-stream-middle", "get-mbak", At(0.5)),
    Point("backup-stream-before-end", "get-mbak", At(1.0, back=300_000)),
    Point("restore-after-info", "restore", AfterInfo()),
    Point("restore-early", "restore", At(0.1)),
    Point("restore-middle", "restore", At(0.5)),
    Point("restore-last-bytes", "restore", At(1.0, back=100)),
    Point("restore-before-response", "restore", AfterData(), want="either"),
    Point("incremental-after-info", "incremental", AfterInfo()),
    Point("incremental-before-response", "incremental", AfterData()),
    Point("incremental-engine-preparing", "incremental", engine_in("BACKUP_FULL", "INCREMENT")),
]

RESTORE_KILL_POINTS = [
    Point("upload-middle", "restore", At(0.5)),
    Point("upload-complete", "restore", AfterData(), want="either"),
    Point("notes-app-receiving", "restore", app_receiving(), want="either"),
    Point("passive-data-swapped", "restore", passive_swapped(), want="new"),
    Point("before-the-response", "restore", restore_finished(), want="new"),
]


def _ids(points: list[Point]) -> list[str]:
    return [p.name for p in points]


def _kill_params(points: list[Point]) -> list[Any]:
    """Minutes of restarts: ``make e2e-long``."""
    return [pytest.param(p, id=p.name, marks=pytest.mark.long) for p in points]


def prepare_point(rig: FaultRig, point: Point) -> tuple[State, State | None]:
    """The owners' state before the fault, and the state a restore would bring."""
    if point.op == "send-plain" and not (rig.work / UPLOAD).exists():
        make_file(rig.work / UPLOAD, 2 << 20)
    # Every point runs on the changed device (the notes app has data worth a window).
    archive = rig.ensure_archive()
    old = rig.put_back_old()
    return old, (archive.state if point.op == "restore" else None)


def tidy_incremental(rig: FaultRig) -> None:
    """A snapshot the fault left whole in Incremental/ is deleted, as the host would."""
    with session(rig) as s:
        backup = s.storage(BACKUP_STORAGE)
        listing = s.children(backup, s.find(backup, "Incremental"))
        for name, (handle, _size) in listing.items():
            if name == "prev.snapshot":
                s.mtp.delete_object(handle)
    rig.engine.wait_mode("NORMAL")


@pytest.mark.parametrize("point", UNPLUG_POINTS, ids=_ids(UNPLUG_POINTS))
def test_unplugged_at(point: Point, fault_rig: FaultRig) -> None:
    rig = fault_rig
    old, new = prepare_point(rig, point)
    run_with_fault(rig, host_for(rig, point), Fault(rig.unplug), point.trigger)
    rig.replug()
    if point.op == "incremental":
        tidy_incremental(rig)
    allowed = {}
    if point.op == "send-plain" and isinstance(point.trigger, AfterData):
        allowed[UPLOAD] = _sha256(rig.work / UPLOAD)  # whole, or not there at all
    check_after(rig, old, new, point.want, allowed)


@pytest.mark.parametrize("point", _kill_params(RESTORE_KILL_POINTS))
def test_responder_killed_during_a_restore_at(point: Point, fault_rig: FaultRig) -> None:
    rig = fault_rig
    old, new = prepare_point(rig, point)
    run_with_fault(rig, host_for(rig, point), Fault(rig.kill_responder), point.trigger)
    rig.restart_responder()
    check_after(rig, old, new, point.want)


@pytest.mark.parametrize("point", _kill_params(RESTORE_KILL_POINTS))
def test_engine_killed_during_a_restore_at(point: Point, fault_rig: FaultRig) -> None:
    rig = fault_rig
    old, new = prepare_point(rig, point)
    outcome = run_with_fault(rig, host_for(rig, point), Fault(rig.kill_engine), point.trigger)
    if point.want == "old":
        # The responder outlived its engine and answered the host.
        assert outcome.error is None and outcome.result != ResponseCode.OK, outcome
    restart_engine(rig.engine)
    check_after(rig, old, new, point.want)


def status_text(rig: FaultRig) -> str:
    with session(rig) as s:
        backup = s.storage(BACKUP_STORAGE)
        handle, _size = s.children(backup, s.find(backup, "Restore"))["status.txt"]
        out = io.BytesIO()
        s.mtp.get_object_to(handle, out)
        return out.getvalue().decode()


@pytest.mark.long
def test_notes_app_killed_while_it_receives_its_restore_data(fault_rig: FaultRig) -> None:
    """Its database stays as it was, the restore is refused with a reason, Normal again."""
    rig = fault_rig
    point = Point("notes-app-killed", "restore", app_receiving())
    old, new = prepare_point(rig, point)
    outcome = run_with_fault(rig, host_for(rig, point), Fault(rig.kill_app), point.trigger)
    assert outcome.error is None and outcome.result != ResponseCode.OK, outcome
    rig.engine.wait_mode("NORMAL")
    status = status_text(rig)
    (rig.tools.log_dir / "status.txt").write_text(status)
    assert "REFUSED" in status.splitlines()[0], status
    assert f"{NOTES_SID:08X}" in status, status
    ensure_app(rig.engine)  # its unit starts it again
    # The killed app could not tidy up after itself: its temporary file is reported.
    summary = check_after(rig, old, new, "either", app_files=False)
    assert summary.endswith("notes old"), summary
    (rig.tools.log_dir / "app-leftovers.txt").write_text("\n".join(app_leftovers(rig.engine)))
