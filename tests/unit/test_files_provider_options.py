"""The files provider's config table: what it accepts, and how it says no."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from data_providers.files import FilesProvider, StorageOptions, parse_options
from mtp_responder.core.codes import AccessCapability, StorageType


class _NoEvents:
    def object_added(self, storage: Any, key: str) -> None: ...
    def object_removed(self, storage: Any, key: str) -> None: ...
    def object_changed(self, storage: Any, key: str) -> None: ...
    def object_moved(self, storage: Any, old_key: str, new_key: str) -> None: ...
    def storage_added(self, storage: Any) -> None: ...
    def storage_removed(self, storage: Any) -> None: ...


def one(path: Path, **opts: Any) -> StorageOptions:
    return parse_options({"storages": [{"path": str(path), **opts}]})[0]


def test_defaults_for_a_bare_path(tmp_path: Path) -> None:
    opts = one(tmp_path)
    assert opts == StorageOptions(path=str(tmp_path), description=tmp_path.name)
    assert (opts.read_only, opts.uid, opts.gid, opts.umask) == (False, None, None, 0o022)
    assert (opts.show_hidden, opts.removable) == (False, False)


def test_root_directory_is_described_as_internal_storage() -> None:
    assert one(Path("/")).description == "Internal storage"


def test_every_option_is_taken(tmp_path: Path) -> None:
    opts = one(
        tmp_path,
        description="Card",
        read_only=True,
        uid=1000,
        gid=100,
        umask=0o077,
        show_hidden=True,
        removable=True,
    )
    assert opts == StorageOptions(str(tmp_path), "Card", True, 1000, 100, 0o077, True, True)


def test_provider_builds_one_storage_per_table(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    provider = FilesProvider(
        "files",
        {"storages": [{"path": str(tmp_path / "a")}, {"path": str(tmp_path / "b")}]},
        _NoEvents(),
    )
    assert [s.describe().description for s in provider.storages()] == ["a", "b"]


def test_removable_and_read_only_show_in_storage_info(tmp_path: Path) -> None:
    provider = FilesProvider(
        "files",
        {"storages": [{"path": str(tmp_path), "removable": True, "read_only": True}]},
        _NoEvents(),
    )
    info = provider.storages()[0].describe()
    assert info.storage_type == StorageType.REMOVABLE_RAM
    assert info.access == AccessCapability.READ_ONLY_WITHOUT_DELETE
    fixed = FilesProvider("files", {"storages": [{"path": str(tmp_path)}]}, _NoEvents())
    assert fixed.storages()[0].describe().storage_type == StorageType.FIXED_RAM


@pytest.mark.parametrize(
    ("table", "names"),
    [
        ({}, "files.storages: required"),
        ({"storages": []}, "files.storages: must be a non-empty list"),
        ({"storages": {"path": "/"}}, "files.storages: must be a non-empty list"),
        ({"storages": ["/"]}, "files.storages[0]: must be a table"),
        ({"storages": [{}]}, "files.storages[0].path: required"),
        ({"storages": [{"path": 3}]}, "files.storages[0].path: must be a non-empty string"),
        ({"storages": [{"path": ""}]}, "files.storages[0].path: must be a non-empty string"),
        ({"storage": []}, "files.storage: unknown option"),
    ],
)
def test_malformed_tables_are_refused_naming_the_key(table: dict[str, Any], names: str) -> None:
    with pytest.raises(ValueError, match="^" + names.replace("[", r"\[").replace("]", r"\]")):
        parse_options(table)


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("read_only", 1, "must be true or false"),
        ("read_only", "yes", "must be true or false"),
        ("show_hidden", "no", "must be true or false"),
        ("removable", 0, "must be true or false"),
        ("uid", -1, "numeric user/group id"),
        ("uid", "pi", "numeric user/group id"),
        ("gid", True, "numeric user/group id"),
        ("umask", 0o1000, "between 0 and 0o777"),
        ("umask", "022", "between 0 and 0o777"),
        ("description", "", "non-empty string"),
        ("description", "x" * 255, "longer than 254"),
        ("readonly", True, "unknown option"),
    ],
)
def test_bad_storage_options_are_refused_naming_the_key(
    tmp_path: Path, key: str, value: Any, why: str
) -> None:
    with pytest.raises(ValueError, match=rf"^files\.storages\[0\]\.{key}: .*{why}"):
        one(tmp_path, **{key: value})


def test_path_must_be_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"storages\[0\]\.path: .* is not an existing directory"):
        one(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not an existing directory"):
        one(tmp_path / "file")


def test_two_storages_on_one_directory_are_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "d")
    with pytest.raises(ValueError, match=r"storages\[1\]\.path: same directory as storages\[0\]"):
        parse_options(
            {"storages": [{"path": str(tmp_path / "d")}, {"path": str(tmp_path / "alias")}]}
        )


def test_errors_are_named_after_the_provider_instance(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^providers\.photos\.storages: required"):
        FilesProvider("photos", {}, _NoEvents())
