"""Resumable and encrypted backups on a real gadget.

A download of the backup cut off by pulling the cable (the UDC unbound) is
held by the device for ``resume_window`` seconds; ``mtp-backup backup DIR``
then continues its ``.part`` file with GetPartialObject64 and must end with
exactly the bytes an uninterrupted download of the same archive gives.  The
cut is made at three places: inside the first packet, a third of the way in,
and within the last KiB (the device has then queued the whole archive, so
only what the host really read may count).

With an age recipient configured the device serves ``<name>.mbak.age``: age
and tar open it on the PC, the device restores it with its identity file and
refuses it without one, or altered by one byte.  The throughput and the
responder's CPU time of the encrypted backup are measured next to the plain
one of the same data.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mtp_backup.backup import pick as pick_produced
from mtp_backup.device import BackupDevice, RemoteObject, open_device, partial_path
from mtp_backup.usb import READ_SIZE
from mtp_backup.verify import verify_archive
from mtp_responder.core.codes import OperationCode
from mtp_responder.core.container import HEADER_SIZE
from tests.e2e.backup_support import (
    PASSIVE_SID,
    GuestEngine,
    Unplug,
    change_passive,
    getfile,
    mtp_files,
    passive_files_root,
    responder_config,
    seed_passive,
    sendfile,
    sendfile_ok,
    tree_state,
)
from tests.e2e.guest.support import RESULTS, Gadget, Tools, mtp_responder_command
from tests.e2e.test_backup import (  # noqa: F401  (engines and make_rig are fixtures)
    USB_TIMEOUT,
    MakeRig,
    Rig,
    assert_refused,
    assert_state,
    backup_files,
    engines,
    make_rig,
    mtp_backup,
    status_text,
)

pytestmark = [pytest.mark.e2e, pytest.mark.long]

RESUME_WINDOW = 120.0
"""Seconds the device holds a cut-off backup: ample for a replug under TCG."""
GIB = 1 << 30


# -- cutting a download off ---------------------------------------------------------------


@dataclass
class CutDownload:
    """What a download cut off at ``cut`` left: the object, its partial file, a reference."""

    obj: RemoteObject
    part: Path
    cut: int
    reference: bytes = b""
    """The archive read whole while it is held, except its last byte (see below)."""


def read_reference(obj: RemoteObject) -> bytes:
    """The held archive in one uninterrupted GetPartialObject64, but for its very last byte.

    A new session, as the host's next one: it must list the same archive (name,
    size, handle).  A read that reached the archive's end would make the
    download finished, and the end of the session would release the backup;
    one byte short keeps it held for ``mtp-backup``.  The resumed file's last
    byte is covered by its own checks (mtp-backup verifies the whole file).
    """
    with open_device(None, USB_TIMEOUT) as dev:
        again = pick_produced(dev.folder("Backup"), ".mbak")
        assert (again.name, again.size, again.handle) == (obj.name, obj.size, obj.handle), (
            f"the device did not hold the cut-off backup: it lists {again}, not {obj}"
        )
        sink = _Bytes()
        got = dev.mtp.get_partial_object_to(obj.handle, 0, obj.size - 1, sink, wide=True)
    assert got == obj.size - 1, (got, obj.size)
    return bytes(sink.data)


def cut_get_object(
    rig: Rig, dev: BackupDevice, obj: RemoteObject, part: Path, cut: int, pause: float = 0.0
) -> None:
    """GetObject read raw, packet-exact, until ``cut`` bytes are kept; then the cable is pulled.

    libmtp and pyusb read 256 KiB at a time; here the reads are sized so the
    host takes no packet beyond the one holding byte ``cut``: the device still
    has the rest to send when its UDC is unbound, ``pause`` seconds later.
    """
    mtp = dev.mtp
    mps = int(mtp.mps)
    mtp.send_command(OperationCode.GET_OBJECT, obj.handle)
    wire_goal = -(-(cut + HEADER_SIZE) // mps) * mps  # whole packets up to byte ``cut``
    assert wire_goal < obj.size + HEADER_SIZE, "the cut would take the whole data phase"
    wire = bytearray()
    while len(wire) < wire_goal:
        want = min(READ_SIZE, wire_goal - len(wire))
        data = bytes(mtp.ep_in.read(want, int(USB_TIMEOUT * 1000)))
        assert data, "the device ended the data phase early"
        wire += data
    length = int.from_bytes(wire[:4], "little")
    assert length == obj.size + HEADER_SIZE, f"data phase of {length} bytes for {obj.size}"
    part.write_bytes(wire[HEADER_SIZE : HEADER_SIZE + cut])
    time.sleep(pause)
    rig.udc_file.write_text("\n")


def cut_off(rig: Rig, directory: Path, where: Callable[[int], int]) -> CutDownload:
    """A session that lists Backup/ and has its GetObject of the .mbak cut off."""
    directory.mkdir(parents=True, exist_ok=True)
    with open_device(None, USB_TIMEOUT) as dev:
        obj = pick_produced(dev.folder("Backup"), ".mbak")
        cut = where(obj.size)
        assert 0 < cut < obj.size, (cut, obj.size)
        part = partial_path(directory, obj)
        cut_get_object(rig, dev, obj, part, cut)
    assert part.stat().st_size == cut
    rig.replug()
    return CutDownload(obj, part, cut)


def assert_held(obj: RemoteObject) -> None:
    status = status_text()  # Restore/ only: reading it does not end the hold
    line = f"backup {obj.name} held for resuming until"
    assert line in status, f"the device does not hold the cut-off backup:\n{status}"


def assert_same_archive(got: Path, cut: CutDownload, what: str, verify: bool = True) -> None:
    """Byte for byte the reference, then (unless mtp-backup just did) the archive's own checks."""
    data = got.read_bytes()
    assert len(data) == cut.obj.size, f"{what}: {len(data)} bytes, the device listed {cut.obj.size}"
    if data[:-1] != cut.reference:
        first = next(i for i, (a, b) in enumerate(zip(data, cut.reference, strict=False)) if a != b)
        raise AssertionError(
            f"{what}: differs from the uninterrupted download from byte {first} (cut at {cut.cut})"
        )
    if verify:
        verify_archive(got)


QUEUED_AHEAD = 1 << 20
"""Bytes the responder may have queued for the host beyond what it read
(``2 * blocks_in_flight * buffer_size`` with the default transport)."""

CUTS: dict[str, Callable[[int], int]] = {
    "inside-the-first-512-bytes": lambda size: 300,
    "a-third-in": lambda size: size // 3,
    "before-the-last-queued-stretch": lambda size: size - 2 * QUEUED_AHEAD,
}


def test_mtp_backup_resumes_a_download_cut_off_at_three_offsets(
    make_rig: MakeRig,  # noqa: F811
    tools: Tools,
    guest_tmp: Path,
) -> None:
    rig = make_rig(big=6 << 20, resume_window=RESUME_WINDOW)
    before = rig.engine.state()
    for label, where in CUTS.items():
        directory = guest_tmp / f"dir-{label}"
        cut = cut_off(rig, directory, where)
        assert_held(cut.obj)
        cut.reference = read_reference(cut.obj)
        assert_held(cut.obj)  # held again when the reference's session ended
        result = mtp_backup(tools, "backup", directory, name=f"mtp-backup-{label}")
        assert result.returncode == 0, result.describe()
        said = f"{cut.part.name}: resuming the download at byte {cut.cut} of {cut.obj.size}"
        assert said in result.stdout, f"{label}: no resume announced\n{result.describe()}"
        assert not cut.part.exists(), f"{label}: the partial file stayed"
        # mtp-backup verified the whole file (its digests) before it took the name.
        assert_same_archive(directory / cut.obj.name, cut, label, verify=False)
        rig.engine.wait_mode("NORMAL")  # mtp-backup closed its session: released
        assert "held for resuming" not in status_text(), label
    assert_state(rig.engine.state(), before, "resumed backups changed the device")


def test_a_download_cut_off_within_its_last_kib_is_taken_afresh_not_spliced(
    make_rig: MakeRig,  # noqa: F811
    tools: Tools,
    guest_tmp: Path,
) -> None:
    """The host stops reading 513 to 1024 bytes before the end; the cable goes 2 s later.

    By then the responder has queued the whole archive for the host and counts
    it as sent, so the end of the link releases the backup as a finished
    download: nothing is held, and ``mtp-backup`` leaves the partial file of
    the old archive alone and copies the fresh backup whole, never a spliced
    file.  A device that counted only what the host has read would hold it
    and fail the first assertion: this test then expects the resume.
    """
    rig = make_rig(active=False, big=3 << 20, resume_window=RESUME_WINDOW)
    directory = guest_tmp / "dir-last-kib"
    directory.mkdir()
    with open_device(None, USB_TIMEOUT) as dev:
        obj = pick_produced(dev.folder("Backup"), ".mbak")
        part = partial_path(directory, obj)
        cut = ((obj.size + HEADER_SIZE - 513) // int(dev.mtp.mps)) * int(dev.mtp.mps) - HEADER_SIZE
        assert 512 < obj.size - cut <= 1024, (obj.size, cut)
        cut_get_object(rig, dev, obj, part, cut, pause=2.0)
    rig.replug()
    rig.engine.wait_mode("NORMAL")
    assert "held for resuming" not in status_text(), (
        "the device holds a backup cut off within its last KiB: expect it resumed here"
    )
    result = mtp_backup(tools, "backup", directory, name="mtp-backup-last-kib")
    assert result.returncode == 0, result.describe()
    assert f"{part.name}: not the backup the device lists now; left alone" in result.stdout, (
        result.describe()
    )
    assert part.stat().st_size == cut, "the partial file of the released archive was touched"
    (fresh,) = [p for p in directory.glob("*.mbak") if p.name != obj.name]
    assert "resuming" not in result.stdout
    verify_archive(fresh)
    rig.engine.wait_mode("NORMAL")


def test_raw_get_partial_object_64_continues_a_cut_off_download(
    make_rig: MakeRig,  # noqa: F811
    guest_tmp: Path,
) -> None:
    """A plain pyusb GetObject pulled at half, then GetPartialObject64 from where it stopped."""
    rig = make_rig(active=False, big=3 << 20, resume_window=RESUME_WINDOW)
    got = guest_tmp / "raw.mbak"
    with open_device(None, USB_TIMEOUT) as dev:
        obj = pick_produced(dev.folder("Backup"), ".mbak")
        unplug = Unplug(rig.udc_file, obj.size // 2)
        with open(got, "wb") as sink, pytest.raises(Exception):  # noqa: B017
            dev.mtp.get_object_to(obj.handle, sink, unplug)
    assert unplug.done, "the transfer ended before the cable was pulled"
    rig.replug()
    assert_held(obj)
    offset = got.stat().st_size
    assert 0 < offset < obj.size, offset
    reference = read_reference(obj)
    with open_device(None, USB_TIMEOUT) as dev:
        assert pick_produced(dev.folder("Backup"), ".mbak").handle == obj.handle
        with open(got, "ab") as sink:
            n = dev.mtp.get_partial_object_to(obj.handle, offset, obj.size - offset, sink)
    assert n == obj.size - offset, (n, obj.size, offset)
    assert_same_archive(got, CutDownload(obj, got, offset, reference), "GetPartialObject64")
    rig.engine.wait_mode("NORMAL")


# -- encrypted backups ---------------------------------------------------------------------


@dataclass
class Measured:
    """One GetObject of a backup: bytes, seconds, CPU seconds of responder and engine."""

    size: int
    seconds: float
    responder_cpu: float
    engine_cpu: float

    @property
    def mb_per_s(self) -> float:
        return self.size / max(self.seconds, 1e-6) / 1e6


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_get_object(gadget: Gadget, engine: GuestEngine, suffix: str, dest: Path) -> Measured:
    """GetObject of the backup over pyusb, the preparation (listing) left out of the figures."""
    pid = gadget.responder_pid()
    assert pid is not None, "no responder pid"
    assert engine.proc is not None
    with open_device(None, USB_TIMEOUT) as dev:
        obj = pick_produced(dev.folder("Backup"), suffix)
        cpu0, engine0 = cpu_seconds(pid), cpu_seconds(engine.proc.pid)
        start = time.monotonic()
        with open(dest, "wb") as sink:
            dev.mtp.get_object_to(obj.handle, sink)
        seconds = time.monotonic() - start
        cpu1, engine1 = cpu_seconds(pid), cpu_seconds(engine.proc.pid)
    assert dest.stat().st_size == obj.size
    return Measured(obj.size, seconds, cpu1 - cpu0, engine1 - engine0)


@pytest.fixture
def engine_with_data(
    engines: list[GuestEngine],  # noqa: F811
    guest_tmp: Path,
    test_logs: Path,
) -> GuestEngine:
    """A passive owner with some tens of MiB, so transfer figures mean something."""
    engine = GuestEngine(guest_tmp / "engine", test_logs / "engine.log", active=False)
    engine.setup()
    seed_passive(engine.passive_dir, big=24 << 20)
    engines.append(engine)
    engine.start()
    return engine


def make_key(tools: Tools, where: Path) -> tuple[Path, str]:
    """``age-keygen`` as the device's owner would run it; (key file, recipient)."""
    key = where / "key.txt"
    tools.run(["age-keygen", "-o", key], name="age-keygen", check=True)
    key.chmod(0o600)
    recipient = next(
        line.split(":", 1)[1].strip()
        for line in key.read_text().splitlines()
        if line.startswith("# public key:")
    )
    assert recipient.startswith("age1"), recipient
    return key, recipient


def backup_gadget(
    make_gadget: Callable[..., Gadget],
    engine: GuestEngine,
    work: Path,
    name: str,
    **options: Any,
) -> Gadget:
    config = responder_config(engine, work)
    config["providers"]["backup_restore"].update(options)
    return make_gadget(responder_command=mtp_responder_command(), config=config, name=name)


def tampered(path: Path, dest: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    dest.write_bytes(bytes(data))
    return dest


def test_encrypted_backup_opens_with_age_restores_with_the_identity_and_costs(
    engine_with_data: GuestEngine,
    make_gadget: Callable[..., Gadget],
    tools: Tools,
    guest_tmp: Path,
    link_speed: str,
    test_logs: Path,
) -> None:
    engine = engine_with_data
    key, recipient = make_key(tools, guest_tmp)
    before = engine.state()

    # The device encrypting to the recipient, with the identity to restore.
    gadget = backup_gadget(
        make_gadget, engine, guest_tmp, "age", recipients=[recipient], identity_file=str(key)
    )
    encrypted = timed_get_object(gadget, engine, ".mbak.age", guest_tmp / "timed.mbak.age")
    engine.wait_mode("NORMAL")

    (archive,) = backup_files(mtp_files(tools), ".mbak.age")
    local = guest_tmp / archive.name
    getfile(tools, archive.item_id, local)
    assert local.read_bytes()[:22] == b"age-encryption.org/v1\n", "not an age file"
    out = guest_tmp / "x-age"
    out.mkdir()
    tools.run(
        ["sh", "-c", f"age -d -i '{key}' '{local}' | tar -x -C '{out}'"],
        name="age-d-tar-x",
        check=True,
    )
    assert_state((tree_state(passive_files_root(out)), []), before, "age -d | tar -x")
    engine.wait_mode("NORMAL")

    change_passive(engine.passive_dir)
    changed = engine.state()
    bad = tampered(local, guest_tmp / f"tampered-{archive.name}")
    status = assert_refused(sendfile(tools, bad, "Restore", name="sendfile-tampered"), "altered")
    assert bad.name in status.splitlines()[0], status
    refusals = [f"one byte altered: {' / '.join(status.splitlines())}"]
    assert_state(engine.state(), changed, "a tampered archive changed the device")
    result = sendfile(tools, local, "Restore", name="sendfile-age")
    assert sendfile_ok(result), result.describe() + "\n" + status_text()
    status = status_text()
    assert "RESTORED" in status and f"{PASSIVE_SID:08X}: ok" in status, status
    assert_state(engine.state(), before, "after the restore of the .mbak.age")
    engine.wait_mode("NORMAL")
    gadget.down()

    # The same data, served plain, by a device without an identity.
    gadget = backup_gadget(make_gadget, engine, guest_tmp, "plain")
    plain = timed_get_object(gadget, engine, ".mbak", guest_tmp / "timed.mbak")
    verify_archive(guest_tmp / "timed.mbak")
    engine.wait_mode("NORMAL")
    change_passive(engine.passive_dir)
    changed = engine.state()
    status = assert_refused(sendfile(tools, local, "Restore", name="sendfile-no-id"), "no identity")
    assert "no identity is configured" in status, status
    assert archive.name in status.splitlines()[0], status
    refusals.append(f"no identity: {' / '.join(status.splitlines())}")
    (test_logs / "refusals.txt").write_text("\n".join(refusals) + "\n")
    assert_state(engine.state(), changed, "a refused .mbak.age changed the device")
    engine.wait_mode("NORMAL")

    added = (encrypted.responder_cpu / encrypted.size - plain.responder_cpu / plain.size) * GIB
    lines = [
        f"link: {link_speed} (dummy_hcd, QEMU TCG); GetObject over pyusb, listing excluded",
        f"plain     .mbak     {plain.size} bytes: {plain.seconds:.2f} s, "
        f"{plain.mb_per_s:.2f} MB/s, responder CPU {plain.responder_cpu:.2f} s, "
        f"engine CPU {plain.engine_cpu:.2f} s",
        f"encrypted .mbak.age {encrypted.size} bytes: {encrypted.seconds:.2f} s, "
        f"{encrypted.mb_per_s:.2f} MB/s, responder CPU {encrypted.responder_cpu:.2f} s, "
        f"engine CPU {encrypted.engine_cpu:.2f} s",
        f"encryption adds {added:.1f} responder CPU seconds per GiB",
    ]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "backup-age-throughput.txt").write_text(text)
    print("\n" + text)
    assert plain.size > 20 << 20 and encrypted.size > plain.size, (plain.size, encrypted.size)


class _Bytes:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes | memoryview) -> int:
        self.data += data
        return len(data)
