"""``[providers.backup_restore]``: every option's type and range, checked at start."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Options:
    socket: str | None = None
    idle_timeout: float = 300.0
    description: str = "Backup & Restore"
    space_path: str = "/"

    @classmethod
    def parse(cls, name: str, options: dict[str, Any]) -> Options:
        """Every option's type and range; a ValueError names ``providers.<name>.<key>``."""
        opts = cls()
        for key, value in options.items():
            where = f"providers.{name}.{key}"
            if key == "idle_timeout":
                # A bool is an int to Python; inf would never release backup mode.
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or not 0 < value < float("inf")
                ):
                    raise ValueError(
                        f"{where}: must be a positive number of seconds, not {value!r}"
                    )
                opts.idle_timeout = float(value)
            elif key in ("socket", "description", "space_path"):
                if not isinstance(value, str) or not value or "\x00" in value:
                    raise ValueError(f"{where}: must be a non-empty string without NUL")
                if key == "description" and len(value) > 254:
                    raise ValueError(f"{where}: longer than 254 characters")
                setattr(opts, key, value)
            else:
                known = "description, idle_timeout, socket, space_path"
                raise ValueError(f"{where}: unknown option (known: {known})")
        return opts
