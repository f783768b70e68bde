"""Library-level checks: registration, file lists, archive plan, ingest, staged restore."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from engine.daemon.archive import PlanCursor
from engine.daemon.core import Engine
from engine.daemon.operations import prepare_backup, read_plan_sync, restore_archive
from engine.daemon.registration import load_registration, normalise_passive_path
from engine.errors import CorruptError, ErrorCode
from engine.mbak.tar import TarParser, member_header
from engine.types import BackupIncType, BURMode

from .helpers import PASSIVE_ALL, make_config, make_tree, register, tree_state

SID = 0x0FA00001


def test_passive_path_rules() -> None:
    assert normalise_passive_path("\\", SID, True) == ""
    assert normalise_passive_path("data\\x.db", SID, False) == "data/x.db"
    assert normalise_passive_path("c:\\private\\0FA00001\\a\\", SID, True) == "a/"
    assert normalise_passive_path("c:\\other\\x", SID, False) is None
    assert normalise_passive_path("..\\..\\etc\\passwd", SID, False) is None
    assert normalise_passive_path("", SID, False) is None


def test_malformed_registration_tolerated(tmp_path: Path) -> None:
    """Scenario 10: invalid proxies, dbms policies, attributes and paths are ignored."""
    p = tmp_path / "backup_registration.xml"
    p.write_text(
        """<backup_registration version="1.0" test="x">
        <active_backup process_name="x.py" name2="y" callback_delay_time="abc"/>
        <proxy_data_manager SID="0x00000000"/>
        <proxy_data_manager SID="0xxxxx2BE9"/>
        <proxy_data_manager SID="0AB7E58A"/>
        <dbms_backup policy=""/><dbms_backup policy="zz"/>
        <passive_backup><include_file name="c:\\foreign\\x"/>
        <include_file name="ok.txt"/></passive_backup>
        <unknown/>
        </backup_registration>"""
    )
    reg = load_registration(0x0AB7E58A, [p])
    assert not reg.parse_failed
    assert reg.active and reg.proxies == [] and reg.dbms_policies == []
    assert reg.includes == ["ok.txt"]
    assert reg.callback_timeout == 200.0
    assert reg.problems


def test_tar_parser_refuses_links() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("evil")
        ti.type = tarfile.SYMTYPE
        ti.linkname = "/etc/passwd"
        tf.addfile(ti)
    p = TarParser()
    with pytest.raises(CorruptError, match="symbolic link"):
        list(p.feed(buf.getvalue()))


def test_member_header_roundtrips_ns_mtime() -> None:
    hdr = member_header("a/b", 3, 1_600_000_000_123_456_789, 0o640)
    p = TarParser()
    evs = list(p.feed(hdr + b"abc" + bytes(509) + bytes(1024)))
    info = evs[0].info  # type: ignore[union-attr]
    assert info.mtime_ns == 1_600_000_000_123_456_789 and info.mode == 0o640


async def test_archive_roundtrip_library(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    pd = register(cfg, SID, PASSIVE_ALL)
    make_tree(pd)
    before = tree_state(pd)
    eng = Engine(cfg)
    prep = await prepare_backup(eng)
    assert eng.mode.mode == BURMode.BACKUP_FULL and eng.mode.inc == BackupIncType.BASE
    full = prep.plans[prep.archives[0].name]
    out = tmp_path / "out.mbak"
    with open(out, "wb") as f:
        read_plan_sync(full, 0, full.size, f)
    assert out.stat().st_size == full.size
    # Random access: a range read alone equals the same range of the whole.
    whole = out.read_bytes()
    cur = PlanCursor(full, 5000)
    assert cur.read(20000) == whole[5000:25000]
    listing = subprocess.run(["tar", "-tvf", str(out)], capture_output=True, text=True, check=True)
    assert "manifest.json" in listing.stdout and "manifest-digests" in listing.stdout
    assert "cache/junk" not in listing.stdout and "NoBackup" not in listing.stdout
    await eng.set_bur_mode([], BURMode.NORMAL, BackupIncType.NO_BACKUP)
    prep.release()
    # Damage the device, then restore.
    (pd / "d0" / "s0" / "f0.bin").write_bytes(b"changed")
    (pd / "extra.txt").write_text("should go")
    os.chmod(pd / "ro.txt", 0o644)
    data = iter([whole[i : i + 7777] for i in range(0, len(whole), 7777)])

    async def receive() -> bytes | None:
        return next(data, None)

    res = await restore_archive(eng, receive)
    assert res.ok, res
    after = tree_state(pd)
    assert {k: v for k, v in after.items() if not k.startswith(("cache", "NoBackup"))} == {
        k: v for k, v in before.items() if not k.startswith(("cache", "NoBackup"))
    }
    assert (pd / "cache" / "junk").exists()
    assert eng.mode.mode == BURMode.NORMAL


async def test_truncated_and_corrupt_archive_lose_nothing(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    pd = register(cfg, SID, PASSIVE_ALL)
    make_tree(pd)
    eng = Engine(cfg)
    prep = await prepare_backup(eng)
    plan = prep.plans[prep.archives[0].name]
    buf = io.BytesIO()
    read_plan_sync(plan, 0, plan.size, buf)
    await eng.set_bur_mode([], BURMode.NORMAL, BackupIncType.NO_BACKUP)
    whole = buf.getvalue()
    (pd / "d1" / "s1" / "f1.bin").write_bytes(b"current")
    state = tree_state(pd)
    for bad, code in (
        (whole[: len(whole) // 2], ErrorCode.CORRUPT),
        (whole[:4000] + bytes([whole[4000] ^ 1]) + whole[4001:], ErrorCode.CORRUPT),
    ):
        chunks = iter([bad])

        async def receive() -> bytes | None:
            return next(chunks, None)  # noqa: B023

        res = await restore_archive(eng, receive)
        assert res.code == code, res
        assert tree_state(pd) == state
        assert not [n for n in os.listdir(pd.parent) if n.startswith(".mbak")]
