"""Starting active data owners' processes and keeping them up while a mode needs them.

An active owner need not be running when a backup or restore begins: the engine
starts its registered process (and its proxy managers') with the socket, its SID
and its files' user, and starts it again if it goes away while the mode still
needs it (see engine/README.md, Active owners). Processes that wind down are
reaped; at shutdown every process the engine started is stopped.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..types import format_sid
from .activedata import ActiveSession
from .config import EngineConfig
from .modegate import CurrentMode
from .registry import OwnerRegistry

log = logging.getLogger(__name__)

STOP_GRACE = 5.0
"""Seconds a terminated owner process gets before it is killed."""


class Launcher:
    """The owner processes this engine started, by SID."""

    def __init__(self, config: EngineConfig, current: CurrentMode, registry: OwnerRegistry) -> None:
        self.config = config
        self.current = current
        self.registry = registry
        self.launched: dict[int, subprocess.Popen[bytes]] = {}
        self.exiting: list[subprocess.Popen[bytes]] = []

    def resolve_process(self, name: str) -> list[str] | None:
        """The command line of a registered process name, looked up in the bin dirs."""
        if not name or "/" in name or name.startswith("."):
            return None
        dirs = [str(d) for d in self.config.bin_dirs]
        path = None
        for d in dirs:
            cand = os.path.join(d, name)
            if os.path.isfile(cand):
                path = cand
                break
        if path is None and not dirs:
            path = shutil.which(name)
        if path is None:
            return None
        if path.endswith(".py"):
            return [sys.executable, path]
        return [path]

    def launch(self, sids: list[int]) -> None:
        """Start active owners (and their proxies) that are not connected yet."""
        owners = self.registry.owners
        if not self.config.launch_owners or owners is None:
            return
        want: list[int] = []
        for sid in sids:
            o = owners.get(sid)
            if o is None:
                continue
            if o.registration.active:
                want.append(sid)
            want.extend(p for p in o.registration.proxies if p in owners)
        for sid in dict.fromkeys(want):
            o = owners[sid]
            if self.registry.live_session(sid) is not None or not o.registration.active:
                continue
            proc = self.launched.get(sid)
            if proc is not None and proc.poll() is None:
                continue
            cmd = self.resolve_process(o.registration.process_name or "")
            if cmd is None:
                log.warning(
                    "cannot launch %s: process %r not found",
                    format_sid(sid),
                    o.registration.process_name,
                )
                continue
            env = dict(os.environ)
            env["BACKUP_ENGINE_SOCKET"] = str(self.config.socket_path)
            env["BACKUP_ENGINE_SID"] = format_sid(sid)
            env["BACKUP_ENGINE_LAUNCHED"] = "1"
            root = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
            kw: dict[str, object] = {}
            pd = next(iter(o.private_dirs.values()), None)
            if os.geteuid() == 0 and pd is not None:
                st = os.stat(pd)
                if st.st_uid != 0:
                    # The owner runs as the user that owns its files.
                    kw = {"user": st.st_uid, "group": st.st_gid, "extra_groups": []}
            try:
                self.launched[sid] = subprocess.Popen(
                    cmd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    **kw,  # type: ignore[call-overload]
                )
                log.info("launched %s for owner %s", cmd, format_sid(sid))
            except OSError as e:
                log.warning("cannot launch %s: %s", cmd, e)

    def launch_in_scope(self) -> None:
        """Start every owner the current mode covers."""
        owners = self.registry.owners or {}
        self.launch([o.sid for o in owners.values() if self.registry.in_scope(o)])

    def is_launched(self, sid: int, pid: int) -> bool:
        """Whether process ``pid`` is the one this engine started for ``sid``."""
        proc = self.launched.get(sid)
        return proc is not None and proc.pid == pid

    def session_closed(self, sess: ActiveSession) -> None:
        """An owner's connection ended: forget it, and start it again if the mode needs it.

        The old process may still be winding down; it is kept apart so that its
        replacement can start at once.
        """
        self.registry.detach_session(sess)
        if self.is_launched(sess.sid, sess.pid):
            self.exiting.append(self.launched.pop(sess.sid))
        owners = self.registry.owners
        if not self.current.info.mode.is_normal and owners and sess.sid in owners:
            if self.registry.in_scope(owners[sess.sid]) or any(
                sess.sid in o.registration.proxies for o in owners.values()
            ):
                self.launch([sess.sid])

    def reap(self) -> None:
        for sid, p in list(self.launched.items()):
            if p.poll() is not None:
                del self.launched[sid]
        self.exiting = [p for p in self.exiting if p.poll() is None]

    def stop_all(self) -> None:
        """Terminate every process this engine started, killing any that lingers."""
        for p in self.exiting:
            self.launched.setdefault(-p.pid, p)
        self.exiting.clear()
        for p in self.launched.values():
            if p.poll() is None:
                p.terminate()
        for p in self.launched.values():
            try:
                p.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                p.kill()
        self.launched.clear()
