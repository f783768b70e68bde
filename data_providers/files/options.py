"""Validation of the ``files`` provider's table in the config file.

Every mistake is reported as :class:`ValueError` naming the key
(``storages[1].umask``) and the reason, because a typo in a config file
that is silently ignored (``readonly = true``) would expose a storage
read-write that the owner meant to protect.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

_STORAGE_KEYS = frozenset(
    {"path", "description", "read_only", "uid", "gid", "umask", "show_hidden", "removable"}
)
_PROVIDER_KEYS = frozenset({"storages"})


@dataclass(frozen=True, slots=True)
class StorageOptions:
    """One validated ``[[...storages]]`` table."""

    path: str
    """The directory exposed as the storage, as configured (not resolved)."""
    description: str
    read_only: bool = False
    uid: int | None = None
    """Owner given to new files and folders; ``None`` leaves the process's."""
    gid: int | None = None
    umask: int = 0o022
    show_hidden: bool = False
    removable: bool = False


def _bool(where: str, value: Any) -> bool:
    # TOML has real booleans; accepting 0/1 or "yes" would hide typos.
    if not isinstance(value, bool):
        raise ValueError(f"{where}: must be true or false, not {value!r}")
    return value


def _id(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32 - 1:
        raise ValueError(f"{where}: must be a numeric user/group id (0 .. 4294967294)")
    return value


def _storage(where: str, table: Any) -> StorageOptions:
    if not isinstance(table, dict):
        raise ValueError(f"{where}: must be a table with at least 'path'")
    unknown = sorted(set(table) - _STORAGE_KEYS)
    if unknown:
        raise ValueError(
            f"{where}.{unknown[0]}: unknown option (known: {', '.join(sorted(_STORAGE_KEYS))})"
        )
    if "path" not in table:
        raise ValueError(f"{where}.path: required (the directory to expose)")
    path = table["path"]
    if not isinstance(path, str) or not path:
        raise ValueError(f"{where}.path: must be a non-empty string")
    if "\x00" in path:
        raise ValueError(f"{where}.path: must not contain NUL")
    if not os.path.isdir(path):
        raise ValueError(f"{where}.path: {path!r} is not an existing directory")

    default_description = os.path.basename(os.path.realpath(path)) or "Internal storage"
    description = table.get("description", default_description)
    if not isinstance(description, str) or not description.strip():
        raise ValueError(f"{where}.description: must be a non-empty string")
    if len(description) > 254:
        # MTP strings hold at most 255 UTF-16 units including the NUL.
        raise ValueError(f"{where}.description: longer than 254 characters")

    umask = table.get("umask", 0o022)
    if isinstance(umask, bool) or not isinstance(umask, int) or not 0 <= umask <= 0o777:
        raise ValueError(f"{where}.umask: must be an integer between 0 and 0o777")

    return StorageOptions(
        path=path,
        description=description,
        read_only=_bool(f"{where}.read_only", table.get("read_only", False)),
        uid=_id(f"{where}.uid", table["uid"]) if "uid" in table else None,
        gid=_id(f"{where}.gid", table["gid"]) if "gid" in table else None,
        umask=umask,
        show_hidden=_bool(f"{where}.show_hidden", table.get("show_hidden", False)),
        removable=_bool(f"{where}.removable", table.get("removable", False)),
    )


def parse_options(options: dict[str, Any], prefix: str = "files") -> list[StorageOptions]:
    """Validate the provider table; ``prefix`` is how errors name it."""
    if not isinstance(options, dict):
        raise ValueError(f"{prefix}: must be a table")
    unknown = sorted(set(options) - _PROVIDER_KEYS)
    if unknown:
        raise ValueError(f"{prefix}.{unknown[0]}: unknown option (known: storages)")
    storages = options.get("storages")
    if storages is None:
        raise ValueError(f"{prefix}.storages: required (a list of storage tables)")
    if not isinstance(storages, list) or not storages:
        raise ValueError(f"{prefix}.storages: must be a non-empty list of tables")
    parsed = [_storage(f"{prefix}.storages[{i}]", table) for i, table in enumerate(storages)]
    seen: dict[str, int] = {}
    for i, opts in enumerate(parsed):
        real = os.path.realpath(opts.path)
        if real in seen:
            # Two storages on one directory would give every object two
            # handles with the same PUID, which confuses Windows sync.
            raise ValueError(
                f"{prefix}.storages[{i}].path: same directory as storages[{seen[real]}]"
            )
        seen[real] = i
    return parsed
