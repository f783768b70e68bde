"""The FunctionFS transport on a real kernel gadget, driven by pyusb.

This file is two things:

* run as a script (``python test_transport_echo.py <functionfs mount>``) it is
  the gadget's function: a bulk echo on :class:`FunctionFSTransport` that sends
  every OUT transfer back on IN with the same transfer boundaries, plus a few
  commands (a transfer starting with ``CMD:``) to exercise what an echo cannot;
* run by pytest inside the test VM it is the host: pyusb writes transfers,
  reads them back, sends class requests and unplugs the gadget mid-transfer.

Only the transport is under test here; the MTP protocol is tested elsewhere.
"""

from __future__ import annotations

import argparse
import logging
import os
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Commands understood by the echo function (OUT transfers starting with these).
CMD_EVENT = b"CMD:EVENT"  # send an event container on interrupt IN
CMD_HALT = b"CMD:HALT"  # device-side cancel: halt both bulk endpoints
CMD_SOURCE = b"CMD:SOURCE"  # + u32 n: send one IN transfer of n bytes
CMD_SINK = b"CMD:SINK"  # + u32 n: swallow n OUT bytes, then answer the elapsed time
CMD_STATS = b"CMD:STATS"  # answer counters as "key=value" lines

EVENT = struct.pack("<IHHII", 16, 4, 0x4002, 7, 0x1234)  # ObjectAdded(0x1234), TID 7
BUSY_AFTER_CANCEL = 0.5  # how long the function keeps Device Busy after a Cancel


def pattern(size: int, seed: int = 0) -> bytes:
    block = bytes((i * 7 + seed) & 0xFF for i in range(251))
    return (block * (size // len(block) + 1))[:size]


def check_same(got: bytes, want: bytes, what: str) -> None:
    """Compare without dumping megabytes into the test report."""
    if got == want:
        return
    first = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
    raise AssertionError(
        f"{what}: got {len(got)} bytes, expected {len(want)}; first difference at {first}"
    )


# ---------------------------------------------------------------------------------------
# Device side (the gadget function)
# ---------------------------------------------------------------------------------------


async def run_echo(mount: str, options: dict[str, Any]) -> None:
    import trio

    from mtp_responder.transport.base import (
        CancelRequest,
        Connected,
        DeviceResetRequest,
        Disconnected,
        LinkLost,
        TransportError,
    )
    from mtp_responder.transport.functionfs import FunctionFSTransport, open_functionfs

    log = logging.getLogger("echo")
    stats = {"connected": 0, "link_lost": 0, "cancel": 0, "reset": 0, "disconnected": 0}

    async def control(transport: FunctionFSTransport, cancel_echo: Any) -> None:
        async for event in transport.control_events():
            log.info("control event %s", event)
            if isinstance(event, Connected):
                stats["connected"] += 1
            elif isinstance(event, LinkLost):
                stats["link_lost"] += 1
            elif isinstance(event, CancelRequest | DeviceResetRequest):
                stats["cancel" if isinstance(event, CancelRequest) else "reset"] += 1
                cancel_echo()
                # Stay busy a little so the host can see Device Busy first.
                await trio.sleep(BUSY_AFTER_CANCEL)
                await transport.abort_transfers()
                transport.set_idle(True)

    async def read_transfer(transport: FunctionFSTransport) -> bytes:
        parts = []
        while True:
            chunk = await transport.read()
            parts.append(chunk.data)
            if chunk.end_of_transfer:
                return b"".join(parts)

    async def command(transport: FunctionFSTransport, first: bytes) -> None:
        if first.startswith(CMD_EVENT):
            transport.send_event(EVENT)
        elif first.startswith(CMD_HALT):
            await transport.halt_bulk_endpoints()
        elif first.startswith(CMD_SOURCE):
            (size,) = struct.unpack_from("<I", first, len(CMD_SOURCE))
            data = memoryview(pattern(size))
            step = 200_000  # not a multiple of the packet size on purpose
            for offset in range(0, size, step):
                piece = data[offset : offset + step]
                await transport.write(piece, end_of_transfer=offset + len(piece) == size)
            if size == 0:
                await transport.write(b"", end_of_transfer=True)
        elif first.startswith(CMD_SINK):
            (size,) = struct.unpack_from("<I", first, len(CMD_SINK))
            started = time.monotonic()
            received = 0
            while received < size:
                received += len((await transport.read()).data)
            elapsed = time.monotonic() - started
            await transport.write(f"{received} {elapsed:.6f}".encode(), end_of_transfer=True)
        elif first.startswith(CMD_STATS):
            text = "\n".join(f"{k}={v}" for k, v in sorted(stats.items()))
            await transport.write(text.encode(), end_of_transfer=True)

    async def echo(transport: FunctionFSTransport) -> None:
        """Echo chunk by chunk, so IN and OUT overlap as in a real data phase."""
        first = True
        command_buffer = b""
        while True:
            chunk = await transport.read()
            if first and chunk.data.startswith(b"CMD:"):
                command_buffer = chunk.data
            if command_buffer:
                if not chunk.end_of_transfer:
                    command_buffer += chunk.data
                    continue
                await command(transport, command_buffer)
                command_buffer = b""
                first = True
                continue
            await transport.write(chunk.data, end_of_transfer=chunk.end_of_transfer)
            first = chunk.end_of_transfer

    async with open_functionfs(mount, **options) as t:
        log.info("descriptors written, serving %s", mount)
        async with trio.open_nursery() as nursery:
            scope_box: list[trio.CancelScope] = []

            def cancel_echo() -> None:
                for scope in scope_box:
                    scope.cancel()

            nursery.start_soon(control, t, cancel_echo)
            while True:
                with trio.CancelScope() as scope:
                    scope_box[:] = [scope]
                    try:
                        await echo(t)
                    except Disconnected:
                        stats["disconnected"] += 1
                        log.info("echo: disconnected")
                    except TransportError as exc:
                        log.warning("echo: %s", exc)
                        await trio.sleep(0.1)
                if scope.cancelled_caught:
                    log.info("echo: transaction cancelled")
                    # Let the control task finish its abort before reading on.
                    await trio.sleep(BUSY_AFTER_CANCEL + 0.1)


def device_main(argv: list[str]) -> int:
    import signal

    import trio

    logging.basicConfig(
        level=logging.DEBUG if os.environ.get("ECHO_DEBUG") else logging.INFO,
        format="%(relativeCreated)9.1f %(name)s %(levelname)s %(message)s",
        stream=sys.stdout,
    )
    parser = argparse.ArgumentParser()
    parser.add_argument("mount")
    parser.add_argument("--buffer-size", type=int, default=64 * 1024)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--kernel-release", help="pretend to run on this kernel (eventfd quirk)")
    args = parser.parse_args(argv[1:])
    options = {
        "buffer_size": args.buffer_size,
        "out_blocks": args.blocks,
        "in_blocks": args.blocks,
        "kernel_release": args.kernel_release,
    }

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_echo, args.mount, options)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)
    return 0


# ---------------------------------------------------------------------------------------
# Host side (pytest, in the guest)
# ---------------------------------------------------------------------------------------

pytestmark = [pytest.mark.e2e, pytest.mark.superspeed]

if TYPE_CHECKING:
    from tests.e2e.guest.support import Gadget


class Host:
    """pyusb on the device's interface 0; every transfer with a timeout."""

    def __init__(self, gadget: Gadget) -> None:
        import usb.util

        from tests.e2e.guest.support import pyusb_find

        self.gadget = gadget
        dev = pyusb_find(gadget.vid, gadget.pid)
        assert dev is not None, "device not found by pyusb"
        self.dev = dev
        cfg = dev.get_active_configuration()
        intf = cfg[(0, 0)]
        assert (intf.bInterfaceClass, intf.bInterfaceSubClass, intf.bInterfaceProtocol) == (
            6,
            1,
            1,
        )

        def find(direction: int, kind: int) -> Any:
            return usb.util.find_descriptor(
                intf,
                custom_match=lambda e: (
                    usb.util.endpoint_direction(e.bEndpointAddress) == direction
                    and usb.util.endpoint_type(e.bmAttributes) == kind
                ),
            )

        self.ep_out = find(usb.util.ENDPOINT_OUT, usb.util.ENDPOINT_TYPE_BULK)
        self.ep_in = find(usb.util.ENDPOINT_IN, usb.util.ENDPOINT_TYPE_BULK)
        self.ep_int = find(usb.util.ENDPOINT_IN, usb.util.ENDPOINT_TYPE_INTR)
        self.mps = self.ep_in.wMaxPacketSize
        usb.util.claim_interface(dev, 0)

    def close(self) -> None:
        import usb.util

        usb.util.dispose_resources(self.dev)

    def send(self, data: bytes, timeout: int = 10_000) -> None:
        """One OUT transfer, ended by a ZLP when it needs one (libusb adds none)."""
        if data:
            written = self.dev.write(self.ep_out.bEndpointAddress, data, timeout)
            assert written == len(data), f"OUT took {written} of {len(data)} bytes"
        if len(data) % self.ep_out.wMaxPacketSize == 0:
            self.dev.write(self.ep_out.bEndpointAddress, b"", timeout)

    def receive(self, expected: int, timeout: int = 10_000) -> bytes:
        """One IN transfer: a buffer bigger than expected only fills up to the short packet."""
        return bytes(self.dev.read(self.ep_in.bEndpointAddress, expected + self.mps, timeout))

    def class_out(self, request: int, data: bytes = b"") -> None:
        self.dev.ctrl_transfer(0x21, request, 0, 0, data, timeout=5000)

    def class_in(self, request: int, length: int) -> bytes:
        return bytes(self.dev.ctrl_transfer(0xA1, request, 0, 0, length, timeout=5000))

    def device_status(self) -> tuple[int, tuple[int, ...]]:
        raw = self.class_in(0x67, 64)
        length, code = struct.unpack_from("<HH", raw)
        assert length == len(raw)
        return code, tuple(x for (x,) in struct.iter_unpack("<I", raw[4:]))

    def echo(self, data: bytes) -> bytes:
        """Send and read back at the same time, as the function echoes as it reads.

        Sending first would deadlock on big transfers, by design: the function
        stops reading OUT while its IN blocks wait for the host (back-pressure).
        """
        result: list[bytes | BaseException] = []

        def reader() -> None:
            try:
                result.append(self.receive(len(data)))
            except BaseException as exc:
                result.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            self.send(data)
        finally:
            thread.join()
        (got,) = result
        if isinstance(got, BaseException):
            raise got
        return got

    def stats(self) -> dict[str, int]:
        self.send(CMD_STATS)
        text = self.receive(4096).decode()
        return {k: int(v) for k, v in (line.split("=") for line in text.splitlines())}


@pytest.fixture
def gadget(make_gadget: Any) -> Gadget:
    g: Gadget = make_gadget(responder_command=echo_command())
    return g


def echo_command(*extra: str) -> list[str]:
    return ["{python}", __file__, "{mount}", *extra]


@pytest.fixture
def host(gadget: Gadget) -> Iterator[Host]:
    h = Host(gadget)
    yield h
    h.close()


SIZES = [0, 1, 511, 512, 513, 4096, 1 << 20]


def responder_cpu_seconds(gadget: Gadget) -> float:
    pid = gadget.responder_pid()
    assert pid is not None, "no responder pid"
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def assert_idle(gadget: Gadget) -> None:
    """With nothing to do the function must sleep, not spin on a readable fd."""
    before = responder_cpu_seconds(gadget)
    time.sleep(1.0)
    used = responder_cpu_seconds(gadget) - before
    assert used < 0.2, f"idle responder used {used:.2f} s of CPU in 1 s"


def test_echo_sizes(host: Host, gadget: Gadget) -> None:
    speed = gadget.device()
    print(f"link {speed.speed if speed else '?'} Mb/s, wMaxPacketSize {host.mps}")
    for size in [*SIZES, host.mps, 3 * host.mps, 64 * 1024, 64 * 1024 + 1, 200_000]:
        data = pattern(size, seed=size)
        check_same(host.echo(data), data, f"{size}-byte echo")


def test_back_to_back_transfers_keep_their_boundaries(host: Host) -> None:
    transfers = [pattern(n, seed=n) for n in (513, 512, 0, 1, 4096, 70_000)]
    for data in transfers:
        host.send(data)
    for data in transfers:
        check_same(host.receive(len(data)), data, f"{len(data)}-byte transfer")


def test_interrupt_event(host: Host) -> None:
    host.send(CMD_EVENT)
    event = bytes(host.dev.read(host.ep_int.bEndpointAddress, 64, 5000))
    assert event == EVENT


def test_status_and_unknown_class_requests(host: Host) -> None:
    import usb.core

    assert host.device_status() == (0x2001, ())
    # Only the 4 bytes asked for.
    assert host.class_in(0x67, 4) == struct.pack("<HH", 4, 0x2001)
    with pytest.raises(usb.core.USBError):
        host.class_in(0x65, 64)  # Get Extended Event Data: stalled
    with pytest.raises(usb.core.USBError):
        host.class_out(0x42)  # unknown class request
    # ep0 recovers from the stalls and the bulk pipes were not disturbed.
    assert host.device_status() == (0x2001, ())
    assert host.echo(b"after stalls") == b"after stalls"
    assert_idle(host.gadget)


def test_cancel_mid_transfer(host: Host) -> None:
    # Half a transfer (no short packet): the function echoes what it has, the
    # host reads none of it, then cancels.
    host.dev.write(host.ep_out.bEndpointAddress, pattern(256 * 1024), 10_000)
    time.sleep(0.3)
    host.class_out(0x64, struct.pack("<HI", 0x4001, 42))
    code, _ = host.device_status()
    assert code == 0x2019, f"expected Device Busy right after Cancel, got 0x{code:04x}"
    deadline = time.monotonic() + 5
    while code != 0x2001 and time.monotonic() < deadline:
        time.sleep(0.05)
        code, _ = host.device_status()
    assert code == 0x2001
    # Nothing of the cancelled transaction leaks into the next one.
    assert host.echo(b"next transaction") == b"next transaction"
    check_same(host.echo(pattern(4096, seed=9)), pattern(4096, seed=9), "echo after cancel")
    assert host.stats()["cancel"] == 1
    assert_idle(host.gadget)


def test_device_reset_request(host: Host) -> None:
    host.class_out(0x66)
    time.sleep(BUSY_AFTER_CANCEL + 0.3)
    assert host.device_status() == (0x2001, ())
    assert host.echo(b"after reset") == b"after reset"
    assert host.stats()["reset"] == 1


def test_device_side_cancel_halts_bulk_endpoints(host: Host) -> None:
    host.send(CMD_HALT)
    deadline = time.monotonic() + 5
    code, params = host.device_status()
    while code == 0x2001 and time.monotonic() < deadline:
        time.sleep(0.05)
        code, params = host.device_status()
    assert code == 0x201F
    assert sorted(params) == sorted([host.ep_in.bEndpointAddress, host.ep_out.bEndpointAddress])
    assert host.device_status() == (0x2001, ())
    host.dev.clear_halt(host.ep_in.bEndpointAddress)
    host.dev.clear_halt(host.ep_out.bEndpointAddress)
    assert host.echo(b"after halt") == b"after halt"
    assert_idle(host.gadget)


def test_unbind_mid_transfer_then_serve_again(gadget: Gadget, host: Host) -> None:
    # Leave a transfer open in both directions, then pull the plug.
    host.dev.write(host.ep_out.bEndpointAddress, pattern(128 * 1024), 10_000)
    time.sleep(0.3)
    host.close()
    gadget.cli("unbind")
    gadget.wait_gone()
    gadget.cli("bind")
    gadget.wait_enumerated()
    again = Host(gadget)
    try:
        for size in SIZES:
            data = pattern(size, seed=size + 1)
            check_same(again.echo(data), data, f"{size}-byte echo after rebind")
        stats = again.stats()
        assert stats["link_lost"] >= 1
        assert stats["connected"] >= 2
        assert_idle(gadget)
    finally:
        again.close()


def test_old_kernel_eventfd_quirk_path(make_gadget: Any) -> None:
    """Kernels before 5.16 get ep0 events through an AIO poll block instead.

    Exercised here on the guest's newer kernel by pretending to be on 5.10,
    with the other buffer geometry (bigger blocks, fewer of them).
    """
    gadget = make_gadget(
        responder_command=echo_command(
            "--kernel-release", "5.10.0", "--buffer-size", str(128 * 1024), "--blocks", "2"
        )
    )
    host = Host(gadget)
    try:
        for size in SIZES:
            data = pattern(size, seed=size + 2)
            check_same(host.echo(data), data, f"{size}-byte echo")
        host.class_out(0x64, struct.pack("<HI", 0x4001, 7))
        assert host.device_status()[0] == 0x2019
        time.sleep(BUSY_AFTER_CANCEL + 0.3)
        assert host.device_status() == (0x2001, ())
        check_same(host.echo(b"after cancel"), b"after cancel", "echo after cancel")
    finally:
        host.close()
    assert "eventfd quirk on" in gadget.responder_log.read_text()


def test_throughput(host: Host, gadget: Gadget) -> None:
    """Not a benchmark gate: prints MB/s of each direction for the record."""
    size = (32 << 20) - 100  # not packet-aligned: the last read ends on the short packet
    piece = 4 << 20  # usbfs caps what one URB may hold (usbfs_memory_mb)
    host.send(CMD_SOURCE + struct.pack("<I", size))
    received = bytearray()
    started = time.monotonic()
    while len(received) < size:
        got = host.dev.read(host.ep_in.bEndpointAddress, piece, 60_000)
        received += got
        if len(got) < piece:
            break
    in_rate = size / (time.monotonic() - started) / 1e6
    check_same(bytes(received), pattern(size), "source")

    data = pattern(size)
    host.send(CMD_SINK + struct.pack("<I", size))
    started = time.monotonic()
    for offset in range(0, size, piece):
        host.dev.write(host.ep_out.bEndpointAddress, data[offset : offset + piece], 60_000)
    reply = host.receive(64).decode().split()
    out_rate = size / (time.monotonic() - started) / 1e6
    assert int(reply[0]) == size
    device = gadget.device()
    line = (
        f"transport throughput ({device.speed if device else '?'} Mb/s link, "
        f"wMaxPacketSize {host.mps}): IN {in_rate:.1f} MB/s, OUT {out_rate:.1f} MB/s"
    )
    print(line)
    (gadget.log_dir / "throughput.txt").write_text(line + "\n")


if __name__ == "__main__":
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    sys.exit(device_main(sys.argv))
