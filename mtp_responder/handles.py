"""Object handles: the framework's names for provider objects.

Handles live as long as the responder process, not just a session: libmtp's
tools open a session per command and a host that printed handle 42 expects
42 to mean the same file in the next run.  Both directions are dicts, so a
lookup is O(1) whatever the number of objects.
"""

from __future__ import annotations

from collections.abc import Iterator

from .core.codes import ResponseCode
from .provider import ProviderError

Location = tuple[int, str]
"""(storage id, key)"""


class HandleTable:
    def __init__(self) -> None:
        self._by_handle: dict[int, Location] = {}
        self._by_location: dict[Location, int] = {}
        self._children: dict[Location, set[str]] = {}
        self._next = 1

    def __len__(self) -> int:
        return len(self._by_handle)

    def handle_for(self, storage_id: int, key: str) -> int:
        """The handle of an object, allocating one on first sight."""
        loc = (storage_id, key)
        handle = self._by_location.get(loc)
        if handle is None:
            handle = self._next
            self._next += 1
            if self._next >= 0xFFFFFFFF:
                self._next = 1  # after four billion objects; skip live ones
                while self._next in self._by_handle:
                    self._next += 1
            self._add(handle, loc)
        return handle

    def _add(self, handle: int, loc: Location) -> None:
        self._by_handle[handle] = loc
        self._by_location[loc] = handle
        self._children.setdefault((loc[0], _parent(loc[1])), set()).add(loc[1])

    def _remove(self, loc: Location) -> int:
        handle = self._by_location.pop(loc)
        del self._by_handle[handle]
        siblings = self._children.get((loc[0], _parent(loc[1])))
        if siblings is not None:
            siblings.discard(loc[1])
            if not siblings:
                del self._children[(loc[0], _parent(loc[1]))]
        return handle

    def known(self, storage_id: int, key: str) -> int | None:
        return self._by_location.get((storage_id, key))

    def lookup(self, handle: int) -> Location:
        try:
            return self._by_handle[handle]
        except KeyError:
            raise ProviderError(
                ResponseCode.INVALID_OBJECT_HANDLE, f"no object with handle {handle:#x}"
            ) from None

    def forget(self, storage_id: int, key: str) -> list[int]:
        """Drop an object and everything below it; return the dropped handles."""
        return [self._remove(loc) for loc in list(self._subtree(storage_id, key))]

    def forget_storage(self, storage_id: int) -> list[int]:
        locs = [loc for loc in self._by_location if loc[0] == storage_id]
        return [self._remove(loc) for loc in locs]

    def rekey(self, storage_id: int, old_key: str, new_key: str) -> None:
        """A subtree moved or was renamed: keep its handles, change its keys."""
        moves = [
            (loc, new_key + loc[1][len(old_key) :]) for loc in self._subtree(storage_id, old_key)
        ]
        # Whatever lived at the destination is gone now.
        handles = [self._remove(loc) for loc, _ in moves]
        for _, dest in moves:
            if (storage_id, dest) in self._by_location:
                self._remove((storage_id, dest))
        for handle, (_, dest) in zip(handles, moves, strict=True):
            self._add(handle, (storage_id, dest))

    def children(self, storage_id: int, key: str) -> set[str]:
        """Keys with handles directly below ``key``."""
        return set(self._children.get((storage_id, key), ()))

    def _subtree(self, storage_id: int, key: str) -> Iterator[Location]:
        """The object and its descendants that have handles, parents first."""
        if (storage_id, key) in self._by_location:
            yield (storage_id, key)
        stack = [key]
        while stack:
            folder = stack.pop()
            for child in self._children.get((storage_id, folder), ()):
                yield (storage_id, child)
                stack.append(child)


def _parent(key: str) -> str:
    return key.rpartition("/")[0]
