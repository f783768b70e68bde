"""Guest-side helpers for the end-to-end tests: gadgets, tools, logs.

These run inside the VM (see ``tests/e2e/vm.py``): the gadget is real (configfs,
FunctionFS, dummy_hcd) and so are the initiators (libmtp, gphoto2, pyusb), which
find the device through the ``/dev/bus/usb`` nodes devtmpfs creates.  Every tool's
output goes to a file under the run's results directory, shared with the host,
because a failing end-to-end test is debugged from its logs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
ECHO_SCRIPT = Path(__file__).with_name("ffs_echo.py")
PYTHON = sys.executable

#: Set by the harness for the guest job; e2e tests refuse to run without it.
GUEST_ENV = "MTP_E2E_GUEST"
IN_GUEST = os.environ.get(GUEST_ENV) == "1"
#: ``high-speed`` or ``super-speed``: the dummy_hcd link of this boot.
LINK = os.environ.get("MTP_E2E_LINK", "high-speed")
RESULTS = Path(os.environ.get("MTP_E2E_RESULTS", REPO_ROOT / ".cache" / "e2e-results"))

CONFIGFS_GADGETS = Path("/sys/kernel/config/usb_gadget")
USB_DEVICES = Path("/sys/bus/usb/devices")

#: Test VID:PID (Linux Foundation test IDs); each test gadget gets its own PID so
#: a device left over from a previous test can never be mistaken for the new one.
TEST_VID = 0x1D6B
_next_pid = 0x0200


def next_test_pid() -> int:
    global _next_pid
    _next_pid += 1
    return _next_pid


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:120]


# -- TOML (just enough to write test configs) --------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # JSON string escapes are valid TOML basic strings
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_dumps(data: Mapping[str, Any], _prefix: str = "") -> str:
    """Scalars and lists first, then sub-tables, as TOML requires."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    arrays: list[tuple[str, list[Mapping[str, Any]]]] = []
    for key, value in data.items():
        qkey = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)
        if isinstance(value, Mapping):
            tables.append((qkey, value))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            arrays.append((qkey, value))
        else:
            lines.append(f"{qkey} = {_toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, table in tables:
        name = f"{_prefix}{key}"
        out += f"\n[{name}]\n" + toml_dumps(table, name + ".")
    for key, items in arrays:
        name = f"{_prefix}{key}"
        for item in items:
            out += f"\n[[{name}]]\n" + toml_dumps(item, name + ".")
    return out


# -- running tools ------------------------------------------------------------------------


@dataclass
class ToolResult:
    """A finished command; the full output is also in ``log``."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    log: Path
    timed_out: bool = False

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def check(self) -> ToolResult:
        if self.returncode != 0 or self.timed_out:
            raise AssertionError(self.describe())
        return self

    def describe(self) -> str:
        state = "timed out" if self.timed_out else f"exited {self.returncode}"
        tail = "\n".join(self.output.splitlines()[-30:])
        return f"`{shlex.join(self.argv)}` {state} after {self.seconds:.1f}s " \
               f"(log {self.log}):\n{tail}"


class Tools:
    """Runs commands with a timeout and writes each one's output to its own file."""

    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env = dict(os.environ)
        self.env.setdefault("PYTHONPATH", str(REPO_ROOT))
        self.env.update(env or {})
        self._count = 0

    def run(
        self,
        argv: Sequence[str | Path],
        *,
        timeout: float = 60,
        name: str | None = None,
        check: bool = False,
        cwd: Path | None = None,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ToolResult:
        args = [str(a) for a in argv]
        self._count += 1
        label = safe_name(name or Path(args[0]).name)
        log = self.log_dir / f"{self._count:02d}-{label}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        full_env = {**self.env, **(env or {})}
        started = time.monotonic()
        timed_out = False
        # A new session so a timeout can kill the tool's whole process group.
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        seconds = time.monotonic() - started
        result = ToolResult(
            argv=args,
            returncode=proc.returncode,
            stdout=out.decode(errors="replace"),
            stderr=err.decode(errors="replace"),
            seconds=seconds,
            log=log,
            timed_out=timed_out,
        )
        state = "TIMED OUT" if timed_out else f"exit {proc.returncode}"
        log.write_text(
            f"$ {shlex.join(args)}\n# {state} after {seconds:.2f}s\n"
            f"---- stdout ----\n{result.stdout}\n---- stderr ----\n{result.stderr}"
        )
        if check:
            result.check()
        return result


# -- sysfs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsbDevice:
    sysfs: Path
    busnum: int
    devnum: int
    speed: str

    @property
    def dev_node(self) -> Path:
        return Path(f"/dev/bus/usb/{self.busnum:03d}/{self.devnum:03d}")


def find_usb_device(vid: int, pid: int) -> UsbDevice | None:
    """The enumerated device with ``vid:pid`` as the host side of dummy_hcd sees it."""
    try:
        entries = list(USB_DEVICES.iterdir())
    except OSError:
        return None
    for entry in entries:
        try:
            if int((entry / "idVendor").read_text(), 16) != vid:
                continue
            if int((entry / "idProduct").read_text(), 16) != pid:
                continue
            return UsbDevice(
                sysfs=entry,
                busnum=int((entry / "busnum").read_text()),
                devnum=int((entry / "devnum").read_text()),
                speed=(entry / "speed").read_text().strip(),
            )
        except (OSError, ValueError):
            continue
    return None


def pyusb_find(vid: int, pid: int) -> Any:
    """``usb.core.find`` on a fresh libusb context.

    Debian's libusb learns about new devices from udevd's events; the guest runs
    no udevd, so a context created before the device enumerated never sees it.
    A new context scans sysfs afresh.
    """
    import usb.backend.libusb1 as libusb1
    import usb.core

    libusb1.get_backend()  # loads the library once
    backend = libusb1._LibUSB(libusb1._lib)
    return usb.core.find(idVendor=vid, idProduct=pid, backend=backend)


def fresh_libusb_context_per_find() -> None:
    """Make every ``usb.core.find()`` without an explicit backend use a new context.

    Same reason as :func:`pyusb_find`, applied to code that calls pyusb directly
    (a test that unbinds and rebinds the gadget must find the new device).  The
    Device objects keep their own backend, so older handles stay valid.
    """
    import usb.backend.libusb1 as libusb1

    if getattr(libusb1.get_backend, "_fresh_context", False):
        return
    original = libusb1.get_backend

    def get_backend(find_library: Any = None) -> Any:
        if original(find_library) is None:
            return None
        return libusb1._LibUSB(libusb1._lib)

    get_backend._fresh_context = True  # type: ignore[attr-defined]
    libusb1.get_backend = get_backend


def udc_speed() -> str:
    for udc in Path("/sys/class/udc").iterdir():
        return (udc / "current_speed").read_text().strip()
    return "no UDC"


# -- gadgets ---------------------------------------------------------------------------------


@dataclass
class Gadget:
    """One gadget built by ``mtp-gadget`` from a generated config file.

    ``config`` is the TOML data written to ``config_path``; tests may change it and
    call :meth:`write_config` before :meth:`up`.
    """

    tools: Tools
    config: dict[str, Any]
    config_path: Path
    work_dir: Path
    log_dir: Path
    enumerate_timeout: float = 45.0
    history: list[str] = field(default_factory=list)

    @property
    def vid(self) -> int:
        return int(self.config["device"]["vendor_id"])

    @property
    def pid(self) -> int:
        return int(self.config["device"]["product_id"])

    @property
    def name(self) -> str:
        return str(self.config["gadget"]["name"])

    @property
    def mount(self) -> Path:
        return Path(self.config["gadget"]["functionfs_mount"])

    @property
    def configfs_dir(self) -> Path:
        return CONFIGFS_GADGETS / self.name

    @property
    def responder_log(self) -> Path:
        return Path(self.config["gadget"]["responder_log"])

    def write_config(self) -> None:
        self.config_path.write_text(toml_dumps(self.config))

    def cli(self, *verb: str, timeout: float = 90, check: bool = True) -> ToolResult:
        """Run ``mtp-gadget --config <this config> <verb...>``."""
        self.history.append(" ".join(verb))
        return self.tools.run(
            [PYTHON, "-m", "gadget_config.cli", "--config", self.config_path, *verb],
            timeout=timeout,
            name=f"mtp-gadget-{verb[0]}",
            check=check,
        )

    def up(self, wait: bool = True) -> UsbDevice | None:
        self.write_config()
        self.cli("up")
        return self.wait_enumerated() if wait else None

    def down(self, check: bool = True) -> ToolResult:
        return self.cli("down", check=check)

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.cli("status", "--json").stdout)
        return result

    def device(self) -> UsbDevice | None:
        return find_usb_device(self.vid, self.pid)

    def wait_enumerated(self, timeout: float | None = None) -> UsbDevice:
        """Until the host side has the device and devtmpfs made its node."""
        deadline = time.monotonic() + (timeout or self.enumerate_timeout)
        while time.monotonic() < deadline:
            dev = self.device()
            if dev is not None and dev.dev_node.exists():
                self.tools.run(["lsusb", "-d", f"{self.vid:04x}:{self.pid:04x}"],
                               name="lsusb", check=True)
                return dev
            time.sleep(0.1)
        self.tools.run(["dmesg"], name="dmesg")
        self.tools.run([PYTHON, "-m", "gadget_config.cli", "--config", self.config_path,
                        "status"], name="status")
        raise AssertionError(
            f"{self.vid:04x}:{self.pid:04x} did not enumerate within "
            f"{timeout or self.enumerate_timeout:.0f}s; logs in {self.log_dir}\n"
            f"responder log tail:\n{self.responder_log_tail()}"
        )

    def wait_gone(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.device() is None:
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.vid:04x}:{self.pid:04x} still present after {timeout}s")

    def responder_log_tail(self, lines: int = 30) -> str:
        try:
            text = self.responder_log.read_text(errors="replace")
        except OSError:
            return "(no responder log)"
        return "\n".join(text.splitlines()[-lines:])

    def responder_pid(self) -> int | None:
        try:
            data = json.loads((Path("/run/mtp-gadget") / f"{self.name}.pid").read_text())
        except (OSError, ValueError):
            return None
        pid = data.get("pid")
        return pid if isinstance(pid, int) else None


def echo_responder_command(*extra: str) -> list[str]:
    return ["{python}", str(ECHO_SCRIPT), "{mount}", *extra]


def mtp_responder_command(*extra: str) -> list[str]:
    return ["{python}", "-m", "mtp_responder.cli", "--config", "{config}",
            "--functionfs", "{mount}", *extra]


def base_config(
    *,
    name: str,
    work_dir: Path,
    log_dir: Path,
    responder_command: Sequence[str],
    product: str = "E2E Gadget",
    extra_functions: Sequence[str] = (),
) -> dict[str, Any]:
    return {
        "device": {
            "vendor_id": TEST_VID,
            "product_id": next_test_pid(),
            "bcd_device": 0x0101,
            "manufacturer": "MTP E2E",
            "product": product,
            "serial": f"E2E-{os.getpid()}-{_next_pid:04X}",
            "max_speed": "super-speed",
        },
        "gadget": {
            "name": name,
            "functionfs_mount": f"/dev/ffs-{name}",
            "ffs_instance": name,
            "extra_functions": list(extra_functions),
            "responder_command": list(responder_command),
            "responder_log": str(log_dir / "responder.log"),
            "ready_timeout": 60,
            "stop_timeout": 10,
        },
    }


# -- files and initiator output -----------------------------------------------------


def make_file(path: Path, size: int) -> str:
    """Random content of ``size`` bytes; returns its SHA-256."""
    digest = hashlib.sha256()
    block = os.urandom(min(size, 1 << 20))
    with open(path, "wb") as f:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            f.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class MtpFile:
    """One entry of ``mtp-files`` output."""

    item_id: int
    name: str
    size: int
    parent_id: int
    storage_id: int | None


def parse_mtp_files(output: str) -> list[MtpFile]:
    files = []
    for block in re.split(r"^File ID: ", output, flags=re.M)[1:]:
        item_id = int(block.split("\n", 1)[0].strip())
        name = re.search(r"^\s*Filename: (.*)$", block, re.M)
        size = re.search(r"^\s*File size (\d+)", block, re.M)
        parent = re.search(r"^\s*Parent ID: (\d+)", block, re.M)
        storage = re.search(r"^\s*Storage ID: 0x([0-9a-fA-F]+)", block, re.M)
        if not (name and size and parent):
            raise AssertionError(f"cannot parse mtp-files entry:\n{block}")
        files.append(MtpFile(
            item_id=item_id,
            name=name.group(1).strip(),
            size=int(size.group(1)),
            parent_id=int(parent.group(1)),
            storage_id=int(storage.group(1), 16) if storage else None,
        ))
    return files


def parse_mtp_folders(output: str) -> dict[str, int]:
    """``mtp-folders`` prints ``<id>\t<indent><name>``; returns name -> id."""
    folders = {}
    for line in output.splitlines():
        m = re.match(r"^(\d+)\t\s*(.+)$", line)
        if m:
            folders[m.group(2).strip()] = int(m.group(1))
    return folders


def leftover_gadgets() -> list[str]:
    try:
        return sorted(p.name for p in CONFIGFS_GADGETS.iterdir())
    except OSError:
        return []


def functionfs_mount_points() -> list[str]:
    points = []
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "functionfs":
                points.append(parts[1])
    return points


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# -- FUSE initiators -------------------------------------------------------------------


#: The FUSE clients that mount an MTP device as a filesystem (Debian packages).
FUSE_CLIENTS = ("go-mtpfs", "jmtpfs")


def fusermount() -> str:
    """The FUSE mount helper: ``fusermount3`` (fuse3) or ``fusermount`` (fuse)."""
    for name in ("fusermount3", "fusermount"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("no fusermount3 or fusermount in the guest (Debian package fuse3/fuse)")


def fuse_mounted(mountpoint: Path) -> bool:
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            # /proc/self/mounts writes a space in a path as \040; test mount points have none.
            if len(parts) > 2 and parts[1] == str(mountpoint) and parts[2].startswith("fuse"):
                return True
    return False


@dataclass
class FuseMount:
    """A FUSE client (``go-mtpfs`` or ``jmtpfs``) mounting the one MTP device present.

    The client runs in the foreground as a child of the test, so its whole output
    lands in a log file and a broken test can still kill it; every :meth:`mount`
    is a new client process, so a remount also means a new MTP session.  A client
    whose requests hang blocks whoever touches the mount point, so the tests only
    ever look at it through :class:`Tools` (commands with a timeout).
    """

    client: str
    mountpoint: Path
    tools: Tools
    timeout: float = 60
    #: go-mtpfs waits 5 s for a USB transfer by default; under TCG the device
    #: answers some commands (a restore, a listing) more slowly than that.
    usb_timeout_ms: int = 60_000
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    mounts: int = 0

    def command(self) -> list[str]:
        if self.client == "go-mtpfs":
            return ["go-mtpfs", "-usb-timeout", str(self.usb_timeout_ms), str(self.mountpoint)]
        if self.client == "jmtpfs":
            return ["jmtpfs", "-f", str(self.mountpoint)]
        raise ValueError(f"unknown FUSE client {self.client!r}")

    def mount(self, storage: str) -> Path:
        """Mount, wait until the storage's directory is listed; returns its path."""
        if not Path("/dev/fuse").exists():
            raise AssertionError("no /dev/fuse in the guest (is the fuse module loaded?)")
        fusermount()
        if shutil.which(self.client) is None:
            raise AssertionError(f"{self.client} is not installed (Debian package {self.client})")
        if self.proc is not None and self.proc.poll() is None:
            raise AssertionError(f"{self.client} is still running from the previous mount")
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.mounts += 1
        self.log = self.tools.log_dir / f"{self.client}-mount{self.mounts}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                env=self.tools.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.timeout
        while not fuse_mounted(self.mountpoint):
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.client} exited {self.proc.returncode} without mounting:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.client} did not mount within {self.timeout:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.1)
        listing = self.tools.run(
            ["ls", "-1", self.mountpoint], timeout=self.timeout, name=f"ls-{self.client}-root"
        )
        if storage not in listing.stdout.splitlines():
            raise AssertionError(
                f"{self.client} does not show the storage {storage!r}: "
                f"{listing.describe()}\n{self.client} log:\n{self.log_tail()}"
            )
        return self.mountpoint / storage

    def unmount(self) -> ToolResult:
        """``fusermount -u``; the client then exits.  Fails if either does not happen."""
        result = self.tools.run(
            [fusermount(), "-u", self.mountpoint],
            timeout=self.timeout,
            name=f"fusermount-u-{self.client}",
        )
        if result.returncode != 0:
            raise AssertionError(f"unmounting {self.client}: {result.describe()}")
        if self.proc is not None:
            try:
                self.proc.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self.close()
                raise AssertionError(
                    f"{self.client} still ran {self.timeout:.0f}s after its unmount:\n"
                    f"{self.log_tail()}"
                ) from None
        return result

    def close(self) -> None:
        """Whatever state the test left: detach the mount and end the client."""
        if fuse_mounted(self.mountpoint):
            self.tools.run(
                [fusermount(), "-u", "-z", self.mountpoint],
                timeout=self.timeout,
                name=f"fusermount-uz-{self.client}",
            )
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        if self.log is None:
            return "(not mounted yet)"
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no client log)"
        return "\n".join(text.splitlines()[-lines:])
