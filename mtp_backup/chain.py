"""The backup directory: its archives and ``chain.json``, which orders them.

``chain.json`` records each base backup followed by its increments in the
order they must be restored, plus owner backups apart.  It is the only state
``mtp-backup`` keeps, so it is replaced atomically and a damaged one is an
error, never silently a fresh start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ToolError

CHAIN_FILE = "chain.json"
CHAIN_FORMAT = "mtp-backup-chain"
CHAIN_VERSION = 1


@dataclass
class ChainEntry:
    """One backup taken into the directory (file names are relative to it)."""

    archive: str
    snapshot: str | None
    backup_id: str
    based_on: str | None
    mode: str  # base | incremental
    kind: str  # full | partial | owner
    created: str
    size: int
    sha256: str
    sid: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChainEntry:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Chain:
    """``chain.json``: each base with its increments, oldest first, plus owner backups.

    Only the last base's chain can be extended, since an increment is taken
    against the newest snapshot; older chains stay listed so that a user can
    still restore an older state, in order, by hand.
    """

    device: str = ""
    chains: list[list[ChainEntry]] = field(default_factory=list)
    owners: list[ChainEntry] = field(default_factory=list)

    @classmethod
    def load(cls, directory: Path) -> Chain:
        path = directory / CHAIN_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise ToolError(f"{path}: unreadable ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != CHAIN_FORMAT:
            raise ToolError(f"{path}: not an mtp-backup chain file")
        if data.get("version") != CHAIN_VERSION:
            raise ToolError(f"{path}: unsupported version {data.get('version')!r}")
        try:
            return cls(
                device=str(data.get("device", "")),
                chains=[[ChainEntry.from_dict(e) for e in c] for c in data.get("chains", [])],
                owners=[ChainEntry.from_dict(e) for e in data.get("owners", [])],
            )
        except (TypeError, AttributeError) as exc:
            raise ToolError(f"{path}: malformed ({exc})") from exc

    def save(self, directory: Path) -> None:
        """Replaced atomically: an interrupted run never leaves a half-written chain."""
        data = {
            "format": CHAIN_FORMAT,
            "version": CHAIN_VERSION,
            "device": self.device,
            "chains": [[asdict(e) for e in c] for c in self.chains],
            "owners": [asdict(e) for e in self.owners],
        }
        tmp = directory / f".{CHAIN_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, directory / CHAIN_FILE)

    @property
    def current(self) -> list[ChainEntry]:
        return self.chains[-1] if self.chains else []

    def add(self, entry: ChainEntry) -> None:
        if entry.kind == "owner":
            self.owners.append(entry)
            return
        if entry.mode == "base":
            self.chains.append([entry])
            return
        current = self.current
        if not current:
            raise ToolError("an increment needs a base backup in the directory first")
        if entry.based_on != current[-1].backup_id:
            raise ToolError(
                f"the increment {entry.archive} is based on {entry.based_on}, "
                f"not on the newest backup {current[-1].backup_id}"
            )
        current.append(entry)

    def latest_snapshot(self) -> ChainEntry:
        """The backup an incremental must be taken against."""
        current = self.current
        if not current or current[-1].snapshot is None:
            raise ToolError(
                "no base backup with a snapshot in this directory: run a full backup first"
            )
        return current[-1]

    def restore_order(self) -> list[ChainEntry]:
        """Base first, then every increment: together they give the latest state."""
        if not self.current:
            raise ToolError("the chain file lists no backup to restore")
        return list(self.current)

    def all_entries(self) -> Iterator[ChainEntry]:
        for chain in self.chains:
            yield from chain
        yield from self.owners


def unique_path(directory: Path, name: str) -> Path:
    """``name`` in ``directory``, with ``-1``, ``-2``... before the suffix if taken.

    Two backups taken in the same second get the same name from the device.
    """
    path = directory / name
    if not path.exists():
        return path
    stem, dot, suffix = name.partition(".")
    n = 1
    while True:
        path = directory / f"{stem}-{n}{dot}{suffix}"
        if not path.exists():
            return path
        n += 1
