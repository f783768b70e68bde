"""Random and corrupted OBEX packets thrown at the server's core.

Each input is a session: maybe a proper CONNECT, then a dozen packets, each
either built right from random parts (any opcode, any headers, any fixed
fields) or built right and then corrupted (a byte flipped, cut short, its
length field rewritten, bytes appended or replaced), fed in reads cut at
random, now and then several at once.  The server on top is the specs'
:class:`~.peer.MemoryServer`, which asserts that the events it gets make
sense (a body chunk only inside a PUT, byte counts that add up).

What must hold whatever arrives:

- nothing is raised but the core's own RemoteProtocolError, and that only
  for a client that sent more than one packet beyond the one being answered;
- every packet the server writes is a well-formed response (a known code
  with the final bit, a true length field, headers that parse, a CONNECT's
  fixed fields) within the negotiated packet length;
- exactly one response per request packet: lockstep holds;
- the core never holds more than one packet of unparsed input.

The client role gets the same treatment with replies of a broken server: it
raises nothing but its own protocol errors.

The normal run is a short fixed-seed one; ``FUZZ_EXAMPLES`` (``make fuzz``
sets it for tests/fuzz) asks for a bigger, fresh budget.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from obex_backup_server.core.client import ClientConnection
from obex_backup_server.core.codes import (
    FOLDER_BROWSING_UUID,
    HeaderId,
    Opcode,
    ResponseCode,
)
from obex_backup_server.core.connection import NEED_DATA, Phase, ServerConnection
from obex_backup_server.core.errors import ProtocolError, RemoteProtocolError
from obex_backup_server.core.events import (
    Abort,
    BodyWanted,
    Connect,
    ConnectionClosed,
    ContinueDue,
    Disconnect,
    GetRequest,
    PutEnd,
    RequestError,
    SetPath,
)
from obex_backup_server.core.headers import Header
from obex_backup_server.core.packets import (
    ConnectFields,
    ResponsePacket,
    SetPathFields,
    build_request,
    build_response,
    parse_response,
)
from tests.fuzz.budget import budget, counted

from .peer import MemoryServer, split_packets

ANSWER_DUE = (
    Connect,
    Disconnect,
    SetPath,
    Abort,
    RequestError,
    ContinueDue,
    PutEnd,
    GetRequest,
    BodyWanted,
)
"""The events that each close one request packet: exactly one response each."""

RESPONSE_CODES = frozenset(int(code) for code in ResponseCode)

names = st.one_of(
    st.sampled_from(["", "a", "a", "dir", "b", "..", ".", "a/b", "x" * 300]),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=12),
)
headers = st.one_of(
    st.builds(Header, st.just(HeaderId.NAME), names),
    st.builds(
        Header,
        st.just(HeaderId.TYPE),
        st.sampled_from(
            [b"x-obex/folder-listing\0", b"x-obex/capability\0", b"text/plain", b"\xff\0"]
        ),
    ),
    st.builds(Header, st.just(HeaderId.LENGTH), st.integers(0, 0xFFFFFFFF)),
    st.builds(
        Header, st.sampled_from([HeaderId.BODY, HeaderId.END_OF_BODY]), st.binary(max_size=700)
    ),
    st.builds(
        Header, st.just(HeaderId.CONNECTION_ID), st.sampled_from([1, 1, 1, 0, 2, 0xFFFFFFFF])
    ),
    st.builds(
        Header, st.just(HeaderId.TARGET), st.sampled_from([FOLDER_BROWSING_UUID, bytes(16), b""])
    ),
    st.builds(Header, st.just(HeaderId.APP_PARAMETERS), st.binary(max_size=20)),
    st.builds(Header, st.just(HeaderId.SINGLE_RESPONSE_MODE), st.integers(0, 255)),
)
opcodes = st.integers(0, 9).flatmap(
    lambda n: (
        st.integers(0, 255)
        if n == 0
        else st.sampled_from(
            [Opcode.PUT] * 3
            + [Opcode.PUT_FINAL] * 2
            + [Opcode.GET]
            + [Opcode.GET_FINAL] * 4
            + [Opcode.SETPATH] * 2
            + [Opcode.ABORT, Opcode.DISCONNECT, Opcode.CONNECT, Opcode.ACTION]
        )
    )
)
packet_lengths = st.sampled_from([0, 254, 255, 256, 600, 4096, 0xFFFF])


@st.composite
def packets(draw: st.DrawFn) -> bytes:
    """One request packet: built right, then maybe corrupted."""
    opcode = draw(opcodes)
    quoted = [Header(HeaderId.CONNECTION_ID, 1)] if draw(st.integers(0, 4)) else []
    raw = build_request(
        opcode,
        quoted + draw(st.lists(headers, max_size=4)),
        connect=ConnectFields(draw(st.sampled_from([0x10, 0x13, 0])), 0, draw(packet_lengths)),
        setpath=SetPathFields(draw(st.integers(0, 3)), draw(st.integers(0, 255))),
    )
    how = draw(st.sampled_from(["valid"] * 10 + ["flip", "cut", "length", "append", "replace"]))
    if how == "valid":
        return raw
    at = draw(st.integers(0, len(raw) - 1))
    if how == "flip":
        return raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
    if how == "cut":
        return raw[:at]
    if how == "length":
        return raw[:1] + draw(st.integers(0, 0xFFFF)).to_bytes(2, "big") + raw[3:]
    extra = draw(st.binary(min_size=1, max_size=40))
    if how == "append":
        return raw + extra
    return raw[:at] + extra + raw[at + len(extra) :]


ID = Header(HeaderId.CONNECTION_ID, 1)


@st.composite
def operations(draw: st.DrawFn) -> list[bytes]:
    """A whole PUT or GET as a client sends it, with its continuation packets."""
    more = draw(st.integers(0, 6))
    name = Header(HeaderId.NAME, draw(names))
    if draw(st.booleans()):
        body = st.binary(max_size=300).map(lambda b: Header(HeaderId.BODY, b))
        first = build_request(Opcode.PUT, [ID, name, draw(body)])
        middle = [build_request(Opcode.PUT, [draw(body)]) for _ in range(more)]
        if draw(st.integers(0, 3)) == 0:  # a delete, or an empty file
            first = build_request(Opcode.PUT, [ID, name])
            middle = []
        ends = draw(st.sampled_from([[], [b""], [b"tail"]]))
        end = [Header(HeaderId.END_OF_BODY, data) for data in ends]
        return [first, *middle, build_request(Opcode.PUT_FINAL, end)]
    first = build_request(Opcode.GET_FINAL, [ID, name])
    return [first, *(build_request(Opcode.GET_FINAL) for _ in range(more))]


@st.composite
def sessions(draw: st.DrawFn) -> tuple[int, list[bytes]]:
    """The server's packet length and the reads of one session."""
    server_max = draw(st.sampled_from([255, 600, 0xFFFF]))
    stream: list[bytes] = []
    if draw(st.integers(0, 9)):
        stream.append(
            build_request(
                Opcode.CONNECT,
                [Header(HeaderId.TARGET, FOLDER_BROWSING_UUID)],
                connect=ConnectFields(0x10, 0, draw(packet_lengths.filter(lambda n: n >= 255))),
            )
        )
    for part in draw(st.lists(st.one_of(packets().map(lambda p: [p]), operations()), max_size=8)):
        stream += part
    reads: list[bytes] = []
    i = 0
    while i < len(stream):
        how = draw(st.sampled_from(["whole", "whole", "split", "burst"]))
        if how == "burst":
            n = draw(st.integers(2, 6))
            reads.append(b"".join(stream[i : i + n]))
            i += n
            continue
        packet = stream[i]
        i += 1
        if how == "split" and len(packet) > 1:
            at = draw(st.integers(1, len(packet) - 1))
            reads += [packet[:at], packet[at:]]
        else:
            reads.append(packet)
    return server_max, [r for r in reads if r]


def check_answer(packet: bytes, *, to_connect: bool, limit: int, server_max: int) -> None:
    assert packet[0] in RESPONSE_CODES, f"unknown response code 0x{packet[0]:02X}"
    response = parse_response(packet, to_connect=to_connect)  # raises if malformed
    if to_connect:
        assert response.connect is not None
        assert len(packet) <= server_max
    else:
        assert len(packet) <= limit, f"{len(packet)}-byte response, {limit} negotiated"


@given(sessions())
@budget(200)
@counted("obex server core: packets")
def test_the_core_answers_anything_with_well_formed_packets_in_lockstep(
    session: tuple[int, list[bytes]],
) -> None:
    server_max, reads = session
    server = MemoryServer(ServerConnection(max_packet_length=server_max), chunk=97)
    server.root.update({"a": bytes(range(256)) * 12, "dir": {"b": b"x"}})
    conn = server.connection
    written = bytearray()
    for data in reads:
        try:
            written += server.feed(data)
        except RemoteProtocolError as error:
            # Only a client that did not wait: more than one packet past the answered one.
            assert "does not wait for responses" in error.message
            assert len(data) > conn.receive_limit
            assert conn.phase is Phase.CLOSED
            break
        assert conn.buffered <= conn.receive_limit
    else:
        server.feed(b"")
        assert isinstance(server.events[-1], ConnectionClosed)
    # Lockstep: one response per request packet, and the wire is nothing but those.
    due = [e for e in server.events if isinstance(e, ANSWER_DUE)]
    assert len(server.answers) == len(due)
    assert split_packets(bytes(written)) == [a.packet for a in server.answers]
    for answer in server.answers:
        check_answer(
            answer.packet,
            to_connect=answer.to_connect,
            limit=answer.packet_length,
            server_max=server_max,
        )


@st.composite
def server_replies(draw: st.DrawFn) -> tuple[int, bytes]:
    """A request opcode and what a (maybe broken) server sends back."""
    opcode = draw(st.sampled_from([Opcode.CONNECT, Opcode.GET_FINAL, Opcode.PUT, Opcode.ABORT]))
    code = draw(st.one_of(st.sampled_from(sorted(RESPONSE_CODES)), st.integers(0, 255)))
    fields = ConnectFields(0x10, 0, draw(packet_lengths)) if opcode == Opcode.CONNECT else None
    reply = build_response(code, draw(st.lists(headers, max_size=3)), connect=fields)
    how = draw(st.sampled_from(["valid"] * 3 + ["flip", "cut", "length", "append"]))
    at = draw(st.integers(0, len(reply) - 1))
    if how == "flip":
        reply = reply[:at] + bytes([reply[at] ^ 0x5A]) + reply[at + 1 :]
    elif how == "cut":
        reply = reply[:at]
    elif how == "length":
        reply = reply[:1] + draw(st.integers(0, 0xFFFF)).to_bytes(2, "big") + reply[3:]
    elif how == "append":
        reply += draw(st.binary(min_size=1, max_size=20))
    return opcode, reply


@given(server_replies())
@budget(200)
@counted("obex client core: responses")
def test_the_client_role_takes_any_reply_without_a_stray_exception(
    case: tuple[int, bytes],
) -> None:
    opcode, reply = case
    client = ClientConnection(max_packet_length=4096)
    client.request(opcode)
    try:
        client.receive_data(reply)
        response = client.next_response()
    except ProtocolError:
        return
    if response is NEED_DATA:
        assert client.waiting == opcode
        return
    assert isinstance(response, ResponsePacket)
    assert client.waiting is None
    if client.connected:
        assert 255 <= client.packet_length <= 4096
