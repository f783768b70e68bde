"""Restoring from the PC: send each archive into ``Restore/`` and report the device's verdict.

Every file is verified before the first byte goes out (unless told not to),
so a broken backup is refused on the PC rather than half-way through a chain.
An age-encrypted archive (``x.mbak.age``) is decrypted as it is sent and
arrives as ``x.mbak``: its plaintext size is known from the encrypted file's
size, so nothing is decrypted to disk or held whole in memory.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtp_responder.core.codes import ResponseCode

from .chain import Chain
from .device import BackupDevice, open_device, response_name
from .encrypted import DecryptedFile, is_encrypted, plain_name
from .errors import EXIT_REFUSED, ToolError
from .verify import verify_archive

if TYPE_CHECKING:
    from engine.agefile import X25519Identity


def restore(
    target: Path,
    *,
    verify: bool,
    selector: str | None,
    timeout_s: float,
    identities: Sequence[X25519Identity] | None = None,
) -> None:
    """``mtp-backup restore``: one ``.mbak`` (or ``.mbak.age``), or a directory's chain base first.

    The device's ``Restore/status.txt`` is printed after each file; a refusal
    stops the chain there (the later increments would not apply).
    """
    if target.is_dir():
        chain = Chain.load(target)
        files = [target / e.archive for e in chain.restore_order()]
    else:
        files = [target]
    for f in files:
        if not f.is_file():
            raise ToolError(f"{f}: no such file")
        if is_encrypted(f):
            # Opening reads the header only: a wrong key fails here, before any USB traffic.
            with DecryptedFile(f, identities or []):
                pass
    if verify:
        for f in files:
            verify_archive(f, identities=identities)
    from .usb import MTPError

    with open_device(selector, timeout_s) as device:
        for f in files:
            with _source(f, identities) as (name, source, size):
                print(f"restoring {f.name} ({size} bytes)", flush=True)
                try:
                    _handle, code = device.send_stream("Restore", name, source, size)
                except MTPError as exc:  # refused at SendObjectInfo, before any data
                    code = int(exc.code)
            _report(device, f, code)


@contextlib.contextmanager
def _source(
    path: Path, identities: Sequence[X25519Identity] | None
) -> Iterator[tuple[str, Any, int]]:
    """``(name on the device, reader, size)``: the file itself, or its decrypted archive."""
    if is_encrypted(path):
        with DecryptedFile(path, identities or []) as plain:
            yield plain_name(path), plain, plain.size
    else:
        with open(path, "rb") as f:
            yield path.name, f, path.stat().st_size


def _report(device: BackupDevice, path: Path, code: int) -> None:
    status = device.status_text()
    if code != ResponseCode.OK:
        sys.stderr.write(status if status.endswith("\n") else status + "\n")
        raise ToolError(f"the device refused {path.name}: {response_name(code)}", EXIT_REFUSED)
    sys.stdout.write(status if status.endswith("\n") else status + "\n")
