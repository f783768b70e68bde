"""Backup and restore with Debian's obexftp, over TCP, against the server and a real engine.

How obexftp 0.24 reports a result: its exit status is the result of the
*last* operation on its command line, 255 when it succeeded, and the OBEX
response code without its final bit when the server refused it (Not Found
0xC4 exits 68); a refusal also prints ``failed: NAME`` on stderr and ``The
operation failed with return code N`` on stdout.  So each command here ends
with the operation under test.  A refused CONNECT is different: obexftp
tries three times, printing ``unknown error on connect``, and exits 1.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path

from obex_backup_server.core.codes import ResponseCode

from .conftest import SID, ObexServer, needs_obexftp

OK = 255
"""obexftp's exit status when its last operation succeeded."""
NO_CONNECTION = 1
"""obexftp's exit status when it could not connect."""

pytestmark = needs_obexftp


def exit_code(code: ResponseCode) -> int:
    """obexftp's exit status when the server answered ``code``."""
    return int(code) & 0x7F


def obexftp(
    server: ObexServer, *args: str, cwd: Path, expect: int = OK
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["obexftp", "-n", f"127.0.0.1:{server.port}", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    assert result.returncode == expect, (
        f"obexftp {' '.join(args)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}\n"
        + server.log_text()
    )
    if expect not in (OK, NO_CONNECTION):
        assert f"The operation failed with return code {expect}" in result.stdout
    return result


def listing(output: str) -> dict[str, int | None]:
    """name -> size (None for a folder) of the folder-listing obexftp printed."""
    document = output[output.index("<?xml") : output.rindex("</folder-listing>") + 17]
    return {
        element.attrib["name"]: (int(element.attrib["size"]) if element.tag == "file" else None)
        for element in ET.fromstring(document)
        if element.tag in ("file", "folder")
    }


def one(names: dict[str, int | None], suffix: str) -> tuple[str, int]:
    [(name, size)] = [(n, s) for n, s in names.items() if n.endswith(suffix)]
    assert size is not None
    return name, size


def get_backup(server: ObexServer, into: Path) -> tuple[Path, Path]:
    """``-c Backup -l``, then get the full archive and its snapshot: their local paths."""
    into.mkdir(parents=True, exist_ok=True)
    names = listing(obexftp(server, "-c", "Backup", "-l", cwd=into).stdout)
    mbak, mbak_size = one(names, ".mbak")
    snapshot, snapshot_size = one(names, ".snapshot")
    obexftp(server, "-c", "Backup", "-g", mbak, "-g", snapshot, cwd=into)
    assert (into / mbak).stat().st_size == mbak_size
    assert (into / snapshot).stat().st_size == snapshot_size
    return into / mbak, into / snapshot


def change_the_owner(server: ObexServer) -> None:
    (server.owner_dir / "new.txt").write_text("added after the backup")
    (server.owner_dir / "d0" / "s0" / "f0.bin").write_bytes(b"modified after the backup")


FILES = f"owners/{SID:08X}/c/files/"


# -- the tree ----------------------------------------------------------------------------


def test_the_root_lists_backup_incremental_and_restore(server: ObexServer, tmp_path: Path) -> None:
    names = listing(obexftp(server, "-l", "/", cwd=tmp_path).stdout)
    assert names == {"Backup": None, "Incremental": None, "Restore": None}
    assert server.mode() == "NORMAL", "listing the root prepares nothing"


def test_the_capability_object_says_what_the_device_serves(
    server: ObexServer, tmp_path: Path
) -> None:
    output = obexftp(server, "-X", cwd=tmp_path).stdout
    document = ET.fromstring(output[output.index("<?xml") : output.rindex("</Capability>") + 13])
    assert document.findtext("General/Manufacturer") == "Linux"
    assert document.findtext("General/Model") == "Backup server"
    assert document.findtext("Service/Name") == "Folder-Browsing"


def test_an_unknown_folder_or_file_is_not_found(server: ObexServer, tmp_path: Path) -> None:
    result = obexftp(
        server,
        "-c",
        "Backup",
        "-g",
        "nothing.mbak",
        cwd=tmp_path,
        expect=exit_code(ResponseCode.NOT_FOUND),
    )
    assert "failed: nothing.mbak" in result.stderr
    obexftp(server, "-c", "Nowhere", cwd=tmp_path, expect=exit_code(ResponseCode.NOT_FOUND))
    server.wait_normal()


def test_backups_cannot_be_deleted_or_written(server: ObexServer, tmp_path: Path) -> None:
    names = listing(obexftp(server, "-c", "Backup", "-l", cwd=tmp_path).stdout)
    mbak, _ = one(names, ".mbak")
    obexftp(
        server, "-c", "Backup", "-k", mbak, cwd=tmp_path, expect=exit_code(ResponseCode.FORBIDDEN)
    )
    (tmp_path / "mine.mbak").write_bytes(b"x" * 100)
    obexftp(
        server,
        "-c",
        "Backup",
        "-p",
        "mine.mbak",
        cwd=tmp_path,
        expect=exit_code(ResponseCode.FORBIDDEN),
    )
    obexftp(server, "-C", "Made", cwd=tmp_path, expect=exit_code(ResponseCode.FORBIDDEN))
    server.wait_normal()


# -- backup ------------------------------------------------------------------------------


def test_a_full_backup_extracts_with_tarfile_to_the_owners_data(
    server: ObexServer, tmp_path: Path
) -> None:
    want = server.owner_state()
    mbak, _ = get_backup(server, tmp_path / "pc")
    server.wait_normal()
    out = tmp_path / "extract"
    with tarfile.open(mbak) as tar:
        assert tar.getnames()[0] == "manifest.json"
        mtimes = {
            m.name[len(FILES) :]: int(Decimal(m.pax_headers["mtime"]) * 10**9)
            for m in tar.getmembers()
            if m.name.startswith(FILES) and m.isfile() and "mtime" in m.pax_headers
        }
        tar.extractall(out, filter="tar")
    files = out / FILES
    got = {
        str(p.relative_to(files)): (p.read_bytes(), p.stat().st_mode & 0o7777)
        for p in files.rglob("*")
        if p.is_file()
    }
    assert got == {k: (v[1], v[2]) for k, v in want.items() if v[0] == "f"}
    assert mtimes == {k: v[3] for k, v in want.items() if v[0] == "f"}


def test_a_name_listed_in_one_session_is_got_in_a_later_one(
    server: ObexServer, tmp_path: Path
) -> None:
    """Each obexftp command is a session, and each prepares its backup anew."""
    listed, size = one(listing(obexftp(server, "-c", "Backup", "-l", cwd=tmp_path).stdout), ".mbak")
    server.wait_normal()
    time.sleep(1.1)  # the next preparation's name carries a later second
    obexftp(server, "-c", "Backup", "-g", listed, cwd=tmp_path)
    assert (tmp_path / listed).stat().st_size == size
    now, _ = one(listing(obexftp(server, "-c", "Backup", "-l", cwd=tmp_path).stdout), ".mbak")
    assert now != listed
    server.wait_normal()


def test_an_increment_against_a_snapshot_put_into_incremental(
    server: ObexServer, tmp_path: Path
) -> None:
    pc = tmp_path / "pc"
    _, snapshot = get_backup(server, pc)
    change_the_owner(server)
    snapshot.rename(pc / "x.snapshot")
    obexftp(server, "-c", "Incremental", "-p", "x.snapshot", cwd=pc)
    names = listing(obexftp(server, "-c", "Incremental", "-l", cwd=pc).stdout)
    assert names["x.snapshot"] == (pc / "x.snapshot").stat().st_size
    increment, size = one(names, ".mbak")
    obexftp(server, "-c", "Incremental", "-g", increment, cwd=pc)
    data = (pc / increment).read_bytes()
    assert len(data) == size
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        new = tar.extractfile(members[FILES + "new.txt"])
        assert new is not None and new.read() == b"added after the backup"
        changed = tar.extractfile(members[FILES + "d0/s0/f0.bin"])
        assert changed is not None and changed.read() == b"modified after the backup"
    assert FILES + "d1/s1/f1.bin" not in members, "unchanged files stay out"
    obexftp(server, "-c", "Incremental", "-k", "x.snapshot", cwd=pc)
    assert listing(obexftp(server, "-c", "Incremental", "-l", cwd=pc).stdout) == {}
    server.wait_normal()


# -- restore -----------------------------------------------------------------------------


def test_a_restore_put_into_restore_brings_back_exactly_the_backed_up_state(
    server: ObexServer, tmp_path: Path
) -> None:
    backed_up = server.owner_state()
    mbak, _ = get_backup(server, tmp_path / "pc")
    change_the_owner(server)
    assert server.owner_state() != backed_up
    obexftp(server, "-c", "Restore", "-p", mbak.name, cwd=mbak.parent)
    assert server.owner_state() == backed_up
    obexftp(server, "-c", "Restore", "-g", "status.txt", cwd=tmp_path)
    status = (tmp_path / "status.txt").read_text()
    assert f"{mbak.name}: RESTORED" in status and f"{SID:08X}: ok" in status
    server.wait_normal()


def hostile(archive: Path) -> bytes:
    """The real archive with one file member renamed to climb out of the owner's folder."""
    out = io.BytesIO()
    with (
        tarfile.open(archive) as src,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst,
    ):
        renamed = False
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            if not renamed and member.isfile() and member.name.startswith(FILES):
                member.name = FILES + "../../../../../../escape"
                renamed = True
            dst.addfile(member, data)
    return out.getvalue()


def test_a_hostile_archive_is_refused_and_changes_nothing(
    server: ObexServer, tmp_path: Path
) -> None:
    mbak, _ = get_backup(server, tmp_path / "pc")
    change_the_owner(server)
    before = server.owner_state()
    (tmp_path / "evil.mbak").write_bytes(hostile(mbak))
    result = obexftp(
        server,
        "-c",
        "Restore",
        "-p",
        "evil.mbak",
        cwd=tmp_path,
        expect=exit_code(ResponseCode.UNSUPPORTED_MEDIA_TYPE),
    )
    assert "failed: evil.mbak" in result.stderr
    assert server.owner_state() == before
    assert not list(server.engine.config.drives["c"].rglob("escape"))
    obexftp(server, "-c", "Restore", "-g", "status.txt", cwd=tmp_path)
    assert "evil.mbak: REFUSED" in (tmp_path / "status.txt").read_text()
    server.wait_normal()


def test_a_truncated_archive_is_refused_and_changes_nothing(
    server: ObexServer, tmp_path: Path
) -> None:
    mbak, _ = get_backup(server, tmp_path / "pc")
    change_the_owner(server)
    before = server.owner_state()
    data = mbak.read_bytes()
    (tmp_path / "cut.mbak").write_bytes(data[: len(data) - 3000])
    obexftp(
        server,
        "-c",
        "Restore",
        "-p",
        "cut.mbak",
        cwd=tmp_path,
        expect=exit_code(ResponseCode.UNSUPPORTED_MEDIA_TYPE),
    )
    assert server.owner_state() == before
    obexftp(server, "-c", "Restore", "-g", "status.txt", cwd=tmp_path)
    status = (tmp_path / "status.txt").read_text()
    assert "cut.mbak: REFUSED" in status and "truncated" in status
    server.wait_normal()
