"""Resumable downloads: which prepared archive each key was read from, and how far.

A peer that loses its link in the middle of an archive (cable pulled, host
asleep, its tool killed) comes back in a new session and asks for the rest
from an offset.  That only works if the bytes it gets are the ones of the
archive it began: same name, same size, same content at every offset.  The
server therefore remembers, per key, which preparation (``backup_id``) a
peer read from and the furthest offset it was sent:

* while a download is unfinished, the end of the peer's session keeps the
  backup prepared for ``resume_window`` seconds instead of releasing it
  (:meth:`ReadLog.unfinished`);
* a read that continues a download (offset above 0) of a preparation that is
  gone is refused (:meth:`ReadLog.check`): bytes of a new preparation at
  that offset would splice two different archives into one file.

A read from offset 0 starts a download afresh, of whatever is prepared now.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .errors import ErrorKind, ServerError
from .tree import Prepared

RESUME_PIECE = 1 << 20
"""Bytes a resumed read fetches and checks before passing any of them on.

The engine says whether a file in the plan changed since it was planned at the
end of each read; a resumed read asks for pieces of this size, so a change is
seen before a byte of the changed file leaves the server.
"""


@dataclass
class ReadMark:
    """One key's download: the preparation it reads from and how far it got."""

    backup_id: str
    name: str
    done: int = 0


@dataclass
class ReadLog:
    """Per key, the download in progress; kept across sessions, forgotten never."""

    marks: dict[str, ReadMark] = field(default_factory=dict)

    def check(self, key: str, prepared: Prepared, offset: int) -> None:
        """Refuse a read that would continue another preparation's archive at ``offset``.

        From offset 0 the read begins a new download of what is prepared now.
        """
        current = prepared.backup.backup_id
        name = prepared.entry(key).name
        mark = self.marks.get(key)
        if offset == 0 or mark is None:
            if mark is None or mark.backup_id != current:
                self.marks[key] = ReadMark(current, name)
            return
        if mark.backup_id != current:
            raise ServerError(
                ErrorKind.FAILED,
                f"{key!r}: {mark.name} can no longer be served (it was released, or its "
                f"data changed); the device now serves {name}: read it from the start",
            )

    def advance(self, key: str, backup_id: str, end: int) -> None:
        """Bytes up to ``end`` of ``key`` were taken by the transport.

        Only once the transport asks for more after a chunk is the chunk
        counted: the last one of an archive cut off while it was being sent
        does not make the download look finished.
        """
        mark = self.marks.get(key)
        if mark is not None and mark.backup_id == backup_id and end > mark.done:
            mark.done = end

    def unfinished(self, prepared: Prepared) -> list[str]:
        """Keys of ``prepared`` the peer began to read but was not sent to their end."""
        current = prepared.backup.backup_id
        out = []
        for key, mark in self.marks.items():
            if mark.backup_id != current or key not in prepared.entries:
                continue
            if mark.done < prepared.entry(key).size:
                out.append(key)
        return sorted(out)


def held_line(names: list[str], until: float) -> str:
    """The line ``Restore/status.txt`` shows while a backup waits for its peer."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(until))
    return f"backup {', '.join(names)} held for resuming until {when}\n"
