"""Encrypted backups from the backup servers' toolkit, against a real engine.

A server given age recipients serves every archive as ``.mbak.age``: the
stock ``age`` tool opens it and ``tar`` extracts the owners' files; its size
is exact before a byte is read and every re-read, at any offset, gives the
same bytes.  Given an identity it restores such a file; without one, with
the wrong one, or with a single byte altered, the restore is refused with
the reason and no owner's data changes.
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from engine.agefile import X25519Identity, X25519Recipient
from engine.daemon.config import EngineConfig
from engine.serverkit import (
    BACKUP,
    INCREMENTAL,
    OWNERS,
    RESTORE,
    STATUS,
    ErrorKind,
    KeyFileError,
    ServerError,
    read_identity_file,
    read_recipients_file,
)

from .conftest import EngineProcess, start_engine, stop_engine
from .helpers import PASSIVE_ALL, make_config, make_tree, register, tree_state
from .test_serverkit import (
    SID,
    Kit,
    by_suffix,
    change_the_owner,
    read_all,
    send,
    start_kit,
    wait_until,
)

AGE_CHUNK = 64 * 1024


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    cfg: EngineConfig = make_config(tmp_path / "engine", device_name="board")
    owner = register(cfg, SID, PASSIVE_ALL)
    make_tree(owner)
    # Several age chunks, so reads cross chunk boundaries.
    (owner / "big.bin").write_bytes(random.Random(7).randbytes(5 * AGE_CHUNK + 1234))
    proc = start_engine(cfg, tmp_path / "engine")
    yield proc
    stop_engine(proc)


def age_keygen(path: Path) -> X25519Recipient:
    """A key made by Debian's ``age-keygen``; its recipient."""
    out = subprocess.run(
        ["age-keygen", "-o", str(path)], capture_output=True, text=True, check=True
    )
    public = next(w for w in out.stderr.split() if w.startswith("age1"))
    return X25519Recipient.parse(public)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "key.txt"
    age_keygen(path)
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def recipient(key: Path) -> X25519Recipient:
    return read_identity_file(key)[0].recipient


async def encrypted_kit(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess, **config: object
) -> Kit:
    return await start_kit(nursery, tmp_path, engine, idle_timeout=600.0, **config)


@pytest.fixture
async def kit(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess, key: Path
) -> AsyncIterator[Kit]:
    """Serves encrypted to the key's recipient and restores with the key."""
    identities = read_identity_file(key)
    kit = await encrypted_kit(
        nursery,
        tmp_path,
        engine,
        recipients=[identities[0].recipient],
        identities=identities,
    )
    yield kit
    await kit.server.session_closed()


def age_decrypt(key: Path, data: bytes) -> bytes:
    done = subprocess.run(["age", "-d", "-i", str(key)], input=data, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


async def take_encrypted_backup(kit: Kit) -> tuple[bytes, bytes]:
    """The full backup as served (.mbak.age) and its snapshot."""
    listing = await kit.server.list(BACKUP)
    age = by_suffix(listing, ".mbak.age")
    snapshot = by_suffix(listing, ".snapshot")
    return await read_all(kit, age.key), await read_all(kit, snapshot.key)


def owner_files(kit: Kit) -> dict[str, object]:
    return {k: v[1] for k, v in kit.owner_state().items() if v[0] == "f"}


# -- serving -----------------------------------------------------------------------------


async def test_every_archive_is_served_as_mbak_age_of_exact_size(kit: Kit) -> None:
    listing = await kit.server.list(BACKUP)
    names = [e.name for e in listing if not e.is_folder]
    assert sorted(n.rpartition(".")[2] for n in names) == ["age", "snapshot"], names
    full = by_suffix(listing, ".mbak.age")
    assert full.key == f"{BACKUP}/full", "keys do not change with encryption"
    assert len(await read_all(kit, full.key)) == full.size
    owners = await kit.server.list(OWNERS)
    assert [e.name for e in owners] and all(e.name.endswith(".mbak.age") for e in owners)
    for entry in owners:
        assert len(await read_all(kit, entry.key)) == entry.size


async def test_the_served_file_opens_with_age_and_tar_gives_the_owners_files(
    kit: Kit, key: Path, tmp_path: Path
) -> None:
    served, _ = await take_encrypted_backup(kit)
    assert served.startswith(b"age-encryption.org/v1\n")
    archive = tmp_path / "x.mbak"
    archive.write_bytes(age_decrypt(key, served))
    out = tmp_path / "extract"
    out.mkdir()
    subprocess.run(["tar", "-x", "-f", str(archive), "-C", str(out)], check=True)
    files = tree_state(out / "owners" / f"{SID:08X}" / "c" / "files")
    assert {k: v[1] for k, v in files.items() if v[0] == "f"} == owner_files(kit)


async def test_an_owner_archive_opens_with_age(kit: Kit, key: Path) -> None:
    await kit.server.list(BACKUP)
    owner = by_suffix(await kit.server.list(OWNERS), f"-{SID:08X}.mbak.age")
    plain = age_decrypt(key, await read_all(kit, owner.key))
    assert plain[257:262] == b"ustar", "a tar archive"


async def test_reads_at_random_offsets_are_the_same_bytes_every_time(kit: Kit) -> None:
    served, _ = await take_encrypted_backup(kit)
    key = f"{BACKUP}/full"
    header = served.index(b"\n---") + 1
    prefix = served.index(b"\n", header) + 1 + 16
    rng = random.Random(11)
    spans: list[tuple[int, int | None]] = [
        (0, 10),
        (header - 3, 40),  # across the MAC line
        (prefix - 5, 10),  # nonce into the first chunk
        (prefix + AGE_CHUNK + 16 - 7, 20),  # across a sealed chunk's end
        (prefix + 2 * (AGE_CHUNK + 16), AGE_CHUNK + 16),  # exactly one sealed chunk
        (len(served) - 100, 4096),  # past the end
        (1000, None),
        (len(served), 10),
    ]
    spans += [(rng.randrange(len(served)), rng.randrange(1, 3 * AGE_CHUNK)) for _ in range(12)]
    for offset, length in spans:
        got = await read_all(kit, key, offset, length)
        end = len(served) if length is None else offset + length
        assert got == served[offset:end], (offset, length)


async def test_a_new_preparation_is_a_new_file_and_still_opens(kit: Kit, key: Path) -> None:
    first, _ = await take_encrypted_backup(kit)
    await kit.server.session_closed()
    await wait_until(lambda: kit.mode() == "NORMAL", 10)
    again, _ = await take_encrypted_backup(kit)
    assert again[:200] != first[:200], "fresh keys for a new preparation"
    assert age_decrypt(key, again)[257:262] == b"ustar"


async def test_the_snapshot_stays_plain_and_the_increment_is_encrypted(kit: Kit, key: Path) -> None:
    _, snapshot = await take_encrypted_backup(kit)
    assert not snapshot.startswith(b"age-encryption.org/")
    change_the_owner(kit)
    await send(kit, f"{INCREMENTAL}/prev.snapshot", snapshot, len(snapshot))
    listing = await kit.server.list(INCREMENTAL)
    increment = by_suffix(listing, ".mbak.age")
    new_snapshot = next(e for e in listing if e.key == f"{INCREMENTAL}/snapshot")
    assert new_snapshot.name.endswith(".snapshot")
    assert not (await read_all(kit, new_snapshot.key)).startswith(b"age-encryption.org/")
    served = await read_all(kit, increment.key)
    assert len(served) == increment.size
    plain = age_decrypt(key, served)
    assert b"new.txt" in plain


async def test_an_encrypted_archive_sent_for_an_increment_is_refused_naming_the_snapshot(
    kit: Kit,
) -> None:
    served, _ = await take_encrypted_backup(kit)
    with pytest.raises(ServerError) as caught:
        await send(kit, f"{INCREMENTAL}/old.mbak.age", served, len(served))
    assert caught.value.kind is ErrorKind.BAD_DATA and ".snapshot" in caught.value.reason
    assert await kit.server.list(INCREMENTAL) == []
    assert not list((kit.server.spool).iterdir()), "nothing of it is kept"


# -- restoring ---------------------------------------------------------------------------


async def test_with_the_identity_an_encrypted_backup_restores_exactly(kit: Kit) -> None:
    served, _ = await take_encrypted_backup(kit)
    backed_up = kit.owner_state()
    change_the_owner(kit)
    entry = await send(kit, f"{RESTORE}/r.mbak.age", served, len(served), chunk=10_000)
    assert entry.size == len(served)
    assert kit.owner_state() == backed_up
    status = (await read_all(kit, STATUS)).decode()
    assert "r.mbak.age: RESTORED" in status and f"{SID:08X}: ok" in status


async def test_an_encrypted_backup_of_unknown_size_in_big_pieces_restores(kit: Kit) -> None:
    served, _ = await take_encrypted_backup(kit)
    backed_up = kit.owner_state()
    change_the_owner(kit)
    await send(kit, f"{RESTORE}/r.mbak.age", served, None, chunk=1 << 20)
    assert kit.owner_state() == backed_up


async def assert_refused(
    kit: Kit, name: str, reason: str, before: dict[str, tuple[object, ...]]
) -> None:
    assert kit.owner_state() == before, "nothing changed"
    status = (await read_all(kit, STATUS)).decode()
    assert f"{name}: REFUSED" in status and reason in status, status


async def test_without_an_identity_an_encrypted_backup_is_refused_before_any_data(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess, recipient: X25519Recipient
) -> None:
    kit = await encrypted_kit(nursery, tmp_path, engine, recipients=[recipient])
    served, _ = await take_encrypted_backup(kit)
    change_the_owner(kit)
    before = kit.owner_state()
    with pytest.raises(ServerError) as caught:
        await kit.server.create(f"{RESTORE}/r.mbak.age", len(served))
    assert caught.value.kind is ErrorKind.DENIED
    assert "no identity is configured" in caught.value.reason
    await assert_refused(kit, "r.mbak.age", "encrypted archive, but no identity", before)


async def test_without_an_identity_an_encrypted_file_under_any_name_is_refused(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess, recipient: X25519Recipient
) -> None:
    """The first bytes say it is age, whatever the name."""
    kit = await encrypted_kit(nursery, tmp_path, engine, recipients=[recipient])
    served, _ = await take_encrypted_backup(kit)
    change_the_owner(kit)
    before = kit.owner_state()
    with pytest.raises(ServerError) as caught:
        await send(kit, f"{RESTORE}/renamed.mbak", served, len(served))
    assert caught.value.kind is ErrorKind.DENIED
    await assert_refused(kit, "renamed.mbak", "encrypted archive, but no identity", before)


async def test_the_wrong_identity_is_refused_and_changes_nothing(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess, recipient: X25519Recipient
) -> None:
    kit = await encrypted_kit(
        nursery,
        tmp_path,
        engine,
        recipients=[recipient],
        identities=[X25519Identity.generate()],
    )
    served, _ = await take_encrypted_backup(kit)
    change_the_owner(kit)
    before = kit.owner_state()
    with pytest.raises(ServerError) as caught:
        await send(kit, f"{RESTORE}/r.mbak.age", served, len(served))
    assert caught.value.kind is ErrorKind.BAD_DATA
    await assert_refused(kit, "r.mbak.age", "does not open it (wrong key?)", before)


def tamper(served: bytes, where: str) -> bytes:
    data = bytearray(served)
    prefix = served.index(b"\n", served.index(b"\n---") + 1) + 1 + 16
    at = {
        "header": served.index(b"\n---") + 6,
        "first chunk": prefix + 100,
        "middle chunk": prefix + 2 * (AGE_CHUNK + 16) + 5,
        "final chunk": len(served) - 20,
    }[where]
    data[at] ^= 0x01
    return bytes(data)


@pytest.mark.parametrize("where", ["header", "first chunk", "middle chunk", "final chunk"])
async def test_a_tampered_byte_is_refused_and_changes_nothing(kit: Kit, where: str) -> None:
    served, _ = await take_encrypted_backup(kit)
    change_the_owner(kit)
    before = kit.owner_state()
    bad = tamper(served, where)
    with pytest.raises(ServerError) as caught:
        await send(kit, f"{RESTORE}/r.mbak.age", bad, len(bad))
    assert caught.value.kind is ErrorKind.BAD_DATA
    reason = "header MAC" if where == "header" else "failed authentication"
    await assert_refused(kit, "r.mbak.age", reason, before)
    await wait_until(lambda: kit.mode() == "NORMAL", 10)


async def test_a_file_cut_short_is_refused_and_changes_nothing(kit: Kit) -> None:
    served, _ = await take_encrypted_backup(kit)
    change_the_owner(kit)
    before = kit.owner_state()
    prefix = served.index(b"\n", served.index(b"\n---") + 1) + 1 + 16
    cut = served[: prefix + 3 * (AGE_CHUNK + 16)]  # whole chunks, but not the final one
    with pytest.raises(ServerError) as caught:
        await send(kit, f"{RESTORE}/r.mbak.age", cut, len(cut))
    assert caught.value.kind is ErrorKind.BAD_DATA
    await assert_refused(kit, "r.mbak.age", "truncated", before)


async def test_a_plain_archive_still_restores_on_an_encrypting_server(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess, key: Path
) -> None:
    plain_kit = await encrypted_kit(nursery, tmp_path, engine)
    whole = await read_all(plain_kit, by_suffix(await plain_kit.server.list(BACKUP), ".mbak").key)
    await plain_kit.server.session_closed()
    backed_up = plain_kit.owner_state()
    change_the_owner(plain_kit)
    identities = read_identity_file(key)
    kit = await encrypted_kit(
        nursery, tmp_path, engine, recipients=[identities[0].recipient], identities=identities
    )
    await send(kit, f"{RESTORE}/r.mbak", whole, len(whole))
    assert kit.owner_state() == backed_up


async def test_keys_never_reach_the_log(
    kit: Kit, key: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    served, _ = await take_encrypted_backup(kit)
    await send(kit, f"{RESTORE}/r.mbak.age", served, len(served))
    with pytest.raises(ServerError):
        await send(kit, f"{RESTORE}/bad.mbak.age", tamper(served, "middle chunk"), len(served))
    secret = next(line for line in key.read_text().splitlines() if line.startswith("AGE-"))
    text = caplog.text + repr(kit.server.config)
    assert "AGE-SECRET-KEY" not in text and secret not in text
    assert caplog.records, "the backup and restore were logged"


# -- key files ---------------------------------------------------------------------------


def test_an_identity_file_others_can_read_is_refused_with_the_reason(key: Path) -> None:
    os.chmod(key, 0o644)
    with pytest.raises(KeyFileError) as caught:
        read_identity_file(key)
    assert "readable by others" in str(caught.value) and "0644" in str(caught.value)
    assert "AGE-SECRET-KEY" not in str(caught.value)


def test_a_damaged_identity_file_names_the_line_not_the_key(key: Path) -> None:
    secret = key.read_text().splitlines()[-1]
    key.write_text("# a comment\n" + secret[:-3] + "QQQ\n")
    with pytest.raises(KeyFileError) as caught:
        read_identity_file(key)
    assert "line 2" in str(caught.value) and secret[20:] not in str(caught.value)


def test_a_recipients_file_takes_one_per_line_and_names_a_bad_one(
    tmp_path: Path, recipient: X25519Recipient
) -> None:
    path = tmp_path / "recipients.txt"
    path.write_text(f"# backups\n{recipient}\n\n")
    assert read_recipients_file(path) == [recipient]
    path.write_text(f"{recipient}\nage1nonsense\n")
    with pytest.raises(KeyFileError, match="item 2"):
        read_recipients_file(path)
    path.write_text("# nothing\n")
    with pytest.raises(KeyFileError, match="no age1"):
        read_recipients_file(path)


def test_a_fifo_or_a_folder_as_key_file_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    for path in (fifo, tmp_path):
        for read in (read_identity_file, read_recipients_file):
            with pytest.raises(KeyFileError, match=str(path)):
                read(path)
