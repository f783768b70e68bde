"""Boot Debian's stock kernel under QEMU (TCG) and run one command in the host's root.

The host kernel has no configfs and no UDC, so a USB gadget can only be exercised
inside a guest.  The guest here is deliberately thin: Debian's own kernel, a busybox
initrd that loads the modules a gadget needs, and the *host's* root filesystem shared
read-write over virtio 9p.  After a ``chroot`` the guest runs the project's venv,
libmtp, gphoto2 and usbutils exactly as installed on the host, so nothing has to be
built twice and CI needs only Debian packages.

Everything expensive (kernel download, module tree, initrd) is cached under
``<repo>/.cache/vm`` and rebuilt from scratch on a fresh clone.  A run gets its own
directory under ``.cache/vm/runs``; the guest writes its output, exit status and any
init failure there, because the emulated serial console is far too slow for logs.

CLI::

    python -m tests.e2e.vm build                # fetch kernel, build initrd
    python -m tests.e2e.vm run [--superspeed] [--timeout S] -- CMD ARGS...
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("MTP_VM_CACHE", REPO_ROOT / ".cache" / "vm"))

#: Marker the guest's /init puts in front of every console line meant for the host.
MARKER = "mtpvm:"

#: Modules the guest needs, in load order.  Dependencies are resolved by depmod on
#: the initrd tree; busybox modprobe then applies ``module.param=value`` options
#: from the kernel command line (``dummy_hcd.is_super_speed=1``).
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
GADGET_MODULES = (
    "configfs",
    "dummy_hcd",
    "libcomposite",
    "usb_f_fs",
    # Kernel functions for composite gadgets.  Loaded up front: configfs asks the
    # kernel to request_module() them, which would run the *host's* modprobe inside
    # the chroot, and the host has no modules for the guest kernel.
    "usb_f_acm",
    "usb_f_ecm",
    "usb_f_ncm",
    "usb_f_mass_storage",
    # CDC OBEX (ttyGS<n> on the device side), the OBEX backup transport over USB.
    "usb_f_obex",
    # Host-side class driver, so a composite test can see /dev/ttyACM0 appear.
    "cdc_acm",
    # /dev/fuse, for the FUSE initiators (go-mtpfs, jmtpfs) that mount the device.
    "fuse",
)
MODULES = BOOT_MODULES + GADGET_MODULES

GUEST_PATH = (
    f"{REPO_ROOT}/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

INIT_SCRIPT = r"""#!/bin/busybox sh
# Guest PID 1.  Short status lines go to the console, prefixed for the host.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "@MARKER@ $*" > /dev/console; }
up() { cut -d' ' -f1 /proc/uptime; }
RUN=""
TMO=600
KEEP=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    mtpvm.run=*) RUN="${arg#mtpvm.run=}" ;;
    mtpvm.timeout=*) TMO="${arg#mtpvm.timeout=}" ;;
    mtpvm.keep=*) KEEP="${arg#mtpvm.keep=}" ;;
  esac
done
halt_now() { sync; poweroff -f; sleep 5; echo o > /proc/sysrq-trigger; }
fail() {
  say "INIT FAILED: $*"
  if [ -n "$RUN" ] && [ -d "/newroot$RUN" ]; then echo "$*" > "/newroot$RUN/init-error"; fi
  halt_now
}
[ -n "$RUN" ] || fail "no mtpvm.run= on the kernel command line"
for m in @BOOT_MODULES@; do modprobe "$m" || fail "modprobe $m"; done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose hostroot /newroot \
  || fail "mount 9p hostroot"
[ -f "/newroot$RUN/job.sh" ] || fail "no job script at $RUN/job.sh"
for m in @GADGET_MODULES@; do modprobe "$m" || fail "modprobe $m"; done
R=/newroot
mount -t proc proc $R/proc || fail "mount proc"
mount -t sysfs sysfs $R/sys || fail "mount sysfs"
mount -t configfs configfs $R/sys/kernel/config || fail "mount configfs"
mount -t devtmpfs devtmpfs $R/dev || fail "mount devtmpfs"
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
# A checkout under /tmp must stay visible through the guest's fresh /tmp.
if [ -n "$KEEP" ]; then mkdir -p /keep && mount -o bind "$R$KEEP" /keep || fail "bind $KEEP"; fi
mount -t tmpfs -o mode=0755 tmpfs $R/run || fail "mount /run"
mount -t tmpfs -o mode=1777 tmpfs $R/tmp || fail "mount /tmp"
if [ -n "$KEEP" ]; then
  mkdir -p "$R$KEEP" && mount -o bind /keep "$R$KEEP" || fail "rebind $KEEP"
fi
# Loopback networking, for servers the tests reach over TCP (the OBEX backup server).
ip link set lo up || fail "ip link set lo up"
echo "$(up)" > "$R$RUN/boot-seconds"
say "booted in $(up)s; running job (timeout ${TMO}s)"
# SIGINT first: pytest then still writes its report for the tests that finished.
start=$(cut -d. -f1 /proc/uptime)
timeout -s INT -k 30 "$TMO" chroot $R /bin/sh "$RUN/job.sh" > "$R$RUN/guest.log" 2>&1
rc=$?
end=$(cut -d. -f1 /proc/uptime)
if [ $((end - start)) -ge "$TMO" ]; then
  echo "$((end - start))" > "$R$RUN/job-timed-out"
  say "job exceeded its ${TMO}s timeout"
fi
echo "$rc" > "$R$RUN/exit_status"
say "job exited with status $rc at $(up)s"
halt_now
"""


class VmError(RuntimeError):
    """The VM could not be prepared or did not finish its job."""


@dataclass
class VmResult:
    """What a guest run left behind; the files stay in ``run_dir``."""

    run_dir: Path
    exit_status: int | None
    timed_out: bool
    boot_seconds: float | None
    wall_seconds: float
    init_error: str | None = None
    qemu_returncode: int | None = None
    job_timeout: float = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.exit_status == 0
            and not self.timed_out
            and not self.job_timed_out
            and self.init_error is None
        )

    @property
    def job_timed_out(self) -> bool:
        return (self.run_dir / "job-timed-out").exists()

    @property
    def guest_log(self) -> Path:
        return self.run_dir / "guest.log"

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    def describe_failure(self) -> str:
        if self.timed_out:
            return f"guest did not power off in time (killed after {self.wall_seconds:.0f}s)"
        if self.init_error:
            return f"guest init failed: {self.init_error}"
        if self.exit_status is None:
            return f"guest wrote no exit status (qemu exit code {self.qemu_returncode})"
        if self.job_timed_out:
            return (f"guest job exceeded its {self.job_timeout:.0f}s timeout and was "
                    f"interrupted (status {self.exit_status})")
        return f"guest job exited with status {self.exit_status}"


def _log(msg: str) -> None:
    print(f"[vm] {msg}", flush=True)


def _run(cmd: Sequence[str | Path], cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise VmError(
            f"command failed ({proc.returncode}): {shlex.join(str(c) for c in cmd)}\n"
            f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return proc.stdout


def _require_tools() -> None:
    missing = [
        tool
        for tool in ("qemu-system-x86_64", "apt-get", "dpkg-deb", "depmod", "modprobe")
        if shutil.which(tool) is None
    ]
    if not Path("/bin/busybox").exists():
        missing.append("/bin/busybox (busybox-static)")
    if missing:
        raise VmError(f"missing tools: {', '.join(missing)} (run `make apt`)")
    if _elf_interpreter(Path("/bin/busybox")):
        raise VmError(
            "/bin/busybox is dynamically linked and cannot run in the initrd: "
            "install busybox-static (`make apt`)"
        )
    if os.geteuid() != 0:
        _log("warning: not root; the guest's writes to the shared root will fail "
             "where the host user lacks permission")


def _elf_interpreter(path: Path) -> bool:
    """Whether an x86-64 ELF file asks for a dynamic loader (PT_INTERP)."""
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:
            return False
        phoff = int.from_bytes(header[32:40], "little")
        phentsize = int.from_bytes(header[54:56], "little")
        phnum = int.from_bytes(header[56:58], "little")
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return any(
        int.from_bytes(table[i * phentsize : i * phentsize + 4], "little") == 3
        for i in range(phnum)
    )


@contextlib.contextmanager
def _cache_lock(cache: Path) -> Iterator[None]:
    """Serialise cache builds: several engineers and CI jobs may boot at once."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _apt_download(package: str, dest: Path) -> Path:
    """``apt-get download`` one package, updating the lists once if apt forgot it."""
    for attempt in (1, 2):
        proc = subprocess.run(
            ["apt-get", "download", package], cwd=dest, capture_output=True, text=True
        )
        if proc.returncode == 0:
            break
        if attempt == 1:
            _log(f"apt-get download {package} failed; running apt-get update once")
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
    else:
        raise VmError(f"apt-get download {package} failed:\n{proc.stderr[-2000:]}")
    debs = sorted(dest.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
    if not debs:
        raise VmError(f"apt-get download {package} produced no .deb in {dest}")
    return debs[-1]


def _modules_root(tree: Path) -> Path:
    for candidate in (tree / "lib" / "modules", tree / "usr" / "lib" / "modules"):
        if candidate.is_dir():
            return candidate
    raise VmError(f"no lib/modules in unpacked kernel at {tree}")


@dataclass(frozen=True)
class Kernel:
    """An unpacked Debian kernel: its image and its depmod'ed module tree."""

    version: str
    vmlinuz: Path
    tree: Path

    @property
    def modules_dir(self) -> Path:
        return _modules_root(self.tree) / self.version


def fetch_kernel(cache: Path = CACHE_DIR) -> Kernel:
    """Download and unpack ``linux-image-amd64``'s kernel unless it is cached."""
    stamp = cache / "kernel" / "READY"
    if stamp.exists():
        version = stamp.read_text().strip()
        tree = cache / "kernel" / "tree"
        vmlinuz = tree / "boot" / f"vmlinuz-{version}"
        if vmlinuz.exists() and (_modules_root(tree) / version / "modules.dep").exists():
            return Kernel(version, vmlinuz, tree)
    _log("fetching Debian's linux-image-amd64 (first run only)")
    started = time.monotonic()
    kdir = cache / "kernel"
    shutil.rmtree(kdir, ignore_errors=True)
    debs = kdir / "debs"
    debs.mkdir(parents=True)
    meta = _apt_download("linux-image-amd64", debs)
    depends = _run(["dpkg-deb", "-f", meta, "Depends"]).strip()
    match = re.search(r"(linux-image-[0-9][^\s,(|]*)", depends)
    if not match:
        raise VmError(f"cannot find the kernel package in Depends: {depends!r}")
    image_deb = _apt_download(match.group(1), debs)
    tree = kdir / "tree"
    _run(["dpkg-deb", "-x", image_deb, tree])
    vmlinuzes = sorted((tree / "boot").glob("vmlinuz-*"))
    if not vmlinuzes:
        raise VmError(f"{image_deb.name} has no /boot/vmlinuz-*")
    version = vmlinuzes[-1].name.removeprefix("vmlinuz-")
    _run(["depmod", "-b", tree, version])
    for deb in debs.glob("*.deb"):
        deb.unlink()  # 70 MB we no longer need
    stamp.write_text(version + "\n")
    _log(f"kernel {version} unpacked in {time.monotonic() - started:.1f}s")
    return Kernel(version, vmlinuzes[-1], tree)


def _module_files(kernel: Kernel, names: Sequence[str]) -> list[Path]:
    """Every .ko ``names`` need, dependencies first, without duplicates."""
    files: list[Path] = []
    for name in names:
        out = _run(
            ["modprobe", "-d", kernel.tree, "-S", kernel.version, "--show-depends", name]
        )
        for line in out.splitlines():
            parts = line.split()
            if parts[:1] == ["builtin"]:
                continue
            if len(parts) >= 2 and parts[0] == "insmod":
                path = Path(parts[1])
                if path not in files:
                    files.append(path)
    return files


def _initrd_key(kernel: Kernel) -> str:
    digest = hashlib.sha256()
    digest.update(kernel.version.encode())
    digest.update(INIT_SCRIPT.encode())
    digest.update(" ".join(MODULES).encode())
    digest.update(Path("/bin/busybox").read_bytes()[:4096])
    return digest.hexdigest()[:16]


def build_initrd(kernel: Kernel, cache: Path = CACHE_DIR) -> Path:
    """Build (or reuse) the busybox initrd for ``kernel``."""
    key = _initrd_key(kernel)
    initrd = cache / f"initrd-{key}.cpio"
    if initrd.exists():
        return initrd
    _log("building initrd")
    # Older initrds go once nobody can still be about to boot from them.
    for old in cache.glob("initrd-*.cpio"):
        if time.time() - old.stat().st_mtime > 3600:
            old.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        root = Path(tmp) / "root"
        for sub in ("bin", "dev", "proc", "sys", "newroot"):
            (root / sub).mkdir(parents=True)
        shutil.copy2("/bin/busybox", root / "bin" / "busybox")
        moddir = root / "lib" / "modules" / kernel.version
        src_moddir = kernel.modules_dir
        for ko in _module_files(kernel, MODULES):
            rel = ko.relative_to(src_moddir)
            (moddir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ko, moddir / rel)
        for meta in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
            if (src_moddir / meta).exists():
                shutil.copy2(src_moddir / meta, moddir / meta)
        _run(["depmod", "-b", root, kernel.version])
        init = (
            INIT_SCRIPT.replace("@MARKER@", MARKER)
            .replace("@BOOT_MODULES@", " ".join(BOOT_MODULES))
            .replace("@GADGET_MODULES@", " ".join(GADGET_MODULES))
        )
        (root / "init").write_text(init)
        (root / "init").chmod(0o755)
        names = sorted(
            str(p.relative_to(root)) for p in root.rglob("*") if p != root
        )
        partial = initrd.with_suffix(".partial")
        with open(partial, "wb") as out:
            subprocess.run(
                ["cpio", "-o", "-H", "newc", "--quiet"],
                cwd=root,
                input=("\n".join(names) + "\n").encode(),
                stdout=out,
                check=True,
            )
        partial.rename(initrd)
    return initrd


def prepare(cache: Path = CACHE_DIR) -> tuple[Kernel, Path]:
    """Make sure the kernel and initrd are cached; return them."""
    _require_tools()
    with _cache_lock(cache):
        kernel = fetch_kernel(cache)
        initrd = build_initrd(kernel, cache)
    return kernel, initrd


def _new_run_dir(label: str, cache: Path) -> Path:
    runs = cache / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    # Keep the last few runs for post-mortems, drop the rest.
    old = sorted(runs.iterdir(), key=lambda p: p.stat().st_mtime)
    for stale in old[:-20]:
        shutil.rmtree(stale, ignore_errors=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", label)
    return Path(tempfile.mkdtemp(prefix=f"{stamp}-{safe}-", dir=runs))


def _job_script(command: Sequence[str], env: Mapping[str, str], cwd: Path) -> str:
    lines = ["# generated by tests/e2e/vm.py; runs inside the guest chroot", "set -u"]
    lines.append(f"cd {shlex.quote(str(cwd))}")
    for key, value in env.items():
        lines.append(f"export {key}={shlex.quote(value)}")
    lines.append("exec " + shlex.join(command) + " </dev/null")
    return "\n".join(lines) + "\n"


def run(
    command: Sequence[str],
    *,
    superspeed: bool = False,
    timeout: float = 900,
    label: str = "run",
    env: Mapping[str, str] | None = None,
    memory: str = "3G",
    cpus: int = 2,
    cache: Path = CACHE_DIR,
    echo: bool = True,
    show_logs_on_failure: bool = True,
    host_slack: float = 240,
) -> VmResult:
    """Boot the guest, run ``command`` in the host root (chroot), power off.

    ``{run_dir}`` in ``command`` is replaced by the run's results directory.

    ``timeout`` bounds the command inside the guest; the host kills QEMU a little
    later if the guest has not powered off by then.  The guest command sees
    ``MTP_E2E_GUEST=1``, ``MTP_E2E_RESULTS`` (the run directory, shared with the
    host) and ``MTP_E2E_LINK`` (``high-speed`` or ``super-speed``).
    """
    repo = REPO_ROOT.resolve()
    keep = repo if repo.is_relative_to("/tmp") else None
    hidden = [p for p in ("/tmp", "/run", "/dev", "/proc", "/sys")
              if cache.resolve().is_relative_to(p)
              and not (keep is not None and cache.resolve().is_relative_to(keep))]
    if hidden:
        raise VmError(f"the VM cache {cache} is under {hidden[0]}, which the guest "
                      "replaces with its own mount: the guest could not write results there")
    kernel, initrd = prepare(cache)
    run_dir = _new_run_dir(label, cache)
    command = [part.replace("{run_dir}", str(run_dir)) for part in command]
    link = "super-speed" if superspeed else "high-speed"
    guest_env = {
        "PATH": GUEST_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
        "MTP_E2E_GUEST": "1",
        "MTP_E2E_RESULTS": str(run_dir),
        "MTP_E2E_LINK": link,
    }
    guest_env.update(env or {})
    (run_dir / "job.sh").write_text(_job_script(command, guest_env, REPO_ROOT))
    append = [
        "console=ttyS0",
        "panic=-1",
        "quiet",
        "loglevel=3",
        "random.trust_cpu=on",
        f"mtpvm.run={run_dir}",
        f"mtpvm.timeout={int(timeout)}",
    ]
    if keep is not None:
        append.append(f"mtpvm.keep={keep}")
    if superspeed:
        append.append("dummy_hcd.is_super_speed=1")
    qemu = [
        "qemu-system-x86_64",
        "-accel", "tcg",
        "-cpu", "max",
        "-m", memory,
        "-smp", str(cpus),
        "-nographic",
        "-no-reboot",
        "-nic", "none",
        "-kernel", str(kernel.vmlinuz),
        "-initrd", str(initrd),
        "-append", " ".join(append),
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,multidevs=remap",
    ]  # fmt: skip
    (run_dir / "qemu-command").write_text(shlex.join(qemu) + "\n")
    if echo:
        shown = run_dir.relative_to(REPO_ROOT) if run_dir.is_relative_to(REPO_ROOT) else run_dir
        _log(f"booting ({link}) -> {shown}")
    # The guest enforces `timeout` itself; the host's deadline is for a guest that
    # hangs (kernel, 9p, init), with room for boot, module loading and power-off.
    deadline_budget = timeout + host_slack
    started = time.monotonic()
    timed_out = False
    with open(run_dir / "console.log", "wb") as console:
        proc = subprocess.Popen(
            qemu, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert proc.stdout is not None
        pending = b""
        try:
            while True:
                remaining = deadline_budget - (time.monotonic() - started)
                if remaining <= 0:
                    timed_out = True
                    break
                ready, _, _ = select.select([proc.stdout], [], [], min(remaining, 5.0))
                if not ready:
                    if proc.poll() is not None:
                        break
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                console.write(chunk)
                console.flush()
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace").rstrip("\r")
                    if echo and MARKER in line:
                        print(f"  {line[line.index(MARKER):].strip()}", flush=True)
                    elif echo and "Kernel panic" in line:
                        print(f"  {line.strip()}", flush=True)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    wall = time.monotonic() - started
    status_file = run_dir / "exit_status"
    exit_status = int(status_file.read_text().strip()) if status_file.exists() else None
    boot_file = run_dir / "boot-seconds"
    boot = float(boot_file.read_text().strip()) if boot_file.exists() else None
    init_error_file = run_dir / "init-error"
    init_error = init_error_file.read_text().strip() if init_error_file.exists() else None
    result = VmResult(
        run_dir=run_dir,
        exit_status=exit_status,
        timed_out=timed_out,
        boot_seconds=boot,
        wall_seconds=wall,
        init_error=init_error,
        qemu_returncode=proc.returncode,
        job_timeout=timeout,
    )
    if echo:
        state = "ok" if result.ok else "FAILED: " + result.describe_failure()
        boot_txt = f"{boot:.1f}s" if boot is not None else "?"
        _log(f"guest {state} (kernel to job: {boot_txt}, wall clock: {wall:.1f}s)")
        if not result.ok and show_logs_on_failure:
            print_logs(result)
    return result


def print_logs(result: VmResult) -> None:
    """The end of the console and of the guest job's output, for a failed run."""
    _print_tail(result.console_log, "console", 30)
    _print_tail(result.guest_log, "guest log", 40)


def _print_tail(path: Path, what: str, lines: int) -> None:
    if not path.exists():
        print(f"  ({what}: {path} missing)")
        return
    text = path.read_text(errors="replace").splitlines()[-lines:]
    print(f"---- last {len(text)} lines of {what} ({path}) ----")
    for line in text:
        print(f"  | {line}")
    print("----")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.vm", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("build", help="fetch the kernel and build the initrd (cached)")
    run_p = sub.add_parser("run", help="boot and run a command in the guest chroot")
    run_p.add_argument("--superspeed", action="store_true", help="SuperSpeed dummy_hcd link")
    run_p.add_argument("--timeout", type=float, default=600, help="guest command timeout (s)")
    run_p.add_argument("--label", default="run")
    run_p.add_argument("command", nargs="+", help="command run in the guest (after --)")
    args = parser.parse_args(argv)
    try:
        if args.action == "build":
            kernel, initrd = prepare()
            print(f"kernel {kernel.version}: {kernel.vmlinuz}\ninitrd: {initrd}")
            return 0
        result = run(
            args.command, superspeed=args.superspeed, timeout=args.timeout, label=args.label
        )
    except VmError as exc:
        print(f"vm: error: {exc}", file=sys.stderr)
        return 2
    if result.guest_log.exists():
        sys.stdout.write(result.guest_log.read_text(errors="replace")[-20000:])
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
