"""Inputs the fuzz targets found, kept as regression tests.

Each was a crash before its fix; the sequence is kept exactly as found.
"""

from __future__ import annotations

from .stream import Reset, Transfer, run_sequence

DRAIN_AFTER_RESET = [
    Transfer(data=b"\x14\x00\x00\x00\x01\x00\x0c\x10d\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00"),
    Transfer(data=b"\x0c\x00\x00\x00\x01\x00\r\x108\x88\x02\x00"),
    Transfer(data=b"\x10\x00\x00\x00\x01\x00\xff\xffg\x00\x00\x00\x00\x00\x00\x00"),
    Transfer(data=b"\x0c\x00\x00\x00\x01\x00\xc2\x95g\x00\x00\x00"),
    Transfer(data=b"\x14\x00\x00\x00\x01\x00\x04\x10h\x00\x00\x00\x03\x00\x00\x00\x03\x00\x00\x00"),
    Reset(),
    Transfer(
        data=b" \x00\x00\x00\x01\x00\x0c\x10i\x00\x00\x00"
        b"8\x00\x00\x00\x02\x00\x00\x00\xc5\x00\x00\x00\xd0@\xfd\x02\x88\x00\x00\x00"
    ),
    Transfer(data=b"\x0c\x00\x00\x00\x01\x00\r\x10\x8e\x14\xdb\x05"),
    Transfer(
        data=b"4\x00\x00\x00\x02\x00\r\x10\x8e\x14\xdb\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    ),
    Transfer(data=b"\x0c\x00\x00\x00\x02\x00\x08\x10j\x00\x00\x00"),
]
"""SendObjectInfo into a missing parent (answered before its data phase), a
SendObject abandoned by the next command, unknown operations, a Device Reset,
then more uploads: found by the container-stream target."""


def test_a_reset_while_a_data_phase_is_drained_does_not_stop_the_responder() -> None:
    """The outcome depends on how the host's transfers interleave with the device's
    work, so the sequence is played ten times: each play must leave the device serving."""
    for _ in range(10):
        run_sequence(DRAIN_AFTER_RESET)
