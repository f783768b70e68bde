"""``mtp-backup verify`` and ``restore`` of age-encrypted backups (``x.mbak.age``).

The archive is a real ``backup-engine`` backup; the encrypted copies are made
by Debian's ``age`` (what a user would run) and by the package the device
serves them with.  Verification decrypts and runs the same checks as for a
``.mbak``; restore decrypts as it uploads, announcing the exact plaintext
size.  The USB side of restore is a recorder standing in for the initiator
(the real one is exercised in the VM, tests/e2e/test_backup.py): it checks
what would go over the wire, name, size and bytes.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from engine.agefile import EncryptedView, X25519Identity, X25519Recipient
from mtp_backup import restore as restore_module
from mtp_backup.cli import main
from mtp_backup.device import BackupDevice
from mtp_backup.encrypted import READ_CIPHERTEXT, DecryptedFile, load_identities
from mtp_backup.errors import EXIT_CORRUPT, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from mtp_backup.verify import verify_archive
from mtp_responder.core.codes import ResponseCode
from tests.engine.conftest import start_engine, stop_engine
from tests.engine.helpers import PASSIVE_ALL, make_config, make_tree, register

SID = 0x0BAC0002
SEALED = 64 * 1024 + 16


def age_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name!r} is not installed: these tests need Debian's age (apt-get install -y age)"
        )
    return path


@dataclass
class Encrypted:
    """A real backup, a key made by ``age-keygen``, and the backup encrypted to it by ``age``."""

    plain: Path
    key: Path
    recipient: str
    age_file: Path


@pytest.fixture(scope="module")
def enc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Encrypted]:
    tmp = tmp_path_factory.mktemp("engine")
    cfg = make_config(tmp, device_name="board")
    make_tree(register(cfg, SID, PASSIVE_ALL), files=40)
    proc = start_engine(cfg, tmp)
    try:
        out = tmp / "out"
        out.mkdir()
        proc.cli("-q", "backup", str(out / "base.mbak"))
    finally:
        stop_engine(proc)
    key = out / "key.txt"
    subprocess.run([age_tool("age-keygen"), "-o", str(key)], check=True, capture_output=True)
    recipient = next(
        line.split()[-1] for line in key.read_text().splitlines() if line.startswith("# public key")
    )
    age_file = out / "base.mbak.age"
    subprocess.run(
        [age_tool("age"), "-r", recipient, "-o", str(age_file), str(out / "base.mbak")], check=True
    )
    yield Encrypted(out / "base.mbak", key, recipient, age_file)


def damaged(src: Path, dst: Path, at: int) -> Path:
    data = bytearray(src.read_bytes())
    data[at] ^= 0x20
    dst.write_bytes(bytes(data))
    return dst


# -- verify ------------------------------------------------------------------------------


def test_the_backup_spans_several_age_chunks(enc: Encrypted) -> None:
    assert enc.plain.stat().st_size > 3 * SEALED


def test_verify_decrypts_and_checks_like_the_plain_archive(
    enc: Encrypted, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--identity", str(enc.key), str(enc.age_file)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "base.mbak.age: OK" in out and "every age chunk authenticated" in out
    plain = verify_archive(enc.plain)
    decrypted = verify_archive(enc.age_file, identities=load_identities([enc.key]))
    assert decrypted.encrypted and not plain.encrypted
    assert (decrypted.sha256, decrypted.size) == (plain.sha256, plain.size)
    assert decrypted.manifest == plain.manifest


def test_verify_accepts_what_the_device_side_encryption_serves(
    enc: Encrypted, tmp_path: Path
) -> None:
    """The view the device serves ``Backup/*.mbak.age`` from, written out as a PC would copy it."""
    data = enc.plain.read_bytes()
    view = EncryptedView(
        [X25519Recipient.parse(enc.recipient)], len(data), lambda o, n: data[o : o + n]
    )
    served = tmp_path / "served.mbak.age"
    with open(served, "wb") as f:
        for at in range(0, view.size, 300_000):  # as GetPartialObject pieces would come
            f.write(view.read(at, 300_000))
    assert served.stat().st_size == view.size
    assert main(["verify", "-i", str(enc.key), str(served)]) == EXIT_OK


def test_an_encrypted_backup_without_identity_is_a_usage_error(
    enc: Encrypted, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(enc.age_file)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "base.mbak.age is encrypted: give its key with --identity KEYFILE" in err
    # Recognised by its first bytes too, whatever its name.
    renamed = tmp_path / "renamed.mbak"
    renamed.write_bytes(enc.age_file.read_bytes())
    assert main(["verify", str(renamed)]) == EXIT_USAGE
    assert "renamed.mbak is encrypted" in capsys.readouterr().err


def test_a_wrong_key_is_named_as_such(
    enc: Encrypted, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.txt"
    other.write_text(X25519Identity.generate().encode() + "\n")
    assert main(["verify", "-i", str(other), str(enc.age_file)]) == EXIT_USAGE
    assert "no identity matches any recipient stanza (wrong key?)" in capsys.readouterr().err
    # Any of several keys will do.
    assert main(["verify", "-i", str(other), "-i", str(enc.key), str(enc.age_file)]) == EXIT_OK


@pytest.mark.parametrize("chunk", [0, 2])
def test_an_altered_chunk_fails_verification_naming_it(
    enc: Encrypted, tmp_path: Path, capsys: pytest.CaptureFixture[str], chunk: int
) -> None:
    header_end = enc.age_file.read_bytes().index(b"\n--- ") + 1 + 48
    bad = damaged(enc.age_file, tmp_path / "bad.mbak.age", header_end + 16 + chunk * SEALED + 99)
    assert main(["verify", "-i", str(enc.key), str(bad)]) == EXIT_CORRUPT
    assert f"chunk {chunk} failed authentication" in capsys.readouterr().err


def test_a_truncated_encrypted_backup_fails_verification(
    enc: Encrypted, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = tmp_path / "cut.mbak.age"
    data = enc.age_file.read_bytes()
    cut.write_bytes(data[: len(data) - 1000])
    assert main(["verify", "-i", str(enc.key), str(cut)]) == EXIT_CORRUPT
    assert "NOT a valid backup" in capsys.readouterr().err


def test_an_encrypted_broken_archive_fails_the_archive_checks(
    enc: Encrypted, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """age is happy (the damage was there before encryption): the .mbak checks still run."""
    broken = damaged(enc.plain, tmp_path / "broken.mbak", enc.plain.stat().st_size // 2)
    subprocess.run(
        [
            age_tool("age"),
            "-r",
            enc.recipient,
            "-o",
            str(tmp_path / "broken.mbak.age"),
            str(broken),
        ],
        check=True,
    )
    assert main(["verify", "-i", str(enc.key), str(tmp_path / "broken.mbak.age")]) == EXIT_CORRUPT
    assert "broken.mbak.age: NOT a valid backup" in capsys.readouterr().err


def test_bad_key_files_are_usage_errors_that_quote_no_key(
    enc: Encrypted, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = next(x for x in enc.key.read_text().splitlines() if x.startswith("AGE-SECRET"))
    typo = tmp_path / "typo.txt"
    typo.write_text("# my key\n" + secret[:-1] + ("Q" if secret[-1] != "Q" else "P") + "\n")
    assert main(["verify", "-i", str(typo), str(enc.age_file)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{typo} line 2: Bech32 checksum mismatch" in err and secret[20:40] not in err
    assert main(["verify", "-i", str(tmp_path / "missing.txt"), str(enc.age_file)]) == EXIT_USAGE
    assert "cannot read the identity file" in capsys.readouterr().err


# -- decrypting as it is read -----------------------------------------------------------------


def open_decrypted(enc: Encrypted) -> DecryptedFile:
    return DecryptedFile(enc.age_file, load_identities([enc.key]))


def test_the_plaintext_size_is_known_before_reading_and_the_bytes_are_exact(
    enc: Encrypted,
) -> None:
    with open_decrypted(enc) as plain:
        assert plain.size == enc.plain.stat().st_size
        pieces = []
        for n in [1, 10, 65536, 100_000, 256 * 1024]:
            pieces.append(plain.read(n))
        pieces.append(plain.read())
        assert plain.read(10) == b""
    assert b"".join(pieces) == enc.plain.read_bytes()


def test_decryption_reads_the_file_only_as_far_as_needed(enc: Encrypted) -> None:
    """Streaming, not a whole-file decrypt: a small read consumes at most a few chunks."""
    with open_decrypted(enc) as plain:
        plain.read(1000)
        consumed = plain._f.tell()
    assert consumed <= 4096 + 2 * READ_CIPHERTEXT < enc.age_file.stat().st_size


# -- restore ---------------------------------------------------------------------------------


@dataclass
class RecordingInitiator:
    """Stands in for the USB initiator: keeps what SendObject would carry."""

    sent: list[tuple[str, int, bytes]] = field(default_factory=list)

    def find(self, storage_id: int, path: str) -> int:
        return 7

    def send_object_from(
        self, storage_id: int, parent: int, name: str, source: IO[bytes], length: int, progress: Any
    ) -> tuple[int, Any]:
        data = bytearray()
        while len(data) < length:
            chunk = source.read(min(256 * 1024, length - len(data)))
            if not chunk:
                raise OSError("source ended before the announced length")
            data += chunk
        self.sent.append((name, length, bytes(data)))
        return 42, type("Response", (), {"code": ResponseCode.OK})()

    def children(self, storage_id: int, parent: int) -> list[Any]:
        return []  # no status.txt: the tool says so and carries on


@pytest.fixture
def device(monkeypatch: pytest.MonkeyPatch) -> RecordingInitiator:
    mtp = RecordingInitiator()

    @contextlib.contextmanager
    def fake_open(selector: str | None, timeout_s: float) -> Iterator[BackupDevice]:
        yield BackupDevice(mtp, 0x10001)

    monkeypatch.setattr(restore_module, "open_device", fake_open)
    return mtp


def test_restore_uploads_the_decrypted_archive_under_its_own_name(
    enc: Encrypted, device: RecordingInitiator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["restore", "--identity", str(enc.key), str(enc.age_file)]) == EXIT_OK
    plain = enc.plain.read_bytes()
    assert device.sent == [("base.mbak", len(plain), plain)]
    assert f"restoring base.mbak.age ({len(plain)} bytes)" in capsys.readouterr().out


@pytest.mark.parametrize("no_verify", [[], ["--no-verify"]])
def test_restore_refuses_before_any_usb_traffic(
    enc: Encrypted,
    device: RecordingInitiator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_verify: list[str],
) -> None:
    assert main(["restore", *no_verify, str(enc.age_file)]) == EXIT_USAGE
    assert "--identity KEYFILE" in capsys.readouterr().err
    other = tmp_path / "other.txt"
    other.write_text(X25519Identity.generate().encode() + "\n")
    assert main(["restore", *no_verify, "-i", str(other), str(enc.age_file)]) == EXIT_USAGE
    assert "no identity matches" in capsys.readouterr().err
    assert device.sent == []


def test_restore_refuses_a_damaged_encrypted_backup_before_sending(
    enc: Encrypted, device: RecordingInitiator, tmp_path: Path
) -> None:
    bad = damaged(enc.age_file, tmp_path / "bad.mbak.age", enc.age_file.stat().st_size - 5000)
    assert main(["restore", "-i", str(enc.key), str(bad)]) == EXIT_CORRUPT
    assert device.sent == []


def test_without_verification_a_damaged_chunk_stops_the_upload(
    enc: Encrypted, device: RecordingInitiator, tmp_path: Path
) -> None:
    """Nothing unauthenticated is ever sent: the upload stops at the damaged chunk."""
    bad = damaged(enc.age_file, tmp_path / "bad.mbak.age", enc.age_file.stat().st_size - 5000)
    assert main(["restore", "--no-verify", "-i", str(enc.key), str(bad)]) == EXIT_CORRUPT
    assert device.sent == []


def test_missing_files_are_reported_not_tracebacks(
    enc: Encrypted, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing_key = tmp_path / "nope.txt"
    assert main(["restore", "-i", str(missing_key), str(enc.age_file)]) == EXIT_USAGE
    assert f"{missing_key}: cannot read the identity file" in capsys.readouterr().err
    missing = tmp_path / "gone.mbak.age"
    assert main(["restore", "-i", str(enc.key), str(missing)]) == EXIT_FAILED
    assert f"{missing}: no such file" in capsys.readouterr().err
