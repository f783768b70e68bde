"""OBEX's current folder and names, as the backup toolkit's keys.

An OBEX client never sends a path: it moves a current folder with SETPATH
(down into a child, up to the parent, back to the root) and names objects
relative to it.  The toolkit addresses its tree by keys, slash-separated from
the root (``""``), and a folder's key is its path, so the current folder is a
list of names and a child's key is that list joined.  The folders are fixed
(``Backup/``, ``Backup/owners/``, ``Incremental/``, ``Restore/``): none can be
made, so SETPATH with the create flag only succeeds into one that exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.serverkit import FOLDERS, OWNERS, ROOT, ErrorKind, ServerError

FOLDER_KEYS = frozenset((ROOT, *FOLDERS, OWNERS))
"""Every folder of the tree, by key."""

_NOT_IN_A_NAME = ("/", "\\", "\x00")


def check_name(name: str | None) -> str:
    """``name`` if it is one path component; a BAD_NAME error naming it otherwise."""
    if not name:
        raise ServerError(ErrorKind.BAD_NAME, "the request names no object (empty Name)")
    if name in (".", "..") or any(c in name for c in _NOT_IN_A_NAME):
        raise ServerError(ErrorKind.BAD_NAME, f"Name {name!r} is not a single file name")
    return name


def join(folder: str, name: str) -> str:
    """The key of ``name`` in the folder whose key is ``folder``."""
    return f"{folder}/{name}" if folder else name


@dataclass
class CurrentFolder:
    """Where a connection's SETPATH has taken it; the root when it connects."""

    names: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return "/".join(self.names)

    @property
    def at_root(self) -> bool:
        return not self.names

    def child(self, name: str | None) -> str:
        """The key of the object ``name`` in the current folder."""
        return join(self.key, check_name(name))

    def setpath(self, name: str | None, *, up: bool, create: bool) -> None:
        """Apply one SETPATH; on an error the current folder stays where it was.

        Up from the root is Not Found (there is no parent); down into a name
        that is no folder here is Not Found, or Forbidden with the create flag
        (folders cannot be made).  No name and no up: the root.
        """
        names = list(self.names)
        if up:
            if not names:
                raise ServerError(ErrorKind.NOT_FOUND, "SETPATH up from the root: no parent")
            names.pop()
        elif not name:
            self.names = []
            return
        if name:
            key = join("/".join(names), check_name(name))
            if key not in FOLDER_KEYS:
                if create:
                    raise ServerError(
                        ErrorKind.DENIED, f"no folder {key!r}, and no folder can be made here"
                    )
                raise ServerError(ErrorKind.NOT_FOUND, f"no folder {key!r}")
            names.append(name)
        self.names = names

    def folder(self, name: str | None) -> str:
        """The key of the folder a listing GET names: the current one when ``name`` is empty.

        ``name`` may also be a path: absolute (``/Backup``) from the root, or
        relative to the current folder.
        """
        if not name or name in (".", "/"):
            return ROOT if name == "/" else self.key
        names = [] if name.startswith("/") else list(self.names)
        for part in name.strip("/").split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if names:
                    names.pop()
                continue
            names.append(part)
        key = "/".join(names)
        if key not in FOLDER_KEYS:
            raise ServerError(ErrorKind.NOT_FOUND, f"no folder {key!r}")
        return key
