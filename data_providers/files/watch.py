"""Change notifications from inotify, turned into provider notifications.

Hosts cache listings: without ObjectAdded / ObjectRemoved /
ObjectInfoChanged a file written by a program on the device stays
invisible until replug (complaint 7 of the peers survey).  inotify is used
directly through ctypes (three calls and a struct) rather than through a
package, and integrated with trio by waiting on its file descriptor.

inotify watches folders, not trees, so every visible folder gets a watch;
folders that appear later get one as their creation is seen.  Symlinked
folders are not followed (their targets are reached, and watched, under
their real place in the tree if they are inside it).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import math
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import trio

from mtp_responder.provider import ProviderContext, join_key

from ._fsutil import c_library
from .storage import TEMP_PREFIX, FileStorage

log = logging.getLogger(__name__)

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

WATCH_MASK = (
    IN_CREATE
    | IN_DELETE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_MODIFY
    | IN_CLOSE_WRITE
    | IN_ATTRIB
    | IN_DELETE_SELF
    | IN_ONLYDIR
    | IN_DONT_FOLLOW
    | IN_EXCL_UNLINK
)

_HEADER = struct.Struct("iIII")

CHANGE_INTERVAL = 1.0
"""At most one ObjectInfoChanged per object per this many seconds: a
program appending to a file makes a write event per write, and a host
re-reads the object on each."""

MOVE_PAIR_WAIT = 0.05
"""How long a MOVED_FROM waits for its MOVED_TO, which the kernel queues
right after it but a read may split from it."""


@dataclass(frozen=True, slots=True)
class Event:
    wd: int
    mask: int
    cookie: int
    name: str


class Inotify:
    """An inotify instance: a non-blocking file descriptor and its watches."""

    def __init__(self) -> None:
        libc = c_library()
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._add.restype = ctypes.c_int
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = [ctypes.c_int, ctypes.c_int]
        self._rm.restype = ctypes.c_int
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.fd: int = fd

    def add_watch(self, path: str, mask: int = WATCH_MASK) -> int:
        wd = self._add(self.fd, os.fsencode(path), mask)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return int(wd)

    def rm_watch(self, wd: int) -> None:
        self._rm(self.fd, wd)  # fails harmlessly if the kernel dropped it already

    def read(self) -> list[Event]:
        """Events queued now; empty when there are none."""
        try:
            buf = os.read(self.fd, 256 * 1024)
        except BlockingIOError:
            return []
        except OSError as exc:
            log.warning("reading inotify events failed: %s", exc)
            return []
        events = []
        pos = 0
        while pos + _HEADER.size <= len(buf):
            wd, mask, cookie, length = _HEADER.unpack_from(buf, pos)
            pos += _HEADER.size
            raw = buf[pos : pos + length].split(b"\x00", 1)[0]
            pos += length
            events.append(Event(wd, mask, cookie, os.fsdecode(raw)))
        return events

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class TreeWatcher:
    """Watches one storage and reports what changes in it.

    Keys are reported as the watch that saw them names them: the path
    below the storage root.  Nothing is reported for temporary upload
    files, for hidden names unless the storage shows them, or for symlinks
    leading out of the storage.
    """

    def __init__(self, storage: FileStorage, context: ProviderContext) -> None:
        self.storage = storage
        self.context = context
        self._inotify: Inotify | None = None
        self._key_of_wd: dict[int, str] = {}
        self._wd_of_key: dict[str, int] = {}
        self._moved_from: dict[int, tuple[str, bool, bool, float]] = {}
        self._pending_changes: dict[str, None] = {}
        self._last_change: dict[str, float] = {}
        self._full_warned = False

    # --------------------------------------------------------------- watches

    def _watch(self, key: str) -> bool:
        assert self._inotify is not None
        try:
            wd = self._inotify.add_watch(self.storage.path_of(key))
        except OSError as exc:
            if exc.errno == errno.ENOSPC and not self._full_warned:
                self._full_warned = True
                log.warning(
                    "inotify watch limit reached at %s: raise fs.inotify.max_user_watches",
                    self.storage.path_of(key),
                )
            return False
        old = self._key_of_wd.get(wd)
        if old is not None and old != key:
            self._wd_of_key.pop(old, None)
        self._key_of_wd[wd] = key
        self._wd_of_key[key] = wd
        return True

    def _watch_tree(self, key: str, sweep: bool = False) -> list[str]:
        """Watch ``key`` and every visible folder under it; returns the
        keys of the visible entries found below ``key``.

        With ``sweep``, temporary files left by uploads that a power cut
        interrupted are deleted on the way: at start-up none can be ours.
        """
        found: list[str] = []
        stack = [key]
        while stack:
            folder = stack.pop()
            if not self._watch(folder):
                continue
            try:
                with os.scandir(self.storage.path_of(folder)) as it:
                    for de in it:
                        if sweep and de.name.startswith(TEMP_PREFIX):
                            self.storage.remove_leftover(de.path)
                        if not self.storage.is_visible_name(de.name):
                            continue
                        child = join_key(folder, de.name)
                        found.append(child)
                        with contextlib.suppress(OSError):
                            if de.is_dir(follow_symlinks=False):
                                stack.append(child)
            except OSError:
                continue
        return found

    def _unwatch_tree(self, key: str) -> None:
        assert self._inotify is not None
        prefix = key + "/"
        for k in [k for k in self._wd_of_key if k == key or k.startswith(prefix)]:
            wd = self._wd_of_key.pop(k)
            self._key_of_wd.pop(wd, None)
            self._inotify.rm_watch(wd)

    def _rekey_tree(self, old: str, new: str) -> None:
        prefix = old + "/"
        for k in [k for k in self._wd_of_key if k == old or k.startswith(prefix)]:
            wd = self._wd_of_key.pop(k)
            moved = new + k[len(old) :]
            self._wd_of_key[moved] = wd
            self._key_of_wd[wd] = moved

    def _acceptable(self, key: str, is_dir: bool) -> bool:
        """A new visible entry that the storage would also list."""
        if is_dir:
            return True
        path = self.storage.path_of(key)
        try:
            if os.path.islink(path):
                target = os.path.realpath(path)
                return self.storage.is_inside(target) and os.path.exists(target)
        except OSError:
            return False
        return True

    # --------------------------------------------------------------- running

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            self._inotify = Inotify()
        except OSError as exc:
            log.warning("inotify unavailable (%s): %s will not report changes", exc, self.storage)
            task_status.started()
            return
        try:
            await trio.to_thread.run_sync(self._watch_tree, "", not self.storage.read_only)
            task_status.started()
            while True:
                timeout = self._next_deadline() - trio.current_time()
                with trio.move_on_after(max(timeout, 0)):
                    await trio.lowlevel.wait_readable(self._inotify.fd)
                self.process(self._inotify.read())
        finally:
            self._inotify.close()

    def _next_deadline(self) -> float:
        deadline = math.inf
        if self._moved_from:
            deadline = min(t for *_, t in self._moved_from.values()) + MOVE_PAIR_WAIT
        if self._pending_changes:
            due = min(self._last_change.get(k, -math.inf) for k in self._pending_changes)
            deadline = min(deadline, due + CHANGE_INTERVAL)
        return deadline

    def process(self, events: Iterable[Event]) -> None:
        """Handle a batch of events, then whatever timers have come due."""
        now = trio.current_time()
        for ev in events:
            try:
                self._event(ev, now)
            except Exception:
                # One bad event must not end change reporting for good.
                log.exception("handling %s on %s failed", ev, self.storage)
        try:
            self._expire_moves(now)
            self._flush_changes(now)
        except Exception:
            log.exception("reporting changes on %s failed", self.storage)

    def _event(self, ev: Event, now: float) -> None:
        if ev.mask & IN_Q_OVERFLOW:
            self._overflow()
            return
        if ev.mask & IN_IGNORED:
            key = self._key_of_wd.pop(ev.wd, None)
            if key is not None and self._wd_of_key.get(key) == ev.wd:
                del self._wd_of_key[key]
            return
        parent = self._key_of_wd.get(ev.wd)
        if parent is None:
            return
        if ev.mask & (IN_DELETE_SELF | IN_UNMOUNT):
            if parent == "":
                log.warning("storage folder %s went away", self.storage.root)
            return
        if not ev.name:
            return  # an event about the watched folder itself
        key = join_key(parent, ev.name)
        visible = self.storage.is_visible_name(ev.name)
        is_dir = bool(ev.mask & IN_ISDIR)
        if ev.mask & IN_MOVED_FROM:
            self._moved_from[ev.cookie] = (key, visible, is_dir, now)
        elif ev.mask & IN_MOVED_TO:
            source = self._moved_from.pop(ev.cookie, None)
            if source is None:
                self._arrived(key, visible, is_dir, created=False)
            else:
                self._moved(source[0], source[1], key, visible, is_dir)
        elif ev.mask & IN_CREATE:
            self._arrived(key, visible, is_dir, created=True)
        elif ev.mask & IN_DELETE:
            if visible:
                self._removed(key)
        elif ev.mask & (IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB):
            if visible:
                self._pending_changes[key] = None

    def _arrived(self, key: str, visible: bool, is_dir: bool, created: bool) -> None:
        if not visible or not self._acceptable(key, is_dir):
            return
        below: list[str] = []
        if is_dir:
            below = self._watch_tree(key)
        self.context.object_added(self.storage, key)
        if created:
            # Entries made before the watch was in place would go unseen;
            # the framework ignores those it already knows.
            for child in below:
                if self._acceptable(child, False):
                    self.context.object_added(self.storage, child)

    def _removed(self, key: str) -> None:
        self._forget_changes(key)
        self.context.object_removed(self.storage, key)

    def _moved(
        self, old: str, old_visible: bool, new: str, new_visible: bool, is_dir: bool
    ) -> None:
        if old_visible and new_visible and not self._acceptable(new, is_dir):
            # Now a symlink the storage hides (it leads out): gone for the host.
            self._removed(old)
        elif old_visible and new_visible:
            self._forget_changes(old)
            if is_dir:
                self._rekey_tree(old, new)
            self.context.object_moved(self.storage, old, new)
        elif old_visible:
            # Renamed to a hidden name: gone as far as the host knows.
            if is_dir:
                self._unwatch_tree(old)
            self._removed(old)
        elif new_visible:
            # An upload's temporary file renamed into place lands here.
            self._arrived(new, True, is_dir, created=False)
        elif is_dir:
            self._unwatch_tree(old)

    def _expire_moves(self, now: float) -> None:
        """A MOVED_FROM left alone for long enough went out of the storage."""
        for cookie, (key, visible, is_dir, seen) in list(self._moved_from.items()):
            if now - seen >= MOVE_PAIR_WAIT:
                del self._moved_from[cookie]
                if is_dir:
                    # The kernel keeps watching a folder wherever it goes.
                    self._unwatch_tree(key)
                if visible:
                    self._removed(key)

    def _forget_changes(self, key: str) -> None:
        prefix = key + "/"
        for k in [k for k in self._pending_changes if k == key or k.startswith(prefix)]:
            del self._pending_changes[k]

    def _flush_changes(self, now: float) -> None:
        for key in list(self._pending_changes):
            if now - self._last_change.get(key, -math.inf) >= CHANGE_INTERVAL:
                del self._pending_changes[key]
                self._last_change[key] = now
                self.context.object_changed(self.storage, key)
        if len(self._last_change) > 1024:
            for key, t in list(self._last_change.items()):
                if now - t >= CHANGE_INTERVAL:
                    del self._last_change[key]

    def _overflow(self) -> None:
        """Events were lost: tell the host to forget what it knows.

        MTP has no "re-read this storage" event; removing and re-adding the
        storage is the one every host understands.
        """
        log.warning("inotify queue overflowed on %s: re-announcing the storage", self.storage)
        self._moved_from.clear()
        self._pending_changes.clear()
        self._watch_tree("")
        self.context.storage_removed(self.storage)
        self.context.storage_added(self.storage)
