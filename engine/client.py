"""Client library of the engine (the backup server role), async with a sync wrapper.

Backup servers — the MTP Backup & Restore data provider, the ``backup-engine`` CLI,
any other tool — use this module only; it speaks the socket protocol of
:mod:`engine.wire.protocol` and never touches data owners' files itself.

Two levels:

* one call per client operation of the socket protocol (list owners, BUR mode,
  SID status, public lists, request / supply data per (owner, drive, transfer
  type), ...; engine/README.md, Wire protocol), and
* high-level calls for serving archives: :meth:`EngineClient.prepare_backup`
  (exact sizes up front), :meth:`EngineClient.read_archive` (any byte range),
  :meth:`EngineClient.restore_archive` (staged, verified, atomic per owner).

Disconnecting puts the engine back in Normal mode and tells every data owner.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import trio

from .errors import ArgumentError, GeneralError
from .types import (
    ArchiveInfo,
    BackupIncType,
    BURMode,
    DataOwnerInfo,
    DataOwnerStatus,
    FileEntry,
    ModeInfo,
    OwnerResult,
    RestoreResult,
    TransferType,
)
from .wire.rpc import Connection, Download, open_session

__all__ = [
    "ArchiveInfo",
    "ArchiveStream",
    "EngineClient",
    "OwnerResult",
    "PreparedBackup",
    "PublicPage",
    "RestoreResult",
    "SyncEngineClient",
    "default_socket_path",
]

T = TypeVar("T")
Progress = Callable[[int], None]
CHUNK = 1 << 20


def default_socket_path() -> Path:
    return Path(os.environ.get("BACKUP_ENGINE_SOCKET", "/run/backup-engine/engine.sock"))


@dataclass
class PreparedBackup:
    """What a prepared backup offers: archive names with their exact sizes."""

    backup_id: str
    mode: str
    archives: list[ArchiveInfo]
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def archive(self, kind: str, sid: int | None = None) -> ArchiveInfo:
        for a in self.archives:
            if a.kind == kind and (sid is None or a.sid == sid):
                return a
        raise KeyError(kind)

    @classmethod
    def from_wire(cls, d: object) -> PreparedBackup:
        if not isinstance(d, dict):
            raise GeneralError("malformed prepare_backup answer")
        arch = d.get("archives") or []
        skipped = d.get("skipped") or []
        assert isinstance(arch, list) and isinstance(skipped, list)
        return cls(
            str(d["backup_id"]),
            str(d["mode"]),
            [ArchiveInfo.from_wire(a) for a in arch],
            [(int(s["sid"]), str(s["reason"])) for s in skipped],
        )


@dataclass
class PublicPage:
    entries: list[FileEntry]
    finished: bool
    cursor: int


class ArchiveStream:
    """Bytes of a prepared archive from an offset; iterate, or ``aclose()`` early."""

    def __init__(self, client: EngineClient, args: dict[str, object]) -> None:
        self._client = client
        self._args = args
        self._dl: Download | None = None
        self.changed: list[int] = []

    async def __aenter__(self) -> ArchiveStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> ArchiveStream:
        return self

    async def __anext__(self) -> bytes:
        if self._dl is None:
            self._dl = await self._client.conn.download("read_archive", self._args)
        chunk = await self._dl.receive()
        if chunk is None:
            res = self._dl.result
            if isinstance(res, dict) and isinstance(res.get("changed"), list):
                self.changed = [int(x) for x in res["changed"]]
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        if self._dl is not None and not self._dl.done:
            await self._dl.cancel()


class EngineClient:
    """One session with the engine; use :meth:`connect` as an async context manager."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.mode = ModeInfo()
        self.mode_changed = trio.Event()

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, socket_path: Path | str | None = None, role: str = "client", **hello: object
    ) -> AsyncIterator[EngineClient]:
        path = str(socket_path or default_socket_path())
        client: EngineClient | None = None

        async def on_event(ev: object) -> None:
            if client is not None and isinstance(ev, dict) and ev.get("event") == "mode":
                client.mode = ModeInfo.from_wire(ev)
                client.mode_changed.set()
                client.mode_changed = trio.Event()

        hello_args = {"role": role, "protocol": 1, **hello}
        async with open_session(path, hello_args, None, on_event) as (conn, ans):
            client = cls(conn)
            if isinstance(ans, dict) and isinstance(ans.get("mode"), dict):
                client.mode = ModeInfo.from_wire(ans["mode"])
            yield client

    async def _call(self, op: str, **args: object) -> Any:
        return await self.conn.call(op, args)

    # ------------------------------------------------------------ client operations
    async def list_data_owners(self) -> list[DataOwnerInfo]:
        """Rescan registrations (Normal mode only) and list the owners."""
        res = await self._call("list_data_owners")
        return [DataOwnerInfo.from_wire(x) for x in res]

    async def set_bur_mode(
        self,
        mode: BURMode,
        inc: BackupIncType = BackupIncType.NO_BACKUP,
        drives: Sequence[str] = (),
    ) -> None:
        await self._call("set_bur_mode", mode=int(mode), inc=int(inc), drives=list(drives))

    async def set_normal(self) -> None:
        """Leave backup/restore mode: owners are told, prepared archives dropped."""
        await self.set_bur_mode(BURMode.NORMAL)

    async def set_partial_sids(self, sids: Iterable[int]) -> None:
        await self._call("set_partial_sids", sids=list(sids))

    async def sid_status(self, sids: Iterable[int]) -> dict[int, DataOwnerStatus]:
        res = await self._call("sid_status", sids=list(sids))
        return {int(s): DataOwnerStatus(int(st)) for s, st in res}

    async def mode_info(self) -> ModeInfo:
        return ModeInfo.from_wire(await self._call("mode_info"))

    async def public_file_list(self, drive: str, sid: int) -> list[FileEntry]:
        res = await self._call("public_file_list", drive=drive, sid=sid)
        return [FileEntry.from_wire(x) for x in res]

    async def public_file_list_page(
        self, drive: str, sid: int, cursor: int = 0, max_size: int = 65536
    ) -> PublicPage:
        res = await self._call(
            "public_file_list_page", drive=drive, sid=sid, cursor=cursor, max_size=max_size
        )
        return PublicPage(
            [FileEntry.from_wire(x) for x in res["entries"]],
            bool(res["finished"]),
            int(res["cursor"]),
        )

    async def raw_public_file_list(self, drive: str, sid: int) -> list[tuple[bool, str]]:
        res = await self._call("raw_public_file_list", drive=drive, sid=sid)
        return [(bool(i), str(p)) for i, p in res]

    async def expected_data_size(self, sid: int, drive: str, ttype: TransferType) -> int:
        return int(await self._call("expected_data_size", sid=sid, drive=drive, type=int(ttype)))

    async def all_snapshots_supplied(self) -> None:
        await self._call("all_snapshots_supplied")

    async def all_system_files_restored(self) -> None:
        await self._call("all_system_files_restored")

    async def request_data_chunk(
        self, sid: int, drive: str, ttype: TransferType, max_bytes: int | None = None
    ) -> tuple[bytes, bool]:
        """One chunk of a stream and whether it was the last (engine/README.md, Transfer types)."""
        d = await self.conn.download(
            "request_data",
            {"sid": sid, "drive": drive, "type": int(ttype), "max_bytes": max_bytes or 0},
        )
        parts = []
        while (c := await d.receive()) is not None:
            parts.append(c)
        res = d.result
        fin = bool(res.get("finished")) if isinstance(res, dict) else False
        return b"".join(parts), fin

    async def request_data(
        self, sid: int, drive: str, ttype: TransferType, max_bytes: int | None = None
    ) -> AsyncIterator[bytes]:
        """The whole stream, chunk by chunk (back-pressure: one chunk in flight)."""
        while True:
            data, fin = await self.request_data_chunk(sid, drive, ttype, max_bytes)
            if data:
                yield data
            if fin:
                return

    async def supply_data_chunk(
        self, sid: int, drive: str, ttype: TransferType, data: bytes, finished: bool
    ) -> None:
        """Feed one chunk; ``finished`` on the last chunk of the stream."""
        up = await self.conn.upload(
            "supply_data", {"sid": sid, "drive": drive, "type": int(ttype), "finished": finished}
        )
        try:
            await up.send(data)
        except BaseException:
            await up.abort()
            raise
        await up.finish()

    async def supply_data(
        self, sid: int, drive: str, ttype: TransferType, source: bytes | AsyncIterable[bytes]
    ) -> None:
        """Feed a whole stream from bytes or an async iterable of chunks."""
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            for i in range(0, max(len(data), 1), CHUNK):
                piece = data[i : i + CHUNK]
                await self.supply_data_chunk(sid, drive, ttype, piece, i + CHUNK >= len(data))
            return
        pending: bytes | None = None
        async for chunk in source:
            if pending is not None:
                await self.supply_data_chunk(sid, drive, ttype, pending, False)
            pending = bytes(chunk)
        await self.supply_data_chunk(sid, drive, ttype, pending or b"", True)

    # ------------------------------------------------------------ high level
    async def prepare_backup(
        self,
        sids: Iterable[int] | None = None,
        previous: bytes | AsyncIterable[bytes] | None = None,
        drives: Sequence[str] = (),
    ) -> PreparedBackup:
        """Enter backup mode and plan the archives (full, per owner, snapshot).

        ``sids`` makes it a partial backup; ``previous`` (the bytes of an earlier
        ``.snapshot`` or ``.mbak``) makes it incremental. Sizes in the answer are
        exact. The engine stays in backup mode until :meth:`set_normal` or until
        this client disconnects.
        """
        args: dict[str, object] = {"drives": list(drives)}
        if sids is not None:
            args["sids"] = list(sids)
        up = await self.conn.upload("prepare_backup", args)
        try:
            if isinstance(previous, bytes | bytearray | memoryview):
                await up.send(bytes(previous))
            elif previous is not None:
                async for chunk in previous:
                    await up.send(chunk)
        except BaseException:
            await up.abort()
            raise
        return PreparedBackup.from_wire(await up.finish())

    def read_archive(self, name: str, offset: int = 0, length: int = -1) -> ArchiveStream:
        """Stream ``length`` bytes (-1: to the end) of a prepared archive from ``offset``."""
        if offset < 0:
            raise ArgumentError("negative offset")
        return ArchiveStream(self, {"name": name, "offset": offset, "length": length})

    async def restore_archive(
        self, source: AsyncIterable[bytes], sids: Iterable[int] | None = None
    ) -> RestoreResult:
        """Restore from an archive stream; bad data gives a result with a code, not an exception."""
        args: dict[str, object] = {}
        if sids is not None:
            args["sids"] = list(sids)
        up = await self.conn.upload("restore_archive", args)
        try:
            async for chunk in source:
                await up.send(chunk)
        except BaseException:
            await up.abort()
            raise
        res = await up.finish()
        if not isinstance(res, dict):
            raise GeneralError("malformed restore answer")
        return RestoreResult.from_wire(res)

    async def release_backup(self) -> None:
        await self._call("release_backup")


async def file_chunks(f: BinaryIO, progress: Progress | None = None) -> AsyncIterator[bytes]:
    while True:
        chunk = await trio.to_thread.run_sync(f.read, CHUNK)
        if not chunk:
            return
        if progress:
            progress(len(chunk))
        yield chunk


class SyncEngineClient:
    """Blocking wrapper: runs an :class:`EngineClient` in a private trio thread."""

    def __init__(self, socket_path: Path | str | None = None, role: str = "client") -> None:
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._client: EngineClient | None = None
        self._stop: trio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(socket_path, role), daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _run(self, path: Path | str | None, role: str) -> None:
        async def main() -> None:
            try:
                async with EngineClient.connect(path, role) as c:
                    self._client = c
                    self._token = trio.lowlevel.current_trio_token()
                    self._stop = trio.Event()
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as e:
                self._error = e
                self._ready.set()

        trio.run(main)

    def _do(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self._client is None or self._token is None:
            raise GeneralError("not connected")
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    @property
    def client(self) -> EngineClient:
        assert self._client is not None
        return self._client

    def close(self) -> None:
        if self._token is not None and self._stop is not None:
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join()

    def __enter__(self) -> SyncEngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list_data_owners(self) -> list[DataOwnerInfo]:
        return self._do(self.client.list_data_owners)

    def set_bur_mode(
        self,
        mode: BURMode,
        inc: BackupIncType = BackupIncType.NO_BACKUP,
        drives: Sequence[str] = (),
    ) -> None:
        self._do(self.client.set_bur_mode, mode, inc, drives)

    def set_normal(self) -> None:
        self._do(self.client.set_normal)

    def set_partial_sids(self, sids: Iterable[int]) -> None:
        self._do(self.client.set_partial_sids, list(sids))

    def sid_status(self, sids: Iterable[int]) -> dict[int, DataOwnerStatus]:
        return self._do(self.client.sid_status, list(sids))

    def mode_info(self) -> ModeInfo:
        return self._do(self.client.mode_info)

    def public_file_list(self, drive: str, sid: int) -> list[FileEntry]:
        return self._do(self.client.public_file_list, drive, sid)

    def public_file_list_page(
        self, drive: str, sid: int, cursor: int = 0, max_size: int = 65536
    ) -> PublicPage:
        return self._do(self.client.public_file_list_page, drive, sid, cursor, max_size)

    def raw_public_file_list(self, drive: str, sid: int) -> list[tuple[bool, str]]:
        return self._do(self.client.raw_public_file_list, drive, sid)

    def expected_data_size(self, sid: int, drive: str, ttype: TransferType) -> int:
        return self._do(self.client.expected_data_size, sid, drive, ttype)

    def all_snapshots_supplied(self) -> None:
        self._do(self.client.all_snapshots_supplied)

    def all_system_files_restored(self) -> None:
        self._do(self.client.all_system_files_restored)

    def request_data_chunk(
        self, sid: int, drive: str, ttype: TransferType, max_bytes: int | None = None
    ) -> tuple[bytes, bool]:
        return self._do(self.client.request_data_chunk, sid, drive, ttype, max_bytes)

    def request_data_to(self, sid: int, drive: str, ttype: TransferType, out: BinaryIO) -> int:
        n = 0
        while True:
            data, fin = self.request_data_chunk(sid, drive, ttype)
            out.write(data)
            n += len(data)
            if fin:
                return n

    def supply_data_chunk(
        self, sid: int, drive: str, ttype: TransferType, data: bytes, finished: bool
    ) -> None:
        self._do(self.client.supply_data_chunk, sid, drive, ttype, data, finished)

    def supply_data_from(self, sid: int, drive: str, ttype: TransferType, f: BinaryIO) -> None:
        chunk = f.read(CHUNK)
        while True:
            nxt = f.read(CHUNK) if chunk else b""
            self.supply_data_chunk(sid, drive, ttype, chunk, not nxt)
            if not nxt:
                return
            chunk = nxt

    def prepare_backup(
        self,
        sids: Iterable[int] | None = None,
        previous: Path | None = None,
        drives: Sequence[str] = (),
    ) -> PreparedBackup:
        async def run() -> PreparedBackup:
            if previous is None:
                return await self.client.prepare_backup(sids, None, drives)
            with open(previous, "rb") as f:
                return await self.client.prepare_backup(sids, file_chunks(f), drives)

        return self._do(run)

    def read_archive_to(
        self,
        name: str,
        out: BinaryIO,
        offset: int = 0,
        length: int = -1,
        progress: Progress | None = None,
    ) -> int:
        async def run() -> int:
            n = 0
            async with self.client.read_archive(name, offset, length) as s:
                async for chunk in s:
                    await trio.to_thread.run_sync(out.write, chunk)
                    n += len(chunk)
                    if progress:
                        progress(len(chunk))
            return n

        return self._do(run)

    def restore_archive_from(
        self, f: BinaryIO, sids: Iterable[int] | None = None, progress: Progress | None = None
    ) -> RestoreResult:
        async def run() -> RestoreResult:
            return await self.client.restore_archive(file_chunks(f, progress), sids)

        return self._do(run)

    def release_backup(self) -> None:
        self._do(self.client.release_backup)
