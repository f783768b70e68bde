"""The sans-I/O connection: host bytes in, protocol events out.

Bytes are fed the way a USB controller delivers them: in arbitrary pieces,
with "a short packet ended the transfer" marking where transfers end.
"""

from __future__ import annotations

import struct

import pytest

from mtp_responder.core.codes import ContainerType, OperationCode, ResponseCode
from mtp_responder.core.container import build_params_container, data_header
from mtp_responder.core.protocol import (
    NEED_DATA,
    BadContainer,
    Command,
    Connection,
    DataChunk,
    DataEnd,
    DataStart,
    Event,
    Response,
    Role,
)

SEND = OperationCode.SEND_OBJECT


def command(code: int = OperationCode.GET_OBJECT, tid: int = 1, *params: int) -> bytes:
    return build_params_container(ContainerType.COMMAND, code, tid, params)


def events(conn: Connection) -> list[Event]:
    out: list[Event] = []
    while (event := conn.next_event()) is not NEED_DATA:
        assert isinstance(event, Event)
        out.append(event)
    return out


def payload_of(evs: list[Event]) -> bytes:
    return b"".join(e.data for e in evs if isinstance(e, DataChunk))


def feed(conn: Connection, *pieces: tuple[bytes, bool]) -> list[Event]:
    for data, end in pieces:
        conn.receive_data(data, end)
    return events(conn)


# -- commands -------------------------------------------------------------------


def test_a_command_in_one_transfer_becomes_one_command_event() -> None:
    evs = feed(Connection(), (command(0x1009, 7, 42), True))
    assert evs == [Command(0x1009, 7, (42,))]


def test_a_command_with_five_parameters_keeps_them_all() -> None:
    evs = feed(Connection(), (command(0x9805, 3, 1, 2, 3, 4, 5), True))
    assert evs == [Command(0x9805, 3, (1, 2, 3, 4, 5))]


@pytest.mark.parametrize("split", [1, 4, 11, 12, 13, 15])
def test_a_command_split_anywhere_is_reassembled(split: int) -> None:
    raw = command(0x1008, 9, 5)
    evs = feed(Connection(), (raw[:split], False), (raw[split:], True))
    assert evs == [Command(0x1008, 9, (5,))]


def test_a_command_split_byte_by_byte_is_reassembled() -> None:
    raw = command(0x1007, 2, 1, 2, 3)
    conn = Connection()
    for i, byte in enumerate(raw):
        conn.receive_data(bytes([byte]), i == len(raw) - 1)
    assert events(conn) == [Command(0x1007, 2, (1, 2, 3))]


def test_nothing_is_reported_before_a_whole_header_arrived() -> None:
    conn = Connection()
    conn.receive_data(command()[:6], False)
    assert conn.next_event() is NEED_DATA


def test_a_command_truncated_inside_its_header_is_bad_without_a_transaction() -> None:
    evs = feed(Connection(), (command()[:7], True))
    assert len(evs) == 1
    assert isinstance(evs[0], BadContainer)
    assert evs[0].transaction_id is None


def test_a_command_truncated_inside_its_parameters_is_answered_invalid_parameter() -> None:
    raw = command(0x1009, 5, 1, 2)
    evs = feed(Connection(), (raw[:-3], True))
    assert len(evs) == 1
    bad = evs[0]
    assert isinstance(bad, BadContainer)
    assert (bad.code, bad.transaction_id, bad.response) == (
        0x1009,
        5,
        ResponseCode.INVALID_PARAMETER,
    )


def test_more_than_five_parameters_is_a_bad_container() -> None:
    raw = struct.pack("<IHHI6I", 36, ContainerType.COMMAND, 0x1001, 4, *range(6))
    evs = feed(Connection(), (raw, True))
    assert [type(e) for e in evs] == [BadContainer]
    assert isinstance(evs[0], BadContainer)
    assert evs[0].transaction_id == 4


@pytest.mark.parametrize("length", [0, 8, 11, 14, 33, 0xFFFFFFFF])
def test_a_command_length_that_lies_is_a_bad_container(length: int) -> None:
    raw = struct.pack("<IHHI", length, ContainerType.COMMAND, 0x1002, 1) + b"\0" * 8
    evs = feed(Connection(), (raw, True))
    assert [type(e) for e in evs] == [BadContainer]


def test_a_command_longer_than_its_transfer_claims_is_a_bad_container() -> None:
    raw = command(0x1009, 1, 5) + b"\x01\x02\x03\x04"
    evs = feed(Connection(), (raw, True))
    assert [type(e) for e in evs] == [BadContainer]
    assert isinstance(evs[0], BadContainer)
    assert evs[0].transaction_id == 1


@pytest.mark.parametrize("ctype", [0, 3, 4, 5, 0xFFFF])
def test_unknown_container_types_from_the_host_are_bad_containers(ctype: int) -> None:
    raw = struct.pack("<IHHI", 12, ctype, 0x1001, 1)
    evs = feed(Connection(), (raw, True))
    assert [type(e) for e in evs] == [BadContainer]


def test_after_a_bad_container_the_next_command_is_understood() -> None:
    conn = Connection()
    feed(conn, (struct.pack("<IHHI", 12, 9, 0x1001, 1), True))
    assert feed(conn, (command(0x1001, 2), True)) == [Command(0x1001, 2, ())]


def test_a_bad_container_spanning_transfers_is_dropped_until_its_end() -> None:
    conn = Connection()
    first = struct.pack("<IHHI", 1024, 7, 0x1001, 1) + b"x" * 500
    evs = feed(conn, (first, False), (b"y" * 512, False), (b"z" * 12, True))
    assert [type(e) for e in evs] == [BadContainer]
    assert feed(conn, (command(0x1001, 2), True)) == [Command(0x1001, 2, ())]


def test_a_zero_length_packet_between_commands_is_ignored() -> None:
    conn = Connection()
    evs = feed(conn, (b"", True), (command(0x1001, 1), True))
    assert evs == [Command(0x1001, 1, ())]


# -- data phases ---------------------------------------------------------------


def test_a_data_header_alone_then_its_payload_is_one_data_phase() -> None:
    payload = b"abcdefgh" * 10
    evs = feed(Connection(), (data_header(SEND, 3, len(payload)), False), (payload, True))
    assert evs[0] == DataStart(SEND, 3, len(payload))
    assert payload_of(evs) == payload
    assert evs[-1] == DataEnd(True)


def test_a_data_header_with_its_payload_in_one_chunk_is_one_data_phase() -> None:
    payload = b"hello"
    evs = feed(Connection(), (data_header(SEND, 3, 5) + payload, True))
    assert evs == [DataStart(SEND, 3, 5), DataChunk(payload), DataEnd(True)]


def test_an_empty_data_phase_ends_at_once() -> None:
    evs = feed(Connection(), (data_header(SEND, 3, 0), True))
    assert evs == [DataStart(SEND, 3, 0), DataEnd(True)]


@pytest.mark.parametrize("split", [1, 5, 11, 12, 13, 500, 511, 512, 513, 1023])
def test_a_data_phase_of_known_length_split_anywhere_keeps_every_byte(split: int) -> None:
    payload = bytes(range(256)) * 4
    raw = data_header(SEND, 8, len(payload)) + payload
    evs = feed(Connection(), (raw[:split], False), (raw[split:], True))
    assert evs[0] == DataStart(SEND, 8, len(payload))
    assert payload_of(evs) == payload
    assert evs[-1] == DataEnd(True)
    assert sum(isinstance(e, DataEnd) for e in evs) == 1


def test_a_data_phase_of_known_length_ends_without_waiting_for_a_short_packet() -> None:
    payload = b"x" * 500
    evs = feed(Connection(), (data_header(SEND, 1, 500) + payload, False))
    assert evs[-1] == DataEnd(True)


def test_a_zero_length_packet_after_an_aligned_data_phase_is_not_a_new_container() -> None:
    payload = b"p" * (1024 - 12)
    conn = Connection()
    evs = feed(conn, (data_header(SEND, 1, len(payload)) + payload, False), (b"", True))
    assert evs[-1] == DataEnd(True)
    assert feed(conn, (command(0x1001, 2), True)) == [Command(0x1001, 2, ())]


def test_unknown_length_data_phase_runs_until_a_short_packet() -> None:
    conn = Connection()
    header = struct.pack("<IHHI", 0xFFFFFFFF, ContainerType.DATA, SEND, 5)
    evs = feed(
        conn,
        (header + b"a" * 500, False),
        (b"b" * 512, False),
        (b"c" * 100, True),
    )
    assert evs[0] == DataStart(SEND, 5, None)
    assert payload_of(evs) == b"a" * 500 + b"b" * 512 + b"c" * 100
    assert evs[-1] == DataEnd(True)


def test_unknown_length_data_phase_ended_by_a_zero_length_packet_is_complete() -> None:
    header = struct.pack("<IHHI", 0xFFFFFFFF, ContainerType.DATA, SEND, 5)
    evs = feed(Connection(), (header + b"a" * 500, False), (b"", True))
    assert payload_of(evs) == b"a" * 500
    assert evs[-1] == DataEnd(True)


def test_a_data_phase_cut_short_by_a_short_packet_is_incomplete() -> None:
    evs = feed(Connection(), (data_header(SEND, 1, 1000) + b"x" * 100, True))
    assert evs[-1] == DataEnd(False)
    assert payload_of(evs) == b"x" * 100


def test_bytes_beyond_the_announced_length_are_dropped() -> None:
    conn = Connection()
    evs = feed(conn, (data_header(SEND, 1, 4) + b"abcdEXTRA", True))
    assert payload_of(evs) == b"abcd"
    assert evs[-1] == DataEnd(True)
    assert feed(conn, (command(0x1001, 2), True)) == [Command(0x1001, 2, ())]


@pytest.mark.parametrize("length", [0, 4], ids=["zero-length", "four-bytes"])
def test_a_command_after_a_data_containers_announced_end_is_never_parsed(length: int) -> None:
    # Surplus bytes in the transfer are dropped whatever the announced length.
    conn = Connection()
    hidden = command(OperationCode.DELETE_OBJECT, 2, 7)
    evs = feed(conn, (data_header(SEND, 1, length) + b"p" * length + hidden, True))
    assert evs == [DataStart(SEND, 1, length), *([DataChunk(b"pppp")] if length else []), DataEnd()]
    assert feed(conn, (command(0x1001, 3), True)) == [Command(0x1001, 3, ())]


def test_surplus_after_a_zero_length_data_container_is_dropped_until_the_transfer_ends() -> None:
    conn = Connection()
    hidden = command(OperationCode.DELETE_OBJECT, 2, 7)
    evs = feed(conn, (data_header(SEND, 1, 0) + hidden[:4], False), (hidden[4:], True))
    assert evs == [DataStart(SEND, 1, 0), DataEnd()]
    assert feed(conn, (command(0x1001, 3), True)) == [Command(0x1001, 3, ())]


def test_a_data_container_shorter_than_its_header_is_an_invalid_dataset() -> None:
    raw = struct.pack("<IHHI", 8, ContainerType.DATA, SEND, 3)
    evs = feed(Connection(), (raw, True))
    assert len(evs) == 1
    bad = evs[0]
    assert isinstance(bad, BadContainer)
    assert bad.response == ResponseCode.INVALID_DATASET
    assert bad.transaction_id == 3


def test_a_command_then_its_data_phase_in_separate_transfers() -> None:
    conn = Connection()
    evs = feed(
        conn,
        (command(SEND, 4), True),
        (data_header(SEND, 4, 3) + b"xyz", True),
    )
    assert evs == [
        Command(SEND, 4, ()),
        DataStart(SEND, 4, 3),
        DataChunk(b"xyz"),
        DataEnd(True),
    ]


def test_data_chunks_are_streamed_not_assembled() -> None:
    conn = Connection()
    conn.receive_data(data_header(SEND, 1, 3 * 512), False)
    conn.receive_data(b"a" * 512, False)
    first = events(conn)
    assert DataChunk(b"a" * 512) in first
    assert not any(isinstance(e, DataEnd) for e in first)


def test_reset_forgets_a_half_received_container() -> None:
    conn = Connection()
    conn.receive_data(data_header(SEND, 1, 10_000) + b"x" * 100, False)
    events(conn)
    conn.reset()
    assert feed(conn, (command(0x1001, 2), True)) == [Command(0x1001, 2, ())]


def test_a_data_header_in_a_transfer_of_its_own_is_followed_by_its_payload() -> None:
    payload = b"q" * 700
    evs = feed(
        Connection(),
        (data_header(SEND, 3, len(payload)), True),
        (payload[:512], False),
        (payload[512:], True),
    )
    assert evs[0] == DataStart(SEND, 3, len(payload))
    assert payload_of(evs) == payload
    assert evs[-1] == DataEnd(True)


def test_an_unknown_length_header_in_a_transfer_of_its_own_waits_for_the_payload() -> None:
    header = struct.pack("<IHHI", 0xFFFFFFFF, ContainerType.DATA, SEND, 5)
    evs = feed(Connection(), (header, True), (b"d" * 512, False), (b"e", True))
    assert payload_of(evs) == b"d" * 512 + b"e"
    assert evs[-1] == DataEnd(True)


# -- a bare data header, then the next command (go-mtpfs) ------------------------------

INFO = OperationCode.SEND_OBJECT_INFO
BARE = (data_header(SEND, 3, 511), True)
"""SendObject's data header alone in its transfer, announcing 511 bytes."""


def test_a_bare_data_header_then_the_next_transactions_command_ends_the_data_phase() -> None:
    conn = Connection()
    evs = feed(conn, BARE, (command(INFO, 4, 0x10001, 0), True))
    assert evs == [DataStart(SEND, 3, 511), Command(INFO, 4, (0x10001, 0))]
    # Its data phase follows as usual.
    assert feed(conn, (data_header(INFO, 4, 2) + b"ok", True)) == [
        DataStart(INFO, 4, 2),
        DataChunk(b"ok"),
        DataEnd(True),
    ]


@pytest.mark.parametrize("nparams", [0, 5])
def test_the_next_command_after_a_bare_header_may_have_any_parameter_count(nparams: int) -> None:
    params = tuple(range(1, nparams + 1))
    evs = feed(Connection(), BARE, (command(INFO, 4, *params), True))
    assert evs[-1] == Command(INFO, 4, params)


def test_a_bare_data_header_of_unknown_length_is_abandoned_the_same_way() -> None:
    header = struct.pack("<IHHI", 0xFFFFFFFF, ContainerType.DATA, SEND, 3)
    evs = feed(Connection(), (header, True), (command(INFO, 4), True))
    assert evs == [DataStart(SEND, 3, None), Command(INFO, 4, ())]


def test_the_announced_length_does_not_make_the_next_command_payload() -> None:
    # go-mtpfs announces the file it failed to read, whatever its size.
    nxt = command(INFO, 4, 0x10001, 0)
    evs = feed(Connection(), (data_header(SEND, 3, len(nxt)), True), (nxt, True))
    assert evs == [DataStart(SEND, 3, len(nxt)), Command(INFO, 4, (0x10001, 0))]


def test_a_bare_header_followed_by_a_small_payload_in_the_next_transfer_is_payload() -> None:
    # Windows sends the header in a transfer of its own, then the payload.
    conn = Connection()
    evs = feed(conn, (data_header(SEND, 3, 5), True), (b"hello", True))
    assert evs == [DataStart(SEND, 3, 5), DataChunk(b"hello"), DataEnd(True)]


def stays_payload(*transfers: tuple[bytes, bool]) -> bool:
    """Whether every byte after the bare header is SendObject's payload."""
    evs = feed(Connection(), BARE, *transfers)
    sent = b"".join(data for data, _ in transfers)
    return not any(isinstance(e, Command) for e in evs) and payload_of(evs) == sent


@pytest.mark.parametrize("tid", [3, 2, 5, 0], ids=["own-id", "previous", "two-ahead", "zero"])
def test_a_payload_that_is_a_command_container_with_another_id_stays_payload(tid: int) -> None:
    assert stays_payload((command(INFO, tid, 0x10001, 0), True))


def test_a_command_container_with_another_id_of_the_announced_length_is_the_payload() -> None:
    payload = command(INFO, 7, 0x10001, 0)
    evs = feed(Connection(), (data_header(SEND, 3, len(payload)), True), (payload, True))
    assert evs == [DataStart(SEND, 3, len(payload)), DataChunk(payload), DataEnd(True)]


NEXT = command(INFO, 4, 0x10001, 0)


@pytest.mark.parametrize(
    "transfers",
    [
        [(NEXT + b"more", True)],
        [(NEXT, False), (b"", True)],
        [(NEXT[:8], False), (NEXT[8:], True)],
        [(struct.pack("<I", len(NEXT) + 4) + NEXT[4:], True)],
        [(struct.pack("<IHHI", 14, ContainerType.COMMAND, INFO, 4) + b"ab", True)],
        [(struct.pack("<IHHI6I", 36, ContainerType.COMMAND, INFO, 4, *range(6)), True)],
        [(build_params_container(ContainerType.RESPONSE, INFO, 4, (1,)), True)],
        [(data_header(INFO, 4, 0), True)],
        [(b"x" * 64, False), (NEXT, True)],
    ],
    ids=[
        "followed-by-more-bytes",
        "transfer-not-ended-with-it",
        "split-over-reads",
        "length-field-lies",
        "length-not-a-multiple-of-4",
        "six-parameters",
        "response-type",
        "data-type",
        "after-payload-bytes",
    ],
)
def test_a_payload_that_merely_starts_like_the_next_command_stays_payload(
    transfers: list[tuple[bytes, bool]],
) -> None:
    assert stays_payload(*transfers)


def test_a_zero_length_packet_after_a_bare_header_ends_the_data_phase_short() -> None:
    # go-mtpfs, failing to read its file: the header alone, a zero-length packet,
    # then it waits for the response.  What follows is the next command.
    evs = feed(Connection(), BARE, (b"", True), (NEXT, True))
    assert evs == [DataStart(SEND, 3, 511), DataEnd(False), Command(INFO, 4, (0x10001, 0))]


def test_a_zero_length_packet_after_a_bare_header_of_unknown_length_ends_it_empty() -> None:
    evs = feed(Connection(), (data_header(SEND, 3, 1 << 32), True), (b"", True))
    assert evs == [DataStart(SEND, 3, None), DataEnd(True)]


def test_a_command_after_a_header_with_payload_in_its_transfer_stays_payload() -> None:
    evs = feed(Connection(), (data_header(SEND, 3, 511) + b"ab", False), (NEXT, True))
    assert not any(isinstance(e, Command) for e in evs)
    assert payload_of(evs) == b"ab" + NEXT


def test_an_initiator_never_reads_a_command_after_a_bare_header() -> None:
    conn = Connection(Role.INITIATOR)
    evs = feed(conn, (data_header(OperationCode.GET_OBJECT, 3, 511), True), (NEXT, True))
    assert not any(isinstance(e, Command) for e in evs)
    assert payload_of(evs) == NEXT


# -- the initiator's side: what a responder sends ---------------------------------------


def test_an_initiator_reads_a_response_container_as_a_response() -> None:
    conn = Connection(Role.INITIATOR)
    raw = build_params_container(ContainerType.RESPONSE, ResponseCode.OK, 4, (1, 2))
    conn.receive_data(raw, True)
    assert events(conn) == [Response(ResponseCode.OK, 4, (1, 2))]


def test_an_initiator_reads_a_data_phase_like_a_responder() -> None:
    conn = Connection(Role.INITIATOR)
    conn.receive_data(data_header(OperationCode.GET_OBJECT, 4, 3) + b"abc", True)
    assert events(conn) == [
        DataStart(OperationCode.GET_OBJECT, 4, 3),
        DataChunk(b"abc"),
        DataEnd(True),
    ]


def test_a_command_sent_to_an_initiator_is_a_bad_container() -> None:
    conn = Connection(Role.INITIATOR)
    conn.receive_data(command(tid=4), True)
    [bad] = events(conn)
    assert isinstance(bad, BadContainer)
    assert bad.transaction_id == 4


def test_bytes_after_a_data_container_are_a_bad_container_to_an_initiator() -> None:
    # A responder that forgot the zero-length packet runs its response into the data.
    conn = Connection(Role.INITIATOR)
    response = build_params_container(ContainerType.RESPONSE, ResponseCode.OK, 4)
    conn.receive_data(data_header(OperationCode.GET_OBJECT, 4, 1) + b"a" + response, True)
    assert isinstance(events(conn)[-1], BadContainer)


def test_bytes_after_an_empty_data_container_are_a_bad_container_to_an_initiator() -> None:
    conn = Connection(Role.INITIATOR)
    response = build_params_container(ContainerType.RESPONSE, ResponseCode.OK, 4)
    conn.receive_data(data_header(OperationCode.GET_OBJECT, 4, 0) + response, True)
    evs = events(conn)
    assert isinstance(evs[-1], BadContainer)
    assert not any(isinstance(e, Response) for e in evs)
