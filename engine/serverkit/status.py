"""Restore/status.txt: what the last restore did, in words a person reads.

A copy into Restore/ that fails shows the peer only an error code; the file
says which archive, whether it was restored or refused, and why (the engine's
reason, or one line per data owner).  While a backup is held for a peer to
resume its download, a last line says which and until when.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.types import RestoreResult

from .tree import STATUS, Entry, EntryKind, uid


class RestoreStatus:
    """The text of status.txt and when it last changed; ``on_change`` is told each time."""

    def __init__(self, on_change: Callable[[str], None]) -> None:
        self.text = "No restore has run since the device started.\n"
        self.time = time.time()
        self.held = ""
        """The "held for resuming" line, or empty."""
        self._on_change = on_change

    def set_held(self, line: str) -> None:
        """Show (or with ``""`` clear) the line saying a backup waits to be resumed."""
        if line == self.held:
            return
        self.held = line
        self.time = time.time()
        self._on_change(STATUS)

    def set(self, name: str, ok: bool, detail: str) -> None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        verdict = "RESTORED" if ok else "REFUSED"
        self.text = f"{when} {name}: {verdict}\n{detail.rstrip()}\n"
        self.time = time.time()
        self._on_change(STATUS)

    def restored(self, name: str, result: RestoreResult) -> None:
        """An accepted restore: one line per data owner the archive held."""
        lines = [f"{len(result.owners)} data owner(s):"] + [
            f"  {o.sid:08X}: {'ok' if o.code == 0 else f'error {o.code}'} {o.reason}"
            for o in result.owners
        ]
        self.set(name, True, "\n".join(lines))

    @property
    def data(self) -> bytes:
        return (self.text + self.held).encode()

    def read(self, offset: int, length: int | None) -> bytes:
        data = self.data
        end = len(data) if length is None else offset + length
        return data[offset:end]

    def entry(self) -> Entry:
        return Entry(
            key=STATUS,
            name="status.txt",
            kind=EntryKind.STATUS,
            size=len(self.data),
            mtime=self.time,
            uid=uid("status"),
            read_only=True,
        )
