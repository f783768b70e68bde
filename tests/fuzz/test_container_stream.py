"""The container stream: sequences of USB transfers at a running responder.

Single malformed containers are covered by the unit tests; what breaks a
responder in the field is an order of things (a command where a data phase was
due, a Cancel in the middle of one, a data phase after a command that takes
none, a cable pulled with an upload pending).  Each input here is a sequence
of up to a few dozen host actions; :mod:`.stream` states the oracles.
"""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from mtp_responder.core.codes import AssociationType, ContainerType, ObjectFormat, OperationCode
from mtp_responder.core.container import build_params_container
from mtp_responder.core.datasets import ObjectInfoData, build_object_info
from mtp_responder.operations import Operations

from .budget import budget, counted
from .stream import Cancel, Replug, Reset, Settle, Step, Transfer, run_sequence

ALL = 0xFFFFFFFF
OPS = Operations.supported()
DATA_OUT = [code for code in OPS if Operations.expects_data(code)]

handles = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, ALL]), st.integers(0, ALL))
params = st.lists(
    st.one_of(handles, st.sampled_from([0x10001, 0x3000, 0x3001, 0xDC01, 0xDC04])), max_size=5
)
codes = st.one_of(st.sampled_from(OPS), st.integers(0, 0xFFFF))
names = st.sampled_from(["up.bin", "x", ".", "..", "a/b", "é" * 100, "dir", "a.txt", "DCIM"])


def object_info(name: str, size: int, parent: int, folder: bool) -> bytes:
    return build_object_info(
        ObjectInfoData(
            storage_id=0,
            object_format=ObjectFormat.ASSOCIATION if folder else ObjectFormat.UNDEFINED,
            protection_status=0,
            compressed_size=size,
            parent_object=parent,
            association_type=AssociationType.GENERIC_FOLDER if folder else 0,
            filename=name,
        )
    )


payloads = st.one_of(
    st.binary(max_size=700),
    st.builds(object_info, names, st.integers(0, 3000), handles, st.booleans()),
)


def data_container(code: int, tid: int, payload: bytes, length: int | None) -> bytes:
    announced = 12 + len(payload) if length is None else length
    return struct.pack("<IHHI", announced, ContainerType.DATA, code, tid) + payload


class Tids:
    """Transaction ids as a host hands them out: mostly the next one, sometimes not."""

    def __init__(self) -> None:
        self.last = 99

    def draw(self, draw: st.DrawFn) -> int:
        how = draw(st.sampled_from(["next", "next", "next", "same", "any"]))
        if how == "next":
            self.last += 1
        elif how == "any":
            return draw(st.integers(0, ALL))
        return self.last


@st.composite
def sequences(draw: st.DrawFn) -> list[Step]:
    tids = Tids()
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, 24))):
        kind = draw(
            st.sampled_from(
                ["command"] * 4
                + ["data"] * 2
                + ["upload"] * 2
                + ["run-together", "raw", "cancel", "reset", "replug", "settle"]
            )
        )
        if kind == "command":
            code, args = draw(codes), draw(params)
            steps.append(
                Transfer(
                    build_params_container(
                        ContainerType.COMMAND, code, tids.draw(draw), tuple(args)
                    )
                )
            )
        elif kind == "data":
            length = draw(st.one_of(st.none(), st.sampled_from([12, 13, 511, 512, ALL])))
            code = draw(st.one_of(st.sampled_from(DATA_OUT), codes))
            steps.append(Transfer(data_container(code, tids.last, draw(payloads), length)))
        elif kind == "upload":
            # SendObjectInfo then SendObject, each maybe without its data phase.
            size = draw(st.integers(0, 3000))
            parent = draw(st.sampled_from([ALL, 0, 2, 4, 5]))
            info = object_info(draw(names), size, parent, draw(st.booleans()))
            tid = tids.draw(draw)
            steps.append(
                Transfer(
                    build_params_container(
                        ContainerType.COMMAND, OperationCode.SEND_OBJECT_INFO, tid, (0, parent)
                    )
                )
            )
            if draw(st.booleans()):
                steps.append(
                    Transfer(data_container(OperationCode.SEND_OBJECT_INFO, tid, info, None))
                )
            tid = tids.draw(draw)
            steps.append(
                Transfer(
                    build_params_container(
                        ContainerType.COMMAND, OperationCode.SEND_OBJECT, tid, ()
                    )
                )
            )
            if draw(st.booleans()):
                body = bytes(draw(st.integers(0, size)))
                steps.append(Transfer(data_container(OperationCode.SEND_OBJECT, tid, body, None)))
        elif kind == "run-together":
            # Two containers in one transfer: only the first is the host's.
            first = build_params_container(
                ContainerType.COMMAND, draw(codes), tids.draw(draw), tuple(draw(params))
            )
            if draw(st.booleans()):
                first = data_container(draw(codes), tids.last, draw(payloads), 12)
            second = build_params_container(
                ContainerType.COMMAND, draw(codes), draw(st.integers(0, ALL)), ()
            )
            steps.append(Transfer(first + second))
        elif kind == "raw":
            steps.append(Transfer(draw(st.binary(max_size=600))))
        elif kind == "cancel":
            steps.append(Cancel(draw(st.one_of(st.just(tids.last), st.integers(0, ALL)))))
        elif kind == "reset":
            steps.append(Reset())
        elif kind == "replug":
            steps.append(Replug())
        else:
            steps.append(Settle())
    return steps


@budget(25, weight=0.1)
@given(steps=sequences())
@counted("container stream: transfer sequences")
def test_any_sequence_of_transfers_leaves_the_responder_serving_in_step(
    steps: list[Step],
) -> None:
    run_sequence(steps)


def test_the_ledger_refuses_a_transaction_answered_twice() -> None:
    """The oracle itself: a second response to one command is reported."""
    from .stream import Ledger

    ledger = Ledger()
    ledger.host_wrote(
        build_params_container(ContainerType.COMMAND, OperationCode.GET_DEVICE_INFO, 7, ())
    )
    response = build_params_container(ContainerType.RESPONSE, 0x2001, 7, ())
    ledger.device_sent(response)
    assert not ledger.problems
    ledger.device_sent(response)
    assert ledger.problems


def test_the_ledger_does_not_count_a_container_run_into_another() -> None:
    from .stream import Ledger

    ledger = Ledger()
    first = build_params_container(ContainerType.COMMAND, OperationCode.GET_DEVICE_INFO, 7, ())
    ledger.host_wrote(
        first + build_params_container(ContainerType.COMMAND, OperationCode.GET_DEVICE_INFO, 8, ())
    )
    ledger.device_sent(build_params_container(ContainerType.RESPONSE, 0x2001, 8, ()))
    assert ledger.problems
