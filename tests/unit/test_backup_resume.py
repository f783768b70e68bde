"""Resuming a backup download over MTP: a replug in the middle of GetObject, then the rest.

The responder and engine are real and the link is the loopback one; the
host is either a bare initiator (GetObject, unplug, GetPartialObject64) or
the real ``mtp-backup``, whose USB initiator is replaced by one carrying the
same transactions over the loopback link.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import trio

from data_providers.backup_restore.options import Options
from mtp_backup import backup as backup_module
from mtp_backup.cli import main
from mtp_backup.device import BackupDevice
from mtp_backup.errors import EXIT_CORRUPT, EXIT_FAILED, EXIT_OK
from mtp_responder.core.codes import OperationCode, ResponseCode
from mtp_responder.core.container import HEADER_SIZE
from tests.engine.conftest import EngineProcess

from .conftest import wait_until
from .test_backup_restore_age import (  # noqa: F401  (the fixture)
    age_keygen,
    engine,
    recipient_of,
    start_rig,
)
from .test_backup_restore_provider import Rig, backup_storage, children, folder
from .test_backup_tool_device_age import LoopbackInitiator, chain_of

Progress = Callable[[int], None] | None
WINDOW = 60
PARTIAL_OPS = frozenset({OperationCode.GET_PARTIAL_OBJECT, OperationCode.GET_PARTIAL_OBJECT_64})


@pytest.fixture
async def rig(
    nursery: trio.Nursery,
    tmp_path: Path,
    engine: EngineProcess,  # noqa: F811
) -> Rig:
    rig = await start_rig(nursery, tmp_path, engine, resume_window=WINDOW)
    (rig.owner_dir / "big.bin").write_bytes(os.urandom(3 << 20))
    return rig


async def backup_listing(rig: Rig) -> dict[str, int]:
    storage = await backup_storage(rig.mtp)
    return await children(rig.mtp, storage, await folder(rig.mtp, storage, "Backup"))


def mbak_of(listing: dict[str, int]) -> tuple[str, int]:
    name = next(n for n in listing if n.endswith(".mbak"))
    return name, listing[name]


async def cut_off_get_object(rig: Rig, handle: int, at_least: int) -> bytes:
    """GetObject, then the cable is pulled once ``at_least`` bytes of data arrived."""
    await rig.mtp.command(OperationCode.GET_OBJECT, handle)
    got = await rig.device.host.read_transfer(limit=at_least + HEADER_SIZE)
    rig.device.host.unplug()
    return got[HEADER_SIZE:]


async def replug(rig: Rig) -> None:
    await trio.sleep(0.3)  # the responder notices the link went down
    rig.device.host.plug()
    assert (await rig.mtp.open_session()).ok


async def status_text(rig: Rig) -> str:
    storage = await backup_storage(rig.mtp)
    listing = await children(rig.mtp, storage, await folder(rig.mtp, storage, "Restore"))
    return (await rig.mtp.get_object(listing["status.txt"])).decode()


async def get_partial_64(rig: Rig, handle: int, offset: int, length: int) -> bytes:
    r = await rig.mtp.transaction(
        OperationCode.GET_PARTIAL_OBJECT_64, handle, offset & 0xFFFFFFFF, offset >> 32, length
    )
    assert r.response.ok, r.response
    assert r.response.params[0] == length, "the response says how many bytes were sent"
    assert r.data is not None
    return r.data


# -- the device: the same archive after a replug --------------------------------------------


async def test_after_a_replug_in_the_middle_of_getobject_getpartialobject64_gives_the_rest(
    rig: Rig,
) -> None:
    name, handle = mbak_of(await backup_listing(rig))
    size = (await rig.mtp.object_info(handle)).compressed_size
    head = await cut_off_get_object(rig, handle, size // 2)
    assert 0 < len(head) < size
    await replug(rig)
    assert rig.mode() == "BACKUP_FULL", "the backup was held for the host to come back"
    assert f"backup {name} held for resuming until" in await status_text(rig)

    again = await backup_listing(rig)
    assert mbak_of(again) == (name, handle), "the same name, and the handle still valid"
    assert (await rig.mtp.object_info(handle)).compressed_size == size
    rest = await get_partial_64(rig, handle, len(head), size - len(head))
    whole = await rig.mtp.get_object(handle)
    assert head + rest == whole, "byte for byte the archive an uninterrupted GetObject gives"
    assert "held for resuming" not in await status_text(rig)
    r = await rig.mtp.transaction(OperationCode.GET_PARTIAL_OBJECT, handle, 1000, 5000)
    assert r.response.ok and r.data == whole[1000:6000]


async def test_without_a_window_the_unplug_releases_the_backup_and_the_rest_is_refused(
    nursery: trio.Nursery,
    tmp_path: Path,
    engine: EngineProcess,  # noqa: F811
) -> None:
    rig = await start_rig(nursery, tmp_path, engine, resume_window=0)
    (rig.owner_dir / "big.bin").write_bytes(os.urandom(3 << 20))
    name, handle = mbak_of(await backup_listing(rig))
    size = (await rig.mtp.object_info(handle)).compressed_size
    head = await cut_off_get_object(rig, handle, size // 2)
    await wait_until(lambda: rig.mode() == "NORMAL", 10)
    await replug(rig)
    # The handle reads a new preparation now: its rest would not continue ``head``.
    r = await rig.mtp.transaction(
        OperationCode.GET_PARTIAL_OBJECT_64, handle, len(head), 0, size - len(head)
    )
    assert r.response.code == ResponseCode.GENERAL_ERROR
    fresh, _ = mbak_of(await backup_listing(rig))
    assert fresh != name


async def test_a_file_changed_after_the_replug_fails_the_rest_and_a_new_backup_is_listed(
    rig: Rig,
) -> None:
    name, handle = mbak_of(await backup_listing(rig))
    size = (await rig.mtp.object_info(handle)).compressed_size
    head = await cut_off_get_object(rig, handle, 600)
    await replug(rig)
    (rig.owner_dir / "big.bin").write_bytes(os.urandom(3 << 20))
    r = await rig.mtp.transaction(
        OperationCode.GET_PARTIAL_OBJECT_64, handle, len(head), 0, size - len(head)
    )
    assert r.response.code == ResponseCode.GENERAL_ERROR
    await wait_until(lambda: rig.mode() == "NORMAL", 10)
    fresh, _ = mbak_of(await backup_listing(rig))
    assert fresh != name


# -- the host tool ----------------------------------------------------------------------------


@dataclass
class ResumingBridge(LoopbackInitiator):
    """The loopback initiator with partial reads, and a cable that can be pulled.

    ``pull_after``: the next GetObject stops after that many bytes and the
    link goes down, as when the cable is pulled.  ``partial`` records every
    partial read as ``(operation, offset, length)``.
    """

    rig: Rig | None = None
    pull_after: int | None = None
    partial: list[tuple[int, int, int]] = field(default_factory=list)
    pulled: bool = False
    """The cable is out: every call fails, as USB calls do, until :meth:`replug`."""

    def _run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        if self.pulled:
            raise OSError(19, "No such device")
        return super()._run(fn, *args, **kw)

    async def replug(self) -> None:
        assert self.rig is not None
        await replug(self.rig)
        self.pulled = False

    def get_object_to(self, handle: int, sink: IO[bytes], progress: Progress = None) -> None:
        if self.pull_after is None:
            super().get_object_to(handle, sink, progress)
            return
        assert self.rig is not None
        self.fetched.append(handle)
        got = self._run(cut_off_get_object, self.rig, handle, self.pull_after)
        self.pull_after = None
        self.pulled = True
        sink.write(got[: len(got) - len(got) % 4096])
        raise OSError(19, "No such device (the cable was pulled)")

    def get_partial_object_to(
        self,
        handle: int,
        offset: int,
        length: int,
        sink: IO[bytes],
        progress: Progress = None,
        wide: bool = True,
    ) -> int:
        op = OperationCode.GET_PARTIAL_OBJECT_64 if wide else OperationCode.GET_PARTIAL_OBJECT
        params = (
            (handle, offset & 0xFFFFFFFF, offset >> 32, length)
            if wide
            else (handle, offset, length)
        )
        self.partial.append((op, offset, length))
        result = self._run(self.mtp.transaction, op, *params)
        if not result.response.ok:
            from mtp_backup.usb import MTPError

            raise MTPError(op, result.response.code)
        sink.write(result.data)
        if progress:
            progress(len(result.data))
        return len(result.data)


@dataclass
class Tool:
    rig: Rig
    bridge: ResumingBridge
    monkeypatch: pytest.MonkeyPatch
    operations: frozenset[int] = PARTIAL_OPS

    async def run(self, *argv: str) -> int:
        storage = await backup_storage(self.rig.mtp)

        @contextlib.contextmanager
        def open_loopback(selector: str | None, timeout_s: float) -> Iterator[BackupDevice]:
            yield BackupDevice(self.bridge, storage, operations=self.operations)

        self.monkeypatch.setattr(backup_module, "open_device", open_loopback)
        return await trio.to_thread.run_sync(main, list(argv))


@pytest.fixture
def tool(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> Tool:
    return Tool(rig, ResumingBridge(rig.mtp, rig=rig), monkeypatch)


def parts_in(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.glob("*.part")}


async def test_mtp_backup_resumes_a_partial_download_and_its_verify_passes(
    tool: Tool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "backups"
    name, handle = mbak_of(await backup_listing(tool.rig))
    size = (await tool.rig.mtp.object_info(handle)).compressed_size
    tool.bridge.pull_after = size // 2
    assert await tool.run("backup", str(out)) == EXIT_FAILED
    printed = capsys.readouterr()
    [(part, kept)] = parts_in(out).items()
    assert part == f"{name}.{size}.part"
    assert 0 < len(kept) < size
    assert "run the same command again to continue" in printed.out
    assert not (out / name).exists(), "nothing looks complete that is not"

    await tool.bridge.replug()
    assert await tool.run("backup", str(out)) == EXIT_OK
    printed = capsys.readouterr()
    assert f"resuming the download at byte {len(kept)} of {size}" in printed.out
    assert f"resumed at {len(kept)} bytes" in printed.out
    assert "SHA-256 digests match" in printed.out
    assert tool.bridge.partial[0] == (
        OperationCode.GET_PARTIAL_OBJECT_64,
        len(kept),
        size - len(kept),
    )
    assert parts_in(out) == {}
    [[entry]] = chain_of(out)
    assert entry["archive"] == name and entry["size"] == size
    data = (out / name).read_bytes()
    assert data[: len(kept)] == kept
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert await trio.to_thread.run_sync(main, ["verify", str(out)]) == EXIT_OK
    # The very bytes an uninterrupted download gives.
    assert data == await tool.rig.mtp.get_object(handle)


async def test_without_getpartialobject64_the_32_bit_one_resumes(
    tool: Tool, tmp_path: Path
) -> None:
    out = tmp_path / "backups"
    _, handle = mbak_of(await backup_listing(tool.rig))
    size = (await tool.rig.mtp.object_info(handle)).compressed_size
    tool.bridge.pull_after = size // 3
    assert await tool.run("backup", str(out)) == EXIT_FAILED
    await tool.bridge.replug()
    tool.operations = frozenset({OperationCode.GET_PARTIAL_OBJECT})
    assert await tool.run("backup", str(out)) == EXIT_OK
    assert {op for op, _, _ in tool.bridge.partial} == {OperationCode.GET_PARTIAL_OBJECT}
    assert await trio.to_thread.run_sync(main, ["verify", str(out)]) == EXIT_OK


async def test_a_partial_file_complete_but_never_checked_is_checked_and_kept(
    tool: Tool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run killed after the last byte arrived, before the checks renamed it."""
    out = tmp_path / "backups"
    out.mkdir()
    name, handle = mbak_of(await backup_listing(tool.rig))
    whole = await tool.rig.mtp.get_object(handle)
    (out / f"{name}.{len(whole)}.part").write_bytes(whole)
    assert await tool.run("backup", str(out)) == EXIT_OK
    printed = capsys.readouterr().out
    assert f"resuming the download at byte {len(whole)} of {len(whole)}" in printed
    assert "SHA-256 digests match" in printed
    assert tool.bridge.partial == [] and tool.bridge.fetched == [
        h for h in tool.bridge.fetched if h != handle
    ], "no byte of the archive fetched again"
    assert (out / name).read_bytes() == whole and parts_in(out) == {}


async def test_a_partial_file_of_another_name_or_size_is_left_alone(
    tool: Tool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "backups"
    out.mkdir()
    name, handle = mbak_of(await backup_listing(tool.rig))
    size = (await tool.rig.mtp.object_info(handle)).compressed_size
    others = {
        f"board-20200101-000000.mbak.{size}.part": os.urandom(5000),
        f"{name}.{size + 512}.part": os.urandom(5000),
    }
    for part, data in others.items():
        (out / part).write_bytes(data)
    assert await tool.run("backup", str(out)) == EXIT_OK
    printed = capsys.readouterr().out
    assert "resuming" not in printed
    for part in others:
        assert f"{part}: not the backup the device lists now; left alone" in printed
    assert tool.bridge.partial == [], "nothing spliced onto another download"
    assert parts_in(out) == others
    assert await trio.to_thread.run_sync(main, ["verify", str(out)]) == EXIT_OK


async def test_a_resumed_file_that_fails_its_digests_is_deleted_with_a_reason(
    tool: Tool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "backups"
    name, handle = mbak_of(await backup_listing(tool.rig))
    size = (await tool.rig.mtp.object_info(handle)).compressed_size
    tool.bridge.pull_after = size // 2
    assert await tool.run("backup", str(out)) == EXIT_FAILED
    part = out / f"{name}.{size}.part"
    damaged = bytearray(part.read_bytes())
    damaged[-100] ^= 0xFF  # file content, not a header: only a digest can tell
    part.write_bytes(bytes(damaged))
    await tool.bridge.replug()
    assert await tool.run("backup", str(out)) == EXIT_CORRUPT
    err = capsys.readouterr().err
    assert "run the same command again for a fresh copy" in err
    assert not part.exists() and not (out / name).exists()


async def test_an_interrupted_increment_is_continued_without_sending_the_snapshot_again(
    tool: Tool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "backups"
    assert await tool.run("backup", str(out)) == EXIT_OK
    (tool.rig.owner_dir / "big.bin").write_bytes(os.urandom(3 << 20))
    tool.bridge.pull_after = 1 << 20
    assert await tool.run("backup", str(out), "--incremental") == EXIT_FAILED
    [(part, kept)] = parts_in(out).items()
    capsys.readouterr()

    await tool.bridge.replug()
    assert await tool.run("backup", str(out), "--incremental") == EXIT_OK
    printed = capsys.readouterr().out
    assert "continuing its download" in printed
    assert "sending" not in printed, "the held increment is the one taken against our snapshot"
    assert f"resuming the download at byte {len(kept)}" in printed
    [[base, increment]] = chain_of(out)
    assert increment["based_on"] == base["backup_id"]
    assert part.startswith(increment["archive"] + ".")
    assert parts_in(out) == {}
    assert await trio.to_thread.run_sync(main, ["verify", str(out)]) == EXIT_OK
    storage = await backup_storage(tool.rig.mtp)
    incremental = await children(
        tool.rig.mtp, storage, await folder(tool.rig.mtp, storage, "Incremental")
    )
    assert not [n for n in incremental if n.startswith("previous-")], "our snapshot was tidied up"


async def test_a_backup_whose_data_changed_is_not_resumed_and_the_next_run_is_fresh(
    tool: Tool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "backups"
    name, _ = mbak_of(await backup_listing(tool.rig))
    tool.bridge.pull_after = 600
    assert await tool.run("backup", str(out)) == EXIT_FAILED
    await tool.bridge.replug()
    (tool.rig.owner_dir / "big.bin").write_bytes(os.urandom(3 << 20))
    capsys.readouterr()
    assert await tool.run("backup", str(out)) == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"{name}: the device can no longer serve the rest of this backup" in err
    assert "run the same command again for a fresh backup" in err
    assert parts_in(out) == {} and not (out / name).exists()

    assert await tool.run("backup", str(out)) == EXIT_OK
    [[entry]] = chain_of(out)
    assert entry["archive"] != name
    assert await trio.to_thread.run_sync(main, ["verify", str(out)]) == EXIT_OK


async def test_an_encrypted_backup_is_resumed_and_checked_whole_with_the_key(
    nursery: trio.Nursery,
    tmp_path: Path,
    engine: EngineProcess,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = tmp_path / "key.txt"
    age_keygen(key)
    rig = await start_rig(
        nursery, tmp_path, engine, resume_window=WINDOW, recipients=[recipient_of(key)]
    )
    (rig.owner_dir / "big.bin").write_bytes(os.urandom(3 << 20))
    tool = Tool(rig, ResumingBridge(rig.mtp, rig=rig), monkeypatch)
    out = tmp_path / "backups"
    listing = await backup_listing(rig)
    name = next(n for n in listing if n.endswith(".mbak.age"))
    size = (await rig.mtp.object_info(listing[name])).compressed_size
    tool.bridge.pull_after = size // 2
    assert await tool.run("backup", str(out), "--identity", str(key)) == EXIT_FAILED
    [kept] = parts_in(out).values()

    await tool.bridge.replug()
    capsys.readouterr()
    assert await tool.run("backup", str(out), "--identity", str(key)) == EXIT_OK
    printed = capsys.readouterr().out
    assert f"resuming the download at byte {len(kept)} of {size}" in printed
    assert "SHA-256 digests match" in printed, "the kept half was decrypted and checked too"
    [[entry]] = chain_of(out)
    assert entry["archive"] == name
    assert (out / name).read_bytes() == await rig.mtp.get_object(listing[name])
    assert await trio.to_thread.run_sync(main, ["verify", "-i", str(key), str(out)]) == EXIT_OK


def test_the_resume_window_option_is_checked_at_start() -> None:
    assert Options.parse("br", {}).resume_window == 300
    assert Options.parse("br", {"resume_window": 0}).resume_window == 0
    assert Options.parse("br", {"resume_window": 12.5}).resume_window == 12.5
    for bad in (-1, True, float("inf"), "300"):
        with pytest.raises(ValueError, match=r"providers\.br\.resume_window: must be 0"):
            Options.parse("br", {"resume_window": bad})
