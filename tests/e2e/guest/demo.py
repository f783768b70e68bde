"""``make demo``: the responder on a real kernel gadget, driven by libmtp and gphoto2.

Runs inside the VM (``python -m tests.e2e.harness --demo``).  The output is meant
for people: each step prints the command and the interesting part of its output.
Full logs of every command land in the run's results directory.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.backup_support import (
    GuestEngine,
    change_passive,
    extract,
    getfile,
    mtp_files,
    mtp_folders,
    passive_files_root,
    pick,
    seed_passive,
    sendfile,
    sendfile_ok,
    tree_state,
)
from tests.e2e.guest.support import (
    IN_GUEST,
    PYTHON,
    RESULTS,
    ToolResult,
    Tools,
    find_usb_device,
    fresh_dir,
    make_file,
    parse_mtp_files,
    parse_mtp_folders,
    sha256_file,
    toml_dumps,
)

DEMO = Path("/tmp/demo")
NEW_NOTE = "written after the backup"
VID, PID = 0x1D6B, 0x0100


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def show(
    result: ToolResult, keep: int = 40, grep: tuple[str, ...] = (), success: int = 0
) -> None:
    print(f"$ {' '.join(Path(a).name if i == 0 else a for i, a in enumerate(result.argv))}")
    lines = result.stdout.splitlines()
    if grep:
        lines = [line for line in lines if any(g in line for g in grep)]
    for line in lines[:keep]:
        print(f"  {line}")
    if len(lines) > keep:
        print(f"  ... ({len(lines) - keep} more lines in {result.log})")
    if result.returncode != success or result.timed_out:
        print(f"  !! {result.describe()}")
    sys.stdout.flush()


def mtp_gadget_argv() -> list[str]:
    script = Path(PYTHON).with_name("mtp-gadget")
    return [str(script)] if script.exists() else [PYTHON, "-m", "gadget_config.cli"]


def main() -> int:
    if not IN_GUEST:
        print("the demo runs inside the test VM: `make demo`", file=sys.stderr)
        return 2
    fresh_dir(DEMO)
    storage = DEMO / "storage"
    (storage / "Music").mkdir(parents=True)
    (storage / "Pictures").mkdir()
    make_file(storage / "Music" / "song.mp3", 3_000_000)
    make_file(storage / "Pictures" / "holiday.jpg", 800_000)
    (storage / "hello.txt").write_text("Hello from the device side.\n")
    state = DEMO / "state"
    state.mkdir()
    # The backup engine with two data owners: passive files and an app (SQLite notes).
    engine = GuestEngine(root=fresh_dir(DEMO / "engine"), log=RESULTS / "engine.log",
                         resident_app=True)
    engine.setup()
    seed_passive(engine.passive_dir)
    engine.start()
    config = DEMO / "mtp-responder.toml"
    config.write_text(toml_dumps({
        "log_level": "info",
        "state_dir": str(state),
        "device": {
            "vendor_id": VID, "product_id": PID, "manufacturer": "Demo Corp",
            "product": "MTP Responder Demo", "serial": "DEMO0001",
        },
        "gadget": {"name": "demo", "responder_log": str(RESULTS / "responder.log")},
        "providers": {
            "files": {"storages": [{"path": str(storage), "description": "Demo storage"}]},
            "backup_restore": {"socket": str(engine.socket), "space_path": str(DEMO)},
        },
    }))
    tools = Tools(RESULTS / "demo-logs", env={"HOME": str(fresh_dir(DEMO / "home"))})
    gadget = [*mtp_gadget_argv(), "--config", str(config)]
    ok = True
    try:
        banner("Bring the gadget up (configfs, FunctionFS, responder, bind)")
        result = tools.run([*gadget, "up"], timeout=120)
        show(result)
        if result.returncode != 0:
            return 1
        deadline = time.monotonic() + 30
        while find_usb_device(VID, PID) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        show(tools.run([*gadget, "status"]))

        banner("The host side sees a USB device")
        show(tools.run(["lsusb", "-d", f"{VID:04x}:{PID:04x}"]))
        show(tools.run(["lsusb", "-v", "-d", f"{VID:04x}:{PID:04x}"]),
             grep=("idVendor", "idProduct", "iManufacturer", "iProduct", "iSerial",
                   "bInterfaceClass", "iInterface", "wMaxPacketSize"))

        banner("libmtp: mtp-detect")
        show(tools.run(["mtp-detect"], timeout=120),
             grep=("Manufacturer:", "Model:", "Serial number:", "Vendor extension desc",
                   "StorageDescription", "MaxCapacity", "FreeSpaceInBytes", "Friendly name"))

        banner("libmtp: list folders and files")
        show(tools.run(["mtp-folders"]))
        show(tools.run(["mtp-files"]), keep=30)

        banner("libmtp: make a folder and send a file into it")
        show(tools.run(["mtp-newfolder", "Documents", "0", "0"]))
        report = DEMO / "report.txt"
        report.write_text("A report written on the host, sent over MTP.\n" * 20)
        show(tools.run(["mtp-sendfile", str(report), "/Documents"]))
        print(f"  device side: {sorted(p.name for p in (storage / 'Documents').iterdir())}")

        banner("libmtp: fetch it back (ids looked up again: each tool is a new session)")
        files = parse_mtp_files(tools.run(["mtp-files"]).stdout)
        folders = parse_mtp_folders(tools.run(["mtp-folders"]).stdout)
        entry = next(f for f in files
                     if f.name == "report.txt" and f.parent_id == folders.get("Documents"))
        back = DEMO / "fetched-report.txt"
        show(tools.run(["mtp-getfile", str(entry.item_id), str(back)]))
        same = sha256_file(back) == sha256_file(report)
        ok &= same
        print(f"  SHA-256 equal: {same}")

        banner("libmtp: 16 MiB each way")
        big = DEMO / "big.dat"
        digest = make_file(big, 16 << 20)
        for direction in ("send", "get"):
            if direction == "send":
                argv = ["mtp-sendfile", str(big), "/"]
            else:
                item = next(f for f in parse_mtp_files(tools.run(["mtp-files"]).stdout)
                            if f.name == "big.dat")
                argv = ["mtp-getfile", str(item.item_id), str(DEMO / "big-back.dat")]
            result = tools.run(argv, timeout=300)
            rate = (16 << 20) / result.seconds / 1e6
            status = "ok" if result.returncode == 0 else "FAILED"
            print(f"  {argv[0]}: {status}, {result.seconds:.1f}s, {rate:.1f} MB/s "
                  "(tool start-up included)")
            ok &= result.returncode == 0
        same = sha256_file(DEMO / "big-back.dat") == digest
        ok &= same
        print(f"  SHA-256 equal after the round trip: {same}")

        banner("gphoto2 sees it as a PTP camera too")
        show(tools.run(["gphoto2", "--auto-detect"], timeout=90))
        show(tools.run(["gphoto2", "--list-files"], timeout=90), keep=20)

        ok &= backup_and_restore(tools, engine)
        ok &= obex_backup(tools, engine)
    finally:
        engine.stop()
        banner("Take the gadget down")
        show(tools.run([*gadget, "down"], timeout=120))
        shutil.rmtree(DEMO, ignore_errors=True)
    print(f"\nDemo {'finished' if ok else 'FAILED'}; full logs in {RESULTS}")
    return 0 if ok else 1


def backup_and_restore(tools: Tools, engine: GuestEngine) -> bool:
    """The headline feature: back the device up and restore it with libmtp alone."""
    banner("Backup: the \"Backup & Restore\" storage (listing Backup/ prepares a backup)")
    folders = mtp_folders(tools)
    print(f"  folders: {', '.join(sorted(folders))}")
    files = mtp_files(tools)
    for f in files:
        if f.parent_id in (folders["Backup"], folders["Restore"]):
            print(f"  {f.item_id:>4}  {f.name}  ({f.size} bytes)")
    mbak = pick(files, folders["Backup"], ".mbak")
    saved = DEMO / mbak.name
    seconds = getfile(tools, mbak.item_id, saved)
    print(f"$ mtp-getfile {mbak.item_id} {saved.name}")
    print(f"  {saved.stat().st_size} bytes in {seconds:.1f}s "
          f"({saved.stat().st_size / seconds / 1e6:.1f} MB/s, tool start-up included)")
    show(tools.run(["tar", "-tvf", saved]), keep=12)
    backed_up = engine.state()
    extracted = extract(tools, saved, DEMO / "extracted")
    same = tree_state(passive_files_root(extracted)) == backed_up[0]
    print(f"  the files in the archive equal the device's (bytes, modes, mtimes): {same}")
    engine.wait_mode("NORMAL")
    print(f"  engine mode once the session closed: {engine.mode()}")
    ok = same

    banner("Change the device: edit, add and delete files; add a note in the app")
    change_passive(engine.passive_dir)
    engine.add_notes(NEW_NOTE)
    print(f"  device differs from the backup now: {engine.state() != backed_up}")

    banner("Restore: copy the backup into Restore/ with mtp-sendfile")
    result = sendfile(tools, saved, "Restore")
    show(result, keep=8)
    restored = sendfile_ok(result)
    files = mtp_files(tools)
    status = next(f for f in files if f.name == "status.txt")
    status_file = DEMO / "status.txt"
    getfile(tools, status.item_id, status_file)
    print("  Restore/status.txt:")
    for line in status_file.read_text().splitlines():
        print(f"    {line}")
    back = engine.state() == backed_up
    print(f"  device state equals the backed-up state again: {back}")
    print(f"  the note written after the backup is gone: "
          f"{NEW_NOTE not in [t for _, t in engine.notes()]}")
    engine.wait_mode("NORMAL")
    print(f"  engine mode: {engine.mode()}")
    return ok and restored and back


OBEX_PORT = 6500


def obex_backup(tools: Tools, engine: GuestEngine) -> bool:
    """The second transport: the same backup tree over OBEX, fetched with obexftp."""
    banner("Backup over OBEX (TCP): obex-backup-server and Debian's obexftp")
    work = fresh_dir(DEMO / "obex")
    config = work / "obex.toml"
    config.write_text(toml_dumps({
        "obex": {"listen": f"127.0.0.1:{OBEX_PORT}"},
        "engine": {"socket": str(engine.socket), "spool_dir": str(work / "spool"),
                   "space_path": str(DEMO)},
    }))
    log = open(RESULTS / "obex-backup-server.log", "wb")  # closed in the finally below
    server = subprocess.Popen(
        [PYTHON, "-m", "obex_backup_server.cli", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", OBEX_PORT), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print(f"  !! obex-backup-server did not start (log: {log.name})")
                    return False
                time.sleep(0.2)
        # obexftp exits 255 when its last operation succeeded.
        obexftp = ["obexftp", "-n", f"127.0.0.1:{OBEX_PORT}"]
        show(tools.run([*obexftp, "-l", "/"], timeout=120, check=False), keep=12, success=255)
        listing = tools.run([*obexftp, "-c", "Backup", "-l"], timeout=300, check=False)
        show(listing, keep=12, success=255)
        names = re.findall(r'<file name="([^"]+\.mbak)"', listing.output)
        if not names:
            print("  !! no .mbak in the OBEX listing of Backup/")
            return False
        started = time.monotonic()
        got = tools.run([*obexftp, "-c", "Backup", "-g", names[0]], timeout=600,
                        check=False, cwd=work)
        seconds = time.monotonic() - started
        show(got, keep=6, success=255)
        saved = work / names[0]
        if not saved.exists():
            print(f"  !! obexftp did not save {names[0]}")
            return False
        size = saved.stat().st_size
        print(f"  {size} bytes in {seconds:.1f}s ({size / seconds / 1e6:.2f} MB/s, "
              "tool start-up included)")
        extracted = extract(tools, saved, work / "extracted")
        same = tree_state(passive_files_root(extracted)) == engine.state()[0]
        print(f"  the files in the OBEX backup equal the device's (bytes, modes, mtimes): {same}")
        engine.wait_mode("NORMAL")
        print(f"  engine mode once obexftp disconnected: {engine.mode()}")
        return same
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
