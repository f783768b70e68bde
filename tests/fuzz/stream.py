"""Driving a responder with a sequence of USB transfers, and the oracles that judge it.

A *step* is what a host can do on the bus: write one bulk OUT transfer (a
command, a data phase, several containers run together, raw bytes), send a
class request (Cancel, Device Reset) or pull and replug the cable.  A reader
task takes every IN transfer the device sends meanwhile, so the device never
blocks on a full pipe, and records the transaction id of every response.

What must hold whatever the host sent:

- the serve loop never raises, and logs no unexpected exception;
- every response answers a transaction the host opened (a container that
  began one of its transfers: bytes after a container's announced end are
  never a command), and no transaction is answered more often than opened;
- nothing is written next to the storage directory;
- afterwards, once the host resets the device, it answers GetDeviceInfo and
  OpenSession in step.
"""

from __future__ import annotations

import logging
import struct
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from mtp_responder.app import Responder
from mtp_responder.config import parse_config
from mtp_responder.core.codes import ContainerType, OperationCode, ResponseCode
from mtp_responder.testing.initiator import Initiator
from mtp_responder.transport.loopback import LoopbackHost, loopback_pair

HEADER = struct.Struct("<IHHI")
RESPONSE_CODES = frozenset(int(c) for c in ResponseCode)


@dataclass(frozen=True)
class Transfer:
    """One bulk OUT transfer."""

    data: bytes


@dataclass(frozen=True)
class Cancel:
    tid: int


@dataclass(frozen=True)
class Reset:
    pass


@dataclass(frozen=True)
class Replug:
    pass


@dataclass(frozen=True)
class Settle:
    """Wait until the device has taken everything the host wrote."""


Step = Transfer | Cancel | Reset | Replug | Settle


@dataclass
class Ledger:
    """Which transactions the host opened, and which the device answered."""

    opened: Counter[int] = field(default_factory=Counter)
    answered: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    _last_command: int | None = None

    def host_wrote(self, data: bytes) -> None:
        """A transfer's first container opens a transaction (whatever its type: a
        malformed command is answered too), unless it is the data phase of the
        command just before it."""
        if len(data) < HEADER.size:
            self._last_command = None
            return
        _, ctype, _, tid = HEADER.unpack_from(data)
        if ctype != ContainerType.DATA or self._last_command != tid:
            self.opened[tid] += 1
        self._last_command = tid if ctype == ContainerType.COMMAND else None

    def device_sent(self, data: bytes) -> None:
        if len(data) < HEADER.size:
            return
        length, ctype, code, tid = HEADER.unpack_from(data)
        if ctype != ContainerType.RESPONSE or length != len(data):
            return
        self.answered[tid] += 1
        if code not in RESPONSE_CODES:
            self.problems.append(f"response code {code:#06x} is not a response code")
        if self.answered[tid] > self.opened[tid]:
            self.problems.append(
                f"transaction {tid:#x} answered {self.answered[tid]} times,"
                f" opened {self.opened[tid]} times"
            )


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def no_logged_errors() -> Iterator[None]:
    """An exception the serve loop caught and logged is a crash all the same."""
    handler = _Errors()
    loggers = [logging.getLogger("mtp_responder"), logging.getLogger("data_providers")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert not handler.records, [r.getMessage() for r in handler.records]


async def _read_everything(host: LoopbackHost, ledger: Ledger) -> None:
    while True:
        ledger.device_sent(await host.read_transfer())


async def _settle(host: LoopbackHost) -> None:
    with trio.fail_after(20):
        while host.out_queued:
            await trio.sleep(0.002)
    await trio.sleep(0.005)


async def _idle(host: LoopbackHost) -> None:
    with trio.fail_after(20):
        while host.device_status_busy():
            await trio.sleep(0.002)


async def play(host: LoopbackHost, steps: list[Step], ledger: Ledger) -> None:
    """Perform ``steps`` while a reader takes every IN transfer; end with a reset."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_read_everything, host, ledger)
        for step in steps:
            if isinstance(step, Transfer):
                ledger.host_wrote(step.data)
                with trio.fail_after(20):
                    await host.write_transfer(step.data)
            elif isinstance(step, Cancel):
                host.cancel(step.tid)
                await _idle(host)
            elif isinstance(step, Reset):
                host.device_reset()
                await _idle(host)
            elif isinstance(step, Replug):
                host.unplug()
                # Nobody can ask a device on no cable whether it is busy; give it
                # a moment to notice (it may not, if the cable comes back first).
                with trio.move_on_after(0.5):
                    await _idle(host)
                host.plug()
            else:
                await _settle(host)
        await _settle(host)
        # A host that lost step resets the device; then it must be idle and in step.
        host.device_reset()
        await _idle(host)
        nursery.cancel_scope.cancel()
    while host.in_queued:
        await host.read_item()


async def still_answers(host: LoopbackHost) -> None:
    mtp = Initiator(host)
    info = await mtp.transaction(OperationCode.GET_DEVICE_INFO)
    assert info.response.code == ResponseCode.OK and info.data, info.response
    opened = await mtp.open_session()
    assert opened.code == ResponseCode.OK, opened
    listing = await mtp.transaction(OperationCode.GET_OBJECT_HANDLES, 0xFFFFFFFF, 0, 0)
    assert listing.response.code == ResponseCode.OK, listing.response
    assert host.in_queued == 0


def run_sequence(steps: list[Step]) -> Ledger:
    """A fresh responder with a small tree, ``steps`` played at it, the oracles checked."""
    ledger = Ledger()

    async def main(base: Path) -> None:
        storage = base / "storage"
        storage.mkdir()
        (storage / "a.txt").write_text("alpha")
        (storage / "DCIM").mkdir()
        (storage / "DCIM" / "b.jpg").write_bytes(b"jpeg" * 300)
        config = {
            "state_dir": str(base / "state"),
            "providers": {"files": {"storages": [{"path": str(storage)}]}},
        }
        transport, host = loopback_pair(max_packet_size=512)
        async with trio.open_nursery() as nursery:
            await nursery.start(Responder(parse_config(config)).run, transport)
            mtp = Initiator(host)
            with trio.fail_after(60):
                assert (await mtp.open_session()).ok
                await mtp.object_handles(parent=0)  # hand out handles 1..3
                await play(host, steps, ledger)
                await still_answers(host)
            nursery.cancel_scope.cancel()
        outside = {p.name for p in base.iterdir()} - {"storage", "state"}
        assert not outside, f"written next to the storage: {sorted(outside)}"

    with tempfile.TemporaryDirectory() as tmp, no_logged_errors():
        trio.run(main, Path(tmp))
    assert not ledger.problems, ledger.problems
    return ledger
