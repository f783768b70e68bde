"""OBEX over USB: the device side of the kernel's CDC OBEX function, a tty.

The kernel's ``usb_f_obex`` hands the bulk pipes of its data interface to
``/dev/ttyGS<port_num>`` and leaves the protocol to a user-space server.  Two
things about that tty shape this module:

* It is a terminal, so out of the box it echoes, edits lines, turns CR into
  LF and stops on XOFF (0x13) or ^C (0x03).  OBEX packets are binary, so the
  tty is put in raw mode before anything is read.
* Whether the tty is open is what the function reports to the gadget: the
  last close while the host is attached deactivates the function, and with it
  the whole composite gadget (MTP too) drops off the bus until the tty is
  opened again.  A host session ends with a hang-up (the host left the
  interface or unplugged), after which the old file reads end-of-file for
  ever.  So :func:`serve_tty` always holds one open file of the tty, and
  opens the next ones *before* it closes the hung-up ones: the port's open
  count never reaches zero while the server runs.

:func:`serve_tty` calls ``serve(stream)`` once per host session with a
:class:`trio.abc.Stream` of raw bytes; the stream reads end-of-file when the
host goes away.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import termios
from collections.abc import Awaitable, Callable
from typing import Any

import trio

log = logging.getLogger(__name__)

#: How long to wait before trying a tty again that could not be opened.
REOPEN_DELAY = 0.2
#: The longest wait between attempts (while the gadget is being rebuilt, say).
REOPEN_DELAY_MAX = 2.0

# The indexes of a termios attribute list (see termios.tcgetattr).
_IFLAG, _OFLAG, _CFLAG, _LFLAG, _ISPEED, _OSPEED, _CC = range(7)

#: Input processing that would change or swallow bytes: CR/NL translation,
#: XON/XOFF flow control, parity marking, stripping the eighth bit, break.
_IFLAG_OFF = (
    termios.IGNBRK
    | termios.BRKINT
    | termios.PARMRK
    | termios.ISTRIP
    | termios.INLCR
    | termios.IGNCR
    | termios.ICRNL
    | termios.IXON
    | termios.IXOFF
    | termios.IXANY
    | termios.INPCK
)
#: Line editing, echo and signal characters (^C, ^Z, ^\\), extended input.
_LFLAG_OFF = termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN

Serve = Callable[[trio.abc.Stream], Awaitable[None]]


class TtyModeError(OSError):
    """The tty did not take raw mode (a setting read back different)."""


def raw_attributes(attrs: list[Any]) -> list[Any]:
    """``attrs`` (from ``tcgetattr``) changed to raw 8-bit mode, no flow control.

    VMIN 1 / VTIME 0: a read returns as soon as one byte is there (the fd is
    non-blocking anyway, so the values only matter to anyone sharing it).
    """
    new = list(attrs)
    new[_IFLAG] &= ~_IFLAG_OFF
    new[_OFLAG] &= ~termios.OPOST
    new[_CFLAG] &= ~(termios.CSIZE | termios.PARENB | termios.CRTSCTS)
    new[_CFLAG] |= termios.CS8 | termios.CREAD | termios.CLOCAL
    new[_LFLAG] &= ~_LFLAG_OFF
    cc = list(new[_CC])
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    new[_CC] = cc
    return new


def set_raw(fd: int) -> None:
    """Put the tty ``fd`` in raw mode and check that every setting stuck.

    ``tcsetattr`` succeeds when any one of the changes was made, so the
    settings are read back.
    """
    wanted = raw_attributes(termios.tcgetattr(fd))
    termios.tcsetattr(fd, termios.TCSANOW, wanted)
    got = termios.tcgetattr(fd)
    for index, name in ((_IFLAG, "iflag"), (_OFLAG, "oflag"), (_LFLAG, "lflag")):
        if got[index] != wanted[index]:
            raise TtyModeError(
                errno.EINVAL,
                f"raw mode not taken ({name} {got[index]:#o}, wanted {wanted[index]:#o})",
            )
    if got[_CC][termios.VMIN] != wanted[_CC][termios.VMIN]:
        raise TtyModeError(errno.EINVAL, "raw mode not taken (VMIN)")


def open_raw(path: str) -> int:
    """Open the tty non-blocking, not as a controlling terminal, in raw mode."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not os.isatty(fd):
            raise OSError(errno.ENOTTY, f"{path} is not a terminal")
        set_raw(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


class TtyStream(trio.abc.Stream):
    """A raw tty as a byte stream; the host going away reads as end-of-file.

    A USB tty hung up by the host reads end-of-file; a pseudo-terminal whose
    other side closed reads EIO.  Both mean the same to a protocol server, so
    both come out as ``b""``.  Writing to a tty whose host left raises
    :class:`trio.BrokenResourceError`, as on any stream whose peer is gone.
    """

    def __init__(self, fd: int) -> None:
        self._stream = trio.lowlevel.FdStream(fd)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            return await self._stream.receive_some(max_bytes)
        except trio.BrokenResourceError as exc:
            if isinstance(exc.__cause__, OSError) and exc.__cause__.errno == errno.EIO:
                return b""
            raise

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()

    def fileno(self) -> int:
        return self._stream.fileno()


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


async def _reopen(path: str) -> int:
    """Open ``path`` again, waiting while it cannot be opened (logged once)."""
    delay = REOPEN_DELAY
    failed_before = False
    while True:
        try:
            return open_raw(path)
        except OSError as exc:
            if not failed_before:
                log.warning("cannot reopen %s (%s); retrying", path, exc.strerror or exc)
                failed_before = True
        await trio.sleep(delay)
        delay = min(delay * 2, REOPEN_DELAY_MAX)


async def serve_tty(
    path: str,
    serve: Serve,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve OBEX sessions on the tty ``path`` until cancelled.

    ``task_status.started()`` is called once the tty is open (and the function
    thereby active), so a supervisor can bind the UDC after it.  A tty that
    cannot be opened at the start raises :class:`OSError`; later, when a
    session ended, the tty is reopened for as long as it takes.

    ``serve(stream)`` runs once per host session; it should return at
    end-of-file.  A :class:`trio.BrokenResourceError` or
    :class:`trio.ClosedResourceError` out of it (it wrote after the host left)
    also just ends the session; any other exception ends ``serve_tty``.
    """
    holder = open_raw(path)
    session_fd: int | None = None
    try:
        session_fd = os.dup(holder)  # the same open file: the holder need not be reopened yet
        task_status.started()
        sessions = 0
        while True:
            sessions += 1
            log.info("%s: serving session %d", path, sessions)
            stream = TtyStream(session_fd)
            session_fd = None  # the stream owns it now
            try:
                await serve(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                log.info("%s: session %d ended: %r", path, sessions, exc)
            # The old files are hung up now (or will be).  Open the next file
            # before closing them, so the tty never counts as closed.
            await trio.lowlevel.checkpoint()  # a serve() that returns at once cannot starve others
            fresh = await _reopen(path)
            with contextlib.suppress(OSError, trio.TrioInternalError):
                await stream.aclose()
            _close_quietly(holder)
            holder = fresh
            session_fd = os.dup(holder)
    finally:
        if session_fd is not None:
            _close_quietly(session_fd)
        _close_quietly(holder)
