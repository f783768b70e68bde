"""Benchmark of the backup engine (run by ``make bench``).

Prints:
* base-backup throughput of ``backup-engine backup`` against ``tar -c`` of the
  same tree, both written to a file in the same run (goal: ratio >= 0.9);
* the time of an incremental scan of 100,000 unchanged files (goal: < 2 s);
* the engine's peak RSS while backing up 5 GiB (goal: < 64 MiB).

Data is generated under /tmp (real bytes, not sparse files) and removed at the
end. Sizes can be reduced with BENCH_TREE_MIB, BENCH_BIG_GIB, BENCH_FILES.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.client import SyncEngineClient  # noqa: E402

SID = 0x0B000001
REG = """<backup_registration version="1.0"><passive_backup>
<include_directory name="\\"/></passive_backup></backup_registration>"""


def fill(root: Path, total: int, file_size: int) -> None:
    """Write real data: a random block varied per file so nothing is sparse or deduplicated."""
    block = os.urandom(1 << 20)
    n = 0
    i = 0
    while n < total:
        size = min(file_size, total - n)
        d = root / f"d{i % 16:02d}"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"f{i:06d}.bin", "wb") as f:
            left = size
            k = 0
            while left > 0:
                chunk = block[: min(left, len(block))]
                f.write(i.to_bytes(8, "little") + k.to_bytes(8, "little") + chunk[16:])
                left -= len(chunk)
                k += 1
        n += size
        i += 1


def many_files(root: Path, count: int) -> None:
    for i in range(count):
        d = root / f"m{i // 1000:03d}"
        if i % 1000 == 0:
            d.mkdir(parents=True, exist_ok=True)
        with open(d / f"n{i:06d}", "wb") as f:
            f.write(b"x")


def start_engine(base: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    cfgp = base / "engine.toml"
    sock = base / "engine.sock"
    cfgp.write_text(
        f'socket_path = "{sock}"\nstate_file = "{base / "state"}"\n'
        f'spool_dir = "{base / "spool"}"\ndevice_name = "bench"\n'
        f'[drives]\nc = "{base / "c"}"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--config", str(cfgp), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not sock.exists():
        time.sleep(0.05)
    return proc, cfgp, sock


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def cli(cfgp: Path, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-m", "engine.cli", "-q", "--config", str(cfgp), *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main() -> int:
    tree_mib = int(os.environ.get("BENCH_TREE_MIB", "1024"))
    big_gib = float(os.environ.get("BENCH_BIG_GIB", "5"))
    nfiles = int(os.environ.get("BENCH_FILES", "100000"))
    base = Path(tempfile.mkdtemp(prefix="bench-engine-", dir="/tmp"))
    try:
        pd = base / "c" / "private" / f"{SID:08X}"
        pd.mkdir(parents=True)
        (pd / "backup_registration.xml").write_text(REG)
        data = pd / "data"
        print(f"generating {tree_mib} MiB tree ...", flush=True)
        fill(data, tree_mib << 20, 8 << 20)
        proc, cfgp, sock = start_engine(base)
        try:
            out_tar = base / "out.tar"
            out_mbak = base / "out.mbak"
            # warm the page cache equally for both
            subprocess.run(["tar", "-cf", "/dev/null", "-C", str(pd), "data"], check=True)
            t0 = time.perf_counter()
            subprocess.run(["tar", "-cf", str(out_tar), "-C", str(pd), "data"], check=True)
            os.sync()
            t_tar = time.perf_counter() - t0
            out_tar.unlink()
            t0 = time.perf_counter()
            cli(cfgp, "backup", str(out_mbak))
            os.sync()
            t_eng = time.perf_counter() - t0
            size = out_mbak.stat().st_size
            out_mbak.unlink()
            mib = tree_mib
            print(f"tar -c:            {t_tar:7.2f} s  {mib / t_tar:8.1f} MiB/s")
            print(f"backup-engine:     {t_eng:7.2f} s  {mib / t_eng:8.1f} MiB/s  ({size} bytes)")
            print(f"throughput ratio (engine / tar): {t_tar / t_eng:.2f}  (goal >= 0.9)")
            shutil.rmtree(data)

            # incremental scan of many unchanged files
            print(f"generating {nfiles} small files ...", flush=True)
            many_files(pd / "many", nfiles)
            with SyncEngineClient(sock) as c:
                prep = c.prepare_backup()
                snap = base / "prev.snapshot"
                with open(snap, "wb") as f:
                    c.read_archive_to(prep.archive("snapshot").name, f)
                c.set_normal()
                t0 = time.perf_counter()
                prep2 = c.prepare_backup(previous=snap)
                t_inc = time.perf_counter() - t0
                full = prep2.archive("full")
                c.set_normal()
            print(
                f"incremental scan of {nfiles} unchanged files: {t_inc:.2f} s "
                f"(archive {full.size} bytes; goal < 2 s)"
            )
            shutil.rmtree(pd / "many")

            # peak RSS while backing up a large tree
            print(f"generating {big_gib:g} GiB tree ...", flush=True)
            fill(data, int(big_gib * (1 << 30)), 256 << 20)
            # A fresh engine, so the peak below belongs to this backup alone.
            proc.terminate()
            proc.wait(10)
            proc, cfgp, sock = start_engine(base)
            rss_before = peak_rss_kib(proc.pid)
            t0 = time.perf_counter()
            with SyncEngineClient(sock) as c, open("/dev/null", "wb") as null:
                prep = c.prepare_backup()
                n = c.read_archive_to(prep.archive("full").name, null)
                c.set_normal()
            t_big = time.perf_counter() - t0
            rss = peak_rss_kib(proc.pid)
            print(
                f"backup of {n / 2**30:.2f} GiB in {t_big:.1f} s: engine peak RSS "
                f"{rss / 1024:.1f} MiB (before: {rss_before / 1024:.1f} MiB; goal < 64 MiB)"
            )
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
