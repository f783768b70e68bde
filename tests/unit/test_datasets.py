"""Datasets: MTP strings, dates, ObjectInfo, property lists and descriptions."""

from __future__ import annotations

import struct
import time

import pytest

from mtp_responder.config import DeviceConfig
from mtp_responder.core.codes import DataType, DeviceProp, FormFlag, ObjectProp
from mtp_responder.core.datasets import (
    OBJECT_INFO_FIXED_SIZE,
    DatasetError,
    DevicePropDesc,
    MTPString,
    ObjectInfoData,
    ObjectPropDesc,
    ObjectPropList,
    PropListItem,
    build_object_info,
    build_prop_list,
    decode_value,
    encode_string,
    encode_value,
    format_date,
    parse_date,
    parse_object_info,
    parse_prop_list,
    parse_string,
    parse_u32_array,
    value_construct,
)
from mtp_responder.device_props import DeviceProperties
from mtp_responder.properties import PROPERTIES, prop_desc

# -- MTP strings ------------------------------------------------------------------


def test_the_length_byte_counts_the_terminating_nul() -> None:
    assert encode_string("abc") == b"\x04a\x00b\x00c\x00\x00\x00"


def test_the_empty_string_is_a_single_zero_byte() -> None:
    assert encode_string("") == b"\x00"
    assert MTPString.parse(b"\x00") == ""


def test_a_string_round_trips_through_the_construct_declaration() -> None:
    text = "Ünïcødé ✓ name.txt"
    assert MTPString.parse(encode_string(text)) == text
    assert MTPString.build(text) == encode_string(text)


def test_long_strings_are_cut_at_254_code_units_plus_the_nul() -> None:
    encoded = encode_string("x" * 300)
    assert encoded[0] == 255
    assert len(encoded) == 1 + 2 * 255
    assert MTPString.parse(encoded) == "x" * 254


def test_a_string_of_exactly_254_units_is_kept_whole() -> None:
    assert MTPString.parse(encode_string("y" * 254)) == "y" * 254


def test_characters_outside_the_bmp_take_a_surrogate_pair() -> None:
    encoded = encode_string("😀")
    assert encoded[0] == 3  # two code units and the NUL
    assert MTPString.parse(encoded) == "😀"


def test_truncation_never_splits_a_surrogate_pair() -> None:
    encoded = encode_string("x" * 253 + "😀")
    assert encoded[0] == 254  # 253 units and the NUL; the pair did not fit
    assert MTPString.parse(encoded) == "x" * 253


def test_a_string_whose_nul_is_missing_but_counted_is_accepted() -> None:
    assert MTPString.parse(b"\x02h\x00i\x00") == "hi"


@pytest.mark.parametrize(
    "raw",
    [
        b"\x02\x00\xd8\x00\x00",  # lone high surrogate
        b"\x02\x00\xdc\x00\x00",  # lone low surrogate
        b"\x03a\x00\x00\xd8\x00\x00",  # high surrogate followed by NUL
    ],
)
def test_invalid_utf16_is_a_dataset_error(raw: bytes) -> None:
    with pytest.raises(DatasetError):
        parse_string(raw)


def test_a_string_shorter_than_its_length_byte_is_a_dataset_error() -> None:
    with pytest.raises(DatasetError):
        parse_string(b"\x05a\x00b\x00")


def test_trailing_bytes_after_a_string_dataset_are_a_dataset_error() -> None:
    with pytest.raises(DatasetError):
        parse_string(encode_string("ok") + b"\x00")


def test_an_empty_string_dataset_is_a_dataset_error() -> None:
    with pytest.raises(DatasetError):
        parse_string(b"")


# -- dates ----------------------------------------------------------------------


def test_dates_are_local_time_without_a_zone() -> None:
    stamp = time.mktime((2024, 2, 29, 13, 45, 7, 0, 0, -1))
    assert format_date(stamp) == "20240229T134507"


def test_a_zero_timestamp_is_an_empty_date() -> None:
    assert format_date(0) == ""


def test_a_formatted_date_parses_back_to_the_same_second() -> None:
    stamp = float(int(time.time()))
    assert parse_date(format_date(stamp)) == stamp


def test_a_utc_date_is_parsed_as_utc() -> None:
    assert parse_date("19700101T000010Z") == 10.0


def test_a_date_with_an_offset_is_parsed_with_it() -> None:
    assert parse_date("19700101T010010+0100") == 10.0
    assert parse_date("19691231T230010-0100") == 10.0


def test_tenths_of_seconds_are_kept() -> None:
    assert parse_date("19700101T000010.5Z") == 10.5


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "2024-01-01T00:00:00",
        "20240230T000000",
        "20240101X000000",
        "20240101T250000",
        "20240101T000000+99",
        "20240101T000000+9900",
        "20240101T000000Q",
        "20240101T000000+²³⁴⁵",
    ],
)
def test_bad_dates_are_none_not_an_exception(text: str) -> None:
    assert parse_date(text) is None


def test_a_fraction_that_rounds_up_to_a_whole_second_is_still_a_date() -> None:
    assert parse_date("19700101T000010." + "9" * 20 + "Z") == pytest.approx(11.0, abs=1e-5)


# -- ObjectInfo --------------------------------------------------------------------


def _info(**changes: object) -> ObjectInfoData:
    info = ObjectInfoData(
        storage_id=0x10001,
        object_format=0x3801,
        protection_status=0,
        compressed_size=123456,
        parent_object=7,
        association_type=0,
        filename="photo.jpg",
        date_created="20240101T101010",
        date_modified="20240102T111111",
        keywords="holiday",
    )
    for key, value in changes.items():
        setattr(info, key, value)
    return info


def test_object_info_round_trips() -> None:
    assert parse_object_info(build_object_info(_info())) == _info()


def test_object_info_sizes_of_4_gib_and_more_say_0xffffffff() -> None:
    raw = build_object_info(_info(compressed_size=5 << 30))
    assert parse_object_info(raw).compressed_size == 0xFFFFFFFF


def test_object_info_without_strings_after_the_file_name_reads_them_as_empty() -> None:
    raw = build_object_info(_info())
    cut = OBJECT_INFO_FIXED_SIZE + len(encode_string("photo.jpg"))
    info = parse_object_info(raw[:cut])
    assert info.filename == "photo.jpg"
    assert (info.date_created, info.date_modified, info.keywords) == ("", "", "")


@pytest.mark.parametrize("length", [0, 1, 20, OBJECT_INFO_FIXED_SIZE - 1, OBJECT_INFO_FIXED_SIZE])
def test_object_info_cut_inside_its_fixed_part_is_a_dataset_error(length: int) -> None:
    with pytest.raises(DatasetError):
        parse_object_info(build_object_info(_info())[:length])


@pytest.mark.parametrize("extra", [1, 2, 5, 19])
def test_object_info_cut_inside_the_file_name_is_a_dataset_error(extra: int) -> None:
    with pytest.raises(DatasetError):
        parse_object_info(build_object_info(_info())[: OBJECT_INFO_FIXED_SIZE + extra])


def test_object_info_with_invalid_utf16_in_the_name_is_a_dataset_error() -> None:
    raw = build_object_info(_info())[:OBJECT_INFO_FIXED_SIZE] + b"\x02\x00\xdc\x00\x00"
    with pytest.raises(DatasetError):
        parse_object_info(raw)


# -- typed values ------------------------------------------------------------------

VALUES: list[tuple[int, object]] = [
    (DataType.INT8, -5),
    (DataType.UINT8, 200),
    (DataType.INT16, -30000),
    (DataType.UINT16, 0xBEEF),
    (DataType.INT32, -(2**31)),
    (DataType.UINT32, 0xDEADBEEF),
    (DataType.INT64, -(2**63)),
    (DataType.UINT64, 2**64 - 1),
    (DataType.INT128, -(2**127)),
    (DataType.UINT128, 2**128 - 1),
    (DataType.AUINT8, [1, 2, 3]),
    (DataType.AINT32, [-1, 0, 1]),
    (DataType.AUINT64, []),
    (DataType.STR, "name.txt"),
    (DataType.STR, ""),
]


@pytest.mark.parametrize(("datatype", "value"), VALUES)
def test_the_fast_encoder_agrees_with_the_construct_declaration(
    datatype: int, value: object
) -> None:
    assert encode_value(datatype, value) == value_construct(datatype).build(value)


@pytest.mark.parametrize(("datatype", "value"), VALUES)
def test_a_value_decodes_to_what_was_encoded(datatype: int, value: object) -> None:
    assert decode_value(datatype, encode_value(datatype, value)) == value


@pytest.mark.parametrize(("datatype", "value"), VALUES)
def test_a_value_with_a_trailing_byte_is_a_dataset_error(datatype: int, value: object) -> None:
    with pytest.raises(DatasetError):
        decode_value(datatype, encode_value(datatype, value) + b"\x00")


@pytest.mark.parametrize(("datatype", "value"), [v for v in VALUES if v[1] not in ([], "")])
def test_a_truncated_value_is_a_dataset_error(datatype: int, value: object) -> None:
    with pytest.raises(DatasetError):
        decode_value(datatype, encode_value(datatype, value)[:-1])


@pytest.mark.parametrize("datatype", [0x0000, 0x000B, 0x4009, 0x8000, 0xFFFE])
def test_unknown_datatypes_are_dataset_errors(datatype: int) -> None:
    with pytest.raises(DatasetError):
        decode_value(datatype, b"\x00\x00\x00\x00")


# -- ObjectPropList ------------------------------------------------------------------

ITEMS = [
    PropListItem(5, ObjectProp.OBJECT_FILE_NAME, DataType.STR, "a.txt"),
    PropListItem(5, ObjectProp.OBJECT_SIZE, DataType.UINT64, 5 << 30),
    PropListItem(5, ObjectProp.PERSISTENT_UNIQUE_OBJECT_IDENTIFIER, DataType.UINT128, 2**100 + 7),
    PropListItem(6, ObjectProp.OBJECT_FORMAT, DataType.UINT16, 0x3001),
    PropListItem(6, ObjectProp.NON_CONSUMABLE, DataType.UINT8, 1),
    PropListItem(6, ObjectProp.DATE_MODIFIED, DataType.STR, ""),
]


def test_the_fast_prop_list_builder_agrees_with_the_construct_declaration() -> None:
    declared = ObjectPropList.build(
        [
            {
                "object_handle": i.handle,
                "property_code": i.code,
                "datatype": i.datatype,
                "value": i.value,
            }
            for i in ITEMS
        ]
    )
    assert build_prop_list(ITEMS) == declared


def test_a_prop_list_parses_back_to_its_items() -> None:
    assert parse_prop_list(build_prop_list(ITEMS)) == ITEMS


def test_an_empty_prop_list_is_four_zero_bytes() -> None:
    assert build_prop_list([]) == b"\x00\x00\x00\x00"
    assert parse_prop_list(b"\x00\x00\x00\x00") == []


def test_a_prop_list_whose_count_lies_is_a_dataset_error() -> None:
    raw = bytearray(build_prop_list(ITEMS))
    raw[0:4] = struct.pack("<I", len(ITEMS) + 1)
    with pytest.raises(DatasetError):
        parse_prop_list(bytes(raw))


def test_a_prop_list_with_trailing_bytes_is_a_dataset_error() -> None:
    with pytest.raises(DatasetError):
        parse_prop_list(build_prop_list(ITEMS) + b"\x01")


@pytest.mark.parametrize("cut", [1, 3, 7, 11, 20])
def test_a_truncated_prop_list_is_a_dataset_error(cut: int) -> None:
    with pytest.raises(DatasetError):
        parse_prop_list(build_prop_list(ITEMS)[:-cut])


def test_a_prop_list_element_of_unknown_datatype_is_a_dataset_error() -> None:
    raw = struct.pack("<IIHH", 1, 5, ObjectProp.OBJECT_FILE_NAME, 0x0000)
    with pytest.raises(DatasetError):
        parse_prop_list(raw)


def test_a_prop_list_string_without_its_nul_is_accepted() -> None:
    head = struct.pack("<IIHH", 1, 5, ObjectProp.OBJECT_FILE_NAME, DataType.STR)
    items = parse_prop_list(head + b"\x02h\x00i\x00")
    assert items == [PropListItem(5, ObjectProp.OBJECT_FILE_NAME, DataType.STR, "hi")]


def test_a_prop_list_with_a_huge_count_and_no_elements_is_a_dataset_error() -> None:
    with pytest.raises(DatasetError):
        parse_prop_list(b"\xff\xff\xff\xff")


# -- property descriptions -------------------------------------------------------------


@pytest.mark.parametrize("code", list(PROPERTIES))
def test_every_object_prop_desc_parses_with_the_construct_declaration(code: int) -> None:
    definition = PROPERTIES[code]
    raw = prop_desc(definition, 0x3000)
    parsed = ObjectPropDesc.parse(raw)
    assert parsed.property_code == code
    assert parsed.datatype == definition.datatype
    assert parsed.get_set == (1 if definition.settable else 0)
    assert parsed.form_flag == definition.form_flag
    assert ObjectPropDesc.build(parsed) == raw


def test_the_file_name_prop_desc_is_settable_so_hosts_offer_rename() -> None:
    parsed = ObjectPropDesc.parse(prop_desc(PROPERTIES[ObjectProp.OBJECT_FILE_NAME], 0x3000))
    assert parsed.get_set == 1


def test_enumeration_forms_list_their_values() -> None:
    parsed = ObjectPropDesc.parse(prop_desc(PROPERTIES[ObjectProp.PROTECTION_STATUS], 0x3000))
    assert parsed.form_flag == FormFlag.ENUMERATION
    assert list(parsed.form) == [0, 1]


def test_every_device_prop_desc_parses_with_the_construct_declaration(tmp_path: object) -> None:
    from pathlib import Path

    base = Path(str(tmp_path))
    battery = base / "BAT0"
    battery.mkdir()
    (battery / "capacity").write_text("57\n")
    props = DeviceProperties(DeviceConfig(battery=str(battery)), base / "state")
    assert DeviceProp.BATTERY_LEVEL in props.codes
    for code in props.codes:
        raw = props.describe(code)
        parsed = DevicePropDesc.parse(raw)
        assert parsed.property_code == code
        assert DevicePropDesc.build(parsed) == raw
    battery_desc = DevicePropDesc.parse(props.describe(DeviceProp.BATTERY_LEVEL))
    assert battery_desc.form_flag == FormFlag.RANGE
    assert (battery_desc.form.minimum, battery_desc.form.maximum, battery_desc.form.step) == (
        0,
        100,
        1,
    )
    assert battery_desc.current_value == 57


# -- arrays ------------------------------------------------------------------------------


def test_a_u32_array_whose_count_lies_is_a_dataset_error() -> None:
    with pytest.raises(DatasetError):
        parse_u32_array(struct.pack("<II", 2, 1))


def test_a_u32_array_shorter_than_its_count_field_is_a_dataset_error() -> None:
    with pytest.raises(DatasetError):
        parse_u32_array(b"\x01\x00")
