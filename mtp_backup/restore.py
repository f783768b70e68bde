"""Restoring from the PC: send each archive into ``Restore/`` and report the device's verdict.

Every file is verified before the first byte goes out (unless told not to),
so a broken backup is refused on the PC rather than half-way through a chain.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mtp_responder.core.codes import ResponseCode

from .chain import Chain
from .device import open_device, response_name
from .errors import EXIT_REFUSED, ToolError
from .verify import verify_archive


def restore(target: Path, *, verify: bool, selector: str | None, timeout_s: float) -> None:
    """``mtp-backup restore``: one ``.mbak``, or a directory's chain base first.

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
    if verify:
        for f in files:
            verify_archive(f)
    from .usb import MTPError

    with open_device(selector, timeout_s) as device:
        for f in files:
            print(f"restoring {f.name} ({f.stat().st_size} bytes)", flush=True)
            try:
                _handle, code = device.send("Restore", f)
            except MTPError as exc:  # refused at SendObjectInfo, before any data
                code = int(exc.code)
            status = device.status_text()
            if code != ResponseCode.OK:
                sys.stderr.write(status if status.endswith("\n") else status + "\n")
                raise ToolError(f"the device refused {f.name}: {response_name(code)}", EXIT_REFUSED)
            sys.stdout.write(status if status.endswith("\n") else status + "\n")
