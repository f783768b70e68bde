"""The building blocks every part of age shares: HKDF, canonical base64, sizes.

Kept apart so the header, the recipients and the payload derive keys and
encode bytes one way only.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import AgeError

FILE_KEY_SIZE = 16
PAYLOAD_NONCE_SIZE = 16
KEY_SIZE = 32
TAG_SIZE = 16
CHUNK_SIZE = 64 * 1024
"""Plaintext bytes per payload chunk."""
SEALED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA-256 with 32 bytes of output, as every age key derivation uses."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(ikm)


def b64encode(data: bytes) -> str:
    """Standard base64 without ``=`` padding (canonical by construction)."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str | bytes, what: str) -> bytes:
    """Decode unpadded base64, refusing padding and non-canonical forms as the spec requires.

    A non-canonical encoding (stray bits in the last character) would let two
    different headers carry the same bytes; refusing it keeps the header MAC
    the only judge of what a header says.
    """
    raw = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
    if b"=" in raw or len(raw) % 4 == 1:
        raise AgeError(f"{what} is not valid unpadded base64")
    try:
        data = base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise AgeError(f"{what} is not valid base64") from None
    if b64encode(data).encode("ascii") != raw:
        raise AgeError(f"{what} is not canonical base64")
    return data


def payload_size(plain_size: int) -> int:
    """Payload bytes after the header: nonce, then each chunk with its tag.

    An empty plaintext still has one (empty, final) chunk; otherwise a
    plaintext that fills its last chunk exactly ends there, with no empty
    chunk after it.
    """
    if plain_size < 0:
        raise ValueError("plaintext size cannot be negative")
    chunks = max(1, -(-plain_size // CHUNK_SIZE))
    return PAYLOAD_NONCE_SIZE + plain_size + chunks * TAG_SIZE


def encrypted_size(plain_size: int, header_len: int) -> int:
    """The exact size of an age file: header, payload nonce, sealed chunks."""
    return header_len + payload_size(plain_size)


def plaintext_size(file_size: int, header_len: int) -> int:
    """The plaintext size an age file of ``file_size`` bytes must decrypt to.

    The inverse of :func:`encrypted_size`; :class:`AgeError` when no plaintext
    size gives that file size (the file is truncated or has bytes added).
    """
    sealed = file_size - header_len - PAYLOAD_NONCE_SIZE
    if sealed < TAG_SIZE:
        raise AgeError("file is truncated: the payload is shorter than one chunk")
    full, rest = divmod(sealed, SEALED_CHUNK_SIZE)
    if rest and rest < TAG_SIZE:
        raise AgeError("file is truncated or has trailing data: its size fits no chunk layout")
    chunks = full + (1 if rest else 0)
    plain = sealed - chunks * TAG_SIZE
    if payload_size(plain) != sealed + PAYLOAD_NONCE_SIZE:
        raise AgeError("file is truncated or has trailing data: its size fits no chunk layout")
    return plain
