"""Guest half of ``bench/bench_usb.py``: time libmtp transfers against two responders.

Runs inside the test VM (``tests/e2e/vm.py``), where the gadget, the kernel's
dummy_hcd link and libmtp's example tools are all real.  The same 64 MiB payload
is fetched (``mtp-getfile``) from and sent (``mtp-sendfile``) to our responder
and to uMTP-Responder (``umtprd``), round by round and alternating between the
two, so that CPU time taken by other work on the shared host penalises both
alike instead of whichever happened to run during a busy minute.

Storages, payloads and responder logs live on the guest's tmpfs: 9p would cost
as much as MTP itself.  Every transfer is checked by SHA-256 before its time
counts, so a truncated or corrupted transfer can never look fast.

Results go to ``$MTP_E2E_RESULTS/bench-usb.json`` for the host to print.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.guest.support import (  # noqa: E402
    IN_GUEST,
    PYTHON,
    RESULTS,
    Gadget,
    Tools,
    base_config,
    mtp_responder_command,
)

WORK = Path("/tmp/bench-usb")  # the guest's /tmp is a tmpfs
RESPONDERS = ("ours", "umtprd")
# An extension, because libmtp's tools misbehave on names without one, and not
# ".bin": libmtp sends that as format 0xB802 (Firmware), whose properties our
# responder does not list yet, so mtp-sendfile fails with an empty property list.
# ".dat" is format 0x3000 (Undefined) in both directions and for both responders.
GET_NAME = "get.dat"
PROGRESS_RE = re.compile(rb"Progress: (\d+) of (\d+)")
FILE_ID_RE = re.compile(r"File ID: (\d+)\s*\n\s*Filename: (.+)")


@dataclass
class Transfer:
    """One timed tool run; ``wall`` is what a user waits, ``data`` the bulk phase alone."""

    responder: str
    direction: str  # get | send
    round: int
    size: int
    wall: float
    data: float | None
    ok: bool
    problem: str = ""
    responder_cpu: float | None = None  # user+system seconds of the responder process
    client_cpu: float | None = None  # user+system seconds of the libmtp tool

    @property
    def wall_mbps(self) -> float:
        return self.size / self.wall / 1e6


@dataclass
class BenchResult:
    size: int
    rounds: int
    link: str
    transfers: list[Transfer] = field(default_factory=list)
    setup_seconds: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def make_payload(path: Path, size: int) -> str:
    """Random bytes, so no layer on the way can get away with compressing them."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 1 << 20))
            digest.update(block)
            f.write(block)
            remaining -= len(block)
    return digest.hexdigest()


@dataclass
class ToolRun:
    """Seconds in total and in the data phase, exit status, and the tool's own CPU."""

    wall: float
    data: float | None
    status: int
    cpu: float


def process_cpu(pid: int | None) -> float | None:
    """User+system CPU seconds of a process and all its threads so far.

    CPU spent per megabyte is steadier than a transfer time on a shared host, and
    it is what a busier or smaller device runs out of first.  (A TCG guest sees
    no steal time, so a loaded host inflates it too, but alike for both sides.)
    """
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_tool(argv: Sequence[str], log: Path, timeout: float) -> ToolRun:
    """Run a libmtp tool and time it, in total and its data phase.

    The tools print ``Progress: N of M`` and flush after every block, so the time
    between the first and the last progress line brackets the bulk data phase;
    the rest of the wall time is device open, session and listing, which is the
    same client work for both responders but still part of what a user waits.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
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
        # Scale the bracketed part up to the whole payload.
        data = (last[0] - first[0]) * total / max(1, last[1] - first[1])
    text = output.decode(errors="replace").replace("\r", "\n")
    lines = [ln for ln in text.splitlines() if not ln.startswith("Progress:")]
    log.write_text(
        f"$ {shlex.join(argv)}\n# exit {status}{' TIMED OUT' if timed_out else ''}"
        f" after {wall:.2f}s; data phase {data if data is None else round(data, 2)}s\n"
        + "\n".join(lines) + "\n"
    )
    return ToolRun(wall, data, -1 if timed_out else status, usage.ru_utime + usage.ru_stime)


def find_object_id(tools: Tools, name: str) -> int:
    """Look the id up by name: some responders renumber handles per session."""
    out = tools.run(["mtp-files"], timeout=120, name="mtp-files", check=True).stdout
    for object_id, filename in FILE_ID_RE.findall(out):
        if filename.strip() == name:
            return int(object_id)
    raise RuntimeError(f"{name} not listed by mtp-files:\n{out[-2000:]}")


# -- the two responders ------------------------------------------------------------------


def umtprd_conf(mount: Path, storage: Path, gadget: Gadget) -> str:
    """uMTP-Responder's config: FunctionFS mode, 64 KiB USB buffers, no inotify."""
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
        "usb_max_rd_buffer_size 0x10000",
        "usb_max_wr_buffer_size 0x10000",
        "read_buffer_cache_size 0x100000",
        "usb_functionfs_mode 0x1",
        f'usb_dev_path "{mount}/ep0"',
        f'usb_epin_path "{mount}/ep1"',
        f'usb_epout_path "{mount}/ep2"',
        f'usb_epint_path "{mount}/ep3"',
        "usb_max_packet_size 0x200",
        "",
    ])


def make_gadget(
    responder: str, tools: Tools, logs: Path, transport: dict[str, int] | None = None
) -> Gadget:
    """A gadget built by ``mtp-gadget`` from a generated config, like the e2e fixture.

    umtprd goes through the same tool with its own command line: gadget_config
    starts it, waits for ep1 (its descriptors) and only then binds the UDC.
    """
    work = WORK / responder
    storage = work / "storage"
    name = f"bench{responder}"
    command = (
        mtp_responder_command()
        if responder == "ours"
        else ["umtprd", "-conf", str(work / "umtprd.conf")]
    )
    data = base_config(
        name=name, work_dir=work, log_dir=work, responder_command=command,
        product=f"Bench {responder}",
    )
    data["gadget"]["responder_log"] = str(work / "responder.log")
    if responder == "ours":
        data["providers"] = {
            "files": {"storages": [{"path": str(storage), "description": "Bench Storage"}]}
        }
        if transport:
            data["transport"] = dict(transport)
    else:
        # umtprd writes no MS OS descriptors into FunctionFS; do not advertise any.
        data["gadget"]["os_desc"] = False
    gadget = Gadget(tools=tools, config=data, config_path=work / f"{name}.toml",
                    work_dir=work, log_dir=logs)
    if responder == "umtprd":
        (work / "umtprd.conf").write_text(umtprd_conf(gadget.mount, storage, gadget))
    return gadget


# -- rounds --------------------------------------------------------------------------------


def run_round(
    responder: str, rnd: int, result: BenchResult, payload: Path, digest: str,
    tools: Tools, logs: Path, timeout: float, profile: str | None,
    transport: dict[str, int] | None = None,
) -> None:
    work = WORK / responder
    storage = work / "storage"
    gadget = make_gadget(responder, tools, logs, transport)
    started = time.monotonic()
    gadget.up()
    result.setup_seconds.setdefault(responder, []).append(time.monotonic() - started)
    try:
        object_id = find_object_id(tools, GET_NAME)
        received = WORK / f"received-{responder}.bin"
        received.unlink(missing_ok=True)
        measure(gadget, result, Transfer(responder, "get", rnd, result.size, 0, None, False),
                ["mtp-getfile", str(object_id), str(received)], received, digest,
                logs, timeout, profile)
        received.unlink(missing_ok=True)

        # mtp-sendfile names the new object after the local file's basename and
        # takes the second argument as the parent folder.
        remote = f"send-{rnd}.dat"
        local = WORK / remote
        local.unlink(missing_ok=True)
        os.link(payload, local)
        measure(gadget, result, Transfer(responder, "send", rnd, result.size, 0, None, False),
                ["mtp-sendfile", str(local), "/"], storage / remote, digest,
                logs, timeout, profile)
        local.unlink()
    finally:
        gadget.down(check=False)
        for sent in storage.glob("send-*.dat"):
            sent.unlink()
        shutil.copy(work / "responder.log", logs / f"{responder}-r{rnd}-responder.log")


def measure(
    gadget: Gadget, result: BenchResult, t: Transfer, argv: list[str], arrived: Path,
    digest: str, logs: Path, timeout: float, profile: str | None,
) -> None:
    """One timed transfer, with the responder's CPU time and optionally a profile."""
    label = f"{t.responder}-r{t.round}-{t.direction}"
    spy = start_profiler(gadget, profile, logs / f"{profile}-{label}") if profile else None
    pid = gadget.responder_pid()
    cpu0 = process_cpu(pid)
    try:
        run = timed_tool(argv, logs / f"{label}.log", timeout)
    finally:
        cpu1 = process_cpu(pid)
        if spy is not None:
            stop_profiler(spy, result)
    t.wall, t.data, t.ok = run.wall, run.data, run.status == 0
    t.responder_cpu, t.client_cpu = cpu_delta(cpu0, cpu1), run.cpu
    result.transfers.append(check(t, run.status, arrived, digest))


def cpu_delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def check(t: Transfer, status: int, path: Path, digest: str) -> Transfer:
    """A transfer counts only if the tool succeeded and the bytes are identical."""
    if status != 0:
        t.ok, t.problem = False, f"tool exited {status}"
    elif not path.exists():
        t.ok, t.problem = False, f"{path} missing"
    elif (actual := sha256_file(path)) != digest:
        t.ok, t.problem = False, f"SHA-256 mismatch ({path.stat().st_size} bytes, {actual[:12]})"
    print(f"  {t.responder:<7} {t.direction:<4} round {t.round}: {t.wall:6.2f}s wall "
          f"({t.wall_mbps:5.2f} MB/s)"
          f"{'' if t.data is None else f', data phase {t.size / t.data / 1e6:5.2f} MB/s'}"
          f"{'' if t.responder_cpu is None else f', responder CPU {t.responder_cpu:.2f}s'}"
          f", client CPU {t.client_cpu or 0:.2f}s"
          f"{'' if t.ok else ' FAILED: ' + t.problem}", flush=True)
    return t


# -- profiling -----------------------------------------------------------------------------

PROFILERS = ("py-spy", "strace", "perf")


@dataclass
class Profiler:
    proc: subprocess.Popen[bytes]
    kind: str
    out: Path


def start_profiler(gadget: Gadget, kind: str, out: Path) -> Profiler | None:
    """Watch the responder during one transfer; none of these tools is a dependency.

    py-spy shows where the Python time goes, ``strace -c`` how many system calls
    a transfer costs (each one is expensive under TCG), and a system-wide
    ``perf`` sample what the kernel does on the responder's behalf.
    """
    pid = gadget.responder_pid()
    if pid is None:
        print("  (no profile: no responder pid)")
        return None
    if kind == "py-spy":
        if gadget.name != "benchours":
            return None  # umtprd is C; py-spy profiles Python
        spy = Path(PYTHON).with_name("py-spy")
        if not spy.exists():
            print("  (no profile: py-spy is not installed in the venv)")
            return None
        argv = [str(spy), "record", "--pid", str(pid), "--rate", "50", "--format", "raw",
                "--threads", "--output", str(out.with_suffix(".txt")), "--nonblocking"]
    elif kind == "strace":
        argv = ["strace", "-c", "-f", "-p", str(pid), "-o", str(out.with_suffix(".txt"))]
    else:
        argv = ["perf", "record", "-e", "cpu-clock", "-F", "250", "-a", "-g",
                "-o", str(out.with_suffix(".data"))]
    with open(out.with_suffix(".log"), "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    time.sleep(1.0)  # let the tool attach before the transfer starts
    return Profiler(proc, kind, out)


def stop_profiler(profiler: Profiler, result: BenchResult) -> None:
    profiler.proc.send_signal(signal.SIGINT)  # all three write their output on SIGINT
    try:
        profiler.proc.wait(60)
    except subprocess.TimeoutExpired:
        profiler.proc.kill()
        profiler.proc.wait()
    if profiler.kind == "perf":
        data = profiler.out.with_suffix(".data")
        with open(profiler.out.with_suffix(".txt"), "wb") as report:
            subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                            "--sort", "comm,dso,sym", "-g", "none", "--percent-limit", "0.5"],
                           stdout=report, stderr=subprocess.STDOUT, check=False)
        data.unlink(missing_ok=True)
    result.profiles.append(str(profiler.out.with_suffix(".txt")))


# -- main -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--responders", default=",".join(RESPONDERS))
    parser.add_argument("--timeout", type=float, default=300, help="per tool run (s)")
    parser.add_argument("--profile", choices=PROFILERS, help="watch each transfer with this")
    parser.add_argument("--transport", action="append", default=[], metavar="KEY=INT",
                        help="[transport] setting for our responder, to compare tunings")
    args = parser.parse_args(argv)
    if not IN_GUEST:
        print("usb_guest.py runs inside the test VM; use bench/bench_usb.py", file=sys.stderr)
        return 2
    responders = [r for r in args.responders.split(",") if r]
    logs = RESULTS / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    tools = Tools(logs)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    size = args.size_mib << 20
    payload = WORK / "payload.bin"
    digest = make_payload(payload, size)
    for responder in responders:
        storage = WORK / responder / "storage"
        storage.mkdir(parents=True)
        shutil.copyfile(payload, storage / GET_NAME)
    transport = {k: int(v, 0) for k, v in (item.split("=", 1) for item in args.transport)}
    if transport:
        print(f"  our [transport]: {transport}", flush=True)
    result = BenchResult(size=size, rounds=args.rounds, link=os.environ.get("MTP_E2E_LINK", "?"))
    # With a clocksource other than the TSC every clock read is a system call
    # (and an emulated device access), which weighs on event loops that read
    # the clock often; worth knowing when comparing figures across machines.
    clocksource = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource")
    with contextlib.suppress(OSError):
        result.notes.append(f"guest clocksource: {clocksource.read_text().strip()}")
    failed = False
    for rnd in range(1, args.rounds + 1):
        for responder in responders:
            try:
                run_round(responder, rnd, result, payload, digest, tools, logs,
                          args.timeout, args.profile, transport)
            except (AssertionError, RuntimeError, OSError) as exc:
                failed = True
                result.notes.append(f"{responder} round {rnd}: {exc}")
                print(f"  {responder} round {rnd} FAILED: {exc}", flush=True)
    out: dict[str, Any] = asdict(result)
    (RESULTS / "bench-usb.json").write_text(json.dumps(out, indent=2) + "\n")
    return 1 if failed or not all(t.ok for t in result.transfers) else 0


if __name__ == "__main__":
    sys.exit(main())
