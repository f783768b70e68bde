"""The payload's STREAM construction: 64 KiB chunks, each sealed on its own.

Chunk ``i`` is ChaCha20-Poly1305 under the payload key with the nonce
``i`` (11 bytes, big-endian) followed by 1 for the final chunk and 0 for the
others.  Because each chunk stands alone, any chunk can be sealed or opened
without the ones before it: that is what makes an encrypted view of a
random-access archive random-access too.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .primitives import CHUNK_SIZE, hkdf

_COUNTER_BYTES = 11
MAX_CHUNKS = 1 << (8 * _COUNTER_BYTES)


def payload_key(file_key: bytes, nonce: bytes) -> bytes:
    return hkdf(file_key, nonce, b"payload")


def chunk_nonce(index: int, last: bool) -> bytes:
    if not 0 <= index < MAX_CHUNKS:
        raise ValueError("chunk counter out of range")
    return index.to_bytes(_COUNTER_BYTES, "big") + (b"\x01" if last else b"\x00")


def chunk_count(plain_size: int) -> int:
    """Chunks of a plaintext of ``plain_size`` bytes (one, empty, for an empty one)."""
    return max(1, -(-plain_size // CHUNK_SIZE))


class ChunkCipher:
    """Seals and opens chunks of one payload."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)

    def __repr__(self) -> str:
        return "ChunkCipher(<key hidden>)"

    def seal(self, index: int, last: bool, plain: bytes | memoryview) -> bytes:
        return self._aead.encrypt(chunk_nonce(index, last), bytes(plain), None)

    def open(self, index: int, last: bool, sealed: bytes | memoryview) -> bytes | None:
        """The plaintext, or ``None`` when the chunk does not authenticate as given."""
        try:
            return self._aead.decrypt(chunk_nonce(index, last), bytes(sealed), None)
        except InvalidTag:
            return None
