"""Public files travel in the backup archive and come back from it, whole and safely.

Two owners select public files on drive ``c``: PH its photos folder (minus a
``skip`` folder), DOC the whole ``public/shared`` folder and PH's
``public/photos/album`` too, so the album is selected twice. The device also
holds public files nobody selects; a restore must never touch those, nor
anything outside the public area, whatever the archive says.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from engine.client import EngineClient
from engine.daemon.config import EngineConfig
from engine.daemon.owners import discover
from engine.daemon.publicfiles import PublicScope, public_records
from engine.daemon.publicstage import PublicStage
from engine.errors import ErrorCode
from engine.mbak.manifest import TRAILER_NAME
from engine.mbak.snapshot import Snapshot
from engine.types import BURMode

from .conftest import EngineProcess, start_engine, stop_engine
from .helpers import make_config, register, tree_state, write_file
from .test_mixed_restores import Member, file_member, forge, split

PH = 0x0FA00041
DOC = 0x0FA00042

PH_XML = """<?xml version="1.0"?>
<backup_registration version="1.0">
  <passive_backup><include_directory name="\\"/></passive_backup>
  <public_backup>
    <include_directory name="c:\\public\\photos\\"/>
    <exclude name="c:\\public\\photos\\skip\\"/>
  </public_backup>
</backup_registration>
"""

DOC_XML = """<?xml version="1.0"?>
<backup_registration version="1.0">
  <public_backup>
    <include_directory name="c:\\public\\shared\\"/>
    <include_directory name="c:\\public\\photos\\album\\"/>
  </public_backup>
</backup_registration>
"""

T0 = 1_650_000_000_123_456_789

SELECTED = {
    "public/photos/a.jpg": (os.urandom(70_000), 0o644),
    "public/photos/album/b.jpg": (os.urandom(1_500), 0o600),
    "public/photos/album/deep/c.raw": (b"", 0o640),
    "public/photos/ro.png": (b"read only picture", 0o444),
    "public/shared/notes.txt": (b"shared notes\n", 0o664),
}
UNSELECTED = {
    "public/photos/skip/big.tmp": b"excluded by PH",
    "public/music/song.ogg": b"nobody selects this",
}


def _files(name: str) -> str:
    return f"public/c/files/{name}"


def public_state(root: Path) -> dict[str, tuple[object, ...]]:
    """Every file below ``public/``: content, mode, mtime."""
    return {k: v for k, v in tree_state(root / "public").items() if v[0] == "f"}


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[EngineConfig, EngineProcess, Path]]:
    cfg = make_config(tmp_path)
    pd = register(cfg, PH, PH_XML)
    write_file(pd / "private.dat", b"PH's own data", T0)
    register(cfg, DOC, DOC_XML)
    root = cfg.drives["c"]
    for i, (rel, (data, mode)) in enumerate(sorted(SELECTED.items())):
        write_file(root / rel, data, T0 + i * 1_000_001, mode)
    for rel, data in UNSELECTED.items():
        write_file(root / rel, data, T0)
    ep = start_engine(cfg, tmp_path)
    try:
        yield cfg, ep, root
    finally:
        stop_engine(ep)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 100_000):
        yield data[i : i + 100_000]


async def _backup(
    c: EngineClient, previous: bytes | None = None, sids: list[int] | None = None
) -> tuple[bytes, bytes, dict[int, bytes]]:
    """The whole archive, the snapshot file and each owner's archive."""
    prep = await c.prepare_backup(sids, previous=previous)
    full = prep.archive("full")
    data = b"".join([x async for x in c.read_archive(full.name)])
    assert len(data) == full.size
    snap = b"".join([x async for x in c.read_archive(prep.archive("snapshot").name)])
    owners = {}
    for a in prep.archives:
        if a.kind == "owner" and a.sid is not None:
            owners[a.sid] = b"".join([x async for x in c.read_archive(a.name)])
    await c.set_normal()
    return data, snap, owners


def _names(archive: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
        return tf.getnames()


async def test_a_full_backup_holds_the_selected_public_files_and_tar_gives_them_back(
    dev: tuple[EngineConfig, EngineProcess, Path], tmp_path: Path
) -> None:
    cfg, _, root = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        prep = await c.prepare_backup()
        full = prep.archive("full")
        data = b"".join([x async for x in c.read_archive(full.name)])
        # Any offset reads the same bytes as the whole (exact size known up front).
        mid = b"".join([x async for x in c.read_archive(full.name, 70_001, 5_000)])
        await c.set_normal()
    assert len(data) == full.size
    assert mid == data[70_001:75_001]

    manifest, members = split(data)
    public = [s for s in manifest["streams"] if s.get("area") == "public"]  # type: ignore[attr-defined]
    assert [(s["drive"], s["type"]) for s in public] == [
        ("c", "passive-snapshot"),
        ("c", "passive-base"),
    ]
    assert public[1]["entries"] == len(SELECTED)
    assert public[1]["content_bytes"] == sum(len(d) for d, _m in SELECTED.values())
    # The trailer names each stream's SHA-256, public ones included.
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        trailer = tf.extractfile(TRAILER_NAME).read().decode()  # type: ignore[union-attr]
        body = {
            m.name: tf.extractfile(m).read()  # type: ignore[union-attr]
            for m in tf.getmembers()
            if m.name.startswith("public/c/files/")
        }
    line = trailer.splitlines()[public[1]["index"]]
    raw = b"".join(m.raw for m in members if m.name.startswith("public/c/files/"))
    assert line.split(" ")[1] == hashlib.sha256(raw).hexdigest()
    assert set(body) == {_files(r) for r in SELECTED}

    arc = tmp_path / "backup.mbak"
    arc.write_bytes(data)
    out = tmp_path / "tar-x"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(arc), "-C", str(out)], check=True)
    assert public_state(out / "public" / "c" / "files") == _selected_state(root)

    # Python's tarfile reads pax mtimes as floats: exact to the microsecond only.
    out = tmp_path / "tarfile"
    with tarfile.open(arc) as tf:
        tf.extractall(out, filter="fully_trusted")
    got = public_state(out / "public" / "c" / "files")
    want = _selected_state(root)
    assert {k: v[:3] for k, v in got.items()} == {k: v[:3] for k, v in want.items()}
    for k, v in got.items():
        assert abs(int(v[3]) - int(want[k][3])) < 1_000, k  # type: ignore[call-overload]


def _selected_state(root: Path) -> dict[str, tuple[object, ...]]:
    """The device's public state limited to the selected files."""
    return {k: v for k, v in public_state(root).items() if f"public/{k}" in SELECTED}


async def test_a_file_two_owners_select_is_stored_once(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    cfg, _, _root = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _snap, owners = await _backup(c)
    names = _names(data)
    shared = _files("public/photos/album/b.jpg")
    assert names.count(shared) == 1
    assert len([n for n in names if n.startswith("public/")]) == 1 + len(SELECTED)
    # Each owner's own archive holds its own selections.
    ph = {n for n in _names(owners[PH]) if n.startswith("public/c/files/")}
    doc = {n for n in _names(owners[DOC]) if n.startswith("public/c/files/")}
    assert ph == {_files(r) for r in SELECTED if r.startswith("public/photos/")}
    assert doc == {
        _files(r) for r in SELECTED if r.startswith(("public/shared/", "public/photos/album/"))
    }


async def test_a_restore_onto_a_changed_device_gives_exactly_the_backed_up_public_state(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    cfg, _, root = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _snap, _owners = await _backup(c)
        before = public_state(root)
        write_file(root / "public/photos/a.jpg", b"edited", T0 + 99)
        os.chmod(root / "public/photos/ro.png", 0o644)
        (root / "public/shared/notes.txt").unlink()
        write_file(root / "public/photos/album/new.jpg", b"taken after the backup")
        write_file(root / "public/music/song.ogg", b"changed, but nobody selects it", T0)
        unselected = (root / "public/music/song.ogg").read_bytes()
        res = await c.restore_archive(_chunks(data))
    assert res.ok, res
    after = public_state(root)
    selected = {k: v for k, v in after.items() if f"public/{k}" in SELECTED}
    assert selected == {k: v for k, v in before.items() if f"public/{k}" in SELECTED}
    assert not (root / "public/photos/album/new.jpg").exists()
    assert (root / "public/music/song.ogg").read_bytes() == unselected
    assert (root / "public/photos/skip/big.tmp").read_bytes() == UNSELECTED[
        "public/photos/skip/big.tmp"
    ]
    assert not [n for n in os.listdir(root / "private") if n.startswith(".mbak")]


async def test_base_and_increment_restore_a_deleted_and_a_changed_public_file(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    cfg, _, root = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        base, snap, _ = await _backup(c)
        (root / "public/shared/notes.txt").unlink()
        write_file(root / "public/photos/album/b.jpg", b"retouched", T0 + 7_000_000_000)
        later = public_state(root)
        inc, _snap2, _ = await _backup(c, previous=snap)
        manifest, _m = split(inc)
        assert manifest["mode"] == "incremental"
        in_inc = [n for n in _names(inc) if n.startswith("public/c/files/")]
        assert in_inc == [_files("public/photos/album/b.jpg")]

        res = await c.restore_archive(_chunks(base))
        assert res.ok, res
        assert (root / "public/shared/notes.txt").exists()
        res = await c.restore_archive(_chunks(inc))
    assert res.ok, res
    assert public_state(root) == later
    assert not (root / "public/shared/notes.txt").exists()


async def test_an_increment_without_its_base_on_the_device_is_refused(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """A file the increment does not carry must already be as its snapshot says."""
    cfg, _, root = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        _base, snap, _ = await _backup(c)
        write_file(root / "public/photos/album/b.jpg", b"retouched", T0 + 7_000_000_000)
        inc, _snap2, _ = await _backup(c, previous=snap)
        write_file(root / "public/photos/a.jpg", b"edited since", T0 + 8_000_000_000)
        before = public_state(root)
        res = await c.restore_archive(_chunks(inc))
    assert res.code == ErrorCode.CORRUPT, res
    assert "public/photos/a.jpg" in res.reason
    assert public_state(root) == before


async def _refused(cfg: EngineConfig, root: Path, archive: bytes, outside: Path) -> str:
    """Restore ``archive``; it must be refused with nothing changed anywhere."""
    before = (public_state(root), tree_state(root / "private"), tree_state(outside))
    async with EngineClient.connect(cfg.socket_path) as c:
        res = await c.restore_archive(_chunks(archive))
        assert c.mode.mode == BURMode.NORMAL
    assert res.code == ErrorCode.CORRUPT, res
    assert (public_state(root), tree_state(root / "private"), tree_state(outside)) == before
    assert not [n for n in os.listdir(root / "private") if n.startswith(".mbak")]
    return res.reason


@pytest.mark.parametrize(
    "name",
    [
        "private/0FA00041/evil.dat",  # an owner's private directory
        "public/music/song.ogg",  # public, but nobody's selection
        "etc/passwd",
    ],
)
async def test_a_public_member_outside_the_public_area_is_refused(
    dev: tuple[EngineConfig, EngineProcess, Path], tmp_path: Path, name: str
) -> None:
    cfg, _, root = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _, _ = await _backup(c)
    manifest, members = split(data)
    hostile = file_member(_files(name), b"planted", T0)
    archive = forge(manifest, [*members, hostile])
    reason = await _refused(cfg, root, archive, tmp_path / "outside")
    assert name in reason and "outside the public area" in reason


async def test_a_public_member_with_dot_dot_is_refused(
    dev: tuple[EngineConfig, EngineProcess, Path], tmp_path: Path
) -> None:
    cfg, _, root = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _, _ = await _backup(c)
    manifest, members = split(data)
    name = "public/photos/../../private/0FA00041/evil.dat"
    archive = forge(manifest, [*members, file_member(_files(name), b"planted", T0)])
    reason = await _refused(cfg, root, archive, tmp_path / "outside")
    assert name in reason


async def test_a_public_member_through_a_symlink_is_refused(
    dev: tuple[EngineConfig, EngineProcess, Path], tmp_path: Path
) -> None:
    """The device's album folder became a link to somewhere else: never followed."""
    cfg, _, root = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _, _ = await _backup(c)
    outside = tmp_path / "outside"
    outside.mkdir()
    write_file(outside / "b.jpg", b"not a photo of the device")
    album = root / "public/photos/album"
    for p in sorted(album.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    album.rmdir()
    album.symlink_to(outside)
    reason = await _refused(cfg, root, data, outside)
    assert "public/photos/album/b.jpg" in reason and "symbolic link" in reason
    assert (outside / "b.jpg").read_bytes() == b"not a photo of the device"


async def test_a_public_file_listed_twice_is_refused(
    dev: tuple[EngineConfig, EngineProcess, Path], tmp_path: Path
) -> None:
    cfg, _, root = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _, _ = await _backup(c)
    manifest, members = split(data)
    twin = file_member(_files("public/photos/a.jpg"), b"second copy", T0)
    reason = await _refused(cfg, root, forge(manifest, [*members, twin]), tmp_path / "outside")
    assert "public/photos/a.jpg" in reason and "twice" in reason


def _drop_public_snapshot(archive: bytes) -> bytes:
    manifest, members = split(archive)
    streams = [
        s
        for s in manifest["streams"]  # type: ignore[attr-defined]
        if not (s.get("area") == "public" and s["type"] == "passive-snapshot")
    ]
    kept: list[Member] = [m for m in members if m.name != "public/c/passive-snapshot"]
    return forge({**manifest, "streams": streams}, kept)


async def test_public_files_without_their_snapshot_are_refused(
    dev: tuple[EngineConfig, EngineProcess, Path], tmp_path: Path
) -> None:
    """Without the public snapshot a restore could not know what to delete."""
    cfg, _, root = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _, _ = await _backup(c)
    reason = await _refused(cfg, root, _drop_public_snapshot(data), tmp_path / "outside")
    assert "public/c" in reason and "passive-snapshot" in reason


@pytest.fixture
def small_dev(tmp_path: Path) -> Iterator[tuple[EngineConfig, EngineProcess, Path]]:
    """Drive ``c`` on a 4 MiB tmpfs, so that free space can run short."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "c"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=False)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        cfg = make_config(tmp_path)
        pd = register(cfg, PH, PH_XML)
        write_file(pd / "private.dat", os.urandom(300_000), T0)
        write_file(cfg.drives["c"] / "public/photos/big.jpg", os.urandom(1_200_000), T0)
        ep = start_engine(cfg, tmp_path)
        try:
            yield cfg, ep, cfg.drives["c"]
        finally:
            stop_engine(ep)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_a_restore_larger_than_the_free_space_is_refused_before_anything_changes(
    small_dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    cfg, _, root = small_dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _, _ = await _backup(c)
        write_file(root / "public/photos/big.jpg", b"replaced by a small file", T0 + 1)
        free = os.statvfs(root).f_bavail * os.statvfs(root).f_frsize
        write_file(root / "filler", bytes(free - 1_000_000))
        before = (public_state(root), tree_state(root / "private"))
        res = await c.restore_archive(_chunks(data))
        assert c.mode.mode == BURMode.NORMAL
    assert res.code == ErrorCode.DISK_FULL, res
    assert "needs" in res.reason and "free" in res.reason
    assert (public_state(root), tree_state(root / "private")) == before
    assert not [n for n in os.listdir(root / "private") if n.startswith(".mbak")]
    # With the space back, the same archive restores.
    (root / "filler").unlink()
    async with EngineClient.connect(cfg.socket_path) as c:
        res = await c.restore_archive(_chunks(data))
    assert res.ok, res
    assert len((root / "public/photos/big.jpg").read_bytes()) == 1_200_000


async def test_a_partial_restore_puts_back_only_the_selected_owners_public_files(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """PH's photos come back; DOC's notes (not PH's selection) stay as the device has them."""
    cfg, _, root = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _, _ = await _backup(c)
        write_file(root / "public/photos/album/b.jpg", b"edited", T0 + 5)
        write_file(root / "public/shared/notes.txt", b"edited notes", T0 + 5)
        res = await c.restore_archive(_chunks(data), sids=[PH])
    assert res.ok, res
    assert (root / "public/photos/album/b.jpg").read_bytes() == SELECTED[
        "public/photos/album/b.jpg"
    ][0]
    assert (root / "public/shared/notes.txt").read_bytes() == b"edited notes"


async def test_a_commit_cut_short_by_a_crash_is_finished_when_the_engine_starts(
    dev: tuple[EngineConfig, EngineProcess, Path], tmp_path: Path
) -> None:
    """The journal is on disk, no file was moved yet: the next engine applies it."""
    cfg, ep, root = dev
    stop_engine(ep)
    owners = discover(cfg)
    stage = PublicStage(
        "c", root, PublicScope("c", owners.values()), PublicScope("c", owners.values())
    )
    stage.open()
    new, a, notes = b"the restored picture", "public/photos/a.jpg", "public/shared/notes.txt"
    stage.set_snapshot(
        Snapshot(
            r._replace(size=len(new), mtime_ns=T0 + 42) if r.path == a else r
            for r in public_records("c", root, owners.values())
            if r.path != notes
        )
    )
    assert stage.begin(a, len(new), T0 + 42, 0o644, False)
    stage.write(new)
    stage.end()
    stage.finalize(whole=False)
    assert stage.deletes == [notes]
    stage.write_journal()
    # The crash: nothing applied. The public area is still all old.
    assert (root / a).read_bytes() == SELECTED[a][0]
    assert (root / notes).exists()
    ep2 = start_engine(cfg, tmp_path)
    try:
        assert (root / a).read_bytes() == new
        assert (root / a).stat().st_mtime_ns == T0 + 42
        assert not (root / notes).exists()
        assert not [n for n in os.listdir(root / "private") if n.startswith(".mbak")]
    finally:
        stop_engine(ep2)


async def test_a_public_file_the_snapshot_does_not_list_is_not_put_back(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """Even when the archive sends the files before their snapshot: the list decides."""
    cfg, _, root = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _, _ = await _backup(c)
        manifest, members = split(data)
        streams = list(manifest["streams"])  # type: ignore[call-overload]
        i = next(k for k, s in enumerate(streams) if s.get("area") == "public")
        streams[i], streams[i + 1] = streams[i + 1], streams[i]
        planted = file_member(_files("public/photos/planted.jpg"), b"not in the list", T0)
        archive = forge({**manifest, "streams": streams}, [*members, planted])
        res = await c.restore_archive(_chunks(archive))
    assert res.ok, res
    assert not (root / "public/photos/planted.jpg").exists()
    assert (root / "public/photos/a.jpg").read_bytes() == SELECTED["public/photos/a.jpg"][0]


async def test_a_whole_drive_selection_never_reaches_into_private_directories(
    tmp_path: Path,
) -> None:
    """``c:\\`` selects the drive, minus the system areas: private data is not public."""
    cfg = make_config(tmp_path)
    register(
        cfg,
        PH,
        '<backup_registration version="1.0"><public_backup>'
        '<include_directory name="c:\\"/></public_backup></backup_registration>',
    )
    root = cfg.drives["c"]
    write_file(root / "top.txt", b"public at the top", T0)
    secret = register(cfg, DOC, PH_XML) / "secret.dat"
    write_file(secret, b"DOC's private data", T0)
    ep = start_engine(cfg, tmp_path)
    try:
        async with EngineClient.connect(cfg.socket_path) as c:
            data, _, _ = await _backup(c, sids=[PH])
            assert [n for n in _names(data) if n.startswith("public/c/files/")] == [
                _files("top.txt")
            ]
            write_file(root / "new.txt", b"made after the backup", T0)
            res = await c.restore_archive(_chunks(data))
        assert res.ok, res
        assert not (root / "new.txt").exists()
        assert (root / "top.txt").read_bytes() == b"public at the top"
        assert secret.read_bytes() == b"DOC's private data"
    finally:
        stop_engine(ep)


async def test_a_public_folder_on_another_file_system_is_refused_before_anything_changes(
    dev: tuple[EngineConfig, EngineProcess, Path], tmp_path: Path
) -> None:
    """A rename cannot cross file systems: such a restore could not be atomic per file."""
    cfg, _, root = dev
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _, _ = await _backup(c)
    album = root / "public/photos/album"
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(album)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        write_file(root / "public/photos/a.jpg", b"edited", T0 + 5)
        before = (public_state(root), tree_state(root / "private"))
        async with EngineClient.connect(cfg.socket_path) as c:
            res = await c.restore_archive(_chunks(data))
        assert res.code == ErrorCode.GENERAL, res
        assert "public/photos/album/b.jpg" in res.reason and "file system" in res.reason
        assert (public_state(root), tree_state(root / "private")) == before
    finally:
        subprocess.run(["umount", "-l", str(album)], check=False)
