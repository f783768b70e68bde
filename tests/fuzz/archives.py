"""Real ``.mbak`` archives to mutate, and a forger that makes any mutation consistent.

The engine writes the seed archive itself (a base backup of a small owner tree),
so the fuzzer starts from exactly what a device produces.  :func:`forge`
rebuilds an archive from its members after a change: every member's tar (pax)
header, every stream's size, entry count and content bytes in the manifest, and
the digest trailer are recomputed, so the result passes the cheap checks and
the fuzzer reaches what lies behind them.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import tarfile
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import trio

from engine.daemon.core import Engine
from engine.daemon.operations import prepare_backup, read_plan_sync
from engine.mbak.manifest import MANIFEST_NAME, TRAILER_NAME
from engine.mbak.tar import ZERO_BLOCK, member_header, padding
from engine.types import BackupIncType, BURMode
from tests.engine.helpers import PASSIVE_ALL, make_config, make_tree, register

SID = 0x0FA00001
MTIME_NS = 1_600_000_000_123_456_789


@dataclass(frozen=True)
class Member:
    name: str
    data: bytes
    mode: int = 0o644
    mtime_ns: int = MTIME_NS
    is_dir: bool = False


@functools.cache
def seed_archive() -> bytes:
    """A base backup of one passive owner, as the engine writes it."""

    async def backup(tmp: Path) -> bytes:
        cfg = make_config(tmp)
        make_tree(register(cfg, SID, PASSIVE_ALL), files=8)
        engine = Engine(cfg)
        prepared = await prepare_backup(engine)
        plan = prepared.plans[prepared.archives[0].name]
        out = io.BytesIO()
        read_plan_sync(plan, 0, plan.size, out)
        await engine.set_bur_mode([], BURMode.NORMAL, BackupIncType.NO_BACKUP)
        prepared.release()
        return out.getvalue()

    with tempfile.TemporaryDirectory() as tmp:
        return trio.run(backup, Path(tmp))


def members_of(archive: bytes) -> list[Member]:
    """The members of a well-formed archive, manifest and trailer included."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tf:
        for info in tf:
            data = b"" if info.isdir() else tf.extractfile(info).read()  # type: ignore[union-attr]
            mtime = info.pax_headers.get("mtime")
            ns = int(float(mtime) * 1e9) if mtime else int(info.mtime) * 1_000_000_000
            out.append(Member(info.name, data, info.mode, ns, info.isdir()))
    return out


def _raw(m: Member) -> bytes:
    size = 0 if m.is_dir else len(m.data)
    return (
        member_header(m.name, size, m.mtime_ns, m.mode, m.is_dir)
        + (b"" if m.is_dir else m.data)
        + bytes(padding(size))
    )


def forge(members: list[Member]) -> bytes:
    """An archive of ``members`` whose sizes, entry counts and digests all agree.

    The manifest (first member) keeps its fields; each stream's numbers are
    recounted from the members that now fall under it.  Members that belong to
    no stream stay where they are (the ingest must refuse them by itself).
    """
    manifest = json.loads(members[0].data)
    body = [m for m in members[1:] if m.name != TRAILER_NAME]
    streams = manifest.get("streams") if isinstance(manifest, dict) else None
    if not isinstance(streams, list):
        streams = []
    digests = []
    for s in streams:
        if not isinstance(s, dict):
            continue
        prefix = str(s.get("member", ""))
        mine = [m for m in body if m.name == prefix or m.name.startswith(prefix + "/")]
        raw = b"".join(_raw(m) for m in mine)
        s["size"] = len(raw)
        s["entries"] = len(mine)
        s["content_bytes"] = sum(0 if m.is_dir else len(m.data) for m in mine)
        digests.append(hashlib.sha256(raw).hexdigest())
    head = replace(members[0], data=json.dumps(manifest).encode())
    trailer = "".join(f"{i:06d} {d} -\n" for i, d in enumerate(digests)).encode()
    parts = [_raw(head), *(_raw(m) for m in body)]
    parts.append(_raw(Member(TRAILER_NAME, trailer)))
    return b"".join(parts) + ZERO_BLOCK * 2


assert MANIFEST_NAME == "manifest.json"
