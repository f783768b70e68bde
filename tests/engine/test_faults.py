"""Bad input and faults: each gets a clear error, the engine returns to Normal, and
no owner's data is lost or half-restored."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest
import trio

from engine.client import EngineClient
from engine.daemon.config import EngineConfig
from engine.errors import (
    AccessDeniedError,
    CorruptError,
    ErrorCode,
    GeneralError,
    InUseError,
    TimedOutError,
)
from engine.mbak.snapshot import MAGIC as SNAPSHOT_MAGIC
from engine.types import BackupIncType, BURMode, DataOwnerStatus, TransferType, format_sid

from .conftest import EngineProcess, start_engine, stop_engine
from .helpers import PASSIVE_ALL, make_config, make_tree, register, tree_state, wait_for_status

SID = 0x0FA00020
HANG, CRASH, GARB = 0x0AB7E600, 0x0AB7E601, 0x0AB7E602


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[EngineConfig, EngineProcess, Path]]:
    cfg = make_config(tmp_path, callback_timeout=5.0, ready_timeout=10.0)
    pd = register(cfg, SID, PASSIVE_ALL)
    make_tree(pd)
    for sid in (HANG, CRASH, GARB):
        register(
            cfg,
            sid,
            '<backup_registration><active_backup process_name="abtester.py" '
            'callback_delay_time="1000000"/></backup_registration>',
        )
    logs = tmp_path / "ablog"
    logs.mkdir()
    ep = start_engine(
        cfg,
        tmp_path,
        {
            "ABTESTER_LOG": str(logs),
            f"ABTESTER_FAULT_{format_sid(HANG)}": "hang",
            f"ABTESTER_FAULT_{format_sid(CRASH)}": "crash",
            f"ABTESTER_FAULT_{format_sid(GARB)}": "garbage",
        },
    )
    try:
        yield cfg, ep, logs
    finally:
        stop_engine(ep)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 65536):
        yield data[i : i + 65536]


async def _mode(cfg: EngineConfig) -> BURMode:
    async with EngineClient.connect(cfg.socket_path, role="observer") as o:
        return (await o.mode_info()).mode


async def test_client_disconnect_returns_to_normal(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    cfg, _, _ = dev
    async with EngineClient.connect(cfg.socket_path, role="observer") as obs:
        async with EngineClient.connect(cfg.socket_path) as c:
            await c.list_data_owners()
            await c.set_bur_mode(BURMode.BACKUP_FULL, BackupIncType.BASE, ["c"])
            _, fin = await c.request_data_chunk(SID, "c", TransferType.PASSIVE_BASE, 1000)
            assert not fin
            assert obs.mode.mode == BURMode.BACKUP_FULL
        with trio.fail_after(5):
            while obs.mode.mode != BURMode.NORMAL:
                await obs.mode_changed.wait()
    assert cfg.state_file is not None and "mode=NORMAL" in cfg.state_file.read_text()


async def test_second_client_is_refused(dev: tuple[EngineConfig, EngineProcess, Path]) -> None:
    cfg, _, _ = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        await c.list_data_owners()
        with pytest.raises(InUseError):
            async with EngineClient.connect(cfg.socket_path) as c2:
                await c2.list_data_owners()
        await c.list_data_owners()


async def test_hanging_owner_times_out_and_is_terminated(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    cfg, _, logs = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        await c.list_data_owners()
        await c.set_partial_sids([HANG])
        await c.set_bur_mode(BURMode.BACKUP_PARTIAL, BackupIncType.BASE, ["c"])
        await wait_for_status(c, HANG, DataOwnerStatus.READY)
        with pytest.raises(TimedOutError):
            async for _ in c.request_data(HANG, "c", TransferType.ACTIVE_BASE):
                pass
        assert (await c.sid_status([HANG]))[HANG] == DataOwnerStatus.FAILED
        await c.set_normal()
    # A hung owner cannot run its terminate callback; it is marked Failed instead.
    assert "init_backup" in (logs / f"{format_sid(HANG)}.log").read_text()


async def test_crashing_owner_fails_its_transfer(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """An owner that exits mid-backup: its transfer fails, the others carry on."""
    cfg, ep, _ = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        await c.list_data_owners()
        await c.set_partial_sids([CRASH, SID])
        await c.set_bur_mode(BURMode.BACKUP_PARTIAL, BackupIncType.BASE, ["c"])
        await wait_for_status(c, CRASH, DataOwnerStatus.READY)
        with pytest.raises(GeneralError, match="connection lost"):
            async for _ in c.request_data(CRASH, "c", TransferType.ACTIVE_BASE):
                pass
        assert (await c.sid_status([CRASH]))[CRASH] == DataOwnerStatus.NOT_CONNECTED
        await _passive_owner_still_backs_up(c)
        await c.set_normal()
    assert ep.proc.poll() is None


async def test_garbage_from_an_owner_is_refused_as_corrupt(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """An owner that answers a data request with bytes that are no frames.

    The engine names the owner and the corruption, drops the connection (the
    owner is no longer ready) and goes on serving the other owners.
    """
    cfg, ep, logs = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        await c.list_data_owners()
        await c.set_partial_sids([GARB, SID])
        await c.set_bur_mode(BURMode.BACKUP_PARTIAL, BackupIncType.BASE, ["c"])
        await wait_for_status(c, GARB, DataOwnerStatus.READY)
        with pytest.raises(CorruptError) as refused:
            async for _ in c.request_data(GARB, "c", TransferType.ACTIVE_BASE):
                pass
        assert "garbage c" in (logs / f"{format_sid(GARB)}.log").read_text()
        assert str(refused.value) == (
            f"corrupt data from owner {format_sid(GARB)} while it was sending data: "
            "bad frame header"
        )
        assert (await c.sid_status([GARB]))[GARB] == DataOwnerStatus.NOT_CONNECTED
        await _passive_owner_still_backs_up(c)
        await c.set_normal()
    assert ep.proc.poll() is None


async def _passive_owner_still_backs_up(c: EngineClient) -> None:
    data = b"".join([x async for x in c.request_data(SID, "c", TransferType.PASSIVE_BASE)])
    assert len(data) > 70000


def _hostile(cfg: EngineConfig, name: str, kind: str) -> bytes:
    manifest = {
        "format": "mbak",
        "format_version": 1,
        "mode": "base",
        "kind": "full",
        "owners": [],
        "streams": [
            {
                "index": 0,
                "sid": format_sid(SID),
                "drive": "c",
                "type": "passive-snapshot",
                "member": f"owners/{format_sid(SID)}/c/passive-snapshot",
                "size": 1024,
                "entries": 1,
                "content_bytes": len(SNAPSHOT_MAGIC),
            },
            {
                "index": 1,
                "sid": format_sid(SID),
                "drive": "c",
                "type": "passive-base",
                "member": f"owners/{format_sid(SID)}/c/files",
                "size": 1024,
                "entries": 1,
                "content_bytes": 0,
            },
        ],
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        m = json.dumps(manifest).encode()
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(m)
        tf.addfile(ti, io.BytesIO(m))
        ti = tarfile.TarInfo(f"owners/{format_sid(SID)}/c/passive-snapshot")
        ti.size = len(SNAPSHOT_MAGIC)  # an empty file list: one 1024-byte member
        tf.addfile(ti, io.BytesIO(SNAPSHOT_MAGIC))
        ti = tarfile.TarInfo(f"owners/{format_sid(SID)}/c/files/{name}")
        if kind == "symlink":
            ti.type = tarfile.SYMTYPE
            ti.linkname = "/etc/passwd"
        elif kind == "device":
            ti.type = tarfile.CHRTYPE
        tf.addfile(ti, io.BytesIO(b""))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "kind"),
    [("../../../escape", "file"), ("link", "symlink"), ("dev", "device"), ("/abs/x", "file")],
)
async def test_hostile_archives_refused(
    dev: tuple[EngineConfig, EngineProcess, Path], name: str, kind: str
) -> None:
    cfg, _, _ = dev
    pd = cfg.drives["c"] / "private" / format_sid(SID)
    before = tree_state(pd)
    async with EngineClient.connect(cfg.socket_path) as c:
        res = await c.restore_archive(_chunks(_hostile(cfg, name, kind)))
    assert res.code == ErrorCode.CORRUPT and res.reason
    assert tree_state(pd) == before
    assert not (cfg.drives["c"] / "escape").exists()
    assert not [n for n in os.listdir(pd.parent) if n.startswith(".mbak")]
    assert await _mode(cfg) == BURMode.NORMAL


async def test_unknown_owner_and_truncation_refused(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    cfg, _, _ = dev
    pd = cfg.drives["c"] / "private" / format_sid(SID)
    async with EngineClient.connect(cfg.socket_path) as c:
        prep = await c.prepare_backup([SID])
        data = b"".join([x async for x in c.read_archive(prep.archive("full").name)])
        await c.set_normal()
        before = tree_state(pd)
        (pd / "d0" / "s0" / "f0.bin").write_bytes(b"current")
        now = tree_state(pd)
        res = await c.restore_archive(_chunks(data[: len(data) - 3000]))
        assert res.code == ErrorCode.CORRUPT and "truncated" in res.reason
        assert tree_state(pd) == now
        # The same archive on a device that does not know the owner.
        for f in pd.glob("backup_registration*.xml"):
            f.rename(f.with_suffix(".off"))
        res = await c.restore_archive(_chunks(data))
        assert res.code == ErrorCode.NOT_FOUND and format_sid(SID) in res.reason
        for f in pd.glob("*.off"):
            f.rename(f.with_suffix(".xml"))
        res = await c.restore_archive(_chunks(data))
        assert res.ok, res
        assert tree_state(pd) == {k: v for k, v in before.items()} | {
            k: v for k, v in tree_state(pd).items() if k.startswith(("cache", "NoBackup"))
        }


def test_peer_credentials_enforced(dev: tuple[EngineConfig, EngineProcess, Path]) -> None:
    """A non-configured uid cannot be a backup client nor act for someone else's SID."""
    cfg, _, _ = dev
    os.chmod(cfg.socket_path, 0o666)
    p = cfg.socket_path.parent
    while p != Path("/tmp") and p != p.parent:
        os.chmod(p, os.stat(p).st_mode | 0o011)
        p = p.parent
    results = {
        role: _connect_as_nobody(cfg.socket_path, role, extra)
        for role, extra in (("client", {}), ("owner", {"sid": SID}))
    }
    assert results == {"client": "denied", "owner": "denied"}


async def test_disk_full_during_restore(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        cfg = make_config(tmp_path, drives={"c": small})
        (small / "private").mkdir()
        pd = register(cfg, SID, PASSIVE_ALL)
        (pd / "a.bin").write_bytes(os.urandom(700_000))
        ep = start_engine(cfg, tmp_path)
        try:
            async with EngineClient.connect(cfg.socket_path) as c:
                prep = await c.prepare_backup()
                data = b"".join([x async for x in c.read_archive(prep.archive("full").name)])
                await c.set_normal()
                (pd / "b.bin").write_bytes(os.urandom(1_000_000))
                before = tree_state(pd)
                res = await c.restore_archive(_chunks(data))
            assert res.code == ErrorCode.DISK_FULL, res
            assert tree_state(pd) == before
            assert not [n for n in os.listdir(pd.parent) if n.startswith(".mbak")]
        finally:
            stop_engine(ep)
    finally:
        subprocess.run(["umount", str(small)])


def _connect_as_nobody(path: Path, role: str, extra: Mapping[str, object]) -> str:
    """Connect from a forked child that dropped to uid/gid 65534.

    Forking (rather than running a new interpreter as that user) keeps the
    test independent of whether the interpreter's install is readable by it.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the test
        status = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            outcome: list[str] = []

            async def attempt() -> None:
                try:
                    async with EngineClient.connect(path, role=role, **extra):
                        outcome.append("connected")
                except AccessDeniedError:
                    outcome.append("denied")

            thread = threading.Thread(target=trio.run, args=(attempt,))
            thread.start()
            thread.join(30)
            os.write(w, (outcome[0] if outcome else "no answer").encode())
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r) as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    return answer
