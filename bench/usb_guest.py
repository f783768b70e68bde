"""Guest half of ``bench/bench_usb.py``: our responder against uMTP-Responder, in the VM.

Runs inside the test VM (``tests/e2e/vm.py``), where the gadget, the kernel's
dummy_hcd link, libmtp's tools and pyusb are all real.  Sections:

* ``transfers``: GetObject and SendObject of one payload with libmtp
  (``mtp-getfile``/``mtp-sendfile``) and with a light raw pyusb host
  (``bench/usb_raw.py``); wall and data-phase time, the responder's CPU
  seconds and its peak RSS (VmHWM).  Rounds alternate the responders, so
  a busy minute on the shared host penalises both alike.
* ``startup``: exec of the responder to its FunctionFS descriptors written
  (``ep1`` appears), page cache dropped (cold) or not (warm).
* ``listing``: ``mtp-files`` over a folder of many files (wall, responder CPU).
* ``small``: many 4 KiB files sent then fetched in one pyusb session (libmtp
  has no tool that sends many files in one process; ``mtp-sendtr`` is one track).
* ``backup``: ours only: a backup archive's GetObject next to a plain file of
  the same size, through the raw host.
* ``sweep``: uMTP-Responder alone, transfers under each buffer setting of
  ``usb_rig.SWEEP``.

Every transfer is checked (SHA-256, or for a sparse payload the digest of its
zeros) before its time counts.  Storages, payloads and logs live on the
guest's tmpfs.  Results go to ``$MTP_E2E_RESULTS/bench-usb.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
for entry in (REPO_ROOT, REPO_ROOT / "bench"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import usb_raw  # noqa: E402
from usb_rig import (  # noqa: E402
    RESPONDERS,
    SWEEP,
    cpu_delta,
    make_gadget,
    make_payload,
    peak_rss_kib,
    process_cpu,
    responder_argv,
    sha256_file,
    timed_tool,
)

from mtp_backup.usb import UsbInitiator  # noqa: E402
from mtp_responder.core.codes import ROOT  # noqa: E402
from tests.e2e.guest.support import (  # noqa: E402
    IN_GUEST,
    RESULTS,
    Gadget,
    Tools,
    make_file,
    parse_mtp_files,
)

WORK = Path("/tmp/bench-usb")  # the guest's /tmp is a tmpfs
# ".dat": format 0x3000 (Undefined) for libmtp in both directions and both responders.
GET_NAME = "get.dat"
SPARSE_FROM = 256 << 20
"""Payloads this large are holes of zeros: the guest's RAM holds the received copy only."""
CLIENTS = ("libmtp", "raw")
Record = dict[str, Any]


class Bench:
    """Shared state of one guest run: tools, logs, the umtprd setting, the results."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.logs = RESULTS / "bench-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.tools = Tools(self.logs)
        self.buffers: dict[str, int] = json.loads(args.umtprd_buffers)
        self.results: dict[str, Any] = {
            "link": os.environ.get("MTP_E2E_LINK", "?"),
            "umtprd_buffers": self.buffers,
            "notes": [],
            "failures": [],
        }

    def gadget(self, responder: str, work: Path, **kw: Any) -> Gadget:
        return make_gadget(responder, work, self.tools, self.logs, self.buffers, **kw)

    def fail(self, what: str, exc: BaseException) -> None:
        self.results["failures"].append(f"{what}: {type(exc).__name__}: {exc}")
        print(f"  {what} FAILED: {exc}", flush=True)

    def keep_log(self, gadget: Gadget, label: str) -> None:
        with contextlib.suppress(OSError):
            shutil.copy(gadget.responder_log, self.logs / f"{label}-responder.log")


# -- transfers -------------------------------------------------------------------------------


def transfers(bench: Bench, size: int, rounds: int, responders: list[str], tag: str) -> None:
    """Both directions, both clients, ``rounds`` times, alternating the responders."""
    area = WORK / f"xfer-{tag}"
    shutil.rmtree(area, ignore_errors=True)
    area.mkdir(parents=True)
    payload = area / "payload.dat"
    sparse = size >= SPARSE_FROM
    digest = make_payload(payload, size, sparse)
    out = bench.results.setdefault("transfers", [])
    for rnd in range(1, rounds + 1):
        for responder in responders:
            work = area / responder
            (work / "storage").mkdir(parents=True, exist_ok=True)
            target = work / "storage" / GET_NAME
            if not target.exists():
                if sparse:
                    make_payload(target, size, True)
                else:
                    os.link(payload, target)
            gadget = bench.gadget(responder, work)
            label = f"{tag}-{responder}-r{rnd}"
            try:
                gadget.up()
                usb_raw.wait_serving(gadget.vid, gadget.pid)
                idle_cpu(bench, gadget, responder)
                for client in CLIENTS:
                    for direction in ("get", "send"):
                        rec: Record = {
                            "tag": tag,
                            "responder": responder,
                            "client": client,
                            "direction": direction,
                            "round": rnd,
                            "size": size,
                            "buffers": bench.buffers if responder == "umtprd" else {},
                        }
                        out.append(rec)
                        one_transfer(bench, gadget, rec, payload, digest, area)
            except Exception as exc:
                bench.fail(label, exc)
            finally:
                gadget.down(check=False)
                bench.keep_log(gadget, label)
                for sent in (work / "storage").glob("send-*"):
                    sent.unlink()
    shutil.rmtree(area, ignore_errors=True)


def idle_cpu(bench: Bench, gadget: Gadget, responder: str, seconds: float = 3.0) -> None:
    """CPU a serving responder burns with nothing to do: it inflates every other figure."""
    pid = gadget.responder_pid()
    cpu0 = process_cpu(pid)
    time.sleep(seconds)
    used = cpu_delta(cpu0, process_cpu(pid))
    if used is not None:
        bench.results.setdefault("idle", []).append(
            {"responder": responder, "cpu_per_s": used / seconds}
        )


def one_transfer(bench: Bench, gadget: Gadget, rec: Record, payload: Path, digest: str,
                 area: Path) -> None:  # fmt: skip
    """One timed transfer, its check, and the responder's CPU and peak RSS around it."""
    responder, client, direction, rnd = (
        rec["responder"],
        rec["client"],
        rec["direction"],
        rec["round"],
    )
    pid = gadget.responder_pid()
    storage = gadget.work_dir / "storage"
    remote = f"send-{client}-{rnd}.dat"
    arrived = storage / remote if direction == "send" else area / f"got-{responder}.dat"
    arrived.unlink(missing_ok=True)
    rec.update(ok=False, problem="", wall=None, data=None)
    handle = None
    if client == "libmtp" and direction == "get":  # mtp-getfile takes an id: look it up first
        listing = bench.tools.run(["mtp-files"], timeout=300, name="mtp-files", check=True)
        files = parse_mtp_files(listing.stdout)
        handle = next((f.item_id for f in files if f.name == GET_NAME), None)
    cpu0 = process_cpu(pid)
    try:
        if client == "libmtp":
            run_libmtp(bench, rec, handle, payload, arrived, remote, area)
        else:
            run_raw(gadget, rec, payload, remote)
    except Exception as exc:  # a failed transfer is a figure missing, reported, not a crash
        rec["problem"] = f"{type(exc).__name__}: {exc}"
    cpu1 = process_cpu(pid)
    rec["responder_cpu"] = cpu_delta(cpu0, cpu1)
    rec["peak_rss_kib"] = peak_rss_kib(pid)
    if not rec["problem"]:
        got = rec.pop("digest", None) or (sha256_file(arrived) if arrived.exists() else "missing")
        if got != digest:
            rec["problem"] = f"check failed: {got[:16]} is not the payload's {digest[:16]}"
        else:
            rec["ok"] = True
    arrived.unlink(missing_ok=True)
    wall, data = rec["wall"], rec["data"]
    print(f"  {rec['tag']} {responder:<6} {client:<6} {direction:<4} r{rnd}: "
          + (f"{wall:6.2f}s wall ({rec['size'] / wall / 1e6:6.2f} MB/s)" if wall else "")
          + (f", data {rec['size'] / data / 1e6:6.2f} MB/s" if data else "")
          + (f", CPU {rec['responder_cpu']:.2f}s" if rec["responder_cpu"] is not None else "")
          + (f", VmHWM {rec['peak_rss_kib'] >> 10} MiB" if rec["peak_rss_kib"] else "")
          + ("" if rec["ok"] else f" FAILED: {rec['problem']}"), flush=True)  # fmt: skip


def run_libmtp(bench: Bench, rec: Record, handle: int | None, payload: Path, arrived: Path,
               remote: str, area: Path) -> None:  # fmt: skip
    label = f"{rec['tag']}-{rec['responder']}-libmtp-{rec['direction']}-r{rec['round']}"
    if rec["direction"] == "get":
        if handle is None:
            raise RuntimeError(f"{GET_NAME} not listed by mtp-files")
        argv = ["mtp-getfile", str(handle), str(arrived)]
    else:
        local = area / remote  # mtp-sendfile names the object after the local file
        local.unlink(missing_ok=True)
        os.link(payload, local)
        argv = ["mtp-sendfile", str(local), "/"]
    try:
        run = timed_tool(argv, bench.logs / f"{label}.log", bench.args.timeout)
    finally:
        if rec["direction"] == "send":
            (area / remote).unlink(missing_ok=True)
    rec.update(wall=run.wall, data=run.data, client_cpu=run.cpu)
    if run.status != 0:
        rec["problem"] = f"{argv[0]} exited {run.status}"


def run_raw(gadget: Gadget, rec: Record, payload: Path, remote: str) -> None:
    started = time.monotonic()
    initiator = usb_raw.open_device(gadget.vid, gadget.pid)
    try:
        if rec["direction"] == "get":
            _, handle = usb_raw.find_handle(initiator, GET_NAME)
            run = usb_raw.get_object(initiator, handle, rec["size"])
            rec["digest"] = run.digest
        else:
            sid = initiator.storage_ids()[0]
            with open(payload, "rb") as source:
                run = usb_raw.send_object(initiator, sid, remote, rec["size"], source)
    finally:
        usb_raw.close_device(initiator)
    rec.update(wall=time.monotonic() - started, data=run.data)


# -- start-up ----------------------------------------------------------------------------------


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def startup(bench: Bench, rounds: int, responders: list[str]) -> None:
    """exec -> ep1 exists (FunctionFS creates it when the descriptors are written)."""
    out = bench.results.setdefault("startup", [])
    for rnd in range(1, rounds + 1):
        for kind in ("cold", "warm"):
            for responder in responders:
                work = WORK / "startup" / responder
                gadget = bench.gadget(responder, work)
                rec: Record = {"responder": responder, "kind": kind, "round": rnd}
                out.append(rec)
                try:
                    rec["seconds"] = time_to_descriptors(gadget, cold=kind == "cold")
                    print(f"  startup {responder:<6} {kind}: {rec['seconds']:.3f}s", flush=True)
                except Exception as exc:
                    bench.fail(f"startup {responder} {kind} r{rnd}", exc)
    shutil.rmtree(WORK / "startup", ignore_errors=True)


def time_to_descriptors(gadget: Gadget, cold: bool) -> float:
    gadget.write_config()
    gadget.cli("prepare")
    proc: subprocess.Popen[bytes] | None = None
    try:
        if cold:
            drop_caches()
        ep1 = gadget.mount / "ep1"
        with open(gadget.responder_log, "ab") as log:
            started = time.monotonic()
            proc = subprocess.Popen(
                responder_argv(gadget), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            deadline = started + 60
            while not ep1.exists():
                if proc.poll() is not None:
                    raise RuntimeError(f"responder exited {proc.returncode} before ep1")
                if time.monotonic() > deadline:
                    raise RuntimeError("no ep1 within 60 s")
                time.sleep(0.002)
            return time.monotonic() - started
    finally:
        if proc is not None:
            stop(proc)
        gadget.down(check=False)


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- listing -----------------------------------------------------------------------------------


def listing(bench: Bench, files: int, rounds: int, responders: list[str]) -> None:
    out = bench.results.setdefault("listing", [])
    for responder in responders:
        folder = WORK / "listing" / responder / "storage" / "many"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(files):
            (folder / f"f{i:05d}.txt").write_bytes(b"x" * 16)
    for rnd in range(1, rounds + 1):
        for responder in responders:
            gadget = bench.gadget(responder, WORK / "listing" / responder)
            rec: Record = {"responder": responder, "files": files, "round": rnd, "ok": False}
            out.append(rec)
            try:
                gadget.up()
                usb_raw.wait_serving(gadget.vid, gadget.pid)
                pid = gadget.responder_pid()
                cpu0 = process_cpu(pid)
                run = bench.tools.run(["mtp-files"], timeout=max(bench.args.timeout, 3600.0),
                                      name=f"list-{responder}")  # fmt: skip
                rec.update(wall=run.seconds, responder_cpu=cpu_delta(cpu0, process_cpu(pid)))
                listed = sum(1 for f in parse_mtp_files(run.stdout) if f.name.startswith("f"))
                rec["listed"] = listed
                rec["ok"] = run.returncode == 0 and listed == files
                print(f"  listing {responder:<6} r{rnd}: {files} files in {run.seconds:.2f}s, "
                      f"responder CPU {rec['responder_cpu'] or 0:.2f}s"
                      f"{'' if rec['ok'] else f' FAILED ({listed} listed, exit {run.returncode})'}",
                      flush=True)  # fmt: skip
            except Exception as exc:
                bench.fail(f"listing {responder} r{rnd}", exc)
            finally:
                gadget.down(check=False)
    shutil.rmtree(WORK / "listing", ignore_errors=True)


# -- many small files --------------------------------------------------------------------------


def small_files(bench: Bench, count: int, rounds: int, responders: list[str]) -> None:
    """``count`` files of 4 KiB sent, then fetched, each direction timed as a whole."""
    out = bench.results.setdefault("small", [])
    blobs = [os.urandom(4096) for _ in range(count)]
    for rnd in range(1, rounds + 1):
        for responder in responders:
            work = WORK / "small" / responder
            shutil.rmtree(work, ignore_errors=True)
            gadget = bench.gadget(responder, work)
            try:
                gadget.up()
                usb_raw.wait_serving(gadget.vid, gadget.pid)
                initiator = usb_raw.open_device(gadget.vid, gadget.pid)
                try:
                    for rec in small_round(initiator, gadget, blobs):
                        rec.update(responder=responder, round=rnd)
                        out.append(rec)
                        print(
                            f"  small {responder:<6} {rec['direction']:<4} r{rnd}: {count} x 4 KiB"
                            f" in {rec['seconds']:.2f}s ({count / rec['seconds']:.0f} files/s), "
                            f"responder CPU {rec['responder_cpu'] or 0:.2f}s",
                            flush=True,
                        )
                finally:
                    usb_raw.close_device(initiator)
            except Exception as exc:
                bench.fail(f"small files {responder} r{rnd}", exc)
            finally:
                gadget.down(check=False)
    shutil.rmtree(WORK / "small", ignore_errors=True)


def small_round(initiator: UsbInitiator, gadget: Gadget, blobs: list[bytes]) -> list[Record]:
    """Send every blob (checked on the device's disk), then fetch each back (checked)."""
    pid = gadget.responder_pid()
    sid = initiator.storage_ids()[0]
    handles: list[int] = []
    cpu0 = process_cpu(pid)
    started = time.monotonic()
    for i, blob in enumerate(blobs):
        handle, _ = initiator.send_object_from(
            sid, ROOT, f"s{i:04d}.dat", io.BytesIO(blob), len(blob)
        )
        handles.append(handle)
    sent = small_record("send", len(blobs), started, cpu0, pid)
    storage = gadget.work_dir / "storage"
    bad = [i for i, b in enumerate(blobs) if (storage / f"s{i:04d}.dat").read_bytes() != b]
    if bad:
        raise RuntimeError(f"{len(bad)} of the sent files differ on the device's disk")
    cpu0 = process_cpu(pid)
    started = time.monotonic()
    for handle, blob in zip(handles, blobs, strict=True):
        sink = io.BytesIO()
        initiator.get_object_to(handle, sink)
        if sink.getvalue() != blob:
            raise RuntimeError(f"object {handle:#x} came back different")
    return [sent, small_record("get", len(blobs), started, cpu0, pid)]


def small_record(
    direction: str, count: int, started: float, cpu0: float | None, pid: int | None
) -> Record:
    return {
        "direction": direction,
        "files": count,
        "seconds": time.monotonic() - started,
        "responder_cpu": cpu_delta(cpu0, process_cpu(pid)),
        "ok": True,
    }


# -- backup next to a plain file ---------------------------------------------------------------


def backup(bench: Bench, big_mib: int, rounds: int) -> None:
    """GetObject of a backup archive and of a plain file of its size, alternately."""
    from mtp_backup.verify import verify_archive
    from tests.e2e.backup_support import (
        DEVICE_NAME,
        GuestEngine,
        mtp_files,
        responder_config,
        seed_passive,
    )

    out = bench.results.setdefault("backup", [])
    work = WORK / "backup"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    engine = GuestEngine(work / "engine", bench.logs / "engine.log", active=False)
    engine.setup()
    seed_passive(engine.passive_dir, files=14, big=big_mib << 20)
    gadget: Gadget | None = None
    try:
        engine.start()
        config = responder_config(engine, work)
        gadget = bench.gadget("ours", work, providers=config["providers"],
                              extra={"state_dir": config["state_dir"]})  # fmt: skip
        gadget.up()
        usb_raw.wait_serving(gadget.vid, gadget.pid, storages=2)
        # The responder answers before its providers are ready; the archive shows up then.
        deadline = time.monotonic() + 180
        while True:
            listed = mtp_files(bench.tools)
            archives = [f for f in listed if f.name.startswith(f"{DEVICE_NAME}-")
                        and f.name.endswith(".mbak")]  # fmt: skip
            if len(archives) == 1 or time.monotonic() > deadline:
                break
            time.sleep(2)
        if len(archives) != 1:
            raise RuntimeError(f"expected one .mbak, listed {[a.name for a in archives]}")
        size = archives[0].size
        plain_digest = make_file(work / "storage" / "plain.dat", size)
        listed = mtp_files(bench.tools, name="mtp-files-2")
        # The archive is prepared again for each session: a new name, a size that may move.
        mbaks = [
            f for f in listed if f.name.startswith(f"{DEVICE_NAME}-") and f.name.endswith(".mbak")
        ]
        plains = [f for f in listed if f.name == "plain.dat"]
        if len(mbaks) != 1 or len(plains) != 1:
            raise RuntimeError(f"second listing: {[f.name for f in listed]}")
        mbak, plain = mbaks[0], plains[0]
        for rnd in range(1, rounds + 1):
            for kind, item in (("mbak", mbak), ("plain", plain)):
                sink = work / f"got.{kind}"
                initiator = usb_raw.open_device(gadget.vid, gadget.pid)
                try:
                    with open(sink, "wb") as tee:
                        expect = item.size if kind == "plain" else None
                        run = usb_raw.get_object(initiator, item.item_id, expect, tee)
                finally:
                    usb_raw.close_device(initiator)
                if kind == "plain":
                    ok = run.digest == plain_digest
                else:
                    ok = verify_archive(sink).size == sink.stat().st_size == run.size
                out.append({"kind": kind, "round": rnd, "size": run.size, "wall": run.wall,
                            "data": run.data, "ok": ok})  # fmt: skip
                print(
                    f"  backup {kind:<5} r{rnd}: {run.size / run.wall / 1e6:6.2f} MB/s "
                    f"({run.size} bytes){'' if ok else ' FAILED check'}",
                    flush=True,
                )
                sink.unlink()
        engine.wait_mode("NORMAL")
    except Exception as exc:
        bench.fail("backup", exc)
    finally:
        if gadget is not None:
            gadget.down(check=False)
            bench.keep_log(gadget, "backup")
        engine.stop()
    shutil.rmtree(work, ignore_errors=True)


# -- main -----------------------------------------------------------------------------------


def run_section(bench: Bench, section: str, responders: list[str]) -> None:
    args = bench.args
    if section == "transfers":
        transfers(bench, args.size_mib << 20, args.rounds, responders, f"{args.size_mib}MiB")
        if args.big_mib:
            transfers(bench, args.big_mib << 20, args.big_rounds, responders, f"{args.big_mib}MiB")
    elif section == "sweep":
        bench.results["sweep"] = sweep = []
        kept, best = bench.results.pop("transfers", None), bench.buffers
        for setting in SWEEP:
            bench.buffers = dict(setting)
            transfers(bench, args.size_mib << 20, args.rounds, ["umtprd"], "sweep")
            sweep.append({"buffers": setting, "transfers": bench.results.pop("transfers", [])})
        bench.buffers = best
        if kept is not None:
            bench.results["transfers"] = kept
    elif section == "startup":
        startup(bench, args.rounds, responders)
    elif section == "listing":
        listing(bench, args.listing_files, args.listing_rounds, responders)
    elif section == "small":
        small_files(bench, args.small_files, 1, responders)
    elif section == "backup":
        backup(bench, args.backup_mib, args.rounds)
    else:
        raise ValueError(f"unknown section {section!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sections", default="transfers,startup,listing,small,backup")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--big-mib", type=int, default=0, help="also transfer this many MiB")
    parser.add_argument("--big-rounds", type=int, default=1)
    parser.add_argument("--listing-files", type=int, default=10_000)
    parser.add_argument("--listing-rounds", type=int, default=1)
    parser.add_argument("--small-files", type=int, default=1_000)
    parser.add_argument("--backup-mib", type=int, default=16)
    parser.add_argument("--responders", default=",".join(RESPONDERS))
    parser.add_argument("--umtprd-buffers", default="{}", help="JSON: umtprd.conf keys")
    parser.add_argument("--timeout", type=float, default=900, help="per tool run (s)")
    args = parser.parse_args(argv)
    if not IN_GUEST:
        print("usb_guest.py runs inside the test VM; use bench/bench_usb.py", file=sys.stderr)
        return 2
    bench = Bench(args)
    responders = [r for r in args.responders.split(",") if r]
    sections = [s for s in args.sections.split(",") if s]
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    clocksource = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource")
    with contextlib.suppress(OSError):
        bench.results["notes"].append(f"guest clocksource: {clocksource.read_text().strip()}")
    timings: dict[str, float] = {}
    for section in sections:
        started = time.monotonic()
        print(f"== {section}", flush=True)
        try:
            run_section(bench, section, responders)
        except Exception as exc:  # the other sections still run; the JSON is still written
            bench.fail(f"section {section}", exc)
        timings[section] = time.monotonic() - started
    bench.results["section_seconds"] = timings
    (RESULTS / "bench-usb.json").write_text(json.dumps(bench.results, indent=2) + "\n")
    records = [r for key in ("transfers", "listing", "small", "backup")
               for r in bench.results.get(key, [])]  # fmt: skip
    records += [t for s in bench.results.get("sweep", []) for t in s["transfers"]]
    return 1 if bench.results["failures"] or not all(r.get("ok") for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
