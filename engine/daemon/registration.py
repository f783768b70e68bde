"""Parsing of ``backup_registration*.xml`` files (engine/README.md, Drives and data owners).

Registration files are written by app developers and are often sloppy, so the
parser is tolerant: unknown elements and attributes, bad SIDs and foreign paths
are ignored and logged, never fatal; only a file that is not a registration at
all turns the owner's options off. XML is parsed with defusedxml because the
files come from any installed app, so whatever one of them holds is that
owner's problem alone: the parser never raises, and an owner whose files cannot
be read is listed disabled, with the reason (``Registration.disabled_reason``).
"""

from __future__ import annotations

import logging
import posixpath
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers.expat import ExpatError

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from ..types import ActiveType, format_sid
from .config import DEFAULT_CALLBACK_TIMEOUT, DEFAULT_CENTRAL_REPOSITORY

log = logging.getLogger(__name__)

PRIMARY_NAME = "backup_registration.xml"
REGISTRATION_RE = re.compile(r"^backup_registration.*\.xml$", re.IGNORECASE)
MAX_REGISTRATION_BYTES = 1 << 20
MAX_NAME = 64

PARSE_ERRORS = (
    ET.ParseError,
    ExpatError,
    DefusedXmlException,
    OSError,
    LookupError,  # an encoding Python does not know: encoding="bogus"
    ValueError,  # UnicodeError among them: bytes that are not the declared encoding
    RecursionError,
    MemoryError,
)
"""What reading and parsing one untrusted XML file can raise."""

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@dataclass(frozen=True)
class PublicSelection:
    """One public include/exclude: ``drive`` is a letter, ``'!'`` (any drive)."""

    include: bool
    drive: str
    path: str
    is_dir: bool


@dataclass
class Registration:
    """Everything the registration files of one owner say, merged."""

    sid: int
    files: list[Path] = field(default_factory=list)
    name: str | None = None
    has_primary: bool = False
    parse_failed: bool = False
    problems: list[str] = field(default_factory=list)
    # passive
    passive: bool = False
    passive_selective: bool = False
    delete_before_restore: bool = False
    base_backup_only: bool = False
    includes: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    # public
    public: bool = False
    public_delete_before_restore: bool = False
    public_selections: list[PublicSelection] = field(default_factory=list)
    # active
    active: bool = False
    process_name: str | None = None
    requires_delay: bool = False
    active_selective: bool = False
    supports_incremental: bool = True
    active_type: ActiveType = ActiveType.ACTIVE_ONLY
    callback_timeout: float = DEFAULT_CALLBACK_TIMEOUT
    # others
    proxies: list[int] = field(default_factory=list)
    dbms_policies: list[int] = field(default_factory=list)
    system_backup: bool = False
    requires_reboot: bool = False

    fatal: str | None = None
    _seen_includes: set[str] = field(default_factory=set, repr=False)
    _seen_excludes: set[str] = field(default_factory=set, repr=False)

    def problem(self, text: str) -> None:
        self.problems.append(text)
        log.warning("registration of %s: %s", format_sid(self.sid), text)

    def fail(self, text: str) -> None:
        """A problem that disables the owner; the first one is the reason shown."""
        self.parse_failed = True
        if self.fatal is None:
            self.fatal = text
        self.problem(text)

    @property
    def disabled_reason(self) -> str | None:
        """Why the owner is listed with every option off, or None if it is not."""
        if not self.parse_failed:
            return None
        return self.fatal or "registration files cannot be used"

    @property
    def is_proxy_only(self) -> bool:
        """A pure proxy implementation: not listed as an owner of its own."""
        return (
            self.active
            and self.active_type is ActiveType.PROXY_ONLY
            and not (self.passive or self.public or self.system_backup or self.proxies)
        )


def _yes(value: str | None) -> bool:
    return value is not None and value.strip().lower() == "yes"


def _attrs(el: ET.Element) -> dict[str, str]:
    return {k.lower(): v for k, v in el.attrib.items()}


def _tag(el: ET.Element) -> str:
    tag = el.tag if isinstance(el.tag, str) else ""
    return tag.rsplit("}", 1)[-1].lower()


def _parse_hex_sid(text: str | None) -> int | None:
    if text is None:
        return None
    t = text.strip()
    if t[:2].lower() == "0x":
        t = t[2:]
    if not t or len(t) > 8 or not re.fullmatch(r"[0-9a-fA-F]+", t):
        return None
    return int(t, 16)


def normalise_passive_path(name: str, sid: int, is_dir: bool) -> str | None:
    """Map a passive selection onto a path relative to the owner's private directory.

    Returns None when the selection must be ignored (empty, foreign, escaping).
    ``""`` means the whole private directory; directory selections end in ``/``.
    """
    if not name or not name.strip():
        return None
    p = name.strip().replace("\\", "/")
    marker = f"/private/{format_sid(sid)}/"
    idx = p.lower().find(marker.lower())
    if idx >= 0:
        p = p[idx + len(marker) :]
    elif ":" in p:
        return None
    elif p.lower().rstrip("/") == f"/private/{format_sid(sid)}".lower():
        p = ""
    p = p.lstrip("/")
    parts = [x for x in p.split("/") if x not in ("", ".")]
    if any(x == ".." for x in parts):
        return None
    rel = "/".join(parts)
    if is_dir and rel:
        rel += "/"
    return rel


def normalise_public_path(name: str, include: bool, is_dir: bool) -> PublicSelection | None:
    """Public selections must be absolute (``c:\\x`` or ``!:\\x``); others are ignored."""
    if not name or ":" not in name:
        if include or not name.strip().startswith(("\\", "/")):
            return None
        # An exclude starting with a separator applies on any drive.
        drive, rest = "!", name.strip()
    else:
        drive, rest = name.strip().split(":", 1)
        drive = drive.strip().lower()
        if drive != "!" and (len(drive) != 1 or not drive.isalpha()):
            return None
    rest = rest.replace("\\", "/")
    parts = [x for x in rest.split("/") if x not in ("", ".")]
    if any(x == ".." for x in parts):
        return None
    path = "/".join(parts)
    if is_dir or rest.endswith("/"):
        path = path + "/" if path else ""
    return PublicSelection(include, drive, path, is_dir or rest.endswith("/") or not path)


def _parse_selections(reg: Registration, parent: ET.Element, public: bool) -> None:
    for el in parent.iter():
        if el is parent:
            continue
        tag = _tag(el)
        a = _attrs(el)
        if tag not in ("include_directory", "include_file", "exclude"):
            reg.problem(f"ignored element <{tag}> in selections")
            continue
        for k in a:
            if k != "name":
                reg.problem(f"ignored attribute {k!r} on <{tag}>")
        name = a.get("name", "")
        is_dir = tag == "include_directory"
        include = tag != "exclude"
        if public:
            sel = normalise_public_path(name, include, is_dir)
            if sel is None:
                reg.problem(f"ignored public path {name!r}")
            else:
                reg.public_selections.append(sel)
            continue
        rel = normalise_passive_path(name, reg.sid, is_dir)
        if rel is None:
            reg.problem(f"ignored passive path {name!r}")
            continue
        # Sets beside the ordered lists: a 1 MiB file holds tens of thousands of
        # selections, and a list membership test per selection is quadratic.
        if include:
            if rel not in reg._seen_includes:
                reg._seen_includes.add(rel)
                reg.includes.append(rel)
        else:
            if name.strip().replace("\\", "/").endswith("/") and rel and not rel.endswith("/"):
                rel += "/"
            if rel and rel not in reg._seen_excludes:
                reg._seen_excludes.add(rel)
                reg.excludes.append(rel)


def parse_registration_file(
    reg: Registration, path: Path, primary: bool, central_repository: int
) -> None:
    """Merge one file into ``reg``; parsing failures mark the owner but never raise."""
    try:
        if path.stat().st_size > MAX_REGISTRATION_BYTES:
            raise ValueError(f"file too large (more than {MAX_REGISTRATION_BYTES} bytes)")
        tree = SafeET.parse(str(path), forbid_dtd=True)
    except PARSE_ERRORS as e:
        reg.fail(f"{path.name}: cannot parse: {_describe(e)}")
        return
    root = tree.getroot()
    if _tag(root) != "backup_registration":
        reg.fail(f"{path.name}: root element is <{_tag(root)}>")
        return
    ra = _attrs(root)
    version = ra.get("version")
    if version is not None and version.strip() != "1.0":
        reg.fail(f"{path.name}: unsupported version {version!r}")
        return
    if primary and ra.get("name"):
        reg.name = _CONTROL_RE.sub(" ", ra["name"]).strip()[:MAX_NAME].strip() or None
    for el in root:
        tag = _tag(el)
        a = _attrs(el)
        if tag == "passive_backup":
            if primary:
                reg.passive = True
                reg.passive_selective = _yes(a.get("supports_selective"))
                reg.delete_before_restore = _yes(a.get("delete_before_restore"))
                reg.base_backup_only = _yes(a.get("base_backup_only"))
            _parse_selections(reg, el, public=False)
        elif tag == "public_backup":
            reg.public = True
            reg.public_delete_before_restore = _yes(a.get("delete_before_restore"))
            _parse_selections(reg, el, public=True)
        elif tag == "active_backup":
            if not primary:
                reg.problem(f"{path.name}: <active_backup> only honoured in the primary file")
                continue
            reg.active = True
            reg.process_name = (a.get("process_name") or "").strip() or None
            reg.requires_delay = _yes(a.get("requires_delay_to_prepare_data"))
            reg.active_selective = _yes(a.get("supports_selective"))
            inc = a.get("supports_incremental")
            reg.supports_incremental = True if inc is None else _yes(inc)
            at = (a.get("active_type") or "activeonly").strip().lower()
            try:
                reg.active_type = ActiveType(at)
            except ValueError:
                reg.problem(f"unknown active_type {at!r}, using activeonly")
                reg.active_type = ActiveType.ACTIVE_ONLY
            cdt = a.get("callback_delay_time")
            if cdt is not None:
                us = _parse_microseconds(cdt)
                if us is None:
                    reg.problem(f"invalid callback_delay_time {cdt[:32]!r}")
                else:
                    reg.callback_timeout = us / 1e6
        elif tag in ("proxy_data_manager", "cenrep_backup"):
            sid = central_repository if tag == "cenrep_backup" else _parse_hex_sid(a.get("sid"))
            if sid is None or sid == 0 or sid == reg.sid:
                reg.problem(f"ignored proxy {a.get('sid')!r}")
            elif sid not in reg.proxies:
                reg.proxies.append(sid)
        elif tag == "dbms_backup":
            pol = _parse_hex_sid(a.get("policy"))
            if pol is None:
                reg.problem(f"ignored dbms policy {a.get('policy')!r}")
            else:
                reg.passive = True
                if pol not in reg.dbms_policies:
                    reg.dbms_policies.append(pol)
        elif tag == "system_backup":
            reg.system_backup = True
        elif tag == "restore":
            if primary and a:
                first = next(iter(a))
                if first == "requires_reboot":
                    reg.requires_reboot = _yes(a[first])
        else:
            reg.problem(f"{path.name}: ignored element <{tag}>")


MAX_CALLBACK_DELAY_US = 10**15
"""About 31 years; a longer watchdog is not a number anyone meant (and a float
cannot hold every integer a file can spell)."""


def _parse_microseconds(text: str) -> int | None:
    """A positive decimal integer of ASCII digits, else None (the default applies).

    ``int()`` alone would accept digits of other scripts and numbers whose
    conversion to seconds overflows a float.
    """
    t = text.strip()
    if not (t.isascii() and t.isdigit()) or len(t) > len(str(MAX_CALLBACK_DELAY_US)):
        return None
    us = int(t)
    return us if 0 < us <= MAX_CALLBACK_DELAY_US else None


def _describe(e: BaseException) -> str:
    return (str(e) or type(e).__name__)[:200]


def load_registration(
    sid: int, files: list[Path], central_repository: int | None = None
) -> Registration:
    """Parse all registration files of one owner; the primary one is read first."""
    cr = DEFAULT_CENTRAL_REPOSITORY if central_repository is None else central_repository
    reg = Registration(sid=sid, files=sorted(files))
    primaries = [f for f in reg.files if f.name.lower() == PRIMARY_NAME]
    others = [f for f in reg.files if f.name.lower() != PRIMARY_NAME]
    reg.has_primary = bool(primaries)
    if not reg.has_primary:
        reg.problem("no primary backup_registration.xml")
    for f in primaries[:1]:
        parse_registration_file(reg, f, True, cr)
    for f in others + primaries[1:]:
        parse_registration_file(reg, f, False, cr)
    if reg.parse_failed or not reg.has_primary:
        _clear_options(reg)
    return reg


def _clear_options(reg: Registration) -> None:
    """An owner whose files fail to parse is listed with every option off."""
    fresh = Registration(sid=reg.sid, files=reg.files, name=reg.name)
    fresh.has_primary = reg.has_primary
    fresh.parse_failed = True
    fresh.fatal = reg.fatal or (None if reg.has_primary else "no primary backup_registration.xml")
    fresh.problems = reg.problems
    reg.__dict__.update(fresh.__dict__)


def registration_relpaths(files: list[Path], private_dir: Path) -> set[str]:
    """Registration files as paths relative to the private directory (always excluded)."""
    out: set[str] = set()
    for f in files:
        try:
            out.add(posixpath.normpath(f.relative_to(private_dir).as_posix()))
        except ValueError:
            continue
    return out
