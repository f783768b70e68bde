"""Still-image class requests on the control endpoint (USB PTP/MTP).

Pure decoding and answering, kept apart from the FunctionFS plumbing so the
rules can be checked without a kernel.  The transport feeds every SETUP it
receives to :func:`classify_setup` and acts on the answer.

FunctionFS rewrites ``wIndex`` of interface requests to the function-local
interface number, so our (only) interface is always 0 here, whatever number
the host sees in a composite gadget.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from functionfs import ch9

from ..core.codes import (
    CANCEL_DATA_LENGTH,
    ClassRequest,
    ClassRequestType,
    EventCode,
    ResponseCode,
)

REQUEST_TYPE_CLASS_OUT = ClassRequestType.OUT
REQUEST_TYPE_CLASS_IN = ClassRequestType.IN
assert REQUEST_TYPE_CLASS_OUT == ch9.USB_DIR_OUT | ch9.USB_TYPE_CLASS | ch9.USB_RECIP_INTERFACE
assert REQUEST_TYPE_CLASS_IN == ch9.USB_DIR_IN | ch9.USB_TYPE_CLASS | ch9.USB_RECIP_INTERFACE


class SetupKind(enum.Enum):
    """What a SETUP packet asks of the MTP function."""

    CANCEL = enum.auto()
    """CANCEL with its 6-byte data stage: read it, then abort the transaction."""
    DEVICE_RESET = enum.auto()
    """DEVICE_RESET, no data stage: acknowledge, abort, close the session."""
    GET_DEVICE_STATUS = enum.auto()
    """GET_DEVICE_STATUS: answer with :meth:`DeviceStatus.answer`."""
    STANDARD = enum.auto()
    """A standard request (GET_STATUS, CLEAR_FEATURE...): python-functionfs handles it."""
    STALL = enum.auto()
    """Anything else, including GET_EXTENDED_EVENT_DATA and malformed class requests."""


@dataclass(frozen=True, slots=True)
class Setup:
    """A SETUP packet as FunctionFS reports it."""

    request_type: int
    request: int
    value: int
    index: int
    length: int


def classify_setup(setup: Setup) -> SetupKind:
    """Decide how to handle a SETUP; malformed class requests are stalled."""
    kind = setup.request_type & ch9.USB_TYPE_MASK
    if kind == ch9.USB_TYPE_STANDARD:
        return SetupKind.STANDARD
    if kind != ch9.USB_TYPE_CLASS or setup.index != 0:
        return SetupKind.STALL
    if (
        setup.request_type == REQUEST_TYPE_CLASS_OUT
        and setup.request == ClassRequest.CANCEL
        and setup.value == 0
        and setup.length == CANCEL_DATA_LENGTH
    ):
        return SetupKind.CANCEL
    if (
        setup.request_type == REQUEST_TYPE_CLASS_OUT
        and setup.request == ClassRequest.DEVICE_RESET
        and setup.value == 0
        and setup.length == 0
    ):
        return SetupKind.DEVICE_RESET
    if (
        setup.request_type == REQUEST_TYPE_CLASS_IN
        and setup.request == ClassRequest.GET_DEVICE_STATUS
        and setup.value == 0
        and setup.length >= 4
    ):
        return SetupKind.GET_DEVICE_STATUS
    # GET_EXTENDED_EVENT_DATA (GET_EXTENDED_EVENT_DATA) is optional in the spec; a stall tells
    # the host we have none.
    return SetupKind.STALL


def parse_cancel_data(data: bytes) -> int:
    """Return the transaction id from a Cancel request's data stage.

    Raises ValueError when the stage is not ``CancelTransaction`` + TID.
    """
    if len(data) != CANCEL_DATA_LENGTH:
        raise ValueError(f"cancel data stage is {len(data)} bytes, expected 6")
    code, transaction_id = struct.unpack("<HI", data)
    if code != EventCode.CANCEL_TRANSACTION:
        raise ValueError(
            f"cancel data stage code 0x{code:04x}, expected 0x{EventCode.CANCEL_TRANSACTION:04x}"
        )
    return int(transaction_id)


def device_status_payload(code: int, halted_endpoints: Sequence[int], length: int) -> bytes:
    """Encode a Get Device Status answer, cut to the host's ``wLength``.

    The layout is wLength, Code, then one 32-bit parameter per halted
    endpoint address, as PTP parameters always are.
    """
    params = b"".join(struct.pack("<I", address) for address in halted_endpoints)
    body = struct.pack("<HH", 4 + len(params), code) + params
    return body[:length]


class DeviceStatus:
    """What Get Device Status reports, across cancels and device-side aborts.

    The host polls it after a Cancel request and sends its next command only
    once it reads OK; so it must say Busy until the responder has really torn
    the cancelled transaction down (the server says so with ``set_idle``).
    After the device aborted a transaction by halting its bulk endpoints, the
    next answer is TransactionCancelled with those endpoints, once: the host
    then clears the halts, which the UDC handles without telling us.
    """

    def __init__(self) -> None:
        self._busy = False
        self._halted: tuple[int, ...] = ()

    def reset(self) -> None:
        """A new link: nothing pending."""
        self._busy = False
        self._halted = ()

    def cancel_started(self) -> None:
        self._busy = True

    def set_idle(self, idle: bool) -> None:
        self._busy = not idle

    def device_cancelled(self, halted_endpoints: Sequence[int]) -> None:
        self._halted = tuple(halted_endpoints)

    def answer(self, length: int) -> bytes:
        """The bytes to send for one Get Device Status request."""
        if self._busy:
            return device_status_payload(ResponseCode.DEVICE_BUSY, (), length)
        if self._halted:
            halted, self._halted = self._halted, ()
            return device_status_payload(ResponseCode.TRANSACTION_CANCELLED, halted, length)
        return device_status_payload(ResponseCode.OK, (), length)
