"""``backup-engine serve``: the engine as a trio service on a Unix socket.

Every connection starts with ``hello`` naming its role: ``client`` (a backup
server: the MTP data provider, the CLI), ``owner`` (an active data owner or proxy
manager, for its own SID only) or ``observer`` (anything that only watches the
BUR mode). The peer is identified with SO_PEERCRED, never by what it claims.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import struct
from dataclasses import dataclass

import trio

from ..errors import (
    AccessDeniedError,
    ArgumentError,
    InUseError,
    NotFoundError,
    NotSupportedError,
)
from ..types import BackupIncType, BURMode, ModeInfo, TransferType, format_sid
from ..wire.rpc import Connection, IncomingRequest
from .activedata import ActiveSession
from .archive import PlanCursor
from .config import EngineConfig
from .core import Engine
from .operations import PreparedBackup, load_previous, prepare_backup, restore_archive
from .spool import clear_leftovers

log = logging.getLogger(__name__)

PEERCRED = struct.Struct("3i")
READ_CHUNK = 1 << 20
"""Bytes per archive read: large, since each costs a thread hop and a frame,
yet under the protocol's 4 MiB frame limit."""
CLIENT_HANDOVER_GRACE = 2.0
"""Seconds a new backup client waits for its predecessor's connection to finish closing."""


@dataclass(eq=False)
class Peer:
    conn: Connection
    pid: int
    uid: int
    gid: int
    role: str | None = None
    sid: int | None = None
    session: ActiveSession | None = None


def _int(args: dict[str, object], key: str, default: int | None = None) -> int:
    v = args.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ArgumentError(f"{key} must be an integer")
    return v


def _str(args: dict[str, object], key: str) -> str:
    v = args.get(key)
    if not isinstance(v, str):
        raise ArgumentError(f"{key} must be a string")
    return v


def _ints(args: dict[str, object], key: str) -> list[int]:
    v = args.get(key)
    if not isinstance(v, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) for x in v
    ):
        raise ArgumentError(f"{key} must be a list of integers")
    return [int(x) for x in v]


def _strs(args: dict[str, object], key: str) -> list[str]:
    v = args.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ArgumentError(f"{key} must be a list of strings")
    return [str(x) for x in v]


def _ttype(args: dict[str, object]) -> TransferType:
    try:
        return TransferType(_int(args, "type"))
    except ValueError as e:
        raise NotSupportedError(f"unknown transfer type {args.get('type')!r}") from e


class EngineServer:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.engine = Engine(config)
        self.engine.modes.listeners.append(self._broadcast)
        self.peers: set[Peer] = set()
        self.client: Peer | None = None
        self.prepared: PreparedBackup | None = None
        self.last_activity = trio.current_time() if _in_trio() else 0.0

    # ------------------------------------------------------------ socket
    def _bind(self) -> trio.socket.SocketType:
        path = self.config.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            st = os.lstat(path)
            if not stat.S_ISSOCK(st.st_mode):
                raise ArgumentError(f"{path} exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
                raise InUseError(f"an engine is already listening on {path}")
            except OSError:
                path.unlink()
            finally:
                probe.close()
        return trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        path = self.config.socket_path
        sock = self._bind()
        old = os.umask(0o177)
        try:
            await sock.bind(str(path))
        finally:
            os.umask(old)
        gid = self.config.socket_gid()
        if gid is not None:
            os.chown(path, -1, gid)
        os.chmod(path, self.config.socket_mode)
        sock.listen(64)
        # Bound, so no other engine serves here: what the spool holds, a dead one left.
        for name in clear_leftovers(self.config.spool_dir):
            log.warning("removed %s from the spool, left by an engine that crashed", name)
        listener = trio.SocketListener(sock)
        self.engine.modes.write_state_file()
        log.info("backup engine listening on %s", path)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._idle_watch)
                task_status.started()
                while True:
                    stream = await listener.accept()
                    nursery.start_soon(self._handle, stream)
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()
                try:
                    path.unlink()
                except OSError:
                    pass
                self.engine.launcher.stop_all()

    async def _idle_watch(self) -> None:
        """A device never stays in backup/restore mode with nobody driving it."""
        self.last_activity = trio.current_time()
        while True:
            await trio.sleep(min(1.0, self.config.idle_timeout / 4))
            self.engine.launcher.reap()
            if self.engine.mode.mode.is_normal:
                self.last_activity = trio.current_time()
                continue
            if trio.current_time() - self.last_activity > self.config.idle_timeout:
                log.warning(
                    "idle for %.0f s in %s: returning to Normal",
                    self.config.idle_timeout,
                    self.engine.mode.mode.name,
                )
                async with self.engine.lock:
                    self._release_prepared()
                    await self.engine.modes.client_gone()
                self.last_activity = trio.current_time()

    async def _handle(self, stream: trio.SocketStream) -> None:
        """One connection; nothing a peer does may bring the engine down."""
        try:
            await self._handle_inner(stream)
        except Exception:
            log.exception("connection handler failed")

    async def _handle_inner(self, stream: trio.SocketStream) -> None:
        try:
            raw = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size)
            pid, uid, gid = PEERCRED.unpack(raw)
        except OSError:
            await stream.aclose()
            return
        peer: Peer | None = None

        async def handler(req: IncomingRequest) -> None:
            assert peer is not None
            await self._dispatch(peer, req)

        conn = Connection(stream, handler, odd_ids=False)
        peer = Peer(conn, pid, uid, gid)
        self.peers.add(peer)
        try:
            await conn.serve()
        finally:
            self.peers.discard(peer)
            with trio.CancelScope(shield=True):
                await self._gone(peer)
                await conn.aclose()

    async def _gone(self, peer: Peer) -> None:
        if peer.session is not None:
            self.engine.launcher.session_closed(peer.session)
        if peer is self.client:
            self.client = None
            async with self.engine.lock:
                self._release_prepared()
                await self.engine.modes.client_gone()

    def _release_prepared(self) -> None:
        if self.prepared is not None:
            self.prepared.release()
            self.prepared = None

    async def _broadcast(self, mode: ModeInfo) -> None:
        event = {"event": "mode", **mode.to_wire(), "value": mode.value}
        for p in list(self.peers):
            if p.role in ("owner", "observer"):
                with trio.move_on_after(2):
                    try:
                        await p.conn.send_event(event)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass

    # ------------------------------------------------------------ dispatch
    async def _dispatch(self, peer: Peer, req: IncomingRequest) -> None:
        if req.op == "hello":
            await self._hello(peer, req)
            return
        if peer.role is None:
            raise AccessDeniedError("the first request must be hello")
        if req.op == "mode_info":
            await req.respond(self.engine.mode.to_wire())
            return
        if peer.role == "owner":
            await self._owner_op(peer, req)
        elif peer.role == "client":
            self.last_activity = trio.current_time()
            async with self.engine.lock:
                await self._client_op(peer, req)
            self.last_activity = trio.current_time()
        else:
            raise AccessDeniedError(f"{req.op} is not allowed for an observer")

    async def _hello(self, peer: Peer, req: IncomingRequest) -> None:
        if peer.role is not None:
            raise ArgumentError("hello was already said")
        proto = req.args.get("protocol", 1)
        if proto != 1:
            raise ArgumentError(f"protocol version {proto!r} is not supported (engine speaks 1)")
        role = req.args.get("role")
        if role == "client":
            if peer.uid not in self.config.client_uids:
                raise AccessDeniedError(f"uid {peer.uid} may not act as a backup client")
            previous = self.client
            if previous is not None and not previous.conn.closed:
                # A client that has just hung up may have its end of connection still
                # unread here: give it a moment before calling it connected.
                with trio.move_on_after(CLIENT_HANDOVER_GRACE):
                    await previous.conn.closed_event.wait()
                if not previous.conn.closed:
                    raise InUseError("another backup client is connected")
            self.client = peer
        elif role == "owner":
            sid = _int(req.args, "sid")
            self._check_owner_identity(peer, sid)
            sess = ActiveSession(sid, peer.conn, peer.pid, timeout=self.config.callback_timeout)
            self.engine.registry.attach_session(sess)
            peer.sid = sid
            peer.session = sess
        elif role != "observer":
            raise ArgumentError(f"unknown role {role!r}")
        peer.role = str(role)
        await req.respond({"protocol": 1, "mode": self.engine.mode.to_wire()})

    def _check_owner_identity(self, peer: Peer, sid: int) -> None:
        """A data owner may only act for the SID whose private directory its user owns."""
        if not 0 < sid <= 0xFFFFFFFF:
            raise ArgumentError("bad SID")
        if peer.uid == 0:
            return
        if self.engine.launcher.is_launched(sid, peer.pid):
            return
        for d in self.config.drives:
            proot = self.config.private_root(d)
            try:
                names = os.listdir(proot)
            except OSError:
                continue
            for n in names:
                if len(n) == 8 and n.lower() == format_sid(sid).lower():
                    try:
                        if os.stat(proot / n).st_uid == peer.uid:
                            return
                    except OSError:
                        continue
        raise AccessDeniedError(f"uid {peer.uid} does not own data owner {format_sid(sid)}")

    async def _owner_op(self, peer: Peer, req: IncomingRequest) -> None:
        assert peer.session is not None and peer.sid is not None
        a = req.args
        if req.op == "confirm_ready":
            self.engine.registry.confirm_ready(
                peer.session, _int(a, "error", 0), bool(a.get("has_impl", True))
            )
        elif req.op == "does_partial_affect_me":
            await req.respond(self.engine.registry.does_partial_affect(peer.sid))
        else:
            raise AccessDeniedError(f"{req.op} is not an owner operation")

    async def _client_op(self, peer: Peer, req: IncomingRequest) -> None:
        e = self.engine
        registry, transfers, public = e.registry, e.transfers, e.public
        a = req.args
        op = req.op
        if op == "list_data_owners":
            await req.respond([i.to_wire() for i in await registry.list_data_owners()])
        elif op == "set_bur_mode":
            mode = BURMode(_int(a, "mode"))
            inc = BackupIncType(_int(a, "inc", 0))
            if mode.is_normal:
                self._release_prepared()
            await e.set_bur_mode(_strs(a, "drives"), mode, inc)
        elif op == "set_partial_sids":
            registry.set_partial_sids(_ints(a, "sids"))
        elif op == "sid_status":
            await req.respond([[s, int(st)] for s, st in registry.sid_status(_ints(a, "sids"))])
        elif op == "public_file_list":
            ents = public.public_file_list(_str(a, "drive"), _int(a, "sid"))
            await req.respond([x.to_wire() for x in ents])
        elif op == "public_file_list_page":
            ents, fin, cur = public.public_file_list_page(
                _str(a, "drive"), _int(a, "sid"), _int(a, "cursor", 0), _int(a, "max_size", 65536)
            )
            await req.respond(
                {"entries": [x.to_wire() for x in ents], "finished": fin, "cursor": cur}
            )
        elif op == "raw_public_file_list":
            await req.respond(
                [[i, p] for i, p in public.raw_public_file_list(_str(a, "drive"), _int(a, "sid"))]
            )
        elif op == "expected_data_size":
            await req.respond(
                await transfers.expected_data_size(_int(a, "sid"), _str(a, "drive"), _ttype(a))
            )
        elif op == "all_snapshots_supplied":
            await transfers.all_snapshots_supplied()
        elif op == "all_system_files_restored":
            e.modes.all_system_files_restored()
        elif op == "request_data":
            data, fin = await transfers.request_data(
                _int(a, "sid"), _str(a, "drive"), _ttype(a), _int(a, "max_bytes", 0) or None
            )
            await req.send_data(data)
            await req.end({"finished": fin})
        elif op == "supply_data":
            sid, drive, tt = _int(a, "sid"), _str(a, "drive"), _ttype(a)
            fin = bool(a.get("finished", False))
            while (chunk := await req.receive_data()) is not None:
                await transfers.supply_data(sid, drive, tt, chunk, False)
                self.last_activity = trio.current_time()
            await transfers.supply_data(sid, drive, tt, b"", fin)
        elif op == "prepare_backup":
            if self.prepared is not None:
                raise InUseError("a prepared backup is still open; set Normal mode first")
            sids = _ints(a, "sids") if a.get("sids") is not None else None
            previous = await load_previous(e, req.receive_data)
            self.prepared = await prepare_backup(e, sids, previous, _strs(a, "drives") or None)
            await req.respond(self.prepared.to_wire())
        elif op == "read_archive":
            await self._read_archive(req)
        elif op == "restore_archive":
            sids = _ints(a, "sids") if a.get("sids") is not None else None
            res = await restore_archive(e, req.receive_data, sids)
            await req.respond(res.to_wire())
        elif op == "release_backup":
            self._release_prepared()
        else:
            raise ArgumentError(f"unknown operation {op!r}")

    async def _read_archive(self, req: IncomingRequest) -> None:
        if self.prepared is None:
            raise NotFoundError("no prepared backup")
        name = _str(req.args, "name")
        plan = self.prepared.plans.get(name)
        if plan is None:
            raise NotFoundError(f"no archive named {name!r}")
        offset = _int(req.args, "offset", 0)
        length = _int(req.args, "length", -1)
        if offset < 0 or offset > plan.size:
            raise ArgumentError(f"offset {offset} outside archive of {plan.size} bytes")
        left = plan.size - offset if length < 0 else min(length, plan.size - offset)
        cur = PlanCursor(plan, offset)
        try:
            while left > 0 and not req.cancelled:
                chunk = await trio.to_thread.run_sync(cur.read, min(left, READ_CHUNK))
                if not chunk:
                    break
                await req.send_data(chunk)
                left -= len(chunk)
                self.last_activity = trio.current_time()
        finally:
            cur.close()
        await req.end({"size": plan.size, "changed": sorted(plan.changed)})


def _in_trio() -> bool:
    try:
        trio.lowlevel.current_task()
        return True
    except RuntimeError:
        return False


async def _signals(cancel: trio.CancelScope) -> None:
    import signal

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
        async for _ in sigs:
            cancel.cancel()
            return


async def run_server(
    config: EngineConfig, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until SIGTERM/SIGINT; then clean up (socket, launched owners)."""
    server = EngineServer(config)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_signals, nursery.cancel_scope)
        await server.serve(task_status=task_status)
