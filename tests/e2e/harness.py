"""Run the end-to-end suite inside the test VM and judge it strictly.

``python -m tests.e2e.harness [-k EXPR] [--highspeed | --superspeed] [--demo]``
``python -m tests.e2e.harness --client-races``, ``--long`` or ``--large`` [``--superspeed``]

Two boots by default:

1. a high-speed dummy_hcd link running every test marked ``e2e``;
2. a SuperSpeed link (``dummy_hcd.is_super_speed=1``) running the tests marked
   both ``e2e`` and ``superspeed``.

Tests marked ``client_race`` (a client's own race fails them at times),
``long`` (minutes each: kills at every restore point, resumed and
encrypted backups, the CDC OBEX gadget) and
``large`` (objects of 4 GiB and more, a large backup: many minutes each) are
left out of both; ``--client-races``, ``--long`` and ``--large`` run them on
one boot.

The guest runs pytest itself (the project's venv over 9p) and writes a JUnit XML
report into the run directory; this side reads it back.  A skipped test counts as
a failure, and so do zero tests, a crashed guest or a timeout: an end-to-end suite
that quietly proves nothing is worse than a red one.

``--demo`` boots once and runs ``tests/e2e/guest/demo.py``, which brings the
gadget up with ``mtp-gadget up`` and drives it with libmtp's tools.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.e2e import vm

SUITE_TIMEOUT = 1800  # per boot, inside the guest; the host adds boot/power-off slack
LARGE_SUITE_TIMEOUT = 7200  # --large: three 4 GiB objects through an emulated link


@dataclass
class Case:
    link: str
    name: str
    outcome: str  # passed | failed | error | skipped
    seconds: float
    message: str = ""


@dataclass
class Boot:
    link: str
    marker: str


def parse_junit(path: Path, link: str) -> list[Case]:
    root = ET.parse(path).getroot()
    cases = []
    for tc in root.iter("testcase"):
        classname = tc.get("classname", "")
        module = classname.rsplit(".", 1)[-1]
        name = f"{module}::{tc.get('name', '?')}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = tc.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                # The attribute is pytest's one-line summary; the text has the details.
                message = (node.text or node.get("message") or "").strip()
                break
        cases.append(Case(link, name, outcome, float(tc.get("time", 0) or 0), message))
    return cases


def last_started_test(guest_log: Path) -> str | None:
    """With ``-v`` pytest prints a test's id before running it and its outcome after."""
    if not guest_log.exists():
        return None
    last = None
    for line in guest_log.read_text(errors="replace").splitlines():
        m = re.match(r"^(tests/\S+::\S+)( (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS))?", line)
        if m:
            last = None if m.group(2) else m.group(1)
    return last


def pytest_command(marker: str, keyword: str | None, extra: Sequence[str]) -> list[str]:
    cmd = [
        sys.executable, "-m", "pytest", "tests/e2e",
        "-m", marker,  # overrides the `-m 'not e2e'` in the project's addopts
        "-p", "no:cacheprovider",  # nothing to cache, and 9p writes are slow
        "--junitxml={run_dir}/junit.xml",
        "-o", "junit_family=xunit2",
        "-rfEs", "-v",
    ]  # fmt: skip
    if keyword:
        cmd += ["-k", keyword]
    return cmd + list(extra)


def print_table(cases: list[Case]) -> None:
    width = max([len(c.name) for c in cases] + [20])
    print(f"\n{'link':<12} {'test':<{width}} {'result':<8} {'time':>7}")
    print(f"{'-' * 12} {'-' * width} {'-' * 8} {'-' * 7}")
    for c in cases:
        flag = c.outcome.upper() if c.outcome != "passed" else "ok"
        print(f"{c.link:<12} {c.name:<{width}} {flag:<8} {c.seconds:>6.1f}s")


def run_boot(boot: Boot, args: argparse.Namespace) -> tuple[list[Case], list[str]]:
    """One guest boot running pytest; its test cases and anything else wrong."""
    problems: list[str] = []
    result = vm.run(
        pytest_command(boot.marker, args.k, args.pytest_args),
        superspeed=boot.link == "super-speed",
        timeout=args.timeout,
        label=f"e2e-{boot.link}",
        show_logs_on_failure=False,  # failed tests are reported from the JUnit file
        cpus=args.cpus,
    )
    junit = result.run_dir / "junit.xml"
    if not junit.exists() or result.exit_status not in (0, 1):
        vm.print_logs(result)
    cases = parse_junit(junit, boot.link) if junit.exists() else []
    if not junit.exists():
        problems.append(f"{boot.link}: no JUnit report ({result.describe_failure()})")
    elif not cases:
        problems.append(f"{boot.link}: zero tests ran")
    # pytest exit status 1 is 'some tests failed', reported per test below;
    # anything else (interrupted, internal error, no tests) is a problem of its own.
    if not result.ok and not (result.exit_status == 1 and cases):
        problems.append(f"{boot.link}: {result.describe_failure()}")
        running = last_started_test(result.guest_log)
        if running:
            problems.append(f"{boot.link}: the test running at the end was {running}")
    print(
        f"[e2e] {boot.link}: {len(cases)} tests in {result.wall_seconds:.0f}s; "
        f"logs in {result.run_dir}",
        flush=True,
    )
    return cases, problems


def run_suite(args: argparse.Namespace) -> int:
    boots = []
    if args.client_races:
        boots.append(Boot("high-speed", "e2e and client_race"))
    elif args.long:
        boots.append(Boot("high-speed", "e2e and long"))
    elif args.large:
        # One boot: the high-speed link unless --superspeed asks for the other.
        link = "super-speed" if args.superspeed else "high-speed"
        boots.append(Boot(link, "e2e and large"))
    else:
        if not args.superspeed:
            boots.append(Boot("high-speed", "e2e and not client_race and not long and not large"))
        if not args.highspeed:
            boots.append(
                Boot(
                    "super-speed",
                    "e2e and superspeed and not client_race and not long and not large",
                )
            )
    started = time.monotonic()
    vm.prepare()  # once, before boots may start side by side
    cases: list[Case] = []
    problems: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        for boot_cases, boot_problems in pool.map(lambda b: run_boot(b, args), boots):
            cases += boot_cases
            problems += boot_problems
    if cases:
        print_table(cases)
    bad = [c for c in cases if c.outcome != "passed"]
    for c in bad:
        print(f"\n{c.outcome.upper()}: [{c.link}] {c.name}")
        for line in c.message.splitlines()[-30:]:
            print(f"    {line}")
        if c.outcome == "skipped":
            print("    (a skipped end-to-end test counts as a failure)")
    elapsed = time.monotonic() - started
    counts = {
        o: sum(c.outcome == o for c in cases) for o in ("passed", "failed", "error", "skipped")
    }
    summary = ", ".join(f"{n} {o}" for o, n in counts.items())
    for p in problems:
        print(f"\nPROBLEM: {p}")
    verdict = "PASSED" if not bad and not problems and cases else "FAILED"
    print(f"\n[e2e] {verdict}: {summary} in {elapsed:.0f}s")
    return 0 if verdict == "PASSED" else 1


def run_demo(args: argparse.Namespace) -> int:
    result = vm.run(
        [sys.executable, "-m", "tests.e2e.guest.demo"],
        superspeed=args.superspeed,
        timeout=args.timeout,
        label="demo",
    )
    if result.guest_log.exists():
        print(result.guest_log.read_text(errors="replace"))
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.e2e.harness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--demo", action="store_true", help="boot and run the demo instead")
    parser.add_argument("-k", metavar="EXPR", help="pytest -k expression inside the guest")
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument(
        "--superspeed",
        action="store_true",
        help="only the SuperSpeed boot (tests marked superspeed)",
    )
    speed.add_argument("--highspeed", action="store_true", help="only the high-speed boot")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help=f"guest job timeout per boot in seconds (default {SUITE_TIMEOUT}, "
        f"{LARGE_SUITE_TIMEOUT} with --large)",
    )
    cores = os.cpu_count() or 1
    parser.add_argument(
        "--parallel",
        type=int,
        default=2 if cores >= 6 else 1,
        metavar="N",
        help="boots run side by side (default: 2 on machines with 6+ cores, else 1)",
    )
    parser.add_argument("--cpus", type=int, default=2, help="vCPUs per guest (default 2)")
    parser.add_argument(
        "--client-races",
        action="store_true",
        help="only the tests marked client_race (a client's own race makes them fail at times)",
    )
    parser.add_argument(
        "--long",
        action="store_true",
        help="only the tests marked long (kills at every restore point, resumed and "
        "encrypted backups, the CDC OBEX gadget: minutes each)",
    )
    parser.add_argument(
        "--large",
        action="store_true",
        help="only the tests marked large (4 GiB objects, a large backup; one boot, "
        "high-speed unless --superspeed)",
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if sum((args.large, args.client_races, args.long)) > 1:
        parser.error("--large, --long and --client-races are separate runs")
    if args.timeout is None:
        args.timeout = LARGE_SUITE_TIMEOUT if args.large else SUITE_TIMEOUT
    try:
        return run_demo(args) if args.demo else run_suite(args)
    except vm.VmError as exc:
        print(f"[e2e] FAILED: cannot run the VM: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
