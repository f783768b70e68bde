"""Lockstep, back-pressure and the server's own mistakes, at the core's API.

OBEX waits for each response before the next request, so the core takes one
packet at a time: it says PAUSED while an answer is due, holds at most one
packet beyond the one being answered, and refuses answers the protocol does
not allow now, naming why.
"""

from __future__ import annotations

import pytest

from obex_backup_server.core.codes import FOLDER_BROWSING_UUID, HeaderId, Opcode, ResponseCode
from obex_backup_server.core.connection import NEED_DATA, PAUSED, Phase, ServerConnection
from obex_backup_server.core.errors import LocalProtocolError, RemoteProtocolError
from obex_backup_server.core.events import (
    BodyChunk,
    BodyEnd,
    Connect,
    ConnectionClosed,
    ContinueDue,
    GetRequest,
    Operation,
    PutEnd,
    PutOutcome,
    PutStart,
    Response,
    ResponseHeaders,
    SetPath,
)
from obex_backup_server.core.headers import Header
from obex_backup_server.core.packets import ConnectFields, build_request, parse_response

ID = Header(HeaderId.CONNECTION_ID, 1)


def connected(max_packet_length: int = 0xFFFF) -> ServerConnection:
    conn = ServerConnection(max_packet_length=max_packet_length)
    conn.receive_data(
        build_request(
            Opcode.CONNECT,
            [Header(HeaderId.TARGET, FOLDER_BROWSING_UUID)],
            connect=ConnectFields(max_packet_length=0xFFFF),
        )
    )
    assert isinstance(conn.next_event(), Connect)
    conn.send(Response(ResponseCode.SUCCESS))
    return conn


def setpath(name: str) -> bytes:
    return build_request(Opcode.SETPATH, [ID, Header(HeaderId.NAME, name)])


def test_a_second_request_waits_until_the_first_is_answered() -> None:
    conn = connected()
    conn.receive_data(setpath("a") + setpath("b"))
    first = conn.next_event()
    assert isinstance(first, SetPath) and first.name == "a"
    assert conn.next_event() is PAUSED
    assert conn.next_event() is PAUSED
    conn.send(Response(ResponseCode.SUCCESS))
    second = conn.next_event()
    assert isinstance(second, SetPath) and second.name == "b"


def test_bytes_one_at_a_time_make_the_same_events() -> None:
    conn = connected()
    packet = build_request(
        Opcode.PUT_FINAL,
        [ID, Header(HeaderId.NAME, "a"), Header(HeaderId.END_OF_BODY, b"xyz")],
    )
    for byte in packet[:-1]:
        conn.receive_data(bytes([byte]))
        assert conn.next_event() is NEED_DATA
    conn.receive_data(packet[-1:])
    assert isinstance(conn.next_event(), PutStart)
    assert conn.next_event() == BodyChunk(b"xyz")
    assert conn.next_event() == PutEnd(PutOutcome.WRITE, 3)
    assert conn.next_event() is PAUSED


def test_input_beyond_one_packet_past_the_one_answered_is_refused() -> None:
    conn = connected(max_packet_length=1000)
    conn.receive_data(setpath("a"))
    filler = build_request(Opcode.PUT, [ID, Header(HeaderId.BODY, bytes(900))])
    conn.receive_data(filler)  # one packet held: a client may be that early
    assert conn.buffered == len(filler)
    with pytest.raises(RemoteProtocolError, match="does not wait for responses"):
        conn.receive_data(filler)
    assert conn.phase is Phase.CLOSED
    assert conn.buffered == 0


def test_an_oversized_packet_is_skipped_without_being_held() -> None:
    conn = connected(max_packet_length=500)
    big = build_request(Opcode.PUT_FINAL, [ID, Header(HeaderId.END_OF_BODY, bytes(5000))])
    for offset in range(0, len(big), 400):
        conn.receive_data(big[offset : offset + 400])
        assert conn.buffered == 0
    event = conn.next_event()
    assert event.response is ResponseCode.REQUEST_ENTITY_TOO_LARGE  # type: ignore[union-attr]


def test_the_end_of_the_transport_mid_put_ends_the_put() -> None:
    conn = connected()
    conn.receive_data(build_request(Opcode.PUT, [ID, Header(HeaderId.NAME, "a")]))
    assert isinstance(conn.next_event(), PutStart)
    assert conn.next_event() == ContinueDue(Operation.PUT)
    conn.send(Response(ResponseCode.CONTINUE))
    conn.receive_data(b"\x02\x00")  # half a packet, then the cable goes
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed(Operation.PUT)
    assert conn.next_event() == ConnectionClosed()
    with pytest.raises(LocalProtocolError, match="closed"):
        conn.send(Response(ResponseCode.SUCCESS))


def test_a_server_answer_out_of_turn_is_its_own_error() -> None:
    conn = connected()
    with pytest.raises(LocalProtocolError, match="no request to answer in phase 'idle'"):
        conn.send(Response(ResponseCode.SUCCESS))
    conn.receive_data(
        build_request(Opcode.PUT_FINAL, [ID, Header(HeaderId.NAME, "a"), Header(0x49, b"z")])
    )
    assert isinstance(conn.next_event(), PutStart)
    with pytest.raises(LocalProtocolError, match="before its events were read"):
        conn.send(Response(ResponseCode.SUCCESS))
    assert conn.next_event() == BodyChunk(b"z")
    assert isinstance(conn.next_event(), PutEnd)
    with pytest.raises(LocalProtocolError, match="Continue does not answer the final PUT packet"):
        conn.send(Response(ResponseCode.CONTINUE))
    with pytest.raises(LocalProtocolError, match="lacks the final bit"):
        conn.send(Response(0x20))  # type: ignore[arg-type]
    packet = conn.send(Response(ResponseCode.CREATED))
    assert parse_response(packet).code == ResponseCode.CREATED
    assert conn.phase is Phase.IDLE


def test_an_error_answer_may_cut_a_put_packet_short() -> None:
    conn = connected()
    conn.receive_data(
        build_request(Opcode.PUT, [ID, Header(HeaderId.NAME, "/etc"), Header(0x48, b"z")])
    )
    assert isinstance(conn.next_event(), PutStart)
    assert parse_response(conn.send(Response(ResponseCode.FORBIDDEN))).code == 0xC3
    assert conn.next_event() is NEED_DATA
    assert conn.operation is None


def test_get_body_chunks_fit_the_packet_under_way() -> None:
    conn = connected(max_packet_length=255)
    conn.receive_data(build_request(Opcode.GET_FINAL, [ID, Header(HeaderId.NAME, "f")]))
    assert isinstance(conn.next_event(), GetRequest)
    assert conn.body_room == 255 - 3 - 3
    conn.send(ResponseHeaders((Header(HeaderId.LENGTH, 1000),)))
    assert conn.body_room == 255 - 3 - 5 - 3
    with pytest.raises(LocalProtocolError, match="more than the 244 the packet under way takes"):
        conn.send(BodyChunk(bytes(245)))
    with pytest.raises(LocalProtocolError, match="ResponseHeaders come once"):
        conn.send(BodyChunk(b"ab")) + conn.send(ResponseHeaders(()))
    with pytest.raises(LocalProtocolError, match="sent as body chunks and BodyEnd"):
        conn.send(Response(ResponseCode.SUCCESS))
    packet = conn.send(BodyChunk(bytes(242)))
    assert len(packet) == 255 and parse_response(packet).code == ResponseCode.CONTINUE
    assert conn.phase is Phase.GET_WAIT and conn.body_room == 0
    with pytest.raises(LocalProtocolError, match="outside a GET response"):
        conn.send(BodyEnd())
    assert conn.next_event() is NEED_DATA


def test_a_get_failing_midway_is_answered_with_its_error() -> None:
    conn = connected()
    conn.receive_data(build_request(Opcode.GET_FINAL, [ID, Header(HeaderId.NAME, "f")]))
    conn.next_event()
    conn.send(BodyChunk(b"partial"))
    packet = conn.send(Response(ResponseCode.INTERNAL_SERVER_ERROR))
    assert parse_response(packet).code == ResponseCode.INTERNAL_SERVER_ERROR
    assert conn.phase is Phase.IDLE and conn.operation is None


def test_a_refused_request_is_answered_with_an_error_code_only() -> None:
    conn = connected()
    conn.receive_data(bytes.fromhex("860003"))
    refusal = conn.next_event()
    assert refusal.response is ResponseCode.NOT_IMPLEMENTED  # type: ignore[union-attr]
    with pytest.raises(LocalProtocolError, match="a success code does not answer a refused"):
        conn.send(Response(ResponseCode.SUCCESS))
    with pytest.raises(LocalProtocolError, match="Continue does not answer a refused"):
        conn.send(Response(ResponseCode.CONTINUE))
    assert parse_response(conn.send(Response(ResponseCode.NOT_IMPLEMENTED))).code == 0xD1
