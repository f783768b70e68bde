"""age v1 encryption (age-encryption.org/v1) for backups: ``x.mbak.age``.

What the stock ``age`` tool writes and reads, for X25519 recipients:
``age -d -i key.txt x.mbak.age | tar -x`` opens a backup this package
encrypted, and :class:`Decryptor` opens what ``age -r age1...`` wrote.

Two halves, both free of I/O so the device's async server and the PC tool
share them:

- :class:`EncryptedView`: the encryption of a random-access plaintext as a
  random-access file of exact size (:func:`encrypted_size`), identical bytes
  at every re-read;
- :class:`Decryptor`: a ciphertext stream in, authenticated plaintext out,
  with :func:`plaintext_size` giving the plaintext's size up front.

Only ``cryptography`` besides the standard library.  Key objects hide their
secrets from ``repr`` and errors never quote key material.
"""

from __future__ import annotations

from .decrypt import NO_MATCH, Decryptor, decrypt_chunks, decrypted_size, unwrap_file_key
from .encrypt import EncryptedView, PlainReader
from .errors import AgeError, NoMatchingIdentity
from .header import Header, Stanza, build_header, parse_header
from .keys import X25519Identity, X25519Recipient, parse_identities
from .primitives import CHUNK_SIZE, encrypted_size, payload_size, plaintext_size

__all__ = [
    "CHUNK_SIZE",
    "NO_MATCH",
    "AgeError",
    "Decryptor",
    "EncryptedView",
    "Header",
    "NoMatchingIdentity",
    "PlainReader",
    "Stanza",
    "X25519Identity",
    "X25519Recipient",
    "build_header",
    "decrypt_chunks",
    "decrypted_size",
    "encrypted_size",
    "parse_header",
    "parse_identities",
    "payload_size",
    "plaintext_size",
    "unwrap_file_key",
]
