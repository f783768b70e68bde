"""SETPATH's current folder over the backup tree, and the names a request may carry."""

from __future__ import annotations

import pytest

from engine.serverkit import ErrorKind, ServerError
from obex_backup_server.core.codes import ResponseCode
from obex_backup_server.errors import OBEX_CODES, obex_code
from obex_backup_server.tree import CurrentFolder, check_name


def kind_of(call: object, *args: object, **kwargs: object) -> ErrorKind:
    assert callable(call)
    with pytest.raises(ServerError) as caught:
        call(*args, **kwargs)
    return caught.value.kind


def test_setpath_goes_down_up_and_to_the_root() -> None:
    cwd = CurrentFolder()
    assert cwd.at_root and cwd.key == ""
    cwd.setpath("Backup", up=False, create=False)
    cwd.setpath("owners", up=False, create=False)
    assert cwd.key == "Backup/owners"
    cwd.setpath(None, up=True, create=False)
    assert cwd.key == "Backup"
    cwd.setpath("Restore", up=True, create=False)
    assert cwd.key == "Restore"
    cwd.setpath("", up=False, create=False)
    assert cwd.at_root


def test_setpath_into_a_folder_that_exists_succeeds_with_the_create_flag() -> None:
    cwd = CurrentFolder()
    cwd.setpath("Incremental", up=False, create=True)
    assert cwd.key == "Incremental"


def test_no_folder_can_be_made_and_the_root_has_no_parent() -> None:
    cwd = CurrentFolder(["Backup"])
    assert kind_of(cwd.setpath, "New", up=False, create=True) is ErrorKind.DENIED
    assert kind_of(cwd.setpath, "New", up=False, create=False) is ErrorKind.NOT_FOUND
    assert kind_of(cwd.setpath, "Restore", up=False, create=False) is ErrorKind.NOT_FOUND
    assert cwd.key == "Backup", "a refused SETPATH leaves the current folder"
    root = CurrentFolder()
    assert kind_of(root.setpath, None, up=True, create=False) is ErrorKind.NOT_FOUND


@pytest.mark.parametrize("name", [None, "", ".", "..", "a/b", "a\\b", "nul\x00"])
def test_a_name_is_one_file_name(name: str | None) -> None:
    assert kind_of(check_name, name) is ErrorKind.BAD_NAME
    assert kind_of(CurrentFolder().setpath, name or "..", up=False, create=False) is (
        ErrorKind.BAD_NAME
    )


def test_a_child_key_joins_the_current_folder() -> None:
    assert CurrentFolder().child("Backup") == "Backup"
    assert CurrentFolder(["Restore"]).child("r.mbak") == "Restore/r.mbak"


def test_a_listing_names_its_folder_relative_or_absolute() -> None:
    cwd = CurrentFolder(["Backup"])
    assert cwd.folder(None) == cwd.folder("") == "Backup"
    assert cwd.folder("owners") == "Backup/owners"
    assert cwd.folder("/") == ""
    assert cwd.folder("/Restore") == "Restore"
    assert cwd.folder("../Incremental/") == "Incremental"
    assert kind_of(cwd.folder, "Nowhere") is ErrorKind.NOT_FOUND


def test_every_error_kind_has_an_obex_code() -> None:
    assert set(OBEX_CODES) == set(ErrorKind)
    assert obex_code(ServerError(ErrorKind.NOT_FOUND, "x")) is ResponseCode.NOT_FOUND
    assert obex_code(ServerError(ErrorKind.DENIED, "x")) is ResponseCode.FORBIDDEN
    assert obex_code(ServerError(ErrorKind.BAD_DATA, "x")) is ResponseCode.UNSUPPORTED_MEDIA_TYPE
    assert obex_code(ServerError(ErrorKind.BUSY, "x")) is ResponseCode.SERVICE_UNAVAILABLE
    assert obex_code(ServerError(ErrorKind.FAILED, "x")) is ResponseCode.INTERNAL_SERVER_ERROR
