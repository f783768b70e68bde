"""MTP operations: what each request means for the framework's providers.

Each handler takes a transaction (parameters plus its data phase) and returns
a response code and parameters.  The table of handlers *is* the list of
operations advertised in DeviceInfo, so we never advertise something we
would refuse.  Errors are raised as :class:`ProviderError`; unexpected
exceptions become GeneralError and are logged, never a crash.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from .config import Config
from .core.codes import (
    ALL,
    AssociationType,
    DataType,
    EventCode,
    ObjectFormat,
    ObjectProp,
    OperationCode,
    ResponseCode,
)
from .core.datasets import (
    DatasetError,
    ObjectInfoData,
    build_device_info,
    build_object_info,
    build_u16_array,
    build_u32_array,
    decode_value,
    encode_string,
    encode_value,
    format_date,
    parse_date,
    parse_object_info,
    parse_prop_list,
    parse_u32_array,
)
from .device_props import DeviceProperties
from .formats import SUPPORTED_FORMATS
from .framework import Framework
from .properties import (
    PROPERTIES,
    SUPPORTED_CODES,
    ObjectView,
    encode_prop_list,
    prop_desc,
    prop_value,
)
from .provider import NewObject, ObjectEntry, ProviderError, Storage, join_key, validate_name
from .session import SESSIONLESS, PendingObject, Session
from .transport.base import Disconnected

if TYPE_CHECKING:
    from .server import Transaction

log = logging.getLogger(__name__)

Response = tuple[int, tuple[int, ...]]
Handler = Callable[["Operations", "Transaction"], Awaitable[Response]]

OK: Response = (ResponseCode.OK, ())

_PROPS_SUPPORTED = build_u16_array(SUPPORTED_CODES)
"""GetObjectPropsSupported's dataset, the same for every format (libmtp asks per object)."""

_HANDLERS: dict[int, Handler] = {}
_DATA_OUT: set[int] = set()


def operation(code: OperationCode, *, data_out: bool = False) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _HANDLERS[code] = fn
        if data_out:
            _DATA_OUT.add(code)
        return fn

    return register


def _u64(low: int, high: int) -> int:
    return (high << 32) | low


MAX_OFFSET = (1 << 63) - 1
"""The largest file offset or size the operating system takes (``off_t``)."""


def _offset64(low: int, high: int) -> int:
    """A 64-bit offset or size from two parameters, checked where it is decoded.

    2^63 and more fit MTP's u64 but no ``off_t``: refused as the host's
    mistake here rather than as an OverflowError deep in a storage.
    """
    value = _u64(low, high)
    if value > MAX_OFFSET:
        raise ProviderError(ResponseCode.INVALID_PARAMETER, f"offset {value} is beyond 2^63 - 1")
    return value


class Operations:
    """The responder's behaviour, independent of the transport."""

    EVENTS = (
        EventCode.OBJECT_ADDED,
        EventCode.OBJECT_REMOVED,
        EventCode.STORE_ADDED,
        EventCode.STORE_REMOVED,
        EventCode.DEVICE_PROP_CHANGED,
        EventCode.OBJECT_INFO_CHANGED,
    )

    def __init__(self, config: Config, framework: Framework) -> None:
        self.config = config
        self.framework = framework
        self.device_props = DeviceProperties(config.device, config.state_dir)
        self.session = Session()
        self.references: dict[int, list[int]] = {}
        self.event_sender: Callable[[EventCode, tuple[int, ...]], None] | None = None

    # -- plumbing -----------------------------------------------------------------

    @property
    def last_transaction_id(self) -> int:
        return self.session.last_transaction_id

    @staticmethod
    def supported() -> list[int]:
        return sorted(_HANDLERS)

    @staticmethod
    def expects_data(code: int) -> bool:
        return code in _DATA_OUT

    def _emit(self, code: EventCode, params: tuple[int, ...]) -> None:
        if self.session.is_open and self.event_sender is not None:
            self.event_sender(code, params)

    async def dispatch(self, tx: Transaction) -> Response:
        handler = _HANDLERS.get(tx.code)
        if handler is None:
            return (ResponseCode.OPERATION_NOT_SUPPORTED, ())
        if tx.code not in SESSIONLESS:
            if not self.session.is_open:
                return (ResponseCode.SESSION_NOT_OPEN, ())
            if not self.session.transaction_id_ok(tx.transaction_id):
                return (ResponseCode.INVALID_TRANSACTION_ID, ())
        if self.session.is_open and tx.code != OperationCode.OPEN_SESSION:
            self.session.last_transaction_id = tx.transaction_id
        try:
            with self.framework.host_operation():
                return await handler(self, tx)
        except ProviderError as exc:
            log.info("%s failed: %s", OperationCode(tx.code).name, exc)
            return (exc.code, ())
        except DatasetError as exc:
            log.info("%s: invalid dataset: %s", OperationCode(tx.code).name, exc)
            return (ResponseCode.INVALID_DATASET, ())
        except (Disconnected, trio.Cancelled):
            raise
        except Exception:
            log.exception("%s failed unexpectedly", OperationCode(tx.code).name)
            return (ResponseCode.GENERAL_ERROR, ())

    async def open_session(self, session_id: int) -> None:
        self.session = Session(session_id=session_id)
        self.framework.set_event_sink(self._emit)
        for provider in self.framework.providers:
            await provider.session_opened()

    async def close_session(self, why: str) -> None:
        """End the session; providers release device-wide state.

        Never raises: it runs on unplug and Device Reset, where an exception
        would stop the responder, and every provider's ``session_closed``
        runs even when an earlier step failed (the Backup & Restore provider
        returns the engine to Normal there).
        """
        if not self.session.is_open:
            return
        log.info("closing session %d (%s)", self.session.session_id, why)
        pending = self.session.pending
        self.session = Session()
        self.framework.set_event_sink(None)
        with trio.CancelScope(shield=True):
            if pending is not None:
                await self._abort_pending(pending)
            for provider in self.framework.providers:
                try:
                    await provider.session_closed()
                except Exception:
                    log.exception("provider %s failed to close its session", provider.name)

    async def _abort_pending(self, pending: PendingObject) -> None:
        """Discard an announced upload; never raises.

        The upload's folder may be gone (the host deleted it meanwhile), and
        with it the handle: nothing is left to forget then.
        """
        try:
            await pending.upload.abort()
        except Exception:
            log.exception("aborting a pending upload failed")
        try:
            sid, key = self.framework.handles.lookup(pending.handle)
        except ProviderError:
            return
        self.framework.handles.forget(sid, key)

    # -- helpers ------------------------------------------------------------------

    def _writable(self, storage: Storage) -> None:
        from .core.codes import AccessCapability

        if storage.describe().access != AccessCapability.READ_WRITE:
            raise ProviderError(ResponseCode.STORE_READ_ONLY)

    async def _view(self, handle: int) -> ObjectView:
        sid, _, entry = await self.framework.entry(handle)
        return self.framework.view(sid, entry)

    async def _walk(
        self, sid: int, storage: Storage, folder_key: str, recursive: bool
    ) -> AsyncIterator[ObjectEntry]:
        stack = [folder_key]
        while stack:
            key = stack.pop()
            for entry in await storage.list(key):
                yield entry
                if recursive and entry.is_folder:
                    stack.append(entry.key)

    async def _select(self, storage_param: int, parent: int, format_code: int) -> list[ObjectView]:
        """Objects named by GetObjectHandles-style parameters."""
        views: list[ObjectView] = []
        fw = self.framework
        if parent in (0, ALL):
            for sid in fw.storages_for(storage_param):
                storage = fw.storage(sid)
                async for entry in self._walk(sid, storage, "", recursive=parent == 0):
                    views.append(fw.view(sid, entry))
        else:
            sid, storage, entry = await fw.entry(parent)
            if storage_param != ALL and storage_param != sid:
                fw.storage(storage_param)
                raise ProviderError(ResponseCode.INVALID_PARENT_OBJECT, "parent not in storage")
            if not entry.is_folder:
                raise ProviderError(ResponseCode.INVALID_PARENT_OBJECT, "parent is not a folder")
            async for child in self._walk(sid, storage, entry.key, recursive=False):
                views.append(fw.view(sid, child))
        if format_code not in (0, ALL):
            fmt = PROPERTIES[ObjectProp.OBJECT_FORMAT]
            views = [v for v in views if prop_value(fmt, v) == format_code]
        return views

    # -- session ------------------------------------------------------------------

    @operation(OperationCode.GET_DEVICE_INFO)
    async def get_device_info(self, tx: Transaction) -> Response:
        device = self.config.device
        version = device.version
        if not version:
            import mtp_responder  # its version not at import: reading it costs a metadata scan

            version = mtp_responder.__version__
        dataset = build_device_info(
            standard_version=100,
            vendor_extension_id=6,
            vendor_extension_version=100,
            vendor_extension_desc=device.extensions,
            functional_mode=0,
            operations_supported=self.supported(),
            events_supported=[int(e) for e in self.EVENTS],
            device_properties_supported=self.device_props.codes,
            capture_formats=[int(f) for f in SUPPORTED_FORMATS],
            playback_formats=[int(f) for f in SUPPORTED_FORMATS],
            manufacturer=device.manufacturer,
            model=device.product,
            device_version=version,
            serial_number=device.serial,
        )
        await tx.send(dataset)
        return OK

    @operation(OperationCode.OPEN_SESSION)
    async def open_session_op(self, tx: Transaction) -> Response:
        session_id = tx.params[0]
        if self.session.is_open:
            return (ResponseCode.SESSION_ALREADY_OPEN, (self.session.session_id,))
        if session_id == 0:
            return (ResponseCode.INVALID_PARAMETER, ())
        await self.open_session(session_id)
        return OK

    @operation(OperationCode.CLOSE_SESSION)
    async def close_session_op(self, tx: Transaction) -> Response:
        if not self.session.is_open:
            return (ResponseCode.SESSION_NOT_OPEN, ())
        await self.close_session("CloseSession")
        return OK

    @operation(OperationCode.RESET_DEVICE)
    async def reset_device(self, tx: Transaction) -> Response:
        await self.close_session("ResetDevice")
        return OK

    # -- storages -------------------------------------------------------------------

    @operation(OperationCode.GET_STORAGE_IDS)
    async def get_storage_ids(self, tx: Transaction) -> Response:
        await tx.send(build_u32_array(self.framework.storage_ids))
        return OK

    @operation(OperationCode.GET_STORAGE_INFO)
    async def get_storage_info(self, tx: Transaction) -> Response:
        storage = self.framework.storage(tx.params[0])
        d = storage.describe()
        payload = (
            struct.pack(
                "<HHHQQI",
                d.storage_type,
                0x0002,  # generic hierarchical
                d.access,
                d.max_capacity,
                d.free_space,
                d.free_objects,
            )
            + encode_string(d.description)
            + encode_string(d.volume_label)
        )
        await tx.send(payload)
        return OK

    # -- enumeration ----------------------------------------------------------------

    @operation(OperationCode.GET_NUM_OBJECTS)
    async def get_num_objects(self, tx: Transaction) -> Response:
        storage, format_code, parent = tx.params[:3]
        return (ResponseCode.OK, (len(await self._select(storage, parent, format_code)),))

    @operation(OperationCode.GET_OBJECT_HANDLES)
    async def get_object_handles(self, tx: Transaction) -> Response:
        storage, format_code, parent = tx.params[:3]
        views = await self._select(storage, parent, format_code)
        await tx.send(build_u32_array([v.handle for v in views]))
        return OK

    @operation(OperationCode.GET_OBJECT_INFO)
    async def get_object_info(self, tx: Transaction) -> Response:
        view = await self._view(tx.params[0])
        e = view.entry
        info = ObjectInfoData(
            storage_id=view.storage_id,
            object_format=ObjectFormat.ASSOCIATION if e.is_folder else e.format,
            protection_status=1 if e.read_only else 0,
            compressed_size=0 if e.is_folder else e.size,
            parent_object=view.parent_handle,
            association_type=AssociationType.GENERIC_FOLDER if e.is_folder else 0,
            filename=e.name,
            date_created=format_date(e.ctime),
            date_modified=format_date(e.mtime),
        )
        await tx.send(build_object_info(info))
        return OK

    # -- reading ---------------------------------------------------------------------

    async def _send_object(
        self, tx: Transaction, handle: int, offset: int, length: int | None
    ) -> int:
        _, storage, entry = await self.framework.entry(handle)
        if entry.is_folder:
            raise ProviderError(ResponseCode.INVALID_OBJECT_HANDLE, "a folder has no data")
        size = await storage.size_for_read(entry.key)
        if offset > size:
            raise ProviderError(ResponseCode.INVALID_PARAMETER, "offset beyond the end")
        count = size - offset if length is None else min(length, size - offset)
        real = await tx.send_stream(count, storage.read(entry.key, offset, count))
        if real != count:
            raise ProviderError(ResponseCode.INCOMPLETE_TRANSFER, "object shrank while sent")
        return count

    @operation(OperationCode.GET_OBJECT)
    async def get_object(self, tx: Transaction) -> Response:
        await self._send_object(tx, tx.params[0], 0, None)
        return OK

    @operation(OperationCode.GET_PARTIAL_OBJECT)
    async def get_partial_object(self, tx: Transaction) -> Response:
        handle, offset, length = tx.params[:3]
        sent = await self._send_object(tx, handle, offset, length)
        return (ResponseCode.OK, (sent,))

    @operation(OperationCode.GET_PARTIAL_OBJECT_64)
    async def get_partial_object_64(self, tx: Transaction) -> Response:
        handle, low, high, length = tx.params[:4]
        sent = await self._send_object(tx, handle, _offset64(low, high), length)
        return (ResponseCode.OK, (sent,))

    @operation(OperationCode.GET_THUMB)
    async def get_thumb(self, tx: Transaction) -> Response:
        await self._view(tx.params[0])
        return (ResponseCode.NO_THUMBNAIL_PRESENT, ())

    # -- deleting --------------------------------------------------------------------

    @operation(OperationCode.DELETE_OBJECT)
    async def delete_object(self, tx: Transaction) -> Response:
        handle, format_code = tx.params[:2]
        fw = self.framework
        if handle == ALL:
            # Every object: the root's children do (folders take their
            # trees along); with a format, objects of it at any depth.
            parent = ALL if format_code in (0, ALL) else 0
            failed: set[int] = set()
            deleted = 0
            for view in await self._select(ALL, parent, format_code):
                try:
                    await self._delete(view.storage_id, fw.storage(view.storage_id), view.entry)
                    deleted += 1
                except ProviderError as exc:
                    if exc.code != ResponseCode.INVALID_OBJECT_HANDLE:  # else gone already
                        failed.add(exc.code)
            if not failed:
                return OK
            if not deleted and len(failed) == 1:  # nothing went, for one reason
                return (failed.pop(), ())
            return (ResponseCode.PARTIAL_DELETION, ())
        sid, storage, entry = await fw.entry(handle)
        await self._delete(sid, storage, entry)
        return OK

    async def _delete(self, sid: int, storage: Storage, entry: ObjectEntry) -> None:
        self._writable(storage)
        if entry.read_only:
            raise ProviderError(ResponseCode.OBJECT_WRITE_PROTECTED)
        await storage.delete(entry.key)
        for handle in self.framework.handles.forget(sid, entry.key):
            self.references.pop(handle, None)

    # -- sending ----------------------------------------------------------------------

    async def _target(self, storage_param: int, parent_param: int) -> tuple[int, Storage, str]:
        """Where a new object goes (storage 0: the responder chooses)."""
        fw = self.framework
        if storage_param == 0:
            if parent_param not in (0, ALL):
                storage_param = fw.handles.lookup(parent_param)[0]
            else:
                writable = [s for s in fw.storage_ids if _is_rw(fw.storage(s))]
                if not writable:
                    raise ProviderError(ResponseCode.STORE_READ_ONLY)
                storage_param = writable[0]
        storage = fw.storage(storage_param)
        parent_key = fw.parent_key(storage_param, parent_param)
        if parent_key:
            parent = await storage.stat(parent_key)
            if not parent.is_folder:
                raise ProviderError(ResponseCode.INVALID_PARENT_OBJECT)
        self._writable(storage)
        return storage_param, storage, parent_key

    async def _begin_object(
        self,
        storage_param: int,
        parent_param: int,
        name: str,
        format_code: int,
        size: int,
        mtime: float | None,
        is_folder: bool,
    ) -> Response:
        """SendObjectInfo / SendObjectPropList: check, then reserve."""
        if self.session.pending is not None:
            await self._abort_pending(self.session.pending)
            self.session.pending = None
        sid, storage, parent_key = await self._target(storage_param, parent_param)
        validate_name(name)
        fw = self.framework
        parent_handle = ALL if not parent_key else fw.handles.handle_for(sid, parent_key)
        if is_folder:
            entry = await storage.create_folder(parent_key, name)
            if mtime is not None:
                try:
                    entry = await storage.set_mtime(entry.key, mtime)
                except ProviderError:
                    pass
            handle = fw.handles.handle_for(sid, entry.key)
            fw.host_changed(sid, entry.key)
            return (ResponseCode.OK, (sid, parent_handle, handle))
        upload = await storage.create(
            NewObject(parent_key, name, format_code, size, mtime, is_folder=False)
        )
        handle = fw.handles.handle_for(sid, upload.key)
        self.session.pending = PendingObject(sid, handle, upload, size)
        return (ResponseCode.OK, (sid, parent_handle, handle))

    @operation(OperationCode.SEND_OBJECT_INFO, data_out=True)
    async def send_object_info(self, tx: Transaction) -> Response:
        data = await tx.receive()
        info = parse_object_info(data)
        is_folder = (
            info.object_format == ObjectFormat.ASSOCIATION
            or info.association_type == AssociationType.GENERIC_FOLDER
        )
        size = -1 if info.compressed_size == 0xFFFFFFFF else info.compressed_size
        mtime = parse_date(info.date_modified) if info.date_modified else None
        return await self._begin_object(
            tx.params[0], tx.params[1], info.filename, info.object_format, size, mtime, is_folder
        )

    @operation(OperationCode.SEND_OBJECT_PROP_LIST, data_out=True)
    async def send_object_prop_list(self, tx: Transaction) -> Response:
        storage_param, parent_param, format_code, size_high, size_low = tx.params
        items = parse_prop_list(await tx.receive())
        name = ""
        mtime: float | None = None
        for item in items:
            if item.code == ObjectProp.OBJECT_FILE_NAME and item.datatype == DataType.STR:
                name = str(item.value)
            elif item.code == ObjectProp.DATE_MODIFIED:
                mtime = parse_date(str(item.value))
        if not name:
            raise ProviderError(ResponseCode.INVALID_DATASET, "no ObjectFileName in the list")
        is_folder = format_code == ObjectFormat.ASSOCIATION
        code, params = await self._begin_object(
            storage_param,
            parent_param,
            name,
            format_code,
            _u64(size_low, size_high),
            mtime,
            is_folder,
        )
        return (code, (*params, 0))

    @operation(OperationCode.SEND_OBJECT, data_out=True)
    async def send_object(self, tx: Transaction) -> Response:
        pending = self.session.pending
        if pending is None:
            await tx.drain()
            return (ResponseCode.NO_VALID_OBJECT_INFO, ())
        self.session.pending = None
        upload = pending.upload
        received = 0
        try:
            async for chunk in tx.data_chunks():
                received += len(chunk)
                await upload.write(chunk)
            if tx.incomplete or (pending.size >= 0 and received != pending.size):
                raise ProviderError(
                    ResponseCode.INCOMPLETE_TRANSFER,
                    f"received {received} bytes of {pending.size}",
                )
            entry = await upload.commit()
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._abort_pending(pending)
            raise
        fw = self.framework
        if entry.key != upload.key:
            fw.handles.rekey(pending.storage_id, upload.key, entry.key)
        fw.host_changed(pending.storage_id, entry.key)
        return OK

    # -- moving and copying -------------------------------------------------------------

    @operation(OperationCode.MOVE_OBJECT)
    async def move_object(self, tx: Transaction) -> Response:
        handle, storage_param, parent_param = tx.params[:3]
        fw = self.framework
        sid, storage, entry = await fw.entry(handle)
        dest_sid, dest, parent_key = await self._target(storage_param or sid, parent_param)
        self._writable(storage)
        _refuse_into_itself(entry, parent_key, sid == dest_sid)
        if dest_sid == sid:
            moved = await storage.move(entry.key, parent_key)
            fw.handles.rekey(sid, entry.key, moved.key)
            fw.host_changed(sid, moved.key)
        else:
            await self._copy_across(storage, entry, dest, parent_key)
            await storage.delete(entry.key)
            fw.handles.forget(sid, entry.key)
            new_key = join_key(parent_key, entry.name)
            # Keep the handle: the host still holds it.
            fw.handles._add(handle, (dest_sid, new_key))
            fw.host_changed(dest_sid, new_key)
        return OK

    @operation(OperationCode.COPY_OBJECT)
    async def copy_object(self, tx: Transaction) -> Response:
        handle, storage_param, parent_param = tx.params[:3]
        fw = self.framework
        sid, storage, entry = await fw.entry(handle)
        dest_sid, dest, parent_key = await self._target(storage_param or sid, parent_param)
        _refuse_into_itself(entry, parent_key, sid == dest_sid)
        if dest_sid == sid:
            copied = await storage.copy(entry.key, parent_key)
        else:
            copied = await self._copy_across(storage, entry, dest, parent_key)
        fw.host_changed(dest_sid, copied.key)
        return (ResponseCode.OK, (fw.handles.handle_for(dest_sid, copied.key),))

    async def _copy_across(
        self, source: Storage, entry: ObjectEntry, dest: Storage, parent_key: str
    ) -> ObjectEntry:
        """Copy between storages (maybe between providers), streaming."""
        if entry.is_folder:
            folder = await dest.create_folder(parent_key, entry.name)
            for child in await source.list(entry.key):
                await self._copy_across(source, child, dest, folder.key)
            return folder
        upload = await dest.create(
            NewObject(parent_key, entry.name, entry.format, entry.size, entry.mtime)
        )
        try:
            async for chunk in source.read(entry.key):
                await upload.write(chunk)
            return await upload.commit()
        except BaseException:
            with trio.CancelScope(shield=True):
                await upload.abort()
            raise

    # -- device properties --------------------------------------------------------------

    @operation(OperationCode.GET_DEVICE_PROP_DESC)
    async def get_device_prop_desc(self, tx: Transaction) -> Response:
        await tx.send(self.device_props.describe(tx.params[0]))
        return OK

    @operation(OperationCode.GET_DEVICE_PROP_VALUE)
    async def get_device_prop_value(self, tx: Transaction) -> Response:
        await tx.send(self.device_props.encoded_value(tx.params[0]))
        return OK

    @operation(OperationCode.SET_DEVICE_PROP_VALUE, data_out=True)
    async def set_device_prop_value(self, tx: Transaction) -> Response:
        code = tx.params[0]
        data = await tx.receive(limit=4096)
        self.device_props.set_encoded(code, data)
        self._emit(EventCode.DEVICE_PROP_CHANGED, (code,))
        return OK

    @operation(OperationCode.RESET_DEVICE_PROP_VALUE)
    async def reset_device_prop_value(self, tx: Transaction) -> Response:
        self.device_props.reset(tx.params[0])
        return OK

    # -- object properties ------------------------------------------------------------

    def _check_format(self, format_code: int) -> None:
        """Every format has the same properties here, so any format code a
        host asks about gets them: libmtp asks for whatever format it
        guessed from a file name, and a refusal makes it leave the file
        name out of SendObjectPropList."""
        del format_code

    @operation(OperationCode.GET_OBJECT_PROPS_SUPPORTED)
    async def get_object_props_supported(self, tx: Transaction) -> Response:
        self._check_format(tx.params[0])
        await tx.send(_PROPS_SUPPORTED)
        return OK

    @operation(OperationCode.GET_OBJECT_PROP_DESC)
    async def get_object_prop_desc(self, tx: Transaction) -> Response:
        code, format_code = tx.params[:2]
        self._check_format(format_code)
        definition = PROPERTIES.get(code)
        if definition is None:
            return (ResponseCode.INVALID_OBJECT_PROP_CODE, ())
        await tx.send(prop_desc(definition, format_code))
        return OK

    @operation(OperationCode.GET_OBJECT_PROP_VALUE)
    async def get_object_prop_value(self, tx: Transaction) -> Response:
        handle, code = tx.params[:2]
        definition = PROPERTIES.get(code)
        if definition is None:
            return (ResponseCode.INVALID_OBJECT_PROP_CODE, ())
        view = await self._view(handle)
        await tx.send(encode_value(definition.datatype, prop_value(definition, view)))
        return OK

    async def _set_prop(self, handle: int, code: int, datatype: int | None, value: Any) -> None:
        definition = PROPERTIES.get(code)
        if definition is None:
            raise ProviderError(ResponseCode.INVALID_OBJECT_PROP_CODE)
        if not definition.settable:
            raise ProviderError(ResponseCode.ACCESS_DENIED, f"{definition.code.name} is read-only")
        if datatype is not None and datatype != definition.datatype:
            raise ProviderError(ResponseCode.INVALID_OBJECT_PROP_FORMAT)
        sid, storage, entry = await self.framework.entry(handle)
        self._writable(storage)
        if code in (ObjectProp.OBJECT_FILE_NAME, ObjectProp.NAME):
            name = str(value)
            try:
                validate_name(name)
            except ProviderError as exc:
                raise ProviderError(ResponseCode.INVALID_OBJECT_PROP_VALUE, str(exc)) from exc
            if name == entry.name:
                return
            renamed = await storage.rename(entry.key, name)
            self.framework.handles.rekey(sid, entry.key, renamed.key)
            self.framework.host_changed(sid, renamed.key)
        elif code == ObjectProp.DATE_MODIFIED:
            mtime = parse_date(str(value))
            if mtime is None:
                raise ProviderError(ResponseCode.INVALID_OBJECT_PROP_VALUE, "bad date")
            await storage.set_mtime(entry.key, mtime)
            self.framework.host_changed(sid, entry.key)

    @operation(OperationCode.SET_OBJECT_PROP_VALUE, data_out=True)
    async def set_object_prop_value(self, tx: Transaction) -> Response:
        handle, code = tx.params[:2]
        data = await tx.receive(limit=65536)
        definition = PROPERTIES.get(code)
        if definition is None:
            return (ResponseCode.INVALID_OBJECT_PROP_CODE, ())
        try:
            value = decode_value(definition.datatype, data)
        except DatasetError as exc:
            raise ProviderError(ResponseCode.INVALID_OBJECT_PROP_FORMAT, str(exc)) from exc
        await self._set_prop(handle, code, None, value)
        return OK

    @operation(OperationCode.SET_OBJECT_PROP_LIST, data_out=True)
    async def set_object_prop_list(self, tx: Transaction) -> Response:
        items = parse_prop_list(await tx.receive())
        for index, item in enumerate(items):
            try:
                await self._set_prop(item.handle, item.code, item.datatype, item.value)
            except ProviderError as exc:
                return (exc.code, (index,))
        return OK

    @operation(OperationCode.GET_OBJECT_PROP_LIST)
    async def get_object_prop_list(self, tx: Transaction) -> Response:
        handle, format_code, code, group, depth = tx.params
        if code == 0:
            if group != 0:
                return (ResponseCode.SPECIFICATION_BY_GROUP_UNSUPPORTED, ())
            return (ResponseCode.PARAMETER_NOT_SUPPORTED, ())
        if code == ALL:
            definitions = list(PROPERTIES.values())
        elif code in PROPERTIES:
            definitions = [PROPERTIES[code]]
        else:
            return (ResponseCode.OBJECT_PROP_NOT_SUPPORTED, ())
        if depth not in (0, 1, ALL):
            return (ResponseCode.SPECIFICATION_BY_DEPTH_UNSUPPORTED, ())
        views: list[ObjectView]
        if handle == ALL:
            views = await self._select(ALL, 0, format_code)
        elif handle == 0:
            if depth == 0:
                views = []
            else:
                views = await self._select(ALL, 0 if depth == ALL else ALL, format_code)
        elif depth == 0:
            views = [await self._view(handle)]
            if (
                format_code not in (0, ALL)
                and prop_value(PROPERTIES[ObjectProp.OBJECT_FORMAT], views[0]) != format_code
            ):
                views = []
        else:
            views = await self._descendants(handle, recursive=depth == ALL, format_code=format_code)
        await tx.send(encode_prop_list(views, definitions))
        return OK

    async def _descendants(
        self, handle: int, *, recursive: bool, format_code: int
    ) -> list[ObjectView]:
        sid, storage, entry = await self.framework.entry(handle)
        if not entry.is_folder:
            return []
        views = [
            self.framework.view(sid, child)
            async for child in self._walk(sid, storage, entry.key, recursive)
        ]
        if format_code not in (0, ALL):
            fmt = PROPERTIES[ObjectProp.OBJECT_FORMAT]
            views = [v for v in views if prop_value(fmt, v) == format_code]
        return views

    # -- references ------------------------------------------------------------------

    @operation(OperationCode.GET_OBJECT_REFERENCES)
    async def get_object_references(self, tx: Transaction) -> Response:
        handle = tx.params[0]
        await self._view(handle)
        live = []
        for ref in self.references.get(handle, []):
            try:
                self.framework.handles.lookup(ref)
                live.append(ref)
            except ProviderError:
                continue
        await tx.send(build_u32_array(live))
        return OK

    @operation(OperationCode.SET_OBJECT_REFERENCES, data_out=True)
    async def set_object_references(self, tx: Transaction) -> Response:
        handle = tx.params[0]
        refs = parse_u32_array(await tx.receive())
        await self._view(handle)
        for ref in refs:
            try:
                self.framework.handles.lookup(ref)
            except ProviderError:
                return (ResponseCode.INVALID_OBJECT_REFERENCE, ())
        self.references[handle] = refs
        return OK

    # -- editing in place (Android extensions) ------------------------------------------

    async def _editable(self, handle: int) -> tuple[int, Storage, ObjectEntry]:
        sid, storage, entry = await self.framework.entry(handle)
        if entry.is_folder:
            raise ProviderError(ResponseCode.INVALID_OBJECT_HANDLE, "cannot edit a folder")
        self._writable(storage)
        if entry.read_only:
            raise ProviderError(ResponseCode.OBJECT_WRITE_PROTECTED)
        return sid, storage, entry

    @operation(OperationCode.BEGIN_EDIT_OBJECT)
    async def begin_edit_object(self, tx: Transaction) -> Response:
        await self._editable(tx.params[0])
        self.session.editing.add(tx.params[0])
        return OK

    @operation(OperationCode.END_EDIT_OBJECT)
    async def end_edit_object(self, tx: Transaction) -> Response:
        handle = tx.params[0]
        if handle not in self.session.editing:
            return (ResponseCode.GENERAL_ERROR, ())
        self.session.editing.discard(handle)
        self._emit(EventCode.OBJECT_INFO_CHANGED, (handle,))
        return OK

    @operation(OperationCode.SEND_PARTIAL_OBJECT, data_out=True)
    async def send_partial_object(self, tx: Transaction) -> Response:
        handle, low, high, length = tx.params[:4]
        offset = _offset64(low, high)
        if handle not in self.session.editing:
            await tx.drain()
            return (ResponseCode.GENERAL_ERROR, ())
        sid, storage, entry = await self._editable(handle)
        upload = await storage.write_at(entry.key, offset)
        written = 0
        try:
            async for chunk in tx.data_chunks():
                if written + len(chunk) > length:
                    chunk = chunk[: max(0, length - written)]
                written += len(chunk)
                await upload.write(chunk)
            if tx.incomplete:
                raise ProviderError(ResponseCode.INCOMPLETE_TRANSFER)
            await upload.commit()
        except BaseException:
            with trio.CancelScope(shield=True):
                await upload.abort()
            raise
        finally:
            self.framework.host_changed(sid, entry.key)
        return (ResponseCode.OK, (written,))

    @operation(OperationCode.TRUNCATE_OBJECT)
    async def truncate_object(self, tx: Transaction) -> Response:
        handle, low, high = tx.params[:3]
        size = _offset64(low, high)
        if handle not in self.session.editing:
            return (ResponseCode.GENERAL_ERROR, ())
        sid, storage, entry = await self._editable(handle)
        await storage.truncate(entry.key, size)
        self.framework.host_changed(sid, entry.key)
        return OK


def _refuse_into_itself(entry: ObjectEntry, parent_key: str, same_storage: bool) -> None:
    if (
        same_storage
        and entry.is_folder
        and (parent_key == entry.key or parent_key.startswith(entry.key + "/"))
    ):
        raise ProviderError(ResponseCode.INVALID_PARENT_OBJECT, "cannot move a folder into itself")


def _is_rw(storage: Storage) -> bool:
    from .core.codes import AccessCapability

    return storage.describe().access == AccessCapability.READ_WRITE


_ = DataType  # re-exported for handlers' type checks
