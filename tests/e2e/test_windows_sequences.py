"""What Windows does around a copy, on the real gadget, driven by a raw pyusb host.

Windows' MTP class driver asks more than libmtp before it copies a file: which
properties the object's format has, every property's description, the
property list of the object (and of a folder's children or whole subtree) and
the 64-bit ObjectSize.  Then it reads the data phase with a buffer larger than
what is left, so a data phase that ends exactly on a packet boundary must be
closed by a zero-length packet, or the read never finishes.  It abandons an
operation that answered nothing for five minutes, so a backup has to start
flowing at once however large it is.

Tests marked ``large`` move objects of 4 GiB and more; ``make e2e-large`` runs
them (``make e2e`` leaves them out).
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import usb.core
import usb.util

from mtp_backup.usb import UsbInitiator, find_device
from mtp_backup.verify import ArchiveChecker
from mtp_responder.core.codes import (
    ALL,
    ROOT,
    ContainerType,
    DataType,
    FormFlag,
    ObjectFormat,
    ObjectProp,
    OperationCode,
    ResponseCode,
)
from mtp_responder.core.container import HEADER_SIZE, UNKNOWN_LENGTH
from mtp_responder.core.datasets import (
    ObjectInfoData,
    ObjectPropDesc,
    PropListItem,
    parse_date,
    parse_exact,
    parse_prop_list,
)
from tests.e2e.backup_support import DEVICE_NAME, GuestEngine, responder_config, seed_passive
from tests.e2e.guest.support import Gadget, mtp_responder_command

pytestmark = pytest.mark.e2e

MakeGadget = Callable[..., Gadget]

GIB_4 = 1 << 32
"""Where ObjectInfo's 32-bit size and the container's 32-bit length run out."""
SIZE_IN_OBJECT_PROP = 0xFFFFFFFF
"""ObjectInfo's size for an object of 4 GiB or more: read ObjectSize instead."""
USB_TIMEOUT_MS = 20_000
READ_CHUNK = 1 << 20
"""Windows reads data phases in large blocks; so does this host."""
END_TIMEOUT_MS = 10_000
"""How long the read that should end a data phase may take before it counts as hung."""
FIRST_BYTE_S = 2.0
"""A backup's first data packet must arrive this soon after its GetObject."""

#: The datatypes the MTP specification gives the properties Windows reads.
SPEC_DATATYPES: dict[int, DataType] = {
    ObjectProp.STORAGE_ID: DataType.UINT32,
    ObjectProp.OBJECT_FORMAT: DataType.UINT16,
    ObjectProp.PROTECTION_STATUS: DataType.UINT16,
    ObjectProp.OBJECT_SIZE: DataType.UINT64,
    ObjectProp.ASSOCIATION_TYPE: DataType.UINT16,
    ObjectProp.ASSOCIATION_DESC: DataType.UINT32,
    ObjectProp.OBJECT_FILE_NAME: DataType.STR,
    ObjectProp.DATE_CREATED: DataType.STR,
    ObjectProp.DATE_MODIFIED: DataType.STR,
    ObjectProp.PARENT_OBJECT: DataType.UINT32,
    ObjectProp.HIDDEN: DataType.UINT16,
    ObjectProp.PERSISTENT_UNIQUE_OBJECT_IDENTIFIER: DataType.UINT128,
    ObjectProp.NAME: DataType.STR,
    ObjectProp.DISPLAY_NAME: DataType.STR,
    ObjectProp.NON_CONSUMABLE: DataType.UINT8,
}
#: What Windows' driver cannot do without: identity, place, name, size, date.
WINDOWS_NEEDS = {
    ObjectProp.STORAGE_ID,
    ObjectProp.OBJECT_FORMAT,
    ObjectProp.PROTECTION_STATUS,
    ObjectProp.OBJECT_SIZE,
    ObjectProp.OBJECT_FILE_NAME,
    ObjectProp.DATE_MODIFIED,
    ObjectProp.PARENT_OBJECT,
    ObjectProp.PERSISTENT_UNIQUE_OBJECT_IDENTIFIER,
}

MTIME = 1_700_000_000  # a whole second: MTP dates carry seconds

# -- the raw host -----------------------------------------------------------------------------


def open_initiator(gadget: Gadget) -> UsbInitiator:
    deadline = time.monotonic() + 30
    while True:
        dev = find_device(gadget.vid, gadget.pid)
        if dev is not None:
            try:
                return UsbInitiator(dev, USB_TIMEOUT_MS)
            except (usb.core.USBError, StopIteration):
                pass
        if time.monotonic() > deadline:
            raise AssertionError("the device did not enumerate")
        time.sleep(0.2)


@pytest.fixture
def mtp(mtp_gadget: Gadget) -> Iterator[UsbInitiator]:
    initiator = open_initiator(mtp_gadget)
    yield initiator
    try:
        initiator.close()
    except usb.core.USBError:
        pass


def call(mtp: UsbInitiator, code: int, *params: int) -> tuple[bytes, int]:
    """One transaction; its data (empty if none) and response code, never raising on a code."""
    payload, response = mtp.transaction(code, *params, check=False)
    return payload or b"", response.code


def ok(mtp: UsbInitiator, code: int, *params: int) -> bytes:
    payload, rc = call(mtp, code, *params)
    assert rc == ResponseCode.OK, f"{OperationCode(code).name}{params}: {ResponseCode(rc).name}"
    return payload


def prop_list(
    mtp: UsbInitiator, handle: int, prop: int = ALL, depth: int = 0, group: int = 0
) -> list[PropListItem]:
    """GetObjectPropList as Windows sends it: any format, group 0."""
    return parse_prop_list(
        ok(mtp, OperationCode.GET_OBJECT_PROP_LIST, handle, 0, prop, group, depth)
    )


def object_size(mtp: UsbInitiator, handle: int) -> int:
    payload = ok(mtp, OperationCode.GET_OBJECT_PROP_VALUE, handle, ObjectProp.OBJECT_SIZE)
    assert len(payload) == 8, f"ObjectSize is {len(payload)} bytes, not a UINT64"
    return int.from_bytes(payload, "little")


def round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


@dataclass
class DataPhase:
    length_field: int
    """the data container's length field (0xFFFFFFFF past 4 GiB)"""
    payload: int
    """bytes after the header"""
    reads: int
    first_packet_s: float
    """from sending the command to the first bulk-in packet"""
    last_read_s: float
    """the read that ended the data phase"""
    total_s: float


def get_object_raw(
    mtp: UsbInitiator,
    handle: int,
    size: int,
    sink: Callable[[memoryview], None],
    chunk: int = READ_CHUNK,
) -> DataPhase:
    """GetObject read the way Windows reads it, every byte handed to ``sink``.

    The first read asks for one packet (it times the first byte); later reads
    ask for ``chunk``; the read that should end the data phase asks for a whole
    packet more than is left.  Only a short or zero-length packet can end that
    read where the data phase ends; without one it waits (a hang) or runs into
    the response.  The response must then come alone: a zero-length packet the
    data phase did not need would be read in its place.
    """
    mps = mtp.mps
    total = HEADER_SIZE + size
    full = usb.util.create_buffer(chunk)
    started = time.monotonic()
    tid = mtp.send_command(OperationCode.GET_OBJECT, handle)
    got = reads = 0
    first_packet_s = last_read_s = 0.0
    length_field = -1
    while got < total:
        left = total - got
        if reads == 0 and left > mps:
            ask = mps
        elif left > chunk:
            ask = chunk
        else:
            ask = round_up(left, mps) + mps
        buf = full if ask == chunk else usb.util.create_buffer(ask)
        before = time.monotonic()
        try:
            n = mtp.ep_in.read(buf, END_TIMEOUT_MS if ask > left else USB_TIMEOUT_MS)
        except usb.core.USBTimeoutError:
            boundary = total % mps == 0
            raise AssertionError(
                f"GetObject of {size} bytes: the read for the last {left} bytes (asking "
                f"{ask}) did not end"
                + (
                    f": the {total}-byte data phase ends on a {mps}-byte packet boundary "
                    "and no zero-length packet followed it"
                    if boundary
                    else ""
                )
            ) from None
        now = time.monotonic()
        if reads == 0:
            first_packet_s = now - started
            assert n, (
                f"GetObject of {size} bytes: a zero-length packet came where the data phase "
                "was due (one no transfer before it needed)"
            )
            assert n >= HEADER_SIZE, f"first read gave {n} bytes, less than a container header"
            length_field, kind, code, rtid = struct.unpack_from("<IHHI", buf)
            assert (kind, code, rtid) == (ContainerType.DATA, OperationCode.GET_OBJECT, tid), (
                f"GetObject of {size} bytes: expected a data container, got type {kind} "
                f"code {code:#06x} transaction {rtid}"
            )
        reads += 1
        assert n <= left, (
            f"GetObject of {size} bytes: a read gave {n} bytes where {left} were left: the "
            f"response ran into the data phase (a {total}-byte data phase, "
            f"{'a' if total % mps == 0 else 'not a'} multiple of {mps}, needs "
            f"{'a' if total % mps == 0 else 'no'} zero-length packet)"
        )
        assert n == left or n == ask, (
            f"GetObject of {size} bytes: the data phase ended {left - n} bytes early"
        )
        view = memoryview(buf)[:n]
        sink(view[HEADER_SIZE:] if got == 0 else view)
        got += n
        if n == left:
            last_read_s = now - before
    response = bytes(mtp.ep_in.read(mps, END_TIMEOUT_MS))
    mtp.conn.reset()  # this reader did the framing; keep the initiator's state machine in step
    assert response, (
        f"GetObject of {size} bytes: a zero-length packet came after a {total}-byte data "
        f"phase that ended with a short packet (max packet {mps}), where the response was due"
    )
    rlen, kind, code, rtid = struct.unpack_from("<IHHI", response)
    assert (rlen, kind, rtid) == (len(response), ContainerType.RESPONSE, tid), response.hex()
    assert code == ResponseCode.OK, f"GetObject of {size} bytes: {ResponseCode(code).name}"
    return DataPhase(
        length_field, size, reads, first_packet_s, last_read_s, time.monotonic() - started
    )


class Collect:
    """A sink that keeps what it gets (small objects)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def __call__(self, data: memoryview) -> None:
        self.parts.append(data.tobytes())

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)


class ZeroCheck:
    """A sink that keeps nothing: it counts bytes and checks every one is zero."""

    def __init__(self) -> None:
        self.count = 0
        self.zeros = bytes(READ_CHUNK)
        self.first_nonzero: int | None = None

    def __call__(self, data: memoryview) -> None:
        if self.first_nonzero is None and data.tobytes() != self.zeros[: len(data)]:
            offset = next(i for i, b in enumerate(data) if b)
            self.first_nonzero = self.count + offset
        self.count += len(data)


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` zero bytes that takes no room (tmpfs keeps holes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


# -- 1. before a copy ---------------------------------------------------------------------------


def check_prop_desc(code: int, payload: bytes) -> Any:
    """One ObjectPropDesc: it parses exactly and its form makes sense."""
    desc = parse_exact(ObjectPropDesc, payload, f"ObjectPropDesc of {code:#06x}")
    name = ObjectProp(code).name if code in set(ObjectProp) else f"{code:#06x}"
    assert desc.property_code == code, f"{name}: the desc is of {desc.property_code:#06x}"
    assert desc.get_set in (0, 1), f"{name}: GetSet {desc.get_set}"
    if code in SPEC_DATATYPES:
        want = SPEC_DATATYPES[code]
        assert desc.datatype == want, f"{name}: datatype {desc.datatype:#06x}, not {want.name}"
    flag = desc.form_flag
    assert flag in (FormFlag.NONE, FormFlag.RANGE, FormFlag.ENUMERATION, FormFlag.DATE_TIME), (
        f"{name}: form flag {flag:#04x}"
    )
    if flag == FormFlag.DATE_TIME:
        assert desc.datatype == DataType.STR, f"{name}: a DateTime form on a non-string"
    elif flag == FormFlag.RANGE:
        low, high, step = desc.form.minimum, desc.form.maximum, desc.form.step
        assert low <= high and step > 0 and (high - low) % step == 0, f"{name}: range {desc.form}"
        assert low <= desc.default_value <= high, f"{name}: default outside its range"
    elif flag == FormFlag.ENUMERATION:
        values = list(desc.form)
        assert values and len(set(values)) == len(values), f"{name}: enumeration {values}"
        assert desc.default_value in values, f"{name}: default {desc.default_value} not in {values}"
    return desc


def descendants(mtp: UsbInitiator, sid: int, folder: int) -> dict[int, ObjectInfoData]:
    """Every object below ``folder`` by GetObjectHandles and GetObjectInfo, as libmtp walks."""
    found: dict[int, ObjectInfoData] = {}
    stack = [folder]
    while stack:
        for handle, info in mtp.children(sid, stack.pop()):
            found[handle] = info
            if info.object_format == ObjectFormat.ASSOCIATION:
                stack.append(handle)
    return found


def by_handle(items: list[PropListItem]) -> dict[int, dict[int, Any]]:
    """The list as {handle: {property: value}}, refusing a property listed twice."""
    out: dict[int, dict[int, Any]] = {}
    for item in items:
        props = out.setdefault(item.handle, {})
        assert item.code not in props, f"{item.handle:#x}: {item.code:#06x} listed twice"
        props[item.code] = item.value
    return out


def disk_path(storage: Path, handle: int, objects: dict[int, ObjectInfoData]) -> Path:
    parts = []
    while handle in objects:
        parts.append(objects[handle].filename)
        handle = objects[handle].parent_object
    return storage.joinpath(*reversed(parts))


def assert_agrees(
    handle: int,
    props: dict[int, Any],
    info: ObjectInfoData,
    sid: int,
    path: Path,
    datatypes: dict[int, int],
) -> None:
    """A prop list entry says what GetObjectInfo and the disk say."""
    where = f"{path.name} ({handle:#x})"
    assert props[ObjectProp.STORAGE_ID] == sid == info.storage_id, where
    assert props[ObjectProp.OBJECT_FILE_NAME] == info.filename == path.name, where
    assert props[ObjectProp.PARENT_OBJECT] == info.parent_object, where
    assert props[ObjectProp.OBJECT_FORMAT] == info.object_format, where
    assert props[ObjectProp.PROTECTION_STATUS] == info.protection_status, where
    assert props[ObjectProp.DATE_MODIFIED] == info.date_modified, where
    assert parse_date(props[ObjectProp.DATE_MODIFIED]) == MTIME, where
    assert props[ObjectProp.PERSISTENT_UNIQUE_OBJECT_IDENTIFIER] != 0, where
    size = props[ObjectProp.OBJECT_SIZE]
    if path.is_dir():
        assert info.object_format == ObjectFormat.ASSOCIATION, where
        assert size == 0, where
    else:
        assert info.object_format != ObjectFormat.ASSOCIATION, where
        assert size == path.stat().st_size, f"{where}: ObjectSize {size}"
        assert info.compressed_size == (size if size < SIZE_IN_OBJECT_PROP else 0xFFFFFFFF), (
            f"{where}: ObjectInfo says {info.compressed_size} bytes, ObjectSize {size}"
        )
    missing = [f"{c:#06x}" for c in datatypes if c not in props]
    assert not missing, f"{where}: {missing} missing from the prop list"


def test_windows_asks_about_an_object_before_it_copies_it(
    mtp: UsbInitiator, mtp_gadget: Gadget
) -> None:
    storage: Path = mtp_gadget.storage  # type: ignore[attr-defined]
    (storage / "top.bin").write_bytes(os.urandom(1234))
    docs = storage / "docs"
    (docs / "sub" / "deeper").mkdir(parents=True)
    (docs / "a.txt").write_text("alpha")
    (docs / "b.bin").write_bytes(os.urandom(70001))
    (docs / "sub" / "c.txt").write_text("gamma" * 99)
    sparse(storage / "huge.bin", GIB_4 + 5)
    for path in [*storage.rglob("*"), storage]:
        os.utime(path, (MTIME, MTIME))

    mtp.open_session()
    (sid,) = mtp.storage_ids()
    objects = descendants(mtp, sid, ROOT)
    assert {disk_path(storage, h, objects) for h in objects} == set(storage.rglob("*"))
    handle_of = {disk_path(storage, h, objects): h for h in objects}
    b_bin, docs_h, huge = (
        handle_of[docs / "b.bin"],
        handle_of[docs],
        handle_of[storage / "huge.bin"],
    )

    # GetObjectPropsSupported for the file's format and for folders.
    datatypes: dict[int, int] = {}
    for fmt in (objects[b_bin].object_format, ObjectFormat.ASSOCIATION):
        supported = parse_u16_array(ok(mtp, OperationCode.GET_OBJECT_PROPS_SUPPORTED, fmt))
        assert len(set(supported)) == len(supported), f"format {fmt:#06x}: {supported}"
        missing = {ObjectProp(c).name for c in WINDOWS_NEEDS - set(supported)}
        assert not missing, f"format {fmt:#06x} lacks {missing}"
        # GetObjectPropDesc for each: Windows builds its property cache from these.
        for code in supported:
            desc = check_prop_desc(code, ok(mtp, OperationCode.GET_OBJECT_PROP_DESC, code, fmt))
            datatypes[code] = desc.datatype
    assert datatypes[ObjectProp.OBJECT_SIZE] == DataType.UINT64
    _, rc = call(mtp, OperationCode.GET_OBJECT_PROP_DESC, 0xDCFF, ObjectFormat.UNDEFINED)
    assert rc == ResponseCode.INVALID_OBJECT_PROP_CODE

    # Depth 0, all properties: exactly the object, one value of each property,
    # each of its advertised datatype, agreeing with GetObjectInfo and the disk.
    items = prop_list(mtp, b_bin)
    for item in items:
        assert item.datatype == datatypes[item.code], f"{item.code:#06x}: {item.datatype:#06x}"
    listed = by_handle(items)
    assert set(listed) == {b_bin}
    assert set(listed[b_bin]) == set(datatypes)
    assert_agrees(b_bin, listed[b_bin], objects[b_bin], sid, docs / "b.bin", datatypes)

    # Depth 1 on a folder: its children, not the folder, not the grandchildren.
    children = set(mtp.object_handles(sid, docs_h))
    listed = by_handle(prop_list(mtp, docs_h, depth=1))
    assert set(listed) == children == {handle_of[docs / n] for n in ("a.txt", "b.bin", "sub")}
    for h, props in listed.items():
        assert_agrees(h, props, objects[h], sid, disk_path(storage, h, objects), datatypes)

    # Depth 0xFFFFFFFF: the whole subtree below the folder.
    below_docs = set(descendants(mtp, sid, docs_h))
    listed = by_handle(prop_list(mtp, docs_h, depth=ALL))
    assert set(listed) == below_docs
    assert {disk_path(storage, h, objects) for h in listed} == set(docs.rglob("*"))
    for h, props in listed.items():
        assert set(props) == set(datatypes)
        assert_agrees(h, props, objects[h], sid, disk_path(storage, h, objects), datatypes)

    # The whole storage from the root (handle 0): every object, each once.
    listed = by_handle(prop_list(mtp, 0, depth=ALL))
    assert set(listed) == set(objects)
    puids = [p[ObjectProp.PERSISTENT_UNIQUE_OBJECT_IDENTIFIER] for p in listed.values()]
    assert len(set(puids)) == len(puids), "two objects share a persistent unique id"
    for h, props in listed.items():
        assert_agrees(h, props, objects[h], sid, disk_path(storage, h, objects), datatypes)
    # Depth 1 from the root: the storage's top level.
    listed = by_handle(prop_list(mtp, 0, depth=1))
    assert set(listed) == set(mtp.object_handles(sid, ROOT))

    # One property: only it, for each object the depth names.
    names = prop_list(mtp, docs_h, ObjectProp.OBJECT_FILE_NAME, depth=1)
    assert sorted((i.code, i.datatype, i.value) for i in names) == [
        (ObjectProp.OBJECT_FILE_NAME, DataType.STR, n) for n in ("a.txt", "b.bin", "sub")
    ]
    assert {i.handle for i in names} == children
    sizes = prop_list(mtp, docs_h, ObjectProp.OBJECT_SIZE, depth=ALL)
    assert {i.handle: i.value for i in sizes} == {
        h: (0 if p.is_dir() else p.stat().st_size)
        for h in below_docs
        for p in [disk_path(storage, h, objects)]
    }
    assert all(i.datatype == DataType.UINT64 for i in sizes)

    # What Windows may ask that this device declines, answered by name.
    _, rc = call(mtp, OperationCode.GET_OBJECT_PROP_LIST, b_bin, 0, 0, 7, 0)
    assert rc == ResponseCode.SPECIFICATION_BY_GROUP_UNSUPPORTED
    _, rc = call(mtp, OperationCode.GET_OBJECT_PROP_LIST, docs_h, 0, ALL, 0, 2)
    assert rc == ResponseCode.SPECIFICATION_BY_DEPTH_UNSUPPORTED

    # GetObjectPropValue(ObjectSize): the 64-bit size, for every file.
    for h in objects:
        path = disk_path(storage, h, objects)
        if path.is_file():
            assert object_size(mtp, h) == path.stat().st_size, path.name

    # Past 4 GiB: ObjectInfo's 32-bit size says "ask ObjectSize", which is exact.
    assert objects[huge].compressed_size == SIZE_IN_OBJECT_PROP
    assert object_size(mtp, huge) == GIB_4 + 5
    (item,) = prop_list(mtp, huge, ObjectProp.OBJECT_SIZE)
    assert (item.handle, item.datatype, item.value) == (huge, DataType.UINT64, GIB_4 + 5)


def parse_u16_array(data: bytes) -> list[int]:
    assert len(data) >= 4, "array dataset is truncated"
    (count,) = struct.unpack_from("<I", data)
    assert len(data) == 4 + 2 * count, "array length does not match its count"
    return list(struct.unpack_from(f"<{count}H", data, 4))


# -- 2. zero-length packets ----------------------------------------------------------------------

#: Data phase lengths (header included) that end on a packet boundary at high
#: speed (512), at SuperSpeed (1024) and on the responder's 128 KiB blocks.
BOUNDARIES = (512, 1024, 1536, 2048, 4096, 65536, 128 << 10, (128 << 10) + 512, 256 << 10, 1 << 20)


def boundary_sizes() -> list[int]:
    """Object sizes whose data phase ends on a boundary, and one byte either side."""
    sizes = {0, 1}
    for total in BOUNDARIES:
        sizes |= {total - HEADER_SIZE - 1, total - HEADER_SIZE, total - HEADER_SIZE + 1}
    return sorted(sizes)


@pytest.mark.superspeed
def test_a_data_phase_on_a_packet_boundary_ends_with_a_zero_length_packet(
    mtp: UsbInitiator, mtp_gadget: Gadget, link_speed: str
) -> None:
    storage: Path = mtp_gadget.storage  # type: ignore[attr-defined]
    assert mtp.mps == (1024 if link_speed == "super-speed" else 512)
    contents = {size: os.urandom(size) for size in boundary_sizes()}
    for size, data in contents.items():
        (storage / f"{size}.bin").write_bytes(data)
    mtp.open_session()
    (sid,) = mtp.storage_ids()
    handles = {info.filename: h for h, info in mtp.children(sid, ROOT)}
    ends_on_boundary = 0
    for size, data in contents.items():
        got = Collect()
        # Small reads past the first packet too: each read asks for more than is left.
        phase = get_object_raw(mtp, handles[f"{size}.bin"], size, got, chunk=64 * 1024)
        assert phase.length_field == HEADER_SIZE + size
        assert got.data == data, f"{size}.bin: content differs"
        assert phase.total_s < END_TIMEOUT_MS / 1000
        ends_on_boundary += (HEADER_SIZE + size) % mtp.mps == 0
    # The case in question was really met, once per boundary on this link's packets.
    assert ends_on_boundary == sum(total % mtp.mps == 0 for total in BOUNDARIES)
    # The session goes on as usual afterwards.
    assert mtp.object_info(handles["1.bin"]).filename == "1.bin"


# -- 3. 4 GiB -------------------------------------------------------------------------------


@pytest.mark.large
@pytest.mark.timeout(3600)
@pytest.mark.parametrize(
    "size",
    [GIB_4 - HEADER_SIZE, GIB_4, GIB_4 + 1],
    ids=["4GiB-12_data_phase_exactly_4GiB", "4GiB", "4GiB+1"],
)
def test_a_4_gib_object_is_read_whole_and_ends_promptly(
    mtp: UsbInitiator, mtp_gadget: Gadget, size: int, record_property: Callable[..., None]
) -> None:
    storage: Path = mtp_gadget.storage  # type: ignore[attr-defined]
    sparse(storage / "big.bin", size)
    mtp.open_session()
    (sid,) = mtp.storage_ids()
    handle = mtp.find(sid, "big.bin")
    assert mtp.object_info(handle).compressed_size == min(size, SIZE_IN_OBJECT_PROP)
    assert object_size(mtp, handle) == size
    check = ZeroCheck()
    phase = get_object_raw(mtp, handle, size, check)
    assert phase.length_field == UNKNOWN_LENGTH  # more than 32 bits can say
    assert check.count == size
    assert check.first_nonzero is None, f"byte {check.first_nonzero} is not zero"
    assert phase.last_read_s < END_TIMEOUT_MS / 1000
    rate = size / phase.total_s / 1e6
    record_property("seconds", round(phase.total_s, 1))
    print(
        f"GetObject of {size} bytes: {phase.total_s:.1f} s ({rate:.1f} MB/s), "
        f"{phase.reads} reads, last read {phase.last_read_s * 1000:.0f} ms"
    )
    # Still in step: the next transaction is answered.
    assert mtp.object_info(handle).filename == "big.bin"


# -- 4. a backup's first byte ------------------------------------------------------------------


@pytest.fixture
def engines() -> Iterator[list[GuestEngine]]:
    """Requested before ``make_gadget``, so the engine outlives the responder."""
    made: list[GuestEngine] = []
    yield made
    for engine in made:
        engine.stop()


def backup_device(
    engines: list[GuestEngine],
    make_gadget: MakeGadget,
    guest_tmp: Path,
    test_logs: Path,
    sparse_bytes: int,
) -> Gadget:
    """A responder with Backup & Restore over an engine whose passive owner holds
    ``sparse_bytes`` of sparse files (no room on the tmpfs, all of it in the archive)."""
    engine = GuestEngine(guest_tmp / "engine", test_logs / "engine.log", active=False)
    engine.setup()
    seed_passive(engine.passive_dir, files=6)
    pieces = 4
    for i in range(pieces):
        sparse(engine.passive_dir / "video" / f"clip{i}.raw", sparse_bytes // pieces)
    engines.append(engine)
    engine.start()
    return make_gadget(
        responder_command=mtp_responder_command(), config=responder_config(engine, guest_tmp)
    )


def assert_backup_starts_at_once(gadget: Gadget, data_bytes: int) -> None:
    """List Backup/ (which prepares the backup), then GetObject its .mbak: the first
    packet within FIRST_BYTE_S of the command, then the whole archive, valid."""
    mtp = open_initiator(gadget)
    try:
        mtp.timeout = 180_000  # listing Backup/ prepares the backup
        mtp.open_session()
        (sid,) = [
            s
            for s in mtp.storage_ids()
            if mtp.storage_info(s).storage_description == "Backup & Restore"
        ]
        backup = mtp.find(sid, "Backup")
        archives = [
            (h, i.filename)
            for h, i in mtp.children(sid, backup)
            if i.filename.startswith(f"{DEVICE_NAME}-") and i.filename.endswith(".mbak")
        ]
        assert len(archives) == 1, f"Backup/ holds {archives}"
        handle, name = archives[0]
        size = object_size(mtp, handle)
        assert size >= data_bytes, f"{name} is {size} bytes, less than its owner's data"
        mtp.timeout = USB_TIMEOUT_MS
        checker = ArchiveChecker(Path(name))
        phase = get_object_raw(mtp, handle, size, lambda data: checker.feed(data.tobytes()))
        assert checker.finish().size == size
        mtp.close_session()
    finally:
        try:
            mtp.close()
        except usb.core.USBError:
            pass
    print(
        f"{name} ({size} bytes): first packet {phase.first_packet_s:.2f} s after GetObject, "
        f"whole archive {phase.total_s:.1f} s"
    )
    assert phase.first_packet_s < FIRST_BYTE_S, (
        f"the first byte of a {size}-byte backup came {phase.first_packet_s:.2f} s after "
        f"GetObject (Windows gives up on an operation that answers nothing; "
        f"{FIRST_BYTE_S} s is the promise)"
    )


def test_a_backup_starts_flowing_at_once(
    engines: list[GuestEngine], make_gadget: MakeGadget, guest_tmp: Path, test_logs: Path
) -> None:
    gadget = backup_device(engines, make_gadget, guest_tmp, test_logs, 64 << 20)
    assert_backup_starts_at_once(gadget, 64 << 20)


@pytest.mark.large
@pytest.mark.timeout(1800)
def test_a_large_backup_starts_flowing_at_once(
    engines: list[GuestEngine], make_gadget: MakeGadget, guest_tmp: Path, test_logs: Path
) -> None:
    gadget = backup_device(engines, make_gadget, guest_tmp, test_logs, 512 << 20)
    assert_backup_starts_at_once(gadget, 512 << 20)
