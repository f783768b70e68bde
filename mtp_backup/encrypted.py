"""Age-encrypted backups (``x.mbak.age``) on the PC: keys, and the archive read decrypted.

A ``.mbak.age`` is read through :class:`DecryptedFile`, which knows the
plaintext's exact size from the header and the file size alone and decrypts
as it is read, so ``verify`` checks and ``restore`` uploads the archive
without the plaintext ever being whole in memory or on disk.  The age code
(and with it ``cryptography``) is imported only when an encrypted file or a
key is actually used, so the rest of the tool starts without it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from .errors import EXIT_CORRUPT, EXIT_USAGE, ToolError

if TYPE_CHECKING:
    from engine.agefile import Decryptor, X25519Identity

AGE_SUFFIX = ".age"
AGE_MAGIC = b"age-encryption.org/"
ARMOR_MAGIC = b"-----BEGIN AGE ENCRYPTED FILE-----"
T = TypeVar("T")

READ_CIPHERTEXT = 64 * 1024 + 16
"""One sealed chunk per read: the decrypted backlog stays near 64 KiB."""


def is_encrypted(path: Path) -> bool:
    """A ``.age`` name, or age's own first bytes whatever the name."""
    if path.name.endswith(AGE_SUFFIX):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(len(ARMOR_MAGIC))
    except OSError:
        return False
    return head.startswith((AGE_MAGIC, ARMOR_MAGIC))


def plain_name(path: Path) -> str:
    """The archive's own name: ``x.mbak.age`` restores as ``x.mbak``."""
    name = path.name
    return name[: -len(AGE_SUFFIX)] if name.endswith(AGE_SUFFIX) else name


def load_identities(key_files: Sequence[Path]) -> list[X25519Identity]:
    """Every age secret key of the given key files (what ``age-keygen`` writes)."""
    from engine.agefile import AgeError, parse_identities

    identities: list[X25519Identity] = []
    for path in key_files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
            raise ToolError(
                f"{path}: cannot read the identity file: {detail}", EXIT_USAGE
            ) from None
        try:
            identities += parse_identities(text, str(path))
        except AgeError as exc:
            raise ToolError(exc.message, EXIT_USAGE) from None
    return identities


def require_identities(path: Path, identities: Sequence[X25519Identity] | None) -> None:
    if not identities:
        raise ToolError(
            f"{path.name} is encrypted: give its key with --identity KEYFILE", EXIT_USAGE
        )


class DecryptedFile:
    """An age file read as its plaintext: ``size`` known up front, ``read(n)`` decrypts on.

    Opening reads only the header: a wrong key or an altered header fails
    here, before anything is sent anywhere.  Every byte :meth:`read` returns
    has been authenticated; a damaged chunk raises :class:`ToolError` naming
    it (the bytes of the chunks before it are already out, which is why
    ``restore`` verifies the whole file first unless told not to).
    """

    def __init__(self, path: Path, identities: Sequence[X25519Identity]) -> None:
        from engine.agefile import Decryptor, plaintext_size

        require_identities(path, identities)
        self.path = path
        self._pending = b""
        self._pos = 0
        self._eof = False
        try:
            self._f = open(path, "rb")
        except OSError as exc:
            raise ToolError(f"{path}: {exc.strerror or exc}") from None
        try:
            self._decryptor: Decryptor = self._age_call(lambda: Decryptor(identities))
            file_size = os.fstat(self._f.fileno()).st_size
            while self._decryptor.header_len is None:
                self._refill(4096)
            header_len = self._decryptor.header_len
            self.size: int = self._age_call(lambda: plaintext_size(file_size, header_len))
        except BaseException:
            self._f.close()
            raise

    def __enter__(self) -> DecryptedFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` plaintext bytes (all that is left for ``n < 0``); ``b""`` at the end."""
        while not self._eof and (n < 0 or len(self._pending) - self._pos < n):
            self._refill(READ_CIPHERTEXT)
        end = len(self._pending) if n < 0 else self._pos + n
        out = self._pending[self._pos : end]
        self._pos += len(out)
        return out

    def _refill(self, size: int) -> None:
        try:
            data = self._f.read(size)
        except OSError as exc:
            raise ToolError(f"{self.path}: {exc.strerror or exc}") from None
        if data:
            pieces = self._age_call(lambda: self._decryptor.feed(data))
        else:
            pieces = self._age_call(self._decryptor.finish)
            self._eof = True
        if pieces:
            self._pending = self._pending[self._pos :] + b"".join(pieces)
            self._pos = 0

    def _age_call(self, call: Callable[[], T]) -> T:
        """Run one step of the age code; its refusal becomes the tool's error and exit code.

        A key that opens no stanza is the user's mistake (usage); anything
        else means the file is not what it should be (corrupt).
        """
        from engine.agefile import AgeError

        try:
            return call()
        except AgeError as exc:
            raise age_error(self.path.name, exc) from None


def age_error(name: str, exc: Exception) -> ToolError:
    """An age refusal as the tool's error: a key that opens nothing is usage, else corrupt."""
    from engine.agefile import AgeError, NoMatchingIdentity

    message = exc.message if isinstance(exc, AgeError) else str(exc)
    if isinstance(exc, NoMatchingIdentity):
        return ToolError(f"{name}: {message} (wrong key?)", EXIT_USAGE)
    return ToolError(f"{name}: NOT a valid backup: {message}", EXIT_CORRUPT)


class DecryptingFeed:
    """Ciphertext fed as it arrives from the device, plaintext passed to ``sink``.

    A refusal is kept, not raised, so the transfer it arrived in finishes
    cleanly; :meth:`finish` raises it.  Every byte passed on has been
    authenticated.
    """

    def __init__(
        self, name: str, identities: Sequence[X25519Identity], sink: Callable[[bytes], None]
    ) -> None:
        from engine.agefile import Decryptor

        self.name = name
        self._decryptor = Decryptor(identities)
        self._sink = sink
        self.error: ToolError | None = None

    def feed(self, data: bytes | memoryview) -> None:
        from engine.agefile import AgeError

        if self.error is not None:
            return
        try:
            pieces = self._decryptor.feed(data)
        except AgeError as exc:
            self.error = age_error(self.name, exc)
            return
        for piece in pieces:
            self._sink(piece)

    def finish(self) -> None:
        from engine.agefile import AgeError

        if self.error is None:
            try:
                pieces = self._decryptor.finish()
            except AgeError as exc:
                self.error = age_error(self.name, exc)
            else:
                for piece in pieces:
                    self._sink(piece)
        if self.error is not None:
            raise self.error


class HeaderSize:
    """The plaintext size of an age file whose bytes are fed, from its header alone.

    For a ``.mbak.age`` copied without a key: nothing can be checked, but the
    archive's size is known once the header has passed.
    """

    def __init__(self) -> None:
        self._head = bytearray()
        self.header_len: int | None = None
        self.file_size = 0
        self.error: str | None = None

    def feed(self, data: bytes | memoryview) -> None:
        from engine.agefile import AgeError, parse_header

        self.file_size += len(data)
        if self.header_len is not None or self.error is not None:
            return
        self._head += data
        try:
            header = parse_header(self._head, final=False)
        except AgeError as exc:
            self.error = exc.message
            return
        if header is not None:
            self.header_len = header.length
            self._head = bytearray()

    def plain_size(self) -> int | None:
        from engine.agefile import AgeError, plaintext_size

        if self.header_len is None:
            return None
        try:
            return plaintext_size(self.file_size, self.header_len)
        except AgeError:
            return None
