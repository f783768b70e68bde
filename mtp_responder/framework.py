"""The object model shared by every data provider.

The framework numbers storages and objects, routes a handle to the provider
that owns it, and turns provider change notifications into MTP events.
Providers only ever see their own keys.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .config import Config
from .core.codes import ALL, EventCode, ResponseCode
from .handles import HandleTable
from .properties import ObjectView
from .provider import DataProvider, ObjectEntry, ProviderError, Storage

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mtp_responder.data_providers"

EventSink = Callable[[EventCode, tuple[int, ...]], None]

ECHO_WINDOW = 2.0
"""Seconds during which change notifications about an object the host has
just changed are taken for echoes of that change (the files provider's
watcher reports a burst of writes up to a second late)."""


def load_plugin(plugin: str) -> Any:
    """The provider class registered under ``plugin``.

    A dotted ``module:Class`` path is accepted too, so a provider under
    development can be tried without installing an entry point.
    """
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == plugin:
            return ep.load()
    if ":" in plugin:
        module_name, _, attr = plugin.partition(":")
        module = __import__(module_name, fromlist=[attr])
        return getattr(module, attr)
    known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    raise LookupError(f"no data provider plugin {plugin!r} (installed: {', '.join(known)})")


class Framework:
    """Storages, handles and events; the providers' :class:`ProviderContext`."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = state_dir or Path("/var/lib/mtp-responder")
        self.providers: list[DataProvider] = []
        self.handles = HandleTable()
        self._storages: dict[int, Storage] = {}
        self._storage_ids: dict[int, int] = {}  # id(storage) -> storage id
        self._next_storage = 1
        self._event_sink: EventSink | None = None
        self._host_changed: dict[tuple[int, str], float] = {}
        self._deferred: list[Callable[[], None]] | None = None
        self._host_operation = _HostOperation(self)

    @classmethod
    def from_config(cls, config: Config) -> Framework:
        framework = cls(config.state_dir)
        for pc in config.providers:
            factory = load_plugin(pc.plugin)
            framework.add_provider(factory(pc.name, dict(pc.options), framework))
        return framework

    def add_provider(self, provider: DataProvider) -> None:
        self.providers.append(provider)
        for storage in provider.storages():
            self._register(storage)

    def set_event_sink(self, sink: EventSink | None) -> None:
        """Where events go; the server sets this only while a session is open."""
        self._event_sink = sink

    # -- storages ----------------------------------------------------------

    def _register(self, storage: Storage) -> int:
        sid = self._storage_ids.get(id(storage))
        if sid is None:
            sid = (self._next_storage << 16) | 0x0001
            self._next_storage += 1
            self._storage_ids[id(storage)] = sid
            self._storages[sid] = storage
        return sid

    @property
    def storage_ids(self) -> list[int]:
        return list(self._storages)

    def storage(self, storage_id: int) -> Storage:
        try:
            return self._storages[storage_id]
        except KeyError:
            raise ProviderError(
                ResponseCode.INVALID_STORAGE_ID, f"no storage {storage_id:#x}"
            ) from None

    def storage_id(self, storage: Storage) -> int:
        return self._storage_ids[id(storage)]

    def storages_for(self, storage_id: int) -> Sequence[int]:
        """Storage ids named by a request parameter (0xFFFFFFFF means all)."""
        if storage_id == ALL:
            return self.storage_ids
        self.storage(storage_id)
        return [storage_id]

    # -- objects -------------------------------------------------------------

    def resolve(self, handle: int) -> tuple[int, Storage, str]:
        sid, key = self.handles.lookup(handle)
        storage = self._storages.get(sid)
        if storage is None:
            self.handles.forget_storage(sid)
            raise ProviderError(ResponseCode.INVALID_OBJECT_HANDLE, f"{handle:#x}: storage gone")
        return sid, storage, key

    async def entry(self, handle: int) -> tuple[int, Storage, ObjectEntry]:
        sid, storage, key = self.resolve(handle)
        try:
            entry = await storage.stat(key)
        except ProviderError as exc:
            if exc.code == ResponseCode.INVALID_OBJECT_HANDLE:
                self.handles.forget(sid, key)
            raise
        return sid, storage, entry

    def view(self, storage_id: int, entry: ObjectEntry) -> ObjectView:
        handle_for = self.handles.handle_for
        key = entry.key
        parent = key.rpartition("/")[0]  # entry.parent_key, without a call per object
        parent_handle = handle_for(storage_id, parent) if parent else 0
        return ObjectView(entry, handle_for(storage_id, key), storage_id, parent_handle)

    def parent_key(self, storage_id: int, parent_handle: int) -> str:
        """The key named by a ParentObject parameter (0 or 0xFFFFFFFF: root)."""
        if parent_handle in (0, ALL):
            return ""
        sid, key = self.handles.lookup(parent_handle)
        if sid != storage_id:
            raise ProviderError(ResponseCode.INVALID_PARENT_OBJECT, "parent is in another storage")
        return key

    # -- the host's own changes ------------------------------------------------

    def host_operation(self) -> _HostOperation:
        """Hold provider notifications while the host changes objects.

        A notification about an object the host is creating (a copy that
        lands before the operation has given it a handle) would otherwise
        reach the host as news; held back until the operation is over, it
        finds the handle, or the object marked by :meth:`host_changed`.
        Entered around every operation, so it is a plain object rather than
        a generator-based context manager.
        """
        return self._host_operation

    def host_changed(self, storage_id: int, key: str) -> None:
        """The host changed this object: notifications about it are echoes."""
        now = time.monotonic()
        if len(self._host_changed) > 1024:
            self._host_changed = {k: t for k, t in self._host_changed.items() if t > now}
        self._host_changed[(storage_id, key)] = now + ECHO_WINDOW

    def _is_echo(self, storage_id: int, key: str) -> bool:
        deadline = self._host_changed.get((storage_id, key))
        if deadline is None:
            return False
        if deadline < time.monotonic():
            del self._host_changed[(storage_id, key)]
            return False
        return True

    def _held(self, notification: Callable[[], None]) -> bool:
        if self._deferred is None:
            return False
        self._deferred.append(notification)
        return True

    # -- ProviderContext -----------------------------------------------------

    def _emit(self, code: EventCode, *params: int) -> None:
        if self._event_sink is not None:
            self._event_sink(code, params)

    def object_added(self, storage: Storage, key: str) -> None:
        if self._held(lambda: self.object_added(storage, key)):
            return
        sid = self._storage_ids.get(id(storage))
        if sid is None or self.handles.known(sid, key) is not None:
            return  # ours already (the host made it) or an unknown storage
        if self._is_echo(sid, key):
            return
        self._emit(EventCode.OBJECT_ADDED, self.handles.handle_for(sid, key))

    def object_removed(self, storage: Storage, key: str) -> None:
        if self._held(lambda: self.object_removed(storage, key)):
            return
        sid = self._storage_ids.get(id(storage))
        if sid is None:
            return
        handle = self.handles.known(sid, key)
        self.handles.forget(sid, key)
        if handle is not None:
            self._emit(EventCode.OBJECT_REMOVED, handle)

    def object_changed(self, storage: Storage, key: str) -> None:
        if self._held(lambda: self.object_changed(storage, key)):
            return
        sid = self._storage_ids.get(id(storage))
        handle = None if sid is None else self.handles.known(sid, key)
        if handle is not None and sid is not None and not self._is_echo(sid, key):
            self._emit(EventCode.OBJECT_INFO_CHANGED, handle)

    def object_moved(self, storage: Storage, old_key: str, new_key: str) -> None:
        if self._held(lambda: self.object_moved(storage, old_key, new_key)):
            return
        sid = self._storage_ids.get(id(storage))
        if sid is None:
            return
        handle = self.handles.known(sid, old_key)
        if handle is None:
            self.object_added(storage, new_key)
            return
        self.handles.rekey(sid, old_key, new_key)
        self._emit(EventCode.OBJECT_INFO_CHANGED, handle)

    def storage_added(self, storage: Storage) -> None:
        self._emit(EventCode.STORE_ADDED, self._register(storage))

    def storage_removed(self, storage: Storage) -> None:
        sid = self._storage_ids.pop(id(storage), None)
        if sid is None:
            return
        del self._storages[sid]
        self.handles.forget_storage(sid)
        self._emit(EventCode.STORE_REMOVED, sid)


class _HostOperation:
    """The context of :meth:`Framework.host_operation`."""

    __slots__ = ("_framework",)

    def __init__(self, framework: Framework) -> None:
        self._framework = framework

    def __enter__(self) -> None:
        self._framework._deferred = []

    def __exit__(self, *exc_info: object) -> None:
        framework = self._framework
        deferred, framework._deferred = framework._deferred, None
        for notification in deferred or ():
            notification()
