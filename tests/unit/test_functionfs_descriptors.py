"""The FunctionFS descriptor and strings blobs, decoded byte by byte.

A host sees exactly these bytes (renumbered endpoints aside), so they are
checked independently of python-functionfs' own structures.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest

from mtp_responder.transport import descriptors

HAS_FS, HAS_HS, HAS_SS, HAS_MS_OS = 1, 2, 4, 8


@dataclass
class Blob:
    flags: int
    speeds: dict[str, list[bytes]]
    os_descs: list[bytes]


def parse(blob: bytes) -> Blob:
    magic, length, flags = struct.unpack_from("<III", blob)
    assert magic == 3  # FUNCTIONFS_DESCRIPTORS_MAGIC_V2
    assert length == len(blob)
    offset = 12
    counts = {}
    for name, flag in (("fs", HAS_FS), ("hs", HAS_HS), ("ss", HAS_SS), ("os", HAS_MS_OS)):
        if flags & flag:
            (counts[name],) = struct.unpack_from("<I", blob, offset)
            offset += 4
    speeds: dict[str, list[bytes]] = {}
    for name in ("fs", "hs", "ss"):
        speeds[name] = []
        for _ in range(counts.get(name, 0)):
            size = blob[offset]
            speeds[name].append(blob[offset : offset + size])
            offset += size
    os_descs = []
    for _ in range(counts.get("os", 0)):
        (size,) = struct.unpack_from("<I", blob, offset + 1)
        os_descs.append(blob[offset : offset + size])
        offset += size
    assert offset == len(blob)
    return Blob(flags, speeds, os_descs)


@pytest.fixture(scope="module")
def blob() -> Blob:
    return parse(descriptors.descriptors_blob(descriptors.build_descriptors()))


def endpoints(descs: list[bytes]) -> list[bytes]:
    return [d for d in descs if d[1] == 0x05]


def test_all_three_speeds_and_os_descriptors(blob: Blob) -> None:
    assert blob.flags == HAS_FS | HAS_HS | HAS_SS | HAS_MS_OS
    assert len(blob.speeds["fs"]) == 4
    assert len(blob.speeds["hs"]) == 4
    assert len(blob.speeds["ss"]) == 7  # one companion per endpoint


@pytest.mark.parametrize("speed", ["fs", "hs", "ss"])
def test_interface_is_still_image_class_with_string(blob: Blob, speed: str) -> None:
    interface = blob.speeds[speed][0]
    length, dtype, number, alt, n_eps, cls, subcls, proto, string = interface
    assert (length, dtype) == (9, 0x04)
    assert (number, alt, n_eps) == (0, 0, 3)
    assert (cls, subcls, proto) == (6, 1, 1)
    assert string == 1


@pytest.mark.parametrize(("speed", "bulk_size"), [("fs", 64), ("hs", 512), ("ss", 1024)])
def test_endpoints(blob: Blob, speed: str, bulk_size: int) -> None:
    eps = endpoints(blob.speeds[speed])
    decoded = [struct.unpack("<BBBBHB", ep) for ep in eps]
    bulk_in, bulk_out, interrupt = decoded
    # Endpoint files ep1, ep2, ep3 in this order.
    assert bulk_in[2] & 0x80 and bulk_in[3] == 0x02 and bulk_in[4] == bulk_size
    assert not bulk_out[2] & 0x80 and bulk_out[3] == 0x02 and bulk_out[4] == bulk_size
    assert interrupt[2] & 0x80 and interrupt[3] == 0x03
    assert interrupt[4] == 28
    assert interrupt[5] == 6
    assert [ep[2] & 0x0F for ep in decoded] == [
        descriptors.EP_BULK_IN,
        descriptors.EP_BULK_OUT,
        descriptors.EP_INTERRUPT_IN,
    ]


def test_superspeed_companions(blob: Blob) -> None:
    ss = blob.speeds["ss"]
    companions = [d for d in ss if d[1] == 0x30]
    assert len(companions) == 3
    for index, descriptor in enumerate(ss):
        if descriptor[1] == 0x05:
            assert ss[index + 1][1] == 0x30, "each endpoint is followed by its companion"
    (bulk_in_c, bulk_out_c, interrupt_c) = (struct.unpack("<BBBBH", c) for c in companions)
    assert bulk_in_c[2] == 0 and bulk_out_c[2] == 0  # bMaxBurst
    assert interrupt_c[2] == 0
    assert interrupt_c[4] == 28  # wBytesPerInterval of the periodic endpoint


def test_ms_os_extended_compat_id(blob: Blob) -> None:
    (os_desc,) = blob.os_descs
    interface, length, bcd, windex, count, reserved = struct.unpack_from("<BIHHBB", os_desc)
    assert interface == 0
    assert length == len(os_desc) == 11 + 24
    assert (bcd, windex, count, reserved) == (1, 4, 1, 0)
    first_interface, reserved1 = os_desc[11], os_desc[12]
    compatible_id, sub_compatible_id = os_desc[13:21], os_desc[21:29]
    assert first_interface == 0
    assert reserved1 == 1
    assert compatible_id == b"MTP\0\0\0\0\0"
    assert sub_compatible_id == bytes(8)
    assert os_desc[29:35] == bytes(6)


def test_strings_blob() -> None:
    blob = descriptors.strings_blob()
    magic, length, str_count, lang_count = struct.unpack_from("<IIII", blob)
    assert magic == 2  # FUNCTIONFS_STRINGS_MAGIC
    assert length == len(blob)
    assert (str_count, lang_count) == (1, 1)
    (lang,) = struct.unpack_from("<H", blob, 16)
    assert lang == 0x0409
    assert blob[18:] == b"MTP\0"


def test_strings_per_language() -> None:
    blob = descriptors.strings_blob({0x0409: "MTP", 0x0407: "MTP Gerät"})
    _, _, str_count, lang_count = struct.unpack_from("<IIII", blob)
    assert (str_count, lang_count) == (1, 2)
    assert "MTP Gerät".encode() + b"\0" in blob
