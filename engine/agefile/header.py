"""The age header: version line, recipient stanzas, MAC line.

Writing produces the canonical form; reading accepts only the canonical form
(64-column body lines, unpadded canonical base64) and works on a growing
buffer, so a stream can be parsed as its bytes arrive.  The MAC covers the
header bytes exactly as read, up to and including ``---``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from .errors import AgeError
from .primitives import b64decode, b64encode, hkdf

VERSION_LINE = b"age-encryption.org/v1\n"
VERSION_PREFIX = b"age-encryption.org/"
ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
STANZA_PREFIX = b"-> "
MAC_PREFIX = b"---"
MAC_SIZE = 32
BODY_COLUMNS = 64
MAX_HEADER = 1 << 20
"""A header larger than this is refused rather than buffered without end."""
_MAC_LINE_LEN = len(MAC_PREFIX) + 1 + len(b64encode(bytes(MAC_SIZE))) + 1


@dataclass(frozen=True)
class Stanza:
    """One recipient stanza: its type and arguments (``args[0]`` is the type) and its body."""

    args: tuple[str, ...]
    body: bytes

    def encode(self) -> bytes:
        text = b64encode(self.body)
        lines = [text[i : i + BODY_COLUMNS] for i in range(0, len(text), BODY_COLUMNS)]
        if not lines or len(lines[-1]) == BODY_COLUMNS:
            lines.append("")  # a body always ends with a short (possibly empty) line
        head = "-> " + " ".join(self.args) + "\n"
        return (head + "".join(line + "\n" for line in lines)).encode("ascii")


def _mac_key(file_key: bytes) -> bytes:
    return hkdf(file_key, b"", b"header")


def header_mac(file_key: bytes, covered: bytes) -> bytes:
    return hmac.new(_mac_key(file_key), covered, hashlib.sha256).digest()


def build_header(stanzas: list[Stanza], file_key: bytes) -> bytes:
    """The full header, MAC line included."""
    if not stanzas:
        raise AgeError("an age file needs at least one recipient")
    covered = VERSION_LINE + b"".join(s.encode() for s in stanzas) + MAC_PREFIX
    return covered + b" " + b64encode(header_mac(file_key, covered)).encode("ascii") + b"\n"


@dataclass(frozen=True)
class Header:
    """A parsed header: its stanzas, its MAC, and the bytes the MAC covers."""

    stanzas: tuple[Stanza, ...]
    mac: bytes
    covered: bytes
    length: int
    """Bytes from the start of the file to the end of the MAC line."""

    def verify(self, file_key: bytes) -> None:
        if not hmac.compare_digest(header_mac(file_key, self.covered), self.mac):
            raise AgeError("header MAC mismatch: the header was altered or is damaged")


def _is_argument(word: str) -> bool:
    return bool(word) and all(33 <= ord(c) <= 126 for c in word)


def parse_header(buf: bytes | bytearray, final: bool = False) -> Header | None:
    """The header at the start of ``buf``, or ``None`` while more bytes are needed.

    With ``final`` (no more bytes will come) an incomplete header is an
    error: the file is truncated.
    """
    view = bytes(buf[: MAX_HEADER + 1])
    short = len(view) < len(ARMOR_BEGIN)
    if short and not final and (VERSION_LINE.startswith(view) or ARMOR_BEGIN.startswith(view)):
        return None
    if view.startswith(ARMOR_BEGIN):
        raise AgeError("ASCII-armored age files are not supported; use the binary form")
    if not view.startswith(VERSION_LINE):
        if view and VERSION_LINE.startswith(view):
            raise AgeError("file is truncated inside the header")
        if view.startswith(VERSION_PREFIX):
            raise AgeError("unsupported age format version (only age-encryption.org/v1)")
        raise AgeError("not an age file: it does not start with age-encryption.org/v1")
    pos = len(VERSION_LINE)
    stanzas: list[Stanza] = []

    def line_at(start: int) -> bytes | None:
        end = view.find(b"\n", start)
        if end < 0:
            if len(view) > MAX_HEADER:
                raise AgeError(f"header is larger than {MAX_HEADER} bytes")
            if final:
                raise AgeError("file is truncated inside the header")
            return None
        return view[start:end]

    while True:
        line = line_at(pos)
        if line is None:
            return None
        if line.startswith(MAC_PREFIX):
            if not line.startswith(MAC_PREFIX + b" ") or len(line) + 1 != _MAC_LINE_LEN:
                raise AgeError("header's MAC line is malformed")
            if not stanzas:
                raise AgeError("header has no recipient stanza")
            mac = b64decode(line[len(MAC_PREFIX) + 1 :], "header MAC")
            covered = view[: pos + len(MAC_PREFIX)]
            return Header(tuple(stanzas), mac, covered, pos + len(line) + 1)
        if not line.startswith(STANZA_PREFIX):
            raise AgeError("header line is neither a stanza (->) nor the MAC line (---)")
        try:
            words = line[len(STANZA_PREFIX) :].decode("ascii").split(" ")
        except UnicodeDecodeError:
            raise AgeError("header stanza line is not ASCII") from None
        if not all(_is_argument(w) for w in words):
            raise AgeError("header stanza line has an empty or non-printable argument")
        pos += len(line) + 1
        body_lines: list[bytes] = []
        while True:
            body_line = line_at(pos)
            if body_line is None:
                return None
            if len(body_line) > BODY_COLUMNS:
                raise AgeError("header stanza body line is longer than 64 columns")
            body_lines.append(body_line)
            pos += len(body_line) + 1
            if len(body_line) < BODY_COLUMNS:
                break
        body = b64decode(b"".join(body_lines), f"body of the {words[0]} stanza")
        stanzas.append(Stanza(tuple(words), body))
