"""Still-image class requests: which SETUPs we take, and what we answer."""

from __future__ import annotations

import struct

import pytest

from mtp_responder.transport.stillimage import (
    DeviceStatus,
    Setup,
    SetupKind,
    classify_setup,
    device_status_payload,
    parse_cancel_data,
)


@pytest.mark.parametrize(
    ("setup", "kind"),
    [
        (Setup(0x21, 0x64, 0, 0, 6), SetupKind.CANCEL),
        (Setup(0x21, 0x66, 0, 0, 0), SetupKind.DEVICE_RESET),
        (Setup(0xA1, 0x67, 0, 0, 4), SetupKind.GET_DEVICE_STATUS),
        (Setup(0xA1, 0x67, 0, 0, 64), SetupKind.GET_DEVICE_STATUS),
        # Get Extended Event Data is optional: stalled.
        (Setup(0xA1, 0x65, 0, 0, 64), SetupKind.STALL),
        # Wrong direction, wrong length, other interface, unknown request.
        (Setup(0xA1, 0x64, 0, 0, 6), SetupKind.STALL),
        (Setup(0x21, 0x64, 0, 0, 5), SetupKind.STALL),
        (Setup(0x21, 0x66, 0, 0, 2), SetupKind.STALL),
        (Setup(0xA1, 0x67, 0, 0, 2), SetupKind.STALL),
        (Setup(0xA1, 0x67, 0, 1, 4), SetupKind.STALL),
        (Setup(0x21, 0x64, 1, 0, 6), SetupKind.STALL),
        (Setup(0x21, 0x42, 0, 0, 0), SetupKind.STALL),
        # Vendor requests (MS OS descriptors are answered by composite, not us).
        (Setup(0xC1, 0x01, 0, 4, 16), SetupKind.STALL),
        # Standard requests go to python-functionfs (GET_STATUS, CLEAR_FEATURE).
        (Setup(0x82, 0x00, 0, 1, 2), SetupKind.STANDARD),
        (Setup(0x02, 0x01, 0, 1, 0), SetupKind.STANDARD),
    ],
)
def test_classify(setup: Setup, kind: SetupKind) -> None:
    assert classify_setup(setup) is kind


def test_cancel_data() -> None:
    assert parse_cancel_data(struct.pack("<HI", 0x4001, 0x12345678)) == 0x12345678
    with pytest.raises(ValueError):
        parse_cancel_data(struct.pack("<HI", 0x4002, 1))
    with pytest.raises(ValueError):
        parse_cancel_data(b"\x01\x40\x00")


def test_status_payload_layout_and_truncation() -> None:
    assert device_status_payload(0x2001, (), 4) == struct.pack("<HH", 4, 0x2001)
    assert device_status_payload(0x2001, (), 64) == struct.pack("<HH", 4, 0x2001)
    cancelled = device_status_payload(0x201F, (0x81, 0x02), 64)
    assert cancelled == struct.pack("<HHII", 12, 0x201F, 0x81, 0x02)
    # Never more than the host asked for.
    assert device_status_payload(0x201F, (0x81, 0x02), 4) == struct.pack("<HH", 12, 0x201F)


def decode(payload: bytes) -> tuple[int, int, tuple[int, ...]]:
    length, code = struct.unpack_from("<HH", payload)
    params = tuple(x for (x,) in struct.iter_unpack("<I", payload[4:length]))
    return length, code, params


def test_busy_from_cancel_until_idle() -> None:
    status = DeviceStatus()
    assert decode(status.answer(64))[1] == 0x2001
    status.cancel_started()
    assert decode(status.answer(64))[1] == 0x2019
    assert decode(status.answer(64))[1] == 0x2019  # still busy until the server says so
    status.set_idle(True)
    assert decode(status.answer(64))[1] == 0x2001


def test_device_side_cancel_reported_once_with_endpoints() -> None:
    status = DeviceStatus()
    status.device_cancelled((0x81, 0x02))
    assert decode(status.answer(64)) == (12, 0x201F, (0x81, 0x02))
    assert decode(status.answer(64)) == (4, 0x2001, ())


def test_busy_wins_over_cancelled_and_reset_clears() -> None:
    status = DeviceStatus()
    status.device_cancelled((0x81, 0x02))
    status.cancel_started()
    assert decode(status.answer(64))[1] == 0x2019
    status.reset()
    assert decode(status.answer(64)) == (4, 0x2001, ())
