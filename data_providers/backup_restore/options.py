"""``[providers.backup_restore]``: every option's type and range, checked at start.

Key files are read here too, once, so a missing, unreadable or
world-readable key file stops the responder at start with the option named,
not at the first backup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.agefile import X25519Identity, X25519Recipient
from engine.serverkit import (
    KeyFileError,
    parse_recipients,
    read_identity_file,
    read_recipients_file,
)

T = TypeVar("T")
KNOWN = (
    "description, identity_file, idle_timeout, recipients, recipients_file, resume_window, "
    "socket, space_path"
)
RESUME_WINDOW = 300.0
"""Seconds a backup cut off in the middle of a download stays prepared by default."""


@dataclass
class Options:
    socket: str | None = None
    idle_timeout: float = 300.0
    resume_window: float = RESUME_WINDOW
    """How long a download cut off (unplug, session closed) can be resumed; 0: never."""
    description: str = "Backup & Restore"
    space_path: str = "/"
    recipients: list[X25519Recipient] = field(default_factory=list)
    """``recipients`` and ``recipients_file`` together: backups are served encrypted to them."""
    identities: list[X25519Identity] = field(default_factory=list, repr=False)
    """From ``identity_file``: what opens an encrypted archive sent into Restore/."""

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
            elif key == "resume_window":
                # 0 turns resuming off; inf would keep backup mode after an unplug for ever.
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or not 0 <= value < float("inf")
                ):
                    raise ValueError(
                        f"{where}: must be 0 (off) or a positive number of seconds, not {value!r}"
                    )
                opts.resume_window = float(value)
            elif key in ("socket", "description", "space_path"):
                _check_string(where, value)
                if key == "description" and len(value) > 254:
                    raise ValueError(f"{where}: longer than 254 characters")
                setattr(opts, key, value)
            elif key == "recipients":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f'{where}: must be a list of "age1..." strings')
                if not value:
                    raise ValueError(f"{where}: an empty list encrypts to nobody; leave it out")
                opts.recipients += _keys(where, parse_recipients, value, "recipient")
            elif key == "recipients_file":
                _check_string(where, value)
                opts.recipients += _keys(where, read_recipients_file, value)
            elif key == "identity_file":
                _check_string(where, value)
                opts.identities = _keys(where, read_identity_file, value)
            else:
                raise ValueError(f"{where}: unknown option (known: {KNOWN})")
        return opts


def _check_string(where: str, value: object) -> None:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValueError(f"{where}: must be a non-empty string without NUL")


def _keys(where: str, load: Callable[..., T], *args: Any) -> T:
    """``load(*args)``, its :class:`KeyFileError` as a ValueError naming the option."""
    try:
        return load(*args)
    except KeyFileError as exc:
        raise ValueError(f"{where}: {exc}") from None
