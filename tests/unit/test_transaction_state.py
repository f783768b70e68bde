"""The MTP transaction state machine, in both roles, without any I/O.

Each test states one rule: a legal path through a transaction, or an event
that is not allowed and the error (ours or the peer's) it raises.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mtp_responder.core.codes import ContainerType, OperationCode, ResponseCode
from mtp_responder.core.connection import (
    ABANDONED,
    PAUSED,
    InitiatorConnection,
    ResponderConnection,
)
from mtp_responder.core.container import (
    HEADER_SIZE,
    build_params_container,
    data_header,
    parse_header,
)
from mtp_responder.core.events import (
    BadContainer,
    Command,
    DataChunk,
    DataEnd,
    DataStart,
    Event,
    Response,
    Role,
)
from mtp_responder.core.protocol import NEED_DATA
from mtp_responder.core.transaction import (
    LocalProtocolError,
    Phase,
    RemoteProtocolError,
    TransactionState,
)

GET = OperationCode.GET_OBJECT
SEND = OperationCode.SEND_OBJECT
OK = ResponseCode.OK


Maker = Callable[[], TransactionState]


def initiator() -> TransactionState:
    return TransactionState(Role.INITIATOR)


def responder() -> TransactionState:
    return TransactionState(Role.RESPONDER)


def play(state: TransactionState, *steps: tuple[Role, Event]) -> list[Phase]:
    """Feed each event as sent by its role; the phases passed through."""
    phases = []
    for sender, event in steps:
        if sender is state.role:
            state.send(event)
        else:
            state.receive(event)
        phases.append(state.phase)
    return phases


HOST, DEVICE = Role.INITIATOR, Role.RESPONDER

NO_DATA = [(HOST, Command(GET, 7, (1,))), (DEVICE, Response(OK, 7))]
DATA_IN = [
    (HOST, Command(GET, 7, (1,))),
    (DEVICE, DataStart(GET, 7, 5)),
    (DEVICE, DataChunk(b"abc")),
    (DEVICE, DataChunk(b"de")),
    (DEVICE, DataEnd()),
    (DEVICE, Response(OK, 7)),
]
DATA_OUT = [
    (HOST, Command(SEND, 7, ())),
    (HOST, DataStart(SEND, 7, 3)),
    (HOST, DataChunk(b"xyz")),
    (HOST, DataEnd()),
    (DEVICE, Response(OK, 7)),
]
EMPTY_DATA_IN = [
    (HOST, Command(GET, 7, ())),
    (DEVICE, DataStart(GET, 7, 0)),
    (DEVICE, DataEnd()),
    (DEVICE, Response(OK, 7)),
]


# -- legal paths, the same in both roles -----------------------------------------------


@pytest.mark.parametrize("make", [initiator, responder], ids=["initiator", "responder"])
def test_a_transaction_without_data_is_command_then_response(make: Maker) -> None:
    assert play(make(), *NO_DATA) == [Phase.COMMAND, Phase.IDLE]


@pytest.mark.parametrize("make", [initiator, responder], ids=["initiator", "responder"])
def test_a_data_in_phase_lies_between_command_and_response(make: Maker) -> None:
    assert play(make(), *DATA_IN) == [
        Phase.COMMAND,
        Phase.DATA_IN,
        Phase.DATA_IN,
        Phase.DATA_IN,
        Phase.RESPONSE_DUE,
        Phase.IDLE,
    ]


@pytest.mark.parametrize("make", [initiator, responder], ids=["initiator", "responder"])
def test_a_data_out_phase_lies_between_command_and_response(make: Maker) -> None:
    assert play(make(), *DATA_OUT) == [
        Phase.COMMAND,
        Phase.DATA_OUT,
        Phase.DATA_OUT,
        Phase.RESPONSE_DUE,
        Phase.IDLE,
    ]


@pytest.mark.parametrize("make", [initiator, responder], ids=["initiator", "responder"])
def test_an_empty_data_phase_is_a_data_phase(make: Maker) -> None:
    assert play(make(), *EMPTY_DATA_IN)[-1] is Phase.IDLE


@pytest.mark.parametrize("make", [initiator, responder], ids=["initiator", "responder"])
def test_transactions_follow_one_another(make: Maker) -> None:
    state = make()
    play(state, *NO_DATA)
    play(state, *DATA_IN)
    play(state, *DATA_OUT)
    assert state.phase is Phase.IDLE
    assert state.last_answered == 7


@pytest.mark.parametrize("make", [initiator, responder], ids=["initiator", "responder"])
def test_ids_may_repeat_from_one_transaction_to_the_next(make: Maker) -> None:
    # GetDeviceInfo and OpenSession both use id 0 before a session exists;
    # the session's increasing-id rule is answered by the responder, not refused here.
    state = make()
    play(state, (HOST, Command(OperationCode.GET_DEVICE_INFO, 0, ())), (DEVICE, Response(OK, 0)))
    play(state, (HOST, Command(OperationCode.OPEN_SESSION, 0, (1,))), (DEVICE, Response(OK, 0)))
    assert state.phase is Phase.IDLE


def test_an_incoming_data_phase_of_unknown_length_ends_when_the_peer_says() -> None:
    state = initiator()
    play(
        state,
        (HOST, Command(GET, 7, ())),
        (DEVICE, DataStart(GET, 7, None)),
        (DEVICE, DataChunk(b"x" * 9)),
    )
    play(state, (DEVICE, DataEnd()), (DEVICE, Response(OK, 7)))
    assert state.phase is Phase.IDLE


def test_an_incoming_data_phase_that_ends_short_is_for_the_responder_to_answer() -> None:
    state = responder()
    play(
        state,
        (HOST, Command(SEND, 7, ())),
        (HOST, DataStart(SEND, 7, 100)),
        (HOST, DataChunk(b"x")),
    )
    play(state, (HOST, DataEnd(complete=False)))
    assert state.response_due
    play(state, (DEVICE, Response(ResponseCode.INCOMPLETE_TRANSFER, 7)))
    assert state.phase is Phase.IDLE


def test_reset_forgets_the_open_transaction() -> None:
    state = responder()
    play(state, (HOST, Command(SEND, 7, ())), (HOST, DataStart(SEND, 7, 100)))
    state.reset()
    assert state.phase is Phase.IDLE
    play(state, *NO_DATA)


# -- what the responder tolerates from a host ------------------------------------------


def test_a_responder_drains_a_stray_data_phase_and_answers_it_once() -> None:
    state = responder()
    phases = play(state, (HOST, DataStart(SEND, 9, 2)), (HOST, DataChunk(b"ab")), (HOST, DataEnd()))
    assert phases == [Phase.STRAY_DATA, Phase.STRAY_DATA, Phase.RESPONSE_DUE]
    assert state.transaction_id == 9
    play(state, (DEVICE, Response(ResponseCode.GENERAL_ERROR, 9)))
    assert state.phase is Phase.IDLE


def test_a_stray_data_phase_trailing_the_answered_transaction_gets_no_answer() -> None:
    state = responder()
    play(state, *NO_DATA)
    play(state, (HOST, DataStart(GET, 7, 1)), (HOST, DataChunk(b"a")), (HOST, DataEnd()))
    assert state.phase is Phase.IDLE
    assert not state.response_due
    with pytest.raises(LocalProtocolError, match=r"phase 'idle'.*7 was already answered"):
        state.send(Response(ResponseCode.GENERAL_ERROR, 7))


def test_a_responder_drains_a_data_phase_of_another_transaction() -> None:
    state = responder()
    play(
        state, (HOST, Command(SEND, 7, ())), (HOST, DataStart(SEND, 12, 1)), (HOST, DataChunk(b"a"))
    )
    play(state, (HOST, DataEnd()))
    play(state, (DEVICE, Response(ResponseCode.INVALID_TRANSACTION_ID, 7)))
    assert state.phase is Phase.IDLE


def test_a_command_where_the_data_phase_was_due_opens_a_new_transaction() -> None:
    state = responder()
    assert play(state, (HOST, Command(SEND, 7, ())), (HOST, Command(GET, 8, ()))) == [
        Phase.COMMAND,
        Phase.COMMAND,
    ]
    assert (state.transaction_id, state.abandoned) == (8, 7)
    with pytest.raises(LocalProtocolError, match="response of another transaction"):
        state.send(Response(ResponseCode.INCOMPLETE_TRANSFER, 7))
    play(state, (DEVICE, Response(OK, 8)))
    assert state.last_answered == 8


def test_a_command_in_step_abandons_nothing() -> None:
    state = responder()
    play(state, (HOST, Command(SEND, 7, ())), (HOST, Command(GET, 8, ())))
    play(state, (DEVICE, Response(OK, 8)), (HOST, Command(GET, 9, ())))
    assert state.abandoned is None


INFO = OperationCode.SEND_OBJECT_INFO


def test_the_next_command_before_any_data_byte_ends_the_data_phase_unanswered() -> None:
    # go-mtpfs: SendObject's data header, no payload, then the next command.
    state = responder()
    phases = play(
        state,
        (HOST, Command(SEND, 7, ())),
        (HOST, DataStart(SEND, 7, 511)),
        (HOST, Command(INFO, 8, (1, 0))),
    )
    assert phases == [Phase.COMMAND, Phase.DATA_OUT, Phase.COMMAND]
    assert (state.transaction_id, state.abandoned) == (8, 7)
    with pytest.raises(LocalProtocolError, match="response of another transaction"):
        state.send(Response(ResponseCode.INCOMPLETE_TRANSFER, 7))
    play(state, (HOST, DataStart(INFO, 8, 2)), (HOST, DataChunk(b"ok")), (HOST, DataEnd()))
    play(state, (DEVICE, Response(OK, 8)))
    assert state.phase is Phase.IDLE


def test_a_command_after_a_data_byte_is_refused() -> None:
    state = responder()
    play(state, (HOST, Command(SEND, 7, ())), (HOST, DataStart(SEND, 7, 511)))
    play(state, (HOST, DataChunk(b"a")))
    with pytest.raises(RemoteProtocolError, match="a command in phase 'data out'"):
        state.receive(Command(INFO, 8, ()))
    assert (state.phase, state.transaction_id) == (Phase.DATA_OUT, 7)


@pytest.mark.parametrize("tid", [7, 9, 6])
def test_a_command_with_another_id_than_the_next_one_is_refused_in_a_data_phase(
    tid: int,
) -> None:
    state = responder()
    play(state, (HOST, Command(SEND, 7, ())), (HOST, DataStart(SEND, 7, 511)))
    with pytest.raises(RemoteProtocolError, match="a command in phase 'data out'"):
        state.receive(Command(INFO, tid, ()))
    assert state.phase is Phase.DATA_OUT


def test_the_next_command_follows_the_data_headers_id_in_a_foreign_data_phase() -> None:
    state = responder()
    play(state, (HOST, Command(SEND, 7, ())), (HOST, DataStart(SEND, 12, 511)))
    with pytest.raises(RemoteProtocolError):
        state.receive(Command(INFO, 8, ()))
    play(state, (HOST, Command(INFO, 13, ())))
    assert (state.phase, state.transaction_id, state.abandoned) == (Phase.COMMAND, 13, 7)


def test_the_next_command_before_any_byte_of_a_stray_data_phase_ends_it_unanswered() -> None:
    state = responder()
    play(state, (HOST, DataStart(SEND, 9, 511)))
    assert play(state, (HOST, Command(INFO, 10, ()))) == [Phase.COMMAND]
    assert (state.transaction_id, state.abandoned) == (10, 9)


def test_an_initiator_may_not_send_the_next_command_after_a_bare_data_header() -> None:
    state = initiator()
    play(state, (HOST, Command(SEND, 7, ())), (HOST, DataStart(SEND, 7, 511)))
    with pytest.raises(LocalProtocolError, match="command of the next transaction"):
        state.send(Command(INFO, 8, ()))


def test_a_bad_container_with_an_id_is_answered() -> None:
    state = responder()
    bad = BadContainer("wrong type", GET, 4, ResponseCode.GENERAL_ERROR)
    assert play(state, (HOST, bad)) == [Phase.RESPONSE_DUE]
    play(state, (DEVICE, Response(ResponseCode.GENERAL_ERROR, 4)))
    assert state.phase is Phase.IDLE


def test_a_bad_data_container_of_the_open_transaction_is_its_answer() -> None:
    state = responder()
    bad = BadContainer("short data container", SEND, 7, ResponseCode.INVALID_DATASET)
    assert play(state, (HOST, Command(SEND, 7, ())), (HOST, bad)) == [
        Phase.COMMAND,
        Phase.RESPONSE_DUE,
    ]


def test_a_bad_container_without_a_header_opens_nothing() -> None:
    state = responder()
    play(
        state, (HOST, BadContainer("truncated header", None, None, ResponseCode.INVALID_PARAMETER))
    )
    assert state.phase is Phase.IDLE
    assert not state.response_due


# -- what nobody may send --------------------------------------------------------------


def test_only_the_initiator_sends_commands() -> None:
    with pytest.raises(LocalProtocolError, match="responder sent a command in phase 'idle'"):
        responder().send(Command(GET, 1, ()))
    with pytest.raises(RemoteProtocolError, match="responder sent a command in phase 'idle'"):
        initiator().receive(Command(GET, 1, ()))


def test_only_the_responder_sends_responses() -> None:
    state = initiator()
    state.send(Command(GET, 1, ()))
    with pytest.raises(LocalProtocolError, match="initiator sent a response in phase 'command'"):
        state.send(Response(OK, 1))


def test_a_second_command_before_the_response_is_refused() -> None:
    state = initiator()
    state.send(Command(GET, 1, ()))
    with pytest.raises(LocalProtocolError, match="initiator sent a command in phase 'command'"):
        state.send(Command(GET, 2, ()))
    assert state.phase is Phase.COMMAND


def test_an_initiator_may_not_send_a_data_phase_without_a_command() -> None:
    with pytest.raises(LocalProtocolError, match="initiator sent a data container in phase 'idle'"):
        initiator().send(DataStart(SEND, 1, 3))


def test_a_responder_may_not_send_a_data_phase_without_a_command() -> None:
    with pytest.raises(LocalProtocolError, match="responder sent a data container in phase 'idle'"):
        responder().send(DataStart(GET, 1, 3))


def test_a_response_before_any_command_is_the_peers_error() -> None:
    with pytest.raises(RemoteProtocolError, match="responder sent a response in phase 'idle'"):
        initiator().receive(Response(OK, 0))


@pytest.mark.parametrize(
    ("make", "error"),
    [(initiator, RemoteProtocolError), (responder, LocalProtocolError)],
    ids=["initiator", "responder"],
)
def test_one_answer_per_transaction(make: Maker, error: type[Exception]) -> None:
    state = make()
    play(state, *NO_DATA)
    with pytest.raises(error, match="response in phase 'idle': transaction 7 was already answered"):
        if state.role is Role.RESPONDER:
            state.send(Response(OK, 7))
        else:
            state.receive(Response(OK, 7))


@pytest.mark.parametrize(
    ("make", "error"),
    [(initiator, RemoteProtocolError), (responder, LocalProtocolError)],
    ids=["initiator", "responder"],
)
def test_the_response_carries_the_commands_id(make: Maker, error: type[Exception]) -> None:
    state = make()
    play(state, (HOST, Command(GET, 7, ())))
    with pytest.raises(
        error, match="response of another transaction in phase 'command': it carries id 8"
    ):
        if state.role is Role.RESPONDER:
            state.send(Response(OK, 8))
        else:
            state.receive(Response(OK, 8))
    assert state.phase is Phase.COMMAND


def test_an_initiators_data_container_carries_the_commands_id() -> None:
    state = initiator()
    state.send(Command(SEND, 7, ()))
    with pytest.raises(
        LocalProtocolError,
        match="data container of another transaction in phase 'command': it carries id 8",
    ):
        state.send(DataStart(SEND, 8, 1))


def test_a_responders_data_container_carries_the_commands_id() -> None:
    state = initiator()
    state.send(Command(GET, 7, ()))
    with pytest.raises(RemoteProtocolError, match="data container of another transaction"):
        state.receive(DataStart(GET, 8, 1))
    state = responder()
    state.receive(Command(GET, 7, ()))
    with pytest.raises(LocalProtocolError, match="data container of another transaction"):
        state.send(DataStart(GET, 8, 1))


def test_a_transaction_has_at_most_one_data_phase() -> None:
    state = responder()
    play(state, *DATA_IN[:-1])
    with pytest.raises(
        LocalProtocolError, match="responder sent a data container in phase 'response due'"
    ):
        state.send(DataStart(GET, 7, 1))


def test_data_flows_one_way_in_a_transaction() -> None:
    state = initiator()
    play(state, (HOST, Command(SEND, 7, ())), (HOST, DataStart(SEND, 7, 3)))
    with pytest.raises(
        RemoteProtocolError, match="responder sent a data chunk in phase 'data out'"
    ):
        state.receive(DataChunk(b"x"))


def test_the_response_waits_for_the_end_of_the_data_phase() -> None:
    state = responder()
    play(state, *DATA_IN[:3])
    with pytest.raises(LocalProtocolError, match="responder sent a response in phase 'data in'"):
        state.send(Response(OK, 7))


def test_a_chunk_outside_a_data_phase_is_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="initiator sent a data chunk in phase 'idle'"):
        responder().receive(DataChunk(b"x"))
    with pytest.raises(LocalProtocolError, match="initiator sent an end of data in phase 'idle'"):
        initiator().send(DataEnd())


def test_a_data_phase_we_send_carries_no_more_than_it_announced() -> None:
    state = responder()
    play(state, (HOST, Command(GET, 7, ())), (DEVICE, DataStart(GET, 7, 2)))
    with pytest.raises(
        LocalProtocolError,
        match="data chunk of 3 bytes in phase 'data in': only 2 of the announced 2 remain",
    ):
        state.send(DataChunk(b"abc"))


def test_a_data_phase_we_send_carries_all_it_announced() -> None:
    state = initiator()
    play(
        state, (HOST, Command(SEND, 7, ())), (HOST, DataStart(SEND, 7, 4)), (HOST, DataChunk(b"ab"))
    )
    with pytest.raises(
        LocalProtocolError,
        match="end of data in phase 'data out': 2 of the announced 4 bytes are missing",
    ):
        state.send(DataEnd())
    assert state.phase is Phase.DATA_OUT


def test_an_initiator_does_not_get_the_responders_tolerance() -> None:
    state = initiator()
    with pytest.raises(RemoteProtocolError, match="bad container in phase 'idle'"):
        state.receive(BadContainer("wrong type", GET, 4, ResponseCode.GENERAL_ERROR))


# -- the role connections: events in, bytes out ----------------------------------------


def feed(conn: ResponderConnection | InitiatorConnection, data: bytes) -> list[object]:
    conn.receive_data(data, True)
    out: list[object] = []
    while (event := conn.next_event()) is not NEED_DATA:
        out.append(event)
        if event is PAUSED:
            break
    return out


def test_connections_of_both_roles_carry_a_data_out_transaction() -> None:
    host, device = InitiatorConnection(), ResponderConnection()
    command = host.send(Command(SEND, 3, ()))
    data = host.send(DataStart(SEND, 3, 4)) + host.send(DataChunk(b"blob"))
    host.send(DataEnd())
    assert feed(device, command) == [Command(SEND, 3, ())]
    assert feed(device, data) == [DataStart(SEND, 3, 4), DataChunk(b"blob"), DataEnd(True)]
    assert feed(host, device.send(Response(OK, 3))) == [Response(OK, 3)]
    assert host.phase is device.phase is Phase.IDLE


def test_connections_of_both_roles_carry_a_data_in_transaction() -> None:
    host, device = InitiatorConnection(), ResponderConnection()
    feed(device, host.send(Command(GET, 3, (5,))))
    wire = device.send(DataStart(GET, 3, 4)) + device.send(DataChunk(b"blob"))
    device.send(DataEnd())
    assert feed(host, wire) == [DataStart(GET, 3, 4), DataChunk(b"blob"), DataEnd(True)]
    assert feed(host, device.send(Response(OK, 3, (1, 2)))) == [Response(OK, 3, (1, 2))]


def test_sending_a_chunk_returns_the_same_bytes_object() -> None:
    device = ResponderConnection()
    feed(device, InitiatorConnection().send(Command(GET, 3, ())))
    device.send(DataStart(GET, 3, 5))
    chunk = b"12345"
    assert device.send(DataChunk(chunk)) is chunk


def test_a_data_header_sent_announces_the_payload_length() -> None:
    device = ResponderConnection()
    feed(device, InitiatorConnection().send(Command(GET, 3, ())))
    header = parse_header(device.send(DataStart(GET, 3, 1000)))
    assert (header.length, header.transaction_id) == (HEADER_SIZE + 1000, 3)


def test_a_command_where_a_data_phase_was_due_abandons_the_open_transaction() -> None:
    host, device = InitiatorConnection(), ResponderConnection()
    feed(device, host.send(Command(SEND, 3, ())))
    assert feed(device, InitiatorConnection().send(Command(GET, 4, ()))) == [
        ABANDONED,
        Command(GET, 4, ()),
    ]
    assert (device.phase, device.state.transaction_id, device.state.abandoned) == (
        Phase.COMMAND,
        4,
        3,
    )
    with pytest.raises(LocalProtocolError, match="it carries id 3, the open transaction is 4"):
        device.send(Response(ResponseCode.INCOMPLETE_TRANSFER, 3))
    device.send(Response(OK, 4))
    assert device.phase is Phase.IDLE


def test_a_bare_data_header_then_the_next_command_abandons_the_open_transaction() -> None:
    device = ResponderConnection()
    feed(device, InitiatorConnection().send(Command(SEND, 3, ())))
    assert feed(device, data_header(SEND, 3, 511)) == [DataStart(SEND, 3, 511)]
    assert feed(device, InitiatorConnection().send(Command(INFO, 4, (1, 0)))) == [
        ABANDONED,
        Command(INFO, 4, (1, 0)),
    ]
    assert (device.phase, device.state.transaction_id, device.state.abandoned) == (
        Phase.COMMAND,
        4,
        3,
    )
    device.send(Response(OK, 4))
    assert device.phase is Phase.IDLE


def test_a_bare_data_header_then_its_payload_is_one_data_phase() -> None:
    # Windows sends the header in a transfer of its own.
    device = ResponderConnection()
    feed(device, InitiatorConnection().send(Command(SEND, 3, ())))
    assert feed(device, data_header(SEND, 3, 5)) == [DataStart(SEND, 3, 5)]
    assert feed(device, b"hello") == [DataChunk(b"hello"), DataEnd(True)]
    assert device.phase is Phase.RESPONSE_DUE and device.state.abandoned is None


def test_a_command_container_with_a_wrong_id_after_a_bare_header_is_payload() -> None:
    device = ResponderConnection()
    feed(device, InitiatorConnection().send(Command(SEND, 3, ())))
    feed(device, data_header(SEND, 3, 511))
    wrong = InitiatorConnection().send(Command(INFO, 5, (1, 0)))
    assert feed(device, wrong) == [DataChunk(wrong), DataEnd(False)]
    assert (device.phase, device.state.transaction_id) == (Phase.RESPONSE_DUE, 3)


def test_a_stray_bare_data_header_then_the_next_command_abandons_it() -> None:
    device = ResponderConnection()
    feed(device, data_header(SEND, 9, 511))
    assert device.phase is Phase.STRAY_DATA
    assert feed(device, InitiatorConnection().send(Command(INFO, 10, ()))) == [
        ABANDONED,
        Command(INFO, 10, ()),
    ]
    assert (device.phase, device.state.transaction_id) == (Phase.COMMAND, 10)


def test_a_bad_container_of_another_transaction_where_data_was_due_waits_for_the_answer() -> None:
    host, device = InitiatorConnection(), ResponderConnection()
    feed(device, host.send(Command(SEND, 3, ())))
    # An event container is not the host's to send: a bad container of id 4.
    assert feed(device, build_params_container(ContainerType.EVENT, GET, 4)) == [PAUSED]
    device.send(Response(ResponseCode.INVALID_DATASET, 3))
    bad = device.next_event()
    assert isinstance(bad, BadContainer) and bad.transaction_id == 4
    assert device.state.response_due


def test_an_initiator_refuses_a_response_run_into_the_data_phase() -> None:
    # Packet-aligned data without its zero-length packet: the response joins it.
    host, device = InitiatorConnection(), ResponderConnection()
    feed(device, host.send(Command(GET, 3, ())))
    wire = device.send(DataStart(GET, 3, 4)) + device.send(DataChunk(b"blob"))
    device.send(DataEnd())
    wire += device.send(Response(OK, 3))
    with pytest.raises(RemoteProtocolError, match="trailing bytes after a data container"):
        feed(host, wire)


def test_an_initiator_refuses_a_data_phase_shorter_than_announced() -> None:
    host, device = InitiatorConnection(), ResponderConnection()
    feed(device, host.send(Command(GET, 3, ())))
    wire = device.send(DataStart(GET, 3, 10)) + b"abc"
    with pytest.raises(RemoteProtocolError, match="ended before the announced length"):
        feed(host, wire)
