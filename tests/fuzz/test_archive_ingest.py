"""The engine's archive ingest, fed mutated and forged archives.

A restore reads an archive nobody vouches for.  Whatever the bytes, the ingest
(:class:`engine.mbak.ingest.ArchiveIngest`) either refuses them cleanly — a
``CorruptError`` (or ``OverflowEngineError`` for sizes past its limits), the
errors a restore reports to the host — or accepts them; any other exception is a
crash of the restore.  Byte-level mutations of a real archive mostly stop at the
digests; forged archives (:func:`.archives.forge`) recompute sizes and digests
after the change, so the checks behind them are reached too.
"""

from __future__ import annotations

import json

from hypothesis import assume, given
from hypothesis import strategies as st

from engine.errors import CorruptError, OverflowEngineError
from engine.mbak.ingest import ArchiveIngest
from mtp_backup.verify import _CheckingHandler

from .archives import Member, forge, members_of, seed_archive
from .budget import budget, counted

REFUSALS = (CorruptError, OverflowEngineError)


def ingest(archive: bytes, chunk: int) -> ArchiveIngest:
    """Feed ``archive`` in ``chunk``-byte pieces; a refusal propagates."""
    job = ArchiveIngest(_CheckingHandler())
    for i in range(0, len(archive), chunk):
        job.feed(archive[i : i + chunk])
    job.finish()
    return job


def accepted_or_refused(archive: bytes, chunk: int) -> bool:
    try:
        ingest(archive, chunk)
    except REFUSALS:
        return False
    return True


chunks = st.one_of(st.sampled_from([1 << 20, 512, 4096]), st.integers(1, 70000))


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(seed_archive())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete", "zero-block"]))
        if how == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "set":
            data[at] = draw(st.integers(0, 255))
        elif how == "cut":
            del data[at:]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=600))
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 1024))]
        else:
            data[at - at % 512 : at - at % 512 + 512] = bytes(512)
        if not data:
            break
    return bytes(data)


@budget(40, weight=0.2)
@given(archive=byte_mutations(), chunk=chunks)
@counted("archive ingest: byte mutations")
def test_mutated_archives_are_refused_cleanly_or_accepted(archive: bytes, chunk: int) -> None:
    accepted_or_refused(archive, chunk)


member_names = st.one_of(
    st.sampled_from(
        [
            "owners/0FA00001/c/files/new.bin",
            "owners/0FA00001/c/files/../../escape",
            "owners/0FA00001/c/files//double",
            "owners/0FA00001/c/files/",
            "owners/0FA00001/c/files",
            "owners/0FA00001/c/passive-snapshot",
            "owners/0FA00001/c/active-base",
            "owners/0FA00001/e/files/x",
            "owners/0FA00002/c/files/x",
            "/etc/passwd",
            "manifest.json",
            "manifest-digests",
        ]
    ),
    st.text(min_size=1, max_size=30).map(lambda s: "owners/0FA00001/c/files/" + s),
)
json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2**64),
    st.text(max_size=12),
    st.sampled_from(["base", "incremental", "passive-base", "passive-incremental", "0FA00001"]),
    st.lists(st.integers(0, 3), max_size=2),
)


def _edit_manifest(members: list[Member], draw: st.DrawFn) -> list[Member]:
    manifest = json.loads(members[0].data)
    target = manifest
    if draw(st.booleans()) and manifest["streams"]:
        streams = manifest["streams"]
        target = streams[draw(st.integers(0, len(streams) - 1))]
        if draw(st.integers(0, 5)) == 0:
            streams.remove(target)
            return [Member(members[0].name, json.dumps(manifest).encode()), *members[1:]]
        if draw(st.integers(0, 5)) == 0:
            streams.append(dict(target, index=len(streams)))
    key = draw(st.sampled_from([*sorted(target), "extra"]))
    if draw(st.integers(0, 4)) == 0:
        target.pop(key, None)
    else:
        target[key] = draw(json_values)
    return [Member(members[0].name, json.dumps(manifest).encode()), *members[1:]]


@st.composite
def forged_archives(draw: st.DrawFn) -> bytes:
    members = members_of(seed_archive())
    for _ in range(draw(st.integers(1, 3))):
        body = range(1, len(members) - 1)  # not the manifest, not the trailer
        i = draw(st.sampled_from(body))
        how = draw(
            st.sampled_from(
                ["drop", "duplicate", "rename", "content", "mode", "kind", "swap", "manifest"]
            )
        )
        m = members[i]
        if how == "drop":
            del members[i]
        elif how == "duplicate":
            members.insert(draw(st.sampled_from(body)), Member(m.name, m.data + b"x"))
        elif how == "rename":
            members[i] = Member(draw(member_names), m.data, m.mode, m.mtime_ns, m.is_dir)
        elif how == "content":
            members[i] = Member(m.name, draw(st.binary(max_size=2000)), m.mode, m.mtime_ns)
        elif how == "mode":
            members[i] = Member(m.name, m.data, draw(st.integers(0, 0o7777)), m.mtime_ns, m.is_dir)
        elif how == "kind":
            members[i] = Member(m.name, b"" if not m.is_dir else m.data, m.mode, 0, not m.is_dir)
        elif how == "swap":
            j = draw(st.sampled_from(body))
            members[i], members[j] = members[j], members[i]
        else:
            members = _edit_manifest(members, draw)
    try:
        return forge(members)
    except (ValueError, UnicodeError):  # the tar writer cannot encode that name at all
        assume(False)
        raise


@budget(40, weight=0.2)
@given(archive=forged_archives(), chunk=chunks)
@counted("archive ingest: forged archives")
def test_forged_archives_are_refused_cleanly_or_accepted(archive: bytes, chunk: int) -> None:
    accepted_or_refused(archive, chunk)


def test_the_seed_and_its_unchanged_forgery_are_accepted() -> None:
    """The oracle is not vacuous: a forgery of the unchanged members is a valid archive."""
    assert accepted_or_refused(seed_archive(), 4096)
    assert accepted_or_refused(forge(members_of(seed_archive())), 777)


def test_a_forged_duplicate_member_passes_the_sizes_but_is_refused() -> None:
    members = members_of(seed_archive())
    files = [m for m in members if "/files/" in m.name and not m.is_dir]
    twice = [*members[:-1], Member(files[0].name, b"other bytes"), members[-1]]
    try:
        ingest(forge(twice), 4096)
    except CorruptError as exc:
        assert "appears twice" in exc.message
    else:
        raise AssertionError("a duplicate member was accepted")
