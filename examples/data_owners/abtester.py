"""The engine's test data owner: fixed payloads, logged callbacks, optional faults.

Base data is 8000 bytes of ``B``; when a snapshot was received it answers ``I``
instead (an increment); as a proxy it answers ``P``. Its snapshot is a constant.
Every callback is appended to ``$ABTESTER_LOG/<SID>.log`` so tests can check the
order the engine drove it in. ``$ABTESTER_FAULT_<SID>`` selects a fault:
``hang`` (stop answering during backup), ``crash`` (exit during backup),
``garbage`` (confirm ready, then answer a backup data request with bytes that are
not frames), ``fail`` (confirm ready with an error), ``silent`` (never confirm ready).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.sdk import ActiveBackupClient, ActiveBackupDataClient
from engine.types import format_sid, parse_sid

SNAPSHOT = b"abtester-snapshot-v1"
SIZE = 8000


class ABTester(ActiveBackupDataClient):
    def __init__(self, sid: int, fault: str) -> None:
        self.sid = sid
        self.fault = fault
        self.snapshot: bytes = b""
        self.left = 0
        self.fill = b"B"
        self.restored: dict[str, bytearray] = {}
        self.current = bytearray()
        self.wire: trio.abc.Stream | None = None
        logdir = os.environ.get("ABTESTER_LOG")
        self.log_path = Path(logdir) / f"{format_sid(sid)}.log" if logdir else None

    def log(self, text: str) -> None:
        if self.log_path is not None:
            with open(self.log_path, "a") as f:
                f.write(text + "\n")

    async def all_snapshots_supplied(self) -> None:
        self.log("all_snapshots_supplied")

    async def receive_snapshot_data(self, drive: str, section: bytes, last: bool) -> None:
        self.snapshot += section
        if last:
            self.log(f"snapshot {drive} {self.snapshot.decode(errors='replace')}")

    async def get_expected_data_size(self, drive: str) -> int:
        return SIZE

    async def get_snapshot_data(self, drive: str, max_size: int) -> tuple[bytes, bool]:
        self.log(f"get_snapshot {drive}")
        return SNAPSHOT, True

    async def initialise_get_backup_data(self, drive: str) -> None:
        if self.fault == "crash":
            os._exit(3)
        if self.fault == "garbage" and self.wire is not None:
            # Where the engine waits for the first data frame: bytes that are no frame.
            self.log(f"garbage {drive}")
            await self.wire.send_all(b"\xff" * 64)
            await trio.sleep_forever()
        self.fill = b"I" if self.snapshot else b"B"
        self.left = SIZE
        self.log(f"init_backup {drive} {self.fill.decode()}")

    async def initialise_get_proxy_backup_data(self, sid: int, drive: str) -> None:
        self.fill = b"P"
        self.left = SIZE
        self.log(f"init_proxy_backup {format_sid(sid)} {drive}")

    async def get_backup_data_section(self, max_size: int) -> tuple[bytes, bool]:
        if self.fault == "hang" and self.left < SIZE:
            await trio.sleep_forever()
        n = min(max_size, self.left)
        self.left -= n
        return self.fill * n, self.left == 0

    async def initialise_restore_base_data(self, drive: str) -> None:
        self.log(f"init_restore_base {drive}")
        self.restored[drive] = self.current = bytearray()

    async def initialise_restore_proxy_base_data(self, sid: int, drive: str) -> None:
        self.log(f"init_restore_proxy {format_sid(sid)} {drive}")
        self.current = bytearray()

    async def restore_base_data_section(self, section: bytes, finished: bool) -> None:
        self.current += section
        if finished:
            self.log(f"restored {len(self.current)} {bytes(self.current[:1]).decode()}")

    async def initialise_restore_increment_data(self, drive: str) -> None:
        if not self.restored:
            raise RuntimeError("increment before base")
        self.log(f"init_restore_increment {drive}")
        self.current = bytearray()

    async def restore_increment_data_section(self, section: bytes, finished: bool) -> None:
        await self.restore_base_data_section(section, finished)

    async def restore_complete(self, drive: str) -> None:
        self.log(f"restore_complete {drive}")

    async def terminate_multi_stage_operation(self) -> None:
        self.log("terminate")


async def main() -> None:
    sid = parse_sid(os.environ["BACKUP_ENGINE_SID"])
    fault = os.environ.get(f"ABTESTER_FAULT_{format_sid(sid)}", "")
    owner = ABTester(sid, fault)
    owner.log("started")
    async with ActiveBackupClient.connect(owner, sid) as abc:
        owner.wire = abc.conn.stream
        seen = False
        while not abc.closed:
            if not abc.mode.mode.is_normal:
                seen = True
                if fault != "silent":
                    await abc.confirm_ready(-2 if fault == "fail" else 0)
                    owner.log("ready")
                while not abc.mode.mode.is_normal and not abc.closed:
                    with trio.move_on_after(1):
                        await abc.wait_mode_change()
            elif seen:
                # Give restore_complete callbacks time to arrive, then leave.
                with trio.move_on_after(2):
                    await abc.wait_mode_change()
                if abc.mode.mode.is_normal:
                    owner.log("exit")
                    return
            else:
                with trio.move_on_after(1):
                    await abc.wait_mode_change()


if __name__ == "__main__":
    trio.run(main)
