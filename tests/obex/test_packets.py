"""Packets: code, whole-packet length, the fixed fields of CONNECT and SETPATH."""

from __future__ import annotations

import pytest

from obex_backup_server.core.codes import FINAL, HeaderId, Opcode, ResponseCode, SetPathFlag
from obex_backup_server.core.errors import LocalProtocolError, RemoteProtocolError
from obex_backup_server.core.headers import Header
from obex_backup_server.core.packets import (
    ConnectFields,
    SetPathFields,
    build_request,
    build_response,
    parse_request,
    parse_response,
)


def test_opcodes_carry_the_final_bit_where_obex_requires_it() -> None:
    assert Opcode.PUT | FINAL == Opcode.PUT_FINAL == 0x82
    assert Opcode.GET | FINAL == Opcode.GET_FINAL == 0x83
    assert all(code & FINAL for code in ResponseCode)


def test_connect_carries_version_flags_and_max_packet_length_before_its_headers() -> None:
    packet = build_request(Opcode.CONNECT, connect=ConnectFields(0x10, 0, 0x2000))
    assert packet == bytes.fromhex("800007 10 00 2000")
    request = parse_request(packet)
    assert request.connect == ConnectFields(0x10, 0, 0x2000)
    assert request.final


def test_the_length_field_counts_the_whole_packet() -> None:
    packet = build_request(Opcode.PUT_FINAL, [Header(HeaderId.END_OF_BODY, b"ab")])
    assert packet == bytes.fromhex("820008 490005") + b"ab"


def test_setpath_flags_say_up_and_do_not_create() -> None:
    packet = build_request(
        Opcode.SETPATH, [Header(HeaderId.NAME, "")], setpath=SetPathFields(0b11, 0)
    )
    assert packet == bytes.fromhex("850008 03 00 010003")
    fields = parse_request(packet).setpath
    assert fields is not None and fields.up and not fields.create
    assert SetPathFields(int(SetPathFlag.UP)).create


def test_a_connect_response_carries_the_same_fixed_fields() -> None:
    packet = build_response(
        ResponseCode.SUCCESS,
        [Header(HeaderId.CONNECTION_ID, 1)],
        connect=ConnectFields(0x10, 0, 1024),
    )
    response = parse_response(packet, to_connect=True)
    assert response.connect == ConnectFields(0x10, 0, 1024)
    assert response.headers == (Header(HeaderId.CONNECTION_ID, 1),)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x82\x00", "shorter than its 3-byte prefix"),
        (bytes.fromhex("820009 490005") + b"ab", "says 9 bytes but has 8"),
        (bytes.fromhex("800006 10 00 20"), "CONNECT packet of 6 bytes is shorter than its 7"),
        (bytes.fromhex("850004 00"), "SETPATH packet of 4 bytes is shorter than its 5"),
        (bytes.fromhex("820006 490009"), "END_OF_BODY has length 9, past the end"),
    ],
)
def test_a_malformed_request_is_refused_with_a_reason(raw: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message) as caught:
        parse_request(raw)
    assert caught.value.response is ResponseCode.BAD_REQUEST


def test_a_response_without_the_final_bit_is_malformed() -> None:
    with pytest.raises(RemoteProtocolError, match="0x20 lacks the final bit"):
        parse_response(bytes.fromhex("200003"))


def test_a_packet_longer_than_65535_bytes_cannot_be_built() -> None:
    # 3 (prefix) + 65535 (the largest Body header) + 5 (Length)
    headers = [Header(HeaderId.BODY, bytes(0xFFFF - 3)), Header(HeaderId.LENGTH, 0)]
    with pytest.raises(LocalProtocolError, match="65543 bytes, more than 65535"):
        build_request(Opcode.PUT, headers)
