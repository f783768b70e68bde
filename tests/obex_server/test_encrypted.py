"""Encrypted backups over OBEX: served as .mbak.age to the recipients, restored with the key.

The server's ``[engine] recipients`` / ``identity_file`` keys give the
toolkit its age keys; obexftp moves the encrypted file like any other, and
Debian's ``age`` decrypts it on the PC.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from obex_backup_server.config import ConfigError, ObexConfig
from obex_backup_server.core.codes import ResponseCode
from tests.engine.conftest import EngineProcess

from .conftest import SID, launch, needs_obexftp, stop
from .test_obexftp import change_the_owner, exit_code, listing, obexftp, one

pytestmark = needs_obexftp
FILES = f"owners/{SID:08X}/c/files/"


def age_keygen(path: Path) -> str:
    """A key made by Debian's ``age-keygen``, readable by its owner only; its recipient."""
    done = subprocess.run(["age-keygen", "-o", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    os.chmod(path, 0o600)
    return next(word for word in done.stderr.split() if word.startswith("age1"))


def test_an_encrypted_backup_decrypts_with_age_and_restores_with_the_key(
    tmp_path: Path, engine: EngineProcess
) -> None:
    key = tmp_path / "key.txt"
    recipient = age_keygen(key)
    server = launch(tmp_path, engine, keys=f'recipients = ["{recipient}"]\nidentity_file = "{key}"')
    try:
        backed_up = server.owner_state()
        names = listing(obexftp(server, "-c", "Backup", "-l", cwd=tmp_path).stdout)
        assert not [n for n in names if n.endswith(".mbak")], "nothing is served plain"
        sealed, size = one(names, ".mbak.age")
        obexftp(server, "-c", "Backup", "-g", sealed, cwd=tmp_path)
        assert (tmp_path / sealed).stat().st_size == size
        opened = subprocess.run(
            ["age", "-d", "-i", str(key), str(tmp_path / sealed)], capture_output=True
        )
        assert opened.returncode == 0, opened.stderr
        with tarfile.open(fileobj=io.BytesIO(opened.stdout)) as tar:
            member = tar.extractfile(FILES + "ro.txt")
            assert member is not None and member.read() == b"read only"
        change_the_owner(server)
        obexftp(server, "-c", "Restore", "-p", sealed, cwd=tmp_path)
        assert server.owner_state() == backed_up
    finally:
        stop(server.proc)


def test_an_encrypted_archive_is_refused_without_an_identity(
    tmp_path: Path, engine: EngineProcess
) -> None:
    recipient = age_keygen(tmp_path / "key.txt")
    server = launch(tmp_path, engine, keys=f'recipients = ["{recipient}"]')
    try:
        sealed, _ = one(
            listing(obexftp(server, "-c", "Backup", "-l", cwd=tmp_path).stdout), ".mbak.age"
        )
        obexftp(server, "-c", "Backup", "-g", sealed, cwd=tmp_path)
        change_the_owner(server)
        before = server.owner_state()
        obexftp(
            server,
            "-c",
            "Restore",
            "-p",
            sealed,
            cwd=tmp_path,
            expect=exit_code(ResponseCode.FORBIDDEN),
        )
        assert server.owner_state() == before
    finally:
        stop(server.proc)


def test_key_settings_that_cannot_be_used_name_their_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^engine\.recipients: "):
        ObexConfig.from_dict({"engine": {"recipients": ["age1notakey"]}})
    with pytest.raises(ConfigError, match=r"^engine\.recipients: "):
        ObexConfig.from_dict({"engine": {"recipients": []}})
    open_key = tmp_path / "key.txt"
    age_keygen(open_key)
    os.chmod(open_key, 0o644)
    with pytest.raises(ConfigError, match=r"^engine\.identity_file: "):
        ObexConfig.from_dict({"engine": {"identity_file": str(open_key)}})
    with pytest.raises(ConfigError, match=r"^engine\.recipients_file: "):
        ObexConfig.from_dict({"engine": {"recipients_file": str(tmp_path / "none.txt")}})
