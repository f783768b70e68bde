"""The compact archive plan gives the same archive bytes, at any offset, as ever.

A plan keeps its file members as packed tables and builds each header when a
reader reaches it, so these tests pin the bytes themselves: a varied tree
(UTF-8 names, names that need pax records, a name that is not UTF-8, empty files,
directories, modes, mtimes with and without nanoseconds) must give exactly the
archive the engine has always produced, whose SHA-256 is recorded below, and every
stream must equal what :mod:`tarfile` writes for the same members.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import tarfile
from pathlib import Path

import pytest
import trio

from engine.daemon.archive import ArchivePlan, PlanBuilder, PlanCursor
from engine.daemon.filelist import passive_file_list
from engine.daemon.streams import PassiveSource
from engine.errors import CorruptError
from engine.mbak.manifest import TRAILER_LINE
from engine.mbak.snapshot import FileRecord, Snapshot, write_snapshot
from engine.mbak.tar import BLOCK, member_header, member_header_size
from engine.types import TransferType

MTIME_NS = 1_700_000_000_123_456_789
SID = 0x0FA00001

ARCHIVE_SHA256 = "e3c1a48678192aca926327add8a0c1badfeee8ef0c0e0fcecafbf0d1a1a73f0e"
"""SHA-256 of the whole archive of :func:`varied_tree`, as the engine wrote it
before plans were compact (tarfile-built headers, one object per member)."""

MANIFEST_EXTRA: dict[str, object] = {
    "engine": {"name": "backup-engine", "version": "pinned"},
    "mode": "base",
    "kind": "full",
}


def _file(path: Path, data: bytes, mode: int, mtime_ns: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def varied_tree(root: Path) -> None:
    """Names and metadata that exercise every header path the archive can take."""
    rnd = random.Random(7)
    _file(root / "plain.txt", b"hello\n", 0o644, 1_600_000_000_000_000_000)
    _file(root / "empty", b"", 0o600, 1_600_000_000_000_000_001)
    _file(root / "exactly-a-block", rnd.randbytes(BLOCK), 0o640, MTIME_NS)
    _file(root / "odd-size", rnd.randbytes(3 * BLOCK + 17), 0o755, MTIME_NS + 1)
    _file(root / "Grüße" / "naïve café.txt", "ünïcödé\n".encode(), 0o644, 1_650_000_000_500_000_000)
    _file(root / "日本語" / "ファイル.bin", rnd.randbytes(1000), 0o600, 1_650_000_000_999_999_999)
    long_dir = root / ("d" * 90) / ("e" * 90)
    _file(long_dir / ("f" * 120), rnd.randbytes(700), 0o644, MTIME_NS)
    _file(root / ("x" * 99), b"just fits\n", 0o644, 1_600_000_000_000_000_000)
    _file(root / ("x" * 101), b"just does not\n", 0o644, 1_600_000_000_000_000_000)
    _file(root / os.fsdecode(b"bad-\xff-utf8"), b"raw bytes name\n", 0o644, MTIME_NS)
    (root / "empty-dir").mkdir()
    # Directory modes and mtimes are set last, whatever the umask and the files did.
    for d, mode in (("empty-dir", 0o750), ("Grüße", 0o755), ("日本語", 0o700)):
        os.chmod(root / d, mode)
        os.utime(root / d, ns=(MTIME_NS + 5, MTIME_NS + 5))
    for d in (long_dir, long_dir.parent):
        os.chmod(d, 0o755)
        os.utime(d, ns=(MTIME_NS, MTIME_NS))
    os.utime(root, ns=(MTIME_NS, MTIME_NS))


def _plan(root: Path) -> ArchivePlan:
    """A full archive and, alongside it, an owner archive sharing the same listing."""
    recs = passive_file_list(root, [""], [])
    whole = PlanBuilder("full", MTIME_NS)
    owner = PlanBuilder("owner", MTIME_NS)
    snap = root.parent / "snapshot-spool"
    snap.write_bytes(b"MBSNAP\x01\n" + b"s" * 1234)
    for b in (whole, owner):
        b.begin_stream(SID, "c", TransferType.PASSIVE_SNAPSHOT)
        b.add_spooled(snap)
        b.end_stream()
        b.begin_stream(SID, "c", TransferType.PASSIVE_BASE)
        b.add_files(root, recs)
        b.end_stream()
    owner.finish(dict(MANIFEST_EXTRA))
    return whole.finish(dict(MANIFEST_EXTRA))


def _read_all(plan: ArchivePlan, offset: int = 0, step: int = 1 << 20) -> bytes:
    cur = PlanCursor(plan, offset)
    out = bytearray()
    try:
        while chunk := cur.read(step):
            out += chunk
    finally:
        cur.close()
    return bytes(out)


def _tarfile_header(name: str, size: int, mtime_ns: int, mode: int, is_dir: bool) -> bytes:
    """The reference: the header :mod:`tarfile` writes for one member."""
    ti = tarfile.TarInfo(name.rstrip("/") if is_dir else name)
    ti.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    ti.size = 0 if is_dir else size
    ti.mode = mode & 0o7777
    sec, frac = divmod(mtime_ns, 1_000_000_000)
    ti.mtime = sec
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    if frac:
        ti.pax_headers = {"mtime": f"{sec}.{frac:09d}"}
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _tarfile_stream(root: Path, prefix: str, recs: list[FileRecord]) -> bytes:
    out = bytearray()
    for r in recs:
        out += _tarfile_header(prefix + r.path, r.size, r.mtime_ns, r.mode, r.is_dir)
        if not r.is_dir:
            data = (root / r.path).read_bytes()
            out += data + bytes(-len(data) % BLOCK)
    return bytes(out)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    root.mkdir()
    varied_tree(root)
    return root


def test_archive_bytes_are_those_the_engine_always_wrote(tree: Path) -> None:
    plan = _plan(tree)
    data = _read_all(plan)
    assert len(data) == plan.size
    assert hashlib.sha256(data).hexdigest() == ARCHIVE_SHA256


def test_file_stream_is_what_tarfile_writes(tree: Path) -> None:
    plan = _plan(tree)
    recs = passive_file_list(tree, [""], [])
    stream = plan.streams[1]
    data = _read_all(plan)[stream.start : stream.end]
    assert data == _tarfile_stream(tree, f"{stream.member}/", recs)


def test_any_offset_and_chunking_give_the_same_bytes(tree: Path) -> None:
    plan = _plan(tree)
    whole = _read_all(plan)
    rnd = random.Random(3)
    for _ in range(60):
        off = rnd.randrange(plan.size + 1)
        step = rnd.choice([1, 7, BLOCK, 1000, 4096, 1 << 20])
        cur = PlanCursor(plan, off)
        try:
            got = cur.read(step) + cur.read(rnd.randrange(1, 5000))
        finally:
            cur.close()
        assert got == whole[off : off + len(got)], (off, step)
        assert len(got) == min(plan.size - off, len(got))
    assert _read_all(plan, 0, 333) == whole


def test_digests_cover_each_stream_even_when_a_reader_jumps(tree: Path) -> None:
    plan = _plan(tree)
    whole = _read_all(plan)
    jumped = _plan(tree)
    tail = _read_all(jumped, jumped.size - 4 * BLOCK)
    assert tail == whole[-4 * BLOCK :]
    assert _read_all(jumped) == whole
    for i, st in enumerate(plan.streams):
        expected = hashlib.sha256(whole[st.start : st.end]).hexdigest()
        assert plan.digest(i) == expected
        assert jumped.digest(i) == expected
    assert len(plan.trailer_bytes()) == len(plan.streams) * TRAILER_LINE


def test_passive_source_serves_the_stream_without_prefix(tree: Path) -> None:
    recs = passive_file_list(tree, [""], [])
    src = PassiveSource.for_files(tree, recs)

    async def drain() -> bytes:
        out = bytearray()
        while not src.finished:
            out += await src.read(4096)
        await src.aclose()
        return bytes(out)

    assert trio.run(drain) == _tarfile_stream(tree, "", recs)


def test_header_sizes_are_known_without_building_headers() -> None:
    rnd = random.Random(11)
    names = ["a", "x" * 100, "x" * 101, "é" * 60, "\udcff-raw", "dir/" * 40]
    for _ in range(500):
        name = rnd.choice(names) + str(rnd.randrange(10**6))
        is_dir = rnd.random() < 0.3
        size = rnd.choice([0, 1, 8**11 - 1, 8**11])
        mtime = rnd.choice([0, 10**18, 10**18 + 1, -(10**9), 8**11 * 10**9])
        hdr = member_header(name, size, mtime, 0o644, is_dir)
        assert hdr == _tarfile_header(name, size, mtime, 0o644, is_dir)
        assert member_header_size(os.fsencode(name), size, mtime, is_dir) == len(hdr)


def test_a_file_that_changed_is_served_at_its_planned_size_and_flagged(tree: Path) -> None:
    plan = _plan(tree)
    (tree / "odd-size").write_bytes(b"short")
    data = _read_all(plan)
    assert len(data) == plan.size
    assert plan.changed == {1}
    assert any(p.endswith("odd-size") for p in plan.changed_paths)


def test_snapshot_compare_finds_exactly_what_differs_in_any_order() -> None:
    """The in-order byte comparison falls back to lookups and finds its place again."""
    rnd = random.Random(5)
    old = [FileRecord(f"d{i // 50:03d}/f{i:05d}", i, 10**18 + i, 0o644) for i in range(2000)]
    buf = io.BytesIO()
    write_snapshot(buf, old)
    snap = Snapshot.from_bytes(buf.getvalue())
    assert len(snap) == len(old)
    new = list(old)
    del new[100:130]  # deleted files
    new.insert(500, FileRecord("d010/new", 1, 1, 0o600))  # a new file
    new[700] = new[700]._replace(mode=0o600)  # chmod only
    new[900] = new[900]._replace(mtime_ns=5)  # an older copy put back
    new[1500] = new[1500]._replace(size=7)
    expected = {"d010/new", new[700].path, new[900].path, new[1500].path}
    assert {r.path for r in snap.changed(new)} == expected
    shuffled = new[:]
    rnd.shuffle(shuffled)
    assert {r.path for r in Snapshot.from_bytes(buf.getvalue()).changed(shuffled)} == expected
    assert snap.changed(old) == []
    assert Snapshot.from_bytes(buf.getvalue()).changed(old) == []


def test_a_damaged_snapshot_is_refused_when_loaded() -> None:
    buf = io.BytesIO()
    write_snapshot(buf, [FileRecord("a", 1, 2, 0o644)])
    with pytest.raises(CorruptError, match="truncated snapshot record"):
        Snapshot.from_bytes(buf.getvalue() + b"\x05")
    with pytest.raises(CorruptError, match="bad path length"):
        Snapshot.from_bytes(buf.getvalue()[:-1])
    with pytest.raises(CorruptError, match="bad magic"):
        Snapshot.from_bytes(b"MBSNAP\x02\n")
