"""A light raw MTP host over pyusb for ``bench/usb_guest.py``: big reads, no files.

libmtp's tools write what they fetch to a file and print progress after every
block, and their fixed costs (device open, session, a full listing) weigh on
every run.  This host keeps only what a fast initiator must do: one session,
GetObject read in 1 MiB bulk reads straight into reused buffers, SendObject
written in 1 MiB blocks.  What it reads is hashed on a worker thread (hashlib
drops the GIL), so the check costs the USB path nothing and nothing is kept.
It speaks standard MTP only and works against either responder.
"""

from __future__ import annotations

import hashlib
import queue
import struct
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

import usb.core
import usb.util

from mtp_backup.usb import UsbInitiator, find_device
from mtp_responder.core.codes import ROOT, ContainerType, ObjectFormat, OperationCode, ResponseCode
from mtp_responder.core.container import HEADER_SIZE
from mtp_responder.core.datasets import ObjectInfoData, build_object_info

CHUNK = 1 << 20
"""Bulk read/write size: what Windows and a tuned host use."""
TIMEOUT_MS = 60_000
BUFFERS = 4
"""Read buffers in flight between the USB reads and the hashing thread."""


class RawError(RuntimeError):
    """The device answered something a GetObject/SendObject must not."""


def open_device(vid: int, pid: int, timeout: float = 30) -> UsbInitiator:
    """Claim the device and open a session; it may still be enumerating."""
    deadline = time.monotonic() + timeout
    while True:
        dev = find_device(vid, pid)
        if dev is not None:
            try:
                initiator = UsbInitiator(dev, TIMEOUT_MS)
            except (usb.core.USBError, StopIteration):
                initiator = None
            if initiator is not None:
                try:
                    initiator.open_session()
                    initiator.storage_ids()  # some responders forget a session just opened
                    return initiator
                except Exception:
                    close_device(initiator)
        if time.monotonic() > deadline:
            raise RawError(f"{vid:04x}:{pid:04x} could not be opened within {timeout:.0f}s")
        time.sleep(0.2)


def wait_serving(vid: int, pid: int, storages: int = 1, timeout: float = 180) -> float:
    """Seconds until the device lists ``storages`` storages in a session.

    A responder may answer on the bus before its storages are ready; a figure
    taken before then would time its start-up, not the operation measured.
    """
    started = time.monotonic()
    while True:
        try:
            initiator = open_device(vid, pid, timeout=max(1.0, timeout))
            try:
                if len(initiator.storage_ids()) >= storages:
                    return time.monotonic() - started
            finally:
                close_device(initiator)
        except Exception as exc:  # not ready yet: busy, no session, still enumerating
            if time.monotonic() - started > timeout:
                raise RawError(
                    f"no {storages} storage(s) served after {timeout:.0f}s: {exc}"
                ) from exc
        if time.monotonic() - started > timeout:
            raise RawError(f"no {storages} storage(s) served after {timeout:.0f}s")
        time.sleep(0.5)


def close_device(initiator: UsbInitiator) -> None:
    """Close the session and release the interface; a device already gone is fine."""
    try:
        initiator.close_session()
    except Exception:
        pass
    try:
        initiator.close()
    except usb.core.USBError:
        pass


class Hasher:
    """SHA-256 of a stream on a worker thread, fed full buffers it hands back."""

    def __init__(self, size: int) -> None:
        self.digest = hashlib.sha256()
        self.count = 0
        self.free: queue.Queue[Any] = queue.Queue()
        for _ in range(BUFFERS):
            self.free.put(usb.util.create_buffer(size))
        self.todo: queue.Queue[tuple[Any, int, int] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.todo.get()) is not None:
            buf, start, end = item
            self.digest.update(memoryview(buf)[start:end])
            self.count += end - start
            self.free.put(buf)

    def buffer(self) -> Any:
        return self.free.get()

    def feed(self, buf: Any, start: int, end: int) -> None:
        self.todo.put((buf, start, end))

    def finish(self) -> str:
        self.todo.put(None)
        self.thread.join()
        return self.digest.hexdigest()


@dataclass
class RawRun:
    wall: float
    """command out to response in"""
    data: float
    """first data packet to the end of the data phase"""
    digest: str
    size: int


def _round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


def get_object(
    initiator: UsbInitiator, handle: int, size: int | None, tee: IO[bytes] | None = None
) -> RawRun:
    """GetObject, hashed (and written to ``tee`` if given).

    ``size`` None takes the size from the data container's length field (a
    backup archive is prepared again for each session, its size may move).
    The read that should end the data phase asks for a packet more than is left,
    so a short or zero-length packet ends it exactly where the data phase ends.
    """
    mps = initiator.mps
    total = None if size is None else HEADER_SIZE + size
    hasher = Hasher(CHUNK)
    started = time.monotonic()
    first = 0.0
    tid = initiator.send_command(OperationCode.GET_OBJECT, handle)
    got = 0
    try:
        while total is None or got < total:
            left = CHUNK if total is None else total - got
            ask = CHUNK if left > CHUNK or total is None else _round_up(left, mps) + mps
            # pyusb reads into an array of exactly the size asked for.
            buf = hasher.buffer() if ask == CHUNK else usb.util.create_buffer(ask)
            n = initiator.ep_in.read(buf, TIMEOUT_MS)
            if got == 0:
                first = time.monotonic()
                if n < HEADER_SIZE:
                    raise RawError(f"GetObject: first read gave {n} bytes, not a container")
                length, kind, code, rtid = struct.unpack_from("<IHHI", buf)
                if (kind, code, rtid) != (ContainerType.DATA, OperationCode.GET_OBJECT, tid):
                    raise RawError(f"GetObject: no data phase (type {kind}, code {code:#06x})")
                if total is None:
                    if length == 0xFFFFFFFF:
                        raise RawError("GetObject: 4 GiB or more and no size given")
                    total = left = length
            if n > left or (n < ask and n != left):
                raise RawError(f"GetObject: a read gave {n} bytes with {left} left")
            start = HEADER_SIZE if got == 0 else 0
            if tee is not None:
                tee.write(memoryview(buf)[start:n])
            hasher.feed(buf, start, n)
            got += n
        data_end = time.monotonic()
        response = bytes(initiator.ep_in.read(mps, TIMEOUT_MS))
    finally:
        digest = hasher.finish()
    wall = time.monotonic() - started
    initiator.conn.reset()  # this reader did the framing itself
    if len(response) < HEADER_SIZE:
        raise RawError(f"GetObject: {len(response)}-byte response")
    _, kind, code, _ = struct.unpack_from("<IHHI", response)
    if kind != ContainerType.RESPONSE or code != ResponseCode.OK:
        raise RawError(f"GetObject: response type {kind} code {code:#06x}")
    return RawRun(wall, data_end - first, digest, got - HEADER_SIZE)


def _read_exactly(source: IO[bytes], n: int) -> bytes:
    block = source.read(n)
    if len(block) != n:
        raise OSError(f"source gave {len(block)} bytes where {n} were due")
    return block


def send_object(
    initiator: UsbInitiator,
    storage_id: int,
    name: str,
    size: int,
    source: IO[bytes],
    parent: int = ROOT,
) -> RawRun:
    """SendObjectInfo + SendObject of ``size`` bytes of ``source``, in CHUNK writes.

    Every write but the last is a whole number of packets (the first carries the
    container header in it): a short packet ends the data phase where it is.
    """
    info = ObjectInfoData(
        storage_id=storage_id,
        object_format=ObjectFormat.UNDEFINED,
        protection_status=0,
        compressed_size=min(size, 0xFFFFFFFF),
        parent_object=parent,
        association_type=0,
        filename=name,
    )
    started = time.monotonic()
    initiator.transaction(
        OperationCode.SEND_OBJECT_INFO, storage_id, parent, data=build_object_info(info)
    )
    data_start = time.monotonic()
    tid = initiator.send_command(OperationCode.SEND_OBJECT)
    first = min(size, CHUNK - HEADER_SIZE)
    initiator.begin_data(OperationCode.SEND_OBJECT, tid, size, _read_exactly(source, first))
    left = size - first
    while left:
        block = _read_exactly(source, min(CHUNK, left))
        initiator.write_data(block)
        left -= len(block)
    initiator.end_data()
    response = initiator.read_response()
    end = time.monotonic()
    if response.code != ResponseCode.OK:
        raise RawError(f"SendObject: response {response.code:#06x}")
    return RawRun(end - started, end - data_start, "", size)  # the arrived file is checked


def find_handle(initiator: UsbInitiator, name: str) -> tuple[int, int]:
    """(storage id, handle) of ``name`` in a storage's root, first storage first."""
    for sid in initiator.storage_ids():
        for handle, info in initiator.children(sid):
            if info.filename == name:
                return sid, handle
    raise RawError(f"{name} is in no storage's root")
