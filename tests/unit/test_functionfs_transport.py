"""Parts of the FunctionFS transport that do not need a kernel."""

from __future__ import annotations

import pytest

from mtp_responder.transport.base import Disconnected
from mtp_responder.transport.functionfs import (
    FunctionFSTransport,
    ffs_eventfd_is_unsafe,
    needs_zlp,
    parse_kernel_release,
)


@pytest.mark.parametrize(
    ("release", "version", "unsafe"),
    [
        ("4.19.0-26-amd64", (4, 19), True),
        # The library compares strings: "5.4" > "5.16" and "5.10" < "5.16".
        ("5.4.0-150-generic", (5, 4), True),
        ("5.10.0-28-arm64", (5, 10), True),
        ("5.15.92-v8+", (5, 15), True),
        ("5.16.0", (5, 16), False),
        ("6.1.0-18-amd64", (6, 1), False),
        ("6.18.44-fc-v782", (6, 18), False),
        ("10.2", (10, 2), False),
    ],
)
def test_kernel_release(release: str, version: tuple[int, int], unsafe: bool) -> None:
    assert parse_kernel_release(release) == version
    assert ffs_eventfd_is_unsafe(release) is unsafe


def test_kernel_release_garbage() -> None:
    with pytest.raises(ValueError):
        parse_kernel_release("linux")


@pytest.mark.parametrize(
    ("length", "mps", "zlp"),
    [
        (0, 512, True),  # an empty transfer is just the ZLP
        (1, 512, False),
        (511, 512, False),
        (512, 512, True),
        (513, 512, False),
        (4096, 512, True),
        (12, 64, False),
        (1024, 1024, True),
        (1536, 1024, False),
        (1 << 20, 1024, True),
    ],
)
def test_needs_zlp(length: int, mps: int, zlp: bool) -> None:
    assert needs_zlp(length, mps) is zlp


@pytest.mark.parametrize("size", [0, 1000, 1536 + 1, -1024])
def test_buffer_size_must_be_whole_kibibytes(size: int) -> None:
    with pytest.raises(ValueError):
        FunctionFSTransport("/nonexistent", buffer_size=size, kernel_release="6.1.0")


async def test_no_host_yet() -> None:
    transport = FunctionFSTransport("/nonexistent", kernel_release="6.1.0")
    assert transport.max_packet_size == 0
    assert not transport.connected
    with pytest.raises(Disconnected):
        await transport.write(b"x", end_of_transfer=True)
    with pytest.raises(Disconnected):
        await transport.flush()
    transport.send_event(b"\x10\x00\x00\x00\x04\x00\x02\x40\x00\x00\x00\x00")  # dropped
    await transport.aclose()
    with pytest.raises(Disconnected):
        await transport.read()
