"""Passive and public file lists (engine/README.md, Passive data), from ``stat`` only.

The lists drive everything that follows: base/incremental selection, snapshots,
and the exact archive size. They are built without reading any file content, so a
listing of a large tree costs one ``lstat`` per entry.
"""

from __future__ import annotations

import fnmatch
import logging
import operator
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..mbak.snapshot import FileRecord

log = logging.getLogger(__name__)

GLOBAL_EXCLUDED_TOP = ("nobackup",)
PUBLIC_EXCLUDED_TOP = ("private", "sys", "system", "resource")


class ExcludeSet:
    """Explicit excludes: each covers the path itself and everything below it.

    ``exclude name="\\nobackup\\"`` prunes that directory, with or without the
    trailing separator, so that an exclude written for a directory always keeps its
    contents out. Patterns may use shell wildcards (``*``, ``?``, ``[...]``), matched
    case-sensitively as Linux is.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.exact: set[str] = set()
        self.globs: list[str] = []
        for p in patterns:
            p = p.strip("/")
            if not p:
                continue
            if any(c in p for c in "*?["):
                self.globs.append(p)
            else:
                self.exact.add(p)

    def matches(self, rel: str) -> bool:
        rel = rel.rstrip("/")
        if not rel:
            return False
        if rel in self.exact:
            return True
        parts = rel.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in self.exact:
                return True
        for g in self.globs:
            if fnmatch.fnmatchcase(rel, g):
                return True
            for i in range(1, len(parts)):
                if fnmatch.fnmatchcase("/".join(parts[:i]), g):
                    return True
        return False


def globally_excluded(rel: str) -> bool:
    """``NoBackup/`` at the top of a private directory is never backed up."""
    top = rel.split("/", 1)[0].lower()
    return top in GLOBAL_EXCLUDED_TOP


def passive_file_list(
    private_dir: Path,
    includes: Iterable[str],
    excludes: Iterable[str],
    always_excluded: Iterable[str] = (),
) -> list[FileRecord]:
    """All in-scope files and empty directories below ``private_dir``, sorted by path.

    Missing include paths are skipped silently (apps name optional files); symlinks and
    special files are left out because a restore would refuse them anyway.
    """
    if not private_dir.is_dir():
        return []
    ex = ExcludeSet(excludes)
    skip = set(always_excluded)
    out: dict[str, FileRecord] = {}
    root = os.fsdecode(private_dir)

    def excluded(rel: str) -> bool:
        return rel.rstrip("/") in skip or globally_excluded(rel) or ex.matches(rel)

    walker = _Walker(out, ex, skip)
    for inc in includes:
        rel = inc.rstrip("/")
        if rel and excluded(rel):
            continue
        full = os.path.join(root, rel) if rel else root
        try:
            st = os.lstat(full)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            walker.walk_root(full, rel)
        elif stat.S_ISREG(st.st_mode) and not inc.endswith("/"):
            out[rel] = FileRecord(rel, st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
    return sorted(out.values(), key=_PATH)


_PATH = operator.itemgetter(0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_S_IFMT = 0o170000
_S_IFREG = 0o100000
_S_IFDIR = 0o040000


class _Walker:
    """One ``scandir`` pass per directory, each entry's ``lstat`` taken once.

    A directory is only walked when it passed the exclusion checks, so below it
    only each entry's own path needs checking (its ancestors are known to be in
    scope); ``NoBackup`` is only looked for at the top of the private directory.
    """

    def __init__(self, out: dict[str, FileRecord], ex: ExcludeSet, skip: set[str]) -> None:
        self.out = out
        self.exact = skip | ex.exact
        self.globs = ex.globs

    def excluded(self, crel: str, top: bool) -> bool:
        if top and crel.lower() in GLOBAL_EXCLUDED_TOP:
            return True
        if crel in self.exact:
            return True
        return any(fnmatch.fnmatchcase(crel, g) for g in self.globs)

    def walk_root(self, full: str, rel: str) -> int:
        """Add the tree below the directory ``full`` (``rel`` in the listing)."""
        try:
            fd = os.open(full, _DIR_FLAGS)
        except OSError as err:
            log.warning("cannot list %r: %s", full, err)
            return 0
        try:
            return self.walk(fd, rel)
        finally:
            os.close(fd)

    def walk(self, fd: int, rel: str) -> int:
        """Add the subtree of the open directory ``fd`` to ``out``; returns its entry count.

        Directories are opened relative to their parent and entries stat'ed with
        ``fstatat``: no path is resolved from the root again for every file, and
        a directory swapped for a symlink meanwhile is not followed.
        """
        try:
            # Unsorted: the whole listing is sorted once at the end.
            with os.scandir(fd) as it:
                entries = list(it)
        except OSError as err:
            log.warning("cannot list %r: %s", rel, err)
            return 0
        out = self.out
        top = not rel
        # Exact excludes are a set lookup inline; the full check only when needed.
        full_check = top or bool(self.globs)
        exact = self.exact
        base = rel + "/" if rel else ""
        added = 0
        new = tuple.__new__  # FileRecord(...) without a Python-level __new__ per file
        for e in entries:
            crel = base + e.name
            if crel in exact or (full_check and self.excluded(crel, top)):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            m = st.st_mode
            kind = m & _S_IFMT
            if kind == _S_IFREG:
                if crel not in out:
                    out[crel] = new(FileRecord, (crel, st.st_size, st.st_mtime_ns, m & 0o7777))
                added += 1
            elif kind == _S_IFDIR:
                # Every directory is listed (not only empty ones) so that restore
                # reproduces directory modes and mtimes as well.
                key = crel + "/"
                out[key] = new(FileRecord, (key, 0, st.st_mtime_ns, m & 0o7777))
                try:
                    sub = os.open(e.name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as err:
                    log.warning("cannot list %r: %s", crel, err)
                    added += 1
                    continue
                try:
                    added += 1 + self.walk(sub, crel)
                finally:
                    os.close(sub)
            else:
                log.info("skipping non-regular file %s", crel)
        return added


def iter_public_files(
    drive: str,
    drive_root: Path,
    selections: Iterable[tuple[bool, str, str, bool]],
) -> Iterator[tuple[Path, os.stat_result]]:
    """Public files on one drive: absolute includes minus excludes and system areas.

    ``selections`` are ``(include, drive, path, is_dir)`` with drive ``'!'`` for any.
    """
    sels = [s for s in selections if s[1] in (drive, "!")]
    exact_ex = {s[2].rstrip("/") for s in sels if not s[0]}
    seen: set[str] = set()

    def excluded(rel: str) -> bool:
        if rel.split("/", 1)[0].lower() in PUBLIC_EXCLUDED_TOP:
            return True
        parts = rel.split("/")
        return any("/".join(parts[: i + 1]) in exact_ex for i in range(len(parts)))

    def walk(rel: str) -> Iterator[tuple[Path, os.stat_result]]:
        full = drive_root / rel if rel else drive_root
        try:
            st = os.lstat(full)
        except OSError:
            return
        if stat.S_ISREG(st.st_mode):
            if rel not in seen:
                seen.add(rel)
                yield full, st
        elif stat.S_ISDIR(st.st_mode):
            try:
                names = sorted(os.listdir(full))
            except OSError:
                return
            for n in names:
                c = f"{rel}/{n}" if rel else n
                if not excluded(c):
                    yield from walk(c)

    for inc, _d, path, _is_dir in sels:
        if not inc:
            continue
        rel = path.rstrip("/")
        if rel and excluded(rel):
            continue
        yield from walk(rel)
