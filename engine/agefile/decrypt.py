"""Streaming decryption: ciphertext in any chunking, plaintext out, every check made.

The header is parsed as its bytes arrive, the file key found with the first
identity that opens a stanza, and the header MAC checked before any payload
byte is released.  A chunk is released only once authenticated, and the end
of the file must be a chunk sealed as final: so a truncated file, a file with
bytes added and a tampered file are all refused, naming the chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO

from .errors import AgeError, NoMatchingIdentity
from .header import MAX_HEADER, VERSION_LINE, Header, parse_header
from .keys import X25519Identity
from .payload import ChunkCipher, payload_key
from .primitives import PAYLOAD_NONCE_SIZE, SEALED_CHUNK_SIZE, TAG_SIZE, plaintext_size

NO_MATCH = "no identity matches any recipient stanza"
MAC_LINE_START = b"\n---"
"""The MAC line is the only header line that starts with ``---``."""


def unwrap_file_key(header: Header, identities: Sequence[X25519Identity]) -> bytes:
    """The file key, from the first stanza an identity opens; the MAC is then checked."""
    for stanza in header.stanzas:
        for identity in identities:
            file_key = identity.unwrap(stanza)
            if file_key is not None:
                header.verify(file_key)
                return file_key
    raise NoMatchingIdentity(NO_MATCH)


class Decryptor:
    """Feed ciphertext with :meth:`feed`, end with :meth:`finish`; both return plaintext.

    At most one sealed chunk and one feed are buffered: a chunk is released
    as soon as it authenticates, a full one that is not sealed as final at
    once, the final one when the end of the file confirms nothing follows it.
    """

    def __init__(self, identities: Sequence[X25519Identity]) -> None:
        if not identities:
            raise AgeError("no identity given to decrypt with")
        self._identities = list(identities)
        self._buf = bytearray()
        self.header: Header | None = None
        self._file_key: bytes | None = None
        self._cipher: ChunkCipher | None = None
        self._index = 0
        self._done = False
        self._scanned = 0
        self._mac_at = -1
        self.plain_bytes = 0
        """Plaintext bytes released so far."""

    def __repr__(self) -> str:
        return f"Decryptor(chunk={self._index}, <keys hidden>)"

    @property
    def header_len(self) -> int | None:
        return self.header.length if self.header is not None else None

    def feed(self, data: bytes | memoryview) -> list[bytes]:
        if self._done:
            if data:
                raise AgeError(f"trailing data after the final chunk (chunk {self._index - 1})")
            return []
        self._buf += data
        out: list[bytes] = []
        if not self._parse_front(final=False):
            return out
        while len(self._buf) >= SEALED_CHUNK_SIZE:
            plain = self._open_full_chunk()
            if plain is None:
                break  # perhaps the final chunk, filled exactly: the end of the file decides
            out.append(plain)
        return out

    def finish(self) -> list[bytes]:
        """Release the final chunk; :class:`AgeError` if the file ended early."""
        if self._done:
            return []
        if not self._parse_front(final=True):
            raise AgeError("file is truncated: the payload nonce is missing")
        sealed = bytes(self._buf)
        if len(sealed) < TAG_SIZE:
            if not sealed and self._index > 0:
                raise AgeError(f"file is truncated: chunk {self._index - 1} is not the final chunk")
            raise AgeError(f"file is truncated inside chunk {self._index}")
        if len(sealed) == TAG_SIZE and self._index > 0:
            raise AgeError(f"chunk {self._index} is an empty final chunk, which age forbids")
        assert self._cipher is not None
        plain = self._cipher.open(self._index, True, sealed)
        if plain is None:
            raise AgeError(f"chunk {self._index} failed authentication: altered or damaged")
        self._buf.clear()
        self._index += 1
        self._done = True
        self.plain_bytes += len(plain)
        return [plain] if plain else []

    def _parse_front(self, final: bool) -> bool:
        """Header and payload nonce; ``False`` while more bytes are needed."""
        if self._cipher is not None:
            return True
        if self.header is None:
            if not final and not self._header_may_be_complete():
                return False
            self.header = parse_header(self._buf, final=final)
            if self.header is None:
                return False
            self._file_key = unwrap_file_key(self.header, self._identities)
            del self._buf[: self.header.length]
        if len(self._buf) < PAYLOAD_NONCE_SIZE:
            return False
        assert self._file_key is not None
        self._cipher = ChunkCipher(
            payload_key(self._file_key, bytes(self._buf[:PAYLOAD_NONCE_SIZE]))
        )
        self._file_key = None
        del self._buf[:PAYLOAD_NONCE_SIZE]
        return True

    def _header_may_be_complete(self) -> bool:
        """Whether parsing now can give an answer.

        Parsing at every feed would make a header fed a byte at a time cost
        quadratic time; instead each byte is scanned once.  The first look at
        the version line parses (a file that is not age fails at once); after
        that, parsing waits for the MAC line's line feed, or for enough bytes
        to know the MAC line is malformed.
        """
        buf = self._buf
        first_look = self._scanned < len(VERSION_LINE) <= len(buf)
        if self._mac_at < 0:
            start = max(0, self._scanned - len(MAC_LINE_START) + 1)
            self._mac_at = buf.find(MAC_LINE_START, start)
        self._scanned = len(buf)
        if first_look or len(buf) > MAX_HEADER:
            return True
        if self._mac_at < 0:
            return False
        line = self._mac_at + 1
        return b"\n" in buf[line : line + 64] or len(buf) - line > 64

    def _open_full_chunk(self) -> bytes | None:
        """Release a full chunk that authenticates as not final.

        Such a chunk is authentic whatever follows, so it goes out at once.
        One that does not is either the final chunk (if nothing follows it),
        bytes added after the final chunk, or damage; ``None`` while the
        bytes after it have not arrived yet.
        """
        assert self._cipher is not None
        sealed = bytes(self._buf[:SEALED_CHUNK_SIZE])
        plain = self._cipher.open(self._index, False, sealed)
        if plain is not None:
            del self._buf[:SEALED_CHUNK_SIZE]
            self._index += 1
            self.plain_bytes += len(plain)
            return plain
        if len(self._buf) == SEALED_CHUNK_SIZE:
            return None
        if self._cipher.open(self._index, True, sealed) is not None:
            self._done = True
            raise AgeError(f"trailing data after the final chunk (chunk {self._index})")
        raise AgeError(f"chunk {self._index} failed authentication: altered or damaged")


def decrypt_chunks(
    identities: Sequence[X25519Identity], chunks: Iterable[bytes | memoryview]
) -> Iterator[bytes]:
    """Plaintext pieces of the age file whose bytes ``chunks`` yields."""
    decryptor = Decryptor(identities)
    for data in chunks:
        yield from decryptor.feed(data)
    yield from decryptor.finish()


def read_chunks(f: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    while data := f.read(size):
        yield data


def decrypted_size(identities: Sequence[X25519Identity], f: BinaryIO, file_size: int) -> int:
    """The plaintext size of the age file ``f`` (``file_size`` bytes), from its header alone.

    Opens the header (so a wrong key or an altered header fails here, before
    any payload is read) and leaves ``f`` where it was.
    """
    start = f.tell()
    try:
        decryptor = Decryptor(identities)
        while decryptor.header is None:
            data = f.read(4096)
            if data:
                decryptor.feed(data)
            else:
                decryptor.finish()
        assert decryptor.header_len is not None
        return plaintext_size(file_size, decryptor.header_len)
    finally:
        f.seek(start)
