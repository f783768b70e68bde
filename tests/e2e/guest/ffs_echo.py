"""A minimal FunctionFS function: bulk echo plus a few vendor control requests.

It stands in for the MTP responder when the gadget plumbing itself is under test
(``mtp-gadget``, the VM harness, binding, composite gadgets), so a failure there
cannot be blamed on the responder.  It is started by ``mtp-gadget up`` exactly
like the responder: ``python ffs_echo.py <functionfs mount>``.

Host-visible behaviour (vendor-specific interface 0, string "E2E echo"):

* every bulk OUT transfer is sent back unchanged on bulk IN;
* vendor IN request ``REQ_MAGIC`` returns ``MAGIC``;
* vendor OUT ``REQ_STORE`` keeps its data stage, vendor IN ``REQ_LOAD`` returns it;
* MS OS extended compat ID ``WINUSB`` for interface 0, so the configfs
  ``os_desc`` wiring can be checked from the host side.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import signal
import sys
import time
from typing import Any

import functionfs
import functionfs.ch9 as ch9

# Not 0x01: that is the gadget's MS OS vendor code, and the composite layer answers
# (or stalls) every vendor request carrying it before a function sees it.
REQ_MAGIC = 0x51
REQ_STORE = 0x52
REQ_LOAD = 0x53
MAGIC = b"mtp-e2e-echo/1"
INTERFACE_NAME = "E2E echo"
OUT_BLOCKS = 4
OUT_PACKETS_PER_BLOCK = 64  # 32 KiB per transfer at high speed, 64 KiB at SuperSpeed


def log(msg: str) -> None:
    print(f"{time.monotonic():10.3f} ffs_echo: {msg}", flush=True)


def _id8(text: bytes) -> ctypes.Array[ctypes.c_ubyte]:
    return (ctypes.c_ubyte * 8)(*text.ljust(8, b"\0"))


class EchoIN(functionfs.EndpointINFile):
    """IN side: echoes are fire-and-forget; nothing is resubmitted."""

    def onComplete(self, buffer_list: Any, user_data: Any, status: int) -> bool:
        if status < 0 and status != -errno.ESHUTDOWN:
            log(f"IN transfer failed: {errno.errorcode.get(-status, status)}")
        return False

    def onSubmitEAGAIN(self, buffer_list: Any, user_data: Any) -> None:
        log("IN queue full; dropping an echo")


class EchoOUT(functionfs.EndpointOUTFile):
    """OUT side: every completed transfer is copied and queued on the IN endpoint."""

    echo_to: EchoIN | None = None

    def onComplete(self, data: memoryview | None, status: int) -> None:
        if data is None:
            if status != -errno.ESHUTDOWN:
                log(f"OUT transfer failed: {errno.errorcode.get(-status, status)}")
            return
        if self.echo_to is not None:
            self.echo_to.submit([bytearray(data)])


class EchoFunction(functionfs.Function):
    def __init__(self, path: str) -> None:
        fs_list, hs_list, ss_list = functionfs.getInterfaceInAllSpeeds(
            interface={
                "bInterfaceClass": ch9.USB_CLASS_VENDOR_SPEC,
                "bInterfaceSubClass": 0,
                "bInterfaceProtocol": 0,
                "iInterface": 1,
            },
            endpoint_list=[
                {"endpoint": {"bEndpointAddress": ch9.USB_DIR_IN,
                              "bmAttributes": ch9.USB_ENDPOINT_XFER_BULK}},
                {"endpoint": {"bEndpointAddress": ch9.USB_DIR_OUT,
                              "bmAttributes": ch9.USB_ENDPOINT_XFER_BULK}},
            ],
        )
        os_list = [
            functionfs.getOSDesc(
                interface=0,
                ext_list=[
                    functionfs.OSExtCompatDesc(
                        bFirstInterfaceNumber=0,
                        Reserved1=1,
                        CompatibleID=_id8(b"WINUSB"),
                        SubCompatibleID=_id8(b""),
                    )
                ],
            )
        ]
        super().__init__(
            path,
            fs_list=fs_list,
            hs_list=hs_list,
            ss_list=ss_list,
            os_list=os_list,
            lang_dict={0x0409: [INTERFACE_NAME]},
            out_aio_blocks_per_endpoint=OUT_BLOCKS,
            out_aio_blocks_max_packet_count=OUT_PACKETS_PER_BLOCK,
        )
        self.stored = b""

    def getEndpointClass(self, is_in: bool, descriptor: Any) -> type:
        return EchoIN if is_in else EchoOUT

    def onBind(self) -> None:
        log("BIND")

    def onUnbind(self) -> None:
        log("UNBIND")

    def onEnable(self) -> None:
        out_ep = self.getEndpoint(2)
        out_ep.echo_to = self.getEndpoint(1)
        packet = self.getEndpoint(1).getDescriptor().wMaxPacketSize
        log(f"ENABLE (wMaxPacketSize {packet})")
        super().onEnable()

    def onDisable(self) -> None:
        log("DISABLE")

    def onSuspend(self) -> None:
        log("SUSPEND")

    def onResume(self) -> None:
        log("RESUME")

    def onSetup(self, request_type: int, request: int, value: int, index: int,
                length: int) -> None:
        if request_type & ch9.USB_TYPE_MASK == ch9.USB_TYPE_VENDOR:
            is_in = bool(request_type & ch9.USB_DIR_IN)
            if is_in and request == REQ_MAGIC:
                self.ep0.write(MAGIC[:length])
                return
            if not is_in and request == REQ_STORE:
                self.stored = self.ep0.read(length) if length else b""
                if not length:
                    self.ep0.read(0)
                return
            if is_in and request == REQ_LOAD:
                self.ep0.write(self.stored[:length])
                return
            log(f"stalling vendor request {request:#04x}")
            self.ep0.halt(request_type)
            return
        super().onSetup(request_type, request, value, index, length)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mount", help="FunctionFS mount point")
    parser.add_argument(
        "--ignore-sigterm", action="store_true",
        help="behave like a hung responder, to test the SIGKILL fallback",
    )
    args = parser.parse_args(argv)

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # The library guesses this from a string comparison of kernel versions.
    functionfs.Function.quirks_ffs_unsafe_eventfd = False
    with EchoFunction(args.mount) as function:
        log(f"descriptors written to {args.mount}/ep0")
        try:
            function.processEventsForever()
        finally:
            log("exiting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
