"""The backup servers' toolkit as an MTP storage: keys, entries, uploads and codes.

Everything the tree does lives in :mod:`engine.serverkit`; this module only
translates: toolkit keys are MTP object keys, :class:`~engine.serverkit.Entry`
becomes :class:`ObjectEntry`, toolkit uploads become MTP uploads, and each
:class:`~engine.serverkit.ErrorKind` becomes the MTP response code below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import trio

from engine import serverkit
from engine.serverkit import BackupServer, EntryKind, ErrorKind, ServerConfig, ServerError
from mtp_responder.core.codes import AccessCapability, ObjectFormat, ResponseCode, StorageType
from mtp_responder.provider import (
    DataProvider,
    NewObject,
    ObjectEntry,
    ProviderContext,
    ProviderError,
    Storage,
    StorageDescription,
    Upload,
    join_key,
    validate_name,
)

from .options import Options

MTP_CODES: dict[ErrorKind, ResponseCode] = {
    ErrorKind.NOT_FOUND: ResponseCode.INVALID_OBJECT_HANDLE,
    ErrorKind.DENIED: ResponseCode.ACCESS_DENIED,
    ErrorKind.BAD_NAME: ResponseCode.INVALID_PARAMETER,
    ErrorKind.NO_SPACE: ResponseCode.STORE_FULL,
    ErrorKind.BAD_DATA: ResponseCode.INVALID_DATASET,
    ErrorKind.INCOMPLETE: ResponseCode.INCOMPLETE_TRANSFER,
    ErrorKind.BUSY: ResponseCode.DEVICE_BUSY,
    ErrorKind.UNAVAILABLE: ResponseCode.STORE_NOT_AVAILABLE,
    ErrorKind.FAILED: ResponseCode.GENERAL_ERROR,
}

FORMATS: dict[EntryKind, int] = {
    EntryKind.FOLDER: ObjectFormat.ASSOCIATION,
    EntryKind.ARCHIVE: ObjectFormat.UNDEFINED,
    EntryKind.RECEIVED: ObjectFormat.UNDEFINED,
    EntryKind.STATUS: ObjectFormat.TEXT,
}


def mtp_code(engine_code: int) -> ResponseCode:
    """The MTP answer for an engine error code (the engine keeps SBE's numbers)."""
    return MTP_CODES[serverkit.kind_of(engine_code)]


def provider_error(exc: ServerError) -> ProviderError:
    return ProviderError(MTP_CODES[exc.kind], exc.reason)


def object_entry(entry: serverkit.Entry) -> ObjectEntry:
    return ObjectEntry(
        key=entry.key,
        name=entry.name,
        is_folder=entry.is_folder,
        size=entry.size,
        format=FORMATS[entry.kind],
        mtime=entry.mtime,
        ctime=entry.mtime,
        puid=entry.uid,
        read_only=entry.read_only,
    )


class BackupRestoreStorage(Storage):
    def __init__(self, provider: BackupRestoreProvider) -> None:
        self.p = provider
        self.server = provider.server

    def describe(self) -> StorageDescription:
        capacity, free = self.server.space()
        return StorageDescription(
            description=self.p.opts.description,
            volume_label="backup",
            storage_type=StorageType.FIXED_RAM,
            access=AccessCapability.READ_WRITE,
            max_capacity=capacity,
            free_space=free,
        )

    async def list(self, folder_key: str) -> Sequence[ObjectEntry]:
        try:
            return [object_entry(e) for e in await self.server.list(folder_key)]
        except ServerError as exc:
            raise provider_error(exc) from exc

    async def stat(self, key: str) -> ObjectEntry:
        try:
            return object_entry(await self.server.stat(key))
        except ServerError as exc:
            raise provider_error(exc) from exc

    async def read(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        stream = self.server.open_read(key, offset, length)
        try:
            async for chunk in stream:
                yield chunk
        except ServerError as exc:
            raise provider_error(exc) from exc
        finally:
            await stream.aclose()

    async def create(self, new: NewObject) -> Upload:
        validate_name(new.name)
        size = None if new.size < 0 else new.size
        try:
            upload = await self.server.create(join_key(new.parent_key, new.name), size)
        except ServerError as exc:
            raise provider_error(exc) from exc
        return _MtpUpload(upload)

    async def create_folder(self, parent_key: str, name: str) -> ObjectEntry:
        raise ProviderError(ResponseCode.ACCESS_DENIED, "this storage has a fixed layout")

    async def delete(self, key: str) -> None:
        try:
            await self.server.delete(key)
        except ServerError as exc:
            raise provider_error(exc) from exc


class _MtpUpload(Upload):
    """A toolkit upload answering in MTP response codes."""

    def __init__(self, upload: serverkit.Upload) -> None:
        self.upload = upload
        self.key = upload.key

    async def write(self, data: bytes | memoryview) -> None:
        try:
            await self.upload.write(data)
        except ServerError as exc:
            raise provider_error(exc) from exc

    async def commit(self) -> ObjectEntry:
        try:
            return object_entry(await self.upload.commit())
        except ServerError as exc:
            raise provider_error(exc) from exc

    async def abort(self) -> None:
        await self.upload.abort()


class _Events:
    """Toolkit change notifications as the framework's object events."""

    def __init__(self, provider: BackupRestoreProvider) -> None:
        self.p = provider

    def added(self, key: str) -> None:
        self.p.context.object_added(self.p.storage, key)

    def removed(self, key: str) -> None:
        self.p.context.object_removed(self.p.storage, key)

    def changed(self, key: str) -> None:
        self.p.context.object_changed(self.p.storage, key)


class BackupRestoreProvider(DataProvider):
    """Owns the toolkit's backup server for the host's sessions."""

    def __init__(self, name: str, options: dict[str, Any], context: ProviderContext) -> None:
        super().__init__(name, options, context)
        self.opts = Options.parse(name, options)
        state_dir = Path(getattr(context, "state_dir", "/var/lib/mtp-responder"))
        config = ServerConfig(
            spool_dir=state_dir / "backup-restore",
            socket=self.opts.socket,
            idle_timeout=self.opts.idle_timeout,
            resume_window=self.opts.resume_window,
            space_path=self.opts.space_path,
            recipients=self.opts.recipients,
            identities=self.opts.identities,
        )
        self.server = BackupServer(config, _Events(self))
        self.storage = BackupRestoreStorage(self)

    def storages(self) -> Sequence[Storage]:
        return [self.storage]

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.server.run(task_status=task_status)

    async def session_closed(self) -> None:
        """CloseSession, ResetDevice and an unplug all end here: back to Normal.

        Or, when the host stopped in the middle of an archive, the backup is
        held for ``resume_window`` seconds so its next session reads the rest.
        """
        await self.server.session_closed()
