"""Benchmark of the backup engine (run by ``make bench``).

Prints, and writes to ``bench/results/engine.json``:
* base-backup throughput of ``backup-engine backup`` against ``tar -c`` of the
  same tree, both written to a file in the same run (goal: ratio >= 1.0), with
  the CPU seconds each side spent (engine process and client, tar);
* an incremental scan of 100,000 unchanged files: the engine's CPU seconds and
  the wall time (goal: < 0.5 s);
* the memory a prepared plan of 100,000 files holds, measured with
  ``tracemalloc`` in this process as the engine builds it (the full archive and
  the owner's own; goal: <= 32 MiB), and the engine's RSS growth for the same;
* the engine's peak RSS while backing up 5 GiB (goal: < 64 MiB).

CPU seconds and traced memory do not depend on other load; wall times do, so
they are indicative on a shared machine (the load average is printed with
them). Data is generated under /tmp (real bytes, not sparse files) and removed
at the end. Sizes can be reduced with BENCH_TREE_MIB, BENCH_BIG_GIB, BENCH_FILES.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.client import SyncEngineClient  # noqa: E402
from engine.daemon.archive import PlanBuilder, PlanCursor  # noqa: E402
from engine.daemon.filelist import passive_file_list  # noqa: E402
from engine.types import TransferType  # noqa: E402

RESULTS = REPO / "bench" / "results" / "engine.json"
GOAL_RATIO = 1.0
GOAL_SCAN_S = 0.5
GOAL_PLAN_MIB = 32.0
GOAL_RSS_MIB = 64.0

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


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_kib(pid: int) -> int:
    return status_kib(pid, "VmHWM")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def produce_archive(files_root: Path) -> tuple[float, float, int]:
    """CPU and wall seconds of producing the archive of a tree in this process.

    The engine's own part of a backup (listing, plan, reading, headers,
    digests) without the wire and the client: what ``tar -c`` does alone.
    """
    t0 = time.perf_counter()
    c0 = resource.getrusage(resource.RUSAGE_SELF)
    recs = passive_file_list(files_root, [""], [])
    b = PlanBuilder("full")
    b.begin_stream(SID, "c", TransferType.PASSIVE_BASE)
    b.add_files(files_root, recs)
    b.end_stream()
    plan = b.finish({})
    cur = PlanCursor(plan, 0)
    n = 0
    try:
        while chunk := cur.read(1 << 20):
            n += len(chunk)
    finally:
        cur.close()
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime
    return cpu, time.perf_counter() - t0, n


def plan_memory(files_root: Path) -> tuple[float, int]:
    """MiB a prepared plan of the tree holds (full + owner archive), and its files.

    The listing is made first and dropped after planning, as in the engine;
    what remains traced is what the plans keep while a host reads them.
    """
    gc.collect()
    tracemalloc.start()
    try:
        recs = passive_file_list(files_root, [""], [])
        builders = [PlanBuilder("full", 1), PlanBuilder("owner", 1)]
        for b in builders:
            b.begin_stream(SID, "c", TransferType.PASSIVE_BASE)
            b.add_files(files_root, recs)
            b.end_stream()
        n = len(recs)
        del recs
        plans = [b.finish({}) for b in builders]
        del builders
        gc.collect()
        held, _peak = tracemalloc.get_traced_memory()
        del plans
    finally:
        tracemalloc.stop()
    return held / 2**20, n


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
    results: dict[str, object] = {}
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
            c0 = children_cpu_s()
            t0 = time.perf_counter()
            subprocess.run(["tar", "-cf", str(out_tar), "-C", str(pd), "data"], check=True)
            os.sync()
            t_tar = time.perf_counter() - t0
            cpu_tar = children_cpu_s() - c0
            out_tar.unlink()
            c0, e0 = children_cpu_s(), cpu_s(proc.pid)
            t0 = time.perf_counter()
            cli(cfgp, "backup", str(out_mbak))
            os.sync()
            t_eng = time.perf_counter() - t0
            cpu_client, cpu_eng = children_cpu_s() - c0, cpu_s(proc.pid) - e0
            size = out_mbak.stat().st_size
            out_mbak.unlink()
            mib = tree_mib
            ratio = t_tar / t_eng
            print(f"(load average {load()}: wall times are indicative, CPU seconds are not)")
            print(
                f"tar -c:            {t_tar:7.2f} s  {mib / t_tar:8.1f} MiB/s  CPU {cpu_tar:.2f} s"
            )
            print(
                f"backup-engine:     {t_eng:7.2f} s  {mib / t_eng:8.1f} MiB/s  CPU engine "
                f"{cpu_eng:.2f} s + client {cpu_client:.2f} s  ({size} bytes)"
            )
            print(
                f"throughput ratio (engine / tar): {ratio:.2f}  (goal >= {GOAL_RATIO}; "
                f"engine CPU {cpu_eng / mib * 1024:.2f} s per GiB)"
            )
            cpu_own, t_own, _n = produce_archive(data)
            print(
                "engine archive alone (in-process; no wire, client or output file): "
                f"CPU {cpu_own:.2f} s, wall {t_own:.2f} s; "
                f"CPU ratio (tar / engine) {cpu_tar / cpu_own:.2f}"
            )
            results["base"] = {
                "tree_mib": mib,
                "engine_alone_cpu_s": round(cpu_own, 3),
                "engine_alone_wall_s": round(t_own, 3),
                "tar_wall_s": round(t_tar, 3),
                "tar_cpu_s": round(cpu_tar, 3),
                "engine_wall_s": round(t_eng, 3),
                "engine_cpu_s": round(cpu_eng, 3),
                "client_cpu_s": round(cpu_client, 3),
                "ratio": round(ratio, 3),
                "goal_ratio": GOAL_RATIO,
                "load": load(),
            }
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
                e0 = cpu_s(proc.pid)
                t0 = time.perf_counter()
                prep2 = c.prepare_backup(previous=snap)
                t_inc = time.perf_counter() - t0
                cpu_inc = cpu_s(proc.pid) - e0
                full = prep2.archive("full")
                c.set_normal()
                # The engine's resident size holding a base plan of the same files
                # (after the plans above were built and released: indicative).
                prep3 = c.prepare_backup()
                rss_plan = status_kib(proc.pid, "VmRSS") / 1024
                base_size = prep3.archive("full").size
                c.set_normal()
            print(
                f"incremental scan of {nfiles} unchanged files: CPU {cpu_inc:.2f} s, "
                f"wall {t_inc:.2f} s (archive {full.size} bytes; goal < {GOAL_SCAN_S} s)"
            )
            plan_mib, nplanned = plan_memory(pd / "many")
            print(
                f"plan of {nplanned} files (full + owner archive): {plan_mib:.1f} MiB held "
                f"(tracemalloc; goal <= {GOAL_PLAN_MIB:g} MiB); engine RSS holding a base "
                f"plan: {rss_plan:.1f} MiB ({base_size} bytes)"
            )
            results["incremental"] = {
                "files": nfiles,
                "engine_cpu_s": round(cpu_inc, 3),
                "wall_s": round(t_inc, 3),
                "goal_s": GOAL_SCAN_S,
                "load": load(),
            }
            results["plan"] = {
                "files": nplanned,
                "traced_mib": round(plan_mib, 2),
                "goal_mib": GOAL_PLAN_MIB,
                "engine_rss_with_plan_mib": round(rss_plan, 1),
            }
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
                f"{rss / 1024:.1f} MiB (before: {rss_before / 1024:.1f} MiB; "
                f"goal < {GOAL_RSS_MIB:g} MiB)"
            )
            results["large"] = {
                "gib": round(n / 2**30, 3),
                "wall_s": round(t_big, 2),
                "peak_rss_mib": round(rss / 1024, 1),
                "goal_mib": GOAL_RSS_MIB,
            }
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
