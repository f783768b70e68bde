"""The OBEX backup server's configuration, read from a TOML file.

::

    [obex]
    listen = "127.0.0.1:650"       # TCP address; "" serves no TCP
    tty = "/dev/ttyGS0"            # USB CDC OBEX serial port (optional)
    busy_wait = 5.0                # a second client waits this long, then Service Unavailable
    link_timeout = 600.0           # seconds without a byte before a client is dropped
    max_packet_length = 65535
    manufacturer = "Linux"         # the capability object's General section
    model = "Backup server"

    [engine]
    socket = "/run/backup-engine/engine.sock"
    idle_timeout = 300.0           # seconds idle before the engine returns to Normal
    spool_dir = "/var/lib/obex-backup-server/spool"
    space_path = "/"
    recipients = ["age1..."]       # serve every archive as .mbak.age encrypted to these
    recipients_file = "/etc/obex-backup-server/recipients.txt"  # more, one age1... a line
    identity_file = "/etc/obex-backup-server/key.txt"  # opens an encrypted archive to restore

Every key is checked when the file is loaded and a bad one is an error naming
it (``obex.listen: ...``), so nothing fails later inside a running server.
Missing keys take the defaults above, except the encryption keys: without
them archives are served and restored plain.  Key files are read at load, so
a missing, unreadable or world-readable one stops the start naming its key.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from engine.agefile import X25519Identity, X25519Recipient
from engine.serverkit import (
    KeyFileError,
    parse_recipients,
    read_identity_file,
    read_recipients_file,
)
from obex_backup_server.core.codes import MAX_PACKET_LENGTH, MIN_PACKET_LENGTH

T = TypeVar("T")

DEFAULT_PATH = Path("/etc/obex-backup-server.toml")
DEFAULT_PORT = 650
"""OBEX's registered TCP port."""


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(key: str, value: str) -> Address:
    """``host:port``, ``[v6]:port`` or a bare host (port 650); port 0 picks a free one."""
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"{key}: {value!r} is not [address]:port")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ConfigError(f"{key}: {value!r} names no host")
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ConfigError(f"{key}: port {port_text!r} is not a number 0..65535")
        port = int(port_text)
    return Address(host, port)


@dataclass
class ObexConfig:
    listen: Address | None = field(default_factory=lambda: Address("127.0.0.1", DEFAULT_PORT))
    tty: str | None = None
    busy_wait: float = 5.0
    link_timeout: float = 600.0
    max_packet_length: int = MAX_PACKET_LENGTH
    manufacturer: str = "Linux"
    model: str = "Backup server"
    socket: Path | None = None
    """The engine's socket; ``None``: ``$BACKUP_ENGINE_SOCKET`` or the engine's default."""
    idle_timeout: float = 300.0
    spool_dir: Path = Path("/var/lib/obex-backup-server/spool")
    space_path: str = "/"
    recipients: list[X25519Recipient] = field(default_factory=list)
    """``recipients`` and ``recipients_file`` together: archives are served encrypted to them."""
    identities: list[X25519Identity] = field(default_factory=list, repr=False)
    """From ``identity_file``: what opens an encrypted archive sent into Restore/."""

    @classmethod
    def load(cls, path: Path) -> ObexConfig:
        """The configuration in ``path``; ConfigError naming the file or the key."""
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not TOML: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObexConfig:
        config = cls()
        unknown = sorted(set(data) - {"obex", "engine"})
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown section or key (expected [obex], [engine])")
        obex = _section(data, "obex", _OBEX_KEYS)
        engine = _section(data, "engine", _ENGINE_KEYS)
        if "listen" in obex:
            text = _string("obex.listen", obex["listen"], empty=True)
            config.listen = parse_address("obex.listen", text) if text else None
        if "tty" in obex:
            config.tty = _string("obex.tty", obex["tty"], empty=True) or None
        if "busy_wait" in obex:
            config.busy_wait = _seconds("obex.busy_wait", obex["busy_wait"], zero=True)
        if "link_timeout" in obex:
            config.link_timeout = _seconds("obex.link_timeout", obex["link_timeout"])
        if "max_packet_length" in obex:
            value = obex["max_packet_length"]
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not MIN_PACKET_LENGTH <= value <= MAX_PACKET_LENGTH
            ):
                raise ConfigError(
                    f"obex.max_packet_length: expected {MIN_PACKET_LENGTH}..{MAX_PACKET_LENGTH}, "
                    f"got {value!r}"
                )
            config.max_packet_length = value
        for key in ("manufacturer", "model"):
            if key in obex:
                setattr(config, key, _string(f"obex.{key}", obex[key]))
        if "socket" in engine:
            socket = _string("engine.socket", engine["socket"], empty=True)
            config.socket = Path(socket) if socket else None
        if "idle_timeout" in engine:
            config.idle_timeout = _seconds("engine.idle_timeout", engine["idle_timeout"])
        if "spool_dir" in engine:
            config.spool_dir = Path(_string("engine.spool_dir", engine["spool_dir"]))
        if "space_path" in engine:
            config.space_path = _string("engine.space_path", engine["space_path"])
        if "recipients" in engine:
            value = engine["recipients"]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError('engine.recipients: expected a list of "age1..." strings')
            if not value:
                raise ConfigError(
                    "engine.recipients: an empty list encrypts to nobody; leave it out"
                )
            config.recipients += _keys("engine.recipients", parse_recipients, value, "recipient")
        if "recipients_file" in engine:
            path = _string("engine.recipients_file", engine["recipients_file"])
            config.recipients += _keys("engine.recipients_file", read_recipients_file, path)
        if "identity_file" in engine:
            path = _string("engine.identity_file", engine["identity_file"])
            config.identities = _keys("engine.identity_file", read_identity_file, path)
        if config.listen is None and config.tty is None:
            raise ConfigError("obex.listen: empty and obex.tty unset: nothing to serve")
        return config


_OBEX_KEYS = frozenset(
    {"listen", "tty", "busy_wait", "link_timeout", "max_packet_length", "manufacturer", "model"}
)
_ENGINE_KEYS = frozenset(
    {
        "socket",
        "idle_timeout",
        "spool_dir",
        "space_path",
        "recipients",
        "recipients_file",
        "identity_file",
    }
)


def _keys(key: str, load: Callable[..., T], *args: Any) -> T:
    """``load(*args)``; a key that cannot be used is a ConfigError naming ``key``."""
    try:
        return load(*args)
    except KeyFileError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _section(data: dict[str, Any], name: str, keys: frozenset[str]) -> dict[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(f"{name}: expected a table [{name}], got {section!r}")
    unknown = sorted(set(section) - keys)
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown key (known: {', '.join(sorted(keys))})")
    return section


def _string(key: str, value: object, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty):
        raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
    if "\x00" in value:
        raise ConfigError(f"{key}: contains a NUL character")
    return value


def _seconds(key: str, value: object, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}: expected a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero):
        raise ConfigError(f"{key}: expected a positive number of seconds, got {value!r}")
    return seconds
