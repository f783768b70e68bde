"""A session of Debian's obexftp 0.24, its request packets as it sent them over TCP.

``obexftp -n HOST -c Docs -p note.txt -l -g note.txt -k note.txt -c / -l``
against a server on the core: these are the client's packets byte for byte,
replayed in lockstep.  They pin the shapes a stock client really uses: a
CONNECT announcing 1024 bytes, SETPATH with "don't create" and an empty Name
for the root, a PUT whose first packet carries the whole body and whose final
packet is a bare End-of-Body, a delete as a PUT without body.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from obex_backup_server.core.codes import FOLDER_BROWSING_UUID, HeaderId, ResponseCode
from obex_backup_server.core.events import (
    PutEnd,
    PutOutcome,
    SetPath,
)
from obex_backup_server.core.headers import Header, find
from obex_backup_server.core.packets import parse_response

from .peer import MemoryServer, split_packets

OBEXFTP = [
    # CONNECT, Target Folder Browsing, max packet 1024
    "80001a10000400460013f9ec7bc4953c11d2984e525400dc9e09",
    # SETPATH "Docs", don't create
    "8500170200cb0000000101000d0044006f006300730000",
    # PUT note.txt, Length 12, the body in the first packet
    "020031cb00000001010015006e006f00740065002e0074007800740000c30000000c48000f"
    "6261636b7570206e6f74650a",
    # PUT final: an empty End-of-Body, no Connection-Id
    "820006490003",
    # GET x-obex/folder-listing
    "830021cb00000001420019782d6f6265782f666f6c6465722d6c697374696e6700",
    # GET note.txt
    "83001dcb00000001010015006e006f00740065002e0074007800740000",
    # PUT note.txt without a body: delete
    "82001dcb00000001010015006e006f00740065002e0074007800740000",
    # SETPATH with an empty Name: the root
    "85000d0200cb00000001010003",
    # GET x-obex/folder-listing
    "830021cb00000001420019782d6f6265782f666f6c6465722d6c697374696e6700",
    # DISCONNECT
    "810008cb00000001",
]


def listing_names(response_headers: tuple[Header, ...]) -> list[str]:
    body = find(response_headers, HeaderId.END_OF_BODY)
    assert body is not None and isinstance(body.value, bytes)
    return [element.get("name", element.tag) for element in ET.fromstring(body.value)]


def test_an_obexftp_session_runs_in_lockstep_to_the_end() -> None:
    server = MemoryServer()
    server.root.update({"hello.txt": b"hello world\n", "Docs": {}})
    answers = []
    for i, request in enumerate(OBEXFTP):
        packets = split_packets(server.feed(bytes.fromhex(request)))
        assert len(packets) == 1, f"request {i}: {len(packets)} responses"
        answers.append(parse_response(packets[0], to_connect=i == 0))
    assert [a.code for a in answers] == [
        ResponseCode.CONTINUE if i == 2 else ResponseCode.SUCCESS for i in range(len(OBEXFTP))
    ]

    connect = answers[0]
    assert connect.connect is not None and connect.connect.max_packet_length == 1024
    assert find(connect.headers, HeaderId.WHO) == Header(HeaderId.WHO, FOLDER_BROWSING_UUID)
    assert find(connect.headers, HeaderId.CONNECTION_ID) == Header(HeaderId.CONNECTION_ID, 1)

    setpaths = [e for e in server.events if isinstance(e, SetPath)]
    assert [(s.name, s.create, s.to_root) for s in setpaths] == [
        ("Docs", False, False),
        ("", False, True),
    ]
    puts = [e for e in server.events if isinstance(e, PutEnd)]
    assert puts == [PutEnd(PutOutcome.WRITE, 12), PutEnd(PutOutcome.DELETE, 0)]
    assert listing_names(answers[4].headers) == ["parent-folder", "note.txt"]
    note = find(answers[5].headers, HeaderId.END_OF_BODY)
    assert note == Header(HeaderId.END_OF_BODY, b"backup note\n")
    assert listing_names(answers[8].headers) == ["Docs", "hello.txt"]
    assert server.root == {"hello.txt": b"hello world\n", "Docs": {}}
    assert not server.connection.connected
