"""An accepted restore leaves each owner exactly as before or exactly as the archive says.

The archives here are forged from real ones and stay consistent: every size,
entry count and SHA-256 digest is recomputed after the change, so only the
rules about what a base or an increment must contain can refuse them.  A
refused archive leaves the owner's data byte for byte as it was, and the
engine back in Normal mode.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.client import EngineClient
from engine.daemon.config import EngineConfig
from engine.errors import ErrorCode
from engine.mbak.manifest import MANIFEST_NAME, TRAILER_NAME
from engine.mbak.tar import (
    ZERO_BLOCK,
    MemberData,
    MemberEnd,
    MemberStart,
    TarParser,
    member_header,
    padding,
)
from engine.types import BURMode, format_sid

from .conftest import EngineProcess, start_engine, stop_engine
from .helpers import PASSIVE_ALL, make_config, make_tree, register, tree_state, write_file

SID = 0x0FA00030
FILE = "d0/s0/f0.bin"


@dataclass
class Member:
    """One archive member as raw bytes (headers, content, padding)."""

    name: str
    size: int
    raw: bytes


def split(archive: bytes) -> tuple[dict[str, object], list[Member]]:
    """The manifest and every stream member of a well-formed archive."""
    members: list[Member] = []
    parser = TarParser()
    raw = bytearray()
    name, size = "", 0
    for ev in parser.feed(archive):
        if isinstance(ev, MemberStart):
            name, size = ev.info.name, ev.info.size
            if ev.info.is_dir and not name.endswith("/"):
                name += "/"
            raw = bytearray(ev.info.header_bytes)
        elif isinstance(ev, MemberData):
            raw += ev.data
        elif isinstance(ev, MemberEnd):
            members.append(Member(name, size, bytes(raw + ev.raw_padding)))
    manifest_member, *rest = members
    assert manifest_member.name == MANIFEST_NAME and rest[-1].name == TRAILER_NAME
    head = len(manifest_member.raw) - manifest_member.size - padding(manifest_member.size)
    manifest = json.loads(manifest_member.raw[head : head + manifest_member.size])
    return manifest, rest[:-1]


def file_member(name: str, data: bytes, mtime_ns: int, mode: int = 0o640) -> Member:
    return Member(
        name,
        len(data),
        member_header(name, len(data), mtime_ns, mode) + data + bytes(padding(len(data))),
    )


def forge(manifest: dict[str, object], members: list[Member]) -> bytes:
    """A consistent archive: stream sizes, counts and digests recomputed from ``members``.

    Streams without any member keep their manifest entry (size 0, no entries).
    """
    streams = [dict(s) for s in manifest["streams"]]  # type: ignore[attr-defined]
    body = b""
    lines = []
    for i, s in enumerate(streams):
        mine = [m for m in members if m.name == s["member"] or m.name.startswith(f"{s['member']}/")]
        data = b"".join(m.raw for m in mine)
        s.update(
            index=i,
            size=len(data),
            entries=len(mine),
            content_bytes=sum(m.size for m in mine),
        )
        lines.append(f"{i:06d} {hashlib.sha256(data).hexdigest()} -\n")
        body += data
    m = json.dumps({**manifest, "streams": streams}).encode()
    trailer = "".join(lines).encode()
    return (
        file_member(MANIFEST_NAME, m, 0, 0o644).raw
        + body
        + file_member(TRAILER_NAME, trailer, 0, 0o644).raw
        + ZERO_BLOCK * 2
    )


def drop_stream(manifest: dict[str, object], slug: str) -> dict[str, object]:
    streams = [s for s in manifest["streams"] if s["type"] != slug]  # type: ignore[attr-defined]
    return {**manifest, "streams": streams}


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[EngineConfig, EngineProcess, Path]]:
    cfg = make_config(tmp_path)
    pd = register(cfg, SID, PASSIVE_ALL)
    make_tree(pd)
    ep = start_engine(cfg, tmp_path)
    try:
        yield cfg, ep, pd
    finally:
        stop_engine(ep)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 65536):
        yield data[i : i + 65536]


async def _backup(c: EngineClient, previous: bytes | None = None) -> tuple[bytes, bytes]:
    """The owner's archive and its snapshot file."""
    prep = await c.prepare_backup([SID], previous=previous)
    data = b"".join([x async for x in c.read_archive(prep.archive("full").name)])
    snap = b"".join([x async for x in c.read_archive(prep.archive("snapshot").name)])
    await c.set_normal()
    return data, snap


def _files(name: str) -> str:
    return f"owners/{format_sid(SID)}/c/files/{name}"


def _change_device(pd: Path) -> None:
    """What the device holds when the restore starts: an edited file and an extra one."""
    write_file(pd / FILE, b"edited after the backup", 1_700_000_000_000_000_000)
    write_file(pd / "extra.txt", b"created after the backup")


async def _refused(cfg: EngineConfig, pd: Path, archive: bytes) -> str:
    """Restore ``archive``; assert it was refused and changed nothing; its reason."""
    before = tree_state(pd)
    async with EngineClient.connect(cfg.socket_path) as c:
        res = await c.restore_archive(_chunks(archive))
        mode = c.mode.mode
    assert res.code == ErrorCode.CORRUPT, res
    assert tree_state(pd) == before
    assert not [n for n in os.listdir(pd.parent) if n.startswith(".mbak")]
    assert mode == BURMode.NORMAL
    async with EngineClient.connect(cfg.socket_path, role="observer") as o:
        assert (await o.mode_info()).mode == BURMode.NORMAL
    return res.reason


async def test_a_forged_copy_of_a_real_archive_is_restored_exactly(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """The forging itself is sound: unchanged content, recomputed digests, accepted."""
    cfg, _, pd = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _ = await _backup(c)
        state = tree_state(pd)
        _change_device(pd)
        res = await c.restore_archive(_chunks(forge(*split(data))))
    assert res.ok, res
    assert tree_state(pd) == state


async def test_base_whose_files_lack_a_snapshot_entry_is_refused(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """Restoring it would keep the device's copy of the missing file: old and new mixed."""
    cfg, _, pd = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _ = await _backup(c)
    manifest, members = split(data)
    archive = forge(manifest, [m for m in members if m.name != _files(FILE)])
    _change_device(pd)
    reason = await _refused(cfg, pd, archive)
    assert FILE in reason


async def test_base_without_the_passive_snapshot_is_refused(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """Without the owner's file list nothing would be deleted: the archive would merge."""
    cfg, _, pd = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _ = await _backup(c)
    manifest, members = split(data)
    archive = forge(drop_stream(manifest, "passive-snapshot"), members)
    _change_device(pd)
    reason = await _refused(cfg, pd, archive)
    assert "passive-snapshot" in reason


async def test_base_with_an_empty_passive_snapshot_stream_is_refused(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """The stream is listed but holds no member: as good as absent."""
    cfg, _, pd = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _ = await _backup(c)
    manifest, members = split(data)
    archive = forge(manifest, [m for m in members if not m.name.endswith("/passive-snapshot")])
    _change_device(pd)
    reason = await _refused(cfg, pd, archive)
    assert "passive-snapshot" in reason


async def test_base_without_its_files_stream_is_refused(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    cfg, _, pd = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _ = await _backup(c)
    manifest, members = split(data)
    archive = forge(drop_stream(manifest, "passive-base"), members[:1])
    _change_device(pd)
    reason = await _refused(cfg, pd, archive)
    assert "passive-base" in reason


@pytest.mark.parametrize("where", ["next to it", "at the end of the stream"])
async def test_a_member_held_twice_is_refused(
    dev: tuple[EngineConfig, EngineProcess, Path], where: str
) -> None:
    """The second copy has other bytes; the archive contradicts its own file list."""
    cfg, _, pd = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _ = await _backup(c)
    manifest, members = split(data)
    i = next(i for i, m in enumerate(members) if m.name == _files(FILE))
    at = i + 1 if where == "next to it" else len(members)
    st = (pd / FILE).stat()
    twin = file_member(_files(FILE), b"the second copy", st.st_mtime_ns)
    archive = forge(manifest, [*members[:at], twin, *members[at:]])
    _change_device(pd)
    reason = await _refused(cfg, pd, archive)
    assert _files(FILE) in reason and "twice" in reason


async def test_a_snapshot_member_held_twice_is_refused(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """A snapshot, like every stream that is not a file stream, is exactly one member."""
    cfg, _, pd = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _ = await _backup(c)
    manifest, members = split(data)
    snap = next(m for m in members if m.name.endswith("/passive-snapshot"))
    archive = forge(manifest, [snap, *members])
    _change_device(pd)
    reason = await _refused(cfg, pd, archive)
    assert snap.name in reason and "one member" in reason


async def test_base_with_an_incremental_stream_is_refused(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """A base replaces everything; increment data has no place in it."""
    cfg, _, pd = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        data, _ = await _backup(c)
    manifest, members = split(data)
    streams = [
        {**s, "type": "passive-incremental"} if s["type"] == "passive-base" else s
        for s in manifest["streams"]  # type: ignore[attr-defined]
    ]
    archive = forge({**manifest, "streams": streams}, members)
    _change_device(pd)
    reason = await _refused(cfg, pd, archive)
    assert "passive-incremental" in reason


async def test_increment_whose_unsent_file_differs_on_the_device_is_refused(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    """An increment carries only what changed; the rest must be as its base left it."""
    cfg, _, pd = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        _, snap = await _backup(c)
        write_file(pd / "later.dat", b"later")
        inc, _ = await _backup(c, previous=snap)
    assert _files(FILE) not in [m.name for m in split(inc)[1]]
    _change_device(pd)
    reason = await _refused(cfg, pd, inc)
    assert FILE in reason


async def test_increment_onto_its_base_is_restored_exactly(
    dev: tuple[EngineConfig, EngineProcess, Path],
) -> None:
    cfg, _, pd = dev
    async with EngineClient.connect(cfg.socket_path) as c:
        base, snap = await _backup(c)
        (pd / "ro.txt").unlink()
        write_file(pd / "later.dat", b"later")
        inc, _ = await _backup(c, previous=snap)
        latest = tree_state(pd)
        _change_device(pd)
        assert (await c.restore_archive(_chunks(base))).ok
        res = await c.restore_archive(_chunks(inc))
    assert res.ok, res
    assert tree_state(pd) == latest


def test_forge_helpers_keep_member_order() -> None:
    """``forge`` puts members in manifest stream order, each stream's in list order."""
    m = {"streams": [{"member": "owners/x/c/passive-snapshot"}, {"member": "owners/x/c/files"}]}
    parts = [
        file_member("owners/x/c/files/b", b"2", 0),
        file_member("owners/x/c/passive-snapshot", b"1", 0),
    ]
    names = [x.name for x in split(forge(m, parts))[1]]
    assert names == ["owners/x/c/passive-snapshot", "owners/x/c/files/b"]


BOTH = 0x0AB7E610
BOTH_XML = (
    '<backup_registration><passive_backup><include_directory name="\\"/></passive_backup>'
    '<active_backup process_name="abtester.py" callback_delay_time="1000000"/>'
    "</backup_registration>"
)


async def test_an_owner_whose_app_fails_the_restore_keeps_its_old_files(tmp_path: Path) -> None:
    """Files and app data of one owner: the files are swapped in only after the app
    took its data, so an app that cannot restore leaves the owner's files as they were."""
    cfg = make_config(tmp_path, ready_timeout=5.0)
    pd = register(cfg, BOTH, BOTH_XML)
    make_tree(pd)
    logs = tmp_path / "ablog"
    logs.mkdir()
    ep = start_engine(cfg, tmp_path, {"ABTESTER_LOG": str(logs)})
    try:
        async with EngineClient.connect(cfg.socket_path) as c:
            prep = await c.prepare_backup([BOTH])
            data = b"".join([x async for x in c.read_archive(prep.archive("full").name)])
            await c.set_normal()
        assert f"owners/{format_sid(BOTH)}/c/active-base" in [m.name for m in split(data)[1]]
    finally:
        stop_engine(ep)
    ep = start_engine(
        cfg, tmp_path, {"ABTESTER_LOG": str(logs), f"ABTESTER_FAULT_{format_sid(BOTH)}": "fail"}
    )
    try:
        _change_device(pd)
        before = tree_state(pd)
        async with EngineClient.connect(cfg.socket_path) as c:
            res = await c.restore_archive(_chunks(data))
        assert res.code != 0 and format_sid(BOTH) in res.reason, res
        assert tree_state(pd) == before
        assert not [n for n in os.listdir(pd.parent) if n.startswith(".mbak")]
    finally:
        stop_engine(ep)
