"""Random and corrupted OBEX sessions thrown at the whole server, over a real engine.

The core's own fuzz target (tests/obex/test_fuzz_packets.py) checks the
protocol; this one checks what the server builds on it: whatever a client
sends (garbage, requests out of place, PUTs and GETs of any name, sessions
cut anywhere), ``serve_stream`` returns without raising, every packet it
writes is a well-formed OBEX response, the engine is back in Normal mode
when the connection is gone, and the owner's data has not changed.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from obex_backup_server.config import ObexConfig
from obex_backup_server.core.codes import HeaderId, Opcode, SetPathFlag
from obex_backup_server.core.headers import Header
from obex_backup_server.core.packets import SetPathFields, build_request
from obex_backup_server.server import ObexBackupServer
from tests.engine.conftest import EngineProcess
from tests.engine.helpers import tree_state
from tests.fuzz.budget import budget, counted
from tests.obex.peer import split_packets
from tests.obex.test_fuzz_packets import RESPONSE_CODES, sessions

from .conftest import SID


def engine_mode(engine: EngineProcess) -> str:
    state = engine.config.state_file
    assert state is not None
    lines = state.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)["mode"]


async def one_session(server: ObexBackupServer, reads: list[bytes]) -> bytes:
    """Send ``reads`` as a client would (waiting a moment for each answer); what came back."""
    client, server_end = trio.testing.memory_stream_pair()
    written = bytearray()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve_stream, server_end)

            async def collect() -> None:
                try:
                    while data := await client.receive_some(65536):
                        written.extend(data)
                except trio.BrokenResourceError:
                    pass

            nursery.start_soon(collect)
            for data in reads:
                before = len(written)
                try:
                    await client.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break  # the server closed the connection
                with trio.move_on_after(0.05):
                    while len(written) == before:
                        await trio.sleep(0.005)
            await client.send_eof()
    return bytes(written)


@st.composite
def sessions_in_a_folder(draw: st.DrawFn) -> tuple[int, list[bytes]]:
    """A random session, often moved into one of the tree's folders right after CONNECT.

    Random names never find the fixed folders, and a backup is only prepared
    by listing Backup/: without this, the engine would never leave Normal.
    """
    server_max, reads = draw(sessions())
    folder = draw(st.sampled_from([None, "Backup", "Backup", "Restore", "Incremental", "owners"]))
    if folder is None or not reads or reads[0][:1] != bytes([Opcode.CONNECT]):
        return server_max, reads
    moves = ["Backup", "owners"] if folder == "owners" else [folder]
    setpaths = [
        build_request(
            Opcode.SETPATH,
            [Header(HeaderId.CONNECTION_ID, 1), Header(HeaderId.NAME, name)],
            setpath=SetPathFields(SetPathFlag.DONT_CREATE, 0),
        )
        for name in moves
    ]
    if draw(st.booleans()):  # list it: Backup/ and owners/ prepare a backup
        listing_type = Header(HeaderId.TYPE, b"x-obex/folder-listing\0")
        setpaths.append(
            build_request(Opcode.GET_FINAL, [Header(HeaderId.CONNECTION_ID, 1), listing_type])
        )
    return server_max, [reads[0], *setpaths, *reads[1:]]


@given(sessions_in_a_folder())
@budget(25, weight=0.05)
@counted("obex backup server: sessions")
def test_the_server_survives_any_session_and_leaves_the_engine_normal(
    engine: EngineProcess, tmp_path: Path, session: tuple[int, list[bytes]]
) -> None:
    server_max, reads = session
    owner = engine.config.drives["c"] / "private" / f"{SID:08X}"
    before = tree_state(owner)
    config = ObexConfig(
        listen=None,
        socket=engine.config.socket_path,
        spool_dir=tmp_path / "spool",
        space_path=str(tmp_path),
        max_packet_length=server_max,
        busy_wait=0.0,
        link_timeout=30.0,
    )

    async def main() -> bytes:
        server = ObexBackupServer(config)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            written = await one_session(server, reads)
            nursery.cancel_scope.cancel()
        return written

    written = trio.run(main)
    for packet in split_packets(written):
        assert packet[0] in RESPONSE_CODES, f"unknown response code 0x{packet[0]:02X}"
    deadline = time.monotonic() + 15
    while engine_mode(engine) != "NORMAL":
        assert time.monotonic() < deadline, "the engine stayed in backup mode"
        time.sleep(0.05)
    assert tree_state(owner) == before
