"""``mtp-backup``: one-command backup, incremental backup and restore from a PC.

It speaks plain MTP (through :class:`~mtp_backup.usb.UsbInitiator`) to
the storage whose description is "Backup & Restore", doing exactly what a
person would do in a file manager: copy ``Backup/*.mbak`` out, drop a
``.snapshot`` into ``Incremental/`` and copy the increment out, drop a
``.mbak`` into ``Restore/`` and read ``Restore/status.txt``.  So it works
against any device running this responder, and a backup it takes is the same
file a user could have dragged out by hand.

A backup directory holds the archives plus ``chain.json``, which records each
base backup followed by its increments in the order they must be restored.
Archives are verified as they arrive (manifest, sizes, SHA-256 trailer) with
the engine's own archive reader, so a broken copy is noticed on the PC, not
at restore time.

Exit codes: 0 done; 1 device or transfer error; 2 usage; 3 the device refused
the restore (the reason from ``Restore/status.txt`` is printed); 4 an archive
failed verification.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from engine.errors import EngineError
from engine.mbak.ingest import ArchiveIngest
from engine.mbak.manifest import StreamEntry
from engine.mbak.names import safe_relpath
from engine.mbak.tar import MemberInfo
from engine.types import format_sid, parse_sid

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_CORRUPT = 4

STORAGE_DESCRIPTION = "Backup & Restore"
CHAIN_FILE = "chain.json"
CHAIN_FORMAT = "mtp-backup-chain"
CHAIN_VERSION = 1
ROOT = 0xFFFFFFFF
RESPONSE_OK = 0x2001
SESSION_ALREADY_OPEN = 0x201E
OBJECT_SIZE_PROP = 0xDC04
SEND_OBJECT_PROP_LIST = 0x9808


class ToolError(Exception):
    """A failure with a message for the user and the exit code it maps to."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- verification -------------------------------------------------------------------


@dataclass
class ArchiveSummary:
    """What ``verify`` found in one archive."""

    path: Path
    size: int
    manifest: dict[str, Any]
    streams: int
    members: int
    sha256: str
    changed: list[int] = field(default_factory=list)

    @property
    def backup_id(self) -> str:
        return str(self.manifest.get("backup_id") or "")

    @property
    def based_on(self) -> str | None:
        value = self.manifest.get("based_on")
        return str(value) if value else None

    def describe(self) -> list[str]:
        m = self.manifest
        lines = [
            f"{self.path.name}: OK ({self.size} bytes)",
            f"  device {m.get('device')}, created {m.get('created')}, "
            f"kind {m.get('kind')}, mode {m.get('mode')}",
            f"  backup id {self.backup_id}"
            + (f", based on {self.based_on}" if self.based_on else ""),
            f"  {self.streams} stream(s), {self.members} member(s); SHA-256 digests match",
        ]
        for owner in m.get("owners") or []:
            if isinstance(owner, dict):
                lines.append(f"  owner {owner.get('sid')} {owner.get('name', '')}".rstrip())
        for skipped in m.get("skipped") or []:
            if isinstance(skipped, dict):
                lines.append(f"  skipped {skipped.get('sid')}: {skipped.get('reason')}")
        if self.changed:
            lines.append(
                f"  WARNING: {len(self.changed)} stream(s) changed while the backup was "
                "taken; the device will refuse to restore those owners"
            )
        return lines


class _CheckingHandler:
    """Reads nothing out of the archive, but refuses names a restore would refuse.

    The engine refuses unsafe member names while staging; checking them here
    too means ``verify`` says "bad" for every archive a restore would reject
    on its structure, not only for digest mismatches.
    """

    def __init__(self) -> None:
        self.manifest: dict[str, Any] = {}
        self.streams: list[StreamEntry] = []
        self.members = 0

    def on_manifest(self, manifest: dict[str, object], streams: list[StreamEntry]) -> None:
        self.manifest = dict(manifest)
        self.streams = streams

    def begin_member(self, entry: StreamEntry, rel: str | None, info: MemberInfo) -> bool:
        self.members += 1
        if rel is not None:
            safe_relpath(rel)
        return False

    def data(self, entry: StreamEntry, data: bytes | memoryview) -> None:
        pass

    def end_member(self, entry: StreamEntry) -> None:
        pass

    def end_stream(self, entry: StreamEntry) -> None:
        pass


class ArchiveChecker:
    """Incremental verification: feed the bytes in any chunking, then :meth:`finish`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handler = _CheckingHandler()
        self.ingest = ArchiveIngest(self.handler)
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.error: str | None = None

    def feed(self, data: bytes | memoryview) -> None:
        self.sha256.update(data)
        self.size += len(data)
        if self.error is None:
            try:
                self.ingest.feed(data)
            except EngineError as exc:
                self.error = exc.message

    def finish(self) -> ArchiveSummary:
        if self.error is None:
            try:
                self.ingest.finish()
            except EngineError as exc:
                self.error = exc.message
        if self.error is not None:
            raise ToolError(f"{self.path.name}: NOT a valid backup: {self.error}", EXIT_CORRUPT)
        return ArchiveSummary(
            path=self.path,
            size=self.size,
            manifest=self.handler.manifest,
            streams=len(self.handler.streams),
            members=self.handler.members,
            sha256=self.sha256.hexdigest(),
            changed=list(self.ingest.changed),
        )


def verify_archive(path: Path, chunk: int = 1 << 20) -> ArchiveSummary:
    """Check one ``.mbak`` or ``.snapshot`` offline; raises :class:`ToolError`."""
    checker = ArchiveChecker(path)
    try:
        with open(path, "rb") as f:
            while data := f.read(chunk):
                checker.feed(data)
    except OSError as exc:
        raise ToolError(f"{path}: {exc.strerror or exc}") from exc
    return checker.finish()


# -- the chain of backups in a directory --------------------------------------------


@dataclass
class ChainEntry:
    """One backup taken into the directory (file names are relative to it)."""

    archive: str
    snapshot: str | None
    backup_id: str
    based_on: str | None
    mode: str  # base | incremental
    kind: str  # full | partial | owner
    created: str
    size: int
    sha256: str
    sid: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChainEntry:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Chain:
    """``chain.json``: each base with its increments, oldest first, plus owner backups.

    Only the last base's chain can be extended, since an increment is taken
    against the newest snapshot; older chains stay listed so that a user can
    still restore an older state, in order, by hand.
    """

    device: str = ""
    chains: list[list[ChainEntry]] = field(default_factory=list)
    owners: list[ChainEntry] = field(default_factory=list)

    @classmethod
    def load(cls, directory: Path) -> Chain:
        path = directory / CHAIN_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise ToolError(f"{path}: unreadable ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != CHAIN_FORMAT:
            raise ToolError(f"{path}: not an mtp-backup chain file")
        if data.get("version") != CHAIN_VERSION:
            raise ToolError(f"{path}: unsupported version {data.get('version')!r}")
        try:
            return cls(
                device=str(data.get("device", "")),
                chains=[[ChainEntry.from_dict(e) for e in c] for c in data.get("chains", [])],
                owners=[ChainEntry.from_dict(e) for e in data.get("owners", [])],
            )
        except (TypeError, AttributeError) as exc:
            raise ToolError(f"{path}: malformed ({exc})") from exc

    def save(self, directory: Path) -> None:
        """Replaced atomically: an interrupted run never leaves a half-written chain."""
        data = {
            "format": CHAIN_FORMAT,
            "version": CHAIN_VERSION,
            "device": self.device,
            "chains": [[asdict(e) for e in c] for c in self.chains],
            "owners": [asdict(e) for e in self.owners],
        }
        tmp = directory / f".{CHAIN_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, directory / CHAIN_FILE)

    @property
    def current(self) -> list[ChainEntry]:
        return self.chains[-1] if self.chains else []

    def add(self, entry: ChainEntry) -> None:
        if entry.kind == "owner":
            self.owners.append(entry)
            return
        if entry.mode == "base":
            self.chains.append([entry])
            return
        current = self.current
        if not current:
            raise ToolError("an increment needs a base backup in the directory first")
        if entry.based_on != current[-1].backup_id:
            raise ToolError(
                f"the increment {entry.archive} is based on {entry.based_on}, "
                f"not on the newest backup {current[-1].backup_id}"
            )
        current.append(entry)

    def latest_snapshot(self) -> ChainEntry:
        """The backup an incremental must be taken against."""
        current = self.current
        if not current or current[-1].snapshot is None:
            raise ToolError(
                "no base backup with a snapshot in this directory: run a full backup first"
            )
        return current[-1]

    def restore_order(self) -> list[ChainEntry]:
        """Base first, then every increment: together they give the latest state."""
        if not self.current:
            raise ToolError("the chain file lists no backup to restore")
        return list(self.current)

    def all_entries(self) -> Iterator[ChainEntry]:
        for chain in self.chains:
            yield from chain
        yield from self.owners


def unique_path(directory: Path, name: str) -> Path:
    """``name`` in ``directory``, with ``-1``, ``-2``... before the suffix if taken.

    Two backups taken in the same second get the same name from the device.
    """
    path = directory / name
    if not path.exists():
        return path
    stem, dot, suffix = name.partition(".")
    n = 1
    while True:
        path = directory / f"{stem}-{n}{dot}{suffix}"
        if not path.exists():
            return path
        n += 1


# -- progress ---------------------------------------------------------------------


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A progress bar on a terminal, and one summary line in any case.

    The bar is drawn only when ``stream`` is a TTY: in a log or a pipe it would
    be noise, so there only the summary is printed (to ``summary``).
    """

    WIDTH = 24

    def __init__(
        self,
        label: str,
        total: int,
        *,
        stream: TextIO | None = None,
        summary: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.summary = summary if summary is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.started = clock()
        self.done = 0
        self._drawn = 0.0

    def line(self, done: int, now: float) -> str:
        elapsed = max(now - self.started, 1e-6)
        speed = done / elapsed
        if self.total > 0:
            frac = min(done / self.total, 1.0)
            filled = int(frac * self.WIDTH)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            eta = (self.total - done) / speed if speed > 0 else float("inf")
            eta_text = human_duration(eta) if eta != float("inf") else "--:--"
            return (
                f"{self.label} [{bar}] {frac * 100:5.1f}% "
                f"{human_bytes(done)}/{human_bytes(self.total)} "
                f"{human_bytes(speed)}/s ETA {eta_text}"
            )
        return f"{self.label} {human_bytes(done)} {human_bytes(speed)}/s"

    def update(self, done: int) -> None:
        self.done = done
        if not self.tty:
            return
        now = self.clock()
        if now - self._drawn < 0.1 and done < self.total:
            return
        self._drawn = now
        self.stream.write("\r" + self.line(done, now)[:200] + "\x1b[K")
        self.stream.flush()

    def finish(self, what: str = "") -> str:
        now = self.clock()
        elapsed = max(now - self.started, 1e-6)
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        text = (
            f"{self.label}: {human_bytes(self.done)} ({self.done} bytes) in {elapsed:.1f} s, "
            f"{self.done / elapsed / 1e6:.2f} MB/s" + (f" {what}" if what else "")
        )
        print(text, file=self.summary, flush=True)
        return text


# -- the device ------------------------------------------------------------------


@dataclass
class RemoteObject:
    handle: int
    name: str
    size: int
    read_only: bool
    is_folder: bool


class BackupDevice:
    """A session with one device's Backup & Restore storage."""

    def __init__(self, mtp: Any, storage_id: int, prop_list: bool = False) -> None:
        self.mtp = mtp
        self.storage_id = storage_id
        self.prop_list = prop_list
        """the device takes SendObjectPropList, which carries a 64-bit size"""

    def folder(self, path: str) -> dict[str, RemoteObject]:
        """The children of ``path`` ("" is the root) by name.

        Listing ``Backup/`` is what makes the device prepare a backup, so this
        is also the step that can take a while (active owners prepare data).
        """
        parent = ROOT
        if path:
            parent = self.mtp.find(self.storage_id, path)
        out: dict[str, RemoteObject] = {}
        for handle, info in self.mtp.children(self.storage_id, parent):
            size = info.compressed_size
            if size == 0xFFFFFFFF:
                size = self.object_size(handle)
            out[info.filename] = RemoteObject(
                handle=handle,
                name=info.filename,
                size=size,
                read_only=bool(info.protection_status & 1),
                is_folder=info.object_format == 0x3001,
            )
        return out

    def object_size(self, handle: int) -> int:
        """The 64-bit size, for objects of 4 GiB and more (ObjectInfo caps at 32 bits)."""
        from mtp_responder.core.codes import OperationCode

        payload, _ = self.mtp.transaction(
            OperationCode.GET_OBJECT_PROP_VALUE, handle, OBJECT_SIZE_PROP
        )
        return int.from_bytes((payload or b"")[:8], "little")

    def fetch(self, obj: RemoteObject, dest: Path) -> ArchiveSummary:
        """GetObject into ``dest`` (via a ``.part`` file), verified on the way in.

        Checking while the bytes arrive costs no second read of the file, and
        a copy that would not restore never takes the archive's real name.
        """
        part = dest.with_name(dest.name + ".part")
        progress = Progress(f"get {obj.name}", obj.size)
        checker = ArchiveChecker(dest)
        try:
            with open(part, "wb") as f:
                sink = _TeeSink(f, checker)
                self.mtp.get_object_to(obj.handle, sink, progress.update)
            if sink.size != obj.size:
                raise ToolError(
                    f"{obj.name}: got {sink.size} bytes, the device announced {obj.size}"
                )
            summary = checker.finish()
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, dest)
        progress.finish(f"-> {dest}")
        return summary

    def send(self, folder: str, path: Path, name: str | None = None) -> tuple[int, int]:
        """SendObjectInfo + SendObject; returns (handle, SendObject response code)."""
        parent = self.mtp.find(self.storage_id, folder)
        size = path.stat().st_size
        if size >= 0xFFFFFFFF and not self.prop_list:
            raise ToolError(f"{path}: the device cannot take files of 4 GiB and more")
        send = self.mtp.send_object_prop_list_from if self.prop_list else self.mtp.send_object_from
        progress = Progress(f"send {path.name}", size)
        with open(path, "rb") as f:
            handle, response = send(
                self.storage_id, parent, name or path.name, f, size, progress.update
            )
        progress.finish(f"-> {folder}/")
        return handle, int(response.code)

    def status_text(self) -> str:
        listing = self.folder("Restore")
        status = listing.get("status.txt")
        if status is None:
            return "(the device has no Restore/status.txt)"
        buf = _Buffer()
        self.mtp.get_object_to(status.handle, buf)
        return bytes(buf.data).decode("utf-8", "replace")

    def delete(self, handle: int) -> None:
        self.mtp.delete_object(handle)


class _Buffer:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes | memoryview) -> int:
        self.data += data
        return len(data)


class _TeeSink:
    """A file-like sink that also feeds the verifier and counts bytes."""

    def __init__(self, f: Any, checker: ArchiveChecker | None) -> None:
        self.f = f
        self.checker = checker
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.f.write(data)
        self.size += len(data)
        if self.checker is not None:
            self.checker.feed(data)
        return len(data)


def _response_name(code: int) -> str:
    from mtp_responder.core.codes import ResponseCode

    try:
        return ResponseCode(code).name
    except ValueError:
        return f"{code:#06x}"


@contextlib.contextmanager
def open_device(selector: str | None, timeout_s: float) -> Iterator[BackupDevice]:
    """Claim the device, open a session, find the Backup & Restore storage.

    Closing the session at the end is what returns the device to Normal mode
    at once (it would also do so after its idle timeout).
    """
    candidates = _candidate_devices(selector)
    problems: list[str] = []
    for dev in candidates:
        try:
            mtp = _initiator(dev, timeout_s)
        except Exception as exc:  # a device another program holds, or one that vanished
            problems.append(f"{_usb_address(dev)}: {exc}")
            continue
        storage: int | None = None
        try:
            ops = set(mtp.device_info().operations_supported)
            _open_session(mtp)
            for sid in mtp.storage_ids():
                if mtp.storage_info(sid).storage_description == STORAGE_DESCRIPTION:
                    storage = sid
                    break
            if storage is None:
                problems.append(f"{_usb_address(dev)}: no {STORAGE_DESCRIPTION!r} storage")
                _close(mtp)
                continue
        except Exception as exc:
            problems.append(f"{_usb_address(dev)}: {exc}")
            _close(mtp)
            continue
        try:
            yield BackupDevice(mtp, storage, prop_list=SEND_OBJECT_PROP_LIST in ops)
        finally:
            _close(mtp)
        return
    detail = "; ".join(problems) if problems else "no MTP device found"
    raise ToolError(f"no device with a {STORAGE_DESCRIPTION!r} storage ({detail})")


def _initiator(dev: Any, timeout_s: float) -> Any:
    from .usb import UsbInitiator

    return UsbInitiator(dev, timeout_ms=int(timeout_s * 1000))


def _open_session(mtp: Any) -> None:
    from .usb import MTPError

    try:
        mtp.open_session(1)
    except MTPError as exc:
        if exc.code != SESSION_ALREADY_OPEN:
            raise
        # Left open by an earlier run that died: start over with a clean session.
        mtp.close_session()
        mtp.open_session(1)


def _close(mtp: Any) -> None:
    with contextlib.suppress(Exception):
        mtp.close_session()
    with contextlib.suppress(Exception):
        mtp.close()


def _candidate_devices(selector: str | None) -> list[Any]:
    from .usb import find_mtp_devices

    devices = find_mtp_devices()
    if selector is None:
        return devices
    picked = [d for d in devices if _matches(d, selector)]
    if not picked:
        raise ToolError(f"no MTP device matches {selector!r}")
    return picked


def _matches(dev: Any, selector: str) -> bool:
    if selector == _usb_address(dev):
        return True
    with contextlib.suppress(Exception):
        import usb.util

        return bool(usb.util.get_string(dev, dev.iSerialNumber) == selector)
    return False


def _usb_address(dev: Any) -> str:
    return f"{dev.bus:03d}:{dev.address:03d}"


# -- commands -------------------------------------------------------------------------


def cmd_devices(args: argparse.Namespace) -> int:
    from .usb import find_mtp_devices

    devices = find_mtp_devices()
    if not devices:
        print("no MTP device found")
        return EXIT_FAILED
    for dev in devices:
        head = f"{_usb_address(dev)} {dev.idVendor:04x}:{dev.idProduct:04x}"
        try:
            mtp = _initiator(dev, args.timeout)
        except Exception as exc:
            print(f"{head} (cannot open: {exc})")
            continue
        try:
            info = mtp.device_info()
            _open_session(mtp)
            storages = [mtp.storage_info(s).storage_description for s in mtp.storage_ids()]
        except Exception as exc:
            print(f"{head} (no answer: {exc})")
            continue
        finally:
            _close(mtp)
        flag = "backup: yes" if STORAGE_DESCRIPTION in storages else "backup: no"
        print(f"{head} {info.manufacturer} {info.model} serial {info.serial_number} ({flag})")
        for name in storages:
            print(f"    storage: {name}")
    return EXIT_OK


def _entry_for(summary: ArchiveSummary, path: Path, directory: Path) -> ChainEntry:
    m = summary.manifest
    sids = [o.get("sid") for o in m.get("owners") or [] if isinstance(o, dict)]
    kind = str(m.get("kind", "full"))
    return ChainEntry(
        archive=str(path.relative_to(directory)),
        snapshot=None,
        backup_id=summary.backup_id,
        based_on=summary.based_on,
        mode=str(m.get("mode", "base")),
        kind=kind,
        created=str(m.get("created", "")),
        size=summary.size,
        sha256=summary.sha256,
        sid=str(sids[0]) if kind == "owner" and sids else None,
    )


def _pick(
    listing: dict[str, RemoteObject], suffix: str, exclude: str | None = None
) -> RemoteObject:
    """The object the device produced (read-only), not something a host dropped."""
    found = [
        o
        for o in listing.values()
        if o.name.endswith(suffix) and o.read_only and not o.is_folder and o.name != exclude
    ]
    if len(found) != 1:
        names = ", ".join(sorted(listing)) or "nothing"
        raise ToolError(f"expected one {suffix} from the device, the folder holds: {names}")
    return found[0]


def cmd_backup(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    directory.mkdir(parents=True, exist_ok=True)
    chain = Chain.load(directory)
    if args.incremental and args.owner:
        raise ToolError("--incremental and --owner cannot be combined", EXIT_USAGE)
    try:
        sids = [parse_sid(s) for s in args.owner or []]
    except EngineError as exc:
        raise ToolError(exc.message, EXIT_USAGE) from exc
    previous = chain.latest_snapshot() if args.incremental else None
    with open_device(args.device, args.timeout) as device:
        if sids:
            _backup_owners(device, directory, chain, sids)
        elif previous is not None:
            _backup_incremental(device, directory, chain, previous)
        else:
            _backup_full(device, directory, chain)
    return EXIT_OK


def _fetch_pair(
    device: BackupDevice,
    directory: Path,
    chain: Chain,
    archive: RemoteObject,
    snapshot: RemoteObject,
) -> ChainEntry:
    mbak_path = unique_path(directory, archive.name)
    snap_path = unique_path(directory, snapshot.name)
    summary = device.fetch(archive, mbak_path)
    snap_summary = device.fetch(snapshot, snap_path)
    if snap_summary.backup_id != summary.backup_id:
        raise ToolError(f"{snapshot.name} does not belong to {archive.name}")
    entry = _entry_for(summary, mbak_path, directory)
    entry.snapshot = str(snap_path.relative_to(directory))
    for line in summary.describe()[1:]:
        print(line)
    chain.device = str(summary.manifest.get("device", chain.device))
    chain.add(entry)
    chain.save(directory)
    return entry


def _backup_full(device: BackupDevice, directory: Path, chain: Chain) -> None:
    print("preparing a full backup (listing Backup/)...", flush=True)
    listing = device.folder("Backup")
    entry = _fetch_pair(
        device, directory, chain, _pick(listing, ".mbak"), _pick(listing, ".snapshot")
    )
    print(f"base backup {entry.archive} saved; chain of {len(chain.current)} in {CHAIN_FILE}")


def _backup_incremental(
    device: BackupDevice, directory: Path, chain: Chain, previous: ChainEntry
) -> None:
    assert previous.snapshot is not None
    snap = directory / previous.snapshot
    # A name of our own: a snapshot left in Incremental/ by an earlier run must
    # not clash with (or be mistaken for) this one.
    sent_name = f"previous-{previous.backup_id[:12]}-{int(time.time())}.snapshot"
    print(f"sending {previous.snapshot} into Incremental/ (the device prepares the increment)")
    handle, code = device.send("Incremental", snap, sent_name)
    if code != RESPONSE_OK:
        raise ToolError(f"the device did not accept the snapshot: {_response_name(code)}")
    try:
        listing = device.folder("Incremental")
        _fetch_pair(
            device,
            directory,
            chain,
            _pick(listing, ".mbak", sent_name),
            _pick(listing, ".snapshot", sent_name),
        )
    finally:
        # Tidy up: also tells the device the incremental is done.
        with contextlib.suppress(Exception):
            device.delete(handle)
    print(f"increment saved; chain of {len(chain.current)} in {CHAIN_FILE}")


def _backup_owners(device: BackupDevice, directory: Path, chain: Chain, sids: list[int]) -> None:
    print("preparing a backup (listing Backup/)...", flush=True)
    device.folder("Backup")
    listing = device.folder("Backup/owners")
    target = directory / "owners"
    target.mkdir(exist_ok=True)
    for sid in sids:
        suffix = f"-{format_sid(sid)}.mbak"
        found = [o for o in listing.values() if o.name.upper().endswith(suffix.upper())]
        if not found:
            raise ToolError(
                f"no data owner {format_sid(sid)} on the device "
                f"(Backup/owners/ holds: {', '.join(sorted(listing)) or 'nothing'})"
            )
        path = unique_path(target, found[0].name)
        summary = device.fetch(found[0], path)
        chain.add(_entry_for(summary, path, directory))
        chain.save(directory)


def cmd_restore(args: argparse.Namespace) -> int:
    target: Path = args.file
    if target.is_dir():
        chain = Chain.load(target)
        files = [target / e.archive for e in chain.restore_order()]
    else:
        files = [target]
    for f in files:
        if not f.is_file():
            raise ToolError(f"{f}: no such file")
    if not args.no_verify:
        for f in files:
            verify_archive(f)
    from .usb import MTPError

    with open_device(args.device, args.timeout) as device:
        for f in files:
            print(f"restoring {f.name} ({f.stat().st_size} bytes)", flush=True)
            try:
                _handle, code = device.send("Restore", f)
            except MTPError as exc:  # refused at SendObjectInfo, before any data
                code = int(exc.code)
            status = device.status_text()
            if code != RESPONSE_OK:
                sys.stderr.write(status if status.endswith("\n") else status + "\n")
                raise ToolError(
                    f"the device refused {f.name}: {_response_name(code)}", EXIT_REFUSED
                )
            sys.stdout.write(status if status.endswith("\n") else status + "\n")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    target: Path = args.file
    if target.is_dir():
        chain = Chain.load(target)
        entries = list(chain.all_entries())
        if not entries:
            raise ToolError(f"{target}: the chain file lists no backup", EXIT_CORRUPT)
        bad = 0
        for entry in entries:
            for name in filter(None, (entry.archive, entry.snapshot)):
                try:
                    summary = verify_archive(target / name)
                except ToolError as exc:
                    print(exc, file=sys.stderr)
                    bad += 1
                    continue
                print("\n".join(summary.describe()))
                if name == entry.archive and summary.backup_id != entry.backup_id:
                    print(f"{name}: backup id differs from {CHAIN_FILE}", file=sys.stderr)
                    bad += 1
        for chain_list in chain.chains:
            for prev, inc in itertools.pairwise(chain_list):
                if inc.based_on != prev.backup_id:
                    print(f"{inc.archive} is not based on {prev.archive}", file=sys.stderr)
                    bad += 1
        return EXIT_OK if not bad else EXIT_CORRUPT
    summary = verify_archive(target)
    print("\n".join(summary.describe()))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtp-backup",
        description="Back up and restore a device over MTP (its 'Backup & Restore' storage).",
    )
    parser.add_argument("--device", help="USB address BUS:ADDR or serial number of the device")
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for one USB transfer; preparing a backup and "
        "applying a restore happen inside one (default 300)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("devices", help="list MTP devices and their storages")
    backup = sub.add_parser("backup", help="copy a backup of the device into DIR")
    backup.add_argument("dir", type=Path, metavar="DIR")
    backup.add_argument(
        "--incremental",
        action="store_true",
        help="an increment against the newest backup in DIR's chain",
    )
    backup.add_argument(
        "--owner", nargs="+", metavar="SID", help="only these data owners (hex SIDs)"
    )
    restore = sub.add_parser(
        "restore", help="restore a .mbak, or every backup of DIR's chain in order"
    )
    restore.add_argument("file", type=Path, metavar="FILE")
    restore.add_argument("--no-verify", action="store_true", help="send without checking first")
    verify = sub.add_parser("verify", help="check an archive (or DIR's chain) offline")
    verify.add_argument("file", type=Path, metavar="FILE")
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "devices": cmd_devices,
    "backup": cmd_backup,
    "restore": cmd_restore,
    "verify": cmd_verify,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ToolError as exc:
        print(f"mtp-backup: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mtp-backup: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # USB and MTP errors: say what failed, not a traceback
        print(f"mtp-backup: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
