"""Property-based tests: random bytes, containers and datasets at a running responder.

Each example starts a responder on a fresh storage and throws its input at
it over the loopback link.  Whatever arrives, the responder must not raise
(nor log an unexpected exception), must answer every well-formed command
with exactly one response carrying its transaction id, must never write
outside its storage, and must keep serving afterwards.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtp_responder.core.codes import (
    ContainerType,
    DataType,
    DeviceProp,
    ObjectFormat,
    ObjectProp,
    OperationCode,
    ResponseCode,
)
from mtp_responder.core.container import build_params_container
from mtp_responder.core.datasets import ObjectInfoData, build_object_info, encode_string
from mtp_responder.operations import Operations
from tests.fuzz.stream import no_logged_errors

from .conftest import Device, make_config, start_device, still_serving, wait_until

EXAMPLES = int(os.environ.get("MTP_FUZZ_EXAMPLES", "80"))
"""Kept small so the file runs in seconds; raise it for a long hunt."""
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ALL = 0xFFFFFFFF
DATA_OUT = [code for code in Operations.supported() if Operations.expects_data(code)]

# -- strategies -------------------------------------------------------------------------

u32 = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 5, 6, 0x10001, 0x20001, 0xFFFF, ALL, 0xFFFFFFFE]),
    st.integers(0, ALL),
)
u16 = st.one_of(st.sampled_from([0, 0x3000, 0x3001, 0x3801, 0xFFFF]), st.integers(0, 0xFFFF))
op_codes = st.one_of(
    st.sampled_from(Operations.supported()),
    st.integers(0, 0xFFFF),
)
params = st.lists(u32, max_size=5).map(tuple)
names = st.one_of(
    st.sampled_from(["", ".", "..", "a/b", "/", "x\x00y", "ok.txt", "DCIM", "a.txt", "é" * 200]),
    st.text(max_size=40),
)
date_strings = st.one_of(
    st.sampled_from(["", "20240101T000000", "20241399T999999+9999", "garbage", "00000000T000000"]),
    st.text(max_size=24),
)


def raw_string(text: str) -> bytes:
    """Like encode_string, but lone surrogates survive (invalid UTF-16 on the wire)."""
    units = text.encode("utf-16-le", "surrogatepass")[: 2 * 254]
    return bytes([len(units) // 2 + 1]) + units + b"\x00\x00"


wire_strings = st.one_of(
    names.map(raw_string),
    st.binary(max_size=20),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3).map(
        raw_string
    ),
)


@st.composite
def object_infos(draw: st.DrawFn) -> bytes:
    fixed = build_object_info(
        ObjectInfoData(
            storage_id=draw(u32),
            object_format=draw(u16),
            protection_status=draw(u16),
            compressed_size=draw(u32),
            parent_object=draw(u32),
            association_type=draw(u16),
            filename="",
        )
    )[:52]
    strings = b"".join(draw(st.lists(wire_strings, max_size=4)))
    data = fixed + strings
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return data if cut is None else data[:cut]


DATATYPES = [int(t) for t in DataType]


@st.composite
def prop_lists(draw: st.DrawFn) -> bytes:
    items = draw(st.lists(st.tuples(u32, st.sampled_from(list(ObjectProp)), u16), max_size=4))
    parts = []
    for handle, code, _ in items:
        datatype = draw(st.one_of(st.sampled_from(DATATYPES), u16))
        if datatype == DataType.STR:
            value = draw(wire_strings)
        else:
            value = draw(st.binary(max_size=20))
        parts.append(struct.pack("<IHH", handle, code, datatype) + value)
    count = draw(st.one_of(st.just(len(parts)), u32))
    return struct.pack("<I", count) + b"".join(parts)


@st.composite
def u32_arrays(draw: st.DrawFn) -> bytes:
    values = draw(st.lists(u32, max_size=6))
    count = draw(st.one_of(st.just(len(values)), u32))
    return struct.pack(f"<I{len(values)}I", count, *values)


datasets = st.one_of(
    st.binary(max_size=300),
    object_infos(),
    prop_lists(),
    u32_arrays(),
    wire_strings,
    date_strings.map(encode_string),
)


# -- running an example ----------------------------------------------------------------------


def run(body: Callable[[Device], Awaitable[None]]) -> None:
    """Run ``body`` against a fresh responder with a small tree of files."""

    async def main(base: Path) -> None:
        storage = base / "storage"
        storage.mkdir()
        (storage / "a.txt").write_text("alpha")
        (storage / "DCIM").mkdir()
        (storage / "DCIM" / "b.jpg").write_bytes(b"jpeg" * 200)
        async with trio.open_nursery() as nursery:
            device = await start_device(nursery, base, make_config(base))
            with trio.fail_after(10):
                assert (await device.mtp.open_session()).ok
                await device.mtp.object_handles(parent=0)  # hand out handles 1..3
                await body(device)
                await still_serving(device, in_session=False)
            nursery.cancel_scope.cancel()
        # Nothing was written next to the storage.
        assert {p.name for p in base.iterdir()} <= {"storage", "state"}

    with tempfile.TemporaryDirectory() as tmp, no_logged_errors():
        trio.run(main, Path(tmp))


async def one_transaction(
    device: Device, code: int, args: tuple[int, ...], data: bytes | None
) -> None:
    tid = device.mtp.next_tid()
    await device.mtp.command(code, *args, tid=tid)
    if data is not None:
        await device.mtp.send_data(code, tid, data)
    _, response = await device.mtp.read_data_or_response(tid)
    assert response.transaction_id == tid
    assert response.code in {int(c) for c in ResponseCode}, hex(response.code)


# -- the properties --------------------------------------------------------------------------


@FUZZ
@given(transfers=st.lists(st.binary(max_size=600), min_size=1, max_size=6))
def test_random_bytes_never_crash_the_responder(transfers: list[bytes]) -> None:
    async def body(device: Device) -> None:
        for raw in transfers:
            await device.host.write_transfer(raw)
        await wait_until(lambda: device.host.out_queued == 0, 5)
        # A host that lost step cancels; the responder is then idle and in step.
        device.host.cancel(0)
        await wait_until(lambda: not device.host.device_status_busy(), 5)

    run(body)


@st.composite
def containers(draw: st.DrawFn) -> bytes:
    """Headers that may lie about length and type, followed by arbitrary bodies."""
    body = draw(st.binary(max_size=64))
    length = draw(st.one_of(st.just(12 + len(body)), u32))
    ctype = draw(st.one_of(st.sampled_from([1, 2, 3, 4]), u16))
    return struct.pack("<IHHI", length, ctype, draw(op_codes), draw(u32)) + body


@FUZZ
@given(items=st.lists(containers(), min_size=1, max_size=5))
def test_random_containers_never_crash_the_responder(items: list[bytes]) -> None:
    async def body(device: Device) -> None:
        for raw in items:
            await device.host.write_transfer(raw)
        await wait_until(lambda: device.host.out_queued == 0, 5)
        device.host.cancel(0)
        await wait_until(lambda: not device.host.device_status_busy(), 5)

    run(body)


@FUZZ
@given(
    commands=st.lists(
        st.tuples(op_codes, params, st.one_of(st.none(), datasets)), min_size=1, max_size=6
    )
)
def test_every_well_formed_command_gets_exactly_one_response(
    commands: list[tuple[int, tuple[int, ...], bytes | None]],
) -> None:
    async def body(device: Device) -> None:
        for code, args, data in commands:
            if Operations.expects_data(code) and data is None:
                data = b""
            if not Operations.expects_data(code):
                data = None
            await one_transaction(device, code, args, data)

    run(body)


@FUZZ
@given(
    code=st.sampled_from(DATA_OUT),
    args=params,
    data=datasets,
    prepare=st.sampled_from(["none", "object_info", "begin_edit"]),
)
def test_random_datasets_for_every_data_operation_are_answered(
    code: int, args: tuple[int, ...], data: bytes, prepare: str
) -> None:
    async def body(device: Device) -> None:
        if prepare == "object_info":
            info = build_object_info(
                ObjectInfoData(0, ObjectFormat.UNDEFINED, 0, len(data), 0, 0, "up.bin")
            )
            await one_transaction(device, OperationCode.SEND_OBJECT_INFO, (0, ALL), info)
        elif prepare == "begin_edit":
            await one_transaction(device, OperationCode.BEGIN_EDIT_OBJECT, (1,), None)
        await one_transaction(device, code, args, data)

    run(body)


@FUZZ
@given(value=datasets, code=st.sampled_from([int(p) for p in DeviceProp] + [0x1234]))
def test_random_device_property_values_are_answered(value: bytes, code: int) -> None:
    async def body(device: Device) -> None:
        await one_transaction(device, OperationCode.SET_DEVICE_PROP_VALUE, (code,), value)
        await one_transaction(device, OperationCode.GET_DEVICE_PROP_DESC, (code,), None)

    run(body)


def test_the_command_builder_used_here_makes_well_formed_commands() -> None:
    raw = build_params_container(ContainerType.COMMAND, 0x1001, 7, (1, 2))
    assert struct.unpack_from("<IHHI", raw) == (20, 1, 0x1001, 7)
