"""A bad registration file disables its own owner, with a reason, and nobody else.

Registration files come from any installed app. Whatever one of them holds (an
encoding Python does not know, bytes that are not what the declaration says, a
file too large to read), the parser reports it as that owner's problem:
``backup-engine owners`` lists the owner as disabled with the reason, and
``backup-engine backup`` backs up every other owner.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from engine.daemon.config import EngineConfig
from engine.daemon.registration import MAX_REGISTRATION_BYTES, load_registration
from engine.types import format_sid

from .conftest import EngineProcess
from .helpers import PASSIVE_ALL, private, register, write_file

GOOD = 0x0FA00020
BOGUS_ENCODING = 0x0FA00021
HUGE_DELAY = 0x0FA00022

BOGUS_XML = b"""<?xml version="1.0" encoding="bogus"?>
<backup_registration version="1.0"><passive_backup><include_directory name="\\"/>
</passive_backup></backup_registration>
"""

HUGE_DELAY_XML = (
    b'<backup_registration version="1.0"><active_backup process_name="x.py"'
    b' callback_delay_time="' + b"9" * 400 + b'"/></backup_registration>'
)


def _write(cfg: EngineConfig, sid: int, data: bytes) -> Path:
    path = private(cfg, sid) / "backup_registration.xml"
    path.write_bytes(data)
    return path


def test_owners_lists_a_bad_registration_as_disabled_with_its_reason(
    cfg: EngineConfig, engine_proc: EngineProcess
) -> None:
    register(cfg, GOOD, PASSIVE_ALL)
    _write(cfg, BOGUS_ENCODING, BOGUS_XML)
    _write(cfg, HUGE_DELAY, HUGE_DELAY_XML)
    out = engine_proc.cli("owners", check=False)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert "disabled" not in lines[format_sid(GOOD)]
    assert "passive" in lines[format_sid(GOOD)]
    assert "disabled" in lines[format_sid(BOGUS_ENCODING)]
    assert "bogus" in lines[format_sid(BOGUS_ENCODING)]
    # A value out of range is ignored, as any invalid value: the owner stays listed.
    assert "disabled" not in lines[format_sid(HUGE_DELAY)]
    assert "active" in lines[format_sid(HUGE_DELAY)]


def test_backup_saves_the_other_owners(
    cfg: EngineConfig, engine_proc: EngineProcess, tmp_path: Path
) -> None:
    pd = register(cfg, GOOD, PASSIVE_ALL)
    write_file(pd / "notes.txt", b"kept safe")
    _write(cfg, BOGUS_ENCODING, BOGUS_XML)
    write_file(private(cfg, BOGUS_ENCODING) / "data.bin", b"not backed up")
    arc = tmp_path / "b.mbak"
    r = engine_proc.cli("-q", "backup", str(arc), check=False)
    assert r.returncode == 0, r.stderr
    x = tmp_path / "x"
    x.mkdir()
    subprocess.run(["tar", "-xf", str(arc), "-C", str(x)], check=True)
    owners = x / "owners"
    assert (owners / format_sid(GOOD) / "c" / "files" / "notes.txt").read_bytes() == b"kept safe"
    assert not list(owners.glob(f"{format_sid(BOGUS_ENCODING)}/**/data.bin"))


HOSTILE = {
    "unknown encoding": (BOGUS_XML, "bogus"),
    "declared UTF-16, written UTF-8": (
        b'<?xml version="1.0" encoding="utf-16"?><backup_registration version="1.0"/>',
        "cannot parse",
    ),
    "Latin-1 bytes in a UTF-8 file": (
        b'<backup_registration version="1.0" name="Caf\xe9"/>',
        "cannot parse",
    ),
    "a DTD": (
        b'<!DOCTYPE x [<!ENTITY a "b">]><backup_registration version="1.0"/>',
        "cannot parse",
    ),
    "NUL bytes": (b"\x00" * 64, "cannot parse"),
    "empty": (b"", "cannot parse"),
    "too large": (b" " * (MAX_REGISTRATION_BYTES + 1), "too large"),
}


@pytest.mark.parametrize("data,reason", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_registration_disables_its_owner_with_a_reason(
    tmp_path: Path, data: bytes, reason: str
) -> None:
    path = tmp_path / "backup_registration.xml"
    path.write_bytes(data)
    reg = load_registration(GOOD, [path])
    assert reg.parse_failed
    assert reg.disabled_reason is not None and reason in reg.disabled_reason
    assert not (reg.passive or reg.active or reg.public)


def test_a_sound_registration_has_no_disabled_reason(tmp_path: Path) -> None:
    path = tmp_path / "backup_registration.xml"
    path.write_text(PASSIVE_ALL)
    reg = load_registration(GOOD, [path])
    assert reg.passive and reg.disabled_reason is None


def test_a_name_cannot_break_the_owner_listing(tmp_path: Path) -> None:
    """Control characters in the name would split ``backup-engine owners`` lines."""
    path = tmp_path / "backup_registration.xml"
    path.write_bytes(b'<backup_registration version="1.0" name="a&#10;b&#9;c"/>')
    assert load_registration(GOOD, [path]).name == "a b c"


def test_a_callback_delay_beyond_a_float_means_the_default(tmp_path: Path) -> None:
    path = tmp_path / "backup_registration.xml"
    path.write_bytes(HUGE_DELAY_XML)
    reg = load_registration(GOOD, [path])
    assert reg.active and not reg.parse_failed
    assert reg.callback_timeout == 200.0
    assert any("callback_delay_time" in p for p in reg.problems)


def test_callback_delay_accepts_only_ascii_digits(tmp_path: Path) -> None:
    path = tmp_path / "backup_registration.xml"
    path.write_text(
        '<backup_registration version="1.0">'
        '<active_backup process_name="x.py" callback_delay_time="\u0663"/></backup_registration>'
    )
    reg = load_registration(GOOD, [path])
    assert not reg.parse_failed and reg.callback_timeout == 200.0


def test_many_distinct_selections_parse_in_linear_time(tmp_path: Path) -> None:
    """A 1 MiB file of distinct excludes must not take quadratic time to merge."""
    import time

    body = "".join(f'<exclude name="{i}"/>' for i in range(40000))
    path = tmp_path / "backup_registration.xml"
    path.write_text(
        f'<backup_registration version="1.0"><passive_backup>{body}'
        "</passive_backup></backup_registration>"
    )
    start = time.monotonic()
    reg = load_registration(GOOD, [path])
    assert len(reg.excludes) == 40000
    assert time.monotonic() - start < 5.0
