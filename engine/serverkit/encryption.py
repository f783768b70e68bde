"""Encrypted backups: archives served as ``.mbak.age``, restores decrypted as they arrive.

A server configured with age recipients shows every archive it serves
(full, per owner, increments) as the age encryption of the engine's archive:
an :class:`~engine.agefile.EncryptedView` per prepared archive gives the
exact size before the first byte and the same bytes at every re-read, and
the plaintext only ever passes through memory on its way out.  Snapshots
stay plain: they hold the owners' file names, sizes and digests but no file
content, and the host sends them back into ``Incremental/``, where the
engine must read them.

A restore decrypts while it streams into the engine (:class:`RestoreDecoder`).
age releases a chunk only once it authenticates and the final chunk only at
the end of the file, so the engine never sees the archive's end unless
every byte before it was genuine: a wrong key or a tampered byte makes the
engine's restore fail, and the engine then rolls everything back.

Key files are read here, for every transport: errors name the file, never
its content.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from engine.agefile import (
    AgeError,
    Decryptor,
    EncryptedView,
    NoMatchingIdentity,
    X25519Identity,
    X25519Recipient,
    parse_identities,
)
from engine.agefile.primitives import PAYLOAD_NONCE_SIZE, SEALED_CHUNK_SIZE

AGE_SUFFIX = ".age"
AGE_MAGIC = b"age-encryption.org/"
"""How every age file begins (the version line follows); an archive begins otherwise."""
READ_CHUNKS = 16
"""Sealed chunks per piece an encrypted read yields (about 1 MiB)."""


class KeyFileError(ValueError):
    """A recipient or identity that cannot be used; the message names it, never a secret."""


# -- configuration ---------------------------------------------------------------------


def parse_recipients(lines: Iterable[str], source: str) -> list[X25519Recipient]:
    """``age1...`` recipients, one per item; blank items and ``#`` comments are skipped."""
    recipients: list[X25519Recipient] = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            recipients.append(X25519Recipient.parse(text))
        except AgeError as exc:
            raise KeyFileError(f"{source} item {number}: {exc.message}") from None
    return recipients


KEY_FILE_LIMIT = 1 << 20
"""More than any key file holds; a bigger "key file" is not one."""


def _read_key_file(path: Path) -> tuple[str, os.stat_result]:
    """The text of a regular file, and its status; a FIFO or device is refused, not read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {_why(exc)}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{path} is not a regular file")
        data = os.read(fd, KEY_FILE_LIMIT + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {_why(exc)}") from None
    finally:
        os.close(fd)
    if len(data) > KEY_FILE_LIMIT:
        raise KeyFileError(f"{path} is too big for a key file")
    try:
        return data.decode("utf-8"), info
    except UnicodeDecodeError as exc:
        raise KeyFileError(f"cannot read {path}: {_why(exc)}") from None


def read_recipients_file(path: str | Path) -> list[X25519Recipient]:
    """The recipients of a file with one ``age1...`` per line (what ``age -R`` reads)."""
    text, _info = _read_key_file(Path(path))
    recipients = parse_recipients(text.splitlines(), str(path))
    if not recipients:
        raise KeyFileError(f"{path} holds no age1... recipient")
    return recipients


def read_identity_file(path: str | Path) -> list[X25519Identity]:
    """The secret keys of an ``age-keygen`` file that only its owner, root, can read.

    A key file others can read is a key others may have copied: it is refused
    rather than used, with the reason, so the mistake is fixed at set-up.
    """
    path = Path(path)
    text, info = _read_key_file(path)
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"{path} is readable by others (mode {mode:04o}): a secret key file must be "
            "readable only by root (chmod 600)"
        )
    if info.st_uid not in (0, os.geteuid()):
        raise KeyFileError(f"{path} belongs to user {info.st_uid}, not to root")
    try:
        return parse_identities(text, str(path))
    except AgeError as exc:
        raise KeyFileError(exc.message) from None


def _why(exc: OSError | UnicodeDecodeError) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return "not UTF-8 text"


# -- serving -----------------------------------------------------------------------------


def new_view(recipients: Sequence[X25519Recipient], plain_size: int) -> EncryptedView:
    """The encrypted file one prepared archive is served as (fresh keys each time)."""
    return EncryptedView(recipients, plain_size)


def read_pieces(
    view: EncryptedView, offset: int, length: int | None, max_chunks: int = READ_CHUNKS
) -> Iterator[tuple[int, int]]:
    """``(offset, n)`` pieces of an encrypted read, each ending on a sealed chunk's end.

    Aligned pieces need adjacent plaintext spans, so one sequential read of
    the archive from ``view.plain_span(offset, length)`` feeds them all in
    order, and no plaintext chunk is read twice.
    """
    end = view.size if length is None else min(view.size, offset + length)
    prefix = len(view.header) + PAYLOAD_NONCE_SIZE
    step = max_chunks * SEALED_CHUNK_SIZE
    at = offset
    while at < end:
        if at < prefix:
            stop = prefix + step
        else:
            stop = prefix + ((at - prefix) // SEALED_CHUNK_SIZE) * SEALED_CHUNK_SIZE + step
        stop = min(stop, end)
        yield at, stop - at
        at = stop


# -- restoring ---------------------------------------------------------------------------


class NoIdentity(AgeError):
    """An encrypted archive arrived, but the server has no key to open it."""


NO_IDENTITY = "encrypted archive, but no identity is configured"


class RestoreDecoder:
    """The bytes a peer sends, as the archive the engine restores.

    The first bytes decide: an age file is decrypted with the configured
    identities (refused with :class:`NoIdentity` when there are none), any
    other file passes through unchanged.  :meth:`feed` and :meth:`finish`
    raise :class:`~engine.agefile.AgeError` with the reason.
    """

    def __init__(self, identities: Sequence[X25519Identity]) -> None:
        self._identities = list(identities)
        self._head = bytearray()
        self._decided = False
        self._decryptor: Decryptor | None = None
        self.encrypted = False

    def feed(self, data: bytes | memoryview) -> list[bytes]:
        if self._decided:
            return self._pass(data)
        self._head += data
        if len(self._head) < len(AGE_MAGIC) and AGE_MAGIC.startswith(bytes(self._head)):
            return []
        return self._decide()

    def finish(self) -> list[bytes]:
        out = [] if self._decided else self._decide()
        if self._decryptor is not None:
            out += self._decryptor.finish()
        return out

    def _decide(self) -> list[bytes]:
        self._decided = True
        head, self._head = bytes(self._head), bytearray()
        if head.startswith(AGE_MAGIC):
            self.encrypted = True
            if not self._identities:
                raise NoIdentity(NO_IDENTITY)
            self._decryptor = Decryptor(self._identities)
        return self._pass(head)

    def _pass(self, data: bytes | memoryview) -> list[bytes]:
        if self._decryptor is None:
            return [bytes(data)] if data else []
        return self._decryptor.feed(data)


def refusal(exc: AgeError) -> str:
    """The reason ``status.txt`` gives for an encrypted archive that was refused."""
    if isinstance(exc, NoIdentity):
        return f"{NO_IDENTITY}; nothing was changed"
    if isinstance(exc, NoMatchingIdentity):
        return (
            "encrypted archive, but the configured identity does not open it "
            "(wrong key?); nothing was changed"
        )
    return f"encrypted archive refused: {exc.message}; nothing was changed"


__all__ = [
    "AGE_SUFFIX",
    "NO_IDENTITY",
    "KeyFileError",
    "NoIdentity",
    "RestoreDecoder",
    "new_view",
    "parse_recipients",
    "read_identity_file",
    "read_pieces",
    "read_recipients_file",
    "refusal",
]
