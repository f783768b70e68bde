"""The objects a Folder Browsing server makes up: folder listings and capability.

A client lists the current folder with a GET of Type ``x-obex/folder-listing``
and reads what the server is with ``x-obex/capability``; both are small XML
documents whose shape clients (obexftp, GNOME, KDE) parse by the
folder-listing DTD.  Names are XML-escaped; a name XML 1.0 cannot carry at
all (a control character, bytes that are not UTF-8) is left out rather than
making the whole listing unreadable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from .codes import FOLDER_BROWSING_UUID

FOLDER_LISTING_TYPE = "x-obex/folder-listing"
CAPABILITY_TYPE = "x-obex/capability"

_NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
"""Characters no XML 1.0 document may contain, even as a reference."""


_ATTRIBUTE = {'"': "&quot;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}
"""What an attribute value escapes beyond ``&<>``: its quote, and the white space
a parser would otherwise normalise to plain spaces."""


@dataclass(frozen=True, slots=True)
class ListingEntry:
    """One child of the listed folder."""

    name: str
    folder: bool
    size: int = 0
    modified: datetime | None = None
    """Naive times are taken as UTC."""


def xml_safe(name: str) -> bool:
    """Whether ``name`` can appear in an XML document at all."""
    return _NOT_IN_XML.search(name) is None


def obex_time(moment: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ``: the UTC time form of folder listings and the Time header."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def folder_listing(entries: Iterable[ListingEntry], *, at_root: bool) -> bytes:
    """The ``x-obex/folder-listing`` document of a folder's ``entries``.

    ``<parent-folder/>`` tells the client it can go up, so the root has none.
    """
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<!DOCTYPE folder-listing SYSTEM "obex-folder-listing.dtd">',
        '<folder-listing version="1.0">',
    ]
    if not at_root:
        lines.append("  <parent-folder/>")
    for entry in entries:
        if not xml_safe(entry.name):
            continue
        attributes = [f'name="{escape(entry.name, _ATTRIBUTE)}"']
        if not entry.folder:
            attributes.append(f'size="{max(0, entry.size)}"')
        if entry.modified is not None:
            attributes.append(f'modified="{obex_time(entry.modified)}"')
        element = "folder" if entry.folder else "file"
        lines.append(f"  <{element} {' '.join(attributes)}/>")
    lines.append("</folder-listing>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _uuid_text(uuid: bytes) -> str:
    h = uuid.hex().upper()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def capability(*, manufacturer: str, model: str, serial: str | None = None) -> bytes:
    """A small ``x-obex/capability`` document: who the device is, what it serves."""
    general = [
        f"    <Manufacturer>{escape(_printable(manufacturer))}</Manufacturer>",
        f"    <Model>{escape(_printable(model))}</Model>",
    ]
    if serial is not None:
        general.append(f"    <SN>{escape(_printable(serial))}</SN>")
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<!DOCTYPE Capability SYSTEM "obex-capability.dtd">',
        '<Capability Version="1.0">',
        "  <General>",
        *general,
        "  </General>",
        "  <Service>",
        "    <Name>Folder-Browsing</Name>",
        f"    <UUID>{_uuid_text(FOLDER_BROWSING_UUID)}</UUID>",
        "  </Service>",
        "</Capability>",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _printable(value: str) -> str:
    return _NOT_IN_XML.sub("", value)
