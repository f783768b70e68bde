"""The host tool's offline parts: verification, the chain file, progress output.

Archives come from a real ``backup-engine`` process (the same files a device
serves in Backup/), so verification is checked against what the engine really
writes, not against a hand-made imitation.  The USB side is covered in the VM
(tests/e2e/test_backup.py).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.daemon.config import EngineConfig
from engine.types import format_sid
from mtp_backup.backup import entry_for, pick
from mtp_backup.chain import CHAIN_FILE, CHAIN_FORMAT, Chain, ChainEntry, unique_path
from mtp_backup.cli import main
from mtp_backup.device import RemoteObject
from mtp_backup.errors import EXIT_CORRUPT, EXIT_FAILED, EXIT_OK, EXIT_USAGE, ToolError
from mtp_backup.progress import Progress, human_bytes
from mtp_backup.verify import ArchiveChecker, verify_archive
from tests.engine.conftest import EngineProcess, start_engine, stop_engine
from tests.engine.helpers import PASSIVE_ALL, make_config, make_tree, register

SID = 0x0BAC0001


@dataclass
class Backups:
    """A base backup and one increment against it, as the engine wrote them."""

    engine: EngineProcess
    owner_dir: Path
    base: Path
    base_snapshot: Path
    increment: Path
    increment_snapshot: Path


@pytest.fixture(scope="module")
def backups(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backups]:
    tmp = tmp_path_factory.mktemp("engine")
    cfg: EngineConfig = make_config(tmp, device_name="board")
    owner = register(cfg, SID, PASSIVE_ALL)
    make_tree(owner, files=12)
    proc = start_engine(cfg, tmp)
    try:
        out = tmp / "out"
        out.mkdir()
        proc.cli("-q", "backup", str(out / "base.mbak"))
        (owner / "added.txt").write_text("added after the base")
        os.unlink(owner / "d1" / "s1" / "f1.bin")
        proc.cli("-q", "backup", str(out / "inc.mbak"), "--incremental", str(out / "base.snapshot"))
        yield Backups(
            proc,
            owner,
            out / "base.mbak",
            out / "base.snapshot",
            out / "inc.mbak",
            out / "inc.snapshot",
        )
    finally:
        stop_engine(proc)


def copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def entry_of(path: Path, directory: Path, snapshot: Path | None = None) -> ChainEntry:
    summary = verify_archive(path)
    entry = entry_for(summary, path, directory)
    entry.snapshot = snapshot.name if snapshot else None
    return entry


# -- verify ----------------------------------------------------------------------------


def test_verify_accepts_an_engine_backup_and_reads_its_manifest(backups: Backups) -> None:
    s = verify_archive(backups.base)
    assert s.manifest["format"] == "mbak"
    assert s.manifest["device"] == "board"
    assert s.manifest["mode"] == "base" and s.manifest["kind"] == "full"
    assert s.based_on is None and len(s.backup_id) == 32
    assert s.size == backups.base.stat().st_size
    assert s.streams >= 2 and s.members > 12
    assert not s.changed
    assert any(format_sid(SID) in line for line in s.describe())


def test_verify_links_an_increment_to_its_base(backups: Backups) -> None:
    base = verify_archive(backups.base)
    inc = verify_archive(backups.increment)
    snap = verify_archive(backups.increment_snapshot)
    assert inc.manifest["mode"] == "incremental"
    assert inc.based_on == base.backup_id
    assert snap.manifest["kind"] == "snapshot" and snap.backup_id == inc.backup_id


def test_verify_command_prints_a_summary_and_exits_0(
    backups: Backups, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(backups.base)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "OK" in out and "SHA-256 digests match" in out and format_sid(SID) in out


def _corrupt(path: Path, dst: Path, at: int) -> Path:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    dst.write_bytes(bytes(data))
    return dst


def content_offset(path: Path, suffix: str) -> int:
    """Where a file member's content starts (a byte flipped there breaks only a digest)."""
    with tarfile.open(path) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(suffix) and m.size > 0)
        return member.offset_data + member.size // 2


@pytest.mark.parametrize(
    "damage",
    ["flipped content byte", "truncated", "trailer digest edited", "not a tar", "empty"],
)
def test_verify_refuses_a_damaged_archive(
    backups: Backups, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    good = backups.base.read_bytes()
    bad = tmp_path / "bad.mbak"
    if damage == "flipped content byte":
        _corrupt(backups.base, bad, content_offset(backups.base, ".bin"))
    elif damage == "truncated":
        bad.write_bytes(good[: len(good) // 2])
    elif damage == "trailer digest edited":
        i = good.rindex(b"000000 ") + 7
        bad.write_bytes(good[:i] + (b"0" if good[i : i + 1] != b"0" else b"1") + good[i + 1 :])
    elif damage == "not a tar":
        bad.write_bytes(b"hello world\n" * 100)
    else:
        bad.write_bytes(b"")
    assert main(["verify", str(bad)]) == EXIT_CORRUPT
    err = capsys.readouterr().err
    assert "NOT a valid backup" in err
    if damage == "flipped content byte":
        assert "SHA-256" in err
    if damage == "truncated":
        assert "truncated" in err


def test_verify_refuses_a_member_that_climbs_out(backups: Backups, tmp_path: Path) -> None:
    """Same structure as the device would refuse: checked before any digest."""
    out = io.BytesIO()
    with (
        tarfile.open(backups.base) as src,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst,
    ):
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if member.isfile() and member.name.endswith("f0.bin"):
                member.name = member.name.rsplit("/files/", 1)[0] + "/files/../../evil.bin"
            dst.addfile(member, data)
    evil = tmp_path / "evil.mbak"
    evil.write_bytes(out.getvalue())
    with pytest.raises(ToolError) as err:
        verify_archive(evil)
    assert err.value.exit_code == EXIT_CORRUPT
    assert "evil.bin" in str(err.value) or "not in the manifest" in str(err.value)


def test_checker_gives_the_same_verdict_in_any_chunking(backups: Backups) -> None:
    """Downloads arrive in USB-sized pieces; the verdict must not depend on them."""
    data = backups.base.read_bytes()
    for size in (1, 511, 4096, 262144):
        checker = ArchiveChecker(backups.base)
        for i in range(0, len(data), size):
            checker.feed(data[i : i + size])
        summary = checker.finish()
        assert summary.size == len(data)
        assert summary.backup_id == verify_archive(backups.base).backup_id


# -- chain ---------------------------------------------------------------------------------


def test_chain_keeps_base_then_increments_in_order(backups: Backups, tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir()
    base = entry_of(copy(backups.base, d / "base.mbak"), d, backups.base_snapshot)
    inc = entry_of(copy(backups.increment, d / "inc.mbak"), d, backups.increment_snapshot)
    chain = Chain()
    chain.add(base)
    assert chain.latest_snapshot() is base
    chain.add(inc)
    assert chain.latest_snapshot() is inc
    assert [e.archive for e in chain.restore_order()] == ["base.mbak", "inc.mbak"]
    chain.save(d)
    loaded = Chain.load(d)
    assert loaded == chain
    raw = json.loads((d / CHAIN_FILE).read_text())
    assert raw["format"] == CHAIN_FORMAT and raw["chains"][0][1]["based_on"] == base.backup_id
    assert raw["chains"][0][0]["sha256"] == verify_archive(backups.base).sha256


def test_an_increment_of_another_backup_is_refused(backups: Backups, tmp_path: Path) -> None:
    inc = entry_of(backups.increment, backups.increment.parent)
    chain = Chain()
    with pytest.raises(ToolError, match="needs a base"):
        chain.add(inc)
    other = entry_of(backups.base, backups.base.parent)
    other.backup_id = "f" * 32
    chain.add(other)
    with pytest.raises(ToolError, match="based on"):
        chain.add(inc)
    assert len(chain.current) == 1


def test_a_new_base_starts_a_new_chain(backups: Backups) -> None:
    d = backups.base.parent
    chain = Chain()
    chain.add(entry_of(backups.base, d, backups.base_snapshot))
    chain.add(entry_of(backups.increment, d, backups.increment_snapshot))
    chain.add(entry_of(backups.base, d, backups.base_snapshot))
    assert len(chain.chains) == 2
    assert [e.archive for e in chain.restore_order()] == ["base.mbak"]


def test_owner_backups_are_kept_apart_from_the_chain(backups: Backups) -> None:
    entry = entry_of(backups.base, backups.base.parent)
    entry.kind, entry.sid = "owner", format_sid(SID)
    chain = Chain()
    chain.add(entry)
    assert chain.owners == [entry] and chain.chains == []
    with pytest.raises(ToolError, match="full backup first"):
        chain.latest_snapshot()


def test_a_broken_chain_file_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    assert Chain.load(tmp_path) == Chain()
    (tmp_path / CHAIN_FILE).write_text("{not json")
    with pytest.raises(ToolError, match="unreadable"):
        Chain.load(tmp_path)
    (tmp_path / CHAIN_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ToolError, match="not an mtp-backup chain"):
        Chain.load(tmp_path)


def test_verify_of_a_directory_checks_every_archive_and_the_links(
    backups: Backups, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "dir"
    d.mkdir()
    for src in (
        backups.base,
        backups.base_snapshot,
        backups.increment,
        backups.increment_snapshot,
    ):
        copy(src, d / src.name)
    chain = Chain(device="board")
    chain.add(entry_of(d / "base.mbak", d, d / "base.snapshot"))
    chain.add(entry_of(d / "inc.mbak", d, d / "inc.snapshot"))
    chain.save(d)
    assert main(["verify", str(d)]) == EXIT_OK
    assert capsys.readouterr().out.count(": OK") == 4
    _corrupt(backups.increment, d / "inc.mbak", content_offset(backups.increment, "added.txt"))
    assert main(["verify", str(d)]) == EXIT_CORRUPT
    assert "inc.mbak: NOT a valid backup" in capsys.readouterr().err


def test_incremental_without_a_base_fails_before_touching_usb(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backup", str(tmp_path / "new"), "--incremental"]) == EXIT_FAILED
    assert "run a full backup first" in capsys.readouterr().err


def test_restore_refuses_a_corrupt_file_before_sending_it(
    backups: Backups, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "cut.mbak"
    bad.write_bytes(backups.base.read_bytes()[:3000])
    assert main(["restore", str(bad)]) == EXIT_CORRUPT
    assert "NOT a valid backup" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "missing.mbak")]) == EXIT_FAILED


def test_bad_owner_sid_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backup", str(tmp_path), "--owner", "xyz"]) == EXIT_USAGE
    assert "not a SID" in capsys.readouterr().err


def test_unique_path_never_overwrites(tmp_path: Path) -> None:
    assert unique_path(tmp_path, "b-1.mbak") == tmp_path / "b-1.mbak"
    (tmp_path / "b.mbak").write_text("x")
    (tmp_path / "b-1.mbak").write_text("x")
    assert unique_path(tmp_path, "b.mbak") == tmp_path / "b-2.mbak"


def test_pick_takes_what_the_device_made_not_what_the_host_dropped() -> None:
    listing = {
        "prev.snapshot": RemoteObject(1, "prev.snapshot", 10, False, False),
        "old.snapshot": RemoteObject(2, "old.snapshot", 10, False, False),
        "b-1.snapshot": RemoteObject(3, "b-1.snapshot", 10, True, False),
        "b-1.mbak": RemoteObject(4, "b-1.mbak", 99, True, False),
        "owners": RemoteObject(5, "owners", 0, True, True),
    }
    assert pick(listing, ".snapshot").handle == 3
    assert pick(listing, ".mbak").handle == 4
    with pytest.raises(ToolError, match="expected one"):
        pick({}, ".mbak")


# -- progress ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_draws_a_bar_with_speed_and_eta_on_a_tty() -> None:
    err, out, clock = io.StringIO(), io.StringIO(), FakeClock()
    p = Progress(
        "get x.mbak", 10_000_000, stream=err, summary=out, tty=True, clock=clock, redraw_every=0
    )
    clock.now += 2.0
    p.update(4_000_000)
    bar = err.getvalue().rsplit("\r", 1)[-1]
    assert bar.startswith("get x.mbak:") and " 40%|" in bar
    assert "4.00M/10.0M" in bar and "B/s]" in bar and "<" in bar  # elapsed<remaining
    clock.now += 3.0
    p.update(10_000_000)
    assert " 100%|" in err.getvalue().rsplit("\r", 1)[-1]
    p.finish()
    assert err.getvalue().rsplit("\r", 2)[-2].strip() == "", "the bar is cleared at the end"
    assert "10.0 MB (10000000 bytes) in 5.0 s, 2.00 MB/s" in out.getvalue()


def test_a_failed_transfer_clears_its_bar_and_prints_no_summary() -> None:
    err, out = io.StringIO(), io.StringIO()
    with (
        pytest.raises(OSError),
        Progress("send y.mbak", 1000, stream=err, summary=out, tty=True, redraw_every=0) as p,
    ):
        p.update(300)
        raise OSError("cable pulled")
    assert " 30%|" in err.getvalue()
    assert err.getvalue().rsplit("\r", 2)[-2].strip() == ""
    assert out.getvalue() == ""


def test_progress_prints_only_a_summary_when_not_a_tty() -> None:
    err, out, clock = io.StringIO(), io.StringIO(), FakeClock()
    p = Progress("send y.mbak", 1000, stream=err, summary=out, tty=False, clock=clock)
    for done in range(0, 1001, 100):
        p.update(done)
    clock.now += 1
    p.finish("-> Restore/")
    assert err.getvalue() == ""
    assert out.getvalue().count("\n") == 1 and "-> Restore/" in out.getvalue()


def test_human_units() -> None:
    assert human_bytes(999) == "999 B"
    assert human_bytes(1_500_000) == "1.5 MB"
