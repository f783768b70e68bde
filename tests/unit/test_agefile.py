"""Encrypted backups in the age format: interoperable with the stock ``age`` both ways.

Files this package encrypts must open with ``age -d``, files ``age`` writes
must open here, every read of the random-access view must equal the one
sequential encryption, and a wrong key, an altered byte, a truncated file or
added bytes must be refused with a message naming what is wrong.  The
interop tests run Debian's ``age``/``age-keygen`` and fail (not skip) when
they are missing, since interoperability is the point.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.agefile import (
    CHUNK_SIZE,
    NO_MATCH,
    AgeError,
    Decryptor,
    EncryptedView,
    Stanza,
    X25519Identity,
    X25519Recipient,
    bech32,
    build_header,
    decrypt_chunks,
    decrypted_size,
    encrypted_size,
    parse_identities,
    plaintext_size,
)
from engine.agefile.payload import ChunkCipher, payload_key

ROOT = Path(__file__).resolve().parents[2]
SEALED = CHUNK_SIZE + 16
SIZES = [0, 1, 65535, 65536, 65537, 3 * 65536, 3 * 1024 * 1024 + 12345]


def age_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name!r} is not installed: the age interop tests need Debian's age "
            "(apt-get install -y age)"
        )
    return path


@dataclass
class KeyFile:
    """A key pair made by ``age-keygen``: the file ``age -i`` takes, and its recipient."""

    path: Path
    recipient: str

    @property
    def identities(self) -> list[X25519Identity]:
        return parse_identities(self.path.read_text())


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyFile:
    path = tmp_path_factory.mktemp("age") / "key.txt"
    subprocess.run([age_tool("age-keygen"), "-o", str(path)], check=True, capture_output=True)
    public = [line for line in path.read_text().splitlines() if line.startswith("# public key:")]
    return KeyFile(path, public[0].split()[-1])


def age_decrypt(key: KeyFile, data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [age_tool("age"), "-d", "-i", str(key.path)], input=data, capture_output=True, check=False
    )


def age_encrypt(data: bytes, *recipients: str) -> bytes:
    args = [age_tool("age")]
    for r in recipients:
        args += ["-r", r]
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout


def view_of(plain: bytes, *recipients: X25519Recipient) -> EncryptedView:
    return EncryptedView(list(recipients), len(plain), lambda o, n: plain[o : o + n])


def encrypt(plain: bytes, *recipients: X25519Recipient) -> bytes:
    view = view_of(plain, *recipients)
    return view.read(0, view.size)


def pieces(data: bytes, seed: int) -> Iterator[bytes]:
    """``data`` cut at random places, so no test leans on one chunking."""
    rng = random.Random(seed)
    at = 0
    while at < len(data):
        n = rng.choice([1, 7, 100, 4096, SEALED - 1, SEALED, SEALED + 1, 200_000])
        yield data[at : at + n]
        at += n


def decrypt(identities: list[X25519Identity], data: bytes, seed: int = 0) -> bytes:
    return b"".join(decrypt_chunks(identities, pieces(data, seed)))


def refusal(identities: list[X25519Identity], data: bytes) -> str:
    with pytest.raises(AgeError) as caught:
        decrypt(identities, data)
    return caught.value.message


# -- interop with the stock age ----------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_age_decrypts_what_we_encrypt(key: KeyFile, size: int) -> None:
    plain = os.urandom(size)
    view = view_of(plain, X25519Recipient.parse(key.recipient))
    data = view.read(0, view.size)
    assert len(data) == view.size == encrypted_size(size, len(view.header))
    result = age_decrypt(key, data)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == plain


@pytest.mark.parametrize("size", SIZES)
def test_we_decrypt_what_age_encrypts(key: KeyFile, size: int) -> None:
    plain = os.urandom(size)
    data = age_encrypt(plain, key.recipient)
    assert decrypt(key.identities, data, seed=size) == plain
    assert decrypted_size(key.identities, io.BytesIO(data), len(data)) == size


def test_our_key_among_several_recipients_of_age(key: KeyFile) -> None:
    other = X25519Identity.generate().recipient.encode()
    plain = os.urandom(100_000)
    data = age_encrypt(plain, other, key.recipient, other)
    assert decrypt(key.identities, data) == plain


def test_age_decrypts_a_file_for_several_recipients_with_either_key(key: KeyFile) -> None:
    other = X25519Identity.generate()
    plain = os.urandom(70_000)
    data = encrypt(plain, other.recipient, X25519Recipient.parse(key.recipient))
    assert age_decrypt(key, data).stdout == plain
    assert decrypt([other], data) == plain


def test_a_tar_archive_we_encrypt_unpacks_with_age_and_tar(key: KeyFile, tmp_path: Path) -> None:
    files = {"a.txt": b"hello\n", "dir/b.bin": os.urandom(200_000), "dir/empty": b""}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    (tmp_path / "x.mbak.age").write_bytes(
        encrypt(buf.getvalue(), X25519Recipient.parse(key.recipient))
    )
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        f"{age_tool('age')} -d -i {key.path} x.mbak.age | tar -x -C out",
        shell=True,
        cwd=tmp_path,
        check=True,
    )
    assert {name: (out / name).read_bytes() for name in files} == files


def test_age_keygen_keys_parse_and_match(key: KeyFile) -> None:
    [identity] = key.identities
    assert identity.recipient.encode() == key.recipient
    assert X25519Recipient.parse(key.recipient) == identity.recipient
    line = next(x for x in key.path.read_text().splitlines() if x.startswith("AGE-SECRET-KEY-1"))
    assert identity.encode() == line


# -- the random-access view ----------------------------------------------------------------


def test_reads_at_any_offset_equal_the_sequential_encryption(key: KeyFile) -> None:
    plain = os.urandom(3 * CHUNK_SIZE + 1000)
    view = view_of(plain, X25519Recipient.parse(key.recipient))
    whole = view.read(0, view.size)
    assert age_decrypt(key, whole).stdout == plain
    rng = random.Random(7)
    payload = len(view.header) + 16
    edges = [0, len(view.header) - 1, payload - 1, payload, payload + SEALED - 1, payload + SEALED]
    offsets = edges + [rng.randrange(view.size) for _ in range(300)]
    for offset in offsets:
        n = rng.choice([0, 1, 15, 16, 17, 4096, SEALED - 1, SEALED, SEALED + 1, 2 * SEALED, 10**7])
        assert view.read(offset, n) == whole[offset : offset + n], (offset, n)
    assert view.read(view.size, 10) == b"" and view.read(view.size + 5, 10) == b""
    assert view.read(0, view.size) == whole, "every re-read is byte-identical"


def test_sequential_small_reads_rebuild_the_file(key: KeyFile) -> None:
    plain = os.urandom(2 * CHUNK_SIZE + 5)
    view = view_of(plain, X25519Recipient.parse(key.recipient))
    rebuilt = b"".join(view.read(at, 5000) for at in range(0, view.size, 5000))
    assert decrypt(key.identities, rebuilt) == plain
    assert rebuilt == view.read(0, view.size)


def test_an_async_server_reads_the_plaintext_between_plain_span_and_seal() -> None:
    identity = X25519Identity.generate()
    plain = os.urandom(2 * CHUNK_SIZE + 77)
    view = EncryptedView([identity.recipient], len(plain))  # no reader: the caller does the I/O
    out = bytearray()
    for at in range(0, view.size, 50_000):
        offset, length = view.plain_span(at, 50_000)
        out += view.seal(at, 50_000, plain[offset : offset + length])
    assert decrypt([identity], bytes(out)) == plain
    with pytest.raises(RuntimeError, match="no plaintext reader"):
        view.read(0, 1)


def test_a_read_asks_only_for_the_chunks_it_touches() -> None:
    plain = os.urandom(4 * CHUNK_SIZE)
    asked: list[tuple[int, int]] = []

    def read_plain(offset: int, n: int) -> bytes:
        asked.append((offset, n))
        return plain[offset : offset + n]

    view = EncryptedView([X25519Identity.generate().recipient], len(plain), read_plain)
    payload = len(view.header) + 16
    view.read(payload + 2 * SEALED + 10, 1)
    view.read(0, payload)
    view.read(payload + SEALED - 1, 2)
    assert asked == [(2 * CHUNK_SIZE, CHUNK_SIZE), (0, 2 * CHUNK_SIZE)]


def test_a_plaintext_that_changed_size_is_refused_not_sealed() -> None:
    plain = os.urandom(CHUNK_SIZE + 10)
    view = EncryptedView(
        [X25519Identity.generate().recipient], len(plain) + 1, lambda o, n: plain[o : o + n]
    )
    with pytest.raises(AgeError, match="expected"):
        view.read(0, view.size)


def test_two_views_of_the_same_plaintext_use_fresh_keys() -> None:
    recipient = X25519Identity.generate().recipient
    assert encrypt(b"same", recipient) != encrypt(b"same", recipient)


def test_sizes_are_exact_both_ways() -> None:
    for plain in [*range(0, 40), *range(CHUNK_SIZE - 20, CHUNK_SIZE + 40), 5 * CHUNK_SIZE, 10**9]:
        assert plaintext_size(encrypted_size(plain, 200), 200) == plain
    assert encrypted_size(0, 100) == 100 + 16 + 16
    assert encrypted_size(CHUNK_SIZE, 100) == 100 + 16 + SEALED
    assert encrypted_size(CHUNK_SIZE + 1, 100) == 100 + 16 + SEALED + 17
    for impossible in [100 + 16 + 15, 100 + 16 + SEALED + 5, 100 + 16 + SEALED + 16, 50]:
        with pytest.raises(AgeError, match="truncated"):
            plaintext_size(impossible, 100)


# -- refusals ------------------------------------------------------------------------------


@pytest.fixture
def three_chunks(key: KeyFile) -> tuple[bytes, bytes]:
    """A plaintext of three chunks (the last short) and ``age``'s encryption of it."""
    plain = os.urandom(2 * CHUNK_SIZE + 500)
    return plain, age_encrypt(plain, key.recipient)


def test_a_wrong_identity_is_refused(three_chunks: tuple[bytes, bytes]) -> None:
    assert refusal([X25519Identity.generate()], three_chunks[1]) == NO_MATCH


def test_an_altered_wrapped_key_matches_no_identity(
    key: KeyFile, three_chunks: tuple[bytes, bytes]
) -> None:
    data = bytearray(three_chunks[1])
    body_line = data.index(b"\n", data.index(b"-> X25519")) + 1
    data[body_line + 3] ^= 0x01 if data[body_line + 3] != ord("A") else 0x02
    assert refusal(key.identities, bytes(data)) == NO_MATCH


def test_an_altered_header_fails_its_mac(key: KeyFile) -> None:
    """Another recipient's stanza changed: our key still opens, the MAC does not match."""
    other = X25519Identity.generate().recipient
    data = bytearray(encrypt(os.urandom(1000), X25519Recipient.parse(key.recipient), other))
    second = data.index(b"-> X25519", data.index(b"-> X25519") + 1)
    data[second + 10] = ord("B") if data[second + 10] != ord("B") else ord("C")
    assert "header MAC mismatch" in refusal(key.identities, bytes(data))
    mac_line = bytearray(encrypt(b"x", X25519Recipient.parse(key.recipient)))
    at = mac_line.index(b"\n--- ") + 5
    mac_line[at] = ord("B") if mac_line[at] != ord("B") else ord("C")
    assert "header MAC mismatch" in refusal(key.identities, bytes(mac_line))
    assert age_decrypt(key, bytes(mac_line)).returncode != 0


@pytest.mark.parametrize("chunk", [0, 1, 2])
def test_an_altered_payload_byte_names_its_chunk(
    key: KeyFile, three_chunks: tuple[bytes, bytes], chunk: int
) -> None:
    plain, data = three_chunks
    payload = len(data) - (len(plain) + 3 * 16)
    altered = bytearray(data)
    altered[payload + chunk * SEALED + 123] ^= 0x40
    assert refusal(key.identities, bytes(altered)) == (
        f"chunk {chunk} failed authentication: altered or damaged"
    )


def test_a_truncated_file_is_refused(key: KeyFile, three_chunks: tuple[bytes, bytes]) -> None:
    plain, data = three_chunks
    payload = len(data) - (len(plain) + 3 * 16)
    assert refusal(key.identities, data[: payload + 2 * SEALED]) == (
        "file is truncated: chunk 1 is not the final chunk"
    )
    assert refusal(key.identities, data[: payload + SEALED + 100]) == (
        "chunk 1 failed authentication: altered or damaged"
    )
    assert refusal(key.identities, data[: payload + 2 * SEALED + 10]) == (
        "file is truncated inside chunk 2"
    )
    assert "payload nonce" in refusal(key.identities, data[: payload - 3])
    assert "truncated inside the header" in refusal(key.identities, data[:40])


def test_trailing_data_is_refused(key: KeyFile) -> None:
    data = age_encrypt(os.urandom(CHUNK_SIZE), key.recipient)
    assert (
        refusal(key.identities, data + b"more") == "trailing data after the final chunk (chunk 0)"
    )
    decryptor = Decryptor(key.identities)
    decryptor.feed(data)
    decryptor.finish()
    with pytest.raises(AgeError, match="trailing data"):
        decryptor.feed(b"x")


def test_each_chunk_is_released_as_soon_as_it_authenticates(
    key: KeyFile, three_chunks: tuple[bytes, bytes]
) -> None:
    plain, data = three_chunks
    payload = len(data) - (len(plain) + 3 * 16)
    decryptor = Decryptor(key.identities)
    assert decryptor.feed(data[: payload + SEALED - 1]) == []
    assert decryptor.feed(data[payload + SEALED - 1 : payload + SEALED]) == [plain[:CHUNK_SIZE]]
    assert decryptor.feed(data[payload + SEALED : -1]) == [plain[CHUNK_SIZE : 2 * CHUNK_SIZE]]
    assert decryptor.feed(data[-1:]) == [], "the final chunk waits for the end of the file"
    assert decryptor.finish() == [plain[2 * CHUNK_SIZE :]]


def handmade(
    recipient: X25519Recipient, extra: list[Stanza], chunks: list[tuple[bool, bytes]]
) -> bytes:
    """An age file built from its parts, for shapes our encryptor never writes."""
    file_key = os.urandom(16)
    nonce = os.urandom(16)
    header = build_header([*extra, recipient.wrap(file_key)], file_key)
    cipher = ChunkCipher(payload_key(file_key, nonce))
    return header + nonce + b"".join(cipher.seal(i, last, p) for i, (last, p) in enumerate(chunks))


def test_an_empty_final_chunk_after_data_is_refused_as_age_does(key: KeyFile) -> None:
    data = handmade(
        X25519Recipient.parse(key.recipient), [], [(False, os.urandom(CHUNK_SIZE)), (True, b"")]
    )
    assert refusal(key.identities, data) == "chunk 1 is an empty final chunk, which age forbids"
    assert age_decrypt(key, data).returncode != 0


def test_stanzas_of_other_types_are_skipped(key: KeyFile) -> None:
    grease = [Stanza(("x-grease.example/v1", "a", "b=c"), os.urandom(100)), Stanza(("t",), b"")]
    plain = os.urandom(1000)
    data = handmade(X25519Recipient.parse(key.recipient), grease, [(True, plain)])
    assert b"\n-> t\n\n" in data, "an empty body is one empty line"
    assert decrypt(key.identities, data) == plain
    assert age_decrypt(key, data).stdout == plain


@pytest.mark.timeout(30)
def test_a_large_header_fed_a_byte_at_a_time_costs_linear_time(key: KeyFile) -> None:
    grease = [Stanza((f"x-grease{i}",), os.urandom(2000)) for i in range(100)]
    plain = os.urandom(5000)
    data = handmade(X25519Recipient.parse(key.recipient), grease, [(True, plain)])
    header_len = data.index(b"\n--- ") + 1 + 48
    assert header_len > 250_000
    decryptor = Decryptor(key.identities)
    for i in range(header_len):
        assert decryptor.feed(data[i : i + 1]) == []
    assert decryptor.header_len == header_len
    assert b"".join(decryptor.feed(data[header_len:]) + decryptor.finish()) == plain


def test_a_header_without_end_is_refused_at_its_size_limit(key: KeyFile) -> None:
    endless = b"age-encryption.org/v1\n" + b"-> x\nAAAA\n" * 120_000
    decryptor = Decryptor(key.identities)
    with pytest.raises(AgeError, match="header is larger than"):
        for at in range(0, len(endless), 4096):
            decryptor.feed(endless[at : at + 4096])


def header_with(stanza_lines: bytes) -> bytes:
    return b"age-encryption.org/v1\n" + stanza_lines + b"--- " + b"A" * 43 + b"\n" + bytes(40)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (b"-> X25519 AAAA AAAA\nAAAA\n", "exactly one argument"),
        (b"-> X25519 AAAA\nAAAA\n", "not 32 bytes"),
        (b"-> X25519 " + b"A" * 42 + b"B\nAAAA\n", "not canonical base64"),
        (b"-> X25519 " + b"A" * 43 + b"=\nAAAA\n", "unpadded base64"),
        (b"-> X25519 " + b"A" * 43 + b"\n" + b"A" * 65 + b"\n", "longer than 64 columns"),
        (b"-> X25519 " + b"A" * 43 + b"\nAAA*\n", "not valid base64"),
        (b"->  X25519\n\n", "empty or non-printable argument"),
        (b"hello\n", "neither a stanza"),
        (b"", "no recipient stanza"),
    ],
)
def test_malformed_headers_are_refused_by_name(key: KeyFile, lines: bytes, message: str) -> None:
    assert message in refusal(key.identities, header_with(lines))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"-----BEGIN AGE ENCRYPTED FILE-----\nabc\n", "ASCII-armored"),
        (b"age-encryption.org/v2\n-> x\n\n--- x\n", "unsupported age format version"),
        (b"ustar-or-anything-else-really", "not an age file"),
        (b"", "not an age file"),
        (b"age-encryption.org/v1\n-> X25519 " + b"A" * 43 + b"\n" + b"A" * 64 + b"\n", "truncated"),
    ],
)
def test_what_is_not_an_age_v1_file_is_refused(key: KeyFile, data: bytes, message: str) -> None:
    assert message in refusal(key.identities, data)


def test_random_damage_gives_an_age_error_never_a_traceback(key: KeyFile) -> None:
    plain = os.urandom(CHUNK_SIZE + 300)
    data = encrypt(plain, X25519Recipient.parse(key.recipient))
    rng = random.Random(3)
    for _ in range(300):
        damaged = bytearray(data)
        kind = rng.randrange(3)
        at = rng.randrange(len(data))
        if kind == 0:
            damaged[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            del damaged[at:]
        else:
            damaged[at:at] = os.urandom(rng.randrange(1, 40))
        with pytest.raises(AgeError):
            decrypt(key.identities, bytes(damaged), seed=at)


# -- keys ----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=120) | st.text(alphabet="qpzry9x8gf2tvdw0s3jn54khce6mua7l1age-", max_size=90)
)
def test_any_text_as_a_key_gives_an_age_error_or_a_key(text: str) -> None:
    for parse in (X25519Recipient.parse, X25519Identity.parse, parse_identities):
        with contextlib.suppress(AgeError):
            parse(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_after_the_version_line_give_an_age_error(tail: bytes) -> None:
    identity = X25519Identity.generate()
    for data in (tail, b"age-encryption.org/v1\n" + tail, b"age-encryption.org/v1\n-> " + tail):
        with pytest.raises(AgeError):
            decrypt([identity], data)


def test_the_spec_example_identity_gives_its_recipient() -> None:
    identity = X25519Identity.parse(
        "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
    )
    assert identity.recipient.encode() == (
        "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"
    )


def test_bech32_accepts_valid_strings_and_refuses_mistakes() -> None:
    for valid in ["A12UEL5L", "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw", "?1ezyfcl"]:
        hrp, _ = bech32.decode(valid)
        assert hrp == valid.lower()[: valid.rfind("1")]
    recipient = X25519Identity.generate().recipient.encode()
    typo = recipient[:10] + ("q" if recipient[10] != "q" else "p") + recipient[11:]
    cases = {
        typo: "checksum mismatch",
        recipient[:20] + recipient[20:].upper(): "mixes upper and lower case",
        "1nwldj5": "no human-readable part",
        "x1b4n0q5v": "outside the Bech32 alphabet",
        "A1G7SGD8": "checksum mismatch",
        "age1\x7fqqqqqq": "printable ASCII",
    }
    for text, message in cases.items():
        with pytest.raises(AgeError, match=message):
            bech32.decode(text)
    assert bech32.decode(bech32.encode("age", bytes(range(32)))) == ("age", bytes(range(32)))


def test_keys_of_the_wrong_kind_are_refused() -> None:
    identity = X25519Identity.generate()
    with pytest.raises(AgeError, match="not an age X25519 recipient"):
        X25519Recipient.parse(identity.encode().lower())
    with pytest.raises(AgeError, match="not an age X25519 identity"):
        X25519Identity.parse(identity.recipient.encode().upper())
    # Bech32 is one case throughout, either case.
    assert X25519Recipient.parse(identity.recipient.encode().upper()) == identity.recipient


def test_low_order_points_are_refused_both_ways(key: KeyFile) -> None:
    with pytest.raises(AgeError, match="the X25519 recipient is a low-order point"):
        EncryptedView([X25519Recipient(bytes(32))], 10)
    stanza = b"-> X25519 " + b"A" * 43 + b"\n" + b"A" * 43 + b"\n"
    assert "ephemeral share is a low-order point" in refusal(key.identities, header_with(stanza))


def test_secrets_never_show_in_repr_str_or_errors(key: KeyFile) -> None:
    [identity] = key.identities
    secret = identity.encode()
    shown = [repr(identity), str(identity), repr([identity]), repr(Decryptor([identity]))]
    shown.append(repr(EncryptedView([identity.recipient], 10, lambda o, n: bytes(n))))
    assert all(secret not in s and secret.lower() not in s for s in shown)
    assert "hidden" in repr(identity)
    damaged = secret[:-3] + ("Q" if secret[-3] != "Q" else "P") + secret[-2:]
    with pytest.raises(AgeError) as caught:
        parse_identities(f"# comment\n\n{damaged}\n", "key.txt")
    assert caught.value.message == "key.txt line 3: Bech32 checksum mismatch (a mistyped key?)"
    assert damaged[16:] not in caught.value.message


def test_identity_files_skip_comments_and_refuse_anything_else(key: KeyFile) -> None:
    second = X25519Identity.generate()
    text = key.path.read_text() + "\n# another\n" + second.encode() + "\n"
    assert [i.recipient for i in parse_identities(text)] == [
        X25519Recipient.parse(key.recipient),
        second.recipient,
    ]
    for bad, message in [
        ("# only a comment\n", "holds no age secret key"),
        ("age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj\n", "line 1: not an age"),
        ("age-encryption.org/v1\n", "itself age-encrypted"),
    ]:
        with pytest.raises(AgeError, match=message):
            parse_identities(bad)


def test_the_format_imports_only_the_standard_library_and_cryptography() -> None:
    """No trio, no I/O layer, nothing else of the project: the device and the PC tool share it."""
    probe = (
        "import json, sys; before = set(sys.modules); import engine.agefile; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(result.stdout.splitlines()[-1]))
    # cryptography's compiled extension registers its OpenSSL bindings as ``_openssl``
    # and loads cffi's ``_cffi_backend``, cryptography's own dependency.
    allowed = {"engine", "cryptography", "_openssl", "_cffi_backend"}
    outside = {n.partition(".")[0] for n in loaded} - set(sys.stdlib_module_names) - allowed
    assert sorted(outside) == []
    project = {n for n in loaded if n.startswith("engine.")}
    assert sorted(n for n in project if not n.startswith("engine.agefile")) == []
