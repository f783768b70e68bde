"""Nothing the host sends can reach outside the storage root.

Names come from the wire; keys come from the framework but are checked as
if they did too.  Symlinks that lead out of the root are hidden and
refused, never followed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_providers.files import TEMP_PREFIX, FilesProvider, FileStorage
from mtp_responder.core.codes import ResponseCode
from mtp_responder.provider import NewObject, ProviderError


class _NoEvents:
    def object_added(self, storage: Any, key: str) -> None: ...
    def object_removed(self, storage: Any, key: str) -> None: ...
    def object_changed(self, storage: Any, key: str) -> None: ...
    def object_moved(self, storage: Any, old_key: str, new_key: str) -> None: ...
    def storage_added(self, storage: Any) -> None: ...
    def storage_removed(self, storage: Any) -> None: ...


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A storage root beside a folder the host must never touch."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (root / "d").mkdir()
    (root / "d" / "f.txt").write_text("f")
    return root, outside


def storage_on(path: Path, **opts: Any) -> FileStorage:
    provider = FilesProvider("files", {"storages": [{"path": str(path), **opts}]}, _NoEvents())
    return provider.storages()[0]


HOSTILE_NAMES = ["", ".", "..", "a/b", "../x", "/etc", "x\x00y", "a" * 256, TEMP_PREFIX + "x"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_hostile_names_are_refused_for_new_files(
    layout: tuple[Path, Path], name: str
) -> None:
    root, _ = layout
    with pytest.raises(ProviderError) as err:
        await storage_on(root).create(NewObject("", name, 0x3000, 1))
    assert err.value.code in (ResponseCode.INVALID_DATASET, ResponseCode.INVALID_PARAMETER)
    assert sorted(p.name for p in root.parent.rglob("*")) == sorted(
        ["root", "outside", "secret.txt", "d", "f.txt"]
    )


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_hostile_names_are_refused_for_folders_and_renames(
    layout: tuple[Path, Path], name: str
) -> None:
    root, _ = layout
    storage = storage_on(root)
    with pytest.raises(ProviderError):
        await storage.create_folder("d", name)
    with pytest.raises(ProviderError):
        await storage.rename("d/f.txt", name)
    assert (root / "d" / "f.txt").read_text() == "f"
    assert sorted(p.name for p in root.rglob("*")) == ["d", "f.txt"]


async def test_a_multibyte_name_over_255_bytes_is_refused(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with pytest.raises(ProviderError) as err:
        await storage_on(root).create_folder("", "é" * 200)
    assert err.value.code == ResponseCode.INVALID_DATASET


async def test_a_name_with_a_lone_surrogate_is_refused(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    with pytest.raises(ProviderError) as err:
        await storage_on(root).create_folder("", "bad\ud800")
    assert err.value.code == ResponseCode.INVALID_DATASET


async def test_unicode_names_work(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    entry = await storage_on(root).create_folder("", "照片 été 🎉")
    assert entry.name == "照片 été 🎉" and (root / "照片 été 🎉").is_dir()


@pytest.mark.parametrize(
    "key", ["..", "../outside", "d/../..", "/etc", "d//f.txt", "d/./f.txt", "x\0"]
)
async def test_malformed_keys_are_invalid_handles(layout: tuple[Path, Path], key: str) -> None:
    root, _ = layout
    with pytest.raises(ProviderError) as err:
        await storage_on(root).stat(key)
    assert err.value.code == ResponseCode.INVALID_OBJECT_HANDLE


async def test_a_symlink_out_of_the_root_is_not_listed(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    (root / "escape").symlink_to(outside)
    (root / "secret").symlink_to(outside / "secret.txt")
    (root / "abs").symlink_to("/etc/passwd")
    assert [e.name for e in await storage_on(root).list("")] == ["d"]


async def test_a_symlink_out_of_the_root_cannot_be_read_or_listed_through(
    layout: tuple[Path, Path],
) -> None:
    root, outside = layout
    (root / "escape").symlink_to(outside)
    (root / "secret").symlink_to(outside / "secret.txt")
    storage = storage_on(root)
    for attempt in (
        lambda: storage.stat("secret"),
        lambda: storage.stat("escape/secret.txt"),
        lambda: storage.list("escape"),
    ):
        with pytest.raises(ProviderError) as err:
            await attempt()
        assert err.value.code == ResponseCode.ACCESS_DENIED
    with pytest.raises(ProviderError) as err:
        storage.read("escape/secret.txt")
    assert err.value.code == ResponseCode.ACCESS_DENIED


async def test_nothing_is_written_through_a_symlink_out_of_the_root(
    layout: tuple[Path, Path],
) -> None:
    root, outside = layout
    (root / "escape").symlink_to(outside)
    (root / "secret").symlink_to(outside / "secret.txt")
    storage = storage_on(root)
    attempts = [
        storage.create(NewObject("escape", "planted", 0x3000, 1)),
        storage.create_folder("escape", "planted"),
        storage.write_at("secret", 0),
        storage.truncate("secret", 0),
        storage.set_protection("secret", True),
        storage.set_mtime("secret", 0.0),
        storage.delete("escape/secret.txt"),
        storage.move("d/f.txt", "escape"),
        storage.copy("d/f.txt", "escape"),
        storage.copy("escape", "d"),
    ]
    for attempt in attempts:
        with pytest.raises(ProviderError) as err:
            await attempt
        assert err.value.code == ResponseCode.ACCESS_DENIED
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret"
    assert os.stat(outside / "secret.txt").st_mode & 0o200


async def test_a_symlink_into_a_symlinked_folder_that_comes_back_is_judged_by_its_parent(
    layout: tuple[Path, Path],
) -> None:
    # root/out -> outside; outside/back -> root/d: "out/back" resolves inside
    # the root, but the entry itself lives outside and must not be touched.
    root, outside = layout
    (root / "out").symlink_to(outside)
    (outside / "back").symlink_to(root / "d")
    storage = storage_on(root)
    with pytest.raises(ProviderError) as err:
        await storage.delete("out/back")
    assert err.value.code == ResponseCode.ACCESS_DENIED
    assert (outside / "back").is_symlink()


async def test_a_symlink_inside_the_root_is_shown_as_its_target(
    layout: tuple[Path, Path],
) -> None:
    root, _ = layout
    (root / "link.txt").symlink_to("d/f.txt")
    (root / "dirlink").symlink_to("d")
    storage = storage_on(root)
    entries = {e.name: e for e in await storage.list("")}
    assert not entries["link.txt"].is_folder and entries["link.txt"].size == 1
    assert entries["dirlink"].is_folder
    assert [e.key for e in await storage.list("dirlink")] == ["dirlink/f.txt"]
    assert b"".join([c async for c in storage.read("link.txt")]) == b"f"
    # The link is its own object, distinct from its target.
    assert entries["link.txt"].puid != (await storage.stat("d/f.txt")).puid


async def test_deleting_a_symlink_removes_the_link_not_the_target(
    layout: tuple[Path, Path],
) -> None:
    root, _ = layout
    (root / "dirlink").symlink_to("d")
    await storage_on(root).delete("dirlink")
    assert not (root / "dirlink").exists()
    assert (root / "d" / "f.txt").read_text() == "f"


async def test_a_dangling_symlink_blocks_a_name_without_being_listed(
    layout: tuple[Path, Path],
) -> None:
    root, outside = layout
    (root / "taken").symlink_to(outside / "not-yet")
    with pytest.raises(ProviderError) as err:
        await storage_on(root).create(NewObject("", "taken", 0x3000, 1))
    assert err.value.code == ResponseCode.INVALID_PARAMETER
    assert not (outside / "not-yet").exists()


async def test_temporary_files_are_never_listed_or_reachable(layout: tuple[Path, Path]) -> None:
    root, _ = layout
    storage = storage_on(root, show_hidden=True)
    upload = await storage.create(NewObject("d", "new.bin", 0x3000, 3))
    await upload.write(b"abc")
    assert [e.name for e in await storage.list("d")] == ["f.txt"]
    [temp] = [p for p in (root / "d").iterdir() if p.name.startswith(TEMP_PREFIX)]
    with pytest.raises(ProviderError) as err:
        await storage.stat(f"d/{temp.name}")
    assert err.value.code == ResponseCode.INVALID_OBJECT_HANDLE
    await upload.abort()


async def test_a_root_given_through_a_symlink_works(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a").write_text("a")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    storage = storage_on(tmp_path / "alias")
    assert [e.key for e in await storage.list("")] == ["a"]
    await storage.create_folder("", "b")
    assert (tmp_path / "real" / "b").is_dir()


async def test_deleting_a_tree_with_a_symlink_out_leaves_the_outside_alone(
    layout: tuple[Path, Path],
) -> None:
    root, outside = layout
    (root / "d" / "escape").symlink_to(outside)
    await storage_on(root).delete("d")
    assert not (root / "d").exists()
    assert (outside / "secret.txt").read_text() == "secret"


async def test_copying_a_tree_with_a_symlink_out_copies_no_outside_data(
    layout: tuple[Path, Path],
) -> None:
    root, outside = layout
    (root / "d" / "secret").symlink_to(outside / "secret.txt")
    storage = storage_on(root)
    copy = await storage.copy("d", "")
    assert (root / copy.name / "secret").is_symlink()  # still a link, still hidden
    assert [e.name for e in await storage.list(copy.key)] == ["f.txt"]


async def test_copying_a_linked_folder_into_its_own_target_is_refused(
    layout: tuple[Path, Path],
) -> None:
    root, _ = layout
    (root / "link").symlink_to("d")
    with pytest.raises(ProviderError) as err:
        await storage_on(root).copy("link", "d")
    assert err.value.code == ResponseCode.INVALID_PARENT_OBJECT


_ANY_NAME = st.one_of(
    st.sampled_from(["", ".", "..", "/", "a/..", "../a", "\x00", ".mtp-partial-1", "é" * 128]),
    st.text(st.characters(blacklist_categories=()), max_size=300),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=_ANY_NAME)
def test_any_name_from_the_host_makes_at_most_one_entry_in_the_parent(
    tmp_path: Path, name: str
) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True, exist_ok=True)
    storage = storage_on(root)

    async def attempt() -> Any:
        try:
            return await storage.create_folder("d", name)
        except ProviderError:
            return None

    entry = trio.run(attempt)
    made = os.listdir(root / "d")
    try:
        assert made == ([] if entry is None else [name])
        assert os.listdir(root) == ["d"] and os.listdir(tmp_path) == ["root"]
        if entry is not None:
            assert entry.key == f"d/{name}" and entry.is_folder
    finally:
        for child in made:
            os.rmdir(root / "d" / child)


_SEGMENT = st.sampled_from(["", ".", "..", "d", "f.txt", "out", "back", "secret.txt", "x\x00"])


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(segments=st.lists(_SEGMENT, min_size=1, max_size=5), absolute=st.booleans())
def test_no_key_reads_or_lists_anything_outside_the_root(
    tmp_path: Path, segments: list[str], absolute: bool
) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    if not root.exists():
        (root / "d").mkdir(parents=True)
        (root / "d" / "f.txt").write_text("f")
        outside.mkdir()
        (outside / "secret.txt").write_text("secret")
        (root / "out").symlink_to(outside)
        (outside / "back").symlink_to(root / "d")
    key = ("/" if absolute else "") + "/".join(segments)
    storage = storage_on(root)

    async def attempt() -> None:
        try:
            data = b"".join([c async for c in storage.read(key)])
            assert b"secret" not in data
        except ProviderError:
            pass
        try:
            names = [e.name for e in await storage.list(key)]
            assert "secret.txt" not in names and "back" not in names
        except ProviderError:
            pass

    trio.run(attempt)
