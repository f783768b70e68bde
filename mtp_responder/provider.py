"""The data-provider plugin interface.

A data provider exposes one or more *storages*; the framework owns object
handles, sessions, datasets and the wire.  A provider never sees USB, handles
or containers: it names its objects with *keys*, POSIX-style relative paths
inside its storage (``""`` is the storage root, ``"DCIM/a.jpg"`` a file), and
answers in :class:`ObjectEntry` records.  Keys were chosen over opaque ids
because every storage we ship is a tree and a path lets the framework re-key
a moved subtree in one pass.

Errors are reported by raising :class:`ProviderError` with the MTP response
code the host should see; anything else a provider raises becomes
GeneralError and is logged, and the responder keeps serving.

Plugins are found through the entry-point group
``mtp_responder.data_providers``: the entry point names a class that is
called as ``cls(name, options, context)`` where ``options`` is the provider's
table from the config file.
"""

from __future__ import annotations

import abc
import posixpath
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .core.codes import AccessCapability, ObjectFormat, ResponseCode, StorageType


class ProviderError(Exception):
    """A failure the host should see as ``code``."""

    def __init__(self, code: ResponseCode, message: str = "") -> None:
        super().__init__(message or code.name)
        self.code = code


@dataclass(slots=True)
class StorageDescription:
    """What a storage says about itself (the StorageInfo dataset's content)."""

    description: str
    volume_label: str = ""
    storage_type: StorageType = StorageType.FIXED_RAM
    access: AccessCapability = AccessCapability.READ_WRITE
    max_capacity: int = 0
    free_space: int = 0
    free_objects: int = 0x40000000


@dataclass(slots=True)
class ObjectEntry:
    """An object as the provider sees it, at the moment of the call.

    ``size`` is re-read on every call: stale sizes are the most common
    complaint about peers (a file appended behind the responder's back).
    """

    key: str
    name: str
    is_folder: bool
    size: int = 0
    format: int = ObjectFormat.UNDEFINED
    mtime: float = 0.0
    ctime: float = 0.0
    puid: int = 0
    hidden: bool = False
    read_only: bool = False
    extra: dict[int, Any] = field(default_factory=dict)
    """Extra object properties (ObjectProp code → value) the provider knows."""

    @property
    def parent_key(self) -> str | None:
        """The key of the containing folder; ``None`` for the root itself."""
        if self.key == "":
            return None
        return posixpath.dirname(self.key)


@dataclass(slots=True)
class NewObject:
    """What the host declared in SendObjectInfo / SendObjectPropList."""

    parent_key: str
    name: str
    format: int
    size: int
    """Declared size in bytes, or -1 when the host did not say (a 32-bit
    ObjectInfo holds 0xFFFFFFFF for objects of 4 GiB and more)."""
    mtime: float | None = None
    is_folder: bool = False


class Upload(abc.ABC):
    """The receiving end of a SendObject (or SendPartialObject) data phase.

    The framework calls :meth:`write` for each chunk, then exactly one of
    :meth:`commit` or :meth:`abort`.  ``commit`` returns only when the data
    is durable (or applied, for a restore): its answer becomes the
    SendObject response.  ``abort`` must leave nothing half-written.

    ``key`` is where the object will appear once committed; the framework
    hands out its handle at SendObjectInfo time, before any data arrives.
    """

    key: str

    @abc.abstractmethod
    async def write(self, data: bytes | memoryview) -> None: ...

    @abc.abstractmethod
    async def commit(self) -> ObjectEntry: ...

    @abc.abstractmethod
    async def abort(self) -> None: ...


class Storage(abc.ABC):
    """One MTP storage.  Methods that a read-only storage does not support
    keep the default implementation, which answers StoreReadOnly."""

    @abc.abstractmethod
    def describe(self) -> StorageDescription:
        """Fresh capacity and free space; called on every GetStorageInfo."""

    @abc.abstractmethod
    async def list(self, folder_key: str) -> Sequence[ObjectEntry]:
        """The children of a folder (``""`` = root), in a stable order."""

    @abc.abstractmethod
    async def stat(self, key: str) -> ObjectEntry:
        """One object; InvalidObjectHandle if it has gone."""

    @abc.abstractmethod
    def read(self, key: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream ``length`` bytes (all when ``None``) from ``offset``.

        Chunks are bounded (a few hundred KiB) so that memory stays flat
        whatever the object's size.
        """

    async def size_for_read(self, key: str) -> int:
        """The exact number of bytes :meth:`read` will produce from offset 0."""
        return (await self.stat(key)).size

    async def create(self, new: NewObject) -> Upload:
        """Start receiving a new file (SendObjectInfo).

        Check free space and name collisions here, up front: this call's
        errors become the SendObjectInfo response.  The returned upload sets
        ``key``; it is committed or aborted later, at SendObject time.
        """
        raise ProviderError(ResponseCode.STORE_READ_ONLY)

    async def create_folder(self, parent_key: str, name: str) -> ObjectEntry:
        raise ProviderError(ResponseCode.STORE_READ_ONLY)

    async def delete(self, key: str) -> None:
        """Delete an object (a folder with everything in it)."""
        raise ProviderError(ResponseCode.STORE_READ_ONLY)

    async def rename(self, key: str, new_name: str) -> ObjectEntry:
        raise ProviderError(ResponseCode.STORE_READ_ONLY)

    async def move(self, key: str, new_parent_key: str) -> ObjectEntry:
        raise ProviderError(ResponseCode.STORE_READ_ONLY)

    async def copy(self, key: str, new_parent_key: str) -> ObjectEntry:
        raise ProviderError(ResponseCode.STORE_READ_ONLY)

    async def set_mtime(self, key: str, mtime: float) -> ObjectEntry:
        raise ProviderError(ResponseCode.STORE_READ_ONLY)

    async def set_protection(self, key: str, read_only: bool) -> ObjectEntry:
        raise ProviderError(ResponseCode.STORE_READ_ONLY)

    async def write_at(self, key: str, offset: int) -> Upload:
        """Edit in place (SendPartialObject): bytes written land at ``offset``."""
        raise ProviderError(ResponseCode.STORE_READ_ONLY)

    async def truncate(self, key: str, size: int) -> ObjectEntry:
        raise ProviderError(ResponseCode.STORE_READ_ONLY)


class ProviderContext(Protocol):
    """What the framework offers a provider: change notifications.

    Notifications are cheap and may be called from the trio loop at any
    time; the framework turns them into MTP events only while a session is
    open, and keeps its handle table consistent in all cases.
    """

    state_dir: Path
    """Where a provider may keep state that must survive a restart."""

    def object_added(self, storage: Storage, key: str) -> None: ...

    def object_removed(self, storage: Storage, key: str) -> None: ...

    def object_changed(self, storage: Storage, key: str) -> None: ...

    def object_moved(self, storage: Storage, old_key: str, new_key: str) -> None: ...

    def storage_added(self, storage: Storage) -> None: ...

    def storage_removed(self, storage: Storage) -> None: ...


class DataProvider(abc.ABC):
    """A plugin: owns storages and reacts to session life."""

    def __init__(self, name: str, options: dict[str, Any], context: ProviderContext) -> None:
        self.name = name
        self.options = options
        self.context = context

    @abc.abstractmethod
    def storages(self) -> Sequence[Storage]:
        """The storages this provider exposes right now."""

    async def run(self, task_status: Any = None) -> None:
        """Background work for the provider's lifetime (watchers, clients).

        Started in the responder's nursery; the default has none.  Call
        ``task_status.started()`` once ready when overriding.
        """
        if task_status is not None:
            task_status.started()

    async def session_opened(self) -> None:  # noqa: B027 - optional hook
        """A host opened a session."""

    async def session_closed(self) -> None:  # noqa: B027 - optional hook
        """The session ended: CloseSession, ResetDevice, reset or unplug.

        Providers that hold device-wide state for a host (a backup mode)
        must release it here.
        """


def join_key(parent_key: str, name: str) -> str:
    return name if parent_key == "" else f"{parent_key}/{name}"


def validate_name(name: str) -> None:
    """Refuse names that could not be a single path component.

    The host chooses names; ``..``, ``/`` or NUL must never reach the
    filesystem.
    """
    if name in ("", ".", "..") or "/" in name or "\x00" in name or len(name) > 255:
        raise ProviderError(ResponseCode.INVALID_DATASET, f"invalid object name {name!r}")
