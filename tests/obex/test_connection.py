"""The server's state machine, as a lockstep client sees it on the wire."""

from __future__ import annotations

import pytest

from obex_backup_server.core.codes import (
    FOLDER_BROWSING_UUID,
    HeaderId,
    Opcode,
    ResponseCode,
)
from obex_backup_server.core.connection import Phase, ServerConnection
from obex_backup_server.core.events import (
    Abort,
    BodyChunk,
    Connect,
    ContinueDue,
    Disconnect,
    GetRequest,
    Operation,
    PutEnd,
    PutOutcome,
    PutStart,
    RequestError,
    SetPath,
)
from obex_backup_server.core.headers import Header, find
from obex_backup_server.core.packets import ConnectFields, build_request, parse_response

from .peer import Client, MemoryServer, connected_pair, split_packets

LISTING = Header(HeaderId.TYPE, b"x-obex/folder-listing\0")


def name(value: str) -> Header:
    return Header(HeaderId.NAME, value)


def errors(server: MemoryServer) -> list[RequestError]:
    return [e for e in server.events if isinstance(e, RequestError)]


# -- CONNECT ----------------------------------------------------------------------


def test_connect_settles_on_the_smaller_packet_length_and_names_the_service() -> None:
    server = MemoryServer(ServerConnection(max_packet_length=4096, connection_id=0x1234))
    client = Client(server, max_packet_length=1000)
    response = client.connect()
    assert response.code == ResponseCode.SUCCESS
    assert response.connect == ConnectFields(0x10, 0, 1000)
    assert find(response.headers, HeaderId.WHO) == Header(HeaderId.WHO, FOLDER_BROWSING_UUID)
    assert find(response.headers, HeaderId.CONNECTION_ID) == Header(HeaderId.CONNECTION_ID, 0x1234)
    assert server.connection.packet_length == 1000
    assert server.events == [
        Connect(
            0x10, 0, 1000, FOLDER_BROWSING_UUID, (Header(HeaderId.TARGET, FOLDER_BROWSING_UUID),)
        )
    ]

    server = MemoryServer(ServerConnection(max_packet_length=600))
    client = Client(server, max_packet_length=0xFFFF)
    assert client.connect().connect == ConnectFields(0x10, 0, 600)


def test_a_client_announcing_less_than_255_bytes_is_refused() -> None:
    client = Client(MemoryServer())
    request = build_request(Opcode.CONNECT, connect=ConnectFields(0x10, 0, 254))
    response = client.exchange(request, to_connect=True)
    assert response.code == ResponseCode.BAD_REQUEST
    assert response.connect is not None  # a CONNECT's answer keeps its fixed fields
    assert "max packet length 254 is below OBEX's minimum 255" in errors(client.server)[0].reason
    assert not client.server.connection.connected


def test_a_server_cannot_be_made_with_less_than_255_bytes() -> None:
    with pytest.raises(ValueError, match="255"):
        ServerConnection(max_packet_length=254)


def test_another_target_is_service_unavailable_and_stays_unconnected() -> None:
    client = Client(MemoryServer())
    response = client.connect(target=bytes(16))
    assert response.code == ResponseCode.SERVICE_UNAVAILABLE
    assert find(response.headers, HeaderId.WHO) is None
    assert not client.server.connection.connected
    put = client.put("a", b"x")
    assert [r.code for r in put] == [ResponseCode.SERVICE_UNAVAILABLE]
    assert "before CONNECT" in errors(client.server)[-1].reason


def test_without_a_target_the_default_service_needs_no_connection_id() -> None:
    client = Client(MemoryServer())
    response = client.connect(target=None)
    assert response.code == ResponseCode.SUCCESS
    assert find(response.headers, HeaderId.WHO) is None
    assert find(response.headers, HeaderId.CONNECTION_ID) is None
    assert client.connection_id is None
    assert [r.code for r in client.put("a", b"x")][-1] == ResponseCode.SUCCESS


# -- Connection-Id -----------------------------------------------------------------


def test_a_folder_browsing_request_without_its_connection_id_is_a_bad_request() -> None:
    client, server = connected_pair()
    response = client.request(Opcode.GET_FINAL, [LISTING], quote_id=False)
    assert response.code == ResponseCode.BAD_REQUEST
    assert errors(server)[-1].reason == "GET carries no Connection-Id"


def test_a_wrong_connection_id_is_service_unavailable() -> None:
    client, server = connected_pair()
    client.conn.connection_id = 99
    assert client.setpath("x").code == ResponseCode.SERVICE_UNAVAILABLE
    assert "quotes Connection-Id 99, not this connection's 1" in errors(server)[-1].reason


# -- PUT ----------------------------------------------------------------------------


def test_a_multi_packet_put_is_answered_continue_then_success_and_streams_its_body() -> None:
    client, server = connected_pair(server_max=1024)
    data = bytes(range(256)) * 40
    responses = client.put("backup.mbak", data, chunk=1000)
    codes = [r.code for r in responses]
    assert codes == [ResponseCode.CONTINUE] * 11 + [ResponseCode.SUCCESS]
    assert server.root == {"backup.mbak": data}
    start = server.events[1]
    assert isinstance(start, PutStart)
    assert (start.name, start.type, start.length) == ("backup.mbak", None, len(data))
    chunks = [e for e in server.events if isinstance(e, BodyChunk)]
    assert [len(c.data) for c in chunks] == [1000] * 10 + [240]
    assert sum(isinstance(e, ContinueDue) for e in server.events) == 11
    assert server.events[-1] == PutEnd(PutOutcome.WRITE, len(data))


def test_put_surfaces_type_and_length() -> None:
    client, server = connected_pair()
    client.put("x.vcf", b"BEGIN", headers=[Header(HeaderId.TYPE, b"text/x-vcard\0")])
    start = next(e for e in server.events if isinstance(e, PutStart))
    assert (start.name, start.type, start.length) == ("x.vcf", "text/x-vcard", 5)


def test_a_put_without_any_body_deletes() -> None:
    client, server = connected_pair()
    server.root["old"] = b"gone soon"
    response = client.request(Opcode.PUT_FINAL, [name("old")])
    assert response.code == ResponseCode.SUCCESS
    assert server.events[-1] == PutEnd(PutOutcome.DELETE, 0)
    assert server.root == {}


def test_a_put_with_an_empty_end_of_body_creates_an_empty_file() -> None:
    client, server = connected_pair()
    response = client.request(Opcode.PUT_FINAL, [name("empty"), Header(HeaderId.END_OF_BODY, b"")])
    assert response.code == ResponseCode.SUCCESS
    assert server.events[-1] == PutEnd(PutOutcome.CREATE_EMPTY, 0)
    assert server.root == {"empty": b""}


def test_a_packet_of_another_operation_mid_put_is_refused_and_ends_the_put() -> None:
    client, server = connected_pair()
    assert client.request(Opcode.PUT, [name("a"), Header(HeaderId.BODY, b"12")]).code == (
        ResponseCode.CONTINUE
    )
    assert client.request(Opcode.GET_FINAL, [LISTING]).code == ResponseCode.BAD_REQUEST
    assert errors(server)[-1] == RequestError(
        "GET while a PUT is in progress", ResponseCode.BAD_REQUEST, Operation.PUT, Opcode.GET_FINAL
    )
    # The next PUT starts afresh.
    assert [r.code for r in client.put("b", b"x")][-1] == ResponseCode.SUCCESS
    assert server.root == {"b": b"x"}


# -- GET ----------------------------------------------------------------------------


def test_a_get_response_is_cut_into_packets_of_the_negotiated_length() -> None:
    client, server = connected_pair(server_max=300, chunk=70)
    data = bytes(range(251)) * 20
    server.root["big"] = data
    body, responses = client.get([name("big")])
    assert body == data
    assert [r.code for r in responses[:-1]] == [ResponseCode.CONTINUE] * (len(responses) - 1)
    assert responses[-1].code == ResponseCode.SUCCESS
    assert find(responses[0].headers, HeaderId.LENGTH) == Header(HeaderId.LENGTH, len(data))
    # Every packet on the wire is within 300 bytes, and all but the last are full.
    sent = split_packets(b"".join(_wire(server, client)))
    assert max(len(p) for p in sent) == 300


def _wire(server: MemoryServer, client: Client) -> list[bytes]:
    """The response packets of one more GET of "big", as bytes."""
    out = [
        server.feed(
            build_request(Opcode.GET_FINAL, [Header(HeaderId.CONNECTION_ID, 1), name("big")])
        )
    ]
    while parse_response(out[-1]).code == ResponseCode.CONTINUE:
        out.append(server.feed(build_request(Opcode.GET_FINAL)))
    return out


def test_a_get_request_may_span_packets_until_the_final_one() -> None:
    client, server = connected_pair()
    server.root["f"] = b"content"
    first = client.request(Opcode.GET, [Header(HeaderId.APP_PARAMETERS, b"\x01\x00")])
    assert first.code == ResponseCode.CONTINUE
    assert server.events[-1] == ContinueDue(Operation.GET)
    body, responses = client.get([name("f")])
    request = next(e for e in server.events if isinstance(e, GetRequest))
    assert request.name == "f"
    assert find(request.headers, HeaderId.APP_PARAMETERS) is not None
    assert (body, [r.code for r in responses]) == (b"content", [ResponseCode.SUCCESS])


def test_a_folder_listing_is_an_ordinary_get() -> None:
    client, server = connected_pair()
    server.root.update({"a.txt": b"abc", "DCIM": {}})
    body, _ = client.get([LISTING])
    assert b'<file name="a.txt" size="3"/>' in body and b'<folder name="DCIM"/>' in body
    assert b"parent-folder" not in body


def test_a_missing_object_is_not_found_and_the_next_get_works() -> None:
    client, server = connected_pair()
    assert client.get([name("nope")])[1][0].code == ResponseCode.NOT_FOUND
    server.root["yes"] = b"1"
    assert client.get([name("yes")])[0] == b"1"


# -- SETPATH ------------------------------------------------------------------------


def test_setpath_goes_down_creating_up_and_to_the_root() -> None:
    client, server = connected_pair()
    assert client.setpath("a").code == ResponseCode.SUCCESS
    assert client.setpath("b").code == ResponseCode.SUCCESS
    assert server.path == ["a", "b"] and server.root == {"a": {"b": {}}}
    assert client.setpath(up=True).code == ResponseCode.SUCCESS
    assert server.path == ["a"]
    assert client.setpath("").code == ResponseCode.SUCCESS
    assert server.path == []
    client.setpath("a")
    assert client.setpath(None).code == ResponseCode.SUCCESS
    assert server.path == []
    setpaths = [e for e in server.events if isinstance(e, SetPath)]
    assert [(e.name, e.up, e.create, e.to_root) for e in setpaths] == [
        ("a", False, True, False),
        ("b", False, True, False),
        (None, True, True, False),
        ("", False, True, True),
        ("a", False, True, False),
        (None, False, True, True),
    ]


def test_setpath_up_with_a_name_goes_to_a_sibling_and_dont_create_is_honoured() -> None:
    client, server = connected_pair()
    client.setpath("a")
    assert client.setpath("b", up=True).code == ResponseCode.SUCCESS
    assert server.path == ["b"]
    assert client.setpath("missing", create=False).code == ResponseCode.NOT_FOUND
    assert server.path == ["b"]


# -- ABORT, DISCONNECT --------------------------------------------------------------


def test_abort_mid_put_answers_success_and_drops_the_put() -> None:
    client, server = connected_pair()
    client.request(Opcode.PUT, [name("half"), Header(HeaderId.BODY, b"123")])
    assert client.request(Opcode.ABORT).code == ResponseCode.SUCCESS
    assert server.events[-1] == Abort(Operation.PUT)
    assert server.connection.phase is Phase.IDLE and server.root == {}
    assert [r.code for r in client.put("whole", b"x")][-1] == ResponseCode.SUCCESS


def test_abort_mid_get_answers_success_and_drops_the_get() -> None:
    client, server = connected_pair(server_max=255)
    server.root["big"] = bytes(2000)
    assert client.request(Opcode.GET_FINAL, [name("big")]).code == ResponseCode.CONTINUE
    assert client.request(Opcode.ABORT).code == ResponseCode.SUCCESS
    assert server.events[-1] == Abort(Operation.GET)
    assert client.get([name("big")])[0] == bytes(2000)


def test_disconnect_ends_the_session_and_a_new_connect_starts_one() -> None:
    client, server = connected_pair()
    assert client.request(Opcode.DISCONNECT).code == ResponseCode.SUCCESS
    assert isinstance(server.events[-1], Disconnect)
    assert not server.connection.connected
    assert client.setpath("a").code == ResponseCode.SERVICE_UNAVAILABLE
    assert client.connect().code == ResponseCode.SUCCESS
    assert client.setpath("a").code == ResponseCode.SUCCESS


# -- bad packets --------------------------------------------------------------------


def test_a_packet_over_the_negotiated_length_is_too_large_and_skipped_whole() -> None:
    client, server = connected_pair(server_max=512)
    big = build_request(
        Opcode.PUT_FINAL,
        [Header(HeaderId.CONNECTION_ID, 1), name("x"), Header(HeaderId.END_OF_BODY, bytes(600))],
    )
    assert client.exchange(big).code == ResponseCode.REQUEST_ENTITY_TOO_LARGE
    assert "packet of" in errors(server)[-1].reason and "longer than the 512" in (
        errors(server)[-1].reason
    )
    assert server.connection.buffered == 0
    assert client.setpath("still-in-step").code == ResponseCode.SUCCESS


@pytest.mark.parametrize(
    "packet, code, reason",
    [
        (bytes.fromhex("860003"), ResponseCode.NOT_IMPLEMENTED, "0x86 is not implemented"),
        (bytes.fromhex("100003"), ResponseCode.NOT_IMPLEMENTED, "0x10 is not implemented"),
        (bytes.fromhex("050005 0000"), ResponseCode.BAD_REQUEST, "0x05 lacks the final bit"),
        (bytes.fromhex("820001"), ResponseCode.BAD_REQUEST, "length 1 is shorter than"),
        (
            bytes.fromhex("82000A CB00000001 0100"),
            ResponseCode.BAD_REQUEST,
            "NAME is cut off inside its length",
        ),
    ],
)
def test_garbage_gets_a_clear_answer(packet: bytes, code: ResponseCode, reason: str) -> None:
    client, server = connected_pair()
    assert client.exchange(packet).code == code
    assert reason in errors(server)[-1].reason
    assert client.setpath("after").code == ResponseCode.SUCCESS
