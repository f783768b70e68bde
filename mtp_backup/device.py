"""A session with a device's "Backup & Restore" storage over USB.

Plain MTP through :class:`~mtp_backup.usb.UsbInitiator`: list a folder, copy
an object out (verified on the way in), send a file in, read
``Restore/status.txt``.  Exactly what a person would do in a file manager, so
this works against any device running the responder.  pyusb is imported only
when a device is opened, so ``verify`` runs without it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtp_responder.core.codes import (
    ROOT,
    ObjectFormat,
    ObjectProp,
    OperationCode,
    ProtectionStatus,
    ResponseCode,
)

from .encrypted import AGE_SUFFIX, DecryptingFeed, HeaderSize
from .errors import EXIT_CORRUPT, EXIT_FAILED, EXIT_OK, ToolError
from .progress import Progress
from .verify import ArchiveChecker, ArchiveSummary

if TYPE_CHECKING:
    from engine.agefile import X25519Identity

STORAGE_DESCRIPTION = "Backup & Restore"
PIECE = 64 << 20
"""Bytes one GetPartialObject(64) of a resumed download asks for."""
REREAD = 1 << 20
"""Bytes at a time a partial download is read back to check it along with the rest."""
SIZE_IN_OBJECT_PROP = 0xFFFFFFFF
"""ObjectInfo's 32-bit size saying "4 GiB or more: ask for ObjectSize (64-bit)"."""


@dataclass
class RemoteObject:
    handle: int
    name: str
    size: int
    read_only: bool
    is_folder: bool


class BackupDevice:
    """A session with one device's Backup & Restore storage."""

    def __init__(
        self,
        mtp: Any,
        storage_id: int,
        prop_list: bool = False,
        operations: frozenset[int] = frozenset(),
    ) -> None:
        self.mtp = mtp
        self.storage_id = storage_id
        self.prop_list = prop_list
        """the device takes SendObjectPropList, which carries a 64-bit size"""
        self.operations = operations
        """what the device's DeviceInfo says it supports (GetPartialObject64 resumes)"""

    def can_resume(self, obj: RemoteObject, offset: int) -> bool:
        """GetPartialObject64 reaches any offset, GetPartialObject only below 4 GiB."""
        if OperationCode.GET_PARTIAL_OBJECT_64 in self.operations:
            return True
        return OperationCode.GET_PARTIAL_OBJECT in self.operations and offset <= 0xFFFFFFFF

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
            if size == SIZE_IN_OBJECT_PROP:
                size = self.object_size(handle)
            out[info.filename] = RemoteObject(
                handle=handle,
                name=info.filename,
                size=size,
                read_only=bool(info.protection_status & ProtectionStatus.READ_ONLY),
                is_folder=info.object_format == ObjectFormat.ASSOCIATION,
            )
        return out

    def object_size(self, handle: int) -> int:
        """The 64-bit size, for objects of 4 GiB and more (ObjectInfo caps at 32 bits)."""
        payload, _ = self.mtp.transaction(
            OperationCode.GET_OBJECT_PROP_VALUE, handle, ObjectProp.OBJECT_SIZE
        )
        return int.from_bytes((payload or b"")[:8], "little")

    def fetch(
        self,
        obj: RemoteObject,
        dest: Path,
        identities: Sequence[X25519Identity] | None = None,
    ) -> ArchiveSummary:
        """Copy ``obj`` into ``dest`` through its partial file, verified on the way in.

        The bytes go to ``<name>.<size>.part`` beside ``dest`` (:func:`partial_path`),
        which takes ``dest``'s name only once every byte arrived and checked: a
        copy that would not restore never looks complete.  A partial file left
        by an interrupted run for the same name and size is continued from its
        length with GetPartialObject64 (or GetPartialObject) when the device
        has one: its bytes are read back through the checks first, so the whole
        file is verified.  A transfer that breaks keeps the partial file for
        the next run; a copy that fails its checks is deleted.  An encrypted
        archive (``.mbak.age``) is stored as it came and checked decrypted with
        ``identities``; without them only its age header is read, and the
        summary says it was not checked.
        """
        part = partial_path(dest.parent, obj)
        checker = ArchiveChecker(dest)
        encrypted = obj.name.endswith(AGE_SUFFIX)
        decrypting = sizer = None
        feed: Callable[[bytes], None] = checker.feed
        if encrypted and identities:
            decrypting = DecryptingFeed(obj.name, identities, checker.feed)
            feed = decrypting.feed
        elif encrypted:
            sizer = HeaderSize()
            feed = sizer.feed
        start = self._resumable(obj, part)
        try:
            if start:
                print(f"{part.name}: resuming the download at byte {start} of {obj.size}")
                _reread(part, start, feed)
            with Progress(f"get {obj.name}", obj.size, start=start) as progress:
                with open(part, "ab" if start else "wb") as f:
                    sink = _TeeSink(f, feed, start)
                    try:
                        self._transfer(obj, sink, start, progress.update)
                    except ToolError:
                        raise
                    except BaseException as exc:
                        if start and _refused(exc):
                            raise _cannot_resume(obj, exc) from exc
                        if not sink.size:
                            raise
                        print(
                            f"{part.name}: {sink.size} of {obj.size} bytes kept; run the same "
                            "command again to continue the download"
                        )
                        raise _Interrupted() from None
                if sink.size != obj.size:
                    raise ToolError(
                        f"{obj.name}: got {sink.size} bytes, the device announced {obj.size}"
                    )
                if decrypting is not None:
                    decrypting.finish()
                if sizer is not None:
                    summary = _unchecked(dest, obj.name, sizer)
                else:
                    summary = checker.finish()
                    summary.encrypted = encrypted
                os.replace(part, dest)
                progress.finish(f"-> {dest}")
        except _Interrupted as exc:
            raise exc.__context__ or exc from None
        except BaseException as exc:
            part.unlink(missing_ok=True)
            if start and isinstance(exc, ToolError):
                raise ToolError(
                    f"{exc}; the resumed download was deleted: run the same command again "
                    "for a fresh copy",
                    exc.exit_code,
                ) from exc
            raise
        return summary

    def _resumable(self, obj: RemoteObject, part: Path) -> int:
        """Bytes of ``part`` a download of ``obj`` can go on from; 0: start afresh."""
        try:
            have = part.stat().st_size
        except FileNotFoundError:
            return 0
        if 0 < have <= obj.size and self.can_resume(obj, have):
            return have
        return 0

    def _transfer(
        self, obj: RemoteObject, sink: _TeeSink, start: int, progress: Callable[[int], None]
    ) -> None:
        """GetObject for a whole object; partial reads from ``start`` for the rest of one."""
        if not start:
            self.mtp.get_object_to(obj.handle, sink, progress)
            return
        wide = OperationCode.GET_PARTIAL_OBJECT_64 in self.operations
        while sink.size < obj.size:
            at = sink.size
            want = min(PIECE, obj.size - at)
            got = self.mtp.get_partial_object_to(
                obj.handle, at, want, sink, lambda n, at=at: progress(at + n), wide=wide
            )
            if got == 0:
                break  # the device has no more: the size check says so

    def send(self, folder: str, path: Path, name: str | None = None) -> tuple[int, int]:
        """SendObjectInfo + SendObject of a file; returns (handle, SendObject response code)."""
        with open(path, "rb") as f:
            return self.send_stream(folder, name or path.name, f, path.stat().st_size)

    def send_stream(self, folder: str, name: str, source: Any, size: int) -> tuple[int, int]:
        """Send ``size`` bytes read from ``source`` as ``folder/name``.

        The size goes out first (in SendObjectInfo or SendObjectPropList), so
        a source of known size that is produced as it is read (a decrypting
        reader) uploads without being written anywhere first.
        """
        parent = self.mtp.find(self.storage_id, folder)
        if size >= SIZE_IN_OBJECT_PROP and not self.prop_list:
            raise ToolError(f"{name}: the device cannot take files of 4 GiB and more")
        send = self.mtp.send_object_prop_list_from if self.prop_list else self.mtp.send_object_from
        with Progress(f"send {name}", size) as progress:
            handle, response = send(self.storage_id, parent, name, source, size, progress.update)
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


def _refused(exc: BaseException) -> bool:
    """The device answered (an MTP response code), as opposed to the link breaking."""
    from .usb import MTPError

    return isinstance(exc, MTPError)


def _cannot_resume(obj: RemoteObject, exc: BaseException) -> ToolError:
    """The device no longer serves the rest of what the partial file began."""
    code = response_name(getattr(exc, "code", 0))
    return ToolError(
        f"{obj.name}: the device can no longer serve the rest of this backup ({code}: its "
        "data changed or it was released); the partial file was deleted: run the same "
        "command again for a fresh backup"
    )


class _Interrupted(Exception):
    """The transfer broke (USB, device, Ctrl-C): the partial file stays for the next run."""


def partial_path(directory: Path, obj: RemoteObject) -> Path:
    """Where a download of ``obj`` grows: its name and exact size, then ``.part``.

    The size in the name ties the partial file to one listing: a device that
    prepared another archive (another name, or the same name and another
    size) gets a fresh download, and the old partial file is left alone.
    """
    return directory / f"{obj.name}.{obj.size}.part"


def _reread(part: Path, length: int, feed: Callable[[bytes], None]) -> None:
    """The first ``length`` bytes already downloaded, through the same checks."""
    with open(part, "rb") as f:
        left = length
        while left > 0:
            data = f.read(min(REREAD, left))
            if not data:
                raise ToolError(f"{part}: shorter than {length} bytes while read back")
            feed(data)
            left -= len(data)


class _TeeSink:
    """A file-like sink that also feeds the verifier and counts bytes."""

    def __init__(self, f: Any, feed: Callable[[bytes], None], size: int = 0) -> None:
        self.f = f
        self.feed = feed
        self.size = size

    def write(self, data: bytes) -> int:
        self.f.write(data)
        self.size += len(data)
        self.feed(data)
        return len(data)


def _unchecked(dest: Path, name: str, sizer: HeaderSize) -> ArchiveSummary:
    """The summary of an encrypted copy taken without a key: its size, nothing checked."""
    size = sizer.plain_size()
    if size is None:
        detail = sizer.error or "its size does not fit its age header"
        raise ToolError(f"{name}: NOT a valid encrypted backup: {detail}", EXIT_CORRUPT)
    return ArchiveSummary(
        path=dest,
        size=size,
        manifest={},
        streams=0,
        members=0,
        sha256="",
        encrypted=True,
        checked=False,
    )


def response_name(code: int) -> str:
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
            prop_list = OperationCode.SEND_OBJECT_PROP_LIST in ops
            yield BackupDevice(mtp, storage, prop_list=prop_list, operations=frozenset(ops))
        finally:
            _close(mtp)
        return
    detail = "; ".join(problems) if problems else "no MTP device found"
    raise ToolError(f"no device with a {STORAGE_DESCRIPTION!r} storage ({detail})")


def list_devices(timeout_s: float) -> int:
    """``mtp-backup devices``: every MTP device, its storages, whether it can back up."""
    from .usb import find_mtp_devices

    devices = find_mtp_devices()
    if not devices:
        print("no MTP device found")
        return EXIT_FAILED
    for dev in devices:
        head = f"{_usb_address(dev)} {dev.idVendor:04x}:{dev.idProduct:04x}"
        try:
            mtp = _initiator(dev, timeout_s)
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


def _initiator(dev: Any, timeout_s: float) -> Any:
    from .usb import UsbInitiator

    return UsbInitiator(dev, timeout_ms=int(timeout_s * 1000))


def _open_session(mtp: Any) -> None:
    from .usb import MTPError

    try:
        mtp.open_session(1)
    except MTPError as exc:
        if exc.code != ResponseCode.SESSION_ALREADY_OPEN:
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
