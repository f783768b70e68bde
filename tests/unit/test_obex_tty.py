"""serve_tty: the OBEX server's side of the USB CDC OBEX tty.

A pseudo-terminal stands in for ``/dev/ttyGS<n>``: its slave is the device's
tty (opened by path, as the kernel's is), its master is the USB host.  A
fresh pseudo-terminal starts in cooked mode (echo, line editing, CR to LF,
XON/XOFF, ^C), so every byte that arrives unchanged proves raw mode.
"""

from __future__ import annotations

import errno
import os
import termios
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from obex_backup_server.usb import TtyStream, open_raw, serve_tty

#: Every byte a cooked tty would act on: CR, LF, XON, XOFF, DEL, ^C, ^Z, ^\\,
#: ^D (EOF), ^U (kill), ^W, ^R, ^V (literal next), and bytes with bit 7 set.
SPECIAL = bytes(
    [0x0D, 0x0A, 0x11, 0x13, 0x7F, 0x03, 0x1A, 0x1C, 0x04, 0x15, 0x17, 0x12, 0x16, 0x00, 0x80, 0xFF]
)
PAYLOAD = SPECIAL + bytes(range(256)) + SPECIAL * 4 + b"\r\n\r\n"


@dataclass
class Pty:
    """A pseudo-terminal: ``master`` is the host's end, ``path`` the device's tty."""

    master: int
    path: str
    rdev: int

    def close(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


def new_pty() -> Pty:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    rdev = os.fstat(slave).st_rdev
    os.close(slave)  # the server opens the tty by its path, as it does /dev/ttyGS0
    return Pty(master, path, rdev)


@pytest.fixture
def pty() -> Iterator[Pty]:
    p = new_pty()
    yield p
    p.close()


async def host_read(master: int, count: int, timeout: float = 10) -> bytes:
    """Read exactly ``count`` bytes at the host's end."""
    data = bytearray()
    with trio.fail_after(timeout):
        while len(data) < count:
            await trio.lowlevel.wait_readable(master)
            try:
                data += os.read(master, count - len(data))
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                await trio.sleep(0.01)  # the device has not opened its tty (yet, again)
    return bytes(data)


def host_write(master: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(master, view) :]


def open_files_on(rdev: int) -> int:
    """How many of this process's descriptors refer to the character device ``rdev``."""
    count = 0
    for entry in os.listdir("/proc/self/fd"):
        try:
            st = os.stat(f"/proc/self/fd/{entry}")
        except OSError:
            continue
        if st.st_rdev == rdev and not os.path.isdir(f"/proc/self/fd/{entry}"):
            count += 1
    return count


@dataclass
class Recorder:
    """A ``serve`` that answers each chunk with a reply, and records sessions."""

    reply: bytes = b"ok"
    received: list[bytes] = field(default_factory=list)
    sessions: int = 0
    started: trio.Event = field(default_factory=trio.Event)
    ended: list[trio.Event] = field(default_factory=list)
    end_after_one: bool = False

    async def __call__(self, stream: trio.abc.Stream) -> None:
        self.sessions += 1
        self.received.append(b"")
        ended = trio.Event()
        self.ended.append(ended)
        self.started.set()
        try:
            while True:
                data = await stream.receive_some()
                if not data:
                    return
                self.received[-1] += data
                if self.reply:
                    await stream.send_all(self.reply)
                if self.end_after_one:
                    return
        finally:
            ended.set()


async def echo(stream: trio.abc.Stream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)


def test_open_raw_turns_off_everything_a_terminal_does_to_bytes(pty: Pty) -> None:
    before = termios.tcgetattr(pty.master)
    assert before[3] & termios.ECHO and before[3] & termios.ICANON, "a new pty is cooked"
    fd = open_raw(pty.path)
    try:
        iflag, oflag, cflag, lflag, _, _, cc = termios.tcgetattr(pty.master)
        for flag in ("ECHO", "ECHONL", "ICANON", "ISIG", "IEXTEN"):
            assert not lflag & getattr(termios, flag), f"lflag {flag} still set"
        for flag in ("ICRNL", "INLCR", "IGNCR", "IXON", "IXOFF", "ISTRIP", "BRKINT", "PARMRK"):
            assert not iflag & getattr(termios, flag), f"iflag {flag} still set"
        assert not oflag & termios.OPOST, "output post-processing (NL to CR-NL) still on"
        assert cflag & termios.CSIZE == termios.CS8 and not cflag & termios.PARENB
        assert not cflag & termios.CRTSCTS, "hardware flow control still on"
        assert cflag & termios.CLOCAL and cflag & termios.CREAD
        assert cc[termios.VMIN] == 1 and cc[termios.VTIME] == 0
        assert os.get_blocking(fd) is False
    finally:
        os.close(fd)


def test_open_raw_refuses_a_file_that_is_not_a_terminal(tmp_path: Path) -> None:
    plain = tmp_path / "ttyGS0"
    plain.write_bytes(b"")
    with pytest.raises(OSError) as info:
        open_raw(str(plain))
    assert "not a terminal" in str(info.value)


async def test_every_byte_value_goes_through_unchanged_both_ways(pty: Pty) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_tty, pty.path, echo)
        host_write(pty.master, PAYLOAD)
        assert await host_read(pty.master, len(PAYLOAD)) == PAYLOAD
        nursery.cancel_scope.cancel()


async def test_bytes_from_the_host_reach_the_server_unchanged_and_are_not_echoed(
    pty: Pty,
) -> None:
    server = Recorder(reply=b"")
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_tty, pty.path, server)
        host_write(pty.master, PAYLOAD)
        with trio.fail_after(10):
            while server.received[-1:] != [PAYLOAD]:
                await trio.sleep(0.01)
        assert not _readable_now(pty.master), "the tty echoed the host's bytes back"
        nursery.cancel_scope.cancel()


async def test_bytes_from_the_server_reach_the_host_unchanged(pty: Pty) -> None:
    async def send_payload(stream: trio.abc.Stream) -> None:
        await stream.send_all(PAYLOAD)
        await stream.receive_some()

    async with trio.open_nursery() as nursery:
        await nursery.start(serve_tty, pty.path, send_payload)
        assert await host_read(pty.master, len(PAYLOAD)) == PAYLOAD
        await trio.sleep(0.1)
        assert not _readable_now(pty.master), "extra bytes (CR before NL?) after the payload"
        nursery.cancel_scope.cancel()


def _readable_now(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0.05)[0])


async def test_started_comes_once_the_tty_is_held_open(pty: Pty) -> None:
    server = Recorder()
    async with trio.open_nursery() as nursery:
        assert open_files_on(pty.rdev) == 0
        await nursery.start(serve_tty, pty.path, server)
        assert open_files_on(pty.rdev) >= 1, "started() before the tty was open"
        nursery.cancel_scope.cancel()
    assert open_files_on(pty.rdev) == 0, "cancelling serve_tty left the tty open"


async def test_a_tty_that_cannot_be_opened_fails_before_started(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        with pytest.raises(FileNotFoundError):
            await nursery.start(serve_tty, str(tmp_path / "ttyGS7"), echo)


async def test_a_new_session_is_served_after_the_server_ends_one(pty: Pty) -> None:
    server = Recorder(end_after_one=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_tty, pty.path, server)
        for n in range(1, 4):
            host_write(pty.master, f"hello {n}".encode())
            assert await host_read(pty.master, 2) == b"ok"
            with trio.fail_after(10):
                await server.ended[n - 1].wait()
        with trio.fail_after(10):
            while server.sessions < 4:
                await trio.sleep(0.01)
        assert server.received[:3] == [b"hello 1", b"hello 2", b"hello 3"]
        nursery.cancel_scope.cancel()


async def test_after_a_hangup_the_tty_is_reopened_and_the_next_host_served(
    tmp_path: Path,
) -> None:
    """The host leaves (the tty hangs up); the server reopens by path and serves again.

    The path is a symbolic link, re-pointed at a second pseudo-terminal, because
    a pseudo-terminal cannot be reopened once its master closed; the gadget's tty
    can, and the code cannot tell the difference.
    """
    first, second = new_pty(), new_pty()
    link = tmp_path / "ttyGS0"
    link.symlink_to(first.path)
    server = Recorder()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_tty, str(link), server)
            host_write(first.master, b"first host")
            assert await host_read(first.master, 2) == b"ok"

            first.close()  # the host unplugs
            with trio.fail_after(10):
                await server.ended[0].wait()
            # Until the tty opens again, the hung-up one stays open: closing the
            # last file of a gadget tty would deactivate the whole gadget.
            await trio.sleep(0.3)
            assert open_files_on(first.rdev) >= 1, "the old tty was closed before a new one"

            link.unlink()
            link.symlink_to(second.path)
            with trio.fail_after(10):
                while server.sessions < 2:
                    await trio.sleep(0.01)
            assert open_files_on(first.rdev) == 0, "the hung-up tty was kept after reopening"
            host_write(second.master, b"second host")
            assert await host_read(second.master, 2) == b"ok"
            assert server.received == [b"first host", b"second host"]
            nursery.cancel_scope.cancel()
    finally:
        first.close()
        second.close()


async def test_a_write_after_the_host_left_ends_only_that_session(tmp_path: Path) -> None:
    first, second = new_pty(), new_pty()
    link = tmp_path / "ttyGS0"
    link.symlink_to(first.path)
    gone = trio.Event()
    sessions: list[int] = []

    async def writes_after_hangup(stream: trio.abc.Stream) -> None:
        sessions.append(len(sessions) + 1)
        if len(sessions) == 1:
            await gone.wait()
            await stream.send_all(b"x" * 65536)  # the host is gone: BrokenResourceError
        else:
            await stream.send_all(b"second")
            await stream.receive_some()

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_tty, str(link), writes_after_hangup)
            first.close()
            link.unlink()
            link.symlink_to(second.path)
            gone.set()
            assert await host_read(second.master, 6) == b"second"
            nursery.cancel_scope.cancel()
    finally:
        first.close()
        second.close()


async def test_tty_stream_reads_end_of_file_when_the_host_closed(pty: Pty) -> None:
    stream = TtyStream(open_raw(pty.path))
    host_write(pty.master, b"last words")
    pty.close()
    received = b""
    with trio.fail_after(10):
        while chunk := await stream.receive_some():
            received += chunk
    assert received in (b"last words", b"")  # a pty may drop unread input on hangup
    await stream.aclose()
