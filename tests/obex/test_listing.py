"""The folder listing and capability objects: valid XML a stock client parses."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone

from obex_backup_server.core.listing import (
    ListingEntry,
    capability,
    folder_listing,
    obex_time,
)


def parse(document: bytes) -> ET.Element:
    return ET.fromstring(document)


def test_a_listing_declares_the_folder_listing_dtd_and_version() -> None:
    document = folder_listing([], at_root=True)
    assert b'<!DOCTYPE folder-listing SYSTEM "obex-folder-listing.dtd">' in document
    root = parse(document)
    assert root.tag == "folder-listing" and root.get("version") == "1.0"
    assert list(root) == []


def test_only_a_folder_below_the_root_has_a_parent_folder() -> None:
    assert parse(folder_listing([], at_root=True)).find("parent-folder") is None
    below = parse(folder_listing([], at_root=False))
    assert below[0].tag == "parent-folder"


def test_files_carry_size_and_utc_modified_time_folders_no_size() -> None:
    moment = datetime(2026, 11, 28, 9, 5, 7, tzinfo=timezone(timedelta(hours=2)))
    root = parse(
        folder_listing(
            [
                ListingEntry("DCIM", folder=True, modified=moment),
                ListingEntry("notes.txt", folder=False, size=1234, modified=moment),
                ListingEntry("empty", folder=False),
            ],
            at_root=True,
        )
    )
    folder, file, empty = list(root)
    assert (folder.tag, folder.attrib) == (
        "folder",
        {"name": "DCIM", "modified": "20261128T070507Z"},
    )
    assert file.tag == "file"
    assert file.attrib == {"name": "notes.txt", "size": "1234", "modified": "20261128T070507Z"}
    assert empty.attrib == {"name": "empty", "size": "0"}


def test_naive_times_are_taken_as_utc() -> None:
    assert obex_time(datetime(2026, 1, 2, 3, 4, 5)) == "20260102T030405Z"
    assert obex_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "20260102T030405Z"


def test_names_are_escaped_and_read_back_exactly() -> None:
    names = ['a"b', "x<y>&z", "it's", "tab\there", "line\nbreak", "été 日本"]
    root = parse(folder_listing([ListingEntry(n, folder=False) for n in names], at_root=True))
    assert [e.get("name") for e in root] == names


def test_a_name_xml_cannot_carry_is_left_out_not_the_listing_broken() -> None:
    entries = [
        ListingEntry("bell\x07", folder=False),
        ListingEntry("undecodable\udcff", folder=False),
        ListingEntry("fine", folder=False),
    ]
    root = parse(folder_listing(entries, at_root=True))
    assert [e.get("name") for e in root] == ["fine"]


def test_capability_names_the_device_and_the_folder_browsing_service() -> None:
    root = parse(capability(manufacturer="A & B", model="Board <1>", serial="42"))
    assert root.tag == "Capability"
    assert root.findtext("General/Manufacturer") == "A & B"
    assert root.findtext("General/Model") == "Board <1>"
    assert root.findtext("General/SN") == "42"
    assert root.findtext("Service/UUID") == "F9EC7BC4-953C-11D2-984E-525400DC9E09"
