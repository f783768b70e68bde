"""A plain MTP initiator over libusb (pyusb), for the PC side.

Used by the ``mtp-backup`` host tool and by the end-to-end tests' raw
protocol checks.  It speaks only standard MTP, so it works against any
responder, not just ours.  Objects stream to and from files in chunks; no
object is held whole in memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import usb.core
import usb.util

from mtp_responder.core.codes import (
    ContainerType,
    DataType,
    ObjectProp,
    OperationCode,
    ResponseCode,
)
from mtp_responder.core.container import (
    HEADER_SIZE,
    UNKNOWN_LENGTH,
    build_params_container,
    data_header,
    parse_header,
)
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

CLASS_OUT = 0x21
CLASS_IN = 0xA1
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


@dataclass(frozen=True, slots=True)
class Response:
    code: int
    params: tuple[int, ...]


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
                    ) == (6, 1, 1):
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
        cfg = device.get_active_configuration()
        intf = next(
            i
            for i in cfg
            if (i.bInterfaceClass, i.bInterfaceSubClass, i.bInterfaceProtocol) == (6, 1, 1)
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

    @classmethod
    def open_first(cls, timeout_ms: int = 20000) -> UsbInitiator:
        devices = find_mtp_devices()
        if not devices:
            raise LookupError("no MTP device found")
        return cls(devices[0], timeout_ms)

    def close(self) -> None:
        usb.util.release_interface(self.dev, self.interface)
        usb.util.dispose_resources(self.dev)

    # -- transfers -------------------------------------------------------------

    def _write(self, data: bytes | memoryview) -> None:
        self.ep_out.write(data, self.timeout)

    def _end_out_transfer(self, total: int) -> None:
        if total % self.ep_out.wMaxPacketSize == 0:
            self.ep_out.write(b"", self.timeout)

    def _read(self, size: int = READ_SIZE) -> bytes:
        return bytes(self.ep_in.read(size, self.timeout))

    def send_command(self, code: int, *params: int) -> int:
        tid = self.tid
        self.tid += 1
        self._write(build_params_container(ContainerType.COMMAND, code, tid, params))
        return tid

    def send_data(self, code: int, tid: int, payload: bytes) -> None:
        data = data_header(code, tid, len(payload)) + payload
        self._write(data)
        self._end_out_transfer(len(data))

    def send_data_from(
        self, code: int, tid: int, source: IO[bytes], length: int, progress: Progress | None = None
    ) -> None:
        """Stream ``length`` bytes of ``source`` as one data phase."""
        header = data_header(code, tid, length)
        first = source.read(min(length, READ_SIZE - HEADER_SIZE))
        self._write(header + first)
        total = HEADER_SIZE + len(first)
        sent = len(first)
        if progress:
            progress(sent)
        while sent < length:
            chunk = source.read(min(READ_SIZE, length - sent))
            if not chunk:
                raise OSError("source ended before the announced length")
            self._write(chunk)
            sent += len(chunk)
            total += len(chunk)
            if progress:
                progress(sent)
        self._end_out_transfer(total)

    def read_response(self) -> Response:
        raw = self._read(512)
        header = parse_header(raw)
        if header.type != ContainerType.RESPONSE:
            raise MTPError(0, ResponseCode.GENERAL_ERROR)
        count = (len(raw) - HEADER_SIZE) // 4
        return Response(header.code, struct.unpack_from(f"<{count}I", raw, HEADER_SIZE))

    def read_data(
        self, sink: IO[bytes] | None, progress: Progress | None = None
    ) -> tuple[bytes | None, Response]:
        """A data phase (into ``sink`` or returned) followed by the response."""
        first = self._read()
        header = parse_header(first)
        if header.type == ContainerType.RESPONSE:
            count = (len(first) - HEADER_SIZE) // 4
            return None, Response(header.code, struct.unpack_from(f"<{count}I", first, HEADER_SIZE))
        expected = None if header.length == UNKNOWN_LENGTH else header.length - HEADER_SIZE
        parts: list[bytes] = []
        got = 0
        raw, chunk = first, first[HEADER_SIZE:]
        while True:
            if chunk:
                if sink is not None:
                    sink.write(chunk)
                else:
                    parts.append(chunk)
                got += len(chunk)
                if progress:
                    progress(got)
            # A read shorter than asked ended at a short (or zero-length) packet.
            ended = len(raw) < READ_SIZE
            if ended or (expected is not None and got >= expected):
                break
            raw = chunk = self._read()
        if not ended:
            # The data filled our last read exactly: its terminating
            # zero-length packet is still queued.
            zlp = self._read(self.mps)
            if zlp:
                raise MTPError(0, ResponseCode.GENERAL_ERROR, (len(zlp),))
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
        payload = struct.pack("<HI", 0x4001, transaction_id)
        self.dev.ctrl_transfer(CLASS_OUT, 0x64, 0, self.interface, payload, self.timeout)

    def device_status(self) -> tuple[int, tuple[int, ...]]:
        raw = bytes(self.dev.ctrl_transfer(CLASS_IN, 0x67, 0, self.interface, 64, self.timeout))
        length, code = struct.unpack_from("<HH", raw)
        extra = struct.unpack_from(f"<{(length - 4) // 4}I", raw, 4) if length > 4 else ()
        return code, extra

    def device_reset(self) -> None:
        self.dev.ctrl_transfer(CLASS_OUT, 0x66, 0, self.interface, None, self.timeout)

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
        self, storage_id: int = 0xFFFFFFFF, parent: int = 0xFFFFFFFF, format_code: int = 0
    ) -> list[int]:
        payload, _ = self.transaction(
            OperationCode.GET_OBJECT_HANDLES, storage_id, format_code, parent
        )
        return parse_u32_array(payload or b"")

    def object_info(self, handle: int) -> ObjectInfoData:
        payload, _ = self.transaction(OperationCode.GET_OBJECT_INFO, handle)
        return parse_object_info(payload or b"")

    def children(
        self, storage_id: int, parent: int = 0xFFFFFFFF
    ) -> Iterator[tuple[int, ObjectInfoData]]:
        for handle in self.object_handles(storage_id, parent):
            yield handle, self.object_info(handle)

    def find(self, storage_id: int, path: str) -> int:
        """The handle of ``a/b/c`` in a storage."""
        parent = 0xFFFFFFFF
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
        format_code: int = 0x3000,
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
        format_code: int = 0x3000,
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
