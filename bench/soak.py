"""Soak: mixed MTP traffic for a bounded time, with memory and descriptors watched.

The responder runs in this process on the loopback link, with a files storage
and the Backup & Restore storage backed by a real ``backup-engine`` process.  A
host loop mixes listings, sends, whole and partial reads, cancelled reads,
backups (reading the ``.mbak`` through MTP) and deletes until ``SOAK_SECONDS``
(default 1200) have passed.  Every ``SOAK_SAMPLE`` seconds the responder's RSS
and open descriptors (``/proc/self``) and the engine's (``/proc/<pid>``) are
sampled.  At the end it prints start, end and maximum figures and fails when,
after the warm-up (the first fifth of the run), either process grew by more than
the tolerance: RSS by more than 16 MiB + 10 %, descriptors by more than 4.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtp_responder.app import Responder
from mtp_responder.config import parse_config
from mtp_responder.core.codes import OperationCode, ResponseCode
from mtp_responder.testing.initiator import Initiator
from mtp_responder.transport.loopback import loopback_pair
from tests.engine.conftest import start_engine, stop_engine
from tests.engine.helpers import PASSIVE_ALL, make_config, make_tree, register

SECONDS = float(os.environ.get("SOAK_SECONDS", "1200"))
SAMPLE = float(os.environ.get("SOAK_SAMPLE", "5"))
RSS_SLACK = 16 << 20
RSS_RATIO = 0.10
FD_SLACK = 4
SID = 0x0FA00001


def rss(pid: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def fds(pid: str) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Series:
    name: str
    rss: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    def sample(self, pid: str) -> None:
        self.rss.append(rss(pid))
        self.fds.append(fds(pid))

    def verdict(self) -> list[str]:
        warm = len(self.rss) // 5
        base_rss, end_rss = self.rss[warm], self.rss[-1]
        base_fd, end_fd = self.fds[warm], self.fds[-1]
        mib = 1 << 20
        print(
            f"{self.name:<10} RSS start {self.rss[0] / mib:.1f} MiB, after warm-up"
            f" {base_rss / mib:.1f}, end {end_rss / mib:.1f}, max {max(self.rss) / mib:.1f};"
            f" fds start {self.fds[0]}, after warm-up {base_fd}, end {end_fd},"
            f" max {max(self.fds)}"
        )
        problems = []
        if end_rss > base_rss * (1 + RSS_RATIO) + RSS_SLACK:
            problems.append(f"{self.name}: RSS grew from {base_rss} to {end_rss}")
        if end_fd > base_fd + FD_SLACK:
            problems.append(f"{self.name}: descriptors grew from {base_fd} to {end_fd}")
        return problems


async def children(mtp: Initiator, storage: int, parent: int) -> dict[str, int]:
    return {
        (await mtp.object_info(h)).filename: h for h in await mtp.object_handles(storage, parent)
    }


async def traffic(mtp: Initiator, files: int, backup: int, stats: dict[str, int]) -> None:
    rnd = random.Random(1)
    sent: list[int] = []
    n = 0
    while True:
        n += 1
        op = rnd.choice(["list", "send", "send", "get", "partial", "cancel", "delete", "backup"])
        if op == "backup" and n % 10:
            op = "list"
        if op == "list":
            await mtp.object_handles(files)
        elif op == "send":
            payload = rnd.randbytes(rnd.choice([0, 1, 511, 512, 4096, 200_000]))
            sent.append(await mtp.send_object(f"soak-{n}.bin", payload, storage_id=files))
        elif op == "get" and sent:
            await mtp.get_object(rnd.choice(sent))
        elif op == "partial" and sent:
            r = await mtp.transaction(OperationCode.GET_PARTIAL_OBJECT, rnd.choice(sent), 0, 1000)
            assert r.code == ResponseCode.OK, r.response
        elif op == "cancel" and sent:
            tid = await mtp.command(OperationCode.GET_OBJECT, rnd.choice(sent))
            mtp.host.cancel(tid)
            with trio.fail_after(20):
                while mtp.host.device_status_busy():
                    await trio.sleep(0.005)
            while mtp.host.in_queued:
                await mtp.host.read_item()
        elif op == "delete" and sent:
            r = await mtp.transaction(OperationCode.DELETE_OBJECT, sent.pop(0))
            assert r.code == ResponseCode.OK, r.response
        elif op == "backup":
            folder = (await children(mtp, backup, 0xFFFFFFFF))["Backup"]
            listing = await children(mtp, backup, folder)
            mbak = next(h for name, h in listing.items() if name.endswith(".mbak"))
            stats["backup bytes"] += len(await mtp.get_object(mbak))
        else:
            continue
        stats[op] += 1
        if len(sent) > 50:
            r = await mtp.transaction(OperationCode.DELETE_OBJECT, sent.pop(0))
            stats["delete"] += 1


async def soak(tmp: Path, engine_pid: str, socket: Path) -> list[str]:
    store = tmp / "storage"
    store.mkdir()
    config = {
        "state_dir": str(tmp / "state"),
        "providers": {
            "files": {"storages": [{"path": str(store), "description": "Internal"}]},
            "backup_restore": {"socket": str(socket), "idle_timeout": 2},
        },
    }
    transport, host = loopback_pair()
    me, engine = Series("responder"), Series("engine")
    stats: dict[str, int] = {k: 0 for k in ["list", "send", "get", "partial", "cancel",
                                            "delete", "backup", "backup bytes"]}  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(Responder(parse_config(config)).run, transport)
        mtp = Initiator(host)
        assert (await mtp.open_session()).ok
        ids = await mtp.storage_ids()
        names = {(await mtp.storage_info(s)).storage_description: s for s in ids}
        nursery.start_soon(traffic, mtp, names["Internal"], names["Backup & Restore"], stats)
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            me.sample("self")
            engine.sample(engine_pid)
            await trio.sleep(min(SAMPLE, max(0.0, end - time.monotonic())))
        me.sample("self")
        engine.sample(engine_pid)
        nursery.cancel_scope.cancel()
    print(f"soak: {SECONDS:.0f} s, {len(me.rss)} samples; operations {stats}")
    return me.verdict() + engine.verdict()


def main() -> int:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        cfg = make_config(tmp / "engine", device_name="soak")
        make_tree(register(cfg, SID, PASSIVE_ALL))
        proc = start_engine(cfg, tmp / "engine")
        try:
            problems = trio.run(soak, tmp, str(proc.proc.pid), cfg.socket_path)
        finally:
            stop_engine(proc)
    for problem in problems:
        print(f"soak: FAIL {problem}")
    if not problems:
        print("soak: OK, memory and descriptors flat after warm-up")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
