"""A small MTP initiator on the loopback link, for tests.

It speaks the same containers a PC does, so tests exercise the responder's
framing, not a shortcut around it.  It is deliberately strict: it checks
transaction ids and container types of everything it reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..core.codes import (
    ALL,
    ROOT,
    AssociationType,
    ObjectFormat,
    OperationCode,
    ResponseCode,
)
from ..core.connection import InitiatorConnection, encode
from ..core.datasets import (
    DeviceInfo,
    ObjectInfoData,
    StorageInfo,
    build_object_info,
    parse_object_info,
    parse_u32_array,
)
from ..core.events import Command, DataChunk, DataEnd, DataStart, Response
from ..core.protocol import NeedData
from ..core.transaction import Phase, ProtocolError
from ..transport.loopback import LoopbackHost

__all__ = ["Initiator", "ProtocolMismatch", "Response", "Result"]


class ProtocolMismatch(AssertionError):
    """The responder broke the protocol."""


@dataclass(frozen=True, slots=True)
class Result:
    response: Response
    data: bytes | None

    @property
    def code(self) -> int:
        return self.response.code


class Initiator:
    """Transactions through the core's initiator connection.

    :meth:`transaction` and the conveniences run each transaction through
    one :class:`~mtp_responder.core.connection.InitiatorConnection`, which
    refuses anything the responder may not send.  The lower-level
    :meth:`command`, :meth:`send_data`, :meth:`send_data_stream`,
    :meth:`read_response` and :meth:`read_data_or_response` let a test
    compose a transaction itself, including ones that break the rules on
    purpose (two commands in a row, a data phase of another transaction);
    what the responder answers is still parsed and checked by an initiator
    connection that knows only the command the test says it sent.
    """

    def __init__(self, host: LoopbackHost) -> None:
        self.host = host
        self.tid = 0
        self.session_id = 0
        self.conn = InitiatorConnection()

    def next_tid(self) -> int:
        tid = self.tid
        self.tid += 1
        return tid

    # -- whole transactions ------------------------------------------------------

    async def transaction(self, code: int, *params: int, data: bytes | None = None) -> Result:
        conn = self.conn
        if conn.phase is not Phase.IDLE:
            # A transaction the test abandoned (a cancel, an unplug, a failed
            # check): the responder has forgotten it too.
            conn.reset()
        tid = self.next_tid()
        try:
            await self.host.write_transfer(conn.send(Command(code, tid, params)))
            if data is not None:
                header = conn.send(DataStart(code, tid, len(data)))
                body = conn.send(DataChunk(data)) if data else b""
                conn.send(DataEnd())
                await self.host.write_transfer(header + body)
            payload, response = await self._answer(conn)
        except ProtocolError as exc:
            raise ProtocolMismatch(str(exc)) from exc
        return Result(response, payload)

    async def _answer(self, conn: InitiatorConnection) -> tuple[bytes | None, Response]:
        """The responder's data phase (if any) and response, read through ``conn``.

        A transfer ends only at a short packet, so a responder that forgets
        the zero-length packet after packet-aligned data makes the data phase
        swallow the response: the connection reports the trailing bytes.
        """
        parts: list[bytes] | None = None
        while True:
            event = conn.next_event()
            if isinstance(event, NeedData):
                conn.receive_data(await self.host.read_transfer(), True)
            elif isinstance(event, DataStart):
                parts = []
            elif isinstance(event, DataChunk):
                assert parts is not None
                parts.append(event.data)
            elif isinstance(event, Response):
                return (None if parts is None else b"".join(parts)), event

    # -- composing a transaction by hand -------------------------------------------

    async def command(self, code: int, *params: int, tid: int | None = None) -> int:
        tid = self.next_tid() if tid is None else tid
        await self.host.write_transfer(encode(Command(code, tid, params)))
        return tid

    async def send_data(self, code: int, tid: int, payload: bytes) -> None:
        header = encode(DataStart(code, tid, len(payload)))
        await self.host.write_transfer(header + payload)

    async def send_data_stream(
        self, code: int, tid: int, length: int, chunks: AsyncIterator[bytes] | list[bytes]
    ) -> None:
        """One data phase from ``chunks``, in transfers of whole packets."""
        pending = encode(DataStart(code, tid, length))
        sent = 0

        async def gen() -> AsyncIterator[bytes]:
            if isinstance(chunks, list):
                for c in chunks:
                    yield c
            else:
                async for c in chunks:
                    yield c

        buffered = b""
        async for chunk in gen():
            buffered = pending + buffered + chunk
            pending = b""
            whole = len(buffered) - len(buffered) % self.host.max_packet_size
            if whole:
                await self.host.write_transfer(buffered[:whole], end=False, sent_before=sent)
                sent += whole
                buffered = buffered[whole:]
        await self.host.write_transfer(pending + buffered, end=True, sent_before=sent)

    async def read_response(self, tid: int) -> Response:
        payload, response = await self.read_data_or_response(tid)
        if payload is not None:
            raise ProtocolMismatch(f"expected a response, got a data phase of {len(payload)} bytes")
        return response

    async def read_data_or_response(self, tid: int) -> tuple[bytes | None, Response]:
        """Read a data phase (if the responder sends one) and the response of ``tid``."""
        conn = InitiatorConnection()
        conn.send(Command(0, tid, ()))  # the test wrote the command itself
        try:
            return await self._answer(conn)
        except ProtocolError as exc:
            raise ProtocolMismatch(str(exc)) from exc

    # -- conveniences --------------------------------------------------------------

    async def open_session(self, session_id: int = 1) -> Response:
        self.tid = 0
        result = await self.transaction(OperationCode.OPEN_SESSION, session_id)
        self.session_id = session_id
        return result.response

    async def close_session(self) -> Response:
        return (await self.transaction(OperationCode.CLOSE_SESSION)).response

    async def device_info(self) -> Any:
        result = await self.transaction(OperationCode.GET_DEVICE_INFO)
        assert result.data is not None, result.response
        return DeviceInfo.parse(result.data)

    async def storage_ids(self) -> list[int]:
        result = await self.transaction(OperationCode.GET_STORAGE_IDS)
        assert result.data is not None, result.response
        return parse_u32_array(result.data)

    async def storage_info(self, storage_id: int) -> Any:
        result = await self.transaction(OperationCode.GET_STORAGE_INFO, storage_id)
        assert result.data is not None, result.response
        return StorageInfo.parse(result.data)

    async def object_handles(
        self, storage_id: int = ALL, parent: int = ROOT, format_code: int = 0
    ) -> list[int]:
        result = await self.transaction(
            OperationCode.GET_OBJECT_HANDLES, storage_id, format_code, parent
        )
        assert result.data is not None, result.response
        return parse_u32_array(result.data)

    async def object_info(self, handle: int) -> ObjectInfoData:
        result = await self.transaction(OperationCode.GET_OBJECT_INFO, handle)
        assert result.data is not None, result.response
        return parse_object_info(result.data)

    async def get_object(self, handle: int) -> bytes:
        result = await self.transaction(OperationCode.GET_OBJECT, handle)
        assert result.data is not None and result.response.ok, result.response
        return result.data

    async def send_object(
        self,
        name: str,
        payload: bytes,
        *,
        storage_id: int = 0,
        parent: int = ROOT,
        format_code: int = ObjectFormat.UNDEFINED,
        date_modified: str = "",
    ) -> int:
        """SendObjectInfo + SendObject; returns the new handle."""
        info = ObjectInfoData(
            storage_id=storage_id,
            object_format=format_code,
            protection_status=0,
            compressed_size=len(payload),
            parent_object=parent,
            association_type=0,
            filename=name,
            date_modified=date_modified,
        )
        r = await self.transaction(
            OperationCode.SEND_OBJECT_INFO, storage_id, parent, data=build_object_info(info)
        )
        if not r.response.ok:
            raise ProtocolMismatch(f"SendObjectInfo failed: {ResponseCode(r.code).name}")
        handle = r.response.params[2]
        r = await self.transaction(OperationCode.SEND_OBJECT, data=payload)
        if not r.response.ok:
            raise ProtocolMismatch(f"SendObject failed: {ResponseCode(r.code).name}")
        return handle

    async def create_folder(
        self, name: str, *, storage_id: int = 0, parent: int = ROOT
    ) -> Response:
        info = ObjectInfoData(
            storage_id=storage_id,
            object_format=ObjectFormat.ASSOCIATION,
            protection_status=0,
            compressed_size=0,
            parent_object=parent,
            association_type=AssociationType.GENERIC_FOLDER,
            filename=name,
        )
        r = await self.transaction(
            OperationCode.SEND_OBJECT_INFO, storage_id, parent, data=build_object_info(info)
        )
        return r.response
