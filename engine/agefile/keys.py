"""X25519 recipients (``age1...``) and identities (``AGE-SECRET-KEY-1...``).

A recipient wraps a file key into a stanza; an identity unwraps it.  Secret
material never appears in a ``repr``, a ``str`` or an error message: only
:meth:`X25519Identity.encode` writes the secret key out, for a key file.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from . import bech32
from .errors import AgeError
from .header import Stanza
from .primitives import FILE_KEY_SIZE, KEY_SIZE, TAG_SIZE, b64decode, b64encode, hkdf

RECIPIENT_HRP = "age"
IDENTITY_HRP = "age-secret-key-"
STANZA_TYPE = "X25519"
_WRAP_INFO = b"age-encryption.org/v1/X25519"
_ZERO_NONCE = bytes(12)


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _wrap_key(shared: bytes, share: bytes, recipient: bytes) -> bytes:
    return hkdf(shared, share + recipient, _WRAP_INFO)


def _exchange(secret: X25519PrivateKey, peer: bytes, what: str) -> bytes:
    """X25519, refusing the all-zero result of a low-order ``peer`` (the spec says abort)."""
    try:
        shared = secret.exchange(X25519PublicKey.from_public_bytes(peer))
    except ValueError:
        shared = bytes(KEY_SIZE)
    if shared == bytes(KEY_SIZE):
        raise AgeError(f"{what} is a low-order point")
    return shared


class X25519Recipient:
    """An ``age1...`` public key: who can open the files it encrypts."""

    __slots__ = ("public",)

    def __init__(self, public: bytes) -> None:
        if len(public) != KEY_SIZE:
            raise AgeError("an X25519 recipient is 32 bytes")
        self.public = bytes(public)

    @classmethod
    def parse(cls, text: str) -> X25519Recipient:
        hrp, data = bech32.decode(text.strip())
        if hrp != RECIPIENT_HRP:
            raise AgeError("not an age X25519 recipient (age1...)")
        return cls(data)

    def encode(self) -> str:
        return bech32.encode(RECIPIENT_HRP, self.public)

    def __str__(self) -> str:
        return self.encode()

    def __repr__(self) -> str:
        return f"X25519Recipient({self.encode()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, X25519Recipient) and other.public == self.public

    def __hash__(self) -> int:
        return hash(self.public)

    def wrap(self, file_key: bytes) -> Stanza:
        """A fresh ``-> X25519`` stanza carrying ``file_key`` to this recipient."""
        ephemeral = X25519PrivateKey.generate()
        share = _raw_public(ephemeral.public_key())
        shared = _exchange(ephemeral, self.public, "the X25519 recipient")
        body = ChaCha20Poly1305(_wrap_key(shared, share, self.public)).encrypt(
            _ZERO_NONCE, file_key, None
        )
        return Stanza((STANZA_TYPE, b64encode(share)), body)


class X25519Identity:
    """An ``AGE-SECRET-KEY-1...`` secret key: opens files sent to its recipient."""

    __slots__ = ("_secret", "recipient")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_SIZE:
            raise AgeError("an X25519 identity is 32 bytes")
        self._secret = X25519PrivateKey.from_private_bytes(secret)
        self.recipient = X25519Recipient(_raw_public(self._secret.public_key()))

    @classmethod
    def generate(cls) -> X25519Identity:
        return cls(os.urandom(KEY_SIZE))

    @classmethod
    def parse(cls, text: str) -> X25519Identity:
        hrp, data = bech32.decode(text.strip())
        if hrp != IDENTITY_HRP:
            raise AgeError("not an age X25519 identity (AGE-SECRET-KEY-1...)")
        return cls(data)

    def encode(self) -> str:
        """The secret key as a key file line: handle with care."""
        secret = self._secret.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return bech32.encode(IDENTITY_HRP, secret).upper()

    def __repr__(self) -> str:
        return f"X25519Identity(recipient={self.recipient.encode()!r}, secret=<hidden>)"

    __str__ = __repr__

    def unwrap(self, stanza: Stanza) -> bytes | None:
        """The file key if ``stanza`` is addressed to this identity, else ``None``.

        Stanzas of other types are not ours and are skipped; a malformed
        X25519 stanza is an error, as the spec requires, and its body length
        is checked before any decryption is tried.
        """
        if not stanza.args or stanza.args[0] != STANZA_TYPE:
            return None
        if len(stanza.args) != 2:
            raise AgeError("X25519 stanza must have exactly one argument (the ephemeral share)")
        share = b64decode(stanza.args[1], "X25519 stanza's ephemeral share")
        if len(share) != KEY_SIZE:
            raise AgeError("X25519 stanza's ephemeral share is not 32 bytes")
        if len(stanza.body) != FILE_KEY_SIZE + TAG_SIZE:
            raise AgeError("X25519 stanza's body is not 32 bytes")
        shared = _exchange(self._secret, share, "X25519 stanza's ephemeral share")
        key = _wrap_key(shared, share, self.recipient.public)
        try:
            return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, stanza.body, None)
        except InvalidTag:
            return None


def parse_identities(text: str, source: str = "identity file") -> list[X25519Identity]:
    """Every identity of an age key file (what ``age-keygen`` writes).

    Blank lines and ``#`` comments are skipped; any other line must be an
    X25519 secret key.  Errors name the line, never its content, since a
    damaged line is still mostly a secret.
    """
    if text.startswith("age-encryption.org/"):
        raise AgeError(f"{source} is itself age-encrypted; decrypt it first")
    identities: list[X25519Identity] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("AGE-SECRET-KEY-1"):
            raise AgeError(f"{source} line {number}: not an age X25519 secret key")
        try:
            identities.append(X25519Identity.parse(line))
        except AgeError as exc:
            raise AgeError(f"{source} line {number}: {exc.message}") from None
    if not identities:
        raise AgeError(f"{source} holds no age secret key")
    return identities
