"""USB throughput against uMTP-Responder: 64 MiB through libmtp, in the test VM.

``python bench/bench_usb.py [--rounds N] [--size-mib M] [--profile py-spy|strace|perf]``
(``make bench`` runs it with the defaults.)

Boots the end-to-end VM once (``tests/e2e/vm.py``: Debian's kernel under QEMU
TCG, dummy_hcd high-speed link) and runs ``bench/usb_guest.py`` there, which
fetches a 64 MiB file with ``mtp-getfile`` and sends one with ``mtp-sendfile``,
three rounds each, against our responder and against ``umtprd`` with 64 KiB
USB buffers and inotify off.  Both serve a storage on the guest's tmpfs.

This prints figures; it is not a test.  It fails only when it could not measure
(the VM did not run, a transfer failed or arrived corrupted), never because a
ratio misses its goal: a benchmark that hides bad numbers is useless.

Two rates are shown.  *wall* is 64 MiB over the tool's whole run (device open,
session, listing and the transfer), which is what a user waits for.  *data* is
the bulk phase alone, timed from the tools' own progress lines; it isolates the
responder's data path from the client's fixed costs.  The TCG-emulated CPU is
the bottleneck, shared with anything else running on the host, so compare the
two responders within one run rather than across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.e2e import vm  # noqa: E402

GUEST_SCRIPT = REPO_ROOT / "bench" / "usb_guest.py"
RESPONDERS = ("ours", "umtprd")
DIRECTIONS = ("get", "send")
GOAL = 1.0


def _rates(transfers: list[dict[str, Any]], responder: str, direction: str,
           kind: str) -> list[float | None]:
    """MB/s per round, None where the transfer failed or had no progress timing."""
    rates: list[float | None] = []
    for t in sorted(transfers, key=lambda t: t["round"]):
        if t["responder"] != responder or t["direction"] != direction:
            continue
        seconds = t["wall"] if kind == "wall" else t["data"]
        rates.append(t["size"] / seconds / 1e6 if t["ok"] and seconds else None)
    return rates


def _median(rates: list[float | None]) -> float | None:
    good = [r for r in rates if r is not None]
    return statistics.median(good) if good else None


def _fmt(rate: float | None) -> str:
    return f"{rate:7.2f}" if rate is not None else "   fail"


def host_load() -> str:
    """The host's load average: other VMs on a shared host move these figures a lot."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def print_report(data: dict[str, Any], elapsed: float) -> None:
    transfers = data["transfers"]
    rounds = data["rounds"]
    size_mib = data["size"] >> 20
    print(f"\nMTP transfer of a {size_mib} MiB file with libmtp's mtp-getfile / mtp-sendfile")
    print(f"({data['link']} dummy_hcd link in a QEMU TCG guest; storage on tmpfs; "
          "SHA-256 verified; MB/s = 10^6 bytes/s)\n")
    heads = " ".join(f"{'r' + str(i):>7}" for i in range(1, rounds + 1))
    print(f"{'rate':<5} {'dir':<5} {'responder':<9} {heads} {'median':>7}")
    print("-" * (30 + 8 * rounds))
    medians: dict[tuple[str, str, str], float | None] = {}
    for kind in ("wall", "data"):
        for direction in DIRECTIONS:
            for responder in RESPONDERS:
                rates = _rates(transfers, responder, direction, kind)
                if not rates:
                    continue
                rates += [None] * (rounds - len(rates))
                medians[kind, direction, responder] = med = _median(rates)
                cells = " ".join(_fmt(r) for r in rates)
                print(f"{kind:<5} {direction:<5} {responder:<9} {cells} {_fmt(med)}")
        print()
    print(f"ratio ours/umtprd of the medians (goal >= {GOAL:.1f}):")
    for kind in ("wall", "data"):
        parts = []
        for direction in DIRECTIONS:
            ours = medians.get((kind, direction, "ours"))
            theirs = medians.get((kind, direction, "umtprd"))
            if ours is None or theirs is None:
                parts.append(f"{direction} n/a")
                continue
            ratio = ours / theirs
            flag = "" if ratio >= GOAL else " (below goal)"
            parts.append(f"{direction} {ratio:.3f}{flag}")
        print(f"  {kind:<5} " + ", ".join(parts))
    print(f"\nCPU seconds per {size_mib} MiB transfer, median (responder / libmtp tool):")
    for direction in DIRECTIONS:
        parts = []
        for responder in RESPONDERS:
            picked = [t for t in transfers
                      if t["responder"] == responder and t["direction"] == direction and t["ok"]]
            if not picked:
                continue
            server = [t["responder_cpu"] for t in picked if t.get("responder_cpu") is not None]
            client = [t["client_cpu"] for t in picked if t.get("client_cpu") is not None]
            server_txt = f"{statistics.median(server):.2f}" if server else "?"
            client_txt = f"{statistics.median(client):.2f}" if client else "?"
            parts.append(f"{responder} {server_txt} / {client_txt}")
        print(f"  {direction:<5} " + ", ".join(parts))
    setup = data.get("setup_seconds", {})
    if setup:
        print("\ngadget bring-up (mtp-gadget up to enumerated), median s: " + ", ".join(
            f"{r} {statistics.median(v):.1f}" for r, v in setup.items() if v))
    for note in data.get("notes", []):
        print(f"NOTE: {note}")
    if "host_load" in data:
        print(f"host load average (1/5/15 min) before: {data['host_load'][0]}, "
              f"after: {data['host_load'][1]}; {os.cpu_count()} host CPUs")
    if elapsed:
        print(f"\nbench_usb: {elapsed:.0f}s in total")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--responders", default=",".join(RESPONDERS),
                        help="comma-separated subset of: " + ", ".join(RESPONDERS))
    parser.add_argument("--profile", choices=("py-spy", "strace", "perf"),
                        help="profile every transfer with this tool (py-spy: in the venv)")
    parser.add_argument("--transport", action="append", default=[], metavar="KEY=INT",
                        help="a [transport] setting for our responder (buffer_size=...)")
    parser.add_argument("--timeout", type=float, default=1500, help="guest job timeout (s)")
    parser.add_argument("--report", type=Path, metavar="RUN_DIR",
                        help="print the table of an earlier run instead of measuring")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.report:
        print_report(json.loads((args.report / "bench-usb.json").read_text()), 0)
        return 0
    command = [
        sys.executable, str(GUEST_SCRIPT),
        "--rounds", str(args.rounds),
        "--size-mib", str(args.size_mib),
        "--responders", args.responders,
    ]  # fmt: skip
    if args.profile:
        command += ["--profile", args.profile]
    for setting in args.transport:
        command += ["--transport", setting]
    load_before = host_load()
    try:
        result = vm.run(command, timeout=args.timeout, label="bench-usb")
    except vm.VmError as exc:
        print(f"bench_usb: cannot run the VM: {exc}", file=sys.stderr)
        return 2
    report = result.run_dir / "bench-usb.json"
    if not report.exists():
        print(f"bench_usb: no results ({result.describe_failure()}); "
              f"logs in {result.run_dir}", file=sys.stderr)
        return 1
    data = json.loads(report.read_text())
    data["host_load"] = [load_before, host_load()]
    report.write_text(json.dumps(data, indent=2) + "\n")
    print_report(data, time.monotonic() - started)
    print(f"logs: {result.run_dir}/bench-logs")
    if not result.ok:
        print(f"bench_usb: FAILED: {result.describe_failure()} (see the logs)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
