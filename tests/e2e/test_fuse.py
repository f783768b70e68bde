"""FUSE clients (``go-mtpfs``, ``jmtpfs``) on the real gadget: the device as a folder.

Users who mount the device copy whole trees with ``cp -r`` and expect ``diff -r``
to find nothing, today and after the next mount.  These clients write the way a
filesystem is written, not the way libmtp's tools do: jmtpfs creates every file
empty and sends its content when it is closed, go-mtpfs uploads a file when it
is closed and replaces an object by a delete and a new upload, and both keep one
session open for the whole mount.
The same copy is also how a user restores: ``cp x.mbak "<mount>/Backup &
Restore/Restore/"``.

Each client runs as a child of the test (see :class:`FuseMount`); the mount point
is only ever touched through commands with a timeout, so a hung client fails a
test instead of hanging the suite.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mtp_backup.backup import pick as pick_produced
from mtp_backup.device import open_device
from tests.e2e.backup_support import (
    GuestEngine,
    change_passive,
    responder_config,
    seed_passive,
)
from tests.e2e.guest.support import (
    FUSE_CLIENTS,
    FuseMount,
    Gadget,
    ToolResult,
    Tools,
    mtp_responder_command,
)

pytestmark = pytest.mark.e2e

STORAGE = "E2E Storage"
BACKUP_STORAGE = "Backup & Restore"
COPY_TIMEOUT = 600  # a few MiB in ~50 files, each its own MTP transactions under TCG
USB_TIMEOUT = 180.0

#: Names a file manager's user produces, and that a naive client or responder
#: gets wrong: spaces, non-ASCII, a leading dash (an option to every tool), shell
#: and URL characters.  ``{beyond}`` becomes a character outside the BMP (an
#: emoji: a UTF-16 surrogate pair on the wire) where the client can carry one.
ODD_NAMES = (
    "with space.txt",
    "two  spaces  inside.txt",
    "-leading-dash.txt",
    "--double-dash",
    "ünïcödé Ørsted.txt",
    "日本語のファイル.bin",
    "song {beyond}.mp3",
    "ampersand & (parens) [1].txt",
    "it's quoted.txt",
    "percent %20 hash #.txt",
    "no_extension",
    "many.dots.in.the.name.tar.gz",
)

#: What a client cannot do whatever the device does (each read in the client's
#: source), left out of the trees it copies rather than failing on its account.
#: go-mtpfs refuses to upload an empty file itself ("cannot send 0 byte file",
#: EINVAL from close(), before any MTP command), and converts names one UTF-16
#: code unit at a time, garbling a surrogate pair both ways.
CANNOT_UPLOAD_EMPTY_FILES = frozenset({"go-mtpfs"})
BMP_NAMES_ONLY = frozenset({"go-mtpfs"})


def make_tree(root: Path, seed: int, *, empty_files: bool = True, beyond_bmp: bool = True) -> Path:
    """About 50 files and 3 MiB: nested and empty folders, empty files, odd names."""
    rnd = random.Random(seed)
    beyond = "🎵📁" if beyond_bmp else "♫☂"
    folders = [
        root,
        root / "nested dir",
        root / "nested dir" / "level 2",
        root / "nested dir" / "level 2" / "level 3 ü",
        root / "-dash folder",
        root / f"Ünïcödé {beyond[1]}",
        root / "only empty files",
    ]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    (root / "empty folder").mkdir()
    (root / "nested dir" / "empty inside").mkdir()

    sizes = (0, 1, 17, 511, 512, 513, 4096, 65536, 100_001)[0 if empty_files else 1 :]
    count = 0
    for i, name in enumerate(ODD_NAMES):
        path = folders[i % 6] / name.format(beyond=beyond[0])
        path.write_bytes(rnd.randbytes(rnd.choice(sizes)))
        count += 1
    for i in range(4 if empty_files else 0):
        (root / "only empty files" / f"empty {i}.dat").write_bytes(b"")
        count += 1
    while count < 48:
        folder = folders[count % 6]
        (folder / f"file {count:02d}.dat").write_bytes(rnd.randbytes(rnd.choice(sizes)))
        count += 1
    (root / "big one.bin").write_bytes(rnd.randbytes((1 << 20) + 1))
    (root / "nested dir" / "level 2" / "bigger.bin").write_bytes(rnd.randbytes(3 << 19))
    return root


def diff_r(tools: Tools, want: Path, got: Path, what: str, mount: FuseMount | None = None) -> None:
    """``diff -r``: same names, same folders (empty ones too), same bytes."""
    result = tools.run(["diff", "-r", want, got], timeout=COPY_TIMEOUT, name=f"diff-{what}")
    if result.returncode != 0 or result.timed_out:
        client_log = f"\n{mount.client} log:\n{mount.log_tail()}" if mount else ""
        raise AssertionError(f"{what}: the trees differ: {result.describe()}{client_log}")


#: go-mtpfs sometimes loses its own local copy of a file while uploading it (a
#: race inside the client: "SendObject failed read /tmp/go-mtpfs...: bad file
#: descriptor"), abandons that SendObject's data phase and fails that one close().
CLIENT_RACES = {"go-mtpfs": "bad file descriptor"}


def client_log(mount: FuseMount) -> str:
    try:
        return mount.log.read_text(errors="replace") if mount.log else ""
    except OSError:
        return ""


def copy(tools: Tools, mount: FuseMount, gadget: Gadget, *argv: str | Path) -> ToolResult:
    """``cp`` through the mount; a failure shows cp's, the client's and the device's words.

    After the client's own race, the copy runs once more, as its user would: a
    device that answered the abandoned transaction properly takes the second
    copy; one that lost track of transaction ids has been closed by the client
    ("transaction ID mismatch"), and the second copy fails too.
    """
    race = CLIENT_RACES.get(mount.client)
    seen = client_log(mount).count(race) if race else 0
    result = tools.run(["cp", *argv], timeout=COPY_TIMEOUT, name=f"cp-{mount.client}")
    if result.returncode != 0 and race and client_log(mount).count(race) > seen:
        result = tools.run(["cp", *argv], timeout=COPY_TIMEOUT, name=f"cp-{mount.client}-again")
    if result.returncode != 0 or result.timed_out:
        raise AssertionError(
            f"{result.describe()}\n{mount.client} log:\n{mount.log_tail()}\n"
            f"responder log:\n{gadget.responder_log_tail()}"
        )
    return result


@pytest.fixture
def fuse(
    make_gadget: Callable[..., Gadget], tools: Tools, guest_tmp: Path
) -> Iterator[Callable[[str], FuseMount]]:
    """``fuse(client)`` -> a :class:`FuseMount`; set up after the gadget, so any
    mount a failed test left is gone before the gadget is brought down."""
    made: list[FuseMount] = []

    def make(client: str) -> FuseMount:
        mount = FuseMount(client, guest_tmp / f"mnt-{client}", tools)
        made.append(mount)
        return mount

    yield make
    for mount in made:
        mount.close()


@pytest.mark.parametrize(
    "client",
    [
        # go-mtpfs copying many files in at times stops mid-upload and waits 60 s
        # for an answer to a data phase it never finished: `make e2e-client-races`.
        pytest.param(c, marks=pytest.mark.client_race) if c == "go-mtpfs" else c
        for c in FUSE_CLIENTS
    ],
)
def test_a_tree_copied_in_is_on_the_device_and_reads_back_the_same_after_a_remount(
    mtp_gadget: Gadget,
    fuse: Callable[[str], FuseMount],
    tools: Tools,
    guest_tmp: Path,
    client: str,
) -> None:
    storage: Path = mtp_gadget.storage  # type: ignore[attr-defined]
    source = make_tree(
        guest_tmp / "tree",
        seed=1,
        empty_files=client not in CANNOT_UPLOAD_EMPTY_FILES,
        beyond_bmp=client not in BMP_NAMES_ONLY,
    )
    mount = fuse(client)

    root = mount.mount(STORAGE)
    copy(tools, mount, mtp_gadget, "-r", source, root)
    mount.unmount()
    diff_r(tools, source, storage / "tree", "the device's storage after cp -r in")

    root = mount.mount(STORAGE)
    diff_r(tools, source, root / "tree", "the tree through a new mount", mount)
    mount.unmount()


@pytest.mark.parametrize("client", FUSE_CLIENTS)
def test_a_tree_copied_out_equals_the_devices_storage(
    mtp_gadget: Gadget,
    fuse: Callable[[str], FuseMount],
    tools: Tools,
    guest_tmp: Path,
    client: str,
) -> None:
    storage: Path = mtp_gadget.storage  # type: ignore[attr-defined]
    make_tree(storage / "tree", seed=2, beyond_bmp=client not in BMP_NAMES_ONLY)
    mount = fuse(client)

    root = mount.mount(STORAGE)
    copy(tools, mount, mtp_gadget, "-r", root / "tree", guest_tmp / "copied-out")
    mount.unmount()
    diff_r(tools, storage / "tree", guest_tmp / "copied-out", "cp -r out of the device")


# -- restore ------------------------------------------------------------------------------


@pytest.fixture
def engines() -> Iterator[list[GuestEngine]]:
    """Requested before the gadget, so the engine outlives the responder."""
    made: list[GuestEngine] = []
    yield made
    for engine in made:
        engine.stop()


def status_text() -> str:
    """Restore/status.txt over pyusb, once the FUSE client has let go of the device."""
    with open_device(None, USB_TIMEOUT) as dev:
        return dev.status_text()


@pytest.mark.parametrize("client", FUSE_CLIENTS)
def test_a_backup_copied_into_the_restore_folder_restores_the_device(
    engines: list[GuestEngine],
    make_gadget: Callable[..., Gadget],
    fuse: Callable[[str], FuseMount],
    tools: Tools,
    guest_tmp: Path,
    test_logs: Path,
    client: str,
) -> None:
    engine = GuestEngine(guest_tmp / "engine", test_logs / "engine.log", resident_app=True)
    engine.setup()
    seed_passive(engine.passive_dir)
    engines.append(engine)
    engine.start()
    gadget = make_gadget(
        responder_command=mtp_responder_command(), config=responder_config(engine, guest_tmp)
    )

    backup = guest_tmp / "device backup.mbak"
    with open_device(None, USB_TIMEOUT) as dev:
        dev.fetch(pick_produced(dev.folder("Backup"), ".mbak"), backup)
    engine.wait_mode("NORMAL")
    backed_up = engine.state()
    change_passive(engine.passive_dir)
    engine.add_notes("written after the backup")
    assert engine.state() != backed_up

    mount = fuse(client)
    root = mount.mount(BACKUP_STORAGE)
    copy(tools, mount, gadget, backup, f"{root}/Restore/")
    mount.unmount()
    engine.wait_mode("NORMAL")

    status = status_text()
    assert "RESTORED" in status.splitlines()[0], f"Restore/status.txt says:\n{status}"
    passive, notes = engine.state()
    assert passive == backed_up[0], "the passive owner's files are not the backup's"
    assert notes == backed_up[1], f"notes {notes}, the backup holds {backed_up[1]}"
