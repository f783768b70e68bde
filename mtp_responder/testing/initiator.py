"""A small MTP initiator on the loopback link, for tests.

It speaks the same containers a PC does, so tests exercise the responder's
framing, not a shortcut around it.  It is deliberately strict: it checks
transaction ids and container types of everything it reads.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..core.codes import ContainerType, OperationCode, ResponseCode
from ..core.container import (
    HEADER_SIZE,
    UNKNOWN_LENGTH,
    build_params_container,
    data_header,
    parse_header,
)
from ..core.datasets import (
    DeviceInfo,
    ObjectInfoData,
    StorageInfo,
    build_object_info,
    parse_object_info,
    parse_u32_array,
)
from ..transport.loopback import LoopbackHost


class ProtocolMismatch(AssertionError):
    """The responder broke the protocol."""


@dataclass(frozen=True, slots=True)
class Response:
    code: int
    params: tuple[int, ...]
    transaction_id: int

    @property
    def ok(self) -> bool:
        return self.code == ResponseCode.OK


@dataclass(frozen=True, slots=True)
class Result:
    response: Response
    data: bytes | None

    @property
    def code(self) -> int:
        return self.response.code


class Initiator:
    def __init__(self, host: LoopbackHost) -> None:
        self.host = host
        self.tid = 0
        self.session_id = 0

    def next_tid(self) -> int:
        tid = self.tid
        self.tid += 1
        return tid

    async def command(self, code: int, *params: int, tid: int | None = None) -> int:
        tid = self.next_tid() if tid is None else tid
        container = build_params_container(ContainerType.COMMAND, code, tid, params)
        await self.host.write_transfer(container)
        return tid

    async def send_data(self, code: int, tid: int, payload: bytes) -> None:
        await self.host.write_transfer(data_header(code, tid, len(payload)) + payload)

    async def send_data_stream(
        self, code: int, tid: int, length: int, chunks: AsyncIterator[bytes] | list[bytes]
    ) -> None:
        header = data_header(code, tid, length)
        sent = 0
        pending = header

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
        raw = await self.host.read_transfer()
        return self._parse_response(raw, tid)

    def _parse_response(self, raw: bytes, tid: int) -> Response:
        if len(raw) < HEADER_SIZE:
            raise ProtocolMismatch(f"short container {raw!r}")
        header = parse_header(raw)
        if header.type != ContainerType.RESPONSE:
            raise ProtocolMismatch(f"expected a response, got container type {header.type}")
        if header.length != len(raw):
            raise ProtocolMismatch(f"response length {header.length} != {len(raw)}")
        if header.transaction_id != tid:
            raise ProtocolMismatch(f"response for tid {header.transaction_id}, expected {tid}")
        count = (len(raw) - HEADER_SIZE) // 4
        params = struct.unpack_from(f"<{count}I", raw, HEADER_SIZE)
        return Response(header.code, params, tid)

    async def read_data_or_response(self, tid: int) -> tuple[bytes | None, Response]:
        """Read a data phase (if the responder sends one) and the response.

        A transfer ends only at a short packet, so a responder that forgets
        the zero-length packet after packet-aligned data makes the data
        phase swallow the response, and the length check below fails.
        """
        first = await self.host.read_transfer()
        header = parse_header(first)
        if header.type == ContainerType.RESPONSE:
            return None, self._parse_response(first, tid)
        if header.type != ContainerType.DATA:
            raise ProtocolMismatch(f"unexpected container type {header.type}")
        if header.transaction_id != tid:
            raise ProtocolMismatch("data phase for another transaction")
        if header.length != UNKNOWN_LENGTH and header.length != len(first):
            raise ProtocolMismatch(
                f"data container says {header.length} bytes, transfer carried {len(first)}"
            )
        return first[HEADER_SIZE:], await self.read_response(tid)

    async def transaction(
        self, code: int, *params: int, data: bytes | None = None
    ) -> Result:
        tid = await self.command(code, *params)
        if data is not None:
            await self.send_data(code, tid, data)
            return Result(await self.read_response(tid), None)
        payload, response = await self.read_data_or_response(tid)
        return Result(response, payload)

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
        self, storage_id: int = 0xFFFFFFFF, parent: int = 0xFFFFFFFF, format_code: int = 0
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
        parent: int = 0xFFFFFFFF,
        format_code: int = 0x3000,
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
        self, name: str, *, storage_id: int = 0, parent: int = 0xFFFFFFFF
    ) -> Response:
        info = ObjectInfoData(
            storage_id=storage_id,
            object_format=0x3001,
            protection_status=0,
            compressed_size=0,
            parent_object=parent,
            association_type=1,
            filename=name,
        )
        r = await self.transaction(
            OperationCode.SEND_OBJECT_INFO, storage_id, parent, data=build_object_info(info)
        )
        return r.response
