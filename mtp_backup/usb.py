"""A plain MTP initiator over libusb (pyusb), for the PC side.

Used by the ``mtp-backup`` host tool and by the end-to-end tests' raw
protocol checks.  It speaks only standard MTP, so it works against any
responder, not just ours.  Objects stream to and from files in chunks; no
object is held whole in memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import IO, Any, cast

import usb.core
import usb.util

from mtp_responder.core.codes import (
    ALL,
    ROOT,
    STILL_IMAGE_INTERFACE,
    ClassRequest,
    ClassRequestType,
    DataType,
    EventCode,
    ObjectFormat,
    ObjectProp,
    OperationCode,
    ResponseCode,
)
from mtp_responder.core.connection import InitiatorConnection
from mtp_responder.core.container import HEADER_SIZE
from mtp_responder.core.datasets import (
    DeviceInfo,
    ObjectInfoData,
    PropListItem,
    StorageInfo,
    build_object_info,
    build_prop_list,
    parse_object_info,
    parse_u32_array,
)
from mtp_responder.core.events import Command, DataChunk, DataEnd, DataStart, Response
from mtp_responder.core.protocol import NeedData
from mtp_responder.core.transaction import RemoteProtocolError

__all__ = ["MTPError", "Response", "UsbInitiator", "find_device", "find_mtp_devices"]

READ_SIZE = 256 * 1024

Progress = Callable[[int], None]


class MTPError(Exception):
    def __init__(self, operation: int, code: int, params: tuple[int, ...] = ()) -> None:
        try:
            name = ResponseCode(code).name
        except ValueError:
            name = f"{code:#06x}"
        try:
            op = OperationCode(operation).name
        except ValueError:
            op = f"{operation:#06x}"
        super().__init__(f"{op} failed: {name}")
        self.operation = operation
        self.code = code
        self.params = params


def _fresh_backend() -> Any:
    """A libusb backend on a new context.

    libusb learns about hot-plugged devices from udev's events; without
    udevd (a small board, a test VM) a context created earlier never sees a
    device that enumerated later, e.g. after a replug.  A new context scans
    the bus afresh.
    """
    import usb.backend.libusb1 as libusb1

    libusb1.get_backend()  # loads the shared library once
    return libusb1._LibUSB(libusb1._lib)


def find_device(vendor_id: int, product_id: int) -> Any | None:
    return usb.core.find(idVendor=vendor_id, idProduct=product_id, backend=_fresh_backend())


def find_mtp_devices() -> list[Any]:
    """USB devices with an MTP-like interface (still image class 6/1/1)."""
    found = []
    for dev in usb.core.find(find_all=True, backend=_fresh_backend()):
        try:
            for cfg in dev:
                for intf in cfg:
                    if (
                        intf.bInterfaceClass,
                        intf.bInterfaceSubClass,
                        intf.bInterfaceProtocol,
                    ) == STILL_IMAGE_INTERFACE:
                        found.append(dev)
                        raise StopIteration
        except StopIteration:
            continue
        except usb.core.USBError:
            continue
    return found


class UsbInitiator:
    """One MTP device, claimed."""

    def __init__(self, device: Any, timeout_ms: int = 20000) -> None:
        self.dev = device
        self.timeout = timeout_ms
        self.tid = 0
        self.conn = InitiatorConnection()
        """Builds what we send, parses what the device sends, checks both."""
        self._out_bytes = 0
        cfg = device.get_active_configuration()
        intf = next(
            i
            for i in cfg
            if (i.bInterfaceClass, i.bInterfaceSubClass, i.bInterfaceProtocol)
            == STILL_IMAGE_INTERFACE
        )
        self.interface = intf.bInterfaceNumber
        try:
            if device.is_kernel_driver_active(self.interface):
                device.detach_kernel_driver(self.interface)
        except (NotImplementedError, usb.core.USBError):
            pass
        usb.util.claim_interface(device, self.interface)
        eps = list(intf)

        def pick(direction: int, kind: int) -> Any:
            return next(
                e
                for e in eps
                if usb.util.endpoint_direction(e.bEndpointAddress) == direction
                and usb.util.endpoint_type(e.bmAttributes) == kind
            )

        self.ep_in = pick(usb.util.ENDPOINT_IN, usb.util.ENDPOINT_TYPE_BULK)
        self.ep_out = pick(usb.util.ENDPOINT_OUT, usb.util.ENDPOINT_TYPE_BULK)
        self.ep_int = pick(usb.util.ENDPOINT_IN, usb.util.ENDPOINT_TYPE_INTR)
        self.mps = self.ep_in.wMaxPacketSize

    def close(self) -> None:
        usb.util.release_interface(self.dev, self.interface)
        usb.util.dispose_resources(self.dev)

    # -- transfers -------------------------------------------------------------

    def _write(self, data: bytes | memoryview) -> None:
        self.ep_out.write(data, self.timeout)

    def _read(self, size: int = READ_SIZE) -> bytes:
        return bytes(self.ep_in.read(size, self.timeout))

    def send_command(self, code: int, *params: int) -> int:
        tid = self.tid
        self.tid += 1
        self._write(self.conn.send(Command(code, tid, params)))
        return tid

    def begin_data(self, code: int, tid: int, length: int, first: bytes = b"") -> None:
        """Start a data phase of ``length`` bytes; its header goes out with ``first``."""
        header = self.conn.send(DataStart(code, tid, length))
        body = self.conn.send(DataChunk(first)) if first else b""
        self._write(header + body)
        self._out_bytes = HEADER_SIZE + len(first)

    def write_data(self, chunk: bytes) -> None:
        """More of the data phase :meth:`begin_data` started."""
        self._write(self.conn.send(DataChunk(chunk)))
        self._out_bytes += len(chunk)

    def end_data(self) -> None:
        """End the data phase: a zero-length packet if it filled its last packet."""
        self.conn.send(DataEnd())
        if self._out_bytes % self.ep_out.wMaxPacketSize == 0:
            self._write(b"")

    def send_data(self, code: int, tid: int, payload: bytes) -> None:
        self.begin_data(code, tid, len(payload), payload)
        self.end_data()

    def send_data_from(
        self, code: int, tid: int, source: IO[bytes], length: int, progress: Progress | None = None
    ) -> None:
        """Stream ``length`` bytes of ``source`` as one data phase."""
        first = source.read(min(length, READ_SIZE - HEADER_SIZE))
        self.begin_data(code, tid, length, first)
        sent = len(first)
        if progress:
            progress(sent)
        while sent < length:
            chunk = source.read(min(READ_SIZE, length - sent))
            if not chunk:
                raise OSError("source ended before the announced length")
            self.write_data(chunk)
            sent += len(chunk)
            if progress:
                progress(sent)
        self.end_data()

    def _next_event(self) -> DataStart | DataChunk | DataEnd | Response:
        """The device's next event; a read shorter than asked ended its transfer."""
        while True:
            event = self.conn.next_event()
            if not isinstance(event, NeedData):
                assert isinstance(event, (DataStart, DataChunk, DataEnd, Response))
                return event
            raw = self._read()
            self.conn.receive_data(raw, len(raw) < READ_SIZE)

    def read_response(self) -> Response:
        event = self._next_event()
        if not isinstance(event, Response):
            raise RemoteProtocolError(f"expected a response, the device sent {event}")
        return event

    def read_data(
        self, sink: IO[bytes] | None, progress: Progress | None = None
    ) -> tuple[bytes | None, Response]:
        """A data phase (into ``sink`` or returned) followed by the response."""
        event = self._next_event()
        if isinstance(event, Response):
            return None, event
        parts: list[bytes] = []
        got = 0
        while not isinstance(event := self._next_event(), DataEnd):
            assert isinstance(event, DataChunk)
            if sink is not None:
                sink.write(event.data)
            else:
                parts.append(event.data)
            got += len(event.data)
            if progress:
                progress(got)
        return (None if sink is not None else b"".join(parts)), self.read_response()

    def transaction(
        self, code: int, *params: int, data: bytes | None = None, check: bool = True
    ) -> tuple[bytes | None, Response]:
        tid = self.send_command(code, *params)
        if data is not None:
            self.send_data(code, tid, data)
            payload, response = None, self.read_response()
        else:
            payload, response = self.read_data(None)
        if check and response.code != ResponseCode.OK:
            raise MTPError(code, response.code, response.params)
        return payload, response

    # -- class requests -----------------------------------------------------------

    def cancel(self, transaction_id: int) -> None:
        """Cancel the transaction; the device forgets it, and so do we."""
        payload = struct.pack("<HI", EventCode.CANCEL_TRANSACTION, transaction_id)
        self.dev.ctrl_transfer(
            ClassRequestType.OUT, ClassRequest.CANCEL, 0, self.interface, payload, self.timeout
        )
        self.conn.reset()

    def device_status(self) -> tuple[int, tuple[int, ...]]:
        raw = bytes(
            self.dev.ctrl_transfer(
                ClassRequestType.IN,
                ClassRequest.GET_DEVICE_STATUS,
                0,
                self.interface,
                64,
                self.timeout,
            )
        )
        length, code = struct.unpack_from("<HH", raw)
        extra = struct.unpack_from(f"<{(length - 4) // 4}I", raw, 4) if length > 4 else ()
        return code, extra

    def device_reset(self) -> None:
        self.dev.ctrl_transfer(
            ClassRequestType.OUT, ClassRequest.DEVICE_RESET, 0, self.interface, None, self.timeout
        )
        self.conn.reset()

    # -- operations -----------------------------------------------------------------

    def device_info(self) -> Any:
        payload, _ = self.transaction(OperationCode.GET_DEVICE_INFO)
        return DeviceInfo.parse(payload)

    def open_session(self, session_id: int = 1) -> None:
        self.tid = 0
        self.transaction(OperationCode.OPEN_SESSION, session_id)

    def close_session(self) -> None:
        self.transaction(OperationCode.CLOSE_SESSION)

    def storage_ids(self) -> list[int]:
        payload, _ = self.transaction(OperationCode.GET_STORAGE_IDS)
        return parse_u32_array(payload or b"")

    def storage_info(self, storage_id: int) -> Any:
        payload, _ = self.transaction(OperationCode.GET_STORAGE_INFO, storage_id)
        return StorageInfo.parse(payload)

    def object_handles(
        self, storage_id: int = ALL, parent: int = ROOT, format_code: int = 0
    ) -> list[int]:
        payload, _ = self.transaction(
            OperationCode.GET_OBJECT_HANDLES, storage_id, format_code, parent
        )
        return parse_u32_array(payload or b"")

    def object_info(self, handle: int) -> ObjectInfoData:
        payload, _ = self.transaction(OperationCode.GET_OBJECT_INFO, handle)
        return parse_object_info(payload or b"")

    def children(self, storage_id: int, parent: int = ROOT) -> Iterator[tuple[int, ObjectInfoData]]:
        for handle in self.object_handles(storage_id, parent):
            yield handle, self.object_info(handle)

    def find(self, storage_id: int, path: str) -> int:
        """The handle of ``a/b/c`` in a storage."""
        parent = ROOT
        for part in [p for p in path.split("/") if p]:
            for handle, info in self.children(storage_id, parent):
                if info.filename == part:
                    parent = handle
                    break
            else:
                raise FileNotFoundError(path)
        return parent

    def get_object_to(self, handle: int, sink: IO[bytes], progress: Progress | None = None) -> None:
        tid = self.send_command(OperationCode.GET_OBJECT, handle)
        del tid
        _, response = self.read_data(sink, progress)
        if response.code != ResponseCode.OK:
            raise MTPError(OperationCode.GET_OBJECT, response.code)

    def get_partial_object_to(
        self,
        handle: int,
        offset: int,
        length: int,
        sink: IO[bytes],
        progress: Progress | None = None,
        wide: bool = True,
    ) -> int:
        """Up to ``length`` bytes of an object from ``offset`` into ``sink``; returns the count.

        ``wide``: GetPartialObject64 (64-bit offset); otherwise GetPartialObject,
        whose offset must fit in 32 bits.  ``length`` must fit in 32 bits either way.
        """
        if wide:
            op = OperationCode.GET_PARTIAL_OBJECT_64
            params: tuple[int, ...] = (handle, offset & 0xFFFFFFFF, offset >> 32, length)
        else:
            if offset > 0xFFFFFFFF:
                raise ValueError("GetPartialObject cannot reach past 4 GiB")
            op = OperationCode.GET_PARTIAL_OBJECT
            params = (handle, offset, length)
        counter = _Counter(sink)
        self.send_command(op, *params)
        _, response = self.read_data(cast("IO[bytes]", counter), progress)
        if response.code != ResponseCode.OK:
            raise MTPError(op, response.code)
        return counter.size

    def _send_object_data(
        self, handle: int, source: IO[bytes], length: int, progress: Progress | None
    ) -> tuple[int, Response]:
        """The SendObject that follows SendObjectInfo or SendObjectPropList."""
        tid = self.send_command(OperationCode.SEND_OBJECT)
        self.send_data_from(OperationCode.SEND_OBJECT, tid, source, length, progress)
        return handle, self.read_response()

    def send_object_from(
        self,
        storage_id: int,
        parent: int,
        name: str,
        source: IO[bytes],
        length: int,
        progress: Progress | None = None,
        format_code: int = ObjectFormat.UNDEFINED,
    ) -> tuple[int, Response]:
        """SendObjectInfo + SendObject; returns (handle, SendObject response)."""
        info = ObjectInfoData(
            storage_id=storage_id,
            object_format=format_code,
            protection_status=0,
            compressed_size=min(length, 0xFFFFFFFF),
            parent_object=parent,
            association_type=0,
            filename=name,
        )
        _, response = self.transaction(
            OperationCode.SEND_OBJECT_INFO, storage_id, parent, data=build_object_info(info)
        )
        return self._send_object_data(response.params[2], source, length, progress)

    def send_object_prop_list_from(
        self,
        storage_id: int,
        parent: int,
        name: str,
        source: IO[bytes],
        length: int,
        progress: Progress | None = None,
        format_code: int = ObjectFormat.UNDEFINED,
    ) -> tuple[int, Response]:
        """SendObjectPropList + SendObject: the 64-bit size SendObjectInfo cannot carry."""
        props = build_prop_list([PropListItem(0, ObjectProp.OBJECT_FILE_NAME, DataType.STR, name)])
        _, response = self.transaction(
            OperationCode.SEND_OBJECT_PROP_LIST,
            storage_id,
            parent,
            format_code,
            length >> 32,
            length & 0xFFFFFFFF,
            data=props,
        )
        return self._send_object_data(response.params[2], source, length, progress)

    def delete_object(self, handle: int) -> None:
        self.transaction(OperationCode.DELETE_OBJECT, handle, 0)


class _Counter:
    """A sink that counts what it passes on."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sink.write(data)
        self.size += len(data)
        return len(data)
