"""Changes made on the device behind the responder's back reach the framework.

Each test changes a real directory the way a program on the device would
and waits for the provider's notification (keys as the storage names them).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from data_providers.files import FilesProvider, FileStorage
from data_providers.files import watch as watch_mod
from mtp_responder.provider import NewObject

Call = tuple[str, ...]


class Recorder:
    """A framework stand-in that remembers every notification."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.storages: list[Any] = []
        self._arrived = trio.Event()

    def _record(self, storage: Any, *call: str) -> None:
        if storage is not None:
            self.storages.append(storage)
        self.calls.append(call)
        self._arrived.set()
        self._arrived = trio.Event()

    def object_added(self, storage: Any, key: str) -> None:
        self._record(storage, "added", key)

    def object_removed(self, storage: Any, key: str) -> None:
        self._record(storage, "removed", key)

    def object_changed(self, storage: Any, key: str) -> None:
        self._record(storage, "changed", key)

    def object_moved(self, storage: Any, old_key: str, new_key: str) -> None:
        self._record(storage, "moved", old_key, new_key)

    def storage_added(self, storage: Any) -> None:
        self._record(None, "storage_added")

    def storage_removed(self, storage: Any) -> None:
        self._record(None, "storage_removed")

    async def until(self, *expected: Call, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until each expected notification arrived ``count`` times."""
        with trio.fail_after(timeout):
            while not all(self.calls.count(e) >= count for e in expected):
                await self._arrived.wait()

    async def settle(self) -> list[Call]:
        """What arrived once nothing can still be held back.

        The watcher holds a move back until its pair arrives and a change
        until the throttle interval has passed: listening longer than both
        means a notification that was coming would be in the list.
        """
        await trio.sleep(watch_mod.CHANGE_INTERVAL + watch_mod.MOVE_PAIR_WAIT + 0.1)
        return self.calls


@pytest.fixture(autouse=True)
def short_hold_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shorter change throttle keeps each "nothing more arrives" check short."""
    monkeypatch.setattr(watch_mod, "CHANGE_INTERVAL", 0.2)


Start = Callable[..., Awaitable[tuple[FileStorage, Recorder]]]


@pytest.fixture
def watched(nursery: trio.Nursery, tmp_path: Path) -> Start:
    """Start a provider on ``tmp_path`` (or a given root) and its watcher."""

    async def start(root: Path = tmp_path, **opts: Any) -> tuple[FileStorage, Recorder]:
        recorder = Recorder()
        provider = FilesProvider("files", {"storages": [{"path": str(root), **opts}]}, recorder)
        await nursery.start(provider.run)
        return provider.storages()[0], recorder

    return start


async def test_a_file_created_on_the_device_is_added(tmp_path: Path, watched: Start) -> None:
    storage, rec = await watched()
    (tmp_path / "new.txt").write_text("hello")
    await rec.until(("added", "new.txt"))
    assert rec.storages[0] is storage


async def test_a_file_deleted_on_the_device_is_removed(tmp_path: Path, watched: Start) -> None:
    (tmp_path / "old.txt").write_text("x")
    _, rec = await watched()
    (tmp_path / "old.txt").unlink()
    await rec.until(("removed", "old.txt"))


async def test_a_rename_on_the_device_is_a_move(tmp_path: Path, watched: Start) -> None:
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "d").mkdir()
    _, rec = await watched()
    os.rename(tmp_path / "a.txt", tmp_path / "d" / "b.txt")
    await rec.until(("moved", "a.txt", "d/b.txt"))
    assert ("removed", "a.txt") not in await rec.settle()


async def test_an_appended_file_is_changed(tmp_path: Path, watched: Start) -> None:
    (tmp_path / "app.log").write_text("one\n")
    _, rec = await watched()
    with (tmp_path / "app.log").open("a") as f:
        f.write("two\n")
    await rec.until(("changed", "app.log"))


async def test_changes_to_one_file_are_throttled_but_the_last_is_never_lost(
    tmp_path: Path, watched: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_mod, "CHANGE_INTERVAL", 0.3)
    (tmp_path / "rec.wav").write_bytes(b"")
    _, rec = await watched()
    changed = ("changed", "rec.wav")
    with (tmp_path / "rec.wav").open("ab", buffering=0) as f:
        f.write(b"first")
        await rec.until(changed)
        burst = trio.current_time()
        for _ in range(50):
            f.write(b"x" * 100)
    await rec.until(changed, count=2)
    # The burst is reported once, after the interval, not once per write.
    assert trio.current_time() - burst >= 0.2
    assert (await rec.settle()).count(changed) == 2


async def test_a_new_folder_is_watched_and_its_early_content_reported(
    tmp_path: Path, watched: Start
) -> None:
    _, rec = await watched()
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c.txt").write_text("x")
    await rec.until(("added", "a"), ("added", "a/b"), ("added", "a/b/c.txt"))
    (tmp_path / "a" / "b" / "later.txt").write_text("x")
    await rec.until(("added", "a/b/later.txt"))


async def test_a_renamed_folder_reports_later_changes_under_its_new_name(
    tmp_path: Path, watched: Start
) -> None:
    (tmp_path / "old" / "sub").mkdir(parents=True)
    _, rec = await watched()
    os.rename(tmp_path / "old", tmp_path / "new")
    await rec.until(("moved", "old", "new"))
    (tmp_path / "new" / "sub" / "x.txt").write_text("x")
    await rec.until(("added", "new/sub/x.txt"))


async def test_moves_into_and_out_of_the_storage_are_adds_and_removals(
    tmp_path: Path, watched: Start
) -> None:
    root = tmp_path / "root"
    (root / "out").mkdir(parents=True)
    (tmp_path / "incoming").mkdir()
    (tmp_path / "incoming" / "inner.txt").write_text("x")
    _, rec = await watched(root)
    os.rename(tmp_path / "incoming", root / "incoming")
    await rec.until(("added", "incoming"))
    os.rename(root / "out", tmp_path / "gone")
    await rec.until(("removed", "out"))
    # The moved-out folder is no longer watched where it went.
    (tmp_path / "gone" / "late.txt").write_text("x")
    # The moved-in one is watched, children included.
    (root / "incoming" / "more.txt").write_text("x")
    await rec.until(("added", "incoming/more.txt"))
    assert not [c for c in await rec.settle() if "late.txt" in c[-1]]


async def test_an_upload_is_reported_once_under_its_final_name(
    tmp_path: Path, watched: Start
) -> None:
    storage, rec = await watched()
    upload = await storage.create(NewObject("", "photo.jpg", 0x3801, 4))
    await upload.write(b"jpeg")
    await upload.commit()
    await rec.until(("added", "photo.jpg"))
    calls = await rec.settle()
    assert all(c[-1] == "photo.jpg" for c in calls), calls


async def test_an_aborted_upload_is_not_reported(tmp_path: Path, watched: Start) -> None:
    storage, rec = await watched()
    upload = await storage.create(NewObject("", "photo.jpg", 0x3801, 4))
    await upload.write(b"jp")
    await upload.abort()
    (tmp_path / "marker").write_text("x")
    await rec.until(("added", "marker"))
    assert [c for c in await rec.settle() if c[-1] != "marker"] == []


async def test_hidden_files_are_silent_unless_shown(tmp_path: Path, watched: Start) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "shown").mkdir()
    _, rec = await watched(tmp_path / "plain")
    _, shown = await watched(tmp_path / "shown", show_hidden=True)
    for root in (tmp_path / "plain", tmp_path / "shown"):
        (root / ".cache").mkdir()
        (root / ".cache" / "x").write_text("x")
        (root / "visible").write_text("x")
    await rec.until(("added", "visible"))
    await shown.until(("added", ".cache"), ("added", "visible"))
    assert [c[-1] for c in await rec.settle() if c[-1] != "visible"] == []


async def test_a_renamed_to_hidden_file_is_removed_and_back_is_added(
    tmp_path: Path, watched: Start
) -> None:
    (tmp_path / "a.txt").write_text("x")
    _, rec = await watched()
    os.rename(tmp_path / "a.txt", tmp_path / ".a.txt")
    await rec.until(("removed", "a.txt"))
    os.rename(tmp_path / ".a.txt", tmp_path / "a.txt")
    await rec.until(("added", "a.txt"))


async def test_a_symlink_leading_out_is_not_reported(tmp_path: Path, watched: Start) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").write_text("x")
    _, rec = await watched(root)
    (root / "escape").symlink_to(tmp_path / "secret")
    (root / "inside").symlink_to("escape-not")
    (root / "marker").write_text("x")
    await rec.until(("added", "marker"))
    assert [c for c in await rec.settle() if c[-1] != "marker"] == []


async def test_a_deleted_tree_reports_its_objects_removed(tmp_path: Path, watched: Start) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f.txt").write_text("x")
    storage, rec = await watched()
    await storage.delete("d")
    await rec.until(("removed", "d/e/f.txt"), ("removed", "d/e"), ("removed", "d"))


async def test_every_storage_of_a_provider_is_watched(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    rec = Recorder()
    provider = FilesProvider(
        "files", {"storages": [{"path": str(tmp_path / "a")}, {"path": str(tmp_path / "b")}]}, rec
    )
    await nursery.start(provider.run)
    (tmp_path / "a" / "x").write_text("x")
    (tmp_path / "b" / "y").write_text("y")
    await rec.until(("added", "x"), ("added", "y"))
    a, b = provider.storages()
    assert rec.storages[rec.calls.index(("added", "x"))] is a
    assert rec.storages[rec.calls.index(("added", "y"))] is b


async def test_a_lost_event_queue_reannounces_the_storage(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    # An overflow cannot be provoked cheaply; feed the event to the handler.
    rec = Recorder()
    provider = FilesProvider("files", {"storages": [{"path": str(tmp_path)}]}, rec)
    watcher = watch_mod.TreeWatcher(provider.storages()[0], rec)
    await nursery.start(watcher.run)
    watcher.process([watch_mod.Event(-1, watch_mod.IN_Q_OVERFLOW, 0, "")])
    assert rec.calls == [("storage_removed",), ("storage_added",)]


async def test_leftovers_of_interrupted_uploads_are_swept_at_start(
    tmp_path: Path, watched: Start
) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / ".mtp-partial-0123").write_bytes(b"half a photo")
    (tmp_path / ".mtp-partial-4567" / "sub").mkdir(parents=True)  # a copied tree
    (tmp_path / ".keep").write_text("a user's hidden file")
    await watched()
    assert sorted(p.name for p in tmp_path.rglob("*")) == [".keep", "d"]


async def test_a_read_only_storage_sweeps_nothing(tmp_path: Path, watched: Start) -> None:
    (tmp_path / ".mtp-partial-0123").write_bytes(b"x")
    await watched(read_only=True)
    assert (tmp_path / ".mtp-partial-0123").exists()


async def test_a_failing_notification_does_not_stop_the_watcher(
    tmp_path: Path, watched: Start, caplog: pytest.LogCaptureFixture
) -> None:
    _, rec = await watched()
    record = rec.object_added
    failed = trio.Event()

    def flaky(storage: Any, key: str) -> None:
        if key == "boom":
            failed.set()
            raise RuntimeError("framework bug")
        record(storage, key)

    rec.object_added = flaky  # type: ignore[method-assign]
    (tmp_path / "boom").write_text("x")
    with trio.fail_after(5):
        await failed.wait()
    (tmp_path / "after").write_text("x")
    await rec.until(("added", "after"))
    assert "framework bug" in caplog.text


async def test_a_symlink_leading_out_renamed_in_the_storage_is_never_added(
    tmp_path: Path, watched: Start
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").write_text("x")
    (root / "escape").symlink_to(tmp_path / "secret")
    _, rec = await watched(root)
    os.rename(root / "escape", root / "renamed")
    (root / "marker").write_text("x")
    await rec.until(("added", "marker"))
    calls = await rec.settle()
    assert not [c for c in calls if c[0] in ("added", "moved") and c[-1] != "marker"]
