"""Bech32 (BIP 173) as age uses it: keys are Bech32 strings of any length.

age drops BIP 173's 90-character limit (a post-quantum recipient is far
longer) but keeps everything else: one case throughout, a checksum over the
lowercase form, 5-bit groups that convert to whole bytes with zero padding.
Small and exact, so a mistyped key is refused rather than turned into another
key.
"""

from __future__ import annotations

from .errors import AgeError

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_VALUES = {c: i for i, c in enumerate(CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_CHECKSUM_LEN = 6


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_GENERATOR):
            if (top >> i) & 1:
                chk ^= gen
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    """Regroup bits; without ``pad``, leftover bits must be fewer than a group and zero."""
    acc = 0
    bits = 0
    out: list[int] = []
    maxv = (1 << to_bits) - 1
    keep = (1 << (from_bits + to_bits - 1)) - 1
    for value in data:
        acc = ((acc << from_bits) | value) & keep
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or (acc << (to_bits - bits)) & maxv:
        raise AgeError("Bech32 string has non-zero padding bits")
    return out


def encode(hrp: str, data: bytes) -> str:
    """``hrp`` + ``1`` + data + checksum, lowercase (callers upper-case secret keys)."""
    hrp = hrp.lower()
    values = _convert_bits(data, 8, 5, pad=True)
    polymod = _polymod([*_hrp_expand(hrp), *values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(_CHECKSUM_LEN)]
    return hrp + "1" + "".join(CHARSET[v] for v in values + checksum)


def decode(text: str) -> tuple[str, bytes]:
    """``(hrp lowercased, data)``; :class:`AgeError` for anything BIP 173 refuses."""
    if any(not 33 <= ord(c) <= 126 for c in text):
        raise AgeError("Bech32 string has a character outside printable ASCII")
    if text.lower() != text and text.upper() != text:
        raise AgeError("Bech32 string mixes upper and lower case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 1 + _CHECKSUM_LEN > len(text):
        raise AgeError("Bech32 string has no human-readable part or is too short")
    hrp, rest = text[:pos], text[pos + 1 :]
    try:
        values = [_VALUES[c] for c in rest]
    except KeyError:
        raise AgeError("Bech32 string has a character outside the Bech32 alphabet") from None
    if _polymod(_hrp_expand(hrp) + values) != 1:
        raise AgeError("Bech32 checksum mismatch (a mistyped key?)")
    return hrp, bytes(_convert_bits(values[:-_CHECKSUM_LEN], 5, 8, pad=False))
