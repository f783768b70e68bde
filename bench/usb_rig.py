"""Guest-side pieces of the USB bench: the two responders' gadgets and what they cost.

Both responders go through ``mtp-gadget`` with a generated config, as in the
end-to-end suite; uMTP-Responder (``umtprd``) gets its own config file with the
buffer sizes under test.  The per-process figures come from ``/proc``: CPU as
utime+stime of the responder process (all threads), memory as VmHWM, the peak
resident set since the process started.
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.guest.support import PYTHON, Gadget, Tools, base_config, mtp_responder_command

RESPONDERS = ("ours", "umtprd")
PROGRESS_RE = re.compile(rb"Progress: (\d+) of (\d+)")

#: uMTP-Responder 1.3.10 (Debian's) honours these three keys: usb_max_rd_buffer_size
#: and usb_max_wr_buffer_size are rounded down to a multiple of 512 and size its
#: bulk reads and writes, read_buffer_cache_size sizes the file read cache;
#: its own defaults are 0x10000, 0x10000 and 0x100000.  The sweep's candidates:
SWEEP: tuple[dict[str, int], ...] = (
    {"usb_max_rd_buffer_size": 0x10000, "usb_max_wr_buffer_size": 0x10000,
     "read_buffer_cache_size": 0x100000},
    {"usb_max_rd_buffer_size": 0x40000, "usb_max_wr_buffer_size": 0x40000,
     "read_buffer_cache_size": 0x100000},
    {"usb_max_rd_buffer_size": 0x40000, "usb_max_wr_buffer_size": 0x40000,
     "read_buffer_cache_size": 0x400000},
    {"usb_max_rd_buffer_size": 0x100000, "usb_max_wr_buffer_size": 0x100000,
     "read_buffer_cache_size": 0x400000},
)  # fmt: skip


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def make_payload(path: Path, size: int, sparse: bool) -> str:
    """Random bytes (nothing on the way can compress them), or a hole of zeros.

    A sparse file takes no memory on the guest's tmpfs, which is what lets a
    1 GiB transfer run in a 3 GiB guest; its check is then an exact zero check
    (the SHA-256 of ``size`` zero bytes).
    """
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        if sparse:
            f.truncate(size)
            zeros = bytes(1 << 20)
            for _ in range(size >> 20):
                digest.update(zeros)
            digest.update(bytes(size & ((1 << 20) - 1)))
            return digest.hexdigest()
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 1 << 20))
            digest.update(block)
            f.write(block)
            remaining -= len(block)
    return digest.hexdigest()


# -- /proc -----------------------------------------------------------------------------------


def process_cpu(pid: int | None) -> float | None:
    """User+system CPU seconds of a process and all its threads so far."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int | None) -> int | None:
    """VmHWM: the most resident memory the process has had at any moment."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def cpu_delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


# -- libmtp tools --------------------------------------------------------------------------


@dataclass
class ToolRun:
    """Seconds in total and in the data phase, exit status, and the tool's own CPU."""

    wall: float
    data: float | None
    status: int
    cpu: float


def timed_tool(argv: Sequence[str], log: Path, timeout: float) -> ToolRun:
    """Run a libmtp tool; its data phase is bracketed by its own progress lines.

    The tools print ``Progress: N of M`` after every block, so the first and the
    last line bracket the bulk phase; the rest of the wall time is device open,
    session and listing.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    output = bytearray()
    first: tuple[float, int] | None = None
    last: tuple[float, int] | None = None
    total = 0
    deadline = started + timeout
    timed_out = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            break
        ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        now = time.monotonic()
        if not chunk:
            break
        output += chunk
        matches = PROGRESS_RE.findall(chunk)
        if matches:
            done, total = int(matches[-1][0]), int(matches[-1][1])
            if first is None:
                first = (now, done)
            last = (now, done)
    _, wait_status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    status = os.waitstatus_to_exitcode(wait_status)
    proc.returncode = status
    data: float | None = None
    if first is not None and last is not None and last[0] > first[0] and total:
        data = (last[0] - first[0]) * total / max(1, last[1] - first[1])
    text = output.decode(errors="replace").replace("\r", "\n")
    lines = [ln for ln in text.splitlines() if not ln.startswith("Progress:")]
    log.write_text(
        f"$ {shlex.join(argv)}\n# exit {status}{' TIMED OUT' if timed_out else ''}"
        f" after {wall:.2f}s\n" + "\n".join(lines) + "\n"
    )
    return ToolRun(wall, data, -1 if timed_out else status, usage.ru_utime + usage.ru_stime)


# -- gadgets ---------------------------------------------------------------------------------


def umtprd_conf(mount: Path, storage: Path, gadget: Gadget, buffers: dict[str, int]) -> str:
    """uMTP-Responder's config: FunctionFS mode, the given buffers, no inotify."""
    dev = gadget.config["device"]
    return "\n".join([
        "loop_on_disconnect 1",
        f'storage "{storage}" "Bench Storage" "rw"',
        f'manufacturer "{dev["manufacturer"]}"',
        f'product "{dev["product"]}"',
        f'serial "{dev["serial"]}"',
        'firmware_version "Rev A"',
        'interface "MTP"',
        f"usb_vendor_id {dev['vendor_id']:#06x}",
        f"usb_product_id {dev['product_id']:#06x}",
        "usb_class 0x6",
        "usb_subclass 0x1",
        "usb_protocol 0x1",
        "usb_dev_version 0x3008",
        "no_inotify 0x1",
        *(f"{key} {value:#x}" for key, value in buffers.items()),
        "usb_functionfs_mode 0x1",
        f'usb_dev_path "{mount}/ep0"',
        f'usb_epin_path "{mount}/ep1"',
        f'usb_epout_path "{mount}/ep2"',
        f'usb_epint_path "{mount}/ep3"',
        "usb_max_packet_size 0x200",
        "",
    ])  # fmt: skip


def umtprd_argv(work: Path) -> list[str]:
    return ["umtprd", "-conf", str(work / "umtprd.conf")]


def umtprd_command(work: Path) -> list[str]:
    """umtprd as ``mtp-gadget`` starts it (it binds once the descriptors are written)."""
    return umtprd_argv(work)


def make_gadget(
    responder: str,
    work: Path,
    tools: Tools,
    logs: Path,
    umtprd_buffers: dict[str, int],
    providers: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Gadget:
    """A gadget for ``responder`` serving ``work/storage`` (created if missing)."""
    storage = work / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    name = f"bench{responder}"
    command = mtp_responder_command() if responder == "ours" else umtprd_command(work)
    data = base_config(
        name=name, work_dir=work, log_dir=work, responder_command=command,
        product=f"Bench {responder}",
    )  # fmt: skip
    data["gadget"]["responder_log"] = str(work / f"{responder}.log")
    if responder == "ours":
        data["providers"] = providers or {
            "files": {"storages": [{"path": str(storage), "description": "Bench Storage"}]}
        }
        for table, values in (extra or {}).items():
            data[table] = values
    else:
        data["gadget"]["os_desc"] = False  # umtprd writes no MS OS descriptors
    gadget = Gadget(tools=tools, config=data, config_path=work / f"{name}.toml",
                    work_dir=work, log_dir=logs)  # fmt: skip
    if responder == "umtprd":
        (work / "umtprd.conf").write_text(
            umtprd_conf(gadget.mount, storage, gadget, umtprd_buffers)
        )
    return gadget


def responder_argv(gadget: Gadget) -> list[str]:
    """The responder's own command, placeholders filled in (umtprd without its shell)."""
    if gadget.name == "benchumtprd":
        return umtprd_argv(gadget.work_dir)
    values = {"python": PYTHON, "config": str(gadget.config_path), "mount": str(gadget.mount)}
    return [part.format(**values) for part in gadget.config["gadget"]["responder_command"]]
