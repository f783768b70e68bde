"""Listing a 10,000-file folder the way libmtp does, and start-up to "descriptors ready".

Two figures the responder is judged by on a small board:

* how fast a host lists a big folder.  ``mtp-files`` (libmtp, uncached) asks
  GetObjectHandles for each folder, then for every handle GetObjectInfo,
  GetObjectPropsSupported for its format and GetObjectPropValue(ObjectSize),
  since the 32-bit size in ObjectInfo may be clipped; a cached libmtp session
  asks one GetObjectPropList(all objects, all properties, full depth) instead.
  Both are replayed here over the loopback link, in process, and every handle's
  name is checked against the files on disk before any figure is printed.
* how long ``mtp-responder`` takes from exec until its FunctionFS descriptors
  are written (nothing enumerates before), on a directory of plain files
  named like a FunctionFS mount's, cold (no bytecode caches at all) and warm;
  and, for scale, until ``--loopback`` prints its first answer (configuration,
  providers and server loaded).

Figures (objects/s, CPU µs per object, seconds) are printed and written to
``bench/results/listing.json``.  ``--profile`` adds cProfile summaries.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

ROOT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT_DIR))

from mtp_responder.app import Responder  # noqa: E402
from mtp_responder.config import parse_config  # noqa: E402
from mtp_responder.core.codes import ALL, ROOT, ObjectProp, OperationCode  # noqa: E402
from mtp_responder.core.datasets import (  # noqa: E402
    parse_object_info,
    parse_prop_list,
    parse_u32_array,
)
from mtp_responder.testing.initiator import Initiator  # noqa: E402
from mtp_responder.transport.loopback import loopback_pair  # noqa: E402

FILES = int(os.environ.get("BENCH_LISTING_FILES", "10000"))
FOLDER = "many"
RESULTS = ROOT_DIR / "bench" / "results" / "listing.json"


class ListingMismatch(AssertionError):
    """The responder listed something other than what is on disk."""


def make_tree(root: Path, count: int) -> set[str]:
    """``count`` small files in one folder; their names."""
    folder = root / FOLDER
    folder.mkdir(parents=True)
    names = {f"file-{i:05d}.txt" for i in range(count)}
    for name in names:
        (folder / name).write_bytes(b"x" * 13)
    return names


async def _ok(mtp: Initiator, code: int, *params: int) -> bytes:
    result = await mtp.transaction(code, *params)
    if not result.response.ok or result.data is None:
        raise ListingMismatch(f"{OperationCode(code).name}{params}: {result.response}")
    return result.data


async def _folder_handle(mtp: Initiator, sid: int) -> int:
    for handle in parse_u32_array(await _ok(mtp, OperationCode.GET_OBJECT_HANDLES, sid, 0, ROOT)):
        info = parse_object_info(await _ok(mtp, OperationCode.GET_OBJECT_INFO, handle))
        if info.filename == FOLDER:
            return handle
    raise ListingMismatch(f"{FOLDER!r} is not at the storage's root")


async def list_per_object(mtp: Initiator, sid: int, names: set[str]) -> int:
    """libmtp's uncached listing: handles, then three transactions per object."""
    folder = await _folder_handle(mtp, sid)
    handles = parse_u32_array(await _ok(mtp, OperationCode.GET_OBJECT_HANDLES, sid, 0, folder))
    seen: set[str] = set()
    for handle in handles:
        info = parse_object_info(await _ok(mtp, OperationCode.GET_OBJECT_INFO, handle))
        await _ok(mtp, OperationCode.GET_OBJECT_PROPS_SUPPORTED, info.object_format)
        size = await _ok(mtp, OperationCode.GET_OBJECT_PROP_VALUE, handle, ObjectProp.OBJECT_SIZE)
        if info.parent_object != folder or int.from_bytes(size, "little") != 13:
            raise ListingMismatch(f"handle {handle:#x}: {info}, size {size.hex()}")
        seen.add(info.filename)
    if seen != names or len(handles) != len(names):
        raise ListingMismatch(f"listed {len(handles)} handles, {len(seen ^ names)} names differ")
    return len(handles)


async def list_prop_list(mtp: Initiator, sid: int, names: set[str]) -> int:
    """libmtp's cached listing: one GetObjectPropList for everything."""
    del sid
    data = await _ok(mtp, OperationCode.GET_OBJECT_PROP_LIST, ALL, 0, ALL, 0, ALL)
    by_handle: dict[int, dict[int, Any]] = {}
    for item in parse_prop_list(data):
        by_handle.setdefault(item.handle, {})[item.code] = item.value
    files = {
        props[ObjectProp.OBJECT_FILE_NAME]
        for props in by_handle.values()
        if props.get(ObjectProp.OBJECT_SIZE) == 13
    }
    if files != names:
        raise ListingMismatch(f"{len(files ^ names)} names differ in the property list")
    return len(files)


Lister = Callable[[Initiator, int, set[str]], Awaitable[int]]


class _HostClock(trio.abc.Instrument):
    """CPU seconds spent in the initiator's task steps, to tell the responder's apart.

    Both ends run in this process; everything that is not the initiator's task
    (the responder's tasks, trio's scheduling, worker threads) is counted as
    the responder's, so its figure errs on the high side.
    """

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.cpu = 0.0
        self._since = time.process_time()  # added during one of its steps

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self._since = time.process_time()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.cpu += time.process_time() - self._since

    def stop(self) -> None:
        """Called from the initiator's task: count its step so far, then no more."""
        self.after_task_step(self.task)
        trio.lowlevel.remove_instrument(self)


async def run_listing(
    root: Path, names: set[str], lister: Lister, split_cpu: bool = True
) -> tuple[int, float, float, float | None]:
    """(objects, wall seconds, CPU seconds, the responder's CPU seconds) of one listing.

    ``split_cpu=False`` leaves the responder's share out (``None``): telling it
    apart costs a call per task step, which would show in a profile.
    """
    config = parse_config(
        {
            "state_dir": str(root / "state"),
            "log_level": "info",
            "providers": {"files": {"storages": [{"path": str(root / "storage")}]}},
        }
    )
    responder = Responder(config)
    transport, host = loopback_pair(max_packet_size=512)
    async with trio.open_nursery() as nursery:
        await nursery.start(responder.run, transport)
        mtp = Initiator(host)
        if not (await mtp.open_session()).ok:
            raise ListingMismatch("OpenSession failed")
        (sid,) = parse_u32_array(await _ok(mtp, OperationCode.GET_STORAGE_IDS))
        await _ok(mtp, OperationCode.GET_STORAGE_INFO, sid)
        clock = _HostClock(trio.lowlevel.current_task())
        if split_cpu:
            trio.lowlevel.add_instrument(clock)
        wall, cpu = time.perf_counter(), time.process_time()
        count = await lister(mtp, sid, names)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if split_cpu:
            clock.stop()
        await mtp.close_session()
        nursery.cancel_scope.cancel()
    return count, wall, cpu, (cpu - clock.cpu) if split_cpu else None


def listing_figures(root: Path, names: set[str], profile: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for label, lister in (("per_object", list_per_object), ("prop_list", list_prop_list)):
        profiler = cProfile.Profile() if profile else None
        if profiler is not None:
            profiler.enable()
        count, wall, cpu, responder_cpu = trio.run(
            run_listing, root, names, lister, profiler is None
        )
        if profiler is not None:
            profiler.disable()
            for order in ("tottime", "cumulative"):
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out).sort_stats(order)
                stats.print_stats(int(os.environ.get("BENCH_PROFILE_LINES", "12")))
                print(f"-- {label}, by {order}\n{out.getvalue()}")
        figures[label] = {
            "objects": count,
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "objects_per_s": round(count / wall),
            "cpu_us_per_object": round(cpu / count * 1e6, 1),
        }
        line = (
            f"{label:<11} {count} objects in {wall:.2f} s: {count / wall:,.0f} objects/s,"
            f" CPU per object {cpu / count * 1e6:,.0f} µs"
        )
        if responder_cpu is not None:
            figures[label]["responder_cpu_us_per_object"] = round(responder_cpu / count * 1e6, 1)
            line += f", of which the responder's {responder_cpu / count * 1e6:,.0f} µs"
        print(line + (" (profiled)" if profiler is not None else ""))
    return figures


# -- start-up ---------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descriptors_ready(mount: Path, config: Path, env: dict[str, str]) -> tuple[float, float]:
    """(seconds, CPU seconds) from exec of ``mtp-responder`` until ep0 holds descriptors.

    The mount is a directory of plain files named like FunctionFS's: the
    responder writes its descriptors to ``ep0`` exactly as on a gadget, and is
    stopped as soon as they are there (it cannot serve plain files).
    """
    ep0 = mount / "ep0"
    for name in ("ep0", "ep1", "ep2", "ep3"):
        (mount / name).write_bytes(b"")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "mtp_responder.cli", "--functionfs", str(mount)),
            *("--config", str(config), "--log-level", "warning"),
        ],
        env=env,
        cwd=mount,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        while ep0.stat().st_size == 0:
            if proc.poll() is not None:
                stderr = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"mtp-responder exited before writing descriptors:\n{stderr}")
            time.sleep(0.0005)
        elapsed = time.perf_counter() - start
        cpu = _cpu_seconds(proc.pid)
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    return elapsed, cpu


def _first_answer(config: Path, env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(seconds, CPU seconds) from exec of ``mtp-responder --loopback`` to its first answer.

    The self-check's first line is the GetDeviceInfo it got back: by then the
    configuration, the providers and the server are all loaded.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtp_responder.cli", "--loopback", "--config", str(config)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        elapsed = time.perf_counter() - start
        cpu = _cpu_seconds(proc.pid)
        if not line:
            raise RuntimeError("mtp-responder --loopback printed nothing")
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
    return elapsed, cpu


def startup_figures(root: Path) -> dict[str, Any]:
    """Exec to "descriptors written", cold (no bytecode caches) and warm; best of five."""
    config = root / "startup.toml"
    mount = root / "ffs"
    mount.mkdir()
    config.write_text(
        f'state_dir = "{root / "state"}"\n'
        f'[providers.files]\nstorages = [{{ path = "{root / "storage"}" }}]\n'
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT_DIR))
    figures: dict[str, Any] = {}
    for label, extra in (
        ("cold", {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(root / "pyc")}),
        ("warm", {}),
    ):
        runs = [_descriptors_ready(mount, config, dict(env, **extra)) for _ in range(5)]
        wall, cpu = min(runs)
        answers = [_first_answer(config, dict(env, **extra), mount) for _ in range(3)]
        answer_wall, answer_cpu = min(answers)
        figures[label] = {
            "exec_to_descriptors_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "exec_to_first_answer_s": round(answer_wall, 3),
            "first_answer_cpu_s": round(answer_cpu, 3),
        }
        print(
            f"start-up {label}: {wall:.3f} s exec to descriptors written, {cpu:.3f} CPU s;"
            f" {answer_wall:.3f} s to the first answer (loopback), {answer_cpu:.3f} CPU s"
        )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="print cProfile summaries")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up figures")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-listing-"))
    try:
        names = make_tree(tmp / "storage", FILES)
        results: dict[str, Any] = {"files": FILES}
        results["listing"] = listing_figures(tmp, names, args.profile)
        if not args.no_startup:
            results["startup"] = startup_figures(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
