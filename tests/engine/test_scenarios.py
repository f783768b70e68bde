"""The 25 acceptance scenarios of engine/README.md, "Acceptance scenarios".

Every test cites the scenario it covers as "engine/README.md, Scenario N"; the
README states each one's setup, steps and expected outcome, and describes the
test device built here. The engine is a real process on a real Unix socket;
active owners are the example programs, launched by the engine from their
``process_name``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from engine.client import EngineClient, SyncEngineClient
from engine.daemon.config import EngineConfig
from engine.errors import (
    AccessDeniedError,
    ArgumentError,
    CorruptError,
    NotFoundError,
    NotReadyError,
    NotSupportedError,
)
from engine.mbak.tar import MemberStart, TarParser
from engine.types import (
    ActiveSettings,
    BackupIncType,
    BURMode,
    CommonSettings,
    DataOwnerStatus,
    PassiveSettings,
    TransferType,
    format_sid,
)

from .conftest import EngineProcess, start_engine, stop_engine
from .helpers import make_config, private, register, write_file

P1 = 0x0FA00001  # passive + public
P2 = 0x0FA00002  # passive, needbackup.xml
P3 = 0x0FA00003  # base_backup_only, no directory
P4 = 0x0FA00004  # delete_before_restore
P5 = 0x0FA00005  # system_backup (package)
A1, A2, A3 = 0x0AB7E57C, 0x0AB7E57E, 0x0AB7E58A  # active abtesters
A_PROXY_USER = 0x0AB7E57D  # names 0AB7E57C as its proxy
A_CENREP = 0x0AB7E57B  # names the Central Repository only (not an owner here)
A_BAD = 0x0AB7E58B  # invalid entries, process that does not exist

C, B, I_ = TransferType, BURMode, BackupIncType


def active_xml(extra: str = "", attrs: str = "") -> str:
    return (
        '<backup_registration version="1.0">'
        f'<active_backup process_name="abtester.py" {attrs}/>{extra}</backup_registration>'
    )


def build_device(cfg: EngineConfig) -> None:
    pd = register(
        cfg,
        P1,
        """<backup_registration version="1.0"><passive_backup>
        <include_directory name="\\"/></passive_backup>
        <public_backup><include_directory name="c:\\public\\0FA00001\\"/>
        <exclude name="c:\\public\\0FA00001\\skip.dat"/>
        <include_file name="relative.dat"/>
        <include_directory name="c:\\private\\0FA00002\\"/></public_backup>
        </backup_registration>""",
    )
    write_file(pd / "private_file1.dat", os.urandom(68841), 1_650_000_000_000_000_000)
    write_file(pd / "NoBackup" / "tmp.dat", b"x")
    (pd / "emptydir").mkdir()
    pub = cfg.drives["c"] / "public" / "0FA00001"
    write_file(pub / "public_file1.dat", b"1" * 100)
    write_file(pub / "public_file2.dat", b"2" * 200)
    write_file(pub / "skip.dat", b"s")
    for i in range(40):
        write_file(
            cfg.drives["c"] / "public" / "0FA00001" / "many" / f"{'n' * 40}{i:03d}.dat", b"m"
        )
    pd = register(
        cfg,
        P2,
        """<backup_registration><passive_backup base_backup_only="no">
        <include_file name="needbackup.xml"/></passive_backup></backup_registration>""",
    )
    write_file(pd / "needbackup.xml", b"<a/>" * 10, 1_600_000_000_000_000_000)
    write_file(pd / "notincluded.txt", b"no")
    register(
        cfg,
        P3,
        """<backup_registration><passive_backup base_backup_only="yes">
        <include_directory name="missing\\"/></passive_backup></backup_registration>""",
    )
    pd = register(
        cfg,
        P4,
        """<backup_registration><passive_backup delete_before_restore="yes">
        <include_directory name="\\"/></passive_backup></backup_registration>""",
    )
    write_file(pd / "keep.txt", b"keep")
    write_file(pd / "gone.txt", b"will be deleted before the backup")
    register(
        cfg, P5, "<backup_registration><system_backup/><passive_backup/></backup_registration>"
    )
    register(
        cfg,
        A1,
        active_xml('<restore requires_reboot="yes"/>', 'active_type="activeandproxy"'),
    )
    register(cfg, A2, active_xml("", 'requires_delay_to_prepare_data="yes"'))
    register(cfg, A3, active_xml('<proxy_data_manager SID="0x0AB7E58A"/>'))
    register(
        cfg,
        A_PROXY_USER,
        '<backup_registration><proxy_data_manager SID="0x0AB7E57C"/></backup_registration>',
    )
    register(cfg, A_CENREP, "<backup_registration><cenrep_backup/></backup_registration>")
    register(
        cfg,
        A_BAD,
        """<backup_registration>
        <active_backup process_name="does-not-exist.py" callback_delay_time="-5"/>
        <dbms_backup policy="nothex"/><proxy_data_manager SID="0xxxxx2BE9"/>
        </backup_registration>""",
    )


@pytest.fixture
def device(tmp_path: Path) -> Iterator[tuple[EngineConfig, EngineProcess, Path]]:
    cfg = make_config(tmp_path, callback_timeout=15.0, ready_timeout=15.0)
    build_device(cfg)
    logs = tmp_path / "ablog"
    logs.mkdir()
    ep = start_engine(cfg, tmp_path, {"ABTESTER_LOG": str(logs)})
    try:
        yield cfg, ep, logs
    finally:
        stop_engine(ep)


def sock(cfg: EngineConfig) -> str:
    return str(cfg.socket_path)


def members(data: bytes) -> list[str]:
    p = TarParser()
    return [ev.info.name for ev in p.feed(data) if isinstance(ev, MemberStart)]


async def fetch(c: EngineClient, sid: int, drive: str, t: TransferType) -> bytes:
    return b"".join([x async for x in c.request_data(sid, drive, t)])


async def wait_status(
    c: EngineClient, sids: list[int], timeout: float = 20
) -> dict[int, DataOwnerStatus]:
    """Poll until every owner in ``sids`` has a final status; fail naming the others.

    Owners confirm readiness in their own process and time, and the engine
    publishes no event for it: a poll with a deadline is the only wait that
    neither hangs nor guesses.
    """
    st: dict[int, DataOwnerStatus] = {}
    with trio.move_on_after(timeout):
        while True:
            st = await c.sid_status(sids)
            if all(s.is_final for s in st.values()):
                return st
            await trio.sleep(0.05)
    pending = {format_sid(s): v.name for s, v in st.items() if not v.is_final}
    raise AssertionError(f"owners not settled after {timeout} s: {pending}")


async def wait_log_line(
    logs: Path, sid: int, line: str, count: int = 1, timeout: float = 20
) -> None:
    """Wait until owner ``sid`` has logged ``line`` ``count`` times (its callbacks
    run in its own process, after the engine call that caused them returned)."""
    with trio.move_on_after(timeout):
        while log_lines(logs, sid).count(line) < count:
            await trio.sleep(0.05)
        return
    raise AssertionError(f"{format_sid(sid)} did not log {line!r} x{count} in {timeout} s")


def log_lines(logs: Path, sid: int) -> list[str]:
    p = logs / f"{format_sid(sid)}.log"
    return p.read_text().splitlines() if p.exists() else []


async def test_s01_list_owners_flags_and_access_denied(
    device: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """engine/README.md, Scenario 1: one entry per owner, correct flags; AccessDenied in
    backup mode."""
    cfg, _, _ = device
    async with EngineClient.connect(sock(cfg)) as c:
        owners = {o.sid: o for o in await c.list_data_owners()}
        assert P1 in owners and A1 in owners and A_BAD in owners
        assert owners[P1].common == CommonSettings.PASSIVE_BUR
        assert owners[P1].passive & PassiveSettings.HAS_PUBLIC_FILES
        assert owners[P1].passive & PassiveSettings.PASSIVE_SUPPORTS_INC
        assert owners[P3].passive == PassiveSettings.NONE
        assert owners[A1].common == CommonSettings.ACTIVE_BUR | CommonSettings.REQUIRES_REBOOT
        assert owners[A1].active == ActiveSettings.ACTIVE_SUPPORTS_INC
        assert (
            owners[A2].active
            == ActiveSettings.DELAY_TO_PREPARE_DATA | ActiveSettings.ACTIVE_SUPPORTS_INC
        )
        assert owners[A_PROXY_USER].common == CommonSettings.ACTIVE_BUR
        assert owners[A_PROXY_USER].active == ActiveSettings.NONE
        assert owners[P1].drives == ("c", "e")
        await c.set_bur_mode(B.BACKUP_FULL, I_.BASE, ["c"])
        with pytest.raises(AccessDeniedError):
            await c.list_data_owners()
        await c.set_normal()


async def test_s02_mode_matrix(device: tuple[EngineConfig, EngineProcess, Path]) -> None:
    """engine/README.md, Scenario 2: Normal/Backup/Restore transitions; illegal ones give
    Corrupt."""
    cfg, _, _ = device
    async with EngineClient.connect(sock(cfg)) as c:
        await c.list_data_owners()
        await c.set_bur_mode(B.NORMAL)
        await c.set_bur_mode(B.UNSET)
        await c.set_bur_mode(B.BACKUP_FULL, I_.BASE, ["c"])
        assert (await c.mode_info()).value == 0x102
        assert cfg.state_file is not None and "value=0x102" in cfg.state_file.read_text()
        with pytest.raises(CorruptError):
            await c.set_bur_mode(B.RESTORE_FULL, I_.BASE, ["c"])
        with pytest.raises(CorruptError):
            await c.set_bur_mode(B.BACKUP_PARTIAL, I_.BASE, ["c"])
        await c.set_normal()
        await c.set_bur_mode(B.RESTORE_FULL, I_.BASE, ["c"])
        await c.set_normal()
        assert (await c.mode_info()).mode == B.NORMAL


async def test_s03_s04_s05_partial_passive_base_and_increment(
    device: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """engine/README.md, Scenario 3, Scenario 4 and Scenario 5: partial base + snapshot,
    increment of a replaced file, restore of base + increment, and an increment
    without its base is Corrupt."""
    cfg, _, _ = device
    pd = cfg.drives["c"] / "private" / format_sid(P2)
    async with EngineClient.connect(sock(cfg)) as c:
        await c.list_data_owners()
        await c.set_partial_sids([P2])
        await c.set_bur_mode(B.BACKUP_PARTIAL, I_.BASE, ["c"])
        base = await fetch(c, P2, "c", C.PASSIVE_BASE)
        snap = await fetch(c, P2, "c", C.PASSIVE_SNAPSHOT)
        assert members(base) == ["needbackup.xml"]
        await c.set_normal()
        write_file(pd / "needbackup.xml", b"<bigger/>" * 100, 1_700_000_000_000_000_000)
        await c.list_data_owners()
        await c.set_partial_sids([P2])
        await c.set_bur_mode(B.BACKUP_PARTIAL, I_.INCREMENT, ["c"])
        await c.supply_data(P2, "c", C.PASSIVE_SNAPSHOT, snap)
        await c.all_snapshots_supplied()
        inc = await fetch(c, P2, "c", C.PASSIVE_INCREMENTAL)
        snap2 = await fetch(c, P2, "c", C.PASSIVE_SNAPSHOT)
        assert members(inc) == ["needbackup.xml"]
        await c.set_normal()
        (pd / "needbackup.xml").unlink()
        # Scenario 5: increment without the base stream.
        await c.list_data_owners()
        await c.set_partial_sids([P2])
        await c.set_bur_mode(B.RESTORE_PARTIAL, I_.INCREMENT, ["c"])
        await c.supply_data(P2, "c", C.PASSIVE_SNAPSHOT, snap2)
        with pytest.raises(CorruptError):
            await c.supply_data(P2, "c", C.PASSIVE_INCREMENTAL, inc)
        await c.set_normal()
        assert not (pd / "needbackup.xml").exists()
        # Scenario 3 + 4: restore base then increment.
        await c.list_data_owners()
        await c.set_partial_sids([P2])
        await c.set_bur_mode(B.RESTORE_PARTIAL, I_.INCREMENT, ["c"])
        await c.supply_data(P2, "c", C.PASSIVE_SNAPSHOT, snap2)
        await c.supply_data(P2, "c", C.PASSIVE_BASE, base)
        await c.supply_data(P2, "c", C.PASSIVE_INCREMENTAL, inc)
        assert not (pd / "needbackup.xml").exists()  # staged until Normal
        await c.set_normal()
        st = (pd / "needbackup.xml").stat()
        assert (pd / "needbackup.xml").read_bytes() == b"<bigger/>" * 100
        assert st.st_mtime_ns == 1_700_000_000_000_000_000


async def test_s06_full_backup_minus_excluded_and_incremental(
    device: tuple[EngineConfig, EngineProcess, Path], tmp_path: Path
) -> None:
    """engine/README.md, Scenario 6: full base and incremental backup/restore of all
    owners minus an exclude list, through the high-level archive API."""
    cfg, _, logs = device
    async with EngineClient.connect(sock(cfg)) as c:
        everyone = [o.sid for o in await c.list_data_owners()]
        excluded = {A_BAD, A_CENREP, P5}
        sids = [s for s in everyone if s not in excluded]
        prep = await c.prepare_backup(sids)
        full = prep.archive("full")
        data = b"".join([x async for x in c.read_archive(full.name)])
        snap = b"".join([x async for x in c.read_archive(prep.archive("snapshot").name)])
        assert len(data) == full.size
        await c.set_normal()
        pd1 = cfg.drives["c"] / "private" / format_sid(P1)
        write_file(pd1 / "later.dat", b"later")
        prep2 = await c.prepare_backup(sids, previous=snap)
        assert prep2.mode == "incremental"
        inc = b"".join([x async for x in c.read_archive(prep2.archive("full").name)])
        await c.set_normal()
        names = members(inc)
        assert f"owners/{format_sid(P1)}/c/files/later.dat" in names
        assert f"owners/{format_sid(P1)}/c/files/private_file1.dat" not in names
        assert f"owners/{format_sid(A1)}/c/active-incremental" in names

        async def chunks(b: bytes) -> Iterator[bytes]:  # type: ignore[misc]
            for i in range(0, len(b), 100_000):
                yield b[i : i + 100_000]

        (pd1 / "later.dat").unlink()
        r1 = await c.restore_archive(chunks(data))  # type: ignore[arg-type]
        assert r1.ok, r1
        r2 = await c.restore_archive(chunks(inc))  # type: ignore[arg-type]
        assert r2.ok, r2
        assert (pd1 / "later.dat").read_bytes() == b"later"
        assert any(line.startswith("init_restore_increment") for line in log_lines(logs, A1))


async def test_s07_unknown_sid_in_partial_list(
    device: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """engine/README.md, Scenario 7: an unknown SID in the partial list gives NotFound."""
    cfg, _, _ = device
    async with EngineClient.connect(sock(cfg)) as c:
        await c.list_data_owners()
        await c.set_partial_sids([0])
        with pytest.raises(NotFoundError):
            await c.set_bur_mode(B.BACKUP_PARTIAL, I_.BASE, ["c"])
        assert (await c.mode_info()).mode == B.NORMAL


async def test_s08_bad_drive_lists(device: tuple[EngineConfig, EngineProcess, Path]) -> None:
    """engine/README.md, Scenario 8: a missing drive or garbage characters: NotFound, no
    crash."""
    cfg, _, _ = device
    async with EngineClient.connect(sock(cfg)) as c:
        await c.list_data_owners()
        for drives in (["o"], ["A", "c", "$", "#"]):
            with pytest.raises(NotFoundError):
                await c.set_bur_mode(B.BACKUP_FULL, I_.BASE, drives)
        await c.set_bur_mode(B.BACKUP_FULL, I_.BASE, ["c"])
        with pytest.raises(NotFoundError):
            await fetch(c, P1, "e", C.PASSIVE_BASE)
        with pytest.raises(NotFoundError):
            await fetch(c, P1, "$", C.PASSIVE_BASE)
        await c.set_normal()


async def test_s09_no_files_in_scope_gives_empty_streams(
    device: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """engine/README.md, Scenario 9: base_backup_only with a missing directory: empty
    finished streams."""
    cfg, _, _ = device
    async with EngineClient.connect(sock(cfg)) as c:
        await c.list_data_owners()
        await c.set_bur_mode(B.BACKUP_FULL, I_.BASE, ["c"])
        data, fin = await c.request_data_chunk(P3, "c", C.PASSIVE_BASE)
        assert data == b"" and fin
        await c.set_normal()


async def test_s10_malformed_registrations_tolerated(
    device: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """engine/README.md, Scenario 10: invalid proxy SIDs, dbms policies, attributes:
    owner still listed; an unparsable file lists the owner with every flag off."""
    cfg, _, _ = device
    register(cfg, 0x0FA0000F, "<backup_registration><passive_backup>")  # not XML
    async with EngineClient.connect(sock(cfg)) as c:
        owners = {o.sid: o for o in await c.list_data_owners()}
        assert owners[A_BAD].common == CommonSettings.ACTIVE_BUR
        bad = owners[0x0FA0000F]
        assert (bad.common, bad.passive, bad.active) == (0, 0, 0)


async def test_s11_s21_s23_readonly_restore_and_private_file(
    device: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """engine/README.md, Scenario 11, Scenario 21 and Scenario 23: a read-only file is
    overwritten and keeps its mode; private_file1.dat comes back with size 68841;
    empty dirs survive; NoBackup and registration files never travel."""
    cfg, _, _ = device
    pd = cfg.drives["c"] / "private" / format_sid(P1)
    os.chmod(pd / "private_file1.dat", 0o444)
    async with EngineClient.connect(sock(cfg)) as c:
        await c.list_data_owners()
        await c.set_bur_mode(B.BACKUP_FULL, I_.BASE, ["c"])
        base = await fetch(c, P1, "c", C.PASSIVE_BASE)
        await c.set_normal()
        names = members(base)
        assert "emptydir" in names and "private_file1.dat" in names
        assert not [n for n in names if "NoBackup" in n or "backup_registration" in n]
        os.chmod(pd / "private_file1.dat", 0o644)
        (pd / "private_file1.dat").write_bytes(b"short")
        os.chmod(pd / "private_file1.dat", 0o444)
        os.rmdir(pd / "emptydir")
        await c.list_data_owners()
        await c.set_bur_mode(B.RESTORE_FULL, I_.BASE, ["c"])
        await c.supply_data(P1, "c", C.PASSIVE_BASE, base)
        await c.set_normal()
    st = (pd / "private_file1.dat").stat()
    assert st.st_size == 68841 and st.st_mode & 0o777 == 0o444
    assert (pd / "emptydir").is_dir()
    assert (pd / "NoBackup" / "tmp.dat").exists()


async def test_s12_s13_active_base_incremental_and_restore(
    device: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """engine/README.md, Scenario 12 and Scenario 13: launched owners go NotConnected ->
    NotReady -> Ready; base is 8000 'B' in <= 4096-byte sections; with a snapshot the
    increment is 'I'; restore calls base then increment initialisers, RestoreComplete
    at Normal."""
    cfg, _, logs = device
    async with EngineClient.connect(sock(cfg)) as c:
        await c.list_data_owners()
        await c.set_partial_sids([A1, A2, A3])
        with pytest.raises(AccessDeniedError):  # SIDStatus needs a BUR mode
            await c.sid_status([A1])
        await c.set_bur_mode(B.BACKUP_PARTIAL, I_.BASE, ["c"])
        first = (await c.sid_status([A1]))[A1]
        assert first in (DataOwnerStatus.NOT_CONNECTED, DataOwnerStatus.NOT_READY)
        st = await wait_status(c, [A1, A2, A3])
        assert set(st.values()) == {DataOwnerStatus.READY}
        await c.all_snapshots_supplied()
        bases = {}
        for sid in (A1, A2, A3):
            bases[sid] = await fetch(c, sid, "c", C.ACTIVE_BASE)
        snap = await fetch(c, A1, "c", C.ACTIVE_SNAPSHOT)
        await c.set_normal()
        assert bases[A1] == b"\0\0\0\0" + b"B" * 8000
        assert snap == b"abtester-snapshot-v1"
        await c.list_data_owners()
        await c.set_partial_sids([A1])
        await c.set_bur_mode(B.BACKUP_PARTIAL, I_.INCREMENT, ["c"])
        await wait_status(c, [A1])
        await c.supply_data(A1, "c", C.ACTIVE_SNAPSHOT, snap)
        await c.all_snapshots_supplied()
        inc = await fetch(c, A1, "c", C.ACTIVE_INCREMENTAL)
        assert inc == b"\0\0\0\0" + b"I" * 8000
        exits = log_lines(logs, A1).count("exit")
        await c.set_normal()
        await wait_log_line(logs, A1, "exit", exits + 1)  # launched owners leave after Normal
        await c.list_data_owners()
        await c.set_bur_mode(B.RESTORE_FULL, I_.INCREMENT, ["c"])
        await c.all_system_files_restored()
        await wait_status(c, [A1])
        await c.supply_data(A1, "c", C.ACTIVE_SNAPSHOT, snap)
        await c.supply_data(A1, "c", C.ACTIVE_BASE, bases[A1])
        await c.supply_data(A1, "c", C.ACTIVE_INCREMENTAL, inc)
        await c.set_normal()
    await wait_log_line(logs, A1, "restore_complete c")
    lines = log_lines(logs, A1)
    i_base = lines.index("init_restore_base c")
    assert lines[i_base + 1] == "restored 8000 B"
    assert lines[i_base + 2] == "init_restore_increment c"
    assert lines[i_base + 3] == "restored 8000 I"
    assert "restore_complete c" in lines[i_base:]
    assert "get_snapshot c" in lines


async def test_s14_proxy_framing(device: tuple[EngineConfig, EngineProcess, Path]) -> None:
    """engine/README.md, Scenario 14: a self-named proxy is ignored (count 0); a real
    proxy gives count 1 and a framed 'P' block; on restore the proxy gets exactly
    those bytes."""
    cfg, _, logs = device
    async with EngineClient.connect(sock(cfg)) as c:
        await c.list_data_owners()
        await c.set_bur_mode(B.BACKUP_FULL, I_.BASE, ["c"])
        await wait_status(c, [A3, A_PROXY_USER, A1])
        a3 = await fetch(c, A3, "c", C.ACTIVE_BASE)
        assert a3[:4] == b"\0\0\0\0"
        pu = await fetch(c, A_PROXY_USER, "c", C.ACTIVE_BASE)
        assert pu[:4] == (1).to_bytes(4, "little")
        assert b"P" * 4096 in pu and b"B" not in pu
        await c.set_normal()
        await c.list_data_owners()
        await c.set_bur_mode(B.RESTORE_FULL, I_.BASE, ["c"])
        await c.all_system_files_restored()
        # The proxy manager must be ready too: it receives the proxied bytes.
        await wait_status(c, [A_PROXY_USER, A1])
        await c.supply_data(A_PROXY_USER, "c", C.ACTIVE_BASE, pu)
        await c.set_normal()
    lines = log_lines(logs, A1)
    i = lines.index(f"init_restore_proxy {format_sid(A_PROXY_USER)} c")
    assert lines[i + 1] == "restored 8000 P"


async def test_s15_s16_proxy_only_and_unlaunchable_owner(
    device: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """engine/README.md, Scenario 15 and Scenario 16: an owner naming only the (absent)
    Central Repository gets NotFound instead of hanging; an owner whose process
    cannot start is skipped and the rest of the backup completes."""
    cfg, _, _ = device
    async with EngineClient.connect(sock(cfg)) as c:
        await c.list_data_owners()
        await c.set_partial_sids([A_CENREP, A_BAD, P2])
        await c.set_bur_mode(B.BACKUP_PARTIAL, I_.BASE, ["c"])
        st = await wait_status(c, [A_CENREP, P2])
        assert st[A_CENREP] == DataOwnerStatus.NOT_FOUND
        assert (await c.sid_status([A_BAD]))[A_BAD] == DataOwnerStatus.NOT_CONNECTED
        assert st[P2] == DataOwnerStatus.READY
        with pytest.raises(NotFoundError):
            await fetch(c, A_CENREP, "c", C.ACTIVE_BASE)
        assert members(await fetch(c, P2, "c", C.PASSIVE_BASE)) == ["needbackup.xml"]
        await c.set_normal()


async def test_s17_protocol_guards(device: tuple[EngineConfig, EngineProcess, Path]) -> None:
    """engine/README.md, Scenario 17: sequencing violations give Corrupt."""
    cfg, _, _ = device
    async with EngineClient.connect(sock(cfg)) as c:
        await c.list_data_owners()
        await c.set_bur_mode(B.BACKUP_FULL, I_.INCREMENT, ["c"])
        snap = await fetch(c, P1, "c", C.PASSIVE_SNAPSHOT)
        await fetch(c, P1, "c", C.PASSIVE_BASE)
        with pytest.raises(CorruptError):  # snapshot after data was requested
            await c.supply_data(P1, "c", C.PASSIVE_SNAPSHOT, snap)
        with pytest.raises(CorruptError):  # base requested twice
            await fetch(c, P1, "c", C.PASSIVE_BASE)
        with pytest.raises(CorruptError):  # incremental without a snapshot
            await fetch(c, P2, "c", C.PASSIVE_INCREMENTAL)
        with pytest.raises(CorruptError):  # passive snapshot to a base_backup_only owner
            await c.supply_data(P3, "c", C.PASSIVE_SNAPSHOT, snap)
        with pytest.raises(CorruptError):  # active snapshot to a non-incremental owner
            await c.supply_data(A_PROXY_USER, "c", C.ACTIVE_SNAPSHOT, b"x")
        await c.set_normal()


async def test_s18_interleaving_guard(device: tuple[EngineConfig, EngineProcess, Path]) -> None:
    """engine/README.md, Scenario 18: a second transfer on the same owner before the
    first is finished gives NotReady, and the first can still complete."""
    cfg, _, _ = device
    async with EngineClient.connect(sock(cfg)) as c:
        await c.list_data_owners()
        await c.set_bur_mode(B.BACKUP_FULL, I_.BASE, ["c"])
        first, fin = await c.request_data_chunk(P1, "c", C.PASSIVE_BASE, 1024)
        assert not fin
        with pytest.raises(NotReadyError):
            await c.request_data_chunk(P1, "c", C.PASSIVE_SNAPSHOT)
        rest = b"".join([x async for x in c.request_data(P1, "c", C.PASSIVE_BASE)])
        assert "private_file1.dat" in members(first + rest)
        await c.set_normal()


async def test_s19_s20_public_lists(device: tuple[EngineConfig, EngineProcess, Path]) -> None:
    """engine/README.md, Scenario 19 and Scenario 20: exact public list (excludes,
    private and relative paths never appear); the paged list equals the unpaged one."""
    cfg, _, _ = device
    pub = cfg.drives["c"] / "public" / "0FA00001"
    async with EngineClient.connect(sock(cfg)) as c:
        await c.list_data_owners()
        with pytest.raises(AccessDeniedError):
            await c.public_file_list("c", P1)
        await c.set_bur_mode(B.BACKUP_FULL, I_.BASE, ["c"])
        full = await c.public_file_list("c", P1)
        paths = [e.path for e in full]
        assert str(pub / "public_file1.dat") in paths and str(pub / "public_file2.dat") in paths
        assert str(pub / "skip.dat") not in paths
        assert not [p for p in paths if "/private/" in p or "relative" in p]
        assert len(paths) == 42
        page = await c.public_file_list_page("c", P1, 0, 1024)
        assert not page.finished and 0 < len(page.entries) < len(full)
        got = list(page.entries)
        while not page.finished:
            page = await c.public_file_list_page("c", P1, page.cursor, 1024)
            got += page.entries
        assert got == full
        raw = await c.raw_public_file_list("c", P1)
        assert (True, str(pub) + "/") in raw and (False, str(pub / "skip.dat")) in raw
        with pytest.raises(ArgumentError):
            await c.public_file_list("e", P1)
        await c.set_normal()


async def test_s22_sync_and_async_streams_identical(
    device: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """engine/README.md, Scenario 22: the sync wrapper and the async API give
    byte-identical streams."""
    cfg, _, _ = device

    def sync_side() -> bytes:
        import io

        with SyncEngineClient(sock(cfg)) as s:
            s.list_data_owners()
            s.set_bur_mode(B.BACKUP_FULL, I_.BASE, ["c"])
            buf = io.BytesIO()
            s.request_data_to(P1, "c", C.PASSIVE_BASE, buf)
            s.set_normal()
            return buf.getvalue()

    sync_data = await trio.to_thread.run_sync(sync_side)
    async with EngineClient.connect(sock(cfg)) as c:
        await c.list_data_owners()
        await c.set_bur_mode(B.BACKUP_FULL, I_.BASE, ["c"])
        async_data = await fetch(c, P1, "c", C.PASSIVE_BASE)
        await c.set_normal()
    assert sync_data == async_data and len(sync_data) > 68841


async def test_s24_delete_before_restore(device: tuple[EngineConfig, EngineProcess, Path]) -> None:
    """engine/README.md, Scenario 24: delete_before_restore wipes the private directory
    but keeps the registration files; files deleted before the snapshot are not
    resurrected."""
    cfg, _, _ = device
    pd = cfg.drives["c"] / "private" / format_sid(P4)
    async with EngineClient.connect(sock(cfg)) as c:
        await c.list_data_owners()
        await c.set_bur_mode(B.BACKUP_FULL, I_.BASE, ["c"])
        base = await fetch(c, P4, "c", C.PASSIVE_BASE)
        await c.set_normal()
        (pd / "gone.txt").unlink()
        await c.list_data_owners()
        await c.set_bur_mode(B.BACKUP_FULL, I_.BASE, ["c"])
        snap = await fetch(c, P4, "c", C.PASSIVE_SNAPSHOT)
        await c.set_normal()
        write_file(pd / "stray.txt", b"not in any backup")
        await c.list_data_owners()
        await c.set_bur_mode(B.RESTORE_FULL, I_.BASE, ["c"])
        await c.supply_data(P4, "c", C.PASSIVE_SNAPSHOT, snap)
        await c.supply_data(P4, "c", C.PASSIVE_BASE, base)
        await c.set_normal()
    assert sorted(os.listdir(pd)) == ["backup_registration.xml", "keep.txt"]


async def test_s25_system_backup_not_supported(
    device: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """engine/README.md, Scenario 25: package (system_backup) data is left out with a
    clear NotSupported; the owner is still listed with HasSystemFiles."""
    cfg, _, _ = device
    async with EngineClient.connect(sock(cfg)) as c:
        owners = {o.sid: o for o in await c.list_data_owners()}
        assert owners[P5].common & CommonSettings.HAS_SYSTEM_FILES
        await c.set_bur_mode(B.BACKUP_FULL, I_.BASE, ["c"])
        with pytest.raises(NotSupportedError):
            await c.request_data_chunk(P5, "c", C.SYSTEM_DATA)
        with pytest.raises(NotSupportedError):
            await c.supply_data_chunk(P5, "c", C.REGISTRATION, b"", True)
        await c.set_normal()
    _ = private
