"""``mtp-backup backup`` against a real responder and engine, over the loopback link.

The tool's own code runs unchanged (command line, fetch, verification,
``chain.json``); only its USB initiator is replaced by one that carries the
same MTP transactions over the loopback link to a real responder whose
Backup & Restore storage serves encrypted backups (``.mbak.age``).  Free
space is read through the tool's one hook (:data:`mtp_backup.space.statvfs`),
which a test stands a small file system in for.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import trio

from mtp_backup import backup as backup_module
from mtp_backup import space
from mtp_backup.cli import main
from mtp_backup.device import BackupDevice
from mtp_backup.encrypted import DecryptingFeed
from mtp_backup.errors import EXIT_CORRUPT, EXIT_FAILED, EXIT_OK, EXIT_USAGE, ToolError
from mtp_responder.core.codes import ROOT, ObjectFormat, OperationCode
from mtp_responder.core.datasets import ObjectInfoData, build_object_info
from mtp_responder.testing.initiator import Initiator
from tests.engine.conftest import EngineProcess

from .test_backup_restore_age import (
    age_keygen,
    change_the_owner,
    engine,  # noqa: F401  (the fixture)
    recipient_of,
    start_rig,
)
from .test_backup_restore_provider import Rig, backup_storage

Progress = Callable[[int], None] | None


@dataclass
class LoopbackInitiator:
    """The initiator calls ``mtp-backup`` makes, as MTP transactions over the loopback link.

    Called from the tool's thread; each call runs on the trio loop that
    drives the link.  ``fetched`` records every GetObject.
    """

    mtp: Initiator
    fetched: list[int] = field(default_factory=list)

    def _run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return trio.from_thread.run(functools.partial(fn, *args, **kw))

    def children(self, storage_id: int, parent: int = ROOT) -> list[tuple[int, ObjectInfoData]]:
        handles = self._run(self.mtp.object_handles, storage_id, parent)
        return [(h, self._run(self.mtp.object_info, h)) for h in handles]

    def find(self, storage_id: int, path: str) -> int:
        parent = ROOT
        for part in [p for p in path.split("/") if p]:
            names = {info.filename: h for h, info in self.children(storage_id, parent)}
            if part not in names:
                raise FileNotFoundError(path)
            parent = names[part]
        return parent

    def transaction(self, code: int, *params: int, data: bytes | None = None) -> Any:
        result = self._run(self.mtp.transaction, code, *params, data=data)
        return result.data, result.response

    def get_object_to(self, handle: int, sink: IO[bytes], progress: Progress = None) -> None:
        self.fetched.append(handle)
        data = self._run(self.mtp.get_object, handle)
        for at in range(0, len(data), 1 << 16):
            sink.write(data[at : at + (1 << 16)])
            if progress:
                progress(min(len(data), at + (1 << 16)))

    def send_object_from(
        self,
        storage_id: int,
        parent: int,
        name: str,
        source: IO[bytes],
        length: int,
        progress: Progress = None,
    ) -> tuple[int, Any]:
        payload = source.read(length)
        info = ObjectInfoData(storage_id, ObjectFormat.UNDEFINED, 0, length, parent, 0, name)
        r = self._run(
            self.mtp.transaction,
            OperationCode.SEND_OBJECT_INFO,
            storage_id,
            parent,
            data=build_object_info(info),
        )
        if not r.response.ok:
            return 0, r.response
        handle = r.response.params[2]
        r = self._run(self.mtp.transaction, OperationCode.SEND_OBJECT, data=payload)
        return handle, r.response

    def delete_object(self, handle: int) -> None:
        self._run(self.mtp.transaction, OperationCode.DELETE_OBJECT, handle)


@dataclass
class Tool:
    rig: Rig
    bridge: LoopbackInitiator
    monkeypatch: pytest.MonkeyPatch

    async def run(self, *argv: str) -> int:
        storage = await backup_storage(self.rig.mtp)

        @contextlib.contextmanager
        def open_loopback(selector: str | None, timeout_s: float) -> Iterator[BackupDevice]:
            yield BackupDevice(self.bridge, storage)

        self.monkeypatch.setattr(backup_module, "open_device", open_loopback)
        return await trio.to_thread.run_sync(main, list(argv))


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "key.txt"
    age_keygen(path)
    return path


@pytest.fixture
async def tool(
    nursery: trio.Nursery,
    tmp_path: Path,
    engine: EngineProcess,  # noqa: F811
    key: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Tool:
    rig = await start_rig(nursery, tmp_path, engine, recipients=[recipient_of(key)])
    return Tool(rig, LoopbackInitiator(rig.mtp), monkeypatch)


def chain_of(directory: Path) -> list[list[dict[str, Any]]]:
    chains: list[list[dict[str, Any]]] = json.loads((directory / "chain.json").read_text())[
        "chains"
    ]
    return chains


def decrypt(key: Path, path: Path) -> bytes:
    done = subprocess.run(["age", "-d", "-i", str(key), str(path)], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


# -- encrypted backups -----------------------------------------------------------------------


async def test_with_the_key_the_encrypted_backup_is_checked_as_it_arrives(
    tool: Tool, key: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "backups"
    assert await tool.run("backup", str(out), "--identity", str(key)) == EXIT_OK
    printed = capsys.readouterr().out
    assert "SHA-256 digests match" in printed and "NOT checked" not in printed
    [[entry]] = chain_of(out)
    assert entry["archive"].endswith(".mbak.age") and entry["snapshot"].endswith(".snapshot")
    plain = decrypt(key, out / entry["archive"])
    assert entry["sha256"] == hashlib.sha256(plain).hexdigest()
    assert entry["size"] == len(plain) and len(entry["backup_id"]) == 32
    assert not (out / entry["snapshot"]).read_bytes().startswith(b"age-encryption.org/")
    assert await trio.to_thread.run_sync(main, ["verify", "-i", str(key), str(out)]) == EXIT_OK


async def test_without_a_key_it_is_copied_with_a_note_and_the_chain_still_grows(
    tool: Tool, key: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "backups"
    assert await tool.run("backup", str(out)) == EXIT_OK
    assert "not checked" in capsys.readouterr().out
    [[base]] = chain_of(out)
    assert base["sha256"] == "" and len(base["backup_id"]) == 32
    assert base["size"] == len(decrypt(key, out / base["archive"]))
    change_the_owner(tool.rig)
    assert await tool.run("backup", str(out), "--incremental") == EXIT_OK
    [[_, increment]] = chain_of(out)
    assert increment["archive"].endswith(".mbak.age")
    assert increment["based_on"] == base["backup_id"]
    assert b"new.txt" in decrypt(key, out / increment["archive"])
    # Checked later, with the key: the whole chain, in order.
    assert await trio.to_thread.run_sync(main, ["verify", "-i", str(key), str(out)]) == EXIT_OK


async def test_a_wrong_key_keeps_nothing_and_exits_2(
    tool: Tool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.txt"
    age_keygen(other)
    out = tmp_path / "backups"
    assert await tool.run("backup", str(out), "--identity", str(other)) == EXIT_USAGE
    assert "wrong key" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == []


async def test_owner_backups_are_fetched_encrypted(tool: Tool, key: Path, tmp_path: Path) -> None:
    out = tmp_path / "backups"
    sid = f"{0x10203040:08X}"
    assert await tool.run("backup", str(out), "--owner", sid, "-i", str(key)) == EXIT_OK
    [path] = list((out / "owners").iterdir())
    assert path.name.endswith(f"-{sid}.mbak.age")
    assert decrypt(key, path)[257:262] == b"ustar"


async def test_owner_backups_without_a_key_are_recorded_unchecked(
    tool: Tool, key: Path, tmp_path: Path
) -> None:
    out = tmp_path / "backups"
    sid = f"{0x10203040:08X}"
    assert await tool.run("backup", str(out), "--owner", sid) == EXIT_OK
    [entry] = json.loads((out / "chain.json").read_text())["owners"]
    assert (entry["kind"], entry["sid"], entry["sha256"]) == ("owner", sid, "")
    assert entry["size"] == len(decrypt(key, out / entry["archive"]))


def test_a_damaged_chunk_in_transit_is_a_corrupt_backup(key: Path, tmp_path: Path) -> None:
    from engine.agefile import EncryptedView, parse_identities

    identities = parse_identities(key.read_text())
    plain = os.urandom(200_000)
    view = EncryptedView([identities[0].recipient], len(plain), lambda o, n: plain[o : o + n])
    data = bytearray(view.read(0, view.size))
    data[len(data) // 2] ^= 1
    got: list[bytes] = []
    feed = DecryptingFeed("x.mbak.age", identities, got.append)
    feed.feed(bytes(data))
    with pytest.raises(ToolError) as caught:
        feed.finish()
    assert caught.value.exit_code == EXIT_CORRUPT and "failed authentication" in str(caught.value)


# -- space before time -----------------------------------------------------------------------


@dataclass
class SmallDisk:
    """What statvfs says of a file system with ``free`` bytes left."""

    free: int
    f_frsize: int = 4096

    @property
    def f_bavail(self) -> int:
        return self.free // self.f_frsize


async def test_a_backup_larger_than_the_free_space_is_refused_before_its_first_byte(
    tool: Tool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(space, "statvfs", lambda path: SmallDisk(free=64 * 1024))
    out = tmp_path / "backups"
    assert await tool.run("backup", str(out)) == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"not enough space in {out}" in err and "nothing was copied" in err
    assert tool.bridge.fetched == [], "not one GetObject"
    assert list(out.iterdir()) == []


async def test_the_space_check_counts_the_exact_sizes(
    tool: Tool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Room for exactly the archives (and the margin) is enough; a byte less is not."""
    out = tmp_path / "backups"
    storage = await backup_storage(tool.rig.mtp)
    listing = await trio.to_thread.run_sync(
        lambda: BackupDevice(tool.bridge, storage).folder("Backup")
    )
    needed = sum(o.size for o in listing.values() if not o.is_folder) + space.MARGIN
    seen: list[str] = []

    def disk(path: str | os.PathLike[str]) -> SmallDisk:
        seen.append(os.fspath(path))
        return SmallDisk(free=needed - 1, f_frsize=1)

    monkeypatch.setattr(space, "statvfs", disk)
    assert await tool.run("backup", str(out)) == EXIT_FAILED
    monkeypatch.setattr(space, "statvfs", lambda path: SmallDisk(free=needed, f_frsize=1))
    assert await tool.run("backup", str(out)) == EXIT_OK
    assert seen == [str(out)]
