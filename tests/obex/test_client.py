"""The client role: lockstep, what CONNECT settles, strict about the server."""

from __future__ import annotations

import pytest

from obex_backup_server.core.client import ClientConnection
from obex_backup_server.core.codes import FOLDER_BROWSING_UUID, HeaderId, Opcode, ResponseCode
from obex_backup_server.core.connection import NEED_DATA
from obex_backup_server.core.errors import LocalProtocolError, RemoteProtocolError
from obex_backup_server.core.headers import Header
from obex_backup_server.core.packets import (
    ConnectFields,
    ResponsePacket,
    build_response,
    parse_request,
)

WELCOME = build_response(
    ResponseCode.SUCCESS,
    [Header(HeaderId.CONNECTION_ID, 5), Header(HeaderId.WHO, FOLDER_BROWSING_UUID)],
    connect=ConnectFields(0x10, 0, 2000),
)


def connected(max_packet_length: int = 4096) -> ClientConnection:
    client = ClientConnection(max_packet_length=max_packet_length)
    client.request(Opcode.CONNECT, [Header(HeaderId.TARGET, FOLDER_BROWSING_UUID)])
    client.receive_data(WELCOME)
    assert isinstance(client.next_response(), ResponsePacket)
    return client


def test_connect_announces_the_clients_length_and_keeps_what_the_server_settles() -> None:
    client = ClientConnection(max_packet_length=4096)
    packet = client.request(Opcode.CONNECT, [Header(HeaderId.TARGET, FOLDER_BROWSING_UUID)])
    assert parse_request(packet).connect == ConnectFields(0x10, 0, 4096)
    client.receive_data(WELCOME[:5])
    assert client.next_response() is NEED_DATA
    client.receive_data(WELCOME[5:])
    response = client.next_response()
    assert isinstance(response, ResponsePacket) and response.connect is not None
    assert (client.connected, client.packet_length, client.connection_id) == (True, 2000, 5)


def test_every_later_request_quotes_the_connection_id_first() -> None:
    client = connected()
    request = parse_request(client.request(Opcode.GET_FINAL, [Header(HeaderId.NAME, "a")]))
    assert request.headers[0] == Header(HeaderId.CONNECTION_ID, 5)


def test_a_second_request_before_the_answer_is_our_own_error() -> None:
    client = connected()
    client.request(Opcode.GET_FINAL)
    with pytest.raises(LocalProtocolError, match="0x83 still awaits its response"):
        client.request(Opcode.ABORT)


def test_a_request_longer_than_the_negotiated_length_is_our_own_error() -> None:
    client = connected()
    with pytest.raises(LocalProtocolError, match="longer than the 2000 negotiated"):
        client.request(Opcode.PUT, [Header(HeaderId.BODY, bytes(2000))])
    assert client.body_room() == 2000 - 3 - 5 - 3


def test_bytes_nobody_asked_for_are_the_servers_error() -> None:
    client = connected()
    with pytest.raises(RemoteProtocolError, match="no request awaiting an answer"):
        client.receive_data(build_response(ResponseCode.SUCCESS))


def test_bytes_after_the_one_response_are_the_servers_error() -> None:
    client = connected()
    client.request(Opcode.ABORT)
    client.receive_data(build_response(ResponseCode.SUCCESS) * 2)
    with pytest.raises(RemoteProtocolError, match="3 bytes after its one response"):
        client.next_response()


def test_a_response_longer_than_the_client_announced_is_the_servers_error() -> None:
    client = connected(max_packet_length=300)
    client.request(Opcode.GET_FINAL)
    client.receive_data(b"\xa0\x01\x2d")
    with pytest.raises(RemoteProtocolError, match=r"response length 301 is outside 3\.\.300"):
        client.next_response()


def test_disconnect_forgets_the_session() -> None:
    client = connected()
    client.request(Opcode.DISCONNECT)
    client.receive_data(build_response(ResponseCode.SUCCESS))
    client.next_response()
    assert (client.connected, client.connection_id, client.packet_length) == (False, None, 255)
