"""Active Backup Client library: what an app links to take part in backup/restore.

An app implements :class:`ActiveBackupDataClient` (async) or
:class:`BlockingActiveBackupDataClient` (plain methods, run in a worker thread),
connects with :class:`ActiveBackupClient`, waits for a backup or restore mode,
prepares, and calls :meth:`ActiveBackupClient.confirm_ready`. The engine then
drives it through the callbacks; each must answer within the owner's
``callback_delay_time`` or the engine marks it Failed.

Which data a backup asks for is told plainly: :meth:`ActiveBackupDataClient.begin_backup_data`
gets a :class:`BackupRequest` (base, or an increment against the snapshot the
engine supplied in this same backup). Nothing carries over from one backup or
restore to the next: the SDK forgets supplied snapshots at every mode change and
calls :meth:`ActiveBackupDataClient.new_mode` before the first callback of a
new mode, so an app can drop its own per-operation state there.

Sections are at most ``section_size`` bytes (4096 by default); ``finished``/``last``
means the whole stream is done (engine/README.md, Active owners).
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import trio

from .errors import NotSupportedError
from .types import ModeInfo, parse_sid
from .wire.rpc import Connection, IncomingRequest, open_session

log = logging.getLogger(__name__)

SECTION = 4096


class DataKind(Enum):
    """What a backup asks an owner for."""

    BASE = "base"
    """All of the owner's data."""
    INCREMENT = "increment"
    """What changed since :attr:`BackupRequest.snapshot`."""


@dataclass(frozen=True)
class BackupRequest:
    """One request for an owner's own backup data on one drive.

    An increment is asked for only when the backup client supplied the previous
    snapshot in this same backup; a snapshot received in an earlier backup or
    during a restore never makes a base backup an increment.
    """

    drive: str
    kind: DataKind
    snapshot: bytes | None = None
    """For an increment: the whole previous snapshot, as the owner produced it."""


class ActiveBackupDataClient(ABC):
    """The callbacks an active owner implements, async flavour."""

    async def all_snapshots_supplied(self) -> None:
        """No more snapshots are coming; an owner that got none does a base backup."""
        return None

    async def new_mode(self, mode: ModeInfo) -> None:
        """The engine changed mode since the last callback: drop per-operation state."""
        return None

    async def receive_snapshot_data(self, drive: str, section: bytes, last: bool) -> None:
        """A supplied snapshot, section by section (the SDK also keeps it whole)."""
        return None

    async def get_expected_data_size(self, drive: str) -> int:
        return 0

    async def get_snapshot_data(self, drive: str, max_size: int) -> tuple[bytes, bool]:
        raise NotSupportedError("this owner produces no snapshots")

    async def begin_backup_data(self, request: BackupRequest) -> None:
        """Prepare the data ``request`` asks for; sections follow.

        The default calls :meth:`initialise_get_backup_data`, for owners that
        tell base from increment themselves.
        """
        await self.initialise_get_backup_data(request.drive)

    async def initialise_get_backup_data(self, drive: str) -> None:
        raise NotSupportedError("this owner implements neither begin_backup_data nor this")

    @abstractmethod
    async def get_backup_data_section(self, max_size: int) -> tuple[bytes, bool]: ...

    @abstractmethod
    async def initialise_restore_base_data(self, drive: str) -> None: ...

    @abstractmethod
    async def restore_base_data_section(self, section: bytes, finished: bool) -> None: ...

    async def initialise_restore_increment_data(self, drive: str) -> None:
        raise NotSupportedError("this owner takes no increments")

    async def restore_increment_data_section(self, section: bytes, finished: bool) -> None:
        raise NotSupportedError("this owner takes no increments")

    async def restore_complete(self, drive: str) -> None:
        """The restore session is over (the engine went back to Normal)."""
        return None

    async def terminate_multi_stage_operation(self) -> None:
        """The current transfer was aborted: drop partial state."""
        return None

    async def initialise_get_proxy_backup_data(self, sid: int, drive: str) -> None:
        raise NotSupportedError("not a proxy data manager")

    async def initialise_restore_proxy_base_data(self, sid: int, drive: str) -> None:
        raise NotSupportedError("not a proxy data manager")


class BlockingActiveBackupDataClient:
    """The same callbacks as plain methods; each runs in a worker thread."""

    def all_snapshots_supplied(self) -> None:
        pass

    def new_mode(self, mode: ModeInfo) -> None:
        pass

    def receive_snapshot_data(self, drive: str, section: bytes, last: bool) -> None:
        pass

    def get_expected_data_size(self, drive: str) -> int:
        return 0

    def get_snapshot_data(self, drive: str, max_size: int) -> tuple[bytes, bool]:
        raise NotSupportedError("this owner produces no snapshots")

    def begin_backup_data(self, request: BackupRequest) -> None:
        self.initialise_get_backup_data(request.drive)

    def initialise_get_backup_data(self, drive: str) -> None:
        raise NotSupportedError("not implemented")

    def get_backup_data_section(self, max_size: int) -> tuple[bytes, bool]:
        raise NotSupportedError("not implemented")

    def initialise_restore_base_data(self, drive: str) -> None:
        raise NotSupportedError("not implemented")

    def restore_base_data_section(self, section: bytes, finished: bool) -> None:
        raise NotSupportedError("not implemented")

    def initialise_restore_increment_data(self, drive: str) -> None:
        raise NotSupportedError("this owner takes no increments")

    def restore_increment_data_section(self, section: bytes, finished: bool) -> None:
        raise NotSupportedError("this owner takes no increments")

    def restore_complete(self, drive: str) -> None:
        pass

    def terminate_multi_stage_operation(self) -> None:
        pass

    def initialise_get_proxy_backup_data(self, sid: int, drive: str) -> None:
        raise NotSupportedError("not a proxy data manager")

    def initialise_restore_proxy_base_data(self, sid: int, drive: str) -> None:
        raise NotSupportedError("not a proxy data manager")


class _BlockingAdapter(ActiveBackupDataClient):
    def __init__(self, impl: BlockingActiveBackupDataClient) -> None:
        self.impl = impl

    async def _run(self, name: str, *args: object) -> object:
        return await trio.to_thread.run_sync(lambda: getattr(self.impl, name)(*args))

    async def all_snapshots_supplied(self) -> None:
        await self._run("all_snapshots_supplied")

    async def new_mode(self, mode: ModeInfo) -> None:
        await self._run("new_mode", mode)

    async def receive_snapshot_data(self, drive: str, section: bytes, last: bool) -> None:
        await self._run("receive_snapshot_data", drive, section, last)

    async def begin_backup_data(self, request: BackupRequest) -> None:
        await self._run("begin_backup_data", request)

    async def get_expected_data_size(self, drive: str) -> int:
        return int(await self._run("get_expected_data_size", drive))  # type: ignore[call-overload]

    async def get_snapshot_data(self, drive: str, max_size: int) -> tuple[bytes, bool]:
        return await self._run("get_snapshot_data", drive, max_size)  # type: ignore[return-value]

    async def initialise_get_backup_data(self, drive: str) -> None:
        await self._run("initialise_get_backup_data", drive)

    async def get_backup_data_section(self, max_size: int) -> tuple[bytes, bool]:
        return await self._run("get_backup_data_section", max_size)  # type: ignore[return-value]

    async def initialise_restore_base_data(self, drive: str) -> None:
        await self._run("initialise_restore_base_data", drive)

    async def restore_base_data_section(self, section: bytes, finished: bool) -> None:
        await self._run("restore_base_data_section", section, finished)

    async def initialise_restore_increment_data(self, drive: str) -> None:
        await self._run("initialise_restore_increment_data", drive)

    async def restore_increment_data_section(self, section: bytes, finished: bool) -> None:
        await self._run("restore_increment_data_section", section, finished)

    async def restore_complete(self, drive: str) -> None:
        await self._run("restore_complete", drive)

    async def terminate_multi_stage_operation(self) -> None:
        await self._run("terminate_multi_stage_operation")

    async def initialise_get_proxy_backup_data(self, sid: int, drive: str) -> None:
        await self._run("initialise_get_proxy_backup_data", sid, drive)

    async def initialise_restore_proxy_base_data(self, sid: int, drive: str) -> None:
        await self._run("initialise_restore_proxy_base_data", sid, drive)


def _check_section(v: object, max_size: int) -> tuple[bytes, bool]:
    if (
        not isinstance(v, tuple)
        or len(v) != 2
        or not isinstance(v[0], bytes | bytearray)
        or len(v[0]) > max_size
    ):
        raise NotSupportedError("a section callback must return (bytes <= max_size, finished)")
    return bytes(v[0]), bool(v[1])


class ActiveBackupClient:
    """An owner's session with the engine (engine/README.md, Active owners)."""

    def __init__(
        self,
        conn: Connection,
        callbacks: ActiveBackupDataClient | None,
        sid: int,
        section_size: int = SECTION,
    ) -> None:
        self.conn = conn
        self.callbacks = callbacks
        self.sid = sid
        self.section_size = section_size
        self.mode = ModeInfo()
        self._mode_changed = trio.Event()
        self._modes_seen = 0
        """Mode changes so far; callbacks compare it with ``_modes_handled``."""
        self._modes_handled = 0
        self._snapshots: dict[str, bytes] = {}
        """Snapshots supplied whole in the current mode, per drive."""

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        callbacks: ActiveBackupDataClient | BlockingActiveBackupDataClient | None,
        sid: int | None = None,
        socket_path: Path | str | None = None,
    ) -> AsyncIterator[ActiveBackupClient]:
        """Connect as owner ``sid`` (default: $BACKUP_ENGINE_SID, set by the engine's launcher)."""
        if sid is None:
            sid = parse_sid(os.environ["BACKUP_ENGINE_SID"])
        path = str(
            socket_path or os.environ.get("BACKUP_ENGINE_SOCKET", "/run/backup-engine/engine.sock")
        )
        cb: ActiveBackupDataClient | None
        if isinstance(callbacks, BlockingActiveBackupDataClient):
            cb = _BlockingAdapter(callbacks)
        else:
            cb = callbacks
        me: ActiveBackupClient | None = None
        built = trio.Event()

        async def handler(req: IncomingRequest) -> None:
            # A callback may arrive right behind the hello answer.
            await built.wait()
            assert me is not None
            await me._handle(req)

        async def on_event(ev: object) -> None:
            if me is not None and isinstance(ev, dict) and ev.get("event") == "mode":
                me._set_mode(ModeInfo.from_wire(ev))

        hello = {"role": "owner", "sid": sid, "protocol": 1}
        async with open_session(str(path), hello, handler, on_event) as (conn, ans):
            me = cls(conn, cb, sid)
            built.set()
            if isinstance(ans, dict) and isinstance(ans.get("mode"), dict):
                me._set_mode(ModeInfo.from_wire(ans["mode"]))
            yield me

    def _set_mode(self, m: ModeInfo) -> None:
        if m != self.mode:
            self._modes_seen += 1
        self.mode = m
        self._mode_changed.set()
        self._mode_changed = trio.Event()

    async def wait_mode_change(self) -> ModeInfo:
        await self._mode_changed.wait()
        return self.mode

    async def wait_for_bur(self) -> ModeInfo:
        """Wait until a backup or restore is in progress."""
        while self.mode.mode.is_normal:
            await self.wait_mode_change()
        return self.mode

    def bur_mode_info(self) -> ModeInfo:
        return self.mode

    async def does_partial_bur_affect_me(self) -> bool:
        return bool(await self.conn.call("does_partial_affect_me", {}))

    async def confirm_ready(self, error: int = 0) -> None:
        """Ready (error 0) or Failed (any other code) for this backup/restore."""
        await self.conn.call(
            "confirm_ready", {"error": error, "has_impl": self.callbacks is not None}
        )

    @property
    def closed(self) -> bool:
        return self.conn.closed

    # ------------------------------------------------------------ callbacks
    async def _handle(self, req: IncomingRequest) -> None:
        cb = self.callbacks
        if cb is None:
            raise NotSupportedError("this owner registered no callbacks")
        a = req.args
        drive = str(a.get("drive", ""))
        op = req.op
        if self._modes_handled != self._modes_seen:
            # Callbacks run one at a time, in order: resetting here, before the
            # first one of the new mode, never races a callback of the old one.
            self._modes_handled = self._modes_seen
            self._snapshots.clear()
            await cb.new_mode(self.mode)
        if op == "all_snapshots_supplied":
            await cb.all_snapshots_supplied()
        elif op == "get_expected_data_size":
            await req.respond(int(await cb.get_expected_data_size(drive)))
        elif op == "get_snapshot":
            await self._send_sections(req, lambda n: cb.get_snapshot_data(drive, n))
        elif op == "get_backup_data":
            proxy_for = a.get("proxy_for")
            if isinstance(proxy_for, int):
                await cb.initialise_get_proxy_backup_data(proxy_for, drive)
            else:
                await cb.begin_backup_data(self._backup_request(drive))
            await self._send_sections(req, cb.get_backup_data_section)
        elif op == "receive_snapshot":
            self._snapshots.pop(drive, None)
            whole = bytearray()

            async def put(section: bytes, last: bool) -> None:
                whole.extend(section)
                await cb.receive_snapshot_data(drive, section, last)
                if last:
                    self._snapshots[drive] = bytes(whole)

            await self._receive_sections(req, put)
        elif op == "restore_data":
            proxy_for = a.get("proxy_for")
            if isinstance(proxy_for, int):
                await cb.initialise_restore_proxy_base_data(proxy_for, drive)
                await self._receive_sections(req, cb.restore_base_data_section)
            elif a.get("increment"):
                await cb.initialise_restore_increment_data(drive)
                await self._receive_sections(req, cb.restore_increment_data_section)
            else:
                await cb.initialise_restore_base_data(drive)
                await self._receive_sections(req, cb.restore_base_data_section)
        elif op == "restore_complete":
            await cb.restore_complete(drive)
        elif op == "terminate":
            await cb.terminate_multi_stage_operation()
        else:
            raise NotSupportedError(f"unknown callback {op!r}")

    def _backup_request(self, drive: str) -> BackupRequest:
        """Base, or an increment against the snapshot supplied in this mode.

        The engine asks for an increment exactly when the previous snapshot of
        this drive was supplied since the mode began (engine/README.md,
        Sequencing rules), which is what the SDK has kept.
        """
        snapshot = self._snapshots.get(drive)
        if snapshot is None:
            return BackupRequest(drive, DataKind.BASE)
        return BackupRequest(drive, DataKind.INCREMENT, snapshot)

    async def _send_sections(self, req: IncomingRequest, get: object) -> None:
        assert callable(get)
        while True:
            if req.cancelled:
                assert self.callbacks is not None
                await self.callbacks.terminate_multi_stage_operation()
                return
            data, finished = _check_section(await get(self.section_size), self.section_size)
            if data:
                await req.send_data(data)
            if finished:
                break
        await req.end(None)

    async def _receive_sections(self, req: IncomingRequest, put: object) -> None:
        assert callable(put)
        pending: bytes | None = None
        while True:
            chunk = await req.receive_data()
            if chunk is None:
                break
            if pending is not None:
                await put(pending, False)
            pending = chunk
        await put(pending or b"", True)


async def run_owner(
    callbacks: ActiveBackupDataClient | BlockingActiveBackupDataClient | None,
    sid: int | None = None,
    socket_path: Path | str | None = None,
    exit_on_normal: bool | None = None,
) -> None:
    """The usual owner main loop: confirm ready on every BUR mode; exit when done.

    A process the engine launched (``$BACKUP_ENGINE_LAUNCHED``) exits once the
    engine is back in Normal mode after a backup or restore.
    """
    if exit_on_normal is None:
        exit_on_normal = os.environ.get("BACKUP_ENGINE_LAUNCHED") == "1"
    async with ActiveBackupClient.connect(callbacks, sid, socket_path) as abc:
        # Launched, but the engine is Normal already: the session it was launched
        # for ended before it connected (its owner died mid-restore, say).
        seen_bur = exit_on_normal and abc.mode.mode.is_normal
        while not abc.closed:
            if not abc.mode.mode.is_normal:
                seen_bur = True
                if abc.mode.mode.is_partial:
                    try:
                        affected = await abc.does_partial_bur_affect_me()
                    except Exception:
                        affected = True
                    if not affected:
                        await abc.wait_mode_change()
                        continue
                session = abc._modes_seen
                await abc.confirm_ready(0)
                # Any change ends this session, even one whose Normal and the next
                # BUR mode arrived together: that next mode needs its own confirmation.
                while abc._modes_seen == session and not abc.closed:
                    with trio.move_on_after(1):
                        await abc.wait_mode_change()
            elif seen_bur and exit_on_normal:
                return
            else:
                with trio.move_on_after(1):
                    await abc.wait_mode_change()
        if abc.callbacks is not None:
            # The engine went away (crashed, restarted): nothing it began goes on,
            # so the owner drops what it holds for it (temporary files) now.
            await abc.callbacks.terminate_multi_stage_operation()
