"""GetObject and SendObject of a large file over the loopback link: the data path's cost.

A small board ships only if the responder moves an object for little CPU per
byte, so this measures exactly that, without a VM: the responder and an
initiator run in one process over :mod:`mtp_responder.transport.loopback`,
with the Files provider on a temporary directory.

* GetObject of a file of ``BENCH_DATAPATH_MIB`` MiB (256 by default), whose
  SHA-256 the host checks as the bytes arrive;
* SendObjectInfo + SendObject of the same size, the stored file's SHA-256
  checked against what was sent.

The link carries items of the default ``[transport] buffer_size`` (what one
read returns over FunctionFS; ``BENCH_DATAPATH_ITEM`` sets another).
Figures, per operation: the responder's CPU seconds per GiB (all CPU of the
process minus the initiator task's steps, so worker threads and trio's
scheduling count as the responder's and the figure errs on the high side),
and, from a second run under cProfile, Python-level function calls per MiB
(both ends: the host's share is small and the same before and after any
change to the responder).  Wall times are printed but indicative only on a
shared machine.  Everything goes to ``bench/results/datapath.json``;
``--profile`` also prints the cProfile summaries.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

ROOT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT_DIR))

from mtp_responder.app import Responder  # noqa: E402
from mtp_responder.config import TransportConfig, parse_config  # noqa: E402
from mtp_responder.core.codes import ROOT, OperationCode  # noqa: E402
from mtp_responder.core.connection import InitiatorConnection  # noqa: E402
from mtp_responder.core.datasets import ObjectInfoData, build_object_info  # noqa: E402
from mtp_responder.core.events import (  # noqa: E402
    Command,
    DataChunk,
    DataEnd,
    DataStart,
    Response,
)
from mtp_responder.core.protocol import NeedData  # noqa: E402
from mtp_responder.testing.initiator import Initiator  # noqa: E402
from mtp_responder.transport.loopback import LoopbackHost, loopback_pair  # noqa: E402

MIB = 1024 * 1024
SIZE_MIB = int(os.environ.get("BENCH_DATAPATH_MIB", "256"))
RESULTS = ROOT_DIR / "bench" / "results" / "datapath.json"
SOURCE = "source.bin"
ITEM_SIZE = int(os.environ.get("BENCH_DATAPATH_ITEM", TransportConfig().buffer_size))
"""Bytes per read on the device: the default ``[transport] buffer_size``."""
HOST_BLOCK = MIB
"""Bytes the host hands its USB stack per write, like libmtp's large transfers."""


class DataMismatch(AssertionError):
    """The bytes that arrived are not the bytes that were sent."""


def make_source(path: Path, size_mib: int) -> str:
    """A file of random bytes; its SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(size_mib):
            block = os.urandom(MIB)
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(MIB):
            digest.update(block)
    return digest.hexdigest()


async def _response(conn: InitiatorConnection, host: LoopbackHost) -> Response:
    while True:
        event = conn.next_event()
        if isinstance(event, NeedData):
            data, short = await host.read_item()
            conn.receive_data(data, short)
        elif isinstance(event, Response):
            return event


async def get_object(mtp: Initiator, handle: int, expected: str) -> int:
    """GetObject, hashing the data phase as it arrives instead of keeping it."""
    conn, host = mtp.conn, mtp.host
    tid = mtp.next_tid()
    await host.write_transfer(conn.send(Command(OperationCode.GET_OBJECT, tid, (handle,))))
    digest = hashlib.sha256()
    size = 0
    while True:
        event = conn.next_event()
        if isinstance(event, NeedData):
            data, short = await host.read_item()
            conn.receive_data(data, short)
        elif isinstance(event, DataChunk):
            digest.update(event.data)
            size += len(event.data)
        elif isinstance(event, Response):
            if not event.ok or digest.hexdigest() != expected:
                raise DataMismatch(f"GetObject: {event}, {size} bytes, SHA-256 differs")
            return size


async def send_object(mtp: Initiator, source: Path, size: int, name: str) -> int:
    """SendObjectInfo, then SendObject streamed from ``source`` in large host writes."""
    info = ObjectInfoData(
        storage_id=0,
        object_format=0x3000,
        protection_status=0,
        compressed_size=size,
        parent_object=ROOT,
        association_type=0,
        filename=name,
    )
    result = await mtp.transaction(
        OperationCode.SEND_OBJECT_INFO, 0, ROOT, data=build_object_info(info)
    )
    if not result.response.ok:
        raise DataMismatch(f"SendObjectInfo: {result.response}")
    conn, host = mtp.conn, mtp.host
    tid = mtp.next_tid()
    code = OperationCode.SEND_OBJECT
    await host.write_transfer(conn.send(Command(code, tid, ())))
    header = conn.send(DataStart(code, tid, size))
    total = len(header) + size
    sent = 0
    with source.open("rb", buffering=0) as f:
        # Every write but the last is whole packets: the header and the
        # first bytes of the file fill the first block, as libmtp does.
        data = header + f.read(HOST_BLOCK - len(header))
        while data:
            conn.send(DataChunk(data[len(header) :] if sent == 0 else data))
            last = sent + len(data) == total
            await host.write_transfer(data, end=last, sent_before=sent)
            sent += len(data)
            data = f.read(HOST_BLOCK)
    conn.send(DataEnd())
    response = await _response(conn, host)
    if not response.ok:
        raise DataMismatch(f"SendObject: {response}")
    return size


class _HostClock(trio.abc.Instrument):
    """CPU seconds of the initiator task's steps, to tell the responder's share apart."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.cpu = 0.0
        self._since = time.process_time()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self._since = time.process_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.cpu += time.process_time() - self._since

    def stop(self) -> None:
        self.after_task_step(self.task)
        trio.lowlevel.remove_instrument(self)


Step = Callable[[Initiator], Awaitable[int]]


async def run_one(
    root: Path, step: Step, split_cpu: bool
) -> tuple[int, float, float, float | None]:
    """(bytes, wall s, CPU s, the responder's CPU s or None) of one operation."""
    config = parse_config(
        {
            "state_dir": str(root / "state"),
            "log_level": "warning",
            "providers": {"files": {"storages": [{"path": str(root / "storage")}]}},
        }
    )
    responder = Responder(config)
    # Items as large as the FunctionFS transport's AIO blocks by default.
    transport, host = loopback_pair(max_packet_size=512, item_size=ITEM_SIZE)
    async with trio.open_nursery() as nursery:
        await nursery.start(responder.run, transport)
        mtp = Initiator(host)
        if not (await mtp.open_session()).ok:
            raise DataMismatch("OpenSession failed")
        await mtp.storage_ids()
        clock = _HostClock(trio.lowlevel.current_task())
        if split_cpu:
            trio.lowlevel.add_instrument(clock)
        wall, cpu = time.perf_counter(), time.process_time()
        size = await step(mtp)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if split_cpu:
            clock.stop()
        await mtp.close_session()
        nursery.cancel_scope.cancel()
    return size, wall, cpu, (cpu - clock.cpu) if split_cpu else None


def _source_handle(mtp: Initiator) -> Callable[[], Awaitable[int]]:
    async def find() -> int:
        for handle in await mtp.object_handles():
            if (await mtp.object_info(handle)).filename == SOURCE:
                return handle
        raise DataMismatch(f"{SOURCE} is not at the storage's root")

    return find


def operations(root: Path, digest: str, size: int) -> dict[str, Callable[[int], Step]]:
    """Each operation, given a run number (so that every upload has a new name)."""

    def get(_run: int) -> Step:
        async def step(mtp: Initiator) -> int:
            return await get_object(mtp, await _source_handle(mtp)(), digest)

        return step

    def send(run: int) -> Step:
        name = f"received-{run}.bin"

        async def step(mtp: Initiator) -> int:
            sent = await send_object(mtp, root / "storage" / SOURCE, size, name)
            stored = root / "storage" / name
            if file_sha256(stored) != digest:
                raise DataMismatch(f"SendObject: {name} stored with another SHA-256")
            stored.unlink()
            return sent

        return step

    return {"get_object": get, "send_object": send}


def _profile_summary(profiler: cProfile.Profile, label: str, lines: int) -> str:
    out = io.StringIO()
    for order in ("tottime", "ncalls"):
        out.write(f"-- {label}, by {order}\n")
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(lines)
    return out.getvalue()


def datapath_figures(root: Path, digest: str, profile: bool) -> dict[str, Any]:
    size = SIZE_MIB * MIB
    figures: dict[str, Any] = {}
    run = 0
    for label, make in operations(root, digest, size).items():
        run += 1
        moved, wall, cpu, responder_cpu = trio.run(run_one, root, make(run), True)
        assert responder_cpu is not None
        run += 1
        profiler = cProfile.Profile()
        profiler.enable()
        trio.run(run_one, root, make(run), False)
        profiler.disable()
        calls = pstats.Stats(profiler).total_calls  # type: ignore[attr-defined]
        if profile:
            print(
                _profile_summary(profiler, label, int(os.environ.get("BENCH_PROFILE_LINES", "15")))
            )
        gib = moved / (1024 * MIB)
        figures[label] = {
            "bytes": moved,
            "wall_s": round(wall, 3),
            "mib_per_s": round(moved / MIB / wall, 1),
            "cpu_s_per_gib": round(cpu / gib, 3),
            "responder_cpu_s_per_gib": round(responder_cpu / gib, 3),
            "python_calls_per_mib": round(calls / (moved / MIB)),
        }
        print(
            f"{label:<11} {moved // MIB} MiB in {wall:.2f} s ({moved / MIB / wall:,.0f} MiB/s,"
            f" indicative): CPU {cpu / gib:.2f} s/GiB, of which the responder's"
            f" {responder_cpu / gib:.2f} s/GiB; {calls / (moved / MIB):,.0f} Python calls/MiB"
            " (profiled run), SHA-256 checked"
        )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="print cProfile summaries")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-datapath-"))
    try:
        (tmp / "storage").mkdir()
        digest = make_source(tmp / "storage" / SOURCE, SIZE_MIB)
        results: dict[str, Any] = {
            "mib": SIZE_MIB,
            "item_bytes": ITEM_SIZE,
            **datapath_figures(tmp, digest, args.profile),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
