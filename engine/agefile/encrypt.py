"""An encrypted view of a random-access plaintext: exact size, reads at any offset.

The device serves ``<name>.mbak.age`` from an archive it never writes out
in plaintext: the file key, the payload nonce and the header are fixed when
the view is made, so sealing any chunk again yields the same bytes and any
read, in any order, returns exactly what one sequential encryption would.
The keys live only in this object's memory.

The view does no I/O itself.  :meth:`EncryptedView.plain_span` says which
plaintext bytes a read needs and :meth:`EncryptedView.seal` turns them into
the ciphertext, so an async server reads its archive in between;
:meth:`EncryptedView.read` does both with a plain ``read(offset, n)``::

    view = EncryptedView(recipients, archive_size)   # once per served object
    size = view.size                                  # what ObjectInfo announces
    offset_p, length_p = view.plain_span(offset, n)   # for each read ...
    data = view.seal(offset, n, await archive.read(offset_p, length_p))

Keep the view as long as the object is served: a new view is a new file
(fresh keys), so its bytes differ from the old one's at every offset.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from .errors import AgeError
from .header import build_header
from .keys import X25519Recipient
from .payload import ChunkCipher, chunk_count, payload_key
from .primitives import (
    CHUNK_SIZE,
    FILE_KEY_SIZE,
    PAYLOAD_NONCE_SIZE,
    SEALED_CHUNK_SIZE,
    encrypted_size,
)

PlainReader = Callable[[int, int], bytes]
"""``read(offset, n)`` of the plaintext: exactly ``n`` bytes (fewer only past its end)."""


class EncryptedView:
    """``size`` and ``read(offset, n)`` of the age encryption of a plaintext of known size."""

    def __init__(
        self,
        recipients: Sequence[X25519Recipient],
        plain_size: int,
        read_plain: PlainReader | None = None,
    ) -> None:
        if not recipients:
            raise AgeError("an age file needs at least one recipient")
        if plain_size < 0:
            raise ValueError("plaintext size cannot be negative")
        file_key = os.urandom(FILE_KEY_SIZE)
        nonce = os.urandom(PAYLOAD_NONCE_SIZE)
        self.header = build_header([r.wrap(file_key) for r in recipients], file_key)
        self.plain_size = plain_size
        self.size = encrypted_size(plain_size, len(self.header))
        self._prefix = self.header + nonce
        self._chunks = chunk_count(plain_size)
        self._cipher = ChunkCipher(payload_key(file_key, nonce))
        self._read_plain = read_plain

    def __repr__(self) -> str:
        return f"EncryptedView(size={self.size}, plain_size={self.plain_size}, <keys hidden>)"

    def _chunk_range(self, offset: int, n: int) -> range:
        """Indices of the chunks that bytes ``[offset, offset + n)`` of the file touch."""
        start = max(offset, len(self._prefix))
        end = min(offset + n, self.size)
        if end <= start:
            return range(0)
        first = (start - len(self._prefix)) // SEALED_CHUNK_SIZE
        last = (end - 1 - len(self._prefix)) // SEALED_CHUNK_SIZE
        return range(first, last + 1)

    def plain_span(self, offset: int, n: int) -> tuple[int, int]:
        """``(plain offset, length)``: the plaintext :meth:`seal` needs for this read."""
        self._check(offset, n)
        chunks = self._chunk_range(offset, n)
        if not chunks:
            return (0, 0)
        begin = chunks[0] * CHUNK_SIZE
        return (begin, min(self.plain_size, (chunks[-1] + 1) * CHUNK_SIZE) - begin)

    def seal(self, offset: int, n: int, plain: bytes | memoryview) -> bytes:
        """Bytes ``[offset, offset + n)`` of the file (fewer past its end).

        ``plain`` is the plaintext of :meth:`plain_span` for the same
        arguments; a different length means the plaintext changed size under
        the view, and is refused rather than sealed into a wrong file.
        """
        self._check(offset, n)
        end = min(offset + n, self.size)
        if end <= offset:
            return b""
        span_offset, span_len = self.plain_span(offset, n)
        if len(plain) != span_len:
            raise AgeError(
                f"plaintext read at {span_offset} gave {len(plain)} bytes, expected {span_len}"
            )
        out = bytearray(self._prefix[offset:end])
        chunks = self._chunk_range(offset, n)
        if chunks:
            view = memoryview(plain)
            sealed = bytearray()
            for index in chunks:
                at = index * CHUNK_SIZE - span_offset
                piece = view[at : at + CHUNK_SIZE]
                sealed += self._cipher.seal(index, index == self._chunks - 1, piece)
            base = len(self._prefix) + chunks[0] * SEALED_CHUNK_SIZE
            out += sealed[max(offset, base) - base : end - base]
        return bytes(out)

    def read(self, offset: int, n: int) -> bytes:
        """Read through the ``read_plain`` given at construction."""
        if self._read_plain is None:
            raise RuntimeError("this view has no plaintext reader: use plain_span() and seal()")
        span_offset, span_len = self.plain_span(offset, n)
        plain = self._read_plain(span_offset, span_len) if span_len else b""
        return self.seal(offset, n, plain)

    @staticmethod
    def _check(offset: int, n: int) -> None:
        if offset < 0 or n < 0:
            raise ValueError("offset and length cannot be negative")
