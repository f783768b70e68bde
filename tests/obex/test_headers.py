"""Headers: the four encodings on the wire, and hostile headers refused by name."""

from __future__ import annotations

import pytest

from obex_backup_server.core.codes import HeaderEncoding, HeaderId, ResponseCode
from obex_backup_server.core.errors import LocalProtocolError, RemoteProtocolError
from obex_backup_server.core.headers import (
    Header,
    ascii_text,
    build_header,
    build_headers,
    parse_headers,
)


def test_the_top_two_bits_of_an_identifier_name_its_encoding() -> None:
    assert HeaderId.NAME.encoding is HeaderEncoding.UNICODE
    assert HeaderId.BODY.encoding is HeaderEncoding.BYTES
    assert HeaderId.SINGLE_RESPONSE_MODE.encoding is HeaderEncoding.BYTE
    assert HeaderId.CONNECTION_ID.encoding is HeaderEncoding.FOUR_BYTES


def test_text_is_utf16_big_endian_with_a_terminating_nul_and_a_length_counting_the_prefix() -> None:
    assert build_header(Header(HeaderId.NAME, "ab")) == bytes.fromhex("010009 0061 0062 0000")
    assert build_header(Header(HeaderId.NAME, "é€")) == bytes.fromhex("010009 00E9 20AC 0000")


def test_an_empty_name_is_just_the_three_byte_prefix() -> None:
    assert build_header(Header(HeaderId.NAME, "")) == bytes.fromhex("010003")
    assert parse_headers(bytes.fromhex("010003")) == (Header(HeaderId.NAME, ""),)


def test_bytes_one_byte_and_four_bytes_encodings() -> None:
    assert build_header(Header(HeaderId.BODY, b"xyz")) == bytes.fromhex("480006") + b"xyz"
    assert build_header(Header(HeaderId.SINGLE_RESPONSE_MODE, 1)) == bytes.fromhex("9701")
    assert build_header(Header(HeaderId.LENGTH, 0x01020304)) == bytes.fromhex("C301020304")


def test_a_run_of_headers_parses_back_to_what_was_built() -> None:
    headers = (
        Header(HeaderId.CONNECTION_ID, 7),
        Header(HeaderId.NAME, "Backup 2026/été.mbak"),
        Header(HeaderId.TYPE, b"x-obex/folder-listing\0"),
        Header(HeaderId.LENGTH, 0xFFFFFFFF),
        Header(0x97, 0),
        Header(HeaderId.END_OF_BODY, b""),
        Header(0x30, "unknown text header"),
        Header(0x70, b"unknown bytes header"),
    )
    assert parse_headers(build_headers(headers)) == headers


def test_type_is_nul_terminated_ascii() -> None:
    headers = parse_headers(build_header(Header(HeaderId.TYPE, b"x-obex/capability\0")))
    assert ascii_text(headers, HeaderId.TYPE) == "x-obex/capability"
    assert ascii_text(headers, HeaderId.NAME) is None
    bad = parse_headers(build_header(Header(HeaderId.TYPE, b"x-\xff\0")))
    with pytest.raises(RemoteProtocolError, match="TYPE is not ASCII"):
        ascii_text(bad, HeaderId.TYPE)


HOSTILE = {
    "length past the end": (bytes.fromhex("01000B 0061 0000"), "NAME has length 11, past the end"),
    "length under the prefix": (bytes.fromhex("480002"), "BODY has length 2, less than its"),
    "zero length": (bytes.fromhex("490000"), "END_OF_BODY has length 0"),
    "odd UTF-16 length": (bytes.fromhex("010006 006100"), "NAME has an odd UTF-16 length"),
    "missing NUL": (bytes.fromhex("010007 0061 0062"), "NAME lacks its terminating NUL"),
    "NUL inside": (bytes.fromhex("01000B 0061 0000 0062 0000"), "NAME has a NUL inside"),
    "lone surrogate": (bytes.fromhex("010007 D800 0000"), "NAME is not valid UTF-16"),
    "cut inside the length": (bytes.fromhex("4800"), "BODY is cut off inside its length"),
    "one-byte value missing": (bytes.fromhex("97"), "SINGLE_RESPONSE_MODE is cut off"),
    "four-byte value cut": (bytes.fromhex("CB0000"), "CONNECTION_ID is cut off: 2 of its 4"),
    "unknown header cut": (bytes.fromhex("7F0010"), "0x7F has length 16, past the end"),
}


@pytest.mark.parametrize("raw, message", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_header_is_a_bad_request_naming_it(raw: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message) as caught:
        parse_headers(raw)
    assert caught.value.response is ResponseCode.BAD_REQUEST


def test_a_hostile_header_after_good_ones_is_still_refused() -> None:
    good = build_header(Header(HeaderId.CONNECTION_ID, 1))
    with pytest.raises(RemoteProtocolError, match="NAME lacks its terminating NUL"):
        parse_headers(good + bytes.fromhex("010005 0061"))


@pytest.mark.parametrize(
    "header, message",
    [
        (Header(HeaderId.NAME, b"bytes"), "NAME takes text"),
        (Header(HeaderId.NAME, "a\0b"), "NAME cannot carry a NUL"),
        (Header(HeaderId.BODY, "text"), "BODY takes bytes"),
        (Header(HeaderId.LENGTH, -1), "LENGTH takes a 32-bit number"),
        (Header(HeaderId.LENGTH, 1 << 32), "LENGTH takes a 32-bit number"),
        (Header(0x97, 256), "SINGLE_RESPONSE_MODE takes one byte"),
        (Header(HeaderId.BODY, bytes(0xFFFD)), "BODY is 65536 bytes"),
        (Header(HeaderId.NAME, "\udc80"), "NAME is not encodable"),
    ],
)
def test_building_a_header_its_encoding_cannot_carry_is_our_own_error(
    header: Header, message: str
) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        build_header(header)
