"""Build, bind, inspect and tear down the configfs USB gadget that carries MTP.

The order of operations is what makes a FunctionFS gadget work, so it lives here
rather than in shell scripts:

1. the configfs tree (device descriptor, strings, one configuration, the
   ``ffs.<instance>`` function and any kernel functions, MS OS descriptors);
2. the FunctionFS mount (``no_disconnect=1``, so a crashing responder does not
   take a composite gadget's other functions down with it);
3. the OBEX server, when the gadget has an ``obex.<instance>`` function: the
   kernel's CDC OBEX function keeps the whole gadget off the bus until its tty
   (``/dev/ttyGS<port_num>``) is open, so the server must hold it before the
   bind and never let it close while the gadget is up;
4. the responder, which writes its descriptors to ``ep0``;
5. binding the UDC, only once ``ep1``... exist (binding earlier fails with ENODEV)
   and the OBEX tty is held open, retried until ``UDC`` reads back the controller
   name, because a responder that re-opens ep0 after an unbind makes the next bind
   race.

Tear-down runs the same steps backwards and works from what exists in configfs and
``/proc/self/mountinfo`` rather than from the config file, so it also clears a
gadget left half-built by a crash or by an older config.  Whoever still holds an
OBEX tty is stopped before its function is removed: the kernel waits, unkillably,
for the tty to close inside the ``rmdir``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gadget_config.settings import Settings

CONFIGFS_GADGETS = Path("/sys/kernel/config/usb_gadget")
UDC_CLASS = Path("/sys/class/udc")
CONFIG_DIR = "c.1"
LANG = "0x409"
MSFT_SIGN = "MSFT100"

_MNT_DETACH = 2


class GadgetError(RuntimeError):
    """A step of bringing the gadget up or down failed; the message says which."""


def _log(msg: str) -> None:
    print(f"mtp-gadget: {msg}", flush=True)


# -- small configfs helpers -------------------------------------------------------


def _write(path: Path, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise GadgetError(f"writing {value!r} to {path}: {exc.strerror}") from exc


def _read(path: Path) -> str:
    try:
        # Some function attributes (u_ether's addresses) end in a NUL.
        return path.read_text().strip().rstrip("\0")
    except OSError:
        return ""


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        hint = ""
        if exc.errno == errno.ENOENT and path.parent.name == "functions":
            hint = " (is the kernel module for this function loaded/available?)"
        raise GadgetError(f"mkdir {path}: {exc.strerror}{hint}") from exc


def _symlink(target: Path, link: Path) -> None:
    if link.is_symlink():
        return
    try:
        link.symlink_to(target)
    except OSError as exc:
        raise GadgetError(f"linking {target} into {link.parent}: {exc.strerror}") from exc


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise GadgetError(f"rmdir {path}: {exc.strerror}") from exc


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise GadgetError(f"removing {path}: {exc.strerror}") from exc


def gadget_dir(settings: Settings) -> Path:
    return CONFIGFS_GADGETS / settings.gadget.name


def _require_configfs() -> None:
    if not CONFIGFS_GADGETS.is_dir():
        raise GadgetError(
            f"{CONFIGFS_GADGETS} does not exist: mount configfs and load libcomposite"
        )


# -- mounts -----------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    source: str
    mount_point: Path
    fstype: str
    options: str


def _unescape(field: str) -> str:
    return (
        field.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )


def mounts() -> list[Mount]:
    result = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            lf, rf = left.split(), right.split()
            if len(lf) < 6 or len(rf) < 2:
                continue
            result.append(Mount(_unescape(rf[1]), Path(_unescape(lf[4])), rf[0], lf[5]))
    return result


def functionfs_mounts(instances: set[str], extra_point: Path | None = None) -> list[Mount]:
    """FunctionFS mounts of ``instances`` (the mount source is the instance name)."""
    return [
        m
        for m in mounts()
        if m.fstype == "functionfs" and (m.source in instances or m.mount_point == extra_point)
    ]


_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: Path, fstype: str, options: str) -> None:
    if _libc.mount(source.encode(), str(target).encode(), fstype.encode(), 0, options.encode()):
        err = ctypes.get_errno()
        raise GadgetError(f"mount -t {fstype} -o {options} {source} {target}: {os.strerror(err)}")


def _umount(target: Path, lazy: bool = False) -> int:
    """0 on success, else the errno."""
    if _libc.umount2(str(target).encode(), _MNT_DETACH if lazy else 0):
        return ctypes.get_errno()
    return 0


# -- responder process ---------------------------------------------------------------


def _proc_start_time(pid: int) -> int | None:
    """Start time from /proc/<pid>/stat, to recognise a recycled PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if fields and fields[0] == "Z":  # a zombie holds nothing and is as good as gone
        return None
    return int(fields[19])


def _alive(pid: int, start_time: int | None = None) -> bool:
    current = _proc_start_time(pid)
    return current is not None and (start_time is None or current == start_time)


def _read_pid_file(settings: Settings, path: Path | None = None) -> dict[str, Any] | None:
    try:
        data = json.loads((path or settings.pid_file).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def start_responder(settings: Settings) -> int:
    """Start the responder detached, logging to a file, and record it in the pid file."""
    return _start_process(
        settings.responder_argv(), settings.responder_log, settings.pid_file, "responder"
    )


def start_obex_server(settings: Settings, tty: str) -> int:
    """Start the OBEX server for ``tty`` detached, like the responder, with its own pid file."""
    return _start_process(
        settings.obex_argv(tty), settings.obex_log, settings.obex_pid_file, "OBEX server"
    )


def _start_process(argv: list[str], log_path: Path, pid_file: Path, what: str) -> int:
    if not argv:
        raise GadgetError(f"no {what} command configured")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%F %T')} starting: {argv}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise GadgetError(f"cannot start {what} {argv[0]}: {exc.strerror}") from exc
    info = {
        "pid": proc.pid,
        "start_time": _proc_start_time(proc.pid),
        "argv": argv,
        "log": str(log_path),
    }
    pid_file.write_text(json.dumps(info) + "\n")
    _log(f"{what} started (pid {proc.pid}, log {log_path})")
    return proc.pid


def _log_tail(settings: Settings, lines: int = 20, path: Path | None = None) -> str:
    log_path = path or settings.responder_log
    try:
        text = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {log_path})"
    return "\n".join("    " + line for line in text[-lines:])


def _terminate(pid: int, start_time: int | None, timeout: float, what: str) -> None:
    if not _alive(pid, start_time):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _alive(pid, start_time):
            _log(f"{what} (pid {pid}) stopped")
            return
        time.sleep(0.05)
    _log(f"{what} (pid {pid}) ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid, start_time):
        _reap(pid)
        time.sleep(0.05)
    if _alive(pid, start_time):
        raise GadgetError(f"{what} (pid {pid}) survived SIGKILL (stuck in the kernel?)")


def _reap(pid: int) -> None:
    """Collect our own child's exit status so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_responder(settings: Settings) -> None:
    info = _read_pid_file(settings)
    if info is not None:
        _terminate(info["pid"], info.get("start_time"), settings.gadget.stop_timeout, "responder")
    _unlink(settings.pid_file)


def stop_obex_server(settings: Settings) -> None:
    info = _read_pid_file(settings, settings.obex_pid_file)
    if info is not None:
        _terminate(info["pid"], info.get("start_time"), settings.gadget.stop_timeout, "OBEX server")
    _unlink(settings.obex_pid_file)


def _holders(mount_point: Path) -> list[int]:
    """PIDs with a file open under ``mount_point`` (a responder not started by us)."""
    prefix = str(mount_point).rstrip("/") + "/"
    return _pids_with_open(lambda target: target.startswith(prefix))


def tty_holders(tty: str) -> list[int]:
    """PIDs with ``tty`` open (the OBEX server, or anyone else)."""
    return _pids_with_open(lambda target: target == tty)


def _pids_with_open(match: Callable[[str], bool]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if match(target):
                pids.append(int(entry.name))
                break
    return pids


# -- the OBEX function ----------------------------------------------------------------


def _obex_functions(gdir: Path) -> list[str]:
    functions = gdir / "functions"
    if not functions.is_dir():
        return []
    return sorted(p.name for p in functions.iterdir() if p.name.startswith("obex."))


def obex_tty(gdir: Path, function: str) -> str | None:
    """``/dev/ttyGS<port_num>`` of an ``obex.*`` function (the kernel picks the port)."""
    port = _read(gdir / "functions" / function / "port_num")
    return f"/dev/ttyGS{port}" if port.isdigit() else None


def _obex_tty_of(settings: Settings) -> str | None:
    fn = settings.obex_function
    return None if fn is None else obex_tty(gadget_dir(settings), fn)


def _stop_tty_holders(settings: Settings, gdir: Path) -> None:
    """Stop whoever holds an OBEX tty, so removing its function cannot hang.

    The kernel frees a serial function's port only once its tty is closed, and
    waits for that inside the ``rmdir``, in a sleep no signal ends.
    """
    for fn in _obex_functions(gdir):
        tty = obex_tty(gdir, fn)
        if tty is None:
            continue
        for pid in tty_holders(tty):
            _terminate(pid, None, settings.gadget.stop_timeout, f"process holding {tty}")
        left = tty_holders(tty)
        if left:
            raise GadgetError(
                f"{tty} is still open (pids {left}); not removing {fn}, whose rmdir "
                "would wait for it"
            )


# -- readiness and binding -----------------------------------------------------------


def descriptors_written(mount_point: Path) -> bool:
    """FunctionFS creates ep1.. only once the function has written its descriptors."""
    return (mount_point / "ep1").exists()


def wait_ready(settings: Settings, pid: int | None) -> None:
    """Until the responder wrote its descriptors and the OBEX tty (if any) is held."""
    mount_point = Path(settings.gadget.functionfs_mount)
    deadline = time.monotonic() + settings.gadget.ready_timeout
    _wait_obex_held(settings, deadline, pid)
    while not descriptors_written(mount_point):
        if pid is not None:
            _reap(pid)
            if not _alive(pid):
                raise GadgetError(
                    f"responder (pid {pid}) exited before writing its descriptors; "
                    f"log {settings.responder_log}:\n{_log_tail(settings)}"
                )
        if time.monotonic() > deadline:
            raise GadgetError(
                f"no endpoint files in {mount_point} after {settings.gadget.ready_timeout:.0f}s:"
                f" the responder never wrote its descriptors; log:\n{_log_tail(settings)}"
            )
        time.sleep(0.05)


def _wait_obex_held(settings: Settings, deadline: float, responder: int | None) -> None:
    """Until some process holds the OBEX function's tty open.

    Bound without that, the kernel's OBEX function keeps the whole gadget off
    the bus.  The server is ours (``obex_command``) or someone else's (a
    systemd unit); either way what counts is that the tty is open.
    """
    fn = settings.obex_function
    if fn is None:
        return
    tty = _obex_tty_of(settings)
    if tty is None:
        raise GadgetError(f"{gadget_dir(settings) / 'functions' / fn} has no port_num")
    info = _read_pid_file(settings, settings.obex_pid_file)
    while not tty_holders(tty):
        if responder is not None:
            _reap(responder)
            if not _alive(responder):
                raise GadgetError(
                    f"responder (pid {responder}) exited while waiting for {tty} to be "
                    f"opened; log {settings.responder_log}:\n{_log_tail(settings)}"
                )
        if info is not None:
            _reap(info["pid"])
            if not _alive(info["pid"], info.get("start_time")):
                raise GadgetError(
                    f"OBEX server (pid {info['pid']}) exited before opening {tty}; log "
                    f"{settings.obex_log}:\n{_log_tail(settings, path=settings.obex_log)}"
                )
        if time.monotonic() > deadline:
            who = "the OBEX server" if info is not None else "no OBEX server (obex_command)"
            raise GadgetError(
                f"{tty} not opened after {settings.gadget.ready_timeout:.0f}s by {who}: "
                "the kernel keeps a gadget with an OBEX function off the bus until its tty "
                "is open"
            )
        time.sleep(0.05)


def available_udcs() -> list[str]:
    try:
        return sorted(p.name for p in UDC_CLASS.iterdir())
    except OSError:
        return []


def choose_udc(settings: Settings) -> str:
    udcs = available_udcs()
    if settings.gadget.udc:
        if settings.gadget.udc not in udcs:
            raise GadgetError(
                f"UDC {settings.gadget.udc!r} not in {UDC_CLASS} (have: {udcs or 'none'})"
            )
        return settings.gadget.udc
    if not udcs:
        raise GadgetError(f"no USB device controller in {UDC_CLASS}")
    return udcs[0]


def _udc_owner(udc: str) -> str | None:
    """The other gadget already bound to ``udc``, if any."""
    if not CONFIGFS_GADGETS.is_dir():
        return None
    for gadget in CONFIGFS_GADGETS.iterdir():
        if _read(gadget / "UDC") == udc:
            return gadget.name
    return None


def bind(settings: Settings) -> str:
    """Bind the gadget to its UDC and confirm it stuck; returns the UDC name."""
    gdir = gadget_dir(settings)
    if not gdir.is_dir():
        raise GadgetError(f"gadget {gdir} does not exist; run `mtp-gadget up` or `prepare`")
    udc = choose_udc(settings)
    if _read(gdir / "UDC") == udc:
        return udc
    owner = _udc_owner(udc)
    if owner is not None and owner != settings.gadget.name:
        raise GadgetError(f"UDC {udc} is already used by gadget {owner!r}")
    deadline = time.monotonic() + settings.gadget.bind_timeout
    last_error = ""
    while True:
        try:
            with open(gdir / "UDC", "w") as f:
                f.write(udc)
        except OSError as exc:
            last_error = exc.strerror or str(exc)
            if exc.errno not in (errno.ENODEV, errno.EBUSY, errno.EAGAIN, errno.ENOENT):
                raise GadgetError(f"binding {udc}: {last_error}") from exc
        if _read(gdir / "UDC") == udc:
            _log(f"bound to {udc}")
            return udc
        if time.monotonic() > deadline:
            raise GadgetError(
                f"UDC {udc} would not bind within {settings.gadget.bind_timeout:.0f}s"
                f" (last error: {last_error or 'UDC reads back empty'})"
            )
        time.sleep(0.1)


def unbind(settings: Settings) -> None:
    udc_file = gadget_dir(settings) / "UDC"
    if udc_file.exists() and _read(udc_file):
        # An empty write is no write at all: the kernel needs the newline.
        _write(udc_file, "\n")
        _log("unbound from UDC")


# -- the configfs tree ----------------------------------------------------------------


def build_tree(settings: Settings) -> Path:
    """Create the gadget directory tree; the UDC stays unbound."""
    _require_configfs()
    d, g = settings.device, settings.gadget
    gdir = gadget_dir(settings)
    _mkdir(gdir)
    _write(gdir / "idVendor", f"{d.vendor_id:#06x}")
    _write(gdir / "idProduct", f"{d.product_id:#06x}")
    _write(gdir / "bcdDevice", f"{d.bcd_device:#06x}")
    _write(gdir / "bcdUSB", f"{g.bcd_usb:#06x}")
    # Class 0: each interface names its own class, which is what libmtp's probe
    # and Windows' MTP class driver look for.
    _write(gdir / "bDeviceClass", "0x00")
    _write(gdir / "bDeviceSubClass", "0x00")
    _write(gdir / "bDeviceProtocol", "0x00")
    if (gdir / "max_speed").exists():
        _write(gdir / "max_speed", d.max_speed)
    strings = gdir / "strings" / LANG
    _mkdir(strings)
    _write(strings / "manufacturer", d.manufacturer)
    _write(strings / "product", d.product)
    _write(strings / "serialnumber", d.serial)

    config = gdir / "configs" / CONFIG_DIR
    _mkdir(config)
    _write(config / "MaxPower", str(g.max_power))
    _write(config / "bmAttributes", "0x80")
    _mkdir(config / "strings" / LANG)
    _write(config / "strings" / LANG / "configuration", g.configuration)

    # MTP first: it becomes interface 0, which the MS OS extended compat ID in the
    # FunctionFS descriptors refers to.
    functions = [f"ffs.{g.ffs_instance}", *g.extra_functions]
    for fn in functions:
        fdir = gdir / "functions" / fn
        _mkdir(fdir)
        for attr, value in g.function_attributes.get(fn, {}).items():
            _write(fdir / attr, value)
        _symlink(fdir, config / fn)

    if g.os_desc:
        os_desc = gdir / "os_desc"
        _write(os_desc / "b_vendor_code", f"{g.os_desc_vendor_code:#04x}")
        _write(os_desc / "qw_sign", MSFT_SIGN)
        _write(os_desc / "use", "1")
        _symlink(config, os_desc / CONFIG_DIR)
    return gdir


def remove_tree(gdir: Path) -> None:
    """Remove a gadget directory bottom-up, whatever shape it is in."""
    if not gdir.is_dir():
        return
    os_desc = gdir / "os_desc"
    if os_desc.is_dir():
        for link in os_desc.iterdir():
            if link.is_symlink():
                _unlink(link)
    configs = gdir / "configs"
    for config in sorted(configs.iterdir()) if configs.is_dir() else []:
        for entry in config.iterdir():
            if entry.is_symlink():
                _unlink(entry)
        strings = config / "strings"
        for lang in strings.iterdir() if strings.is_dir() else []:
            _rmdir(lang)
        _rmdir(config)
    functions = gdir / "functions"
    for fn in sorted(functions.iterdir(), reverse=True) if functions.is_dir() else []:
        _rmdir(fn)
    strings = gdir / "strings"
    for lang in strings.iterdir() if strings.is_dir() else []:
        _rmdir(lang)
    _rmdir(gdir)


def _ffs_instances(gdir: Path) -> set[str]:
    functions = gdir / "functions"
    if not functions.is_dir():
        return set()
    return {p.name[4:] for p in functions.iterdir() if p.name.startswith("ffs.")}


# -- the verbs -------------------------------------------------------------------------


def prepare(settings: Settings) -> None:
    """Tree and FunctionFS mount, no responder, no bind (for the systemd split)."""
    gdir = gadget_dir(settings)
    if gdir.exists() or functionfs_mounts(
        {settings.gadget.ffs_instance}, Path(settings.gadget.functionfs_mount)
    ):
        _log(f"found an existing gadget {settings.gadget.name!r}; tearing it down first")
        down(settings)
    build_tree(settings)
    mount_point = Path(settings.gadget.functionfs_mount)
    mount_point.mkdir(parents=True, exist_ok=True)
    _mount(settings.gadget.ffs_instance, mount_point, "functionfs", "no_disconnect=1")
    _log(f"gadget {settings.gadget.name!r} built; FunctionFS mounted at {mount_point}")


def up(settings: Settings) -> str:
    """The whole bring-up; on any failure the half-built gadget is removed again."""
    try:
        prepare(settings)
        tty = _obex_tty_of(settings)
        if tty is not None and settings.gadget.obex_command:
            start_obex_server(settings, tty)
        pid = start_responder(settings)
        wait_ready(settings, pid)
        return bind(settings)
    except BaseException:
        with contextlib.suppress(GadgetError, OSError):
            down(settings, quiet=True)
        raise


def bind_when_ready(settings: Settings, pid: int | None) -> str:
    """For a responder started by someone else (systemd): wait, then (re)bind."""
    wait_ready(settings, pid)
    unbind(settings)
    return bind(settings)


def down(settings: Settings, quiet: bool = False) -> None:
    """Unbind, stop the responder, unmount, remove the tree; skip what is absent."""
    errors: list[str] = []
    gdir = gadget_dir(settings)

    def step(what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except (GadgetError, OSError) as exc:
            errors.append(f"{what}: {exc}")

    step("unbind", unbind, settings)
    step("stop responder", stop_responder, settings)
    step("stop OBEX server", stop_obex_server, settings)
    instances = _ffs_instances(gdir) | {settings.gadget.ffs_instance}
    mount_point = Path(settings.gadget.functionfs_mount)
    for m in functionfs_mounts(instances, mount_point):
        err = _umount(m.mount_point)
        if err == errno.EBUSY:
            holders = _holders(m.mount_point)
            for pid in holders:
                step(
                    "stop holder",
                    _terminate,
                    pid,
                    None,
                    settings.gadget.stop_timeout,
                    f"process holding {m.mount_point}",
                )
            err = _umount(m.mount_point)
        if err:
            errors.append(f"umount {m.mount_point}: {os.strerror(err)}")
        elif not quiet:
            _log(f"unmounted {m.mount_point}")
    if mount_point.is_dir() and not any(m.mount_point == mount_point for m in mounts()):
        with contextlib.suppress(OSError):
            mount_point.rmdir()
    if gdir.exists():
        try:
            _stop_tty_holders(settings, gdir)
        except (GadgetError, OSError) as exc:
            raise GadgetError("; ".join([*errors, str(exc)])) from exc
        step("remove configfs tree", remove_tree, gdir)
        if not gdir.exists() and not quiet:
            _log(f"removed {gdir}")
    if errors:
        raise GadgetError("; ".join(errors))


def status(settings: Settings) -> dict[str, Any]:
    """A snapshot of everything this gadget consists of, for humans and tests."""
    gdir = gadget_dir(settings)
    info: dict[str, Any] = {"gadget": str(gdir), "exists": gdir.is_dir()}
    if gdir.is_dir():
        attrs = ("idVendor", "idProduct", "bcdDevice", "bcdUSB", "bDeviceClass", "max_speed")
        info["attributes"] = {a: _read(gdir / a) for a in attrs if (gdir / a).exists()}
        info["strings"] = {
            s: _read(gdir / "strings" / LANG / s)
            for s in ("manufacturer", "product", "serialnumber")
        }
        info["functions"] = (
            sorted(p.name for p in (gdir / "functions").iterdir())
            if (gdir / "functions").is_dir()
            else []
        )
        info["configs"] = (
            {
                c.name: sorted(e.name for e in c.iterdir() if e.is_symlink())
                for c in sorted((gdir / "configs").iterdir())
            }
            if (gdir / "configs").is_dir()
            else {}
        )
        os_desc = gdir / "os_desc"
        info["os_desc"] = (
            {
                "use": _read(os_desc / "use"),
                "b_vendor_code": _read(os_desc / "b_vendor_code"),
                "qw_sign": _read(os_desc / "qw_sign"),
                "configs": sorted(p.name for p in os_desc.iterdir() if p.is_symlink()),
            }
            if os_desc.is_dir()
            else None
        )
        info["obex"] = [
            {"function": fn, "tty": tty, "holders": tty_holders(tty) if tty else []}
            for fn in _obex_functions(gdir)
            for tty in [obex_tty(gdir, fn)]
        ]
        udc = _read(gdir / "UDC")
        info["udc"] = udc or None
        if udc:
            info["udc_state"] = _read(UDC_CLASS / udc / "state")
            info["speed"] = _read(UDC_CLASS / udc / "current_speed")
    instances = _ffs_instances(gdir) | {settings.gadget.ffs_instance}
    info["mounts"] = [
        {
            "source": m.source,
            "mount_point": str(m.mount_point),
            "endpoints": sorted(p.name for p in m.mount_point.iterdir())
            if m.mount_point.is_dir()
            else [],
        }
        for m in functionfs_mounts(instances, Path(settings.gadget.functionfs_mount))
    ]
    pid_info = _read_pid_file(settings)
    if pid_info is not None:
        pid_info["alive"] = _alive(pid_info["pid"], pid_info.get("start_time"))
    info["responder"] = pid_info
    obex_info = _read_pid_file(settings, settings.obex_pid_file)
    if obex_info is not None:
        obex_info["alive"] = _alive(obex_info["pid"], obex_info.get("start_time"))
    info["obex_server"] = obex_info
    info["available_udcs"] = available_udcs()
    return info


def iter_status_lines(info: dict[str, Any]) -> Iterator[str]:
    yield f"gadget      {info['gadget']}: {'present' if info['exists'] else 'absent'}"
    if info["exists"]:
        a = info.get("attributes", {})
        yield (
            f"device      {a.get('idVendor')}:{a.get('idProduct')} bcdDevice {a.get('bcdDevice')}"
            f" bcdUSB {a.get('bcdUSB')} class {a.get('bDeviceClass')}"
            f" max_speed {a.get('max_speed', '-')}"
        )
        s = info.get("strings", {})
        yield (
            f"strings     {s.get('manufacturer')!r} {s.get('product')!r}"
            f" serial {s.get('serialnumber')!r}"
        )
        yield f"functions   {', '.join(info.get('functions', [])) or '-'}"
        for name, links in info.get("configs", {}).items():
            yield f"config      {name}: {', '.join(links) or '(no functions)'}"
        od = info.get("os_desc")
        if od:
            yield (
                f"os_desc     use={od['use']} vendor_code={od['b_vendor_code']}"
                f" sign={od['qw_sign']} configs={','.join(od['configs']) or '-'}"
            )
        for ob in info.get("obex", []):
            held = (
                f"held open by pid {', '.join(map(str, ob['holders']))}"
                if ob["holders"]
                else "not open: the gadget stays off the bus until the OBEX server opens it"
            )
            yield f"obex        {ob['function']}: {ob['tty'] or '(no port_num)'} {held}"
        if info.get("udc"):
            yield f"udc         {info['udc']} ({info.get('udc_state')}, {info.get('speed')})"
        else:
            yield "udc         not bound"
    for m in info["mounts"]:
        yield f"functionfs  {m['source']} at {m['mount_point']}: {' '.join(m['endpoints'])}"
    if not info["mounts"]:
        yield "functionfs  not mounted"
    r = info.get("responder")
    if r:
        state = "running" if r["alive"] else "not running"
        yield f"responder   pid {r['pid']} {state}; log {r.get('log')}"
    else:
        yield "responder   no pid file"
    o = info.get("obex_server")
    if o:
        state = "running" if o["alive"] else "not running"
        yield f"obex server pid {o['pid']} {state}; log {o.get('log')}"
    yield f"UDCs        {', '.join(info['available_udcs']) or 'none'}"
