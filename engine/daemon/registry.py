"""The data owners the engine knows of, their connections and their status.

Owners are discovered from their registration files (see engine/README.md, Drives
and data owners) when a backup server lists them in Normal mode, and that list
holds until the device returns to Normal. Active owners and proxy managers connect
on their own (see engine/README.md, Active owners); their status is what a backup
server waits on before it moves their data.
"""

from __future__ import annotations

import trio

from ..errors import ArgumentError, InUseError, NotFoundError, NotReadyError
from ..types import ActiveType, DataOwnerInfo, DataOwnerStatus, format_sid, normalise_drive
from .activedata import ActiveSession
from .config import EngineConfig
from .modegate import CurrentMode
from .owners import DataOwner, discover


class OwnerRegistry:
    """Discovery, lookup, partial selection, connected sessions and status."""

    def __init__(self, config: EngineConfig, current: CurrentMode) -> None:
        self.config = config
        self.current = current
        self.owners: dict[int, DataOwner] | None = None
        self.partial_sids: list[int] | None = None
        self.sessions: dict[int, ActiveSession] = {}
        self.session_changed = trio.Event()

    # ------------------------------------------------------------ discovery
    def rescan(self) -> dict[int, DataOwner]:
        self.owners = discover(self.config)
        return self.owners

    async def list_data_owners(self) -> list[DataOwnerInfo]:
        """Rescan registrations (Normal mode only) and report every listed owner."""
        self.current.require(normal=True)
        self.owners = await trio.to_thread.run_sync(discover, self.config)
        return [o.info() for o in self.owners.values() if not o.registration.is_proxy_only]

    def forget(self) -> None:
        """Back in Normal mode the owner list is stale: the next mode rediscovers it."""
        self.owners = None

    # ------------------------------------------------------------ lookup
    def owner(self, sid: int) -> DataOwner:
        if self.owners is None or sid not in self.owners:
            raise NotFoundError(f"unknown data owner {format_sid(sid)}")
        return self.owners[sid]

    def check_drive(self, o: DataOwner, drive: str) -> str:
        """The normalised drive, if it is both in the mode's drives and the owner's."""
        try:
            d = normalise_drive(drive)
        except ArgumentError as e:
            raise NotFoundError(str(e)) from e
        if d not in self.current.info.drives or d not in o.drives:
            raise NotFoundError(f"drive {d} is not in the data owner's drive state")
        return d

    # ------------------------------------------------------------ partial selection
    def set_partial_sids(self, sids: list[int]) -> None:
        self.current.require(normal=True)
        self.partial_sids = list(dict.fromkeys(sids))

    def forget_partial_sids(self) -> None:
        """The backup client that set the partial list is gone."""
        self.partial_sids = None

    def in_scope(self, o: DataOwner) -> bool:
        if self.current.info.mode.is_partial:
            return o.sid in (self.partial_sids or [])
        return True

    def does_partial_affect(self, sid: int) -> bool:
        if self.partial_sids is None:
            raise NotFoundError("no partial list was set")
        if not self.current.info.mode.is_partial:
            return True
        return sid in self.partial_sids

    # ------------------------------------------------------------ status
    def _own_status(self, o: DataOwner) -> DataOwnerStatus:
        r = o.registration
        if not r.active:
            return DataOwnerStatus.READY
        s = self.sessions.get(o.sid)
        if r.active_type is ActiveType.PROXY_ONLY and not r.proxies:
            if s is None or not s.alive:
                return DataOwnerStatus.NOT_CONNECTED
            return DataOwnerStatus.READY_NO_IMPL if s.status == DataOwnerStatus.READY else s.status
        if s is None or not s.alive:
            return DataOwnerStatus.NOT_CONNECTED
        if s.status == DataOwnerStatus.READY and not s.has_impl:
            return DataOwnerStatus.READY_NO_IMPL
        return s.status

    def status_of(self, sid: int) -> DataOwnerStatus:
        """The owner's own status, or the first proxy's that is not Ready."""
        if self.owners is None or sid not in self.owners:
            return DataOwnerStatus.NOT_FOUND
        o = self.owners[sid]
        own = self._own_status(o)
        if own not in (DataOwnerStatus.READY, DataOwnerStatus.READY_NO_IMPL):
            return own
        for p in o.registration.proxies:
            ps = self.proxy_status(p)
            if ps != DataOwnerStatus.READY:
                return ps
        return own

    def proxy_status(self, p: int) -> DataOwnerStatus:
        if self.owners is None or p not in self.owners:
            return DataOwnerStatus.NOT_FOUND
        po = self.owners[p]
        if not po.registration.active or po.registration.active_type is ActiveType.ACTIVE_ONLY:
            return DataOwnerStatus.FAILED
        s = self.sessions.get(p)
        if s is None or not s.alive:
            return DataOwnerStatus.NOT_CONNECTED
        return s.status

    def sid_status(self, sids: list[int]) -> list[tuple[int, DataOwnerStatus]]:
        self.current.require(backup=True, restore=True)
        return [(s, self.status_of(s)) for s in sids]

    async def wait_ready(self, sids: list[int], timeout: float | None = None) -> None:
        """Wait until every owner's status is final or the time budget is spent."""
        budget = self.config.ready_timeout if timeout is None else timeout
        if self.owners and any(
            self.owners[s].registration.requires_delay for s in sids if s in self.owners
        ):
            budget = max(budget, self.config.delayed_ready_timeout)
        with trio.move_on_after(budget):
            while not all(self.status_of(s).is_final for s in sids):
                ev = self.session_changed
                with trio.move_on_after(0.2):
                    await ev.wait()

    # ------------------------------------------------------------ sessions
    def attach_session(self, sess: ActiveSession) -> None:
        old = self.sessions.get(sess.sid)
        if old is not None and old.alive and old.conn is not sess.conn:
            raise InUseError(f"owner {format_sid(sess.sid)} is already connected")
        if self.owners and sess.sid in self.owners:
            sess.timeout = self.owners[sess.sid].registration.callback_timeout
        else:
            sess.timeout = self.config.callback_timeout
        self.sessions[sess.sid] = sess
        self._poke()

    def detach_session(self, sess: ActiveSession) -> None:
        if self.sessions.get(sess.sid) is sess:
            del self.sessions[sess.sid]
        self._poke()

    def confirm_ready(self, sess: ActiveSession, error: int, has_impl: bool) -> None:
        if self.owners and sess.sid in self.owners:
            sess.timeout = self.owners[sess.sid].registration.callback_timeout
        sess.has_impl = has_impl
        sess.status = DataOwnerStatus.READY if error == 0 else DataOwnerStatus.FAILED
        self._poke()

    def unready_sessions(self) -> None:
        """Leaving a BUR mode: every owner must confirm again for the next one."""
        for s in self.sessions.values():
            if s.status != DataOwnerStatus.FAILED:
                s.status = DataOwnerStatus.NOT_READY

    def _poke(self) -> None:
        self.session_changed.set()
        self.session_changed = trio.Event()

    def live_session(self, sid: int) -> ActiveSession | None:
        s = self.sessions.get(sid)
        return s if s is not None and s.alive else None

    def proxies(self, o: DataOwner) -> list[tuple[int, ActiveSession]]:
        """The sessions of ``o``'s proxy managers, in registration order; all must be Ready."""
        out = []
        for p in o.registration.proxies:
            st = self.proxy_status(p)
            if st == DataOwnerStatus.NOT_FOUND:
                raise NotFoundError(f"proxy {format_sid(p)} of {format_sid(o.sid)} is not an owner")
            s = self.live_session(p)
            if s is None or st != DataOwnerStatus.READY:
                raise NotReadyError(f"proxy {format_sid(p)} is not ready ({st.name})")
            out.append((p, s))
        return out

    def own_session(self, o: DataOwner) -> ActiveSession | None:
        """The session serving ``o``'s own active data; None if it has none to move."""
        if not o.has_own_active_data:
            return None
        s = self.live_session(o.sid)
        if s is None:
            raise NotReadyError(f"owner {format_sid(o.sid)} is not connected")
        if s.status == DataOwnerStatus.READY and not s.has_impl:
            return None
        s.check_ready()
        return s
