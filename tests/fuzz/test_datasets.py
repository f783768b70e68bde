"""Every dataset parser of the MTP core, fed arbitrary bytes.

The core's promise (``mtp_responder.core.datasets``) is that anything
malformed from the host is a :class:`DatasetError`, so the dispatcher answers
InvalidDataset instead of crashing.  These targets hold every parser to it:
a parse returns a value or raises ``DatasetError``, never anything else; and
what the builders write, the parsers read back unchanged.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mtp_responder.core.codes import DataType, ObjectProp
from mtp_responder.core.datasets import (
    DatasetError,
    DeviceInfo,
    DevicePropDesc,
    ObjectInfoData,
    ObjectPropDesc,
    PropListItem,
    StorageInfo,
    build_object_info,
    build_prop_list,
    decode_value,
    encode_string,
    encode_value,
    parse_date,
    parse_exact,
    parse_object_info,
    parse_prop_list,
    parse_string,
    parse_u32_array,
)

from .budget import budget, counted

DATATYPES = [int(t) for t in DataType]
u16 = st.one_of(st.sampled_from([*DATATYPES, 0, 65535, 16384, 16395]), st.integers(0, 0xFFFF))
u32 = st.integers(0, 0xFFFFFFFF)


def _mtp_string(text: str) -> bytes:
    """An MTP string whose units may be invalid UTF-16 (lone surrogates)."""
    units = text.encode("utf-16-le", "surrogatepass")[: 2 * 254]
    return bytes([len(units) // 2 + 1]) + units + b"\x00\x00"


strings = st.one_of(
    st.text(max_size=30).map(_mtp_string),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3).map(
        _mtp_string
    ),
    st.binary(max_size=12),
)


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    """A dataset made of plausible fields (counts, strings, values), then maybe cut or spliced."""
    parts = draw(
        st.lists(
            st.one_of(
                u32.map(lambda v: struct.pack("<I", v)),
                u16.map(lambda v: struct.pack("<H", v)),
                st.integers(0, 255).map(lambda v: bytes([v])),
                strings,
                st.binary(max_size=16),
            ),
            max_size=12,
        )
    )
    data = b"".join(parts)
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return data if cut is None else data[:cut]


inputs = st.one_of(st.binary(max_size=400), near_valid())


def _only_dataset_errors(parse: Callable[[bytes], Any], data: bytes) -> None:
    try:
        parse(data)
    except DatasetError:
        pass


PARSERS: dict[str, Callable[[bytes], Any]] = {
    "ObjectInfo": parse_object_info,
    "string": parse_string,
    "ObjectPropList": parse_prop_list,
    "u32 array": parse_u32_array,
    "DeviceInfo": lambda d: parse_exact(DeviceInfo, d, "DeviceInfo"),
    "StorageInfo": lambda d: parse_exact(StorageInfo, d, "StorageInfo"),
    "DevicePropDesc": lambda d: parse_exact(DevicePropDesc, d, "DevicePropDesc"),
    "ObjectPropDesc": lambda d: parse_exact(ObjectPropDesc, d, "ObjectPropDesc"),
}


@budget(300)
@given(which=st.sampled_from(sorted(PARSERS)), data=inputs)
@counted("datasets: every parser")
def test_every_parser_raises_only_dataset_errors(which: str, data: bytes) -> None:
    _only_dataset_errors(PARSERS[which], data)


@budget(300)
@given(datatype=u16, data=inputs)
@counted("datasets: typed values")
def test_typed_values_raise_only_dataset_errors(datatype: int, data: bytes) -> None:
    _only_dataset_errors(lambda d: decode_value(datatype, d), data)


@budget(200)
@given(text=st.one_of(st.text(max_size=40), st.from_regex(r"\d{8}T\d{6}(\.\d+)?(Z|[+-]\d{4})?")))
@counted("datasets: dates")
def test_dates_parse_to_a_timestamp_or_none(text: str) -> None:
    assert parse_date(text) is None or isinstance(parse_date(text), float)


names = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=200
)


@budget(100)
@given(
    info=st.builds(
        ObjectInfoData,
        storage_id=u32,
        object_format=st.integers(0, 0xFFFF),
        protection_status=st.integers(0, 0xFFFF),
        compressed_size=u32,
        parent_object=u32,
        association_type=st.integers(0, 0xFFFF),
        filename=names.filter(lambda s: len(s.encode("utf-16-le")) // 2 < 255),
        date_modified=st.sampled_from(["", "20240101T000000"]),
    )
)
@counted("datasets: ObjectInfo round trip")
def test_object_info_reads_back_what_was_built(info: ObjectInfoData) -> None:
    parsed = parse_object_info(build_object_info(info))
    assert (parsed.filename, parsed.parent_object, parsed.compressed_size) == (
        info.filename,
        info.parent_object,
        info.compressed_size,
    )
    assert parsed.date_modified == info.date_modified


_VALUES = {
    DataType.UINT8: st.integers(0, 0xFF),
    DataType.UINT16: st.integers(0, 0xFFFF),
    DataType.UINT32: u32,
    DataType.UINT64: st.integers(0, 2**64 - 1),
    DataType.INT64: st.integers(-(2**63), 2**63 - 1),
    DataType.UINT128: st.integers(0, 2**128 - 1),
    DataType.STR: st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
        max_size=100,
    ),
}


@st.composite
def prop_items(draw: st.DrawFn) -> PropListItem:
    datatype = draw(st.sampled_from(sorted(_VALUES)))
    return PropListItem(
        draw(u32), int(draw(st.sampled_from(list(ObjectProp)))), datatype, draw(_VALUES[datatype])
    )


@budget(100)
@given(items=st.lists(prop_items(), max_size=8))
@counted("datasets: prop list round trip")
def test_prop_lists_read_back_what_was_built(items: list[PropListItem]) -> None:
    assert parse_prop_list(build_prop_list(items)) == items


@budget(100)
@given(datatype=st.sampled_from(sorted(_VALUES)), data=st.data())
@counted("datasets: value round trip")
def test_values_read_back_what_was_encoded(datatype: int, data: st.DataObject) -> None:
    value = data.draw(_VALUES[datatype])
    assert decode_value(datatype, encode_value(datatype, value)) == value


def test_the_string_encoder_used_here_matches_the_cores() -> None:
    assert _mtp_string("ab") == encode_string("ab")
