"""USB descriptors of the MTP function, as written to FunctionFS ep0.

One interface (still image class 6/1/1, string "MTP") with bulk IN, bulk OUT
and interrupt IN, in full-, high- and SuperSpeed variants, plus the MS OS 1.0
extended compat ID "MTP" so that Windows binds its MTP driver without an INF.

The device-level parts (VID/PID, manufacturer strings, ``os_desc/use``,
``b_vendor_code``, ``qw_sign``) live in configfs, not here: FunctionFS only
carries what belongs to one function.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import functionfs
from functionfs import ch9

# Endpoint files, in descriptor order: FunctionFS names them ep1, ep2, ep3.
EP_BULK_IN = 1
EP_BULK_OUT = 2
EP_INTERRUPT_IN = 3

INTERRUPT_MAX_PACKET_SIZE = 28
# Raw bInterval in every speed, as Android and uMTP ship it: 6 ms at full
# speed, 2**(6-1) x 125 us = 4 ms at high and SuperSpeed.  Hosts poll events
# rarely anyway; what matters is a value every host accepts.
INTERRUPT_INTERVAL = 6

MTP_COMPATIBLE_ID = b"MTP"

DEFAULT_STRINGS: Mapping[int, str] = {0x0409: "MTP"}
"""Interface string per language id; libmtp's probe looks for "MTP" in it."""


@dataclass(frozen=True)
class FunctionDescriptors:
    """Descriptor lists in the shape ``functionfs.Function`` takes them."""

    fs_list: list[Any]
    hs_list: list[Any]
    ss_list: list[Any]
    os_list: list[Any]


def build_descriptors() -> FunctionDescriptors:
    """Build the fs/hs/ss interface descriptors and the MS OS descriptor."""
    fs_list, hs_list, ss_list = functionfs.getInterfaceInAllSpeeds(
        interface={
            "bInterfaceNumber": 0,
            "bAlternateSetting": 0,
            "bInterfaceClass": ch9.USB_CLASS_STILL_IMAGE,
            "bInterfaceSubClass": 1,
            "bInterfaceProtocol": 1,
            "iInterface": 1,
        },
        endpoint_list=[
            {
                "endpoint": {
                    "bEndpointAddress": ch9.USB_DIR_IN,
                    "bmAttributes": ch9.USB_ENDPOINT_XFER_BULK,
                },
                # bMaxBurst 0: the value every SuperSpeed host and UDC copes
                # with (uMTP learned this the hard way).
                "superspeed": {"bMaxBurst": 0},
            },
            {
                "endpoint": {
                    "bEndpointAddress": ch9.USB_DIR_OUT,
                    "bmAttributes": ch9.USB_ENDPOINT_XFER_BULK,
                },
                "superspeed": {"bMaxBurst": 0},
            },
            {
                "endpoint": {
                    "bEndpointAddress": ch9.USB_DIR_IN,
                    "bmAttributes": ch9.USB_ENDPOINT_XFER_INT,
                    "wMaxPacketSize": INTERRUPT_MAX_PACKET_SIZE,
                },
                # A periodic endpoint must announce what it moves per
                # service interval.
                "superspeed": {
                    "bMaxBurst": 0,
                    "wBytesPerInterval": INTERRUPT_MAX_PACKET_SIZE,
                },
            },
        ],
    )
    # getInterfaceInAllSpeeds converts bInterval from milliseconds per speed;
    # we want the same raw value everywhere, so set it afterwards.
    for descriptor_list in (fs_list, hs_list, ss_list):
        for descriptor in descriptor_list:
            if (
                descriptor.bDescriptorType == ch9.USB_DT_ENDPOINT
                and descriptor.bmAttributes & ch9.USB_ENDPOINT_XFERTYPE_MASK
                == ch9.USB_ENDPOINT_XFER_INT
            ):
                descriptor.bInterval = INTERRUPT_INTERVAL
    compatible_id = (ctypes.c_uint8 * 8)(*MTP_COMPATIBLE_ID.ljust(8, b"\0"))
    os_list = [
        functionfs.getOSDesc(
            0,
            [
                functionfs.OSExtCompatDesc(
                    # Function-relative: the kernel renumbers it when the
                    # function sits in a composite gadget.
                    bFirstInterfaceNumber=0,
                    # The MS OS 1.0 spec says 1 ("Reserved1 = 0x01").
                    Reserved1=1,
                    CompatibleID=compatible_id,
                ),
            ],
        ),
    ]
    return FunctionDescriptors(fs_list, hs_list, ss_list, os_list)


def lang_dict(strings: Mapping[int, str] = DEFAULT_STRINGS) -> dict[int, list[str]]:
    """Strings table for ``functionfs.Function``: index 1 is the interface name."""
    return {lang: [name] for lang, name in strings.items()}


def descriptors_blob(descriptors: FunctionDescriptors, *, flags: int = 0) -> bytes:
    """The bytes FunctionFS reads as descriptors (for inspection and tests)."""
    return bytes(
        functionfs.serialise(
            functionfs.getDescsV2(
                flags,
                fs_list=descriptors.fs_list,
                hs_list=descriptors.hs_list,
                ss_list=descriptors.ss_list,
                os_list=descriptors.os_list,
            ),
        ),
    )


def strings_blob(strings: Mapping[int, str] = DEFAULT_STRINGS) -> bytes:
    """The bytes FunctionFS reads as strings (for inspection and tests)."""
    return bytes(functionfs.serialise(functionfs.getStrings(lang_dict(strings))))
