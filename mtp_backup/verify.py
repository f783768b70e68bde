"""Checking an archive on the PC, offline or while its bytes arrive.

The engine's own archive reader does the work (manifest, sizes, SHA-256
trailer), so a broken copy is noticed on the PC, not at restore time.  An
age-encrypted archive (``x.mbak.age``) is decrypted on the fly and gets the
same checks, after age's own (every chunk authenticated, nothing missing).
"""

from __future__ import annotations

import hashlib
import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import EngineError
from engine.mbak.ingest import ArchiveIngest
from engine.mbak.manifest import StreamEntry
from engine.mbak.names import safe_relpath
from engine.mbak.tar import MemberInfo

from .chain import CHAIN_FILE, Chain
from .encrypted import DecryptedFile, is_encrypted
from .errors import EXIT_CORRUPT, EXIT_OK, ToolError

if TYPE_CHECKING:
    from engine.agefile import X25519Identity


@dataclass
class ArchiveSummary:
    """What ``verify`` found in one archive."""

    path: Path
    size: int
    manifest: dict[str, Any]
    streams: int
    members: int
    sha256: str
    changed: list[int] = field(default_factory=list)
    encrypted: bool = False
    """``path`` is age-encrypted; ``size`` and ``sha256`` are the archive's, decrypted."""
    checked: bool = True
    """``False``: an encrypted copy taken without a key; nothing but its age header was
    read, so ``manifest`` is empty and ``sha256`` unknown (``""``)."""

    @property
    def backup_id(self) -> str:
        return str(self.manifest.get("backup_id") or "")

    @property
    def based_on(self) -> str | None:
        value = self.manifest.get("based_on")
        return str(value) if value else None

    def describe(self) -> list[str]:
        if not self.checked:
            return [
                f"{self.path.name}: copied, NOT checked ({self.size} bytes once decrypted)",
                "  note: it is encrypted and no --identity was given, so its SHA-256 "
                "digests were not checked; check it with: mtp-backup verify --identity "
                f"KEYFILE {self.path.name}",
            ]
        m = self.manifest
        lines = [
            f"{self.path.name}: OK ({self.size} bytes"
            + (", decrypted; every age chunk authenticated)" if self.encrypted else ")"),
            f"  device {m.get('device')}, created {m.get('created')}, "
            f"kind {m.get('kind')}, mode {m.get('mode')}",
            f"  backup id {self.backup_id}"
            + (f", based on {self.based_on}" if self.based_on else ""),
            f"  {self.streams} stream(s), {self.members} member(s); SHA-256 digests match",
        ]
        for owner in m.get("owners") or []:
            if isinstance(owner, dict):
                lines.append(f"  owner {owner.get('sid')} {owner.get('name', '')}".rstrip())
        for skipped in m.get("skipped") or []:
            if isinstance(skipped, dict):
                lines.append(f"  skipped {skipped.get('sid')}: {skipped.get('reason')}")
        if self.changed:
            lines.append(
                f"  WARNING: {len(self.changed)} stream(s) changed while the backup was "
                "taken; the device will refuse to restore those owners"
            )
        return lines


class _CheckingHandler:
    """Reads nothing out of the archive, but refuses names a restore would refuse.

    The engine refuses unsafe member names while staging; checking them here
    too means ``verify`` says "bad" for every archive a restore would reject
    on its structure, not only for digest mismatches.
    """

    def __init__(self) -> None:
        self.manifest: dict[str, Any] = {}
        self.streams: list[StreamEntry] = []
        self.members = 0

    def on_manifest(self, manifest: dict[str, object], streams: list[StreamEntry]) -> None:
        self.manifest = dict(manifest)
        self.streams = streams

    def begin_member(self, entry: StreamEntry, rel: str | None, info: MemberInfo) -> bool:
        self.members += 1
        if rel is not None:
            safe_relpath(rel)
        return False

    def data(self, entry: StreamEntry, data: bytes | memoryview) -> None:
        pass

    def end_member(self, entry: StreamEntry) -> None:
        pass

    def end_stream(self, entry: StreamEntry) -> None:
        pass


class ArchiveChecker:
    """Incremental verification: feed the bytes in any chunking, then :meth:`finish`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handler = _CheckingHandler()
        self.ingest = ArchiveIngest(self.handler)
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.error: str | None = None

    def feed(self, data: bytes | memoryview) -> None:
        self.sha256.update(data)
        self.size += len(data)
        if self.error is None:
            try:
                self.ingest.feed(data)
            except EngineError as exc:
                self.error = exc.message

    def finish(self) -> ArchiveSummary:
        if self.error is None:
            try:
                self.ingest.finish()
            except EngineError as exc:
                self.error = exc.message
        if self.error is not None:
            raise ToolError(f"{self.path.name}: NOT a valid backup: {self.error}", EXIT_CORRUPT)
        return ArchiveSummary(
            path=self.path,
            size=self.size,
            manifest=self.handler.manifest,
            streams=len(self.handler.streams),
            members=self.handler.members,
            sha256=self.sha256.hexdigest(),
            changed=list(self.ingest.changed),
        )


def verify_archive(
    path: Path, chunk: int = 1 << 20, identities: Sequence[X25519Identity] | None = None
) -> ArchiveSummary:
    """Check one ``.mbak`` or ``.snapshot`` offline; raises :class:`ToolError`.

    An encrypted one (``.mbak.age``) needs ``identities`` and is checked as
    it decrypts, never written out.
    """
    checker = ArchiveChecker(path)
    if is_encrypted(path):
        with DecryptedFile(path, identities or []) as plain:
            while data := plain.read(chunk):
                checker.feed(data)
        summary = checker.finish()
        summary.encrypted = True
        return summary
    try:
        with open(path, "rb") as f:
            while data := f.read(chunk):
                checker.feed(data)
    except OSError as exc:
        raise ToolError(f"{path}: {exc.strerror or exc}") from exc
    return checker.finish()


def verify_target(target: Path, identities: Sequence[X25519Identity] | None = None) -> int:
    """``mtp-backup verify``: one archive, or every archive of a directory's chain.

    For a directory, also that each archive is the backup ``chain.json`` says
    it is and that each increment is based on the backup before it, since a
    restore applies them in that order.  Returns the exit code.
    """
    if not target.is_dir():
        print("\n".join(verify_archive(target, identities=identities).describe()))
        return EXIT_OK
    chain = Chain.load(target)
    entries = list(chain.all_entries())
    if not entries:
        raise ToolError(f"{target}: the chain file lists no backup", EXIT_CORRUPT)
    bad = 0
    for entry in entries:
        for name in filter(None, (entry.archive, entry.snapshot)):
            try:
                summary = verify_archive(target / name, identities=identities)
            except ToolError as exc:
                print(exc, file=sys.stderr)
                bad += 1
                continue
            print("\n".join(summary.describe()))
            if name == entry.archive and summary.backup_id != entry.backup_id:
                print(f"{name}: backup id differs from {CHAIN_FILE}", file=sys.stderr)
                bad += 1
    for chain_list in chain.chains:
        for prev, inc in itertools.pairwise(chain_list):
            if inc.based_on != prev.backup_id:
                print(f"{inc.archive} is not based on {prev.archive}", file=sys.stderr)
                bad += 1
    return EXIT_OK if not bad else EXIT_CORRUPT
