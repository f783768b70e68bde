"""Links that break, clients that misbehave, and a second client: the server goes on.

A TCP reset in the middle of a backup GET or a restore PUT is what an
unplugged cable or a killed client looks like: the engine must be back in
Normal mode, every owner fully old (an interrupted restore changes nothing),
and the next client served.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from obex_backup_server.core.codes import FOLDER_BROWSING_UUID, HeaderId, Opcode, ResponseCode
from obex_backup_server.core.headers import Header
from obex_backup_server.core.listing import FOLDER_LISTING_TYPE
from tests.engine.conftest import EngineProcess

from .conftest import ObexServer, launch, needs_obexftp, stop
from .test_obexftp import (
    NO_CONNECTION,
    change_the_owner,
    exit_code,
    get_backup,
    listing,
    obexftp,
    one,
)
from .wire import WireClient

BIG = 6 << 20

pytestmark = needs_obexftp


def test_a_reset_in_the_middle_of_a_backup_get(server: ObexServer, tmp_path: Path) -> None:
    (server.owner_dir / "big.bin").write_bytes(os.urandom(BIG))
    before = server.owner_state()
    names = listing(obexftp(server, "-c", "Backup", "-l", cwd=tmp_path).stdout)
    mbak, size = one(names, ".mbak")
    client = WireClient(server.port)
    client.connect()
    assert client.cd("Backup") == ResponseCode.SUCCESS
    response = client.request(Opcode.GET_FINAL, [Header(HeaderId.NAME, mbak)])
    assert response.code == ResponseCode.CONTINUE
    assert (HeaderId.LENGTH, size) in [(h.id, h.value) for h in response.headers]
    for _ in range(5):
        assert client.request(Opcode.GET_FINAL, quote_id=False).code == ResponseCode.CONTINUE
    assert server.mode() == "BACKUP_FULL"
    client.reset()
    server.wait_normal()
    assert server.owner_state() == before
    # The next client gets the whole backup.
    got, _ = get_backup(server, tmp_path / "next")
    assert got.stat().st_size > BIG
    assert "link lost" in server.log_text()


def test_a_reset_in_the_middle_of_a_restore_put_changes_nothing(
    server: ObexServer, tmp_path: Path
) -> None:
    (server.owner_dir / "big.bin").write_bytes(os.urandom(BIG))
    backed_up = server.owner_state()
    mbak, _ = get_backup(server, tmp_path / "pc")
    change_the_owner(server)
    before = server.owner_state()
    data = mbak.read_bytes()
    client = WireClient(server.port)
    client.connect()
    assert client.cd("Restore") == ResponseCode.SUCCESS
    headers = [Header(HeaderId.NAME, "r.mbak"), Header(HeaderId.LENGTH, len(data))]
    assert client.request(Opcode.PUT, headers).code == ResponseCode.CONTINUE
    room = client.conn.body_room()
    for offset in range(0, len(data) // 2, room):
        piece = data[offset : offset + room]
        response = client.request(Opcode.PUT, [Header(HeaderId.BODY, piece)], quote_id=False)
        assert response.code == ResponseCode.CONTINUE
    client.reset()
    server.wait_normal()
    assert server.owner_state() == before, "an interrupted restore changes nothing"
    obexftp(server, "-c", "Restore", "-g", "status.txt", cwd=tmp_path)
    status = (tmp_path / "status.txt").read_text()
    assert "r.mbak: REFUSED" in status and "nothing was changed" in status
    # The next client restores the same archive whole.
    obexftp(server, "-c", "Restore", "-p", mbak.name, cwd=mbak.parent)
    assert server.owner_state() == backed_up
    server.wait_normal()


def test_garbage_gets_the_cores_answer_and_the_server_goes_on(
    server: ObexServer, tmp_path: Path
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"\x42\x00\x05ab")  # an operation OBEX does not have
        answer = sock.recv(100)
        assert answer[:3] == bytes([ResponseCode.NOT_IMPLEMENTED, 0, 3])
        sock.sendall(b"\x80\x00\x02")  # a length shorter than the prefix
        assert sock.recv(100)[0] == ResponseCode.BAD_REQUEST
    client = WireClient(server.port)
    client.connect()
    # A listing GET that names a folder that is not there.
    response = client.request(
        Opcode.GET_FINAL,
        [Header(HeaderId.TYPE, FOLDER_LISTING_TYPE.encode() + b"\0"), Header(HeaderId.NAME, "x")],
    )
    assert response.code == ResponseCode.NOT_FOUND
    assert client.cd("..") == ResponseCode.BAD_REQUEST, "a Name is one file name"
    client.close()
    assert listing(obexftp(server, "-l", "/", cwd=tmp_path).stdout)
    assert server.proc.poll() is None


def test_a_second_client_waits_then_gets_service_unavailable(
    server: ObexServer, tmp_path: Path
) -> None:
    first = WireClient(server.port)
    first.connect()
    second = WireClient(server.port)
    started = time.monotonic()
    response = second.request(Opcode.CONNECT, [Header(HeaderId.TARGET, FOLDER_BROWSING_UUID)])
    assert response.code == ResponseCode.SERVICE_UNAVAILABLE
    assert time.monotonic() - started >= 2.0, "it waited busy_wait before the refusal"
    second.close()
    result = obexftp(server, "-l", "/", cwd=tmp_path, expect=NO_CONNECTION)
    assert "unknown error on connect" in result.stderr
    assert "refused, another client is being served" in server.log_text()
    # The first client is still served, then the next one.
    assert first.cd("Restore") == ResponseCode.SUCCESS
    first.close()
    assert listing(obexftp(server, "-l", "/", cwd=tmp_path).stdout)


def test_sigterm_ends_the_session_and_the_engine_goes_back_to_normal(
    server: ObexServer,
) -> None:
    client = WireClient(server.port)
    client.connect()
    assert client.cd("Backup") == ResponseCode.SUCCESS
    response = client.request(
        Opcode.GET_FINAL, [Header(HeaderId.TYPE, FOLDER_LISTING_TYPE.encode() + b"\0")]
    )
    assert response.code == ResponseCode.SUCCESS
    assert server.mode() == "BACKUP_FULL"
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0
    server.wait_normal()
    assert "stopping on SIGTERM" in server.log_text()
    client.close()


def test_a_restore_put_without_length_streams_all_the_same(
    server: ObexServer, tmp_path: Path
) -> None:
    """Length is optional in OBEX: the engine reads the archive to its end."""
    backed_up = server.owner_state()
    mbak, _ = get_backup(server, tmp_path / "pc")
    change_the_owner(server)
    data = mbak.read_bytes()
    client = WireClient(server.port)
    client.connect()
    assert client.cd("Restore") == ResponseCode.SUCCESS
    assert client.request(Opcode.PUT, [Header(HeaderId.NAME, "r.mbak")]).code == (
        ResponseCode.CONTINUE
    )
    room = client.conn.body_room()
    for offset in range(0, len(data), room):
        piece = data[offset : offset + room]
        last = offset + room >= len(data)
        header = Header(HeaderId.END_OF_BODY if last else HeaderId.BODY, piece)
        opcode = Opcode.PUT_FINAL if last else Opcode.PUT
        response = client.request(opcode, [header], quote_id=False)
    assert response.code == ResponseCode.SUCCESS
    assert server.owner_state() == backed_up
    assert client.request(Opcode.DISCONNECT).code == ResponseCode.SUCCESS
    client.close()
    server.wait_normal()


def test_a_silent_client_is_dropped_after_link_timeout(
    tmp_path: Path, engine: EngineProcess
) -> None:
    server = launch(tmp_path, engine, "link_timeout = 1.0")
    try:
        client = WireClient(server.port)
        client.connect()
        assert client.cd("Backup") == ResponseCode.SUCCESS
        response = client.request(
            Opcode.GET_FINAL, [Header(HeaderId.TYPE, FOLDER_LISTING_TYPE.encode() + b"\0")]
        )
        assert response.code == ResponseCode.SUCCESS
        assert server.mode() == "BACKUP_FULL"
        assert client.sock.recv(10) == b"", "the server closed the connection"
        server.wait_normal()
        assert "no byte for 1 s" in server.log_text()
        assert listing(obexftp(server, "-l", "/", cwd=tmp_path).stdout)
    finally:
        stop(server.proc)


def test_a_spool_that_cannot_be_written_is_an_internal_error_not_a_crash(
    server: ObexServer, tmp_path: Path
) -> None:
    (tmp_path / "spool").write_text("a file where the snapshot spool should be")
    (tmp_path / "x.snapshot").write_bytes(b"snapshot bytes")
    result = obexftp(
        server,
        "-c",
        "Incremental",
        "-p",
        "x.snapshot",
        cwd=tmp_path,
        expect=exit_code(ResponseCode.INTERNAL_SERVER_ERROR),
    )
    assert "failed: x.snapshot" in result.stderr
    assert listing(obexftp(server, "-c", "Incremental", "-l", cwd=tmp_path).stdout) == {}
    assert server.proc.poll() is None


def test_an_abort_in_the_middle_of_a_restore_changes_nothing(
    server: ObexServer, tmp_path: Path
) -> None:
    mbak, _ = get_backup(server, tmp_path / "pc")
    change_the_owner(server)
    before = server.owner_state()
    data = mbak.read_bytes()
    client = WireClient(server.port)
    client.connect()
    assert client.cd("Restore") == ResponseCode.SUCCESS
    headers = [Header(HeaderId.NAME, "r.mbak"), Header(HeaderId.LENGTH, len(data))]
    assert client.request(Opcode.PUT, headers).code == ResponseCode.CONTINUE
    room = client.conn.body_room()
    for offset in range(0, len(data) // 2, room):
        body = [Header(HeaderId.BODY, data[offset : offset + room])]
        assert client.request(Opcode.PUT, body, quote_id=False).code == ResponseCode.CONTINUE
    assert client.request(Opcode.ABORT).code == ResponseCode.SUCCESS
    assert server.owner_state() == before
    # The session goes on: the status says what happened, and names are checked.
    folder = client.request(Opcode.GET_FINAL, [Header(HeaderId.NAME, "..")])
    assert folder.code == ResponseCode.BAD_REQUEST
    status = client.request(Opcode.GET_FINAL, [Header(HeaderId.NAME, "status.txt")])
    assert status.code == ResponseCode.SUCCESS
    [text] = [h.value for h in status.headers if h.id == HeaderId.END_OF_BODY]
    assert isinstance(text, bytes) and b"r.mbak: REFUSED" in text
    assert client.request(Opcode.DISCONNECT).code == ResponseCode.SUCCESS
    client.close()
    server.wait_normal()
    assert server.owner_state() == before


def test_a_folder_cannot_be_got_as_a_file(server: ObexServer, tmp_path: Path) -> None:
    obexftp(server, "-g", "Backup", cwd=tmp_path, expect=exit_code(ResponseCode.FORBIDDEN))
