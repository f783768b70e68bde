"""Encrypted backups over MTP: the Backup & Restore storage configured with age keys.

With ``recipients`` the host sees ``<name>.mbak.age`` files of exact size that
Debian's ``age`` opens and ``tar`` extracts; GetPartialObject at any offset
gives the same bytes every time.  With ``identity_file`` such a file sent
into Restore/ restores; without it, with the wrong key or with one byte
altered, the restore is refused with the reason in status.txt and the
owner's files stay as they were.  Bad key options stop the responder at
start, naming the option.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from data_providers.backup_restore.options import Options
from engine.daemon.config import EngineConfig
from mtp_responder.core.codes import OperationCode, ResponseCode
from tests.engine.conftest import EngineProcess, start_engine, stop_engine
from tests.engine.helpers import PASSIVE_ALL, make_config, make_tree, register, tree_state

from .conftest import start_device, wait_until
from .test_backup_restore_provider import (
    SID,
    Rig,
    backup_storage,
    children,
    folder,
    read_status,
    send_into,
)
from .test_config_errors import refused, run, storage, write

AGE_CHUNK = 64 * 1024
SEALED = AGE_CHUNK + 16


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    cfg: EngineConfig = make_config(tmp_path / "engine", device_name="board")
    owner = register(cfg, SID, PASSIVE_ALL)
    make_tree(owner)
    (owner / "big.bin").write_bytes(random.Random(3).randbytes(3 * AGE_CHUNK + 99))
    proc = start_engine(cfg, tmp_path / "engine")
    yield proc
    stop_engine(proc)


def age_keygen(path: Path) -> str:
    """A key file made by ``age-keygen`` (mode 0600); returns its recipient."""
    out = subprocess.run(
        ["age-keygen", "-o", str(path)], capture_output=True, text=True, check=True
    )
    os.chmod(path, 0o600)
    return next(w for w in out.stderr.split() if w.startswith("age1"))


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "key.txt"
    age_keygen(path)
    return path


def recipient_of(key: Path) -> str:
    done = subprocess.run(
        ["age-keygen", "-y", str(key)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


async def start_rig(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess, **backup: object
) -> Rig:
    store = tmp_path / "storage"
    store.mkdir(exist_ok=True)
    config: dict[str, object] = {
        "state_dir": str(tmp_path / "state"),
        "providers": {
            "files": {"storages": [{"path": str(store), "description": "Internal"}]},
            "backup_restore": {
                "socket": str(engine.config.socket_path),
                "idle_timeout": 30,
                **backup,
            },
        },
    }
    device = await start_device(nursery, tmp_path, config)
    assert (await device.mtp.open_session()).ok
    return Rig(device, engine, engine.config.drives["c"] / "private" / f"{SID:08X}")


async def fetch_encrypted(rig: Rig) -> tuple[int, int, bytes]:
    """(storage, handle, bytes) of the full backup as the host copies it out."""
    storage = await backup_storage(rig.mtp)
    listing = await children(rig.mtp, storage, await folder(rig.mtp, storage, "Backup"))
    names = [n for n in listing if n != "owners"]
    assert sorted(n.rpartition(".")[2] for n in names) == ["age", "snapshot"], names
    name = next(n for n in names if n.endswith(".mbak.age"))
    info = await rig.mtp.object_info(listing[name])
    data = await rig.mtp.get_object(listing[name])
    assert info.compressed_size == len(data), "the exact size, announced before the data"
    return storage, listing[name], data


def owner_files(rig: Rig) -> dict[str, tuple[object, ...]]:
    keep = ("cache", "NoBackup")
    state = tree_state(rig.owner_dir)
    return {k: v for k, v in state.items() if not k.startswith(keep)}


def change_the_owner(rig: Rig) -> None:
    (rig.owner_dir / "new.txt").write_text("added after the backup")
    (rig.owner_dir / "big.bin").write_bytes(b"replaced")


def tamper(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x80
    return bytes(out)


# -- backups -----------------------------------------------------------------------------


async def test_the_host_copies_out_a_file_age_decrypts_and_tar_extracts(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess, key: Path
) -> None:
    rig = await start_rig(nursery, tmp_path, engine, recipients=[recipient_of(key)])
    _, _, served = await fetch_encrypted(rig)
    copied = tmp_path / "board.mbak.age"
    copied.write_bytes(served)
    out = tmp_path / "extract"
    out.mkdir()
    pipeline = f"age -d -i {key} {copied} | tar -x -C {out}"
    subprocess.run(["sh", "-ec", pipeline], check=True)
    files = tree_state(out / "owners" / f"{SID:08X}" / "c" / "files")
    want = owner_files(rig)
    assert {k: v[1] for k, v in files.items() if v[0] == "f"} == {
        k: v[1] for k, v in want.items() if v[0] == "f"
    }


async def test_partial_reads_at_random_offsets_equal_the_whole_every_time(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess, key: Path
) -> None:
    recipients_file = tmp_path / "recipients.txt"
    recipients_file.write_text(f"# the backup PC\n{recipient_of(key)}\n")
    rig = await start_rig(nursery, tmp_path, engine, recipients_file=str(recipients_file))
    _, handle, served = await fetch_encrypted(rig)
    rng = random.Random(5)
    spans = [(0, 300), (len(served) - 10, 10), (200, 2 * SEALED)]
    spans += [(rng.randrange(len(served)), rng.randrange(1, 2 * SEALED)) for _ in range(10)]
    for offset, length in spans + spans:
        r = await rig.mtp.transaction(OperationCode.GET_PARTIAL_OBJECT, handle, offset, length)
        assert r.response.ok
        assert r.data == served[offset : offset + length], (offset, length)
    assert await rig.mtp.get_object(handle) == served, "a second copy is byte-identical"


# -- restores ----------------------------------------------------------------------------


async def test_with_the_identity_configured_an_encrypted_backup_restores_exactly(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess, key: Path
) -> None:
    rig = await start_rig(
        nursery, tmp_path, engine, recipients=[recipient_of(key)], identity_file=str(key)
    )
    storage, _, served = await fetch_encrypted(rig)
    backed_up = owner_files(rig)
    change_the_owner(rig)
    code = await send_into(rig, storage, "Restore", "board.mbak.age", served)
    assert code == ResponseCode.OK
    assert owner_files(rig) == backed_up
    status = await read_status(rig, storage)
    assert "board.mbak.age: RESTORED" in status
    await wait_until(lambda: rig.mode() == "NORMAL", 10)


async def test_without_an_identity_the_restore_is_refused_with_the_reason(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess, key: Path
) -> None:
    rig = await start_rig(nursery, tmp_path, engine, recipients=[recipient_of(key)])
    storage, _, served = await fetch_encrypted(rig)
    change_the_owner(rig)
    before = owner_files(rig)
    code = await send_into(rig, storage, "Restore", "board.mbak.age", served)
    assert code == ResponseCode.ACCESS_DENIED
    assert owner_files(rig) == before
    status = await read_status(rig, storage)
    assert "REFUSED" in status and "encrypted archive, but no identity is configured" in status


async def test_the_wrong_identity_is_refused_and_nothing_changes(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess, key: Path
) -> None:
    other = tmp_path / "other.txt"
    age_keygen(other)
    rig = await start_rig(
        nursery, tmp_path, engine, recipients=[recipient_of(key)], identity_file=str(other)
    )
    storage, _, served = await fetch_encrypted(rig)
    change_the_owner(rig)
    before = owner_files(rig)
    code = await send_into(rig, storage, "Restore", "board.mbak.age", served)
    assert code == ResponseCode.INVALID_DATASET
    assert owner_files(rig) == before
    assert "wrong key" in await read_status(rig, storage)


async def test_a_tampered_byte_is_refused_and_nothing_changes(
    nursery: trio.Nursery, tmp_path: Path, engine: EngineProcess, key: Path
) -> None:
    rig = await start_rig(
        nursery, tmp_path, engine, recipients=[recipient_of(key)], identity_file=str(key)
    )
    storage, _, served = await fetch_encrypted(rig)
    change_the_owner(rig)
    before = owner_files(rig)
    code = await send_into(rig, storage, "Restore", "x.mbak.age", tamper(served, len(served) // 2))
    assert code == ResponseCode.INVALID_DATASET
    assert owner_files(rig) == before
    status = await read_status(rig, storage)
    assert "x.mbak.age: REFUSED" in status and "failed authentication" in status
    await wait_until(lambda: rig.mode() == "NORMAL", 10)


# -- options -----------------------------------------------------------------------------


def test_key_options_are_read_and_checked(tmp_path: Path, key: Path) -> None:
    recipient = recipient_of(key)
    opts = Options.parse("backup_restore", {"recipients": [recipient], "identity_file": str(key)})
    assert [str(r) for r in opts.recipients] == [recipient]
    assert [i.recipient for i in opts.identities] == opts.recipients
    assert "AGE-SECRET-KEY" not in repr(opts)


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"recipients": "age1x"}, ("providers.b.recipients", "list")),
        ({"recipients": []}, ("providers.b.recipients", "empty")),
        ({"recipients": ["age1notakey"]}, ("providers.b.recipients", "item 1")),
        ({"recipients_file": "/no/such/file"}, ("providers.b.recipients_file", "/no/such")),
        ({"identity_file": "/no/such/key"}, ("providers.b.identity_file", "/no/such")),
        ({"identity_file": 3}, ("providers.b.identity_file", "string")),
    ],
)
def test_bad_key_options_name_the_key(options: dict[str, object], names: tuple[str, ...]) -> None:
    with pytest.raises(ValueError) as caught:
        Options.parse("b", options)
    for name in names:
        assert name in str(caught.value)


def test_a_world_readable_identity_file_stops_the_start_naming_the_key(
    tmp_path: Path, key: Path
) -> None:
    os.chmod(key, 0o644)
    path = write(
        tmp_path,
        storage(tmp_path)
        + f'[providers.backup]\nplugin = "backup_restore"\nidentity_file = "{key}"\n',
    )
    line = refused(
        run("mtp_responder.cli", "--config", str(path), "--check-config"),
        "providers.backup.identity_file",
        "readable by others",
    )
    assert "AGE-SECRET-KEY" not in line
